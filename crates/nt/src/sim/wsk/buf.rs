//! Buffers: reading and writing a client's `WSK_BUF` through its MDL chain,
//! and the provider's own buffers handed out as data and datagram
//! indications (MDL chains over provider memory).
//!
//! Client buffers are reached only through the WDK's MDL routines
//! (`MmGetMdlByteCount`, `MmGetSystemAddressForMdlSafe`), so an MDL that is
//! neither built for non-paged pool nor locked is caught by the verifier
//! exactly as it would be on Windows. Provider buffers are host memory, not
//! pool: they never count against the client's allocations and never show
//! up as its leaks. Everything here may run at DISPATCH_LEVEL; nothing
//! blocks.

use std::net::SocketAddr;

use super::super::ffi::*;
use super::super::mdl::{MmGetMdlByteCount, MmGetSystemAddressForMdlSafe};
use crate::status::*;
use crate::types::*;
use crate::wsk::*;

const PAGE_SIZE: usize = 4096;
/// Bytes of an MDL header on x64.
const MDL_HEADER: usize = core::mem::size_of::<MDL>();

/// A client's `WSK_BUF`, copied at call time (plain data, so queued
/// operations can move between threads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BufRef {
    /// The first MDL of the chain (`PMDL`), or 0 when `length` is 0.
    pub(crate) mdl: usize,
    /// Offset into the first MDL.
    pub(crate) offset: usize,
    /// Bytes described.
    pub(crate) length: usize,
}

impl BufRef {
    /// An empty buffer.
    pub(crate) const EMPTY: BufRef = BufRef {
        mdl: 0,
        offset: 0,
        length: 0,
    };

    /// Copies `*buf` and checks that its MDL chain covers `Offset + Length`
    /// bytes (STATUS_INVALID_PARAMETER otherwise, or for a null `buf`).
    ///
    /// # Safety
    /// `buf` must be null or point to a `WSK_BUF` whose MDLs are live.
    pub(crate) unsafe fn from_wsk_buf(buf: *const WSK_BUF) -> Result<BufRef, NTSTATUS> {
        if buf.is_null() {
            return Err(STATUS_INVALID_PARAMETER);
        }
        // SAFETY: the caller guarantees `buf` points to a WSK_BUF.
        let value = unsafe { core::ptr::read_unaligned(buf) };
        let this = BufRef {
            mdl: value.Mdl as usize,
            offset: value.Offset as usize,
            length: usize::try_from(value.Length).map_err(|_| STATUS_INVALID_PARAMETER)?,
        };
        this.validate()?;
        Ok(this)
    }

    fn validate(&self) -> Result<(), NTSTATUS> {
        if self.length == 0 {
            return Ok(());
        }
        if self.mdl == 0 {
            return Err(STATUS_INVALID_PARAMETER);
        }
        let mut capacity = 0usize;
        let mut mdl = self.mdl as PMDL;
        let mut first = true;
        while !mdl.is_null() {
            // SAFETY: the chain's MDLs are live (the caller's contract).
            let count = unsafe { MmGetMdlByteCount(mdl) } as usize;
            if first && self.offset > count {
                return Err(STATUS_INVALID_PARAMETER);
            }
            capacity += if first { count - self.offset } else { count };
            first = false;
            if capacity >= self.length {
                return Ok(());
            }
            // SAFETY: as above.
            mdl = unsafe { (*mdl).Next };
        }
        Err(STATUS_INVALID_PARAMETER)
    }

    /// Calls `visit(pointer, length)` for the consecutive pieces of the
    /// buffer's bytes `[start, start + max)` (clipped to its length), in
    /// order, until `visit` returns `false`. Fails with
    /// STATUS_INSUFFICIENT_RESOURCES if an MDL cannot be mapped.
    ///
    /// # Safety
    /// The MDL chain must still be live and locked (the request is not yet
    /// completed).
    pub(crate) unsafe fn segments(
        &self,
        start: usize,
        max: usize,
        mut visit: impl FnMut(*mut u8, usize) -> bool,
    ) -> Result<(), NTSTATUS> {
        let end = self.length.min(start.saturating_add(max));
        if start >= end {
            return Ok(());
        }
        // Position of `start` counted from the beginning of the first MDL.
        let mut skip = self.offset + start;
        let mut remaining = end - start;
        let mut mdl = self.mdl as PMDL;
        while !mdl.is_null() && remaining > 0 {
            // SAFETY: a live MDL of the chain.
            let count = unsafe { MmGetMdlByteCount(mdl) } as usize;
            if skip >= count {
                skip -= count;
            } else {
                let priority = NormalPagePriority as ULONG | MdlMappingNoExecute;
                // SAFETY: a live, locked or non-paged MDL of the chain.
                let base = unsafe { MmGetSystemAddressForMdlSafe(mdl, priority) };
                if base.is_null() {
                    return Err(STATUS_INSUFFICIENT_RESOURCES);
                }
                let take = (count - skip).min(remaining);
                let piece = base.cast::<u8>().wrapping_add(skip);
                remaining -= take;
                skip = 0;
                if !visit(piece, take) {
                    return Ok(());
                }
            }
            // SAFETY: as above.
            mdl = unsafe { (*mdl).Next };
        }
        Ok(())
    }

