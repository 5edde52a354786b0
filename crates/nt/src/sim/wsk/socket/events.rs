//! Event callbacks: what is due (per socket kind), calling the client
//! (through a callout, at the IRQL the session's policy picks), what a
//! callback's return means, who owns an indication when, and enabling and
//! disabling callbacks (`SO_WSK_EVENT_CALLBACK`).
//!
//! # Ownership at return
//!
//! An indication (or a refusal) becomes the client's when its callback
//! *returns*. A `WskRelease` of the chain, a re-arming receive or a
//! re-enable made on the callback's own thread while it runs is made
//! inside it, before the ownership passed: a verifier finding
//! (`violation::OWNERSHIP_IN_CALLBACK`). The same act from another thread
//! while the callback is finishing is the ordinary race of a client whose
//! callback only queued and woke a consumer: it counts as made after the
//! return (the sim cannot tell the last instructions of a callback from
//! the time after it, and a client cannot either).
//!
//! # Who calls, where
//!
//! Callbacks run on the provider threads (in DPC context at
//! DISPATCH_LEVEL, or at PASSIVE_LEVEL, per the session's `CallbackIrql`), with
//! `WSK_FLAG_AT_DISPATCH_LEVEL` exactly when at DISPATCH_LEVEL; or, under
//! `WskPolicy::inline_indications`, on the client's own thread from inside
//! its `WskReceive(0)`, enable or `WskRelease`, at the client's IRQL.
//! Callbacks of one connection or listening socket run one at a time;
//! those of one datagram socket may overlap when the provider has several
//! threads (the documentation promises nothing else).

use std::thread::ThreadId;

use super::super::super::callout::{CalloutKind, callout_for};
use super::super::super::irql;
use super::super::super::verifier::DRIVER_VERIFIER_DETECTED_VIOLATION;
use super::super::violation;
use super::*;

/// What a `WskRelease` found.
pub(crate) enum Released {
    /// The chain was retained (or is being retained) and is released now.
    Yes,
    /// The chain belongs to a callback that runs on the caller's own
    /// thread: released inside the callback that owns it.
    InsideCallback,
    /// No such chain (never handed out, or released already).
    Unknown,
}

/// A callback of the socket that runs now.
pub(crate) struct RunningCb {
    id: u64,
    event: ULONG,
    thread: ThreadId,
    /// The chain it was handed (0: none).
    head: usize,
    /// The client released that chain while the callback ran.
    released: bool,
    /// Indications were re-armed (a receive completed, or the callback was
    /// re-enabled) from another thread while it ran: after its refusal.
    rearmed: bool,
    /// ... from the callback's own thread: inside it, before its refusal.
    rearmed_inside: bool,
}

/// A callback to raise (outside the socket lock).
pub(crate) struct Callback {
    id: u64,
    raise: Raise,
}

type ReceiveRoutine =
    unsafe extern "C" fn(PVOID, ULONG, PWSK_DATA_INDICATION, SIZE_T, *mut SIZE_T) -> NTSTATUS;

