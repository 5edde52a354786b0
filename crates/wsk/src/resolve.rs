//! Name resolution through the provider: [`Provider::resolve`]
//! (`WskGetAddressInfo`, the chain freed with `WskFreeAddressInfo`) and
//! [`Provider::name_of`] (`WskGetNameInfo`).
//!
//! # IRQL
//!
//! PASSIVE_LEVEL only, as the three WSK functions are: both return
//! STATUS_INVALID_DEVICE_STATE without calling WSK above it. Resolution may
//! take long (a DNS server asked over the network): run it in a task, never
//! where a wait would hold up I/O.
//!
//! # The provider's chain
//!
//! `WskGetAddressInfo` returns an `ADDRINFOEXW` chain the provider
//! allocated and the client must free with `WskFreeAddressInfo`, once, at
//! PASSIVE_LEVEL. [`Provider::resolve`] copies what a driver needs
//! (addresses, socket types, the canonical name) into an owned
//! [`AddrInfoList`] and frees the chain before it returns, so a list never
//! points into provider memory and its drop frees nothing of WSK's.
//!
//! # Cancellation
//!
//! Dropping the future in flight requests `IoCancelIrp`; a provider may
//! still complete the request with a chain (the simulated one always does:
//! its resolutions are not cancellable). The chain is then freed later, at
//! PASSIVE_LEVEL: the completion routine, at DISPATCH_LEVEL, cannot call
//! `WskFreeAddressInfo`, so it hands the chain to the registration, which
//! frees it at the next resolution, when a [`Provider`] of it is dropped at
//! PASSIVE_LEVEL, or when the [`crate::Registration`] is dropped (which
//! first waits for every resolution in flight, then frees, then
//! deregisters). No allocation happens at DISPATCH_LEVEL for this: the
//! hand-over node is allocated with the request.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;

use irp_future::Submission;
use nt::wsk::*;
use nt::*;

use crate::addr::SockAddrBuf;
use crate::error::{Error, Result};
use crate::ops;
use crate::pool::PoolBox;
use crate::registration::{Provider, RegRef};

// === Hints and results ===

/// What [`Provider::resolve`] asks for: `ADDRINFOEXW` hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    /// `AI_*` flags (`AI_NUMERICHOST`, `AI_NUMERICSERV`, `AI_CANONNAME`,
    /// `AI_PASSIVE`, ...).
    pub flags: i32,
    /// `AF_UNSPEC`, `AF_INET` or `AF_INET6`.
    pub family: ADDRESS_FAMILY,
    /// 0 (any), `SOCK_STREAM` or `SOCK_DGRAM`.
    pub socktype: USHORT,
    /// 0 (any), `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub protocol: ULONG,
}

impl Default for Hints {
    fn default() -> Self {
        Self::ANY
    }
}

impl Hints {
    /// No restriction: every family and socket type.
    pub const ANY: Hints = Hints {
        flags: 0,
        family: AF_UNSPEC,
        socktype: 0,
        protocol: 0,
    };

    /// TCP addresses (for connections and listeners).
    pub const fn stream() -> Hints {
        Hints {
            socktype: SOCK_STREAM,
            protocol: IPPROTO_TCP,
            ..Self::ANY
        }
    }

    /// UDP addresses (for datagram sockets).
    pub const fn datagram() -> Hints {
        Hints {
            socktype: SOCK_DGRAM,
            protocol: IPPROTO_UDP,
            ..Self::ANY
        }
    }

    /// Only `family` (`AF_INET` or `AF_INET6`).
    pub const fn family(self, family: ADDRESS_FAMILY) -> Hints {
        Hints { family, ..self }
    }

    /// With `flags` added.
    pub const fn flags(self, flags: i32) -> Hints {
        Hints {
            flags: self.flags | flags,
            ..self
        }
    }

    fn to_wsk(self) -> ADDRINFOEXW {
        ADDRINFOEXW::hints(self.flags, self.family, self.socktype, self.protocol)
    }
}

