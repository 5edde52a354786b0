//! echo-ioctl: the control interface of the wdk-async echo driver
//! (`wdk_async_echo.sys`), shared by the driver and by user-mode tools.
//!
//! - the control device's names ([`DEVICE_NAME`], [`DOS_DEVICE_NAME`],
//!   [`WIN32_PATH`]) and the service name ([`SERVICE_NAME`]);
//! - the IOCTL codes, all METHOD_BUFFERED ([`IOCTL_ECHO_GET_STATISTICS`],
//!   [`IOCTL_ECHO_RESET_STATISTICS`], [`IOCTL_ECHO_RECEIVE_DATAGRAM`]);
//! - the records they carry, with an explicit little-endian wire layout
//!   ([`Statistics`], [`DatagramHeader`]): a tool decodes them from bytes
//!   without `unsafe` and without caring about Rust's struct layout;
//! - the service's registry parameters and their ranges ([`Parameters`]).
//!
//! `#![no_std]`, no dependencies, nothing that needs the WDK: a user-mode
//! tool (or a test on any host) links it as it is.
#![no_std]

// === Names ===

/// The service name (the key under `...\CurrentControlSet\Services`).
pub const SERVICE_NAME: &str = "WdkAsyncEcho";
/// The control device's NT name.
pub const DEVICE_NAME: &str = "\\Device\\WskAsyncEcho";
/// The control device's symbolic link (what `\\.\WskAsyncEcho` opens).
pub const DOS_DEVICE_NAME: &str = "\\DosDevices\\WskAsyncEcho";
/// The path a Win32 tool passes to `CreateFileW`.
pub const WIN32_PATH: &str = "\\\\.\\WskAsyncEcho";

// === IOCTL codes ===

/// The control device's type: in the range Microsoft leaves to vendors
/// (0x8000-0xFFFF).
pub const FILE_DEVICE_WSK_ECHO: u32 = 0x0000_8E5C;

/// `METHOD_BUFFERED`.
pub const METHOD_BUFFERED: u32 = 0;
/// `FILE_ANY_ACCESS`.
pub const FILE_ANY_ACCESS: u32 = 0;
/// `FILE_READ_ACCESS` (`FILE_READ_DATA`).
pub const FILE_READ_ACCESS: u32 = 1;
/// `FILE_WRITE_ACCESS` (`FILE_WRITE_DATA`).
pub const FILE_WRITE_ACCESS: u32 = 2;

/// `CTL_CODE(DeviceType, Function, Method, Access)` as devioctl.h defines
/// it.
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// Reads the driver's [`Statistics`]. Input: none. Output: at least
/// [`Statistics::SIZE`] bytes (`STATUS_BUFFER_TOO_SMALL` otherwise);
/// `Information` is [`Statistics::SIZE`].
pub const IOCTL_ECHO_GET_STATISTICS: u32 = ctl_code(
    FILE_DEVICE_WSK_ECHO,
    0x800,
    METHOD_BUFFERED,
    FILE_READ_ACCESS,
);

/// Resets the cumulative counters of [`Statistics`] (not the gauges:
/// connections open now, live tasks; not the executor's counters, which
/// count since the driver was loaded). Input and output: none.
pub const IOCTL_ECHO_RESET_STATISTICS: u32 = ctl_code(
    FILE_DEVICE_WSK_ECHO,
    0x801,
    METHOD_BUFFERED,
    FILE_WRITE_ACCESS,
);

/// Receives the next datagram sent to the driver's UDP port instead of
/// echoing it: the driver forwards the caller's own IRP to `WskReceiveFrom`
/// (completion stopped with STATUS_MORE_PROCESSING_REQUIRED, then completed
/// by the driver), so the IRP stays pending until a datagram arrives, the
/// caller cancels it (`CancelIoEx`: STATUS_CANCELLED) or the driver
/// unloads.
///
/// Input: none. Output: a [`DatagramHeader`] followed by the datagram's
/// bytes; at least [`DatagramHeader::SIZE`] bytes
/// (`STATUS_BUFFER_TOO_SMALL`), at most [`MAX_DATAGRAM_OUTPUT`]
/// (`STATUS_INVALID_PARAMETER`). A datagram longer than the room left is
/// truncated ([`DatagramHeader::TRUNCATED`]). `Information` is the header
/// size plus the bytes copied.
///
/// The caller's receive waits on the UDP socket beside the echo loop's
/// own receives: with event callbacks (`UdpMode` 1) the provider gives the
/// next datagram to the pending receive; with queued receives (`UdpMode`
/// 0) it takes its turn behind the receives the loop already has posted
/// (at most `UdpQueueDepth` datagrams are echoed first).
pub const IOCTL_ECHO_RECEIVE_DATAGRAM: u32 = ctl_code(
    FILE_DEVICE_WSK_ECHO,
    0x802,
    METHOD_BUFFERED,
    FILE_READ_ACCESS,
);

