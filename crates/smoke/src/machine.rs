//! The simulated test machine: one `nt::sim` session with the verifier on,
//! the sample driver loaded into it on free loopback ports, and every call
//! the suite makes into it bounded by a timeout.
//!
//! After each step a test calls [`Machine::check`]: a bugcheck or leak the
//! verifier recorded since the last check fails the test with the finding
//! quoted. A call that does not return in time is a hang: the machine is
//! marked hung and abandoned (its threads cannot be stopped, as a hung
//! Windows machine cannot), and the test fails naming the call.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use echo_ioctl::{
    DOS_DEVICE_NAME, IOCTL_ECHO_GET_STATISTICS, Parameters, SERVICE_NAME, Statistics,
};
use nt::sim::{
    DeviceHandle, HarnessError, IoctlResult, LoadedDriver, RegistryValue, Session, SimConfig,
    UserBuffer, VerifierReport, service_registry_path,
};
use nt::{NTSTATUS, STATUS_ADDRESS_ALREADY_EXISTS, ULONG};

use crate::coverage::Coverage;

/// How long one harness call (load, unload, an IOCTL, open, close) may
/// take before the suite calls it a hang.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A loaded driver that may be moved to the thread that unloads it.
struct Loaded(LoadedDriver);

// SAFETY: a LoadedDriver is the driver object the harness created and the
// names it points to, owned here and used only through the harness (load
// and unload), which serialises on the session's own locks; nothing in it
// is tied to the thread that loaded it (NT itself calls DriverUnload from
// a system worker thread, not the thread that loaded the driver).
unsafe impl Send for Loaded {}

impl Loaded {
    fn into_inner(self) -> LoadedDriver {
        self.0
    }
}

/// The simulated machine with the driver.
pub struct Machine {
    session: Option<Arc<Session>>,
    driver: Option<Loaded>,
    handle: Option<DeviceHandle>,
    /// The TCP echo address (IPv4 loopback).
    pub tcp: SocketAddr,
    /// The UDP echo address (IPv4 loopback).
    pub udp: SocketAddr,
    params: Vec<(String, u32)>,
    /// Live pool blocks with no driver loaded (the baseline every unload
    /// must return to).
    baseline_blocks: u64,
    bugchecks_seen: usize,
    leaks_seen: usize,
    hung: bool,
    coverage: Arc<Coverage>,
}

/// Why a step failed.
pub type Failure = String;

impl Machine {
    /// Boots a session with `config` and the driver's parameters (free
    /// loopback ports, then `params`); the driver is not loaded yet.
    pub fn boot(config: SimConfig, params: &[(String, u32)], coverage: Arc<Coverage>) -> Self {
        let session = Session::boot_config(config);
        let (tcp, udp) = free_ports();
        let mut machine = Self {
            session: Some(Arc::new(session)),
            driver: None,
            handle: None,
            tcp: SocketAddr::from(([127, 0, 0, 1], tcp)),
            udp: SocketAddr::from(([127, 0, 0, 1], udp)),
            params: params.to_vec(),
            baseline_blocks: 0,
            bugchecks_seen: 0,
            leaks_seen: 0,
            hung: false,
            coverage,
        };
        machine.write_parameters();
        machine.baseline_blocks = machine.session().pool_stats().live_blocks;
        machine
    }

    fn write_parameters(&self) {
        let key = format!("{}\\Parameters", service_registry_path(SERVICE_NAME));
        let mut values: Vec<(String, u32)> = vec![
            (Parameters::TCP_PORT.name.into(), u32::from(self.tcp.port())),
            (Parameters::UDP_PORT.name.into(), u32::from(self.udp.port())),
            (Parameters::LOOPBACK_ONLY.name.into(), 1),
        ];
        values.extend(self.params.iter().cloned());
        for (name, value) in values {
            self.session()
                .set_registry_value(&key, &name, RegistryValue::Dword(value));
        }
    }

    /// Sets one more registry parameter (read at the next load).
    pub fn set_parameter(&mut self, name: &str, value: u32) {
        self.params.retain(|(n, _)| n != name);
        self.params.push((name.to_owned(), value));
        self.write_parameters();
    }

    /// The session.
    pub fn session(&self) -> &Arc<Session> {
        self.session.as_ref().expect("session present until finish")
    }

    /// Whether the driver is loaded.
    pub fn loaded(&self) -> bool {
        self.driver.is_some()
    }

    /// Whether a call hung (the machine is then unusable).
    pub fn hung(&self) -> bool {
        self.hung
    }

    /// The run's coverage.
    pub fn coverage(&self) -> Arc<Coverage> {
        Arc::clone(&self.coverage)
    }

