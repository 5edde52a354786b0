//! Sockets of the simulated WSK provider: their state, the requests queued
//! on them, and the progress engine that moves bytes between host sockets,
//! IRPs and event callbacks.
//!
//! A socket's state lives behind one mutex. Every path (a provider call on
//! a client thread, an event on the provider thread, a cancel routine)
//! locks it, makes progress, and collects what must happen outside the lock
//! (completions, event callbacks, timers) in an [`Out`]: no client code ever
//! runs while a provider lock is held. Completions collected on a client's
//! thread are handed to the provider thread; event callbacks only ever run
//! on the provider thread, one at a time.
//!
//! Queued requests are *armed* (their IRP's cancel routine is set) until the
//! provider takes one to work on it (`IoSetCancelRoutine(irp, NULL)`
//! returning the routine); an entry whose routine is already gone belongs to
//! the cancel routine, which completes it with STATUS_CANCELLED. Because the
//! cancel routine also takes the socket lock before completing, a request
//! still in a queue is never completed under the provider's feet.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::Interest;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use socket2::{Domain, SockRef, Type};

use super::super::access::{irp_cancel, sl_arguments};
use super::super::config::{DatagramTruncation, SendCompletion, WskPolicy};
use super::super::ffi::*;
use super::super::io::{
    IO_NETWORK_INCREMENT, IoGetCurrentIrpStackLocation, IoMarkIrpPending, IoReleaseCancelSpinLock,
    IoSetCancelRoutine, IofCompleteRequest,
};
use super::super::session::{current, lock};
use super::super::verifier::{Leak, LeakKind};
use super::buf::{BufRef, DataIndication, Datagram, DatagramIndication};
use super::errors::{EINPROGRESS, is_transient, status_from_io};
use super::host;
use super::reactor::Job;
use super::{Client, SocketFault, WskState, dispatch, state_of};
use crate::status::*;
use crate::types::*;
use crate::wsk::*;

mod datagram;
mod events;
mod listen;
mod options;
mod stream;

pub(crate) use events::Released;
use events::{Callback, RunningCb};
use options::Options;
pub(crate) use options::{BindVerdict, Sharing, bind_verdict};
use stream::finish_receive_ex;

/// Bytes a connection buffers in the provider (inbound plus retained).
pub(crate) const INBOUND_CAP: usize = 256 * 1024;
/// Largest indication handed to `WskReceiveEvent`.
const INDICATION_MAX: usize = 64 * 1024;
/// Bytes per element of a data indication chain.
const INDICATION_CHUNK: usize = 16 * 1024;
/// Datagrams per datagram indication chain.
const DATAGRAM_CHAIN: usize = 32;
/// Largest datagram read from the host.
const DATAGRAM_MAX: usize = 64 * 1024;
/// Accept callbacks per progress round.
const ACCEPTS_PER_ROUND: usize = 16;
/// The first and the longest wait between two looks at a connection's
/// acknowledgements while sends wait for them.
const ACK_INTERVAL_MIN: Duration = Duration::from_micros(50);
const ACK_INTERVAL_MAX: Duration = Duration::from_millis(2);
/// Unread bytes a close discards from the host while looking for the
/// peer's FIN (past that, the close is abortive).
const CLOSE_DRAIN_MAX: usize = 16 << 20;
/// Delay before retrying an indication the MDL fault plan refused.
const RETRY: Duration = Duration::from_millis(10);

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; DATAGRAM_MAX]);
}

/// The socket's category (its flags at `WskSocket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `WSK_FLAG_LISTEN_SOCKET`.
    Listen,
    /// `WSK_FLAG_CONNECTION_SOCKET` (also accepted connections).
    Connection,
    /// `WSK_FLAG_DATAGRAM_SOCKET`.
    Datagram,
}

