//! TCP echo: one accept loop task per listening socket, one task per
//! connection.
//!
//! A connection task receives into one buffer of [`ECHO_BUFFER`] bytes and
//! sends exactly the bytes received before it receives again, so a peer
//! that does not read stalls only its own connection (its send does not
//! complete, the task stops receiving, TCP flow control pushes back on the
//! peer) and the driver's memory per connection is that one buffer plus the
//! operation in flight. On the peer's graceful close (a zero-byte receive)
//! everything received was already echoed: the task disconnects gracefully
//! and closes, so both directions are finished before `WskCloseSocket` and
//! the peer sees a clean close. Any error closes the socket abortively.
//!
//! Every task runs on the executor's thread at PASSIVE_LEVEL; WSK wakes it
//! from completion routines at DISPATCH_LEVEL.

use ::wsk::{Connection, Disconnect, Error, ListenSocket};
use nt::*;

use crate::driver::SharedRef;
use crate::future::yield_now;
use crate::log;
use crate::pool::PoolBuf;

/// Bytes of the one buffer each connection echoes through.
pub const ECHO_BUFFER: usize = 16 * 1024;

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
                yield_now().await;
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
    }
    stats.connections_current.drop_one();
}

/// Receives and sends back exactly what was received, one buffer at a
/// time, until the peer closes or an error.
async fn echo(shared: SharedRef, connection: &Connection) -> End {
    let stats = &shared.stats;
    let Some(mut buf) = PoolBuf::with_capacity(ECHO_BUFFER) else {
        return End::Failed;
    };
    loop {
        buf.clear();
        let (received, back) = connection.receive(buf).await;
        buf = back;
        match received {
            Ok(0) => return End::PeerClosed,
            Ok(n) => stats.bytes_received.add(n as u64),
            Err(_) => return End::Failed,
        }
        let (sent, back) = connection.send(buf).await;
        buf = back;
        match sent {
            Ok(n) if n == buf.len() => stats.bytes_sent.add(n as u64),
            _ => return End::Failed,
        }
    }
}
