//! Regressions the smoke suite found, pinned as plain tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use smoke::machine::Machine;
use smoke::traffic::Streamer;

/// io-process-termination found it: a peer that streams, stops reading
/// and resets left the driver's connection open for ever. The driver's
/// send waited for acknowledgements the reset peer will never send: the
/// simulated provider watched only the host's count of unacknowledged
/// bytes (TIOCOUTQ), which Linux keeps after a reset, and nothing read
/// the socket (no receive pending while the echo is sent) to see the
/// reset. On Windows the pending WskSend completes with
/// STATUS_CONNECTION_RESET and the driver closes the connection.
#[test]
fn a_connection_reset_by_a_peer_that_stopped_reading_is_closed() {
    let coverage = Arc::new(smoke::coverage::Coverage::default());
    let mut machine = Machine::boot(nt::sim::SimConfig::default(), &[], coverage);
    machine.load().unwrap();
    for id in 0..4 {
        // Even ids read their echo until the reset, odd ones never do.
        let stream = Streamer::start(machine.tcp, id, 4096, id % 2 == 0).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        stream.reset();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = machine.stats().unwrap();
        if stats.connections_current == 0 {
            assert_eq!(stats.connections_aborted, 4, "{stats:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reset connections still open in the driver: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    machine.finish().unwrap();
}
