//! The simulated provider reads and writes datagrams in batches (one
//! `recvmmsg` / `sendmmsg` per batch on Linux hosts, one call per datagram
//! elsewhere); what a client sees must not change:
//!
//! - datagrams queued on the host before the receive-from callback is
//!   enabled arrive as one chained `WSK_DATAGRAM_INDICATION`, every
//!   datagram intact, with its sender, in order; a retained chain is
//!   released with `WskRelease` and nothing is left retained, under every
//!   callback policy cell (callback IRQL x provider threads x inline
//!   indications);
//! - a `WskSendMessages` of more datagrams than one host batch arrives in
//!   list order;
//! - sends on a socket with the receive-from callback enabled do not make
//!   the provider read a host queue that said "would block" and has
//!   signalled nothing since.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nt::sim::{CallbackIrql, Session, SimConfig};
use nt::wsk::*;
use nt::*;
use wsk_client::*;

/// One indicated datagram: its payload and sender.
type Indicated = (Vec<u8>, Option<SocketAddr>);

/// What the receive-from callback saw: each chain's datagrams (payload,
/// sender), and the chain heads it retained.
#[derive(Default)]
struct Chains {
    chains: Mutex<Vec<Vec<Indicated>>>,
    retained: Mutex<Vec<usize>>,
    /// Retain each chain (return STATUS_PENDING) instead of returning
    /// STATUS_SUCCESS.
    retain: AtomicBool,
}

fn chains(context: PVOID) -> &'static Chains {
    // SAFETY: the tests pass a leaked `Chains` as the socket's context.
    unsafe { &*(context as *const Chains) }
}

unsafe extern "C" fn on_receive_from(
    context: PVOID,
    _flags: ULONG,
    indication: PWSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    let c = chains(context);
    let mut chain = Vec::new();
    let mut next = indication;
    while !next.is_null() {
        // SAFETY: the provider's chain, live during the callback.
        let element = unsafe { &*next };
        let data = read_wsk_buf(&element.Buffer);
        // SAFETY: the provider's address, live with the chain.
        let from = unsafe { read_sockaddr(element.RemoteAddress) };
        chain.push((data, from));
        next = element.Next;
    }
    c.chains.lock().unwrap().push(chain);
    if c.retain.load(Ordering::SeqCst) && !indication.is_null() {
        c.retained.lock().unwrap().push(indication as usize);
        return STATUS_PENDING;
    }
    STATUS_SUCCESS
}

static EVENTS: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
    WskReceiveFromEvent: Some(on_receive_from),
};

fn with_policy(f: impl FnOnce(&mut SimConfig)) -> Session {
    let mut config = SimConfig::from_env();
    f(&mut config);
    Session::boot_config(config)
}

fn context(c: &'static Chains) -> PVOID {
    (c as *const Chains).cast_mut().cast()
}

/// Datagram `i` of a test: its index and a length that varies.
fn payload(i: usize) -> Vec<u8> {
    let mut data = vec![i as u8; 8 + (i * 97) % 1400];
    data[..4].copy_from_slice(&(i as u32).to_le_bytes());
    data
}

#[test]
fn datagrams_queued_on_the_host_arrive_as_one_chain_intact_and_in_order() {
    const COUNT: usize = 20;
    for irql in [
        CallbackIrql::Dispatch,
        CallbackIrql::Passive,
        CallbackIrql::Mixed,
    ] {
        for threads in [1, 2] {
            for inline in [false, true] {
                let cell = format!("{irql:?}, {threads} provider threads, inline {inline}");
                let session = with_policy(|c| {
                    c.wsk.callback_irql = irql;
                    c.wsk.provider_threads = threads;
                    c.wsk.inline_indications = inline;
                });
                let client = Client::register();
                let c: &'static Chains = Box::leak(Box::default());
                c.retain.store(true, Ordering::SeqCst);
                let (socket, address) = client.datagram(loopback(false), context(c), &EVENTS);
                let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
                for i in 0..COUNT {
                    sender.send_to(&payload(i), address).unwrap();
                }
                // On loopback the datagrams are in the socket's queue when
                // send_to returns; the provider has not read them (no
                // callback enabled, no receive).
                std::thread::sleep(Duration::from_millis(20));
                assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
                eventually("every datagram indicated", || {
                    c.chains.lock().unwrap().iter().map(Vec::len).sum::<usize>() == COUNT
                });
                eventually("the callback returned", || {
                    nt::sim::wsk::stats(&session).indications_retained == 1
                });
                {
                    let seen = c.chains.lock().unwrap();
                    assert_eq!(seen.len(), 1, "{cell}: one chain, got {:?}", seen.len());
                    let from = Some(sender.local_addr().unwrap());
                    for (i, (data, sender)) in seen[0].iter().enumerate() {
                        assert_eq!(*data, payload(i), "{cell}: datagram {i}");
                        assert_eq!(*sender, from, "{cell}: datagram {i}'s sender");
                    }
                }
                for head in c.retained.lock().unwrap().drain(..) {
                    assert_eq!(
                        release_datagrams(socket, head as PWSK_DATAGRAM_INDICATION),
                        STATUS_SUCCESS,
                        "{cell}"
                    );
                }
                assert_eq!(
                    nt::sim::wsk::stats(&session).indications_retained,
                    0,
                    "{cell}: every chain released"
                );
                assert_eq!(close(socket), STATUS_SUCCESS);
                client.deregister();
                let report = session.finish();
                assert!(report.is_clean(), "{cell}: {report}");
            }
        }
    }
}

