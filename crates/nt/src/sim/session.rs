//! A simulated kernel session: the state of one booted "machine".
//!
//! Every WDK function of the sim acts on the *current* session of the
//! calling thread. A session is current on the thread that booted it, on
//! every thread the sim creates for it (system threads, work-item workers,
//! the WSK provider's threads), and on any thread that holds
//! [`Session::enter`]'s guard. Sessions share nothing, so tests running in
//! parallel in one process never see each other's pool counters, faults,
//! verifier findings or completion policy.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::config::{CompletionIrql, SimConfig};
use super::fault::{Completion, CompletionKnob, CompletionPolicy, FaultPlan, FaultTarget, Faults};
use super::pool::{PoolState, PoolStats};
use super::verifier::{BugCheck, VerifierReport};

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

/// Locks a mutex, ignoring poisoning (a panicking test must not cascade).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Verifier switches. Everything is on by default, as with
/// `verifier /standard` plus I/O verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifierOptions {
    /// Run the verifier's checks (the kernel's own bugchecks, such as 0x44,
    /// are raised either way).
    pub enabled: bool,
    /// Fill `POOL_FLAG_UNINITIALIZED` allocations with a pattern instead of
    /// zeros, so code that relies on zeroed memory fails.
    pub poison_uninitialized_pool: bool,
    /// Abort the process at the first bugcheck (a real machine stops).
    pub abort_on_bugcheck: bool,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            poison_uninitialized_pool: true,
            abort_on_bugcheck: std::env::var_os("NT_SIM_ABORT_ON_BUGCHECK").is_some(),
        }
    }
}

/// [`VerifierOptions`] packed in one atomic word, so hot paths read them
/// without a lock.
#[derive(Debug)]
struct OptionBits(AtomicU8);

impl OptionBits {
    const ENABLED: u8 = 1;
    const COMPLETION_AT_DISPATCH: u8 = 2;
    const POISON: u8 = 4;
    const ABORT: u8 = 8;

    fn new(options: VerifierOptions) -> Self {
        let bits = Self(AtomicU8::new(0));
        bits.set(options);
        bits
    }

    fn set_completion_irql(&self, irql: CompletionIrql) {
        match irql {
            CompletionIrql::Dispatch => self
                .0
                .fetch_or(Self::COMPLETION_AT_DISPATCH, Ordering::Relaxed),
            CompletionIrql::Caller => self
                .0
                .fetch_and(!Self::COMPLETION_AT_DISPATCH, Ordering::Relaxed),
        };
    }

    fn set(&self, o: VerifierOptions) {
        // The completion-IRQL bit belongs to the config, not to the options.
        let mut bits = self.0.load(Ordering::Relaxed) & Self::COMPLETION_AT_DISPATCH;
        for (on, bit) in [
            (o.enabled, Self::ENABLED),
            (o.poison_uninitialized_pool, Self::POISON),
            (o.abort_on_bugcheck, Self::ABORT),
        ] {
            if on {
                bits |= bit;
            }
        }
        self.0.store(bits, Ordering::Relaxed);
    }

    fn get(&self) -> VerifierOptions {
        let bits = self.0.load(Ordering::Relaxed);
        VerifierOptions {
            enabled: bits & Self::ENABLED != 0,
            poison_uninitialized_pool: bits & Self::POISON != 0,
            abort_on_bugcheck: bits & Self::ABORT != 0,
        }
    }
}

/// An operation still outstanding (a running system thread, a queued work
/// item, an IRP in flight, ...), as the unload check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOperation {
    /// What kind of operation.
    pub kind: &'static str,
    /// The object's address (bugcheck parameter 1 of 0xCE).
    pub address: u64,
    /// Who started it, where known.
    pub location: Option<&'static Location<'static>>,
    /// The driver generation that owns it (0: code outside any driver).
    pub owner: u64,
}

/// A handle table entry.
#[derive(Clone)]
pub(crate) enum HandleEntry {
    /// An open registry key (lower-cased full path).
    Key(String),
    /// A referenced object with a closing action.
    Object(Arc<dyn Any + Send + Sync>),
}

/// Which handle table a handle lives in (see [`super::object`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandleProcess {
    /// A kernel handle (`OBJ_KERNEL_HANDLE`): valid in every process
    /// context, never visible to user mode.
    Kernel,
    /// The System process's table (opened without `OBJ_KERNEL_HANDLE` in a
    /// system thread, DriverEntry or Unload).
    System,
    /// The requesting user process's table (opened without
    /// `OBJ_KERNEL_HANDLE` in a dispatch routine for a user-mode request).
    User,
}

