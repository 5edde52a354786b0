//! Special pool: Driver Verifier's guard-page allocator, for the sim's pool.
//!
//! Driver Verifier's *Special Pool* option
//! (learn.microsoft.com/windows-hardware/drivers/devtest/special-pool) puts
//! every allocation on pages of its own, against an inaccessible page, and
//! keeps freed pages inaccessible:
//!
//! - *Verify End* (the default): the block ends at the end of its last
//!   page, the next page is a guard, the bytes before the block on its
//!   first page are filled with a pattern. Reading or writing past the end
//!   faults at once: bug check 0xCD PAGE_FAULT_BEYOND_END_OF_ALLOCATION. A
//!   write into the pattern before the block, or into the alignment padding
//!   after it, is found when the block is freed: 0xC1
//!   SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION (P4 0x23 / 0x24).
//! - *Verify Start*: the guard page precedes the block, which starts its
//!   first page; the pattern is after it.
//! - A freed block's pages become inaccessible: any later access is 0xCC
//!   PAGE_FAULT_IN_FREED_SPECIAL_POOL.
//!
//! The sim does the same with host virtual memory: one process-wide arena
//! of address space reserved inaccessible (`mmap(PROT_NONE)`), carved into
//! slots of 1, 2, 4, ... host pages plus one guard page; a live block's data
//! pages are made read-write, a freed block's pages are replaced by fresh
//! inaccessible ones (its memory goes back to the host at once) and its
//! slot stays out of use while the owning session's quarantine holds it.
//!
//! A guard or freed page hit is a hardware fault, which cannot unwind
//! through the driver's frames: a `SIGSEGV`/`SIGBUS` handler looks the
//! address up in the arena's slot table (atomics only, no lock, no
//! allocation), writes the bug check with the block's tag, size and
//! allocation (and free) site to stderr, and aborts the process, as a
//! machine stops at a bug check. Faults outside the arena go to the handler
//! that was installed before (Rust's own stack-overflow handler).
//!
//! On hosts without `mmap` (not unix), or when the arena cannot serve a
//! request (address space or mapping count exhausted), the pool falls back
//! to checked canaries (see `pool.rs`).

use std::panic::Location;

/// Which side of a block the guard page is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alignment {
    /// The block ends at its page end; the guard page follows (overruns
    /// fault).
    VerifyEnd,
    /// The block starts its first page; the guard page precedes it
    /// (underruns fault).
    VerifyStart,
}

/// A block placed in the special-pool arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placed {
    /// The slot it occupies.
    pub(crate) slot: Slot,
    /// The block's address (what the driver gets).
    pub(crate) block: usize,
    /// Its size in bytes.
    pub(crate) size: usize,
    /// The first byte of its read-write pages.
    pub(crate) data_start: usize,
    /// One past the last byte of its read-write pages.
    pub(crate) data_end: usize,
}

/// A slot of the arena: its size class and index in the class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    class: u8,
    index: u32,
}

/// Bytes around a block that changed between allocation and free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corruption {
    /// The first corrupted byte.
    pub(crate) address: usize,
    /// Whether it lies after the block's end (0xC1 P4 0x24) rather than
    /// before its start (0x23).
    pub(crate) after_end: bool,
}

/// The byte the slack around special-pool blocks is filled with.
pub(crate) const SLACK_PATTERN: u8 = 0xB7;

/// Finds the first byte in `[start, end)` that is not `pattern`.
///
/// # Safety
/// `[start, end)` must be readable.
pub(crate) unsafe fn first_changed(start: usize, end: usize, pattern: u8) -> Option<usize> {
    if end <= start {
        return None;
    }
    // SAFETY: the caller guarantees the range is readable.
    let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, end - start) };
    bytes.iter().position(|&b| b != pattern).map(|i| start + i)
}

/// Checks the pattern around a placed block.
///
/// # Safety
/// `placed` must be live (its data pages readable).
pub(crate) unsafe fn check_slack(placed: &Placed) -> Option<Corruption> {
    // SAFETY: the data pages of a live block are readable.
    let before = unsafe { first_changed(placed.data_start, placed.block, SLACK_PATTERN) };
    if let Some(address) = before {
        return Some(Corruption {
            address,
            after_end: false,
        });
    }
    // SAFETY: as above.
    let after =
        unsafe { first_changed(placed.block + placed.size, placed.data_end, SLACK_PATTERN) };
    after.map(|address| Corruption {
        address,
        after_end: true,
    })
}

