//! IOCTL fuzz, after the DF fuzz tests (Device Path Exerciser lineage):
//!
//! - open/close storm: threads opening and closing the control device,
//!   with read-write and read-only access;
//! - zero-length buffers: in and out lengths 0 with a kernel-address
//!   pointer (devctl's 0xFFFFFC00), across function codes, device types,
//!   methods and access bits;
//! - random IOCTLs: random and boundary codes, methods and access bits;
//!   lengths 0, 1, short, exact, oversize, huge; valid, null, kernel and
//!   unmapped pointers; random contents;
//! - tailored: the driver's own codes at every boundary length;
//! - the forwarded-IRP IOCTL (datagram receive) cancelled at random points
//!   (at once, after a delay, racing a datagram, by closing the handle).
//!
//! A call passes when it returns any status (success or error): a
//! bugcheck, a verifier finding, a hang past the per-call timeout or a
//! pool block left behind (measured around every call; an increase is
//! re-checked by repeating the call, as devctl does) fails the test
//! naming the call and the seed.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use echo_ioctl::{
    AF_INET, AF_INET6, DatagramHeader, FILE_DEVICE_WSK_ECHO, IOCTL_ECHO_GET_STATISTICS,
    IOCTL_ECHO_RECEIVE_DATAGRAM, IOCTL_ECHO_RESET_STATISTICS, MAX_DATAGRAM_OUTPUT, Statistics,
    ctl_code,
};
use nt::sim::{DeviceHandle, HarnessError, NeitherIo, Session, UserBuffer};
use nt::{FILE_READ_DATA, NT_SUCCESS, ULONG};

use crate::machine::{CALL_TIMEOUT, Machine};
use crate::progress::Counters;
use crate::{Ctx, Stop};

/// A buffer as the fuzzer passes it (owned, so the call can move to the
/// thread that bounds it).
#[derive(Debug, Clone)]
enum Buf {
    Data(Vec<u8>),
    Output(usize),
    Null(usize),
    Kernel(usize),
    Unmapped(usize),
}

impl Buf {
    fn user(&self) -> UserBuffer<'_> {
        match self {
            Self::Data(d) => UserBuffer::Data(d),
            Self::Output(n) => UserBuffer::Output(*n),
            Self::Null(n) => UserBuffer::Null(*n),
            Self::Kernel(n) => UserBuffer::KernelAddress(*n),
            Self::Unmapped(n) => UserBuffer::Unmapped(*n),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Data(d) => format!("{} byte(s)", d.len()),
            Self::Output(n) => format!("{n} byte(s)"),
            Self::Null(n) => format!("NULL/{n}"),
            Self::Kernel(n) => format!("0xFFFFFC00/{n}"),
            Self::Unmapped(n) => format!("unmapped/{n}"),
        }
    }
}

/// Outcome tallies.
#[derive(Default)]
struct Tally {
    calls: u64,
    success: u64,
    errors: u64,
    refused: u64,
    unsupported: u64,
}

struct Fuzzer<'m> {
    machine: &'m mut Machine,
    handle: Option<DeviceHandle>,
    /// A handle opened for reading only (calls needing write access are
    /// refused by the I/O manager on it).
    readonly: Option<DeviceHandle>,
    use_readonly: bool,
    tally: Tally,
    counters: Arc<Counters>,
    seed: u64,
}

