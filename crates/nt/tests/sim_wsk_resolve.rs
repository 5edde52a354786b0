//! Name resolution in the simulated provider: `WskGetAddressInfo`,
//! `WskFreeAddressInfo` and `WskGetNameInfo` over the host resolver, with
//! loopback and numeric names only (no test depends on the network), under
//! both completion policies; and the client bugs the provider turns into
//! findings: a call above PASSIVE_LEVEL, a chain never freed (a leak at
//! deregistration), a double or foreign free.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::net::{IpAddr, SocketAddr};

use nt::sim::verifier::{DRIVER_VERIFIER_DETECTED_VIOLATION, c4};
use nt::sim::wsk::violation;
use nt::sim::{CompletionPolicy, LeakKind};
use nt::wsk::*;
use nt::*;
use wsk_client::*;

/// A `UNICODE_STRING` over its own UTF-16 buffer.
struct UString {
    _buffer: Vec<u16>,
    string: UNICODE_STRING,
}

impl UString {
    fn new(text: &str) -> UString {
        let mut buffer: Vec<u16> = text.encode_utf16().collect();
        let string = UNICODE_STRING {
            Length: (buffer.len() * 2) as USHORT,
            MaximumLength: (buffer.len() * 2) as USHORT,
            Buffer: buffer.as_mut_ptr(),
        };
        UString {
            _buffer: buffer,
            string,
        }
    }

    /// An output buffer of `chars` UTF-16 units, filled with 'x'.
    fn output(chars: usize) -> UString {
        let mut buffer = vec![u16::from(b'x'); chars];
        let string = UNICODE_STRING {
            Length: 0,
            MaximumLength: (chars * 2) as USHORT,
            Buffer: buffer.as_mut_ptr(),
        };
        UString {
            _buffer: buffer,
            string,
        }
    }

    fn ptr(&mut self) -> PUNICODE_STRING {
        &mut self.string
    }

    fn text(&self) -> String {
        let units = usize::from(self.string.Length) / 2;
        String::from_utf16(&self._buffer[..units]).unwrap()
    }
}

fn hints(flags: i32, family: ADDRESS_FAMILY, socktype: USHORT, protocol: ULONG) -> ADDRINFOEXW {
    ADDRINFOEXW::hints(flags, family, socktype, protocol)
}

/// Every parameter of one `WskGetAddressInfo` call.
struct Query {
    node: Option<UString>,
    service: Option<UString>,
    namespace: ULONG,
    provider: Option<GUID>,
    hints: Option<ADDRINFOEXW>,
    no_result: bool,
    thread_only: bool,
}

impl Query {
    fn new(node: Option<&str>, service: Option<&str>, hints: Option<ADDRINFOEXW>) -> Query {
        Query {
            node: node.map(UString::new),
            service: service.map(UString::new),
            namespace: NS_ALL,
            provider: None,
            hints,
            no_result: false,
            thread_only: false,
        }
    }

    /// Calls `WskGetAddressInfo` and waits: the IRP's status and the
    /// chain.
    fn run(mut self, client: &Client) -> (NTSTATUS, PADDRINFOEXW) {
        let mut request = Request::new();
        let irp = request.arm();
        let mut result: PADDRINFOEXW = 0x1 as PADDRINFOEXW;
        let node = self
            .node
            .as_mut()
            .map_or(core::ptr::null_mut(), UString::ptr);
        let service = self
            .service
            .as_mut()
            .map_or(core::ptr::null_mut(), UString::ptr);
        let provider = self
            .provider
            .as_mut()
            .map_or(core::ptr::null_mut(), |g| g as *mut GUID);
        let hints = self
            .hints
            .as_mut()
            .map_or(core::ptr::null_mut(), |h| h as PADDRINFOEXW);
        let result_ptr = if self.no_result {
            core::ptr::null_mut()
        } else {
            &mut result
        };
        let thread = if self.thread_only {
            0x1000 as PETHREAD
        } else {
            core::ptr::null_mut()
        };
        // SAFETY: the provider's WskGetAddressInfo with our IRP; every
        // parameter lives until the request completed (finish waits).
        let returned = unsafe {
            (client.dispatch().WskGetAddressInfo.unwrap())(
                client.provider.Client,
                node,
                service,
                self.namespace,
                provider,
                hints,
                result_ptr,
                core::ptr::null_mut(),
                thread,
                irp,
            )
        };
        let (status, _) = request.finish(returned);
        if self.no_result {
            result = core::ptr::null_mut();
        }
        (status, result)
    }
}

