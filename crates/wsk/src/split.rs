//! Owned read and write halves of a [`Connection`] ([`Connection::into_split`]),
//! for a receiving task and a sending task that each own their direction.
//!
//! The halves share the connection in one non-paged pool block with a
//! count of live halves: the last half dropped drops the connection (which
//! closes it without waiting, as dropping a `Connection` does), the last
//! half's [`ReadHalf::close`] / [`WriteHalf::close`] closes it and waits,
//! and [`ReadHalf::reunite`] gives the connection back. WSK allows a send
//! and a receive of one connection in flight at once, so the halves never
//! wait for each other.
//!
//! IRQL: as [`Connection`]: every method at IRQL <= DISPATCH_LEVEL;
//! splitting allocates one non-paged block (its failure gives the
//! connection back with STATUS_INSUFFICIENT_RESOURCES).

use core::net::SocketAddr;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering, fence};

use irp_future::{IoBuf, IoBufMut};

use crate::connection::{Connection, Disconnect};
use crate::error::{BufResult, Error, Result};
use crate::events::ReceiveEvents;
use crate::pool::PoolBox;
use crate::send::SendQueue;

/// The block both halves point to.
struct Split {
    connection: Connection,
    /// Live halves (2, then 1; the half that brings it to 0 owns the
    /// block).
    halves: AtomicUsize,
}

/// One half's reference to the shared block.
struct HalfRef {
    split: NonNull<Split>,
}

// SAFETY: the block holds a `Connection` (Send + Sync) and an atomic; the
// reference only reads it, and the last one frees it once.
unsafe impl Send for HalfRef {}
// SAFETY: as above.
unsafe impl Sync for HalfRef {}

impl HalfRef {
    fn connection(&self) -> &Connection {
        // SAFETY: the block lives while a half does (this one).
        unsafe { &self.split.as_ref().connection }
    }

    /// Gives this half up: the connection if it was the last one.
    fn release(self) -> Option<Connection> {
        let split = self.split;
        core::mem::forget(self);
        // SAFETY: the block lives until the last half releases it.
        let previous = unsafe { split.as_ref() }
            .halves
            .fetch_sub(1, Ordering::Release);
        if previous != 1 {
            return None;
        }
        // Everything the other half did with the block happens before
        // this one frees it.
        fence(Ordering::Acquire);
        // SAFETY: the block came from `PoolBox::into_raw` in `into_split`
        // and the last half takes it back, once.
        let block = unsafe { PoolBox::from_raw(split) };
        Some(block.into_inner().connection)
    }
}

impl Drop for HalfRef {
    fn drop(&mut self) {
        let this = HalfRef { split: self.split };
        // The connection, if this was the last half, drops here: it closes
        // without waiting.
        drop(this.release());
    }
}

/// The receiving half of a split [`Connection`].
pub struct ReadHalf {
    half: HalfRef,
}

/// The sending half of a split [`Connection`].
pub struct WriteHalf {
    half: HalfRef,
}

impl core::fmt::Debug for ReadHalf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("ReadHalf")
            .field(self.half.connection())
            .finish()
    }
}

impl core::fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("WriteHalf")
            .field(self.half.connection())
            .finish()
    }
}

impl Connection {
    /// Splits the connection into a receiving and a sending half, each
    /// owned (`'static`, so each can move into a task of its own). The
    /// connection closes when the last half goes (see the module docs).
    /// Out of pool: the connection comes back with the error.
    pub fn into_split(self) -> core::result::Result<(ReadHalf, WriteHalf), (Error, Connection)> {
        let block = PoolBox::try_new_or_back(Split {
            connection: self,
            halves: AtomicUsize::new(2),
        })
        .map_err(|(error, split)| (error, split.connection))?;
        let split = block.into_raw();
        Ok((
            ReadHalf {
                half: HalfRef { split },
            },
            WriteHalf {
                half: HalfRef { split },
            },
        ))
    }
}

impl ReadHalf {
    /// [`Connection::receive`].
    pub async fn receive<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.half.connection().receive(buf).await
    }

    /// [`Connection::receive_full`].
    pub async fn receive_full<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.half.connection().receive_full(buf).await
    }

    /// [`Connection::receive_events`].
    pub fn receive_events(&self, depth: usize) -> Result<ReceiveEvents<'_>> {
        self.half.connection().receive_events(depth)
    }

    /// [`Connection::local_address`].
    pub async fn local_address(&self) -> Result<SocketAddr> {
        self.half.connection().local_address().await
    }

    /// [`Connection::remote_address`].
    pub async fn remote_address(&self) -> Result<SocketAddr> {
        self.half.connection().remote_address().await
    }

    /// Whether `write` is the other half of the same connection.
    pub fn is_pair_of(&self, write: &WriteHalf) -> bool {
        self.half.split == write.half.split
    }

    /// Puts the connection back together; halves of different connections
    /// come back unchanged with STATUS_INVALID_PARAMETER.
    #[allow(clippy::result_large_err)]
    pub fn reunite(
        self,
        write: WriteHalf,
    ) -> core::result::Result<Connection, (Error, ReadHalf, WriteHalf)> {
        if !self.is_pair_of(&write) {
            return Err((
                Error::from_status(nt::STATUS_INVALID_PARAMETER),
                self,
                write,
            ));
        }
        let split = self.half.split;
        // Both references to the block are here: give them up without
        // counting and take the block back.
        core::mem::forget(self);
        core::mem::forget(write);
        // SAFETY: the block came from `PoolBox::into_raw` in `into_split`;
        // its only two references (the halves) were just forgotten, so
        // nothing else uses or frees it.
        let block = unsafe { PoolBox::from_raw(split) };
        Ok(block.into_inner().connection)
    }

    /// Gives this half up; if it is the last one, closes the connection and
    /// waits as [`Connection::close`] does.
    pub async fn close(self) -> Result<()> {
        match self.half.release() {
            Some(connection) => connection.close().await,
            None => Ok(()),
        }
    }
}

impl WriteHalf {
    pub(crate) fn connection(&self) -> &Connection {
        self.half.connection()
    }

    /// [`Connection::send`].
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.half.connection().send(buf).await
    }

    /// [`Connection::send_nodelay`].
    pub async fn send_nodelay<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.half.connection().send_nodelay(buf).await
    }

    /// [`Connection::send_all`]: pipelined, the ideal send backlog kept
    /// outstanding.
    pub async fn send_all<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.half.connection().send_all(buf).await
    }

    /// [`Connection::send_queue`].
    pub fn send_queue<B: IoBuf>(&self) -> SendQueue<'_, B> {
        self.half.connection().send_queue()
    }

    /// [`Connection::disconnect`]: a graceful one sends FIN (the read half
    /// goes on receiving until the peer closes).
    pub async fn disconnect(&self, how: Disconnect) -> Result<()> {
        self.half.connection().disconnect(how).await
    }

    /// [`Connection::ideal_send_backlog`].
    pub fn ideal_send_backlog(&self) -> usize {
        self.half.connection().ideal_send_backlog()
    }

    /// [`Connection::local_address`].
    pub async fn local_address(&self) -> Result<SocketAddr> {
        self.half.connection().local_address().await
    }

    /// [`Connection::remote_address`].
    pub async fn remote_address(&self) -> Result<SocketAddr> {
        self.half.connection().remote_address().await
    }

    /// Gives this half up; if it is the last one, closes the connection and
    /// waits as [`Connection::close`] does.
    pub async fn close(self) -> Result<()> {
        match self.half.release() {
            Some(connection) => connection.close().await,
            None => Ok(()),
        }
    }
}
