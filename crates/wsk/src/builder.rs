//! Sockets configured before they connect: [`ConnectOptions`] and
//! [`Connection::connect_with`].
//!
//! `WskSocketConnect` creates, binds and connects in one call, so nothing
//! can be set in between. Options that only take effect before the
//! connection exists (`SO_RCVBUF`: the TCP window scale is negotiated in
//! the SYN; `SO_EXCLUSIVEADDRUSE` / `SO_REUSEADDR`: "before bind") need
//! the long way, which this module takes: `WskSocket` (connection
//! socket), `WskControlSocket` for each option, `WskBind`, `WskConnect`.
//! A failure at any step closes the socket (dropping its handle) and
//! returns the step's status.
//!
//! IRQL: as [`Connection`]: <= DISPATCH_LEVEL, nothing blocks.

use core::net::SocketAddr;
use core::ptr::NonNull;

use irp_future::Submission;
use nt::wsk::*;
use nt::*;

use crate::addr::{SockAddrBuf, family_of, unspecified_like};
use crate::connection::Connection;
use crate::error::{Error, Result, check};
use crate::ops::{self, on_socket};
use crate::registration::Provider;
use crate::shared::{Kind, SocketShared, dispatch_entry};
use crate::socket;

/// Options of a connection socket, applied before it binds and connects
/// ([`Connection::connect_with`]). The default is what
/// [`Connection::connect`] does (an ephemeral local address, no option).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The local address (`None`: the unspecified address of the remote's
    /// family, port 0).
    pub local: Option<SocketAddr>,
    /// `SO_RCVBUF` in bytes: the receive window (set before connect, so
    /// the window scale offered in the SYN covers it).
    pub receive_buffer: Option<ULONG>,
    /// `SO_EXCLUSIVEADDRUSE` (before bind): no other socket may share the
    /// local address, whatever its options (Windows' `SO_REUSEADDR` lets
    /// another socket share, or take over, an address).
    pub exclusive_address: bool,
    /// `SO_REUSEADDR` (before bind; exclusive with `exclusive_address`).
    pub reuse_address: bool,
    /// `SO_KEEPALIVE`.
    pub keep_alive: bool,
    /// `TCP_NODELAY` (no Nagle coalescing of small sends).
    pub no_delay: bool,
}

impl ConnectOptions {
    /// Whether these are the defaults, for which one `WskSocketConnect`
    /// does the whole job.
    fn is_plain(&self) -> bool {
        let Self { local, .. } = *self;
        *self
            == Self {
                local,
                ..Self::default()
            }
    }

    /// The options in the order they must be set: (level, code, value),
    /// and how many there are. Bad combinations are refused here, before
    /// any socket exists.
    fn settings(&self) -> Result<([socket::PreBind; 5], usize)> {
        if self.exclusive_address && self.reuse_address {
            // The option pages: setting one after the other fails; say so
            // before creating anything.
            return Err(Error::from_status(STATUS_INVALID_PARAMETER));
        }
        let mut settings = [(0, 0, 0); 5];
        let mut count = 0;
        let mut push = |setting| {
            settings[count] = setting;
            count += 1;
        };
        if self.exclusive_address {
            push((SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1));
        }
        if self.reuse_address {
            push((SOL_SOCKET, SO_REUSEADDR, 1));
        }
        if let Some(bytes) = self.receive_buffer {
            push((SOL_SOCKET, SO_RCVBUF, bytes));
        }
        if self.keep_alive {
            push((SOL_SOCKET, SO_KEEPALIVE, 1));
        }
        if self.no_delay {
            push((IPPROTO_TCP, TCP_NODELAY, 1));
        }
        Ok((settings, count))
    }
}

impl Connection {
    /// Connects to `remote` with `options` set first (see the module
    /// docs): `WskSocket`, the options, `WskBind`, `WskConnect`. With
    /// default options (any local address) this is
    /// [`Connection::connect_from`].
    ///
    /// Errors: STATUS_INVALID_PARAMETER for a local address of another
    /// family than `remote` or both address-sharing options; then what WSK
    /// reports for the step that failed (STATUS_ADDRESS_ALREADY_EXISTS,
    /// STATUS_ACCESS_DENIED from the bind, STATUS_CONNECTION_REFUSED, ...).
    pub async fn connect_with(
        provider: &Provider,
        remote: SocketAddr,
        options: &ConnectOptions,
    ) -> Result<Self> {
        let local = options.local.unwrap_or_else(|| unspecified_like(&remote));
        if family_of(&local) != family_of(&remote) {
            return Err(Error::from_status(STATUS_INVALID_PARAMETER));
        }
        if options.is_plain() {
            return Self::connect_from(provider, local, remote).await;
        }
        let (settings, count) = options.settings()?;
        let handle =
            socket::create_bound(provider, local, Kind::Connection, &settings[..count]).await?;
        let resources = ConnectRes {
            shared: handle.ptr(),
            remote: SockAddrBuf::new(&remote),
        };
        check(ops::call(resources, submit_connect).await.status)?;
        Ok(Self::from_handle(handle))
    }
}

/// `WskConnect`'s resources: the socket and the remote address, alive
/// until the IRP completes.
struct ConnectRes {
    shared: NonNull<SocketShared>,
    remote: SockAddrBuf,
}

// SAFETY: the socket block is pool memory that outlives the operation (the
// caller holds its handle across the await); the address is owned.
unsafe impl Send for ConnectRes {}

fn submit_connect(irp: PIRP, r: &mut ConnectRes) -> Submission {
    let remote = r.remote.as_mut_ptr();
    on_socket(r.shared, |socket| {
        match dispatch_entry!(socket, WSK_PROVIDER_CONNECTION_DISPATCH, WskConnect) {
            // SAFETY: WskConnect with our IRP on a bound connection
            // socket; the address lives in the resources until completion.
            Some(connect) => Submission::Submitted(unsafe { connect(socket, remote, 0, irp) }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}