/// One answer of [`Provider::resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrInfo {
    /// The address (with the service's port).
    pub address: SocketAddr,
    /// `SOCK_STREAM` or `SOCK_DGRAM` (0 if the provider did not say).
    pub socktype: USHORT,
    /// `IPPROTO_TCP` or `IPPROTO_UDP` (0 if the provider did not say).
    pub protocol: ULONG,
}

/// What [`Provider::resolve`] found, copied out of the provider's chain
/// (which is already freed): the answers in the provider's order and the
/// canonical name when `AI_CANONNAME` asked for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrInfoList {
    entries: Vec<AddrInfo>,
    canonical: Option<String>,
}

impl AddrInfoList {
    /// The answers.
    pub fn iter(&self) -> core::slice::Iter<'_, AddrInfo> {
        self.entries.iter()
    }

    /// The answers' addresses (one per answer: with socket type 0 a host
    /// may answer each address once per socket type).
    pub fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.entries.iter().map(|entry| entry.address)
    }

    /// The canonical name (`AI_CANONNAME`), if the provider gave one.
    pub fn canonical_name(&self) -> Option<&str> {
        self.canonical.as_deref()
    }

    /// The number of answers (never 0 for a successful resolution).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no answer.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<'a> IntoIterator for &'a AddrInfoList {
    type Item = &'a AddrInfo;
    type IntoIter = core::slice::Iter<'a, AddrInfo>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl IntoIterator for AddrInfoList {
    type Item = AddrInfo;
    type IntoIter = alloc::vec::IntoIter<AddrInfo>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

// === Chains handed over for a later free ===

/// A chain to free at PASSIVE_LEVEL (see the module docs), linked in its
/// registration's list.
pub(crate) struct Orphan {
    client: PWSK_CLIENT,
    free: PFN_WSK_FREE_ADDRESS_INFO,
    chain: PADDRINFOEXW,
    pub(crate) next: *mut Orphan,
}

impl Orphan {
    /// `WskFreeAddressInfo` of the chain. IRQL = PASSIVE_LEVEL.
    pub(crate) fn free(self) {
        if let (Some(free), false) = (self.free, self.chain.is_null()) {
            // SAFETY: a chain WskGetAddressInfo returned to `client`, freed
            // once (the orphan is consumed); the registration is still
            // registered (it frees its orphans before WskDeregister);
            // PASSIVE_LEVEL (caller's contract).
            unsafe { free(self.client, self.chain) };
        }
    }
}

fn passive() -> bool {
    // SAFETY: callable at any IRQL.
    unsafe { KeGetCurrentIrql() == PASSIVE_LEVEL }
}

/// A counted UTF-16 copy of a name, with the `UNICODE_STRING` over it.
struct Name {
    units: Vec<u16>,
    string: UNICODE_STRING,
}

impl Name {
    fn new(text: Option<&str>) -> Result<Option<Name>> {
        let Some(text) = text else { return Ok(None) };
        let mut units = Vec::new();
        let count = text.encode_utf16().count();
        // The longest UNICODE_STRING holds 32 767 units.
        if count == 0 || count > usize::from(USHORT::MAX / 2) || text.contains('\0') {
            return Err(Error::from_status(STATUS_INVALID_PARAMETER));
        }
        units
            .try_reserve_exact(count)
            .map_err(|_| Error::from_status(STATUS_INSUFFICIENT_RESOURCES))?;
        units.extend(text.encode_utf16());
        let bytes = (count * 2) as USHORT;
        Ok(Some(Name {
            string: UNICODE_STRING {
                Length: bytes,
                MaximumLength: bytes,
                Buffer: units.as_mut_ptr(),
            },
            units,
        }))
    }