/// The largest UDP payload (IPv6 jumbograms aside).
pub const MAX_DATAGRAM: usize = 65_535;

/// The largest output buffer [`IOCTL_ECHO_RECEIVE_DATAGRAM`] accepts.
pub const MAX_DATAGRAM_OUTPUT: usize = DatagramHeader::SIZE + MAX_DATAGRAM;

// === Little-endian field access ===

fn put_u16(out: &mut [u8], at: usize, value: u16) {
    out[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn put_u32(out: &mut [u8], at: usize, value: u32) {
    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut [u8], at: usize, value: u64) {
    out[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn get_u16(bytes: &[u8], at: usize) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&bytes[at..at + 2]);
    u16::from_le_bytes(b)
}

fn get_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn get_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the record needs.
    TooShort {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// A version this crate does not know.
    Version(u32),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooShort { needed, got } => {
                write!(f, "record too short: {got} bytes, {needed} needed")
            }
            Self::Version(v) => write!(f, "unknown record version {v}"),
        }
    }
}

// === Statistics ===

/// What [`IOCTL_ECHO_GET_STATISTICS`] returns.
///
/// Wire layout (little-endian, [`Statistics::SIZE`] bytes): `u32 size`,
/// `u32 version`, then the `u64` counters in declaration order, then the
/// `u32` configuration values in declaration order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statistics {
    /// TCP connections open now (gauge).
    pub connections_current: u64,
    /// TCP connections accepted and served.
    pub connections_total: u64,
    /// TCP connections refused because `MaxConnections` were open (or the
    /// driver was out of memory for them): closed at once, abortively.
    pub connections_refused: u64,
    /// TCP connections closed by the idle timeout.
    pub connections_idle_closed: u64,
    /// TCP connections closed abortively after an error (reset by the
    /// peer, failed receive or send).
    pub connections_aborted: u64,
    /// TCP bytes received from peers.
    pub bytes_received: u64,
    /// TCP bytes echoed back to peers.
    pub bytes_sent: u64,
    /// Datagrams received on the UDP port (echoed or handed to
    /// [`IOCTL_ECHO_RECEIVE_DATAGRAM`]).
    pub datagrams_received: u64,
    /// Datagrams echoed.
    pub datagrams_sent: u64,
    /// Datagrams lost to the driver: refused by a full indication queue,
    /// truncated, or failed to send.
    pub datagrams_dropped: u64,
    /// Datagrams delivered through [`IOCTL_ECHO_RECEIVE_DATAGRAM`].
    pub datagrams_delivered: u64,
    /// Receive IOCTLs whose IRP is at WSK now (gauge).
    pub receives_pending: u64,
    /// Executor: live tasks (gauge).
    pub tasks_live: u64,
    /// Executor: tasks spawned since load.
    pub tasks_spawned: u64,
    /// Executor: spawns that failed (out of pool) since load.
    pub spawn_failures: u64,
    /// Executor: polls since load.
    pub polls: u64,
    /// Executor: wakes since load.
    pub wakes: u64,
    /// Executor: tasks completed since load.
    pub tasks_completed: u64,
    /// Executor: tasks cancelled since load.
    pub tasks_cancelled: u64,
    /// Configuration in force: the TCP port.
    pub tcp_port: u32,
    /// Configuration in force: the UDP port.
    pub udp_port: u32,
    /// Configuration in force: the UDP style (0 queued receives, 1 event
    /// callbacks).
    pub udp_mode: u32,
    /// Configuration in force: receives kept queued (UDP mode 0) or
    /// indications queued (mode 1).
    pub udp_queue_depth: u32,
    /// Configuration in force: the connection limit.
    pub max_connections: u32,
    /// Configuration in force: the idle timeout in seconds (0: none).
    pub idle_timeout_seconds: u32,
}

impl Statistics {
    /// The version this crate writes and reads.
    pub const VERSION: u32 = 1;
    const COUNTERS: usize = 19;
    const CONFIG: usize = 6;
    /// Bytes on the wire.
    pub const SIZE: usize = 8 + Self::COUNTERS * 8 + Self::CONFIG * 4;

