//! Event callbacks: raising them (what is due, per socket kind), running
//! them on the provider thread, and what their return means; enabling and
//! disabling them (`SO_WSK_EVENT_CALLBACK`).

use super::*;

/// What a `WskRelease` found.
pub(crate) enum Released {
    /// The chain was retained and is released now.
    Yes,
    /// No such retained chain (never handed out, or released already).
    Unknown,
}

impl Socket {
    // === Event callbacks (provider thread only) ===

    pub(super) fn run_callback(self: &Arc<Self>, callback: Callback) {
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
            Callback::SendBacklog {
                routine,
                context,
                size,
            } => {
                // SAFETY: the client's WskSendBacklogEvent.
                let _ = unsafe { routine(context as PVOID, size as SIZE_T) };
                self.after_callback(WSK_EVENT_SEND_BACKLOG, |_, _| {});
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
    pub(super) fn after_callback(
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
    pub(super) fn indicating(&self, head: usize) {
        let mut st = self.lock();
        st.indicating = Some(head);
        st.released_early = false;
    }

    /// `WskRelease`: gives a retained indication chain back.
    pub(crate) fn release(self: &Arc<Self>, head: usize) -> Released {
        let released = self.with(|st, out| {
            let released = st.retained.remove(&head);
            if let Some(r) = &released {
                st.retained_bytes = st.retained_bytes.saturating_sub(r.bytes());
                out.kick = true;
            } else if st.indicating == Some(head) && !st.released_early {
                // Released right after its callback returned STATUS_PENDING,
                // before the retention was recorded: after_callback frees it.
                st.released_early = true;
                return Err(Released::Yes);
            }
            Ok(released)
        });
        let released = match released {
            Ok(released) => released,
            Err(verdict) => return verdict,
        };
        match released {
            Some(r) => {
                self.wsk()
                    .indications_retained
                    .fetch_sub(1, Ordering::Relaxed);
                drop(r);
                Released::Yes
            }
            None => Released::Unknown,
        }
    }

    /// The state, for the dispatch functions.
    pub(crate) fn state(&self) -> MutexGuard<'_, SockState> {
        self.lock()
    }
}

impl SockState {
    pub(super) fn stream_callbacks(&mut self, out: &mut Out) {
        if !self.callbacks_ready || self.life != Life::Open || self.callbacks_running > 0 {
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
            self.callbacks_running += 1;
            self.running_events |= WSK_EVENT_SEND_BACKLOG;
            out.callbacks.push(Callback::SendBacklog {
                routine,
                context: self.context,
                size,
            });
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
    pub(super) fn callback_due(&self) -> bool {
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

    pub(super) fn datagram_callbacks(&mut self, out: &mut Out) {
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
        if mask & WSK_EVENT_SEND_BACKLOG != 0 {
            self.backlog_reported = self.ideal_send_backlog();
        }
        self.events |= mask;
        out.kick = true;
        Decision::Done(STATUS_SUCCESS, 0)
    }
}

/// Whether the client's event table for `kind` has a routine for every
/// event of `mask`.
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