pub(crate) use imp::{allocate, prepare_thread, protect_out_of_context, recycle, retire};

/// What the fault handler prints about a block (kept in the slot table).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) struct BlockFacts {
    pub(crate) tag: u32,
    pub(crate) site: Option<&'static Location<'static>>,
}

#[cfg(unix)]
mod imp {
    use std::ffi::c_void;
    use std::fmt::Write as _;
    use std::panic::Location;
    use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Mutex, OnceLock};

    use super::{Alignment, BlockFacts, Placed, SLACK_PATTERN, Slot};
    use crate::sim::session::lock;

    /// Size classes: slots of 2^c data pages (c < CLASSES) plus one guard.
    const CLASSES: usize = 16;
    /// Address space reserved per class.
    const CLASS_REGION: usize = 2 << 30;

    /// Free slots per class whose pages stay resident (zeroed by hand when
    /// reused) before further ones are given back to the host.
    const RESIDENT_FREE_SLOTS: usize = 1024;

    const STATE_UNUSED: u64 = 0;
    const STATE_LIVE: u64 = 1;
    const STATE_FREED: u64 = 2;
    const STATE_RECYCLED: u64 = 3;
    const STATE_MASK: u64 = 3;
    const VERIFY_START: u64 = 4;
    /// A live block made inaccessible on purpose: a METHOD_NEITHER user
    /// buffer outside its requesting thread's dispatch routine.
    const OUT_OF_CONTEXT: u64 = 8;
    const SIZE_SHIFT: u32 = 8;

    /// What the fault handler knows about a slot. All-zero is "never
    /// used": the table lives in zero-filled anonymous memory.
    #[repr(C)]
    struct SlotMeta {
        /// State (2 bits), VERIFY_START, size << SIZE_SHIFT. Written last
        /// (release) when a block is placed.
        word: AtomicU64,
        block: AtomicUsize,
        tag: AtomicU32,
        alloc_site: AtomicUsize,
        free_site: AtomicUsize,
    }

    #[derive(Default)]
    struct ClassState {
        /// Slots never used yet start here.
        next: u32,
        /// Slots back from quarantine.
        free: Vec<u32>,
    }

    struct Arena {
        /// The first byte of the reserved range.
        base: usize,
        /// The host page size.
        page: usize,
        /// The slot table (`SlotMeta`s, class after class).
        metas: usize,
        /// Index of each class's first `SlotMeta`.
        meta_start: [usize; CLASSES],
        classes: Mutex<[ClassState; CLASSES]>,
    }

    static ARENA: OnceLock<Option<Arena>> = OnceLock::new();

    fn arena() -> Option<&'static Arena> {
        ARENA.get_or_init(Arena::reserve).as_ref()
    }

    impl Arena {
        fn pages(class: usize) -> usize {
            1 << class
        }

        fn stride(&self, class: usize) -> usize {
            (Self::pages(class) + 1) * self.page
        }

        fn slots(&self, class: usize) -> usize {
            (CLASS_REGION / self.stride(class)).min(u32::MAX as usize)
        }

        fn slot_start(&self, slot: Slot) -> usize {
            let class = usize::from(slot.class);
            self.base + class * CLASS_REGION + slot.index as usize * self.stride(class)
        }

        fn meta(&self, slot: Slot) -> &SlotMeta {
            let index = self.meta_start[usize::from(slot.class)] + slot.index as usize;
            let meta = (self.metas as *const SlotMeta).wrapping_add(index);
            // SAFETY: `index` is below the table's length (slot indices stay
            // below `slots(class)`); the table is mapped read-write for the
            // life of the process and all-zero is a valid SlotMeta.
            unsafe { &*meta }
        }

        fn contains(&self, address: usize) -> bool {
            address >= self.base && address < self.base + CLASSES * CLASS_REGION
        }

        /// The slot and page-in-slot of an arena address.
        fn locate(&self, address: usize) -> Option<(Slot, usize)> {
            if !self.contains(address) {
                return None;
            }
            let offset = address - self.base;
            let class = offset / CLASS_REGION;
            let within = offset % CLASS_REGION;
            let index = within / self.stride(class);
            if index >= self.slots(class) {
                return None;
            }
            let page = (within % self.stride(class)) / self.page;
            Some((
                Slot {
                    class: class as u8,
                    index: index as u32,
                },
                page,
            ))
        }

        fn reserve() -> Option<Arena> {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let page = usize::try_from(page).ok().filter(|p| p.is_power_of_two())?;
            let len = CLASSES * CLASS_REGION;
            let base = map_none(len)?;
            let mut meta_start = [0usize; CLASSES];
            let mut total = 0usize;
            let probe = Arena {
                base,
                page,
                metas: 0,
                meta_start,
                classes: Mutex::new(Default::default()),
            };
            for (class, start) in meta_start.iter_mut().enumerate() {
                *start = total;
                total += probe.slots(class);
            }
            let table_len = (total * std::mem::size_of::<SlotMeta>()).next_multiple_of(page);
            // SAFETY: an anonymous private read-write mapping at an address
            // of the kernel's choice: no existing mapping is affected.
            let metas = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    table_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | NORESERVE,
                    -1,
                    0,
                )
            };
            if metas == libc::MAP_FAILED {
                // SAFETY: `base..base+len` is the reservation made above,
                // unused by anything.
                unsafe { libc::munmap(base as *mut c_void, len) };
                return None;
            }
            let arena = Arena {
                metas: metas as usize,
                meta_start,
                ..probe
            };
            install_fault_handler();
            Some(arena)
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    const NORESERVE: libc::c_int = libc::MAP_NORESERVE;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const NORESERVE: libc::c_int = 0;

    /// Reserves `len` bytes of inaccessible address space.
    fn map_none(len: usize) -> Option<usize> {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | NORESERVE;
        // SAFETY: an anonymous private mapping at an address of the
        // kernel's choice: no existing mapping is affected.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_NONE, flags, -1, 0) };
        (p != libc::MAP_FAILED).then_some(p as usize)
    }

    /// Places a block of `size` bytes in the arena, zero-filled, with the
    /// slack around it patterned. `None` when the arena cannot serve it
    /// (no arena on this host, no slot of that size left, or the host
    /// refused to map the pages): the caller falls back to canaries.
    pub(crate) fn allocate(
        size: usize,
        minimal_alignment: bool,
        alignment: Alignment,
        facts: BlockFacts,
    ) -> Option<Placed> {
        let arena = arena()?;
        prepare_thread();
        let nt_page = 4096usize;
        let rounded = size.max(1).next_multiple_of(16);
        let need = rounded + if minimal_alignment { 16 } else { 0 };
        let host_pages = need.div_ceil(arena.page);
        let class = (0..CLASSES).find(|&c| Arena::pages(c) >= host_pages)?;
        let (slot, recycled) = {
            let mut classes = lock(&arena.classes);
            let state = &mut classes[class];
            match state.free.pop() {
                Some(index) => (index, true),
                None if (state.next as usize) < arena.slots(class) => {
                    state.next += 1;
                    (state.next - 1, false)
                }
                None => return None,
            }
        };
        let slot = Slot {
            class: class as u8,
            index: slot,
        };
        let start = arena.slot_start(slot);
        let data_len = Arena::pages(class) * arena.page;
        let data_start = match alignment {
            Alignment::VerifyEnd => start,
            Alignment::VerifyStart => start + arena.page,
        };
        let data_end = data_start + data_len;
        // SAFETY: the slot's data pages lie in the arena reservation and
        // belong to this slot alone (taken from the free list / bump index
        // under the lock).
        let rc = unsafe {
            libc::mprotect(
                data_start as *mut c_void,
                data_len,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            lock(&arena.classes)[class].free.push(slot.index);
            return None;
        }
        // NT rules: blocks of a page or more start on a page; smaller ones
        // are 16-byte aligned, at the highest such address (verify end) or
        // at the page start (verify start).
        let mut block = match alignment {
            Alignment::VerifyStart => data_start,
            Alignment::VerifyEnd if size >= nt_page => data_start,
            Alignment::VerifyEnd => data_end - rounded,
        };
        if minimal_alignment && block % 32 == 0 {
            block = if alignment == Alignment::VerifyEnd && size < nt_page {
                block - 16
            } else {
                block + 16
            };
        }
        let size = size.max(1);
        if recycled {
            // A reused slot may still hold its last block's bytes.
            // SAFETY: `[block, block + size)` lies in the pages just made
            // read-write.
            unsafe { (block as *mut u8).write_bytes(0, size) };
        }
        // SAFETY: `[data_start, block)` and `[block + size, data_end)` lie in
        // the pages just made read-write.
        unsafe { (data_start as *mut u8).write_bytes(SLACK_PATTERN, block - data_start) };
        // SAFETY: as above.
        unsafe { ((block + size) as *mut u8).write_bytes(SLACK_PATTERN, data_end - block - size) };
        let meta = arena.meta(slot);
        meta.block.store(block, Ordering::Relaxed);
        meta.tag.store(facts.tag, Ordering::Relaxed);
        meta.alloc_site
            .store(site_bits(facts.site), Ordering::Relaxed);
        meta.free_site.store(0, Ordering::Relaxed);
        let layout = match alignment {
            Alignment::VerifyEnd => 0,
            Alignment::VerifyStart => VERIFY_START,
        };
        meta.word.store(
            STATE_LIVE | layout | ((size as u64) << SIZE_SHIFT),
            Ordering::Release,
        );
        Some(Placed {
            slot,
            block,
            size,
            data_start,
            data_end,
        })
    }

    fn site_bits(site: Option<&'static Location<'static>>) -> usize {
        site.map_or(0, |l| l as *const Location<'static> as usize)
    }

    fn site_from_bits(bits: usize) -> Option<&'static Location<'static>> {
        // SAFETY: non-zero bits were stored from a `&'static Location`.
        (bits != 0).then(|| unsafe { &*(bits as *const Location<'static>) })
    }

    /// Frees a placed block: its pages become inaccessible (and go back to
    /// the host); the slot stays out of use until [`recycle`].
    pub(crate) fn retire(placed: &Placed, free_site: Option<&'static Location<'static>>) {
        let Some(arena) = arena() else { return };
        let meta = arena.meta(placed.slot);
        meta.free_site
            .store(site_bits(free_site), Ordering::Relaxed);
        let word = meta.word.load(Ordering::Relaxed);
        meta.word
            .store((word & !STATE_MASK) | STATE_FREED, Ordering::Release);
        // Inaccessible from now on (it merges back with the guard pages
        // around it: no new mapping per block). Its memory is given back
        // when it leaves quarantine.
        // SAFETY: the block's own pages in the arena, unused from now on.
        unsafe {
            libc::mprotect(
                placed.data_start as *mut c_void,
                placed.data_end - placed.data_start,
                libc::PROT_NONE,
            )
        };
    }

    /// Makes a live block inaccessible (`out` true) or accessible again: a
    /// user-mode buffer outside the context it is valid in. An access
    /// meanwhile is reported by the fault handler. Returns whether the
    /// block is guarded (false: no arena).
    pub(crate) fn protect_out_of_context(placed: &Placed, out: bool) -> bool {
        let Some(arena) = arena() else { return false };
        let meta = arena.meta(placed.slot);
        let word = meta.word.load(Ordering::Relaxed);
        let (word, protection) = if out {
            (word | OUT_OF_CONTEXT, libc::PROT_NONE)
        } else {
            (word & !OUT_OF_CONTEXT, libc::PROT_READ | libc::PROT_WRITE)
        };
        meta.word.store(word, Ordering::Release);
        // SAFETY: the live block's own data pages.
        let rc = unsafe {
            libc::mprotect(
                placed.data_start as *mut c_void,
                placed.data_end - placed.data_start,
                protection,
            )
        };
        rc == 0
    }

    /// Ends a retired block's quarantine: its slot may be used again.
    pub(crate) fn recycle(placed: &Placed) {
        let Some(arena) = arena() else { return };
        let meta = arena.meta(placed.slot);
        let word = meta.word.load(Ordering::Relaxed);
        meta.word
            .store((word & !STATE_MASK) | STATE_RECYCLED, Ordering::Release);
        let mut classes = lock(&arena.classes);
        let free = &mut classes[usize::from(placed.slot.class)].free;
        if free.len() >= RESIDENT_FREE_SLOTS {
            // Enough slots of this size keep their memory for reuse (a
            // page fault costs more than zeroing a page): give this one's
            // back; it comes back zero-filled.
            // SAFETY: the slot's pages, inaccessible and unused.
            unsafe {
                libc::madvise(
                    placed.data_start as *mut c_void,
                    placed.data_end - placed.data_start,
                    libc::MADV_DONTNEED,
                )
            };
        }
        free.push(placed.slot.index);
    }

    // === A signal stack with room for the report ===

    /// Bytes of the alternate signal stack the fault handler reports on.
    const SIGNAL_STACK: usize = 256 << 10;

    /// This thread's alternate signal stack (unmapped when the thread
    /// ends).
    struct SignalStack {
        base: usize,
        len: usize,
    }

    impl SignalStack {
        fn install() -> Option<SignalStack> {
            // SAFETY: sysconf has no preconditions.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
            let len = SIGNAL_STACK + page;
            // SAFETY: a fresh anonymous mapping at an address of the
            // kernel's choice.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                return None;
            }
            // The lowest page guards against the stack's own overflow.
            // SAFETY: the first page of the mapping just made.
            unsafe { libc::mprotect(base, page, libc::PROT_NONE) };
            let stack = libc::stack_t {
                ss_sp: base.cast::<u8>().wrapping_add(page).cast(),
                ss_flags: 0,
                ss_size: SIGNAL_STACK,
            };
            // SAFETY: a valid stack description of memory we own for the
            // thread's life (see Drop).
            if unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) } != 0 {
                // SAFETY: our own mapping, not installed.
                unsafe { libc::munmap(base, len) };
                return None;
            }
            Some(SignalStack {
                base: base as usize,
                len,
            })
        }
    }

    impl Drop for SignalStack {
        fn drop(&mut self) {
            // SAFETY: `current` is writable.
            let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
            // SAFETY: queries this thread's alternate stack.
            unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
            let ours = current.ss_sp as usize > self.base
                && (current.ss_sp as usize) < self.base + self.len;
            if ours && current.ss_flags & libc::SS_DISABLE == 0 {
                let disable = libc::stack_t {
                    ss_sp: std::ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                // SAFETY: disables the alternate stack (we are not on it:
                // thread-local destructors do not run in signal handlers).
                unsafe { libc::sigaltstack(&disable, std::ptr::null_mut()) };
            }
            // SAFETY: our mapping, no longer installed.
            unsafe { libc::munmap(self.base as *mut c_void, self.len) };
        }
    }

    thread_local! {
        static SIGNAL_STACK_OF_THREAD: std::cell::OnceCell<Option<SignalStack>> =
            const { std::cell::OnceCell::new() };
    }

    /// Gives this thread an alternate signal stack large enough for the
    /// fault handler's report (the 8 KiB one Rust's runtime installs is
    /// mostly taken by the CPU's saved state). Called where threads start
    /// running sim code: session boot and enter, sim threads, the first
    /// special-pool allocation of a thread. Once per thread.
    pub(crate) fn prepare_thread() {
        let _ = SIGNAL_STACK_OF_THREAD.try_with(|s| {
            s.get_or_init(SignalStack::install);
        });
    }

    // === The fault handler ===

    /// The handlers that were installed before ours (SIGSEGV, SIGBUS).
    static PREVIOUS: OnceLock<[libc::sigaction; 2]> = OnceLock::new();

    /// The load address of the image holding the sim (the test executable:
    /// driver code is linked into it), so a report can give the faulting
    /// instruction as an offset `addr2line` resolves.
    static IMAGE_BASE: OnceLock<usize> = OnceLock::new();

    fn image_base() -> usize {
        // SAFETY: Dl_info is plain data; all-zero is a valid value.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        let here = image_base as *const () as *const c_void;
        // SAFETY: dladdr only reads the loader's tables and fills `info`.
        if unsafe { libc::dladdr(here, &mut info) } != 0 {
            info.dli_fbase as usize
        } else {
            0
        }
    }

    fn install_fault_handler() {
        IMAGE_BASE.get_or_init(image_base);
        PREVIOUS.get_or_init(|| {
            let mut previous: [libc::sigaction; 2] =
                // SAFETY: sigaction is plain data; all-zero is a valid value.
                [unsafe { std::mem::zeroed() }, unsafe { std::mem::zeroed() }];
            // SAFETY: as above.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_fault as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: `action.sa_mask` is a valid sigset to initialise.
            unsafe { libc::sigemptyset(&mut action.sa_mask) };
            for (i, signal) in [libc::SIGSEGV, libc::SIGBUS].into_iter().enumerate() {
                // SAFETY: a valid action for a valid signal; the previous
                // action is written to our array.
                unsafe { libc::sigaction(signal, &action, &mut previous[i]) };
            }
            previous
        });
    }

    /// A fixed buffer `write!` can format into without allocating (a
    /// signal handler must not allocate).
    struct StackText {
        bytes: [u8; 1536],
        len: usize,
    }

    impl std::fmt::Write for StackText {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = self.bytes.len() - self.len;
            let n = s.len().min(room);
            self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }

    /// Whether the faulting access was a write, and where it came from, if
    /// the host says (x86-64 Linux: the page-fault error code and RIP).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn access_of(context: *mut c_void) -> (u64, u64) {
        let context = context as *const libc::ucontext_t;
        if context.is_null() {
            return (0, 0);
        }
        // SAFETY: the kernel passes the interrupted context to an
        // SA_SIGINFO handler.
        let gregs = unsafe { &(*context).uc_mcontext.gregs };
        let error = gregs[libc::REG_ERR as usize] as u64;
        let ip = gregs[libc::REG_RIP as usize] as u64;
        ((error >> 1) & 1, ip)
    }

    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    fn access_of(_context: *mut c_void) -> (u64, u64) {
        (0, 0)
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn fault_address(info: *mut libc::siginfo_t) -> usize {
        // SAFETY: the kernel passes a valid siginfo for SIGSEGV/SIGBUS.
        let info = unsafe { &*info };
        // SAFETY: SIGSEGV and SIGBUS fill in the fault address.
        unsafe { info.si_addr() as usize }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn fault_address(info: *mut libc::siginfo_t) -> usize {
        // SAFETY: the kernel passes a valid siginfo for SIGSEGV/SIGBUS.
        unsafe { (*info).si_addr as usize }
    }

    extern "C" fn on_fault(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
        if !info.is_null()
            && let Some(Some(arena)) = ARENA.get()
        {
            let address = fault_address(info);
            if let Some((slot, page)) = arena.locate(address) {
                report(arena, slot, page, address, context);
            }
        }
        chain(signal, info, context);
    }

    /// Hands a fault that is not ours to the handler installed before.
    fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
        let index = usize::from(signal != libc::SIGSEGV);
        let Some(previous) = PREVIOUS.get() else {
            return;
        };
        let previous = &previous[index];
        let handler = previous.sa_sigaction;
        if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
            // Restore the default action; returning re-runs the faulting
            // instruction, which then takes it (the process dies).
            // SAFETY: as above.
            let mut default: libc::sigaction = unsafe { std::mem::zeroed() };
            default.sa_sigaction = libc::SIG_DFL;
            // SAFETY: a valid action for a valid signal.
            unsafe { libc::sigaction(signal, &default, std::ptr::null_mut()) };
            return;
        }
        if previous.sa_flags & libc::SA_SIGINFO != 0 {
            // SAFETY: an SA_SIGINFO handler has this signature (it was
            // installed as one).
            let f = unsafe {
                std::mem::transmute::<
                    usize,
                    extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void),
                >(handler)
            };
            f(signal, info, context);
        } else {
            // SAFETY: a plain handler has this signature.
            let f = unsafe { std::mem::transmute::<usize, extern "C" fn(libc::c_int)>(handler) };
            f(signal);
        }
    }

    /// Writes the bug check for a fault in the arena and aborts.
    fn report(arena: &Arena, slot: Slot, page: usize, address: usize, context: *mut c_void) -> ! {
        let meta = arena.meta(slot);
        let word = meta.word.load(Ordering::Acquire);
        let state = word & STATE_MASK;
        let verify_start = word & VERIFY_START != 0;
        let size = word >> SIZE_SHIFT;
        let block = meta.block.load(Ordering::Relaxed);
        let tag = meta.tag.load(Ordering::Relaxed);
        let alloc_site = site_from_bits(meta.alloc_site.load(Ordering::Relaxed));
        let free_site = site_from_bits(meta.free_site.load(Ordering::Relaxed));
        let data_pages = Arena::pages(usize::from(slot.class));
        let guard_page = if verify_start { 0 } else { data_pages };
        let (write, ip) = access_of(context);
        let access = if write != 0 { "write" } else { "read" };
        let mut text = StackText {
            bytes: [0; 1536],
            len: 0,
        };
        let out_of_context = word & OUT_OF_CONTEXT != 0;
        let (code, name) = match state {
            STATE_LIVE if page == guard_page => (0xCDu32, "PAGE_FAULT_BEYOND_END_OF_ALLOCATION"),
            STATE_LIVE if out_of_context => (0x7E, "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED"),
            STATE_FREED | STATE_RECYCLED => (0xCC, "PAGE_FAULT_IN_FREED_SPECIAL_POOL"),
            _ => (0x50, "PAGE_FAULT_IN_NONPAGED_AREA"),
        };
        // 0x7E's parameters: the exception (an access violation) and where.
        let parameters = if code == 0x7E {
            [0xC000_0005, ip, 0, 0]
        } else {
            [address as u64, write, ip, 0]
        };
        let [p1, p2, p3, p4] = parameters;
        let _ = write!(
            text,
            "\n*** nt::sim: bugcheck (special pool: an access the hardware trapped cannot unwind \
             through driver code; the process stops, as the machine would)\n*** STOP: 0x{code:08X} \
             ({name}) ({p1:#x}, {p2:#x}, {p3:#x}, {p4:#x}): {access} at {address:#x}, "
        );
        let _ = match state {
            STATE_LIVE if page == guard_page && verify_start => write!(
                text,
                "in the guard page before a special-pool block (an underrun)"
            ),
            STATE_LIVE if page == guard_page => write!(
                text,
                "in the guard page after a special-pool block ({} bytes past its end; or an \
                 underrun of the block after it)",
                address.wrapping_sub(block + size as usize)
            ),
            STATE_LIVE if out_of_context => write!(
                text,
                "in the user-mode buffer of a METHOD_NEITHER request, outside the requesting \
                 thread's dispatch routine (valid only in that process context, while the \
                 request is in the dispatch routine, unless locked and mapped)"
            ),
            STATE_FREED => write!(text, "in a freed special-pool block"),
            STATE_RECYCLED => write!(
                text,
                "in a freed special-pool block (out of quarantine; its last owner was)"
            ),
            _ => write!(text, "in special-pool address space no block owns"),
        };
        if state != STATE_UNUSED {
            let _ = write!(text, ": tag '{}', {size} bytes at {block:#x}", TagText(tag));
            if let Some(site) = alloc_site {
                let _ = write!(text, ", allocated at {site}");
            }
            if let Some(site) = free_site.filter(|_| state != STATE_LIVE) {
                let _ = write!(text, ", freed at {site}");
            }
        }
        let _ = writeln!(text);
        let base = IMAGE_BASE.get().copied().unwrap_or(0) as u64;
        if base != 0 && ip > base {
            let _ = writeln!(
                text,
                "    instruction: executable+{:#x} (addr2line -Cfi -e <the test executable> {:#x})",
                ip - base,
                ip - base
            );
        }
        if let Some(config) = crate::sim::session::config_for_fault_report() {
            let _ = writeln!(
                text,
                "    replay: {}='{config}'",
                crate::sim::config::ENV_VAR
            );
        }
        // SAFETY: writes our own buffer to stderr (async-signal-safe).
        unsafe { libc::write(2, text.bytes.as_ptr().cast(), text.len) };
        // SAFETY: abort has no preconditions (async-signal-safe).
        unsafe { libc::abort() }
    }

    /// A tag printed as poolmon shows it, without allocating.
    struct TagText(u32);

    impl std::fmt::Display for TagText {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            for b in self.0.to_le_bytes() {
                let c = if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                };
                f.write_char(c)?;
            }
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::TagText;
        use crate::sim::verifier::tag_to_string;

        #[test]
        fn tag_text_prints_as_poolmon() {
            for tag in [0x6b6e_6442, 0, 0x2020_7049, 0x7f01_4142] {
                assert_eq!(TagText(tag).to_string(), tag_to_string(tag));
            }
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use super::{Alignment, BlockFacts, Placed};

    /// No guard-page arena on this host: the pool uses canaries.
    pub(crate) fn allocate(
        _size: usize,
        _minimal_alignment: bool,
        _alignment: Alignment,
        _facts: BlockFacts,
    ) -> Option<Placed> {
        None
    }

    /// Never called without an arena.
    pub(crate) fn retire(
        _placed: &Placed,
        _free_site: Option<&'static std::panic::Location<'static>>,
    ) {
    }

    /// Never called without an arena.
    pub(crate) fn recycle(_placed: &Placed) {}

    /// No fault handler on this host.
    pub(crate) fn prepare_thread() {}

    /// No guard pages on this host: the buffer stays accessible.
    pub(crate) fn protect_out_of_context(_placed: &Placed, _out: bool) -> bool {
        false
    }
}