    fn counters(&self) -> [u64; Self::COUNTERS] {
        [
            self.connections_current,
            self.connections_total,
            self.connections_refused,
            self.connections_idle_closed,
            self.connections_aborted,
            self.bytes_received,
            self.bytes_sent,
            self.datagrams_received,
            self.datagrams_sent,
            self.datagrams_dropped,
            self.datagrams_delivered,
            self.receives_pending,
            self.tasks_live,
            self.tasks_spawned,
            self.spawn_failures,
            self.polls,
            self.wakes,
            self.tasks_completed,
            self.tasks_cancelled,
        ]
    }

    fn config(&self) -> [u32; Self::CONFIG] {
        [
            self.tcp_port,
            self.udp_port,
            self.udp_mode,
            self.udp_queue_depth,
            self.max_connections,
            self.idle_timeout_seconds,
        ]
    }

    /// Writes the record into `out` (at least [`Self::SIZE`] bytes);
    /// returns the bytes written, or `None` if `out` is too short.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let out = out.get_mut(..Self::SIZE)?;
        put_u32(out, 0, Self::SIZE as u32);
        put_u32(out, 4, Self::VERSION);
        for (i, value) in self.counters().into_iter().enumerate() {
            put_u64(out, 8 + i * 8, value);
        }
        let base = 8 + Self::COUNTERS * 8;
        for (i, value) in self.config().into_iter().enumerate() {
            put_u32(out, base + i * 4, value);
        }
        Some(Self::SIZE)
    }

    /// Reads a record written by [`Self::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < 8 {
            return Err(DecodeError::TooShort {
                needed: Self::SIZE,
                got: bytes.len(),
            });
        }
        let version = get_u32(bytes, 4);
        if version != Self::VERSION {
            return Err(DecodeError::Version(version));
        }
        if bytes.len() < Self::SIZE {
            return Err(DecodeError::TooShort {
                needed: Self::SIZE,
                got: bytes.len(),
            });
        }
        let c = |i: usize| get_u64(bytes, 8 + i * 8);
        let base = 8 + Self::COUNTERS * 8;
        let k = |i: usize| get_u32(bytes, base + i * 4);
        Ok(Self {
            connections_current: c(0),
            connections_total: c(1),
            connections_refused: c(2),
            connections_idle_closed: c(3),
            connections_aborted: c(4),
            bytes_received: c(5),
            bytes_sent: c(6),
            datagrams_received: c(7),
            datagrams_sent: c(8),
            datagrams_dropped: c(9),
            datagrams_delivered: c(10),
            receives_pending: c(11),
            tasks_live: c(12),
            tasks_spawned: c(13),
            spawn_failures: c(14),
            polls: c(15),
            wakes: c(16),
            tasks_completed: c(17),
            tasks_cancelled: c(18),
            tcp_port: k(0),
            udp_port: k(1),
            udp_mode: k(2),
            udp_queue_depth: k(3),
            max_connections: k(4),
            idle_timeout_seconds: k(5),
        })
    }
}

// === Datagram header ===

/// `AF_INET` (ws2def.h).
pub const AF_INET: u16 = 2;
/// `AF_INET6` (ws2def.h: 23 on Windows).
pub const AF_INET6: u16 = 23;

/// What precedes the datagram in [`IOCTL_ECHO_RECEIVE_DATAGRAM`]'s output.
///
/// Wire layout (little-endian, [`DatagramHeader::SIZE`] bytes): `u32 size`,
/// `u32 length`, `u32 flags`, `u16 family`, `u16 port` (host order),
/// `[u8; 16] address` (IPv4 in the first 4 bytes), `u32 scope_id`,
/// `u32 reserved`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatagramHeader {
    /// Bytes of datagram that follow the header.
    pub length: u32,
    /// [`Self::TRUNCATED`] when the datagram did not fit.
    pub flags: u32,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// The sender's port.
    pub port: u16,
    /// The sender's address (IPv4: the first 4 bytes).
    pub address: [u8; 16],
    /// The IPv6 scope id (0 for IPv4).
    pub scope_id: u32,
}

impl DatagramHeader {
    /// Bytes on the wire.
    pub const SIZE: usize = 40;
    /// The datagram was longer than the output buffer and was cut.
    pub const TRUNCATED: u32 = 1;

