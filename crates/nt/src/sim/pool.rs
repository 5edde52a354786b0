//! Pool: `ExAllocatePool2`, `ExFreePool`, `ExFreePoolWithTag`, and the
//! allocation tracking every kernel object of the sim goes through (IRPs,
//! MDLs and work items are pool blocks of their own kind), so leaks at
//! unload are reported with their tags and allocation sites.
//!
//! Blocks are 16-byte aligned (MEMORY_ALLOCATION_ALIGNMENT on x64) and,
//! like NT's, page-aligned from one page up, unless the session asks for
//! `minimal_alignment`: then every block is 16- but never 32-byte aligned,
//! the worst an allocator that ignores alignment (wdk-alloc) can give.

use std::alloc::Layout;
use std::collections::VecDeque;
use std::panic::Location;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::hash::{AddressMap, AddressSet};
use super::irql;
use super::session::{Kernel, lock, with_current};
use super::verifier::{
    BAD_POOL_CALLER, DRIVER_VERIFIER_DETECTED_VIOLATION, Leak, LeakKind, c2, c4,
};
use crate::types::*;

const PAGE_SIZE: usize = 4096;
const FREED_MEMORY: usize = 4096;

/// Owner generation of blocks the sim allocates for itself (never leaks of
/// a driver).
pub(crate) const SYSTEM_OWNER: u64 = u64::MAX;

#[derive(Debug)]
struct Block {
    base: usize,
    layout: Layout,
    size: usize,
    tag: u32,
    kind: LeakKind,
    paged: bool,
    owner: u64,
    location: Option<&'static Location<'static>>,
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

#[derive(Debug, Default)]
struct PoolTables {
    blocks: AddressMap<Block>,
    /// Recently freed addresses (double-free detection), oldest first in
    /// `freed_order`.
    freed: AddressSet,
    freed_order: VecDeque<usize>,
}

#[derive(Debug, Default)]
pub(crate) struct PoolState {
    tables: Mutex<PoolTables>,
    allocations: AtomicU64,
    frees: AtomicU64,
    failures: AtomicU64,
    pub(crate) minimal_alignment: AtomicBool,
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

impl PoolState {
    pub(crate) fn stats(&self) -> PoolStats {
        let tables = lock(&self.tables);
        PoolStats {
            allocations: self.allocations.load(Ordering::Relaxed),
            frees: self.frees.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            live_blocks: tables.blocks.len() as u64,
            live_bytes: tables.blocks.values().map(|b| b.size as u64).sum(),
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
        let (layout, offset) = if minimal {
            // 32-aligned base + 16: 16-aligned, never 32-aligned.
            match Layout::from_size_align(size + 16, 32) {
                Ok(l) => (l, 16),
                Err(_) => return core::ptr::null_mut(),
            }
        } else {
            let align = if size >= PAGE_SIZE { PAGE_SIZE } else { 16 };
            match Layout::from_size_align(size, align) {
                Ok(l) => (l, 0),
                Err(_) => return core::ptr::null_mut(),
            }
        };
        // SAFETY: `layout` has a non-zero size.
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        if base.is_null() {
            self.note_failure();
            return base;
        }
        // SAFETY: `offset` < layout.size() by construction.
        let ptr = unsafe { base.add(offset) };
        if poison {
            // SAFETY: `ptr` is valid for `size` bytes.
            unsafe { ptr.write_bytes(0xCD, size) };
        }
        let address = ptr as usize;
        let block = Block {
            base: base as usize,
            layout,
            size,
            tag,
            kind,
            paged,
            owner,
            location,
        };
        {
            let mut tables = lock(&self.tables);
            tables.freed.remove(&address);
            tables.blocks.insert(address, block);
        }
        self.allocations.fetch_add(1, Ordering::Relaxed);
        ptr
    }

    /// Frees a block of `kind`.
    pub(crate) fn free(&self, address: usize, kind: LeakKind) -> Result<(), FreeError> {
        self.free_checked(
            address,
            |info| {
                if info.kind == kind { Ok(()) } else { Err(()) }
            },
        )
        .map_err(|error| match error {
            FreeError::Refused(()) => match self.kind_of(address) {
                Some(actual) => FreeError::WrongKind(actual),
                None => FreeError::Unknown,
            },
            FreeError::DoubleFree => FreeError::DoubleFree,
            FreeError::Unknown => FreeError::Unknown,
            FreeError::WrongKind(k) => FreeError::WrongKind(k),
        })
    }

    /// The kind, tag, pagedness and size of a live block.
    pub(crate) fn describe(&self, address: usize) -> Option<(LeakKind, u32, bool, usize)> {
        lock(&self.tables)
            .blocks
            .get(&address)
            .map(|b| (b.kind, b.tag, b.paged, b.size))
    }

    fn kind_of(&self, address: usize) -> Option<LeakKind> {
        lock(&self.tables).blocks.get(&address).map(|b| b.kind)
    }

    /// Frees the block at `address` if `check` accepts its bookkeeping, in
    /// one look-up under one lock (the hot path of every free).
    pub(crate) fn free_checked<R>(
        &self,
        address: usize,
        check: impl FnOnce(BlockInfo) -> Result<(), R>,
    ) -> Result<(), FreeError<R>> {
        let block = {
            let mut tables = lock(&self.tables);
            let Some(block) = tables.blocks.get(&address) else {
                return Err(if tables.freed.contains(&address) {
                    FreeError::DoubleFree
                } else {
                    FreeError::Unknown
                });
            };
            let info = BlockInfo {
                kind: block.kind,
                tag: block.tag,
                paged: block.paged,
            };
            check(info).map_err(FreeError::Refused)?;
            let Some(block) = tables.blocks.remove(&address) else {
                return Err(FreeError::Unknown);
            };
            if tables.freed.insert(address) {
                tables.freed_order.push_back(address);
            }
            while tables.freed_order.len() > FREED_MEMORY {
                if let Some(old) = tables.freed_order.pop_front() {
                    tables.freed.remove(&old);
                }
            }
            block
        };
        // Poison freed memory so use-after-free shows up in tests.
        // SAFETY: the block was live and `size` bytes long at `address`; it
        // is ours alone now.
        unsafe { (address as *mut u8).write_bytes(0xDD, block.size) };
        // SAFETY: `base` and `layout` are exactly what `alloc_zeroed` got.
        unsafe { std::alloc::dealloc(block.base as *mut u8, block.layout) };
        self.frees.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Live blocks of driver generation `owner` (every non-system block for
    /// `None`), as leaks.
    pub(crate) fn live_leaks(&self, owner: Option<u64>) -> Vec<Leak> {
        let tables = lock(&self.tables);
        let mut leaks: Vec<Leak> = tables
            .blocks
            .iter()
            .filter(|(_, b)| b.owner != SYSTEM_OWNER && owner.is_none_or(|o| b.owner == o))
            .map(|(&address, b)| Leak {
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
        // Documented failures: tag 0, no or both pool kinds.
        if Tag == 0 || paged == nonpaged {
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
        let (code, parameters, description) = match k.pool.free_checked(address, refusal) {
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
