//! `IOCTL_ECHO_RECEIVE_DATAGRAM`: the caller's own IRP, passed down to
//! `WskReceiveFrom` on the UDP socket (irp-future's passed-down source in
//! reclaim mode).
//!
//! The dispatch routine validates the buffers, marks the IRP pending and
//! spawns a task; the task describes the IRP's system buffer with an MDL
//! (the datagram lands right after the [`DatagramHeader`], with no copy),
//! forwards the IRP to WSK with a completion routine that stops its
//! completion (STATUS_MORE_PROCESSING_REQUIRED), and when WSK completes it
//! writes the header and completes the IRP upward itself. Nothing else
//! owns the IRP meanwhile: the caller cancels it with `CancelIoEx`
//! (`IoCancelIrp` reaches WSK's cancel routine through the IRP, the
//! receive completes with STATUS_CANCELLED and so does the IOCTL), and
//! closing the UDP socket at unload completes it the same way.

use core::future::Future;
use core::sync::atomic::Ordering;

use ::wsk::SockAddrBuf;
use echo_ioctl::DatagramHeader;
use irp_future::{IrpOp, Submission};
use nt::access::*;
use nt::wsk::*;
use nt::*;

use crate::driver::SharedRef;

/// The IRP, moved into the task.
struct IrpPtr(PIRP);

/// Our control device, moved into the task.
#[derive(Clone, Copy)]
struct DevicePtr(PDEVICE_OBJECT);

// SAFETY: a device object may be referenced from any thread; ours lives
// until Unload, after every task is gone.
unsafe impl Send for DevicePtr {}

// SAFETY: an IRP passed to us may be completed from any thread; only the
// task touches it from now on.
unsafe impl Send for IrpPtr {}

/// Completes a passed-down IRP we still own.
///
/// # Safety
/// `irp` was passed to our dispatch routine, is ours, and is completed
/// exactly once, here.
unsafe fn complete(irp: PIRP, status: NTSTATUS, information: usize) {
    // SAFETY: the caller's contract: a live IRP of ours.
    unsafe { set_irp_status(irp, status) };
    // SAFETY: as above.
    unsafe { set_irp_information(irp, information as ULONG_PTR) };
    // SAFETY: as above; completed once.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
}

/// Starts the receive for a validated IOCTL: `output_length` is between
/// [`DatagramHeader::SIZE`] and `MAX_DATAGRAM_OUTPUT`, `slot` 0 (IPv4) or 1
/// (IPv6). Returns STATUS_PENDING (the IRP was marked pending; it is
/// completed by the task, or here if no task can be made).
/// IRQL <= DISPATCH_LEVEL (called from the dispatch routine at PASSIVE).
///
/// # Safety
/// `irp` was passed to our dispatch routine with its METHOD_BUFFERED
/// system buffer of at least `output_length` bytes, our stack location is
/// current, the device's stack size leaves a location for WSK, and the
/// caller gives the IRP up and returns this function's status.
pub unsafe fn start(
    shared: SharedRef,
    device: PDEVICE_OBJECT,
    irp: PIRP,
    output_length: usize,
    slot: usize,
) -> NTSTATUS {
    // SAFETY: our stack location is current (the caller's contract).
    unsafe { IoMarkIrpPending(irp) };
    match shared.spawner.spawn(receive(
        shared,
        DevicePtr(device),
        IrpPtr(irp),
        output_length,
        slot,
    )) {
        Ok(task) => task.detach(),
        Err(error) => {
            let status = error.status();
            // The task never ran: the IRP is still ours (the future only
            // carries its address).
            drop(error.into_future());
            // SAFETY: ours, marked pending, completed once.
            unsafe { complete(irp, status, 0) };
        }
    }
    STATUS_PENDING
}

/// What WSK may touch until it completes the IRP: the MDL of the system
/// buffer, the `WSK_BUF` describing the room after the header, and the
/// out-parameters.
/// A provider's `WskReceiveFrom`.
type ReceiveFrom = PFN_WSK_RECEIVE_FROM;

