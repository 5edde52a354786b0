//! The knobs of the simulated kernel, in one place.
//!
//! A [`SimConfig`] is one value that says how strict the verifier is and
//! which of Windows' documented behaviours the sim chooses where Windows may
//! choose several (inline or pending completion, completion routines at
//! PASSIVE or DISPATCH, several provider threads, DPCs that report the
//! interrupted thread, ...). Every seeded policy derives its generator from
//! the one [`SimConfig::seed`], so a failing run is replayed by its seed.
//!
//! The configuration a test runs under comes from the environment
//! ([`SimConfig::from_env`]): `NT_SIM` holds a comma-separated list of
//! `key=value` pairs, in the same form [`SimConfig`]'s `Display` prints, so
//! the line a failing test prints is the line that replays it:
//!
//! ```text
//! NT_SIM='profile=strict,seed=7,completion_irql=caller' cargo test -p wsk
//! ```
//!
//! `profile=` picks the base ([`Profile`]); later keys override single knobs.
//! Tests that need a particular policy set it on their session; the
//! environment's choice is the baseline for everything they leave alone, so
//! CI runs the whole workspace under a matrix of configurations.
//!
//! The sim prints the configuration with every bugcheck and when a test
//! panics while a session is alive, with the `NT_SIM=...` line to replay it.

use std::fmt;
use std::str::FromStr;

use super::fault::CompletionPolicy;
use super::session::VerifierOptions;

/// The environment variable [`SimConfig::from_env`] reads.
pub const ENV_VAR: &str = "NT_SIM";

/// A named starting point for a [`SimConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// What a test gets when the environment says nothing: every verifier
    /// check, special pool, completion routines at DISPATCH_LEVEL, two
    /// work-item workers in seeded order, no schedule perturbation
    /// (deterministic timing for debugging).
    #[default]
    Default,
    /// The strictest settings CI runs the workspace under: [`Profile::Default`]
    /// plus schedule perturbation, several shuffled work-item workers, DPCs
    /// that report the interrupted thread, a mixed completion policy and
    /// WSK callbacks from several provider threads.
    Strict,
    /// Benchmarks: the fast pool, no perturbation, verifier checks still on.
    Fast,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Strict => "strict",
            Profile::Fast => "fast",
        }
    }
}

/// At which IRQL the I/O manager calls completion routines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompletionIrql {
    /// Always at DISPATCH_LEVEL, whatever the completing thread's IRQL (the
    /// harshest for routines that are not DISPATCH-safe).
    #[default]
    Dispatch,
    /// At the completing caller's IRQL, as NT does: a PASSIVE completer
    /// runs routines at PASSIVE_LEVEL (preemptible, in the middle of the
    /// caller's work).
    Caller,
}

/// Which pool allocator the session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolPolicy {
    /// Driver Verifier's special pool: guards around every block, freed
    /// blocks poisoned and quarantined, overruns, double and stale frees and
    /// writes after free raise the bugchecks NT raises.
    #[default]
    Special,
    /// Special pool with Driver Verifier's *verify start* alignment: the
    /// guard page precedes each block, so underruns fault at once (and
    /// overruns are found in the slack when the block is freed).
    SpecialVerifyStart,
    /// Plain tracked pool (benchmarks).
    Fast,
}

/// What the I/O manager does with METHOD_NEITHER IOCTLs from user mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NeitherIo {
    /// Refuse them ([`super::HarnessError::Unsupported`]), as the direct
    /// methods are: their buffers are user addresses, valid only in the
    /// requesting thread's process context and only inside try/except,
    /// which a Rust driver cannot write.
    #[default]
    Refuse,
    /// Send them; the user buffers are special-pool pages made
    /// inaccessible when the dispatch routine returns, so a driver that
    /// touches them later (from a worker, a completion routine, after
    /// pending the IRP) stops the process with 0x7E.
    Guarded,
}

