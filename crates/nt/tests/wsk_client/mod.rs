//! A raw WSK client for the tests, written the way a C driver (echosrv)
//! drives the NPI: one IRP per request from `IoAllocateIrp(1, FALSE)` with a
//! completion routine (TRUE, TRUE, TRUE) that records the result, signals a
//! KEVENT and returns STATUS_MORE_PROCESSING_REQUIRED; buffers in non-paged
//! pool described by MDLs built with `MmBuildMdlForNonPagedPool`.
//!
//! Every helper checks the WSK completion rule on the way: a call that does
//! not return STATUS_PENDING has already run the completion routine, with
//! the same status.
#![allow(dead_code, clippy::multiple_unsafe_ops_per_block)]

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::thread::ThreadId;
use std::time::Duration;

use nt::access::*;
use nt::sim::CompletionPolicy;
use nt::wsk::*;
use nt::*;

/// How long a test waits for any completion.
pub const WAIT: Duration = Duration::from_secs(10);
/// Pool tag of the test client's buffers.
pub const TAG: ULONG = u32::from_le_bytes(*b"WskT");

/// The completion policies every I/O test runs under.
pub const POLICIES: [CompletionPolicy; 2] =
    [CompletionPolicy::Inline, CompletionPolicy::ForcePending];

/// A session under `policy`.
pub fn session(policy: CompletionPolicy) -> nt::sim::Session {
    let session = nt::sim::Session::boot();
    session.set_completion_policy(policy);
    session
}

/// Ends `session`, asserting a clean report.
pub fn finish(session: nt::sim::Session) {
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}

/// The single bugcheck of `report`: 0xC4 with parameter 1 `code`; returns
/// its description.
pub fn only_violation(report: &nt::sim::VerifierReport, code: u64) -> String {
    assert_eq!(
        report.codes(),
        vec![nt::sim::verifier::DRIVER_VERIFIER_DETECTED_VIOLATION],
        "{report}"
    );
    let bugcheck = &report.bugchecks[0];
    assert_eq!(bugcheck.parameters[0], code, "{bugcheck}");
    bugcheck.description.clone()
}

/// Loopback addresses.
pub fn loopback(v6: bool) -> SocketAddr {
    if v6 {
        "[::1]:0".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    }
}

// === Requests ===

/// What a completion routine saw.
pub struct Done {
    event: KEVENT,
    pub status: AtomicI32,
    pub information: AtomicU64,
    pub calls: AtomicU32,
    pub irql: AtomicU8,
    pub pending_returned: AtomicU8,
    pub thread: Mutex<Option<ThreadId>>,
}

// SAFETY: the KEVENT is only touched through the sim's Ke functions, which
// access it atomically; the rest are atomics and a mutex.
unsafe impl Sync for Done {}
// SAFETY: as above.
unsafe impl Send for Done {}

unsafe extern "C" fn on_complete(_device: PDEVICE_OBJECT, irp: PIRP, context: PVOID) -> NTSTATUS {
    // SAFETY: the context is the request's live `Done`; the IRP is live
    // during its completion routine.
    unsafe {
        let done = &*(context as *const Done);
        done.status.store(irp_status(irp), Ordering::SeqCst);
        done.information
            .store(irp_information(irp), Ordering::SeqCst);
        done.irql.store(KeGetCurrentIrql(), Ordering::SeqCst);
        done.pending_returned
            .store(u8::from(irp_pending_returned(irp)), Ordering::SeqCst);
        *done.thread.lock().unwrap() = Some(std::thread::current().id());
        done.calls.fetch_add(1, Ordering::SeqCst);
        KeSetEvent((&raw const done.event).cast_mut(), 0, FALSE);
    }
    STATUS_MORE_PROCESSING_REQUIRED
}

/// One IRP of the client's, reused for request after request.
pub struct Request {
    irp: PIRP,
    pub done: Box<Done>,
}

// SAFETY: the IRP is the test's own and only handed to the provider by
// the thread holding the request.
unsafe impl Send for Request {}

impl Request {
    /// `IoAllocateIrp(1, FALSE)`; Err when the IRP fault plan refuses.
    pub fn try_new() -> Result<Request, NTSTATUS> {
        // SAFETY: test code in a session at PASSIVE_LEVEL.
        let irp = unsafe { IoAllocateIrp(1, FALSE) };
        if irp.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        let mut done = Box::new(Done {
            // SAFETY: KEVENT is plain data; KeInitializeEvent sets it up.
            event: unsafe { std::mem::zeroed() },
            status: AtomicI32::new(0),
            information: AtomicU64::new(0),
            calls: AtomicU32::new(0),
            irql: AtomicU8::new(0),
            pending_returned: AtomicU8::new(0),
            thread: Mutex::new(None),
        });
        // SAFETY: the event is writable and nobody waits on it.
        unsafe { KeInitializeEvent(&mut done.event, NotificationEvent, FALSE) };
        Ok(Request { irp, done })
    }