/// An open handle: what it refers to, in which process's table, and who
/// opened it where.
pub(crate) struct HandleRecord {
    pub(crate) entry: HandleEntry,
    pub(crate) process: HandleProcess,
    /// The driver generation that opened it (0: code outside any driver).
    pub(crate) owner: u64,
    pub(crate) site: Option<&'static Location<'static>>,
}

thread_local! {
    /// Whether this thread runs in the requesting user process's context
    /// (inside the harness's call of a dispatch routine for a user-mode
    /// request) rather than the System process's.
    static USER_CONTEXT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The process context of this thread: `User` inside a dispatch routine
/// the harness called for a user-mode request (and whatever runs inline
/// there), `System` elsewhere (DriverEntry, Unload, system threads, work
/// items, the sim's own threads).
pub(crate) fn process_context() -> HandleProcess {
    if USER_CONTEXT.with(std::cell::Cell::get) {
        HandleProcess::User
    } else {
        HandleProcess::System
    }
}

/// Runs `f` in the requesting user process's context.
pub(crate) fn in_user_context<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            USER_CONTEXT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(USER_CONTEXT.with(|c| c.replace(true)));
    f()
}

/// The state of one simulated machine.
pub(crate) struct Kernel {
    pub(crate) id: u64,
    options: OptionBits,
    /// The whole configuration (hot knobs are mirrored in atomics:
    /// `options`, `completion`).
    config: Mutex<SimConfig>,
    report: Mutex<VerifierReport>,
    observed_bugchecks: AtomicU64,
    crashed: AtomicBool,
    pub(crate) faults: Faults,
    /// Driver code running right now.
    pub(crate) callouts: super::callout::Callouts,
    pub(crate) completion: CompletionKnob,
    pub(crate) pool: PoolState,
    /// The I/O manager's IRP table (a field, not an extension: every IRP
    /// operation reads it).
    pub(crate) io: super::io::IoState,
    /// The lock-order graph of Deadlock Detection.
    pub(crate) locks: super::irql::LockOrder,
    /// Schedule perturbation and stack-budget knobs (read at every API
    /// entry).
    pub(crate) schedule: super::schedule::Schedule,
    /// The generation of the loaded driver (0: none loaded yet / test code).
    pub(crate) driver_generation: AtomicU64,
    /// Live system threads and the identity DPC context reports.
    pub(crate) threads: super::thread::ThreadRegistry,
    pending: Mutex<BTreeMap<u64, PendingOperation>>,
    next_pending: AtomicU64,
    handles: Mutex<HashMap<usize, HandleRecord>>,
    next_handle: AtomicU64,
    extensions: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// The WSK subsystem's extension, once made (every WSK call finds its
    /// socket through it: a lock-free read instead of the map's lock).
    pub(crate) wsk: std::sync::OnceLock<Arc<super::wsk::WskState>>,
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Kernel>>> = const { RefCell::new(None) };
}

/// The current session of this thread.
///
/// # Panics
/// When the thread has no session: that is a harness misuse (boot one with
/// [`Session::boot`] or enter one with [`Session::enter`]).
///
/// Like [`with_current`], an API boundary.
#[track_caller]
pub(crate) fn current() -> Arc<Kernel> {
    let location = Location::caller();
    let kernel = try_current().unwrap_or_else(|| {
        panic!(
            "nt::sim: no simulated kernel session on this thread (called at {location}); boot \
             one with nt::sim::Session::boot() or enter one with session.enter()"
        )
    });
    super::schedule::api_entry(&kernel, location);
    kernel
}

/// The current session of this thread, if any.
pub(crate) fn try_current() -> Option<Arc<Kernel>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Runs `f` with the current session of this thread, without cloning it.
/// This is how the sim's WDK functions enter the kernel: the call is an API
/// boundary (stack-depth measurement, schedule perturbation before and
/// after).
#[track_caller]
pub(crate) fn with_current<R>(f: impl FnOnce(&Arc<Kernel>) -> R) -> R {
    let location = Location::caller();
    CURRENT.with(|c| match c.borrow().as_ref() {
        Some(kernel) => {
            super::schedule::api_entry(kernel, location);
            let result = f(kernel);
            super::schedule::boundary(kernel);
            result
        }
        None => panic!(
            "nt::sim: no simulated kernel session on this thread (called at {location}); boot \
             one with nt::sim::Session::boot() or enter one with session.enter()"
        ),
    })
}

