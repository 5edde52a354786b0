//! Socket addresses: `core::net`'s `SocketAddr` (IPv4 and IPv6, usable in
//! `no_std`) on the API, `SOCKADDR_IN` / `SOCKADDR_IN6` towards WSK.
//!
//! [`SockAddrBuf`] is the room WSK writes an address into (an accept's
//! local and remote addresses, a receive-from's sender, a local address
//! query) or reads one from (bind, connect, send-to); it lives inside an
//! operation's resources, so it stays valid until the IRP completes.
//! Nothing here allocates or has an IRQL requirement.

pub use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use nt::wsk::*;
use nt::*;

/// A `SOCKADDR_STORAGE`: room for any socket address WSK reads or writes.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct SockAddrBuf(SOCKADDR_STORAGE);

impl core::fmt::Debug for SockAddrBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.get() {
            Some(address) => write!(f, "SockAddrBuf({address})"),
            None => write!(f, "SockAddrBuf(family {})", self.0.ss_family),
        }
    }
}

impl SockAddrBuf {
    /// Room for an address WSK will write (family AF_UNSPEC until then).
    pub const fn empty() -> Self {
        Self(SOCKADDR_STORAGE {
            ss_family: AF_UNSPEC,
            __ss_pad1: [0; 6],
            __ss_align: 0,
            __ss_pad2: [0; 112],
        })
    }

    /// `address` as a `SOCKADDR_IN` or `SOCKADDR_IN6`.
    pub fn new(address: &SocketAddr) -> Self {
        Self(sockaddr_from(address))
    }

    /// The address WSK wrote (or [`Self::new`] stored); `None` for a family
    /// other than AF_INET / AF_INET6.
    pub fn get(&self) -> Option<SocketAddr> {
        let source: *const SOCKADDR_STORAGE = &self.0;
        // SAFETY: a SOCKADDR_STORAGE is readable for every family's
        // structure.
        unsafe { read_sockaddr(source.cast()) }
    }

    /// The pointer to hand to WSK.
    pub fn as_mut_ptr(&mut self) -> PSOCKADDR {
        let target: *mut SOCKADDR_STORAGE = &mut self.0;
        target.cast()
    }

    /// A raw `SOCKADDR` pointer to an address WSK only reads during the
    /// call (read-only use of the same storage).
    pub fn as_ptr(&self) -> *const SOCKADDR {
        let source: *const SOCKADDR_STORAGE = &self.0;
        source.cast()
    }
}

/// The WSK address family of `address`.
pub fn family_of(address: &SocketAddr) -> ADDRESS_FAMILY {
    match address {
        SocketAddr::V4(_) => AF_INET,
        SocketAddr::V6(_) => AF_INET6,
    }
}

/// The wildcard address with port 0 of `address`'s family (`0.0.0.0:0` or
/// `[::]:0`): what a connection socket binds to before connecting.
pub fn unspecified_like(address: &SocketAddr) -> SocketAddr {
    match address {
        SocketAddr::V4(_) => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0)),
    }
}
