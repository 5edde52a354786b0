//! Callbacks style: streams of what the event callbacks queued, and the
//! indications they yield.
//!
//! An indication ([`DataIndication`], [`DatagramIndication`]) is the
//! provider's own buffer chain, retained by the callback (STATUS_PENDING)
//! and handed out without a copy once that callback returned; dropping it
//! gives it back with `WskRelease` (the exact head the callback got). While
//! indications are out the socket stays open: closing waits for them (see
//! [`crate::Connection::close`]). Data the provider asked back at once
//! (`WSK_FLAG_RELEASE_ASAP`) comes as a copy, as does what a final receive
//! gets after the peer's disconnect: the same type, nothing to release.
//!
//! The streams re-arm the provider after backpressure: a connection whose
//! callback answered STATUS_DATA_NOT_ACCEPTED gets a zero-length
//! `WskReceive` (WSK indicates again once a receive completed); a datagram
//! socket gets its callback re-enabled (WSK disables a per-socket callback
//! that refused data). A re-arm that fails is yielded as an error and tried
//! again at the next poll: a stream never stalls silently.
//!
//! A connection's stream ends (`None`) only after the peer's graceful
//! disconnect *and* a final `WskReceive` completed with 0 bytes: data the
//! provider still held when it indicated the disconnect (refused earlier,
//! or not indicated yet: WSK may indicate a disconnect before buffered
//! data) comes first, in order (see [`ReceiveEvents`]).
//!
//! One stream per socket at a time (a second one is
//! STATUS_INVALID_DEVICE_STATE until the first is dropped).
//!
//! IRQL: streams are polled and dropped, indications read and dropped, at
//! IRQL <= DISPATCH_LEVEL.

use alloc::vec::Vec;
use core::future::Future;
use core::marker::PhantomData;
use core::net::SocketAddr;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

use futures_core::Stream;
use irp_future::{Allocated, Completed, IrpOp, MdlBuf};
use nt::access::mdl_next;
use nt::wsk::*;
use nt::*;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::listen::Accepted;
use crate::ops::{self, EventMaskRes, Lent, RearmRes, RecvRes, Submit};
use crate::shared::{
    self, Event, Polled, SocketHandle, SocketShared, Taken, end_stream, poll_event, start_stream,
    suppress_again,
};

// === Reading provider buffers ===

/// The byte slices a `WSK_BUF` describes, in order.
///
/// # Safety
/// The MDL chain is live and mapped in system space (a provider
/// indication, or a locked / non-paged buffer) for `'a`.
pub(crate) unsafe fn wsk_buf_chunks<'a>(buf: &WSK_BUF) -> WskBufChunks<'a> {
    WskBufChunks {
        mdl: buf.Mdl,
        skip: buf.Offset as usize,
        left: buf.Length as usize,
        _life: PhantomData,
    }
}

/// Iterator over the byte slices of a `WSK_BUF`.
pub(crate) struct WskBufChunks<'a> {
    mdl: PMDL,
    skip: usize,
    left: usize,
    _life: PhantomData<&'a [u8]>,
}

impl<'a> Iterator for WskBufChunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while self.left > 0 && !self.mdl.is_null() {
            let mdl = self.mdl;
            // SAFETY: a live MDL of the chain (constructor's contract).
            self.mdl = unsafe { mdl_next(mdl) };
            // SAFETY: as above.
            let count = unsafe { MmGetMdlByteCount(mdl) } as usize;
            if self.skip >= count {
                self.skip -= count;
                continue;
            }
            let priority = NormalPagePriority as ULONG | MdlMappingNoExecute;
            // SAFETY: as above; provider MDLs are non-paged or locked.
            let base = unsafe { MmGetSystemAddressForMdlSafe(mdl, priority) }.cast::<u8>();
            if base.is_null() {
                // Cannot be mapped (out of system PTEs): stop rather than
                // guess; `len()` still reports the indicated size.
                self.left = 0;
                return None;
            }
            let n = (count - self.skip).min(self.left);
            let start = base.wrapping_add(self.skip);
            // SAFETY: `count` bytes are mapped at `base`; skip + n <= count.
            let chunk = unsafe { core::slice::from_raw_parts(start, n) };
            self.skip = 0;
            self.left -= n;
            return Some(chunk);
        }
        None
    }
}

