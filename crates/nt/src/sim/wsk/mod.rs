//! The simulated WSK subsystem: a Winsock Kernel provider over real host
//! sockets (mio, non-blocking), with the NPI of [`crate::wsk`].
//!
//! A client registers (`WskRegister`), captures the provider NPI
//! (`WskCaptureProviderNPI`) and calls the provider's dispatch tables with
//! IRPs exactly as on Windows; completion routines and event callbacks run
//! the documented way. Each registration gets a provider thread (a mio
//! event loop at DISPATCH_LEVEL) that completes pending requests and calls
//! the event callbacks.
//!
//! # Completions
//!
//! Every provider function that takes an IRP completes it exactly once,
//! whatever it returns. When the result is known inside the call (data
//! already buffered, a send the host socket takes at once, a bind, an
//! address query, ...) the session's completion policy
//! ([`crate::sim::decide_completion`]) decides: `Inline` completes it before
//! the call returns (the completion routine runs on the caller's thread and
//! the call returns the final status); `Pending` marks it pending, returns
//! STATUS_PENDING and completes it from the provider thread at
//! DISPATCH_LEVEL (Driver Verifier's "force pending"). Requests that must
//! wait (no data yet, a connect in progress, a send the peer's window does
//! not take) always return STATUS_PENDING and complete from the provider
//! thread. Requests completed as a side effect of another call (an earlier
//! receive satisfied while a later one reads the socket) are completed by
//! the provider thread too.
//!
//! Every pending request is cancel-safe: `IoCancelIrp` completes it with
//! STATUS_CANCELLED exactly once, whichever of cancel and completion comes
//! first. Exceptions, documented: a send whose first bytes went to the
//! host is no longer cancellable (cancelling it could corrupt the stream);
//! it completes when all its bytes are out, or with the connection's error,
//! or when the socket closes. A cancelled receive that already holds bytes
//! (`WSK_FLAG_WAITALL`) completes with STATUS_CANCELLED and `Information` =
//! those bytes, so no data vanishes silently.
//!
//! # Policies where the documentation is silent
//!
//! - **Error table.** Host socket errors become NTSTATUS by the table in
//!   [`errors`] (reset -> STATUS_CONNECTION_RESET, abort ->
//!   STATUS_CONNECTION_ABORTED, refused -> STATUS_CONNECTION_REFUSED,
//!   address in use -> STATUS_ADDRESS_ALREADY_EXISTS, ...).
//! - **After a connection error** (reset, abort, a local abortive
//!   disconnect) the error is sticky: queued receives and sends, and every
//!   later receive, send or disconnect, complete with that status. Data the
//!   provider had already buffered is delivered first. Local abortive
//!   disconnects make it STATUS_CONNECTION_ABORTED.
//! - **Order.** Queued receives are served FIFO (the first queued gets the
//!   first bytes); sends go out in call order; accepts are served FIFO.
//!   Completion routines of different requests may run concurrently on
//!   different threads.
//! - **Receive.** Without `WSK_FLAG_WAITALL` a receive completes as soon as
//!   it holds at least one byte. After the peer's graceful close, pending
//!   and later receives complete with STATUS_SUCCESS and the bytes they hold
//!   (0 for an empty one). A zero-length receive (without
//!   `WSK_FLAG_DRAIN`) completes at once with STATUS_SUCCESS and 0 bytes and
//!   re-arms the receive event after STATUS_DATA_NOT_ACCEPTED or a partial
//!   accept. `WSK_FLAG_DRAIN` needs a zero length and completes on
//!   disconnect. Unknown flags: STATUS_NOT_SUPPORTED.
//! - **Send completion.** Under [`SendCompletion::Acknowledged`](super::SendCompletion)
//!   (the default) a `WskSend` completes once the peer has acknowledged all
//!   its bytes, as documented ("WSK does not perform any buffering of data
//!   when it sends data"): the provider writes the bytes to the host socket
//!   and watches the host's count of unacknowledged bytes (see `host`),
//!   looking again when the host reports an acknowledgement (Linux) and
//!   every 50 us to 2 ms while sends wait (every 2 ms where reports come,
//!   unless a FIN waits: that is not reported). So one send at a
//!   time is bound by round trips, as on Windows, and a peer that does not
//!   read stalls sends once its window is full. A send whose bytes are all
//!   written is no longer cancellable; at close or on a connection error it
//!   completes with STATUS_CANCELLED or the error and `Information` = its
//!   bytes the peer acknowledged. `SendCompletion::Copied` is the lenient
//!   alternative (complete when the host took the bytes), kept as a named
//!   policy; hosts that cannot count unacknowledged bytes (Windows hosts)
//!   get it whatever the policy, with a note on stderr.
//! - **Ideal send backlog.** `SIO_WSK_QUERY_IDEAL_SEND_BACKLOG` (WskIoctl,
//!   IRP required, connected connection sockets) returns the host
//!   transport's congestion window (where the host tells it, else its send
//!   buffer size): the bytes to keep outstanding. `WskSendBacklogEvent`,
//!   when enabled, is raised whenever that value changes.
//! - **Disconnect.** A graceful `WskDisconnect` queues behind the sends
//!   before it, sends its own buffer, then shuts the write side down (FIN)
//!   and completes when the transport finished ("fully completed by the
//!   transport protocol": under `Acknowledged`, once its bytes and the FIN
//!   are acknowledged, so it may never complete against a peer whose
//!   window stays closed); later sends get STATUS_INVALID_DEVICE_STATE;
//!   receives keep working. `WSK_FLAG_ABORTIVE` resets the connection (RST)
//!   at once.
//! - **Close.** `WskCloseSocket` completes every pending request of the
//!   socket with STATUS_CANCELLED, discards the data the provider holds
//!   unread, closes the host socket, and completes its own IRP once no
//!   request of the socket is in flight and no event callback of the socket
//!   runs. A connection is closed gracefully only when it is already
//!   disconnected in both directions (our graceful `WskDisconnect` done and
//!   the peer's FIN received, PFN_WSK_CLOSE_SOCKET); otherwise abortively,
//!   with an RST. Close is not cancellable. Retained indications are not
//!   released by a close (as documented): each one still retained is
//!   reported as a leak ([`LeakKind::WskIndication`](super::verifier::LeakKind)).
//! - **Misuse** is a verifier bugcheck naming the call (see [`violation`]):
//!   any call on a socket after `WskCloseSocket` (the second close
//!   included), through its stale pointer (closed sockets keep a poisoned
//!   header for the rest of the session, see `SocketHeader`) or through a
//!   table copied earlier; `WskCloseSocket` while another call on the socket
//!   has not returned; `WskRelease` of a chain never handed out or already
//!   released; a NULL IRP to a function that needs one; a pointer that is no
//!   socket.
//! - **Event callbacks** run on the provider threads, as callouts of the
//!   client's driver (`CalloutKind::WskCallback`), at the IRQL the session's
//!   [`CallbackIrql`] policy picks: DISPATCH_LEVEL (in
//!   DPC context, with `WSK_FLAG_AT_DISPATCH_LEVEL`), PASSIVE_LEVEL (without
//!   the flag), or either per callback (seeded). With several provider
//!   threads (`WskPolicy::provider_threads`) callbacks of different sockets,
//!   and of one datagram socket, run concurrently; those of one connection
//!   or listening socket one at a time. Under
//!   `WskPolicy::inline_indications` the indications due after the client's
//!   `WskReceive(0)`, enable or `WskRelease` are delivered inside that call,
//!   on its thread, at its IRQL. Never while the socket has queued receive
//!   IRPs for the same data (IRPs come first).
//!   Indications are chains of up to 64 KiB (16 KiB per element) for
//!   connections and up to 32 datagrams for datagram sockets, over provider
//!   memory. A connection buffers at most 256 KiB in the provider, counting
//!   indications the client retains; past that it stops reading the host
//!   socket (TCP backpressure), so a client that never releases stalls only
//!   its own connection. `WSK_FLAG_RELEASE_ASAP` is set once half of that is
//!   retained.
//! - **STATUS_DATA_NOT_ACCEPTED.** Connections: the bytes stay buffered and
//!   no receive event is raised until a `WskReceive` completes (a
//!   zero-length one suffices). A partial accept (`*BytesAccepted` <
//!   indicated) acts the same for the rest. Datagrams: with a per-socket
//!   callback (`SO_WSK_EVENT_CALLBACK`) the callback is disabled and the
//!   datagrams stay buffered for `WskReceiveFrom` or a re-enabled callback;
//!   with a static callback (`WSK_SET_STATIC_EVENT_CALLBACKS`) the callback
//!   stays enabled and the datagrams are dropped (counted in
//!   [`WskStats::datagrams_dropped`]).
//! - **Ownership passes at a callback's return.** A `WskRelease` of the
//!   chain, a re-arming receive or a re-enable made on the callback's own
//!   thread while it runs is a verifier finding
//!   ([`violation::OWNERSHIP_IN_CALLBACK`]; the re-arm does not count). Made
//!   from another thread while the callback finishes (a consumer woken by
//!   the callback), it counts as made after the return: the chain is
//!   released, the indications re-armed, the callback stays enabled.
//! - **Peer disconnects** raise `WskDisconnectEvent` (0 for a graceful
//!   close, `WSK_FLAG_ABORTIVE` for a reset) if enabled; a reset without a
//!   disconnect callback raises `WskReceiveEvent` with a NULL indication if
//!   that is enabled. By default the disconnect is indicated once all data
//!   before it was indicated; under `WskPolicy::early_disconnect` as soon as
//!   it is known, before data the provider still buffers (a `WskReceive`, or
//!   indications after a re-arm, still get that data).
//! - **Accept.** Pending `WskAccept` IRPs take connections before the
//!   accept callback. Connections nobody takes wait in the host backlog.
//!   An accept callback that refuses (STATUS_REQUEST_NOT_ACCEPTED or any
//!   failure) gets the connection reset. Accepted sockets start with the
//!   static callbacks enabled (once the accept callback returned their
//!   dispatch table) and, if accepted by `WskAcceptEvent`, the connection
//!   events enabled on the listener (receive, disconnect, send backlog:
//!   "automatically enabled on an accepted connection-oriented socket only
//!   if the socket is accepted by the listening socket's WskAcceptEvent");
//!   a listener cannot disable those. Every other callback starts disabled.
//!   Enabling takes no IRP; static callbacks cannot be enabled (nor
//!   disabled) per socket.
//! - **Datagrams.** A datagram longer than the receive buffer is truncated:
//!   `Information` = bytes copied, `MSG_TRUNC` in `*ControlFlags`, and the
//!   status the session's [`DatagramTruncation`](super::DatagramTruncation)
//!   policy says (STATUS_BUFFER_OVERFLOW by default, as AFD completes a
//!   truncated receive; STATUS_SUCCESS under the other policy: the DDI page
//!   documents only the flag). Control information: packet information
//!   only (below). The reserved `Flags` of WskSendTo and
//!   WskReceiveFrom must be 0 (STATUS_INVALID_PARAMETER). Datagrams wait in
//!   the host socket until a `WskReceiveFrom` or an enabled callback takes
//!   them (the host drops what overflows its buffer, like a real stack).
//! - **Sockets** are created only in the documented combinations:
//!   SOCK_STREAM + IPPROTO_TCP for listening and connection sockets,
//!   SOCK_DGRAM + IPPROTO_UDP for datagram ones; anything else (protocol 0
//!   included) is STATUS_INVALID_PARAMETER.
//! - **Options** follow the WSK option pages (see `socket::options`): every
//!   option but `SO_WSK_EVENT_CALLBACK` needs an IRP; `SO_REUSEADDR`,
//!   `SO_EXCLUSIVEADDRUSE` and `IPV6_V6ONLY` (TRUE by default, as on
//!   Windows) only before bind; `SO_KEEPALIVE` and `SO_RCVBUF` are inherited
//!   by accepted sockets; `SO_BROADCAST` for datagram sockets; `SO_SNDBUF`
//!   is not a WSK option. Multicast membership (`IP_ADD_MEMBERSHIP`,
//!   source-specific, IPv6) and the sending options on datagram sockets,
//!   with Windows' values, structures and receive-side
//!   `IP_MULTICAST_LOOP` (`socket::options` has the statuses). `WskBind` applies Windows' address-sharing table
//!   among the session's sockets ("Sharing Transport Addresses", with the
//!   access checks denied) before the host's own rules. Disabling a static
//!   callback: STATUS_INVALID_PARAMETER.
//! - **Ioctls**: `SIO_WSK_QUERY_IDEAL_SEND_BACKLOG` (connections, once
//!   connected) and `SIO_WSK_SET_REMOTE_ADDRESS` (datagram sockets, after
//!   bind, level 0; an empty input clears it): a `WskSendTo` without an
//!   address goes to the fixed remote, and datagrams from any other
//!   address are discarded ("only datagrams that are received from the
//!   fixed remote transport address are accepted"). Anything else,
//!   `SIO_KEEPALIVE_VALS` included (WSK sockets refuse it:
//!   microsoft/windows-driver-samples issue 1132), is
//!   STATUS_NOT_SUPPORTED.
//! - **`WskSendMessages`** (Windows 8 and later): the `WSK_BUF_LIST`'s
//!   datagrams in order to one address (or the fixed remote), each with
//!   `WskSendTo`'s control information; Information = the bytes sent. A
//!   failure in the middle completes with its status and the bytes of the
//!   datagrams before it (the rest is not sent); more than 1024 datagrams
//!   is STATUS_INVALID_PARAMETER (the page gives no limit); a
//!   NULL `BufferList` is a verifier finding ([`violation::NULL_ARGUMENT`]).
//! - **Packet information**: `IP_PKTINFO` / `IPV6_PKTINFO` on datagram
//!   sockets; `WskReceiveFrom` returns an `IN(6)_PKTINFO` control message
//!   (MSG_CTRUNC when the buffer is too small), each datagram of a
//!   `WskReceiveFromEvent` chain carries one in `ControlInfo` /
//!   `ControlInfoLength` (provider memory, alive as long as the chain), and
//!   `WskSendTo` takes one as the datagram's source. Linux hosts only (`recvmsg` / `sendmsg`);
//!   elsewhere receives carry none and such sends are STATUS_NOT_SUPPORTED.
//! - **Name resolution** (`resolve`): `WskGetAddressInfo` and
//!   `WskGetNameInfo` ask the host's resolver (`getaddrinfo` /
//!   `getnameinfo` on Unix hosts; numeric services, `ToSocketAddrs` and
//!   numeric reverse answers elsewhere). PASSIVE_LEVEL only, as
//!   documented (0xC4/0xE5 above it, the IRP completed with
//!   STATUS_INVALID_DEVICE_STATE). Under `Inline` the resolution runs on
//!   the caller's thread and completes before the call returns; under
//!   `Pending` on a resolver thread of its own at PASSIVE_LEVEL, the IRP
//!   completed from the provider thread at DISPATCH_LEVEL; it never runs
//!   on a provider thread. Not cancellable (a cancelled request completes
//!   with its result: a client must free a chain it got for a request it
//!   cancelled). The `ADDRINFOEXW` chain is provider memory; a chain not
//!   freed when the client deregisters is a leak
//!   ([`LeakKind::WskAddressInfo`](super::verifier::LeakKind)), a free of
//!   a chain freed before, of another client's, of a pointer that is no
//!   chain's head, of NULL or after deregistration is a finding
//!   ([`violation::BAD_ADDRESS_INFO_FREE`]); freed chains stay poisoned
//!   (NULL pointers) for the session, so their addresses never come
//!   back. Unresolvable names: STATUS_NO_MATCH (documented); a name
//!   buffer too small: STATUS_BUFFER_TOO_SMALL and nothing written (the
//!   pages are silent). See docs/wsk-semantics.md for every parameter
//!   rule.
//! - **Not modelled** (STATUS_NOT_SUPPORTED): basic and stream sockets,
//!   conditional accept (`WskInspectComplete`), a namespace provider GUID
//!   for `WskGetAddressInfo`, client controls other than
//!   `WSK_SET_STATIC_EVENT_CALLBACKS`. Connection sockets must be bound
//!   before `WskConnect` (as on Windows); datagram sockets before
//!   `WskSendTo` (STATUS_INVALID_DEVICE_STATE otherwise).
//! - **Registration.** The provider is ready at once unless a test says
//!   otherwise ([`set_provider_ready`]). `WskCaptureProviderNPI` returns
//!   STATUS_NOINTERFACE for a client dispatch whose major version is not 1,
//!   STATUS_DEVICE_NOT_READY when the provider is not ready (after the
//!   timeout, at once for `WSK_NO_WAIT`) or the registration is being
//!   deregistered. Client-level calls (`WskSocket`, ...) without a live
//!   capture get STATUS_DEVICE_NOT_READY. `WskDeregister` waits until every
//!   capture is released, every socket closed, every IRP completed and
//!   every provider call returned (it prints what it still waits for every
//!   five seconds).
//!
//! # Verifier and resources
//!
//! A registration and each open socket are pending operations of the
//! driver that made them: unloading with a socket open or without
//! `WskDeregister` is DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS
//! (0xCE); requests in flight are pending IRPs of their owner. The
//! provider's own memory (sockets, buffers, indications) is host memory,
//! never the client's pool. With the session's pool fault plan the provider
//! fails to create sockets (`WskSocket`, accepted connections: their accept
//! IRPs get STATUS_INSUFFICIENT_RESOURCES and the connection is reset) and
//! to queue requests that must wait (STATUS_INSUFFICIENT_RESOURCES); with
//! the MDL plan it fails to build indications (it retries 10 ms later).
//! Provider calls above DISPATCH_LEVEL, and registration calls above
//! PASSIVE_LEVEL, are verifier bugchecks (0xC4/0xE5).
//!
//! # Faults
//!
//! [`inject_socket_fault`] resets or aborts a connection as the network
//! would, or makes it a slow peer ([`SocketFault::Slow`]: at most `chunk`
//! bytes move per `interval` in each direction); [`set_connection_fault`]
//! applies a fault to every connection made afterwards.

