//! Pipelined sends: keeping the ideal send backlog outstanding.
//!
//! WSK does no send buffering: a `WskSend` completes once its bytes were
//! sent (acknowledged by the peer), so one send at a time leaves the
//! connection idle for a round trip after every buffer. Windows publishes
//! how many bytes a connection should have outstanding to keep it busy,
//! the *ideal send backlog* (`SIO_WSK_QUERY_IDEAL_SEND_BACKLOG`, updated
//! through `WskSendBacklogEvent`). Both senders here keep that many bytes
//! in flight, in several `WskSend` requests:
//!
//! - [`Connection::send_all`] sends one buffer in segments (one MDL for
//!   the buffer, a `WSK_BUF` per segment);
//! - [`SendQueue`] ([`Connection::send_queue`]) sends a sequence of
//!   buffers, each whole, and hands them back for reuse.
//!
//! The backlog is queried once per connection (and the send-backlog event
//! enabled, so later changes arrive by themselves); while it is unknown
//! the senders keep [`DEFAULT_BACKLOG`] bytes outstanding. Sends complete
//! in order (TCP); a failure stops further submissions and is reported,
//! with the bytes that went out before it ([`Error::transferred`]), once
//! every send in flight has completed.
//!
//! Cancellation: dropping a sender with sends in flight cancels them
//! (`IoCancelIrp`); as for [`Connection::send`], their bytes may still go
//! out, so a dropped sender leaves the stream in an unknown state: close
//! the connection.
//!
//! IRQL: <= DISPATCH_LEVEL (futures polled and dropped there).

use alloc::collections::VecDeque;
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use core::task::{Context, Poll};

use irp_future::{Allocated, Completed, IoBuf, IrpOp, MdlBuf, Submission};
use nt::wsk::*;
use nt::*;

use crate::connection::Connection;
use crate::error::{BufResult, Error, Result, check_transferred};
use crate::ops::{self, Lent, SendRes, Submit};
use crate::pool::PoolArc;
use crate::shared::{SocketShared, dispatch_entry};

/// The bytes kept outstanding while the ideal send backlog is unknown.
pub const DEFAULT_BACKLOG: usize = 64 * 1024;

/// The largest segment [`Connection::send_all`] hands one `WskSend`.
const SEGMENT_MAX: usize = 64 * 1024;

/// The smallest segment (unless fewer bytes are left).
const SEGMENT_MIN: usize = 16 * 1024;

/// The most buffers a [`SendQueue`] keeps for [`SendQueue::take_buffer`];
/// older ones are dropped.
const SPARE_MAX: usize = 64;

/// Makes sure the connection's ideal send backlog is known: queried once
/// (and the send-backlog event enabled for its changes).
async fn watch_backlog(connection: &Connection) {
    let shared = connection.handle().shared();
    if shared.backlog_watched.swap(true, Ordering::AcqRel) {
        return;
    }
    if let Ok(bytes) = connection.query_ideal_send_backlog().await {
        shared.set_ideal_backlog(bytes);
    }
    let on = shared.registration().static_events() | shared.inherited_events();
    if on & WSK_EVENT_SEND_BACKLOG == 0 {
        // Best effort: without it the first answer stays.
        let _ = ops::set_event_mask(shared, WSK_EVENT_SEND_BACKLOG);
    }
}

/// The bytes to keep outstanding now.
fn limit(connection: &Connection) -> usize {
    match connection.handle().shared().ideal_backlog() {
        0 => DEFAULT_BACKLOG,
        bytes => bytes,
    }
}

// === Sends in flight ===

type SendOp<R> = IrpOp<R, Allocated, Submit<R>>;

enum Slot<R: Send + 'static> {
    InFlight(SendOp<R>),
    Done(Completed<R>),
}

/// Sends in flight, in submission order, with their sizes.
struct Window<R: Send + 'static> {
    slots: VecDeque<(Slot<R>, usize)>,
    bytes: usize,
}