fn copy_chunks<'a>(chunks: impl Iterator<Item = &'a [u8]>, out: &mut [u8]) -> usize {
    let mut at = 0;
    for chunk in chunks {
        let n = chunk.len().min(out.len() - at);
        out[at..at + n].copy_from_slice(&chunk[..n]);
        at += n;
        if at == out.len() {
            break;
        }
    }
    at
}

// === Data indications ===

/// Received connection data: still in the provider's buffers (a retained
/// `WSK_DATA_INDICATION` chain, zero-copy; dropping it releases it with
/// `WskRelease`), or a copy (see the module docs). Read it with
/// [`Self::chunks`] or [`Self::copy_to`].
pub struct DataIndication {
    inner: DataInner,
}

enum DataInner {
    Retained {
        shared: NonNull<SocketShared>,
        head: PWSK_DATA_INDICATION,
        bytes: usize,
    },
    Copied(Vec<u8>),
}

// SAFETY: the chain is provider memory readable from any thread; release
// goes through the thread-safe provider; a copy is owned data.
unsafe impl Send for DataIndication {}
// SAFETY: shared access only reads the chain or the copy.
unsafe impl Sync for DataIndication {}

impl core::fmt::Debug for DataIndication {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DataIndication")
            .field("bytes", &self.len())
            .field("retained", &self.is_retained())
            .finish()
    }
}

impl DataIndication {
    fn copied(data: Vec<u8>) -> Self {
        Self {
            inner: DataInner::Copied(data),
        }
    }

    /// The bytes indicated.
    pub fn len(&self) -> usize {
        match &self.inner {
            DataInner::Retained { bytes, .. } => *bytes,
            DataInner::Copied(data) => data.len(),
        }
    }

    /// Whether no byte was indicated.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is the provider's own chain (released when dropped)
    /// rather than a copy.
    pub fn is_retained(&self) -> bool {
        matches!(self.inner, DataInner::Retained { .. })
    }

    /// The data as byte slices, in order (zero-copy).
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let (mut element, copied) = match &self.inner {
            DataInner::Retained { head, .. } => (*head, None),
            DataInner::Copied(data) => (core::ptr::null_mut(), Some(data.as_slice())),
        };
        let retained = core::iter::from_fn(move || {
            if element.is_null() {
                return None;
            }
            // SAFETY: a retained chain element (live until released).
            let this = unsafe { &*element };
            element = this.Next;
            // SAFETY: provider memory, live until we release the chain.
            Some(unsafe { wsk_buf_chunks(&this.Buffer) })
        })
        .flatten();
        copied.into_iter().filter(|c| !c.is_empty()).chain(retained)
    }

    /// Copies the data into `out`; returns the bytes copied.
    pub fn copy_to(&self, out: &mut [u8]) -> usize {
        copy_chunks(self.chunks(), out)
    }

    /// The raw chain head (still owned by this value; null for a copy).
    pub fn as_raw(&self) -> PWSK_DATA_INDICATION {
        match &self.inner {
            DataInner::Retained { head, .. } => *head,
            DataInner::Copied(_) => core::ptr::null_mut(),
        }
    }
}

impl Drop for DataIndication {
    fn drop(&mut self) {
        if let DataInner::Retained {
            shared,
            head,
            bytes,
        } = self.inner
        {
            // SAFETY: the indication holds its socket and the retained
            // chain, given back once.
            unsafe { shared::give_back(shared, Event::Data { head, bytes }) };
        }
    }
}

// === Datagram indications ===

/// Received datagrams still in the provider's buffers (a retained
/// `WSK_DATAGRAM_INDICATION` chain of one or more datagrams). Iterate with
/// [`Self::iter`]; dropping it releases the chain (`WskRelease`).
pub struct DatagramIndication {
    shared: NonNull<SocketShared>,
    head: PWSK_DATAGRAM_INDICATION,
    flags: ULONG,
}

