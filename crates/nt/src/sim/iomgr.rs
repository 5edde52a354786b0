//! The I/O manager's side of the requests the harness makes as the "user":
//! file objects (IRP_MJ_CREATE / CLEANUP / CLOSE), the IRPs it builds for
//! IOCTLs (buffered and neither I/O), and how it finishes them.
//!
//! # When a request is finished (review finding 2)
//!
//! NT finishes a top-level IRP in `IopCompleteRequest`: it copies the
//! system buffer out to the caller, frees it, signals the caller and frees
//! the IRP. If the IRP was marked pending (PendingReturned), that runs as a
//! special kernel APC in the requesting thread as soon as it is at
//! PASSIVE_LEVEL, which can be the very moment `IoCompleteRequest` is
//! called, even while the dispatch routine is still running; otherwise the
//! I/O manager does it when the dispatch routine has returned. The sim does
//! both at those moments: a pending IRP is finished at the end of its
//! completion walk (the earliest the APC can run), a synchronously
//! completed one when `IofCallDriver` returns to the harness. From then on
//! the IRP and its system buffer are freed special pool: a driver touching
//! them stops the machine (0xCC), a late `IoCompleteRequest` finds no IRP
//! (0x44).
//!
//! # Buffered I/O (review finding 5)
//!
//! The system buffer holds the input, then a recognisable pattern (NT does
//! not initialise it: "Failure to Initialize Output Buffers"). At the
//! finish, for a success or warning status, `Information` bytes are copied
//! out ("the I/O manager will attempt to copy this number of bytes"), and
//!
//! - `Information` larger than the output length is 0xC9/0x312, for warning
//!   statuses such as STATUS_BUFFER_OVERFLOW too (probe p07);
//! - returned bytes that still hold the pattern (runs of 4 or more: the
//!   driver never wrote them) are an information leak, recorded in the
//!   report as `LeakKind::InformationLeak` (probe p06).
//!
//! The IRP carries what NT sets: `Flags` (IRP_BUFFERED_IO,
//! IRP_DEALLOCATE_BUFFER, IRP_INPUT_OPERATION, IRP_CREATE_OPERATION,
//! IRP_CLOSE_OPERATION, IRP_SYNCHRONOUS_API), `Tail.Overlay.Thread` (the
//! requesting thread), `RequestorMode` UserMode, the file object.
//!
//! # Neither I/O (review finding 3)
//!
//! METHOD_NEITHER buffers are user addresses. By default
//! ([`NeitherIo::Refuse`]) the harness refuses such IOCTLs; with
//! [`NeitherIo::Guarded`] they are special-pool pages made inaccessible
//! when the dispatch routine returns (0x7E if touched then).
//!
//! # Access and file objects (review finding 16)
//!
//! A handle is opened with an access mask; an IOCTL whose code requires
//! FILE_READ_ACCESS / FILE_WRITE_ACCESS fails with STATUS_ACCESS_DENIED
//! without reaching the driver when the handle lacks FILE_READ_DATA /
//! FILE_WRITE_DATA (NtDeviceIoControlFile). A device with
//! DO_DEVICE_INITIALIZING cannot be opened (STATUS_NO_SUCH_DEVICE). Every
//! IRP references its file object: closing a handle sends IRP_MJ_CLEANUP at
//! once (the driver's cue to cancel what is queued for it) and IRP_MJ_CLOSE
//! only when the last IRP on the file object has been finished, from a
//! system thread if that happens later.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::config::NeitherIo;
use super::ffi::*;
use super::harness::{DEFAULT_IO_TIMEOUT, HarnessError};
use super::io::{IoGetNextIrpStackLocation, IofCallDriver};
use super::irql;
use super::pool::{SYSTEM_OWNER, pool_tag};
use super::session::{Kernel, in_user_context, lock, spawn_kernel_thread};
use super::verifier::{
    DRIVER_VERIFIER_DETECTED_VIOLATION, DRIVER_VERIFIER_IOMANAGER_VIOLATION, Leak, LeakKind, c4, c9,
};
use crate::status::*;
use crate::types::*;

const SYSTEM_BUFFER_TAG: u32 = pool_tag(b"IoSB");
const USER_BUFFER_TAG: u32 = pool_tag(b"UsrB");