impl Fuzzer<'_> {
    /// One IOCTL, bounded, checked, leak-measured.
    fn call(&mut self, code: ULONG, input: Buf, output: Buf) -> Result<(), Stop> {
        self.tally.calls += 1;
        Counters::add(&self.counters.calls, 1);
        let describe = format!(
            "call {} (seed {:#x}): IOCTL {code:#010x} (device {:#x}, function {:#x}, method {}, \
             access {}), input {}, output {}",
            self.tally.calls,
            self.seed,
            code >> 16,
            (code >> 2) & 0xFFF,
            code & 3,
            (code >> 14) & 3,
            input.describe(),
            output.describe()
        );
        let before = self.machine.live_blocks();
        let result = self.once(code, &input, &output, &describe)?;
        match &result {
            Ok(r) if NT_SUCCESS(r.status) => self.tally.success += 1,
            Ok(_) => self.tally.errors += 1,
            Err(HarnessError::Unsupported(_)) => self.tally.unsupported += 1,
            Err(HarnessError::Status(_)) => self.tally.refused += 1,
            Err(HarnessError::Timeout) => {
                return Err(Stop::Fail(format!(
                    "{describe}: hang: not completed within {CALL_TIMEOUT:?}"
                )));
            }
            Err(e) => return Err(Stop::Fail(format!("{describe}: {e}"))),
        }
        self.leak_check(before, code, &input, &output, &describe)
    }

    fn once(
        &mut self,
        code: ULONG,
        input: &Buf,
        output: &Buf,
        describe: &str,
    ) -> Result<Result<nt::sim::IoctlResult, HarnessError>, Stop> {
        let slot = if self.use_readonly {
            &mut self.readonly
        } else {
            &mut self.handle
        };
        let handle = slot.take().expect("fuzz handle");
        let (input, output) = (input.clone(), output.clone());
        let (handle, result) = self
            .machine
            .call(describe, CALL_TIMEOUT + Duration::from_secs(2), move |s| {
                let r = s
                    .ioctl_user(&handle, code, input.user(), output.user())
                    .and_then(|p| p.wait(CALL_TIMEOUT));
                (handle, r)
            })
            .map_err(Stop::Fail)?;
        if self.use_readonly {
            self.readonly = Some(handle);
        } else {
            self.handle = Some(handle);
        }
        self.machine.coverage().ioctl(code, &result);
        self.machine
            .check("")
            .map_err(|e| Stop::Fail(format!("{describe}: {e}")))?;
        Ok(result)
    }

    /// Devctl's leak check: live pool blocks after the call against
    /// before; an increase that does not settle is confirmed by repeating
    /// the call twice: growth each time is a leak.
    fn leak_check(
        &mut self,
        before: u64,
        code: ULONG,
        input: &Buf,
        output: &Buf,
        describe: &str,
    ) -> Result<(), Stop> {
        if self.settled(before) {
            return Ok(());
        }
        let tags = tag_counts(self.machine);
        let mut grew = 0;
        for _ in 0..2 {
            let start = self.machine.live_blocks();
            let _ = self.once(code, input, output, describe)?;
            if !self.settled(start) {
                grew += 1;
            }
        }
        if grew == 2 {
            return Err(Stop::Fail(format!(
                "{describe}: leak: every repetition of the call leaves allocations live ({} \
                 before the first, {} now; over the two repetitions: {})",
                before,
                self.machine.live_blocks(),
                grown(self.machine, &tags)
            )));
        }
        Ok(())
    }

    /// Whether live blocks come back to `target` within 200 ms.
    fn settled(&self, target: u64) -> bool {
        let deadline = Instant::now() + Duration::from_millis(200);
        loop {
            if self.machine.live_blocks() <= target {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Live allocations of drivers by tag (pool) or kind.
fn tag_counts(machine: &Machine) -> std::collections::BTreeMap<String, (u64, String)> {
    let mut by_tag: std::collections::BTreeMap<String, (u64, String)> = Default::default();
    for block in machine.session().live_allocations() {
        let tag = match block.kind {
            nt::sim::LeakKind::Pool => nt::sim::verifier::tag_to_string(block.tag),
            other => format!("{other:?}"),
        };
        let entry = by_tag.entry(tag).or_default();
        entry.0 += 1;
        if let Some(location) = block.location {
            entry.1 = location.to_string();
        }
    }
    by_tag
}

/// The tags that grew from `before` to now, as `tag T +N (allocated at L)`.
fn grown(machine: &Machine, before: &std::collections::BTreeMap<String, (u64, String)>) -> String {
    let now = tag_counts(machine);
    let list: Vec<String> = now
        .iter()
        .filter_map(|(tag, (n, at))| {
            let was = before.get(tag).map_or(0, |b| b.0);
            (*n > was).then(|| format!("tag {tag} +{} (allocated at {at})", n - was))
        })
        .collect();
    if list.is_empty() {
        "no tag grew".into()
    } else {
        list.join(", ")
    }
}

/// A random length of each class: 0, 1, short, exact, oversize, huge.
fn length(ctx: &mut Ctx<'_>, exact: usize) -> usize {
    match ctx.below(6) {
        0 => 0,
        1 => 1,
        2 => ctx.below(exact.max(2) as u64) as usize,
        3 => exact,
        4 => exact + 1 + ctx.below(4096) as usize,
        _ => 1 << (16 + ctx.below(5)),
    }
}

fn random_input(ctx: &mut Ctx<'_>, exact: usize) -> Buf {
    let n = length(ctx, exact);
    match ctx.below(8) {
        0 => Buf::Null(n),
        1 => Buf::Kernel(n),
        2 => Buf::Unmapped(n),
        _ => {
            let mut data = vec![0u8; n.min(1 << 20)];
            for chunk in data.chunks_mut(8) {
                let r = ctx.rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&r[..chunk.len()]);
            }
            Buf::Data(data)
        }
    }
}

fn random_output(ctx: &mut Ctx<'_>, exact: usize) -> Buf {
    let n = length(ctx, exact).min(1 << 20);
    match ctx.below(8) {
        0 => Buf::Null(n),
        1 => Buf::Kernel(n),
        2 => Buf::Unmapped(n),
        _ => Buf::Output(n),
    }
}

/// A random code: ours or near ours, or anything.
fn random_code(ctx: &mut Ctx<'_>) -> ULONG {
    let ours = [
        IOCTL_ECHO_GET_STATISTICS,
        IOCTL_ECHO_RESET_STATISTICS,
        IOCTL_ECHO_RECEIVE_DATAGRAM,
    ];
    match ctx.below(4) {
        0 => ours[ctx.below(3) as usize],
        1 => {
            // Our device type, a function near ours, any method and access.
            ctl_code(
                FILE_DEVICE_WSK_ECHO,
                0x7F8 + ctx.below(16) as u32,
                ctx.below(4) as u32,
                ctx.below(4) as u32,
            )
        }
        2 => ours[ctx.below(3) as usize] ^ (1 << ctx.below(32)),
        _ => ctx.rng.next_u64() as u32,
    }
}

/// Exact input and output lengths of a code (the ones it validates).
fn exact(code: ULONG) -> (usize, usize) {
    match code {
        IOCTL_ECHO_GET_STATISTICS => (0, Statistics::SIZE),
        IOCTL_ECHO_RESET_STATISTICS => (0, 0),
        IOCTL_ECHO_RECEIVE_DATAGRAM => (2, DatagramHeader::SIZE + 64),
        _ => (8, 64),
    }
}

pub fn run(ctx: &mut Ctx<'_>) -> Result<(), Stop> {
    // METHOD_NEITHER requests reach the driver with guarded user buffers.
    let mut machine = ctx.machine_with(|c| c.neither_io = NeitherIo::Guarded);
    machine.load()?;
    let calls = ctx.options.scale(20_000, 1_500);
    let deadline = Instant::now() + ctx.options.duration.max(Duration::from_secs(5)) * 3;
    let storms = open_close_storm(ctx, &mut machine)?;
    let handle = machine.open()?;
    let readonly = machine
        .try_open_with(FILE_READ_DATA)?
        .map_err(|e| format!("read-only open: {e}"))?;
    let counters = Arc::clone(&ctx.counters);
    let mut fuzzer = Fuzzer {
        machine: &mut machine,
        handle: Some(handle),
        readonly: Some(readonly),
        use_readonly: false,
        tally: Tally::default(),
        counters,
        seed: ctx.seed,
    };

    // Zero-length buffers at a kernel address, across the code space.
    let zero = ctx.options.scale(512, 64);
    for i in 0..zero {
        let device = if i % 2 == 0 {
            FILE_DEVICE_WSK_ECHO
        } else {
            ctx.below(0x10000) as u32
        };
        let code = ctl_code(
            device,
            ctx.below(4096) as u32,
            (i % 4) as u32,
            ((i / 4) % 4) as u32,
        );
        fuzzer.call(code, Buf::Kernel(0), Buf::Kernel(0))?;
    }

    // Tailored: our codes at every boundary length, valid buffers.
    for code in [
        IOCTL_ECHO_GET_STATISTICS,
        IOCTL_ECHO_RESET_STATISTICS,
        IOCTL_ECHO_RECEIVE_DATAGRAM,
    ] {
        let (ein, eout) = exact(code);
        for input in [0usize, 1, 2, 3, ein.saturating_sub(1), ein, ein + 1, 4096] {
            for output in [
                0usize,
                1,
                eout.saturating_sub(1),
                eout,
                eout + 1,
                MAX_DATAGRAM_OUTPUT,
                MAX_DATAGRAM_OUTPUT + 1,
            ] {
                if code == IOCTL_ECHO_RECEIVE_DATAGRAM
                    && (input == 0 || input == 2)
                    && (DatagramHeader::SIZE..=MAX_DATAGRAM_OUTPUT).contains(&output)
                {
                    // Valid: it pends; the cancel phase covers it.
                    continue;
                }
                let mut data = vec![0u8; input];
                if input >= 2 {
                    let family = if ctx.below(2) == 0 { AF_INET } else { AF_INET6 };
                    data[..2].copy_from_slice(&family.to_le_bytes());
                }
                fuzzer.call(code, Buf::Data(data), Buf::Output(output))?;
            }
        }
    }

    // Random calls, on the read-write and (sometimes) the read-only handle.
    let mut done = 0;
    while done < calls && Instant::now() < deadline {
        let code = random_code(ctx);
        let (ein, eout) = exact(code);
        let input = random_input(ctx, ein);
        let output = random_output(ctx, eout);
        if code == IOCTL_ECHO_RECEIVE_DATAGRAM
            && input.user().valid()
            && output.user().valid()
            && (input.user().length() == 0 || input.user().length() == 2)
            && (DatagramHeader::SIZE..=MAX_DATAGRAM_OUTPUT).contains(&output.user().length())
        {
            // A valid receive pends: cancelled at a random point below.
            done += 1;
            continue;
        }
        fuzzer.use_readonly = ctx.below(8) == 0;
        let r = fuzzer.call(code, input, output);
        fuzzer.use_readonly = false;
        r?;
        done += 1;
    }

    // The forwarded IRP, cancelled at random points.
    let cancels = ctx.options.scale(300, 40);
    let udp = fuzzer.machine.udp;
    let mut receive_outcomes = [0u64; 3];
    for i in 0..cancels {
        let way = ctx.below(4);
        let delay = Duration::from_micros(ctx.below(3000));
        let output = DatagramHeader::SIZE + ctx.below(2048) as usize;
        let handle = if way == 3 {
            // Closed with the receive pending: IRP_MJ_CLEANUP is the cue.
            Some(fuzzer.machine.open()?)
        } else {
            None
        };
        let own = handle.is_some();
        let h = match handle {
            Some(h) => h,
            None => fuzzer.handle.take().expect("handle"),
        };
        let describe = format!(
            "receive {i} (seed {:#x}): IOCTL_ECHO_RECEIVE_DATAGRAM, output {output}, {}",
            ctx.seed,
            [
                "cancelled at once",
                "cancelled after a delay",
                "racing a datagram",
                "process exit while pending"
            ][way as usize]
        );
        Counters::add(&ctx.counters.calls, 1);
        let (h, result) = fuzzer
            .machine
            .call(&describe, CALL_TIMEOUT * 2, move |s: &Session| {
                let r = s.ioctl_user(
                    &h,
                    IOCTL_ECHO_RECEIVE_DATAGRAM,
                    UserBuffer::Data(&[]),
                    UserBuffer::Output(output),
                );
                let r = match r {
                    Ok(pending) => {
                        match way {
                            0 => {
                                pending.cancel();
                            }
                            1 => {
                                std::thread::sleep(delay);
                                pending.cancel();
                            }
                            2 => {
                                // More than the echo loop keeps queued
                                // (UdpQueueDepth, 8): the receive gets one.
                                if let Ok(sock) = UdpSocket::bind("127.0.0.1:0") {
                                    for _ in 0..12 {
                                        let _ = sock.send_to(b"fuzz datagram", udp);
                                    }
                                }
                                std::thread::sleep(delay);
                                pending.cancel();
                            }
                            _ => {}
                        }
                        if way == 3 {
                            // The process exits with the receive pending:
                            // its handle is closed (IRP_MJ_CLEANUP; a close
                            // alone does not cancel I/O on Windows) and the
                            // thread's IRPs are cancelled.
                            let closed = s.close(h);
                            pending.cancel();
                            return (None, closed.and(pending.wait(CALL_TIMEOUT)));
                        }
                        pending.wait(CALL_TIMEOUT)
                    }
                    Err(e) => Err(e),
                };
                (Some(h), r)
            })
            .map_err(Stop::Fail)?;
        if !own {
            fuzzer.handle = h;
        }
        fuzzer
            .machine
            .coverage()
            .ioctl(IOCTL_ECHO_RECEIVE_DATAGRAM, &result);
        fuzzer
            .machine
            .check("")
            .map_err(|e| Stop::Fail(format!("{describe}: {e}")))?;
        match result {
            Ok(r) if r.status == nt::STATUS_CANCELLED => receive_outcomes[0] += 1,
            Ok(r) if NT_SUCCESS(r.status) => receive_outcomes[1] += 1,
            Ok(_) => receive_outcomes[2] += 1,
            Err(HarnessError::Timeout) => {
                return Err(Stop::Fail(format!(
                    "{describe}: hang: the cancelled receive did not complete within {CALL_TIMEOUT:?}"
                )));
            }
            Err(e) => return Err(Stop::Fail(format!("{describe}: {e}"))),
        }
    }

    let tally = std::mem::take(&mut fuzzer.tally);
    let handle = fuzzer.handle.take().expect("handle");
    let readonly = fuzzer.readonly.take().expect("read-only handle");
    machine.close(handle)?;
    machine.close(readonly)?;
    machine.finish()?;
    ctx.figure("calls", tally.calls);
    ctx.figure("success", tally.success);
    ctx.figure("error status", tally.errors);
    ctx.figure("refused by the I/O manager", tally.refused);
    ctx.figure("not built (direct I/O)", tally.unsupported);
    ctx.figure(
        "receives cancelled/completed/failed",
        format!(
            "{}/{}/{}",
            receive_outcomes[0], receive_outcomes[1], receive_outcomes[2]
        ),
    );
    ctx.figure("open/close", storms);
    Ok(())
}

/// Threads opening and closing the control device; returns the pairs done.
fn open_close_storm(ctx: &mut Ctx<'_>, machine: &mut Machine) -> Result<u64, Stop> {
    let per_thread = ctx.options.scale(500, 50);
    let session = Arc::clone(machine.session());
    let coverage = machine.coverage();
    let done = machine
        .call("open/close storm", CALL_TIMEOUT * 3, move |_| {
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let session = Arc::clone(&session);
                    let coverage = Arc::clone(&coverage);
                    std::thread::spawn(move || -> Result<u64, String> {
                        let mut n = 0;
                        for i in 0..per_thread {
                            let access = if (i + t) % 3 == 0 {
                                FILE_READ_DATA
                            } else {
                                nt::FILE_READ_DATA | nt::FILE_WRITE_DATA
                            };
                            coverage.major("IRP_MJ_CREATE");
                            match session.open_with_access(echo_ioctl::DOS_DEVICE_NAME, access) {
                                Ok(h) => {
                                    coverage.major("IRP_MJ_CLEANUP");
                                    coverage.major("IRP_MJ_CLOSE");
                                    session.close(h).map_err(|e| format!("close: {e}"))?;
                                    n += 1;
                                }
                                Err(HarnessError::Status(_)) => {}
                                Err(e) => return Err(format!("open: {e}")),
                            }
                        }
                        Ok(n)
                    })
                })
                .collect();
            let mut total = 0;
            for t in threads {
                total += t
                    .join()
                    .map_err(|_| "a storm thread panicked".to_owned())??;
            }
            Ok::<u64, String>(total)
        })
        .map_err(Stop::Fail)?
        .map_err(|e| Stop::Fail(format!("open/close storm: {e}")))?;
    Counters::add(&ctx.counters.calls, done * 2);
    machine.check("open/close storm")?;
    Ok(done)
}