// SAFETY: as DataIndication.
unsafe impl Send for DatagramIndication {}
// SAFETY: as DataIndication.
unsafe impl Sync for DatagramIndication {}

impl core::fmt::Debug for DatagramIndication {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DatagramIndication")
            .field("head", &self.head)
            .field("datagrams", &self.count())
            .finish()
    }
}

/// One datagram of a [`DatagramIndication`].
#[derive(Clone, Copy)]
pub struct Datagram<'a> {
    element: &'a WSK_DATAGRAM_INDICATION,
}

impl core::fmt::Debug for Datagram<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Datagram")
            .field("len", &self.len())
            .field("remote", &self.remote())
            .field("packet_info", &self.packet_info())
            .finish()
    }
}

impl<'a> Datagram<'a> {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.element.Buffer.Length as usize
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sender (`None` if WSK gave no address).
    pub fn remote(&self) -> Option<SocketAddr> {
        // SAFETY: the provider's address, live with the chain.
        unsafe { read_sockaddr(self.element.RemoteAddress) }
    }

    /// Its control information (`CMSGHDR` objects, e.g. `IP_PKTINFO`), as
    /// the provider handed it (empty if none).
    pub fn control(&self) -> &'a [u8] {
        let length = self.element.ControlInfoLength as usize;
        if self.element.ControlInfo.is_null() || length == 0 {
            return &[];
        }
        // SAFETY: the provider's control buffer of that length, live with
        // the chain.
        unsafe { core::slice::from_raw_parts(self.element.ControlInfo.cast::<u8>(), length) }
    }

    /// Its destination address and arrival interface, when the socket
    /// asked for them ([`crate::DatagramSocket::set_packet_info`]) and WSK
    /// put an `IN_PKTINFO` / `IN6_PKTINFO` message in its control
    /// information; `None` otherwise.
    pub fn packet_info(&self) -> Option<crate::PacketInfo> {
        crate::control::parse_packet_info(self.control())
    }

    /// Its bytes as slices (zero-copy).
    pub fn chunks(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        // SAFETY: provider memory, live until the chain is released (the
        // borrow of the indication).
        unsafe { wsk_buf_chunks(&self.element.Buffer) }
    }

    /// Copies it into `out`; returns the bytes copied.
    pub fn copy_to(&self, out: &mut [u8]) -> usize {
        copy_chunks(self.chunks(), out)
    }
}

impl DatagramIndication {
    /// The datagrams of the chain.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> + '_ {
        let mut element = self.head;
        core::iter::from_fn(move || {
            // SAFETY: a retained chain element (live until released).
            let this = unsafe { element.as_ref() }?;
            element = this.Next;
            Some(Datagram { element: this })
        })
    }

    /// How many datagrams the chain holds.
    pub fn count(&self) -> usize {
        self.iter().count()
    }

    /// The datagrams came as a link-layer broadcast or to a broadcast
    /// address (`MSG_BCAST`).
    pub fn broadcast(&self) -> bool {
        self.flags & MSG_BCAST != 0
    }

    /// The datagrams came to a multicast address (`MSG_MCAST`).
    pub fn multicast(&self) -> bool {
        self.flags & MSG_MCAST != 0
    }

    /// The raw chain head (still owned by this value).
    pub fn as_raw(&self) -> PWSK_DATAGRAM_INDICATION {
        self.head
    }
}

impl Drop for DatagramIndication {
    fn drop(&mut self) {
        let event = Event::Datagrams {
            head: self.head,
            flags: self.flags,
        };
        // SAFETY: as DataIndication's drop.
        unsafe { shared::give_back(self.shared, event) };
    }
}

// === Streams ===

type RearmOp = IrpOp<RearmRes, Allocated, Submit<RearmRes>>;
type TailOp = IrpOp<RecvRes<Vec<u8>>, Allocated, Submit<RecvRes<Vec<u8>>>>;
type DisableOp = IrpOp<EventMaskRes, Allocated, Submit<EventMaskRes>>;