pub mod buf;
mod dispatch;
pub mod errors;
mod host;
mod reactor;
mod resolve;
mod socket;

use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::config::{CallbackIrql, WskPolicy};
use super::event::require_irql;
use super::fault::SplitMix64;
use super::hash::AddressMap;
use super::session::{Kernel, Session, current, lock};
use crate::status::*;
use crate::types::*;
use crate::wsk::*;
use reactor::Reactor;
use socket::Socket;

pub use host::{acknowledgement_observable, acknowledgement_reports};

/// Bugcheck parameters of the WSK misuses the sim's verifier catches.
///
/// Windows' Driver Verifier has no WSK rules: on Windows each of these is
/// memory corruption in the WSK subsystem (a call through a freed socket
/// object, a double free of a transport buffer chain, a provider reading a
/// NULL IRP), found late or never. The sim raises
/// DRIVER_VERIFIER_DETECTED_VIOLATION (0xC4) at the call instead, with
/// parameter 1 one of these sim-specific values ("WSK" and a number, so they
/// cannot be mistaken for Microsoft's 0xC4 subcodes), parameter 2 the
/// socket (or client), parameter 3 the IRP or indication, and a description
/// naming the call.
pub mod violation {
    /// A call on a socket after `WskCloseSocket` was called on it (the
    /// second close included). P2 socket, P3 IRP (0 if none).
    pub const CALL_AFTER_CLOSE: u64 = 0x5753_4B01;
    /// `WskCloseSocket` while another call on the same socket had not
    /// returned. P2 socket, P3 the close IRP, P4 calls in progress.
    pub const CLOSE_DURING_CALL: u64 = 0x5753_4B02;
    /// A `PWSK_SOCKET` that is no socket of this session. P2 the pointer.
    pub const NOT_A_SOCKET: u64 = 0x5753_4B03;
    /// `WskRelease` of a chain the provider did not hand out, or already
    /// released. P2 socket, P3 the chain.
    pub const BAD_RELEASE: u64 = 0x5753_4B04;
    /// A NULL IRP to a function that requires one. P2 socket (or client).
    pub const NULL_IRP: u64 = 0x5753_4B05;
    /// Inside the event callback that owns data (or a refusal), the client
    /// released that chain, re-armed the receive event with a zero-length
    /// `WskReceive` or re-enabled the callback: ownership passes only when
    /// the callback returns. P2 socket, P3 the chain (0 for a re-arm).
    pub const OWNERSHIP_IN_CALLBACK: u64 = 0x5753_4B06;
    /// `WskFreeAddressInfo` of a chain `WskGetAddressInfo` did not return
    /// to this client: freed before, another client's, not the head of a
    /// chain, NULL, or after the client deregistered. P2 client, P3 the
    /// pointer.
    pub const BAD_ADDRESS_INFO_FREE: u64 = 0x5753_4B07;
    /// A NULL pointer where the function requires one (`WskSendMessages`'
    /// `BufferList`). P2 socket, P3 IRP.
    pub const NULL_ARGUMENT: u64 = 0x5753_4B08;
}