/// Runs `f` with the current session of this thread, if there is one,
/// without cloning it.
pub(crate) fn try_with_current<R>(f: impl FnOnce(&Arc<Kernel>) -> R) -> Option<R> {
    CURRENT.with(|c| c.borrow().as_ref().map(f))
}

/// The configuration of this thread's current session, for the special
/// pool's fault handler: no allocation, no blocking (a borrow or lock that
/// is taken gives `None`).
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) fn config_for_fault_report() -> Option<SimConfig> {
    CURRENT
        .try_with(|c| {
            let current = c.try_borrow().ok()?;
            let kernel = current.as_ref()?;
            let mut config = *kernel.config.try_lock().ok()?;
            config.verifier = kernel.options();
            Some(config)
        })
        .ok()
        .flatten()
}

/// Replaces this thread's current session; returns the previous one.
pub(crate) fn replace_current(kernel: Option<Arc<Kernel>>) -> Option<Arc<Kernel>> {
    set_current(kernel)
}

fn set_current(kernel: Option<Arc<Kernel>>) -> Option<Arc<Kernel>> {
    CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), kernel))
}

/// Spawns a host thread that belongs to `kernel`: the session is current on
/// it and its IRQL starts at PASSIVE_LEVEL.
pub(crate) fn spawn_kernel_thread<F>(
    kernel: &Arc<Kernel>,
    name: String,
    f: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    let kernel = Arc::clone(kernel);
    std::thread::Builder::new().name(name).spawn(move || {
        super::special::prepare_thread();
        set_current(Some(kernel));
        f();
        set_current(None);
    })
}

impl Kernel {
    fn new(config: SimConfig) -> Self {
        let options = OptionBits::new(config.verifier);
        options.set_completion_irql(config.completion_irql);
        let completion = CompletionKnob::default();
        completion.set(config.completion);
        let callouts = super::callout::Callouts::default();
        callouts.set_unload_race(config.unload_race);
        let locks = super::irql::LockOrder::default();
        locks.set_enabled(config.deadlock_detection);
        let schedule = super::schedule::Schedule::default();
        schedule.configure(&config);
        Self {
            id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
            options,
            config: Mutex::new(config),
            report: Mutex::new(VerifierReport::default()),
            observed_bugchecks: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
            faults: Faults::default(),
            callouts,
            completion,
            pool: PoolState::new(config.pool),
            io: super::io::IoState::default(),
            locks,
            schedule,
            driver_generation: AtomicU64::new(0),
            threads: super::thread::ThreadRegistry::new(config.dpc_identity, config.seed),
            pending: Mutex::new(BTreeMap::new()),
            next_pending: AtomicU64::new(1),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            extensions: Mutex::new(HashMap::new()),
            wsk: std::sync::OnceLock::new(),
        }
    }

    /// The verifier options in force.
    pub(crate) fn options(&self) -> VerifierOptions {
        self.options.get()
    }

    /// The session's configuration, unless its lock is taken (for the
    /// panic hook, which must never block).
    fn try_config(&self) -> Option<SimConfig> {
        let mut config = *self.config.try_lock().ok()?;
        config.verifier = self.options();
        Some(config)
    }

    /// The session's configuration.
    pub(crate) fn config(&self) -> SimConfig {
        let mut config = *lock(&self.config);
        config.verifier = self.options();
        config
    }

    /// Whether completion routines are raised to DISPATCH_LEVEL (one atomic
    /// load).
    pub(crate) fn completion_at_dispatch(&self) -> bool {
        self.options.0.load(Ordering::Relaxed) & OptionBits::COMPLETION_AT_DISPATCH != 0
    }

    /// Whether the verifier's own checks run (one atomic load: it is asked
    /// on every hot path).
    pub(crate) fn verifying(&self) -> bool {
        self.options.0.load(Ordering::Relaxed) & OptionBits::ENABLED != 0
    }

    /// Whether a bugcheck has been raised.
    pub(crate) fn crashed(&self) -> bool {
        self.crashed.load(Ordering::Acquire)
    }