    /// Copies `data` into the buffer at byte `at`; returns how many bytes
    /// fit.
    ///
    /// # Safety
    /// As [`Self::segments`]; the buffer must not be read by anyone else
    /// meanwhile (the provider owns the request).
    pub(crate) unsafe fn write_at(&self, at: usize, data: &[u8]) -> Result<usize, NTSTATUS> {
        let mut done = 0usize;
        let visit = |piece: *mut u8, len: usize| {
            let source = &data[done..done + len];
            // SAFETY: `piece` is `len` writable bytes of the client's
            // buffer, distinct from `data` (provider memory).
            unsafe { core::ptr::copy_nonoverlapping(source.as_ptr(), piece, len) };
            done += len;
            true
        };
        // SAFETY: forwarded contract.
        unsafe { self.segments(at, data.len(), visit) }?;
        Ok(done)
    }

    /// Copies the buffer's bytes `[at, at + max)` out.
    ///
    /// # Safety
    /// As [`Self::segments`].
    pub(crate) unsafe fn read(&self, at: usize, max: usize) -> Result<Vec<u8>, NTSTATUS> {
        let mut out = Vec::with_capacity(max.min(self.length.saturating_sub(at)));
        let visit = |piece: *mut u8, len: usize| {
            // SAFETY: `piece` is `len` readable bytes of the buffer.
            out.extend_from_slice(unsafe { core::slice::from_raw_parts(piece, len) });
            true
        };
        // SAFETY: forwarded contract.
        unsafe { self.segments(at, max, visit) }?;
        Ok(out)
    }
}

// === Provider MDLs ===

/// An MDL the provider builds over its own memory, laid out as
/// `IoAllocateMdl` + `MmBuildMdlForNonPagedPool` would (header, PFN array,
/// `MDL_SOURCE_IS_NONPAGED_POOL`, `MappedSystemVa` set), but in host memory
/// the provider owns: `MmGetSystemAddressForMdlSafe` works on it and it is
/// never a pool block of the client's.
pub(crate) struct ProviderMdl {
    words: Box<[u64]>,
}

// SAFETY: the MDL only points into memory its owner (an indication) keeps
// alive; nothing in it is tied to a thread.
unsafe impl Send for ProviderMdl {}

impl ProviderMdl {
    /// An MDL describing `len` bytes at `data`.
    pub(crate) fn describe(data: *mut u8, len: usize) -> ProviderMdl {
        let address = data as usize;
        let pages = ((address & (PAGE_SIZE - 1)) + len).div_ceil(PAGE_SIZE);
        let size = MDL_HEADER + pages * 8;
        let mut words = vec![0u64; size / 8].into_boxed_slice();
        let header = MDL {
            Next: core::ptr::null_mut(),
            Size: size as u16 as CSHORT,
            MdlFlags: MDL_SOURCE_IS_NONPAGED_POOL,
            AllocationProcessorNumber: 0,
            Reserved: 0,
            Process: core::ptr::null_mut(),
            MappedSystemVa: data.cast(),
            StartVa: (address & !(PAGE_SIZE - 1)) as PVOID,
            ByteCount: len as ULONG,
            ByteOffset: (address & (PAGE_SIZE - 1)) as ULONG,
        };
        let base = words.as_mut_ptr();
        // SAFETY: `words` holds at least MDL_HEADER bytes, 8-byte aligned
        // (MDL's alignment).
        unsafe { base.cast::<MDL>().write(header) };
        for page in 0..pages {
            let slot = base.wrapping_add(MDL_HEADER / 8 + page);
            // SAFETY: the PFN array follows the header inside `words`.
            unsafe { slot.write((address / PAGE_SIZE + page) as u64) };
        }
        ProviderMdl { words }
    }

    /// The MDL.
    pub(crate) fn as_ptr(&self) -> PMDL {
        self.words.as_ptr().cast_mut().cast()
    }
}

