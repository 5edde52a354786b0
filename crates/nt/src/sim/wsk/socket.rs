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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::Interest;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use socket2::{Domain, SockRef, Type};

use super::super::access::{irp_cancel, sl_arguments};
use super::super::ffi::*;
use super::super::io::{
    IO_NETWORK_INCREMENT, IoGetCurrentIrpStackLocation, IoMarkIrpPending, IoReleaseCancelSpinLock,
    IoSetCancelRoutine, IofCompleteRequest,
};
use super::super::session::{current, lock};
use super::buf::{BufRef, DataIndication, Datagram, DatagramIndication};
use super::errors::{EINPROGRESS, is_transient, status_from_io};
use super::reactor::Job;
use super::{Client, SocketFault, WskState, dispatch, state_of};
use crate::status::*;
use crate::types::*;
use crate::wsk::*;

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
            Kind::Listen => WSK_EVENT_ACCEPT,
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

/// Options set before the host socket exists (or applied to it).
#[derive(Debug, Clone, Copy)]
struct Options {
    v6only: bool,
    reuse: Option<bool>,
    keepalive: Option<bool>,
    rcvbuf: Option<usize>,
    sndbuf: Option<usize>,
    nodelay: Option<bool>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            v6only: true,
            reuse: None,
            keepalive: None,
            rcvbuf: None,
            sndbuf: None,
            nodelay: None,
        }
    }
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
    armed: bool,
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
    control_flags_out: usize,
    armed: bool,
}

struct SendToOp {
    irp: usize,
    data: Vec<u8>,
    remote: SocketAddr,
    armed: bool,
}

/// An indication the client retains (returned STATUS_PENDING).
enum Retained {
    Data(Box<DataIndication>),
    // Held (not read) until the client releases it.
    Datagrams(#[allow(dead_code)] Box<DatagramIndication>),
}

impl Retained {
    fn bytes(&self) -> usize {
        match self {
            Retained::Data(d) => d.len(),
            Retained::Datagrams(_) => 0,
        }
    }
}

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
    /// The provider thread.
    Reactor,
}

enum Callback {
    Receive {
        routine: unsafe extern "C" fn(
            PVOID,
            ULONG,
            PWSK_DATA_INDICATION,
            SIZE_T,
            *mut SIZE_T,
        ) -> NTSTATUS,
        context: usize,
        flags: ULONG,
        indication: Box<DataIndication>,
    },
    ReceiveDead {
        routine: unsafe extern "C" fn(
            PVOID,
            ULONG,
            PWSK_DATA_INDICATION,
            SIZE_T,
            *mut SIZE_T,
        ) -> NTSTATUS,
        context: usize,
    },
    Disconnect {
        routine: unsafe extern "C" fn(PVOID, ULONG) -> NTSTATUS,
        context: usize,
        flags: ULONG,
    },
    Accept {
        routine: AcceptRoutine,
        context: usize,
        socket: Arc<Socket>,
        local: SocketAddr,
        remote: SocketAddr,
    },
    ReceiveFrom {
        routine: unsafe extern "C" fn(PVOID, ULONG, PWSK_DATAGRAM_INDICATION) -> NTSTATUS,
        context: usize,
        indication: Box<DatagramIndication>,
        is_static: bool,
    },
}