fn get_address_info(
    client: &Client,
    node: Option<&str>,
    service: Option<&str>,
    hints: Option<ADDRINFOEXW>,
) -> (NTSTATUS, PADDRINFOEXW) {
    Query::new(node, service, hints).run(client)
}

/// One entry of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    address: SocketAddr,
    family: i32,
    socktype: i32,
    protocol: i32,
    addrlen: usize,
}

fn entries(mut chain: PADDRINFOEXW) -> Vec<Entry> {
    let mut out = Vec::new();
    while !chain.is_null() {
        // SAFETY: a chain the provider returned, not freed yet.
        let info = unsafe { &*chain };
        out.push(Entry {
            // SAFETY: the entry's address.
            address: unsafe { read_sockaddr(info.ai_addr) }.expect("an IP address"),
            family: info.ai_family,
            socktype: info.ai_socktype,
            protocol: info.ai_protocol,
            addrlen: info.ai_addrlen as usize,
        });
        chain = info.ai_next;
    }
    out
}

fn canonical_name(chain: PADDRINFOEXW) -> Option<String> {
    // SAFETY: a chain the provider returned, not freed yet.
    let name = unsafe { (*chain).ai_canonname };
    if name.is_null() {
        return None;
    }
    let mut units = Vec::new();
    // SAFETY: a NUL-terminated string of the chain.
    unsafe {
        let mut at = name;
        while *at != 0 {
            units.push(*at);
            at = at.add(1);
        }
    }
    Some(String::from_utf16(&units).unwrap())
}

fn free(client: &Client, chain: PADDRINFOEXW) {
    // SAFETY: the provider's WskFreeAddressInfo (the tests pass bad chains
    // on purpose: the sim reports them).
    unsafe { (client.dispatch().WskFreeAddressInfo.unwrap())(client.provider.Client, chain) };
}

fn stream_numeric() -> Option<ADDRINFOEXW> {
    Some(hints(AI_NUMERICHOST, AF_UNSPEC, SOCK_STREAM, 0))
}

// === WskGetAddressInfo ===

#[test]
fn numeric_v4_and_v6_names_resolve_to_a_chain_the_client_frees() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        for (node, family, addrlen) in [
            ("127.0.0.1", AF_INET, core::mem::size_of::<SOCKADDR_IN>()),
            ("::1", AF_INET6, core::mem::size_of::<SOCKADDR_IN6>()),
        ] {
            let (status, chain) =
                get_address_info(&client, Some(node), Some("8080"), stream_numeric());
            assert_eq!(status, STATUS_SUCCESS, "{node} under {policy:?}");
            let expected: SocketAddr = SocketAddr::new(node.parse().unwrap(), 8080);
            assert_eq!(
                entries(chain),
                vec![Entry {
                    address: expected,
                    family: i32::from(family),
                    socktype: i32::from(SOCK_STREAM),
                    protocol: IPPROTO_TCP as i32,
                    addrlen,
                }]
            );
            assert_eq!(canonical_name(chain), None, "not asked for");
            assert_eq!(nt::sim::wsk::stats(&session).address_chains, 1);
            free(&client, chain);
            assert_eq!(nt::sim::wsk::stats(&session).address_chains, 0);
        }
        client.deregister();
        finish(session);
    }
}

#[test]
fn localhost_resolves_to_loopback_in_both_families_with_its_canonical_name() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (status, chain) = get_address_info(
            &client,
            Some("localhost"),
            Some("7"),
            Some(hints(AI_CANONNAME, AF_INET, SOCK_STREAM, 0)),
        );
        assert_eq!(status, STATUS_SUCCESS);
        let found = entries(chain);
        assert!(!found.is_empty());
        for entry in &found {
            assert_eq!(entry.address, "127.0.0.1:7".parse().unwrap(), "{found:?}");
        }
        assert_eq!(canonical_name(chain).as_deref(), Some("localhost"));
        free(&client, chain);

        // Any family: every answer a loopback address (an AF_INET6 query
        // for a name the hosts file knows only for IPv4 would go on to
        // DNS: not in a test). IPv6 through its numeric loopback.
        let (status, chain) = get_address_info(
            &client,
            Some("localhost"),
            Some("7"),
            Some(hints(0, AF_UNSPEC, SOCK_STREAM, 0)),
        );
        assert_eq!(status, STATUS_SUCCESS);
        let found = entries(chain);
        assert!(!found.is_empty());
        for entry in &found {
            assert!(entry.address.ip().is_loopback(), "{found:?}");
            let family = if entry.address.is_ipv4() {
                AF_INET
            } else {
                AF_INET6
            };
            assert_eq!(entry.family, i32::from(family));
        }
        free(&client, chain);
        let (status, chain) = get_address_info(
            &client,
            Some("::1"),
            Some("7"),
            Some(hints(0, AF_INET6, SOCK_STREAM, 0)),
        );
        assert_eq!(status, STATUS_SUCCESS);
        assert_eq!(entries(chain)[0].address, "[::1]:7".parse().unwrap());
        free(&client, chain);
        client.deregister();
        finish(session);
    }
}

