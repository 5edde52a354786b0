//! Pool: `ExAllocatePool2`, `ExFreePool`, `ExFreePoolWithTag`, and the
//! allocation tracking every kernel object of the sim goes through (IRPs,
//! MDLs, work items and device objects are pool blocks of their own kind),
//! so leaks at unload are reported with their tags and allocation sites.
//!
//! Blocks are 16-byte aligned (MEMORY_ALLOCATION_ALIGNMENT on x64) and,
//! like NT's, page-aligned from one page up, unless the session asks for
//! `minimal_alignment`: then every block is 16- but never 32-byte aligned,
//! the worst an allocator that ignores alignment (wdk-alloc) can give.
//!
//! # Allocators ([`PoolPolicy`])
//!
//! - **Special** (the default, Driver Verifier's *Special Pool*, verify-end
//!   alignment) and **SpecialVerifyStart**: every block on pages of its own
//!   against a guard page (`super::special`). An access past the end (or,
//!   verify-start, before the start) faults at once: 0xCD. The slack around
//!   a block is patterned and checked when it is freed: 0xC1 (P4 0x23
//!   before the block, 0x24 after it). A freed block's pages become
//!   inaccessible at once (any later access: 0xCC) and its address is not
//!   reused while the session's quarantine (the last 4096 frees) holds it,
//!   so a second free of it is always 0xC2/0x07, never the free of another
//!   owner's block. Where the guard-page arena cannot serve (no `mmap` on
//!   the host, or its address space is used up), the block gets checked
//!   canaries instead: the slack is checked at free as above, the freed
//!   block is poisoned and quarantined, and a write after free is found
//!   when the block leaves quarantine (0xCC, reported late).
//! - **Fast** (benchmarks): host allocations, poisoned (0xDD) at free; a
//!   freed address is remembered until it is reused. Freed blocks of up to
//!   1 KiB stay poisoned in per-size free lists (at most 4 MiB in all) and
//!   the next allocation of that size takes the latest one back, zeroed, as NT's per-processor pool
//!   lookaside lists do for small blocks: the host allocator's cost stays
//!   out of every pool call (a malloc/free pair was a quarter of an
//!   allocate/free pair), nothing the verifier sees changes (the host
//!   allocator recycled those addresses just as soon).
//!
//! # Paged pool
//!
//! Paged blocks are also kept in an ordered map, so "does this address lie
//! in paged pool?" is a range query (`PoolState::paged_block_containing`):
//! the sim's APIs that need resident memory (dispatcher objects, spin
//! locks, MDLs built for non-paged pool) ask it.

use std::alloc::Layout;
use std::collections::{BTreeMap, VecDeque};
use std::panic::Location;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::config::PoolPolicy;
use super::hash::AddressMap;
use super::irql;
use super::session::{Kernel, lock, with_current};
use super::special::{self, Alignment, BlockFacts, Placed, SLACK_PATTERN};
use super::verifier::{
    BAD_POOL_CALLER, DRIVER_VERIFIER_DETECTED_VIOLATION, Leak, LeakKind,
    PAGE_FAULT_IN_FREED_SPECIAL_POOL, SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION, c1, c2, c4,
};
use crate::types::*;

const PAGE_SIZE: usize = 4096;
/// How many freed blocks a session keeps out of reuse (special pool), and
/// how many freed addresses it remembers for double-free detection besides
/// the fast pool's cached blocks (remembered until reused).
const QUARANTINE_BLOCKS: usize = 4096;
/// The most bytes of canary blocks kept in quarantine.
const QUARANTINE_CANARY_BYTES: usize = 32 << 20;
/// Canary bytes before and after a block in the canary fallback.
const CANARY: usize = 32;
/// What freed fast-pool and canary blocks are filled with.
const FREED_POISON: u8 = 0xDD;
/// What `POOL_FLAG_UNINITIALIZED` blocks are filled with when the session
/// poisons uninitialised pool.
const UNINITIALIZED_POISON: u8 = 0xCD;
/// Fast pool: freed host blocks are kept for reuse up to this size, in
/// 16-byte classes.
const HOST_CACHE_MAX_BLOCK: usize = 1024;
/// Fast pool: bytes of freed host blocks kept for reuse, all sizes.
const HOST_CACHE_BYTES: usize = 4 << 20;

/// Owner generation of blocks the sim allocates for itself (never leaks of
/// a driver).
pub(crate) const SYSTEM_OWNER: u64 = u64::MAX;

/// Where a block's memory comes from.
#[derive(Debug, Clone, Copy)]
enum Backing {
    /// A host allocation (fast pool): `base` with `layout`.
    Host { base: usize, layout: Layout },
    /// A guard-page slot of the special-pool arena.
    Special(Placed),
    /// A host allocation with patterned canaries around the block.
    Canary { base: usize, layout: Layout },
}

#[derive(Debug)]
struct Block {
    backing: Backing,
    size: usize,
    tag: u32,
    kind: LeakKind,
    paged: bool,
    owner: u64,
    location: Option<&'static Location<'static>>,
}

/// A freed block kept out of reuse.
#[derive(Debug)]
struct Quarantined {
    backing: Backing,
    address: usize,
    size: usize,
    tag: u32,
    location: Option<&'static Location<'static>>,
    freed_at: Option<&'static Location<'static>>,
}

/// Pool usage counters of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Blocks allocated over the session's life (every kind).
    pub allocations: u64,
    /// Blocks freed.
    pub frees: u64,
    /// Allocations that failed (fault injection included).
    pub failures: u64,
    /// Blocks live now.
    pub live_blocks: u64,
    /// Bytes live now.
    pub live_bytes: u64,
}

/// What the pool knows about an address: a live block, or a freed one
/// (a free of it is a double free) until the address is allocated again
/// or forgotten.
#[derive(Debug)]
enum Record {
    Live(Block),
    /// Freed; `seq` tells this free from a later free of the same address
    /// (see `PoolTables::freed_order`).
    Freed {
        seq: u64,
    },
}