// === Data indications (connection sockets) ===

/// A chain of `WSK_DATA_INDICATION`s over provider memory: what a
/// `WskReceiveEvent` is handed, retained by the client until `WskRelease`
/// if it returns STATUS_PENDING.
pub(crate) struct DataIndication {
    nodes: Box<[WSK_DATA_INDICATION]>,
    _mdls: Box<[ProviderMdl]>,
    data: Box<[u8]>,
}

// SAFETY: the nodes point into the indication's own heap blocks (MDLs and
// data), which move with it and are not tied to a thread.
unsafe impl Send for DataIndication {}

impl DataIndication {
    /// An indication of `bytes`, one chain element per `chunk` bytes.
    pub(crate) fn new(bytes: Vec<u8>, chunk: usize) -> DataIndication {
        let mut data = bytes.into_boxed_slice();
        let chunk = chunk.max(1);
        let base = data.as_mut_ptr();
        let mdls: Box<[ProviderMdl]> = (0..data.len().div_ceil(chunk))
            .map(|i| {
                let start = i * chunk;
                let len = chunk.min(data.len() - start);
                ProviderMdl::describe(base.wrapping_add(start), len)
            })
            .collect();
        let mut nodes: Box<[WSK_DATA_INDICATION]> = mdls
            .iter()
            .enumerate()
            .map(|(i, mdl)| WSK_DATA_INDICATION {
                Next: core::ptr::null_mut(),
                Buffer: WSK_BUF {
                    Mdl: mdl.as_ptr(),
                    Offset: 0,
                    Length: chunk.min(data.len() - i * chunk) as SIZE_T,
                },
            })
            .collect();
        let first = nodes.as_mut_ptr();
        for i in 1..nodes.len() {
            nodes[i - 1].Next = first.wrapping_add(i);
        }
        DataIndication {
            nodes,
            _mdls: mdls,
            data,
        }
    }

    /// The head of the chain (what the client sees and releases).
    pub(crate) fn head(&self) -> PWSK_DATA_INDICATION {
        self.nodes.as_ptr().cast_mut()
    }

    /// Bytes indicated.
    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    /// The bytes from `from` on (what a partial accept leaves).
    pub(crate) fn bytes_from(&self, from: usize) -> &[u8] {
        &self.data[from.min(self.data.len())..]
    }
}

// === Datagram indications ===

/// A datagram the provider holds.
pub(crate) struct Datagram {
    /// Its payload.
    pub(crate) data: Box<[u8]>,
    /// Its sender.
    pub(crate) from: SocketAddr,
    /// Its destination and interface, when the socket asked for them
    /// (`IP_PKTINFO` / `IPV6_PKTINFO`) and the host reports them.
    pub(crate) info: Option<super::host::PacketInfo>,
    /// It was sent to a multicast address (`MSG_MCAST`; known where the
    /// host reports destinations).
    pub(crate) multicast: bool,
}

/// Room for one control message of packet information (`IN6_PKTINFO`,
/// the larger), aligned for `WSACMSGHDR`.
const CONTROL_WORDS: usize = cmsg_space(core::mem::size_of::<IN6_PKTINFO>()).div_ceil(8);

/// A chain of `WSK_DATAGRAM_INDICATION`s over provider memory: what a
/// `WskReceiveFromEvent` is handed. A datagram with packet information
/// (the socket asked for `IP_PKTINFO` / `IPV6_PKTINFO`) carries it as one
/// control message in `ControlInfo` / `ControlInfoLength`, in provider
/// memory that lives as long as the chain: until the client releases it,
/// or the callback returns when it did not retain it.
pub(crate) struct DatagramIndication {
    nodes: Box<[WSK_DATAGRAM_INDICATION]>,
    _mdls: Box<[Option<ProviderMdl>]>,
    _addresses: Box<[SOCKADDR_STORAGE]>,
    _controls: Box<[[u64; CONTROL_WORDS]]>,
    datagrams: Vec<Datagram>,
}

// SAFETY: as DataIndication: the nodes point into the indication's own
// heap blocks.
unsafe impl Send for DatagramIndication {}