#[test]
fn hints_filter_socket_type_protocol_and_family() {
    let session = session(CompletionPolicy::Inline);
    let client = Client::register();
    // No socket type: stream and datagram entries, nothing WSK cannot open.
    let (status, chain) = get_address_info(
        &client,
        Some("127.0.0.1"),
        Some("53"),
        Some(hints(AI_NUMERICHOST, AF_UNSPEC, 0, 0)),
    );
    assert_eq!(status, STATUS_SUCCESS);
    let found = entries(chain);
    let mut kinds: Vec<(i32, i32)> = found.iter().map(|e| (e.socktype, e.protocol)).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        vec![
            (i32::from(SOCK_STREAM), IPPROTO_TCP as i32),
            (i32::from(SOCK_DGRAM), IPPROTO_UDP as i32)
        ]
    );
    free(&client, chain);

    let (status, chain) = get_address_info(
        &client,
        Some("127.0.0.1"),
        Some("53"),
        Some(hints(AI_NUMERICHOST, AF_UNSPEC, SOCK_DGRAM, IPPROTO_UDP)),
    );
    assert_eq!(status, STATUS_SUCCESS);
    assert!(
        entries(chain)
            .iter()
            .all(|e| e.socktype == i32::from(SOCK_DGRAM) && e.protocol == IPPROTO_UDP as i32)
    );
    free(&client, chain);

    // A family the name is not of: no match.
    let (status, chain) = get_address_info(
        &client,
        Some("127.0.0.1"),
        Some("53"),
        Some(hints(AI_NUMERICHOST, AF_INET6, SOCK_STREAM, 0)),
    );
    assert_ne!(status, STATUS_SUCCESS);
    assert!(chain.is_null());

    // AI_PASSIVE without a node: the wildcard address for a bind.
    let (status, chain) = get_address_info(
        &client,
        None,
        Some("9000"),
        Some(hints(AI_PASSIVE, AF_INET, SOCK_STREAM, 0)),
    );
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(entries(chain)[0].address, "0.0.0.0:9000".parse().unwrap());
    free(&client, chain);
    client.deregister();
    finish(session);
}

#[test]
fn a_name_that_cannot_be_resolved_is_status_no_match_with_no_chain() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        // A host name where only numeric ones are allowed: no lookup, no
        // network, no match.
        let (status, chain) =
            get_address_info(&client, Some("localhost"), Some("80"), stream_numeric());
        assert_eq!(status, STATUS_NO_MATCH);
        assert!(chain.is_null(), "*Result is NULL on failure");
        client.deregister();
        finish(session);
    }
}