impl<R: Send + 'static> Window<R> {
    fn new() -> Self {
        Self {
            slots: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Submits a send of `bytes` bytes (polled once: that submits it).
    fn submit(&mut self, resources: R, submit: Submit<R>, bytes: usize, cx: &mut Context<'_>) {
        // SAFETY: every submit function used here hands the IRP to exactly
        // one WSK provider function (which completes it once) or returns
        // `NotSubmitted` without handing it over; the provider uses the
        // resources only until it completes the IRP (see ops::call).
        let mut op = unsafe { IrpOp::allocated(resources, submit) };
        let slot = match Pin::new(&mut op).poll(cx) {
            Poll::Ready(done) => Slot::Done(done),
            Poll::Pending => Slot::InFlight(op),
        };
        self.slots.push_back((slot, bytes));
        self.bytes += bytes;
    }

    /// The oldest send once it completed (`None`: nothing in flight).
    fn poll_oldest(&mut self, cx: &mut Context<'_>) -> Poll<Option<Completed<R>>> {
        let Some((slot, _)) = self.slots.front_mut() else {
            return Poll::Ready(None);
        };
        if let Slot::InFlight(op) = slot {
            match Pin::new(op).poll(cx) {
                Poll::Ready(done) => *slot = Slot::Done(done),
                Poll::Pending => return Poll::Pending,
            }
        }
        match self.slots.pop_front() {
            Some((Slot::Done(done), bytes)) => {
                self.bytes -= bytes;
                Poll::Ready(Some(done))
            }
            // (The front was made Done above.)
            _ => Poll::Ready(None),
        }
    }
}

/// Folds a completed send into the running count: the bytes sent before
/// the first failure, and that failure.
fn account(
    done_status: NTSTATUS,
    information: usize,
    sent: &mut usize,
    failure: &mut Option<Error>,
) {
    match check_transferred(done_status, information) {
        Ok(n) if failure.is_none() => *sent += n,
        Ok(_) => {}
        Err(error) => {
            if failure.is_none() {
                *sent += error.transferred();
                *failure = Some(error);
            }
        }
    }
}

// === send_all ===

/// One buffer shared by its segments in flight: each reads it through the
/// one MDL; the buffer comes back once the last one completed.
struct Whole<B: IoBuf> {
    buf: MdlBuf<B>,
}

// SAFETY: shared access only reads the MDL pointer (the provider reads the
// buffer's bytes through it); the buffer itself is taken back only through
// the last reference (`PoolArc::try_unwrap`).
unsafe impl<B: IoBuf> Sync for Whole<B> {}

/// A segment of a [`Whole`] buffer: its `WSK_BUF` lives here until the
/// send completes.
struct SegmentRes<B: IoBuf> {
    shared: NonNull<SocketShared>,
    whole: PoolArc<Whole<B>>,
    wsk: WSK_BUF,
}

// SAFETY: the socket block is shared through atomics and locks; the buffer
// is Send and only read.
unsafe impl<B: IoBuf> Send for SegmentRes<B> {}

fn submit_segment<B: IoBuf>(irp: PIRP, r: &mut SegmentRes<B>) -> Submission {
    let wsk: *mut WSK_BUF = &mut r.wsk;
    // (The buffer stays alive with `r.whole` until completion.)
    let _ = &r.whole;
    ops::on_socket(r.shared, |socket| {
        match dispatch_entry!(socket, WSK_PROVIDER_CONNECTION_DISPATCH, WskSend) {
            // SAFETY: WskSend with our IRP; the WSK_BUF lives in the
            // resources and its MDL in the shared buffer until completion.
            Some(send) => Submission::Submitted(unsafe { send(socket, wsk, 0, irp) }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}

impl Connection {
    /// Sends all the initialised bytes of `buf`, keeping the connection's
    /// ideal send backlog outstanding in segments (see the
    /// [module docs](crate::send)): not bound by round trips. Completes when
    /// every byte was sent (acknowledged); returns the bytes sent and the
    /// buffer. On error [`Error::transferred`] bytes (a prefix) went out.
    pub async fn send_all<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        let total = buf.bytes_init();
        if total == 0 {
            return (Ok(0), buf);
        }
        watch_backlog(self).await;
        let whole = match MdlBuf::new(buf) {
            Ok(whole) => whole,
            Err((status, buf)) => return (Err(Error::from_status(status)), buf),
        };
        let mdl = whole.mdl();
        let whole = match PoolArc::try_new_or_back(Whole { buf: whole }) {
            Ok(whole) => whole,
            Err((error, whole)) => return (Err(error), whole.buf.into_inner()),
        };
        let shared = self.handle().ptr();
        let mut window: Window<SegmentRes<B>> = Window::new();
        let mut offset = 0;
        let mut sent = 0;
        let mut failure = None;
        poll_fn(|cx| {
            loop {
                let limit = limit(self);
                while failure.is_none() && offset < total && window.bytes < limit {
                    let segment = (limit / 4)
                        .clamp(SEGMENT_MIN, SEGMENT_MAX)
                        .min(total - offset);
                    let resources = SegmentRes {
                        shared,
                        whole: whole.clone(),
                        wsk: WSK_BUF {
                            Mdl: mdl,
                            Offset: offset as ULONG,
                            Length: segment as SIZE_T,
                        },
                    };
                    window.submit(resources, submit_segment::<B>, segment, cx);
                    offset += segment;
                }
                match window.poll_oldest(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Ready(Some(done)) => account(
                        done.status,
                        done.information as usize,
                        &mut sent,
                        &mut failure,
                    ),
                }
            }
        })
        .await;
        // SAFETY: the window is empty: every segment's resources (each
        // holding a clone) were dropped with its completion, and no other
        // clone was made; this is the last reference.
        let buf = unsafe { PoolArc::into_inner_unchecked(whole) }
            .buf
            .into_inner();
        match failure {
            None => (Ok(sent), buf),
            Some(error) => (Err(error.with_transferred(sent)), buf),
        }
    }

    /// A queue of whole-buffer sends that keeps the ideal send backlog
    /// outstanding (see [`SendQueue`]).
    pub fn send_queue<B: IoBuf>(&self) -> SendQueue<'_, B> {
        SendQueue {
            connection: self,
            window: Window::new(),
            spare: VecDeque::new(),
            sent: 0,
            failure: None,
        }
    }
}

// === SendQueue ===

/// Whole-buffer sends kept in flight up to the connection's ideal send
/// backlog ([`Connection::send_queue`]): [`Self::send`] waits only while
/// that many bytes are outstanding; buffers of completed sends come back
/// through [`Self::take_buffer`]; [`Self::flush`] waits for the rest. A
/// failure stops the queue: later sends are refused with it.
pub struct SendQueue<'a, B: IoBuf> {
    connection: &'a Connection,
    window: Window<SendRes<B>>,
    spare: VecDeque<B>,
    sent: usize,
    failure: Option<Error>,
}

impl<B: IoBuf> core::fmt::Debug for SendQueue<'_, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SendQueue")
            .field("connection", self.connection)
            .field("in_flight", &self.window.bytes)
            .field("sent", &self.sent)
            .finish()
    }
}