/// Seeded schedule perturbation at the sim's API boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulePolicy {
    /// No injected yields or delays.
    #[default]
    Off,
    /// At each API entry and exit, yield with probability
    /// `yield_per_million` and sleep up to `max_delay_us` with probability
    /// `delay_per_million`.
    Perturb {
        /// Probability of a yield, parts per million.
        yield_per_million: u32,
        /// Probability of a short sleep, parts per million.
        delay_per_million: u32,
        /// The longest injected sleep, in microseconds.
        max_delay_us: u32,
    },
}

/// What `PsGetCurrentThread` reports in DPC context (completion routines,
/// DPCs, WSK callbacks run at DISPATCH_LEVEL on the sim's own threads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DpcIdentity {
    /// The sim thread's own identity.
    #[default]
    Own,
    /// The identity of a PASSIVE thread that the DPC "interrupted" (a
    /// registered executor or system thread, chosen by the seed), as NT
    /// reports in a DPC: "am I thread T?" is then wrong above PASSIVE.
    Interrupted,
}

/// The work-item queue's workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerPolicy {
    /// How many worker threads run work items (NT has several; no FIFO
    /// promise between them).
    pub threads: u8,
    /// Whether each worker picks a seeded random queued item instead of
    /// the oldest.
    pub shuffled: bool,
}

impl Default for WorkerPolicy {
    /// Two workers taking queued items in seeded random order: NT has a
    /// pool of worker threads and promises no order; one FIFO worker
    /// (`workers=1,worker_order=fifo`) is the debugging mode.
    fn default() -> Self {
        Self {
            threads: 2,
            shuffled: true,
        }
    }
}

/// The kernel-stack budget for driver code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackBudget {
    /// Bytes of driver frames allowed above the sim's entry into the
    /// driver (0: not checked).
    pub bytes: usize,
}

impl Default for StackBudget {
    fn default() -> Self {
        // 24 KiB on an optimised build; unoptimised frames are several
        // times larger, so debug builds get a proportional allowance.
        let bytes = if cfg!(debug_assertions) {
            24 * 1024 * 8
        } else {
            24 * 1024
        };
        Self { bytes }
    }
}

/// How waits behave where Windows may interrupt them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WaitPolicy {
    /// Probability (parts per million) that a wait Windows may interrupt
    /// returns early: an alertable wait with `STATUS_ALERTED`, a `UserMode`
    /// wait with `STATUS_USER_APC` ("Waits and APCs": an alertable wait is
    /// interrupted by alerts, a `UserMode` one to deliver user APCs or to
    /// terminate the thread). A non-alertable `KernelMode` wait is never
    /// interrupted.
    pub alert_per_million: u32,
}

/// At which IRQL the simulated WSK provider calls event callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallbackIrql {
    /// DISPATCH_LEVEL, with `WSK_FLAG_AT_DISPATCH_LEVEL`.
    #[default]
    Dispatch,
    /// PASSIVE_LEVEL, without the flag.
    Passive,
    /// Each callback picks one, seeded.
    Mixed,
}

/// When the simulated WSK provider completes a `WskSend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendCompletion {
    /// When the peer has acknowledged the data (WSK does no send
    /// buffering: "completed … until all of the data has actually been
    /// sent").
    #[default]
    Acknowledged,
    /// LENIENT: as soon as the bytes are copied into the host socket.
    Copied,
}

/// How the simulated WSK provider completes a `WskReceiveFrom` whose
/// datagram did not fit the buffer. The DDI page documents only the
/// `MSG_TRUNC` flag in `*ControlFlags`, not the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DatagramTruncation {
    /// STATUS_BUFFER_OVERFLOW (a warning: not NT_SUCCESS) with the bytes
    /// that fit and `MSG_TRUNC`, as AFD completes a truncated receive
    /// (Winsock's WSAEMSGSIZE): the stricter reading, a client must keep
    /// the bytes of a "failed" receive.
    #[default]
    Overflow,
    /// STATUS_SUCCESS with the bytes that fit and `MSG_TRUNC`.
    Success,
}