/// What an uninitialised system buffer holds (after the input): an 8-byte
/// signature repeated, so returned bytes the driver never wrote stand out.
const FILL: [u8; 8] = [0xA5, 0x4E, 0x54, 0x53, 0x49, 0x4D, 0x5A, 0xC3];
/// The shortest run of untouched fill bytes reported as a leak (shorter
/// runs may be data that happens to match).
const LEAK_RUN: usize = 4;

/// The outcome of an IOCTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoctlResult {
    /// `IoStatus.Status`.
    pub status: NTSTATUS,
    /// `IoStatus.Information`.
    pub information: u64,
    /// The output bytes copied back (`min(Information, output length)`).
    pub output: Vec<u8>,
}

// === File objects ===

/// A file object the I/O manager created with IRP_MJ_CREATE, and the
/// requests that reference it.
pub(crate) struct FileRecord {
    /// The FILE_OBJECT (freed when the record goes: after IRP_MJ_CLOSE was
    /// finished and no IRP references it).
    file: *mut FILE_OBJECT,
    device: PDEVICE_OBJECT,
    access: ACCESS_MASK,
    state: Mutex<FileState>,
}

#[derive(Default)]
struct FileState {
    /// Requests sent on it and not finished yet (CLOSE not counted).
    outstanding: usize,
    /// The handle was closed: CLOSE goes when `outstanding` reaches 0.
    close_requested: bool,
    /// CLOSE was sent.
    close_sent: bool,
}

// SAFETY: the FILE_OBJECT is owned by the record (freed once, in Drop); the
// device pointer is only compared and passed to IofCallDriver, which checks
// it is live. The driver may use the file object from any thread, as on NT.
unsafe impl Send for FileRecord {}
// SAFETY: as above; the mutable state is behind the mutex.
unsafe impl Sync for FileRecord {}

impl Drop for FileRecord {
    fn drop(&mut self) {
        // SAFETY: created with Box::into_raw in `FileRecord::new`, freed once.
        drop(unsafe { Box::from_raw(self.file) });
    }
}

impl FileRecord {
    fn new(device: PDEVICE_OBJECT, access: ACCESS_MASK) -> Arc<Self> {
        // SAFETY: FILE_OBJECT is plain data; all-zero is a valid start.
        let mut file: Box<FILE_OBJECT> = Box::new(unsafe { core::mem::zeroed() });
        file.Type = IO_TYPE_FILE;
        file.Size = core::mem::size_of::<FILE_OBJECT>() as CSHORT;
        file.DeviceObject = device;
        Arc::new(Self {
            file: Box::into_raw(file),
            device,
            access,
            state: Mutex::default(),
        })
    }

    /// Whether a request must wait before CLOSE: counts it.
    fn begin(&self) {
        lock(&self.state).outstanding += 1;
    }

    /// A request on it was finished; returns whether CLOSE is due now.
    fn end(&self) -> bool {
        let mut state = lock(&self.state);
        state.outstanding -= 1;
        let due = state.outstanding == 0 && state.close_requested && !state.close_sent;
        if due {
            state.close_sent = true;
        }
        due
    }
}

/// An open device (a file object the I/O manager created with
/// IRP_MJ_CREATE).
pub struct DeviceHandle {
    file: Arc<FileRecord>,
}

impl std::fmt::Debug for DeviceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceHandle")
            .field("device", &self.file.device)
            .field("file", &self.file.file)
            .field("access", &self.file.access)
            .finish()
    }
}

impl DeviceHandle {
    /// The device it is open on.
    pub fn device(&self) -> PDEVICE_OBJECT {
        self.file.device
    }

    /// Its file object.
    pub fn file_object(&self) -> PFILE_OBJECT {
        self.file.file
    }

    /// The access it was opened with.
    pub fn access(&self) -> ACCESS_MASK {
        self.file.access
    }
}

