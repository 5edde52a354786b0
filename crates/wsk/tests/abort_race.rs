//! `Registration` dropped (it aborts every socket still open) while a
//! socket's close is completing on the provider's thread: the aborter and
//! the close completion each give up their hold on the socket's block, and
//! whoever is last frees it. A hold given up in one critical section and
//! acted on in another lets the other side free the block in between; the
//! aborter then locks freed pool (0xCC under special pool: the process
//! stops). Schedule perturbation that sleeps at every sim API boundary (the
//! spin-lock release between the two sections is one) makes that window
//! wide; pending completion puts the close's completion on the provider's
//! thread. The race is not forced: before the fix this test stopped the
//! process in about one run in five (and `NT_SIM=profile=strict,seed=4`
//! runs of `tests/tcp.rs` in two of three under load).

mod common;

use std::net::TcpListener;

use ::wsk::{CaptureWait, Connection, Registration};
use common::*;
use nt::sim::{CompletionPolicy, PoolPolicy, SchedulePolicy, Session, SimConfig};

#[test]
fn dropping_the_registration_while_a_close_completes_frees_each_socket_once() {
    for round in 0..64u64 {
        let config = SimConfig {
            seed: round,
            pool: PoolPolicy::Special,
            completion: CompletionPolicy::ForcePending,
            schedule: SchedulePolicy::Perturb {
                yield_per_million: 0,
                delay_per_million: 1_000_000,
                max_delay_us: 300,
            },
            ..SimConfig::from_env()
        };
        let session = Session::boot_config(config);
        let registration = Registration::new().expect("WskRegister");
        let provider = registration.capture(CaptureWait::NoWait).expect("capture");
        let server = TcpListener::bind(loopback(false)).unwrap();
        let address = server.local_addr().unwrap();
        let connection = block_on(Connection::connect(&provider, address)).expect("connect");
        let (_peer, _) = server.accept().unwrap();
        // The handle's drop starts a detached close; the registration's
        // drop aborts the socket while that close completes.
        drop(connection);
        drop(provider);
        drop(registration);
        let report = session.finish();
        assert!(report.is_clean(), "round {round}:\n{report}");
    }
}
