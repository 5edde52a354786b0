//! What every socket category shares: creation (`WskSocket`), bind, the
//! local address, socket options, enabling event callbacks.
//!
//! IRQL: every function here may be called at IRQL <= DISPATCH_LEVEL
//! (the futures are polled there too); they never block.

use core::net::SocketAddr;

use nt::wsk::*;
use nt::*;

use crate::addr::{SockAddrBuf, family_of};
use crate::error::{Error, Result, check};
use crate::ops::{self, AddressRes, BindRes, NewSocket, OptionRes, SocketRes};
use crate::registration::Provider;
use crate::shared::{Kind, SocketHandle};

/// Creates a socket of `kind` for `family` (`WskSocket`).
pub(crate) async fn create(
    provider: &Provider,
    family: ADDRESS_FAMILY,
    kind: Kind,
) -> Result<SocketHandle> {
    let resources = SocketRes {
        new: NewSocket::new(kind)?,
        client: provider.client(),
        dispatch: provider.dispatch().WskSocket,
        family,
        kind,
    };
    let done = ops::call(resources, ops::submit_socket).await;
    done.resources.new.finish(done.status, done.information)
}

/// Creates a socket of `kind` for `local`'s family, applies `options` and
/// binds it to `local`.
pub(crate) async fn create_bound(
    provider: &Provider,
    local: SocketAddr,
    kind: Kind,
    options: &[(ULONG, ULONG, ULONG)],
) -> Result<SocketHandle> {
    let handle = create(provider, family_of(&local), kind).await?;
    for &(level, code, value) in options {
        set_option(&handle, level, code, value).await?;
    }
    bind(&handle, local).await?;
    Ok(handle)
}

/// `WskBind`.
pub(crate) async fn bind(handle: &SocketHandle, local: SocketAddr) -> Result<()> {
    let resources = BindRes {
        socket: handle.socket(),
        kind: handle.shared().kind(),
        address: SockAddrBuf::new(&local),
    };
    check(ops::call(resources, ops::submit_bind).await.status)
}

/// `WskGetLocalAddress` (`remote` = false) or `WskGetRemoteAddress`.
pub(crate) async fn address(handle: &SocketHandle, remote: bool) -> Result<SocketAddr> {
    let resources = AddressRes {
        socket: handle.socket(),
        kind: handle.shared().kind(),
        remote,
        address: SockAddrBuf::empty(),
    };
    let done = ops::call(resources, ops::submit_address).await;
    check(done.status)?;
    done.resources
        .address
        .get()
        .ok_or(Error::from_status(STATUS_INVALID_ADDRESS))
}

/// `WskControlSocket(WskSetOption)` of a ULONG option.
pub(crate) async fn set_option(
    handle: &SocketHandle,
    level: ULONG,
    code: ULONG,
    value: ULONG,
) -> Result<()> {
    let resources = OptionRes {
        socket: handle.socket(),
        request: WskSetOption,
        level,
        code,
        value,
    };
    check(ops::call(resources, ops::submit_option).await.status)
}

/// `WskControlSocket(WskGetOption)` of a ULONG option.
pub(crate) async fn get_option(handle: &SocketHandle, level: ULONG, code: ULONG) -> Result<ULONG> {
    let resources = OptionRes {
        socket: handle.socket(),
        request: WskGetOption,
        level,
        code,
        value: 0,
    };
    let done = ops::call(resources, ops::submit_option).await;
    check(done.status)?;
    Ok(done.resources.value)
}

/// Sets up the event queue (`depth` slots, the first time) and enables the
/// `mask` events with `SO_WSK_EVENT_CALLBACK`. IRQL <= DISPATCH_LEVEL.
pub(crate) fn enable_events(handle: &SocketHandle, mask: ULONG, depth: usize) -> Result<()> {
    if depth == 0 {
        return Err(Error::from_status(STATUS_INVALID_PARAMETER));
    }
    handle.shared().ensure_ring(depth)?;
    check(ops::set_event_mask(handle.socket(), mask))
}