/// The bytes a final receive asks for at a time.
const TAIL_CHUNK: usize = 16 * 1024;

/// How a connection's stream ends after the peer's graceful disconnect.
enum Ending {
    /// Not closed yet.
    Open,
    /// Disabling the receive event, with an IRP: it completes once every
    /// receive callback in progress returned.
    Disabling(DisableOp),
    /// Handing out what the callbacks queued before the disable (older
    /// than anything a receive gets now).
    Draining,
    /// Receiving what the provider still holds (a receive in flight, or
    /// none between two).
    Receiving(Option<TailOp>),
    /// The end was yielded.
    Ended,
}

/// Received data of a connection, as indications
/// ([`Connection::receive_events`]). Yields `Err` for a reset or dead
/// connection (then ends), and for a failed re-arm (tried again at the
/// next poll); ends (`None`) after the peer's graceful close once the
/// provider holds no more data.
///
/// The end: once the peer's disconnect was indicated and every queued
/// indication was handed out, the stream disables the receive event (with
/// an IRP, which WSK completes once the receive callbacks in progress
/// returned), hands out what those queued, then receives (`WskReceive`
/// into pool copies) what the provider still holds until a receive
/// completes with 0 bytes. The receive event stays disabled; a later
/// stream enables it again. With a static receive event (never disabled)
/// a callback still in progress at that point could be handed out after
/// the copies that follow it.
pub struct ReceiveEvents<'a> {
    connection: &'a Connection,
    rearm: Option<RearmOp>,
    ending: Ending,
}

impl core::fmt::Debug for ReceiveEvents<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReceiveEvents")
            .field("connection", self.connection)
            .finish()
    }
}

impl<'a> ReceiveEvents<'a> {
    pub(crate) fn new(connection: &'a Connection, depth: usize) -> Result<Self> {
        if depth == 0 {
            return Err(Error::from_status(STATUS_INVALID_PARAMETER));
        }
        let handle = connection.handle();
        let shared = handle.shared();
        start_stream(shared)?;
        let started = Self {
            connection,
            rearm: None,
            ending: Ending::Open,
        };
        shared.ensure_ring(depth)?;
        // Enable what is neither static nor inherited from the listener
        // (enabling those again is refused: they are on already).
        let wanted = WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT;
        let on = shared.registration().static_events() | shared.inherited_events();
        let mask = wanted & !on;
        if mask != 0 {
            crate::error::check(ops::set_event_mask(shared, mask))?;
        }
        // Data refused before the queue existed waits in the provider: the
        // first poll re-arms it.
        Ok(started)
    }

    fn shared(&self) -> &SocketShared {
        self.connection.handle().shared()
    }

    /// Events refused so far because the queue was full (each one a
    /// STATUS_DATA_NOT_ACCEPTED answer).
    pub fn refused(&self) -> u64 {
        self.shared().state().refused
    }

    /// Polls the re-arm in flight: `Some(error)` if it failed (the provider
    /// stays suppressed: the next poll re-arms again).
    fn poll_rearm(&mut self, cx: &mut Context<'_>) -> Option<Error> {
        let op = self.rearm.as_mut()?;
        let Poll::Ready(done) = Pin::new(op).poll(cx) else {
            return None;
        };
        self.rearm = None;
        if NT_SUCCESS(done.status) {
            return None;
        }
        suppress_again(self.shared());
        Some(Error::from_status(done.status))
    }

    fn start_rearm(&mut self, cx: &mut Context<'_>) -> Option<Error> {
        if self.rearm.is_some() {
            // The receive in flight was submitted before this refusal and
            // re-armed nothing of it: re-arm again once it completes (its
            // completion wakes this stream).
            suppress_again(self.shared());
            return None;
        }
        let resources = RearmRes::new(self.connection.handle().ptr());
        // SAFETY: submit_rearm hands the IRP to WskReceive or returns
        // `NotSubmitted` without handing it over (see ops::call).
        let op = unsafe { IrpOp::allocated(resources, ops::submit_rearm as Submit<RearmRes>) };
        self.rearm = Some(op);
        self.poll_rearm(cx)
    }