/// Opens `device` with `access`: sends IRP_MJ_CREATE and waits for it.
pub(crate) fn open(
    kernel: &Arc<Kernel>,
    device: PDEVICE_OBJECT,
    access: ACCESS_MASK,
) -> Result<DeviceHandle, HarnessError> {
    // SAFETY: the caller resolved a live device.
    let flags = unsafe { (*device).Flags };
    if flags & DO_DEVICE_INITIALIZING != 0 {
        // "If DO_DEVICE_INITIALIZING is set, the I/O Manager won't allow
        // another component to open the device by name" ("What does
        // DO_DEVICE_INITIALIZING really do?").
        return Err(HarnessError::Status(STATUS_NO_SUCH_DEVICE));
    }
    let file = FileRecord::new(device, access);
    let result = send(kernel, &file, IRP_MJ_CREATE, 0, &[], 0)?.wait(DEFAULT_IO_TIMEOUT)?;
    if NT_SUCCESS(result.status) {
        Ok(DeviceHandle { file })
    } else {
        Err(HarnessError::Status(result.status))
    }
}

/// Closes a handle: IRP_MJ_CLEANUP now, IRP_MJ_CLOSE once no IRP
/// references the file object (now, or from a system thread when the last
/// one is finished).
pub(crate) fn close(kernel: &Arc<Kernel>, handle: DeviceHandle) -> Result<(), HarnessError> {
    let file = handle.file;
    let result = send(kernel, &file, IRP_MJ_CLEANUP, 0, &[], 0)?.wait(DEFAULT_IO_TIMEOUT)?;
    if !NT_SUCCESS(result.status) && result.status != STATUS_INVALID_DEVICE_REQUEST {
        return Err(HarnessError::Status(result.status));
    }
    let close_now = {
        let mut state = lock(&file.state);
        state.close_requested = true;
        let now = state.outstanding == 0 && !state.close_sent;
        if now {
            state.close_sent = true;
        }
        now
    };
    if !close_now {
        return Ok(());
    }
    let result = send(kernel, &file, IRP_MJ_CLOSE, 0, &[], 0)?.wait(DEFAULT_IO_TIMEOUT)?;
    if !NT_SUCCESS(result.status) && result.status != STATUS_INVALID_DEVICE_REQUEST {
        return Err(HarnessError::Status(result.status));
    }
    Ok(())
}

/// Sends the deferred IRP_MJ_CLOSE of `file` from a system thread at
/// PASSIVE_LEVEL (its last request was finished in a completion walk, at
/// whatever IRQL).
fn close_later(kernel: &Arc<Kernel>, file: Arc<FileRecord>) {
    let owner = Arc::clone(kernel);
    let spawned = spawn_kernel_thread(kernel, "nt-sim deferred close".to_owned(), move || {
        if !super::driver::device_is_live(&owner, file.device) {
            return;
        }
        if let Ok(pending) = send(&owner, &file, IRP_MJ_CLOSE, 0, &[], 0) {
            let _ = pending.wait(DEFAULT_IO_TIMEOUT);
        }
    });
    if spawned.is_err() {
        eprintln!("nt::sim: cannot start the thread that sends a deferred IRP_MJ_CLOSE");
    }
}

// === Requests ===

/// The user-mode buffers of a METHOD_NEITHER request ([`NeitherIo::Guarded`]):
/// special-pool blocks (input copy, output), inaccessible while the request
/// is out of its dispatch routine.
#[derive(Clone, Copy)]
struct NeitherBuffers {
    input: usize,
    input_length: usize,
    output: usize,
    output_length: usize,
}

/// What the I/O manager keeps about a request until it finishes it.
struct Request {
    irp: usize,
    major: UCHAR,
    code: ULONG,
    method: ULONG,
    system_buffer: usize,
    input_length: usize,
    output_length: usize,
    neither: Option<NeitherBuffers>,
    file: Arc<FileRecord>,
}

#[derive(Default)]
struct RequestState {
    request: Option<Request>,
    /// `IofCallDriver` returned to the I/O manager.
    dispatch_returned: bool,
    /// The harness is inside `IoCancelIrp` on it: finishing waits.
    cancelling: bool,
    /// The completion walk reached the I/O manager.
    completed: bool,
    /// Finished: the outcome.
    result: Option<IoctlResult>,
}

/// The I/O manager's completion record of an IRP it built: the IRP record
/// points to it, the completion walk tells it when the IRP reached the top.
#[derive(Default)]
pub(crate) struct IoManagerCompletion {
    state: Mutex<RequestState>,
    signal: Condvar,
}