#[derive(Debug, Default)]
struct PoolTables {
    /// Every live block, and the freed addresses still remembered, in one
    /// map: an allocation or a free is one look-up (a freed record is
    /// overwritten in place when its address is allocated again).
    ///
    /// A freed fast-pool block kept in `host_cache` keeps its freed record
    /// until the cache hands it out again (bounded by the cache); every
    /// other freed address (given back to the host, special pool, canary
    /// blocks) is remembered for the last `QUARANTINE_BLOCKS` such frees,
    /// in `freed_order`.
    blocks: AddressMap<Record>,
    /// How many records are live blocks.
    live: usize,
    /// Freed records to forget, oldest first, with the `seq` of their free
    /// (a record freed again later is not forgotten early).
    freed_order: VecDeque<(usize, u64)>,
    /// The `seq` of the next free.
    next_free: u64,
    /// Live paged blocks: start -> size (range queries).
    paged: BTreeMap<usize, usize>,
    /// Freed special-pool and canary blocks, oldest first.
    quarantine: VecDeque<Quarantined>,
    /// Bytes of canary blocks in `quarantine`.
    quarantine_canary_bytes: usize,
    /// Fast pool: freed host blocks (poisoned) by 16-byte size class, the
    /// latest last.
    host_cache: Vec<Vec<usize>>,
    /// Bytes in `host_cache`.
    host_cache_bytes: usize,
}

impl PoolTables {
    /// A cached host block of the class of `size` (its layout: `size`
    /// rounded up to 16, 16-aligned), its first `size` bytes set to `fill`
    /// (0, or the uninitialised-pool poison); or none.
    fn cached_host_block(&mut self, size: usize, fill: u8) -> Option<(Backing, usize)> {
        let class = host_class(size)?;
        let base = self.host_cache.get_mut(class)?.pop()?;
        let layout = host_class_layout(class);
        self.host_cache_bytes -= layout.size();
        // SAFETY: a cached block of `layout.size()` >= `size` bytes, ours.
        unsafe { (base as *mut u8).write_bytes(fill, size) };
        Some((Backing::Host { base, layout }, base))
    }

    /// Records a newly allocated live block at `address` (replacing the
    /// freed record of the address, if it has one).
    fn insert_block(&mut self, state: &PoolState, address: usize, block: Block) {
        if block.paged {
            self.paged.insert(address, block.size);
            state.paged_live.fetch_add(1, Ordering::Relaxed);
        }
        self.blocks.insert(address, Record::Live(block));
        self.live += 1;
    }

    /// The live block at `address`, if any.
    fn live_block(&self, address: usize) -> Option<&Block> {
        match self.blocks.get(&address) {
            Some(Record::Live(block)) => Some(block),
            _ => None,
        }
    }

    /// Remembers the free of `address` (record `seq`) among the last
    /// `QUARANTINE_BLOCKS` such frees, forgetting the oldest beyond them.
    fn remember_free(&mut self, address: usize, seq: u64) {
        self.freed_order.push_back((address, seq));
        while self.freed_order.len() > QUARANTINE_BLOCKS {
            let Some((old, old_seq)) = self.freed_order.pop_front() else {
                break;
            };
            if matches!(self.blocks.get(&old), Some(Record::Freed { seq }) if *seq == old_seq) {
                self.blocks.remove(&old);
            }
        }
    }

    /// Keeps a freed (poisoned) host block for reuse if it is of a cached
    /// class and there is room (returns `true`); otherwise gives it back to
    /// the host.
    fn free_host_block(&mut self, base: usize, layout: Layout) -> bool {
        if let Some(class) = host_class(layout.size())
            && host_class_layout(class) == layout
            && self.host_cache_bytes + layout.size() <= HOST_CACHE_BYTES
        {
            if self.host_cache.len() <= class {
                self.host_cache.resize_with(class + 1, Vec::new);
            }
            self.host_cache[class].push(base);
            self.host_cache_bytes += layout.size();
            return true;
        }
        // SAFETY: `base` and `layout` are exactly what the allocation got.
        unsafe { std::alloc::dealloc(base as *mut u8, layout) };
        false
    }
}

impl Drop for PoolTables {
    fn drop(&mut self) {
        for (class, bases) in self.host_cache.iter().enumerate() {
            for &base in bases {
                // SAFETY: cached blocks were allocated with their class's
                // layout and are nobody's.
                unsafe { std::alloc::dealloc(base as *mut u8, host_class_layout(class)) };
            }
        }
    }
}

/// The host-cache class of a block of `size` bytes (16-byte steps), if
/// small enough to be cached.
fn host_class(size: usize) -> Option<usize> {
    (size <= HOST_CACHE_MAX_BLOCK).then(|| size.max(1).div_ceil(16))
}

/// The host layout of every block of `class`.
fn host_class_layout(class: usize) -> Layout {
    // 16 * class <= HOST_CACHE_MAX_BLOCK: never fails.
    Layout::from_size_align(class * 16, 16).unwrap_or(Layout::new::<[u8; 16]>())
}

#[derive(Debug)]
pub(crate) struct PoolState {
    tables: Mutex<PoolTables>,
    allocations: AtomicU64,
    frees: AtomicU64,
    failures: AtomicU64,
    policy: PoolPolicy,
    /// Live paged blocks (the resident-memory checks skip their look-up
    /// while there are none).
    paged_live: AtomicU64,
    /// Special pool without the guard-page arena (the fallback hosts
    /// without `mmap` take; tests force it).
    canary_only: bool,
    pub(crate) minimal_alignment: AtomicBool,
}

impl Default for PoolState {
    fn default() -> Self {
        Self::new(PoolPolicy::default())
    }
}

/// What a free checks before it frees: the block's bookkeeping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockInfo {
    pub(crate) kind: LeakKind,
    pub(crate) tag: u32,
    pub(crate) paged: bool,
}

/// Why a free was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FreeError<R = core::convert::Infallible> {
    /// Already freed.
    DoubleFree,
    /// Never allocated.
    Unknown,
    /// Allocated as another kind (e.g. an IRP freed with ExFreePool).
    WrongKind(LeakKind),
    /// The caller's check refused it.
    Refused(R),
}