#[test]
fn a_send_messages_list_longer_than_a_host_batch_arrives_in_order() {
    const COUNT: usize = 75;
    let session = Session::boot();
    let client = Client::register();
    let (socket, local) =
        client.datagram(loopback(false), core::ptr::null_mut(), core::ptr::null());
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let datagrams: Vec<Vec<u8>> = (0..COUNT).map(payload).collect();
    let buffers: Vec<Buffer> = datagrams.iter().map(|d| Buffer::from_bytes(d)).collect();
    let mut nodes: Vec<WSK_BUF_LIST> = buffers
        .iter()
        .map(|b| WSK_BUF_LIST {
            Next: core::ptr::null_mut(),
            Buffer: b.wsk_buf(),
        })
        .collect();
    let first = nodes.as_mut_ptr();
    for i in 1..nodes.len() {
        nodes[i - 1].Next = first.wrapping_add(i);
    }
    let mut to = sockaddr_from(&receiver.local_addr().unwrap());
    let mut request = Request::new();
    let irp = request.arm();
    // SAFETY: the provider's WskSendMessages with our IRP; the list, its
    // buffers and the address live until the request finished (waited for
    // here).
    let returned = unsafe {
        (datagram_table(socket).WskSendMessages.unwrap())(
            socket,
            first,
            0,
            (&raw mut to).cast(),
            0,
            core::ptr::null_mut(),
            irp,
        )
    };
    let total: usize = datagrams.iter().map(Vec::len).sum();
    assert_eq!(request.finish(returned), (STATUS_SUCCESS, total as u64));
    drop(request);
    drop(buffers);
    let mut buf = vec![0u8; 2048];
    for (i, want) in datagrams.iter().enumerate() {
        let (n, from) = receiver.recv_from(&mut buf).expect("a datagram");
        assert_eq!((&buf[..n], from), (&want[..], local), "datagram {i}");
    }
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn sends_do_not_make_the_provider_read_an_empty_host_queue_again() {
    const SENDS: usize = 200;
    let session = with_policy(|c| c.wsk.inline_indications = false);
    let client = Client::register();
    let c: &'static Chains = Box::leak(Box::default());
    let (socket, address) = client.datagram(loopback(false), context(c), &EVENTS);
    assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = receiver.local_addr().unwrap();
    // The provider looks once after the enable and finds nothing.
    eventually("the provider's first look", || {
        nt::sim::wsk::stats(&session).datagram_reads_empty >= 1
    });
    std::thread::sleep(Duration::from_millis(50));
    let before = nt::sim::wsk::stats(&session).datagram_reads_empty;
    for i in 0..SENDS {
        assert_eq!(
            send_to(socket, &payload(i), to),
            Ok(payload(i).len() as u64)
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    let empty = nt::sim::wsk::stats(&session).datagram_reads_empty - before;
    // Nothing arrived for the socket: nothing to read. (Each send used to
    // make the provider look again: one empty read per send, less the
    // kicks that found one already queued.)
    assert_eq!(empty, 0, "{empty} empty reads after {SENDS} sends");
    assert!(c.chains.lock().unwrap().is_empty());
    // And a datagram that does arrive is still indicated.
    receiver.send_to(b"late", address).unwrap();
    eventually("the late datagram indicated", || {
        c.chains
            .lock()
            .unwrap()
            .concat()
            .iter()
            .any(|(data, _)| data == b"late")
    });
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}