/// The simulated WSK provider's choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WskPolicy {
    /// The IRQL of event callbacks.
    pub callback_irql: CallbackIrql,
    /// How many provider threads deliver callbacks and completions (two
    /// allow concurrent callbacks on one datagram socket).
    pub provider_threads: u8,
    /// Whether an indication may be delivered inline from the client's own
    /// `WskReceive(0)`, enable or `WskRelease`.
    pub inline_indications: bool,
    /// When a send completes.
    pub send_completion: SendCompletion,
    /// Whether a disconnect indication may come before buffered data was
    /// indicated.
    pub early_disconnect: bool,
    /// The status of a truncated datagram receive.
    pub truncation: DatagramTruncation,
    /// A modeled round trip, in microseconds, added to every
    /// acknowledgement under [`SendCompletion::Acknowledged`]: a send
    /// completes no earlier than this long after its last byte was
    /// written (loopback acknowledges within the write; a real path takes
    /// a round trip). 0: none.
    pub ack_delay_us: u32,
}

impl Default for WskPolicy {
    fn default() -> Self {
        Self {
            callback_irql: CallbackIrql::Dispatch,
            provider_threads: 1,
            inline_indications: false,
            send_completion: SendCompletion::Acknowledged,
            early_disconnect: false,
            truncation: DatagramTruncation::Overflow,
            ack_delay_us: 0,
        }
    }
}

/// Every knob of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    /// The profile this configuration started from (printed, so the replay
    /// line reproduces it).
    pub profile: Profile,
    /// The seed every seeded policy derives its generator from.
    pub seed: u64,
    /// The verifier's switches.
    pub verifier: VerifierOptions,
    /// How simulated providers complete IRPs (inline, pending, mixed).
    pub completion: CompletionPolicy,
    /// The IRQL of completion routines.
    pub completion_irql: CompletionIrql,
    /// The pool allocator.
    pub pool: PoolPolicy,
    /// Schedule perturbation.
    pub schedule: SchedulePolicy,
    /// Thread identity reported in DPC context.
    pub dpc_identity: DpcIdentity,
    /// Work-item workers.
    pub workers: WorkerPolicy,
    /// Kernel-stack budget.
    pub stack_budget: StackBudget,
    /// Print every driver entry point's kernel-stack high-water mark when
    /// the session ends.
    pub stack_report: bool,
    /// Driver Verifier's Deadlock Detection (lock-order graph, 0xC4/0x1001).
    pub deadlock_detection: bool,
    /// Interrupted waits.
    pub waits: WaitPolicy,
    /// How long a cancelled IRP may take to complete before the verifier
    /// raises 0xC4/0x135, in milliseconds.
    pub cancel_timeout_ms: u32,
    /// METHOD_NEITHER IOCTLs from the harness.
    pub neither_io: NeitherIo,
    /// The WSK provider's choices.
    pub wsk: WskPolicy,
    /// Whether a completion, cancel, DPC or work-item routine of a driver
    /// whose DriverUnload is running is held back at its return until the
    /// harness decided whether the image unloads (the schedule that exposes
    /// "code after the last signal"). Off in every profile: a DriverUnload
    /// that waits for routines to *return* (WskDeregister's rundown) would
    /// be delayed by up to 200 ms per routine.
    pub unload_race: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self::profile(Profile::Default, 0)
    }
}