    /// Runs `f` with the session on a helper thread, bounded by `timeout`
    /// (a hang otherwise, see `Machine::bounded`).
    pub fn call<T: Send + 'static>(
        &mut self,
        what: &str,
        timeout: Duration,
        f: impl FnOnce(&Session) -> T + Send + 'static,
    ) -> Result<T, Failure> {
        self.bounded(what, timeout, f)
    }

    /// Runs `f` on a helper thread and waits up to `timeout` for it. On a
    /// timeout the machine is marked hung and the thread abandoned.
    fn bounded<T: Send + 'static>(
        &mut self,
        what: &str,
        timeout: Duration,
        f: impl FnOnce(&Session) -> T + Send + 'static,
    ) -> Result<T, Failure> {
        if self.hung {
            return Err(format!("{what}: the machine hung earlier"));
        }
        let session = Arc::clone(self.session());
        let (tx, rx) = mpsc::channel();
        let started = Instant::now();
        std::thread::Builder::new()
            .name(format!("smoke: {what}"))
            .spawn(move || {
                let _ = tx.send(f(&session));
            })
            .map_err(|e| format!("{what}: cannot start a thread: {e}"))?;
        match rx.recv_timeout(timeout) {
            Ok(value) => Ok(value),
            Err(_) => {
                self.hung = true;
                let running: Vec<String> = self
                    .session()
                    .running_callouts()
                    .iter()
                    .map(|c| format!("{c:?}"))
                    .collect();
                Err(format!(
                    "hang: {what} did not return within {:.0} s (driver code still running: {})",
                    started.elapsed().as_secs_f64(),
                    if running.is_empty() {
                        "none".to_owned()
                    } else {
                        running.join("; ")
                    }
                ))
            }
        }
    }

    /// Loads the driver (DriverEntry) and opens its control device. A
    /// port taken meanwhile by another program picks new ports.
    pub fn load(&mut self) -> Result<(), Failure> {
        match self.load_inner()? {
            Ok(()) => {
                let handle = self.open()?;
                self.handle = Some(handle);
                Ok(())
            }
            Err(error) => Err(format!("DriverEntry failed: {error}")),
        }
    }

    /// Loads the driver under low resources: DriverEntry failing with an
    /// error status (and no finding) is `Ok(false)`, and so is a control
    /// device that cannot be opened (the driver then stays loaded, with no
    /// handle).
    pub fn try_load(&mut self) -> Result<bool, Failure> {
        if self.load_inner()?.is_err() {
            return Ok(false);
        }
        match self.try_open()? {
            Ok(handle) => {
                self.handle = Some(handle);
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    fn load_inner(&mut self) -> Result<Result<(), HarnessError>, Failure> {
        for _ in 0..5 {
            let result = self.bounded("DriverEntry", CALL_TIMEOUT, |session| {
                session
                    .load_driver(
                        SERVICE_NAME,
                        echo_driver::DriverEntry as nt::sim::DriverEntry,
                    )
                    .map(Loaded)
            })?;
            match result {
                Ok(driver) => {
                    self.driver = Some(driver);
                    self.check("DriverEntry")?;
                    return Ok(Ok(()));
                }
                Err(HarnessError::Status(STATUS_ADDRESS_ALREADY_EXISTS))
                    if free_ports_changed(self) => {}
                Err(error) => {
                    self.check("DriverEntry")?;
                    return Ok(Err(error));
                }
            }
        }
        Err("no free port pair for the driver after 5 tries".into())
    }

    /// Opens the control device (IRP_MJ_CREATE).
    pub fn open(&mut self) -> Result<DeviceHandle, Failure> {
        self.coverage.major("IRP_MJ_CREATE");
        let opened = self.bounded("open of the control device", CALL_TIMEOUT, |session| {
            session.open(DOS_DEVICE_NAME)
        })?;
        self.check("open of the control device")?;
        opened.map_err(|e| format!("open of {DOS_DEVICE_NAME}: {e}"))
    }

    /// Opens the control device; a clean failure is returned as the error
    /// status (low resources, fuzzing).
    pub fn try_open(&mut self) -> Result<Result<DeviceHandle, HarnessError>, Failure> {
        self.coverage.major("IRP_MJ_CREATE");
        let opened = self.bounded("open of the control device", CALL_TIMEOUT, |session| {
            session.open(DOS_DEVICE_NAME)
        })?;
        self.check("open of the control device")?;
        Ok(opened)
    }

    /// Opens the control device with `access`; a clean failure is
    /// returned as is.
    pub fn try_open_with(
        &mut self,
        access: nt::ACCESS_MASK,
    ) -> Result<Result<DeviceHandle, HarnessError>, Failure> {
        self.coverage.major("IRP_MJ_CREATE");
        let opened = self.bounded("open of the control device", CALL_TIMEOUT, move |session| {
            session.open_with_access(DOS_DEVICE_NAME, access)
        })?;
        self.check("open of the control device")?;
        Ok(opened)
    }

    /// Closes a handle (IRP_MJ_CLEANUP, then IRP_MJ_CLOSE).
    pub fn close(&mut self, handle: DeviceHandle) -> Result<(), Failure> {
        self.coverage.major("IRP_MJ_CLEANUP");
        self.coverage.major("IRP_MJ_CLOSE");
        let closed = self.bounded("close of a handle", CALL_TIMEOUT, move |session| {
            session.close(handle)
        })?;
        self.check("close of a handle")?;
        closed.map_err(|e| format!("close: {e}"))
    }

    /// The control device handle the machine keeps open while loaded.
    pub fn handle(&self) -> Option<&DeviceHandle> {
        self.handle.as_ref()
    }

    /// One IOCTL with valid buffers on `handle` (the machine's own when
    /// `None`), bounded by [`CALL_TIMEOUT`]; the harness's error is
    /// returned as is (a status the I/O manager returned, not a failure).
    pub fn ioctl(
        &mut self,
        code: ULONG,
        input: &[u8],
        output: usize,
    ) -> Result<Result<IoctlResult, HarnessError>, Failure> {
        let handle = self
            .handle
            .take()
            .ok_or_else(|| "IOCTL with the driver unloaded".to_owned())?;
        let input = input.to_vec();
        let result = self.bounded(&format!("IOCTL {code:#x}"), CALL_TIMEOUT, move |session| {
            let r = session
                .ioctl_user(
                    &handle,
                    code,
                    UserBuffer::Data(&input),
                    UserBuffer::Output(output),
                )
                .and_then(|p| p.wait(CALL_TIMEOUT));
            (handle, r)
        });
        let (handle, result) = result?;
        self.handle = Some(handle);
        self.coverage.ioctl(code, &result);
        self.check(&format!("IOCTL {code:#x}"))?;
        Ok(result)
    }

    /// The driver's statistics.
    pub fn stats(&mut self) -> Result<Statistics, Failure> {
        match self.ioctl(IOCTL_ECHO_GET_STATISTICS, &[], Statistics::SIZE)? {
            Ok(r) if r.status == nt::STATUS_SUCCESS => {
                Statistics::decode(&r.output).map_err(|e| format!("statistics record: {e:?}"))
            }
            Ok(r) => Err(format!(
                "statistics IOCTL failed with {:#010x}",
                r.status as u32
            )),
            Err(e) => Err(format!("statistics IOCTL: {e}")),
        }
    }

    /// Waits (up to [`CALL_TIMEOUT`]) for the statistics to satisfy `ok`.
    pub fn wait_stats(
        &mut self,
        what: &str,
        ok: impl Fn(&Statistics) -> bool,
    ) -> Result<Statistics, Failure> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let s = self.stats()?;
            if ok(&s) {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {what}: {s:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes the control handle and unloads the driver; checks the
    /// verifier's report and that the pool is back to the baseline.
    /// Returns how long DriverUnload took.
    pub fn unload(&mut self) -> Result<Duration, Failure> {
        if let Some(handle) = self.handle.take() {
            self.close(handle)?;
        }
        let Some(driver) = self.driver.take() else {
            return Err("unload: the driver is not loaded".into());
        };
        let started = Instant::now();
        let unloaded = self.bounded("DriverUnload", CALL_TIMEOUT, move |session| {
            session.unload_driver(driver.into_inner())
        })?;
        let took = started.elapsed();
        self.check("unload")?;
        unloaded.map_err(|e| format!("unload: {e}"))?;
        let live = self.wait_pool_baseline();
        if live != self.baseline_blocks {
            return Err(format!(
                "after unload {live} pool block(s) are live, {} before the driver was loaded",
                self.baseline_blocks
            ));
        }
        let pending = self.session().pending_operations();
        if !pending.is_empty() {
            return Err(format!(
                "after unload {} operation(s) still pending: {:?}",
                pending.len(),
                pending
            ));
        }
        Ok(took)
    }

    /// Live pool blocks once the I/O manager's deferred work (closes,
    /// quarantined frees) has settled, up to a second.
    fn wait_pool_baseline(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let live = self.session().pool_stats().live_blocks;
            if live == self.baseline_blocks || Instant::now() > deadline {
                return live;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Live pool blocks now.
    pub fn live_blocks(&self) -> u64 {
        self.session().pool_stats().live_blocks
    }

    /// Fails if the verifier recorded a bugcheck or a leak since the last
    /// check (or the driver panicked), quoting it.
    pub fn check(&mut self, step: &str) -> Result<(), Failure> {
        if let Some(panic) = crate::panics::take() {
            return Err(format!(
                "{step}: the driver panicked (on Windows a bugcheck): {panic}"
            ));
        }
        let Some(session) = self.session.as_ref() else {
            return Ok(());
        };
        let report = session.report();
        let result = describe_new(&report, self.bugchecks_seen, self.leaks_seen)
            .map_or(Ok(()), |finding| {
                Err(format!("{step}: verifier: {finding}"))
            });
        self.bugchecks_seen = report.bugchecks.len();
        self.leaks_seen = report.leaks.len();
        result
    }

    /// Unloads if loaded, ends the session and checks its final report.
    pub fn finish(mut self) -> Result<(), Failure> {
        if self.hung {
            self.abandon();
            return Ok(());
        }
        let mut result = Ok(());
        if self.driver.is_some() {
            result = self.unload().map(|_| ());
        }
        if self.hung {
            self.abandon();
            return result;
        }
        let session = self.session.take().expect("session");
        match Arc::try_unwrap(session) {
            Ok(session) => {
                let report = session.finish();
                if let Some(finding) = describe_new(&report, self.bugchecks_seen, self.leaks_seen) {
                    result = result.and(Err(format!("end of session: verifier: {finding}")));
                }
            }
            Err(session) => {
                // A helper still holds it: leave it to them.
                std::mem::forget(session);
            }
        }
        result
    }

    /// Leaves a hung machine behind without touching it again.
    fn abandon(&mut self) {
        std::mem::forget(self.handle.take());
        std::mem::forget(self.driver.take());
        if let Some(session) = self.session.take() {
            std::mem::forget(session);
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // A test that failed mid-way: unloading could wait on what the
        // failure left behind, and the session's drop would complain about
        // findings the failure already quoted.
        let _ = self.session.as_ref().map(|s| s.report());
        self.abandon();
    }
}

/// The findings of `report` after the first `bugchecks` bugchecks and
/// `leaks` leaks, as one line.
pub fn describe_new(report: &VerifierReport, bugchecks: usize, leaks: usize) -> Option<String> {
    let mut parts = Vec::new();
    for b in report.bugchecks.iter().skip(bugchecks) {
        let p = b.parameters;
        parts.push(format!(
            "bugcheck {:#x} {} ({:#x}, {:#x}, {:#x}, {:#x}): {}",
            b.code,
            b.name(),
            p[0],
            p[1],
            p[2],
            p[3],
            b.description
        ));
    }
    let new_leaks: Vec<_> = report.leaks.iter().skip(leaks).collect();
    if !new_leaks.is_empty() {
        let list: Vec<String> = new_leaks
            .iter()
            .take(5)
            .map(|l| {
                format!(
                    "{:?} tag {} {} bytes",
                    l.kind,
                    nt::sim::verifier::tag_to_string(l.tag),
                    l.size
                )
            })
            .collect();
        parts.push(format!("{} leak(s): {}", new_leaks.len(), list.join("; ")));
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(" | "))
    }
}

/// Picks new ports if the machine's are taken by another program now;
/// returns whether it did.
fn free_ports_changed(machine: &mut Machine) -> bool {
    let taken = TcpListener::bind(machine.tcp).is_err() || UdpSocket::bind(machine.udp).is_err();
    if taken {
        let (tcp, udp) = free_ports();
        machine.tcp.set_port(tcp);
        machine.udp.set_port(udp);
        machine.write_parameters();
    }
    taken
}

/// A TCP and UDP port pair free on both loopback addresses now.
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
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(address) = listener.local_addr() else {
            continue;
        };
        let port = address.port();
        let free = TcpListener::bind(("::1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("::1", port)).is_ok();
        drop(listener);
        if free {
            return port;
        }
    }
}

/// A status as text.
pub fn status(s: NTSTATUS) -> String {
    format!("{:#010x}", s as u32)
}

/// Shared between a test's threads: the first failure any of them hit.
#[derive(Default)]
pub struct FirstFailure(Mutex<Option<Failure>>);

impl FirstFailure {
    /// Records `f` unless a failure is already recorded.
    pub fn set(&self, f: Failure) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(f);
        }
    }

    /// Whether a failure is recorded.
    pub fn is_set(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// The recorded failure.
    pub fn take(&self) -> Option<Failure> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