    /// An output buffer of `capacity` units.
    fn output(capacity: usize) -> Result<Name> {
        let mut units = Vec::new();
        units
            .try_reserve_exact(capacity)
            .map_err(|_| Error::from_status(STATUS_INSUFFICIENT_RESOURCES))?;
        units.resize(capacity, 0);
        Ok(Name {
            string: UNICODE_STRING {
                Length: 0,
                MaximumLength: (capacity * 2) as USHORT,
                Buffer: units.as_mut_ptr(),
            },
            units,
        })
    }

    /// What the provider wrote (`Length` bytes).
    fn text(&self) -> Result<String> {
        let units = (usize::from(self.string.Length) / 2).min(self.units.len());
        let mut text = String::new();
        text.try_reserve(units * 3)
            .map_err(|_| Error::from_status(STATUS_INSUFFICIENT_RESOURCES))?;
        text.extend(
            char::decode_utf16(self.units[..units].iter().copied())
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)),
        );
        Ok(text)
    }

    fn ptr(&mut self) -> PUNICODE_STRING {
        &mut self.string
    }
}

// === WskGetAddressInfo ===

/// Everything one `WskGetAddressInfo` lends the provider until its IRP
/// completes, and what frees the chain if the future is gone by then.
struct ResolveRes {
    reg: RegRef,
    client: PWSK_CLIENT,
    get: PFN_WSK_GET_ADDRESS_INFO,
    node: Option<Name>,
    service: Option<Name>,
    hints: ADDRINFOEXW,
    /// `*Result`: the chain, once the provider wrote it.
    result: PADDRINFOEXW,
    /// The node that takes the chain to the registration when these
    /// resources are dropped with a chain in them away from PASSIVE_LEVEL.
    orphan: Option<PoolBox<Orphan>>,
}

// SAFETY: the raw pointers are the provider's client handle and a chain
// the provider handed to this request alone; the names are owned.
unsafe impl Send for ResolveRes {}

impl Drop for ResolveRes {
    /// A chain still here (the future was dropped in flight, or it failed
    /// before taking it) is freed now at PASSIVE_LEVEL, else handed to the
    /// registration. IRQL <= DISPATCH_LEVEL (the completion routine drops
    /// an abandoned request's resources).
    fn drop(&mut self) {
        let chain = core::mem::replace(&mut self.result, core::ptr::null_mut());
        if let Some(mut orphan) = self.orphan.take() {
            orphan.chain = chain;
            if chain.is_null() {
                // Nothing to free.
            } else if passive() {
                let orphan = PoolBox::into_inner(orphan);
                orphan.free();
            } else {
                self.reg.hand_over(orphan);
            }
        }
        self.reg.resolve_done();
    }
}

fn submit_resolve(irp: PIRP, r: &mut ResolveRes) -> Submission {
    let Some(get) = r.get else {
        return Submission::NotSubmitted(STATUS_NOT_SUPPORTED);
    };
    let node = r.node.as_mut().map_or(core::ptr::null_mut(), Name::ptr);
    let service = r.service.as_mut().map_or(core::ptr::null_mut(), Name::ptr);
    let hints: PADDRINFOEXW = &mut r.hints;
    let result: *mut PADDRINFOEXW = &mut r.result;
    // SAFETY: WskGetAddressInfo with our IRP; the names, hints and the
    // result out-parameter live in the resources until completion.
    Submission::Submitted(unsafe {
        get(
            r.client,
            node,
            service,
            NS_ALL,
            core::ptr::null_mut(),
            hints,
            result,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            irp,
        )
    })
}