impl SimConfig {
    /// The configuration of `profile` with `seed`.
    pub fn profile(profile: Profile, seed: u64) -> Self {
        let base = Self {
            profile,
            seed,
            verifier: VerifierOptions::default(),
            completion: CompletionPolicy::Inline,
            completion_irql: CompletionIrql::Dispatch,
            pool: PoolPolicy::Special,
            schedule: SchedulePolicy::Off,
            dpc_identity: DpcIdentity::Own,
            workers: WorkerPolicy::default(),
            stack_budget: StackBudget::default(),
            stack_report: false,
            deadlock_detection: true,
            waits: WaitPolicy::default(),
            cancel_timeout_ms: 5_000,
            neither_io: NeitherIo::Refuse,
            wsk: WskPolicy::default(),
            unload_race: false,
        };
        match profile {
            Profile::Default => base,
            Profile::Strict => Self {
                completion: CompletionPolicy::Mixed {
                    pending_per_million: 500_000,
                    seed,
                },
                schedule: SchedulePolicy::Perturb {
                    yield_per_million: 20_000,
                    delay_per_million: 2_000,
                    max_delay_us: 200,
                },
                dpc_identity: DpcIdentity::Interrupted,
                workers: WorkerPolicy {
                    threads: 4,
                    shuffled: true,
                },
                waits: WaitPolicy {
                    alert_per_million: 100_000,
                },
                wsk: WskPolicy {
                    callback_irql: CallbackIrql::Mixed,
                    provider_threads: 2,
                    inline_indications: true,
                    early_disconnect: true,
                    ..WskPolicy::default()
                },
                ..base
            },
            Profile::Fast => Self {
                pool: PoolPolicy::Fast,
                ..base
            },
        }
    }

    /// The configuration the environment asks for (`NT_SIM`), or the
    /// default profile.
    ///
    /// # Panics
    /// When `NT_SIM` does not parse: a mistyped matrix entry must not
    /// silently run the default configuration.
    pub fn from_env() -> Self {
        match std::env::var(ENV_VAR) {
            Ok(text) if !text.trim().is_empty() => text
                .parse()
                .unwrap_or_else(|e| panic!("nt::sim: {ENV_VAR}={text:?}: {e}")),
            _ => Self::default(),
        }
    }

    /// The line that replays this configuration.
    pub fn replay_line(&self) -> String {
        format!("{ENV_VAR}='{self}'")
    }
}

/// A `NT_SIM` string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn bad(key: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError(format!("{key}={value:?}: expected {expected}"))
}

fn parse_num<T: FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
    value.parse().map_err(|_| bad(key, value, "a number"))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "1" | "on" | "true" | "yes" => Ok(true),
        "0" | "off" | "false" | "no" => Ok(false),
        _ => Err(bad(key, value, "on or off")),
    }
}

const MIXED_EXPECTED: &str = "inline, pending or mixed[:ppm[:seed]]";