    /// As [`Self::try_new`], panicking on failure.
    pub fn new() -> Request {
        Request::try_new().expect("IoAllocateIrp")
    }

    /// Re-initialises the IRP for a new request and sets the completion
    /// routine; returns the IRP to pass to WSK.
    pub fn arm(&mut self) -> PIRP {
        // SAFETY: our IRP, not in flight (the previous request completed).
        unsafe {
            IoReuseIrp(self.irp, STATUS_UNSUCCESSFUL);
            KeClearEvent(&mut self.done.event);
            IoSetCompletionRoutine(
                self.irp,
                Some(on_complete),
                (&raw const *self.done).cast_mut().cast(),
                TRUE,
                TRUE,
                TRUE,
            );
        }
        self.done.calls.store(0, Ordering::SeqCst);
        self.irp
    }

    /// The IRP.
    pub fn irp(&self) -> PIRP {
        self.irp
    }

    /// Waits up to `timeout` for the completion routine.
    pub fn wait_for(&self, timeout: Duration) -> Option<(NTSTATUS, u64)> {
        let mut interval = LARGE_INTEGER {
            QuadPart: -((timeout.as_nanos() / 100) as i64),
        };
        // SAFETY: the event lives in `self`; PASSIVE_LEVEL test thread.
        let waited = unsafe {
            KeWaitForSingleObject(
                (&raw const self.done.event).cast_mut().cast(),
                Executive,
                KernelMode,
                FALSE,
                &mut interval,
            )
        };
        (waited == STATUS_SUCCESS).then(|| self.result())
    }

    /// The recorded result.
    pub fn result(&self) -> (NTSTATUS, u64) {
        (
            self.done.status.load(Ordering::SeqCst),
            self.done.information.load(Ordering::SeqCst),
        )
    }

    /// Whether the completion routine ran.
    pub fn completed(&self) -> bool {
        self.done.calls.load(Ordering::SeqCst) > 0
    }

    /// After a WSK call returned `returned`: checks the completion rule
    /// and waits for the routine if it pended. Returns the IRP's result.
    pub fn finish(&self, returned: NTSTATUS) -> (NTSTATUS, u64) {
        if returned != STATUS_PENDING {
            assert_eq!(
                self.done.calls.load(Ordering::SeqCst),
                1,
                "WSK returned {returned:#x} without having completed the IRP"
            );
            let (status, information) = self.result();
            assert_eq!(status, returned, "returned status != IoStatus.Status");
            return (status, information);
        }
        let result = self
            .wait_for(WAIT)
            .unwrap_or_else(|| panic!("no completion within {WAIT:?}"));
        assert_eq!(self.done.calls.load(Ordering::SeqCst), 1, "completed twice");
        result
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return; // the test failed: leak it rather than risk more
        }
        // SAFETY: our IRP, completed (or never sent).
        unsafe { IoFreeIrp(self.irp) };
    }
}

// === Buffers ===

/// Non-paged pool described by an MDL chain (one MDL per `piece` bytes).
pub struct Buffer {
    ptr: *mut u8,
    len: usize,
    mdl: PMDL,
}

// SAFETY: the memory and MDLs are the test's own.
unsafe impl Send for Buffer {}

impl Buffer {
    /// `len` zero bytes, one MDL.
    pub fn new(len: usize) -> Buffer {
        Buffer::try_chained(len, len.max(1)).expect("buffer")
    }

    /// `len` bytes described by MDLs of at most `piece` bytes each.
    pub fn try_chained(len: usize, piece: usize) -> Result<Buffer, NTSTATUS> {
        // SAFETY: PASSIVE_LEVEL test code.
        let ptr =
            unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, len.max(1) as SIZE_T, TAG) }.cast::<u8>();
        if ptr.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        let mut buffer = Buffer {
            ptr,
            len,
            mdl: core::ptr::null_mut(),
        };
        let mut last: PMDL = core::ptr::null_mut();
        let mut at = 0;
        while at < len {
            let n = piece.min(len - at);
            // SAFETY: the MDL describes our pool block.
            let mdl = unsafe {
                IoAllocateMdl(
                    ptr.add(at).cast(),
                    n as ULONG,
                    FALSE,
                    FALSE,
                    core::ptr::null_mut(),
                )
            };
            if mdl.is_null() {
                return Err(STATUS_INSUFFICIENT_RESOURCES);
            }
            // SAFETY: non-paged pool; a fresh MDL of ours.
            unsafe { MmBuildMdlForNonPagedPool(mdl) };
            if last.is_null() {
                buffer.mdl = mdl;
            } else {
                // SAFETY: the previous MDL of our chain.
                unsafe { set_mdl_next(last, mdl) };
            }
            last = mdl;
            at += n;
        }
        Ok(buffer)
    }

    /// A buffer holding `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Buffer {
        let mut buffer = Buffer::new(bytes.len());
        buffer.bytes_mut().copy_from_slice(bytes);
        buffer
    }

    /// The whole buffer as a `WSK_BUF`.
    pub fn wsk_buf(&self) -> WSK_BUF {
        self.wsk_buf_at(0, self.len)
    }

    /// `length` bytes from `offset` (in the first MDL) as a `WSK_BUF`.
    pub fn wsk_buf_at(&self, offset: usize, length: usize) -> WSK_BUF {
        WSK_BUF {
            Mdl: self.mdl,
            Offset: offset as ULONG,
            Length: length as SIZE_T,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: our pool block of `len` bytes.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let mut mdl = self.mdl;
        while !mdl.is_null() {
            // SAFETY: our MDL chain, no longer used by any request.
            let next = unsafe { mdl_next(mdl) };
            // SAFETY: as above.
            unsafe { IoFreeMdl(mdl) };
            mdl = next;
        }
        // SAFETY: our pool block.
        unsafe { ExFreePoolWithTag(self.ptr.cast(), TAG) };
    }
}