#[test]
fn bad_parameters_fail_the_request_with_the_documented_status() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let cases: Vec<(&str, Query, NTSTATUS)> = vec![
            (
                "no node and no service",
                Query::new(None, None, None),
                STATUS_INVALID_PARAMETER,
            ),
            (
                "a NULL Result",
                Query {
                    no_result: true,
                    ..Query::new(Some("127.0.0.1"), None, None)
                },
                STATUS_INVALID_PARAMETER,
            ),
            (
                "OwningThread without OwningProcess",
                Query {
                    thread_only: true,
                    ..Query::new(Some("127.0.0.1"), None, None)
                },
                STATUS_INVALID_PARAMETER,
            ),
            (
                "an unknown namespace",
                Query {
                    namespace: 99,
                    ..Query::new(Some("127.0.0.1"), None, None)
                },
                STATUS_INVALID_PARAMETER,
            ),
            (
                "a namespace provider",
                Query {
                    provider: Some(NPI_WSK_INTERFACE_ID),
                    ..Query::new(Some("127.0.0.1"), None, None)
                },
                STATUS_NOT_SUPPORTED,
            ),
            (
                "hints with an address",
                Query::new(
                    Some("127.0.0.1"),
                    None,
                    Some(ADDRINFOEXW {
                        ai_addrlen: 16,
                        ..hints(0, AF_UNSPEC, 0, 0)
                    }),
                ),
                STATUS_INVALID_PARAMETER,
            ),
            (
                "UDP over a stream",
                Query::new(
                    Some("127.0.0.1"),
                    None,
                    Some(hints(0, AF_UNSPEC, SOCK_STREAM, IPPROTO_UDP)),
                ),
                STATUS_INVALID_PARAMETER,
            ),
            (
                "an unknown family",
                Query::new(Some("127.0.0.1"), None, Some(hints(0, 17, 0, 0))),
                STATUS_INVALID_PARAMETER,
            ),
            (
                "a flag the sim does not model (AI_FQDN)",
                Query::new(
                    Some("127.0.0.1"),
                    None,
                    Some(hints(0x0002_0000, AF_UNSPEC, 0, 0)),
                ),
                STATUS_NOT_SUPPORTED,
            ),
            (
                "AI_CANONNAME without a node",
                Query::new(None, Some("80"), Some(hints(AI_CANONNAME, AF_UNSPEC, 0, 0))),
                STATUS_INVALID_PARAMETER,
            ),
        ];
        for (what, query, expected) in cases {
            let (status, chain) = query.run(&client);
            assert_eq!(status, expected, "{what} under {policy:?}");
            assert!(chain.is_null(), "{what}");
        }
        // Malformed UNICODE_STRINGs.
        for (length, maximum) in [(3, 4), (8, 4)] {
            let mut query = Query::new(Some("abcd"), None, None);
            if let Some(node) = query.node.as_mut() {
                node.string.Length = length;
                node.string.MaximumLength = maximum;
            }
            assert_eq!(
                query.run(&client).0,
                STATUS_INVALID_PARAMETER,
                "Length {length}, MaximumLength {maximum}"
            );
        }
        let mut query = Query::new(Some("abcd"), None, None);
        if let Some(node) = query.node.as_mut() {
            node.string.Buffer = core::ptr::null_mut();
        }
        assert_eq!(
            query.run(&client).0,
            STATUS_INVALID_PARAMETER,
            "NULL Buffer"
        );
        client.deregister();
        finish(session);
    }
}

// === Findings ===

#[test]
fn a_chain_never_freed_is_a_leak_when_the_client_deregisters() {
    let session = session(CompletionPolicy::ForcePending);
    let client = Client::register();
    let (status, chain) =
        get_address_info(&client, Some("127.0.0.1"), Some("80"), stream_numeric());
    assert_eq!(status, STATUS_SUCCESS);
    client.deregister();
    let report = session.finish();
    assert!(report.bugchecks.is_empty(), "{report}");
    assert_eq!(report.leaks.len(), 1, "{report}");
    let leak = &report.leaks[0];
    assert_eq!(leak.kind, LeakKind::WskAddressInfo);
    assert_eq!(leak.address, chain as u64);
    assert_eq!(leak.tag, u32::from_le_bytes(*b"WskA"));
}

#[test]
fn freeing_a_chain_twice_names_the_call() {
    let session = session(CompletionPolicy::Inline);
    let client = Client::register();
    let (status, chain) =
        get_address_info(&client, Some("127.0.0.1"), Some("80"), stream_numeric());
    assert_eq!(status, STATUS_SUCCESS);
    free(&client, chain);
    // SAFETY: the freed chain stays readable (quarantined, poisoned).
    let poisoned = unsafe { (*chain).ai_addr };
    assert!(poisoned.is_null(), "a freed chain points nowhere");
    free(&client, chain);
    let description = only_violation(&session.report(), violation::BAD_ADDRESS_INFO_FREE);
    assert!(description.contains("WskFreeAddressInfo"), "{description}");
    assert!(description.contains("double free"), "{description}");
    client.deregister();
    let report = session.finish();
    assert!(report.leaks.is_empty(), "{report}");
}

