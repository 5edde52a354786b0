//! Test support for the sample driver: a simulated machine with the driver
//! loaded under a given configuration, real loopback peers, the control
//! device's IOCTLs, and the clean-unload check every test ends with.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use echo_ioctl::{
    DOS_DEVICE_NAME, IOCTL_ECHO_GET_STATISTICS, Parameters, SERVICE_NAME, Statistics,
};
use nt::sim::{
    CallbackIrql, CompletionPolicy, DeviceHandle, HarnessError, IoctlResult, LoadedDriver,
    RegistryValue, Session, SimConfig, VerifierReport, service_registry_path,
};
use nt::*;

/// How long any one wait of a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Every completion policy × every WSK callback IRQL: the configurations
/// the driver's behaviour is checked under (on top of the environment's
/// `NT_SIM` baseline).
pub fn policies() -> Vec<SimConfig> {
    let base = SimConfig::from_env();
    let completions = [
        CompletionPolicy::Inline,
        CompletionPolicy::ForcePending,
        CompletionPolicy::Mixed {
            pending_per_million: 500_000,
            seed: base.seed ^ 0x5EED,
        },
    ];
    let callbacks = [
        CallbackIrql::Dispatch,
        CallbackIrql::Passive,
        CallbackIrql::Mixed,
    ];
    let mut configs = Vec::new();
    for completion in completions {
        for callback_irql in callbacks {
            let mut config = base;
            config.completion = completion;
            config.wsk.callback_irql = callback_irql;
            configs.push(config);
        }
    }
    configs
}

/// A short name of a configuration, for assertion messages.
pub fn describe(config: &SimConfig) -> String {
    format!("{config}")
}

/// A TCP and UDP port pair free on every loopback address right now.
pub fn free_ports() -> (u16, u16) {
    let tcp = free_port();
    let mut udp = free_port();
    while udp == tcp {
        udp = free_port();
    }
    (tcp, udp)
}

fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let free = TcpListener::bind(("::1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("::1", port)).is_ok();
        drop(listener);
        if free {
            return port;
        }
    }
}

/// The driver loaded in a fresh session.
pub struct Rig {
    pub session: Session,
    pub driver: Option<LoadedDriver>,
    pub handle: Option<DeviceHandle>,
    pub tcp_port: u16,
    pub udp_port: u16,
    pub config: SimConfig,
}