    /// Raises a bugcheck: records it, prints it, marks the session crashed.
    /// The caller then takes the safest way out.
    #[track_caller]
    pub(crate) fn bugcheck(&self, code: u32, parameters: [u64; 4], description: impl Into<String>) {
        self.bugcheck_at(code, parameters, description, Some(Location::caller()));
    }

    /// [`Self::bugcheck`] with an explicit call site.
    pub(crate) fn bugcheck_at(
        &self,
        code: u32,
        parameters: [u64; 4],
        description: impl Into<String>,
        location: Option<&'static Location<'static>>,
    ) {
        let thread = std::thread::current();
        let bugcheck = BugCheck {
            code,
            parameters,
            description: description.into(),
            location,
            thread: thread.name().unwrap_or("<unnamed>").to_owned(),
        };
        eprintln!(
            "\n*** nt::sim session {}: bugcheck\n{bugcheck}\n    replay: {}\n",
            self.id,
            self.config().replay_line()
        );
        let abort = self.options().abort_on_bugcheck;
        lock(&self.report).bugchecks.push(bugcheck);
        self.crashed.store(true, Ordering::Release);
        if abort {
            std::process::abort();
        }
    }

    /// Records leaks found by an unload or the end of the session.
    pub(crate) fn record_leaks(&self, leaks: Vec<super::verifier::Leak>) {
        lock(&self.report).leaks.extend(leaks);
    }

    /// A snapshot of the report; marks its bugchecks as seen.
    pub(crate) fn report(&self) -> VerifierReport {
        let report = lock(&self.report).clone();
        self.observed_bugchecks
            .store(report.bugchecks.len() as u64, Ordering::Release);
        report
    }

    fn unobserved_bugchecks(&self) -> Vec<BugCheck> {
        let seen = self.observed_bugchecks.load(Ordering::Acquire) as usize;
        lock(&self.report)
            .bugchecks
            .iter()
            .skip(seen)
            .cloned()
            .collect()
    }

    /// Registers an outstanding operation; returns its key.
    #[track_caller]
    pub(crate) fn pending_begin(&self, kind: &'static str, address: u64) -> u64 {
        let key = self.next_pending.fetch_add(1, Ordering::Relaxed);
        let operation = PendingOperation {
            kind,
            address,
            location: Some(Location::caller()),
            owner: self.driver_generation.load(Ordering::Acquire),
        };
        lock(&self.pending).insert(key, operation);
        key
    }

    /// Registers an outstanding operation owned by driver generation `owner`.
    #[track_caller]
    pub(crate) fn pending_begin_for(&self, kind: &'static str, address: u64, owner: u64) -> u64 {
        let key = self.next_pending.fetch_add(1, Ordering::Relaxed);
        let operation = PendingOperation {
            kind,
            address,
            location: Some(Location::caller()),
            owner,
        };
        lock(&self.pending).insert(key, operation);
        key
    }

    /// A key for an outstanding operation kept outside the table (the I/O
    /// manager's IRPs in flight, see `io::irps_in_flight`): it orders that
    /// operation among the table's.
    pub(crate) fn pending_key(&self) -> u64 {
        self.next_pending.fetch_add(1, Ordering::Relaxed)
    }

    /// Unregisters an outstanding operation.
    pub(crate) fn pending_end(&self, key: u64) {
        lock(&self.pending).remove(&key);
    }

    /// Outstanding operations owned by driver generation `owner` (all of
    /// them for `None`).
    pub(crate) fn pending_operations(&self, owner: Option<u64>) -> Vec<PendingOperation> {
        let mut all: Vec<(u64, PendingOperation)> = lock(&self.pending)
            .iter()
            .filter(|(_, op)| owner.is_none_or(|o| op.owner == o))
            .map(|(key, op)| (*key, op.clone()))
            .collect();
        all.extend(super::io::irps_in_flight(self, owner));
        all.sort_by_key(|(key, _)| *key);
        all.into_iter().map(|(_, op)| op).collect()
    }

    /// Inserts a handle into `process`'s table for the current driver
    /// generation; returns it.
    pub(crate) fn handle_insert(
        &self,
        entry: HandleEntry,
        process: HandleProcess,
        site: Option<&'static Location<'static>>,
    ) -> usize {
        // Handles are multiples of 4, like NT's, and never 0.
        let handle = (self.next_handle.fetch_add(1, Ordering::Relaxed) as usize) * 4;
        let record = HandleRecord {
            entry,
            process,
            owner: self.driver_generation.load(Ordering::Acquire),
            site,
        };
        lock(&self.handles).insert(handle, record);
        handle
    }