/// Reads the bytes an MDL chain describes (`WSK_BUF` of an indication),
/// the way a client does: `MmGetSystemAddressForMdlSafe` per MDL.
pub fn read_wsk_buf(buf: &WSK_BUF) -> Vec<u8> {
    let mut out = Vec::new();
    let mut skip = buf.Offset as usize;
    let mut left = buf.Length as usize;
    let mut mdl = buf.Mdl;
    while left > 0 && !mdl.is_null() {
        // SAFETY: a live MDL of a provider indication or request.
        unsafe {
            let count = MmGetMdlByteCount(mdl) as usize;
            let base = MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority as ULONG).cast::<u8>();
            assert!(!base.is_null());
            if skip < count {
                let n = (count - skip).min(left);
                out.extend_from_slice(core::slice::from_raw_parts(base.add(skip), n));
                left -= n;
                skip = 0;
            } else {
                skip -= count;
            }
            mdl = mdl_next(mdl);
        }
    }
    out
}

/// Reads a data indication chain.
pub fn read_data_indication(mut indication: PWSK_DATA_INDICATION) -> Vec<u8> {
    let mut out = Vec::new();
    while !indication.is_null() {
        // SAFETY: a provider chain the callback was handed (or retains).
        unsafe {
            out.extend(read_wsk_buf(&(*indication).Buffer));
            indication = (*indication).Next;
        }
    }
    out
}

// === Client ===

/// A registered WSK client with a captured provider NPI.
pub struct Client {
    registration: Box<WSK_REGISTRATION>,
    npi: Box<WSK_CLIENT_NPI>,
    _dispatch: Box<WSK_CLIENT_DISPATCH>,
    pub provider: WSK_PROVIDER_NPI,
}

// SAFETY: the registration and NPIs are the test's own, resident.
unsafe impl Send for Client {}
// SAFETY: as above; the provider is thread-safe.
unsafe impl Sync for Client {}

impl Client {
    /// `WskRegister` with version 1.0 and `WskCaptureProviderNPI(NO_WAIT)`.
    pub fn register() -> Client {
        let mut client = Client::register_only(MAKE_WSK_VERSION(1, 0)).expect("WskRegister");
        let status = client.capture(WSK_NO_WAIT);
        assert_eq!(status, STATUS_SUCCESS, "WskCaptureProviderNPI");
        client
    }

    /// `WskRegister` only.
    pub fn register_only(version: USHORT) -> Result<Client, NTSTATUS> {
        let dispatch = Box::new(WSK_CLIENT_DISPATCH {
            Version: version,
            Reserved: 0,
            WskClientEvent: None,
        });
        let mut npi = Box::new(WSK_CLIENT_NPI {
            ClientContext: core::ptr::null_mut(),
            Dispatch: &*dispatch,
        });
        // SAFETY: plain data; WskRegister fills it.
        let mut registration: Box<WSK_REGISTRATION> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: resident NPI and registration block.
        let status = unsafe { WskRegister(&mut *npi, &mut *registration) };
        if status != STATUS_SUCCESS {
            return Err(status);
        }
        Ok(Client {
            registration,
            npi,
            _dispatch: dispatch,
            provider: WSK_PROVIDER_NPI {
                Client: core::ptr::null_mut(),
                Dispatch: core::ptr::null(),
            },
        })
    }

    /// `WskCaptureProviderNPI(WaitTimeout)`.
    pub fn capture(&mut self, timeout: ULONG) -> NTSTATUS {
        // SAFETY: our registered block.
        unsafe { WskCaptureProviderNPI(self.registration_ptr(), timeout, &mut self.provider) }
    }

