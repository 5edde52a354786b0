//! The WSK calls as irp-future operations: for each call, the resources
//! that must stay valid until its IRP completes (owned buffers with their
//! MDL and `WSK_BUF`, address and control out-parameters, the new socket's
//! block) and a submit function that hands the IRP to exactly one provider
//! function and returns `Submission::Submitted` with its status.
//!
//! Submit functions are plain `fn` pointers (the socket and everything else
//! they need is in the resources), so operations are `Send` and their types
//! can be named by the receive queues. Each one calls the provider function
//! of the socket's category; when the provider has none it returns
//! `Submission::NotSubmitted(STATUS_NOT_SUPPORTED)` without handing the IRP
//! over.
//!
//! IRQL: submitted and polled at <= DISPATCH_LEVEL; the resources of an
//! operation dropped in flight are dropped by its completion routine at
//! DISPATCH_LEVEL (buffers, MDLs and pool blocks, all legal there).

use irp_future::{Completed, IoBuf, IoBufMut, IrpOp, MdlBuf, Submission};
use nt::access::{irp_information, irp_status};
use nt::wsk::*;
use nt::*;

use crate::addr::SockAddrBuf;
use crate::error::{Error, Result};
use crate::pool::PoolBox;
use crate::shared::{Kind, SocketHandle, SocketShared, table};

/// A submit function for resources `R`.
pub(crate) type Submit<R> = fn(PIRP, &mut R) -> Submission;

/// Runs one WSK call on an IRP of its own (`IoAllocateIrp(1, FALSE)`).
pub(crate) async fn call<R: Send + 'static>(resources: R, submit: Submit<R>) -> Completed<R> {
    // SAFETY: every `Submit` of this module hands the IRP to exactly one
    // WSK provider function (which completes it exactly once, whatever it
    // returns) and returns `Submitted` with that function's status, or
    // `NotSubmitted` without handing it over; the provider uses the
    // resources (through the pointers the submit function derives from
    // them) only until it completes the IRP.
    unsafe { IrpOp::allocated(resources, submit) }.await
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
    /// Describes the first `len` bytes of `buf`.
    pub(crate) fn new(buf: MdlBuf<B>, len: usize) -> Self {
        let mdl = buf.mdl();
        let len = if mdl.is_null() { 0 } else { len };
        Self {
            wsk: WSK_BUF {
                Mdl: mdl,
                Offset: 0,
                Length: len as SIZE_T,
            },
            buf,
        }
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
    pub(crate) socket: PWSK_SOCKET,
    pub(crate) lent: Lent<B>,
    pub(crate) flags: ULONG,
}

// SAFETY: the socket pointer is only passed to the thread-safe provider.
unsafe impl<B: IoBuf> Send for SendRes<B> {}

pub(crate) fn submit_send<B: IoBuf>(irp: PIRP, r: &mut SendRes<B>) -> Submission {
    // SAFETY: a live connection socket (its handle is borrowed by the
    // caller for the whole call).
    let dispatch: WSK_PROVIDER_CONNECTION_DISPATCH = unsafe { table(r.socket) };
    match dispatch.WskSend {
        Some(send) => {
            // SAFETY: WskSend with our IRP; the WSK_BUF and its MDL live in the
            // resources until completion.
            Submission::Submitted(unsafe { send(r.socket, &mut r.lent.wsk, r.flags, irp) })
        }
        None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
    }
}

pub(crate) struct RecvRes<B: IoBufMut> {
    pub(crate) socket: PWSK_SOCKET,
    pub(crate) lent: Lent<B>,
    pub(crate) flags: ULONG,
}

// SAFETY: as SendRes.
unsafe impl<B: IoBufMut> Send for RecvRes<B> {}

pub(crate) fn submit_receive<B: IoBufMut>(irp: PIRP, r: &mut RecvRes<B>) -> Submission {
    // SAFETY: a live connection socket.
    let dispatch: WSK_PROVIDER_CONNECTION_DISPATCH = unsafe { table(r.socket) };
    match dispatch.WskReceive {
        Some(receive) => {
            // SAFETY: WskReceive with our IRP; the buffer lives in the
            // resources until completion.
            Submission::Submitted(unsafe { receive(r.socket, &mut r.lent.wsk, r.flags, irp) })
        }
        None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
    }
}