    /// Writes the header into `out` (at least [`Self::SIZE`] bytes);
    /// `None` if `out` is too short.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let out = out.get_mut(..Self::SIZE)?;
        put_u32(out, 0, Self::SIZE as u32);
        put_u32(out, 4, self.length);
        put_u32(out, 8, self.flags);
        put_u16(out, 12, self.family);
        put_u16(out, 14, self.port);
        out[16..32].copy_from_slice(&self.address);
        put_u32(out, 32, self.scope_id);
        put_u32(out, 36, 0);
        Some(Self::SIZE)
    }

    /// Reads a header written by [`Self::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < Self::SIZE {
            return Err(DecodeError::TooShort {
                needed: Self::SIZE,
                got: bytes.len(),
            });
        }
        let mut address = [0u8; 16];
        address.copy_from_slice(&bytes[16..32]);
        Ok(Self {
            length: get_u32(bytes, 4),
            flags: get_u32(bytes, 8),
            family: get_u16(bytes, 12),
            port: get_u16(bytes, 14),
            address,
            scope_id: get_u32(bytes, 32),
        })
    }

    /// The sender as a socket address (`None` for an unknown family).
    pub fn sender(&self) -> Option<core::net::SocketAddr> {
        use core::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
        match self.family {
            AF_INET => {
                let [a, b, c, d, ..] = self.address;
                Some(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), self.port).into())
            }
            AF_INET6 => Some(
                SocketAddrV6::new(Ipv6Addr::from(self.address), self.port, 0, self.scope_id).into(),
            ),
            _ => None,
        }
    }

    /// A header describing `length` bytes from `sender`.
    pub fn from_sender(sender: core::net::SocketAddr, length: u32, flags: u32) -> Self {
        let mut address = [0u8; 16];
        let (family, scope_id) = match sender {
            core::net::SocketAddr::V4(v4) => {
                address[..4].copy_from_slice(&v4.ip().octets());
                (AF_INET, 0)
            }
            core::net::SocketAddr::V6(v6) => {
                address = v6.ip().octets();
                (AF_INET6, v6.scope_id())
            }
        };
        Self {
            length,
            flags,
            family,
            port: sender.port(),
            address,
            scope_id,
        }
    }
}

// === Registry parameters ===

/// One REG_DWORD parameter under the service key's `Parameters` subkey:
/// its value name, default and accepted range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameter {
    /// The value name.
    pub name: &'static str,
    /// The value used when it is absent, of another type, or out of range.
    pub default: u32,
    /// The smallest accepted value.
    pub min: u32,
    /// The largest accepted value.
    pub max: u32,
}

impl Parameter {
    /// Whether `value` is accepted.
    pub const fn accepts(&self, value: u32) -> bool {
        value >= self.min && value <= self.max
    }
}

/// The service's parameters (all REG_DWORD, under
/// `HKLM\System\CurrentControlSet\Services\WdkAsyncEcho\Parameters`).
pub struct Parameters;

impl Parameters {
    /// The TCP echo port.
    pub const TCP_PORT: Parameter = Parameter {
        name: "TcpPort",
        default: 40007,
        min: 1,
        max: 65535,
    };
    /// The UDP echo port.
    pub const UDP_PORT: Parameter = Parameter {
        name: "UdpPort",
        default: 40008,
        min: 1,
        max: 65535,
    };
    /// The UDP style: 0 queued receives (`WskReceiveFrom` IRPs), 1 event
    /// callbacks (`WskReceiveFromEvent`).
    pub const UDP_MODE: Parameter = Parameter {
        name: "UdpMode",
        default: 0,
        min: 0,
        max: 1,
    };
    /// Receives kept queued (mode 0) or indications queued (mode 1).
    pub const UDP_QUEUE_DEPTH: Parameter = Parameter {
        name: "UdpQueueDepth",
        default: 8,
        min: 1,
        max: 64,
    };
    /// The most TCP connections served at once.
    pub const MAX_CONNECTIONS: Parameter = Parameter {
        name: "MaxConnections",
        default: 1024,
        min: 1,
        max: 65535,
    };
    /// Seconds a TCP connection may stay idle (nothing received, nothing
    /// left to send) before the driver closes it; 0: never.
    pub const IDLE_TIMEOUT_SECONDS: Parameter = Parameter {
        name: "IdleTimeoutSeconds",
        default: 0,
        min: 0,
        max: 86_400,
    };
    /// Listen on the loopback addresses only (1) instead of every address
    /// (0, the default). Not part of the INF: `cargo xtask run` sets it so
    /// a demonstration does not serve the network.
    pub const LOOPBACK_ONLY: Parameter = Parameter {
        name: "LoopbackOnly",
        default: 0,
        min: 0,
        max: 1,
    };

