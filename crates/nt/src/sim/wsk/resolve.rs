//! Name resolution: what `WskGetAddressInfo`, `WskFreeAddressInfo` and
//! `WskGetNameInfo` (dispatch.rs) do once their parameters are read: the
//! host resolver (`getaddrinfo` / `getnameinfo` on Unix hosts; numeric
//! forms and `ToSocketAddrs` elsewhere), the `ADDRINFOEXW` chains the
//! provider hands out, and the bookkeeping that makes a chain never freed a
//! leak and a double or foreign free a finding.
//!
//! Everything here may block (the host resolver reads files and may ask a
//! DNS server): it runs at PASSIVE_LEVEL only, on the caller's thread (the
//! inline completion policy) or on a resolver thread of its own (pending),
//! never on a provider thread.
//!
//! Chains live in provider memory (host memory, never the client's pool).
//! A freed chain is poisoned (every pointer NULL, every field zero) and
//! kept for the rest of the session, like a closed socket's header: its
//! address is never handed out again, so a second free of it is always
//! recognised, and a client reading it after the free finds NULLs instead
//! of freed host memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use super::super::session::lock;
use super::super::verifier::{Leak, LeakKind};
use crate::PUNICODE_STRING;
use crate::status::*;
use crate::types::*;
use crate::wsk::*;

/// The pool tag chains are reported with ("WskA").
pub(crate) const CHAIN_TAG: u32 = u32::from_le_bytes(*b"WskA");

/// Flags of `ADDRINFOEXW::ai_flags` the sim passes to the host resolver;
/// any other flag is STATUS_NOT_SUPPORTED (refused rather than ignored).
const SUPPORTED_AI_FLAGS: i32 = AI_PASSIVE
    | AI_CANONNAME
    | AI_NUMERICHOST
    | AI_NUMERICSERV
    | AI_ALL
    | AI_ADDRCONFIG
    | AI_V4MAPPED;

/// The `WskGetNameInfo` flags the documentation lists.
const KNOWN_NI_FLAGS: ULONG = NI_NOFQDN | NI_NUMERICHOST | NI_NAMEREQD | NI_NUMERICSERV | NI_DGRAM;

// === Parameters ===

/// A `WskGetAddressInfo` request, read from the caller's parameters.
#[derive(Debug, Clone)]
pub(crate) struct AddressQuery {
    pub(crate) node: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) flags: i32,
    /// `AF_UNSPEC`, `AF_INET` or `AF_INET6` (Windows values).
    pub(crate) family: ADDRESS_FAMILY,
    /// 0, `SOCK_STREAM` or `SOCK_DGRAM`.
    pub(crate) socktype: i32,
    /// 0, `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub(crate) protocol: i32,
}

/// Reads an input `UNICODE_STRING`: `None` for a NULL pointer or an empty
/// string. STATUS_INVALID_PARAMETER for an odd `Length`, a `Length` above
/// `MaximumLength`, a NULL `Buffer` with a `Length`, invalid UTF-16 or an
/// embedded NUL.
///
/// # Safety
/// `string` is NULL or points to a readable `UNICODE_STRING` whose
/// `Buffer` holds `Length` readable bytes.
pub(crate) unsafe fn read_unicode(string: PUNICODE_STRING) -> Result<Option<String>, NTSTATUS> {
    if string.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's readable UNICODE_STRING.
    let header = unsafe { core::ptr::read_unaligned(string) };
    let length = usize::from(header.Length);
    if length % 2 != 0 || header.Length > header.MaximumLength {
        return Err(STATUS_INVALID_PARAMETER);
    }
    if length == 0 {
        return Ok(None);
    }
    if header.Buffer.is_null() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: `Length` readable bytes at `Buffer` (caller's contract).
    let bytes = unsafe { core::slice::from_raw_parts(header.Buffer.cast::<u8>(), length) };
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_ne_bytes([pair[0], pair[1]]))
        .collect();
    if units.contains(&0) {
        return Err(STATUS_INVALID_PARAMETER);
    }
    String::from_utf16(&units)
        .map(Some)
        .map_err(|_| STATUS_INVALID_PARAMETER)
}

