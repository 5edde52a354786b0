//! One test per defect of the crate the WSK review found (items C1-C8,
//! C16, C17; C15 is in `registration.rs`): each failed (or hung) before
//! its fix. Every test runs under the policy matrix (completion x
//! callbacks) unless it needs one callback policy, and ends with a clean
//! verifier report.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Wake, Waker};
use std::thread;
use std::time::Duration;

use ::wsk::{Connection, DataIndication, DatagramSocket, ListenSocket, SocketAddr};
use common::*;
use nt::sim::wsk::stats;
use nt::sim::{FaultPlan, FaultTarget};
use nt::*;

async fn listener(env: &Env) -> (ListenSocket, SocketAddr) {
    let listener = ListenSocket::bind(env.provider(), loopback(false))
        .await
        .expect("bind");
    let address = listener.local_address().await.expect("local address");
    (listener, address)
}

/// A connection accepted with `WskAccept` and its std peer.
async fn accepted(env: &Env) -> (ListenSocket, Connection, TcpStream) {
    let (listener, address) = listener(env).await;
    let peer = TcpStream::connect(address).unwrap();
    let connection = listener.accept().await.expect("accept").connection;
    (listener, connection, peer)
}

fn bytes_of(indication: &DataIndication) -> Vec<u8> {
    let mut out = vec![0u8; indication.len()];
    assert_eq!(indication.copy_to(&mut out), indication.len());
    out
}

/// A peer thread that writes `data` and half-closes.
fn writer(peer: &TcpStream, data: Vec<u8>) -> thread::JoinHandle<()> {
    let mut peer = peer.try_clone().unwrap();
    thread::spawn(move || {
        peer.write_all(&data).unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
    })
}

/// C1: receive-from callbacks of one socket overlap (two provider
/// threads). Each chain is handed out once its own callback returned,
/// without a spin that an out-of-order return would never end; every
/// datagram arrives, every chain is released.
#[test]
fn c1_overlapping_receive_from_callbacks_hand_chains_out_after_their_return() {
    const SENDERS: usize = 4;
    const EACH: usize = 40;
    for policy in policies()
        .into_iter()
        .filter(|p| p.callbacks == Callbacks::Concurrent)
    {
        let env = Env::new(policy);
        block_on(async {
            let socket = DatagramSocket::bind(env.provider(), loopback(false))
                .await
                .expect("bind");
            let local = socket.local_address().await.unwrap();
            let mut events = socket.receive_from_events(1024).expect("events");
            let senders: Vec<_> = (0..SENDERS)
                .map(|s| {
                    thread::spawn(move || {
                        let sender = UdpSocket::bind(loopback(false)).unwrap();
                        for i in 0..EACH {
                            sender.send_to(&[s as u8; 32][..8 + i % 24], local).unwrap();
                            if i % 8 == 7 {
                                // Paced: the host's receive buffer must not
                                // drop any.
                                thread::sleep(Duration::from_millis(2));
                            }
                        }
                    })
                })
                .collect();
            let mut held = Vec::new();
            let mut count = 0;
            while count < SENDERS * EACH {
                let chain = next(&mut events).await.unwrap().expect("datagrams");
                count += chain.count();
                held.push(chain);
            }
            for sender in senders {
                sender.join().unwrap();
            }
            drop(held);
            assert_eq!(stats(&env.session).indications_retained, 0);
            drop(events);
            socket.close().await.expect("close");
        });
        env.finish();
    }
}

/// C2: a receive queue whose `Received` values are dropped (not recycled)
/// keeps its depth (they come back on drop); with every buffer held it
/// yields STATUS_INSUFFICIENT_RESOURCES instead of hanging; nothing is
/// lost.
#[test]
fn c2_a_receive_queue_never_hangs_on_dropped_or_held_buffers() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, peer) = accepted(env).await;
            let mut queue = connection
                .into_receive_queue((0..2).map(|_| Vec::with_capacity(1000)))
                .expect("queue");
            let data = pattern(20_000, 2);
            let mut peer_w = peer.try_clone().unwrap();
            peer_w.write_all(&data).unwrap();
            let mut got = Vec::new();
            // Dropped, not recycled.
            for _ in 0..5 {
                let received = next(&mut queue).await.unwrap().expect("data");
                got.extend_from_slice(received.data());
            }
            // Every buffer held.
            let a = next(&mut queue).await.unwrap().expect("data");
            let b = next(&mut queue).await.unwrap().expect("data");
            let error = next(&mut queue).await.unwrap().unwrap_err();
            assert_eq!(error.status(), STATUS_INSUFFICIENT_RESOURCES);
            got.extend_from_slice(a.data());
            got.extend_from_slice(b.data());
            drop((a, b));
            peer.shutdown(Shutdown::Write).unwrap();
            while let Some(received) = next(&mut queue).await {
                got.extend_from_slice(received.expect("data").data());
            }
            same_bytes(&got, &data, "through the queue");
            queue.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// C3: a re-arm that cannot be made (no IRP: an allocated operation's IRP