/// Memory corruption the pool found (reported as a bugcheck by the
/// freeing call).
#[derive(Debug, Clone, Copy)]
enum PoolFinding {
    /// 0xC1: bytes around a block changed; found when it was freed.
    Slack {
        block: usize,
        corruption: special::Corruption,
        tag: u32,
        location: Option<&'static Location<'static>>,
    },
    /// 0xCC, found late: a quarantined (canary) block was written after it
    /// was freed.
    WriteAfterFree {
        block: usize,
        address: usize,
        tag: u32,
        size: usize,
        location: Option<&'static Location<'static>>,
        freed_at: Option<&'static Location<'static>>,
    },
}

/// Up to two findings of one free (its own slack, and a block leaving
/// quarantine), without allocating.
type Findings = [Option<PoolFinding>; 2];

impl PoolState {
    pub(crate) fn new(policy: PoolPolicy) -> Self {
        Self {
            tables: Mutex::default(),
            allocations: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            policy,
            paged_live: AtomicU64::new(0),
            canary_only: false,
            minimal_alignment: AtomicBool::new(false),
        }
    }

    pub(crate) fn stats(&self) -> PoolStats {
        let tables = lock(&self.tables);
        PoolStats {
            allocations: self.allocations.load(Ordering::Relaxed),
            frees: self.frees.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            live_blocks: tables.live as u64,
            live_bytes: tables
                .blocks
                .values()
                .map(|r| match r {
                    Record::Live(b) => b.size as u64,
                    Record::Freed { .. } => 0,
                })
                .sum(),
        }
    }