/// Reads `WskGetAddressInfo`'s hints into `query` (all zero without
/// hints). As for `getaddrinfo`, every member but `ai_flags`,
/// `ai_family`, `ai_socktype` and `ai_protocol` must be zero or NULL.
///
/// # Safety
/// `hints` is NULL or points to a readable `ADDRINFOEXW`.
pub(crate) unsafe fn read_hints(
    hints: PADDRINFOEXW,
    node: Option<String>,
    service: Option<String>,
) -> Result<AddressQuery, NTSTATUS> {
    let mut query = AddressQuery {
        node,
        service,
        flags: 0,
        family: AF_UNSPEC,
        socktype: 0,
        protocol: 0,
    };
    if query.node.is_none() && query.service.is_none() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    if hints.is_null() {
        return Ok(query);
    }
    // SAFETY: the caller's readable hints.
    let h = unsafe { core::ptr::read_unaligned(hints) };
    if h.ai_addrlen != 0
        || !h.ai_canonname.is_null()
        || !h.ai_addr.is_null()
        || !h.ai_blob.is_null()
        || h.ai_bloblen != 0
        || !h.ai_provider.is_null()
        || !h.ai_next.is_null()
    {
        return Err(STATUS_INVALID_PARAMETER);
    }
    query.family = match ADDRESS_FAMILY::try_from(h.ai_family) {
        Ok(family @ (AF_UNSPEC | AF_INET | AF_INET6)) => family,
        _ => return Err(STATUS_INVALID_PARAMETER),
    };
    query.socktype = match h.ai_socktype {
        0 => 0,
        t if t == i32::from(SOCK_STREAM) || t == i32::from(SOCK_DGRAM) => t,
        _ => return Err(STATUS_INVALID_PARAMETER),
    };
    let stream = i32::from(SOCK_STREAM);
    let dgram = i32::from(SOCK_DGRAM);
    query.protocol = match (h.ai_protocol, query.socktype) {
        (0, _) => 0,
        (p, t) if p == IPPROTO_TCP as i32 && (t == 0 || t == stream) => p,
        (p, t) if p == IPPROTO_UDP as i32 && (t == 0 || t == dgram) => p,
        _ => return Err(STATUS_INVALID_PARAMETER),
    };
    if h.ai_flags & !SUPPORTED_AI_FLAGS != 0 {
        return Err(STATUS_NOT_SUPPORTED);
    }
    if h.ai_flags & AI_CANONNAME != 0 && query.node.is_none() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    query.flags = h.ai_flags;
    Ok(query)
}

/// A `WskGetNameInfo` output string's capacity in UTF-16 units (with the
/// terminating NUL); `None` for a NULL pointer. STATUS_INVALID_PARAMETER
/// for a NULL `Buffer` with a capacity.
///
/// # Safety
/// `string` is NULL or points to a readable `UNICODE_STRING`.
pub(crate) unsafe fn output_capacity(string: PUNICODE_STRING) -> Result<Option<usize>, NTSTATUS> {
    if string.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's readable UNICODE_STRING.
    let header = unsafe { core::ptr::read_unaligned(string) };
    if header.Buffer.is_null() && header.MaximumLength != 0 {
        return Err(STATUS_INVALID_PARAMETER);
    }
    Ok(Some(usize::from(header.MaximumLength) / 2))
}

/// Whether `text` fits a buffer of `capacity` UTF-16 units with its NUL.
pub(crate) fn fits(text: &str, capacity: Option<usize>) -> bool {
    capacity.is_none_or(|capacity| text.encode_utf16().count() < capacity)
}

