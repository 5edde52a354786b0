//! TCP echo: one accept loop task per listening socket, one task per
//! connection.
//!
//! A connection task receives into one of [`ECHO_BUFFERS`] buffers of
//! [`ECHO_BUFFER`] bytes and sends exactly the bytes received from that
//! buffer while it receives into the next one (WSK completes a send only
//! once the peer acknowledged it, so one buffer at a time would wait a
//! round trip per buffer). Every send has `WSK_FLAG_NODELAY`: with a send
//! in flight, Nagle's algorithm would hold the next small echo until the
//! peer acknowledged the previous one. When every buffer is being sent, the task stops
//! receiving until a send completes, so a peer that does not read stalls
//! only its own connection (its sends do not complete, the task stops
//! receiving, TCP flow control pushes back on the peer) and the driver's
//! memory per connection is those buffers, their MDLs, one reused IRP for
//! the receives and one per buffer for the sends (nothing is allocated per
//! round trip). On the peer's graceful close (a zero-byte receive) the task
//! waits for the sends in flight, so everything received was echoed; then
//! it disconnects gracefully and closes, so both directions are finished
//! before `WskCloseSocket` and the peer sees a clean close. Any error
//! closes the socket abortively.
//!
//! With `IdleTimeoutSeconds` set, a receive or a send that makes no
//! progress for that long ends the connection (counted as idle-closed):
//! the operation is cancelled, a graceful disconnect is tried for
//! [`CLOSE_GRACE`], then the socket is closed (abortively if the
//! disconnect did not complete). A peer that neither sends nor reads is
//! idle in both senses.
//!
//! Every task runs on the executor's thread at PASSIVE_LEVEL; WSK wakes it
//! from completion routines at DISPATCH_LEVEL.

use core::future::{Future, poll_fn};
use core::pin::{Pin, pin};
use core::task::{Context, Poll};
use core::time::Duration;

use ::wsk::{BufResult, Connection, Disconnect, Error, IoBuf, ListenSocket, MdlBuf, Sender};
use nt::*;

use crate::driver::SharedRef;
use crate::log;
use crate::pool::PoolBuf;

/// Bytes of each buffer a connection echoes through.
pub const ECHO_BUFFER: usize = 16 * 1024;

/// Buffers per connection: while one buffer's bytes are being sent (WSK
/// completes a send once the peer acknowledged it), the next receive goes
/// into another.
pub const ECHO_BUFFERS: usize = 2;

/// How long an idle-closed connection's graceful disconnect may take
/// before the close turns abortive.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How long the accept loop waits before retrying after an error that
/// leaves the listener alive (out of resources, ...).
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// Whether a listener error means the listener is gone (closed, cancelled
/// at unload): the loop ends instead of retrying.
fn listener_is_gone(error: Error) -> bool {
    matches!(
        error.status(),
        STATUS_CANCELLED
            | STATUS_INVALID_DEVICE_STATE
            | STATUS_FILE_FORCED_CLOSED
            | STATUS_INVALID_HANDLE
    )
}

