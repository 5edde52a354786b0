//! A connection's receives and sends on one reused IRP per direction
//! (`Connection::receiver`, `Connection::sender`) into a buffer whose MDL
//! is built once: an echo loop makes no kernel pool allocation per round
//! trip (no IRP, no MDL, no operation node), content-checked; an operation
//! dropped in flight gives its IRP up and the next one gets a new IRP; the
//! verifier report stays clean. Every test runs under the policy matrix.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use ::wsk::{Connection, IoBuf, ListenSocket, MdlBuf, Provider};
use common::*;

async fn accepted_pair(provider: &Provider) -> (ListenSocket, Connection, TcpStream) {
    let listener = ListenSocket::bind(provider, loopback(false))
        .await
        .expect("bind");
    let address = listener.local_address().await.expect("local address");
    let peer = TcpStream::connect(address).unwrap();
    let accepted = listener.accept().await.expect("accept");
    (listener, accepted.connection, peer)
}

const ROUNDS: usize = 200;
const MESSAGE: usize = 1000;

/// The peer sends a message, reads its echo and checks it, `rounds` times.
fn peer_messages(mut peer: TcpStream, rounds: usize, seed: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for round in 0..rounds {
            let message = pattern(MESSAGE, seed + round as u64);
            peer.write_all(&message).unwrap();
            let mut back = vec![0u8; MESSAGE];
            peer.read_exact(&mut back).unwrap();
            same_bytes(&back, &message, "echo");
        }
    })
}

/// Echoes `MESSAGE` bytes per round: receives until the message is
/// complete, then sends it back.
async fn echo_rounds(
    receiver: &mut ::wsk::Receiver<'_, Vec<u8>>,
    sender: &mut ::wsk::Sender<'_, Vec<u8>>,
    mut buf: MdlBuf<Vec<u8>>,
    rounds: usize,
) -> MdlBuf<Vec<u8>> {
    for _ in 0..rounds {
        buf.clear();
        while buf.bytes_init() < MESSAGE {
            let (received, back) = receiver.receive(buf).await;
            assert!(received.expect("receive") > 0, "the peer closed early");
            buf = back;
        }
        let (sent, back) = sender.send(buf).await;
        assert_eq!(sent.expect("send"), MESSAGE);
        buf = back;
    }
    buf
}

#[test]
fn an_echo_loop_on_reused_irps_allocates_nothing_per_round_trip() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, peer) = accepted_pair(env.provider()).await;
            let peer = peer_messages(peer, 1 + ROUNDS, 1);
            let mut receiver = connection.receiver().expect("receiver");
            let mut sender = connection.sender().expect("sender");
            let buf = MdlBuf::new(Vec::with_capacity(MESSAGE)).expect("MDL");
            // Warm up: one round (lazily made tables, the waker).
            let buf = echo_rounds(&mut receiver, &mut sender, buf, 1).await;
            let before = env.session.pool_stats();
            let buf = echo_rounds(&mut receiver, &mut sender, buf, ROUNDS).await;
            let after = env.session.pool_stats();
            assert_eq!(
                after.allocations - before.allocations,
                0,
                "kernel pool allocations (IRPs, MDLs, nodes, blocks) over {ROUNDS} round trips"
            );
            assert_eq!(after.live_blocks, before.live_blocks);
            peer.join().unwrap();
            drop((receiver, sender, buf));
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// The counter does see the per-operation allocations of
/// `Connection::receive` / `Connection::send`: an MDL and one block holding
/// the IRP and the operation node each.
#[test]
fn receive_and_send_allocate_per_operation() {
    let env = Env::new(policies()[0]);
    block_on(async {
        let (listener, connection, peer) = accepted_pair(env.provider()).await;
        let peer = peer_messages(peer, 1, 2);
        let before = env.session.pool_stats();
        let mut buf = Vec::with_capacity(MESSAGE);
        while buf.len() < MESSAGE {
            let (received, back) = connection.receive(buf).await;
            assert!(received.expect("receive") > 0);
            buf = back;
        }
        let receives = env.session.pool_stats().allocations - before.allocations;
        let (sent, _) = connection.send(buf).await;
        assert_eq!(sent.expect("send"), MESSAGE);
        let after = env.session.pool_stats();
        assert!(receives >= 2, "{receives} allocations for the receives");
        assert!(after.allocations - before.allocations >= receives + 2);
        peer.join().unwrap();
        connection.close().await.expect("close");
        listener.close().await.expect("close listener");
    });
    env.finish();
}

