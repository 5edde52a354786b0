//! `ListenSocket::accept_queue`: N `WskAccept` IRPs kept outstanding,
//! connections yielded as they complete; dropping the queue cancels the
//! outstanding accepts without leaking (the clean report each test ends
//! with), and a listener closed under it ends the stream.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

use ::wsk::ListenSocket;
use common::*;
use nt::*;

/// Twenty peers at once against four outstanding accepts: each connection
/// is accepted once and echoes its own bytes; four accepts are outstanding
/// after every poll.
#[test]
fn an_accept_queue_keeps_depth_accepts_outstanding() {
    const PEERS: usize = 20;
    each_policy(|env, _| {
        block_on(async {
            let listener = ListenSocket::bind(env.provider(), loopback(false))
                .await
                .expect("bind");
            let address = listener.local_address().await.unwrap();
            let mut accepts = listener.accept_queue(4).expect("queue");
            assert_eq!(accepts.outstanding(), 0, "nothing before the first poll");
            {
                let mut first = std::pin::pin!(next(&mut accepts));
                assert!(poll_once(&mut first).is_pending());
            }
            assert_eq!(accepts.outstanding(), 4);
            let peers: Vec<_> = (0..PEERS)
                .map(|i| {
                    thread::spawn(move || {
                        let mut stream = TcpStream::connect(address).unwrap();
                        let data = pattern(1000 + i, i as u64);
                        stream.write_all(&data).unwrap();
                        stream.shutdown(Shutdown::Write).unwrap();
                        let mut back = Vec::new();
                        stream.read_to_end(&mut back).unwrap();
                        assert!(back == data, "peer {i}: bad echo");
                    })
                })
                .collect();
            let mut remotes = Vec::new();
            for _ in 0..PEERS {
                let accepted = next(&mut accepts).await.unwrap().expect("accept");
                assert_eq!(accepts.depth(), 4);
                remotes.push(accepted.remote.expect("remote"));
                let connection = accepted.connection;
                let mut data = Vec::new();
                loop {
                    let (n, buf) = connection.receive(Vec::with_capacity(4096)).await;
                    if n.expect("receive") == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf);
                }
                let (sent, _) = connection.send_all(data).await;
                sent.expect("send");
                connection
                    .disconnect(::wsk::Disconnect::Graceful)
                    .await
                    .expect("FIN");
                connection.close().await.expect("close");
            }
            remotes.sort();
            remotes.dedup();
            assert_eq!(remotes.len(), PEERS, "every peer accepted once");
            for peer in peers {
                peer.join().unwrap();
            }
            // Outstanding accepts are cancelled by the drop, and the
            // listener then closes: nothing leaks (the report is clean).
            drop(accepts);
            listener.close().await.expect("close listener");
        });
    });
}

/// Depth 0 is refused; aborting the registration's sockets (what a
/// driver's Unload does) fails the outstanding accepts and ends the stream.
#[test]
fn an_accept_queue_ends_when_its_listener_is_aborted() {
    each_policy(|env, _| {
        block_on(async {
            let listener = ListenSocket::bind(env.provider(), loopback(false))
                .await
                .expect("bind");
            assert_eq!(
                listener.accept_queue(0).expect_err("depth 0").status(),
                STATUS_INVALID_PARAMETER
            );
            let mut accepts = listener.accept_queue(3).expect("queue");
            {
                let mut first = std::pin::pin!(next(&mut accepts));
                assert!(poll_once(&mut first).is_pending());
            }
            assert_eq!(accepts.outstanding(), 3);
            env.registration.as_ref().unwrap().abort_all().await;
            let mut errors = 0;
            while let Some(item) = next(&mut accepts).await {
                let error = item.expect_err("only failures after the abort");
                assert!(
                    error.status() == STATUS_CANCELLED
                        || error.status() == STATUS_FILE_FORCED_CLOSED,
                    "{:#x}",
                    error.status()
                );
                errors += 1;
            }
            assert!((1..=3).contains(&errors), "{errors} errors, then the end");
            assert_eq!(accepts.outstanding(), 0);
            drop(accepts);
            drop(listener);
        });
    });
}