impl Kind {
    /// The events `SO_WSK_EVENT_CALLBACK` may enable on this kind.
    pub(crate) fn events(self) -> ULONG {
        match self {
            // A listener may also enable the connection events its accepted
            // sockets inherit (SO_WSK_EVENT_CALLBACK).
            Kind::Listen => {
                WSK_EVENT_ACCEPT | WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG
            }
            Kind::Connection => WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG,
            Kind::Datagram => WSK_EVENT_RECEIVE_FROM,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `WskSocket` made it.
    Created,
    /// Bound (a listening socket listens from here on).
    Bound,
    /// A connect is under way.
    Connecting,
    /// Connected.
    Connected,
    /// A connect failed or was cancelled: only close is useful.
    Failed,
}

enum Host {
    None,
    /// A bound connection socket, not yet connecting.
    Bound(socket2::Socket),
    Listener(TcpListener),
    Stream(TcpStream),
    Udp(UdpSocket),
}

struct RecvOp {
    irp: usize,
    buf: BufRef,
    waitall: bool,
    drain: bool,
    filled: usize,
    /// `WskReceiveEx`'s `ControlInfoLength` (set to 0 at completion).
    control_length: usize,
    armed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendKind {
    /// `WskSend`.
    Data,
    /// `WskConnectEx`'s data, after the connect.
    ConnectEx,
    /// A graceful `WskDisconnect`: its bytes, then FIN.
    Disconnect,
}

struct SendOp {
    irp: usize,
    buf: BufRef,
    sent: usize,
    kind: SendKind,
    /// `WSK_FLAG_NODELAY`: the transport sends these bytes, and any queued
    /// before them, at once (no Nagle hold; see `SockState::write_op`).
    nodelay: bool,
    armed: bool,
}

/// A send whose bytes are all written to the host, waiting for the peer's
/// acknowledgement (`SendCompletion::Acknowledged`). No longer cancellable.
struct Unacked {
    irp: usize,
    /// `SockState::written` once its last byte was written.
    end: u64,
    /// Its length.
    len: usize,
    kind: SendKind,
    /// Not before then (`WskPolicy::ack_delay_us` after the write).
    due: Instant,
}

impl Unacked {
    /// How many of its bytes are acknowledged when `acked` bytes of the
    /// stream are.
    fn acked_of(&self, acked: u64) -> usize {
        let start = self.end - self.len as u64;
        (acked.saturating_sub(start) as usize).min(self.len)
    }
}

struct AcceptOp {
    irp: usize,
    context: usize,
    dispatch: usize,
    local_out: usize,
    remote_out: usize,
    armed: bool,
}

struct ConnectOp {
    irp: usize,
    /// `WskConnectEx`'s buffer.
    then_send: Option<BufRef>,
    /// `WskSocketConnect`: complete with the socket, close it on failure.
    socket_connect: bool,
    armed: bool,
}

struct RecvFromOp {
    irp: usize,
    buf: BufRef,
    remote_out: usize,
    control_length_out: usize,
    /// The client's ControlInfo buffer and its size (`*ControlLength` on
    /// entry; 0: none).
    control_out: usize,
    control_room: usize,
    control_flags_out: usize,
    armed: bool,
}

/// A `WskSendTo` (one datagram) or `WskSendMessages` (several, in order,
/// to one address) waiting for room in the host socket.
struct SendToOp {
    irp: usize,
    /// The datagrams not sent yet, in order.
    datagrams: VecDeque<Vec<u8>>,
    /// Bytes of the datagrams already sent (the request's Information).
    sent: usize,
    remote: SocketAddr,
    /// The source chosen with `IN_PKTINFO` / `IN6_PKTINFO` control
    /// information.
    source: Option<super::host::PacketInfo>,
    armed: bool,
}

/// An indication the client retains (returned STATUS_PENDING).
enum Retained {
    Data(Box<DataIndication>),
    Datagrams(Box<DatagramIndication>),
}

impl Retained {
    /// Bytes it holds against the connection's inbound budget.
    fn bytes(&self) -> usize {
        match self {
            Retained::Data(d) => d.len(),
            Retained::Datagrams(_) => 0,
        }
    }

    /// Bytes of payload it holds.
    fn size(&self) -> usize {
        match self {
            Retained::Data(d) => d.len(),
            Retained::Datagrams(d) => d.bytes(),
        }
    }
}

/// The tag a retained indication leak is reported with (`WskI`).
const RETAINED_TAG: u32 = u32::from_le_bytes(*b"WskI");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Open,
    /// `WskCloseSocket` was called (or the provider closes it itself):
    /// finishes once no request is in flight and no callback runs.
    Closing {
        close_irp: Option<usize>,
        internal: bool,
    },
    Finished,
}

/// What a progress round leaves to do outside the lock.
#[derive(Default)]
pub(crate) struct Out {
    completions: Vec<(usize, NTSTATUS, usize)>,
    callbacks: Vec<Callback>,
    kick: bool,
    timer: Option<Instant>,
    /// The next scheduled look at the acknowledgements (`check_acks`),
    /// kept apart from `timer` (which keeps only the earliest a round
    /// asked for): a look scheduled once is never lost to an earlier
    /// timer of the same round, so later rounds need not ask again.
    ack_timer: Option<Instant>,
    /// Sockets to close internally (refused or failed connections).
    internal_closes: Vec<Arc<Socket>>,
}

impl Out {
    fn complete(&mut self, irp: usize, status: NTSTATUS, information: usize) {
        self.completions.push((irp, status, information));
    }

    fn timer(&mut self, at: Instant) {
        self.timer = Some(self.timer.map_or(at, |t| t.min(at)));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// A provider call on a client's thread.
    Caller,
    /// A provider thread.
    Reactor,
    /// A provider call on a client's thread that may deliver indications
    /// before it returns (`WskPolicy::inline_indications`).
    Inline,
}

pub(crate) struct SockState {
    /// The session's WSK policies (from the client's registration).
    policy: WskPolicy,
    context: usize,
    /// The client's event table for this socket (0: none).
    dispatch: usize,
    events: ULONG,
    static_events: ULONG,
    /// False until an accept callback returned the socket's context and
    /// dispatch.
    callbacks_ready: bool,
    /// The event callbacks of this socket running now (several only for
    /// datagram sockets with more than one provider thread).
    running: Vec<RunningCb>,
    next_callback: u64,
    disables: Vec<(usize, ULONG)>,

    host: Host,
    options: Options,
    phase: Phase,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,

    accepts: VecDeque<AcceptOp>,
    connect: Option<ConnectOp>,
    receives: VecDeque<RecvOp>,
    sends: VecDeque<SendOp>,
    recv_froms: VecDeque<RecvFromOp>,
    send_tos: VecDeque<SendToOp>,

    inbound: VecDeque<u8>,
    /// The host stream may have bytes (a datagram socket: datagrams) to
    /// read: false once a read said "would block", true again when the
    /// host signals readiness
    /// (`Socket::readiness`). Readiness is edge-triggered (mio's contract on
    /// every host), so a read in between would only say "would block" again.
    host_readable: bool,
    /// The host signalled the peer's close (read-closed readiness) on this
    /// stream: from then on a read that returns less than it asked for
    /// does not mean the host is drained (the end of the stream is still
    /// to be read, and its edge came already), so reads go on until
    /// "would block" or the end.
    host_read_closed: bool,
    /// Bytes read from the host socket so far (stream sockets).
    bytes_from_host: u64,
    /// Reads of the host stream that said "would block" so far.
    reads_would_block: u64,
    /// Queries of the host's count of unacknowledged bytes so far (a
    /// `Cell`: the query is made from `&self` helpers).
    acknowledgement_looks: std::cell::Cell<u64>,
    eof: bool,
    error: Option<NTSTATUS>,
    /// The error came from the peer or the network (raise the abortive
    /// disconnect callback).
    peer_error: bool,
    disconnect_requested: bool,
    /// Our FIN was sent (`shutdown(Write)`).
    shutdown_done: bool,
    /// The graceful `WskDisconnect` completed (under `Acknowledged`: our
    /// FIN was acknowledged).
    disconnect_done: bool,
    /// Bytes written to the host stream so far.
    written: u64,
    /// The host stream has `TCP_NODELAY` on for the last write, a send
    /// with `WSK_FLAG_NODELAY`, while the socket's own `TCP_NODELAY`
    /// option is off: turned off again before a write without the flag.
    nodelay_pushed: bool,
    /// Sends written out, waiting for the peer's acknowledgement, in order.
    unacked: VecDeque<Unacked>,
    /// The host reports acknowledgements as they arrive
    /// (`host::report_acknowledgements`): a waiting send completes when its
    /// ACK arrives; the looks at intervals remain as a fallback (and for
    /// the FIN, which is not reported).
    ack_reports: bool,
    /// When the provider looks at the acknowledgements next, and how long
    /// it waits between looks (grows while nothing moves).
    ack_check_at: Option<Instant>,
    ack_interval: Duration,
    /// The host may know more about the acknowledgements than the last
    /// look saw: an error event (an acknowledgement report, or a reset)
    /// arrived since. With `ack_reports`, a round looks at the host's
    /// count only then or when the scheduled look is due (`check_acks`).
    ack_news: bool,
    /// The ideal send backlog last reported to `WskSendBacklogEvent` (or
    /// seen when the event was enabled).
    backlog_reported: Option<usize>,
    disconnect_indicated: bool,
    suppressed: bool,
    retained: HashMap<usize, Retained>,
    retained_bytes: usize,
    datagrams: VecDeque<Datagram>,
    /// The fixed remote address of a datagram socket
    /// (`SIO_WSK_SET_REMOTE_ADDRESS`): sends without an address go there,
    /// and only its datagrams are accepted.
    pub(crate) fixed_remote: Option<SocketAddr>,
    /// The multicast groups a datagram socket joined (`IP_ADD_MEMBERSHIP`
    /// and the others).
    memberships: Vec<options::Membership>,

    slow: Option<(usize, Duration)>,
    next_io: Option<Instant>,
    retry_at: Option<Instant>,

    /// Requests of this socket in flight (accepted, not yet completed).
    irps: u64,
    life: Life,
}

/// A socket. Its `PWSK_SOCKET` is the address of its header (a
/// [`super::SocketHeader`], which outlives it: see there).
pub(crate) struct Socket {
    /// The `PWSK_SOCKET`.
    address: usize,
    /// Provider calls on this socket that have not returned yet (the
    /// client must not close a socket while one runs).
    pub(crate) calls: AtomicU32,
    pub(crate) kind: Kind,
    pub(crate) family: ADDRESS_FAMILY,
    pub(crate) client: Arc<Client>,
    pending_key: AtomicU64,
    /// The host signalled an error event on the socket since the provider
    /// last looked: acknowledgement reports may be queued (see
    /// `host::report_acknowledgements`).
    error_event: AtomicBool,
    /// The host signalled readiness (any event) since the state last took
    /// it into `SockState::host_readable`.
    readiness: AtomicBool,
    /// The host signalled that the peer closed its side (FIN or reset):
    /// see `SockState::host_read_closed`.
    read_closed: AtomicBool,
    state: Mutex<SockState>,
}

// SAFETY: all mutable state is behind the mutex or atomic; IRPs and client pointers are kept as plain
// addresses and only touched under the documented WSK ownership rules.
unsafe impl Send for Socket {}
// SAFETY: as above.
unsafe impl Sync for Socket {}

// === IRP helpers ===

/// Completes a request and does the bookkeeping (any thread, IRQL <=
/// DISPATCH_LEVEL). The IRP must be owned by the caller.
pub(crate) fn complete_irp(
    client: &Arc<Client>,
    socket: Option<&Arc<Socket>>,
    irp: usize,
    status: NTSTATUS,
    information: usize,
) {
    let irp = irp as PIRP;
    // SAFETY: the caller owns the request's IRP.
    unsafe { (*irp).IoStatus.Status = status };
    // SAFETY: as above.
    unsafe { (*irp).IoStatus.Information = information as ULONG_PTR };
    // SAFETY: as above; completed exactly once (the caller took it from the
    // cancel machinery or never queued it).
    unsafe { IofCompleteRequest(irp, IO_NETWORK_INCREMENT) };
    if let Some(socket) = socket {
        socket.irp_done();
    }
    client.irp_done();
}

/// Takes a queued request away from the cancel machinery: `true` if the
/// provider owns it now, `false` if its cancel routine does (then it must
/// not be completed here).
fn take(irp: usize, armed: &mut bool) -> bool {
    if !*armed {
        return true;
    }
    *armed = false;
    // SAFETY: the IRP is queued on a socket whose lock the caller holds, so
    // it is live.
    unsafe { IoSetCancelRoutine(irp as PIRP, None) }.is_some()
}

enum Arm {
    /// Cancel routine set.
    Armed,
    /// Cancelled before the routine was set: the provider owns it and
    /// completes it with STATUS_CANCELLED.
    Cancelled,
}

/// Sets the cancel routine of a queued request (under its socket's lock).
fn arm(irp: usize) -> Arm {
    let irp = irp as PIRP;
    // SAFETY: the provider owns the queued IRP.
    unsafe { IoSetCancelRoutine(irp, Some(cancel_routine)) };
    // SAFETY: as above; `Cancel` is read atomically.
    if unsafe { irp_cancel(irp) } {
        // SAFETY: as above.
        if unsafe { IoSetCancelRoutine(irp, None) }.is_some() {
            return Arm::Cancelled;
        }
        // IoCancelIrp took the routine: it runs and completes the request
        // once it gets the socket lock.
    }
    Arm::Armed
}

/// The cancel routine of every queued WSK request: takes the request out
/// of its socket's queues and completes it with STATUS_CANCELLED.
unsafe extern "C" fn cancel_routine(_device: PDEVICE_OBJECT, irp: PIRP) {
    // SAFETY: called by IoCancelIrp with the cancel spin lock held.
    let cancel_irql = unsafe { (*irp).CancelIrql };
    // SAFETY: we hold the cancel spin lock (the cancel routine contract).
    unsafe { IoReleaseCancelSpinLock(cancel_irql) };
    // SAFETY: the provider's own stack location of a live IRP.
    let location = unsafe { IoGetCurrentIrpStackLocation(irp) };
    // SAFETY: as above.
    let socket_address = unsafe { sl_arguments(location) }[0] as usize;
    let wsk = state_of(&current());
    match wsk.socket_at(socket_address) {
        Some(socket) => {
            let information = socket.remove_request(irp as usize);
            complete_irp(
                &socket.client,
                Some(&socket),
                irp as usize,
                STATUS_CANCELLED,
                information,
            );
        }
        None => {
            // Unreachable by design (a socket stays registered while it has
            // requests in flight); complete it anyway.
            // SAFETY: the cancel routine owns the IRP now.
            unsafe { (*irp).IoStatus.Status = STATUS_CANCELLED };
            // SAFETY: as above.
            unsafe { IofCompleteRequest(irp, IO_NETWORK_INCREMENT) };
        }
    }
}

/// Marks a request pending before it is queued (the provider then returns
/// STATUS_PENDING).
pub(crate) fn mark_pending(irp: usize) {
    // SAFETY: the provider owns the IRP and holds its current location.
    unsafe { IoMarkIrpPending(irp as PIRP) };
}

/// A non-blocking host socket with `options` applied. `listener`: a
/// listening socket (which may bind over connections in TIME_WAIT, as
/// Windows' listeners may by default).
fn host_socket(
    family: ADDRESS_FAMILY,
    ty: Type,
    options: &Options,
    listener: bool,
) -> std::io::Result<socket2::Socket> {
    let domain = if family == AF_INET6 {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = socket2::Socket::new(domain, ty, None)?;
    if family == AF_INET6 {
        socket.set_only_v6(options.v6only)?;
    }
    match options.sharing {
        // Windows' SO_REUSEADDR shares the address with every socket that
        // also set it: on Unix hosts that takes SO_REUSEPORT as well (the
        // sim's own table has already decided the bind is allowed).
        Sharing::Reuse => {
            socket.set_reuse_address(true)?;
            #[cfg(all(
                unix,
                not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
            ))]
            socket.set_reuse_port(true)?;
        }
        // On Unix hosts binding over TIME_WAIT takes SO_REUSEADDR; on a
        // Windows host it is the default (and SO_REUSEADDR would share).
        _ if listener && cfg!(unix) => socket.set_reuse_address(true)?,
        _ => {}
    }
    if let Some(keepalive) = options.keepalive {
        socket.set_keepalive(keepalive)?;
    }
    if let Some(size) = options.rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    if options.broadcast {
        socket.set_broadcast(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn family_of(address: &SocketAddr) -> ADDRESS_FAMILY {
    match address {
        SocketAddr::V4(_) => AF_INET,
        SocketAddr::V6(_) => AF_INET6,
    }
}

/// Resets a stream (RST to the peer) and drops it.
fn reset_stream(registry: &mio::Registry, mut stream: TcpStream) {
    let _ = registry.deregister(&mut stream);
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

// === impl Socket ===

impl Socket {
    /// Creates a socket of `client` (registered, counted, a pending
    /// operation of the client's driver). `None` when the pool fault plan
    /// refuses the allocation.
    pub(crate) fn create(
        client: &Arc<Client>,
        kind: Kind,
        family: ADDRESS_FAMILY,
        context: usize,
        dispatch: usize,
    ) -> Option<Arc<Socket>> {
        let kernel = current();
        if kernel.faults.pool.should_fail() {
            kernel.pool.note_failure();
            return None;
        }
        let table: *const core::ffi::c_void = match kind {
            Kind::Listen => (&raw const dispatch::LISTEN_DISPATCH).cast(),
            Kind::Connection => (&raw const dispatch::CONNECTION_DISPATCH).cast(),
            Kind::Datagram => (&raw const dispatch::DATAGRAM_DISPATCH).cast(),
        };
        let state = SockState {
            policy: client.policy,
            context,
            dispatch,
            events: 0,
            static_events: client.static_events() & kind.events(),
            callbacks_ready: true,
            running: Vec::new(),
            next_callback: 0,
            disables: Vec::new(),
            host: Host::None,
            options: Options::default(),
            phase: Phase::Created,
            local: None,
            remote: None,
            accepts: VecDeque::new(),
            connect: None,
            receives: VecDeque::new(),
            sends: VecDeque::new(),
            recv_froms: VecDeque::new(),
            send_tos: VecDeque::new(),
            inbound: VecDeque::new(),
            host_readable: true,
            host_read_closed: false,
            bytes_from_host: 0,
            reads_would_block: 0,
            acknowledgement_looks: std::cell::Cell::new(0),
            eof: false,
            error: None,
            peer_error: false,
            disconnect_requested: false,
            shutdown_done: false,
            disconnect_done: false,
            written: 0,
            nodelay_pushed: false,
            unacked: VecDeque::new(),
            ack_reports: false,
            ack_check_at: None,
            ack_interval: ACK_INTERVAL_MIN,
            ack_news: false,
            backlog_reported: None,
            disconnect_indicated: false,
            suppressed: false,
            retained: HashMap::new(),
            retained_bytes: 0,
            datagrams: VecDeque::new(),
            fixed_remote: None,
            memberships: Vec::new(),
            slow: None,
            next_io: None,
            retry_at: None,
            irps: 0,
            life: Life::Open,
        };
        let socket = Arc::new(Socket {
            address: client.wsk.new_header(table),
            calls: AtomicU32::new(0),
            kind,
            family,
            client: Arc::clone(client),
            pending_key: AtomicU64::new(0),
            error_event: AtomicBool::new(false),
            readiness: AtomicBool::new(false),
            read_closed: AtomicBool::new(false),
            state: Mutex::new(state),
        });
        let key = kernel.pending_begin_for("WSK socket", socket.address() as u64, client.owner);
        socket.pending_key.store(key, Ordering::Release);
        client.wsk.insert_socket(&socket);
        client.wsk.sockets_created.fetch_add(1, Ordering::Relaxed);
        client.socket_added();
        Some(socket)
    }

    /// The host signalled an error event on the socket (readiness with
    /// EPOLLERR or its equivalent): the next progress round reads the
    /// acknowledgement reports. Any thread.
    pub(crate) fn note_error_event(&self) {
        self.error_event.store(true, Ordering::Release);
    }

    /// The host signalled that the peer closed its side (read-closed
    /// readiness). Any thread; set before `note_readiness`.
    pub(crate) fn note_read_closed(&self) {
        self.read_closed.store(true, Ordering::Release);
    }

    /// The host signalled an event on the socket: the host stream may be
    /// readable again. Any thread; set before the socket's progress round
    /// for the event runs, which takes it under the state lock.
    pub(crate) fn note_readiness(&self) {
        self.readiness.store(true, Ordering::Release);
    }

    /// The state, with the readiness signalled since it was last locked,
    /// for the provider thread's rounds. (A signal that arrives after the
    /// swap sets the flag again, after the host queued the bytes, and a
    /// progress round follows it: no readiness is lost.)
    fn lock_ready(&self) -> MutexGuard<'_, SockState> {
        let mut st = self.lock();
        if self.readiness.swap(false, Ordering::AcqRel) {
            st.host_readable = true;
            if self.read_closed.load(Ordering::Acquire) {
                st.host_read_closed = true;
            }
        }
        st
    }

    /// Its `PWSK_SOCKET`.
    pub(crate) fn address(&self) -> usize {
        self.address
    }

    fn wsk(&self) -> &Arc<WskState> {
        &self.client.wsk
    }

    fn lock(&self) -> MutexGuard<'_, SockState> {
        lock(&self.state)
    }

    /// Whether `WskCloseSocket` has not been called on it (nor the provider
    /// closed it).
    pub(crate) fn is_open(&self) -> bool {
        self.lock().life == Life::Open
    }

    /// Counts a request accepted for this socket; `false` if the socket is
    /// closing (the caller completes it with STATUS_INVALID_HANDLE).
    pub(crate) fn begin_request(&self) -> bool {
        let mut st = self.lock();
        if st.life != Life::Open {
            return false;
        }
        st.irps += 1;
        true
    }

    /// A request of this socket completed.
    pub(crate) fn irp_done(self: &Arc<Self>) {
        let finish = {
            let mut st = self.lock();
            st.irps = st.irps.saturating_sub(1);
            st.take_finish()
        };
        if let Some(close_irp) = finish {
            self.finish(close_irp);
        }
    }

    /// Runs `f` on the state from a provider call, then makes progress;
    /// completions go to the provider thread.
    pub(crate) fn with<R>(self: &Arc<Self>, f: impl FnOnce(&mut SockState, &mut Out) -> R) -> R {
        self.with_ctx(Ctx::Caller, f)
    }

    /// As [`Socket::with`], for a connection's `WskSend` and graceful
    /// `WskDisconnect`: calls that take no data in. Their progress reads
    /// the host only after readiness the provider thread has not yet
    /// taken (as the provider's own rounds do), where `with` reads it
    /// whatever the provider has seen. A read there could only move bytes
    /// into the provider's buffer for a queued receive, whose completion
    /// goes to the provider thread either way (`Ctx::Caller`); in a
    /// request-response stream it said "would block" on nearly every send
    /// (the reply is not there while the request is being sent).
    pub(crate) fn with_sending<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut SockState, &mut Out) -> R,
    ) -> R {
        let mut out = Out::default();
        let result = {
            let mut st = self.lock_ready();
            let result = f(&mut st, &mut out);
            st.progress(self, Ctx::Caller, &mut out);
            result
        };
        self.apply(out, Ctx::Caller);
        result
    }

    fn with_ctx<R>(self: &Arc<Self>, ctx: Ctx, f: impl FnOnce(&mut SockState, &mut Out) -> R) -> R {
        let mut out = Out::default();
        let result = {
            let mut st = self.lock();
            let signalled = self.readiness.swap(false, Ordering::AcqRel);
            if signalled && self.read_closed.load(Ordering::Acquire) {
                st.host_read_closed = true;
            }
            if self.kind == Kind::Datagram && ctx == Ctx::Caller {
                // A datagram socket's call that reads the host looks at it
                // itself (`SockState::receive_from`); the others (sends,
                // releases, options) keep what the host last said, so that
                // a send does not make this call or the provider's next
                // round read a host that said "would block" and has
                // signalled nothing since (with event callbacks enabled,
                // every send kicked the provider into such a read).
                if signalled {
                    st.host_readable = true;
                }
            } else {
                // A client's call looks at the host itself, whatever the
                // provider thread has seen: that thread may be late to its
                // poll (in a callback, on another socket's work), and the
                // call sees what the host holds now, as it always did.
                st.host_readable = true;
            }
            let result = f(&mut st, &mut out);
            st.progress(self, ctx, &mut out);
            result
        };
        self.apply(out, ctx);
        result
    }

    /// Makes progress on the provider thread (events, kicks, timers).
    pub(crate) fn pump_reactor(self: &Arc<Self>) {
        for _ in 0..64 {
            let out = {
                let mut st = self.lock_ready();
                let mut out = Out::default();
                st.progress(self, Ctx::Reactor, &mut out);
                out
            };
            let idle = out.completions.is_empty()
                && out.callbacks.is_empty()
                && out.internal_closes.is_empty();
            self.apply(out, Ctx::Reactor);
            if idle {
                return;
            }
        }
        // Busy: let other sockets run first.
        self.client.reactor.post(Job::Kick(Arc::clone(self)));
    }

    fn apply(self: &Arc<Self>, out: Out, ctx: Ctx) {
        for (irp, status, information) in out.completions {
            match ctx {
                Ctx::Reactor => complete_irp(&self.client, Some(self), irp, status, information),
                Ctx::Caller | Ctx::Inline => self.client.reactor.post(Job::Complete {
                    client: Arc::clone(&self.client),
                    socket: Some(Arc::clone(self)),
                    irp,
                    status,
                    information,
                }),
            }
        }
        for callback in out.callbacks {
            self.run_callback(callback, ctx);
        }
        for socket in out.internal_closes {
            socket.close_internal();
        }
        if let Some(at) = out.timer {
            self.client.reactor.kick_at(at, Arc::clone(self));
        }
        if let Some(at) = out.ack_timer.filter(|&at| out.timer != Some(at)) {
            self.client.reactor.kick_at(at, Arc::clone(self));
        }
        if out.kick {
            self.client.reactor.post(Job::Kick(Arc::clone(self)));
        }
    }

    /// Removes a cancelled request from the queues; returns the bytes it
    /// already holds (its `Information`).
    fn remove_request(self: &Arc<Self>, irp: usize) -> usize {
        let mut st = self.lock();
        if let Some(i) = st.receives.iter().position(|o| o.irp == irp) {
            return st.receives.remove(i).map_or(0, |o| o.filled);
        }
        if let Some(i) = st.sends.iter().position(|o| o.irp == irp) {
            return st.sends.remove(i).map_or(0, |o| o.sent);
        }
        if let Some(i) = st.accepts.iter().position(|o| o.irp == irp) {
            st.accepts.remove(i);
            return 0;
        }
        if let Some(i) = st.recv_froms.iter().position(|o| o.irp == irp) {
            st.recv_froms.remove(i);
            return 0;
        }
        if let Some(i) = st.send_tos.iter().position(|o| o.irp == irp) {
            return st.send_tos.remove(i).map_or(0, |o| o.sent);
        }
        if st.connect.as_ref().is_some_and(|c| c.irp == irp) {
            // A cancelled connect abandons the connection attempt.
            let internal = st.connect.take().is_some_and(|c| c.socket_connect);
            st.abandon_host(&self.client.reactor);
            st.phase = Phase::Failed;
            if internal && st.life == Life::Open {
                st.life = Life::Closing {
                    close_irp: None,
                    internal: true,
                };
            }
        }
        0
    }

    // === Closing ===

    /// Finishes a close: unregisters the socket and completes the close IRP.
    fn finish(self: &Arc<Self>, close_irp: Option<usize>) {
        let kernel = current();
        let retained: Vec<(usize, Retained)> = {
            let mut st = self.lock();
            st.abandon_host(&self.client.reactor);
            st.retained_bytes = 0;
            st.inbound = VecDeque::new();
            st.datagrams.clear();
            st.retained.drain().collect()
        };
        if !retained.is_empty() {
            self.wsk()
                .indications_retained
                .fetch_sub(retained.len() as u64, Ordering::Relaxed);
            // WskCloseSocket does not release retained chains: on Windows
            // they are transport buffers lost for good.
            let leaks = retained
                .iter()
                .map(|(head, r)| Leak {
                    kind: LeakKind::WskIndication,
                    tag: RETAINED_TAG,
                    size: r.size() as u64,
                    address: *head as u64,
                    location: None,
                })
                .collect();
            kernel.record_leaks(leaks);
        }
        drop(retained);
        self.wsk().release_binding(self.address());
        self.wsk()
            .retire_socket(self.address(), dispatch::poisoned_table(self.kind));
        kernel.pending_end(self.pending_key.load(Ordering::Acquire));
        self.client.socket_removed();
        if let Some(irp) = close_irp {
            complete_irp(&self.client, None, irp, STATUS_SUCCESS, 0);
        }
    }

    /// `WskCloseSocket`. Returns the call's status (the close IRP is the
    /// provider's from here on). `inline`: the completion policy lets the
    /// close complete inside the call if nothing is left in flight.
    pub(crate) fn close(self: &Arc<Self>, irp: usize, inline: bool) -> NTSTATUS {
        let mut cancelled = Vec::new();
        {
            let mut st = self.lock();
            // The close IRP is not one of the socket's requests.
            st.irps = st.irps.saturating_sub(1);
            if st.life != Life::Open {
                drop(st);
                complete_irp(&self.client, None, irp, STATUS_INVALID_HANDLE, 0);
                return STATUS_INVALID_HANDLE;
            }
            st.take_all_requests(&mut cancelled);
            let graceful = self.kind == Kind::Connection && st.fully_disconnected();
            st.inbound.clear();
            st.close_host(&self.client.reactor, graceful);
            if inline {
                // Nobody may finish it before this call decides.
                st.life = Life::Closing {
                    close_irp: None,
                    internal: false,
                };
            } else {
                mark_pending(irp);
                st.life = Life::Closing {
                    close_irp: Some(irp),
                    internal: false,
                };
            }
        }
        if !inline {
            // Force pending: everything completes on the provider thread.
            for (request, status, information) in cancelled {
                self.client.reactor.post(Job::Complete {
                    client: Arc::clone(&self.client),
                    socket: Some(Arc::clone(self)),
                    irp: request,
                    status,
                    information,
                });
            }
            let finish = self.lock().take_finish();
            if let Some(close_irp) = finish {
                // Nothing was in flight.
                self.finish(None);
                if let Some(close_irp) = close_irp {
                    self.client.reactor.post(Job::Complete {
                        client: Arc::clone(&self.client),
                        socket: None,
                        irp: close_irp,
                        status: STATUS_SUCCESS,
                        information: 0,
                    });
                }
            }
            return STATUS_PENDING;
        }
        for (request, status, information) in cancelled {
            complete_irp(&self.client, Some(self), request, status, information);
        }
        let finish_now = {
            let mut st = self.lock();
            if st.ready_to_finish() {
                st.life = Life::Finished;
                true
            } else {
                // Requests still completing elsewhere or a callback running:
                // whoever is last finishes and completes the close IRP.
                mark_pending(irp);
                st.life = Life::Closing {
                    close_irp: Some(irp),
                    internal: false,
                };
                false
            }
        };
        if finish_now {
            self.finish(None);
            complete_irp(&self.client, None, irp, STATUS_SUCCESS, 0);
            STATUS_SUCCESS
        } else {
            STATUS_PENDING
        }
    }

    /// Closes a socket the client never got (a refused or failed
    /// connection): abortively, with no close IRP.
    pub(crate) fn close_internal(self: &Arc<Self>) {
        let mut cancelled = Vec::new();
        let finish = {
            let mut st = self.lock();
            if matches!(st.life, Life::Finished) {
                return;
            }
            st.take_all_requests(&mut cancelled);
            st.close_host(&self.client.reactor, false);
            if st.life == Life::Open {
                st.life = Life::Closing {
                    close_irp: None,
                    internal: true,
                };
            }
            st.take_finish()
        };
        for (request, status, information) in cancelled {
            complete_irp(&self.client, Some(self), request, status, information);
        }
        if let Some(close_irp) = finish {
            self.finish(close_irp);
        }
    }

    // === Faults ===

    /// Applies a network fault to this connection.
    pub(crate) fn inject(self: &Arc<Self>, fault: SocketFault) -> bool {
        if self.kind != Kind::Connection {
            return false;
        }
        self.with(|st, out| {
            if st.life != Life::Open {
                return false;
            }
            st.apply_fault(fault, &self.client.reactor, out);
            true
        })
    }
}

impl Socket {
    /// Bytes the provider has read from the host socket so far (a stream
    /// socket's transport has received them), or None for other sockets.
    pub(crate) fn bytes_received(self: &Arc<Self>) -> Option<u64> {
        if self.kind != Kind::Connection {
            return None;
        }
        Some(self.with(|st, _| st.bytes_from_host))
    }