type AcceptRoutine = unsafe extern "C" fn(
    PVOID,
    ULONG,
    PSOCKADDR,
    PSOCKADDR,
    PWSK_SOCKET,
    *mut PVOID,
    *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS;

enum Raise {
    Receive {
        routine: ReceiveRoutine,
        context: usize,
        flags: ULONG,
        indication: Box<DataIndication>,
    },
    ReceiveDead {
        routine: ReceiveRoutine,
        context: usize,
    },
    Disconnect {
        routine: unsafe extern "C" fn(PVOID, ULONG) -> NTSTATUS,
        context: usize,
        flags: ULONG,
    },
    SendBacklog {
        routine: unsafe extern "C" fn(PVOID, SIZE_T) -> NTSTATUS,
        context: usize,
        size: usize,
    },
    Accept {
        routine: AcceptRoutine,
        context: usize,
        socket: Arc<Socket>,
        local: SocketAddr,
        remote: SocketAddr,
        /// The listener's connection events the socket inherits.
        inherit: ULONG,
    },
    ReceiveFrom {
        routine: unsafe extern "C" fn(PVOID, ULONG, PWSK_DATAGRAM_INDICATION) -> NTSTATUS,
        context: usize,
        indication: Box<DatagramIndication>,
        is_static: bool,
    },
}

/// The connection events a listening socket may enable for the sockets its
/// `WskAcceptEvent` accepts (SO_WSK_EVENT_CALLBACK: "A listening socket can
/// automatically enable event callback functions on connection-oriented
/// sockets that are accepted by the listening socket").
const INHERITED: ULONG = WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG;

impl Socket {
    /// Calls client routine `routine` the way this context calls
    /// callbacks: on a provider thread at the policy's IRQL, inline at the
    /// caller's; as a callout of the client's driver. `call` gets the
    /// `WSK_FLAG_AT_DISPATCH_LEVEL` flag or 0.
    fn invoke<R>(&self, routine: usize, ctx: Ctx, call: impl FnOnce(ULONG) -> R) -> R {
        let kernel = current();
        let previous = match ctx {
            Ctx::Inline | Ctx::Caller => None,
            Ctx::Reactor => Some(irql::set(self.client.callback_irql())),
        };
        let flag = if irql::current() >= DISPATCH_LEVEL {
            WSK_FLAG_AT_DISPATCH_LEVEL
        } else {
            0
        };
        let result = callout_for(
            &kernel,
            CalloutKind::WskCallback,
            routine,
            self.client.owner,
            || call(flag),
        );
        if let Some(previous) = previous {
            irql::set(previous);
        }
        result
    }

    /// Runs a callback and its aftermath, then counts it as returned
    /// (`WskStats::callbacks_returned`: everything the provider does when a
    /// callback returns, an accepted socket's context and dispatch
    /// recorded, a refused one closed, is done by then).
    pub(super) fn run_callback(self: &Arc<Self>, callback: Callback, ctx: Ctx) {
        self.run_callback_inner(callback, ctx);
        self.wsk()
            .callbacks_returned
            .fetch_add(1, Ordering::Relaxed);
    }

    fn run_callback_inner(self: &Arc<Self>, callback: Callback, ctx: Ctx) {
        let Callback { id, raise } = callback;
        match raise {
            Raise::Receive {
                routine,
                context,
                flags,
                indication,
            } => {
                let bytes = indication.len();
                let mut accepted: SIZE_T = bytes as SIZE_T;
                self.wsk().indications.fetch_add(1, Ordering::Relaxed);
                let asap = flags & WSK_FLAG_RELEASE_ASAP != 0;
                if asap {
                    self.wsk().release_asap.fetch_add(1, Ordering::Relaxed);
                }
                let status = self.invoke(routine as usize, ctx, |flag| {
                    // SAFETY: the client's WskReceiveEvent with a
                    // provider-owned chain that stays valid until released
                    // or returned.
                    unsafe {
                        routine(
                            context as PVOID,
                            flags | flag,
                            indication.head(),
                            bytes as SIZE_T,
                            &mut accepted,
                        )
                    }
                });
                let refused = status != STATUS_PENDING
                    && (status != STATUS_SUCCESS || (accepted as usize) < bytes);
                self.after_callback(id, refused, status, |st, wsk, cb| match status {
                    STATUS_SUCCESS if accepted as usize >= bytes => {}
                    STATUS_SUCCESS => {
                        st.unread(indication.bytes_from(accepted as usize));
                        st.suppress_after(cb);
                    }
                    STATUS_PENDING if cb.released => {}
                    STATUS_PENDING => {
                        wsk.indications_retained.fetch_add(1, Ordering::Relaxed);
                        if asap {
                            wsk.release_asap_retained.fetch_add(1, Ordering::Relaxed);
                        }
                        st.retained_bytes += bytes;
                        st.retained
                            .insert(indication.head() as usize, Retained::Data(indication));
                    }
                    _ => {
                        st.unread(indication.bytes_from(0));
                        st.suppress_after(cb);
                    }
                });
            }
            Raise::ReceiveDead { routine, context } => {
                let mut accepted: SIZE_T = 0;
                let _ = self.invoke(routine as usize, ctx, |flag| {
                    // SAFETY: the client's WskReceiveEvent; a NULL
                    // indication says the socket is dead.
                    unsafe {
                        routine(
                            context as PVOID,
                            flag,
                            core::ptr::null_mut(),
                            0,
                            &mut accepted,
                        )
                    }
                });
                self.after_callback(id, false, STATUS_SUCCESS, |_, _, _| {});
            }
            Raise::SendBacklog {
                routine,
                context,
                size,
            } => {
                let _ = self.invoke(routine as usize, ctx, |_| {
                    // SAFETY: the client's WskSendBacklogEvent.
                    unsafe { routine(context as PVOID, size as SIZE_T) }
                });
                self.after_callback(id, false, STATUS_SUCCESS, |_, _, _| {});
            }
            Raise::Disconnect {
                routine,
                context,
                flags,
            } => {
                let _ = self.invoke(routine as usize, ctx, |flag| {
                    // SAFETY: the client's WskDisconnectEvent.
                    unsafe { routine(context as PVOID, flags | flag) }
                });
                self.after_callback(id, false, STATUS_SUCCESS, |_, _, _| {});
            }
            Raise::Accept {
                routine,
                context,
                socket,
                local,
                remote,
                inherit,
            } => {
                let mut local = sockaddr_from(&local);
                let mut remote = sockaddr_from(&remote);
                let mut accept_context: PVOID = core::ptr::null_mut();
                let mut accept_dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH = core::ptr::null();
                let status = self.invoke(routine as usize, ctx, |flag| {
                    // SAFETY: the client's WskAcceptEvent; the addresses are
                    // valid for the call, the new socket is live.
                    unsafe {
                        routine(
                            context as PVOID,
                            flag,
                            (&raw mut local).cast(),
                            (&raw mut remote).cast(),
                            socket.address() as PWSK_SOCKET,
                            &mut accept_context,
                            &mut accept_dispatch,
                        )
                    }
                });
                self.after_callback(id, false, status, |_, _, _| {});
                if status == STATUS_SUCCESS {
                    {
                        let mut st = socket.lock();
                        st.context = accept_context as usize;
                        st.dispatch = accept_dispatch as usize;
                        // Inherited only if the client's table has the
                        // routines.
                        if st.dispatch != 0 {
                            for event in [
                                WSK_EVENT_RECEIVE,
                                WSK_EVENT_DISCONNECT,
                                WSK_EVENT_SEND_BACKLOG,
                            ] {
                                if inherit & event != 0
                                    && dispatch_has(Kind::Connection, st.dispatch, event)
                                {
                                    st.events |= event;
                                }
                            }
                            if inherit & WSK_EVENT_SEND_BACKLOG != 0 {
                                st.backlog_reported = st.ideal_send_backlog();
                            }
                        }
                        st.callbacks_ready = true;
                    }
                    socket.pump_reactor();
                } else {
                    // Counted once the refused socket is closed (the
                    // session's open sockets no longer include it).
                    socket.close_internal();
                    self.wsk()
                        .connections_refused
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Raise::ReceiveFrom {
                routine,
                context,
                indication,
                is_static,
            } => {
                self.wsk().indications.fetch_add(1, Ordering::Relaxed);
                let status = self.invoke(routine as usize, ctx, |flag| {
                    // SAFETY: the client's WskReceiveFromEvent with a
                    // provider-owned chain.
                    unsafe { routine(context as PVOID, flag, indication.head()) }
                });
                let refused = status != STATUS_SUCCESS && status != STATUS_PENDING;
                self.after_callback(id, refused, status, |st, wsk, cb| match status {
                    STATUS_SUCCESS => {}
                    STATUS_PENDING if cb.released => {}
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
                        // A refusal disables a per-socket callback, unless
                        // the client re-enabled it after the refusal.
                        if !cb.rearmed {
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

    /// Bookkeeping after callback `id` returned `status` (`refused`: it
    /// refused data): its effect on the state, the ownership findings,
    /// waiting disables, and a close that waited for it.
    fn after_callback(
        self: &Arc<Self>,
        id: u64,
        refused: bool,
        status: NTSTATUS,
        effect: impl FnOnce(&mut SockState, &WskState, &RunningCb),
    ) {
        let mut completions = Vec::new();
        let mut findings = Vec::new();
        let kick;
        let finish = {
            let mut st = self.lock();
            let Some(index) = st.running.iter().position(|c| c.id == id) else {
                return;
            };
            let cb = st.running.remove(index);
            if cb.released && status != STATUS_PENDING {
                findings.push((
                    violation::BAD_RELEASE,
                    cb.head,
                    format!(
                        "WskRelease of chain {:#x} on socket {:#x} while its callback ran, and \
                         the callback then returned {status:#x}, not STATUS_PENDING: the client \
                         released a chain it never owned",
                        cb.head,
                        self.address()
                    ),
                ));
            }
            if refused && cb.rearmed_inside {
                findings.push((
                    violation::OWNERSHIP_IN_CALLBACK,
                    0,
                    format!(
                        "a re-arm (zero-length WskReceive or re-enable) of socket {:#x} made \
                         inside the event callback that then refused its data: the refusal \
                         takes effect when the callback returns, so that re-arm came before it \
                         and re-arms nothing",
                        self.address()
                    ),
                ));
            }
            if st.life != Life::Finished {
                effect(&mut st, self.wsk(), &cb);
            }
            // Receives that waited for this callback (see
            // `SockState::receive`).
            kick = cb.event == WSK_EVENT_RECEIVE && !st.receives.is_empty();
            let running = st.running_events();
            st.disables.retain(|&(irp, e)| {
                if running & e != 0 {
                    return true;
                }
                completions.push(irp);
                false
            });
            st.take_finish()
        };
        for (code, head, description) in findings {
            current().bugcheck(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [code, self.address() as u64, head as u64, 0],
                description,
            );
        }
        for irp in completions {
            complete_irp(&self.client, Some(self), irp, STATUS_SUCCESS, 0);
        }
        if kick {
            self.client.reactor.post(Job::Kick(Arc::clone(self)));
        }
        if let Some(close_irp) = finish {
            self.finish(close_irp);
        }
    }

    /// `WskRelease`: gives a retained indication chain back.
    pub(crate) fn release(self: &Arc<Self>, head: usize) -> Released {
        let released = self.with_inline(|st, out| {
            if let Some(r) = st.retained.remove(&head) {
                st.retained_bytes = st.retained_bytes.saturating_sub(r.bytes());
                out.kick = true;
                return Ok(r);
            }
            let here = std::thread::current().id();
            match st
                .running
                .iter_mut()
                .find(|c| c.head == head && head != 0 && !c.released)
            {
                Some(cb) => {
                    // Released while its callback runs: not retained when it
                    // returns STATUS_PENDING.
                    cb.released = true;
                    Err(if cb.thread == here {
                        Released::InsideCallback
                    } else {
                        Released::Yes
                    })
                }
                None => Err(Released::Unknown),
            }
        });
        match released {
            Ok(r) => {
                self.wsk()
                    .indications_retained
                    .fetch_sub(1, Ordering::Relaxed);
                drop(r);
                Released::Yes
            }
            Err(verdict) => verdict,
        }
    }

    /// As [`Socket::with`], for the calls after which the provider may
    /// deliver indications on the caller's thread before returning
    /// (`WskPolicy::inline_indications`: the client's `WskReceive(0)`,
    /// enable or `WskRelease`).
    pub(crate) fn with_inline<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut SockState, &mut Out) -> R,
    ) -> R {
        let ctx = if self.client.policy.inline_indications {
            Ctx::Inline
        } else {
            Ctx::Caller
        };
        self.with_ctx(ctx, f)
    }

    /// The state, for the dispatch functions.
    pub(crate) fn state(&self) -> MutexGuard<'_, SockState> {
        self.lock()
    }
}

impl SockState {
    /// Records a callback about to be raised by this thread; returns its id.
    fn begin_callback(&mut self, event: ULONG, head: usize) -> u64 {
        self.next_callback += 1;
        let id = self.next_callback;
        self.running.push(RunningCb {
            id,
            event,
            thread: std::thread::current().id(),
            head,
            released: false,
            rearmed: false,
            rearmed_inside: false,
        });
        id
    }

    /// Whether a receive callback with data runs now.
    pub(super) fn indicating_data(&self) -> bool {
        self.running
            .iter()
            .any(|c| c.event == WSK_EVENT_RECEIVE && c.head != 0)
    }

    /// The events whose callbacks run now.
    pub(super) fn running_events(&self) -> ULONG {
        self.running.iter().fold(0, |mask, c| mask | c.event)
    }

    /// Indications of `event` were re-armed (a receive completed, or the
    /// callback was re-enabled): noted on its running callbacks, as made
    /// inside one (same thread) or after it (another thread).
    pub(super) fn note_rearm(&mut self, event: ULONG) {
        let here = std::thread::current().id();
        for cb in self.running.iter_mut().filter(|c| c.event == event) {
            if cb.thread == here {
                cb.rearmed_inside = true;
            } else {
                cb.rearmed = true;
            }
        }
    }

    /// The receive callback `cb` refused (part of) its data: no indication
    /// until a receive completes, unless one already completed after the
    /// refusal (from another thread).
    fn suppress_after(&mut self, cb: &RunningCb) {
        if !cb.rearmed {
            self.suppressed = true;
        }
    }

    pub(super) fn stream_callbacks(&mut self, out: &mut Out) {
        if !self.callbacks_ready || self.life != Life::Open || !self.running.is_empty() {
            return;
        }
        let enabled = self.enabled();
        let table = self.dispatch as *const WSK_CLIENT_CONNECTION_DISPATCH;
        let (receive, disconnect, backlog) = if table.is_null() {
            (None, None, None)
        } else {
            // SAFETY: the client's connection dispatch stays valid while the
            // socket is open (WSK contract).
            let table = unsafe { core::ptr::read_unaligned(table) };
            (
                table.WskReceiveEvent,
                table.WskDisconnectEvent,
                table.WskSendBacklogEvent,
            )
        };
        let receive = receive.filter(|_| enabled & WSK_EVENT_RECEIVE != 0);
        let disconnect = disconnect.filter(|_| enabled & WSK_EVENT_DISCONNECT != 0);
        if let Some(routine) = backlog.filter(|_| enabled & WSK_EVENT_SEND_BACKLOG != 0)
            && let Some(size) = self.ideal_send_backlog()
            && self.backlog_reported != Some(size)
        {
            // "called ... when the ideal send backlog size changes".
            self.backlog_reported = Some(size);
            let id = self.begin_callback(WSK_EVENT_SEND_BACKLOG, 0);
            out.callbacks.push(Callback {
                id,
                raise: Raise::SendBacklog {
                    routine,
                    context: self.context,
                    size,
                },
            });
            return;
        }
        // Under the early-disconnect policy the peer's disconnect is
        // indicated as soon as it is known, before data still buffered
        // (which is indicated after it).
        let early = self.policy.early_disconnect;
        if early && self.disconnect_callback(receive, disconnect, out) {
            return;
        }
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
            let mut flags = 0;
            if self.retained_bytes >= INBOUND_CAP / 2 {
                flags |= WSK_FLAG_RELEASE_ASAP;
            }
            let indication = Box::new(DataIndication::new(bytes, INDICATION_CHUNK));
            let id = self.begin_callback(WSK_EVENT_RECEIVE, indication.head() as usize);
            out.callbacks.push(Callback {
                id,
                raise: Raise::Receive {
                    routine,
                    context: self.context,
                    flags,
                    indication,
                },
            });
            return;
        }
        if !early && self.inbound.is_empty() {
            self.disconnect_callback(receive, disconnect, out);
        }
    }

    /// Raises the peer's disconnect if it is due and not yet indicated:
    /// `WskDisconnectEvent` (abortive for a reset), or for a reset without
    /// one a NULL `WskReceiveEvent`. Returns whether it raised one.
    fn disconnect_callback(
        &mut self,
        receive: Option<ReceiveRoutine>,
        disconnect: Option<unsafe extern "C" fn(PVOID, ULONG) -> NTSTATUS>,
        out: &mut Out,
    ) -> bool {
        if self.disconnect_indicated {
            return false;
        }
        let raise = if self.error.is_some() && self.peer_error {
            match (disconnect, receive) {
                (Some(routine), _) => Some((
                    WSK_EVENT_DISCONNECT,
                    Raise::Disconnect {
                        routine,
                        context: self.context,
                        flags: WSK_FLAG_ABORTIVE,
                    },
                )),
                (None, Some(routine)) => Some((
                    WSK_EVENT_RECEIVE,
                    Raise::ReceiveDead {
                        routine,
                        context: self.context,
                    },
                )),
                (None, None) => None,
            }
        } else if self.eof && self.error.is_none() {
            disconnect.map(|routine| {
                (
                    WSK_EVENT_DISCONNECT,
                    Raise::Disconnect {
                        routine,
                        context: self.context,
                        flags: 0,
                    },
                )
            })
        } else {
            None
        };
        let Some((event, raise)) = raise else {
            return false;
        };
        self.disconnect_indicated = true;
        let id = self.begin_callback(event, 0);
        out.callbacks.push(Callback { id, raise });
        true
    }

    /// Whether the provider thread has event callbacks to raise.
    pub(super) fn callback_due(&self) -> bool {
        if !self.callbacks_ready || self.life != Life::Open || self.dispatch == 0 {
            return false;
        }
        let enabled = self.enabled();
        match (enabled != 0, &self.host) {
            (false, _) => false,
            (true, Host::Listener(_)) => self.accepts.is_empty() && enabled & WSK_EVENT_ACCEPT != 0,
            // Datagrams to indicate: handed back by a refused callback, or
            // in the host as far as the provider knows (a read that said
            // "would block" and no readiness since: none).
            (true, Host::Udp(_)) => {
                self.recv_froms.is_empty()
                    && enabled & WSK_EVENT_RECEIVE_FROM != 0
                    && (!self.datagrams.is_empty() || self.host_readable)
            }
            (true, _) => {
                (!self.inbound.is_empty() && self.receives.is_empty() && !self.suppressed)
                    || (!self.disconnect_indicated && (self.eof || self.error.is_some()))
            }
        }
    }

    pub(super) fn accept_callbacks(&mut self, socket: &Arc<Socket>, out: &mut Out) {
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
        let inherit = self.enabled() & INHERITED;
        for _ in 0..ACCEPTS_PER_ROUND {
            let Host::Listener(listener) = &self.host else {
                return;
            };
            match listener.accept() {
                Ok((stream, remote)) => {
                    let local = stream.local_addr().unwrap_or(remote);
                    let options = self.options.inherited();
                    match Socket::accepted(socket, stream, remote, 0, 0, false, options, out) {
                        Some(accepted) => {
                            let id = self.begin_callback(WSK_EVENT_ACCEPT, 0);
                            out.callbacks.push(Callback {
                                id,
                                raise: Raise::Accept {
                                    routine,
                                    context: self.context,
                                    socket: accepted,
                                    local,
                                    remote,
                                    inherit,
                                },
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

    pub(super) fn datagram_callbacks(&mut self, out: &mut Out) {
        // With several provider threads, as many receive-from callbacks of
        // one socket may run at once.
        let concurrent = usize::from(self.policy.provider_threads.max(1));
        if !self.recv_froms.is_empty()
            || self.life != Life::Open
            || self.running.len() >= concurrent
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
        let mut chain = Vec::with_capacity(DATAGRAM_CHAIN);
        // An error reading the host ends the chain (as a datagram socket's
        // errors do for indications: nobody is there to be told).
        let _ = self.next_datagrams(DATAGRAM_CHAIN, &mut chain);
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
        let indication = Box::new(DatagramIndication::new(chain));
        let id = self.begin_callback(WSK_EVENT_RECEIVE_FROM, indication.head() as usize);
        out.callbacks.push(Callback {
            id,
            raise: Raise::ReceiveFrom {
                routine,
                context: self.context,
                indication,
                is_static: self.static_events & WSK_EVENT_RECEIVE_FROM != 0,
            },
        });
        if self.running.len() < concurrent {
            // Another provider thread may take the next chain meanwhile.
            out.kick = true;
        }
    }

    /// Enables or disables event callbacks (`SO_WSK_EVENT_CALLBACK`).
    /// `irp` is the control IRP, if any (a disable that must wait for a
    /// running callback then queues it; enabling takes none).
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
            // Static callbacks "are always enabled and cannot be disabled";
            // connection events enabled on a listener "cannot be disabled on
            // the listening socket".
            if self.static_events & event != 0 || (kind == Kind::Listen && event & INHERITED != 0) {
                return Decision::Done(STATUS_INVALID_PARAMETER, 0);
            }
            self.events &= !event;
            if self.running_events() & event == 0 {
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
        if irp.is_some() {
            // "A WSK application does not specify a pointer to an IRP when
            // calling the WskControlSocket function to enable event callback
            // functions."
            return Decision::Done(STATUS_INVALID_PARAMETER, 0);
        }
        if self.static_events & mask != 0 {
            // Static callbacks "cannot be disabled or re-enabled later".
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
        if mask & WSK_EVENT_RECEIVE_FROM != 0 {
            self.note_rearm(WSK_EVENT_RECEIVE_FROM);
        }
        if mask & WSK_EVENT_SEND_BACKLOG != 0 {
            self.backlog_reported = self.ideal_send_backlog();
        }
        self.events |= mask;
        out.kick = true;
        Decision::Done(STATUS_SUCCESS, 0)
    }
}

/// Whether the client's event table for `kind` has a routine for every
/// event of `mask` (for a listening socket, the connection events it
/// enables for its accepted sockets are checked on their tables, when the
/// accept callback hands them over).
pub(super) fn dispatch_has(kind: Kind, table: usize, mask: ULONG) -> bool {
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