    /// Looks a handle up in the tables this thread's process context sees
    /// (its own process's and the kernel handles): the entry and its table.
    pub(crate) fn handle_get(&self, handle: usize) -> Option<(HandleEntry, HandleProcess)> {
        let context = process_context();
        lock(&self.handles)
            .get(&handle)
            .filter(|r| r.process == HandleProcess::Kernel || r.process == context)
            .map(|r| (r.entry.clone(), r.process))
    }

    /// Removes a handle this thread's process context sees.
    pub(crate) fn handle_remove(&self, handle: usize) -> Option<HandleEntry> {
        let context = process_context();
        let mut handles = lock(&self.handles);
        let visible = handles
            .get(&handle)
            .is_some_and(|r| r.process == HandleProcess::Kernel || r.process == context);
        if !visible {
            return None;
        }
        handles.remove(&handle).map(|r| r.entry)
    }

    /// Handles driver generation `owner` opened and has not closed, by
    /// handle value: (handle, entry, table, where opened).
    pub(crate) fn handles_owned_by(
        &self,
        owner: u64,
    ) -> Vec<(
        usize,
        HandleEntry,
        HandleProcess,
        Option<&'static Location<'static>>,
    )> {
        let mut open: Vec<_> = lock(&self.handles)
            .iter()
            .filter(|(_, r)| r.owner == owner)
            .map(|(&h, r)| (h, r.entry.clone(), r.process, r.site))
            .collect();
        open.sort_by_key(|o| o.0);
        open
    }

    /// The session's instance of a subsystem's state, if it was created.
    pub(crate) fn try_extension<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let map = lock(&self.extensions);
        let entry = map.get(&TypeId::of::<T>())?;
        Arc::clone(entry).downcast::<T>().ok()
    }

    /// The session's instance of a subsystem's state (created on first use).
    pub(crate) fn extension<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        let mut map = lock(&self.extensions);
        let entry = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()));
        match Arc::clone(entry).downcast::<T>() {
            Ok(state) => state,
            Err(_) => unreachable!("extension map is keyed by TypeId"),
        }
    }
}

/// A booted simulated kernel. Dropping it ends the session: if a bugcheck
/// was raised and never read through [`Session::report`], the drop panics so
/// the owning test fails loudly.
pub struct Session {
    pub(crate) kernel: Arc<Kernel>,
    previous: Option<Arc<Kernel>>,
    finished: bool,
}

/// Keeps a session current on this thread until dropped.
pub struct EnterGuard {
    previous: Option<Arc<Kernel>>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        set_current(self.previous.take());
    }
}

impl Session {
    /// Boots a session with the configuration the environment asks for
    /// ([`SimConfig::from_env`]: the verifier on, special pool, ...), and
    /// makes it current on this thread.
    pub fn boot() -> Session {
        Self::boot_config(SimConfig::from_env())
    }

    /// Boots a session with the environment's configuration but the given
    /// verifier options.
    pub fn boot_with(options: VerifierOptions) -> Session {
        Self::boot_config(SimConfig {
            verifier: options,
            ..SimConfig::from_env()
        })
    }

    /// Boots a session with exactly `config`.
    pub fn boot_config(config: SimConfig) -> Session {
        super::special::prepare_thread();
        let kernel = Arc::new(Kernel::new(config));
        failure_report::booted(&kernel);
        let previous = set_current(Some(Arc::clone(&kernel)));
        Session {
            kernel,
            previous,
            finished: false,
        }
    }

    /// This session's id (unique in the process).
    pub fn id(&self) -> u64 {
        self.kernel.id
    }

    /// Makes this session current on the calling thread (for threads the
    /// test creates itself) until the guard is dropped.
    pub fn enter(&self) -> EnterGuard {
        super::special::prepare_thread();
        EnterGuard {
            previous: set_current(Some(Arc::clone(&self.kernel))),
        }
    }

    /// Runs `f` on a new host thread that belongs to this session.
    pub fn spawn<F>(&self, name: &str, f: F) -> std::thread::JoinHandle<()>
    where
        F: FnOnce() + Send + 'static,
    {
        spawn_kernel_thread(&self.kernel, name.to_owned(), f)
            .unwrap_or_else(|e| panic!("nt::sim: cannot spawn host thread {name}: {e}"))
    }