type AcceptRoutine = unsafe extern "C" fn(
    PVOID,
    ULONG,
    PSOCKADDR,
    PSOCKADDR,
    PWSK_SOCKET,
    *mut PVOID,
    *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS;

pub(crate) struct SockState {
    context: usize,
    /// The client's event table for this socket (0: none).
    dispatch: usize,
    events: ULONG,
    static_events: ULONG,
    /// False until an accept callback returned the socket's context and
    /// dispatch.
    callbacks_ready: bool,
    running_events: ULONG,
    callbacks_running: u32,
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
    eof: bool,
    error: Option<NTSTATUS>,
    /// The error came from the peer or the network (raise the abortive
    /// disconnect callback).
    peer_error: bool,
    disconnect_requested: bool,
    shutdown_done: bool,
    disconnect_indicated: bool,
    suppressed: bool,
    retained: HashMap<usize, Retained>,
    retained_bytes: usize,
    /// The head of the chain a receive (from) callback holds right now, and
    /// whether the client already released it: a client may release a chain
    /// it retains as soon as the callback has returned STATUS_PENDING, before
    /// this provider thread has recorded the retention.
    indicating: Option<usize>,
    released_early: bool,
    /// A receive completed (re-arming indications) or WSK_EVENT_RECEIVE_FROM
    /// was enabled while a receive (from) callback ran: a refusal that
    /// callback returns must not suppress or disable what the client already
    /// re-armed from another thread.
    rearmed_during_callback: bool,
    datagrams: VecDeque<Datagram>,

    slow: Option<(usize, Duration)>,
    next_io: Option<Instant>,
    retry_at: Option<Instant>,

    /// Requests of this socket in flight (accepted, not yet completed).
    irps: u64,
    life: Life,
}

/// A socket: `PWSK_SOCKET` points to it (its first field is the
/// `WSK_SOCKET` header the client reads `Dispatch` from).
#[repr(C)]
pub(crate) struct Socket {
    header: WSK_SOCKET,
    pub(crate) kind: Kind,
    pub(crate) family: ADDRESS_FAMILY,
    pub(crate) client: Arc<Client>,
    pending_key: AtomicU64,
    state: Mutex<SockState>,
}

// SAFETY: the header's dispatch pointer is a `'static` table; all mutable
// state is behind the mutex; IRPs and client pointers are kept as plain
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

fn host_socket(
    family: ADDRESS_FAMILY,
    ty: Type,
    options: &Options,
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
    if let Some(reuse) = options.reuse {
        socket.set_reuse_address(reuse)?;
    }
    if let Some(keepalive) = options.keepalive {
        socket.set_keepalive(keepalive)?;
    }
    if let Some(size) = options.rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(size) = options.sndbuf {
        socket.set_send_buffer_size(size)?;
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
            context,
            dispatch,
            events: 0,
            static_events: client.static_events() & kind.events(),
            callbacks_ready: true,
            running_events: 0,
            callbacks_running: 0,
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
            eof: false,
            error: None,
            peer_error: false,
            disconnect_requested: false,
            shutdown_done: false,
            disconnect_indicated: false,
            suppressed: false,
            retained: HashMap::new(),
            retained_bytes: 0,
            indicating: None,
            released_early: false,
            rearmed_during_callback: false,
            datagrams: VecDeque::new(),
            slow: None,
            next_io: None,
            retry_at: None,
            irps: 0,
            life: Life::Open,
        };
        let socket = Arc::new(Socket {
            header: WSK_SOCKET { Dispatch: table },
            kind,
            family,
            client: Arc::clone(client),
            pending_key: AtomicU64::new(0),
            state: Mutex::new(state),
        });
        let key = kernel.pending_begin_for("WSK socket", socket.address() as u64, client.owner);
        socket.pending_key.store(key, Ordering::Release);
        client.wsk.insert_socket(&socket);
        client.wsk.sockets_created.fetch_add(1, Ordering::Relaxed);
        client.socket_added();
        Some(socket)
    }

    /// Its `PWSK_SOCKET`.
    pub(crate) fn address(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    fn wsk(&self) -> &Arc<WskState> {
        &self.client.wsk
    }

    fn lock(&self) -> MutexGuard<'_, SockState> {
        lock(&self.state)
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
        let mut out = Out::default();
        let result = {
            let mut st = self.lock();
            let result = f(&mut st, &mut out);
            st.progress(self, Ctx::Caller, &mut out);
            result
        };
        self.apply(out, Ctx::Caller);
        result
    }

    /// Makes progress on the provider thread (events, kicks, timers).
    pub(crate) fn pump_reactor(self: &Arc<Self>) {
        for _ in 0..64 {
            let out = {
                let mut st = self.lock();
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
                Ctx::Caller => self.client.reactor.post(Job::Complete {
                    client: Arc::clone(&self.client),
                    socket: Some(Arc::clone(self)),
                    irp,
                    status,
                    information,
                }),
            }
        }
        for callback in out.callbacks {
            self.run_callback(callback);
        }
        for socket in out.internal_closes {
            socket.close_internal();
        }
        if let Some(at) = out.timer {
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
            st.send_tos.remove(i);
            return 0;
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
        let retained: Vec<Retained> = {
            let mut st = self.lock();
            st.abandon_host(&self.client.reactor);
            st.retained_bytes = 0;
            st.inbound = VecDeque::new();
            st.datagrams.clear();
            st.retained.drain().map(|(_, r)| r).collect()
        };
        if !retained.is_empty() {
            self.wsk()
                .indications_retained
                .fetch_sub(retained.len() as u64, Ordering::Relaxed);
        }
        drop(retained);
        self.wsk().remove_socket(self.address());
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
            let graceful = st.shutdown_done;
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

    // === Event callbacks (provider thread only) ===

    fn run_callback(self: &Arc<Self>, callback: Callback) {
        match callback {
            Callback::Receive {
                routine,
                context,
                flags,
                indication,
            } => {
                let bytes = indication.len();
                let mut accepted: SIZE_T = bytes as SIZE_T;
                self.wsk().indications.fetch_add(1, Ordering::Relaxed);
                self.indicating(indication.head() as usize);
                // SAFETY: the client's WskReceiveEvent with a provider-owned
                // chain that stays valid until released or returned.
                let status = unsafe {
                    routine(
                        context as PVOID,
                        flags,
                        indication.head(),
                        bytes as SIZE_T,
                        &mut accepted,
                    )
                };
                self.after_callback(WSK_EVENT_RECEIVE, |st, wsk| match status {
                    STATUS_SUCCESS if accepted as usize >= bytes => {}
                    STATUS_SUCCESS => {
                        st.unread(indication.bytes_from(accepted as usize));
                        st.suppress();
                    }
                    STATUS_PENDING if st.take_released_early() => {}
                    STATUS_PENDING => {
                        wsk.indications_retained.fetch_add(1, Ordering::Relaxed);
                        st.retained_bytes += bytes;
                        st.retained
                            .insert(indication.head() as usize, Retained::Data(indication));
                    }
                    _ => {
                        st.unread(indication.bytes_from(0));
                        st.suppress();
                    }
                });
            }
            Callback::ReceiveDead { routine, context } => {
                let mut accepted: SIZE_T = 0;
                // SAFETY: the client's WskReceiveEvent; a NULL indication
                // says the socket is dead.
                let _ = unsafe {
                    routine(
                        context as PVOID,
                        WSK_FLAG_AT_DISPATCH_LEVEL,
                        core::ptr::null_mut(),
                        0,
                        &mut accepted,
                    )
                };
                self.after_callback(WSK_EVENT_RECEIVE, |_, _| {});
            }
            Callback::Disconnect {
                routine,
                context,
                flags,
            } => {
                // SAFETY: the client's WskDisconnectEvent.
                let _ = unsafe { routine(context as PVOID, flags) };
                self.after_callback(WSK_EVENT_DISCONNECT, |_, _| {});
            }
            Callback::Accept {
                routine,
                context,
                socket,
                local,
                remote,
            } => {
                let mut local = sockaddr_from(&local);
                let mut remote = sockaddr_from(&remote);
                let mut accept_context: PVOID = core::ptr::null_mut();
                let mut accept_dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH = core::ptr::null();
                // SAFETY: the client's WskAcceptEvent; the addresses are
                // valid for the call, the new socket is live.
                let status = unsafe {
                    routine(
                        context as PVOID,
                        WSK_FLAG_AT_DISPATCH_LEVEL,
                        (&raw mut local).cast(),
                        (&raw mut remote).cast(),
                        socket.address() as PWSK_SOCKET,
                        &mut accept_context,
                        &mut accept_dispatch,
                    )
                };
                self.after_callback(WSK_EVENT_ACCEPT, |_, _| {});
                if status == STATUS_SUCCESS {
                    {
                        let mut st = socket.lock();
                        st.context = accept_context as usize;
                        st.dispatch = accept_dispatch as usize;
                        st.callbacks_ready = true;
                    }
                    socket.pump_reactor();
                } else {
                    self.wsk()
                        .connections_refused
                        .fetch_add(1, Ordering::Relaxed);
                    socket.close_internal();
                }
            }
            Callback::ReceiveFrom {
                routine,
                context,
                indication,
                is_static,
            } => {
                self.wsk().indications.fetch_add(1, Ordering::Relaxed);
                self.indicating(indication.head() as usize);
                // SAFETY: the client's WskReceiveFromEvent with a
                // provider-owned chain.
                let status = unsafe {
                    routine(
                        context as PVOID,
                        WSK_FLAG_AT_DISPATCH_LEVEL,
                        indication.head(),
                    )
                };
                self.after_callback(WSK_EVENT_RECEIVE_FROM, |st, wsk| match status {
                    STATUS_SUCCESS => {}
                    STATUS_PENDING if st.take_released_early() => {}
                    STATUS_PENDING => {
                        wsk.indications_retained.fetch_add(1, Ordering::Relaxed);
                        st.retained
                            .insert(indication.head() as usize, Retained::Datagrams(indication));
                    }
                    _ if is_static => {
                        wsk.datagrams_dropped
                            .fetch_add(indication.count() as u64, Ordering::Relaxed);
                    }
                    _ => {
                        if !core::mem::take(&mut st.rearmed_during_callback) {
                            st.events &= !WSK_EVENT_RECEIVE_FROM;
                        }
                        for datagram in indication.into_datagrams().into_iter().rev() {
                            st.datagrams.push_front(datagram);
                        }
                    }
                });
            }
        }
    }

    /// Bookkeeping after a callback returned: its effect on the state,
    /// waiting disables, and a close that waited for it.
    fn after_callback(
        self: &Arc<Self>,
        event: ULONG,
        effect: impl FnOnce(&mut SockState, &WskState),
    ) {
        let mut completions = Vec::new();
        let finish = {
            let mut st = self.lock();
            st.callbacks_running = st.callbacks_running.saturating_sub(1);
            st.running_events &= !event;
            if st.life != Life::Finished {
                effect(&mut st, self.wsk());
            }
            st.indicating = None;
            st.released_early = false;
            st.rearmed_during_callback = false;
            let running = st.running_events;
            st.disables.retain(|&(irp, e)| {
                if running & e != 0 {
                    return true;
                }
                completions.push(irp);
                false
            });
            st.take_finish()
        };
        for irp in completions {
            complete_irp(&self.client, Some(self), irp, STATUS_SUCCESS, 0);
        }
        if let Some(close_irp) = finish {
            self.finish(close_irp);
        }
    }

    /// Records the chain a callback is about to get.
    fn indicating(&self, head: usize) {
        let mut st = self.lock();
        st.indicating = Some(head);
        st.released_early = false;
    }

    /// `WskRelease`: gives a retained indication chain back.
    pub(crate) fn release(self: &Arc<Self>, head: usize) -> NTSTATUS {
        let released = self.with(|st, out| {
            let released = st.retained.remove(&head);
            if let Some(r) = &released {
                st.retained_bytes = st.retained_bytes.saturating_sub(r.bytes());
                out.kick = true;
            } else if st.indicating == Some(head) && !st.released_early {
                // Released right after its callback returned STATUS_PENDING,
                // before the retention was recorded: after_callback frees it.
                st.released_early = true;
                return Err(STATUS_SUCCESS);
            }
            Ok(released)
        });
        let released = match released {
            Ok(released) => released,
            Err(status) => return status,
        };
        match released {
            Some(r) => {
                self.wsk()
                    .indications_retained
                    .fetch_sub(1, Ordering::Relaxed);
                drop(r);
                STATUS_SUCCESS
            }
            None => STATUS_INVALID_PARAMETER,
        }
    }

    /// The state, for the dispatch functions.
    pub(crate) fn state(&self) -> MutexGuard<'_, SockState> {
        self.lock()
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
    /// running callback has yet to return).
    fn unsuppress(&mut self) {
        self.suppressed = false;
        if self.running_events & WSK_EVENT_RECEIVE != 0 {
            self.rearmed_during_callback = true;
        }
    }

    /// The receive callback refused (part of) its data: no indication until
    /// a receive completes, unless one already completed while it ran.
    fn suppress(&mut self) {
        if !core::mem::take(&mut self.rearmed_during_callback) {
            self.suppressed = true;
        }
    }

    /// Whether the chain of the callback that just returned was already
    /// released (and so is not retained).
    fn take_released_early(&mut self) -> bool {
        core::mem::take(&mut self.released_early)
    }

    fn ready_to_finish(&self) -> bool {
        self.irps == 0 && self.callbacks_running == 0
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
                out.push((op.irp, STATUS_CANCELLED, 0));
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
        self.running_events = 0;
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

    // --- bind / connect ---

    /// `WskBind`.
    pub(crate) fn bind(&mut self, socket: &Arc<Socket>, local: SocketAddr) -> Decision {
        if self.phase != Phase::Created {
            return Decision::Done(STATUS_INVALID_DEVICE_STATE, 0);
        }
        if family_of(&local) != socket.family {
            return Decision::Done(STATUS_INVALID_PARAMETER, 0);
        }
        let registry = socket.client.reactor.registry();
        let token = mio::Token(socket.address());
        let result = (|| -> std::io::Result<(Host, SocketAddr)> {
            match socket.kind {
                Kind::Listen => {
                    let mut options = self.options;
                    // Windows lets a listener bind over TIME_WAIT
                    // connections by default; on Linux that is SO_REUSEADDR.
                    options.reuse.get_or_insert(true);
                    let host = host_socket(socket.family, Type::STREAM, &options)?;
                    host.bind(&local.into())?;
                    host.listen(1024)?;
                    let mut listener = TcpListener::from_std(host.into());
                    registry.register(&mut listener, token, Interest::READABLE)?;
                    let local = listener.local_addr()?;
                    Ok((Host::Listener(listener), local))
                }
                Kind::Connection => {
                    let host = host_socket(socket.family, Type::STREAM, &self.options)?;
                    host.bind(&local.into())?;
                    let local = host
                        .local_addr()?
                        .as_socket()
                        .ok_or(std::io::ErrorKind::InvalidInput)?;
                    Ok((Host::Bound(host), local))
                }
                Kind::Datagram => {
                    let host = host_socket(socket.family, Type::DGRAM, &self.options)?;
                    host.bind(&local.into())?;
                    let mut udp = UdpSocket::from_std(host.into());
                    registry.register(&mut udp, token, Interest::READABLE | Interest::WRITABLE)?;
                    let local = udp.local_addr()?;
                    Ok((Host::Udp(udp), local))
                }
            }
        })();
        match result {
            Ok((host, local)) => {
                self.host = host;
                self.local = Some(local);
                self.phase = Phase::Bound;
                Decision::Done(STATUS_SUCCESS, 0)
            }
            Err(error) => Decision::Done(status_from_io(&error), 0),
        }
    }

    /// `WskConnect` / `WskConnectEx` / the connect of `WskSocketConnect`.
    pub(crate) fn connect(
        &mut self,
        socket: &Arc<Socket>,
        irp: usize,
        remote: SocketAddr,
        then_send: Option<BufRef>,
        socket_connect: bool,
        out: &mut Out,
    ) -> Decision {
        if self.phase != Phase::Bound {
            return Decision::Done(STATUS_INVALID_DEVICE_STATE, 0);
        }
        if family_of(&remote) != socket.family {
            return Decision::Done(STATUS_INVALID_PARAMETER, 0);
        }
        if Self::queue_refused() {
            return Decision::Done(STATUS_INSUFFICIENT_RESOURCES, 0);
        }
        let Host::Bound(host) = std::mem::replace(&mut self.host, Host::None) else {
            return Decision::Done(STATUS_INVALID_DEVICE_STATE, 0);
        };
        match host.connect(&remote.into()) {
            Ok(()) => {}
            Err(error) if is_transient(&error) || error.raw_os_error() == Some(EINPROGRESS) => {}
            Err(error) => {
                self.phase = Phase::Failed;
                return Decision::Done(status_from_io(&error), 0);
            }
        }
        let mut stream = TcpStream::from_std(host.into());
        let registry = socket.client.reactor.registry();
        if let Err(error) = registry.register(
            &mut stream,
            mio::Token(socket.address()),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.phase = Phase::Failed;
            return Decision::Done(status_from_io(&error), 0);
        }
        self.host = Host::Stream(stream);
        self.phase = Phase::Connecting;
        self.remote = Some(remote);
        self.enqueue(
            irp,
            |st| {
                st.connect = Some(ConnectOp {
                    irp,
                    then_send,
                    socket_connect,
                    armed: true,
                });
            },
            out,
        )
    }

    fn check_connect(&mut self, socket: &Arc<Socket>, out: &mut Out) {
        let Host::Stream(stream) = &self.host else {
            return;
        };
        let failure = match stream.take_error() {
            Ok(Some(error)) | Err(error) => Some(status_from_io(&error)),
            Ok(None) => match stream.peer_addr() {
                Ok(peer) => {
                    self.remote = Some(peer);
                    self.local = stream.local_addr().ok().or(self.local);
                    None
                }
                Err(error)
                    if error.kind() == std::io::ErrorKind::NotConnected || is_transient(&error) =>
                {
                    return;
                }
                Err(error) => Some(status_from_io(&error)),
            },
        };
        match failure {
            None => {
                self.phase = Phase::Connected;
                if let Some(fault) = socket.wsk().connection_fault() {
                    self.apply_fault(fault, &socket.client.reactor, out);
                }
                if let Some(mut op) = self.connect.take()
                    && take(op.irp, &mut op.armed)
                {
                    if op.socket_connect {
                        out.complete(op.irp, STATUS_SUCCESS, socket.address());
                    } else if let Some(buf) = op.then_send {
                        self.sends.push_front(SendOp {
                            irp: op.irp,
                            buf,
                            sent: 0,
                            kind: SendKind::ConnectEx,
                            armed: false,
                        });
                    } else {
                        out.complete(op.irp, STATUS_SUCCESS, 0);
                    }
                }
            }
            Some(status) => {
                self.abandon_host(&socket.client.reactor);
                self.phase = Phase::Failed;
                if let Some(mut op) = self.connect.take() {
                    if op.socket_connect && self.life == Life::Open {
                        out.internal_closes.push(Arc::clone(socket));
                    }
                    if take(op.irp, &mut op.armed) {
                        out.complete(op.irp, status, 0);
                    }
                }
            }
        }
    }

    // --- connections ---

    /// The status a data request on a connection gets now, if it cannot
    /// proceed.
    fn connection_refusal(&self) -> Option<NTSTATUS> {
        match self.phase {
            Phase::Connected => None,
            _ => Some(self.error.unwrap_or(STATUS_INVALID_DEVICE_STATE)),
        }
    }

    /// `WskReceive` / `WskReceiveEx`.
    pub(crate) fn receive(
        &mut self,
        irp: usize,
        buf: BufRef,
        flags: ULONG,
        control_length: usize,
        out: &mut Out,
    ) -> Decision {
        if flags & !(WSK_FLAG_WAITALL | WSK_FLAG_DRAIN) != 0 {
            return Decision::Done(STATUS_NOT_SUPPORTED, 0);
        }
        let waitall = flags & WSK_FLAG_WAITALL != 0;
        let drain = flags & WSK_FLAG_DRAIN != 0;
        if drain && (waitall || buf.length != 0) {
            return Decision::Done(STATUS_INVALID_PARAMETER, 0);
        }
        if let Some(status) = self.connection_refusal() {
            return Decision::Done(status, 0);
        }
        let mut op = RecvOp {
            irp,
            buf,
            waitall,
            drain,
            filled: 0,
            control_length,
            armed: false,
        };
        if self.receives.is_empty() && !drain {
            if buf.length == 0 {
                // Re-arms the receive event; completes at once.
                self.unsuppress();
                out.kick = true;
                finish_receive_ex(&op);
                return Decision::Done(self.error.unwrap_or(STATUS_SUCCESS), 0);
            }
            let mut budget = self.budget(out);
            loop {
                let read = self.fill_inbound(&mut budget);
                if !self.inbound.is_empty() {
                    match self.copy_inbound(&mut op) {
                        Err(status) => return Decision::Done(status, 0),
                        Ok(()) if !op.waitall || op.filled == op.buf.length => {
                            self.unsuppress();
                            out.kick = true;
                            finish_receive_ex(&op);
                            return Decision::Done(STATUS_SUCCESS, op.filled);
                        }
                        Ok(()) => {}
                    }
                }
                if read == 0 {
                    break;
                }
            }
            if self.inbound.is_empty() {
                if let Some(status) = self.error {
                    return Decision::Done(status, op.filled);
                }
                if self.eof {
                    finish_receive_ex(&op);
                    return Decision::Done(STATUS_SUCCESS, op.filled);
                }
            }
        }
        if Self::queue_refused() {
            return Decision::Done(STATUS_INSUFFICIENT_RESOURCES, op.filled);
        }
        op.armed = true;
        self.enqueue(irp, |st| st.receives.push_back(op), out)
    }

    /// `WskSend` / `WskSendEx`, and the data of a graceful `WskDisconnect`.
    pub(crate) fn send(
        &mut self,
        irp: usize,
        buf: BufRef,
        kind: SendKind,
        out: &mut Out,
    ) -> Decision {
        if let Some(status) = self.connection_refusal() {
            return Decision::Done(status, 0);
        }
        if let Some(status) = self.error {
            return Decision::Done(status, 0);
        }
        if self.disconnect_requested {
            return Decision::Done(STATUS_INVALID_DEVICE_STATE, 0);
        }
        if kind == SendKind::Disconnect {
            self.disconnect_requested = true;
        }
        let mut op = SendOp {
            irp,
            buf,
            sent: 0,
            kind,
            armed: false,
        };
        if self.sends.is_empty() {
            let mut budget = self.budget(out);
            match self.write_op(&mut op, &mut budget) {
                Err(status) => return Decision::Done(status, op.sent),
                Ok(true) => {
                    if kind == SendKind::Disconnect
                        && let Err(status) = self.shutdown_write()
                    {
                        return Decision::Done(status, op.sent);
                    }
                    return Decision::Done(STATUS_SUCCESS, op.sent);
                }
                Ok(false) => {}
            }
        }
        if op.sent == 0 && Self::queue_refused() {
            if kind == SendKind::Disconnect {
                self.disconnect_requested = false;
            }
            return Decision::Done(STATUS_INSUFFICIENT_RESOURCES, 0);
        }
        if op.sent > 0 {
            // Started: no longer cancellable.
            mark_pending(irp);
            self.sends.push_back(op);
            return Decision::Queued;
        }
        op.armed = true;
        self.enqueue(irp, |st| st.sends.push_back(op), out)
    }

    /// An abortive `WskDisconnect`: RST now.
    pub(crate) fn abort(&mut self, socket: &Arc<Socket>, out: &mut Out) -> Decision {
        if self.phase != Phase::Connected {
            return Decision::Done(self.error.unwrap_or(STATUS_INVALID_DEVICE_STATE), 0);
        }
        self.close_host(&socket.client.reactor, false);
        self.inbound.clear();
        if self.error.is_none() {
            self.error = Some(STATUS_CONNECTION_ABORTED);
            self.peer_error = false;
        }
        self.fail_requests(out);
        Decision::Done(STATUS_SUCCESS, 0)
    }

    fn shutdown_write(&mut self) -> Result<(), NTSTATUS> {
        let Host::Stream(stream) = &self.host else {
            return Err(self.error.unwrap_or(STATUS_INVALID_DEVICE_STATE));
        };
        match stream.shutdown(std::net::Shutdown::Write) {
            Ok(()) => {
                self.shutdown_done = true;
                Ok(())
            }
            Err(error) => Err(status_from_io(&error)),
        }
    }

    /// Writes as much of `op` as the host takes; `Ok(true)` when all of it
    /// is out.
    fn write_op(&mut self, op: &mut SendOp, budget: &mut usize) -> Result<bool, NTSTATUS> {
        let Host::Stream(stream) = &mut self.host else {
            return Err(self.error.unwrap_or(STATUS_INVALID_DEVICE_STATE));
        };
        let mut failure = None;
        let mut blocked = false;
        let start = op.sent;
        let allowed = (*budget).min(op.buf.length - op.sent);
        let mut sent = 0usize;
        let visit = |piece: *mut u8, len: usize| {
            // SAFETY: `piece` is `len` readable bytes of the buffer.
            let bytes = unsafe { core::slice::from_raw_parts(piece, len) };
            let mut done = 0;
            while done < len {
                match stream.write(&bytes[done..]) {
                    Ok(0) => {
                        blocked = true;
                        break;
                    }
                    Ok(n) => done += n,
                    Err(error) if is_transient(&error) => {
                        blocked = true;
                        break;
                    }
                    Err(error) => {
                        failure = Some(status_from_io(&error));
                        break;
                    }
                }
            }
            sent += done;
            !blocked && failure.is_none()
        };
        // SAFETY: the request is queued or being made, so its buffer is
        // live and locked.
        let walked = unsafe { op.buf.segments(start, allowed, visit) };
        op.sent += sent;
        *budget = budget.saturating_sub(op.sent - start);
        walked?;
        if let Some(status) = failure {
            self.error.get_or_insert(status);
            self.peer_error = true;
            return Err(status);
        }
        Ok(op.sent == op.buf.length)
    }

    /// Reads the host socket into the inbound buffer while there is room;
    /// returns the bytes read.
    fn fill_inbound(&mut self, budget: &mut usize) -> usize {
        let mut total = 0;
        while !self.eof && self.error.is_none() && *budget > 0 {
            let room = INBOUND_CAP.saturating_sub(self.inbound.len() + self.retained_bytes);
            if room == 0 {
                break;
            }
            let Host::Stream(stream) = &mut self.host else {
                break;
            };
            let want = room.min(*budget).min(DATAGRAM_MAX);
            let inbound = &mut self.inbound;
            let result = SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let n = stream.read(&mut scratch[..want])?;
                inbound.extend(&scratch[..n]);
                Ok::<usize, std::io::Error>(n)
            });
            match result {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    total += n;
                    *budget = budget.saturating_sub(n);
                }
                Err(error) if is_transient(&error) => break,
                Err(error) => {
                    self.error = Some(status_from_io(&error));
                    self.peer_error = true;
                }
            }
        }
        total
    }

    /// Copies inbound bytes into a receive.
    fn copy_inbound(&mut self, op: &mut RecvOp) -> Result<(), NTSTATUS> {
        let want = (op.buf.length - op.filled).min(self.inbound.len());
        let (a, b) = self.inbound.as_slices();
        let first = want.min(a.len());
        // SAFETY: the request is owned by the provider (taken or being
        // made) and its buffer locked until completion.
        let mut copied = unsafe { op.buf.write_at(op.filled, &a[..first]) }?;
        if copied == first && want > first {
            // SAFETY: as above.
            copied += unsafe { op.buf.write_at(op.filled + copied, &b[..want - first]) }?;
        }
        self.inbound.drain(..copied);
        op.filled += copied;
        Ok(())
    }

    fn deliver_receives(&mut self, out: &mut Out) {
        while let Some(mut op) = self.receives.pop_front() {
            if op.drain {
                self.inbound.clear();
                if self.error.is_none() && !self.eof {
                    self.receives.push_front(op);
                    return;
                }
                if take(op.irp, &mut op.armed) {
                    finish_receive_ex(&op);
                    out.complete(op.irp, self.error.unwrap_or(STATUS_SUCCESS), 0);
                }
                continue;
            }
            if !self.inbound.is_empty() {
                if !take(op.irp, &mut op.armed) {
                    continue;
                }
                if let Err(status) = self.copy_inbound(&mut op) {
                    out.complete(op.irp, status, op.filled);
                    continue;
                }
                if !op.waitall || op.filled == op.buf.length {
                    self.unsuppress();
                    finish_receive_ex(&op);
                    out.complete(op.irp, STATUS_SUCCESS, op.filled);
                    continue;
                }
                // WAITALL, not full yet: back into the queue, cancellable.
                op.armed = true;
                if let Arm::Cancelled = arm(op.irp) {
                    out.complete(op.irp, STATUS_CANCELLED, op.filled);
                    continue;
                }
                self.receives.push_front(op);
                return;
            }
            if let Some(status) = self.error {
                if take(op.irp, &mut op.armed) {
                    out.complete(op.irp, status, op.filled);
                }
                continue;
            }
            if self.eof {
                if take(op.irp, &mut op.armed) {
                    self.unsuppress();
                    finish_receive_ex(&op);
                    out.complete(op.irp, STATUS_SUCCESS, op.filled);
                }
                continue;
            }
            self.receives.push_front(op);
            return;
        }
    }

    fn flush_sends(&mut self, budget: &mut usize, out: &mut Out) {
        while let Some(mut op) = self.sends.pop_front() {
            if let Some(status) = self.error {
                if take(op.irp, &mut op.armed) {
                    out.complete(op.irp, status, op.sent);
                }
                continue;
            }
            let was_armed = op.armed;
            if !take(op.irp, &mut op.armed) {
                continue;
            }
            match self.write_op(&mut op, budget) {
                Err(status) => out.complete(op.irp, status, op.sent),
                Ok(true) => {
                    let status = if op.kind == SendKind::Disconnect {
                        self.shutdown_write().err().unwrap_or(STATUS_SUCCESS)
                    } else {
                        STATUS_SUCCESS
                    };
                    out.complete(op.irp, status, op.sent);
                }
                Ok(false) => {
                    if op.sent == 0 && was_armed {
                        op.armed = true;
                        if let Arm::Cancelled = arm(op.irp) {
                            out.complete(op.irp, STATUS_CANCELLED, 0);
                            continue;
                        }
                    }
                    self.sends.push_front(op);
                    return;
                }
            }
        }
    }

    /// Completes queued sends and receives with the connection's error
    /// (receives only once the buffered data is delivered).
    fn fail_requests(&mut self, out: &mut Out) {
        let mut budget = 0;
        self.flush_sends(&mut budget, out);
        self.deliver_receives(out);
    }

    fn apply_fault(
        &mut self,
        fault: SocketFault,
        reactor: &super::reactor::Reactor,
        out: &mut Out,
    ) {
        match fault {
            SocketFault::Reset | SocketFault::Abort => {
                if let Host::Stream(stream) = std::mem::replace(&mut self.host, Host::None) {
                    reset_stream(reactor.registry(), stream);
                }
                if self.error.is_none() {
                    self.error = Some(if fault == SocketFault::Reset {
                        STATUS_CONNECTION_RESET
                    } else {
                        STATUS_CONNECTION_ABORTED
                    });
                    self.peer_error = true;
                }
                self.fail_requests(out);
                out.kick = true;
            }
            SocketFault::Slow { chunk, interval } => {
                self.slow = Some((chunk.max(1), interval));
                self.next_io = None;
            }
        }
    }

    /// Bytes this round may move in each direction (a slow peer's chunk,
    /// once per interval).
    fn budget(&mut self, out: &mut Out) -> usize {
        let Some((chunk, interval)) = self.slow else {
            return usize::MAX;
        };
        let now = Instant::now();
        match self.next_io {
            Some(at) if at > now => {
                out.timer(at);
                0
            }
            _ => {
                self.next_io = Some(now + interval);
                out.timer(now + interval);
                chunk
            }
        }
    }

    fn stream_callbacks(&mut self, out: &mut Out) {
        if !self.callbacks_ready || self.life != Life::Open || self.callbacks_running > 0 {
            return;
        }
        let enabled = self.enabled();
        let table = self.dispatch as *const WSK_CLIENT_CONNECTION_DISPATCH;
        let (receive, disconnect) = if table.is_null() {
            (None, None)
        } else {
            // SAFETY: the client's connection dispatch stays valid while the
            // socket is open (WSK contract).
            let table = unsafe { core::ptr::read_unaligned(table) };
            (table.WskReceiveEvent, table.WskDisconnectEvent)
        };
        let receive = receive.filter(|_| enabled & WSK_EVENT_RECEIVE != 0);
        let disconnect = disconnect.filter(|_| enabled & WSK_EVENT_DISCONNECT != 0);
        if let Some(routine) = receive
            && self.receives.is_empty()
            && !self.suppressed
            && !self.inbound.is_empty()
        {
            if let Some(at) = self.retry_at
                && at > Instant::now()
            {
                out.timer(at);
                return;
            }
            let kernel = current();
            if kernel.faults.mdl.should_fail() {
                kernel.pool.note_failure();
                let at = Instant::now() + RETRY;
                self.retry_at = Some(at);
                out.timer(at);
                return;
            }
            self.retry_at = None;
            let take = self.inbound.len().min(INDICATION_MAX);
            let bytes: Vec<u8> = self.inbound.drain(..take).collect();
            let mut flags = WSK_FLAG_AT_DISPATCH_LEVEL;
            if self.retained_bytes >= INBOUND_CAP / 2 {
                flags |= WSK_FLAG_RELEASE_ASAP;
            }
            self.callbacks_running += 1;
            self.running_events |= WSK_EVENT_RECEIVE;
            out.callbacks.push(Callback::Receive {
                routine,
                context: self.context,
                flags,
                indication: Box::new(DataIndication::new(bytes, INDICATION_CHUNK)),
            });
            return;
        }
        if self.disconnect_indicated || !self.inbound.is_empty() {
            return;
        }
        if self.error.is_some() && self.peer_error {
            if let Some(routine) = disconnect {
                self.disconnect_indicated = true;
                self.callbacks_running += 1;
                self.running_events |= WSK_EVENT_DISCONNECT;
                out.callbacks.push(Callback::Disconnect {
                    routine,
                    context: self.context,
                    flags: WSK_FLAG_ABORTIVE,
                });
            } else if let Some(routine) = receive {
                self.disconnect_indicated = true;
                self.callbacks_running += 1;
                self.running_events |= WSK_EVENT_RECEIVE;
                out.callbacks.push(Callback::ReceiveDead {
                    routine,
                    context: self.context,
                });
            }
        } else if self.eof
            && self.error.is_none()
            && let Some(routine) = disconnect
        {
            self.disconnect_indicated = true;
            self.callbacks_running += 1;
            self.running_events |= WSK_EVENT_DISCONNECT;
            out.callbacks.push(Callback::Disconnect {
                routine,
                context: self.context,
                flags: 0,
            });
        }
    }

    /// Whether the provider thread has event callbacks to raise.
    fn callback_due(&self) -> bool {
        if !self.callbacks_ready || self.life != Life::Open || self.dispatch == 0 {
            return false;
        }
        let enabled = self.enabled();
        match (enabled != 0, &self.host) {
            (false, _) => false,
            (true, Host::Listener(_)) => self.accepts.is_empty() && enabled & WSK_EVENT_ACCEPT != 0,
            (true, Host::Udp(_)) => {
                self.recv_froms.is_empty() && enabled & WSK_EVENT_RECEIVE_FROM != 0
            }
            (true, _) => {
                (!self.inbound.is_empty() && self.receives.is_empty() && !self.suppressed)
                    || (!self.disconnect_indicated && (self.eof || self.error.is_some()))
            }
        }
    }

    // --- listening sockets ---

    /// `WskAccept`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn accept(
        &mut self,
        socket: &Arc<Socket>,
        irp: usize,
        context: usize,
        dispatch: usize,
        local_out: usize,
        remote_out: usize,
        out: &mut Out,
    ) -> Decision {
        if !matches!(self.host, Host::Listener(_)) {
            return Decision::Done(STATUS_INVALID_DEVICE_STATE, 0);
        }
        let mut op = AcceptOp {
            irp,
            context,
            dispatch,
            local_out,
            remote_out,
            armed: false,
        };
        if self.accepts.is_empty()
            && let Some(decision) = self.accept_one(socket, &mut op, out)
        {
            return decision;
        }
        if Self::queue_refused() {
            return Decision::Done(STATUS_INSUFFICIENT_RESOURCES, 0);
        }
        op.armed = true;
        self.enqueue(irp, |st| st.accepts.push_back(op), out)
    }

    /// Accepts one host connection for `op` (owned by the provider).
    /// `None` if none is waiting.
    fn accept_one(
        &mut self,
        socket: &Arc<Socket>,
        op: &mut AcceptOp,
        out: &mut Out,
    ) -> Option<Decision> {
        let Host::Listener(listener) = &self.host else {
            return Some(Decision::Done(STATUS_INVALID_DEVICE_STATE, 0));
        };
        match listener.accept() {
            Ok((stream, remote)) => {
                let local = stream.local_addr().ok();
                let Some(accepted) =
                    Socket::accepted(socket, stream, remote, op.context, op.dispatch, true, out)
                else {
                    return Some(Decision::Done(STATUS_INSUFFICIENT_RESOURCES, 0));
                };
                if op.local_out != 0
                    && let Some(local) = local
                {
                    // SAFETY: the client's out-parameter, valid until the
                    // request completes (WSK contract); room for its family.
                    unsafe { write_sockaddr(op.local_out as PSOCKADDR, &local) };
                }
                if op.remote_out != 0 {
                    // SAFETY: as above.
                    unsafe { write_sockaddr(op.remote_out as PSOCKADDR, &remote) };
                }
                Some(Decision::Done(STATUS_SUCCESS, accepted.address()))
            }
            Err(error) if is_transient(&error) => None,
            Err(error) => Some(Decision::Done(status_from_io(&error), 0)),
        }
    }

    fn deliver_accepts(&mut self, socket: &Arc<Socket>, out: &mut Out) {
        while let Some(mut op) = self.accepts.pop_front() {
            if !take(op.irp, &mut op.armed) {
                continue;
            }
            match self.accept_one(socket, &mut op, out) {
                Some(Decision::Done(status, information)) => {
                    out.complete(op.irp, status, information)
                }
                Some(Decision::Queued) => {}
                None => {
                    op.armed = true;
                    if let Arm::Cancelled = arm(op.irp) {
                        out.complete(op.irp, STATUS_CANCELLED, 0);
                        continue;
                    }
                    self.accepts.push_front(op);
                    return;
                }
            }
        }
    }

    fn accept_callbacks(&mut self, socket: &Arc<Socket>, out: &mut Out) {
        if !self.accepts.is_empty()
            || self.life != Life::Open
            || self.enabled() & WSK_EVENT_ACCEPT == 0
            || self.dispatch == 0
        {
            return;
        }
        // SAFETY: the client's listen dispatch stays valid while the socket
        // is open.
        let table = unsafe {
            core::ptr::read_unaligned(self.dispatch as *const WSK_CLIENT_LISTEN_DISPATCH)
        };
        let Some(routine) = table.WskAcceptEvent else {
            return;
        };
        for _ in 0..ACCEPTS_PER_ROUND {
            let Host::Listener(listener) = &self.host else {
                return;
            };
            match listener.accept() {
                Ok((stream, remote)) => {
                    let local = stream.local_addr().unwrap_or(remote);
                    match Socket::accepted(socket, stream, remote, 0, 0, false, out) {
                        Some(accepted) => {
                            self.callbacks_running += 1;
                            self.running_events |= WSK_EVENT_ACCEPT;
                            out.callbacks.push(Callback::Accept {
                                routine,
                                context: self.context,
                                socket: accepted,
                                local,
                                remote,
                            });
                        }
                        None => {
                            socket
                                .wsk()
                                .connections_refused
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Err(_) => return,
            }
        }
        out.kick = true;
    }

    // --- datagram sockets ---

    /// `WskSendTo`.
    pub(crate) fn send_to(
        &mut self,
        irp: usize,
        data: Vec<u8>,
        remote: SocketAddr,
        family: ADDRESS_FAMILY,
        out: &mut Out,
    ) -> Decision {
        let Host::Udp(udp) = &self.host else {
            return Decision::Done(STATUS_INVALID_DEVICE_STATE, 0);
        };
        if family_of(&remote) != family {
            return Decision::Done(STATUS_INVALID_PARAMETER, 0);
        }
        if self.send_tos.is_empty() {
            match udp.send_to(&data, remote) {
                Ok(n) => return Decision::Done(STATUS_SUCCESS, n),
                Err(error) if is_transient(&error) => {}
                Err(error) => return Decision::Done(status_from_io(&error), 0),
            }
        }
        if Self::queue_refused() {
            return Decision::Done(STATUS_INSUFFICIENT_RESOURCES, 0);
        }
        self.enqueue(
            irp,
            |st| {
                st.send_tos.push_back(SendToOp {
                    irp,
                    data,
                    remote,
                    armed: true,
                })
            },
            out,
        )
    }

    /// `WskReceiveFrom`.
    pub(crate) fn receive_from(
        &mut self,
        irp: usize,
        buf: BufRef,
        remote_out: usize,
        control_length_out: usize,
        control_flags_out: usize,
        out: &mut Out,
    ) -> Decision {
        if !matches!(self.host, Host::Udp(_)) {
            return Decision::Done(STATUS_INVALID_DEVICE_STATE, 0);
        }
        let mut op = RecvFromOp {
            irp,
            buf,
            remote_out,
            control_length_out,
            control_flags_out,
            armed: false,
        };
        if self.recv_froms.is_empty() {
            match self.next_datagram() {
                Ok(Some(datagram)) => {
                    return match deliver_datagram(&op, &datagram) {
                        Ok(n) => Decision::Done(STATUS_SUCCESS, n),
                        Err(status) => Decision::Done(status, 0),
                    };
                }
                Ok(None) => {}
                Err(status) => return Decision::Done(status, 0),
            }
        }
        if Self::queue_refused() {
            return Decision::Done(STATUS_INSUFFICIENT_RESOURCES, 0);
        }
        op.armed = true;
        self.enqueue(irp, |st| st.recv_froms.push_back(op), out)
    }

    /// The next datagram: one handed back by a callback, or from the host.
    fn next_datagram(&mut self) -> Result<Option<Datagram>, NTSTATUS> {
        if let Some(datagram) = self.datagrams.pop_front() {
            return Ok(Some(datagram));
        }
        let Host::Udp(udp) = &self.host else {
            return Ok(None);
        };
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            match udp.recv_from(&mut scratch[..]) {
                Ok((n, from)) => Ok(Some(Datagram {
                    data: scratch[..n].to_vec().into_boxed_slice(),
                    from,
                })),
                Err(error) if is_transient(&error) => Ok(None),
                Err(error) => Err(status_from_io(&error)),
            }
        })
    }

    fn deliver_datagrams(&mut self, out: &mut Out) {
        while !self.recv_froms.is_empty() {
            let datagram = match self.next_datagram() {
                Ok(Some(d)) => d,
                Ok(None) => return,
                Err(status) => {
                    if let Some(mut op) = self.recv_froms.pop_front()
                        && take(op.irp, &mut op.armed)
                    {
                        out.complete(op.irp, status, 0);
                    }
                    continue;
                }
            };
            let mut delivered = false;
            while let Some(mut op) = self.recv_froms.pop_front() {
                if !take(op.irp, &mut op.armed) {
                    continue;
                }
                match deliver_datagram(&op, &datagram) {
                    Ok(n) => out.complete(op.irp, STATUS_SUCCESS, n),
                    Err(status) => out.complete(op.irp, status, 0),
                }
                delivered = true;
                break;
            }
            if !delivered {
                self.datagrams.push_front(datagram);
                return;
            }
        }
    }

    fn flush_send_tos(&mut self, out: &mut Out) {
        let Host::Udp(udp) = &self.host else {
            return;
        };
        while let Some(mut op) = self.send_tos.pop_front() {
            match udp.send_to(&op.data, op.remote) {
                Err(error) if is_transient(&error) => {
                    self.send_tos.push_front(op);
                    return;
                }
                result => {
                    if take(op.irp, &mut op.armed) {
                        match result {
                            Ok(n) => out.complete(op.irp, STATUS_SUCCESS, n),
                            Err(error) => out.complete(op.irp, status_from_io(&error), 0),
                        }
                    }
                }
            }
        }
    }

    fn datagram_callbacks(&mut self, out: &mut Out) {
        if !self.recv_froms.is_empty()
            || self.life != Life::Open
            || self.callbacks_running > 0
            || self.enabled() & WSK_EVENT_RECEIVE_FROM == 0
            || self.dispatch == 0
        {
            return;
        }
        // SAFETY: the client's datagram dispatch stays valid while the
        // socket is open.
        let table = unsafe {
            core::ptr::read_unaligned(self.dispatch as *const WSK_CLIENT_DATAGRAM_DISPATCH)
        };
        let Some(routine) = table.WskReceiveFromEvent else {
            return;
        };
        if let Some(at) = self.retry_at
            && at > Instant::now()
        {
            out.timer(at);
            return;
        }
        let mut chain = Vec::new();
        while chain.len() < DATAGRAM_CHAIN {
            match self.next_datagram() {
                Ok(Some(d)) => chain.push(d),
                _ => break,
            }
        }
        if chain.is_empty() {
            return;
        }
        let kernel = current();
        if kernel.faults.mdl.should_fail() {
            kernel.pool.note_failure();
            for d in chain.into_iter().rev() {
                self.datagrams.push_front(d);
            }
            let at = Instant::now() + RETRY;
            self.retry_at = Some(at);
            out.timer(at);
            return;
        }
        self.retry_at = None;
        self.callbacks_running += 1;
        self.running_events |= WSK_EVENT_RECEIVE_FROM;
        out.callbacks.push(Callback::ReceiveFrom {
            routine,
            context: self.context,
            indication: Box::new(DatagramIndication::new(chain)),
            is_static: self.static_events & WSK_EVENT_RECEIVE_FROM != 0,
        });
    }

    // --- progress ---

    fn progress(&mut self, socket: &Arc<Socket>, ctx: Ctx, out: &mut Out) {
        if !matches!(self.life, Life::Open) {
            return;
        }
        match socket.kind {
            Kind::Connection => {
                if self.phase == Phase::Connecting {
                    self.check_connect(socket, out);
                }
                if self.phase == Phase::Connected {
                    let mut budget = self.budget(out);
                    let mut write_budget = budget;
                    self.flush_sends(&mut write_budget, out);
                    // Readiness is edge-triggered: read until the host says
                    // "would block" or nobody consumes what was read.
                    loop {
                        let read = self.fill_inbound(&mut budget);
                        self.deliver_receives(out);
                        if ctx == Ctx::Reactor {
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
                if ctx == Ctx::Reactor {
                    self.accept_callbacks(socket, out);
                }
            }
            Kind::Datagram => {
                self.deliver_datagrams(out);
                self.flush_send_tos(out);
                if ctx == Ctx::Reactor {
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

    /// Enables or disables event callbacks (`SO_WSK_EVENT_CALLBACK`).
    /// `irp` is the control IRP, if any (a disable that must wait for a
    /// running callback then queues it).
    pub(crate) fn event_control(
        &mut self,
        kind: Kind,
        mask: ULONG,
        irp: Option<usize>,
        out: &mut Out,
    ) -> Decision {
        let valid = kind.events();
        if mask & WSK_EVENT_DISABLE != 0 {
            let event = mask & !WSK_EVENT_DISABLE;
            if event == 0 || !event.is_power_of_two() || event & !valid != 0 {
                return Decision::Done(STATUS_INVALID_PARAMETER, 0);
            }
            if self.static_events & event != 0 {
                return Decision::Done(STATUS_INVALID_PARAMETER, 0);
            }
            self.events &= !event;
            if self.running_events & event == 0 {
                return Decision::Done(STATUS_SUCCESS, 0);
            }
            return match irp {
                Some(irp) => {
                    mark_pending(irp);
                    self.disables.push((irp, event));
                    Decision::Queued
                }
                None => Decision::Done(STATUS_EVENT_PENDING, 0),
            };
        }
        if mask == 0 || mask & !valid != 0 {
            return Decision::Done(STATUS_INVALID_PARAMETER, 0);
        }
        let ready = match kind {
            Kind::Connection => self.phase == Phase::Connected || self.error.is_some(),
            Kind::Listen | Kind::Datagram => self.phase == Phase::Bound,
        };
        if !ready {
            return Decision::Done(STATUS_INVALID_DEVICE_STATE, 0);
        }
        if self.dispatch == 0 || !dispatch_has(kind, self.dispatch, mask) {
            return Decision::Done(STATUS_INVALID_PARAMETER, 0);
        }
        if mask & self.running_events & WSK_EVENT_RECEIVE_FROM != 0 {
            self.rearmed_during_callback = true;
        }
        self.events |= mask;
        out.kick = true;
        Decision::Done(STATUS_SUCCESS, 0)
    }

    /// `WskSetOption` for the options the sim supports.
    pub(crate) fn set_option(&mut self, level: ULONG, code: ULONG, value: ULONG) -> NTSTATUS {
        let on = value != 0;
        let bound = !matches!(self.phase, Phase::Created);
        let applied = match (level, code) {
            (SOL_SOCKET, SO_REUSEADDR) => {
                self.options.reuse = Some(on);
                None
            }
            (SOL_SOCKET, SO_EXCLUSIVEADDRUSE) => {
                if on {
                    self.options.reuse = Some(false);
                }
                None
            }
            (SOL_SOCKET, SO_KEEPALIVE) => {
                self.options.keepalive = Some(on);
                Some(self.with_host(|s| s.set_keepalive(on)))
            }
            (SOL_SOCKET, SO_RCVBUF) => {
                self.options.rcvbuf = Some(value as usize);
                Some(self.with_host(|s| s.set_recv_buffer_size(value as usize)))
            }
            (SOL_SOCKET, SO_SNDBUF) => {
                self.options.sndbuf = Some(value as usize);
                Some(self.with_host(|s| s.set_send_buffer_size(value as usize)))
            }
            (IPPROTO_IPV6, IPV6_V6ONLY) => {
                if bound {
                    return STATUS_INVALID_DEVICE_STATE;
                }
                self.options.v6only = on;
                None
            }
            (IPPROTO_TCP, TCP_NODELAY) => {
                self.options.nodelay = Some(on);
                Some(self.with_host(|s| s.set_tcp_nodelay(on)))
            }
            _ => return STATUS_NOT_SUPPORTED,
        };
        match applied {
            Some(Some(Err(error))) => status_from_io(&error),
            _ => STATUS_SUCCESS,
        }
    }

    /// `WskGetOption` for the options the sim supports.
    pub(crate) fn get_option(&self, level: ULONG, code: ULONG) -> Result<ULONG, NTSTATUS> {
        let value = match (level, code) {
            (SOL_SOCKET, SO_REUSEADDR) => ULONG::from(self.options.reuse.unwrap_or(false)),
            (SOL_SOCKET, SO_EXCLUSIVEADDRUSE) => 0,
            (SOL_SOCKET, SO_KEEPALIVE) => ULONG::from(self.options.keepalive.unwrap_or(false)),
            (SOL_SOCKET, SO_RCVBUF) => match self.with_host_ref(|s| s.recv_buffer_size()) {
                Some(Ok(n)) => n as ULONG,
                _ => self.options.rcvbuf.unwrap_or(64 * 1024) as ULONG,
            },
            (SOL_SOCKET, SO_SNDBUF) => match self.with_host_ref(|s| s.send_buffer_size()) {
                Some(Ok(n)) => n as ULONG,
                _ => self.options.sndbuf.unwrap_or(64 * 1024) as ULONG,
            },
            (IPPROTO_IPV6, IPV6_V6ONLY) => ULONG::from(self.options.v6only),
            (IPPROTO_TCP, TCP_NODELAY) => ULONG::from(self.options.nodelay.unwrap_or(false)),
            _ => return Err(STATUS_NOT_SUPPORTED),
        };
        Ok(value)
    }

    fn with_host<R>(&self, f: impl FnOnce(SockRef<'_>) -> R) -> Option<R> {
        self.with_host_ref(f)
    }

    fn with_host_ref<R>(&self, f: impl FnOnce(SockRef<'_>) -> R) -> Option<R> {
        match &self.host {
            Host::None => None,
            Host::Bound(s) => Some(f(SockRef::from(s))),
            Host::Listener(s) => Some(f(SockRef::from(s))),
            Host::Stream(s) => Some(f(SockRef::from(s))),
            Host::Udp(s) => Some(f(SockRef::from(s))),
        }
    }
}

/// Whether the client's event table for `kind` has a routine for every
/// event of `mask`.
fn dispatch_has(kind: Kind, table: usize, mask: ULONG) -> bool {
    match kind {
        Kind::Listen => {
            // SAFETY: the client's listen dispatch (WSK contract).
            let t =
                unsafe { core::ptr::read_unaligned(table as *const WSK_CLIENT_LISTEN_DISPATCH) };
            mask & WSK_EVENT_ACCEPT == 0 || t.WskAcceptEvent.is_some()
        }
        Kind::Connection => {
            // SAFETY: the client's connection dispatch (WSK contract).
            let t = unsafe {
                core::ptr::read_unaligned(table as *const WSK_CLIENT_CONNECTION_DISPATCH)
            };
            (mask & WSK_EVENT_RECEIVE == 0 || t.WskReceiveEvent.is_some())
                && (mask & WSK_EVENT_DISCONNECT == 0 || t.WskDisconnectEvent.is_some())
                && (mask & WSK_EVENT_SEND_BACKLOG == 0 || t.WskSendBacklogEvent.is_some())
        }
        Kind::Datagram => {
            // SAFETY: the client's datagram dispatch (WSK contract).
            let t =
                unsafe { core::ptr::read_unaligned(table as *const WSK_CLIENT_DATAGRAM_DISPATCH) };
            mask & WSK_EVENT_RECEIVE_FROM == 0 || t.WskReceiveFromEvent.is_some()
        }
    }
}

/// Copies a datagram into a receive-from request (owned by the provider)
/// and fills its out-parameters; returns the bytes copied.
fn deliver_datagram(op: &RecvFromOp, datagram: &Datagram) -> Result<usize, NTSTATUS> {
    // SAFETY: the provider owns the request; its buffer is locked.
    let copied = unsafe { op.buf.write_at(0, &datagram.data) }?;
    if op.remote_out != 0 {
        // SAFETY: the client's out-parameter, valid until completion.
        unsafe { write_sockaddr(op.remote_out as PSOCKADDR, &datagram.from) };
    }
    if op.control_length_out != 0 {
        // SAFETY: as above.
        unsafe { (op.control_length_out as PULONG).write_unaligned(0) };
    }
    if op.control_flags_out != 0 {
        let flags = if copied < datagram.data.len() {
            MSG_TRUNC
        } else {
            0
        };
        // SAFETY: as above.
        unsafe { (op.control_flags_out as PULONG).write_unaligned(flags) };
    }
    Ok(copied)
}

/// `WskReceiveEx`: no control information is produced.
fn finish_receive_ex(op: &RecvOp) {
    if op.control_length != 0 {
        // SAFETY: the client's `ControlInfoLength`, valid until completion
        // (WskReceiveEx contract); the provider owns the request.
        unsafe { (op.control_length as PULONG).write_unaligned(0) };
    }
}

// === Accepted connections ===

impl Socket {
    /// A connection accepted on `listener`. `ready`: the client's context
    /// and dispatch are known (WskAccept) rather than still to come from
    /// the accept callback. `None` if the pool fault plan refused it (the
    /// connection is reset).
    fn accepted(
        listener: &Arc<Socket>,
        mut stream: TcpStream,
        remote: SocketAddr,
        context: usize,
        dispatch: usize,
        ready: bool,
        out: &mut Out,
    ) -> Option<Arc<Socket>> {
        let client = &listener.client;
        let Some(socket) =
            Socket::create(client, Kind::Connection, listener.family, context, dispatch)
        else {
            let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            drop(stream);
            return None;
        };
        let registered = client.reactor.registry().register(
            &mut stream,
            mio::Token(socket.address()),
            Interest::READABLE | Interest::WRITABLE,
        );
        {
            let mut st = socket.lock();
            st.local = stream.local_addr().ok();
            st.remote = Some(remote);
            st.callbacks_ready = ready;
            match registered {
                Ok(()) => {
                    st.host = Host::Stream(stream);
                    st.phase = Phase::Connected;
                }
                Err(error) => {
                    st.phase = Phase::Failed;
                    st.error = Some(status_from_io(&error));
                }
            }
            if let Some(fault) = listener.wsk().connection_fault() {
                st.apply_fault(fault, &client.reactor, out);
            }
        }
        Some(socket)
    }
}