    /// `WskReleaseProviderNPI`.
    pub fn release(&self) {
        // SAFETY: our registered block with a capture.
        unsafe { WskReleaseProviderNPI(self.registration_ptr()) };
    }

    pub fn registration_ptr(&self) -> PWSK_REGISTRATION {
        (&raw const *self.registration).cast_mut()
    }

    /// Releases the capture and deregisters.
    pub fn deregister(self) {
        self.release();
        self.deregister_only();
    }

    /// `WskDeregister` only.
    pub fn deregister_only(self) {
        // SAFETY: our registered block.
        unsafe { WskDeregister(self.registration_ptr()) };
    }

    pub fn dispatch(&self) -> &WSK_PROVIDER_DISPATCH {
        // SAFETY: the provider's static dispatch.
        unsafe { &*self.provider.Dispatch }
    }

    /// `WskSocket`.
    pub fn socket(
        &self,
        family: ADDRESS_FAMILY,
        flags: ULONG,
        context: PVOID,
        dispatch: *const core::ffi::c_void,
    ) -> Result<PWSK_SOCKET, NTSTATUS> {
        let (socket_type, protocol) = if flags == WSK_FLAG_DATAGRAM_SOCKET {
            (SOCK_DGRAM, IPPROTO_UDP)
        } else {
            (SOCK_STREAM, IPPROTO_TCP)
        };
        let mut request = Request::try_new()?;
        let irp = request.arm();
        // SAFETY: the provider's WskSocket with our IRP.
        let returned = unsafe {
            (self.dispatch().WskSocket.unwrap())(
                self.provider.Client,
                family,
                socket_type,
                protocol,
                flags,
                context,
                dispatch,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                irp,
            )
        };
        match request.finish(returned) {
            (STATUS_SUCCESS, socket) => {
                note_kind(socket as PWSK_SOCKET, flags);
                Ok(socket as PWSK_SOCKET)
            }
            (status, _) => Err(status),
        }
    }

    /// `WskSocketConnect`.
    pub fn socket_connect(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        context: PVOID,
        dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    ) -> Result<PWSK_SOCKET, NTSTATUS> {
        let mut local = sockaddr_from(&local);
        let mut remote = sockaddr_from(&remote);
        let mut request = Request::new();
        let irp = request.arm();
        // SAFETY: the provider's WskSocketConnect with our IRP.
        let returned = unsafe {
            (self.dispatch().WskSocketConnect.unwrap())(
                self.provider.Client,
                SOCK_STREAM,
                IPPROTO_TCP,
                (&raw mut local).cast(),
                (&raw mut remote).cast(),
                0,
                context,
                dispatch,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                irp,
            )
        };
        match request.finish(returned) {
            (STATUS_SUCCESS, socket) => Ok(socket as PWSK_SOCKET),
            (status, _) => Err(status),
        }
    }

    /// `WskControlClient(WSK_SET_STATIC_EVENT_CALLBACKS)`, no IRP.
    pub fn set_static_events(&self, mask: ULONG) -> NTSTATUS {
        let mut control = WSK_EVENT_CALLBACK_CONTROL {
            NpiId: (&raw const NPI_WSK_INTERFACE_ID).cast_mut(),
            EventMask: mask,
        };
        // SAFETY: the provider's WskControlClient without an IRP.
        unsafe {
            (self.dispatch().WskControlClient.unwrap())(
                self.provider.Client,
                WSK_SET_STATIC_EVENT_CALLBACKS,
                core::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>() as SIZE_T,
                (&raw mut control).cast(),
                0,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
            )
        }
    }

    /// A listening socket bound to `address`; returns it and its address.
    pub fn listener(
        &self,
        address: SocketAddr,
        context: PVOID,
        dispatch: *const WSK_CLIENT_LISTEN_DISPATCH,
    ) -> (PWSK_SOCKET, SocketAddr) {
        let family = family_of(&address);
        let socket = self
            .socket(family, WSK_FLAG_LISTEN_SOCKET, context, dispatch.cast())
            .expect("WskSocket(listen)");
        assert_eq!(bind(socket, address), STATUS_SUCCESS, "WskBind");
        let local = local_address(socket).expect("WskGetLocalAddress");
        (socket, local)
    }

    /// A connection socket bound to the wildcard of `remote`'s family and
    /// connected to `remote`.
    pub fn connect(
        &self,
        remote: SocketAddr,
        context: PVOID,
        dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    ) -> Result<PWSK_SOCKET, NTSTATUS> {
        let family = family_of(&remote);
        let socket = self.socket(family, WSK_FLAG_CONNECTION_SOCKET, context, dispatch.cast())?;
        let any: SocketAddr = if family == AF_INET6 {
            "[::]:0".parse().unwrap()
        } else {
            "0.0.0.0:0".parse().unwrap()
        };
        let status = bind(socket, any);
        if status != STATUS_SUCCESS {
            close(socket);
            return Err(status);
        }
        match connect(socket, remote) {
            STATUS_SUCCESS => Ok(socket),
            status => {
                close(socket);
                Err(status)
            }
        }
    }