    /// The host queries this connection's provider made so far, or None
    /// for other sockets. Takes the state without making progress.
    pub(crate) fn host_queries(&self) -> Option<super::HostQueries> {
        if self.kind != Kind::Connection {
            return None;
        }
        let st = self.lock();
        Some(super::HostQueries {
            reads_would_block: st.reads_would_block,
            acknowledgement_looks: st.acknowledgement_looks.get(),
        })
    }
}

// === impl SockState: requests ===

/// What a request call decided.
pub(crate) enum Decision {
    /// The result is known: complete the call's IRP with it.
    Done(NTSTATUS, usize),
    /// The IRP was marked pending and queued (or handed on): return
    /// STATUS_PENDING.
    Queued,
}

impl SockState {
    /// A receive completed: indications resume (also after a refusal the
    /// running callback has yet to return: see `note_rearm`).
    fn unsuppress(&mut self) {
        self.suppressed = false;
        self.note_rearm(WSK_EVENT_RECEIVE);
    }

    fn ready_to_finish(&self) -> bool {
        self.irps == 0 && self.running.is_empty()
    }

    /// If closing and nothing is left in flight, marks the socket finished
    /// and returns the close IRP to complete (`Some(None)` for an internal
    /// close).
    fn take_finish(&mut self) -> Option<Option<usize>> {
        match self.life {
            Life::Closing {
                close_irp,
                internal,
            } if self.ready_to_finish() && (internal || close_irp.is_some()) => {
                self.life = Life::Finished;
                Some(close_irp)
            }
            _ => None,
        }
    }

