//! Faults and the simulated WSK provider: low resources (pool, IRP and MDL
//! fault plans) during provider work give errors, never a bugcheck or a
//! leak; network faults (reset, abort, slow peer) injected into
//! connections give the documented statuses and keep data intact.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nt::sim::wsk::{
    SocketFault, inject_socket_fault, set_connection_fault, socket_bytes_received, stats,
};
use nt::sim::{CompletionPolicy, FaultPlan, FaultTarget, Session, SplitMix64};
use nt::wsk::*;
use nt::*;
use wsk_client::*;

fn accepted_pair(client: &Client) -> (PWSK_SOCKET, PWSK_SOCKET, TcpStream) {
    let (listener, address) =
        client.listener(loopback(false), core::ptr::null_mut(), core::ptr::null());
    let peer = TcpStream::connect(address).unwrap();
    let (socket, _, _) = accept(listener).expect("WskAccept");
    note_kind(socket, WSK_FLAG_CONNECTION_SOCKET);
    (listener, socket, peer)
}

#[test]
fn out_of_pool_the_provider_fails_requests_instead_of_crashing() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_pair(&client);
        let listener_address = local_address(listener).unwrap();
        // The client's own buffers exist before pool runs out.
        let (first, second) = (Buffer::new(8), Buffer::new(4));
        session.set_fault(FaultTarget::Pool, FaultPlan::Always);
        // No socket object, no queued request.
        assert_eq!(
            client
                .socket(
                    AF_INET,
                    WSK_FLAG_CONNECTION_SOCKET,
                    core::ptr::null_mut(),
                    core::ptr::null()
                )
                .unwrap_err(),
            STATUS_INSUFFICIENT_RESOURCES
        );
        let (status, _) = start_receive_in(socket, first, 0).finish();
        assert_eq!(status, STATUS_INSUFFICIENT_RESOURCES);
        // A connection arriving now cannot get its socket: the accept that
        // waits for it fails and the connection is reset.
        session.set_fault(FaultTarget::Pool, FaultPlan::Never);
        let waiting = start_accept(listener, core::ptr::null_mut(), core::ptr::null());
        session.set_fault(FaultTarget::Pool, FaultPlan::Always);
        let mut refused = TcpStream::connect(listener_address).unwrap();
        assert_eq!(waiting.finish().unwrap_err(), STATUS_INSUFFICIENT_RESOURCES);
        let mut buf = [0u8; 1];
        let read = refused.read(&mut buf);
        assert!(
            matches!(&read, Err(e) if e.kind() == ErrorKind::ConnectionReset)
                || matches!(read, Ok(0)),
            "{read:?}"
        );
        // Requests the provider can finish at once still work.
        peer.write_all(b"data").unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let (status, data) = start_receive_in(socket, second, WSK_FLAG_WAITALL).finish();
        assert_eq!((status, data.as_slice()), (STATUS_SUCCESS, &b"data"[..]));
        session.set_fault(FaultTarget::Pool, FaultPlan::Never);
        assert!(session.injected_faults(FaultTarget::Pool) >= 3);
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

static INDICATED: AtomicU32 = AtomicU32::new(0);
static RECEIVED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

unsafe extern "C" fn collect(
    _context: PVOID,
    _flags: ULONG,
    indication: PWSK_DATA_INDICATION,
    _indicated: SIZE_T,
    _accepted: *mut SIZE_T,
) -> NTSTATUS {
    if !indication.is_null() {
        INDICATED.fetch_add(1, Ordering::SeqCst);
        RECEIVED
            .lock()
            .unwrap()
            .extend(read_data_indication(indication));
    }
    STATUS_SUCCESS
}

static COLLECT: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(collect),
    WskDisconnectEvent: None,
    WskSendBacklogEvent: None,
};

