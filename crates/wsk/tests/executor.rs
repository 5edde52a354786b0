//! The sockets driven by kernel-executor, as a driver runs them: an accept
//! loop task spawning one task per connection, the completions and event
//! callbacks waking the tasks from provider threads at DISPATCH_LEVEL. In
//! functions style (a receive queue of depth 2) and in callbacks style
//! (accept and receive events). The executor shuts down cleanly after the
//! work, and the session's report is clean. Both completion policies.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

use ::wsk::{Connection, Disconnect, ListenSocket, SocketAddr};
use common::*;
use kernel_executor::{Executor, JoinHandle, Spawner};

const CONNECTIONS: usize = 40;
const SIZE: usize = 40 * 1024;

fn peers(address: SocketAddr) -> Vec<thread::JoinHandle<()>> {
    (0..CONNECTIONS)
        .map(|i| {
            thread::spawn(move || {
                let mut stream = TcpStream::connect(address).unwrap();
                let data = pattern(SIZE, i as u64);
                let mut writer = stream.try_clone().unwrap();
                let send = {
                    let data = data.clone();
                    thread::spawn(move || {
                        writer.write_all(&data).unwrap();
                        writer.shutdown(Shutdown::Write).unwrap();
                    })
                };
                let mut back = Vec::new();
                stream.read_to_end(&mut back).unwrap();
                send.join().unwrap();
                assert!(back == data, "connection {i}: bad echo");
            })
        })
        .collect()
}

/// Functions style: a receive queue of depth 2 per connection.
async fn echo_queue(connection: Connection) -> usize {
    let mut queue = connection
        .into_receive_queue((0..2).map(|_| Vec::with_capacity(8 * 1024)))
        .expect("queue");
    let mut total = 0;
    while let Some(received) = next(&mut queue).await {
        let received = received.expect("receive");
        let (sent, buf) = queue.socket().send(received.data().to_vec()).await;
        total += sent.expect("send");
        drop(buf);
        queue.recycle(received);
    }
    queue
        .socket()
        .disconnect(Disconnect::Graceful)
        .await
        .expect("disconnect");
    queue.close().await.expect("close");
    total
}

/// Callbacks style: received data as indications, copied out and sent.
async fn echo_events(connection: Connection) -> usize {
    let mut total = 0;
    {
        let mut events = connection.receive_events(8).expect("receive events");
        while let Some(indication) = next(&mut events).await {
            let indication = indication.expect("data");
            let mut data = vec![0u8; indication.len()];
            indication.copy_to(&mut data);
            drop(indication);
            let (sent, _) = connection.send(data).await;
            total += sent.expect("send");
        }
    }
    connection
        .disconnect(Disconnect::Graceful)
        .await
        .expect("disconnect");
    connection.close().await.expect("close");
    total
}

async fn serve(listener: ListenSocket, spawner: Spawner, callbacks: bool) -> usize {
    let mut tasks: Vec<JoinHandle<usize>> = Vec::new();
    if callbacks {
        // Room for every peer: a full queue would refuse (reset) connections.
        let mut accepts = listener.accept_events(CONNECTIONS).expect("accept events");
        while tasks.len() < CONNECTIONS {
            let accepted = next(&mut accepts).await.unwrap().expect("accepted");
            let task = spawner.spawn(echo_events(accepted.connection));
            tasks.push(task.unwrap_or_else(|_| panic!("spawn")));
        }
    } else {
        while tasks.len() < CONNECTIONS {
            let accepted = listener.accept().await.expect("accept");
            let task = spawner.spawn(echo_queue(accepted.connection));
            tasks.push(task.unwrap_or_else(|_| panic!("spawn")));
        }
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("task");
    }
    listener.close().await.expect("close listener");
    total
}

fn run(callbacks: bool) {
    each_policy(|env, _| {
        let executor = Executor::start().expect("executor");
        let listener = block_on(ListenSocket::bind(env.provider(), loopback(false))).expect("bind");
        let address = block_on(listener.local_address()).unwrap();
        let peers = peers(address);
        let server = executor
            .spawn(serve(listener, executor.spawner(), callbacks))
            .unwrap_or_else(|_| panic!("spawn"));
        let total = kernel_executor::block_on(server)
            .expect("block_on")
            .expect("server task");
        assert_eq!(total, CONNECTIONS * SIZE);
        for peer in peers {
            peer.join().unwrap();
        }
        let counters = executor.shutdown();
        assert_eq!(counters.completed as usize, CONNECTIONS + 1);
    });
}

#[test]
fn echo_server_on_kernel_executor_functions_style() {
    run(false);
}

#[test]
fn echo_server_on_kernel_executor_callbacks_style() {
    run(true);
}