    /// The peer closed and everything queued was handed out: disable the
    /// receive event (unless it is static: then straight to the copies).
    fn start_ending(&mut self) {
        let shared = self.shared();
        // A later stream enables it again.
        shared.set_inherited_events(shared.inherited_events() & !WSK_EVENT_RECEIVE);
        if shared.registration().static_events() & WSK_EVENT_RECEIVE != 0 {
            self.ending = Ending::Receiving(None);
            return;
        }
        let resources = EventMaskRes::new(
            self.connection.handle().ptr(),
            WSK_EVENT_RECEIVE | WSK_EVENT_DISABLE,
        );
        // SAFETY: submit_event_mask hands the IRP to WskControlSocket or
        // returns `NotSubmitted` without handing it over.
        let op =
            unsafe { IrpOp::allocated(resources, ops::submit_event_mask as Submit<EventMaskRes>) };
        self.ending = Ending::Disabling(op);
    }

    /// The stream after the peer's disconnect (see the type's docs).
    fn poll_ending(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<DataIndication>>> {
        loop {
            match &mut self.ending {
                Ending::Open => return Poll::Pending,
                Ending::Ended => return Poll::Ready(None),
                Ending::Disabling(op) => {
                    let Poll::Ready(_done) = Pin::new(op).poll(cx) else {
                        return Poll::Pending;
                    };
                    // Whatever the outcome (a failure leaves the event on:
                    // the copies may then overtake a callback in progress,
                    // as with a static event).
                    self.ending = Ending::Draining;
                }
                Ending::Draining => match shared::take_owned(self.shared(), cx) {
                    Taken::Event(event) => {
                        if let Some(item) = self.indication(event, cx) {
                            return Poll::Ready(Some(Ok(item)));
                        }
                    }
                    Taken::Waiting => return Poll::Pending,
                    Taken::Empty => self.ending = Ending::Receiving(None),
                },
                Ending::Receiving(tail) => {
                    if tail.is_none() {
                        match self.start_tail() {
                            Ok(op) => self.ending = Ending::Receiving(Some(op)),
                            Err(error) => {
                                self.ending = Ending::Ended;
                                return Poll::Ready(Some(Err(error)));
                            }
                        }
                        continue;
                    }
                    let Some(op) = tail.as_mut() else {
                        continue;
                    };
                    let Poll::Ready(done) = Pin::new(op).poll(cx) else {
                        return Poll::Pending;
                    };
                    return match tail_item(done) {
                        None => {
                            self.ending = Ending::Ended;
                            Poll::Ready(None)
                        }
                        Some(Ok(data)) => {
                            self.ending = Ending::Receiving(None);
                            Poll::Ready(Some(Ok(data)))
                        }
                        Some(Err(error)) => {
                            self.ending = Ending::Ended;
                            Poll::Ready(Some(Err(error)))
                        }
                    };
                }
            }
        }
    }

    /// A receive for a pool copy of what the provider holds.
    fn start_tail(&self) -> Result<TailOp> {
        let mut buf = Vec::new();
        if buf.try_reserve_exact(TAIL_CHUNK).is_err() {
            return Err(Error::from_status(STATUS_INSUFFICIENT_RESOURCES));
        }
        let lent = Lent::build(buf, |b: &Vec<u8>| b.capacity()).map_err(|(error, _)| error)?;
        let resources = RecvRes {
            shared: self.connection.handle().ptr(),
            lent,
            flags: 0,
        };
        // SAFETY: submit_receive hands the IRP to WskReceive or returns
        // `NotSubmitted` without handing it over.
        Ok(unsafe {
            IrpOp::allocated(
                resources,
                ops::submit_receive::<Vec<u8>> as Submit<RecvRes<Vec<u8>>>,
            )
        })
    }

    /// An event taken from the queue as the indication handed out (`None`
    /// for one that is not a connection's: given back, the consumer
    /// woken).
    fn indication(&self, event: Event, cx: &mut Context<'_>) -> Option<DataIndication> {
        let shared = self.connection.handle().ptr();
        match event {
            Event::Data { head, bytes } => Some(DataIndication {
                inner: DataInner::Retained {
                    shared,
                    head,
                    bytes,
                },
            }),
            Event::Copied(data) => {
                // A copy holds nothing of the provider's.
                // SAFETY: the event's hold, given up once.
                unsafe { shared::release_held(shared) };
                Some(DataIndication::copied(data))
            }
            other => {
                // Not an event of a connection: give it back.
                // SAFETY: the event holds one reference.
                unsafe { shared::give_back(shared, other) };
                cx.waker().wake_by_ref();
                None
            }
        }
    }
}

/// What a final receive gives: data, the end, or an error (which ends the
/// stream too).
fn tail_item(done: Completed<RecvRes<Vec<u8>>>) -> Option<Result<DataIndication>> {
    let mut buf: MdlBuf<Vec<u8>> = done.resources.lent.buf;
    let n = ops::received(&mut buf, done.status, done.information as usize);
    match crate::error::check(done.status) {
        Ok(()) if n == 0 => None,
        Ok(()) => Some(Ok(DataIndication::copied(buf.into_inner()))),
        Err(error) => Some(Err(error.with_transferred(n))),
    }
}

impl Stream for ReceiveEvents<'_> {
    type Item = Result<DataIndication>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if !matches!(this.ending, Ending::Open) {
            return this.poll_ending(cx);
        }
        if let Some(error) = this.poll_rearm(cx) {
            return Poll::Ready(Some(Err(error)));
        }
        let (polled, rearm) = poll_event(this.shared(), cx);
        if rearm
            && let Some(error) = this.start_rearm(cx)
            && !matches!(polled, Polled::Event(_))
        {
            // (With an event to hand out, that comes first; the re-arm is
            // tried again at the next poll.)
            return Poll::Ready(Some(Err(error)));
        }
        match polled {
            Polled::Event(event) => match this.indication(event, cx) {
                Some(item) => Poll::Ready(Some(Ok(item))),
                None => Poll::Pending,
            },
            Polled::Closed => {
                // The peer closed: what the provider still holds, then the
                // end.
                this.start_ending();
                this.poll_ending(cx)
            }
            Polled::Failed(status) => {
                this.ending = Ending::Ended;
                Poll::Ready(Some(Err(Error::from_status(status))))
            }
            Polled::Pending => Poll::Pending,
        }
    }
}

