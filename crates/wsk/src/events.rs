//! Callbacks style: streams of what the event callbacks queued, and the
//! indications they yield.
//!
//! An indication ([`DataIndication`], [`DatagramIndication`]) is the
//! provider's own buffer chain, retained by the callback (STATUS_PENDING)
//! and handed out without a copy; dropping it gives it back with
//! `WskRelease` (the exact head the callback got). While indications are
//! out the socket stays open: closing waits for them (see
//! [`crate::Connection::close`]).
//!
//! The streams re-arm the provider after backpressure: a connection whose
//! callback answered STATUS_DATA_NOT_ACCEPTED gets a zero-length
//! `WskReceive` (WSK indicates again once a receive completed); a datagram
//! socket gets its callback re-enabled (WSK disables a per-socket callback
//! that refused data).
//!
//! IRQL: streams are polled and dropped, indications read and dropped, at
//! IRQL <= DISPATCH_LEVEL.

use core::marker::PhantomData;
use core::net::SocketAddr;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

use futures_core::Stream;
use irp_future::{Allocated, IrpOp};
use nt::access::mdl_next;
use nt::wsk::*;
use nt::*;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::listen::Accepted;
use crate::ops::{self, RearmRes, Submit};
use crate::shared::{
    self, Event, Polled, SocketHandle, SocketShared, forget_consumer, poll_event, suppress_again,
};

// === Reading provider buffers ===

/// The byte slices a `WSK_BUF` describes, in order.
///
/// # Safety
/// The MDL chain is live and mapped in system space (a provider
/// indication, or a locked / non-paged buffer) for `'a`.
unsafe fn wsk_buf_chunks<'a>(buf: &WSK_BUF) -> WskBufChunks<'a> {
    WskBufChunks {
        mdl: buf.Mdl,
        skip: buf.Offset as usize,
        left: buf.Length as usize,
        _life: PhantomData,
    }
}

/// Iterator over the byte slices of a `WSK_BUF`.
struct WskBufChunks<'a> {
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

/// Received connection data still in the provider's buffers (a retained
/// `WSK_DATA_INDICATION` chain). Read it with [`Self::chunks`] or
/// [`Self::copy_to`]; dropping it releases it (`WskRelease`).
pub struct DataIndication {
    shared: NonNull<SocketShared>,
    head: PWSK_DATA_INDICATION,
    bytes: usize,
    callback: u64,
}

// SAFETY: the chain is provider memory readable from any thread; release
// goes through the thread-safe provider.
unsafe impl Send for DataIndication {}
// SAFETY: shared access only reads the chain.
unsafe impl Sync for DataIndication {}

impl core::fmt::Debug for DataIndication {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DataIndication")
            .field("head", &self.head)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl DataIndication {
    /// The bytes indicated.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// Whether no byte was indicated.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The data as byte slices, in order (zero-copy).
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut element = self.head;
        core::iter::from_fn(move || {
            if element.is_null() {
                return None;
            }
            // SAFETY: a retained chain element (live until released).
            let this = unsafe { &*element };
            element = this.Next;
            // SAFETY: provider memory, live until we release the chain.
            Some(unsafe { wsk_buf_chunks(&this.Buffer) })
        })
        .flatten()
    }

    /// Copies the data into `out`; returns the bytes copied.
    pub fn copy_to(&self, out: &mut [u8]) -> usize {
        copy_chunks(self.chunks(), out)
    }

    /// The raw chain head (still owned by this value).
    pub fn as_raw(&self) -> PWSK_DATA_INDICATION {
        self.head
    }
}

impl Drop for DataIndication {
    fn drop(&mut self) {
        let event = Event::Data {
            head: self.head,
            bytes: self.bytes,
            callback: self.callback,
        };
        // SAFETY: the indication holds one reference of its socket and the
        // retained chain, given back once.
        unsafe { shared::give_back(self.shared, event) };
    }
}

// === Datagram indications ===

/// Received datagrams still in the provider's buffers (a retained
/// `WSK_DATAGRAM_INDICATION` chain of one or more datagrams). Iterate with
/// [`Self::iter`]; dropping it releases the chain (`WskRelease`).
pub struct DatagramIndication {
    shared: NonNull<SocketShared>,
    head: PWSK_DATAGRAM_INDICATION,
    callback: u64,
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

    /// The raw chain head (still owned by this value).
    pub fn as_raw(&self) -> PWSK_DATAGRAM_INDICATION {
        self.head
    }
}

impl Drop for DatagramIndication {
    fn drop(&mut self) {
        let event = Event::Datagrams {
            head: self.head,
            callback: self.callback,
        };
        // SAFETY: as DataIndication's drop.
        unsafe { shared::give_back(self.shared, event) };
    }
}

// === Streams ===

/// How many polls a stream retries enabling events on a connection that
/// the accept callback just handed out (WSK records its event table only
/// once the callback has returned).
const ENABLE_RETRIES: u32 = 100_000;

type RearmOp = IrpOp<RearmRes, Allocated, Submit<RearmRes>>;