    pub(crate) fn note_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Allocates a zeroed block (or poisoned if `poison`). Returns null when
    /// the host is out of memory.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn allocate(
        &self,
        size: usize,
        tag: u32,
        kind: LeakKind,
        paged: bool,
        owner: u64,
        poison: bool,
        location: Option<&'static Location<'static>>,
    ) -> *mut u8 {
        let size = size.max(1);
        let minimal = self.minimal_alignment.load(Ordering::Relaxed);
        let fill = if poison { UNINITIALIZED_POISON } else { 0 };
        let record = |backing| Block {
            backing,
            size,
            tag,
            kind,
            paged,
            owner,
            location,
        };
        if self.policy == PoolPolicy::Fast && !minimal {
            // The hot path: a cached block, filled and recorded under one
            // hold of the pool lock.
            let mut tables = lock(&self.tables);
            if let Some((backing, address)) = tables.cached_host_block(size, fill) {
                tables.insert_block(self, address, record(backing));
                drop(tables);
                self.allocations.fetch_add(1, Ordering::Relaxed);
                return address as *mut u8;
            }
        }
        let placed = match self.policy {
            PoolPolicy::Fast => host_block(size, minimal),
            PoolPolicy::Special | PoolPolicy::SpecialVerifyStart => {
                let alignment = if self.policy == PoolPolicy::Special {
                    Alignment::VerifyEnd
                } else {
                    Alignment::VerifyStart
                };
                let facts = BlockFacts {
                    tag,
                    site: location,
                };
                let placed = if self.canary_only {
                    None
                } else {
                    special::allocate(size, minimal, alignment, facts)
                };
                match placed {
                    Some(placed) => Some((Backing::Special(placed), placed.block)),
                    None => canary_block(size, minimal),
                }
            }
        };
        let Some((backing, address)) = placed else {
            self.note_failure();
            return core::ptr::null_mut();
        };
        if poison {
            // SAFETY: the block is valid for `size` bytes of writes.
            unsafe { (address as *mut u8).write_bytes(UNINITIALIZED_POISON, size) };
        }
        lock(&self.tables).insert_block(self, address, record(backing));
        self.allocations.fetch_add(1, Ordering::Relaxed);
        address as *mut u8
    }

    /// Makes a live special-pool block inaccessible (`out`) or accessible
    /// again; see [`special::protect_out_of_context`]. Returns whether the
    /// block is guarded.
    pub(crate) fn set_out_of_context(&self, address: usize, out: bool) -> bool {
        let tables = lock(&self.tables);
        match tables.live_block(address).map(|b| b.backing) {
            Some(Backing::Special(placed)) => special::protect_out_of_context(&placed, out),
            _ => false,
        }
    }

    /// The kind, tag, pagedness and size of a live block.
    pub(crate) fn describe(&self, address: usize) -> Option<(LeakKind, u32, bool, usize)> {
        lock(&self.tables)
            .live_block(address)
            .map(|b| (b.kind, b.tag, b.paged, b.size))
    }

    /// The live paged block (start, size) that contains `address`, if any.
    pub(crate) fn paged_block_containing(&self, address: usize) -> Option<(usize, usize)> {
        if self.paged_live.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let tables = lock(&self.tables);
        tables
            .paged
            .range(..=address)
            .next_back()
            .filter(|&(&start, &size)| address < start + size)
            .map(|(&start, &size)| (start, size))
    }

    /// The first live paged block that overlaps `[address, address + len)`.
    pub(crate) fn paged_block_overlapping(
        &self,
        address: usize,
        len: usize,
    ) -> Option<(usize, usize)> {
        if self.paged_live.load(Ordering::Relaxed) == 0 {
            return None;
        }
        if let Some(found) = self.paged_block_containing(address) {
            return Some(found);
        }
        let end = address.checked_add(len)?;
        let tables = lock(&self.tables);
        tables
            .paged
            .range(address..end)
            .next()
            .map(|(&start, &size)| (start, size))
    }

    fn kind_of(&self, address: usize) -> Option<LeakKind> {
        lock(&self.tables).live_block(address).map(|b| b.kind)
    }

    /// Frees the block at `address` if `check` accepts its bookkeeping, in
    /// one look-up under one lock (the hot path of every free). Returns
    /// what the free found wrong around the block or in quarantine.
    fn free_inner<R>(
        &self,
        address: usize,
        check: impl FnOnce(BlockInfo) -> Result<(), R>,
        freed_at: Option<&'static Location<'static>>,
    ) -> Result<Findings, FreeError<R>> {
        let mut findings: Findings = [None, None];
        let mut guard = lock(&self.tables);
        let tables = &mut *guard;
        let seq = tables.next_free;
        // One look-up: the record turns from live to freed in place.
        let Some(record) = tables.blocks.get_mut(&address) else {
            return Err(FreeError::Unknown);
        };
        let Record::Live(block) = &*record else {
            return Err(FreeError::DoubleFree);
        };
        let info = BlockInfo {
            kind: block.kind,
            tag: block.tag,
            paged: block.paged,
        };
        // Refused: the block stays live, untouched.
        check(info).map_err(FreeError::Refused)?;
        let Record::Live(block) = std::mem::replace(record, Record::Freed { seq }) else {
            return Err(FreeError::DoubleFree);
        };
        tables.next_free += 1;
        tables.live -= 1;
        if block.paged {
            tables.paged.remove(&address);
            self.paged_live.fetch_sub(1, Ordering::Relaxed);
        }
        let corruption = match block.backing {
            Backing::Host { base, layout } => {
                // Poison freed memory so use-after-free shows up in tests.
                // SAFETY: the block was live and `size` bytes long at
                // `address`; it is ours alone now.
                unsafe { (address as *mut u8).write_bytes(FREED_POISON, block.size) };
                // A cached block keeps its freed record until it is handed
                // out again; one given back to the host is remembered as
                // the other frees are.
                if !tables.free_host_block(base, layout) {
                    tables.remember_free(address, seq);
                }
                None
            }
            Backing::Special(placed) => {
                // SAFETY: the block is live until `retire` below.
                let corruption = unsafe { special::check_slack(&placed) };
                special::retire(&placed, freed_at);
                corruption
            }
            Backing::Canary { base, layout } => {
                let end = base + layout.size();
                // SAFETY: the canaries lie in the live host allocation.
                let before = unsafe { special::first_changed(base, address, SLACK_PATTERN) };
                // SAFETY: as above.
                let after =
                    unsafe { special::first_changed(address + block.size, end, SLACK_PATTERN) };
                // SAFETY: the block is ours alone now.
                unsafe { (address as *mut u8).write_bytes(FREED_POISON, block.size) };
                tables.quarantine_canary_bytes += layout.size();
                before
                    .map(|a| special::Corruption {
                        address: a,
                        after_end: false,
                    })
                    .or(after.map(|a| special::Corruption {
                        address: a,
                        after_end: true,
                    }))
            }
        };
        if let Some(corruption) = corruption {
            findings[0] = Some(PoolFinding::Slack {
                block: address,
                corruption,
                tag: block.tag,
                location: block.location,
            });
        }
        if !matches!(block.backing, Backing::Host { .. }) {
            tables.remember_free(address, seq);
            tables.quarantine.push_back(Quarantined {
                backing: block.backing,
                address,
                size: block.size,
                tag: block.tag,
                location: block.location,
                freed_at,
            });
            while tables.quarantine.len() > QUARANTINE_BLOCKS
                || tables.quarantine_canary_bytes > QUARANTINE_CANARY_BYTES
            {
                let Some(old) = tables.quarantine.pop_front() else {
                    break;
                };
                if let Some(finding) = release_quarantined(tables, old) {
                    findings[1] = Some(finding);
                }
            }
        }
        drop(guard);
        self.frees.fetch_add(1, Ordering::Relaxed);
        Ok(findings)
    }

    /// Ends every quarantine (session end): slots go back to the arena,
    /// canary blocks are checked and freed. Returns the writes after free
    /// found in canary blocks.
    fn drain_quarantine(&self) -> Vec<PoolFinding> {
        let mut tables = lock(&self.tables);
        let mut found = Vec::new();
        while let Some(old) = tables.quarantine.pop_front() {
            found.extend(release_quarantined(&mut tables, old));
        }
        found
    }

    /// Live blocks of driver generation `owner` (every non-system block for
    /// `None`), as leaks.
    pub(crate) fn live_leaks(&self, owner: Option<u64>) -> Vec<Leak> {
        let tables = lock(&self.tables);
        let mut leaks: Vec<Leak> = tables
            .blocks
            .iter()
            .filter_map(|(&address, r)| match r {
                Record::Live(b) => Some((address, b)),
                Record::Freed { .. } => None,
            })
            .filter(|(_, b)| b.owner != SYSTEM_OWNER && owner.is_none_or(|o| b.owner == o))
            .map(|(address, b)| Leak {
                kind: b.kind,
                tag: b.tag,
                size: b.size as u64,
                address: address as u64,
                location: b.location,
            })
            .collect();
        leaks.sort_by_key(|l| l.address);
        leaks
    }
}

impl Drop for PoolState {
    fn drop(&mut self) {
        // Slots and canary memory go back; nobody is left to report to.
        let _ = self.drain_quarantine();
    }
}

/// Ends one block's quarantine.
fn release_quarantined(tables: &mut PoolTables, old: Quarantined) -> Option<PoolFinding> {
    match old.backing {
        Backing::Special(placed) => {
            special::recycle(&placed);
            None
        }
        Backing::Canary { base, layout } => {
            tables.quarantine_canary_bytes -= layout.size();
            // SAFETY: the quarantined block is still allocated, ours alone.
            let changed = unsafe {
                special::first_changed(old.address, old.address + old.size, FREED_POISON)
            };
            // SAFETY: `base` and `layout` are what `alloc_zeroed` got.
            unsafe { std::alloc::dealloc(base as *mut u8, layout) };
            changed.map(|address| PoolFinding::WriteAfterFree {
                block: old.address,
                address,
                tag: old.tag,
                size: old.size,
                location: old.location,
                freed_at: old.freed_at,
            })
        }
        Backing::Host { .. } => None,
    }
}