    /// A datagram socket bound to `address`.
    pub fn datagram(
        &self,
        address: SocketAddr,
        context: PVOID,
        dispatch: *const WSK_CLIENT_DATAGRAM_DISPATCH,
    ) -> (PWSK_SOCKET, SocketAddr) {
        let socket = self
            .socket(
                family_of(&address),
                WSK_FLAG_DATAGRAM_SOCKET,
                context,
                dispatch.cast(),
            )
            .expect("WskSocket(datagram)");
        assert_eq!(bind(socket, address), STATUS_SUCCESS, "WskBind");
        let local = local_address(socket).expect("WskGetLocalAddress");
        (socket, local)
    }
}

pub fn family_of(address: &SocketAddr) -> ADDRESS_FAMILY {
    if address.is_ipv6() { AF_INET6 } else { AF_INET }
}

// === Socket requests ===

pub fn basic(socket: PWSK_SOCKET) -> WSK_PROVIDER_BASIC_DISPATCH {
    // SAFETY: every provider table starts with the basic functions.
    unsafe { *((*socket).Dispatch as *const WSK_PROVIDER_BASIC_DISPATCH) }
}

pub fn connection(socket: PWSK_SOCKET) -> WSK_PROVIDER_CONNECTION_DISPATCH {
    // SAFETY: a connection socket's table.
    unsafe { *((*socket).Dispatch as *const WSK_PROVIDER_CONNECTION_DISPATCH) }
}

pub fn listen_table(socket: PWSK_SOCKET) -> WSK_PROVIDER_LISTEN_DISPATCH {
    // SAFETY: a listening socket's table.
    unsafe { *((*socket).Dispatch as *const WSK_PROVIDER_LISTEN_DISPATCH) }
}

pub fn datagram_table(socket: PWSK_SOCKET) -> WSK_PROVIDER_DATAGRAM_DISPATCH {
    // SAFETY: a datagram socket's table.
    unsafe { *((*socket).Dispatch as *const WSK_PROVIDER_DATAGRAM_DISPATCH) }
}

/// `WskBind` (the first table entry after the basic ones is the same
/// function in every category).
pub fn bind(socket: PWSK_SOCKET, address: SocketAddr) -> NTSTATUS {
    let mut address = sockaddr_from(&address);
    let mut request = Request::new();
    let irp = request.arm();
    let bind = listen_table(socket).WskBind.unwrap();
    // SAFETY: the provider's WskBind with our IRP.
    let returned = unsafe { bind(socket, (&raw mut address).cast(), 0, irp) };
    request.finish(returned).0
}

/// The kinds (`WSK_FLAG_*_SOCKET`) of the sockets the tests made, to pick
/// the right table for `WskGetLocalAddress` (its slot differs per table).
static KINDS: Mutex<Vec<(usize, ULONG)>> = Mutex::new(Vec::new());

pub fn note_kind(socket: PWSK_SOCKET, flags: ULONG) {
    let mut kinds = KINDS.lock().unwrap();
    kinds.retain(|&(s, _)| s != socket as usize);
    kinds.push((socket as usize, flags));
}

fn kind_of(socket: PWSK_SOCKET) -> ULONG {
    KINDS
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|&&(s, _)| s == socket as usize)
        .map_or(WSK_FLAG_CONNECTION_SOCKET, |&(_, k)| k)
}

pub fn local_address(socket: PWSK_SOCKET) -> Result<SocketAddr, NTSTATUS> {
    let mut address = sockaddr_from(&"0.0.0.0:0".parse().unwrap());
    let mut request = Request::new();
    let irp = request.arm();
    let get = match kind_of(socket) {
        WSK_FLAG_LISTEN_SOCKET => listen_table(socket).WskGetLocalAddress,
        WSK_FLAG_DATAGRAM_SOCKET => datagram_table(socket).WskGetLocalAddress,
        _ => connection(socket).WskGetLocalAddress,
    }
    .unwrap();
    // SAFETY: the socket's own WskGetLocalAddress with our IRP.
    let returned = unsafe { get(socket, (&raw mut address).cast(), irp) };
    match request.finish(returned).0 {
        // SAFETY: the provider wrote a socket address.
        STATUS_SUCCESS => Ok(unsafe { read_sockaddr((&raw const address).cast()) }.unwrap()),
        status => Err(status),
    }
}