    /// The configuration in force (with the changes made through the
    /// setters below).
    pub fn config(&self) -> SimConfig {
        self.kernel.config()
    }

    /// Sets the IRQL completion routines run at.
    pub fn set_completion_irql(&self, irql: CompletionIrql) {
        lock(&self.kernel.config).completion_irql = irql;
        self.kernel.options.set_completion_irql(irql);
    }

    /// Sets the `unload_race` policy (see [`SimConfig::unload_race`]).
    pub fn set_unload_race(&self, on: bool) {
        lock(&self.kernel.config).unload_race = on;
        self.kernel.callouts.set_unload_race(on);
    }

    /// Sets what `PsGetCurrentThread` reports in DPC context.
    pub fn set_dpc_identity(&self, identity: super::config::DpcIdentity) {
        lock(&self.kernel.config).dpc_identity = identity;
        self.kernel.threads.set_identity(identity);
    }

    /// The verifier options in force.
    pub fn verifier_options(&self) -> VerifierOptions {
        self.kernel.options()
    }

    /// Changes the verifier options.
    pub fn set_verifier_options(&self, options: VerifierOptions) {
        self.kernel.options.set(options);
    }

    /// Makes an allocator fail according to `plan` (resets its call count).
    pub fn set_fault(&self, target: FaultTarget, plan: FaultPlan) {
        self.kernel.faults.site(target).set(plan);
    }

    /// How many failures were injected into an allocator so far.
    pub fn injected_faults(&self, target: FaultTarget) -> u64 {
        self.kernel.faults.site(target).injected()
    }

    /// Sets the I/O completion policy simulated providers obey.
    pub fn set_completion_policy(&self, policy: CompletionPolicy) {
        lock(&self.kernel.config).completion = policy;
        self.kernel.completion.set(policy);
    }

    /// The I/O completion policy in force.
    pub fn completion_policy(&self) -> CompletionPolicy {
        self.kernel.completion.policy()
    }

    /// Makes every pool block from now on 16-byte but never 32-byte aligned:
    /// the worst an allocator that ignores alignment (wdk-alloc) gives, so
    /// code that needs more alignment must align itself. Off by default
    /// (blocks of a page or more are then page-aligned, as on NT).
    pub fn set_minimal_pool_alignment(&self, on: bool) {
        self.kernel
            .pool
            .minimal_alignment
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Pool usage counters of this session.
    pub fn pool_stats(&self) -> PoolStats {
        self.kernel.pool.stats()
    }

    /// Every pool block, IRP, MDL and device object drivers hold now (not
    /// the system's own), with tag, size and where it was allocated: the
    /// pool-tag view Driver Verifier's pool tracking and devctl's leak
    /// checks use.
    pub fn live_allocations(&self) -> Vec<super::verifier::Leak> {
        self.kernel.pool.live_leaks(None)
    }

    /// Whether a bugcheck has been raised in this session.
    pub fn crashed(&self) -> bool {
        self.kernel.crashed()
    }

    /// The verifier's report so far (bugchecks become "seen").
    pub fn report(&self) -> VerifierReport {
        self.kernel.report()
    }

    /// Driver code running right now (routines the sim called that have not
    /// returned yet).
    pub fn running_callouts(&self) -> Vec<super::callout::RunningCallout> {
        self.kernel.callouts.running(None)
    }

    /// The kernel-stack high-water mark of every driver entry point called
    /// so far in this session (bytes from the sim's call into the routine
    /// down to the deepest sim API entry seen while it ran), deepest first.
    /// Judge them on an optimised build: unoptimised frames are several
    /// times larger.
    pub fn stack_marks(&self) -> Vec<super::callout::StackMark> {
        self.kernel.callouts.stack_marks()
    }

    /// How many yields and short sleeps the schedule perturbation injected
    /// so far (0 when it is off).
    pub fn injected_perturbations(&self) -> u64 {
        self.kernel.schedule.injected()
    }

    /// Operations still outstanding (threads, work items, IRPs in flight).
    pub fn pending_operations(&self) -> Vec<PendingOperation> {
        self.kernel.pending_operations(None)
    }

    /// Ends the session: reports every allocation still live as a leak and
    /// returns the final report.
    pub fn finish(mut self) -> VerifierReport {
        self.finished = true;
        self.kernel.drain_pool_quarantine();
        let leaks = self.kernel.pool.live_leaks(None);
        self.kernel.record_leaks(leaks);
        self.kernel.report()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if lock(&self.kernel.config).stack_report {
            self.print_stack_report();
        }
        if CURRENT.with(|c| {
            c.borrow()
                .as_ref()
                .is_some_and(|k| Arc::ptr_eq(k, &self.kernel))
        }) {
            set_current(self.previous.take());
        }
        if std::thread::panicking() {
            // The panic hook printed the configuration when the panic began.
            return;
        }
        failure_report::ended(&self.kernel);
        if self.finished {
            return;
        }
        let unseen = self.kernel.unobserved_bugchecks();
        if !unseen.is_empty() {
            let list: Vec<String> = unseen.iter().map(ToString::to_string).collect();
            panic!(
                "nt::sim session {} ended after bugcheck(s) nobody read:\n{}",
                self.kernel.id,
                list.join("\n")
            );
        }
    }
}

impl Session {
    fn print_stack_report(&self) {
        let marks = self.stack_marks();
        let mut text = format!(
            "nt::sim session {}: kernel-stack high-water marks ({} build, budget {} bytes)\n",
            self.kernel.id,
            if cfg!(debug_assertions) {
                "unoptimised"
            } else {
                "optimised"
            },
            lock(&self.kernel.config).stack_budget.bytes
        );
        for mark in marks {
            text.push_str(&format!(
                "    {:>7} bytes  {} {:#x}\n",
                mark.bytes,
                mark.kind.name(),
                mark.routine
            ));
        }
        eprint!("{text}");
    }
}

/// Prints the configuration a failing test ran under.
///
/// A test fails by panicking, whether a session is alive at that moment (an
/// assertion inside the test, a bugcheck nobody read) or not any more (an
/// assertion on `session.finish().is_clean()`). The first boot installs a
/// panic hook (chained to the one in place) that prints, before the panic
/// message, the replay line of the panicking thread's current or most
/// recent session, or of the last session booted in the process if the
/// thread never booted one (a helper thread of the test).
mod failure_report {
    use std::cell::RefCell;
    use std::sync::{Arc, Mutex, Once, Weak};