impl std::fmt::Debug for IoManagerCompletion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoManagerCompletion")
            .finish_non_exhaustive()
    }
}

impl IoManagerCompletion {
    /// The completion walk of `irp` passed the top location (the IRP is
    /// still allocated). A pending IRP is finished now (NT's completion
    /// APC); a synchronously completed one when its dispatch has returned.
    pub(crate) fn completed(&self, kernel: &Arc<Kernel>, irp: PIRP) {
        // SAFETY: the walk just finished on this live IRP.
        let pending = unsafe { (*irp).PendingReturned } != 0;
        let mut state = lock(&self.state);
        state.completed = true;
        if !state.cancelling && (pending || state.dispatch_returned) {
            self.finish(kernel, &mut state);
        }
    }

    /// `IofCallDriver` returned to the I/O manager.
    fn dispatch_returned(&self, kernel: &Arc<Kernel>) {
        let mut state = lock(&self.state);
        state.dispatch_returned = true;
        if let Some(request) = &state.request
            && let Some(neither) = request.neither
        {
            // Out of the requesting thread's dispatch routine: the user
            // buffers are no longer the driver's to touch.
            kernel.pool.set_out_of_context(neither.input, true);
            kernel.pool.set_out_of_context(neither.output, true);
        }
        if state.completed && !state.cancelling {
            self.finish(kernel, &mut state);
        }
    }

    /// Finishes the request (copy out, checks, frees, file reference).
    fn finish(&self, kernel: &Arc<Kernel>, state: &mut RequestState) {
        let Some(request) = state.request.take() else {
            return;
        };
        let irp = request.irp as PIRP;
        // SAFETY: the request's IRP is live until freed below.
        let io_status = unsafe { &(*irp).IoStatus };
        let (status, information) = (io_status.Status, io_status.Information);
        let result = request.finish(kernel, status, information);
        kernel.free_io_manager_irp(irp);
        state.result = Some(result);
        self.signal.notify_all();
        if request.major != IRP_MJ_CLOSE && request.file.end() {
            close_later(kernel, Arc::clone(&request.file));
        }
    }
}

impl Request {
    /// Copies the output out and frees the buffers; returns the outcome.
    fn finish(&self, kernel: &Kernel, status: NTSTATUS, information: ULONG_PTR) -> IoctlResult {
        let info = usize::try_from(information).unwrap_or(usize::MAX);
        let transfers = !NT_ERROR(status);
        if transfers
            && self.method == METHOD_BUFFERED
            && self.major == IRP_MJ_DEVICE_CONTROL
            && info > self.output_length
        {
            kernel.bugcheck_at(
                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                [
                    c9::INFORMATION_LARGER_THAN_OUTPUT,
                    self.irp as u64,
                    information,
                    self.output_length as u64,
                ],
                format!(
                    "IoStatus.Information ({information}) is larger than the output buffer \
                     ({} bytes) of IOCTL {:#x} completed with status {:#010x}: the I/O manager \
                     copies Information bytes for success and warning statuses",
                    self.output_length, self.code, status as u32
                ),
                None,
            );
        }
        let copy = if transfers {
            info.min(self.output_length)
        } else {
            0
        };
        let mut output = Vec::new();
        if self.system_buffer != 0 {
            // SAFETY: the system buffer holds max(input, output) bytes, at
            // least `output_length >= copy`.
            let bytes =
                unsafe { std::slice::from_raw_parts(self.system_buffer as *const u8, copy) };
            output.extend_from_slice(bytes);
            self.report_uninitialised(kernel, &output);
            let _ = kernel.free_block(self.system_buffer, LeakKind::Pool, None);
        }
        if let Some(neither) = self.neither {
            kernel.pool.set_out_of_context(neither.input, false);
            kernel.pool.set_out_of_context(neither.output, false);
            if neither.output_length > 0 {
                // SAFETY: the output block holds `output_length` bytes, made
                // accessible again just above.
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        neither.output as *const u8,
                        copy.min(neither.output_length),
                    )
                };
                output.extend_from_slice(bytes);
                let _ = kernel.free_block(neither.output, LeakKind::Pool, None);
            }
            if neither.input_length > 0 {
                let _ = kernel.free_block(neither.input, LeakKind::Pool, None);
            }
        }
        IoctlResult {
            status,
            information,
            output,
        }
    }

    /// Records an information leak if output bytes past the input still
    /// hold the fill pattern in runs of [`LEAK_RUN`] or more.
    fn report_uninitialised(&self, kernel: &Kernel, output: &[u8]) {
        let mut untouched = 0usize;
        let mut first = None;
        let mut run = 0usize;
        for (i, &b) in output.iter().enumerate().skip(self.input_length) {
            if b == FILL[i % FILL.len()] {
                run += 1;
                if run == LEAK_RUN {
                    untouched += LEAK_RUN;
                    first.get_or_insert(i + 1 - LEAK_RUN);
                } else if run > LEAK_RUN {
                    untouched += 1;
                }
            } else {
                run = 0;
            }
        }
        let Some(first) = first else { return };
        eprintln!(
            "nt::sim: IOCTL {:#x} returned {untouched} output byte(s) the driver never wrote \
             (uninitialised system buffer, from offset {first}): an information leak",
            self.code
        );
        kernel.record_leaks(vec![Leak {
            kind: LeakKind::InformationLeak,
            tag: SYSTEM_BUFFER_TAG,
            size: untouched as u64,
            address: first as u64,
            location: None,
        }]);
    }
}