/// Records the bytes a completed receive wrote into its buffer: on
/// success, and also on STATUS_BUFFER_OVERFLOW (a truncated datagram: the
/// bytes that fit) and STATUS_CANCELLED (bytes a cancelled receive had
/// already copied).
pub(crate) fn received<B: IoBufMut>(
    buf: &mut MdlBuf<B>,
    status: NTSTATUS,
    information: usize,
) -> usize {
    if !NT_SUCCESS(status) && status != STATUS_CANCELLED && status != STATUS_BUFFER_OVERFLOW {
        return 0;
    }
    let n = information.min(buf.bytes_total());
    // SAFETY: the provider wrote `information` bytes at the buffer's start
    // (a cancelled receive may carry bytes it had already copied).
    unsafe { buf.set_init(n) };
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
    pub(crate) socket: PWSK_SOCKET,
    pub(crate) wsk: WSK_BUF,
}

// SAFETY: as SendRes.
unsafe impl Send for RearmRes {}

impl RearmRes {
    pub(crate) fn new(socket: PWSK_SOCKET) -> Self {
        Self {
            socket,
            wsk: WSK_BUF {
                Mdl: core::ptr::null_mut(),
                Offset: 0,
                Length: 0,
            },
        }
    }
}

pub(crate) fn submit_rearm(irp: PIRP, r: &mut RearmRes) -> Submission {
    // SAFETY: a live connection socket.
    let dispatch: WSK_PROVIDER_CONNECTION_DISPATCH = unsafe { table(r.socket) };
    match dispatch.WskReceive {
        // SAFETY: WskReceive of 0 bytes (a NULL MDL is allowed for 0).
        Some(receive) => Submission::Submitted(unsafe { receive(r.socket, &mut r.wsk, 0, irp) }),
        None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
    }
}

pub(crate) struct DisconnectRes {
    pub(crate) socket: PWSK_SOCKET,
    pub(crate) flags: ULONG,
}

// SAFETY: as SendRes.
unsafe impl Send for DisconnectRes {}

pub(crate) fn submit_disconnect(irp: PIRP, r: &mut DisconnectRes) -> Submission {
    // SAFETY: a live connection socket.
    let dispatch: WSK_PROVIDER_CONNECTION_DISPATCH = unsafe { table(r.socket) };
    match dispatch.WskDisconnect {
        // SAFETY: WskDisconnect without a buffer.
        Some(disconnect) => Submission::Submitted(unsafe {
            disconnect(r.socket, core::ptr::null_mut(), r.flags, irp)
        }),
        None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
    }
}

// === Datagrams ===

pub(crate) struct SendToRes<B: IoBuf> {
    pub(crate) socket: PWSK_SOCKET,
    pub(crate) lent: Lent<B>,
    pub(crate) remote: SockAddrBuf,
}

// SAFETY: as SendRes.
unsafe impl<B: IoBuf> Send for SendToRes<B> {}

pub(crate) fn submit_send_to<B: IoBuf>(irp: PIRP, r: &mut SendToRes<B>) -> Submission {
    // SAFETY: a live datagram socket.
    let dispatch: WSK_PROVIDER_DATAGRAM_DISPATCH = unsafe { table(r.socket) };
    match dispatch.WskSendTo {
        // SAFETY: WskSendTo with our IRP; buffer and address live in the
        // resources until completion.
        Some(send_to) => Submission::Submitted(unsafe {
            send_to(
                r.socket,
                &mut r.lent.wsk,
                0,
                r.remote.as_mut_ptr(),
                0,
                core::ptr::null_mut(),
                irp,
            )
        }),
        None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
    }
}

pub(crate) struct RecvFromRes<B: IoBufMut> {
    pub(crate) socket: PWSK_SOCKET,
    pub(crate) lent: Lent<B>,
    pub(crate) remote: SockAddrBuf,
    pub(crate) control_length: ULONG,
    pub(crate) control_flags: ULONG,
}

// SAFETY: as SendRes.
unsafe impl<B: IoBufMut> Send for RecvFromRes<B> {}

impl<B: IoBufMut> RecvFromRes<B> {
    pub(crate) fn new(socket: PWSK_SOCKET, buf: MdlBuf<B>) -> Self {
        let len = buf.bytes_total();
        Self {
            socket,
            lent: Lent::new(buf, len),
            remote: SockAddrBuf::empty(),
            control_length: 0,
            control_flags: 0,
        }
    }
}