pub fn remote_address(socket: PWSK_SOCKET) -> Result<SocketAddr, NTSTATUS> {
    let mut address = sockaddr_from(&"0.0.0.0:0".parse().unwrap());
    let mut request = Request::new();
    let irp = request.arm();
    // SAFETY: the provider's WskGetRemoteAddress with our IRP.
    let returned = unsafe {
        (connection(socket).WskGetRemoteAddress.unwrap())(socket, (&raw mut address).cast(), irp)
    };
    match request.finish(returned).0 {
        // SAFETY: the provider wrote a socket address.
        STATUS_SUCCESS => Ok(unsafe { read_sockaddr((&raw const address).cast()) }.unwrap()),
        status => Err(status),
    }
}

pub fn connect(socket: PWSK_SOCKET, remote: SocketAddr) -> NTSTATUS {
    let mut remote = sockaddr_from(&remote);
    let mut request = Request::new();
    let irp = request.arm();
    // SAFETY: the provider's WskConnect with our IRP.
    let returned = unsafe {
        (connection(socket).WskConnect.unwrap())(socket, (&raw mut remote).cast(), 0, irp)
    };
    request.finish(returned).0
}

/// An accept in flight (its out-parameters live here until completion).
pub struct PendingAccept {
    pub request: Request,
    pub returned: NTSTATUS,
    local: Box<SOCKADDR_STORAGE>,
    remote: Box<SOCKADDR_STORAGE>,
}

impl PendingAccept {
    pub fn finish(self) -> Result<(PWSK_SOCKET, SocketAddr, SocketAddr), NTSTATUS> {
        match self.request.finish(self.returned) {
            (STATUS_SUCCESS, socket) => {
                // SAFETY: the provider wrote both addresses.
                let local = unsafe { read_sockaddr((&raw const *self.local).cast()) }.unwrap();
                // SAFETY: as above.
                let remote = unsafe { read_sockaddr((&raw const *self.remote).cast()) }.unwrap();
                Ok((socket as PWSK_SOCKET, local, remote))
            }
            (status, _) => Err(status),
        }
    }
}

pub fn start_accept(
    listener: PWSK_SOCKET,
    context: PVOID,
    dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> PendingAccept {
    let mut local = Box::new(sockaddr_from(&"0.0.0.0:0".parse().unwrap()));
    let mut remote = Box::new(sockaddr_from(&"0.0.0.0:0".parse().unwrap()));
    let mut request = Request::new();
    let irp = request.arm();
    // SAFETY: the provider's WskAccept with our IRP and resident
    // out-parameters.
    let returned = unsafe {
        (listen_table(listener).WskAccept.unwrap())(
            listener,
            0,
            context,
            dispatch,
            (&raw mut *local).cast(),
            (&raw mut *remote).cast(),
            irp,
        )
    };
    PendingAccept {
        request,
        returned,
        local,
        remote,
    }
}

pub fn accept(listener: PWSK_SOCKET) -> Result<(PWSK_SOCKET, SocketAddr, SocketAddr), NTSTATUS> {
    start_accept(listener, core::ptr::null_mut(), core::ptr::null()).finish()
}

/// A send or receive in flight, with its buffer.
pub struct Pending {
    pub request: Request,
    pub buffer: Buffer,
    pub returned: NTSTATUS,
}

impl Pending {
    /// Waits; returns the status and the bytes (`Information` of them).
    pub fn finish(self) -> (NTSTATUS, Vec<u8>) {
        let (status, information) = self.request.finish(self.returned);
        let n = (information as usize).min(self.buffer.bytes().len());
        (status, self.buffer.bytes()[..n].to_vec())
    }
}

pub fn start_receive(socket: PWSK_SOCKET, len: usize, flags: ULONG) -> Pending {
    start_receive_in(socket, Buffer::new(len), flags)
}

pub fn start_receive_in(socket: PWSK_SOCKET, buffer: Buffer, flags: ULONG) -> Pending {
    let mut request = Request::new();
    let irp = request.arm();
    let mut buf = if buffer.bytes().is_empty() {
        WSK_BUF {
            Mdl: core::ptr::null_mut(),
            Offset: 0,
            Length: 0,
        }
    } else {
        buffer.wsk_buf()
    };
    // SAFETY: the provider's WskReceive; the buffer stays with the pending
    // request until completion.
    let returned =
        unsafe { (connection(socket).WskReceive.unwrap())(socket, &mut buf, flags, irp) };
    Pending {
        request,
        buffer,
        returned,
    }
}

pub fn receive(socket: PWSK_SOCKET, len: usize, flags: ULONG) -> Result<Vec<u8>, NTSTATUS> {
    match start_receive(socket, len, flags).finish() {
        (STATUS_SUCCESS, data) => Ok(data),
        (status, _) => Err(status),
    }
}

pub fn start_send(socket: PWSK_SOCKET, buffer: Buffer) -> Pending {
    let mut request = Request::new();
    let irp = request.arm();
    let mut buf = buffer.wsk_buf();
    // SAFETY: the provider's WskSend; the buffer stays with the request.
    let returned = unsafe { (connection(socket).WskSend.unwrap())(socket, &mut buf, 0, irp) };
    Pending {
        request,
        buffer,
        returned,
    }
}

/// `WskSend` of `data`; returns the bytes sent.
pub fn send(socket: PWSK_SOCKET, data: &[u8]) -> Result<u64, NTSTATUS> {
    let pending = start_send(socket, Buffer::from_bytes(data));
    let (status, information) = pending.request.finish(pending.returned);
    match status {
        STATUS_SUCCESS => Ok(information),
        status => Err(status),
    }
}

pub fn disconnect(socket: PWSK_SOCKET, flags: ULONG) -> NTSTATUS {
    let mut request = Request::new();
    let irp = request.arm();
    // SAFETY: the provider's WskDisconnect without a buffer.
    let returned = unsafe {
        (connection(socket).WskDisconnect.unwrap())(socket, core::ptr::null_mut(), flags, irp)
    };
    request.finish(returned).0
}

/// `WskCloseSocket`, waiting for it.
pub fn close(socket: PWSK_SOCKET) -> NTSTATUS {
    let mut request = Request::new();
    let irp = request.arm();
    // SAFETY: the provider's WskCloseSocket with our IRP.
    let returned = unsafe { (basic(socket).WskCloseSocket.unwrap())(socket, irp) };
    request.finish(returned).0
}

/// `SO_WSK_EVENT_CALLBACK` without an IRP.
pub fn set_events(socket: PWSK_SOCKET, mask: ULONG) -> NTSTATUS {
    set_events_via(socket, mask, false)
}

/// `SO_WSK_EVENT_CALLBACK`, with an IRP when `irp`.
pub fn set_events_via(socket: PWSK_SOCKET, mask: ULONG, irp: bool) -> NTSTATUS {
    let mut control = WSK_EVENT_CALLBACK_CONTROL {
        NpiId: (&raw const NPI_WSK_INTERFACE_ID).cast_mut(),
        EventMask: mask,
    };
    // SAFETY: `control` is a plain C structure, viewed as its own bytes for
    // as long as it lives (the request is waited for inside `control`).
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(
            (&raw mut control).cast::<u8>(),
            core::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
        )
    };
    control_socket(
        socket,
        WskSetOption,
        SOL_SOCKET,
        SO_WSK_EVENT_CALLBACK,
        bytes,
        &mut [],
        irp,
    )
    .0
}