#[test]
fn freeing_what_the_provider_did_not_return_names_the_call() {
    for (what, expected) in [
        ("second entry", "not the head"),
        ("own", "not the head"),
        ("null", "NULL"),
    ] {
        let session = session(CompletionPolicy::Inline);
        let client = Client::register();
        let (status, chain) = get_address_info(
            &client,
            Some("127.0.0.1"),
            Some("80"),
            Some(hints(AI_NUMERICHOST, AF_UNSPEC, 0, 0)),
        );
        assert_eq!(status, STATUS_SUCCESS);
        let mut own = hints(0, AF_INET, 0, 0);
        let bad = match what {
            // SAFETY: the live chain has a stream and a datagram entry.
            "second entry" => unsafe { (*chain).ai_next },
            "own" => &mut own as PADDRINFOEXW,
            _ => core::ptr::null_mut(),
        };
        assert!(what == "null" || !bad.is_null());
        free(&client, bad);
        let description = only_violation(&session.report(), violation::BAD_ADDRESS_INFO_FREE);
        assert!(description.contains(expected), "{what}: {description}");
        free(&client, chain);
        client.deregister();
        let report = session.finish();
        assert!(report.leaks.is_empty(), "{what}: {report}");
    }
}

fn at_dispatch<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: raising from PASSIVE_LEVEL.
    let old = unsafe { KfRaiseIrql(DISPATCH_LEVEL) };
    let result = f();
    // SAFETY: lowering back to what the raise returned.
    unsafe { KeLowerIrql(old) };
    result
}

#[test]
fn name_resolution_above_passive_level_is_a_verifier_finding() {
    for routine in ["WskGetAddressInfo", "WskGetNameInfo", "WskFreeAddressInfo"] {
        let session = session(CompletionPolicy::Inline);
        let client = Client::register();
        let (status, chain) =
            get_address_info(&client, Some("127.0.0.1"), Some("80"), stream_numeric());
        assert_eq!(status, STATUS_SUCCESS);
        let mut request = Request::new();
        let irp = request.arm();
        let mut result: PADDRINFOEXW = core::ptr::null_mut();
        let mut node = UString::new("127.0.0.1");
        let address = sockaddr_from(&"127.0.0.1:80".parse().unwrap());
        let mut host = UString::output(64);
        let returned = at_dispatch(|| match routine {
            // SAFETY: the provider's functions with our IRP and live
            // parameters.
            "WskGetAddressInfo" => unsafe {
                (client.dispatch().WskGetAddressInfo.unwrap())(
                    client.provider.Client,
                    node.ptr(),
                    core::ptr::null_mut(),
                    NS_ALL,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    &mut result,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    irp,
                )
            },
            // SAFETY: as above.
            "WskGetNameInfo" => unsafe {
                (client.dispatch().WskGetNameInfo.unwrap())(
                    client.provider.Client,
                    (&raw const address).cast_mut().cast(),
                    core::mem::size_of::<SOCKADDR_IN>() as ULONG,
                    host.ptr(),
                    core::ptr::null_mut(),
                    NI_NUMERICHOST,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    irp,
                )
            },
            _ => {
                free(&client, chain);
                STATUS_SUCCESS
            }
        });
        let report = session.report();
        assert_eq!(
            report.codes(),
            vec![DRIVER_VERIFIER_DETECTED_VIOLATION],
            "{routine}: {report}"
        );
        assert_eq!(
            report.bugchecks[0].parameters[0],
            c4::WRONG_IRQL,
            "{routine}"
        );
        assert!(
            report.bugchecks[0].description.contains(routine),
            "{report}"
        );
        if routine == "WskFreeAddressInfo" {
            free(&client, chain); // the refused free did nothing
        } else {
            // The request is refused, its IRP completed (nothing hangs).
            assert_eq!(returned, STATUS_INVALID_DEVICE_STATE);
            assert_eq!(request.result().0, STATUS_INVALID_DEVICE_STATE);
            assert!(result.is_null());
            free(&client, chain);
        }
        drop(request);
        client.deregister();
        let report = session.finish();
        assert!(report.leaks.is_empty(), "{routine}: {report}");
    }
}

// === WskGetNameInfo ===

/// `WskGetNameInfo` of `address` with output buffers of `node` and
/// `service` UTF-16 units (None: no buffer).
fn get_name_info(
    client: &Client,
    address: SocketAddr,
    node: Option<usize>,
    service: Option<usize>,
    flags: ULONG,
) -> (NTSTATUS, Option<UString>, Option<UString>) {
    let mut node = node.map(UString::output);
    let mut service = service.map(UString::output);
    let storage = sockaddr_from(&address);
    let length = match address {
        SocketAddr::V4(_) => core::mem::size_of::<SOCKADDR_IN>(),
        SocketAddr::V6(_) => core::mem::size_of::<SOCKADDR_IN6>(),
    };
    let mut request = Request::new();
    let irp = request.arm();
    // SAFETY: the provider's WskGetNameInfo with our IRP; the buffers live
    // until it completed (finish waits).
    let returned = unsafe {
        (client.dispatch().WskGetNameInfo.unwrap())(
            client.provider.Client,
            (&raw const storage).cast_mut().cast(),
            length as ULONG,
            node.as_mut().map_or(core::ptr::null_mut(), UString::ptr),
            service.as_mut().map_or(core::ptr::null_mut(), UString::ptr),
            flags,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            irp,
        )
    };
    let (status, _) = request.finish(returned);
    (status, node, service)
}

