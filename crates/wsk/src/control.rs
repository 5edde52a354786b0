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
//! - [`DatagramSocket::set_packet_info`] and
//!   [`DatagramSocket::receive_from_info`]: each datagram's destination
//!   address and interface (`IP_PKTINFO` / `IPV6_PKTINFO` control
//!   information on `WskReceiveFrom`), and [`DatagramSocket::send_to_from`]
//!   (the same structure on `WskSendTo`): a server on a multi-homed host
//!   answers from the address it was asked on.
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

use core::net::{IpAddr, SocketAddr};
use core::ptr::NonNull;

use irp_future::{IoBuf, IoBufMut, Submission};
use nt::wsk::*;
use nt::*;

use crate::addr::{SockAddrBuf, family_of};
use crate::connection::Connection;
use crate::datagram::{DatagramSocket, ReceivedFrom};
use crate::error::{BufResult, Error, Result, check_transferred};
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

// === Packet information (IP_PKTINFO) ===

/// Where a datagram was sent to: its destination address and the
/// interface it arrived on (`IN_PKTINFO` / `IN6_PKTINFO`), the address a
/// multi-homed server answers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// The datagram's destination address.
    pub destination: IpAddr,
    /// The interface index it arrived on.
    pub interface: u32,
}

/// Room for one `IN6_PKTINFO` control message (the larger of the two),
/// aligned for `WSACMSGHDR`.
#[repr(C, align(8))]
struct ControlInfoBuf([u8; 48]);

/// `WskReceiveFrom` with a control buffer.
struct RecvFromInfoRes<B: IoBufMut> {
    shared: NonNull<SocketShared>,
    lent: Lent<B>,
    remote: SockAddrBuf,
    control_length: ULONG,
    control: ControlInfoBuf,
    control_flags: ULONG,
}

// SAFETY: the socket block is shared through atomics and locks; the buffer
// is Send; the rest is plain data.
unsafe impl<B: IoBufMut> Send for RecvFromInfoRes<B> {}

fn submit_receive_from_info<B: IoBufMut>(irp: PIRP, r: &mut RecvFromInfoRes<B>) -> Submission {
    let wsk: *mut WSK_BUF = &mut r.lent.wsk;
    let remote = r.remote.as_mut_ptr();
    r.control_length = core::mem::size_of::<ControlInfoBuf>() as ULONG;
    let control_length: *mut ULONG = &mut r.control_length;
    let control = r.control.0.as_mut_ptr().cast::<CMSGHDR>();
    let control_flags: *mut ULONG = &mut r.control_flags;
    ops::receive_from(
        r.shared,
        ops::ReceiveFromArgs {
            wsk,
            remote,
            control_length,
            control,
            control_flags,
        },
        irp,
    )
}

/// The packet information in a control buffer of `len` bytes, if any.
pub(crate) fn parse_packet_info(control: &[u8]) -> Option<PacketInfo> {
    let header = CMSG_DATA_OFFSET;
    let at = core::mem::size_of::<SIZE_T>();
    let mut offset = 0;
    while control.len() >= offset + header {
        let message = &control[offset..];
        let mut len_bytes = [0u8; core::mem::size_of::<SIZE_T>()];
        len_bytes.copy_from_slice(&message[..at]);
        let len = SIZE_T::from_ne_bytes(len_bytes) as usize;
        let level = i32::from_ne_bytes([
            message[at],
            message[at + 1],
            message[at + 2],
            message[at + 3],
        ]);
        let kind = i32::from_ne_bytes([
            message[at + 4],
            message[at + 5],
            message[at + 6],
            message[at + 7],
        ]);
        if len < header || len > message.len() {
            return None;
        }
        let data = &message[header..len];
        let index = |bytes: &[u8]| u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        match (level as ULONG, kind as ULONG, data.len()) {
            (IPPROTO_IP, IP_PKTINFO, 8) => {
                let to = [data[0], data[1], data[2], data[3]];
                return Some(PacketInfo {
                    destination: IpAddr::V4(to.into()),
                    interface: index(&data[4..]),
                });
            }
            (IPPROTO_IPV6, IPV6_PKTINFO, 20) => {
                let mut to = [0u8; 16];
                to.copy_from_slice(&data[..16]);
                return Some(PacketInfo {
                    destination: IpAddr::V6(to.into()),
                    interface: index(&data[16..]),
                });
            }
            _ => offset += cmsg_space(len - header),
        }
    }
    None
}

impl DatagramSocket {
    /// Asks WSK for each datagram's destination (`IP_PKTINFO` on an IPv4
    /// socket, `IPV6_PKTINFO` on an IPv6 one); [`Self::receive_from_info`]
    /// returns it.
    pub async fn set_packet_info(&self, on: bool) -> Result<()> {
        let local = socket::address(self.handle(), false).await?;
        let (level, code) = match local {
            SocketAddr::V4(_) => (IPPROTO_IP, IP_PKTINFO),
            SocketAddr::V6(_) => (IPPROTO_IPV6, IPV6_PKTINFO),
        };
        socket::set_option(self.handle(), level, code, ULONG::from(on)).await
    }