/// `completion=mixed[:ppm[:seed]]`: the generator's seed is the
/// configuration's unless the value names its own (a session whose
/// completion policy was given a seed of its own prints it, so its replay
/// line brings the same decisions back).
fn parse_mixed(
    key: &str,
    value: &str,
    rest: &str,
    seed: u64,
) -> Result<CompletionPolicy, ConfigError> {
    let mut parts = rest.split(':');
    if parts.next() != Some("") {
        return Err(bad(key, value, MIXED_EXPECTED));
    }
    let pending_per_million = match parts.next() {
        Some(p) => parse_num(key, p)?,
        None => 500_000,
    };
    let seed = match parts.next() {
        Some(s) => parse_num(key, s)?,
        None => seed,
    };
    if parts.next().is_some() {
        return Err(bad(key, value, MIXED_EXPECTED));
    }
    Ok(CompletionPolicy::Mixed {
        pending_per_million,
        seed,
    })
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

impl FromStr for SimConfig {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let pairs: Vec<(&str, &str)> = text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.split_once('=')
                    .map(|(k, v)| (k.trim(), v.trim()))
                    .ok_or_else(|| ConfigError(format!("{p:?}: expected key=value")))
            })
            .collect::<Result<_, _>>()?;
        // The profile and the seed first: the other keys override them.
        let mut profile = Profile::Default;
        let mut seed = 0u64;
        for &(key, value) in &pairs {
            match key {
                "profile" => {
                    profile = match value {
                        "default" => Profile::Default,
                        "strict" => Profile::Strict,
                        "fast" => Profile::Fast,
                        _ => return Err(bad(key, value, "default, strict or fast")),
                    }
                }
                "seed" => seed = parse_num(key, value)?,
                _ => {}
            }
        }
        let mut c = SimConfig::profile(profile, seed);
        for &(key, value) in &pairs {
            match key {
                "profile" | "seed" => {}
                "verifier" => c.verifier.enabled = parse_bool(key, value)?,
                "poison" => c.verifier.poison_uninitialized_pool = parse_bool(key, value)?,
                "abort" => c.verifier.abort_on_bugcheck = parse_bool(key, value)?,
                "completion" => {
                    c.completion = match value {
                        "inline" => CompletionPolicy::Inline,
                        "pending" => CompletionPolicy::ForcePending,
                        _ => match value.strip_prefix("mixed") {
                            Some(rest) => parse_mixed(key, value, rest, seed)?,
                            None => return Err(bad(key, value, MIXED_EXPECTED)),
                        },
                    }
                }
                "completion_irql" => {
                    c.completion_irql = match value {
                        "dispatch" => CompletionIrql::Dispatch,
                        "caller" => CompletionIrql::Caller,
                        _ => return Err(bad(key, value, "dispatch or caller")),
                    }
                }
                "pool" => {
                    c.pool = match value {
                        "special" => PoolPolicy::Special,
                        "special-start" => PoolPolicy::SpecialVerifyStart,
                        "fast" => PoolPolicy::Fast,
                        _ => return Err(bad(key, value, "special, special-start or fast")),
                    }
                }
                "schedule" => {
                    c.schedule = if value == "off" {
                        SchedulePolicy::Off
                    } else {
                        let parts: Vec<&str> = value.split(':').collect();
                        match parts.as_slice() {
                            [y, d, m] => SchedulePolicy::Perturb {
                                yield_per_million: parse_num(key, y)?,
                                delay_per_million: parse_num(key, d)?,
                                max_delay_us: parse_num(key, m)?,
                            },
                            _ => {
                                return Err(bad(
                                    key,
                                    value,
                                    "off or yield_ppm:delay_ppm:max_delay_us",
                                ));
                            }
                        }
                    }
                }
                "dpc_identity" => {
                    c.dpc_identity = match value {
                        "own" => DpcIdentity::Own,
                        "interrupted" => DpcIdentity::Interrupted,
                        _ => return Err(bad(key, value, "own or interrupted")),
                    }
                }
                "workers" => c.workers.threads = parse_num(key, value)?,
                "worker_order" => {
                    c.workers.shuffled = match value {
                        "fifo" => false,
                        "shuffled" => true,
                        _ => return Err(bad(key, value, "fifo or shuffled")),
                    }
                }
                "stack_budget" => c.stack_budget.bytes = parse_num(key, value)?,
                "stack_report" => c.stack_report = parse_bool(key, value)?,
                "deadlock_detection" => c.deadlock_detection = parse_bool(key, value)?,
                "wait_alerts" => c.waits.alert_per_million = parse_num(key, value)?,
                "cancel_timeout_ms" => c.cancel_timeout_ms = parse_num(key, value)?,
                "neither_io" => {
                    c.neither_io = match value {
                        "refuse" => NeitherIo::Refuse,
                        "guarded" => NeitherIo::Guarded,
                        _ => return Err(bad(key, value, "refuse or guarded")),
                    }
                }
                "wsk_callback_irql" => {
                    c.wsk.callback_irql = match value {
                        "dispatch" => CallbackIrql::Dispatch,
                        "passive" => CallbackIrql::Passive,
                        "mixed" => CallbackIrql::Mixed,
                        _ => return Err(bad(key, value, "dispatch, passive or mixed")),
                    }
                }
                "wsk_threads" => c.wsk.provider_threads = parse_num(key, value)?,
                "wsk_inline_indications" => c.wsk.inline_indications = parse_bool(key, value)?,
                "wsk_send" => {
                    c.wsk.send_completion = match value {
                        "acked" => SendCompletion::Acknowledged,
                        "copied" => SendCompletion::Copied,
                        _ => return Err(bad(key, value, "acked or copied")),
                    }
                }
                "wsk_early_disconnect" => c.wsk.early_disconnect = parse_bool(key, value)?,
                "wsk_ack_delay_us" => c.wsk.ack_delay_us = parse_num(key, value)?,
                "unload_race" => c.unload_race = parse_bool(key, value)?,
                "wsk_truncation" => {
                    c.wsk.truncation = match value {
                        "overflow" => DatagramTruncation::Overflow,
                        "success" => DatagramTruncation::Success,
                        _ => return Err(bad(key, value, "overflow or success")),
                    }
                }
                _ => return Err(ConfigError(format!("unknown key {key:?}"))),
            }
        }
        if c.workers.threads == 0 {
            return Err(bad("workers", "0", "at least 1"));
        }
        if c.wsk.provider_threads == 0 {
            return Err(bad("wsk_threads", "0", "at least 1"));
        }
        Ok(c)
    }
}