/// Received data of a connection, as indications
/// ([`Connection::receive_events`]). Yields `Err` once if the connection
/// is reset or dies, and ends (`None`) after the peer's graceful close.
pub struct ReceiveEvents<'a> {
    connection: &'a Connection,
    depth: usize,
    enable: Option<(Error, u32)>,
    rearm: Option<RearmOp>,
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
        let enable = match connection.enable_receive_events(depth) {
            Ok(()) => None,
            Err(error)
                if connection.handle().shared().accepted_by_event()
                    && matches!(
                        error.status(),
                        STATUS_INVALID_PARAMETER | STATUS_INVALID_DEVICE_STATE
                    ) =>
            {
                Some((error, 0))
            }
            Err(error) => return Err(error),
        };
        Ok(Self {
            connection,
            depth,
            enable,
            rearm: None,
        })
    }

    fn shared(&self) -> &SocketShared {
        self.connection.handle().shared()
    }

    /// Events refused so far because the queue was full (each one a
    /// STATUS_DATA_NOT_ACCEPTED answer).
    pub fn refused(&self) -> u64 {
        self.shared().state().refused
    }

    fn poll_rearm(&mut self, cx: &mut Context<'_>) {
        let Some(op) = &mut self.rearm else {
            return;
        };
        if let Poll::Ready(done) = Pin::new(op).poll(cx) {
            self.rearm = None;
            if !NT_SUCCESS(done.status) {
                suppress_again(self.shared());
            }
        }
    }

    fn start_rearm(&mut self, cx: &mut Context<'_>) {
        if self.rearm.is_some() {
            // The receive in flight was submitted before this refusal and
            // re-armed nothing of it: re-arm again once it completes (its
            // completion wakes this stream).
            suppress_again(self.shared());
            return;
        }
        let resources = RearmRes::new(self.connection.handle().socket());
        // SAFETY: submit_rearm hands the IRP to WskReceive or returns a
        // failure without handing it over (see ops::call).
        let op = unsafe { IrpOp::allocated(resources, ops::submit_rearm as Submit<RearmRes>) };
        self.rearm = Some(op);
        self.poll_rearm(cx);
    }
}

use core::future::Future;

impl Stream for ReceiveEvents<'_> {
    type Item = Result<DataIndication>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some((error, tries)) = this.enable {
            match this.connection.enable_receive_events(this.depth) {
                Ok(()) => this.enable = None,
                Err(_) if tries < ENABLE_RETRIES => {
                    this.enable = Some((error, tries + 1));
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Err(error) => {
                    this.enable = None;
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
        this.poll_rearm(cx);
        let (polled, rearm) = poll_event(this.shared(), cx);
        if let Some(refusing) = rearm {
            this.shared().wait_callback_returned(refusing);
            this.start_rearm(cx);
        }
        let shared = this.connection.handle().ptr();
        match polled {
            Polled::Event(Event::Data {
                head,
                bytes,
                callback,
            }) => Poll::Ready(Some(Ok(DataIndication {
                shared,
                head,
                bytes,
                callback,
            }))),
            Polled::Event(other) => {
                // Not an event of a connection: give it back.
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

impl Drop for ReceiveEvents<'_> {
    fn drop(&mut self) {
        if self.rearm.take().is_some() {
            // Its outcome is unknown: the next stream re-arms again (an
            // extra zero-length receive is harmless).
            suppress_again(self.shared());
        }
        forget_consumer(self.shared());
    }
}

/// Received datagrams of a datagram socket, as indication chains
/// ([`crate::DatagramSocket::receive_from_events`]).
pub struct ReceiveFromEvents<'a> {
    handle: &'a SocketHandle,
}

impl core::fmt::Debug for ReceiveFromEvents<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReceiveFromEvents")
            .field("socket", &self.handle.socket())
            .finish()
    }
}

impl<'a> ReceiveFromEvents<'a> {
    pub(crate) fn new(handle: &'a SocketHandle) -> Self {
        Self { handle }
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
        let (polled, rearm) = poll_event(this.handle.shared(), cx);
        if let Some(refusing) = rearm {
            this.handle.shared().wait_callback_returned(refusing);
            let status = ops::set_event_mask(this.handle.socket(), WSK_EVENT_RECEIVE_FROM);
            if !NT_SUCCESS(status) {
                suppress_again(this.handle.shared());
            }
        }
        let shared = this.handle.ptr();
        match polled {
            Polled::Event(Event::Datagrams { head, callback }) => {
                Poll::Ready(Some(Ok(DatagramIndication {
                    shared,
                    head,
                    callback,
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

impl Drop for ReceiveFromEvents<'_> {
    fn drop(&mut self) {
        forget_consumer(self.handle.shared());
    }
}

/// Connections accepted by the accept callback
/// ([`crate::ListenSocket::accept_events`]).
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
    pub(crate) fn new(handle: &'a SocketHandle) -> Self {
        Self { handle }
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
                // The queue's reference to the accepted block becomes the
                // connection's handle; the listener's event reference goes.
                // SAFETY: the accepted block's handle reference, taken once.
                let connection = Connection::from_handle(unsafe { SocketHandle::from_raw(socket) });
                // SAFETY: the event's reference on the listener.
                unsafe { shared::release_ref(shared) };
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
        forget_consumer(self.handle.shared());
    }
}
