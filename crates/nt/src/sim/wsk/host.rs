//! What the simulated provider asks the host's TCP/IP stack beyond the
//! portable socket calls of mio and socket2, one `cfg` per host with a
//! portable answer elsewhere ("the host cannot say").
//!
//! - [`unacknowledged`]: the bytes written to a TCP socket that the peer
//!   has not acknowledged yet (unsent ones included). Linux and Android:
//!   `ioctl(TIOCOUTQ)` (= SIOCOUTQ: `write_seq - snd_una`, which counts a
//!   sent FIN as one byte until it is acknowledged); macOS and iOS:
//!   `getsockopt(SO_NWRITE)`; FreeBSD and NetBSD: `ioctl(FIONWRITE)` (BSD
//!   keeps a TCP send buffer's bytes until they are acknowledged). Other
//!   hosts, Windows included: `None`, and the provider then completes sends
//!   when the host took the bytes (see `SendCompletion` in the sim config),
//!   saying so once on stderr.
//! - [`congestion_window`]: the bytes the transport lets be in flight now
//!   (congestion window x segment size, from `TCP_INFO` on Linux with glibc
//!   or musl): the bandwidth-delay product estimate the ideal send backlog
//!   is made of. Elsewhere `None`, and the provider uses the host's send
//!   buffer size instead.

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd"
))]
use std::os::fd::AsRawFd;

use mio::net::TcpStream;

/// Whether a sent FIN counts in [`unacknowledged`] until the peer
/// acknowledges it.
pub(crate) const FIN_COUNTS: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Bytes written to `stream` that its peer has not acknowledged (see the
/// module docs); `None` when the host cannot say (or the query failed).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn unacknowledged(stream: &TcpStream) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ on a TCP socket writes one int through the pointer,
    // which points to a live local; the descriptor is the stream's own and
    // stays open across the call (borrowed).
    let result = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    (result == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

/// Bytes written to `stream` that its peer has not acknowledged (see the
/// module docs); `None` when the host cannot say (or the query failed).
#[cfg(any(target_os = "macos", target_os = "ios"))]
pub(crate) fn unacknowledged(stream: &TcpStream) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    let mut length = core::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_NWRITE writes one int (at most `length` bytes) through the
    // pointer to a live local and updates `length`; the descriptor is the
    // stream's own, open across the call.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NWRITE,
            (&raw mut queued).cast(),
            &mut length,
        )
    };
    (result == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

/// Bytes written to `stream` that its peer has not acknowledged (see the
/// module docs); `None` when the host cannot say (or the query failed).
#[cfg(any(target_os = "freebsd", target_os = "netbsd"))]
pub(crate) fn unacknowledged(stream: &TcpStream) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONWRITE writes one int through the pointer to a live local;
    // the descriptor is the stream's own, open across the call.
    let result = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONWRITE, &mut queued) };
    (result == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

/// Bytes written to `stream` that its peer has not acknowledged: this host
/// cannot say.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd"
)))]
pub(crate) fn unacknowledged(_stream: &TcpStream) -> Option<usize> {
    None
}

/// The congestion window in bytes (see the module docs).
#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
pub(crate) fn congestion_window(stream: &TcpStream) -> Option<usize> {
    // SAFETY: tcp_info is plain old data; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { core::mem::zeroed() };
    let mut length = core::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: TCP_INFO writes at most `length` bytes into the live local
    // and updates `length`; the descriptor is the stream's own, open across
    // the call.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut length,
        )
    };
    if result != 0 {
        return None;
    }
    let window = u64::from(info.tcpi_snd_cwnd) * u64::from(info.tcpi_snd_mss);
    usize::try_from(window).ok().filter(|&w| w > 0)
}

/// The congestion window in bytes: this host cannot say.
#[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
pub(crate) fn congestion_window(_stream: &TcpStream) -> Option<usize> {
    None
}

/// Whether this host can tell acknowledged bytes from written ones (what
/// `SendCompletion::Acknowledged` needs).
pub fn acknowledgement_observable() -> bool {
    cfg!(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd"
    ))
}

/// Says once per process that acknowledgements are not observable here.
pub(crate) fn warn_unobservable() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!(
            "nt::sim wsk: this host cannot report unacknowledged TCP bytes; WskSend completes \
             when the host took the bytes (SendCompletion::Copied) whatever the policy says"
        );
    });
}