/// `ReservedRegistrationState` of a registration block the sim registered.
const REGISTERED: ULONGLONG = 0x5753_4B52_4547_4953; // "WSKREGIS"

/// A fault the network does to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketFault {
    /// The connection is reset (the peer gets an RST; the client's pending
    /// and later requests get STATUS_CONNECTION_RESET, its callbacks see a
    /// peer reset).
    Reset,
    /// The connection is aborted by the transport (as `Reset`, with
    /// STATUS_CONNECTION_ABORTED).
    Abort,
    /// A slow peer / network: at most `chunk` bytes are read from and
    /// written to the host socket per `interval`.
    Slow {
        /// Bytes per interval and direction (at least 1).
        chunk: usize,
        /// The interval.
        interval: Duration,
    },
}

/// Counters of the simulated WSK subsystem of a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WskStats {
    /// Registrations not yet deregistered.
    pub registrations: u64,
    /// Sockets open now (created or accepted, not yet closed).
    pub sockets_open: u64,
    /// Sockets created or accepted so far.
    pub sockets_created: u64,
    /// Indications handed to event callbacks so far.
    pub indications: u64,
    /// Indications the client retains now (returned STATUS_PENDING, not yet
    /// released).
    pub indications_retained: u64,
    /// Data indications flagged `WSK_FLAG_RELEASE_ASAP` so far (the
    /// provider was short of buffers: it asks for them back at once).
    pub release_asap: u64,
    /// Of those, the ones the client retained anyway (STATUS_PENDING).
    pub release_asap_retained: u64,
    /// Datagrams the provider dropped (rejected by a static receive-from
    /// callback).
    pub datagrams_dropped: u64,
    /// Incoming connections reset because an accept callback refused them
    /// or the provider was out of resources.
    pub connections_refused: u64,
    /// Event callbacks that returned so far, with what the provider does
    /// at their return (a retained chain recorded, a refusal's effect, an
    /// accepted socket's context and dispatch) done: a test that saw a
    /// callback run waits for this before it acts on the callback's
    /// result, as a driver must.
    pub callbacks_returned: u64,
    /// Acknowledgement reports the host made so far (see
    /// [`acknowledgement_reports`]): each one made the provider look at the
    /// sends waiting for their acknowledgement when it arrived.
    pub acknowledgement_reports: u64,
    /// `ADDRINFOEXW` chains `WskGetAddressInfo` returned that are not freed
    /// yet (with `WskFreeAddressInfo`).
    pub address_chains: u64,
    /// Reads of a datagram socket's host queue (the provider's, or a
    /// `WskReceiveFrom`'s own look) that found no datagram (the host said
    /// "would block") so far.
    pub datagram_reads_empty: u64,
}