/// An IRP the harness sent and has not seen finished yet.
pub struct PendingIrp {
    kernel: Arc<Kernel>,
    irp: PIRP,
    completion: Arc<IoManagerCompletion>,
    returned: NTSTATUS,
    finished: bool,
    /// When the harness cancelled it (the verifier's clock for 0xC4/0x135).
    cancelled_at: std::cell::Cell<Option<Instant>>,
    /// Whether 0xC4/0x135 was raised for it.
    cancel_reported: std::cell::Cell<bool>,
}

impl PendingIrp {
    /// The status the dispatch routine returned.
    pub fn returned_status(&self) -> NTSTATUS {
        self.returned
    }

    /// The IRP itself (for tests that inspect it while it is pending; it is
    /// freed when the request is finished).
    pub fn irp(&self) -> PIRP {
        self.irp
    }

    /// Whether the I/O manager has finished it.
    pub fn is_complete(&self) -> bool {
        lock(&self.completion.state).result.is_some()
    }

    /// Cancels it (`IoCancelIrp`, as `CancelIoEx` would). Returns whether a
    /// cancel routine was called.
    pub fn cancel(&self) -> bool {
        {
            let mut state = lock(&self.completion.state);
            if state.result.is_some() || state.completed {
                return false;
            }
            // Not finished while we cancel: the IRP stays allocated.
            state.cancelling = true;
        }
        let _guard = super::harness::EnterKernel::new(&self.kernel);
        if self.cancelled_at.get().is_none() {
            self.cancelled_at.set(Some(Instant::now()));
        }
        // SAFETY: the IRP is not finished (freed) while `cancelling` is set.
        let called = unsafe { super::io::io_manager_cancel(self.irp) != 0 };
        let mut state = lock(&self.completion.state);
        state.cancelling = false;
        if state.completed && state.dispatch_returned {
            self.completion.finish(&self.kernel, &mut state);
        }
        called
    }

    /// How long a cancelled IRP may take to complete (the session's
    /// `cancel_timeout_ms`).
    fn cancel_allowance(&self) -> Duration {
        Duration::from_millis(u64::from(self.kernel.config().cancel_timeout_ms))
    }