    fn abandon_host(&mut self, reactor: &super::reactor::Reactor) {
        match std::mem::replace(&mut self.host, Host::None) {
            Host::None | Host::Bound(_) => {}
            Host::Listener(mut listener) => {
                let _ = reactor.registry().deregister(&mut listener);
            }
            Host::Stream(mut stream) => {
                let _ = reactor.registry().deregister(&mut stream);
            }
            Host::Udp(mut udp) => {
                let _ = reactor.registry().deregister(&mut udp);
            }
        }
    }

    /// Closes the host socket: a connection abortively (RST) unless
    /// `graceful`.
    fn close_host(&mut self, reactor: &super::reactor::Reactor, graceful: bool) {
        if let Host::Stream(stream) = std::mem::replace(&mut self.host, Host::None) {
            if graceful {
                let mut stream = stream;
                let _ = reactor.registry().deregister(&mut stream);
            } else {
                reset_stream(reactor.registry(), stream);
            }
        } else {
            self.abandon_host(reactor);
        }
    }

    /// Takes every queued request the provider can still complete, with
    /// STATUS_CANCELLED and the bytes it holds.
    fn take_all_requests(&mut self, out: &mut Vec<(usize, NTSTATUS, usize)>) {
        for mut op in std::mem::take(&mut self.receives) {
            if take(op.irp, &mut op.armed) {
                finish_receive_ex(&op);
                out.push((op.irp, STATUS_CANCELLED, op.filled));
            }
        }
        let acked = self.acked_watermark();
        for wait in std::mem::take(&mut self.unacked) {
            out.push((wait.irp, STATUS_CANCELLED, wait.acked_of(acked)));
        }
        for mut op in std::mem::take(&mut self.sends) {
            if take(op.irp, &mut op.armed) {
                out.push((op.irp, STATUS_CANCELLED, op.sent));
            }
        }
        for mut op in std::mem::take(&mut self.accepts) {
            if take(op.irp, &mut op.armed) {
                out.push((op.irp, STATUS_CANCELLED, 0));
            }
        }
        for mut op in std::mem::take(&mut self.recv_froms) {
            if take(op.irp, &mut op.armed) {
                out.push((op.irp, STATUS_CANCELLED, 0));
            }
        }
        for mut op in std::mem::take(&mut self.send_tos) {
            if take(op.irp, &mut op.armed) {
                out.push((op.irp, STATUS_CANCELLED, op.sent));
            }
        }
        if let Some(mut op) = self.connect.take()
            && take(op.irp, &mut op.armed)
        {
            out.push((op.irp, STATUS_CANCELLED, 0));
        }
        for (irp, _) in std::mem::take(&mut self.disables) {
            out.push((irp, STATUS_SUCCESS, 0));
        }
    }

