//! Low resources during I/O: IRP, pool and MDL allocations fail (every Nth
//! call, or with a seeded probability) while connections are accepted,
//! echoed and closed, datagrams sent and received, and event queues used.
//! Every failure surfaces as an NTSTATUS error; no bugcheck, no leak (the
//! verifier report is clean), and I/O works again once the fault is off.
//! Both completion policies.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use ::wsk::{Connection, DatagramSocket, Disconnect, Error, ListenSocket, Provider};
use common::*;
use nt::sim::{FaultPlan, FaultTarget};
use nt::*;

#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    errors: usize,
    insufficient: usize,
}

impl Tally {
    fn note<T>(&mut self, result: &::wsk::Result<T>) {
        match result {
            Ok(_) => self.ok += 1,
            Err(error) => self.error(*error),
        }
    }

    fn error(&mut self, error: Error) {
        self.errors += 1;
        if error.status() == STATUS_INSUFFICIENT_RESOURCES {
            self.insufficient += 1;
        }
        assert!(
            !NT_SUCCESS(error.status()),
            "an error carries a failure status"
        );
    }
}

/// A std peer that sends `size` bytes, half-closes and reads until the end
/// (or an error, or two seconds of silence).
fn peer(address: ::wsk::SocketAddr, size: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let Ok(mut stream) = TcpStream::connect(address) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let _ = stream.write_all(&pattern(size, 5));
        let _ = stream.shutdown(Shutdown::Write);
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    })
}

async fn echo(connection: &Connection, tally: &mut Tally) {
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        let (received, b) = connection.receive(buf).await;
        match received {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => return tally.error(error),
        }
        let (sent, mut b) = connection.send(b).await;
        if let Err(error) = sent {
            return tally.error(error);
        }
        b.clear();
        buf = b;
    }
    tally.note(&connection.disconnect(Disconnect::Graceful).await);
}

/// One round of everything; each step may fail.
async fn workload(provider: &Provider, tally: &mut Tally) {
    // TCP, functions style.
    let listener = ListenSocket::bind(provider, loopback(false)).await;
    tally.note(&listener);
    if let Ok(listener) = listener {
        let address = listener.local_address().await;
        tally.note(&address);
        if let Ok(address) = address {
            let peer = peer(address, 24 * 1024);
            let accepted = listener.accept().await;
            tally.note(&accepted);
            if let Ok(accepted) = accepted {
                echo(&accepted.connection, tally).await;
                tally.note(&accepted.connection.close().await);
            }
            // Callbacks style on a second connection.
            let second = peer_address_echo(address);
            match listener.accept().await {
                Ok(accepted) => {
                    match accepted.connection.receive_events(2) {
                        Ok(mut events) => {
                            while let Some(item) = next(&mut events).await {
                                match item {
                                    Ok(indication) => drop(indication),
                                    Err(error) => {
                                        tally.error(error);
                                        break;
                                    }
                                }
                            }
                        }
                        Err(error) => tally.error(error),
                    }
                    drop(accepted);
                }
                Err(error) => tally.error(error),
            }
            // Close first: a peer whose connection was never accepted
            // waits in the backlog until then.
            tally.note(&listener.close().await);
            peer.join().unwrap();
            second.join().unwrap();
        } else {
            tally.note(&listener.close().await);
        }
    }
    // Datagrams through a receive queue.
    let socket = DatagramSocket::bind(provider, loopback(false)).await;
    tally.note(&socket);
    if let Ok(socket) = socket {
        let local = socket.local_address().await;
        tally.note(&local);
        if let Ok(local) = local {
            let sender = UdpSocket::bind(loopback(false)).unwrap();
            match socket.into_receive_queue((0..4).map(|_| Vec::with_capacity(512))) {
                Ok(mut queue) => {
                    for i in 0..8u8 {
                        sender.send_to(&[i; 100], local).unwrap();
                    }
                    for _ in 0..8 {
                        match next(&mut queue).await {
                            Some(Ok(received)) => queue.recycle(received),
                            Some(Err(error)) => {
                                tally.error(error);
                                break;
                            }
                            None => break,
                        }
                    }
                    match queue.close().await {
                        Ok(_) => tally.ok += 1,
                        Err(error) => tally.error(error),
                    }
                }
                Err(failed) => {
                    // The socket comes back with the buffers: close it.
                    tally.error(failed.error);
                    tally.note(&failed.socket.close().await);
                }
            }
        } else {
            tally.note(&socket.close().await);
        }
    }
}

fn peer_address_echo(address: ::wsk::SocketAddr) -> thread::JoinHandle<()> {
    peer(address, 4 * 1024)
}

fn run_with(target: FaultTarget, plan: FaultPlan) {
    each_policy(|env, policy| {
        let mut tally = Tally::default();
        env.session.set_fault(target, plan);
        block_on(async {
            for _ in 0..6 {
                workload(env.provider(), &mut tally).await;
            }
        });
        let injected = env.session.injected_faults(target);
        env.session.set_fault(target, FaultPlan::Never);
        assert!(injected > 0, "{target:?} {policy:?}: no fault injected");
        assert!(
            tally.errors > 0,
            "{target:?} {policy:?}: faults but no error: {tally:?}"
        );
        // Recovered: a clean round succeeds in full.
        let mut clean = Tally::default();
        block_on(workload(env.provider(), &mut clean));
        assert_eq!(
            clean.errors, 0,
            "{target:?} {policy:?}: errors after the fault: {clean:?}"
        );
    });
}

#[test]
fn irp_allocation_failures_during_io() {
    run_with(FaultTarget::Irp, FaultPlan::EveryNth(5));
}

#[test]
fn pool_allocation_failures_during_io() {
    run_with(
        FaultTarget::Pool,
        FaultPlan::Probability {
            per_million: 150_000,
            seed: 42,
        },
    );
}

#[test]
fn mdl_allocation_failures_during_io() {
    run_with(FaultTarget::Mdl, FaultPlan::EveryNth(3));
}