impl fmt::Display for SimConfig {
    /// Every knob, as `key=value` pairs `NT_SIM` accepts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "profile={},seed={}", self.profile.name(), self.seed)?;
        write!(
            f,
            ",verifier={},poison={},abort={}",
            on_off(self.verifier.enabled),
            on_off(self.verifier.poison_uninitialized_pool),
            on_off(self.verifier.abort_on_bugcheck)
        )?;
        match self.completion {
            CompletionPolicy::Inline => f.write_str(",completion=inline")?,
            CompletionPolicy::ForcePending => f.write_str(",completion=pending")?,
            CompletionPolicy::Mixed {
                pending_per_million,
                seed,
            } if seed == self.seed => write!(f, ",completion=mixed:{pending_per_million}")?,
            CompletionPolicy::Mixed {
                pending_per_million,
                seed,
            } => write!(f, ",completion=mixed:{pending_per_million}:{seed}")?,
        }
        let irql = match self.completion_irql {
            CompletionIrql::Dispatch => "dispatch",
            CompletionIrql::Caller => "caller",
        };
        let pool = match self.pool {
            PoolPolicy::Special => "special",
            PoolPolicy::SpecialVerifyStart => "special-start",
            PoolPolicy::Fast => "fast",
        };
        write!(f, ",completion_irql={irql},pool={pool}")?;
        match self.schedule {
            SchedulePolicy::Off => f.write_str(",schedule=off")?,
            SchedulePolicy::Perturb {
                yield_per_million,
                delay_per_million,
                max_delay_us,
            } => write!(
                f,
                ",schedule={yield_per_million}:{delay_per_million}:{max_delay_us}"
            )?,
        }
        let dpc = match self.dpc_identity {
            DpcIdentity::Own => "own",
            DpcIdentity::Interrupted => "interrupted",
        };
        let order = if self.workers.shuffled {
            "shuffled"
        } else {
            "fifo"
        };
        write!(
            f,
            ",dpc_identity={dpc},workers={},worker_order={order},stack_budget={},stack_report={}",
            self.workers.threads,
            self.stack_budget.bytes,
            on_off(self.stack_report)
        )?;
        write!(
            f,
            ",deadlock_detection={},wait_alerts={},cancel_timeout_ms={}",
            on_off(self.deadlock_detection),
            self.waits.alert_per_million,
            self.cancel_timeout_ms
        )?;
        let neither = match self.neither_io {
            NeitherIo::Refuse => "refuse",
            NeitherIo::Guarded => "guarded",
        };
        write!(f, ",neither_io={neither}")?;
        let cb = match self.wsk.callback_irql {
            CallbackIrql::Dispatch => "dispatch",
            CallbackIrql::Passive => "passive",
            CallbackIrql::Mixed => "mixed",
        };
        let send = match self.wsk.send_completion {
            SendCompletion::Acknowledged => "acked",
            SendCompletion::Copied => "copied",
        };
        let truncation = match self.wsk.truncation {
            DatagramTruncation::Overflow => "overflow",
            DatagramTruncation::Success => "success",
        };
        write!(
            f,
            ",wsk_callback_irql={cb},wsk_threads={},wsk_inline_indications={},wsk_send={send},wsk_early_disconnect={},wsk_truncation={truncation},wsk_ack_delay_us={}",
            self.wsk.provider_threads,
            on_off(self.wsk.inline_indications),
            on_off(self.wsk.early_disconnect),
            self.wsk.ack_delay_us
        )?;
        write!(f, ",unload_race={}", on_off(self.unload_race))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips_through_parse() {
        for profile in [Profile::Default, Profile::Strict, Profile::Fast] {
            let mut c = SimConfig::profile(profile, 42);
            c.completion_irql = CompletionIrql::Caller;
            c.wsk.provider_threads = 3;
            c.wsk.ack_delay_us = 250;
            c.unload_race = true;
            c.deadlock_detection = false;
            c.stack_report = true;
            c.waits.alert_per_million = 7;
            c.cancel_timeout_ms = 250;
            c.wsk.truncation = DatagramTruncation::Success;
            c.neither_io = NeitherIo::Guarded;
            let text = c.to_string();
            let back: SimConfig = text.parse().unwrap();
            assert_eq!(back, c, "{text}");
            c.pool = PoolPolicy::SpecialVerifyStart;
            let text = c.to_string();
            let back: SimConfig = text.parse().unwrap();
            assert_eq!(back, c, "{text}");
        }
    }