/// A plain host block (fast pool).
fn host_block(size: usize, minimal: bool) -> Option<(Backing, usize)> {
    let (layout, offset) = if minimal {
        // 32-aligned base + 16: 16-aligned, never 32-aligned.
        (Layout::from_size_align(size + 16, 32).ok()?, 16)
    } else if let Some(class) = host_class(size) {
        // Its class's layout, so the block can be cached when freed.
        (host_class_layout(class), 0)
    } else {
        let align = if size >= PAGE_SIZE { PAGE_SIZE } else { 16 };
        (Layout::from_size_align(size, align).ok()?, 0)
    };
    // SAFETY: `layout` has a non-zero size.
    let base = unsafe { std::alloc::alloc_zeroed(layout) };
    if base.is_null() {
        return None;
    }
    let base = base as usize;
    Some((Backing::Host { base, layout }, base + offset))
}

/// A host block with patterned canaries before and after it (the special
/// pool's fallback).
fn canary_block(size: usize, minimal: bool) -> Option<(Backing, usize)> {
    let (align, lead) = match (minimal, size >= PAGE_SIZE) {
        (true, _) => (32, CANARY + 16),
        (false, true) => (PAGE_SIZE, PAGE_SIZE),
        (false, false) => (16, CANARY),
    };
    let total = lead + size.next_multiple_of(16) + CANARY;
    let layout = Layout::from_size_align(total, align).ok()?;
    // SAFETY: `layout` has a non-zero size.
    let base = unsafe { std::alloc::alloc_zeroed(layout) };
    if base.is_null() {
        return None;
    }
    let base = base as usize;
    let block = base + lead;
    // SAFETY: `[base, block)` and `[block + size, base + total)` lie in the
    // fresh allocation.
    unsafe { (base as *mut u8).write_bytes(SLACK_PATTERN, lead) };
    // SAFETY: as above.
    unsafe { ((block + size) as *mut u8).write_bytes(SLACK_PATTERN, total - lead - size) };
    Some((Backing::Canary { base, layout }, block))
}

impl Kernel {
    /// Frees a block of `kind` (the sim's own frees of kernel objects);
    /// memory corruption found on the way is a bugcheck.
    pub(crate) fn free_block(
        &self,
        address: usize,
        kind: LeakKind,
        freed_at: Option<&'static Location<'static>>,
    ) -> Result<(), FreeError> {
        self.free_block_checked(
            address,
            |info| {
                if info.kind == kind { Ok(()) } else { Err(()) }
            },
            freed_at,
        )
        .map_err(|error| match error {
            FreeError::Refused(()) => match self.pool.kind_of(address) {
                Some(actual) => FreeError::WrongKind(actual),
                None => FreeError::Unknown,
            },
            FreeError::DoubleFree => FreeError::DoubleFree,
            FreeError::Unknown => FreeError::Unknown,
            FreeError::WrongKind(k) => FreeError::WrongKind(k),
        })
    }

    /// Frees the block at `address` if `check` accepts its bookkeeping;
    /// memory corruption found on the way is a bugcheck (after the free).
    pub(crate) fn free_block_checked<R>(
        &self,
        address: usize,
        check: impl FnOnce(BlockInfo) -> Result<(), R>,
        freed_at: Option<&'static Location<'static>>,
    ) -> Result<(), FreeError<R>> {
        let findings = self.pool.free_inner(address, check, freed_at)?;
        for finding in findings.into_iter().flatten() {
            self.report_pool_finding(finding, freed_at);
        }
        Ok(())
    }

    /// Ends the pool's quarantine (session end), reporting writes after
    /// free found in canary blocks.
    pub(crate) fn drain_pool_quarantine(&self) {
        for finding in self.pool.drain_quarantine() {
            self.report_pool_finding(finding, None);
        }
    }

    fn report_pool_finding(
        &self,
        finding: PoolFinding,
        freed_at: Option<&'static Location<'static>>,
    ) {
        match finding {
            PoolFinding::Slack {
                block,
                corruption,
                tag,
                location,
            } => {
                let (p4, side) = if corruption.after_end {
                    (c1::BYTES_AFTER_END_CORRUPTED, "after its end")
                } else {
                    (c1::NEARBY_BYTES_CORRUPTED, "before its start")
                };
                let site = location.map_or(String::new(), |l| format!(", allocated at {l}"));
                self.bugcheck_at(
                    SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION,
                    [block as u64, corruption.address as u64, 0, p4],
                    format!(
                        "a pool block (tag '{}'{site}) was freed with bytes {side} overwritten                          (at {:#x})",
                        super::verifier::tag_to_string(tag),
                        corruption.address
                    ),
                    freed_at,
                );
            }
            PoolFinding::WriteAfterFree {
                block,
                address,
                tag,
                size,
                location,
                freed_at: block_freed_at,
            } => {
                let allocated = location.map_or(String::new(), |l| format!(", allocated at {l}"));
                let freed = block_freed_at.map_or(String::new(), |l| format!(", freed at {l}"));
                self.bugcheck_at(
                    PAGE_FAULT_IN_FREED_SPECIAL_POOL,
                    [address as u64, 1, 0, 0],
                    format!(
                        "a freed pool block (tag '{}', {size} bytes at {block:#x}{allocated}                         {freed}) was written after its free (at {address:#x}; found when it                          left quarantine: this host has no guard pages for it)",
                        super::verifier::tag_to_string(tag)
                    ),
                    block_freed_at,
                );
            }
        }
    }
}

// === Resident memory ===

/// Raises 0xC4/0xE1 when the dispatcher object or spin lock at `object`
/// (`size` bytes) lies in paged pool: the kernel touches these at
/// DISPATCH_LEVEL, so they must be resident (KeInitializeEvent,
/// KeInitializeSpinLock: "storage for … resident"). Returns whether it is
/// resident. Any IRQL; no-op outside a session or with the verifier off.
pub(crate) fn check_sync_object_resident(
    object: usize,
    size: usize,
    routine: &str,
    location: &'static Location<'static>,
) -> bool {
    super::session::try_with_current(|k| {
        check_sync_object_resident_in(k, object, size, routine, location)
    })
    .unwrap_or(true)
}

