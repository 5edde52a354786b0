//! The client event callbacks (`WskAcceptEvent`, `WskReceiveEvent`,
//! `WskDisconnectEvent`, `WskReceiveFromEvent`) and the client dispatch
//! tables every socket of this crate is created with.
//!
//! Each callback gets the socket's [`SocketShared`] block as its context
//! and only offers the event to the block's bounded queue: a queued
//! indication is retained (STATUS_PENDING) and handed to the consumer,
//! who releases it with `WskRelease` when done (zero-copy); when the queue
//! is full (or the socket is closing, or no queue was set up) the callback
//! answers STATUS_DATA_NOT_ACCEPTED (STATUS_REQUEST_NOT_ACCEPTED for an
//! accept), the documented backpressure, and the queue never grows.
//!
//! Callbacks run at IRQL <= DISPATCH_LEVEL (usually DISPATCH_LEVEL) on a
//! provider thread, one at a time per socket. They never block, never call
//! WSK and never wait; they wake the consumer after releasing the queue's
//! spin lock, without allocating. The only allocation is the accept
//! callback's: the accepted socket's own block (non-paged pool and its
//! close IRP, legal at DISPATCH_LEVEL); when that fails the connection is
//! refused.

use nt::wsk::*;
use nt::*;

use crate::shared::{Event, Kind, Offer, Peer, SocketShared};

/// Events of listening sockets.
pub(crate) static LISTEN_EVENTS: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: Some(on_accept),
    WskInspectEvent: None,
    WskAbortEvent: None,
};

/// Events of connection sockets.
pub(crate) static CONNECTION_EVENTS: WSK_CLIENT_CONNECTION_DISPATCH =
    WSK_CLIENT_CONNECTION_DISPATCH {
        WskReceiveEvent: Some(on_receive),
        WskDisconnectEvent: Some(on_disconnect),
        WskSendBacklogEvent: None,
    };

/// Events of datagram sockets.
pub(crate) static DATAGRAM_EVENTS: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
    WskReceiveFromEvent: Some(on_receive_from),
};

/// Runs the rest of a receive callback at DISPATCH_LEVEL (restoring the
/// IRQL when dropped). WSK may call back below DISPATCH_LEVEL; raised, the
/// callback cannot be preempted between queueing its chain and returning,
/// so a consumer waiting for that return (before it releases the chain or
/// re-arms the provider) never waits for a thread its own processor
/// preempted: it spins only while another processor finishes the callback.
struct AtDispatch {
    old: KIRQL,
}

impl AtDispatch {
    fn raise() -> Self {
        let mut old: KIRQL = 0;
        // SAFETY: WSK calls back at IRQL <= DISPATCH_LEVEL.
        unsafe { KeRaiseIrql(DISPATCH_LEVEL, &mut old) };
        Self { old }
    }
}

impl Drop for AtDispatch {
    fn drop(&mut self) {
        // SAFETY: back to the IRQL the raise found.
        unsafe { KeLowerIrql(self.old) };
    }
}

/// The block behind a callback's context.
///
/// # Safety
/// `context` is null or the `SocketShared` of a socket that is not yet
/// closed (WSK stops calling back before it completes the close, and the
/// block is freed only after that).
unsafe fn shared<'a>(context: PVOID) -> Option<&'a SocketShared> {
    // SAFETY: caller's contract.
    unsafe { context.cast::<SocketShared>().as_ref() }
}

/// `WskReceiveEvent`: queue the chain (retain it) or refuse it.
unsafe extern "C" fn on_receive(
    context: PVOID,
    _flags: ULONG,
    indication: PWSK_DATA_INDICATION,
    bytes_indicated: SIZE_T,
    _bytes_accepted: *mut SIZE_T,
) -> NTSTATUS {
    // SAFETY: our context, live while callbacks run.
    let Some(shared) = (unsafe { shared(context) }) else {
        return STATUS_DATA_NOT_ACCEPTED;
    };
    if indication.is_null() {
        shared.set_peer(Peer::Failed(STATUS_FILE_FORCED_CLOSED));
        return STATUS_SUCCESS;
    }
    // Dropped after the status is computed, the IRQL last: the chain may
    // be released only after that (see SocketShared::callback_entered).
    let _irql = AtDispatch::raise();
    let guard = shared.callback_entered();
    let event = Event::Data {
        head: indication,
        bytes: bytes_indicated as usize,
        callback: guard.number(),
    };
    match shared.offer(event) {
        Offer::Queued => STATUS_PENDING,
        Offer::Refused => STATUS_DATA_NOT_ACCEPTED,
    }
}

