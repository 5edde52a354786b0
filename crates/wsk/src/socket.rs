//! What every socket category shares: creation (`WskSocket`), bind, the
//! local address, socket options and ioctls, enabling event callbacks.
//!
//! IRQL: every function here may be called at IRQL <= DISPATCH_LEVEL
//! (the futures are polled there too); they never block.

use core::net::SocketAddr;

use nt::wsk::*;
use nt::*;

use crate::addr::{SockAddrBuf, family_of};
use crate::error::{Error, Result, check};
use crate::ops::{self, AddressRes, BindRes, ControlBytes, ControlRes, NewSocket, SocketRes};
use crate::registration::Provider;
use crate::shared::{Kind, SocketHandle};

/// Creates a socket of `kind` for `family` (`WskSocket`).
pub(crate) async fn create(
    provider: &Provider,
    family: ADDRESS_FAMILY,
    kind: Kind,
) -> Result<SocketHandle> {
    let resources = SocketRes {
        new: NewSocket::new(kind, provider.registration_ref())?,
        client: provider.client(),
        dispatch: provider.dispatch().WskSocket,
        family,
        kind,
    };
    let done = ops::call(resources, ops::submit_socket).await;
    done.resources.new.finish(done.status, done.information)
}

/// An option set before bind: (level, code, value).
pub(crate) type PreBind = (ULONG, ULONG, ULONG);

/// Creates a socket of `kind` for `local`'s family, applies `options` and
/// binds it to `local`.
pub(crate) async fn create_bound(
    provider: &Provider,
    local: SocketAddr,
    kind: Kind,
    options: &[PreBind],
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
        shared: handle.ptr(),
        kind: handle.shared().kind(),
        address: SockAddrBuf::new(&local),
    };
    check(ops::call(resources, ops::submit_bind).await.status)
}

/// `WskGetLocalAddress` (`remote` = false) or `WskGetRemoteAddress`.
pub(crate) async fn address(handle: &SocketHandle, remote: bool) -> Result<SocketAddr> {
    let resources = AddressRes {
        shared: handle.ptr(),
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

/// `WskControlSocket` with an IRP: `input` in, up to `output` bytes out;
/// returns the output bytes (`IoStatus.Information` of them).
pub(crate) async fn control(
    handle: &SocketHandle,
    request: WSK_CONTROL_SOCKET_TYPE,
    level: ULONG,
    code: ULONG,
    input: &[u8],
    output: usize,
) -> Result<ControlBytes> {
    if input.len() > 128 || output > 128 {
        return Err(Error::from_status(STATUS_INVALID_PARAMETER));
    }
    let resources = ControlRes {
        shared: handle.ptr(),
        request,
        level,
        code,
        input: ControlBytes::of(input),
        output: ControlBytes::room(output),
    };
    let done = ops::call(resources, ops::submit_control).await;
    check(done.status)?;
    let mut out = done.resources.output;
    out.len = (done.information as usize).min(out.len);
    Ok(out)
}

/// `WskControlSocket(WskSetOption)` of a ULONG option.
pub(crate) async fn set_option(
    handle: &SocketHandle,
    level: ULONG,
    code: ULONG,
    value: ULONG,
) -> Result<()> {
    control(handle, WskSetOption, level, code, &value.to_ne_bytes(), 0)
        .await
        .map(|_| ())
}

/// `WskControlSocket(WskGetOption)` of a ULONG option.
pub(crate) async fn get_option(handle: &SocketHandle, level: ULONG, code: ULONG) -> Result<ULONG> {
    let out = control(handle, WskGetOption, level, code, &[], 4).await?;
    match out.as_slice() {
        [a, b, c, d] => Ok(ULONG::from_ne_bytes([*a, *b, *c, *d])),
        _ => Err(Error::from_status(STATUS_INVALID_BUFFER_SIZE)),
    }
}