impl Drop for ReceiveEvents<'_> {
    fn drop(&mut self) {
        if self.rearm.take().is_some() {
            // Its outcome is unknown: the next stream re-arms again (an
            // extra zero-length receive is harmless).
            suppress_again(self.shared());
        }
        end_stream(self.shared());
    }
}

/// Received datagrams of a datagram socket, as indication chains
/// ([`crate::DatagramSocket::receive_from_events`]). Yields `Err` for a
/// dead socket (then ends) and for a failed re-enable (tried again at the
/// next poll).
pub struct ReceiveFromEvents<'a> {
    handle: &'a SocketHandle,
    ended: bool,
}

impl core::fmt::Debug for ReceiveFromEvents<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReceiveFromEvents")
            .field("socket", &self.handle.socket())
            .finish()
    }
}

impl<'a> ReceiveFromEvents<'a> {
    pub(crate) fn new(handle: &'a SocketHandle, depth: usize) -> Result<Self> {
        if depth == 0 {
            return Err(Error::from_status(STATUS_INVALID_PARAMETER));
        }
        let shared = handle.shared();
        start_stream(shared)?;
        let started = Self {
            handle,
            ended: false,
        };
        shared.ensure_ring(depth)?;
        if shared.registration().static_events() & WSK_EVENT_RECEIVE_FROM == 0 {
            crate::error::check(ops::set_event_mask(shared, WSK_EVENT_RECEIVE_FROM))?;
        }
        Ok(started)
    }

    /// Indications refused so far because the queue was full.
    pub fn refused(&self) -> u64 {
        self.handle.shared().state().refused
    }
}