/// A receive dropped in flight is cancelled and takes its IRP with it; the
/// receiver makes a new one for the next receive, which gets the data.
#[test]
fn a_receive_dropped_in_flight_gives_its_irp_up() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, mut peer) = accepted_pair(env.provider()).await;
            let mut receiver = connection.receiver().expect("receiver");
            let buf = MdlBuf::new(Vec::with_capacity(100)).expect("MDL");
            {
                let mut receive = Box::pin(receiver.receive(buf));
                assert!(poll_once(&mut receive).is_pending(), "no data yet");
            } // IoCancelIrp; the buffer and the IRP go with the completion
            peer.write_all(b"after the cancel").unwrap();
            let buf = MdlBuf::new(Vec::with_capacity(100)).expect("MDL");
            let (received, buf) = receiver.receive(buf).await;
            let n = received.expect("receive");
            assert!(n > 0);
            assert_eq!(&buf.buf()[..n], &b"after the cancel"[..n]);
            drop((receiver, buf));
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// A datagram echo on a receive queue (reused IRPs) answering through one
/// reply buffer and a `DatagramSender` (one reused IRP, the reply's MDL
/// built once) allocates nothing per datagram; every echo is checked by
/// the peer. Without the sender, `DatagramSocket::send_to` allocates an
/// MDL and a block holding the IRP and the node per datagram (counted
/// below).
#[test]
fn a_datagram_echo_on_a_reused_send_irp_allocates_nothing_per_datagram() {
    const DATAGRAMS: usize = 200;
    each_policy(|env, _| {
        block_on(async {
            let socket = ::wsk::DatagramSocket::bind(env.provider(), loopback(false))
                .await
                .expect("bind");
            let address = socket.local_address().await.expect("local address");
            let buffers = (0..4).map(|_| Vec::with_capacity(2048));
            let mut queue = socket.into_receive_queue(buffers).expect("queue");
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            peer.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut reply = MdlBuf::new(Vec::with_capacity(2048)).expect("MDL");
            let mut sender = ::wsk::DatagramSender::new();
            let echo = async |queue: &mut ::wsk::ReceiveFromQueue<Vec<u8>>,
                              sender: &mut ::wsk::DatagramSender<Vec<u8>>,
                              mut reply: MdlBuf<Vec<u8>>,
                              round: usize| {
                let message = pattern(100 + round % 900, round as u64);
                peer.send_to(&message, address).unwrap();
                let received = next(queue).await.expect("open").expect("datagram");
                let from = received.from().expect("sender");
                reply.clear();
                assert_eq!(reply.extend_from_slice(received.data()), message.len());
                queue.recycle(received);
                let (sent, back) = sender.send_to(queue.socket(), reply, from).await;
                assert_eq!(sent.expect("send_to"), message.len());
                let mut got = vec![0u8; 2048];
                let (n, _) = peer.recv_from(&mut got).unwrap();
                same_bytes(&got[..n], &message, "echo");
                back
            };
            // Warm up: one datagram (the sender's IRP, lazily made tables).
            reply = echo(&mut queue, &mut sender, reply, 0).await;
            let before = env.session.pool_stats();
            for round in 1..=DATAGRAMS {
                reply = echo(&mut queue, &mut sender, reply, round).await;
            }
            let after = env.session.pool_stats();
            assert_eq!(
                after.allocations - before.allocations,
                0,
                "kernel pool allocations over {DATAGRAMS} datagrams echoed"
            );
            // The allocating send, for contrast: an MDL and one block
            // holding the IRP and the operation node.
            let before = env.session.pool_stats();
            let (sent, _) = queue
                .socket()
                .send_to(vec![1u8; 10], peer.local_addr().unwrap())
                .await;
            assert_eq!(sent.expect("send_to"), 10);
            assert!(env.session.pool_stats().allocations - before.allocations >= 2);
            drop((sender, reply));
            queue.close().await.expect("close");
        });
    });
}
