//! Connection sockets: bind, connect, send, receive, disconnect, the
//! byte pump between the host stream and the client's requests.

use super::*;

impl SockState {
    // --- bind / connect ---

    /// `WskBind`.
    pub(crate) fn bind(&mut self, socket: &Arc<Socket>, local: SocketAddr) -> Decision {
        if self.phase != Phase::Created {
            return Decision::Done(STATUS_INVALID_DEVICE_STATE, 0);
        }
        if family_of(&local) != socket.family {
            return Decision::Done(STATUS_INVALID_PARAMETER, 0);
        }
        let stream = socket.kind != Kind::Datagram;
        if let Err(status) = socket
            .wsk()
            .bind_allowed(stream, local, self.options.sharing)
        {
            return Decision::Done(status, 0);
        }
        let registry = socket.client.reactor.registry();
        let token = mio::Token(socket.address());
        let options = self.options;
        let result = (|| -> std::io::Result<(Host, SocketAddr)> {
            match socket.kind {
                Kind::Listen => {
                    let host = host_socket(socket.family, Type::STREAM, &options, true)?;
                    host.bind(&local.into())?;
                    host.listen(1024)?;
                    let mut listener = TcpListener::from_std(host.into());
                    registry.register(&mut listener, token, Interest::READABLE)?;
                    let local = listener.local_addr()?;
                    Ok((Host::Listener(listener), local))
                }
                Kind::Connection => {
                    let host = host_socket(socket.family, Type::STREAM, &options, false)?;
                    host.bind(&local.into())?;
                    let local = host
                        .local_addr()?
                        .as_socket()
                        .ok_or(std::io::ErrorKind::InvalidInput)?;
                    Ok((Host::Bound(host), local))
                }
                Kind::Datagram => {
                    let host = host_socket(socket.family, Type::DGRAM, &options, false)?;
                    host.bind(&local.into())?;
                    let mut udp = UdpSocket::from_std(host.into());
                    if options.packet_info {
                        host::enable_packet_info(&udp, socket.family == AF_INET6);
                    }
                    host::own_memberships_only(&udp, socket.family == AF_INET6);
                    options::apply_multicast(&udp, &options)?;
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
                socket
                    .wsk()
                    .record_binding(socket.address(), stream, local, options.sharing);
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
        self.ack_reports = self.wants_ack_reports() && host::report_acknowledgements(&stream);
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

    pub(super) fn check_connect(&mut self, socket: &Arc<Socket>, out: &mut Out) {
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
                            nodelay: false,
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
    pub(super) fn connection_refusal(&self) -> Option<NTSTATUS> {
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
        if self.receives.is_empty() && !drain && buf.length == 0 {
            // Re-arms the receive event; completes at once.
            self.unsuppress();
            out.kick = true;
            finish_receive_ex(&op);
            return Decision::Done(self.error.unwrap_or(STATUS_SUCCESS), 0);
        }
        // Bytes a receive callback is being offered precede what is still
        // buffered (and come back to it if the callback refuses them): a
        // receive waits for that callback, and only then sees the data, or
        // the end.
        if self.receives.is_empty() && !drain && !self.indicating_data() {
            let mut budget = self.budget(out);
            if self.inbound.is_empty() && op.buf.length > 0 {
                // Nothing buffered: the host's bytes go straight into the
                // request's buffer (what `fill_inbound` and `copy_inbound`
                // would do, without the provider's copy in between).
                match self.read_into(&mut op, &mut budget) {
                    Err(status) => return Decision::Done(status, 0),
                    Ok(n) if n > 0 && (!op.waitall || op.filled == op.buf.length) => {
                        self.unsuppress();
                        out.kick = true;
                        finish_receive_ex(&op);
                        return Decision::Done(STATUS_SUCCESS, op.filled);
                    }
                    Ok(_) => {}
                }
            }
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

    /// `WskSend` / `WskSendEx` (`nodelay`: with `WSK_FLAG_NODELAY`), and
    /// the data of a graceful `WskDisconnect`.
    pub(crate) fn send(
        &mut self,
        irp: usize,
        buf: BufRef,
        kind: SendKind,
        nodelay: bool,
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
            nodelay,
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
                    if let Some((status, information)) = self.written_out(&op, out) {
                        return Decision::Done(status, information);
                    }
                    // Waits for the acknowledgement: no longer cancellable.
                    mark_pending(irp);
                    return Decision::Queued;
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

    /// Whether the connection is already disconnected in both directions:
    /// our graceful disconnect is done and the peer's FIN has arrived
    /// (`WskCloseSocket` is graceful only then, abortive otherwise: "always
    /// performs an abortive disconnect of the socket unless the socket is
    /// already fully disconnected in both directions", PFN_WSK_CLOSE_SOCKET).
    /// Reads and discards what the host still holds, to find the peer's
    /// FIN behind unread data (unread data is discarded at close either
    /// way).
    pub(super) fn fully_disconnected(&mut self) -> bool {
        if !self.disconnect_done || self.error.is_some() {
            return false;
        }
        let Host::Stream(stream) = &mut self.host else {
            return self.eof;
        };
        let mut discarded = 0usize;
        let mut scratch = [0u8; 4096];
        while !self.eof && discarded < CLOSE_DRAIN_MAX {
            match stream.read(&mut scratch) {
                Ok(0) => self.eof = true,
                Ok(n) => discarded += n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.eof
    }

    pub(super) fn shutdown_write(&mut self) -> Result<(), NTSTATUS> {
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
    pub(super) fn write_op(
        &mut self,
        op: &mut SendOp,
        budget: &mut usize,
    ) -> Result<bool, NTSTATUS> {
        let Host::Stream(stream) = &mut self.host else {
            return Err(self.error.unwrap_or(STATUS_INVALID_DEVICE_STATE));
        };
        // WSK_FLAG_NODELAY: "directs the underlying transport to
        // immediately send the data, and any previously queued data, to
        // the remote application without delay" (PFN_WSK_SEND), so Nagle
        // must not hold these bytes behind unacknowledged ones. The host
        // has no per-write flag: its TCP_NODELAY is on for such a write
        // (turning it on also pushes what the host still holds, Linux's
        // tcp_push_pending_frames) and off again before the next write
        // without the flag, unless the socket's own TCP_NODELAY option is
        // on. One setsockopt per change, none while every send (or none)
        // has the flag. If the host refuses, the write goes as it would
        // have (an error on the connection shows in the write).
        if self.options.nodelay != Some(true)
            && op.nodelay != self.nodelay_pushed
            && SockRef::from(&*stream).set_tcp_nodelay(op.nodelay).is_ok()
        {
            self.nodelay_pushed = op.nodelay;
        }
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
        self.written += sent as u64;
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
    /// returns the bytes read. Not at all once a read said "would block"
    /// and the host has signalled no readiness since (`host_readable`).
    ///
    /// A short read (fewer bytes than asked for) counts as "would block"
    /// where the host's stream reads return everything queued up to the
    /// length asked for ([`SHORT_READ_DRAINS`]).
    pub(super) fn fill_inbound(&mut self, budget: &mut usize) -> usize {
        let mut total = 0;
        while self.host_readable && !self.eof && self.error.is_none() && *budget > 0 {
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
                    self.bytes_from_host += n as u64;
                    *budget = budget.saturating_sub(n);
                    if n < want && SHORT_READ_DRAINS && !self.host_read_closed {
                        // The host held fewer bytes than asked for: it is
                        // drained now, and bytes that arrive later signal
                        // readiness again. The read that would only say
                        // "would block" is skipped.
                        self.host_readable = false;
                        break;
                    }
                }
                Err(error) if is_transient(&error) => {
                    // Nothing more until the host signals readiness.
                    if error.kind() == std::io::ErrorKind::WouldBlock {
                        self.host_readable = false;
                        self.reads_would_block += 1;
                    }
                    break;
                }
                Err(error) => {
                    self.error = Some(status_from_io(&error));
                    self.peer_error = true;
                }
            }
        }
        total
    }

    /// Reads the host stream straight into a receive's buffer, from its
    /// `filled` bytes on: as [`Self::fill_inbound`] followed by
    /// [`Self::copy_inbound`] would move them, the same budget, host state
    /// and counters, without buffering them in the provider first. Only
    /// while nothing is buffered (`inbound` empty: no byte may overtake
    /// one read before) and the provider owns the request (a receive being
    /// made, not yet queued). Returns the bytes read. An MDL that cannot
    /// be mapped fails the request as `copy_inbound` does, and bytes read
    /// into the buffer before it are kept in `inbound` (nothing is lost).
    pub(super) fn read_into(
        &mut self,
        op: &mut RecvOp,
        budget: &mut usize,
    ) -> Result<usize, NTSTATUS> {
        debug_assert!(self.inbound.is_empty());
        if !self.host_readable || self.eof || self.error.is_some() || *budget == 0 {
            return Ok(0);
        }
        let room = INBOUND_CAP.saturating_sub(self.retained_bytes);
        let max = (op.buf.length - op.filled)
            .min(room)
            .min(*budget)
            .min(DATAGRAM_MAX);
        let Host::Stream(stream) = &mut self.host else {
            return Ok(0);
        };
        if max == 0 {
            return Ok(0);
        }
        let mut total = 0usize;
        // The last read: Ok((bytes, asked for)) or the host's error.
        let mut last: Result<(usize, usize), std::io::Error> = Ok((0, 0));
        let visit = |piece: *mut u8, len: usize| {
            // SAFETY: `piece` is `len` writable bytes of the request's
            // buffer (mapped by `segments`), which the provider owns
            // until it completes the request.
            let slice = unsafe { core::slice::from_raw_parts_mut(piece, len) };
            match stream.read(slice) {
                Ok(n) => {
                    total += n;
                    // A short read (the end of the stream included) ends
                    // the round, as in `fill_inbound`.
                    last = Ok((n, len));
                    n == len
                }
                Err(error) => {
                    last = Err(error);
                    false
                }
            }
        };
        // SAFETY: the provider owns the request (see above).
        let mapped = unsafe { op.buf.segments(op.filled, max, visit) };
        self.bytes_from_host += total as u64;
        *budget = budget.saturating_sub(total);
        if let Err(status) = mapped {
            if total > 0 {
                // SAFETY: the bytes just read into the owned buffer.
                let read = unsafe { op.buf.read(op.filled, total) }.unwrap_or_default();
                self.inbound.extend(read);
            }
            return Err(status);
        }
        op.filled += total;
        match last {
            // Nothing to read and no error: the end of the stream.
            Ok((0, asked)) if asked > 0 => self.eof = true,
            Ok((n, asked)) if n < asked && SHORT_READ_DRAINS && !self.host_read_closed => {
                // The host held fewer bytes than asked for: drained (see
                // `fill_inbound`). After the peer's close the next read
                // finds the end.
                self.host_readable = false;
            }
            Ok(_) => {}
            Err(error) if is_transient(&error) => {
                if error.kind() == std::io::ErrorKind::WouldBlock {
                    self.host_readable = false;
                    self.reads_would_block += 1;
                }
            }
            Err(error) => {
                self.error = Some(status_from_io(&error));
                self.peer_error = true;
            }
        }
        Ok(total)
    }

    /// Copies inbound bytes into a receive.
    pub(super) fn copy_inbound(&mut self, op: &mut RecvOp) -> Result<(), NTSTATUS> {
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

    pub(super) fn deliver_receives(&mut self, out: &mut Out) {
        if self.indicating_data() {
            // See `receive`: after the callback returns.
            return;
        }
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

    pub(super) fn flush_sends(&mut self, budget: &mut usize, out: &mut Out) {
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
                    if op.kind == SendKind::Disconnect
                        && let Err(status) = self.shutdown_write()
                    {
                        out.complete(op.irp, status, op.sent);
                        continue;
                    }
                    if let Some((status, information)) = self.written_out(&op, out) {
                        out.complete(op.irp, status, information);
                    }
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
    pub(super) fn fail_requests(&mut self, out: &mut Out) {
        let mut budget = 0;
        self.check_acks(out);
        self.flush_sends(&mut budget, out);
        self.deliver_receives(out);
    }

    // --- acknowledgements ---

    /// Whether sends wait for acknowledgements (so the host's reports of
    /// them are worth asking for).
    pub(super) fn wants_ack_reports(&self) -> bool {
        self.policy.send_completion == SendCompletion::Acknowledged
            && host::acknowledgement_observable()
    }

    /// A send (or a graceful disconnect, FIN included) has all its bytes
    /// written to the host. Under `SendCompletion::Copied`, or on a host
    /// that cannot report acknowledgements, it completes now: returns its
    /// status and byte count. Under `Acknowledged` it waits for the peer's
    /// acknowledgement ("a call to WskSend will not be completed ... until
    /// all of the data has actually been sent", and a graceful disconnect
    /// "is completed only when the disconnect operation is fully completed
    /// by the transport"): returns `None`, and `check_acks` completes it.
    pub(super) fn written_out(&mut self, op: &SendOp, out: &mut Out) -> Option<(NTSTATUS, usize)> {
        let len = op.buf.length;
        let acknowledged = self.policy.send_completion == SendCompletion::Acknowledged;
        if acknowledged && !host::acknowledgement_observable() {
            host::warn_unobservable();
        }
        if !acknowledged || !host::acknowledgement_observable() {
            if op.kind == SendKind::Disconnect {
                self.disconnect_done = true;
            }
            return Some((STATUS_SUCCESS, len));
        }
        let delay = Duration::from_micros(u64::from(self.policy.ack_delay_us));
        self.unacked.push_back(Unacked {
            irp: op.irp,
            end: self.written,
            len,
            kind: op.kind,
            due: Instant::now() + delay,
        });
        if delay.is_zero() {
            // Acknowledged already (loopback acknowledges within the
            // write)? Then this send completes with the call, like any
            // other result known at once, and so do the earlier ones
            // waiting (in order).
            // (Completions stay in order: after an earlier one went to the
            // provider thread, this one follows it there.)
            let (acked, fin_acked) = self.acknowledged();
            let mut earlier = false;
            while let Some(wait) = self.unacked.front() {
                if wait.end > acked || (wait.kind == SendKind::Disconnect && !fin_acked) {
                    break;
                }
                if wait.kind == SendKind::Disconnect {
                    self.disconnect_done = true;
                }
                let (irp, bytes) = (wait.irp, wait.len);
                self.unacked.pop_front();
                if irp != op.irp {
                    out.complete(irp, STATUS_SUCCESS, bytes);
                    earlier = true;
                    continue;
                }
                // The last one: nothing waits any more.
                self.ack_check_at = None;
                if !earlier {
                    return Some((STATUS_SUCCESS, len));
                }
                out.complete(irp, STATUS_SUCCESS, bytes);
                return None;
            }
        }
        self.ack_interval = self.first_ack_interval();
        self.schedule_ack_check(out);
        None
    }

    /// The wait before the first look at a send's acknowledgement (and
    /// after a look that saw progress). With the host's reports
    /// (`ack_reports`) an acknowledgement of a send's bytes is an event
    /// that makes a round look at once: the looks at intervals are only a
    /// fallback (a report the host dropped: its error queue counts against
    /// the socket's receive buffer), so they start at the longest interval.
    /// A FIN's acknowledgement is not reported: while a graceful disconnect
    /// waits, looks start at the shortest one, as without reports.
    fn first_ack_interval(&self) -> Duration {
        if self.ack_reports && self.unacked.iter().all(|w| w.kind != SendKind::Disconnect) {
            ACK_INTERVAL_MAX
        } else {
            ACK_INTERVAL_MIN
        }
    }

    /// The host's view now: how many of the bytes written the peer has
    /// acknowledged, and whether our FIN is acknowledged (false before it
    /// was sent).
    fn acknowledged(&self) -> (u64, bool) {
        let Host::Stream(stream) = &self.host else {
            return (self.written, false);
        };
        self.acknowledgement_looks
            .set(self.acknowledgement_looks.get() + 1);
        let Some(queued) = host::unacknowledged(stream) else {
            return (self.written, self.shutdown_done);
        };
        let fin_queued = self.shutdown_done && host::FIN_COUNTS;
        let data_queued = if fin_queued {
            queued.saturating_sub(1)
        } else {
            queued
        };
        let acked = self.written.saturating_sub(data_queued as u64);
        let fin_acked = self.shutdown_done && queued == 0;
        (acked, fin_acked)
    }

    /// Takes the host socket's pending error (`SO_ERROR`) into the
    /// connection's error. A reset or abort is otherwise seen only by a
    /// read, and the provider stops reading while its inbound buffer is
    /// full (a client that does not receive): a send waiting for an
    /// acknowledgement that will never come must still fail then (after a
    /// reset the host purged its write queue, but TIOCOUTQ, write_seq -
    /// snd_una, keeps counting the bytes that will never be acknowledged,
    /// so the waiting sends must fail with the reset, as a Windows WskSend
    /// does, or wait forever). One `getsockopt` per look.
    fn observe_host_error(&mut self) {
        if self.error.is_some() {
            return;
        }
        let Host::Stream(stream) = &self.host else {
            return;
        };
        if let Ok(Some(error)) | Err(error) = stream.take_error() {
            self.error = Some(status_from_io(&error));
            self.peer_error = true;
        }
    }

    /// The acknowledged-bytes watermark (for partial counts).
    pub(super) fn acked_watermark(&self) -> u64 {
        self.acknowledged().0
    }

    /// Completes the sends the peer has acknowledged (in order), or fails
    /// every waiting one with the connection's error (`Information`: its
    /// bytes the peer acknowledged). Schedules the next look while some
    /// wait.
    pub(super) fn check_acks(&mut self, out: &mut Out) {
        if self.unacked.is_empty() {
            self.ack_check_at = None;
            return;
        }
        if self.ack_reports
            && !self.ack_news
            && self.error.is_none()
            && self.ack_check_at.is_some_and(|at| at > Instant::now())
        {
            // Nothing new to see: the host has reported no acknowledgement
            // (nor an error) since the last look, and the next scheduled
            // look has its timer (`Out::ack_timer`). Looking anyway cost a
            // TIOCOUTQ and a SO_ERROR query in every round of the socket,
            // the client's own calls included.
            return;
        }
        self.ack_news = false;
        self.observe_host_error();
        if let Some(status) = self.error {
            let acked = self.acknowledged().0;
            for wait in std::mem::take(&mut self.unacked) {
                out.complete(wait.irp, status, wait.acked_of(acked));
            }
            self.ack_check_at = None;
            return;
        }
        let (acked, fin_acked) = self.acknowledged();
        let mut progressed = false;
        let now = Instant::now();
        let mut due_later = None;
        while let Some(wait) = self.unacked.front() {
            if wait.end > acked || (wait.kind == SendKind::Disconnect && !fin_acked) {
                break;
            }
            if wait.due > now {
                // Acknowledged, but the modeled round trip is not over.
                due_later = Some(wait.due);
                break;
            }
            if wait.kind == SendKind::Disconnect {
                self.disconnect_done = true;
            }
            out.complete(wait.irp, STATUS_SUCCESS, wait.len);
            self.unacked.pop_front();
            progressed = true;
        }
        if self.unacked.is_empty() {
            self.ack_check_at = None;
            return;
        }
        if let Some(due) = due_later {
            self.ack_interval = self.first_ack_interval();
            if self.ack_check_at.is_none_or(|at| at > due || at <= now) {
                self.ack_check_at = Some(due);
            }
            // The look at `due` must happen even without a report (the
            // acknowledgement was reported already): a timer that is
            // never lost (see `Out::ack_timer`).
            out.ack_timer = Some(self.ack_check_at.unwrap_or(due));
            return;
        }
        self.ack_interval = if progressed {
            self.first_ack_interval()
        } else {
            (self.ack_interval * 2).min(ACK_INTERVAL_MAX)
        };
        match self.ack_check_at {
            Some(at) if !progressed && at > Instant::now() => {
                // Not due yet: make sure a timer for it exists (a round that
                // also asked for an earlier one keeps only the earliest).
                out.timer(at);
            }
            _ => {
                self.ack_check_at = None;
                self.schedule_ack_check(out);
            }
        }
    }

    fn schedule_ack_check(&mut self, out: &mut Out) {
        if self.ack_check_at.is_some() {
            return;
        }
        let at = Instant::now() + self.ack_interval;
        self.ack_check_at = Some(at);
        out.ack_timer = Some(at);
    }

    /// The ideal send backlog: how many bytes to keep outstanding so the
    /// connection's data stream stays full (`SIO_WSK_QUERY_IDEAL_SEND_BACKLOG`).
    /// Windows derives it from the connection's bandwidth-delay product;
    /// the sim reports the host transport's congestion window (what it lets
    /// be in flight now) where the host tells it, else the host's send
    /// buffer size. `None` when not connected.
    pub(crate) fn ideal_send_backlog(&self) -> Option<usize> {
        let Host::Stream(stream) = &self.host else {
            return None;
        };
        if self.phase != Phase::Connected || self.error.is_some() {
            return None;
        }
        host::congestion_window(stream).or_else(|| SockRef::from(stream).send_buffer_size().ok())
    }

    pub(super) fn apply_fault(
        &mut self,
        fault: SocketFault,
        reactor: &super::super::reactor::Reactor,
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
    pub(super) fn budget(&mut self, out: &mut Out) -> usize {
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
}

/// Whether a stream read that returned fewer bytes than it asked for
/// drained the host socket. Unix hosts: a TCP `recv` copies what is queued
/// up to the length asked for, and bytes queued after it signal readiness
/// again (an edge; tokio's reads rely on the same). Not on Windows hosts,
/// whose readiness mio emulates.
pub(super) const SHORT_READ_DRAINS: bool = cfg!(not(windows));

/// `WskReceiveEx`: no control information is produced.
pub(super) fn finish_receive_ex(op: &RecvOp) {
    if op.control_length != 0 {
        // SAFETY: the client's `ControlInfoLength`, valid until completion
        // (WskReceiveEx contract); the provider owns the request.
        unsafe { (op.control_length as PULONG).write_unaligned(0) };
    }
}
