//! TCP echo: one accept loop task per listening socket, one task per
//! connection.
//!
//! A connection task receives into one buffer of [`ECHO_BUFFER`] bytes and
//! sends exactly the bytes received before it receives again, so a peer
//! that does not read stalls only its own connection (its send does not
//! complete, the task stops receiving, TCP flow control pushes back on the
//! peer) and the driver's memory per connection is that one buffer, its
//! MDL, and one reused IRP per direction (nothing is allocated per round
//! trip). On the peer's graceful close (a zero-byte receive)
//! everything received was already echoed: the task disconnects gracefully
//! and closes, so both directions are finished before `WskCloseSocket` and
//! the peer sees a clean close. Any error closes the socket abortively.
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

use core::future::Future;
use core::time::Duration;

use ::wsk::{Connection, Disconnect, Error, IoBuf, ListenSocket, MdlBuf};
use nt::*;

use crate::driver::SharedRef;
use crate::log;
use crate::pool::PoolBuf;

/// Bytes of the one buffer each connection echoes through.
pub const ECHO_BUFFER: usize = 16 * 1024;

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

/// Receives and sends back exactly what was received, one buffer at a
/// time, until the peer closes, an error, or the idle timeout. The buffer's
/// MDL is built once and each direction reuses one IRP ([`wsk::Receiver`],
/// [`wsk::Sender`]): nothing is allocated per round trip.
async fn echo(shared: SharedRef, connection: &Connection) -> End {
    let stats = &shared.stats;
    let Some(buf) = PoolBuf::with_capacity(ECHO_BUFFER) else {
        return End::Failed;
    };
    let Ok(mut buf) = MdlBuf::new(buf) else {
        return End::Failed;
    };
    let (Ok(mut receiver), Ok(mut sender)) = (connection.receiver(), connection.sender()) else {
        return End::Failed;
    };
    loop {
        buf.clear();
        let Some((received, back)) = within_idle(shared, receiver.receive(buf)).await else {
            return End::Idle;
        };
        buf = back;
        match received {
            Ok(0) => return End::PeerClosed,
            Ok(n) => stats.bytes_received.add(n as u64),
            Err(_) => return End::Failed,
        }
        #[cfg(feature = "faults")]
        match shared.config.fault {
            crate::faults::Fault::PanicInTask => panic!("fault 5: a connection task panics"),
            crate::faults::Fault::LostWake => {
                let send = core::pin::pin!(sender.send(buf));
                let Some((sent, back)) = within_idle(shared, crate::faults::LoseWake(send)).await
                else {
                    return End::Idle;
                };
                buf = back;
                match sent {
                    Ok(n) if n == buf.bytes_init() => stats.bytes_sent.add(n as u64),
                    _ => return End::Failed,
                }
                continue;
            }
            _ => {}
        }
        let Some((sent, back)) = within_idle(shared, sender.send(buf)).await else {
            return End::Idle;
        };
        buf = back;
        match sent {
            Ok(n) if n == buf.bytes_init() => stats.bytes_sent.add(n as u64),
            _ => return End::Failed,
        }
    }
}