struct ReceiveRes {
    socket: PWSK_SOCKET,
    /// The socket's `WskReceiveFrom` (checked present before the
    /// operation is made, so the submit always hands the IRP over).
    receive_from: unsafe extern "C" fn(
        PWSK_SOCKET,
        PWSK_BUF,
        ULONG,
        PSOCKADDR,
        PULONG,
        PCMSGHDR,
        PULONG,
        PIRP,
    ) -> NTSTATUS,
    mdl: Mdl,
    wsk: WSK_BUF,
    remote: SockAddrBuf,
    control_length: ULONG,
    control_flags: ULONG,
}

// SAFETY: the socket pointer is only passed to the thread-safe provider;
// the MDL describes the IRP's system buffer, which lives as long as the
// IRP (and the IRP is ours until we complete it, after these resources
// are taken back).
unsafe impl Send for ReceiveRes {}

/// An MDL we allocated, freed on drop (IRQL <= DISPATCH_LEVEL).
struct Mdl(PMDL);

impl Drop for Mdl {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: our MDL from IoAllocateMdl, no longer used by WSK
            // (the resources are dropped after completion), freed once.
            unsafe { IoFreeMdl(self.0) };
        }
    }
}

fn submit(irp: PIRP, r: &mut ReceiveRes) -> Submission {
    // SAFETY: WskReceiveFrom (read from the socket's dispatch table by
    // `prepare`) with the passed-down IRP; the socket was published by its
    // task, which owns it and runs on the executor thread like this submit
    // call: it is open for the whole call. The WSK_BUF, its MDL and every
    // out-parameter live in the resources until the IRP completes
    // (irp-future keeps them); no control buffer. Always handed over: the
    // operation's routine is registered with IoSetCompletionRoutineEx,
    // which must run.
    Submission::Submitted(unsafe {
        (r.receive_from)(
            r.socket,
            &mut r.wsk,
            0,
            r.remote.as_mut_ptr(),
            &mut r.control_length,
            core::ptr::null_mut(),
            &mut r.control_flags,
            irp,
        )
    })
}

/// The socket's `WskReceiveFrom`, or `None` if its provider has none.
///
/// # Safety
/// `socket` is an open WSK datagram socket.
unsafe fn receive_from_of(socket: PWSK_SOCKET) -> ReceiveFrom {
    // SAFETY: the first field of every provider socket is its dispatch
    // table, the datagram category's for a datagram socket (caller's
    // contract).
    let dispatch = unsafe { (*socket).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>() };
    // SAFETY: the provider's table, valid while the socket is open; copied.
    unsafe { (*dispatch).WskReceiveFrom }
}

async fn receive(
    shared: SharedRef,
    device: DevicePtr,
    irp: IrpPtr,
    output_length: usize,
    slot: usize,
) {
    let Some(mut op) = prepare(shared, device, irp, output_length, slot) else {
        return;
    };
    let stats = &shared.stats;
    // The gauge counts the IRP once the first poll has handed it to WSK
    // (or WSK has already completed it), never before.
    let mut counted = false;
    let done = core::future::poll_fn(|cx| {
        let poll = core::pin::Pin::new(&mut op).poll(cx);
        if !counted {
            counted = true;
            stats.receives_pending.bump();
        }
        poll
    })
    .await;
    stats.receives_pending.drop_one();
    // A datagram longer than the room completes with STATUS_BUFFER_OVERFLOW
    // (a warning): the bytes that fit are there, the rest is cut; the
    // IOCTL reports that with the TRUNCATED flag and succeeds.
    let truncated = done.status == STATUS_BUFFER_OVERFLOW;
    if !NT_SUCCESS(done.status) && !truncated {
        done.irp.complete(done.status, 0);
        return;
    }
    let r = done.resources;
    let room = output_length - DatagramHeader::SIZE;
    let copied = (done.information as usize).min(room);
    let Some(sender) = r.remote.get() else {
        stats.datagrams_received.bump();
        stats.datagrams_dropped.bump();
        done.irp.complete(STATUS_INVALID_ADDRESS, 0);
        return;
    };
    drop(r.mdl);
    let flags = if truncated || r.control_flags & MSG_TRUNC != 0 {
        DatagramHeader::TRUNCATED
    } else {
        0
    };
    let header = DatagramHeader::from_sender(sender, copied as u32, flags);
    // SAFETY: the IRP is ours again (reclaimed), METHOD_BUFFERED.
    let system_buffer = unsafe { irp_system_buffer(done.irp.as_ptr()) }.cast::<u8>();
    // SAFETY: its system buffer holds at least DatagramHeader::SIZE bytes
    // (checked at dispatch) and nobody else touches it until we complete
    // the IRP.
    let out = unsafe { core::slice::from_raw_parts_mut(system_buffer, DatagramHeader::SIZE) };
    let _ = header.encode(out);
    stats.datagrams_received.bump();
    stats.datagrams_delivered.bump();
    done.irp
        .complete(STATUS_SUCCESS, (DatagramHeader::SIZE + copied) as ULONG_PTR);
}