pub(crate) fn submit_receive_from<B: IoBufMut>(irp: PIRP, r: &mut RecvFromRes<B>) -> Submission {
    // SAFETY: a live datagram socket.
    let dispatch: WSK_PROVIDER_DATAGRAM_DISPATCH = unsafe { table(r.socket) };
    match dispatch.WskReceiveFrom {
        // SAFETY: WskReceiveFrom with our IRP; the buffer and every
        // out-parameter live in the resources until completion (no control
        // buffer is passed, so ControlLength in is 0).
        Some(receive_from) => Submission::Submitted(unsafe {
            receive_from(
                r.socket,
                &mut r.lent.wsk,
                0,
                r.remote.as_mut_ptr(),
                &mut r.control_length,
                core::ptr::null_mut(),
                &mut r.control_flags,
                irp,
            )
        }),
        None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
    }
}

// === Socket-level calls ===

pub(crate) struct BindRes {
    pub(crate) socket: PWSK_SOCKET,
    pub(crate) kind: Kind,
    pub(crate) address: SockAddrBuf,
}

// SAFETY: as SendRes.
unsafe impl Send for BindRes {}

pub(crate) fn submit_bind(irp: PIRP, r: &mut BindRes) -> Submission {
    // WskBind is at the same place in each table, but each table is read
    // as its own type.
    let bind = match r.kind {
        // SAFETY: a live listening socket.
        Kind::Listen => unsafe { table::<WSK_PROVIDER_LISTEN_DISPATCH>(r.socket) }.WskBind,
        // SAFETY: a live connection socket.
        Kind::Connection => unsafe { table::<WSK_PROVIDER_CONNECTION_DISPATCH>(r.socket) }.WskBind,
        // SAFETY: a live datagram socket.
        Kind::Datagram => unsafe { table::<WSK_PROVIDER_DATAGRAM_DISPATCH>(r.socket) }.WskBind,
    };
    match bind {
        Some(bind) => {
            // SAFETY: WskBind with our IRP and an address in the resources.
            Submission::Submitted(unsafe { bind(r.socket, r.address.as_mut_ptr(), 0, irp) })
        }
        None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
    }
}

pub(crate) struct AddressRes {
    pub(crate) socket: PWSK_SOCKET,
    pub(crate) kind: Kind,
    pub(crate) remote: bool,
    pub(crate) address: SockAddrBuf,
}

// SAFETY: as SendRes.
unsafe impl Send for AddressRes {}

pub(crate) fn submit_address(irp: PIRP, r: &mut AddressRes) -> Submission {
    // WskGetLocalAddress sits at a different place in each table.
    let get = match (r.kind, r.remote) {
        (Kind::Connection, true) => {
            // SAFETY: a live connection socket.
            unsafe { table::<WSK_PROVIDER_CONNECTION_DISPATCH>(r.socket) }.WskGetRemoteAddress
        }
        (_, true) => None,
        (Kind::Listen, false) => {
            // SAFETY: a live listening socket.
            unsafe { table::<WSK_PROVIDER_LISTEN_DISPATCH>(r.socket) }.WskGetLocalAddress
        }
        (Kind::Connection, false) => {
            // SAFETY: a live connection socket.
            unsafe { table::<WSK_PROVIDER_CONNECTION_DISPATCH>(r.socket) }.WskGetLocalAddress
        }
        (Kind::Datagram, false) => {
            // SAFETY: a live datagram socket.
            unsafe { table::<WSK_PROVIDER_DATAGRAM_DISPATCH>(r.socket) }.WskGetLocalAddress
        }
    };
    match get {
        // SAFETY: the address query with our IRP; the out-parameter lives
        // in the resources.
        Some(get) => Submission::Submitted(unsafe { get(r.socket, r.address.as_mut_ptr(), irp) }),
        None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
    }
}

pub(crate) struct OptionRes {
    pub(crate) socket: PWSK_SOCKET,
    pub(crate) request: WSK_CONTROL_SOCKET_TYPE,
    pub(crate) level: ULONG,
    pub(crate) code: ULONG,
    pub(crate) value: ULONG,
}

// SAFETY: as SendRes.
unsafe impl Send for OptionRes {}