/// [`check_sync_object_resident`] in session `k` (a caller that is inside
/// the session already: no second look-up). Inline: two loads while no
/// paged block is live.
#[inline]
pub(crate) fn check_sync_object_resident_in(
    k: &Kernel,
    object: usize,
    size: usize,
    routine: &str,
    location: &'static Location<'static>,
) -> bool {
    if !k.verifying() || k.pool.paged_live.load(Ordering::Relaxed) == 0 {
        return true;
    }
    sync_object_in_paged_pool(k, object, size, routine, location)
}

/// [`check_sync_object_resident_in`] while paged blocks are live: the
/// range look-up and the bugcheck.
#[cold]
#[inline(never)]
fn sync_object_in_paged_pool(
    k: &Kernel,
    object: usize,
    size: usize,
    routine: &str,
    location: &'static Location<'static>,
) -> bool {
    let Some((start, block_size)) = k.pool.paged_block_overlapping(object, size) else {
        return true;
    };
    k.bugcheck_at(
        DRIVER_VERIFIER_DETECTED_VIOLATION,
        [c4::SYNC_OBJECT_PAGEABLE, object as u64, 0, 0],
        format!(
            "{routine} on a synchronization object at {object:#x}, inside paged pool \
                 ({block_size} bytes at {start:#x}): it must be in resident memory"
        ),
        Some(location),
    );
    false
}

/// Raises 0x0A IRQL_NOT_LESS_OR_EQUAL when a sim routine (kernel code) is
/// handed pageable memory (`len` bytes at `address`, read or `write`)
/// while the caller runs at DISPATCH_LEVEL or above: the page may be out
/// and cannot be brought in there (Driver Verifier's Force IRQL Checking
/// trims it to make that certain). Returns whether the access is
/// acceptable. Any IRQL; no-op outside a session or with the verifier off.
pub(crate) fn check_resident_at_irql(
    address: usize,
    len: usize,
    write: bool,
    routine: &str,
    location: &'static Location<'static>,
) -> bool {
    let irql = irql::current();
    if irql < DISPATCH_LEVEL {
        return true;
    }
    super::session::try_with_current(|k| {
        if !k.verifying() {
            return true;
        }
        let Some((start, size)) = k.pool.paged_block_overlapping(address, len.max(1)) else {
            return true;
        };
        k.bugcheck_at(
            super::verifier::IRQL_NOT_LESS_OR_EQUAL,
            [address as u64, u64::from(irql), u64::from(write), 0],
            format!(
                "{routine} at IRQL {irql} was handed paged pool ({} at {address:#x}, in the \
                 {size}-byte paged block at {start:#x})",
                if write { "a write" } else { "a read" }
            ),
            Some(location),
        );
        false
    })
    .unwrap_or(true)
}

/// A pool tag from its four characters as written in memory (poolmon
/// order): `pool_tag(b"WdkA")`.
pub const fn pool_tag(chars: &[u8; 4]) -> ULONG {
    u32::from_le_bytes(*chars)
}

/// Tag the sim uses for IRPs.
pub(crate) const IRP_TAG: u32 = pool_tag(b"Irp ");
/// Tag the sim uses for MDLs.
pub(crate) const MDL_TAG: u32 = pool_tag(b"Mdl ");

impl Kernel {
    /// Allocates a tracked kernel object block for the current driver
    /// generation, honouring fault injection on `site`. Null on failure.
    pub(crate) fn allocate_object(
        &self,
        size: usize,
        tag: u32,
        kind: LeakKind,
        fail: bool,
        location: &'static Location<'static>,
    ) -> *mut u8 {
        if fail {
            self.pool.note_failure();
            return core::ptr::null_mut();
        }
        let owner = self.driver_generation.load(Ordering::Acquire);
        self.pool
            .allocate(size, tag, kind, false, owner, false, Some(location))
    }
}

/// `ExAllocatePool2`: zeroed pool (unless `POOL_FLAG_UNINITIALIZED`), null
/// on failure. IRQL <= DISPATCH_LEVEL (paged: <= APC_LEVEL).
///
/// # Safety
/// None beyond the WDK contract: the block must be freed once with
/// `ExFreePool`/`ExFreePoolWithTag`.
#[track_caller]
pub unsafe fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID {
    let location = Location::caller();
    with_current(|k| {
        let irql = irql::current();
        let paged = Flags & POOL_FLAG_PAGED != 0;
        let nonpaged = Flags & (POOL_FLAG_NON_PAGED | POOL_FLAG_NON_PAGED_EXECUTE) != 0;
        let pool_type = u64::from(paged);
        if k.verifying() {
            if paged && irql > APC_LEVEL {
                k.bugcheck_at(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [
                        c4::PAGED_ALLOC_ABOVE_APC,
                        u64::from(irql),
                        pool_type,
                        NumberOfBytes,
                    ],
                    "paged pool allocated above APC_LEVEL",
                    Some(location),
                );
                return core::ptr::null_mut();
            }
            if irql > DISPATCH_LEVEL {
                k.bugcheck_at(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [
                        c4::NONPAGED_ALLOC_ABOVE_DISPATCH,
                        u64::from(irql),
                        pool_type,
                        NumberOfBytes,
                    ],
                    "pool allocated above DISPATCH_LEVEL",
                    Some(location),
                );
                return core::ptr::null_mut();
            }
            if NumberOfBytes == 0 {
                k.bugcheck_at(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [c4::ZERO_BYTE_ALLOCATION, u64::from(irql), pool_type, 0],
                    "zero-byte pool allocation",
                    Some(location),
                );
                return core::ptr::null_mut();
            }
        }
        // Tag 0 makes ExAllocatePool2 return NULL (its documented
        // failure); the verifier raises 0xC2/0x9B for it, and 0xC2/0x9D for
        // a tag without a letter or digit (both untrackable), stricter
        // than a silent NULL (docs/sim-memory.md).
        let bad_tag = if Tag == 0 {
            Some((c2::ZERO_TAG, "a pool allocation with tag 0"))
        } else if !Tag.to_le_bytes().iter().any(u8::is_ascii_alphanumeric) {
            Some((
                c2::TAG_WITHOUT_LETTERS,
                "a pool allocation with a tag that contains no letter or digit",
            ))
        } else {
            None
        };
        if let Some((code, what)) = bad_tag {
            if k.verifying() {
                let parameters = if code == c2::ZERO_TAG {
                    [code, pool_type, NumberOfBytes, 0]
                } else {
                    [code, u64::from(Tag), pool_type, 0]
                };
                k.bugcheck_at(BAD_POOL_CALLER, parameters, what, Some(location));
            }
            k.pool.note_failure();
            return core::ptr::null_mut();
        }
        // Documented failures: no or both pool kinds.
        if paged == nonpaged {
            k.pool.note_failure();
            return core::ptr::null_mut();
        }
        if k.faults.pool.should_fail() {
            k.pool.note_failure();
            return core::ptr::null_mut();
        }
        let Ok(size) = usize::try_from(NumberOfBytes) else {
            k.pool.note_failure();
            return core::ptr::null_mut();
        };
        let poison = Flags & POOL_FLAG_UNINITIALIZED != 0 && k.options().poison_uninitialized_pool;
        let owner = k.driver_generation.load(Ordering::Acquire);
        k.pool
            .allocate(
                size,
                Tag,
                LeakKind::Pool,
                paged,
                owner,
                poison,
                Some(location),
            )
            .cast()
    })
}