/// comes from its pool block, so the pool fails) is yielded as an error,
/// and the next poll re-arms: the stream neither stalls nor loses data.
#[test]
fn c3_a_failed_re_arm_is_an_error_and_is_retried() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, peer) = accepted(env).await;
            let mut events = connection.receive_events(1).expect("events");
            let data = pattern(1 << 20, 3);
            let writer = writer(&peer, data.clone());
            let first = next(&mut events).await.unwrap().expect("data");
            eventually("a refusal", || events.refused() >= 1);
            let mut got = bytes_of(&first);
            drop(first);
            env.session.set_fault(FaultTarget::Pool, FaultPlan::Always);
            // What was queued comes first, then the failure.
            loop {
                match next(&mut events).await.expect("not the end yet") {
                    Ok(indication) => got.extend(bytes_of(&indication)),
                    Err(error) => {
                        assert_eq!(error.status(), STATUS_INSUFFICIENT_RESOURCES);
                        break;
                    }
                }
            }
            env.session.set_fault(FaultTarget::Pool, FaultPlan::Never);
            while let Some(indication) = next(&mut events).await {
                got.extend(bytes_of(&indication.expect("data")));
            }
            writer.join().unwrap();
            same_bytes(&got, &data, "after the failed re-arm");
            drop(events);
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// Counts wakes.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// C4: connections from the accept callback are handed out once it
/// returned, with the listener's receive and disconnect events inherited:
/// a receive stream on one starts without enabling anything and without
/// polling itself again in a loop.
#[test]
fn c4_accepted_connections_are_usable_at_once() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, address) = listener(env).await;
            let mut accepts = listener.accept_events(32).expect("accept events");
            let peers: Vec<TcpStream> = (0..16)
                .map(|_| TcpStream::connect(address).unwrap())
                .collect();
            let mut connections = Vec::new();
            for _ in 0..peers.len() {
                connections.push(next(&mut accepts).await.unwrap().expect("accepted"));
            }
            for accepted in &connections {
                let mut events = accepted.connection.receive_events(4).expect("events");
                let wakes = Arc::new(Wakes::default());
                let waker = Waker::from(Arc::clone(&wakes));
                let mut cx = Context::from_waker(&waker);
                let first = std::pin::Pin::new(&mut events).poll_next_unpin_compat(&mut cx);
                assert!(first.is_pending(), "nothing was sent yet");
                assert_eq!(
                    wakes.0.load(Ordering::SeqCst),
                    0,
                    "the stream asked to be polled again at once (a retry loop)"
                );
                let peer = peers
                    .iter()
                    .find(|p| Some(p.local_addr().unwrap()) == accepted.remote)
                    .unwrap();
                (&*peer).write_all(b"hello").unwrap();
                let data = next(&mut events).await.unwrap().expect("data");
                assert_eq!(bytes_of(&data), b"hello");
            }
            drop(accepts);
            for accepted in connections {
                accepted.connection.close().await.expect("close");
            }
            listener.close().await.expect("close listener");
        });
    });
}