    #[test]
    fn a_completion_seed_of_its_own_survives_the_replay_line() {
        // A configuration built from another profile's (or the
        // environment's) with only `seed` changed keeps the old completion
        // seed: the replay line must carry it, or the replay draws other
        // inline/pending decisions than the failing run did.
        for profile in [Profile::Default, Profile::Strict] {
            let c = SimConfig {
                seed: 12_345,
                completion: CompletionPolicy::Mixed {
                    pending_per_million: 250_000,
                    seed: 7,
                },
                ..SimConfig::profile(profile, 7)
            };
            let text = c.to_string();
            assert!(text.contains("completion=mixed:250000:7"), "{text}");
            assert_eq!(text.parse::<SimConfig>().unwrap(), c, "{text}");
        }
        let c: SimConfig = "seed=3,completion=mixed:10".parse().unwrap();
        assert_eq!(
            c.completion,
            CompletionPolicy::Mixed {
                pending_per_million: 10,
                seed: 3
            }
        );
        assert!(c.to_string().contains("completion=mixed:10,"), "{c}");
    }

    #[test]
    fn later_keys_override_the_profile() {
        let c: SimConfig = "profile=strict,seed=9,workers=2,pool=fast".parse().unwrap();
        assert_eq!(c.profile, Profile::Strict);
        assert_eq!(c.seed, 9);
        assert_eq!(c.workers.threads, 2);
        assert!(c.workers.shuffled, "strict's other worker knob kept");
        assert_eq!(c.pool, PoolPolicy::Fast);
        assert_eq!(
            c.completion,
            CompletionPolicy::Mixed {
                pending_per_million: 500_000,
                seed: 9
            }
        );
    }

    #[test]
    fn bad_strings_are_errors_that_name_the_key() {
        for (text, needle) in [
            ("profile=lenient", "profile"),
            ("seed=x", "seed"),
            ("workers=0", "workers"),
            ("nonsense=1", "nonsense"),
            ("completion", "key=value"),
            ("schedule=1:2", "schedule"),
            ("completion=mixed:1:2:3", "completion"),
            ("completion=mixedx", "completion"),
        ] {
            let err = text.parse::<SimConfig>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
