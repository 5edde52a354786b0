//! `send_batch`: several datagrams in one `WskSendMessages` IRP reach a
//! std receiver in order and intact (IPv4 and IPv6, empty datagrams
//! included); an empty batch sends nothing; a datagram too large ends the
//! batch with the bytes of those before it; more datagrams than the
//! provider takes in one request are refused whole; a batch dropped in
//! flight leaks nothing. Every completion and callback policy, clean
//! verifier reports.

mod common;

use std::net::UdpSocket;
use std::pin::pin;
use std::time::Duration;

use ::wsk::DatagramSocket;
use common::*;
use nt::*;

fn receiver(v6: bool) -> UdpSocket {
    let receiver = UdpSocket::bind(loopback(v6)).unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    receiver
}

fn receive(receiver: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 70_000];
    let (n, _) = receiver.recv_from(&mut buf).expect("a datagram");
    buf.truncate(n);
    buf
}

#[test]
fn a_batch_arrives_in_order_and_intact() {
    each_policy(|env, _| {
        for v6 in [false, true] {
            block_on(async {
                let socket = DatagramSocket::bind(env.provider(), loopback(v6))
                    .await
                    .expect("bind");
                let local = socket.local_address().await.unwrap();
                let receiver = receiver(v6);
                let to = receiver.local_addr().unwrap();
                let datagrams: Vec<Vec<u8>> = (0..20)
                    .map(|i| {
                        if i == 7 {
                            Vec::new()
                        } else {
                            pattern(1 + i * 97, i as u64)
                        }
                    })
                    .collect();
                let slices: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
                let total: usize = datagrams.iter().map(Vec::len).sum();
                assert_eq!(socket.send_batch(&slices, to).await, Ok(total));
                for (i, want) in datagrams.iter().enumerate() {
                    let mut buf = vec![0u8; 4096];
                    let (n, from) = receiver.recv_from(&mut buf).expect("a datagram");
                    assert_eq!(from, local);
                    same_bytes(&buf[..n], want, &format!("datagram {i}"));
                }
                socket.close().await.expect("close");
            });
        }
    });
}

#[test]
fn empty_too_large_and_too_many() {
    each_policy(|env, _| {
        block_on(async {
            let socket = DatagramSocket::bind(env.provider(), loopback(false))
                .await
                .expect("bind");
            let receiver = receiver(false);
            let to = receiver.local_addr().unwrap();
            // Nothing to send: no request, nothing arrives.
            assert_eq!(socket.send_batch(&[], to).await, Ok(0));
            // A datagram over UDP's limit ends the batch: those before it
            // went out (their bytes are the error's count), the rest did not.
            let big = vec![1u8; 70_000];
            let batch: [&[u8]; 4] = [b"first", b"second", &big, b"never"];
            let error = socket.send_batch(&batch, to).await.unwrap_err();
            assert_eq!(error.status(), STATUS_INVALID_BUFFER_SIZE, "{error:?}");
            assert_eq!(error.transferred(), 11, "first + second");
            assert_eq!(receive(&receiver), b"first");
            assert_eq!(receive(&receiver), b"second");
            // More than the provider takes in one request: refused whole.
            let many: Vec<&[u8]> = vec![b"x"; 1025];
            let error = socket.send_batch(&many, to).await.unwrap_err();
            assert_eq!(error.status(), STATUS_INVALID_PARAMETER);
            assert_eq!(error.transferred(), 0);
            let (sent, _) = socket.send_to(b"marker".to_vec(), to).await;
            sent.expect("send");
            assert_eq!(
                receive(&receiver),
                b"marker",
                "nothing of the refused batches"
            );
            socket.close().await.expect("close");
        });
    });
}

/// Dropped after its first poll (in flight under the pending policies):
/// the IRP is cancelled or completes, and its copy, list and MDL are freed
/// once it did (the session's leak check); the socket goes on working.
#[test]
fn a_batch_dropped_in_flight_leaks_nothing() {
    each_policy(|env, _| {
        block_on(async {
            let socket = DatagramSocket::bind(env.provider(), loopback(false))
                .await
                .expect("bind");
            let receiver = receiver(false);
            let to = receiver.local_addr().unwrap();
            {
                let batch: [&[u8]; 2] = [b"maybe", b"maybe too"];
                let mut send = pin!(socket.send_batch(&batch, to));
                let _ = poll_once(&mut send);
            }
            assert_eq!(socket.send_batch(&[b"after"], to).await, Ok(5));
            // The dropped batch went out whole or not at all (it was
            // handed to the provider in one call), before "after".
            let mut got = receive(&receiver);
            if got == b"maybe" {
                assert_eq!(receive(&receiver), b"maybe too");
                got = receive(&receiver);
            }
            assert_eq!(got, b"after");
            socket.close().await.expect("close");
        });
    });
}

/// A `send_batch` future is `Send`: a driver task that batches its replies
/// can be spawned on an executor (the list's raw pointers were held across
/// the await, and such a task did not compile).
#[test]
fn a_batch_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    each_policy(|env, _| {
        block_on(async {
            let socket = DatagramSocket::bind(env.provider(), loopback(false))
                .await
                .unwrap();
            let receiver = receiver(false);
            let to = receiver.local_addr().unwrap();
            let batch: [&[u8]; 2] = [b"one", b"two"];
            let send = socket.send_batch(&batch, to);
            assert_send(&send);
            assert_eq!(send.await.unwrap(), 6);
            assert_eq!(receive(&receiver), b"one");
            assert_eq!(receive(&receiver), b"two");
            socket.close().await.unwrap();
        });
    });
}