    /// Queues a request: marks it pending, arms its cancel routine. If it
    /// was cancelled already, it completes (from the provider thread) with
    /// STATUS_CANCELLED.
    fn enqueue(&mut self, irp: usize, push: impl FnOnce(&mut Self), out: &mut Out) -> Decision {
        mark_pending(irp);
        push(self);
        if let Arm::Cancelled = arm(irp) {
            // Take it back out and complete it.
            self.receives.retain(|o| o.irp != irp);
            self.sends.retain(|o| o.irp != irp);
            self.accepts.retain(|o| o.irp != irp);
            self.recv_froms.retain(|o| o.irp != irp);
            self.send_tos.retain(|o| o.irp != irp);
            if self.connect.as_ref().is_some_and(|c| c.irp == irp) {
                self.connect = None;
            }
            out.complete(irp, STATUS_CANCELLED, 0);
        }
        Decision::Queued
    }

    /// Whether the pool fault plan refuses to queue a request.
    fn queue_refused() -> bool {
        let kernel = current();
        let refused = kernel.faults.pool.should_fail();
        if refused {
            kernel.pool.note_failure();
        }
        refused
    }

    /// Puts bytes back at the front of the inbound buffer.
    fn unread(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().rev() {
            self.inbound.push_front(b);
        }
    }

