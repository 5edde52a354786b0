//! UDP echo: each datagram goes back to its sender, in the style the
//! registry picks (`UdpMode`):
//!
//! - **queue** (functions style): `UdpQueueDepth` `WskReceiveFrom` IRPs
//!   kept outstanding ([`wsk::ReceiveFromQueue`]), each with its own
//!   buffer of a full datagram;
//! - **callbacks**: `WskReceiveFromEvent` indications queued up to
//!   `UdpQueueDepth` chains; past that the callback refuses them
//!   (STATUS_DATA_NOT_ACCEPTED) and the datagrams are counted as dropped.
//!
//! One task per socket (IPv4 and IPv6). The task publishes its socket in
//! [`Shared::udp`](crate::driver::Shared) while it owns it, for the
//! receive IOCTL, and withdraws it before the socket is closed; both run
//! on the executor thread, so a published socket is open for the whole of
//! a poll.

use core::sync::atomic::{AtomicPtr, Ordering};

use core::net::SocketAddr;

use ::wsk::{DatagramIndication, DatagramSender, DatagramSocket};
use echo_ioctl::MAX_DATAGRAM;
use irp_future::MdlBuf;
use nt::STATUS_NOT_SUPPORTED;
use nt::wsk::{PWSK_SOCKET, WSK_SOCKET};

use crate::driver::SharedRef;
use crate::future::{next, yield_now};
use crate::log;
use crate::params::UdpMode;
use crate::pool::PoolBuf;

/// Datagrams echoed between two yields to the executor. Under a flood a
/// receive is always complete and a datagram send completes inline, so
/// without a yield the loop never returns Pending: one poll would run for
/// as long as the flood lasts, and no other task (connections, receive
/// IOCTLs, the cancellations Unload waits for) would run meanwhile.
const YIELD_EVERY: u32 = 16;

/// Withdraws a published socket when dropped (the task ends or is
/// cancelled).
struct Published<'a>(&'a AtomicPtr<WSK_SOCKET>);

impl<'a> Published<'a> {
    fn new(slot: &'a AtomicPtr<WSK_SOCKET>, socket: PWSK_SOCKET) -> Self {
        slot.store(socket, Ordering::Release);
        Self(slot)
    }
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        self.0.store(core::ptr::null_mut(), Ordering::Release);
    }
}

/// Echoes datagrams on `socket` until it is closed (the task is cancelled
/// at unload, which closes it). `slot` is 0 for IPv4, 1 for IPv6.
///
/// Replies go out from one buffer whose MDL is built once, on one reused
/// IRP ([`DatagramSender`]): a datagram echoed allocates nothing.
pub async fn echo_loop(shared: SharedRef, socket: DatagramSocket, slot: usize) {
    let Some(reply) = PoolBuf::with_capacity(MAX_DATAGRAM) else {
        log::error(format_args!("no memory for the UDP reply buffer"));
        return;
    };
    let reply = match MdlBuf::new(reply) {
        Ok(reply) => reply,
        Err((status, _)) => {
            log::error(format_args!(
                "no MDL for the UDP reply buffer: {:#010x}",
                status as u32
            ));
            return;
        }
    };
    match shared.config.udp_mode {
        UdpMode::Queue => queue_style(shared, socket, slot, reply).await,
        UdpMode::Callbacks => callback_style(shared, socket, slot, reply).await,
    }
}

async fn queue_style(
    shared: SharedRef,
    socket: DatagramSocket,
    slot: usize,
    mut reply: MdlBuf<PoolBuf>,
) {
    let stats = &shared.stats;
    let depth = shared.config.udp_queue_depth as usize;
    let mut buffers = [const { None::<PoolBuf> }; 64];
    let mut made = 0;
    for buffer in buffers.iter_mut().take(depth) {
        *buffer = PoolBuf::with_capacity(MAX_DATAGRAM);
        if buffer.is_some() {
            made += 1;
        }
    }
    if made < depth {
        log::warning(format_args!(
            "UDP: memory for {made} of {depth} receive buffers"
        ));
    }
    let mut queue = match socket.into_receive_queue(buffers.into_iter().flatten()) {
        Ok(queue) => queue,
        Err(failed) => {
            // The socket and buffers come back; dropping them closes the
            // socket and frees the buffers.
            log::error(format_args!(
                "UDP receive queue failed: {:#010x}",
                failed.error.status() as u32
            ));
            return;
        }
    };
    let _published = Published::new(&shared.udp[slot], queue.socket().as_raw());
    let mut sender = DatagramSender::new();
    let mut since_yield = 0;
    while let Some(item) = next(&mut queue).await {
        since_yield += 1;
        if since_yield == YIELD_EVERY {
            since_yield = 0;
            yield_now().await;
        }
        let received = match item {
            Ok(received) => received,
            Err(_) => {
                stats.datagrams_dropped.bump();
                continue;
            }
        };
        stats.datagrams_received.bump();
        let (Some(from), false) = (received.from(), received.truncated()) else {
            stats.datagrams_dropped.bump();
            queue.recycle(received);
            continue;
        };
        reply.clear();
        reply.extend_from_slice(received.data());
        // The buffer goes back to the queue at once: the receive is
        // outstanding again while the reply is sent.
        queue.recycle(received);
        let (sent, back) = sender.send_to(queue.socket(), reply, from).await;
        reply = back;
        match sent {
            Ok(_) => stats.datagrams_sent.bump(),
            Err(_) => stats.datagrams_dropped.bump(),
        }
    }
}