/// Copies the chain's answers out.
///
/// # Safety
/// `chain` is a live chain the provider returned, not freed.
unsafe fn copy_chain(chain: PADDRINFOEXW) -> Result<AddrInfoList> {
    let oom = || Error::from_status(STATUS_INSUFFICIENT_RESOURCES);
    let mut list = AddrInfoList::default();
    let mut at = chain;
    while !at.is_null() {
        // SAFETY: an entry of the live chain (caller's contract).
        let entry = unsafe { core::ptr::read_unaligned(at) };
        if list.canonical.is_none() && !entry.ai_canonname.is_null() {
            let mut units = Vec::new();
            let mut c = entry.ai_canonname;
            // SAFETY: a NUL-terminated string of the chain.
            while unsafe { c.read_unaligned() } != 0 {
                units.try_reserve(1).map_err(|_| oom())?;
                // SAFETY: as above.
                units.push(unsafe { c.read_unaligned() });
                c = c.wrapping_add(1);
            }
            let mut name = String::new();
            name.try_reserve(units.len() * 3).map_err(|_| oom())?;
            name.extend(
                char::decode_utf16(units.iter().copied())
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)),
            );
            list.canonical = Some(name);
        }
        let family = ADDRESS_FAMILY::try_from(entry.ai_family).unwrap_or(AF_UNSPEC);
        let needed = sockaddr_len(family);
        let fits = needed != 0 && entry.ai_addrlen as usize >= needed && !entry.ai_addr.is_null();
        // SAFETY: at least `needed` (> 2) readable bytes at ai_addr.
        let same =
            fits && unsafe { entry.ai_addr.cast::<ADDRESS_FAMILY>().read_unaligned() } == family;
        let address = if same {
            // SAFETY: the entry's address: `ai_addrlen` bytes, enough for
            // the structure of its family (checked above).
            unsafe { read_sockaddr(entry.ai_addr) }
        } else {
            None
        };
        if let Some(address) = address {
            list.entries.try_reserve(1).map_err(|_| oom())?;
            list.entries.push(AddrInfo {
                address,
                socktype: USHORT::try_from(entry.ai_socktype).unwrap_or(0),
                protocol: ULONG::try_from(entry.ai_protocol).unwrap_or(0),
            });
        }
        at = entry.ai_next;
    }
    Ok(list)
}

impl Provider {
    /// Resolves `host` and / or `service` (`WskGetAddressInfo`): a host
    /// name or numeric address, a service name or port number, at least
    /// one of the two. Returns the answers, the provider's chain already
    /// freed (`WskFreeAddressInfo`). IRQL = PASSIVE_LEVEL.
    ///
    /// Errors: STATUS_NO_MATCH (the name cannot be resolved),
    /// STATUS_INVALID_PARAMETER (no name, an empty one or one with a NUL,
    /// hints the provider refuses), STATUS_NOT_SUPPORTED (flags it does not
    /// support), STATUS_DEVICE_NOT_READY (revoked),
    /// STATUS_INVALID_DEVICE_STATE above PASSIVE_LEVEL, what the provider
    /// returns. Dropping the future in flight: see the module docs (the
    /// chain is still freed exactly once).
    pub async fn resolve(
        &self,
        host: Option<&str>,
        service: Option<&str>,
        hints: Hints,
    ) -> Result<AddrInfoList> {
        if !passive() {
            return Err(Error::from_status(STATUS_INVALID_DEVICE_STATE));
        }
        let node = Name::new(host)?;
        let service = Name::new(service)?;
        if node.is_none() && service.is_none() {
            return Err(Error::from_status(STATUS_INVALID_PARAMETER));
        }
        let resources = {
            let _call = self.enter()?;
            let reg = self.registration_ref();
            reg.free_orphans();
            let free = self.dispatch().WskFreeAddressInfo;
            let orphan = PoolBox::try_new(Orphan {
                client: self.client(),
                free,
                chain: core::ptr::null_mut(),
                next: core::ptr::null_mut(),
            })?;
            reg.resolve_begin();
            ResolveRes {
                reg,
                client: self.client(),
                get: self.dispatch().WskGetAddressInfo,
                node,
                service,
                hints: hints.to_wsk(),
                result: core::ptr::null_mut(),
                orphan: Some(orphan),
            }
        };
        let mut done = ops::call(resources, submit_resolve).await;
        let chain = core::mem::replace(&mut done.resources.result, core::ptr::null_mut());
        let copied = if chain.is_null() {
            None
        } else {
            // SAFETY: the chain the provider returned, not freed yet.
            let copied = unsafe { copy_chain(chain) };
            // Freed here, at PASSIVE_LEVEL (the caller's contract; the
            // future is polled where it was called).
            if let Some(mut orphan) = done.resources.orphan.take() {
                orphan.chain = chain;
                if passive() {
                    PoolBox::into_inner(orphan).free();
                } else {
                    done.resources.reg.hand_over(orphan);
                }
            }
            Some(copied)
        };
        if !NT_SUCCESS(done.status) {
            return Err(Error::from_status(done.status));
        }
        match copied {
            Some(Ok(list)) if !list.is_empty() => Ok(list),
            Some(Err(error)) => Err(error),
            _ => Err(Error::from_status(STATUS_NO_MATCH)),
        }
    }