/// `WskControlSocket` of `kind` with an IRP, or without one when `irp` is
/// false: `input`'s bytes in, at most `output.len()` bytes out (NULL
/// buffers when empty); waits for it and returns (status, bytes returned:
/// Information, or `*OutputSizeReturned` without an IRP).
pub fn control_socket(
    socket: PWSK_SOCKET,
    kind: WSK_CONTROL_SOCKET_TYPE,
    level: ULONG,
    code: ULONG,
    input: &mut [u8],
    output: &mut [u8],
    irp: bool,
) -> (NTSTATUS, u64) {
    fn or_null(bytes: &mut [u8]) -> PVOID {
        if bytes.is_empty() {
            core::ptr::null_mut()
        } else {
            bytes.as_mut_ptr().cast()
        }
    }
    let mut returned_size: SIZE_T = 0;
    let mut request = Request::new();
    let (irp, size_out) = if irp {
        (request.arm(), core::ptr::null_mut())
    } else {
        (core::ptr::null_mut(), &raw mut returned_size)
    };
    // SAFETY: the provider's WskControlSocket with our IRP (or none); the
    // buffers and the size outlive the request, which is waited for here.
    let returned = unsafe {
        (basic(socket).WskControlSocket.unwrap())(
            socket,
            kind,
            code,
            level,
            input.len() as SIZE_T,
            or_null(input),
            output.len() as SIZE_T,
            or_null(output),
            size_out,
            irp,
        )
    };
    if irp.is_null() {
        (returned, returned_size as u64)
    } else {
        request.finish(returned)
    }
}

/// `WskSetOption` of `input`'s bytes, with an IRP.
pub fn set_bytes(socket: PWSK_SOCKET, level: ULONG, code: ULONG, input: &[u8]) -> NTSTATUS {
    let mut input = input.to_vec();
    control_socket(socket, WskSetOption, level, code, &mut input, &mut [], true).0
}

/// A ULONG socket option, set with an IRP.
pub fn set_option(socket: PWSK_SOCKET, level: ULONG, code: ULONG, value: ULONG) -> NTSTATUS {
    set_bytes(socket, level, code, &value.to_ne_bytes())
}