    /// Waits for completion up to `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Result<IoctlResult, HarnessError> {
        match self.wait_inner(timeout) {
            Some(result) => Ok(result),
            None => Err(HarnessError::Timeout),
        }
    }

    /// Waits up to `timeout`; a cancelled IRP that does not complete
    /// within the verifier's allowance after its cancel is 0xC4/0x135
    /// (Driver Verifier's "the canceled IRP did not complete in the
    /// expected time": parameter 2 the IRP, 3 the milliseconds allowed).
    fn wait_inner(&mut self, timeout: Duration) -> Option<IoctlResult> {
        let mut deadline = Instant::now() + timeout;
        let cancel_deadline = self
            .cancelled_at
            .get()
            .map(|at| at + self.cancel_allowance());
        if let Some(cancel_deadline) = cancel_deadline {
            deadline = deadline.min(cancel_deadline);
        }
        let mut state = lock(&self.completion.state);
        while state.result.is_none() {
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                if cancel_deadline.is_some_and(|d| now >= d) {
                    self.cancel_not_completed();
                }
                return None;
            }
            state = self
                .completion
                .signal
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        self.finished = true;
        state.result.take()
    }

    /// Raises 0xC4/0x135 for this IRP (once).
    fn cancel_not_completed(&self) {
        if self.cancel_reported.replace(true) {
            return;
        }
        let allowance = self.cancel_allowance();
        self.kernel.bugcheck_at(
            DRIVER_VERIFIER_DETECTED_VIOLATION,
            [
                c4::CANCELLED_IRP_NOT_COMPLETED,
                self.irp as u64,
                allowance.as_millis() as u64,
                0,
            ],
            format!(
                "the cancelled IRP {:#x} did not complete within {} ms of IoCancelIrp (no \
                 cancel routine, or one that neither completes it nor has it completed)",
                self.irp as usize,
                allowance.as_millis()
            ),
            None,
        );
    }
}

impl Drop for PendingIrp {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Like a thread exiting with I/O outstanding: cancel, then wait
        // (0xC4/0x135 past the verifier's allowance; the IRP's memory is
        // then left to the driver).
        self.cancel();
        let allowance = self.cancel_allowance();
        let _ = self.wait_inner(allowance + Duration::from_millis(1));
    }
}

impl DeviceHandle {
    /// Sends one request on this handle's file object.
    pub(crate) fn send(
        &self,
        kernel: &Arc<Kernel>,
        major: UCHAR,
        code: ULONG,
        input: &[u8],
        output_length: usize,
    ) -> Result<PendingIrp, HarnessError> {
        send(kernel, &self.file, major, code, input, output_length)
    }
}