/// The WSK subsystem of one session.
#[derive(Default)]
pub(crate) struct WskState {
    inner: Mutex<Inner>,
    /// Signalled when readiness or a registration's state changes.
    changed: Condvar,
    pub(crate) sockets_created: AtomicU64,
    pub(crate) indications: AtomicU64,
    pub(crate) indications_retained: AtomicU64,
    pub(crate) release_asap: AtomicU64,
    pub(crate) release_asap_retained: AtomicU64,
    pub(crate) datagrams_dropped: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) callbacks_returned: AtomicU64,
    pub(crate) acknowledgement_reports: AtomicU64,
    pub(crate) datagram_reads_empty: AtomicU64,
    /// `ADDRINFOEXW` chains handed out by `WskGetAddressInfo`.
    pub(crate) chains: resolve::Chains,
}

#[derive(Default)]
struct Inner {
    not_ready: bool,
    /// Registered clients by their `PWSK_CLIENT`.
    clients: HashMap<usize, Arc<Client>>,
    /// Registration blocks to clients.
    registrations: HashMap<usize, usize>,
    /// Every socket of the session by its `PWSK_SOCKET`, open or closed
    /// (closed ones stay, quarantined, for the whole session). Every
    /// socket call looks its socket up here: keyed by address with the
    /// sim's cheap address hash, not SipHash.
    sockets: AddressMap<Slot>,
    /// Sockets open now.
    open: u64,
    /// The memory every `PWSK_SOCKET` points to, never freed before the
    /// session ends (see [`SocketHeader`]). Boxed: a header keeps its
    /// address while the vector grows.
    #[allow(clippy::vec_box)]
    headers: Vec<Box<SocketHeader>>,
    /// Local addresses the session's sockets are bound to (for the
    /// address-sharing rules of `WskBind`).
    bindings: Vec<Binding>,
    connection_fault: Option<SocketFault>,
}

