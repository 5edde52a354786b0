//! The WSK calls as irp-future operations: for each call, the resources
//! that must stay valid until its IRP completes (owned buffers with their
//! MDL and `WSK_BUF`, address and control out-parameters, the new socket's
//! block) and a submit function that hands the IRP to exactly one provider
//! function and returns `Submission::Submitted` with its status.
//!
//! Submit functions are plain `fn` pointers (the socket and everything else
//! they need is in the resources), so operations are `Send` and their types
//! can be named by the receive queues. Each one enters the socket's call
//! count ([`SocketShared::enter_call`]) for the duration of the WSK call,
//! reads only the dispatch entry it calls ([`dispatch_entry!`]), and calls
//! it; on an aborted socket, or when the provider has no such entry, it
//! returns `Submission::NotSubmitted` with STATUS_FILE_FORCED_CLOSED /
//! STATUS_NOT_SUPPORTED without handing the IRP over.
//!
//! IRQL: submitted and polled at <= DISPATCH_LEVEL; the resources of an
//! operation dropped in flight are dropped by its completion routine at
//! DISPATCH_LEVEL (buffers, MDLs and pool blocks, all legal there).

use core::ptr::NonNull;

use irp_future::{Completed, IoBuf, IoBufMut, IrpOp, MdlBuf, Submission};
use nt::access::{irp_information, irp_status};
use nt::wsk::*;
use nt::*;

use crate::addr::SockAddrBuf;
use crate::error::{Error, Result};
use crate::pool::PoolBox;
use crate::registration::RegRef;
use crate::shared::{Kind, SocketHandle, SocketShared, dispatch_entry};

/// A submit function for resources `R`.
pub(crate) type Submit<R> = fn(PIRP, &mut R) -> Submission;

/// Runs one WSK call on an IRP of its own (one stack location, in the
/// operation's pool block: `irp_future::IrpOp::allocated`).
pub(crate) async fn call<R: Send + 'static>(resources: R, submit: Submit<R>) -> Completed<R> {
    // SAFETY: every `Submit` of this module hands the IRP to exactly one
    // WSK provider function (which completes it exactly once, whatever it
    // returns) and returns `Submitted` with that function's status, or
    // `NotSubmitted` without handing it over; the provider uses the resources
    // (through the pointers the submit function derives from them) only
    // until it completes the IRP.
    unsafe { IrpOp::allocated(resources, submit) }.await
}

/// Runs `call` with the socket of `shared` entered for one WSK call (see
/// [`SocketShared::enter_call`]); STATUS_FILE_FORCED_CLOSED without calling
/// once the socket is aborted.
pub(crate) fn on_socket(
    shared: NonNull<SocketShared>,
    call: impl FnOnce(PWSK_SOCKET) -> Submission,
) -> Submission {
    // SAFETY: operations are submitted by a holder of the socket (its
    // handle, borrowed by the caller for the whole submission).
    let shared = unsafe { shared.as_ref() };
    let Some(_call) = shared.enter_call() else {
        return Submission::NotSubmitted(STATUS_FILE_FORCED_CLOSED);
    };
    call(shared.socket())
}

// === Buffers ===

/// An owned buffer lent to WSK: the buffer, its MDL and the `WSK_BUF`
/// describing the bytes the call may use.
pub(crate) struct Lent<B: IoBuf> {
    pub(crate) buf: MdlBuf<B>,
    pub(crate) wsk: WSK_BUF,
}

// SAFETY: the MDL and WSK_BUF describe the owned buffer only.
unsafe impl<B: IoBuf> Send for Lent<B> {}

impl<B: IoBuf> Lent<B> {
    /// Describes `len` bytes of `buf` from byte `offset`.
    pub(crate) fn at(buf: MdlBuf<B>, offset: usize, len: usize) -> Self {
        let mdl = buf.mdl();
        let (offset, len) = if mdl.is_null() { (0, 0) } else { (offset, len) };
        Self {
            wsk: WSK_BUF {
                Mdl: mdl,
                Offset: offset as ULONG,
                Length: len as SIZE_T,
            },
            buf,
        }
    }

    /// Describes the first `len` bytes of `buf`.
    pub(crate) fn new(buf: MdlBuf<B>, len: usize) -> Self {
        Self::at(buf, 0, len)
    }

