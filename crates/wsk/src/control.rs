//! Structured socket options and ioctls (`WskControlSocket` with byte
//! buffers, not only ULONG options), and connected datagram sockets
//! (`SIO_WSK_SET_REMOTE_ADDRESS`).
//!
//! - [`Connection::set_option_bytes`], [`Connection::option_bytes`],
//!   [`Connection::ioctl`] (and the same on [`DatagramSocket`] and
//!   [`ListenSocket`]): any option or ioctl whose input and output fit in
//!   128 bytes (the structures WSK's options take, `ip_mreq`,
//!   `ipv6_mreq`, a SOCKADDR, ...). Larger buffers are
//!   STATUS_INVALID_PARAMETER.
//! - [`DatagramSocket::set_broadcast`] sets `SO_BROADCAST`.
//! - [`DatagramSocket::set_remote_address`]: a fixed remote address; then
//!   [`DatagramSocket::send`] sends there (`WskSendTo` with no address), and
//!   WSK accepts datagrams only from it.
//!
//! Keep-alive *timing*: WSK sockets refuse `SIO_KEEPALIVE_VALS`
//! (microsoft/windows-driver-samples issue 1132, and the sim answers
//! STATUS_NOT_SUPPORTED); `SO_KEEPALIVE` turns keep-alives on with the
//! system's timing.
//!
//! IRQL: every call at IRQL <= DISPATCH_LEVEL; nothing blocks.

use core::net::SocketAddr;
use core::ptr::NonNull;

use irp_future::{IoBuf, Submission};
use nt::wsk::*;
use nt::*;

use crate::addr::{SockAddrBuf, family_of};
use crate::connection::Connection;
use crate::datagram::DatagramSocket;
use crate::error::{BufResult, Result, check_transferred};
use crate::listen::ListenSocket;
use crate::ops::{self, Lent, on_socket};
use crate::shared::{SocketHandle, SocketShared, dispatch_entry};
use crate::socket;

/// `WskControlSocket` of `request` with `input`; the output (up to
/// `output.len()` bytes) is copied into `output`; returns its length.
async fn control_bytes(
    handle: &SocketHandle,
    request: WSK_CONTROL_SOCKET_TYPE,
    level: ULONG,
    code: ULONG,
    input: &[u8],
    output: &mut [u8],
) -> Result<usize> {
    let out = socket::control(handle, request, level, code, input, output.len()).await?;
    let bytes = out.as_slice();
    output[..bytes.len()].copy_from_slice(bytes);
    Ok(bytes.len())
}

macro_rules! structured_control {
    ($socket:ty) => {
        impl $socket {
            /// Sets an option whose value is a structure
            /// (`WskControlSocket(WskSetOption)`, `value` as its bytes, at
            /// most 128).
            pub async fn set_option_bytes(
                &self,
                level: ULONG,
                code: ULONG,
                value: &[u8],
            ) -> Result<()> {
                control_bytes(self.handle(), WskSetOption, level, code, value, &mut [])
                    .await
                    .map(|_| ())
            }

            /// Reads an option into `value` (`WskControlSocket(WskGetOption)`,
            /// at most 128 bytes); returns the bytes WSK wrote.
            pub async fn option_bytes(
                &self,
                level: ULONG,
                code: ULONG,
                value: &mut [u8],
            ) -> Result<usize> {
                control_bytes(self.handle(), WskGetOption, level, code, &[], value).await
            }

            /// A socket ioctl (`WskControlSocket(WskIoctl)`, `level` as the
            /// ioctl's page says, usually 0): `input` in, up to
            /// `output.len()` bytes out (each at most 128); returns the
            /// output's length.
            pub async fn ioctl(
                &self,
                code: ULONG,
                level: ULONG,
                input: &[u8],
                output: &mut [u8],
            ) -> Result<usize> {
                control_bytes(self.handle(), WskIoctl, level, code, input, output).await
            }
        }
    };
}

structured_control!(Connection);
structured_control!(DatagramSocket);
structured_control!(ListenSocket);

impl DatagramSocket {
    /// `SO_BROADCAST` on or off: whether datagrams may be sent to a
    /// broadcast address (without it the transport refuses them).
    pub async fn set_broadcast(&self, on: bool) -> Result<()> {
        socket::set_option(self.handle(), SOL_SOCKET, SO_BROADCAST, ULONG::from(on)).await
    }

    /// Sets (`Some`) or clears (`None`) the socket's fixed remote address
    /// (`SIO_WSK_SET_REMOTE_ADDRESS`, after bind): [`Self::send`] sends
    /// there, and WSK accepts datagrams only from it; `send_to` may still
    /// name another address (whose replies WSK does not accept). An
    /// address of another family than the socket's is
    /// STATUS_INVALID_PARAMETER.
    pub async fn set_remote_address(&self, remote: Option<SocketAddr>) -> Result<()> {
        let Some(remote) = remote else {
            return control_bytes(
                self.handle(),
                WskIoctl,
                0,
                SIO_WSK_SET_REMOTE_ADDRESS,
                &[],
                &mut [],
            )
            .await
            .map(|_| ());
        };
        let address = SockAddrBuf::new(&remote);
        let size = match family_of(&remote) {
            AF_INET => core::mem::size_of::<SOCKADDR_IN>(),
            _ => core::mem::size_of::<SOCKADDR_IN6>(),
        };
        // SAFETY: the buffer holds a SOCKADDR_STORAGE, at least `size`
        // initialised bytes (SockAddrBuf zero-fills the rest).
        let bytes = unsafe { core::slice::from_raw_parts(address.as_ptr().cast::<u8>(), size) };
        control_bytes(
            self.handle(),
            WskIoctl,
            0,
            SIO_WSK_SET_REMOTE_ADDRESS,
            bytes,
            &mut [],
        )
        .await
        .map(|_| ())
    }

    /// Sends one datagram to the fixed remote address
    /// ([`Self::set_remote_address`]; `WskSendTo` with no address). Without
    /// one, WSK refuses it (STATUS_INVALID_PARAMETER).
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        let lent = match Lent::build(buf, IoBuf::bytes_init) {
            Ok(lent) => lent,
            Err((error, buf)) => return (Err(error), buf),
        };
        let resources = SendFixedRes {
            shared: self.handle().ptr(),
            lent,
        };
        let done = ops::call(resources, submit_send_fixed::<B>).await;
        let buf = done.resources.lent.buf.into_inner();
        (
            check_transferred(done.status, done.information as usize),
            buf,
        )
    }
}

/// `WskSendTo` without an address: the buffer, alive until completion.
struct SendFixedRes<B: IoBuf> {
    shared: NonNull<SocketShared>,
    lent: Lent<B>,
}

// SAFETY: the socket block is shared through atomics and locks; the
// buffer is Send.
unsafe impl<B: IoBuf> Send for SendFixedRes<B> {}

fn submit_send_fixed<B: IoBuf>(irp: PIRP, r: &mut SendFixedRes<B>) -> Submission {
    let wsk: *mut WSK_BUF = &mut r.lent.wsk;
    on_socket(r.shared, |socket| {
        match dispatch_entry!(socket, WSK_PROVIDER_DATAGRAM_DISPATCH, WskSendTo) {
            // SAFETY: WskSendTo with our IRP and no remote address (the
            // fixed one); the buffer lives in the resources until
            // completion.
            Some(send_to) => Submission::Submitted(unsafe {
                send_to(
                    socket,
                    wsk,
                    0,
                    core::ptr::null_mut(),
                    0,
                    core::ptr::null_mut(),
                    irp,
                )
            }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}