pub(crate) fn submit_option(irp: PIRP, r: &mut OptionRes) -> Submission {
    // SAFETY: a live socket (every table starts with the basic one).
    let basic: WSK_PROVIDER_BASIC_DISPATCH = unsafe { table(r.socket) };
    let size = core::mem::size_of::<ULONG>() as SIZE_T;
    let value: *mut ULONG = &mut r.value;
    let (input_size, input, output_size, output) = if r.request == WskGetOption {
        (0, core::ptr::null_mut(), size, value.cast())
    } else {
        (size, value.cast(), 0, core::ptr::null_mut())
    };
    match basic.WskControlSocket {
        // SAFETY: WskControlSocket with our IRP; value and size live in the
        // resources.
        Some(control) => Submission::Submitted(unsafe {
            control(
                r.socket,
                r.request,
                r.code,
                r.level,
                input_size,
                input,
                output_size,
                output,
                // With an IRP the size comes back in IoStatus.Information;
                // "OutputSizeReturned ... should be NULL" then.
                core::ptr::null_mut(),
                irp,
            )
        }),
        None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
    }
}

/// `SO_WSK_EVENT_CALLBACK` without an IRP (completes inline, as WSK
/// documents for enabling). IRQL <= DISPATCH_LEVEL.
pub(crate) fn set_event_mask(socket: PWSK_SOCKET, mask: ULONG) -> NTSTATUS {
    // SAFETY: a live socket (the caller holds its handle).
    let basic: WSK_PROVIDER_BASIC_DISPATCH = unsafe { table(socket) };
    let Some(control) = basic.WskControlSocket else {
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
    pub(crate) fn new(kind: Kind) -> Result<Self> {
        Ok(Self {
            block: Some(SocketShared::try_new(kind, false)?),
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

    /// Records the IRP about to be handed over (inside the submit
    /// function).
    pub(crate) fn submitting(&mut self, irp: PIRP) {
        self.irp = irp;
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
            Some(block) if !socket.is_null() => {
                block.set_socket(socket);
                Ok(SocketHandle::new(block))
            }
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
            block.set_socket(information as PWSK_SOCKET);
            // Closes the socket nobody will use.
            drop(SocketHandle::new(block));
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
    // The documented combinations: SOCK_STREAM + IPPROTO_TCP for listening
    // and connection sockets, SOCK_DGRAM + IPPROTO_UDP for datagram ones.
    let (socket_type, protocol) = if r.kind == Kind::Datagram {
        (SOCK_DGRAM, IPPROTO_UDP)
    } else {
        (SOCK_STREAM, IPPROTO_TCP)
    };
    r.new.submitting(irp);
    // SAFETY: WskSocket with our IRP; the context (the new block) stays
    // valid until the socket is closed; the event table is static.
    Submission::Submitted(unsafe {
        socket(
            r.client,
            r.family,
            socket_type,
            protocol,
            r.kind.flags(),
            r.new.context(),
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
    r.new.submitting(irp);
    // SAFETY: WskSocketConnect with our IRP; addresses and context live in
    // the resources / the new block.
    Submission::Submitted(unsafe {
        socket_connect(
            r.client,
            SOCK_STREAM,
            IPPROTO_TCP,
            r.local.as_mut_ptr(),
            r.remote.as_mut_ptr(),
            0,
            r.new.context(),
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
    pub(crate) listen: PWSK_SOCKET,
    pub(crate) local: SockAddrBuf,
    pub(crate) remote: SockAddrBuf,
}

// SAFETY: as SendRes.
unsafe impl Send for AcceptRes {}

pub(crate) fn submit_accept(irp: PIRP, r: &mut AcceptRes) -> Submission {
    // SAFETY: a live listening socket.
    let dispatch: WSK_PROVIDER_LISTEN_DISPATCH = unsafe { table(r.listen) };
    let Some(accept) = dispatch.WskAccept else {
        return Submission::NotSubmitted(STATUS_NOT_SUPPORTED);
    };
    r.new.submitting(irp);
    // SAFETY: WskAccept with our IRP; the address out-parameters and the
    // new block live in the resources until completion.
    Submission::Submitted(unsafe {
        accept(
            r.listen,
            0,
            r.new.context(),
            &crate::callbacks::CONNECTION_EVENTS,
            r.local.as_mut_ptr(),
            r.remote.as_mut_ptr(),
            irp,
        )
    })
}
