//! wsk: async Winsock Kernel sockets, in both of WSK's styles, on
//! irp-future.
//!
//! - [`Registration`] / [`Provider`]: `WskRegister`, capture of the
//!   provider NPI (no wait, infinite or timed), RAII release and
//!   deregistration (which waits, as `WskDeregister` does).
//! - [`ListenSocket`] (bind, accept, local address), [`Connection`]
//!   (connect, send, receive, disconnect, close, addresses) and
//!   [`DatagramSocket`] (bind, send_to, receive_from), for IPv4 and IPv6
//!   ([`SocketAddr`] from `core::net`).
//! - **Functions style** (one IRP per operation): owned buffers in, the
//!   same buffers out with the byte count ([`BufResult`]); a receive queue
//!   of configurable depth that keeps that many receives outstanding, as a
//!   `futures_core::Stream` ([`ReceiveQueue`], [`ReceiveFromQueue`]).
//! - **Callbacks style** (WSK event callbacks): streams of accepted
//!   connections, received data and datagrams ([`AcceptEvents`],
//!   [`ReceiveEvents`], [`ReceiveFromEvents`]) whose items are the
//!   provider's own buffers, retained and released with `WskRelease` when
//!   dropped (zero-copy), behind a bounded queue that answers
//!   STATUS_DATA_NOT_ACCEPTED (STATUS_REQUEST_NOT_ACCEPTED for accepts)
//!   when full instead of growing.
//! - **Name resolution** at PASSIVE_LEVEL: [`Provider::resolve`]
//!   (`WskGetAddressInfo`; an owned [`AddrInfoList`], the provider's chain
//!   freed exactly once, even when the future is dropped in flight) and
//!   [`Provider::name_of`] (`WskGetNameInfo`).
//! - Closing releases the retained indications first, lets WSK cancel the
//!   pending IRPs, and completes only when the provider has completed
//!   everything; dropping a socket closes it without waiting. Every
//!   socket reserves its close IRP when it is created, so it can always be
//!   closed, even out of pool.
//!
//! Errors are NTSTATUS values ([`Error`]); nothing here panics on a kernel
//! path or allocates where the IRQL forbids it: allocation failures are
//! STATUS_INSUFFICIENT_RESOURCES.
//!
//! # IRQL contracts
//!
//! - Registration, deregistration (drop of [`Registration`]) and waiting
//!   captures: PASSIVE_LEVEL.
//! - Socket creation, every socket operation, polling and dropping every
//!   future, stream and indication: IRQL <= DISPATCH_LEVEL. The first poll
//!   of an operation allocates its IRP and node (non-paged pool).
//! - The event callbacks run at DISPATCH_LEVEL on provider threads; they
//!   only queue (or refuse) and wake, never call WSK, never block.
//! - Completion wakes come from provider threads at DISPATCH_LEVEL: the
//!   executor's wakers must be callable there (kernel-executor's are).
//!
//! Kernel calls go through `nt` only, with WDK names; the same code runs on
//! the simulated kernel (`nt::sim`, host) and, with the `kernel` feature,
//! on Windows.
#![no_std]

extern crate alloc;

mod accept_queue;
mod addr;
mod batch;
mod builder;
mod callbacks;
mod chain;
mod connection;
mod control;
mod datagram;
mod error;
mod events;
mod listen;
mod multicast;
mod ops;
mod pool;
pub mod queue;
mod registration;
mod resolve;
mod reuse;
pub mod send;
mod shared;
mod socket;
mod split;
mod sync;

pub use accept_queue::AcceptQueue;
pub use addr::{
    IpAddr, Ipv4Addr, Ipv6Addr, SockAddrBuf, SocketAddr, SocketAddrV4, SocketAddrV6, family_of,
    unspecified_like,
};
pub use builder::ConnectOptions;
pub use chain::MdlChain;
pub use connection::{Connection, Disconnect};
pub use control::PacketInfo;
pub use datagram::{DatagramSocket, ReceivedFrom};
pub use error::{BufResult, Error, Result};
pub use events::{
    AcceptEvents, DataIndication, Datagram, DatagramIndication, ReceiveEvents, ReceiveFromEvents,
};
pub use irp_future::{IoBuf, IoBufMut, MdlBuf};
pub use listen::{Accepted, ListenOptions, ListenSocket};
pub use pool::POOL_TAG;
pub use queue::{Closed, QueueFailed, ReceiveFromQueue, ReceiveQueue, Received};
pub use registration::{CaptureWait, Provider, Registration};
pub use resolve::{AddrInfo, AddrInfoList, Hints};
pub use reuse::{DatagramSender, Receiver, Sender};
pub use send::SendQueue;
pub use split::{ReadHalf, WriteHalf};