/// `poll_next` through `futures_core::Stream` on a pinned stream.
trait PollNext {
    type Item;
    fn poll_next_unpin_compat(self, cx: &mut Context<'_>) -> std::task::Poll<Option<Self::Item>>;
}

impl<S: futures_core::Stream + Unpin> PollNext for std::pin::Pin<&mut S> {
    type Item = S::Item;
    fn poll_next_unpin_compat(self, cx: &mut Context<'_>) -> std::task::Poll<Option<S::Item>> {
        futures_core::Stream::poll_next(self, cx)
    }
}

/// C5: the end of a connection's stream comes after every byte the
/// provider still held when the peer's disconnect was indicated (refused
/// data, and data indicated after an early disconnect indication).
#[test]
fn c5_the_end_comes_after_all_data_the_provider_held() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, peer) = accepted(env).await;
            let mut events = connection.receive_events(1).expect("events");
            let data = pattern(512 * 1024, 5);
            let writer = writer(&peer, data.clone());
            let first = next(&mut events).await.unwrap().expect("data");
            // Refusals pile up and the disconnect is known meanwhile.
            eventually("a refusal", || events.refused() >= 1);
            writer.join().unwrap();
            thread::sleep(Duration::from_millis(50));
            let mut got = bytes_of(&first);
            drop(first);
            while let Some(indication) = next(&mut events).await {
                got.extend(bytes_of(&indication.expect("data")));
            }
            same_bytes(&got, &data, "up to the end");
            drop(events);
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// C6: an error after part of a request was done carries the bytes
/// transferred (`IoStatus.Information`), and the buffer holds them.
#[test]
fn c6_errors_carry_the_bytes_transferred() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, mut peer) = accepted(env).await;
            let resetter = thread::spawn(move || {
                peer.write_all(&[7u8; 40]).unwrap();
                thread::sleep(Duration::from_millis(200));
                set_reset_on_close(&peer);
                drop(peer);
            });
            let (result, buf) = connection.receive_full(Vec::with_capacity(100)).await;
            resetter.join().unwrap();
            let error = result.unwrap_err();
            assert_eq!(error.status(), STATUS_CONNECTION_RESET);
            assert_eq!(error.transferred(), 40, "{error:?}");
            assert_eq!(buf, [7u8; 40]);
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// C7: one live event stream per socket; a second one is refused until
/// the first is dropped.
#[test]
fn c7_one_event_stream_per_socket() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, _peer) = accepted(env).await;
            let first = connection.receive_events(4).expect("first");
            let second = connection.receive_events(4).unwrap_err();
            assert_eq!(second.status(), STATUS_INVALID_DEVICE_STATE);
            drop(first);
            drop(connection.receive_events(4).expect("after the first"));
            let accepts = listener.accept_events(4).expect("accept events");
            let again = listener.accept_events(4).unwrap_err();
            assert_eq!(again.status(), STATUS_INVALID_DEVICE_STATE);
            drop(accepts);
            let socket = DatagramSocket::bind(env.provider(), loopback(false))
                .await
                .expect("bind");
            let datagrams = socket.receive_from_events(4).expect("datagram events");
            let again = socket.receive_from_events(4).unwrap_err();
            assert_eq!(again.status(), STATUS_INVALID_DEVICE_STATE);
            drop(datagrams);
            socket.close().await.expect("close");
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// C8: indications flagged `WSK_FLAG_RELEASE_ASAP` (the provider short of
/// buffers) are copied and given back at once, never retained, even by a
/// consumer that holds everything.
#[test]
fn c8_release_asap_indications_are_not_retained() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, peer) = accepted(env).await;
            let mut events = connection.receive_events(64).expect("events");
            let data = pattern(1 << 20, 8);
            let writer = writer(&peer, data.clone());
            let mut held = Vec::new();
            while let Some(indication) = next(&mut events).await {
                held.push(indication.expect("data"));
            }
            writer.join().unwrap();
            let got: Vec<u8> = held.iter().flat_map(bytes_of).collect();
            same_bytes(&got, &data, "held");
            let s = stats(&env.session);
            assert!(s.release_asap > 0, "the provider ran short: {s:?}");
            assert_eq!(s.release_asap_retained, 0, "{s:?}");
            drop(held);
            drop(events);
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// C16: a receive appends to the bytes already in the buffer; a receive
/// queue that cannot be set up gives the socket and every buffer back.
#[test]
fn c16_receives_append_and_failed_queues_give_everything_back() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, mut peer) = accepted(env).await;
            peer.write_all(b"tail").unwrap();
            let mut buf = Vec::with_capacity(64);
            buf.extend_from_slice(b"head:");
            let (n, buf) = connection.receive(buf).await;
            assert_eq!(n.expect("receive"), 4);
            assert_eq!(buf, b"head:tail");
            env.session.set_fault(FaultTarget::Mdl, FaultPlan::Always);
            let failed = connection
                .into_receive_queue((0..3).map(|i| vec![i as u8; 10]))
                .unwrap_err();
            env.session.set_fault(FaultTarget::Mdl, FaultPlan::Never);
            assert_eq!(failed.error.status(), STATUS_INSUFFICIENT_RESOURCES);
            let mut buffers = failed.buffers;
            buffers.sort();
            assert_eq!(buffers, vec![vec![0u8; 10], vec![1u8; 10], vec![2u8; 10]]);
            failed.socket.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// C17: a later stream gets the queue depth it asks for (the first
/// stream's depth is not kept forever).
#[test]
fn c17_a_later_stream_gets_the_depth_it_asks_for() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, mut peer) = accepted(env).await;
            drop(connection.receive_events(1).expect("a shallow stream"));
            let mut events = connection.receive_events(8).expect("a deeper one");
            peer.write_all(&[0; 100]).unwrap();
            let first = next(&mut events).await.unwrap().expect("data");
            // Queued, not taken: up to 8 fit.
            for i in 1..6u8 {
                peer.write_all(&[i; 100]).unwrap();
                eventually("queued", || {
                    stats(&env.session).indications_retained > u64::from(i)
                });
            }
            assert_eq!(events.refused(), 0);
            drop(first);
            drop(events);
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}