    /// The host and service names of `address` (`WskGetNameInfo`), with
    /// `flags` (`NI_NUMERICHOST`, `NI_NUMERICSERV`, `NI_NAMEREQD`,
    /// `NI_NOFQDN`, `NI_DGRAM`). The buffers start small and are grown
    /// (up to `NI_MAXHOST` / `NI_MAXSERV` units) while the provider
    /// answers STATUS_BUFFER_TOO_SMALL or STATUS_BUFFER_OVERFLOW. IRQL =
    /// PASSIVE_LEVEL.
    ///
    /// Errors: STATUS_NO_MATCH (`NI_NAMEREQD` and no name), what the
    /// provider returns, STATUS_INVALID_DEVICE_STATE above PASSIVE_LEVEL.
    pub async fn name_of(&self, address: SocketAddr, flags: ULONG) -> Result<(String, String)> {
        let mut capacity = (16, 8);
        loop {
            if !passive() {
                return Err(Error::from_status(STATUS_INVALID_DEVICE_STATE));
            }
            let resources = {
                let _call = self.enter()?;
                NameRes {
                    client: self.client(),
                    get: self.dispatch().WskGetNameInfo,
                    address: SockAddrBuf::new(&address),
                    node: Name::output(capacity.0)?,
                    service: Name::output(capacity.1)?,
                    flags,
                }
            };
            let done = ops::call(resources, submit_name).await;
            match done.status {
                STATUS_BUFFER_TOO_SMALL | STATUS_BUFFER_OVERFLOW
                    if capacity.0 < NI_MAXHOST || capacity.1 < NI_MAXSERV =>
                {
                    capacity = (
                        (capacity.0 * 4).min(NI_MAXHOST),
                        (capacity.1 * 2).min(NI_MAXSERV),
                    );
                }
                status if NT_SUCCESS(status) && status != STATUS_BUFFER_OVERFLOW => {
                    let r = &done.resources;
                    return Ok((r.node.text()?, r.service.text()?));
                }
                status => return Err(Error::from_status(status)),
            }
        }
    }
}

// === WskGetNameInfo ===

struct NameRes {
    client: PWSK_CLIENT,
    get: PFN_WSK_GET_NAME_INFO,
    address: SockAddrBuf,
    node: Name,
    service: Name,
    flags: ULONG,
}

// SAFETY: the client handle is the provider's; the rest is owned.
unsafe impl Send for NameRes {}

fn submit_name(irp: PIRP, r: &mut NameRes) -> Submission {
    let Some(get) = r.get else {
        return Submission::NotSubmitted(STATUS_NOT_SUPPORTED);
    };
    let length = r.address.get().map_or(0, |a| match a {
        SocketAddr::V4(_) => sockaddr_len(AF_INET),
        SocketAddr::V6(_) => sockaddr_len(AF_INET6),
    }) as ULONG;
    let address = r.address.as_mut_ptr();
    let (node, service) = (r.node.ptr(), r.service.ptr());
    // SAFETY: WskGetNameInfo with our IRP; the address and both output
    // strings (with their buffers) live in the resources until completion.
    Submission::Submitted(unsafe {
        get(
            r.client,
            address,
            length,
            node,
            service,
            r.flags,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            irp,
        )
    })
}