    use super::Kernel;

    struct Last {
        id: u64,
        kernel: Weak<Kernel>,
        /// The replay line when the session was booted, or ended.
        line: String,
    }

    thread_local! {
        static LAST: RefCell<Option<Last>> = const { RefCell::new(None) };
    }
    static LAST_ANYWHERE: Mutex<Option<(u64, String)>> = Mutex::new(None);
    static HOOK: Once = Once::new();

    /// A session was booted on this thread.
    pub(super) fn booted(kernel: &Arc<Kernel>) {
        let line = kernel.config().replay_line();
        if let Ok(mut any) = LAST_ANYWHERE.lock() {
            *any = Some((kernel.id, line.clone()));
        }
        let _ = LAST.try_with(|l| {
            if let Ok(mut l) = l.try_borrow_mut() {
                *l = Some(Last {
                    id: kernel.id,
                    kernel: Arc::downgrade(kernel),
                    line,
                });
            }
        });
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                print_line();
                previous(info);
            }));
        });
    }

    /// A session ended normally: remember its final configuration (the
    /// setters may have changed it since the boot).
    pub(super) fn ended(kernel: &Kernel) {
        let line = kernel.config().replay_line();
        let _ = LAST.try_with(|l| {
            if let Ok(mut l) = l.try_borrow_mut()
                && let Some(last) = l.as_mut()
                && last.id == kernel.id
            {
                last.line = line;
            }
        });
    }

    fn print_line() {
        let own = LAST
            .try_with(|l| {
                let l = l.try_borrow().ok()?;
                let last = l.as_ref()?;
                let line = match last.kernel.upgrade() {
                    Some(kernel) => kernel.try_config()?.replay_line(),
                    None => last.line.clone(),
                };
                Some(format!("this thread's session {}", last.id)).zip(Some(line))
            })
            .ok()
            .flatten();
        let (whose, line) = match own {
            Some(found) => found,
            None => match LAST_ANYWHERE.try_lock().ok().and_then(|g| g.clone()) {
                Some((id, line)) => (format!("the last session booted ({id})"), line),
                None => return,
            },
        };
        eprintln!("nt::sim: a test failed; {whose} ran under: {line}");
    }
}

/// The decision of the current session's completion policy for one
/// operation (for simulated providers).
#[track_caller]
pub fn decide_completion() -> Completion {
    with_current(|k| k.completion.decide())
}