impl Stream for ReceiveFromEvents<'_> {
    type Item = Result<DatagramIndication>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let shared = this.handle.shared();
        let (polled, rearm) = poll_event(shared, cx);
        // A per-socket callback that refused was disabled by WSK: enable it
        // again (a static one stays on; WSK dropped what it refused).
        if rearm && shared.registration().static_events() & WSK_EVENT_RECEIVE_FROM == 0 {
            let status = ops::set_event_mask(shared, WSK_EVENT_RECEIVE_FROM);
            if !NT_SUCCESS(status) {
                // Tried again at the next poll; an event to hand out comes
                // first.
                suppress_again(shared);
                if !matches!(polled, Polled::Event(_)) {
                    return Poll::Ready(Some(Err(Error::from_status(status))));
                }
            }
        }
        let shared = this.handle.ptr();
        match polled {
            Polled::Event(Event::Datagrams { head, flags }) => {
                Poll::Ready(Some(Ok(DatagramIndication {
                    shared,
                    head,
                    flags,
                })))
            }
            Polled::Event(other) => {
                // SAFETY: the event holds one reference.
                unsafe { shared::give_back(shared, other) };
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Polled::Closed => {
                this.ended = true;
                Poll::Ready(None)
            }
            Polled::Failed(status) => {
                this.ended = true;
                Poll::Ready(Some(Err(Error::from_status(status))))
            }
            Polled::Pending => Poll::Pending,
        }
    }
}

impl Drop for ReceiveFromEvents<'_> {
    fn drop(&mut self) {
        end_stream(self.handle.shared());
    }
}

/// Connections accepted by the accept callback
/// ([`crate::ListenSocket::accept_events`]), handed out once the callback
/// returned.
pub struct AcceptEvents<'a> {
    handle: &'a SocketHandle,
}

impl core::fmt::Debug for AcceptEvents<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AcceptEvents")
            .field("socket", &self.handle.socket())
            .finish()
    }
}

impl<'a> AcceptEvents<'a> {
    pub(crate) fn new(handle: &'a SocketHandle, depth: usize, inherit: ULONG) -> Result<Self> {
        if depth == 0 {
            return Err(Error::from_status(STATUS_INVALID_PARAMETER));
        }
        let shared = handle.shared();
        start_stream(shared)?;
        let started = Self { handle };
        shared.ensure_ring(depth)?;
        let on = shared.registration().static_events();
        let mask = (WSK_EVENT_ACCEPT | inherit) & !on;
        if mask != 0 {
            crate::error::check(ops::set_event_mask(shared, mask))?;
        }
        shared.set_inherited_events((inherit | on) & (WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT));
        Ok(started)
    }

    /// Connections refused so far because the queue was full (WSK reset
    /// them).
    pub fn refused(&self) -> u64 {
        self.handle.shared().state().refused
    }
}

impl Stream for AcceptEvents<'_> {
    type Item = Result<Accepted>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let (polled, _) = poll_event(this.handle.shared(), cx);
        let shared = this.handle.ptr();
        match polled {
            Polled::Event(Event::Accepted {
                socket,
                local,
                remote,
            }) => {
                // The queue's handle of the accepted block becomes the
                // connection's; the listener's hold of the event goes.
                // SAFETY: the accepted block's handle, taken once.
                let connection = Connection::from_handle(unsafe { SocketHandle::from_raw(socket) });
                // SAFETY: the event's hold on the listener.
                unsafe { shared::release_held(shared) };
                Poll::Ready(Some(Ok(Accepted {
                    connection,
                    local,
                    remote,
                })))
            }
            Polled::Event(other) => {
                // SAFETY: the event holds one reference.
                unsafe { shared::give_back(shared, other) };
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Polled::Closed => Poll::Ready(None),
            Polled::Failed(status) => Poll::Ready(Some(Err(Error::from_status(status)))),
            Polled::Pending => Poll::Pending,
        }
    }
}

impl Drop for AcceptEvents<'_> {
    fn drop(&mut self) {
        end_stream(self.handle.shared());
    }
}
