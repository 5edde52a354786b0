//! `Provider::resolve` and `Provider::name_of` against the simulated
//! provider, under the whole policy matrix: loopback and numeric names
//! only (no test depends on the network). Every test ends with a clean
//! verifier report: a chain the crate did not free is a leak there, a
//! double free a bugcheck.

mod common;

use std::task::Poll;

use ::wsk::{Hints, IpAddr, SocketAddr};
use common::*;
use nt::wsk::*;
use nt::*;

fn parse(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn localhost_resolves_to_loopback_in_both_families() {
    each_policy(|env, policy| {
        let v4 = block_on(env.provider().resolve(
            Some("localhost"),
            Some("40007"),
            Hints::stream().family(AF_INET).flags(AI_CANONNAME),
        ))
        .unwrap_or_else(|e| panic!("{policy:?}: {e:?}"));
        assert!(!v4.is_empty());
        assert!(
            v4.addresses().all(|a| a == parse("127.0.0.1:40007")),
            "{v4:?}"
        );
        assert!(
            v4.iter()
                .all(|e| e.socktype == SOCK_STREAM && e.protocol == IPPROTO_TCP)
        );
        assert_eq!(v4.canonical_name(), Some("localhost"));

        // Any family: every answer a loopback address (an AF_INET6 query
        // for a name the hosts file knows only for IPv4 would go on to
        // DNS: not in a test). IPv6 through its numeric loopback.
        let any = block_on(env.provider().resolve(
            Some("localhost"),
            Some("40007"),
            Hints::stream(),
        ))
        .unwrap();
        assert!(!any.is_empty());
        assert!(
            any.addresses()
                .all(|a| a.ip().is_loopback() && a.port() == 40007),
            "{any:?}"
        );
        let v6 = block_on(env.provider().resolve(
            Some("::1"),
            Some("40007"),
            Hints::stream().family(AF_INET6),
        ))
        .unwrap();
        assert_eq!(
            v6.addresses().collect::<Vec<_>>(),
            vec![parse("[::1]:40007")]
        );
    });
}

#[test]
fn numeric_addresses_and_the_hints_filter() {
    each_policy(|env, _| {
        let numeric = Hints::stream().flags(AI_NUMERICHOST | AI_NUMERICSERV);
        let list = block_on(env.provider().resolve(Some("::1"), Some("53"), numeric)).unwrap();
        assert_eq!(
            list.addresses().collect::<Vec<_>>(),
            vec![parse("[::1]:53")]
        );
        assert_eq!(list.canonical_name(), None);

        // Every socket type: both stream and datagram answers.
        let all = block_on(env.provider().resolve(
            Some("127.0.0.1"),
            Some("53"),
            Hints::ANY.flags(AI_NUMERICHOST),
        ))
        .unwrap();
        let mut types: Vec<_> = all.iter().map(|e| (e.socktype, e.protocol)).collect();
        types.sort();
        types.dedup();
        assert_eq!(
            types,
            vec![(SOCK_STREAM, IPPROTO_TCP), (SOCK_DGRAM, IPPROTO_UDP)]
        );
        let udp = block_on(env.provider().resolve(
            Some("127.0.0.1"),
            Some("53"),
            Hints::datagram().flags(AI_NUMERICHOST),
        ))
        .unwrap();
        assert!(udp.iter().all(|e| e.socktype == SOCK_DGRAM));

        // The family filters: an IPv4 literal is no IPv6 answer.
        let none = block_on(env.provider().resolve(
            Some("127.0.0.1"),
            None,
            Hints::stream().family(AF_INET6).flags(AI_NUMERICHOST),
        ));
        assert!(none.is_err());

        // A service alone, for a bind: the wildcard address.
        let passive = block_on(env.provider().resolve(
            None,
            Some("9000"),
            Hints::stream().family(AF_INET).flags(AI_PASSIVE),
        ))
        .unwrap();
        assert_eq!(passive.addresses().next(), Some(parse("0.0.0.0:9000")));
    });
}

#[test]
fn a_name_that_cannot_be_resolved_is_not_found() {
    each_policy(|env, _| {
        let error = block_on(env.provider().resolve(
            Some("localhost"),
            Some("80"),
            Hints::stream().flags(AI_NUMERICHOST),
        ))
        .unwrap_err();
        assert_eq!(error.status(), STATUS_NO_MATCH);
        // Bad input is refused before WSK sees it.
        let error = block_on(env.provider().resolve(None, None, Hints::ANY)).unwrap_err();
        assert_eq!(error.status(), STATUS_INVALID_PARAMETER);
        let error = block_on(env.provider().resolve(Some("a\0b"), None, Hints::ANY)).unwrap_err();
        assert_eq!(error.status(), STATUS_INVALID_PARAMETER);
    });
}

#[test]
fn name_of_round_trips_through_resolve() {
    each_policy(|env, _| {
        let numeric = NI_NUMERICHOST | NI_NUMERICSERV;
        for address in ["127.0.0.1:8080", "[::1]:8080"] {
            let (host, service) =
                block_on(env.provider().name_of(parse(address), numeric)).unwrap();
            let back = block_on(env.provider().resolve(
                Some(&host),
                Some(&service),
                Hints::stream().flags(AI_NUMERICHOST | AI_NUMERICSERV),
            ))
            .unwrap();
            assert_eq!(back.addresses().collect::<Vec<_>>(), vec![parse(address)]);
        }
    });
}

#[cfg(unix)]
#[test]
fn name_of_the_loopback_address_is_a_name_that_resolves_back() {
    each_policy(|env, _| {
        let (host, _) =
            block_on(env.provider().name_of(parse("127.0.0.1:7"), NI_NAMEREQD)).unwrap();
        assert!(host.parse::<IpAddr>().is_err(), "a name, not {host}");
        let back = block_on(env.provider().resolve(
            Some(&host),
            None,
            Hints::stream().family(AF_INET),
        ))
        .unwrap();
        assert!(
            back.addresses()
                .any(|a| a.ip() == IpAddr::from([127, 0, 0, 1]))
        );
    });
}

#[test]
fn name_of_grows_its_buffers_for_a_long_name() {
    each_policy(|env, _| {
        // The longest numeric IPv6 text (39 units) does not fit the first
        // host buffer (16 units): the provider answers
        // STATUS_BUFFER_TOO_SMALL and name_of grows it. The answer is whole.
        let address = parse("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
        let (host, service) = block_on(
            env.provider()
                .name_of(address, NI_NUMERICHOST | NI_NUMERICSERV),
        )
        .unwrap();
        assert_eq!(host, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(service, "65535");
    });
}

#[test]
fn a_resolution_dropped_in_flight_still_frees_its_chain() {
    each_policy(|env, policy| {
        let session = &env.session;
        let mut future = Box::pin(env.provider().resolve(
            Some("127.0.0.1"),
            Some("80"),
            Hints::stream().flags(AI_NUMERICHOST),
        ));
        let first = poll_once(&mut future);
        if let Poll::Ready(result) = first {
            // Completed inline: nothing in flight to drop.
            assert!(result.is_ok(), "{policy:?}");
            return;
        }
        // Dropped in flight: the provider completes it with a chain
        // anyway (the sim's resolutions are not cancellable).
        drop(future);
        eventually("the abandoned resolution's chain is handed out", || {
            nt::sim::wsk::stats(session).address_chains == 1
        });
        // Once its completion ran (on the provider thread, at
        // DISPATCH_LEVEL, where it cannot free), the next resolution frees
        // it at PASSIVE_LEVEL; otherwise the registration does when it is
        // dropped (Env::finish checks the report: a chain never freed is a
        // leak there).
        eventually("a later resolution frees the abandoned chain", || {
            let list = block_on(env.provider().resolve(
                Some("127.0.0.1"),
                Some("81"),
                Hints::stream().flags(AI_NUMERICHOST),
            ))
            .unwrap();
            assert_eq!(list.len(), 1);
            nt::sim::wsk::stats(session).address_chains == 0
        });
    });
}

#[test]
fn a_registration_dropped_with_a_resolution_abandoned_frees_the_chain_first() {
    for policy in policies() {
        let mut env = Env::new(policy);
        let mut future = Box::pin(env.provider().resolve(
            Some("::1"),
            Some("80"),
            Hints::stream().flags(AI_NUMERICHOST),
        ));
        let pending = poll_once(&mut future).is_pending();
        drop(future);
        // Dropping the provider and the registration now: the registration
        // waits for the abandoned resolution, frees its chain, then
        // deregisters (a leak or a bugcheck otherwise).
        drop(env.provider.take());
        drop(env.registration.take());
        assert_eq!(nt::sim::wsk::stats(&env.session).address_chains, 0);
        let _ = pending;
        env.finish();
    }
}