#[track_caller]
fn free_pool(P: PVOID, tag: Option<ULONG>) {
    let location = Location::caller();
    with_current(|k| {
        let address = P as usize;
        let irql = irql::current();
        let verifying = k.verifying();
        // A timer still in the timer queue or a DPC still queued in the
        // block: 0xC7 (and they leave their queues).
        if super::timer::anything_queued()
            && let Some((_, _, _, size)) = k.pool.describe(address)
        {
            super::timer::check_free(k, address, size);
        }
        // An IRP the driver initialised at the block's start (IoInitializeIrp)
        // goes with it: not while it is in flight (0xC9/0x20B, as IoFreeIrp).
        if !super::io::pool_block_freed(k, address, location) {
            return;
        }
        // Spin locks in the block: still held is 0xC4/0x100B; forgotten by
        // Deadlock Detection either way.
        if irql::tracks_locks(k)
            && let Some((_, _, _, size)) = k.pool.describe(address)
        {
            irql::pool_freed(k, address, address + size);
        }
        // Every check runs on the block's bookkeeping under the pool lock;
        // the bugcheck (if any) is raised after it is released.
        let refusal = |info: BlockInfo| -> Result<(), (u32, [u64; 4], String)> {
            if verifying {
                if info.paged && irql > APC_LEVEL {
                    return Err((
                        DRIVER_VERIFIER_DETECTED_VIOLATION,
                        [c4::PAGED_FREE_ABOVE_APC, u64::from(irql), 1, address as u64],
                        "paged pool freed above APC_LEVEL".into(),
                    ));
                }
                if irql > DISPATCH_LEVEL {
                    return Err((
                        DRIVER_VERIFIER_DETECTED_VIOLATION,
                        [
                            c4::NONPAGED_FREE_ABOVE_DISPATCH,
                            u64::from(irql),
                            0,
                            address as u64,
                        ],
                        "pool freed above DISPATCH_LEVEL".into(),
                    ));
                }
                if info.kind == LeakKind::Irp {
                    return Err((
                        DRIVER_VERIFIER_DETECTED_VIOLATION,
                        [c4::IRP_FREED_AS_POOL, address as u64, 0, 0],
                        "an IRP was freed with ExFreePool instead of IoFreeIrp".into(),
                    ));
                }
            }
            if let Some(tag) = tag
                && tag != info.tag
            {
                return Err((
                    BAD_POOL_CALLER,
                    [
                        c2::WRONG_TAG,
                        address as u64,
                        u64::from(info.tag),
                        u64::from(tag),
                    ],
                    "ExFreePoolWithTag with a tag that is not the allocation's".into(),
                ));
            }
            if info.kind != LeakKind::Pool {
                return Err((
                    BAD_POOL_CALLER,
                    [c2::BAD_ADDRESS, address as u64, 0, 0],
                    format!("ExFreePool on a {:?} object", info.kind),
                ));
            }
            Ok(())
        };
        let (code, parameters, description) =
            match k.free_block_checked(address, refusal, Some(location)) {
                Ok(()) => return,
                Err(FreeError::Refused(refused)) => refused,
                Err(FreeError::DoubleFree) => (
                    BAD_POOL_CALLER,
                    [c2::DOUBLE_FREE, 0, 0, address as u64],
                    "pool freed twice".into(),
                ),
                Err(FreeError::Unknown | FreeError::WrongKind(_)) => (
                    BAD_POOL_CALLER,
                    [c2::BAD_ADDRESS, address as u64, 0, 0],
                    "free of an address that is not a pool block".into(),
                ),
            };
        k.bugcheck_at(code, parameters, description, Some(location));
    });
}

/// `ExFreePool`. IRQL <= DISPATCH_LEVEL (paged: <= APC_LEVEL).
///
/// # Safety
/// `P` must be a block from `ExAllocatePool2` not yet freed, not used after.
#[track_caller]
pub unsafe fn ExFreePool(P: PVOID) {
    free_pool(P, None);
}