/// A bound local address.
struct Binding {
    socket: usize,
    stream: bool,
    address: std::net::SocketAddr,
    sharing: socket::Sharing,
}

/// What a `PWSK_SOCKET` points to: the `WSK_SOCKET` header, i.e. the
/// pointer to the socket's provider dispatch table. Headers are never freed
/// while the session lives: when a socket is closed its header stays,
/// quarantined, with `Dispatch` pointing to a poisoned table whose every
/// entry raises a verifier bugcheck naming the call, so a client that keeps
/// a stale `PWSK_SOCKET` gets a deterministic report instead of reading
/// freed host memory (on Windows WSK frees the socket object at close and
/// the same call is a use-after-free).
#[repr(C)]
pub(crate) struct SocketHeader {
    /// `WSK_SOCKET::Dispatch` (an `AtomicPtr` has the layout of a pointer).
    dispatch: AtomicPtr<core::ffi::c_void>,
}

const _: () = assert!(
    core::mem::size_of::<SocketHeader>() == core::mem::size_of::<WSK_SOCKET>()
        && core::mem::align_of::<SocketHeader>() == core::mem::align_of::<WSK_SOCKET>()
);

/// A socket of the session, by its `PWSK_SOCKET`.
enum Slot {
    Open(Arc<Socket>),
    /// Closed by `WskCloseSocket` (or by the provider, for a connection the
    /// client never got): only its poisoned header is left.
    Closed,
}

/// What a `PWSK_SOCKET` the client passed is.
pub(crate) enum Lookup {
    /// An open socket.
    Open(Arc<Socket>),
    /// A socket of this session that was closed.
    Closed,
    /// Not a socket of this session.
    Unknown,
}

impl WskState {
    /// The open socket at `address`.
    pub(crate) fn socket_at(&self, address: usize) -> Option<Arc<Socket>> {
        match lock(&self.inner).sockets.get(&address) {
            Some(Slot::Open(socket)) => Some(Arc::clone(socket)),
            _ => None,
        }
    }

    /// What `address` is.
    pub(crate) fn lookup(&self, address: usize) -> Lookup {
        match lock(&self.inner).sockets.get(&address) {
            Some(Slot::Open(socket)) => Lookup::Open(Arc::clone(socket)),
            Some(Slot::Closed) => Lookup::Closed,
            None => Lookup::Unknown,
        }
    }

    /// A new socket header whose `Dispatch` is `table`; returns the
    /// `PWSK_SOCKET`.
    pub(crate) fn new_header(&self, table: *const core::ffi::c_void) -> usize {
        let header = Box::new(SocketHeader {
            dispatch: AtomicPtr::new(table.cast_mut()),
        });
        let address = &raw const *header as usize;
        lock(&self.inner).headers.push(header);
        address
    }

    pub(crate) fn insert_socket(&self, socket: &Arc<Socket>) {
        let mut inner = lock(&self.inner);
        inner
            .sockets
            .insert(socket.address(), Slot::Open(Arc::clone(socket)));
        inner.open += 1;
    }

    /// The socket at `address` is closed: it leaves the open sockets and
    /// its header's `Dispatch` now points to `poisoned`.
    pub(crate) fn retire_socket(&self, address: usize, poisoned: *const core::ffi::c_void) {
        let mut inner = lock(&self.inner);
        if let Some(slot) = inner.sockets.get_mut(&address)
            && matches!(slot, Slot::Open(_))
        {
            *slot = Slot::Closed;
            inner.open = inner.open.saturating_sub(1);
        }
        let header = address as *const SocketHeader;
        // SAFETY: `address` came from `new_header` of this state (every
        // socket's address does), and headers are freed only with the
        // state, at the end of the session.
        unsafe {
            (*header)
                .dispatch
                .store(poisoned.cast_mut(), Ordering::Release)
        };
    }

    /// Whether a socket (`stream`: TCP) with `sharing` may bind to `local`
    /// while the session's other sockets hold their addresses ("Sharing
    /// Transport Addresses"). Port 0 (an ephemeral port) never conflicts.
    pub(crate) fn bind_allowed(
        &self,
        stream: bool,
        local: std::net::SocketAddr,
        sharing: socket::Sharing,
    ) -> Result<(), NTSTATUS> {
        if local.port() == 0 {
            return Ok(());
        }
        let inner = lock(&self.inner);
        for first in &inner.bindings {
            let overlaps = first.stream == stream
                && first.address.port() == local.port()
                && first.address.is_ipv6() == local.is_ipv6()
                && (first.address.ip().is_unspecified()
                    || local.ip().is_unspecified()
                    || first.address.ip() == local.ip());
            if !overlaps {
                continue;
            }
            let verdict = socket::bind_verdict(
                (sharing, local.ip().is_unspecified()),
                (first.sharing, first.address.ip().is_unspecified()),
            );
            match verdict {
                socket::BindVerdict::Success => {}
                socket::BindVerdict::InUse => return Err(STATUS_ADDRESS_ALREADY_EXISTS),
                socket::BindVerdict::Denied => return Err(STATUS_ACCESS_DENIED),
            }
        }
        Ok(())
    }

