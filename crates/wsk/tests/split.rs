//! Owned halves (`Connection::into_split`): a receiving and a sending
//! future each own their half and run at once; the connection stays open
//! while either half lives and closes with the last; `reunite` gives the
//! connection back, and refuses halves of two connections.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::pin::Pin;
use std::thread;

use ::wsk::{Connection, Disconnect, SocketAddr};
use common::*;
use nt::sim::wsk::stats;
use nt::*;

async fn connected(env: &Env) -> (Connection, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let remote: SocketAddr = listener.local_addr().unwrap();
    let connection = Connection::connect(env.provider(), remote)
        .await
        .expect("connect");
    let (peer, _) = listener.accept().unwrap();
    (connection, peer)
}

/// The halves move into two futures that send and receive at once (the
/// peer echoes), and the connection closes only when the second half goes.
#[test]
fn halves_send_and_receive_at_once_and_the_last_one_closes() {
    const SIZE: usize = 300_000;
    each_policy(|env, _| {
        block_on(async {
            let (connection, peer) = connected(env).await;
            let echo = thread::spawn(move || {
                let mut peer = peer;
                let mut reader = peer.try_clone().unwrap();
                let mut buf = vec![0u8; 16 * 1024];
                let mut total = 0;
                loop {
                    let n = reader.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    peer.write_all(&buf[..n]).unwrap();
                    total += n;
                }
                peer.shutdown(Shutdown::Write).unwrap();
                total
            });
            let open = stats(&env.session).sockets_open;
            let (read, write) = connection.into_split().expect("split");
            let data = pattern(SIZE, 7);
            let sender = {
                let data = data.clone();
                async move {
                    let (sent, _) = write.send_all(data).await;
                    assert_eq!(sent.expect("send"), SIZE);
                    write.disconnect(Disconnect::Graceful).await.expect("FIN");
                    // The write half goes; the read half keeps the
                    // connection open.
                    write.close().await.expect("first half");
                    Vec::new()
                }
            };
            let receiver = async {
                let mut got = Vec::with_capacity(SIZE);
                loop {
                    let (n, buf) = read.receive(Vec::with_capacity(32 * 1024)).await;
                    if n.expect("receive") == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf);
                }
                got
            };
            let results = join_all(vec![
                Box::pin(sender) as Pin<Box<dyn std::future::Future<Output = Vec<u8>>>>,
                Box::pin(receiver),
            ]);
            same_bytes(&results[1], &data, "echo through the halves");
            assert_eq!(echo.join().unwrap(), SIZE);
            assert_eq!(
                stats(&env.session).sockets_open,
                open,
                "closed while the read half lives"
            );
            read.close().await.expect("last half closes");
            assert_eq!(stats(&env.session).sockets_open, open - 1);
        });
    });
}

/// Dropping both halves closes the connection (the peer sees it end);
/// `reunite` puts a pair back together and refuses a mixed pair.
#[test]
fn dropping_both_halves_closes_and_reunite_checks_the_pair() {
    each_policy(|env, _| {
        block_on(async {
            let (a, mut peer_a) = connected(env).await;
            let (b, _peer_b) = connected(env).await;
            let (read_a, write_a) = a.into_split().expect("split a");
            let (read_b, write_b) = b.into_split().expect("split b");
            assert!(read_a.is_pair_of(&write_a) && !read_a.is_pair_of(&write_b));
            let (error, read_a, write_b) = read_a.reunite(write_b).expect_err("a mixed pair");
            assert_eq!(error.status(), STATUS_INVALID_PARAMETER);
            let b = read_b.reunite(write_b).expect("b's own halves");
            let (sent, _) = b.send(b"whole again".to_vec()).await;
            assert_eq!(sent.unwrap(), 11);
            b.close().await.expect("close b");
            let open = stats(&env.session).sockets_open;
            drop(write_a);
            assert_eq!(stats(&env.session).sockets_open, open, "one half left");
            drop(read_a);
            // Dropping closes without waiting: the peer sees the end.
            let mut rest = Vec::new();
            peer_a
                .set_read_timeout(Some(std::time::Duration::from_secs(30)))
                .unwrap();
            let end = peer_a.read_to_end(&mut rest);
            assert!(
                matches!(end, Ok(0)) || end.is_err(),
                "the connection ended: {end:?}"
            );
            eventually("the dropped connection closed", || {
                stats(&env.session).sockets_open == open - 1
            });
        });
    });
}