/// Writes `text` and a NUL into the caller's `UNICODE_STRING` buffer and
/// sets `Length` (bytes, without the NUL). The caller checked [`fits`].
///
/// # Safety
/// `string` is NULL or points to a writable `UNICODE_STRING` whose
/// `Buffer` has `MaximumLength` writable bytes.
pub(crate) unsafe fn write_unicode(string: PUNICODE_STRING, text: &str) {
    if string.is_null() {
        return;
    }
    // SAFETY: the caller's UNICODE_STRING.
    let mut header = unsafe { core::ptr::read_unaligned(string) };
    let units: Vec<u16> = text.encode_utf16().chain(core::iter::once(0)).collect();
    if units.len() * 2 > usize::from(header.MaximumLength) || header.Buffer.is_null() {
        return;
    }
    // SAFETY: `units.len() * 2` <= MaximumLength bytes at Buffer (checked
    // above, caller's contract for the rest).
    unsafe {
        core::ptr::copy_nonoverlapping(
            units.as_ptr().cast::<u8>(),
            header.Buffer.cast::<u8>(),
            units.len() * 2,
        )
    };
    header.Length = ((units.len() - 1) * 2) as USHORT;
    // SAFETY: as above.
    unsafe { core::ptr::write_unaligned(string, header) };
}

/// Validates `WskGetNameInfo`'s flags.
pub(crate) fn check_name_flags(flags: ULONG) -> Result<(), NTSTATUS> {
    if flags & !KNOWN_NI_FLAGS != 0 {
        return Err(STATUS_INVALID_PARAMETER);
    }
    Ok(())
}

// === The host resolver ===

/// One address the host resolver found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    pub(crate) socktype: i32,
    pub(crate) protocol: i32,
    pub(crate) address: SocketAddr,
}

/// What the host resolver answered.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    pub(crate) found: Vec<Found>,
    pub(crate) canonical: Option<String>,
}

/// The protocol a socket type implies (WSK reports it, `getaddrinfo` may
/// leave it 0).
fn protocol_of(socktype: i32, protocol: i32) -> i32 {
    match (socktype, protocol) {
        (_, p) if p != 0 => p,
        (t, _) if t == i32::from(SOCK_STREAM) => IPPROTO_TCP as i32,
        (t, _) if t == i32::from(SOCK_DGRAM) => IPPROTO_UDP as i32,
        _ => 0,
    }
}

/// Resolves `query` with the host's resolver. Errors: STATUS_NO_MATCH
/// (the name or service cannot be resolved), STATUS_INVALID_PARAMETER
/// (a malformed name), STATUS_INSUFFICIENT_RESOURCES, STATUS_IO_TIMEOUT
/// (a temporary failure), STATUS_UNSUCCESSFUL (anything else). Blocks.
pub(crate) fn resolve_addresses(query: &AddressQuery) -> Result<Resolved, NTSTATUS> {
    let mut resolved = host::addresses(query)?;
    resolved.found.retain(|f| {
        (f.socktype == i32::from(SOCK_STREAM) || f.socktype == i32::from(SOCK_DGRAM))
            && match query.family {
                AF_INET => f.address.is_ipv4(),
                AF_INET6 => f.address.is_ipv6(),
                _ => true,
            }
    });
    for found in &mut resolved.found {
        found.protocol = protocol_of(found.socktype, found.protocol);
    }
    if resolved.found.is_empty() {
        return Err(STATUS_NO_MATCH);
    }
    Ok(resolved)
}

/// The host and service names of `address` (`WskGetNameInfo`). Blocks.
pub(crate) fn resolve_name(
    address: SocketAddr,
    flags: ULONG,
) -> Result<(String, String), NTSTATUS> {
    host::name_of(address, flags)
}

#[cfg(unix)]
mod host {
    //! `getaddrinfo` / `getnameinfo` through libc.

    use std::ffi::{CStr, CString};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    use super::*;

    fn status_of(error: libc::c_int) -> NTSTATUS {
        match error {
            libc::EAI_NONAME | libc::EAI_SERVICE => STATUS_NO_MATCH,
            #[cfg(target_os = "linux")]
            libc::EAI_NODATA => STATUS_NO_MATCH,
            libc::EAI_FAMILY | libc::EAI_SOCKTYPE | libc::EAI_BADFLAGS => STATUS_INVALID_PARAMETER,
            libc::EAI_MEMORY => STATUS_INSUFFICIENT_RESOURCES,
            libc::EAI_AGAIN => STATUS_IO_TIMEOUT,
            _ => STATUS_UNSUCCESSFUL,
        }
    }

    /// The host's flags for the Windows `flags` (`pairs`: Windows value,
    /// host value).
    fn host_flags(flags: libc::c_int, pairs: &[(libc::c_int, libc::c_int)]) -> libc::c_int {
        pairs
            .iter()
            .filter(|(windows, _)| flags & windows != 0)
            .fold(0, |all, (_, host)| all | host)
    }