/// Builds and sends one request on `file` as the I/O manager does.
pub(crate) fn send(
    kernel: &Arc<Kernel>,
    file: &Arc<FileRecord>,
    major: UCHAR,
    code: ULONG,
    input: &[u8],
    output_length: usize,
) -> Result<PendingIrp, HarnessError> {
    let method = if major == IRP_MJ_DEVICE_CONTROL {
        METHOD_FROM_CTL_CODE(code)
    } else {
        METHOD_BUFFERED
    };
    if method == METHOD_IN_DIRECT || method == METHOD_OUT_DIRECT {
        return Err(HarnessError::Unsupported(
            "METHOD_IN_DIRECT / METHOD_OUT_DIRECT IOCTLs",
        ));
    }
    if method == METHOD_NEITHER && kernel.config().neither_io == NeitherIo::Refuse {
        return Err(HarnessError::Unsupported(
            "METHOD_NEITHER IOCTLs (user addresses a Rust driver cannot probe; opt in with \
             SimConfig::neither_io = NeitherIo::Guarded)",
        ));
    }
    if major == IRP_MJ_DEVICE_CONTROL {
        // NtDeviceIoControlFile: the code's access bits against the handle.
        let required = (code >> 14) & 3;
        let missing = (required & FILE_READ_ACCESS != 0 && file.access & FILE_READ_DATA == 0)
            || (required & FILE_WRITE_ACCESS != 0 && file.access & FILE_WRITE_DATA == 0);
        if missing {
            return Err(HarnessError::Status(STATUS_ACCESS_DENIED));
        }
    }
    let (Ok(input_length), Ok(out_length)) =
        (ULONG::try_from(input.len()), ULONG::try_from(output_length))
    else {
        return Err(HarnessError::Status(STATUS_INVALID_PARAMETER));
    };
    let device = file.device;
    if !super::driver::device_is_live(kernel, device) {
        return Err(HarnessError::NotFound("device deleted".to_owned()));
    }
    // SAFETY: the device is live.
    let stack = unsafe { (*device).StackSize };
    let completion = Arc::new(IoManagerCompletion::default());
    let irp = kernel.allocate_io_manager_irp(stack, Arc::clone(&completion));
    if irp.is_null() {
        return Err(HarnessError::Status(STATUS_INSUFFICIENT_RESOURCES));
    }
    let mut system_buffer = 0usize;
    let mut neither = None;
    let mut type3: PVOID = core::ptr::null_mut();
    let mut flags = match major {
        IRP_MJ_CREATE => IRP_CREATE_OPERATION | IRP_SYNCHRONOUS_API,
        IRP_MJ_CLOSE => IRP_CLOSE_OPERATION | IRP_SYNCHRONOUS_API,
        IRP_MJ_CLEANUP => IRP_SYNCHRONOUS_API,
        _ => 0,
    };
    let fail = |kernel: &Kernel, blocks: &[usize]| {
        for &b in blocks.iter().filter(|&&b| b != 0) {
            let _ = kernel.free_block(b, LeakKind::Pool, None);
        }
        kernel.free_io_manager_irp(irp);
        HarnessError::Status(STATUS_INSUFFICIENT_RESOURCES)
    };
    if major == IRP_MJ_DEVICE_CONTROL && method == METHOD_BUFFERED {
        let size = input.len().max(output_length);
        if size > 0 {
            system_buffer = allocate_buffer(kernel, size, SYSTEM_BUFFER_TAG);
            if system_buffer == 0 {
                return Err(fail(kernel, &[]));
            }
            // SAFETY: `size` bytes at the fresh buffer: the input, then the
            // fill pattern (NT leaves it uninitialised).
            let buffer = unsafe { std::slice::from_raw_parts_mut(system_buffer as *mut u8, size) };
            buffer[..input.len()].copy_from_slice(input);
            for (i, b) in buffer.iter_mut().enumerate().skip(input.len()) {
                *b = FILL[i % FILL.len()];
            }
            flags |= IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER;
            if output_length > 0 {
                flags |= IRP_INPUT_OPERATION;
            }
        }
    } else if major == IRP_MJ_DEVICE_CONTROL {
        let input_block = if input.is_empty() {
            0
        } else {
            allocate_buffer(kernel, input.len(), USER_BUFFER_TAG)
        };
        let output_block = if output_length == 0 {
            0
        } else {
            allocate_buffer(kernel, output_length, USER_BUFFER_TAG)
        };
        if (!input.is_empty() && input_block == 0) || (output_length > 0 && output_block == 0) {
            return Err(fail(kernel, &[input_block, output_block]));
        }
        if input_block != 0 {
            // SAFETY: the fresh block holds `input.len()` bytes.
            unsafe {
                core::ptr::copy_nonoverlapping(input.as_ptr(), input_block as *mut u8, input.len())
            };
        }
        type3 = input_block as PVOID;
        // SAFETY: live IRP we own.
        unsafe { (*irp).UserBuffer = output_block as PVOID };
        neither = Some(NeitherBuffers {
            input: input_block,
            input_length: input.len(),
            output: output_block,
            output_length,
        });
    }
    // SAFETY: a live IRP of ours, not yet sent.
    let r = unsafe { &mut *irp };
    r.SystemBuffer = system_buffer as PVOID;
    r.Flags = flags;
    r.RequestorMode = UserMode;
    r.Tail.OriginalFileObject = file.file;
    // SAFETY: PsGetCurrentThread has no preconditions.
    r.Tail.Thread = unsafe { super::thread::PsGetCurrentThread() }.cast();
    // SAFETY: the IRP has `stack >= 1` locations; the next is the first the
    // driver sees.
    let sl = unsafe { IoGetNextIrpStackLocation(irp) };
    // SAFETY: the location is part of our live IRP.
    let sl = unsafe { &mut *sl };
    sl.MajorFunction = major;
    sl.FileObject = file.file;
    if major == IRP_MJ_DEVICE_CONTROL {
        sl.Parameters.DeviceIoControl = IO_STACK_LOCATION_DEVICE_IO_CONTROL {
            OutputBufferLength: out_length,
            _pad0: 0,
            InputBufferLength: input_length,
            _pad1: 0,
            IoControlCode: code,
            _pad2: 0,
            Type3InputBuffer: type3,
        };
    }
    lock(&completion.state).request = Some(Request {
        irp: irp as usize,
        major,
        code,
        method,
        system_buffer,
        input_length: input.len(),
        output_length,
        neither,
        file: Arc::clone(file),
    });
    if major != IRP_MJ_CLOSE {
        file.begin();
    }
    let level = irql::set(PASSIVE_LEVEL);
    // A user-mode request: the dispatch routine runs in the requesting
    // process's context (handles it opens without OBJ_KERNEL_HANDLE go to
    // that process's table).
    let returned = in_user_context(|| {
        // SAFETY: a live device and our fully built IRP.
        unsafe { IofCallDriver(device, irp) }
    });
    irql::set(level);
    completion.dispatch_returned(kernel);
    Ok(PendingIrp {
        kernel: Arc::clone(kernel),
        irp,
        completion,
        returned,
        finished: false,
        cancelled_at: std::cell::Cell::new(None),
        cancel_reported: std::cell::Cell::new(false),
    })
}