    /// Every parameter, in the order the driver reads them.
    pub const ALL: [Parameter; 7] = [
        Self::TCP_PORT,
        Self::UDP_PORT,
        Self::UDP_MODE,
        Self::UDP_QUEUE_DEPTH,
        Self::MAX_CONNECTIONS,
        Self::IDLE_TIMEOUT_SECONDS,
        Self::LOOPBACK_ONLY,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctl_code_matches_devioctl_h() {
        // CTL_CODE(FILE_DEVICE_UNKNOWN 0x22, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS)
        assert_eq!(ctl_code(0x22, 0x800, 0, 0), 0x0022_2000);
        assert_eq!(IOCTL_ECHO_GET_STATISTICS, 0x8E5C_6000);
        assert_eq!(IOCTL_ECHO_RESET_STATISTICS, 0x8E5C_A004);
        assert_eq!(IOCTL_ECHO_RECEIVE_DATAGRAM, 0x8E5C_6008);
    }

    #[test]
    fn statistics_round_trip_every_field() {
        let mut s = Statistics::default();
        // Distinct values everywhere, so a swapped field cannot pass.
        let counters = [
            &mut s.connections_current,
            &mut s.connections_total,
            &mut s.connections_refused,
            &mut s.connections_idle_closed,
            &mut s.connections_aborted,
            &mut s.bytes_received,
            &mut s.bytes_sent,
            &mut s.datagrams_received,
            &mut s.datagrams_sent,
            &mut s.datagrams_dropped,
            &mut s.datagrams_delivered,
            &mut s.receives_pending,
            &mut s.tasks_live,
            &mut s.tasks_spawned,
            &mut s.spawn_failures,
            &mut s.polls,
            &mut s.wakes,
            &mut s.tasks_completed,
            &mut s.tasks_cancelled,
        ];
        for (i, c) in counters.into_iter().enumerate() {
            *c = 0x0101_0101_0101_0101 * (i as u64 + 1);
        }
        s.tcp_port = 1;
        s.udp_port = 2;
        s.udp_mode = 3;
        s.udp_queue_depth = 4;
        s.max_connections = 5;
        s.idle_timeout_seconds = 6;
        let mut bytes = [0u8; Statistics::SIZE + 3];
        assert_eq!(s.encode(&mut bytes), Some(Statistics::SIZE));
        assert_eq!(get_u32(&bytes, 0) as usize, Statistics::SIZE);
        assert_eq!(Statistics::decode(&bytes), Ok(s));
        assert_eq!(s.encode(&mut bytes[..Statistics::SIZE - 1]), None);
        assert!(matches!(
            Statistics::decode(&bytes[..Statistics::SIZE - 1]),
            Err(DecodeError::TooShort { .. })
        ));
        put_u32(&mut bytes, 4, 9);
        assert_eq!(Statistics::decode(&bytes), Err(DecodeError::Version(9)));
    }

    #[test]
    fn datagram_header_round_trips_both_families() {
        for sender in ["127.0.0.1:4242", "[::1%7]:65535"] {
            let sender: core::net::SocketAddr = sender.parse().unwrap();
            let header = DatagramHeader::from_sender(sender, 1234, DatagramHeader::TRUNCATED);
            let mut bytes = [0xEEu8; DatagramHeader::SIZE];
            assert_eq!(header.encode(&mut bytes), Some(DatagramHeader::SIZE));
            let back = DatagramHeader::decode(&bytes).unwrap();
            assert_eq!(back, header);
            assert_eq!(back.sender(), Some(sender));
            assert_eq!(back.length, 1234);
        }
    }

    #[test]
    fn parameter_ranges_are_the_documented_ones() {
        assert!(Parameters::TCP_PORT.accepts(1) && Parameters::TCP_PORT.accepts(65535));
        assert!(!Parameters::TCP_PORT.accepts(0) && !Parameters::TCP_PORT.accepts(65536));
        assert!(!Parameters::UDP_MODE.accepts(2));
        assert!(!Parameters::UDP_QUEUE_DEPTH.accepts(65));
        assert!(Parameters::IDLE_TIMEOUT_SECONDS.accepts(0));
        assert!(!Parameters::IDLE_TIMEOUT_SECONDS.accepts(86_401));
        for p in Parameters::ALL {
            assert!(p.accepts(p.default), "{}", p.name);
        }
    }
}