#[test]
fn indications_refused_by_the_mdl_plan_are_retried() {
    let session = Session::boot();
    let client = Client::register();
    let (listener, address) =
        client.listener(loopback(false), core::ptr::null_mut(), core::ptr::null());
    let mut peer = TcpStream::connect(address).unwrap();
    let (socket, _, _) = start_accept(listener, core::ptr::null_mut(), &COLLECT)
        .finish()
        .unwrap();
    session.set_fault(FaultTarget::Mdl, FaultPlan::EveryNth(2));
    assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
    let message: Vec<u8> = (0..50_000u32).map(|i| (i * 7) as u8).collect();
    for chunk in message.chunks(5000) {
        peer.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    eventually("all data despite refused MDLs", || {
        RECEIVED.lock().unwrap().len() == message.len()
    });
    assert!(*RECEIVED.lock().unwrap() == message);
    assert!(session.injected_faults(FaultTarget::Mdl) > 0);
    session.set_fault(FaultTarget::Mdl, FaultPlan::Never);
    assert_eq!(close(socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn injected_reset_and_abort_fail_requests_and_reach_the_peer() {
    for (fault, status) in [
        (SocketFault::Reset, STATUS_CONNECTION_RESET),
        (SocketFault::Abort, STATUS_CONNECTION_ABORTED),
    ] {
        for policy in POLICIES {
            let session = session(policy);
            let client = Client::register();
            let (listener, socket, mut peer) = accepted_pair(&client);
            let pending = start_receive(socket, 64, WSK_FLAG_WAITALL);
            peer.write_all(b"partial").unwrap();
            // The fault must land after the transport received the bytes
            // (a fixed sleep lost that race on a loaded machine).
            eventually("the provider read the partial data", || {
                socket_bytes_received(&session, socket) == Some(7)
            });
            assert!(inject_socket_fault(&session, socket, fault));
            let (got, data) = pending.finish();
            assert_eq!(got, status);
            assert_eq!(data, b"partial", "bytes already received are reported");
            assert_eq!(send(socket, b"x"), Err(status));
            let mut buf = [0u8; 1];
            let read = peer.read(&mut buf);
            assert!(
                matches!(&read, Err(e) if e.kind() == ErrorKind::ConnectionReset),
                "{read:?}"
            );
            assert_eq!(close(socket), STATUS_SUCCESS);
            assert!(
                !inject_socket_fault(&session, socket, fault),
                "closed socket"
            );
            assert_eq!(close(listener), STATUS_SUCCESS);
            client.deregister();
            finish(session);
        }
    }
}

#[test]
fn a_slow_peer_keeps_every_byte_in_order() {
    for policy in POLICIES {
        let session = session(policy);
        set_connection_fault(
            &session,
            Some(SocketFault::Slow {
                chunk: 4096,
                interval: Duration::from_millis(1),
            }),
        );
        let client = Client::register();
        let (listener, socket, peer) = accepted_pair(&client);
        let size = 96 * 1024;
        let incoming: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let outgoing: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
        let mut writer = peer.try_clone().unwrap();
        let to_write = incoming.clone();
        let writer = std::thread::spawn(move || writer.write_all(&to_write).unwrap());
        let mut reader = peer.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; size];
            reader.read_exact(&mut got).unwrap();
            got
        });
        let sending = start_send(socket, Buffer::from_bytes(&outgoing));
        let data = receive(socket, size, WSK_FLAG_WAITALL).unwrap();
        assert!(data == incoming, "received bytes differ");
        let (status, sent) = sending.request.finish(sending.returned);
        assert_eq!((status, sent), (STATUS_SUCCESS, size as u64));
        drop(sending);
        assert!(reader.join().unwrap() == outgoing, "sent bytes differ");
        writer.join().unwrap();
        set_connection_fault(&session, None);
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn random_low_resources_during_echo_traffic_give_errors_never_bugchecks() {
    for seed in [1u64, 2, 3] {
        let session = session(CompletionPolicy::Mixed {
            pending_per_million: 500_000,
            seed,
        });
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_pair(&client);
        assert_eq!(
            set_option(socket, IPPROTO_TCP, TCP_NODELAY, 1),
            STATUS_SUCCESS
        );
        for (target, per_million) in [
            (FaultTarget::Pool, 150_000),
            (FaultTarget::Irp, 150_000),
            (FaultTarget::Mdl, 150_000),
        ] {
            session.set_fault(
                target,
                FaultPlan::Probability {
                    per_million,
                    seed: seed * 31 + per_million as u64,
                },
            );
        }
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Small request/response rounds: no Nagle/delayed-ACK stalls.
        peer.set_nodelay(true).unwrap();
        let mut rng = SplitMix64::new(seed);
        let (mut ok, mut failed) = (0u32, 0u32);
        for round in 0..60u32 {
            let len = 1 + (rng.next_u64() % 3000) as usize;
            let message: Vec<u8> = (0..len).map(|i| (i as u32 + round) as u8).collect();
            // Send through WSK (the IRP, MDL or pool may be refused).
            let sent = match Request::try_new() {
                Err(status) => Err(status),
                Ok(request) => match Buffer::try_chained(len, 1024) {
                    Err(status) => Err(status),
                    Ok(mut buffer) => {
                        buffer.bytes_mut().copy_from_slice(&message);
                        let mut request = request;
                        let irp = request.arm();
                        let mut buf = buffer.wsk_buf();
                        // SAFETY: the provider's WskSend with our IRP.
                        let returned = unsafe {
                            (connection(socket).WskSend.unwrap())(socket, &mut buf, 0, irp)
                        };
                        match request.finish(returned) {
                            (STATUS_SUCCESS, n) => Ok(n),
                            (status, _) => Err(status),
                        }
                    }
                },
            };
            match sent {
                Ok(n) => {
                    assert_eq!(n, len as u64);
                    let mut back = vec![0u8; len];
                    peer.read_exact(&mut back).unwrap();
                    assert_eq!(back, message);
                    ok += 1;
                }
                Err(status) => {
                    assert_eq!(status, STATUS_INSUFFICIENT_RESOURCES);
                    failed += 1;
                }
            }
            // And receive through WSK.
            peer.write_all(&message).unwrap();
            let mut got = Vec::new();
            let mut attempts = 0;
            while got.len() < len {
                attempts += 1;
                assert!(attempts < 1000, "no progress");
                let received = match (
                    Request::try_new(),
                    Buffer::try_chained(len - got.len(), 700),
                ) {
                    (Ok(mut request), Ok(buffer)) => {
                        let irp = request.arm();
                        let mut buf = buffer.wsk_buf();
                        // SAFETY: the provider's WskReceive with our IRP.
                        let returned = unsafe {
                            (connection(socket).WskReceive.unwrap())(socket, &mut buf, 0, irp)
                        };
                        let (status, n) = request.finish(returned);
                        (status, buffer.bytes()[..n as usize].to_vec())
                    }
                    _ => (STATUS_INSUFFICIENT_RESOURCES, Vec::new()),
                };
                match received {
                    (STATUS_SUCCESS, data) => got.extend(data),
                    (STATUS_INSUFFICIENT_RESOURCES, _) => failed += 1,
                    (status, _) => panic!("unexpected status {status:#x}"),
                }
            }
            assert_eq!(got, message);
        }
        assert!(ok > 0 && failed > 0, "ok {ok}, failed {failed}");
        for target in [FaultTarget::Pool, FaultTarget::Irp, FaultTarget::Mdl] {
            session.set_fault(target, FaultPlan::Never);
        }
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        assert_eq!(stats(&session).sockets_open, 0);
        client.deregister();
        finish(session);
    }
}