/// A system-owned pool block for the I/O manager (0 when out of memory).
fn allocate_buffer(kernel: &Kernel, size: usize, tag: u32) -> usize {
    kernel
        .pool
        .allocate(size, tag, LeakKind::Pool, false, SYSTEM_OWNER, false, None) as usize
}

// === Buffers as a user-mode caller describes them ===

/// One buffer of a `DeviceIoControl` call as the caller passes it: a
/// pointer and a length, valid or not (the fuzz tests' null, kernel-address
/// and unmapped pointers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserBuffer<'a> {
    /// A valid user buffer: for input its bytes, for output its length
    /// (`Data` of an output buffer gives only its length).
    Data(&'a [u8]),
    /// A valid output buffer of this many bytes.
    Output(usize),
    /// A NULL pointer with this length.
    Null(usize),
    /// A kernel-mode address (devctl uses 0xFFFFFC00) with this length.
    KernelAddress(usize),
    /// A user address with nothing mapped behind it, with this length.
    Unmapped(usize),
}

impl UserBuffer<'_> {
    /// The length the caller claims.
    pub fn length(&self) -> usize {
        match *self {
            Self::Data(d) => d.len(),
            Self::Output(n) | Self::Null(n) | Self::KernelAddress(n) | Self::Unmapped(n) => n,
        }
    }

    /// Whether `length()` bytes are really there (a zero-length buffer is
    /// never touched, whatever its pointer).
    pub fn valid(&self) -> bool {
        self.length() == 0 || matches!(self, Self::Data(_) | Self::Output(_))
    }
}

/// Builds a `DeviceIoControl` from a user-mode caller's buffers as
/// `NtDeviceIoControlFile` does before any IRP exists: the access bits of
/// the code against the handle, then, for the buffered and direct methods,
/// `ProbeForRead` of the input and `ProbeForWrite` of the output, whose
/// failure is STATUS_ACCESS_VIOLATION returned to the caller without the
/// driver seeing anything (the probe's exception is caught by the system
/// service). A zero length is never probed, whatever the pointer.
/// METHOD_NEITHER passes the pointers unprobed: the sim hands the driver
/// only valid (guarded) ones and refuses the rest as unsupported, since a
/// host dereference of a bogus pointer cannot be turned into a bugcheck.
pub(crate) fn send_user(
    kernel: &Arc<Kernel>,
    handle: &DeviceHandle,
    code: ULONG,
    input: UserBuffer<'_>,
    output: UserBuffer<'_>,
) -> Result<PendingIrp, HarnessError> {
    let file = &handle.file;
    let required = (code >> 14) & 3;
    let missing = (required & FILE_READ_ACCESS != 0 && file.access & FILE_READ_DATA == 0)
        || (required & FILE_WRITE_ACCESS != 0 && file.access & FILE_WRITE_DATA == 0);
    if missing {
        return Err(HarnessError::Status(STATUS_ACCESS_DENIED));
    }
    let method = METHOD_FROM_CTL_CODE(code);
    if method != METHOD_NEITHER && (!input.valid() || !output.valid()) {
        return Err(HarnessError::Status(STATUS_ACCESS_VIOLATION));
    }
    if method == METHOD_NEITHER && (!input.valid() || !output.valid()) {
        return Err(HarnessError::Unsupported(
            "METHOD_NEITHER with an invalid user pointer (passed unprobed to the driver)",
        ));
    }
    let bytes: &[u8] = match input {
        UserBuffer::Data(d) => d,
        _ => &[],
    };
    send(
        kernel,
        file,
        IRP_MJ_DEVICE_CONTROL,
        code,
        bytes,
        output.length(),
    )
}