    /// Builds the MDL (IRQL <= DISPATCH_LEVEL); on failure the buffer
    /// comes back.
    pub(crate) fn build(
        buf: B,
        len: impl FnOnce(&B) -> usize,
    ) -> core::result::Result<Self, (Error, B)> {
        let len = len(&buf);
        match MdlBuf::new(buf) {
            Ok(buf) => Ok(Self::new(buf, len)),
            Err((status, buf)) => Err((Error::from_status(status), buf)),
        }
    }
}

// === Connection data ===

pub(crate) struct SendRes<B: IoBuf> {
    pub(crate) shared: NonNull<SocketShared>,
    pub(crate) lent: Lent<B>,
    pub(crate) flags: ULONG,
}

// SAFETY: the block is shared through atomics and locks; the buffer is
// Send.
unsafe impl<B: IoBuf> Send for SendRes<B> {}

pub(crate) fn submit_send<B: IoBuf>(irp: PIRP, r: &mut SendRes<B>) -> Submission {
    let wsk: *mut WSK_BUF = &mut r.lent.wsk;
    let flags = r.flags;
    on_socket(r.shared, |socket| {
        match dispatch_entry!(socket, WSK_PROVIDER_CONNECTION_DISPATCH, WskSend) {
            // SAFETY: WskSend with our IRP; the WSK_BUF and its MDL live in
            // the resources until completion.
            Some(send) => Submission::Submitted(unsafe { send(socket, wsk, flags, irp) }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}

pub(crate) struct RecvRes<B: IoBufMut> {
    pub(crate) shared: NonNull<SocketShared>,
    pub(crate) lent: Lent<B>,
    pub(crate) flags: ULONG,
}

// SAFETY: as SendRes.
unsafe impl<B: IoBufMut> Send for RecvRes<B> {}

pub(crate) fn submit_receive<B: IoBufMut>(irp: PIRP, r: &mut RecvRes<B>) -> Submission {
    let wsk: *mut WSK_BUF = &mut r.lent.wsk;
    let flags = r.flags;
    on_socket(r.shared, |socket| {
        match dispatch_entry!(socket, WSK_PROVIDER_CONNECTION_DISPATCH, WskReceive) {
            // SAFETY: WskReceive with our IRP; the buffer lives in the
            // resources until completion.
            Some(receive) => Submission::Submitted(unsafe { receive(socket, wsk, flags, irp) }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}

/// Records the bytes a completed receive wrote into its buffer, after the
/// bytes that were initialised already (a receive appends): on success,
/// and also on STATUS_BUFFER_OVERFLOW (a truncated datagram: the bytes
/// that fit) and STATUS_CANCELLED or another error (bytes a receive had
/// already copied before it ended: `Information`). Returns the bytes
/// received.
pub(crate) fn received<B: IoBufMut>(
    buf: &mut MdlBuf<B>,
    status: NTSTATUS,
    information: usize,
) -> usize {
    let _ = status;
    let before = buf.bytes_init();
    let n = information.min(buf.bytes_total().saturating_sub(before));
    // SAFETY: the provider wrote `information` bytes right after the
    // initialised ones (the WSK_BUF's offset).
    unsafe { buf.set_init(before + n) };
    n
}

/// The outcome of a completed `WskReceiveFrom`: `Ok(truncated)` for a
/// datagram (STATUS_SUCCESS, or STATUS_BUFFER_OVERFLOW for one longer than
/// the buffer: the documentation only names the `MSG_TRUNC` flag, AFD
/// completes such a receive with the warning status, so both are data),
/// the error otherwise.
pub(crate) fn datagram_status(status: NTSTATUS) -> Result<bool> {
    if status == STATUS_BUFFER_OVERFLOW {
        return Ok(true);
    }
    crate::error::check(status).map(|()| false)
}

/// A zero-length receive: re-arms the receive event after
/// STATUS_DATA_NOT_ACCEPTED.
pub(crate) struct RearmRes {
    pub(crate) shared: NonNull<SocketShared>,
    pub(crate) wsk: WSK_BUF,
}

// SAFETY: as SendRes.
unsafe impl Send for RearmRes {}

impl RearmRes {
    pub(crate) fn new(shared: NonNull<SocketShared>) -> Self {
        Self {
            shared,
            wsk: WSK_BUF {
                Mdl: core::ptr::null_mut(),
                Offset: 0,
                Length: 0,
            },
        }
    }
}

pub(crate) fn submit_rearm(irp: PIRP, r: &mut RearmRes) -> Submission {
    let wsk: *mut WSK_BUF = &mut r.wsk;
    on_socket(r.shared, |socket| {
        match dispatch_entry!(socket, WSK_PROVIDER_CONNECTION_DISPATCH, WskReceive) {
            // SAFETY: WskReceive of 0 bytes (a NULL MDL is allowed for 0).
            Some(receive) => Submission::Submitted(unsafe { receive(socket, wsk, 0, irp) }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}

pub(crate) struct DisconnectRes {
    pub(crate) shared: NonNull<SocketShared>,
    pub(crate) flags: ULONG,
}

// SAFETY: as SendRes.
unsafe impl Send for DisconnectRes {}

pub(crate) fn submit_disconnect(irp: PIRP, r: &mut DisconnectRes) -> Submission {
    let flags = r.flags;
    on_socket(r.shared, |socket| {
        match dispatch_entry!(socket, WSK_PROVIDER_CONNECTION_DISPATCH, WskDisconnect) {
            // SAFETY: WskDisconnect without a buffer.
            Some(disconnect) => Submission::Submitted(unsafe {
                disconnect(socket, core::ptr::null_mut(), flags, irp)
            }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}

// === Datagrams ===

pub(crate) struct SendToRes<B: IoBuf> {
    pub(crate) shared: NonNull<SocketShared>,
    pub(crate) lent: Lent<B>,
    pub(crate) remote: SockAddrBuf,
}

// SAFETY: as SendRes.
unsafe impl<B: IoBuf> Send for SendToRes<B> {}

pub(crate) fn submit_send_to<B: IoBuf>(irp: PIRP, r: &mut SendToRes<B>) -> Submission {
    let wsk: *mut WSK_BUF = &mut r.lent.wsk;
    let remote = r.remote.as_mut_ptr();
    on_socket(r.shared, |socket| {
        match dispatch_entry!(socket, WSK_PROVIDER_DATAGRAM_DISPATCH, WskSendTo) {
            // SAFETY: WskSendTo with our IRP; buffer and address live in the
            // resources until completion.
            Some(send_to) => Submission::Submitted(unsafe {
                send_to(socket, wsk, 0, remote, 0, core::ptr::null_mut(), irp)
            }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}

pub(crate) struct RecvFromRes<B: IoBufMut> {
    pub(crate) shared: NonNull<SocketShared>,
    pub(crate) lent: Lent<B>,
    pub(crate) remote: SockAddrBuf,
    pub(crate) control_length: ULONG,
    pub(crate) control_flags: ULONG,
}

// SAFETY: as SendRes.
unsafe impl<B: IoBufMut> Send for RecvFromRes<B> {}

impl<B: IoBufMut> RecvFromRes<B> {
    pub(crate) fn new(shared: NonNull<SocketShared>, buf: MdlBuf<B>) -> Self {
        let len = buf.bytes_total();
        Self {
            shared,
            lent: Lent::new(buf, len),
            remote: SockAddrBuf::empty(),
            control_length: 0,
            control_flags: 0,
        }
    }
}

pub(crate) fn submit_receive_from<B: IoBufMut>(irp: PIRP, r: &mut RecvFromRes<B>) -> Submission {
    let wsk: *mut WSK_BUF = &mut r.lent.wsk;
    let remote = r.remote.as_mut_ptr();
    let control_length: *mut ULONG = &mut r.control_length;
    let control_flags: *mut ULONG = &mut r.control_flags;
    // No control buffer: ControlLength in is 0.
    receive_from(
        r.shared,
        ReceiveFromArgs {
            wsk,
            remote,
            control_length,
            control: core::ptr::null_mut(),
            control_flags,
        },
        irp,
    )
}

/// The buffer and out-parameters of one `WskReceiveFrom`, each pointing
/// into an operation's resources.
pub(crate) struct ReceiveFromArgs {
    pub(crate) wsk: *mut WSK_BUF,
    pub(crate) remote: PSOCKADDR,
    pub(crate) control_length: *mut ULONG,
    /// NULL, or a control buffer of `*control_length` bytes.
    pub(crate) control: *mut CMSGHDR,
    pub(crate) control_flags: *mut ULONG,
}

/// `WskReceiveFrom` on the socket of `shared` with `args` (see
/// [`on_socket`]). The one place the crate calls it: plain receives and
/// receives with packet information differ only in the control buffer.
pub(crate) fn receive_from(
    shared: NonNull<SocketShared>,
    args: ReceiveFromArgs,
    irp: PIRP,
) -> Submission {
    on_socket(shared, |socket| {
        match dispatch_entry!(socket, WSK_PROVIDER_DATAGRAM_DISPATCH, WskReceiveFrom) {
            // SAFETY: WskReceiveFrom with our IRP; the buffer, the control
            // buffer (if any, of *ControlLength bytes) and every
            // out-parameter point into the operation's resources, which
            // live until completion.
            Some(receive_from) => Submission::Submitted(unsafe {
                receive_from(
                    socket,
                    args.wsk,
                    0,
                    args.remote,
                    args.control_length,
                    args.control,
                    args.control_flags,
                    irp,
                )
            }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}

// === Socket-level calls ===

pub(crate) struct BindRes {
    pub(crate) shared: NonNull<SocketShared>,
    pub(crate) kind: Kind,
    pub(crate) address: SockAddrBuf,
}

// SAFETY: as SendRes.
unsafe impl Send for BindRes {}

pub(crate) fn submit_bind(irp: PIRP, r: &mut BindRes) -> Submission {
    let kind = r.kind;
    let address = r.address.as_mut_ptr();
    on_socket(r.shared, |socket| {
        // WskBind is at the same place in each table, but each table is
        // read as its own type.
        let bind = match kind {
            Kind::Listen => dispatch_entry!(socket, WSK_PROVIDER_LISTEN_DISPATCH, WskBind),
            Kind::Connection => {
                dispatch_entry!(socket, WSK_PROVIDER_CONNECTION_DISPATCH, WskBind)
            }
            Kind::Datagram => dispatch_entry!(socket, WSK_PROVIDER_DATAGRAM_DISPATCH, WskBind),
        };
        match bind {
            // SAFETY: WskBind with our IRP and an address in the resources.
            Some(bind) => Submission::Submitted(unsafe { bind(socket, address, 0, irp) }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}

pub(crate) struct AddressRes {
    pub(crate) shared: NonNull<SocketShared>,
    pub(crate) kind: Kind,
    pub(crate) remote: bool,
    pub(crate) address: SockAddrBuf,
}

// SAFETY: as SendRes.
unsafe impl Send for AddressRes {}

pub(crate) fn submit_address(irp: PIRP, r: &mut AddressRes) -> Submission {
    let (kind, remote) = (r.kind, r.remote);
    let address = r.address.as_mut_ptr();
    on_socket(r.shared, |socket| {
        // WskGetLocalAddress sits at a different place in each table.
        let get = match (kind, remote) {
            (Kind::Connection, true) => {
                dispatch_entry!(
                    socket,
                    WSK_PROVIDER_CONNECTION_DISPATCH,
                    WskGetRemoteAddress
                )
            }
            (_, true) => None,
            (Kind::Listen, false) => {
                dispatch_entry!(socket, WSK_PROVIDER_LISTEN_DISPATCH, WskGetLocalAddress)
            }
            (Kind::Connection, false) => {
                dispatch_entry!(socket, WSK_PROVIDER_CONNECTION_DISPATCH, WskGetLocalAddress)
            }
            (Kind::Datagram, false) => {
                dispatch_entry!(socket, WSK_PROVIDER_DATAGRAM_DISPATCH, WskGetLocalAddress)
            }
        };
        match get {
            // SAFETY: the address query with our IRP; the out-parameter
            // lives in the resources.
            Some(get) => Submission::Submitted(unsafe { get(socket, address, irp) }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}

/// `WskControlSocket` with an IRP: an option set or get, or an ioctl, with
/// input and output bytes that live in the resources.
pub(crate) struct ControlRes {
    pub(crate) shared: NonNull<SocketShared>,
    pub(crate) request: WSK_CONTROL_SOCKET_TYPE,
    pub(crate) level: ULONG,
    pub(crate) code: ULONG,
    pub(crate) input: ControlBytes,
    pub(crate) output: ControlBytes,
}

/// The bytes of a control call's input or output (the largest the crate
/// passes is a `SOCKADDR_STORAGE`), aligned for the structures they hold.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct ControlBytes {
    pub(crate) bytes: [u8; 128],
    pub(crate) len: usize,
}

impl ControlBytes {
    pub(crate) const EMPTY: Self = Self {
        bytes: [0; 128],
        len: 0,
    };

    /// `data` (at most 128 bytes).
    pub(crate) fn of(data: &[u8]) -> Self {
        let mut this = Self::EMPTY;
        let len = data.len().min(this.bytes.len());
        this.bytes[..len].copy_from_slice(&data[..len]);
        this.len = len;
        this
    }

    /// Room for `len` bytes of output (at most 128).
    pub(crate) fn room(len: usize) -> Self {
        Self {
            bytes: [0; 128],
            len: len.min(128),
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

// SAFETY: as SendRes.
unsafe impl Send for ControlRes {}

pub(crate) fn submit_control(irp: PIRP, r: &mut ControlRes) -> Submission {
    let (request, code, level) = (r.request, r.code, r.level);
    let (input_size, input) = if r.input.len == 0 {
        (0, core::ptr::null_mut())
    } else {
        (r.input.len, r.input.bytes.as_mut_ptr())
    };
    let (output_size, output) = if r.output.len == 0 {
        (0, core::ptr::null_mut())
    } else {
        (r.output.len, r.output.bytes.as_mut_ptr())
    };
    on_socket(r.shared, |socket| {
        match dispatch_entry!(socket, WSK_PROVIDER_BASIC_DISPATCH, WskControlSocket) {
            // SAFETY: WskControlSocket with our IRP; input and output live
            // in the resources; with an IRP the size comes back in
            // IoStatus.Information ("OutputSizeReturned ... should be NULL").
            Some(control) => Submission::Submitted(unsafe {
                control(
                    socket,
                    request,
                    code,
                    level,
                    input_size as SIZE_T,
                    input.cast(),
                    output_size as SIZE_T,
                    output.cast(),
                    core::ptr::null_mut(),
                    irp,
                )
            }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}

/// `SO_WSK_EVENT_CALLBACK` with an IRP: disabling an event (WSK completes
/// it once the callbacks of that event in progress returned; enabling
/// takes no IRP).
pub(crate) struct EventMaskRes {
    pub(crate) shared: NonNull<SocketShared>,
    pub(crate) control: WSK_EVENT_CALLBACK_CONTROL,
}

// SAFETY: as SendRes (the NPI id is a static).
unsafe impl Send for EventMaskRes {}

impl EventMaskRes {
    pub(crate) fn new(shared: NonNull<SocketShared>, mask: ULONG) -> Self {
        Self {
            shared,
            control: WSK_EVENT_CALLBACK_CONTROL {
                NpiId: (&raw const NPI_WSK_INTERFACE_ID).cast_mut(),
                EventMask: mask,
            },
        }
    }
}

pub(crate) fn submit_event_mask(irp: PIRP, r: &mut EventMaskRes) -> Submission {
    let input: *mut WSK_EVENT_CALLBACK_CONTROL = &mut r.control;
    on_socket(r.shared, |socket| {
        match dispatch_entry!(socket, WSK_PROVIDER_BASIC_DISPATCH, WskControlSocket) {
            // SAFETY: WskControlSocket with our IRP; the input lives in the
            // resources until completion.
            Some(control) => Submission::Submitted(unsafe {
                control(
                    socket,
                    WskSetOption,
                    SO_WSK_EVENT_CALLBACK,
                    SOL_SOCKET,
                    core::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>() as SIZE_T,
                    input.cast(),
                    0,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    irp,
                )
            }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}

/// `SO_WSK_EVENT_CALLBACK` without an IRP (completes inline, as WSK
/// documents for enabling). IRQL <= DISPATCH_LEVEL.
pub(crate) fn set_event_mask(shared: &SocketShared, mask: ULONG) -> NTSTATUS {
    let Some(_call) = shared.enter_call() else {
        return STATUS_FILE_FORCED_CLOSED;
    };
    let socket = shared.socket();
    let Some(control) = dispatch_entry!(socket, WSK_PROVIDER_BASIC_DISPATCH, WskControlSocket)
    else {
        return STATUS_NOT_SUPPORTED;
    };
    let mut input = WSK_EVENT_CALLBACK_CONTROL {
        NpiId: (&raw const NPI_WSK_INTERFACE_ID).cast_mut(),
        EventMask: mask,
    };
    let input: *mut WSK_EVENT_CALLBACK_CONTROL = &mut input;
    // SAFETY: WskControlSocket without an IRP; the input lives across the
    // call.
    unsafe {
        control(
            socket,
            WskSetOption,
            SO_WSK_EVENT_CALLBACK,
            SOL_SOCKET,
            core::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>() as SIZE_T,
            input.cast(),
            0,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    }
}

// === Socket creation ===

/// The block of a socket being created (by `WskSocket`, `WskSocketConnect`
/// or `WskAccept`): handed to the new socket on success. If the operation
/// is abandoned (its future dropped) and WSK creates the socket anyway, the
/// completion routine drops this with the IRP still live: the socket is
/// then closed, not leaked.
pub(crate) struct NewSocket {
    block: Option<PoolBox<SocketShared>>,
    /// The IRP, once submitted (null before and after normal completion).
    irp: PIRP,
}

// SAFETY: the block is Send; the IRP pointer is only read by the drop
// inside the completion routine.
unsafe impl Send for NewSocket {}

impl NewSocket {
    pub(crate) fn new(kind: Kind, registration: RegRef) -> Result<Self> {
        Ok(Self {
            block: Some(SocketShared::try_new(kind, registration)?),
            irp: core::ptr::null_mut(),
        })
    }

    /// The context to give WSK for the new socket.
    pub(crate) fn context(&self) -> PVOID {
        match &self.block {
            Some(block) => {
                let shared: *const SocketShared = &**block;
                shared.cast_mut().cast()
            }
            None => core::ptr::null_mut(),
        }
    }

    /// The registration of the new socket.
    fn registration(&self) -> Option<&RegRef> {
        self.block.as_ref().map(|b| b.registration())
    }

    /// Records the IRP about to be handed over (inside the submit
    /// function).
    pub(crate) fn submitting(&mut self, irp: PIRP) {
        self.irp = irp;
    }

    /// Makes the socket WSK created the block's and returns its handle.
    fn adopt(block: PoolBox<SocketShared>, socket: PWSK_SOCKET) -> SocketHandle {
        let shared = block.into_raw();
        // SAFETY: our block, its socket just created; it stays put until
        // the closing protocol frees it (the handle starts it).
        unsafe { SocketShared::set_socket(shared, socket) };
        // SAFETY: the block's handle, taken once.
        unsafe { SocketHandle::from_raw(shared) }
    }

    /// The operation completed normally with `status` and `information`
    /// (the new `PWSK_SOCKET` on success): the socket's handle, or the
    /// error.
    pub(crate) fn finish(
        mut self,
        status: NTSTATUS,
        information: ULONG_PTR,
    ) -> Result<SocketHandle> {
        self.irp = core::ptr::null_mut();
        let block = self.block.take();
        crate::error::check(status)?;
        let socket = information as PWSK_SOCKET;
        match block {
            Some(block) if !socket.is_null() => Ok(Self::adopt(block, socket)),
            _ => Err(Error::from_status(STATUS_UNSUCCESSFUL)),
        }
    }
}

impl Drop for NewSocket {
    fn drop(&mut self) {
        let Some(block) = self.block.take() else {
            return;
        };
        if self.irp.is_null() {
            return; // never submitted: just free the block
        }
        // Abandoned and finished by the completion routine, which drops the
        // resources before it frees the IRP: the result is readable.
        // SAFETY: the IRP is live (see above).
        let status = unsafe { irp_status(self.irp) };
        // SAFETY: as above.
        let information = unsafe { irp_information(self.irp) };
        if NT_SUCCESS(status) && status != STATUS_PENDING && information != 0 {
            // Closes the socket nobody will use.
            drop(Self::adopt(block, information as PWSK_SOCKET));
        }
    }
}

pub(crate) struct SocketRes {
    pub(crate) new: NewSocket,
    pub(crate) client: PWSK_CLIENT,
    pub(crate) dispatch: PFN_WSK_SOCKET,
    pub(crate) family: ADDRESS_FAMILY,
    pub(crate) kind: Kind,
}

// SAFETY: the client handle is usable from any thread.
unsafe impl Send for SocketRes {}

pub(crate) fn submit_socket(irp: PIRP, r: &mut SocketRes) -> Submission {
    let Some(socket) = r.dispatch else {
        return Submission::NotSubmitted(STATUS_NOT_SUPPORTED);
    };
    let Some(registration) = r.new.registration().map(RegRef::clone_ref) else {
        return Submission::NotSubmitted(STATUS_INVALID_PARAMETER);
    };
    let Some(_call) = registration.enter_provider() else {
        return Submission::NotSubmitted(STATUS_DEVICE_NOT_READY);
    };
    // The documented combinations: SOCK_STREAM + IPPROTO_TCP for listening
    // and connection sockets, SOCK_DGRAM + IPPROTO_UDP for datagram ones.
    let (socket_type, protocol) = if r.kind == Kind::Datagram {
        (SOCK_DGRAM, IPPROTO_UDP)
    } else {
        (SOCK_STREAM, IPPROTO_TCP)
    };
    let (client, family, flags, context) = (r.client, r.family, r.kind.flags(), r.new.context());
    r.new.submitting(irp);
    // SAFETY: WskSocket with our IRP, under a live capture; the context
    // (the new block) stays valid until the socket is closed; the event
    // table is static.
    Submission::Submitted(unsafe {
        socket(
            client,
            family,
            socket_type,
            protocol,
            flags,
            context,
            r.kind.client_dispatch(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            irp,
        )
    })
}

pub(crate) struct SocketConnectRes {
    pub(crate) new: NewSocket,
    pub(crate) client: PWSK_CLIENT,
    pub(crate) dispatch: PFN_WSK_SOCKET_CONNECT,
    pub(crate) local: SockAddrBuf,
    pub(crate) remote: SockAddrBuf,
}

// SAFETY: as SocketRes.
unsafe impl Send for SocketConnectRes {}

pub(crate) fn submit_socket_connect(irp: PIRP, r: &mut SocketConnectRes) -> Submission {
    let Some(socket_connect) = r.dispatch else {
        return Submission::NotSubmitted(STATUS_NOT_SUPPORTED);
    };
    let Some(registration) = r.new.registration().map(RegRef::clone_ref) else {
        return Submission::NotSubmitted(STATUS_INVALID_PARAMETER);
    };
    let Some(_call) = registration.enter_provider() else {
        return Submission::NotSubmitted(STATUS_DEVICE_NOT_READY);
    };
    let (local, remote, context) = (r.local.as_mut_ptr(), r.remote.as_mut_ptr(), r.new.context());
    let client = r.client;
    r.new.submitting(irp);
    // SAFETY: WskSocketConnect with our IRP, under a live capture;
    // addresses and context live in the resources / the new block.
    Submission::Submitted(unsafe {
        socket_connect(
            client,
            SOCK_STREAM,
            IPPROTO_TCP,
            local,
            remote,
            0,
            context,
            &crate::callbacks::CONNECTION_EVENTS,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            irp,
        )
    })
}

pub(crate) struct AcceptRes {
    pub(crate) new: NewSocket,
    pub(crate) listen: NonNull<SocketShared>,
    pub(crate) local: SockAddrBuf,
    pub(crate) remote: SockAddrBuf,
}

// SAFETY: as SendRes.
unsafe impl Send for AcceptRes {}

pub(crate) fn submit_accept(irp: PIRP, r: &mut AcceptRes) -> Submission {
    let (local, remote, context) = (r.local.as_mut_ptr(), r.remote.as_mut_ptr(), r.new.context());
    let new = &mut r.new;
    on_socket(r.listen, |listen| {
        let Some(accept) = dispatch_entry!(listen, WSK_PROVIDER_LISTEN_DISPATCH, WskAccept) else {
            return Submission::NotSubmitted(STATUS_NOT_SUPPORTED);
        };
        new.submitting(irp);
        // SAFETY: WskAccept with our IRP; the address out-parameters and
        // the new block live in the resources until completion.
        Submission::Submitted(unsafe {
            accept(
                listen,
                0,
                context,
                &crate::callbacks::CONNECTION_EVENTS,
                local,
                remote,
                irp,
            )
        })
    })
}