/// `ExFreePoolWithTag`: as [`ExFreePool`], and the tag must match.
///
/// # Safety
/// As [`ExFreePool`].
#[track_caller]
pub unsafe fn ExFreePoolWithTag(P: PVOID, Tag: ULONG) {
    free_pool(P, Some(Tag));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary_pool() -> PoolState {
        let mut pool = PoolState::new(PoolPolicy::Special);
        pool.canary_only = true;
        pool
    }

    fn allocate(pool: &PoolState, size: usize) -> usize {
        let p = pool.allocate(size, 0x7473_6554, LeakKind::Pool, false, 1, false, None);
        assert!(!p.is_null());
        p as usize
    }

    fn free(pool: &PoolState, address: usize) -> Result<Findings, FreeError<()>> {
        pool.free_inner(address, |_| Ok::<(), ()>(()), None)
    }

    /// Fast pool: a small freed block stays poisoned while it waits for
    /// reuse, the next allocation of its size class gets it back zeroed
    /// (as every ExAllocatePool2 block without POOL_FLAG_UNINITIALIZED
    /// must be), and a freed address is a double free until reused.
    #[test]
    fn fast_blocks_are_reused_zeroed_and_poisoned_while_free() {
        let pool = PoolState::new(PoolPolicy::Fast);
        let a = allocate(&pool, 100);
        assert_eq!(a % 16, 0);
        // SAFETY: a live block of 100 bytes.
        unsafe { (a as *mut u8).write_bytes(0x5A, 100) };
        assert!(free(&pool, a).is_ok());
        // SAFETY: the block is held by the pool's cache (still allocated
        // from the host): reading it is defined; a driver reading it would
        // see the poison.
        let freed = unsafe { core::slice::from_raw_parts(a as *const u8, 100) };
        assert!(freed.iter().all(|&b| b == FREED_POISON));
        assert!(matches!(free(&pool, a), Err(FreeError::DoubleFree)));
        // Same class (97..=112 bytes): the same block, zeroed.
        let b = allocate(&pool, 112);
        assert_eq!(b, a);
        // SAFETY: a live block of 112 bytes.
        let fresh = unsafe { core::slice::from_raw_parts(b as *const u8, 112) };
        assert!(fresh.iter().all(|&byte| byte == 0));
        assert!(free(&pool, b).is_ok());
        // Blocks above the cached sizes go back to the host.
        let big = allocate(&pool, HOST_CACHE_MAX_BLOCK + 1);
        assert!(free(&pool, big).is_ok());
        assert_eq!(lock(&pool.tables).host_cache_bytes, 112);
    }

    /// Fast pool: a cached block's free is remembered for as long as the
    /// block waits in the cache, however many other frees come after it
    /// (a second free is a double free, not an unknown address); once the
    /// address is handed out again it is live, and freeable once more.
    #[test]
    fn a_cached_blocks_free_is_remembered_until_reuse() {
        let pool = PoolState::new(PoolPolicy::Fast);
        let a = allocate(&pool, 48);
        assert!(free(&pool, a).is_ok());
        // More frees than the remembered window, of blocks the cache does
        // not keep (given back to the host).
        for _ in 0..QUARANTINE_BLOCKS + 16 {
            let big = allocate(&pool, HOST_CACHE_MAX_BLOCK + 16);
            assert!(free(&pool, big).is_ok());
        }
        assert!(matches!(free(&pool, a), Err(FreeError::DoubleFree)));
        assert_eq!(pool.stats().live_blocks, 0);
        let again = allocate(&pool, 48);
        assert_eq!(again, a);
        assert_eq!(pool.stats().live_blocks, 1);
        assert_eq!(pool.describe(a).map(|d| d.3), Some(48));
        assert!(free(&pool, again).is_ok());
        assert!(matches!(free(&pool, a), Err(FreeError::DoubleFree)));
        // The window of uncached frees stays bounded.
        assert!(lock(&pool.tables).blocks.len() <= QUARANTINE_BLOCKS + 1);
    }

    #[test]
    fn canary_blocks_are_aligned_zeroed_and_free_clean() {
        let pool = canary_pool();
        for size in [1, 20, 4096, 5000] {
            let p = allocate(&pool, size);
            assert_eq!(p % 16, 0);
            if size >= PAGE_SIZE {
                assert_eq!(p % PAGE_SIZE, 0);
            }
            // SAFETY: `size` bytes of the live block.
            let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
            assert!(bytes.iter().all(|&b| b == 0));
            assert!(matches!(free(&pool, p), Ok([None, None])));
        }
        pool.minimal_alignment.store(true, Ordering::Relaxed);
        let p = allocate(&pool, 40);
        assert_eq!(p % 32, 16);
        assert!(matches!(free(&pool, p), Ok([None, None])));
        assert!(pool.drain_quarantine().is_empty());
    }

    #[test]
    fn canary_overrun_and_underrun_are_found_at_free() {
        let pool = canary_pool();
        let p = allocate(&pool, 20);
        // SAFETY: inside the trailing canary of the live allocation.
        unsafe { ((p + 21) as *mut u8).write(0) };
        match free(&pool, p) {
            Ok(
                [
                    Some(PoolFinding::Slack {
                        block, corruption, ..
                    }),
                    None,
                ],
            ) => {
                assert_eq!(block, p);
                assert_eq!(corruption.address, p + 21);
                assert!(corruption.after_end);
            }
            other => panic!("{other:?}"),
        }
        let p = allocate(&pool, 64);
        // SAFETY: inside the leading canary of the live allocation.
        unsafe { ((p - 3) as *mut u8).write(0) };
        match free(&pool, p) {
            Ok([Some(PoolFinding::Slack { corruption, .. }), None]) => {
                assert_eq!(corruption.address, p - 3);
                assert!(!corruption.after_end);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_canary_block_written_after_free_is_found_when_it_leaves_quarantine() {
        let pool = canary_pool();
        let p = allocate(&pool, 48);
        assert!(matches!(free(&pool, p), Ok([None, None])));
        // SAFETY: the freed block stays allocated while quarantined (the
        // deliberate bug: a write after free).
        unsafe { ((p + 5) as *mut u8).write(0x42) };
        assert!(matches!(free(&pool, p), Err(FreeError::DoubleFree)));
        match pool.drain_quarantine().as_slice() {
            [
                PoolFinding::WriteAfterFree {
                    block,
                    address,
                    size,
                    ..
                },
            ] => {
                assert_eq!((*block, *address, *size), (p, p + 5, 48));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_quarantine_is_bounded_and_recycles_in_order() {
        let pool = PoolState::new(PoolPolicy::Special);
        let first = allocate(&pool, 16);
        assert!(free(&pool, first).is_ok());
        for _ in 0..QUARANTINE_BLOCKS {
            let p = allocate(&pool, 16);
            assert_ne!(p, first, "reused while quarantined");
            assert!(free(&pool, p).is_ok());
        }
        assert_eq!(lock(&pool.tables).quarantine.len(), QUARANTINE_BLOCKS);
    }
}
