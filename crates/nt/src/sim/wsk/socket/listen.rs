//! Listening sockets: bind (shared with the others), `WskAccept`, and
//! the sockets accepted connections become.

use super::*;

impl SockState {
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
    pub(super) fn accept_one(
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
                let Some(accepted) = Socket::accepted(
                    socket,
                    stream,
                    remote,
                    op.context,
                    op.dispatch,
                    true,
                    self.options.inherited(),
                    out,
                ) else {
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

    pub(super) fn deliver_accepts(&mut self, socket: &Arc<Socket>, out: &mut Out) {
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
}

// === Accepted connections ===

impl Socket {
    /// A connection accepted on `listener`. `ready`: the client's context
    /// and dispatch are known (WskAccept) rather than still to come from
    /// the accept callback. `None` if the pool fault plan refused it (the
    /// connection is reset).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn accepted(
        listener: &Arc<Socket>,
        mut stream: TcpStream,
        remote: SocketAddr,
        context: usize,
        dispatch: usize,
        ready: bool,
        options: Options,
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
            st.options = options;
            st.callbacks_ready = ready;
            match registered {
                Ok(()) => {
                    st.ack_reports =
                        st.wants_ack_reports() && host::report_acknowledgements(&stream);
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