/// `WskGetOption` of a ULONG option, with an IRP; Information must be 4.
pub fn get_ulong(socket: PWSK_SOCKET, level: ULONG, code: ULONG) -> Result<ULONG, NTSTATUS> {
    let mut value = 0xDEAD_u32.to_ne_bytes();
    match control_socket(socket, WskGetOption, level, code, &mut [], &mut value, true) {
        (STATUS_SUCCESS, 4) => Ok(ULONG::from_ne_bytes(value)),
        (STATUS_SUCCESS, n) => panic!("Information {n} for a ULONG option"),
        (status, _) => Err(status),
    }
}

/// `WskRelease` of a data indication chain.
pub fn release_data(socket: PWSK_SOCKET, indication: PWSK_DATA_INDICATION) -> NTSTATUS {
    // SAFETY: the provider's WskRelease.
    unsafe { (connection(socket).WskRelease.unwrap())(socket, indication) }
}

/// `WskRelease` of a datagram indication chain.
pub fn release_datagrams(socket: PWSK_SOCKET, indication: PWSK_DATAGRAM_INDICATION) -> NTSTATUS {
    // SAFETY: the provider's WskRelease.
    unsafe { (datagram_table(socket).WskRelease.unwrap())(socket, indication) }
}

pub fn send_to(socket: PWSK_SOCKET, data: &[u8], remote: SocketAddr) -> Result<u64, NTSTATUS> {
    let buffer = Buffer::from_bytes(data);
    let mut buf = buffer.wsk_buf();
    let mut remote = sockaddr_from(&remote);
    let mut request = Request::new();
    let irp = request.arm();
    // SAFETY: the provider's WskSendTo with our IRP and buffer.
    let returned = unsafe {
        (datagram_table(socket).WskSendTo.unwrap())(
            socket,
            &mut buf,
            0,
            (&raw mut remote).cast(),
            0,
            core::ptr::null_mut(),
            irp,
        )
    };
    match request.finish(returned) {
        (STATUS_SUCCESS, n) => Ok(n),
        (status, _) => Err(status),
    }
}

/// A receive-from in flight, with its buffer and out-parameters.
pub struct PendingFrom {
    pub request: Request,
    pub returned: NTSTATUS,
    buffer: Buffer,
    remote: Box<SOCKADDR_STORAGE>,
    control_length: Box<ULONG>,
    control_flags: Box<ULONG>,
}

/// A received datagram.
#[derive(Debug)]
pub struct Received {
    pub data: Vec<u8>,
    pub from: SocketAddr,
    pub control_flags: ULONG,
    pub control_length: ULONG,
}

impl PendingFrom {
    /// Waits; returns the status and what was received, whatever the
    /// status (a truncated datagram carries data with a warning status).
    pub fn finish_with_status(self) -> (NTSTATUS, Received) {
        let (status, n) = self.request.finish(self.returned);
        let n = (n as usize).min(self.buffer.bytes().len());
        // SAFETY: the provider wrote the sender's address if it wrote data.
        let from = unsafe { read_sockaddr((&raw const *self.remote).cast()) }
            .unwrap_or_else(|| "0.0.0.0:0".parse().unwrap());
        let received = Received {
            data: self.buffer.bytes()[..n].to_vec(),
            from,
            control_flags: *self.control_flags,
            control_length: *self.control_length,
        };
        (status, received)
    }

    pub fn finish(self) -> Result<Received, NTSTATUS> {
        match self.request.finish(self.returned) {
            (STATUS_SUCCESS, n) => Ok(Received {
                data: self.buffer.bytes()[..n as usize].to_vec(),
                // SAFETY: the provider wrote the sender's address.
                from: unsafe { read_sockaddr((&raw const *self.remote).cast()) }.unwrap(),
                control_flags: *self.control_flags,
                control_length: *self.control_length,
            }),
            (status, _) => Err(status),
        }
    }
}

pub fn start_receive_from(socket: PWSK_SOCKET, len: usize) -> PendingFrom {
    let buffer = Buffer::new(len);
    let mut buf = buffer.wsk_buf();
    let mut remote = Box::new(sockaddr_from(&"0.0.0.0:0".parse().unwrap()));
    let mut control_length = Box::new(0xFFFF_u32);
    let mut control_flags = Box::new(0xFFFF_u32);
    let mut request = Request::new();
    let irp = request.arm();
    // SAFETY: the provider's WskReceiveFrom with our IRP; buffer and
    // out-parameters stay with the pending request.
    let returned = unsafe {
        (datagram_table(socket).WskReceiveFrom.unwrap())(
            socket,
            &mut buf,
            0,
            (&raw mut *remote).cast(),
            &mut *control_length,
            core::ptr::null_mut(),
            &mut *control_flags,
            irp,
        )
    };
    PendingFrom {
        request,
        returned,
        buffer,
        remote,
        control_length,
        control_flags,
    }
}

/// Waits until `condition` holds (polling), up to [`WAIT`].
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