    /// As [`Self::receive_from`], with the datagram's packet information
    /// when [`Self::set_packet_info`] is on and WSK reported it (`None`
    /// otherwise, or when the control message did not fit: `MSG_CTRUNC`).
    pub async fn receive_from_info<B: IoBufMut>(
        &self,
        buf: B,
    ) -> BufResult<(ReceivedFrom, Option<PacketInfo>), B> {
        let mdl_buf = match irp_future::MdlBuf::new(buf) {
            Ok(mdl_buf) => mdl_buf,
            Err((status, buf)) => return (Err(Error::from_status(status)), buf),
        };
        let len = mdl_buf.bytes_total();
        let resources = RecvFromInfoRes {
            shared: self.handle().ptr(),
            lent: Lent::new(mdl_buf, len),
            remote: SockAddrBuf::empty(),
            control_length: 0,
            control: ControlInfoBuf([0; 48]),
            control_flags: 0,
        };
        let done = ops::call(resources, submit_receive_from_info::<B>).await;
        let RecvFromInfoRes {
            lent,
            remote,
            control_length,
            control,
            control_flags,
            ..
        } = done.resources;
        let mut mdl_buf = lent.buf;
        let n = ops::received(&mut mdl_buf, done.status, done.information as usize);
        let result = ops::datagram_status(done.status).and_then(|truncated| {
            let info = if control_flags & MSG_CTRUNC != 0 {
                None
            } else {
                let used = (control_length as usize).min(control.0.len());
                parse_packet_info(&control.0[..used])
            };
            Ok((
                ReceivedFrom {
                    len: n,
                    from: remote
                        .get()
                        .ok_or(Error::from_status(STATUS_INVALID_ADDRESS))?,
                    truncated: truncated || control_flags & MSG_TRUNC != 0,
                    multicast: control_flags & MSG_MCAST != 0,
                },
                info,
            ))
        });
        (result, mdl_buf.into_inner())
    }
}

/// One `IN_PKTINFO` / `IN6_PKTINFO` control message for `source`: the
/// buffer and its length (`WSA_CMSG_SPACE`).
fn encode_packet_info(source: &PacketInfo) -> (ControlInfoBuf, usize) {
    let mut buf = ControlInfoBuf([0; 48]);
    let (level, kind, data_len) = match source.destination {
        IpAddr::V4(address) => {
            buf.0[CMSG_DATA_OFFSET..CMSG_DATA_OFFSET + 4].copy_from_slice(&address.octets());
            buf.0[CMSG_DATA_OFFSET + 4..CMSG_DATA_OFFSET + 8]
                .copy_from_slice(&source.interface.to_ne_bytes());
            (IPPROTO_IP, IP_PKTINFO, 8)
        }
        IpAddr::V6(address) => {
            buf.0[CMSG_DATA_OFFSET..CMSG_DATA_OFFSET + 16].copy_from_slice(&address.octets());
            buf.0[CMSG_DATA_OFFSET + 16..CMSG_DATA_OFFSET + 20]
                .copy_from_slice(&source.interface.to_ne_bytes());
            (IPPROTO_IPV6, IPV6_PKTINFO, 20)
        }
    };
    let at = core::mem::size_of::<SIZE_T>();
    buf.0[..at].copy_from_slice(&((CMSG_DATA_OFFSET + data_len) as SIZE_T).to_ne_bytes());
    buf.0[at..at + 4].copy_from_slice(&(level as i32).to_ne_bytes());
    buf.0[at + 4..at + 8].copy_from_slice(&(kind as i32).to_ne_bytes());
    (buf, cmsg_space(data_len))
}

/// `WskSendTo` with control information: the buffer, the address and the
/// control message, alive until completion.
struct SendToInfoRes<B: IoBuf> {
    shared: NonNull<SocketShared>,
    lent: Lent<B>,
    remote: SockAddrBuf,
    control: ControlInfoBuf,
    control_len: ULONG,
}

// SAFETY: as SendFixedRes.
unsafe impl<B: IoBuf> Send for SendToInfoRes<B> {}

fn submit_send_to_info<B: IoBuf>(irp: PIRP, r: &mut SendToInfoRes<B>) -> Submission {
    let wsk: *mut WSK_BUF = &mut r.lent.wsk;
    let remote = r.remote.as_mut_ptr();
    let control = r.control.0.as_mut_ptr().cast::<CMSGHDR>();
    let control_len = r.control_len;
    on_socket(r.shared, |socket| {
        match dispatch_entry!(socket, WSK_PROVIDER_DATAGRAM_DISPATCH, WskSendTo) {
            // SAFETY: WskSendTo with our IRP; the buffer, the address and
            // the control message live in the resources until completion.
            Some(send_to) => Submission::Submitted(unsafe {
                send_to(socket, wsk, 0, remote, control_len, control, irp)
            }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}

impl DatagramSocket {
    /// As [`Self::send_to`], from `source`'s address and interface
    /// (interface 0: any): the `IN_PKTINFO` / `IN6_PKTINFO` control message
    /// on `WskSendTo`, for a server on a multi-homed host answering from
    /// the address it was asked on ([`Self::receive_from_info`]). The
    /// source's family must be the socket's (STATUS_INVALID_PARAMETER
    /// otherwise).
    pub async fn send_to_from<B: IoBuf>(
        &self,
        buf: B,
        to: SocketAddr,
        source: PacketInfo,
    ) -> BufResult<usize, B> {
        let lent = match Lent::build(buf, IoBuf::bytes_init) {
            Ok(lent) => lent,
            Err((error, buf)) => return (Err(error), buf),
        };
        let (control, control_len) = encode_packet_info(&source);
        let resources = SendToInfoRes {
            shared: self.handle().ptr(),
            lent,
            remote: SockAddrBuf::new(&to),
            control,
            control_len: control_len as ULONG,
        };
        let done = ops::call(resources, submit_send_to_info::<B>).await;
        let buf = done.resources.lent.buf.into_inner();
        (
            check_transferred(done.status, done.information as usize),
            buf,
        )
    }
}