    fn enabled(&self) -> ULONG {
        self.events | self.static_events
    }

    // --- progress ---

    fn progress(&mut self, socket: &Arc<Socket>, ctx: Ctx, out: &mut Out) {
        if !matches!(self.life, Life::Open) {
            return;
        }
        match socket.kind {
            Kind::Connection => {
                if socket.error_event.swap(false, Ordering::AcqRel)
                    && self.ack_reports
                    && let Host::Stream(stream) = &self.host
                {
                    self.ack_news = true;
                    let reports = host::drain_acknowledgement_reports(stream);
                    if reports > 0 {
                        socket
                            .wsk()
                            .acknowledgement_reports
                            .fetch_add(reports as u64, Ordering::Relaxed);
                    }
                }
                if self.phase == Phase::Connecting {
                    self.check_connect(socket, out);
                }
                if self.phase == Phase::Connected {
                    let mut budget = self.budget(out);
                    let mut write_budget = budget;
                    self.flush_sends(&mut write_budget, out);
                    self.check_acks(out);
                    // Readiness is edge-triggered: read until the host says
                    // "would block" or nobody consumes what was read.
                    loop {
                        let read = self.fill_inbound(&mut budget);
                        self.deliver_receives(out);
                        if ctx != Ctx::Caller {
                            self.stream_callbacks(out);
                        }
                        if read == 0 {
                            break;
                        }
                    }
                }
            }
            Kind::Listen => {
                self.deliver_accepts(socket, out);
                if ctx != Ctx::Caller {
                    self.accept_callbacks(socket, out);
                }
            }
            Kind::Datagram => {
                self.deliver_datagrams(out);
                self.flush_send_tos(out);
                if ctx != Ctx::Caller {
                    self.datagram_callbacks(out);
                }
            }
        }
        if ctx == Ctx::Caller && self.callback_due() {
            out.kick = true;
        }
    }

    // --- addresses, options, events ---

    /// The bound local address.
    pub(crate) fn local_address(&self) -> Option<SocketAddr> {
        match self.phase {
            Phase::Created | Phase::Failed => None,
            _ => self.local,
        }
    }

    /// The connected remote address.
    pub(crate) fn remote_address(&self) -> Option<SocketAddr> {
        match self.phase {
            Phase::Connected => self.remote,
            _ => None,
        }
    }
}
