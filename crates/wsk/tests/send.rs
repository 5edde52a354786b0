//! Pipelined sends (`send_all`, `SendQueue`): the bytes arrive complete and
//! in order whatever the ideal send backlog, buffers come back, a failure
//! carries the bytes sent before it, and dropping a sender in flight
//! leaves a clean report. Every test runs under the policy matrix.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::thread;

use ::wsk::{Connection, ListenSocket, SocketAddr};
use common::*;
use nt::*;

async fn accepted(env: &Env) -> (ListenSocket, Connection, TcpStream) {
    let listener = ListenSocket::bind(env.provider(), loopback(false))
        .await
        .expect("bind");
    let address: SocketAddr = listener.local_address().await.expect("address");
    let peer = TcpStream::connect(address).unwrap();
    let connection = listener.accept().await.expect("accept").connection;
    (listener, connection, peer)
}

/// A peer thread that reads everything until the connection ends.
fn reader(peer: &TcpStream) -> thread::JoinHandle<Vec<u8>> {
    let mut peer = peer.try_clone().unwrap();
    thread::spawn(move || {
        let mut all = Vec::new();
        peer.read_to_end(&mut all).unwrap();
        all
    })
}

#[test]
fn send_all_delivers_every_byte_in_order() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, peer) = accepted(env).await;
            let reader = reader(&peer);
            let data = pattern(1 << 20, 11);
            let (sent, back) = connection.send_all(data.clone()).await;
            assert_eq!(sent.expect("send_all"), data.len());
            assert!(back == data, "the buffer comes back unchanged");
            assert!(connection.ideal_send_backlog() > 0, "queried");
            let (sent, _) = connection.send_all(Vec::new()).await;
            assert_eq!(sent.unwrap(), 0);
            let (sent, _) = connection.send_all(b"tail".to_vec()).await;
            assert_eq!(sent.unwrap(), 4);
            connection
                .disconnect(::wsk::Disconnect::Graceful)
                .await
                .expect("disconnect");
            let mut want = data;
            want.extend_from_slice(b"tail");
            same_bytes(&reader.join().unwrap(), &want, "at the peer");
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

#[test]
fn a_send_queue_keeps_buffers_flowing_and_gives_them_back() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, peer) = accepted(env).await;
            let reader = reader(&peer);
            let mut queue = connection.send_queue::<Vec<u8>>();
            let mut want = Vec::new();
            let mut reused = 0;
            for i in 0..200u64 {
                let mut buf = queue.take_buffer().map_or_else(Vec::new, |b| {
                    reused += 1;
                    b
                });
                buf.clear();
                buf.extend_from_slice(&pattern(1000 + (i as usize * 37) % 20_000, i));
                want.extend_from_slice(&buf);
                queue.send(buf).await.map_err(|(e, _)| e).expect("send");
            }
            let sent = queue.flush().await.expect("flush");
            assert_eq!(sent, want.len());
            assert_eq!(queue.in_flight(), 0);
            assert!(reused > 0, "completed buffers come back for reuse");
            drop(queue);
            connection
                .disconnect(::wsk::Disconnect::Graceful)
                .await
                .expect("disconnect");
            same_bytes(&reader.join().unwrap(), &want, "at the peer");
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// The peer resets while a large send_all is in flight: the error comes
/// once every segment completed, with the bytes sent before it, no more
/// than the peer could have received.
#[test]
fn a_failed_send_all_reports_the_bytes_sent_before_the_failure() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, mut peer) = accepted(env).await;
            let resetter = thread::spawn(move || {
                let mut got = vec![0u8; 256 * 1024];
                peer.read_exact(&mut got).unwrap();
                set_reset_on_close(&peer);
                drop(peer);
            });
            let data = vec![12u8; 16 << 20];
            let (sent, back) = connection.send_all(data).await;
            resetter.join().unwrap();
            let error = sent.unwrap_err();
            assert!(
                matches!(
                    error.status(),
                    STATUS_CONNECTION_RESET | STATUS_CONNECTION_ABORTED
                ),
                "{error:?}"
            );
            assert!(
                error.transferred() < back.len(),
                "{} of {}",
                error.transferred(),
                back.len()
            );
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// Dropping a send_all (and a send queue) with segments in flight cancels
/// them and frees the buffer when the last completes: clean report.
#[test]
fn dropping_a_pipelined_send_in_flight_is_clean() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, peer) = accepted(env).await;
            // The peer does not read: sends stay in flight.
            let mut send = Box::pin(connection.send_all(vec![13u8; 16 << 20]));
            assert!(poll_once(&mut send).is_pending());
            drop(send);
            let mut queue = connection.send_queue::<Vec<u8>>();
            let mut first = Box::pin(queue.send(vec![14u8; 8 << 20]));
            let _ = poll_once(&mut first);
            drop(first);
            drop(queue);
            set_reset_on_close(&peer);
            drop(peer);
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

#[test]
fn a_send_queue_refuses_after_a_failure() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, peer) = accepted(env).await;
            set_reset_on_close(&peer);
            drop(peer);
            let mut queue = connection.send_queue::<Vec<u8>>();
            let mut failed = None;
            for _ in 0..64 {
                if let Err((error, buf)) = queue.send(vec![1u8; 64 * 1024]).await {
                    assert_eq!(buf.len(), 64 * 1024, "the buffer comes back");
                    failed = Some(error);
                    break;
                }
            }
            let flushed = queue.flush().await;
            let error = failed.or(flushed.err()).expect("the reset surfaces");
            assert!(!NT_SUCCESS(error.status()), "{error:?}");
            drop(queue);
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}