/// Accepts connections until the listener is closed (the task is
/// cancelled at unload, which closes it).
pub async fn accept_loop(shared: SharedRef, listener: ListenSocket) {
    let mut errors: u64 = 0;
    loop {
        match listener.accept().await {
            Ok(accepted) => admit(shared, accepted.connection),
            Err(error) if listener_is_gone(error) => {
                log::info(format_args!(
                    "listener closed ({:#010x}); accept loop ends",
                    error.status() as u32
                ));
                return;
            }
            Err(error) => {
                // Out of resources, a connection reset before it was
                // accepted, ...: the listener lives on.
                errors += 1;
                if errors.is_power_of_two() {
                    log::warning(format_args!(
                        "accept failed with {:#010x} ({errors} failures so far); retrying",
                        error.status() as u32
                    ));
                }
                shared.timers.sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Serves an accepted connection in a task of its own, or refuses it
/// (abortive close) when `MaxConnections` are open or no task can be made.
fn admit(shared: SharedRef, connection: Connection) {
    let stats = &shared.stats;
    if stats.connections_current.get() >= u64::from(shared.config.max_connections) {
        stats.connections_refused.bump();
        // Dropping closes it at once, abortively: the peer sees a reset.
        drop(connection);
        return;
    }
    // Counted before the task exists (the accept loops run on the executor
    // thread, one at a time, so the check above cannot race another).
    stats.connections_current.bump();
    match shared.spawner.spawn(serve(shared, connection)) {
        Ok(task) => {
            stats.connections_total.bump();
            task.detach();
        }
        Err(error) => {
            stats.connections_current.drop_one();
            stats.connections_refused.bump();
            log::warning(format_args!(
                "no task for a new connection ({:#010x}); refused",
                error.status() as u32
            ));
            // The unpolled future owns the connection: dropping it closes
            // the connection abortively.
            drop(error.into_future());
        }
    }
}

/// How an echo loop ended.
enum End {
    /// The peer closed gracefully and everything it sent was echoed.
    PeerClosed,
    /// An error: the connection is closed abortively.
    Failed,
    /// No progress for the idle timeout.
    Idle,
}

/// One connection, from accept to close.
async fn serve(shared: SharedRef, connection: Connection) {
    let end = echo(shared, &connection).await;
    let stats = &shared.stats;
    match end {
        End::PeerClosed => match connection.disconnect(Disconnect::Graceful).await {
            // Our FIN is acknowledged and the peer's received: the close
            // is graceful.
            Ok(()) => {
                let _ = connection.close().await;
            }
            Err(_) => {
                stats.connections_aborted.bump();
                drop(connection);
            }
        },
        End::Failed => {
            stats.connections_aborted.bump();
            drop(connection);
        }
        End::Idle => {
            stats.connections_idle_closed.bump();
            let disconnect = connection.disconnect(Disconnect::Graceful);
            match shared.timers.timeout(CLOSE_GRACE, disconnect).await {
                Ok(Ok(())) => {
                    let _ = connection.close().await;
                }
                // Not acknowledged in time (a peer that does not read):
                // abortive.
                _ => drop(connection),
            }
        }
    }
    stats.connections_current.drop_one();
}

/// `operation`, or `None` if it made no progress for the idle timeout
/// (then it is dropped, which cancels it).
async fn within_idle<F: Future>(shared: SharedRef, operation: F) -> Option<F::Output> {
    match shared.config.idle_timeout_seconds {
        0 => Some(operation.await),
        seconds => {
            let idle = Duration::from_secs(u64::from(seconds));
            shared.timers.timeout(idle, operation).await.ok()
        }
    }
}

/// An echo buffer: a pool block whose MDL is built once.
type EchoBuf = MdlBuf<PoolBuf>;

/// A sender (one reused IRP) with the buffer it sent, once the send is
/// done.
type SendDone<'c> = (Sender<'c, PoolBuf>, BufResult<usize, EchoBuf>);

/// One send in flight. It owns its sender and its buffer, so it stays in
/// flight while the loop receives into another buffer.
///
/// With `WSK_FLAG_NODELAY`: the transport sends the bytes at once. Each
/// send is the whole of one receive, so Nagle's algorithm has nothing of
/// ours to coalesce, and with two sends in flight it would hold a small
/// echo behind the previous one until the peer acknowledged that one:
/// a client that delays its ACK until its next request (as clients do)
/// then got every echo one request late, for good (issue 15's p99,
/// docs/bench.md).
async fn send_owned(mut sender: Sender<'_, PoolBuf>, buf: EchoBuf) -> SendDone<'_> {
    let result = sender.send_nodelay(buf).await;
    (sender, result)
}

/// What the echo loop waited for.
enum Event<'c> {
    /// A send completed: the slot it used and what it gave back.
    Sent(usize, SendDone<'c>),
    /// The receive in flight completed.
    Received(BufResult<usize, EchoBuf>),
}

/// Polls every send in flight; the first that completed empties its slot
/// and is returned. Pending when none did (or none is in flight).
fn poll_sends<'c, F: Future<Output = SendDone<'c>>>(
    shared: SharedRef,
    sends: &mut [Pin<&mut Option<F>>],
    cx: &mut Context<'_>,
) -> Poll<(usize, SendDone<'c>)> {
    for (slot, send) in sends.iter_mut().enumerate() {
        let Some(future) = send.as_mut().as_pin_mut() else {
            continue;
        };
        #[cfg(feature = "faults")]
        let polled = if shared.config.fault == crate::faults::Fault::LostWake {
            Pin::new(&mut crate::faults::LoseWake(future)).poll(cx)
        } else {
            future.poll(cx)
        };
        #[cfg(not(feature = "faults"))]
        let polled = {
            let _ = shared;
            future.poll(cx)
        };
        if let Poll::Ready(done) = polled {
            send.set(None);
            return Poll::Ready((slot, done));
        }
    }
    Poll::Pending
}

/// Takes a completed send's result: its buffer and sender go back to
/// `idle`; `false` if it failed or sent fewer bytes than asked.
fn settle<'c>(
    shared: SharedRef,
    idle: &mut [Option<(EchoBuf, Sender<'c, PoolBuf>)>],
    (slot, (sender, (sent, buf))): (usize, SendDone<'c>),
) -> bool {
    match sent {
        Ok(n) if n == buf.bytes_init() => {
            shared.stats.bytes_sent.add(n as u64);
            idle[slot] = Some((buf, sender));
            true
        }
        _ => false,
    }
}

/// Receives and sends back exactly what was received, until the peer
/// closes, an error, or the idle timeout.
///
/// Through [`ECHO_BUFFERS`] buffers of [`ECHO_BUFFER`] bytes, each with its
/// own sender (one reused IRP, [`wsk::Sender`]): the bytes of one receive
/// are sent from their buffer while the next receive goes into another.
/// WSK completes a send only once the peer acknowledged its bytes (it does
/// no send buffering), so with one buffer the connection would wait a
/// round trip after every buffer; here up to `ECHO_BUFFERS` sends are in
/// flight and a receive is posted whenever a buffer is free. Sends are
/// submitted in the order their bytes were received, so the echo keeps
/// the stream's order. When every buffer is being sent the loop stops
/// receiving until a send completes: a peer that does not read stalls its
/// own connection only, with at most `ECHO_BUFFERS` buffers of its bytes
/// held. Each buffer's MDL is built once and every IRP is reused: nothing
/// is allocated per round trip.
///
/// The idle timeout applies to every wait: one that sees neither a receive
/// nor a send complete for that long ends the connection.
async fn echo(shared: SharedRef, connection: &Connection) -> End {
    let stats = &shared.stats;
    let mut idle: [Option<(EchoBuf, Sender<'_, PoolBuf>)>; ECHO_BUFFERS] =
        [const { None }; ECHO_BUFFERS];
    for slot in &mut idle {
        let Some(buf) = PoolBuf::with_capacity(ECHO_BUFFER) else {
            return End::Failed;
        };
        let (Ok(buf), Ok(sender)) = (MdlBuf::new(buf), connection.sender()) else {
            return End::Failed;
        };
        *slot = Some((buf, sender));
    }
    let Ok(mut receiver) = connection.receiver() else {
        return End::Failed;
    };
    // The sends in flight, by slot: a slot is idle or sending. (Dropped
    // before `receiver` and `idle` on every return: in flight, that
    // cancels them.)
    let mut send_0 = pin!(None);
    let mut send_1 = pin!(None);
    let mut sends: [Pin<&mut Option<_>>; ECHO_BUFFERS] = [send_0.as_mut(), send_1.as_mut()];
    loop {
        // A free buffer, or wait until a send frees one.
        let Some((slot, (mut buf, sender))) = idle
            .iter_mut()
            .enumerate()
            .find_map(|(slot, entry)| entry.take().map(|entry| (slot, entry)))
        else {
            let wait = poll_fn(|cx| poll_sends(shared, &mut sends, cx));
            match within_idle(shared, wait).await {
                Some(done) => {
                    if !settle(shared, &mut idle, done) {
                        return End::Failed;
                    }
                    continue;
                }
                None => return End::Idle,
            }
        };
        buf.clear();
        // Receive while the sends in flight go on.
        let (received, buf) = {
            let mut receive = pin!(receiver.receive(buf));
            loop {
                let wait = poll_fn(|cx| {
                    if let Poll::Ready(done) = poll_sends(shared, &mut sends, cx) {
                        return Poll::Ready(Event::Sent(done.0, done.1));
                    }
                    receive.as_mut().poll(cx).map(Event::Received)
                });
                match within_idle(shared, wait).await {
                    Some(Event::Received(received)) => break received,
                    Some(Event::Sent(done_slot, done)) => {
                        if !settle(shared, &mut idle, (done_slot, done)) {
                            return End::Failed;
                        }
                    }
                    None => return End::Idle,
                }
            }
        };
        match received {
            Ok(0) => {
                // The peer closed: the echo is complete once every send
                // in flight is.
                idle[slot] = Some((buf, sender));
                while sends.iter().any(|send| send.is_some()) {
                    let wait = poll_fn(|cx| poll_sends(shared, &mut sends, cx));
                    match within_idle(shared, wait).await {
                        Some(done) => {
                            if !settle(shared, &mut idle, done) {
                                return End::Failed;
                            }
                        }
                        None => return End::Idle,
                    }
                }
                return End::PeerClosed;
            }
            Ok(n) => stats.bytes_received.add(n as u64),
            Err(_) => return End::Failed,
        }
        #[cfg(feature = "faults")]
        if shared.config.fault == crate::faults::Fault::PanicInTask {
            panic!("fault 5: a connection task panics");
        }
        // Submitted at the next wait (which polls it first), before the
        // next receive is posted.
        sends[slot].set(Some(send_owned(sender, buf)));
    }
}