    /// Records that `socket` is bound to `local`.
    pub(crate) fn record_binding(
        &self,
        socket: usize,
        stream: bool,
        local: std::net::SocketAddr,
        sharing: socket::Sharing,
    ) {
        lock(&self.inner).bindings.push(Binding {
            socket,
            stream,
            address: local,
            sharing,
        });
    }

    /// Forgets `socket`'s bound address (it is closed).
    pub(crate) fn release_binding(&self, socket: usize) {
        lock(&self.inner).bindings.retain(|b| b.socket != socket);
    }

    /// The registered client whose `PWSK_CLIENT` is `address`.
    pub(crate) fn client_at(&self, address: usize) -> Option<Arc<Client>> {
        lock(&self.inner).clients.get(&address).cloned()
    }

    /// The fault new connections get.
    pub(crate) fn connection_fault(&self) -> Option<SocketFault> {
        lock(&self.inner).connection_fault
    }

    fn client_of_registration(&self, registration: usize) -> Option<Arc<Client>> {
        let inner = lock(&self.inner);
        let client = inner.registrations.get(&registration)?;
        inner.clients.get(client).cloned()
    }
}

/// The session's WSK subsystem.
pub(crate) fn state_of(kernel: &Kernel) -> Arc<WskState> {
    Arc::clone(wsk_of(kernel))
}

/// The session's WSK subsystem, borrowed from the session.
#[inline]
pub(crate) fn wsk_of(kernel: &Kernel) -> &Arc<WskState> {
    kernel.wsk.get_or_init(|| kernel.extension::<WskState>())
}

/// One registration (`PWSK_CLIENT` points to it).
pub(crate) struct Client {
    /// The WSK subsystem it belongs to.
    pub(crate) wsk: Arc<WskState>,
    /// Its provider thread.
    pub(crate) reactor: Arc<Reactor>,
    /// The driver generation that registered.
    pub(crate) owner: u64,
    /// The session's WSK policies when the client registered.
    pub(crate) policy: WskPolicy,
    /// The session's seed, and how many seeded draws were made (for the
    /// mixed callback IRQL).
    seed: u64,
    draws: AtomicU64,
    registration: usize,
    version: USHORT,
    counters: Mutex<Counters>,
    /// `WskDeregister` waits here for the counters to drain (notified
    /// only while it deregisters: see `update`).
    changed: Condvar,
}

#[derive(Default)]
struct Counters {
    captures: u32,
    deregistering: bool,
    sockets: u64,
    irps: u64,
    calls: u64,
    static_events: ULONG,
    socket_created: bool,
    pending_key: u64,
}

