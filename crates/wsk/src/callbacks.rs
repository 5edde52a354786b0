//! The client event callbacks (`WskAcceptEvent`, `WskReceiveEvent`,
//! `WskDisconnectEvent`, `WskReceiveFromEvent`) and the client dispatch
//! tables every socket of this crate is created with.
//!
//! Each callback gets the socket's [`SocketShared`] block as its context
//! and only offers the event to the block's bounded queue: a queued
//! indication is retained (STATUS_PENDING) and handed to the consumer once
//! the callback returned (its [`CallbackGuard`] is dropped last), and the
//! consumer releases it with `WskRelease` when done (zero-copy); when the
//! queue is full (or the socket is closing, or no queue was set up) the
//! callback answers STATUS_DATA_NOT_ACCEPTED (STATUS_REQUEST_NOT_ACCEPTED
//! for an accept), the documented backpressure, and the queue never grows.
//! An indication flagged `WSK_FLAG_RELEASE_ASAP` (the provider's buffers are
//! scarce) is copied into pool and given back at once (STATUS_SUCCESS); if
//! the copy cannot be allocated, it is refused.
//!
//! Callbacks run at IRQL <= DISPATCH_LEVEL on a provider thread or inside
//! one of this crate's own calls, possibly several at once on one datagram
//! socket. They never block, never call WSK and never wait; they wake the
//! consumer after releasing the queue's spin lock. Allocations: the accept
//! callback's block for the accepted socket (and its close IRP), a
//! RELEASE_ASAP copy; both non-paged, legal at DISPATCH_LEVEL, and a
//! failure refuses the event.

use alloc::vec::Vec;
use core::ptr::NonNull;

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
        WskSendBacklogEvent: Some(on_send_backlog),
    };

/// Events of datagram sockets.
pub(crate) static DATAGRAM_EVENTS: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
    WskReceiveFromEvent: Some(on_receive_from),
};

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

/// Copies a data indication chain into pool (for `WSK_FLAG_RELEASE_ASAP`);
/// `None` if the copy cannot be allocated.
///
/// # Safety
/// `indication` is a chain the provider handed the running callback.
unsafe fn copy_chain(indication: PWSK_DATA_INDICATION, bytes: usize) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    data.try_reserve_exact(bytes).ok()?;
    let mut element = indication;
    while !element.is_null() {
        // SAFETY: a chain element, live during the callback.
        let this = unsafe { &*element };
        // SAFETY: the provider's buffers, live during the callback.
        for chunk in unsafe { crate::events::wsk_buf_chunks(&this.Buffer) } {
            let room = bytes - data.len();
            data.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        element = this.Next;
    }
    Some(data)
}

/// `WskReceiveEvent`: queue the chain (retain it), copy it if the provider
/// wants its buffers back at once, or refuse it.
unsafe extern "C" fn on_receive(
    context: PVOID,
    flags: ULONG,
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
    // Dropped last: what this callback queues is handed out only then.
    let guard = shared.callback_entered();
    let bytes = bytes_indicated as usize;
    if flags & WSK_FLAG_RELEASE_ASAP != 0 {
        // SAFETY: the chain handed to this callback.
        return match unsafe { copy_chain(indication, bytes) } {
            Some(data) => match shared.offer(Event::Copied(data), guard.number()) {
                Offer::Queued => STATUS_SUCCESS,
                Offer::Refused => STATUS_DATA_NOT_ACCEPTED,
            },
            None => {
                shared.refuse(guard.number());
                STATUS_DATA_NOT_ACCEPTED
            }
        };
    }
    let event = Event::Data {
        head: indication,
        bytes,
    };
    match shared.offer(event, guard.number()) {
        Offer::Queued => STATUS_PENDING,
        Offer::Refused => STATUS_DATA_NOT_ACCEPTED,
    }
}

/// `WskDisconnectEvent`: the peer closed (gracefully) or reset the
/// connection.
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