impl<B: IoBuf> SendQueue<'_, B> {
    /// Takes what completed, without waiting.
    fn reap(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Some(done)) = self.window.poll_oldest(cx) {
            self.finished(done);
        }
    }

    fn finished(&mut self, done: Completed<SendRes<B>>) {
        account(
            done.status,
            done.information as usize,
            &mut self.sent,
            &mut self.failure,
        );
        self.keep(done.resources.lent.buf.into_inner());
    }

    fn keep(&mut self, buf: B) {
        if self.spare.len() == SPARE_MAX {
            self.spare.pop_front();
        }
        self.spare.push_back(buf);
    }

    /// Queues a send of `buf`'s initialised bytes: waits while the ideal
    /// send backlog is outstanding, then submits it and returns (the
    /// buffer comes back through [`Self::take_buffer`] once sent). Fails
    /// (giving `buf` back) once a send failed, or if its MDL cannot be
    /// built.
    pub async fn send(&mut self, buf: B) -> core::result::Result<(), (Error, B)> {
        watch_backlog(self.connection).await;
        poll_fn(|cx| {
            loop {
                self.reap(cx);
                if self.failure.is_some() || self.window.bytes < limit(self.connection) {
                    return Poll::Ready(());
                }
                match self.window.poll_oldest(cx) {
                    Poll::Ready(Some(done)) => self.finished(done),
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        if let Some(error) = self.failure {
            return Err((error.with_transferred(self.sent), buf));
        }
        let len = buf.bytes_init();
        if len == 0 {
            self.keep(buf);
            return Ok(());
        }
        let lent = Lent::build(buf, IoBuf::bytes_init)?;
        let mut resources = Some(SendRes {
            shared: self.connection.handle().ptr(),
            lent,
            flags: 0,
        });
        poll_fn(|cx| {
            if let Some(resources) = resources.take() {
                self.window
                    .submit(resources, ops::submit_send::<B>, len, cx);
            }
            Poll::Ready(())
        })
        .await;
        Ok(())
    }

    /// A buffer whose send completed, for reuse (oldest first).
    pub fn take_buffer(&mut self) -> Option<B> {
        self.spare.pop_front()
    }

    /// Waits until every queued send completed. Returns the bytes sent
    /// through this queue, or the first failure (with the bytes sent
    /// before it, [`Error::transferred`]).
    pub async fn flush(&mut self) -> Result<usize> {
        poll_fn(|cx| {
            loop {
                match self.window.poll_oldest(cx) {
                    Poll::Ready(Some(done)) => self.finished(done),
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        match self.failure {
            None => Ok(self.sent),
            Some(error) => Err(error.with_transferred(self.sent)),
        }
    }

    /// The bytes in flight now.
    pub fn in_flight(&self) -> usize {
        self.window.bytes
    }

    /// The bytes sent (completed) so far.
    pub fn sent(&self) -> usize {
        self.sent
    }
}