async fn callback_style(
    shared: SharedRef,
    socket: DatagramSocket,
    slot: usize,
    mut reply: MdlBuf<PoolBuf>,
) {
    let stats = &shared.stats;
    let depth = shared.config.udp_queue_depth as usize;
    let _published = Published::new(&shared.udp[slot], socket.as_raw());
    let mut sender = DatagramSender::new();
    let mut events = match socket.receive_from_events(depth) {
        Ok(events) => events,
        Err(error) => {
            log::error(format_args!(
                "UDP receive events failed: {:#010x}",
                error.status() as u32
            ));
            return;
        }
    };
    // WskSendMessages exists (Windows 8 and later); cleared the first time
    // the provider says it does not, and each datagram then goes alone.
    let mut batches = true;
    let mut refused = 0;
    let mut since_yield = 0;
    while let Some(item) = next(&mut events).await {
        since_yield += 1;
        if since_yield == YIELD_EVERY {
            since_yield = 0;
            yield_now().await;
        }
        let now_refused = events.refused();
        stats.datagrams_dropped.add(now_refused - refused);
        refused = now_refused;
        let indication = match item {
            Ok(indication) => indication,
            Err(_) => {
                yield_now().await;
                continue;
            }
        };
        let mut done = 0;
        loop {
            let mut slices: [&[u8]; SEND_BATCH] = [&[]; SEND_BATCH];
            let limit = if batches { SEND_BATCH } else { 1 };
            let run = next_run(&indication, done, &mut slices[..limit], &mut reply);
            let (count, to) = match run {
                Run::End => break,
                Run::NoAddress => {
                    done += 1;
                    stats.datagrams_received.bump();
                    stats.datagrams_dropped.bump();
                    continue;
                }
                Run::Copied { to } => (1, to),
                Run::Slices { count: 1, to } => {
                    reply.clear();
                    reply.extend_from_slice(slices[0]);
                    (1, to)
                }
                Run::Slices { count, to } => {
                    let sent = match socket.send_batch(&slices[..count], to).await {
                        Ok(_) => count,
                        Err(error) if error.status() == STATUS_NOT_SUPPORTED => {
                            // Nothing went out: the run goes again, one
                            // datagram at a time.
                            batches = false;
                            continue;
                        }
                        Err(error) => datagrams_within(&slices[..count], error.transferred()),
                    };
                    done += count;
                    stats.datagrams_received.add(count as u64);
                    stats.datagrams_sent.add(sent as u64);
                    stats.datagrams_dropped.add((count - sent) as u64);
                    continue;
                }
            };
            // One datagram, in `reply`: the reused IRP and MDL, nothing
            // allocated.
            done += count;
            stats.datagrams_received.bump();
            let (sent, back) = sender.send_to(&socket, reply, to).await;
            reply = back;
            match sent {
                Ok(_) => stats.datagrams_sent.bump(),
                Err(_) => stats.datagrams_dropped.bump(),
            }
        }
        // Dropping the indication releases the provider's buffers.
        drop(indication);
    }
}

/// Datagrams one reply `WskSendMessages` carries at most (the simulated
/// provider's chains hold at most 32; a longer chain goes out in several).
const SEND_BATCH: usize = 32;

/// The next datagrams of an indication to echo together.
enum Run {
    /// No datagram from `skip` on.
    End,
    /// The next datagram came with no sender address: it cannot be
    /// echoed.
    NoAddress,
    /// The next datagram is in several pieces: it was copied into the
    /// reply buffer, and goes alone.
    Copied { to: SocketAddr },
    /// The next `count` datagrams are each in one piece, from `to`: their
    /// slices are the first `count` of the caller's array.
    Slices { count: usize, to: SocketAddr },
}

/// The datagrams of `indication` from the `skip`th on that go out
/// together: the longest run (at most `slices.len()`) of datagrams in one
/// piece from one sender, put into `slices` without a copy. Synchronous:
/// a `Datagram` borrows the chain and is not kept across an await (the
/// slices are plain bytes, alive as long as the indication).
fn next_run<'a>(
    indication: &'a DatagramIndication,
    skip: usize,
    slices: &mut [&'a [u8]],
    reply: &mut MdlBuf<PoolBuf>,
) -> Run {
    let mut count = 0;
    let mut run_from = None;
    for datagram in indication.iter().skip(skip) {
        let Some(from) = datagram.remote() else {
            break;
        };
        if count == slices.len() || run_from.is_some_and(|to| to != from) {
            break;
        }
        let mut chunks = datagram.chunks();
        let (first, second) = (chunks.next(), chunks.next());
        if second.is_some() {
            if count > 0 {
                break;
            }
            reply.clear();
            for chunk in datagram.chunks() {
                reply.extend_from_slice(chunk);
            }
            return Run::Copied { to: from };
        }
        slices[count] = first.unwrap_or(&[]);
        count += 1;
        run_from = Some(from);
    }
    match run_from {
        Some(to) => Run::Slices { count, to },
        None if indication.iter().nth(skip).is_some() => Run::NoAddress,
        None => Run::End,
    }
}

/// How many of `datagrams` (sent in order) `bytes` covers whole: those a
/// failed `WskSendMessages` sent before its failure.
fn datagrams_within(datagrams: &[&[u8]], bytes: usize) -> usize {
    let mut left = bytes;
    datagrams
        .iter()
        .take_while(|datagram| {
            let whole = datagram.len() <= left;
            left = left.saturating_sub(datagram.len());
            whole
        })
        .count()
}