/// `WskSendBacklogEvent`: the ideal send backlog changed.
unsafe extern "C" fn on_send_backlog(context: PVOID, ideal: SIZE_T) -> NTSTATUS {
    // SAFETY: our context, live while callbacks run.
    if let Some(shared) = unsafe { shared(context) } {
        shared.set_ideal_backlog(ideal as usize);
    }
    STATUS_SUCCESS
}

/// `WskReceiveFromEvent`: queue the datagram chain or refuse it.
unsafe extern "C" fn on_receive_from(
    context: PVOID,
    flags: ULONG,
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
    let guard = shared.callback_entered();
    let event = Event::Datagrams {
        head: indication,
        flags,
    };
    match shared.offer(event, guard.number()) {
        Offer::Queued => STATUS_PENDING,
        Offer::Refused => STATUS_DATA_NOT_ACCEPTED,
    }
}

/// Refuses an accepted socket: no context or table handed back (WSK then
/// resets the connection).
///
/// # Safety
/// WSK's out-parameters, writable during the callback (or null).
unsafe fn refuse(
    accept_context: *mut PVOID,
    accept_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS {
    if !accept_context.is_null() {
        // SAFETY: caller's contract.
        unsafe { accept_context.write(core::ptr::null_mut()) };
    }
    if !accept_dispatch.is_null() {
        // SAFETY: caller's contract.
        unsafe { accept_dispatch.write(core::ptr::null()) };
    }
    STATUS_REQUEST_NOT_ACCEPTED
}

/// `WskAcceptEvent`: give the accepted socket a block of its own and queue
/// it (handed out once this callback returned), or refuse the connection.
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
        // SAFETY: WSK's out-parameters.
        return unsafe { refuse(accept_context, accept_dispatch) };
    };
    if accept_socket.is_null() {
        listener.set_peer(Peer::Failed(STATUS_FILE_FORCED_CLOSED));
        return STATUS_SUCCESS;
    }
    if accept_context.is_null() || accept_dispatch.is_null() {
        // SAFETY: WSK's out-parameters (null ones are skipped).
        return unsafe { refuse(accept_context, accept_dispatch) };
    }
    {
        let mut state = listener.state();
        let room = state.ring.as_ref().is_some_and(|r| !r.is_full());
        if !room || state.closing {
            state.refused += 1;
            drop(state);
            // SAFETY: WSK's out-parameters.
            return unsafe { refuse(accept_context, accept_dispatch) };
        }
    }
    let block = match crate::shared::SocketShared::try_new(
        Kind::Connection,
        listener.registration().clone_ref(),
    ) {
        Ok(block) => block,
        Err(_) => {
            listener.state().refused += 1;
            // SAFETY: WSK's out-parameters.
            return unsafe { refuse(accept_context, accept_dispatch) };
        }
    };
    let guard = listener.callback_entered();
    // What the listener enabled for its accepted sockets, they now have.
    block.set_inherited_events(listener.inherited_events());
    let accepted: NonNull<SocketShared> = block.into_raw();
    // SAFETY: our fresh block; its socket is the one WSK hands us.
    unsafe { SocketShared::set_socket(accepted, accept_socket) };
    let event = Event::Accepted {
        socket: accepted,
        // SAFETY: WSK's addresses, valid during the call.
        local: unsafe { read_sockaddr(local) },
        // SAFETY: as above.
        remote: unsafe { read_sockaddr(remote) },
    };
    // SAFETY: WSK's out-parameters, writable during the call.
    unsafe { accept_context.write(accepted.as_ptr().cast()) };
    // SAFETY: as above.
    unsafe { accept_dispatch.write(&CONNECTION_EVENTS) };
    match listener.offer(event, guard.number()) {
        Offer::Queued => STATUS_SUCCESS,
        Offer::Refused => {
            // Only this callback adds to the queue and it had room, so the
            // listener started closing meanwhile: WSK closes the refused
            // socket itself; ours is forgotten (unlinked, freed).
            // SAFETY: not queued: the block is ours alone; WSK will not call
            // back on a refused socket.
            unsafe { crate::shared::forget_unaccepted(accepted) };
            // SAFETY: WSK's out-parameters.
            unsafe { refuse(accept_context, accept_dispatch) }
        }
    }
}