    fn c_string(text: Option<&str>) -> Result<Option<CString>, NTSTATUS> {
        text.map(CString::new)
            .transpose()
            .map_err(|_| STATUS_INVALID_PARAMETER)
    }

    /// The host's reading of a `libc::sockaddr`.
    ///
    /// # Safety
    /// `address` points to a socket address of `length` bytes.
    unsafe fn socket_address(
        address: *const libc::sockaddr,
        length: libc::socklen_t,
    ) -> Option<SocketAddr> {
        if address.is_null() {
            return None;
        }
        // SAFETY: at least the family is there (caller's contract).
        let family = libc::c_int::from(unsafe { (*address).sa_family });
        let length = length as usize;
        match family {
            libc::AF_INET if length >= core::mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: a sockaddr_in of that length.
                let v4 = unsafe { core::ptr::read_unaligned(address.cast::<libc::sockaddr_in>()) };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                    u16::from_be(v4.sin_port),
                )))
            }
            libc::AF_INET6 if length >= core::mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: a sockaddr_in6 of that length.
                let v6 = unsafe { core::ptr::read_unaligned(address.cast::<libc::sockaddr_in6>()) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(v6.sin6_addr.s6_addr),
                    u16::from_be(v6.sin6_port),
                    u32::from_be(v6.sin6_flowinfo),
                    v6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    pub(super) fn addresses(query: &AddressQuery) -> Result<Resolved, NTSTATUS> {
        let node = c_string(query.node.as_deref())?;
        let service = c_string(query.service.as_deref())?;
        // SAFETY: an all-zero addrinfo is a valid (empty) hints value.
        let mut hints: libc::addrinfo = unsafe { core::mem::zeroed() };
        hints.ai_family = match query.family {
            AF_INET => libc::AF_INET,
            AF_INET6 => libc::AF_INET6,
            _ => libc::AF_UNSPEC,
        };
        hints.ai_socktype = match query.socktype {
            t if t == i32::from(SOCK_STREAM) => libc::SOCK_STREAM,
            t if t == i32::from(SOCK_DGRAM) => libc::SOCK_DGRAM,
            _ => 0,
        };
        hints.ai_protocol = match query.protocol {
            p if p == IPPROTO_TCP as i32 => libc::IPPROTO_TCP,
            p if p == IPPROTO_UDP as i32 => libc::IPPROTO_UDP,
            _ => 0,
        };
        let pairs = [
            (AI_PASSIVE, libc::AI_PASSIVE),
            (AI_CANONNAME, libc::AI_CANONNAME),
            (AI_NUMERICHOST, libc::AI_NUMERICHOST),
            (AI_NUMERICSERV, libc::AI_NUMERICSERV),
            (AI_ALL, libc::AI_ALL),
            (AI_ADDRCONFIG, libc::AI_ADDRCONFIG),
            (AI_V4MAPPED, libc::AI_V4MAPPED),
        ];
        hints.ai_flags = host_flags(query.flags, &pairs);
        let mut list: *mut libc::addrinfo = core::ptr::null_mut();
        // SAFETY: NUL-terminated strings or NULL, initialised hints, and an
        // out-pointer; the list is freed below.
        let error = unsafe {
            libc::getaddrinfo(
                node.as_ref().map_or(core::ptr::null(), |n| n.as_ptr()),
                service.as_ref().map_or(core::ptr::null(), |s| s.as_ptr()),
                &hints,
                &mut list,
            )
        };
        if error != 0 {
            return Err(status_of(error));
        }
        let mut resolved = Resolved::default();
        let mut at = list;
        while !at.is_null() {
            // SAFETY: an entry of the list getaddrinfo returned, not freed
            // yet.
            let entry = unsafe { &*at };
            if resolved.canonical.is_none() && !entry.ai_canonname.is_null() {
                // SAFETY: a NUL-terminated string of the list.
                let name = unsafe { CStr::from_ptr(entry.ai_canonname) };
                resolved.canonical = Some(name.to_string_lossy().into_owned());
            }
            // SAFETY: the entry's address of ai_addrlen bytes.
            if let Some(address) = unsafe { socket_address(entry.ai_addr, entry.ai_addrlen) } {
                let socktype = match entry.ai_socktype {
                    libc::SOCK_STREAM => i32::from(SOCK_STREAM),
                    libc::SOCK_DGRAM => i32::from(SOCK_DGRAM),
                    _ => -1,
                };
                let protocol = match entry.ai_protocol {
                    libc::IPPROTO_TCP => IPPROTO_TCP as i32,
                    libc::IPPROTO_UDP => IPPROTO_UDP as i32,
                    _ => 0,
                };
                resolved.found.push(Found {
                    socktype,
                    protocol,
                    address,
                });
            }
            at = entry.ai_next;
        }
        // SAFETY: the list getaddrinfo returned, freed once.
        unsafe { libc::freeaddrinfo(list) };
        Ok(resolved)
    }

    pub(super) fn name_of(address: SocketAddr, flags: ULONG) -> Result<(String, String), NTSTATUS> {
        // SAFETY: an all-zero sockaddr_storage is valid.
        let mut storage: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
        let length = match address {
            SocketAddr::V4(v4) => {
                // SAFETY: an all-zero sockaddr_in is valid.
                let mut sin: libc::sockaddr_in = unsafe { core::mem::zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
                // SAFETY: sockaddr_storage holds any sockaddr_in.
                unsafe { core::ptr::write((&raw mut storage).cast::<libc::sockaddr_in>(), sin) };
                core::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                // SAFETY: an all-zero sockaddr_in6 is valid.
                let mut sin6: libc::sockaddr_in6 = unsafe { core::mem::zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_flowinfo = v6.flowinfo().to_be();
                sin6.sin6_addr.s6_addr = v6.ip().octets();
                sin6.sin6_scope_id = v6.scope_id();
                // SAFETY: sockaddr_storage holds any sockaddr_in6.
                unsafe { core::ptr::write((&raw mut storage).cast::<libc::sockaddr_in6>(), sin6) };
                core::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        let pairs = [
            (NI_NOFQDN as libc::c_int, libc::NI_NOFQDN),
            (NI_NUMERICHOST as libc::c_int, libc::NI_NUMERICHOST),
            (NI_NAMEREQD as libc::c_int, libc::NI_NAMEREQD),
            (NI_NUMERICSERV as libc::c_int, libc::NI_NUMERICSERV),
            (NI_DGRAM as libc::c_int, libc::NI_DGRAM),
        ];
        let host_flags = host_flags(flags as libc::c_int, &pairs);
        let mut node = [0 as libc::c_char; NI_MAXHOST];
        let mut service = [0 as libc::c_char; NI_MAXSERV];
        // SAFETY: a socket address of `length` bytes and two writable
        // buffers of the lengths given.
        let error = unsafe {
            libc::getnameinfo(
                (&raw const storage).cast::<libc::sockaddr>(),
                length as libc::socklen_t,
                node.as_mut_ptr(),
                node.len() as libc::socklen_t,
                service.as_mut_ptr(),
                service.len() as libc::socklen_t,
                host_flags,
            )
        };
        if error != 0 {
            return Err(status_of(error));
        }
        // SAFETY: getnameinfo NUL-terminated both within their buffers.
        let node = unsafe { CStr::from_ptr(node.as_ptr()) };
        // SAFETY: as above.
        let service = unsafe { CStr::from_ptr(service.as_ptr()) };
        Ok((
            node.to_string_lossy().into_owned(),
            service.to_string_lossy().into_owned(),
        ))
    }
}

#[cfg(not(unix))]
mod host {
    //! Hosts without libc's resolver (Windows hosts): numeric services
    //! only, names through `ToSocketAddrs` (no canonical name), and
    //! numeric reverse answers; the rest is STATUS_NOT_SUPPORTED.

    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

    use super::*;

    pub(super) fn addresses(query: &AddressQuery) -> Result<Resolved, NTSTATUS> {
        if query.flags & (AI_CANONNAME | AI_ALL | AI_V4MAPPED) != 0 {
            return Err(STATUS_NOT_SUPPORTED);
        }
        let port = match query.service.as_deref() {
            None => 0,
            Some(service) => service.parse::<u16>().map_err(|_| STATUS_NOT_SUPPORTED)?,
        };
        let addresses: Vec<SocketAddr> = match query.node.as_deref() {
            None if query.flags & AI_PASSIVE != 0 => vec![
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            ],
            None => vec![
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            ],
            Some(node) => match node.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) if query.flags & AI_NUMERICHOST != 0 => return Err(STATUS_NO_MATCH),
                Err(_) => (node, port)
                    .to_socket_addrs()
                    .map_err(|_| STATUS_NO_MATCH)?
                    .collect(),
            },
        };
        let types: Vec<i32> = match query.socktype {
            0 => vec![i32::from(SOCK_STREAM), i32::from(SOCK_DGRAM)],
            t => vec![t],
        };
        let found = addresses
            .into_iter()
            .flat_map(|address| {
                types.iter().map(move |&socktype| Found {
                    socktype,
                    protocol: query.protocol,
                    address,
                })
            })
            .collect();
        Ok(Resolved {
            found,
            canonical: None,
        })
    }

    pub(super) fn name_of(address: SocketAddr, flags: ULONG) -> Result<(String, String), NTSTATUS> {
        if flags & NI_NUMERICHOST == 0 && flags & NI_NAMEREQD != 0 {
            return Err(STATUS_NOT_SUPPORTED);
        }
        Ok((address.ip().to_string(), address.port().to_string()))
    }
}

// === Chains ===

/// One `ADDRINFOEXW` of a chain and the address it points to.
#[repr(C)]
struct Entry {
    info: ADDRINFOEXW,
    address: SOCKADDR_STORAGE,
}

/// A chain the provider handed out: the entries (the head is the first)
/// and the canonical name the head points to.
struct Chain {
    entries: Box<[Entry]>,
    canonical: Option<Box<[u16]>>,
    /// The `PWSK_CLIENT` it was returned to.
    client: usize,
}

// SAFETY: the pointers inside point into the chain's own boxes, which move
// with it; nothing else shares them until the chain is handed out, and
// then only the client reads them.
unsafe impl Send for Chain {}

impl Chain {
    fn new(resolved: &Resolved, flags: i32, client: usize) -> Chain {
        let entries: Vec<Entry> = resolved
            .found
            .iter()
            .map(|found| {
                let family = if found.address.is_ipv4() {
                    AF_INET
                } else {
                    AF_INET6
                };
                Entry {
                    info: ADDRINFOEXW {
                        ai_addrlen: sockaddr_len(family) as SIZE_T,
                        ..ADDRINFOEXW::hints(
                            flags,
                            family,
                            found.socktype as USHORT,
                            found.protocol as ULONG,
                        )
                    },
                    address: sockaddr_from(&found.address),
                }
            })
            .collect();
        let mut chain = Chain {
            entries: entries.into_boxed_slice(),
            canonical: resolved
                .canonical
                .as_ref()
                .filter(|_| flags & AI_CANONNAME != 0)
                .map(|name| name.encode_utf16().chain(core::iter::once(0)).collect()),
            client,
        };
        let base = chain.entries.as_mut_ptr();
        let count = chain.entries.len();
        for index in 0..count {
            let entry = base.wrapping_add(index);
            // SAFETY: `index` < count: an entry of the boxed slice, which
            // stays where it is for the chain's life.
            let address = unsafe { &raw mut (*entry).address };
            // SAFETY: as above.
            unsafe { (*entry).info.ai_addr = address.cast::<SOCKADDR>() };
            if index + 1 < count {
                // SAFETY: as above; the next entry is in the slice too, and
                // `info` is its first field (repr(C)).
                unsafe {
                    (*entry).info.ai_next = base.wrapping_add(index + 1).cast::<ADDRINFOEXW>()
                };
            }
        }
        if let (Some(name), Some(first)) = (chain.canonical.as_mut(), chain.entries.first_mut()) {
            first.info.ai_canonname = name.as_mut_ptr();
        }
        chain
    }

    /// The `PADDRINFOEXW` the client gets (the first entry's info).
    fn head(&self) -> usize {
        self.entries.as_ptr() as usize
    }

    fn size(&self) -> u64 {
        (self.entries.len() * core::mem::size_of::<Entry>()
            + self.canonical.as_ref().map_or(0, |name| name.len() * 2)) as u64
    }

    /// After the free: nothing the client could still follow.
    fn poison(&mut self) {
        for entry in self.entries.iter_mut() {
            entry.info = ADDRINFOEXW::hints(0, AF_UNSPEC, 0, 0);
            entry.address.ss_family = AF_UNSPEC;
        }
        if let Some(name) = self.canonical.as_mut() {
            name.fill(0);
        }
    }
}

/// What became of a `WskFreeAddressInfo`.
pub(crate) enum Freed {
    /// The chain was the client's: freed.
    Done,
    /// Freed before.
    Twice,
    /// A chain returned to another client.
    OtherClient,
    /// Not the head of any chain the provider returned.
    Foreign,
}

/// The session's address-information chains.
#[derive(Default)]
pub(crate) struct Chains {
    inner: Mutex<ChainsInner>,
}

#[derive(Default)]
struct ChainsInner {
    /// Chains handed out and not freed, by head.
    live: HashMap<usize, Chain>,
    /// Freed (poisoned) chains, kept so their addresses are never reused.
    freed: HashMap<usize, Chain>,
    /// Chains whose client deregistered without freeing them (reported as
    /// leaks), kept likewise.
    lost: HashMap<usize, Chain>,
}

impl Chains {
    /// Builds the chain for `resolved` for `client` and records it;
    /// returns its head.
    pub(crate) fn hand_out(&self, resolved: &Resolved, flags: i32, client: usize) -> usize {
        let chain = Chain::new(resolved, flags, client);
        let head = chain.head();
        lock(&self.inner).live.insert(head, chain);
        head
    }

    /// `WskFreeAddressInfo(client, head)`.
    pub(crate) fn free(&self, client: usize, head: usize) -> Freed {
        let mut inner = lock(&self.inner);
        match inner.live.get(&head) {
            Some(chain) if chain.client == client => {
                if let Some(mut chain) = inner.live.remove(&head) {
                    chain.poison();
                    inner.freed.insert(head, chain);
                }
                Freed::Done
            }
            Some(_) => Freed::OtherClient,
            None if inner.freed.contains_key(&head) => Freed::Twice,
            None => Freed::Foreign,
        }
    }

    /// The chains `client` never freed, as leaks (its registration ends).
    pub(crate) fn take_leaks(&self, client: usize) -> Vec<Leak> {
        let mut inner = lock(&self.inner);
        let heads: Vec<usize> = inner
            .live
            .iter()
            .filter(|(_, chain)| chain.client == client)
            .map(|(head, _)| *head)
            .collect();
        let mut leaks = Vec::new();
        for head in heads {
            if let Some(chain) = inner.live.remove(&head) {
                leaks.push(Leak {
                    kind: LeakKind::WskAddressInfo,
                    tag: CHAIN_TAG,
                    size: chain.size(),
                    address: head as u64,
                    location: None,
                });
                inner.lost.insert(head, chain);
            }
        }
        leaks
    }

    /// Chains handed out and not yet freed.
    pub(crate) fn live(&self) -> u64 {
        lock(&self.inner).live.len() as u64
    }
}

/// The address `WskGetNameInfo` is asked about: `None` for a bad length
/// or family.
///
/// # Safety
/// `address` points to `length` readable bytes.
pub(crate) unsafe fn read_name_address(address: PSOCKADDR, length: ULONG) -> Option<SocketAddr> {
    let length = length as usize;
    if address.is_null()
        || length > core::mem::size_of::<SOCKADDR_STORAGE>()
        || length < core::mem::size_of::<ADDRESS_FAMILY>()
    {
        return None;
    }
    // SAFETY: at least the family is readable (checked above).
    let family = unsafe { core::ptr::read_unaligned(address.cast::<ADDRESS_FAMILY>()) };
    let needed = sockaddr_len(family);
    if needed == 0 || length < needed {
        return None;
    }
    // SAFETY: the structure its family names is readable.
    unsafe { read_sockaddr(address) }
}