impl DatagramIndication {
    /// An indication of `datagrams` (at least one), in order.
    pub(crate) fn new(mut datagrams: Vec<Datagram>) -> DatagramIndication {
        let mdls: Box<[Option<ProviderMdl>]> = datagrams
            .iter_mut()
            .map(|d| {
                (!d.data.is_empty())
                    .then(|| ProviderMdl::describe(d.data.as_mut_ptr(), d.data.len()))
            })
            .collect();
        let mut addresses: Box<[SOCKADDR_STORAGE]> =
            datagrams.iter().map(|d| sockaddr_from(&d.from)).collect();
        let address_base = addresses.as_mut_ptr();
        let mut controls: Box<[[u64; CONTROL_WORDS]]> =
            datagrams.iter().map(|_| [0u64; CONTROL_WORDS]).collect();
        let lengths: Vec<usize> = datagrams
            .iter()
            .zip(controls.iter_mut())
            .map(|(d, control)| match &d.info {
                Some(info) => {
                    // SAFETY: `control` is CONTROL_WORDS live, initialised
                    // u64s; viewed as their bytes.
                    let room = unsafe {
                        core::slice::from_raw_parts_mut(
                            control.as_mut_ptr().cast::<u8>(),
                            CONTROL_WORDS * 8,
                        )
                    };
                    write_packet_info(room, info).unwrap_or(0)
                }
                None => 0,
            })
            .collect();
        let control_base = controls.as_mut_ptr();
        let mut nodes: Box<[WSK_DATAGRAM_INDICATION]> = datagrams
            .iter()
            .zip(mdls.iter())
            .enumerate()
            .map(|(i, (d, mdl))| WSK_DATAGRAM_INDICATION {
                Next: core::ptr::null_mut(),
                Buffer: WSK_BUF {
                    Mdl: mdl
                        .as_ref()
                        .map_or(core::ptr::null_mut(), ProviderMdl::as_ptr),
                    Offset: 0,
                    Length: d.data.len() as SIZE_T,
                },
                ControlInfo: if lengths[i] == 0 {
                    core::ptr::null_mut()
                } else {
                    control_base.wrapping_add(i).cast()
                },
                ControlInfoLength: lengths[i] as ULONG,
                RemoteAddress: address_base.wrapping_add(i).cast(),
            })
            .collect();
        let first = nodes.as_mut_ptr();
        for i in 1..nodes.len() {
            nodes[i - 1].Next = first.wrapping_add(i);
        }
        DatagramIndication {
            nodes,
            _mdls: mdls,
            _addresses: addresses,
            _controls: controls,
            datagrams,
        }
    }

    /// The head of the chain.
    pub(crate) fn head(&self) -> PWSK_DATAGRAM_INDICATION {
        self.nodes.as_ptr().cast_mut()
    }

    /// Payload bytes of the chain.
    pub(crate) fn bytes(&self) -> usize {
        self.datagrams.iter().map(|d| d.data.len()).sum()
    }

    /// Datagrams in the chain.
    pub(crate) fn count(&self) -> usize {
        self.datagrams.len()
    }

    /// Takes the datagrams back (the client did not accept them).
    pub(crate) fn into_datagrams(self) -> Vec<Datagram> {
        self.datagrams
    }
}

/// Writes `info` as one control message (`IN_PKTINFO` at level
/// `IPPROTO_IP`, or `IN6_PKTINFO` at `IPPROTO_IPV6`, after a `WSACMSGHDR`)
/// into `room`; returns its length, `None` when it does not fit (the
/// receive then reports `MSG_CTRUNC` and no control information).
pub(crate) fn write_packet_info(room: &mut [u8], info: &super::host::PacketInfo) -> Option<usize> {
    let (level, kind, data): (ULONG, ULONG, Vec<u8>) = match info.to {
        std::net::IpAddr::V4(to) => {
            let mut data = to.octets().to_vec();
            data.extend_from_slice(&info.interface.to_ne_bytes());
            (IPPROTO_IP, IP_PKTINFO, data)
        }
        std::net::IpAddr::V6(to) => {
            let mut data = to.octets().to_vec();
            data.extend_from_slice(&info.interface.to_ne_bytes());
            (IPPROTO_IPV6, IPV6_PKTINFO, data)
        }
    };
    let space = cmsg_space(data.len());
    if room.len() < space {
        return None;
    }
    let header_len = (CMSG_DATA_OFFSET + data.len()) as SIZE_T;
    room[..space].fill(0);
    let at = core::mem::size_of::<SIZE_T>();
    room[..at].copy_from_slice(&header_len.to_ne_bytes());
    room[at..at + 4].copy_from_slice(&(level as i32).to_ne_bytes());
    room[at + 4..at + 8].copy_from_slice(&(kind as i32).to_ne_bytes());
    room[CMSG_DATA_OFFSET..CMSG_DATA_OFFSET + data.len()].copy_from_slice(&data);
    Some(space)
}