/// Registry values on top of the defaults (the ports are always set).
pub type Params<'a> = &'a [(&'a str, u32)];

impl Rig {
    /// Boots a session with `config`, sets the parameters (free ports,
    /// loopback only, and `params`) and loads the driver; retries with
    /// other ports if one was taken in between.
    pub fn load(config: SimConfig, params: Params<'_>) -> Rig {
        for _ in 0..5 {
            let session = Session::boot_config(config);
            let (tcp_port, udp_port) = free_ports();
            let key = format!("{}\\Parameters", service_registry_path(SERVICE_NAME));
            let mut values = vec![
                (Parameters::TCP_PORT.name, u32::from(tcp_port)),
                (Parameters::UDP_PORT.name, u32::from(udp_port)),
                (Parameters::LOOPBACK_ONLY.name, 1),
            ];
            values.extend_from_slice(params);
            for (name, value) in values {
                session.set_registry_value(&key, name, RegistryValue::Dword(value));
            }
            match session.load_driver(
                SERVICE_NAME,
                echo_driver::DriverEntry as nt::sim::DriverEntry,
            ) {
                Ok(driver) => {
                    let handle = session
                        .open(DOS_DEVICE_NAME)
                        .expect("open the control device");
                    return Rig {
                        session,
                        driver: Some(driver),
                        handle: Some(handle),
                        tcp_port,
                        udp_port,
                        config,
                    };
                }
                Err(HarnessError::Status(STATUS_ADDRESS_ALREADY_EXISTS)) => {
                    let _ = session.finish();
                    continue;
                }
                Err(error) => panic!("DriverEntry failed: {error} ({config})"),
            }
        }
        panic!("no free port pair after 5 tries");
    }

    /// The TCP echo address (IPv4 loopback).
    pub fn tcp(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.tcp_port))
    }

    /// The TCP echo address on IPv6 loopback.
    pub fn tcp6(&self) -> SocketAddr {
        format!("[::1]:{}", self.tcp_port).parse().unwrap()
    }

    /// The UDP echo address (IPv4 loopback).
    pub fn udp(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.udp_port))
    }

    /// The UDP echo address on IPv6 loopback.
    pub fn udp6(&self) -> SocketAddr {
        format!("[::1]:{}", self.udp_port).parse().unwrap()
    }

    /// The control device handle.
    pub fn handle(&self) -> &DeviceHandle {
        self.handle.as_ref().unwrap()
    }

    /// An IOCTL on the control device.
    pub fn ioctl(&self, code: ULONG, input: &[u8], output: usize) -> IoctlResult {
        self.session
            .ioctl(self.handle(), code, input, output)
            .unwrap_or_else(|e| panic!("IOCTL {code:#x}: {e}"))
    }

    /// The driver's statistics, read through the IOCTL.
    pub fn stats(&self) -> Statistics {
        let result = self.ioctl(IOCTL_ECHO_GET_STATISTICS, &[], Statistics::SIZE);
        assert_eq!(result.status, STATUS_SUCCESS);
        assert_eq!(result.information as usize, Statistics::SIZE);
        Statistics::decode(&result.output).expect("statistics record")
    }

    /// Waits until `condition` holds on the statistics.
    pub fn wait_stats(&self, what: &str, condition: impl Fn(&Statistics) -> bool) -> Statistics {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let stats = self.stats();
            if condition(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} ({}): {stats:?}",
                self.config
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Closes the handle, unloads the driver (timing it) and ends the
    /// session; asserts the verifier report is clean. Returns how long
    /// Unload took and the report.
    pub fn unload(self) -> (Duration, VerifierReport) {
        self.unload_inspecting(|_| ())
    }

    /// [`Rig::unload`], calling `inspect` with the session after the
    /// driver unloaded cleanly and before the session ends.
    pub fn unload_inspecting(
        mut self,
        inspect: impl FnOnce(&Session),
    ) -> (Duration, VerifierReport) {
        let handle = self.handle.take().unwrap();
        self.session
            .close(handle)
            .expect("close the control device");
        let driver = self.driver.take().unwrap();
        let started = Instant::now();
        let unloaded = self.session.unload_driver(driver);
        let took = started.elapsed();
        let report = self.session.report();
        assert!(
            unloaded.is_ok() && report.is_clean(),
            "unload: {unloaded:?} ({})\n{report}",
            self.config
        );
        inspect(&self.session);
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, and its other
        // fields (`driver`, `handle`) were taken above: only the session is
        // moved out, once.
        let session = unsafe { std::ptr::read(&this.session) };
        let final_report = session.finish();
        assert!(
            final_report.is_clean(),
            "session end ({}):\n{final_report}",
            this.config
        );
        (took, final_report)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if thread::panicking() {
            // The test failed; unloading could wait on what the failure left.
            std::mem::forget(self.driver.take());
            std::mem::forget(self.handle.take());
        }
    }
}

/// A deterministic payload.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Connects, sends `data` from a writer thread while reading everything
/// back, shuts the write side down after the data, and returns what came
/// back when the driver closed (asserting the close was graceful: EOF, no
/// reset).
pub fn echo_round_trip(address: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let data = data.to_vec();
    let send = thread::spawn(move || {
        writer.write_all(&data).expect("write");
        writer.shutdown(Shutdown::Write).expect("shutdown write");
    });
    let mut back = Vec::new();
    stream
        .read_to_end(&mut back)
        .expect("read to a graceful end (a reset is a failure)");
    send.join().unwrap();
    back
}

/// Sends one datagram to the driver's UDP echo at `address` until it comes
/// back (a datagram may be lost; each try waits 200 ms, the whole at most
/// [`DEADLINE`]): proof that the UDP loop of that family is running, its
/// receive buffers made and its receives armed.
pub fn udp_echo_once(address: SocketAddr) {
    let bind = if address.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(bind).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let mut back = [0u8; 16];
    while started.elapsed() < DEADLINE {
        socket.send_to(b"warm-up", address).unwrap();
        if let Ok((n, from)) = socket.recv_from(&mut back)
            && from == address
            && &back[..n] == b"warm-up"
        {
            return;
        }
    }
    panic!("no UDP echo from {address} within {DEADLINE:?}");
}
