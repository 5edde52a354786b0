//! The peer echo servers the sample driver is measured against, as a user
//! would write them with the tools they would pick instead:
//!
//! - [`PeerKind::TokioMultiThread`]: tokio's multi-thread runtime (one
//!   worker per core), an accept loop spawning a task per connection, and
//!   a UDP task (`recv_from` -> `send_to`);
//! - [`PeerKind::TokioCurrentThread`]: the same on tokio's current-thread
//!   runtime;
//! - [`PeerKind::StdThreads`]: blocking std sockets, a thread per
//!   connection, a thread for UDP.
//!
//! Every TCP connection echoes exactly the bytes it reads through one
//! buffer of `buffer` bytes (the sample driver's bound), until the peer
//! closes. Listeners have a backlog of 1024 (as the simulated WSK
//! provider's host listener) and `SO_REUSEADDR`; UDP sockets keep the
//! system's default receive buffer, as the simulated provider's do.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::str::FromStr;
use std::thread;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Which peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// tokio, multi-thread runtime.
    TokioMultiThread,
    /// tokio, current-thread runtime.
    TokioCurrentThread,
    /// Blocking std sockets, a thread per connection.
    StdThreads,
}

impl PeerKind {
    /// Every peer, in report order.
    pub const ALL: [PeerKind; 3] = [
        PeerKind::TokioMultiThread,
        PeerKind::TokioCurrentThread,
        PeerKind::StdThreads,
    ];

    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::TokioMultiThread => "tokio-mt",
            PeerKind::TokioCurrentThread => "tokio-ct",
            PeerKind::StdThreads => "std-threads",
        }
    }
}

impl FromStr for PeerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        PeerKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown peer `{s}` (tokio-mt, tokio-ct, std-threads)"))
    }
}

/// How to start a peer.
#[derive(Debug, Clone, Copy)]
pub struct PeerConfig {
    /// Which one.
    pub kind: PeerKind,
    /// TCP listen address (port 0: any).
    pub tcp: SocketAddr,
    /// UDP address (port 0: any).
    pub udp: SocketAddr,
    /// Bytes per receive on a TCP connection.
    pub buffer: usize,
    /// Whether accepted connections get `TCP_NODELAY`.
    pub nodelay: bool,
}

/// A running peer: its addresses; it serves until the process ends (the
/// multi-thread tokio peer: until this value is dropped).
pub struct RunningPeer {
    /// Where it listens for TCP.
    pub tcp: SocketAddr,
    /// Its UDP socket.
    pub udp: SocketAddr,
    _runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for RunningPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningPeer")
            .field("tcp", &self.tcp)
            .field("udp", &self.udp)
            .finish()
    }
}

/// A TCP listener with `SO_REUSEADDR` and a backlog of 1024.
pub fn listener(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Starts a peer; returns once it listens.
pub fn start(config: PeerConfig) -> io::Result<RunningPeer> {
    let tcp = listener(config.tcp)?;
    let udp = UdpSocket::bind(config.udp)?;
    let (tcp_address, udp_address) = (tcp.local_addr()?, udp.local_addr()?);
    let runtime = match config.kind {
        PeerKind::StdThreads => {
            serve_std(tcp, udp, config);
            None
        }
        PeerKind::TokioMultiThread | PeerKind::TokioCurrentThread => serve_tokio(tcp, udp, config)?,
    };
    Ok(RunningPeer {
        tcp: tcp_address,
        udp: udp_address,
        _runtime: runtime,
    })
}

// === std ===

fn serve_std(tcp: TcpListener, udp: UdpSocket, config: PeerConfig) {
    thread::spawn(move || {
        for stream in tcp.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_nodelay(config.nodelay);
            thread::spawn(move || {
                let mut buf = vec![0u8; config.buffer];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            });
        }
    });
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match udp.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let _ = udp.send_to(&buf[..n], from);
                }
                Err(_) => continue,
            }
        }
    });
}

// === tokio ===

fn serve_tokio(
    tcp: TcpListener,
    udp: UdpSocket,
    config: PeerConfig,
) -> io::Result<Option<tokio::runtime::Runtime>> {
    let runtime = match config.kind {
        PeerKind::TokioMultiThread => tokio::runtime::Builder::new_multi_thread()
            .enable_io()
            .build()?,
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?,
    };
    tcp.set_nonblocking(true)?;
    udp.set_nonblocking(true)?;
    let (tcp, udp) = {
        let _enter = runtime.enter();
        (
            tokio::net::TcpListener::from_std(tcp)?,
            tokio::net::UdpSocket::from_std(udp)?,
        )
    };
    runtime.spawn(async move {
        loop {
            let Ok((mut stream, _)) = tcp.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(config.nodelay);
            tokio::spawn(async move {
                let mut buf = vec![0u8; config.buffer];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    runtime.spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Ok((n, from)) = udp.recv_from(&mut buf).await {
                let _ = udp.send_to(&buf[..n], from).await;
            }
        }
    });
    if config.kind == PeerKind::TokioCurrentThread {
        // A current-thread runtime runs its tasks and its I/O driver only
        // inside `Runtime::block_on`: a thread of its own blocks on it for
        // as long as the process lives.
        thread::Builder::new()
            .name("tokio-ct".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        return Ok(None);
    }
    Ok(Some(runtime))
}
