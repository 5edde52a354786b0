//! Datagram sockets: `WskSendTo`, `WskReceiveFrom`, and the datagrams
//! waiting for them.

use super::*;
use crate::sim::wsk::buf::write_packet_info;
use crate::sim::wsk::host::{self, PacketInfo, receive_with_info, send_with_info};

impl SockState {
    // --- datagram sockets ---

    /// `WskSendTo` (one datagram) and `WskSendMessages` (several, to one
    /// address): sent in order; what the host cannot take now waits, in
    /// order, behind the sends already waiting. The first datagram the host
    /// refuses ends the request with its status and, as Information, the
    /// bytes of the datagrams sent before it.
    pub(crate) fn send_to(
        &mut self,
        irp: usize,
        datagrams: Vec<Vec<u8>>,
        (remote, source): (SocketAddr, Option<PacketInfo>),
        family: ADDRESS_FAMILY,
        out: &mut Out,
    ) -> Decision {
        let Host::Udp(udp) = &self.host else {
            return Decision::Done(STATUS_INVALID_DEVICE_STATE, 0);
        };
        if family_of(&remote) != family {
            return Decision::Done(STATUS_INVALID_PARAMETER, 0);
        }
        let mut datagrams: VecDeque<Vec<u8>> = datagrams.into();
        let mut sent = 0;
        if self.send_tos.is_empty() {
            match write_datagrams(udp, &mut datagrams, remote, source, &mut sent) {
                Ok(()) => return Decision::Done(STATUS_SUCCESS, sent),
                Err(error) if is_transient(&error) => {}
                Err(error) => return Decision::Done(status_from_io(&error), sent),
            }
        }
        if Self::queue_refused() {
            return Decision::Done(STATUS_INSUFFICIENT_RESOURCES, sent);
        }
        self.enqueue(
            irp,
            |st| {
                st.send_tos.push_back(SendToOp {
                    irp,
                    datagrams,
                    sent,
                    remote,
                    source,
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
        // (ControlLength, ControlInfo, the buffer's size on entry).
        control: (usize, usize, usize),
        control_flags_out: usize,
        out: &mut Out,
    ) -> Decision {
        if !matches!(self.host, Host::Udp(_)) {
            return Decision::Done(STATUS_INVALID_DEVICE_STATE, 0);
        }
        // The client's receive looks at the host itself, whatever the
        // provider thread has seen: that thread may be late to its poll
        // (in a callback, on another socket's work), and the call sees what
        // the host holds now.
        self.host_readable = true;
        let mut op = RecvFromOp {
            irp,
            buf,
            remote_out,
            control_length_out: control.0,
            control_out: control.1,
            control_room: control.2,
            control_flags_out,
            armed: false,
        };
        if self.recv_froms.is_empty() {
            match self.next_datagram() {
                Ok(Some(datagram)) => {
                    let (status, n) = deliver_datagram(&op, &datagram, self.policy.truncation);
                    return Decision::Done(status, n);
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

    /// Whether each datagram must be read with its packet information
    /// (one `recvmsg` each): the socket asked for it, or the provider needs
    /// the destination to filter or flag multicast datagrams.
    fn reads_with_info(&self) -> bool {
        // IP_MULTICAST_LOOP off (Windows: set on the receiving socket): no
        // multicast datagram sent from this machine is received.
        let no_local_multicast =
            !self.options.multicast_loop && self.local.is_some_and(|local| local.is_ipv4());
        // A member of a group: the destination tells a multicast datagram
        // (MSG_MCAST).
        self.options.packet_info || no_local_multicast || !self.memberships.is_empty()
    }

    /// Up to `max` datagrams, in arrival order, appended to `chain`: those
    /// handed back by a callback first, then the host's, read several with
    /// one system call (`host::receive_batch`: `recvmmsg` on Linux) unless
    /// each needs its packet information ([`Self::reads_with_info`], then
    /// one [`Self::next_datagram`] each). It reads at most `max`, what the
    /// caller hands on, so nothing waits in the provider that the host's
    /// receive buffer would have held. An error
    /// is returned only when no datagram was read (one after the first
    /// ends the batch; the next read meets it).
    pub(super) fn next_datagrams(
        &mut self,
        max: usize,
        chain: &mut Vec<Datagram>,
    ) -> Result<(), NTSTATUS> {
        let start = chain.len();
        while chain.len() - start < max {
            match self.datagrams.pop_front() {
                Some(datagram) => chain.push(datagram),
                None => break,
            }
        }
        if self.reads_with_info() {
            while chain.len() - start < max {
                match self.next_datagram() {
                    Ok(Some(datagram)) => chain.push(datagram),
                    Ok(None) => break,
                    Err(status) if chain.len() == start => return Err(status),
                    Err(_) => break,
                }
            }
            return Ok(());
        }
        let Host::Udp(udp) = &self.host else {
            return Ok(());
        };
        let fixed = self.fixed_remote;
        while self.host_readable && chain.len() - start < max {
            let want = max - (chain.len() - start);
            let read = host::receive_batch(udp, want, |data, from| {
                // A fixed remote address: "only datagrams that are
                // received from the fixed remote transport address are
                // accepted" (SIO_WSK_SET_REMOTE_ADDRESS).
                if fixed.is_none_or(|fixed| fixed == from) {
                    chain.push(Datagram {
                        data: data.into(),
                        from,
                        info: None,
                        multicast: false,
                    });
                }
            });
            match read {
                // Short: the host queue ran dry (or the next read fails);
                // the next round's read says which.
                Ok(n) if n < want => break,
                Ok(_) => {}
                Err(error) if is_transient(&error) => {
                    if error.kind() == std::io::ErrorKind::WouldBlock {
                        self.host_readable = false;
                        empty_read();
                    }
                    break;
                }
                Err(error) if chain.len() == start => return Err(status_from_io(&error)),
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// The next datagram: one handed back by a callback, or from the host.
    pub(super) fn next_datagram(&mut self) -> Result<Option<Datagram>, NTSTATUS> {
        if let Some(datagram) = self.datagrams.pop_front() {
            return Ok(Some(datagram));
        }
        let Host::Udp(udp) = &self.host else {
            return Ok(None);
        };
        if !self.host_readable {
            // A read said "would block" and the host has signalled no
            // readiness since: it would say so again (see `host_readable`).
            return Ok(None);
        }
        let fixed = self.fixed_remote;
        let packet_info = self.options.packet_info;
        // IP_MULTICAST_LOOP off (Windows: set on the receiving socket): no
        // multicast datagram sent from this machine is received.
        let no_local_multicast =
            !self.options.multicast_loop && self.local.is_some_and(|local| local.is_ipv4());
        // A member of a group: the destination tells a multicast datagram
        // (MSG_MCAST).
        let member = !self.memberships.is_empty();
        let with_info = packet_info || no_local_multicast || member;
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            loop {
                let received = if with_info {
                    receive_with_info(udp, &mut scratch[..])
                } else {
                    udp.recv_from(&mut scratch[..])
                        .map(|(n, from)| (n, from, None))
                };
                match received {
                    // A fixed remote address: "only datagrams that are
                    // received from the fixed remote transport address are
                    // accepted" (SIO_WSK_SET_REMOTE_ADDRESS).
                    Ok((_, from, _)) if fixed.is_some_and(|fixed| fixed != from) => continue,
                    Ok((_, from, Some(info)))
                        if no_local_multicast
                            && info.to.is_multicast()
                            && host::is_local(from.ip()) =>
                    {
                        continue;
                    }
                    Ok((n, from, info)) => {
                        return Ok(Some(Datagram {
                            data: scratch[..n].to_vec().into_boxed_slice(),
                            from,
                            info: info.filter(|_| packet_info),
                            multicast: info.is_some_and(|info| info.to.is_multicast()),
                        }));
                    }
                    Err(error) if is_transient(&error) => {
                        if error.kind() == std::io::ErrorKind::WouldBlock {
                            self.host_readable = false;
                            empty_read();
                        }
                        return Ok(None);
                    }
                    Err(error) => return Err(status_from_io(&error)),
                }
            }
        })
    }

    pub(super) fn deliver_datagrams(&mut self, out: &mut Out) {
        // Several receives waiting and none of the datagrams handed back:
        // read as many datagrams as there are receives with one system
        // call (they wait in `datagrams`, in order, and are taken below).
        let waiting = self.recv_froms.len();
        if waiting > 1 && self.datagrams.is_empty() && self.host_readable {
            let mut batch = Vec::with_capacity(waiting.min(host::RECEIVE_BATCH));
            match self.next_datagrams(waiting, &mut batch) {
                Ok(()) => self.datagrams.extend(batch),
                Err(status) => {
                    if let Some(mut op) = self.recv_froms.pop_front()
                        && take(op.irp, &mut op.armed)
                    {
                        out.complete(op.irp, status, 0);
                    }
                }
            }
        }
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
                let (status, n) = deliver_datagram(&op, &datagram, self.policy.truncation);
                out.complete(op.irp, status, n);
                delivered = true;
                break;
            }
            if !delivered {
                self.datagrams.push_front(datagram);
                return;
            }
        }
    }

    pub(super) fn flush_send_tos(&mut self, out: &mut Out) {
        let Host::Udp(udp) = &self.host else {
            return;
        };
        while let Some(mut op) = self.send_tos.pop_front() {
            let mut failed = None;
            match write_datagrams(udp, &mut op.datagrams, op.remote, op.source, &mut op.sent) {
                Ok(()) => {}
                Err(error) if is_transient(&error) => {
                    self.send_tos.push_front(op);
                    return;
                }
                Err(error) => failed = Some(status_from_io(&error)),
            }
            if take(op.irp, &mut op.armed) {
                out.complete(op.irp, failed.unwrap_or(STATUS_SUCCESS), op.sent);
            }
        }
    }
}

/// Counts a read of a datagram socket's host queue that found nothing
/// ([`crate::sim::wsk::WskStats::datagram_reads_empty`]).
fn empty_read() {
    // Not `current()`: no schedule perturbation point inside the provider.
    if let Some(kernel) = crate::sim::session::try_current()
        && let Some(wsk) = kernel.wsk.get()
    {
        wsk.datagram_reads_empty.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes `datagrams` to the host in order, taking each one written off the
/// front and adding its bytes to `sent`, until all are written (`Ok`) or
/// the host refuses one (its error; that one and those behind it stay).
/// Several to one address without a chosen source go out with one system
/// call per [`host::SEND_BATCH`] (`sendmmsg` on Linux); the others one by
/// one.
fn write_datagrams(
    udp: &mio::net::UdpSocket,
    datagrams: &mut VecDeque<Vec<u8>>,
    remote: SocketAddr,
    source: Option<PacketInfo>,
    sent: &mut usize,
) -> std::io::Result<()> {
    while let Some(data) = datagrams.front() {
        if source.is_none() && datagrams.len() > 1 {
            let (count, bytes) =
                host::send_batch(udp, datagrams.iter().map(Vec::as_slice), remote)?;
            if count == 0 {
                // (sendmmsg never says 0 for a non-empty batch.)
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            *sent += bytes;
            datagrams.drain(..count);
        } else {
            *sent += send_with_info(udp, data, remote, source)?;
            datagrams.pop_front();
        }
    }
    Ok(())
}

/// Copies a datagram into a receive-from request (owned by the provider)
/// and fills its out-parameters; returns the request's status and the bytes
/// copied. A datagram longer than the buffer is truncated: `MSG_TRUNC` in
/// `*ControlFlags` and, per `truncation`, STATUS_BUFFER_OVERFLOW or
/// STATUS_SUCCESS (see [`DatagramTruncation`]).
pub(super) fn deliver_datagram(
    op: &RecvFromOp,
    datagram: &Datagram,
    truncation: DatagramTruncation,
) -> (NTSTATUS, usize) {
    // SAFETY: the provider owns the request; its buffer is locked.
    let copied = match unsafe { op.buf.write_at(0, &datagram.data) } {
        Ok(copied) => copied,
        Err(status) => return (status, 0),
    };
    if op.remote_out != 0 {
        // SAFETY: the client's out-parameter, valid until completion.
        unsafe { write_sockaddr(op.remote_out as PSOCKADDR, &datagram.from) };
    }
    let mut control_truncated = false;
    if op.control_length_out != 0 {
        let written = match datagram.info {
            Some(info) if op.control_room > 0 => {
                // SAFETY: the client's ControlInfo buffer of `control_room`
                // bytes, valid until completion.
                let room = unsafe {
                    core::slice::from_raw_parts_mut(op.control_out as *mut u8, op.control_room)
                };
                let written = write_packet_info(room, &info);
                control_truncated = written.is_none();
                written.unwrap_or(0)
            }
            _ => 0,
        };
        // SAFETY: as above.
        unsafe { (op.control_length_out as PULONG).write_unaligned(written as ULONG) };
    }
    let truncated = copied < datagram.data.len();
    if op.control_flags_out != 0 {
        let mut flags = if truncated { MSG_TRUNC } else { 0 };
        if datagram.multicast {
            flags |= MSG_MCAST;
        }
        if control_truncated {
            flags |= MSG_CTRUNC;
        }
        // SAFETY: as above.
        unsafe { (op.control_flags_out as PULONG).write_unaligned(flags) };
    }
    let status = match (truncated, truncation) {
        (true, DatagramTruncation::Overflow) => STATUS_BUFFER_OVERFLOW,
        _ => STATUS_SUCCESS,
    };
    (status, copied)
}
