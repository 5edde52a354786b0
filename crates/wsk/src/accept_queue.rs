//! Functions style accepting: [`AcceptQueue`] keeps `depth` `WskAccept`
//! IRPs outstanding on a [`ListenSocket`] and yields the connections as
//! they complete, as a `futures_core::Stream`.
//!
//! WSK has no listen backlog parameter (a listening socket listens from
//! `WskBind` on; the transport's own backlog holds connections nobody has
//! accepted yet): the accepts a driver keeps outstanding are its queue.
//! One outstanding `WskAccept` serves one connection per round trip of
//! the driver's accept loop; N of them let N connections complete at once.
//!
//! - Each slot is one `WskAccept` with its own IRP and new-socket block;
//!   a completed slot is submitted again on the next poll.
//! - Accepts complete in any order; the stream yields them in completion
//!   order (they are interchangeable).
//! - An accept that fails (a reset peer, ...) is yielded as an `Err` and
//!   the stream goes on; a failure that ends the listener
//!   (STATUS_CANCELLED, STATUS_INVALID_DEVICE_STATE, forced close) ends it
//!   after that error. Out of pool with nothing outstanding the stream
//!   yields STATUS_INSUFFICIENT_RESOURCES rather than waiting for nothing.
//! - Dropping the queue cancels the outstanding accepts (`IoCancelIrp`);
//!   a connection WSK accepted anyway is closed (reset) when its IRP
//!   completes.
//!
//! IRQL: created, polled and dropped at IRQL <= DISPATCH_LEVEL.

use alloc::vec::Vec;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::Stream;
use irp_future::{Allocated, Completed, IrpOp};
use nt::*;

use crate::addr::SockAddrBuf;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::listen::{Accepted, ListenSocket};
use crate::ops::{self, AcceptRes, NewSocket, Submit};
use crate::shared::Kind;

type AcceptOp = IrpOp<AcceptRes, Allocated, Submit<AcceptRes>>;

/// One accept of the queue.
enum Slot {
    /// To submit.
    Empty,
    /// Submitted (or about to be, at its first poll).
    InFlight(AcceptOp),
    /// Completed, not yielded yet.
    Done(Completed<AcceptRes>),
}

/// A stream of connections accepted with `depth` `WskAccept` IRPs kept
/// outstanding ([`ListenSocket::accept_queue`]).
pub struct AcceptQueue<'a> {
    listener: &'a ListenSocket,
    /// One outstanding accept per slot.
    slots: Vec<Slot>,
    /// Where the next poll starts looking (fairness between slots).
    next: usize,
    ended: bool,
}

impl core::fmt::Debug for AcceptQueue<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AcceptQueue")
            .field("depth", &self.slots.len())
            .field("outstanding", &self.outstanding())
            .field("ended", &self.ended)
            .finish()
    }
}

impl ListenSocket {
    /// Functions style: a stream of connections with `depth` `WskAccept`
    /// IRPs kept outstanding (see [`AcceptQueue`]). `depth` 0 is
    /// STATUS_INVALID_PARAMETER. The accepts are submitted when the stream
    /// is first polled. IRQL <= DISPATCH_LEVEL.
    pub fn accept_queue(&self, depth: usize) -> Result<AcceptQueue<'_>> {
        if depth == 0 {
            return Err(Error::from_status(STATUS_INVALID_PARAMETER));
        }
        let mut slots = Vec::new();
        slots
            .try_reserve_exact(depth)
            .map_err(|_| Error::from_status(STATUS_INSUFFICIENT_RESOURCES))?;
        slots.resize_with(depth, || Slot::Empty);
        Ok(AcceptQueue {
            listener: self,
            slots,
            next: 0,
            ended: false,
        })
    }
}

impl AcceptQueue<'_> {
    /// The number of slots.
    pub fn depth(&self) -> usize {
        self.slots.len()
    }

    /// Accepts outstanding now.
    pub fn outstanding(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::InFlight(_)))
            .count()
    }

    /// Starts an accept in every empty slot; stops at the first that cannot
    /// get its resources (out of pool), whose error it returns.
    fn refill(&mut self) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        let handle = self.listener.handle();
        for slot in self.slots.iter_mut().filter(|s| matches!(s, Slot::Empty)) {
            let resources = AcceptRes {
                new: NewSocket::new(Kind::Connection, handle.shared().registration().clone_ref())?,
                listen: handle.ptr(),
                local: SockAddrBuf::empty(),
                remote: SockAddrBuf::empty(),
            };
            // SAFETY: as ops::call: submit_accept hands the IRP to WskAccept
            // or fails without handing it over; the new-socket block and the
            // address out-parameters live in the resources until completion.
            *slot = Slot::InFlight(unsafe {
                IrpOp::allocated(resources, ops::submit_accept as Submit<_>)
            });
        }
        Ok(())
    }
}

/// Whether an accept failure means the listener accepts no more.
fn ends_the_listener(status: NTSTATUS) -> bool {
    matches!(
        status,
        STATUS_CANCELLED
            | STATUS_INVALID_DEVICE_STATE
            | STATUS_FILE_FORCED_CLOSED
            | STATUS_INVALID_HANDLE
            | STATUS_NOT_SUPPORTED
            | STATUS_DEVICE_NOT_READY
    )
}

impl Stream for AcceptQueue<'_> {
    type Item = Result<Accepted>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let refilled = this.refill();
        // Poll every accept in flight (a new one is submitted at its first
        // poll), so all `depth` are outstanding after this call.
        for slot in &mut this.slots {
            if let Slot::InFlight(op) = slot
                && let Poll::Ready(done) = Pin::new(op).poll(cx)
            {
                *slot = Slot::Done(done);
            }
        }
        let depth = this.slots.len();
        for step in 0..depth {
            let index = (this.next + step) % depth;
            if !matches!(this.slots[index], Slot::Done(_)) {
                continue;
            }
            let Slot::Done(done) = core::mem::replace(&mut this.slots[index], Slot::Empty) else {
                continue;
            };
            this.next = (index + 1) % depth;
            let AcceptRes {
                new, local, remote, ..
            } = done.resources;
            return Poll::Ready(Some(match new.finish(done.status, done.information) {
                Ok(handle) => Ok(Accepted {
                    connection: Connection::from_handle(handle),
                    local: local.get(),
                    remote: remote.get(),
                }),
                Err(error) => {
                    if ends_the_listener(error.status()) {
                        this.ended = true;
                    }
                    Err(error)
                }
            }));
        }
        if let Err(error) = refilled
            && this.outstanding() == 0
            && !this.ended
        {
            // Nothing outstanding and nothing can be started: say so
            // rather than wait for a completion that cannot come.
            return Poll::Ready(Some(Err(error)));
        }
        if this.ended && this.outstanding() == 0 {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}