/// `WskDisconnectEvent`: the peer closed (gracefully, after all data was
/// indicated) or reset the connection.
unsafe extern "C" fn on_disconnect(context: PVOID, flags: ULONG) -> NTSTATUS {
    // SAFETY: our context, live while callbacks run.
    if let Some(shared) = unsafe { shared(context) } {
        let peer = if flags & WSK_FLAG_ABORTIVE != 0 {
            Peer::Failed(STATUS_CONNECTION_RESET)
        } else {
            Peer::Closed
        };
        shared.set_peer(peer);
    }
    STATUS_SUCCESS
}

/// `WskReceiveFromEvent`: queue the datagram chain or refuse it.
unsafe extern "C" fn on_receive_from(
    context: PVOID,
    _flags: ULONG,
    indication: PWSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    // SAFETY: our context, live while callbacks run.
    let Some(shared) = (unsafe { shared(context) }) else {
        return STATUS_DATA_NOT_ACCEPTED;
    };
    if indication.is_null() {
        shared.set_peer(Peer::Failed(STATUS_FILE_FORCED_CLOSED));
        return STATUS_SUCCESS;
    }
    let _irql = AtDispatch::raise();
    let guard = shared.callback_entered();
    let event = Event::Datagrams {
        head: indication,
        callback: guard.number(),
    };
    match shared.offer(event) {
        Offer::Queued => STATUS_PENDING,
        Offer::Refused => STATUS_DATA_NOT_ACCEPTED,
    }
}

/// `WskAcceptEvent`: give the accepted socket a block of its own and queue
/// it, or refuse the connection (WSK then resets it).
unsafe extern "C" fn on_accept(
    context: PVOID,
    _flags: ULONG,
    local: PSOCKADDR,
    remote: PSOCKADDR,
    accept_socket: PWSK_SOCKET,
    accept_context: *mut PVOID,
    accept_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS {
    // SAFETY: our context, live while callbacks run.
    let Some(listener) = (unsafe { shared(context) }) else {
        return STATUS_REQUEST_NOT_ACCEPTED;
    };
    if accept_socket.is_null() {
        listener.set_peer(Peer::Failed(STATUS_FILE_FORCED_CLOSED));
        return STATUS_SUCCESS;
    }
    {
        let mut state = listener.state();
        let room = state.ring.as_ref().is_some_and(|r| !r.is_full());
        if !room || state.closing {
            state.refused += 1;
            return STATUS_REQUEST_NOT_ACCEPTED;
        }
    }
    let Ok(block) = SocketShared::try_new(Kind::Connection, true) else {
        listener.state().refused += 1;
        return STATUS_REQUEST_NOT_ACCEPTED;
    };
    block.set_socket(accept_socket);
    let accepted = block.into_raw();
    let event = Event::Accepted {
        socket: accepted,
        // SAFETY: WSK's addresses, valid during the call.
        local: unsafe { read_sockaddr(local) },
        // SAFETY: as above.
        remote: unsafe { read_sockaddr(remote) },
    };
    if accept_context.is_null() || accept_dispatch.is_null() {
        // SAFETY: not queued: the block is still ours alone.
        drop(unsafe { crate::pool::PoolBox::from_raw(accepted) });
        return STATUS_REQUEST_NOT_ACCEPTED;
    }
    // SAFETY: WSK's out-parameters, writable during the call.
    unsafe { accept_context.write(accepted.as_ptr().cast()) };
    // SAFETY: as above.
    unsafe { accept_dispatch.write(&CONNECTION_EVENTS) };
    match listener.offer(event) {
        Offer::Queued => STATUS_SUCCESS,
        Offer::Refused => {
            // Only this callback adds to the queue, so it can only have
            // started closing: WSK closes the refused socket itself.
            // SAFETY: not queued: the block is still ours alone.
            drop(unsafe { crate::pool::PoolBox::from_raw(accepted) });
            STATUS_REQUEST_NOT_ACCEPTED
        }
    }
}