type ReceiveOp = IrpOp<ReceiveRes, irp_future::Reclaim, fn(PIRP, &mut ReceiveRes) -> Submission>;

/// Builds the forwarded receive, or completes the IRP if it cannot.
fn prepare(
    shared: SharedRef,
    device: DevicePtr,
    irp: IrpPtr,
    output_length: usize,
    slot: usize,
) -> Option<ReceiveOp> {
    let irp = irp.0;
    let socket = shared.udp[slot].load(Ordering::Acquire);
    if socket.is_null() {
        // SAFETY: ours (start's contract), completed once.
        unsafe { complete(irp, STATUS_INVALID_DEVICE_STATE, 0) };
        return None;
    }
    // SAFETY: a published socket is open while its task runs (see submit).
    let Some(receive_from) = (unsafe { receive_from_of(socket) }) else {
        // Decided before the operation exists: its guarded routine could
        // not be left unrun.
        // SAFETY: ours (start's contract), completed once.
        unsafe { complete(irp, STATUS_NOT_SUPPORTED, 0) };
        return None;
    };
    // SAFETY: a METHOD_BUFFERED IRP of ours: the system buffer holds
    // `output_length` bytes of non-paged pool.
    let system_buffer = unsafe { irp_system_buffer(irp) }.cast::<u8>();
    let room = output_length - DatagramHeader::SIZE;
    let mdl = if room == 0 {
        Mdl(core::ptr::null_mut())
    } else {
        // SAFETY: the whole system buffer, `output_length` bytes (checked
        // by the dispatch routine to fit a ULONG); no IRP association.
        let mdl = unsafe {
            IoAllocateMdl(
                system_buffer.cast(),
                output_length as ULONG,
                FALSE,
                FALSE,
                core::ptr::null_mut(),
            )
        };
        if mdl.is_null() {
            // SAFETY: ours, completed once.
            unsafe { complete(irp, STATUS_INSUFFICIENT_RESOURCES, 0) };
            return None;
        }
        // SAFETY: our fresh MDL over non-paged pool (the system buffer).
        unsafe { MmBuildMdlForNonPagedPool(mdl) };
        Mdl(mdl)
    };
    let resources = ReceiveRes {
        socket,
        receive_from,
        wsk: WSK_BUF {
            Mdl: mdl.0,
            Offset: if room == 0 {
                0
            } else {
                DatagramHeader::SIZE as ULONG
            },
            Length: room as SIZE_T,
        },
        mdl,
        remote: SockAddrBuf::empty(),
        control_length: 0,
        control_flags: 0,
    };
    let submit: fn(PIRP, &mut ReceiveRes) -> Submission = submit;
    // SAFETY: the IRP was passed to our dispatch routine, which marked it
    // pending, returned STATUS_PENDING and gave it to this task; our
    // device's stack size leaves the next location for WSK. `submit` hands
    // the IRP to exactly one provider function and says so with its status
    // (Submitted), or says NotSubmitted without handing it over; WSK uses
    // the resources only until it completes the IRP.
    let op = unsafe { IrpOp::reclaim(irp, resources, submit) };
    // The routine is registered with IoSetCompletionRoutineEx: the device
    // (and so the image) stays referenced until the routine has returned.
    // SAFETY: our control device, live until Unload deletes it, which
    // happens only after the executor shut down (this task included).
    Some(unsafe { op.unload_guard(device.0) })
}