#[test]
fn numeric_names_of_v4_and_v6_addresses() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        for (address, host) in [("127.0.0.1:8080", "127.0.0.1"), ("[::1]:8080", "::1")] {
            let (status, node, service) = get_name_info(
                &client,
                address.parse().unwrap(),
                Some(64),
                Some(16),
                NI_NUMERICHOST | NI_NUMERICSERV,
            );
            assert_eq!(status, STATUS_SUCCESS, "{address} under {policy:?}");
            let (node, service) = (node.unwrap(), service.unwrap());
            assert_eq!(node.text(), host);
            assert_eq!(service.text(), "8080");
            assert_eq!(usize::from(node.string.Length), host.len() * 2);
            assert_eq!(node._buffer[host.len()], 0, "NUL-terminated");
        }
        client.deregister();
        finish(session);
    }
}

#[cfg(unix)]
#[test]
fn the_loopback_address_is_named_localhost_and_resolves_back() {
    let session = session(CompletionPolicy::ForcePending);
    let client = Client::register();
    let (status, node, _) = get_name_info(
        &client,
        "127.0.0.1:0".parse().unwrap(),
        Some(NI_MAXHOST),
        None,
        NI_NAMEREQD,
    );
    assert_eq!(status, STATUS_SUCCESS);
    let name = node.unwrap().text();
    let (status, chain) = get_address_info(
        &client,
        Some(&name),
        Some("0"),
        Some(hints(0, AF_INET, SOCK_STREAM, 0)),
    );
    assert_eq!(status, STATUS_SUCCESS, "{name}");
    assert!(
        entries(chain)
            .iter()
            .any(|e| e.address.ip() == IpAddr::from([127, 0, 0, 1]))
    );
    free(&client, chain);
    client.deregister();
    finish(session);
}

#[test]
fn name_info_buffers_too_small_and_bad_parameters() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let address: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let numeric = NI_NUMERICHOST | NI_NUMERICSERV;
        // "127.0.0.1" is 9 units: 10 with its NUL.
        let (status, node, _) = get_name_info(&client, address, Some(9), Some(16), numeric);
        assert_eq!(status, STATUS_BUFFER_TOO_SMALL);
        let node = node.unwrap();
        assert_eq!(node.string.Length, 0, "nothing written");
        assert!(node._buffer.iter().all(|&u| u == u16::from(b'x')));
        let (status, node, _) = get_name_info(&client, address, Some(10), None, numeric);
        assert_eq!(status, STATUS_SUCCESS);
        assert_eq!(node.unwrap().text(), "127.0.0.1");
        let (status, _, service) = get_name_info(&client, address, None, Some(4), numeric);
        assert_eq!(status, STATUS_BUFFER_TOO_SMALL, "8080 needs 5 units");
        assert_eq!(service.unwrap().string.Length, 0);

        let (status, _, _) = get_name_info(&client, address, None, None, numeric);
        assert_eq!(status, STATUS_INVALID_PARAMETER, "no output at all");
        let (status, _, _) = get_name_info(&client, address, Some(64), None, 0x100);
        assert_eq!(status, STATUS_INVALID_PARAMETER, "an unknown flag");

        // An address length beyond SOCKADDR_STORAGE, and one too short.
        for length in [129, 8] {
            let storage = sockaddr_from(&address);
            let mut node = UString::output(64);
            let mut request = Request::new();
            let irp = request.arm();
            // SAFETY: as in get_name_info (the storage has 128 bytes; a
            // provider must not read past what it validated).
            let returned = unsafe {
                (client.dispatch().WskGetNameInfo.unwrap())(
                    client.provider.Client,
                    (&raw const storage).cast_mut().cast(),
                    length,
                    node.ptr(),
                    core::ptr::null_mut(),
                    numeric,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    irp,
                )
            };
            assert_eq!(
                request.finish(returned).0,
                STATUS_INVALID_PARAMETER,
                "{length}"
            );
        }
        client.deregister();
        finish(session);
    }
}