impl Client {
    /// Its `PWSK_CLIENT`.
    pub(crate) fn address(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    /// The IRQL the provider calls the next event callback at (the
    /// session's [`CallbackIrql`](super::CallbackIrql) policy).
    pub(crate) fn callback_irql(&self) -> KIRQL {
        match self.policy.callback_irql {
            CallbackIrql::Dispatch => DISPATCH_LEVEL,
            CallbackIrql::Passive => PASSIVE_LEVEL,
            CallbackIrql::Mixed => {
                let draw = self.draws.fetch_add(1, Ordering::Relaxed);
                let mut rng = SplitMix64::new(self.seed ^ draw.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                if rng.next_u64() & 1 == 0 {
                    PASSIVE_LEVEL
                } else {
                    DISPATCH_LEVEL
                }
            }
        }
    }

    /// Whether client-level calls are allowed (captured, not
    /// deregistering).
    pub(crate) fn usable(&self) -> bool {
        let counters = lock(&self.counters);
        counters.captures > 0 && !counters.deregistering
    }

    /// The static event mask (`WSK_SET_STATIC_EVENT_CALLBACKS`).
    pub(crate) fn static_events(&self) -> ULONG {
        lock(&self.counters).static_events
    }

    /// Sets the static event mask; fails once a socket exists.
    pub(crate) fn set_static_events(&self, mask: ULONG) -> NTSTATUS {
        let mut counters = lock(&self.counters);
        if counters.socket_created {
            return STATUS_INVALID_DEVICE_STATE;
        }
        counters.static_events = mask;
        STATUS_SUCCESS
    }

    /// Changes the counters; wakes `WskDeregister` if it waits on them.
    /// Its wait is the only one on `changed`, and it begins only after
    /// `deregistering` was set under this lock, so an update that finds
    /// the flag clear has nobody to wake (a notification is a futex
    /// system call on Linux even with no waiter: four per WSK call
    /// otherwise).
    fn update(&self, f: impl FnOnce(&mut Counters)) {
        let mut counters = lock(&self.counters);
        f(&mut counters);
        let waited_on = counters.deregistering;
        drop(counters);
        if waited_on {
            self.changed.notify_all();
        }
    }

    pub(crate) fn irp_done(&self) {
        self.update(|c| c.irps = c.irps.saturating_sub(1));
    }

    /// A provider call begins, with an IRP (`irp`: counted too, in the
    /// same update) or without.
    pub(crate) fn call_begin(&self, irp: bool) {
        self.update(|c| {
            c.calls += 1;
            c.irps += u64::from(irp);
        });
    }

    pub(crate) fn call_done(&self) {
        self.update(|c| c.calls = c.calls.saturating_sub(1));
    }

    pub(crate) fn socket_added(&self) {
        self.update(|c| {
            c.sockets += 1;
            c.socket_created = true;
        });
    }

    pub(crate) fn socket_removed(&self) {
        self.update(|c| c.sockets = c.sockets.saturating_sub(1));
    }
}

// === Registration (netio.lib on Windows) ===

/// `WskRegister`: registers a WSK client. `WskClientNpi` (and the dispatch
/// it points to) and `WskRegistration` must stay resident until
/// `WskDeregister` returns. Returns STATUS_SUCCESS,
/// STATUS_INVALID_PARAMETER (null arguments, a block already registered)
/// or STATUS_INSUFFICIENT_RESOURCES (pool fault plan). IRQL =
/// PASSIVE_LEVEL.
///
/// # Safety
/// `WskClientNpi` must point to a `WSK_CLIENT_NPI` whose `Dispatch` is
/// valid; `WskRegistration` must be writable.
#[track_caller]
#[must_use]
pub unsafe fn WskRegister(
    WskClientNpi: PWSK_CLIENT_NPI,
    WskRegistration: PWSK_REGISTRATION,
) -> NTSTATUS {
    let location = Location::caller();
    let kernel = current();
    if !require_irql(&kernel, PASSIVE_LEVEL, "WskRegister", location) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    if WskClientNpi.is_null() || WskRegistration.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller guarantees a readable client NPI.
    let npi = unsafe { core::ptr::read_unaligned(WskClientNpi) };
    if npi.Dispatch.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller guarantees the dispatch is readable.
    let version = unsafe { core::ptr::read_unaligned(npi.Dispatch) }.Version;
    let wsk = state_of(&kernel);
    let registration = WskRegistration as usize;
    if wsk.client_of_registration(registration).is_some() {
        return STATUS_INVALID_PARAMETER;
    }
    if kernel.faults.pool.should_fail() {
        kernel.pool.note_failure();
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    let threads = usize::from(kernel.config().wsk.provider_threads.max(1));
    let Ok(reactor) = Reactor::start(&kernel, Arc::clone(&wsk), threads) else {
        return STATUS_INSUFFICIENT_RESOURCES;
    };
    let owner = kernel.driver_generation.load(Ordering::Acquire);
    let client = Arc::new(Client {
        wsk: Arc::clone(&wsk),
        reactor,
        owner,
        policy: kernel.config().wsk,
        seed: kernel.config().seed,
        draws: AtomicU64::new(0),
        registration,
        version,
        counters: Mutex::new(Counters::default()),
        changed: Condvar::new(),
    });
    let key = kernel.pending_begin_for("WSK registration", registration as u64, owner);
    lock(&client.counters).pending_key = key;
    let block = WSK_REGISTRATION {
        ReservedRegistrationState: REGISTERED,
        ReservedRegistrationContext: Arc::as_ptr(&client).cast_mut().cast(),
        ReservedRegistrationLock: 0,
    };
    // SAFETY: the caller guarantees the registration block is writable.
    unsafe { WskRegistration.write_unaligned(block) };
    let mut inner = lock(&wsk.inner);
    inner.registrations.insert(registration, client.address());
    inner.clients.insert(client.address(), client);
    STATUS_SUCCESS
}

/// `WskCaptureProviderNPI`: the provider NPI for a registration.
/// `WaitTimeout` is `WSK_NO_WAIT`, `WSK_INFINITE_WAIT` or milliseconds.
/// Returns STATUS_SUCCESS (release it with `WskReleaseProviderNPI`),
/// STATUS_NOINTERFACE (the client's major version is not 1),
/// STATUS_DEVICE_NOT_READY (not ready within the timeout, or the
/// registration is being deregistered) or STATUS_INVALID_PARAMETER (not a
/// registered block). IRQL = PASSIVE_LEVEL; <= DISPATCH_LEVEL with
/// `WSK_NO_WAIT`.
///
/// # Safety
/// `WskRegistration` must be a registered block; `WskProviderNpi` writable.
#[track_caller]
#[must_use]
pub unsafe fn WskCaptureProviderNPI(
    WskRegistration: PWSK_REGISTRATION,
    WaitTimeout: ULONG,
    WskProviderNpi: PWSK_PROVIDER_NPI,
) -> NTSTATUS {
    let location = Location::caller();
    let kernel = current();
    let max = if WaitTimeout == WSK_NO_WAIT {
        DISPATCH_LEVEL
    } else {
        PASSIVE_LEVEL
    };
    if !require_irql(&kernel, max, "WskCaptureProviderNPI", location) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    if WskProviderNpi.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let wsk = state_of(&kernel);
    let Some(client) = wsk.client_of_registration(WskRegistration as usize) else {
        return STATUS_INVALID_PARAMETER;
    };
    if WSK_MAJOR_VERSION(client.version) != 1 {
        return STATUS_NOINTERFACE;
    }
    let deadline = match WaitTimeout {
        WSK_NO_WAIT | WSK_INFINITE_WAIT => None,
        ms => Some(Instant::now() + Duration::from_millis(u64::from(ms))),
    };
    let mut inner = lock(&wsk.inner);
    loop {
        if lock(&client.counters).deregistering {
            return STATUS_DEVICE_NOT_READY;
        }
        if !inner.not_ready {
            break;
        }
        match (WaitTimeout, deadline) {
            (WSK_NO_WAIT, _) => return STATUS_DEVICE_NOT_READY,
            (_, Some(deadline)) => {
                let now = Instant::now();
                if now >= deadline {
                    return STATUS_DEVICE_NOT_READY;
                }
                inner = wsk
                    .changed
                    .wait_timeout(inner, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            (_, None) => {
                inner = wsk.changed.wait(inner).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
    client.update(|c| c.captures += 1);
    drop(inner);
    let npi = WSK_PROVIDER_NPI {
        Client: client.address() as PWSK_CLIENT,
        Dispatch: &dispatch::PROVIDER_DISPATCH,
    };
    // SAFETY: the caller guarantees `WskProviderNpi` is writable.
    unsafe { WskProviderNpi.write_unaligned(npi) };
    STATUS_SUCCESS
}

/// `WskReleaseProviderNPI`: ends one successful capture. Existing sockets
/// keep working; client-level calls are not allowed without a capture.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `WskRegistration` must be a registered block with a capture to release.
#[track_caller]
pub unsafe fn WskReleaseProviderNPI(WskRegistration: PWSK_REGISTRATION) {
    let location = Location::caller();
    let kernel = current();
    if !require_irql(&kernel, DISPATCH_LEVEL, "WskReleaseProviderNPI", location) {
        return;
    }
    let wsk = state_of(&kernel);
    if let Some(client) = wsk.client_of_registration(WskRegistration as usize) {
        client.update(|c| c.captures = c.captures.saturating_sub(1));
    }
}

/// `WskDeregister`: ends a registration. Blocks until every capture is
/// released, every socket closed, every request completed and every
/// provider call of the client returned; then the provider thread stops.
/// IRQL = PASSIVE_LEVEL.
///
/// # Safety
/// `WskRegistration` must be a block `WskRegister` succeeded on, not yet
/// deregistered.
#[track_caller]
pub unsafe fn WskDeregister(WskRegistration: PWSK_REGISTRATION) {
    let location = Location::caller();
    let kernel = current();
    if !require_irql(&kernel, PASSIVE_LEVEL, "WskDeregister", location) {
        return;
    }
    let wsk = state_of(&kernel);
    let Some(client) = wsk.client_of_registration(WskRegistration as usize) else {
        eprintln!(
            "nt::sim wsk: WskDeregister({WskRegistration:p}) at {location}: not a registered block"
        );
        return;
    };
    client.update(|c| c.deregistering = true);
    {
        // Wake capture waiters (they fail with STATUS_DEVICE_NOT_READY).
        let _inner = lock(&wsk.inner);
        wsk.changed.notify_all();
    }
    let mut counters = lock(&client.counters);
    let mut waited = Duration::ZERO;
    while counters.captures > 0 || counters.sockets > 0 || counters.irps > 0 || counters.calls > 0 {
        let step = Duration::from_millis(100);
        counters = client
            .changed
            .wait_timeout(counters, step)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        waited += step;
        if waited.as_millis().is_multiple_of(5000) {
            eprintln!(
                "nt::sim wsk: WskDeregister at {location} still waits ({} s): {} capture(s), {} \
                 socket(s), {} request(s), {} call(s)",
                waited.as_secs(),
                counters.captures,
                counters.sockets,
                counters.irps,
                counters.calls
            );
        }
    }
    let key = counters.pending_key;
    drop(counters);
    {
        let mut inner = lock(&wsk.inner);
        inner.registrations.remove(&client.registration);
        inner.clients.remove(&client.address());
    }
    client.reactor.stop();
    // Address information is not the provider's to take back: a chain
    // never given to WskFreeAddressInfo is lost for good.
    let leaks = wsk.chains.take_leaks(client.address());
    if !leaks.is_empty() {
        kernel.record_leaks(leaks);
    }
    kernel.pending_end(key);
    let block = WSK_REGISTRATION {
        ReservedRegistrationState: 0,
        ReservedRegistrationContext: core::ptr::null_mut(),
        ReservedRegistrationLock: 0,
    };
    // SAFETY: the caller's registration block, still resident.
    unsafe { WskRegistration.write_unaligned(block) };
}

// === Test controls ===

/// Makes the provider NPI available (the default) or not: captures then
/// fail with STATUS_DEVICE_NOT_READY (`WSK_NO_WAIT`) or wait.
pub fn set_provider_ready(session: &Session, ready: bool) {
    let wsk = state_of(&session.kernel);
    let mut inner = lock(&wsk.inner);
    inner.not_ready = !ready;
    wsk.changed.notify_all();
}

/// Applies `fault` to every connection made (accepted or connected) from
/// now on (`None`: no fault).
pub fn set_connection_fault(session: &Session, fault: Option<SocketFault>) {
    lock(&state_of(&session.kernel).inner).connection_fault = fault;
}

/// Does `fault` to the connection `socket` now. Returns `false` if
/// `socket` is not a live connection of the session.
pub fn inject_socket_fault(session: &Session, socket: PWSK_SOCKET, fault: SocketFault) -> bool {
    let _enter = session.enter();
    match state_of(&session.kernel).socket_at(socket as usize) {
        Some(socket) => socket.inject(fault),
        None => false,
    }
}

/// Bytes the provider has read from `socket`'s host connection so far (data
/// the transport has received, whether or not a request or callback has taken
/// it yet); None when `socket` is not an open connection socket. Lets a test
/// wait for data to have arrived instead of sleeping.
pub fn socket_bytes_received(session: &Session, socket: PWSK_SOCKET) -> Option<u64> {
    let _enter = session.enter();
    state_of(&session.kernel)
        .socket_at(socket as usize)
        .and_then(|socket| socket.bytes_received())
}

/// What the provider asked the host about one connection so far: the
/// system calls that cost the most per request-response round trip and
/// could find nothing new. For tests that bound them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostQueries {
    /// Reads of the host stream that said "would block".
    pub reads_would_block: u64,
    /// Queries of the host's count of bytes the peer has not acknowledged
    /// (`TIOCOUTQ` on Linux), made while sends wait for acknowledgements.
    pub acknowledgement_looks: u64,
}

/// The host queries the provider made for `socket` so far; None when
/// `socket` is not an open connection socket.
pub fn socket_host_queries(session: &Session, socket: PWSK_SOCKET) -> Option<HostQueries> {
    let _enter = session.enter();
    state_of(&session.kernel)
        .socket_at(socket as usize)
        .and_then(|socket| socket.host_queries())
}

/// The session's WSK counters.
pub fn stats(session: &Session) -> WskStats {
    let wsk = state_of(&session.kernel);
    let (registrations, sockets_open) = {
        let inner = lock(&wsk.inner);
        (inner.clients.len() as u64, inner.open)
    };
    WskStats {
        registrations,
        sockets_open,
        sockets_created: wsk.sockets_created.load(Ordering::Relaxed),
        indications: wsk.indications.load(Ordering::Relaxed),
        indications_retained: wsk.indications_retained.load(Ordering::Relaxed),
        release_asap: wsk.release_asap.load(Ordering::Relaxed),
        release_asap_retained: wsk.release_asap_retained.load(Ordering::Relaxed),
        datagrams_dropped: wsk.datagrams_dropped.load(Ordering::Relaxed),
        connections_refused: wsk.connections_refused.load(Ordering::Relaxed),
        callbacks_returned: wsk.callbacks_returned.load(Ordering::Relaxed),
        acknowledgement_reports: wsk.acknowledgement_reports.load(Ordering::Relaxed),
        address_chains: wsk.chains.live(),
        datagram_reads_empty: wsk.datagram_reads_empty.load(Ordering::Relaxed),
    }
}
