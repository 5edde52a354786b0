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

/// The fuzz tests only test the driver if the simulated I/O manager
/// refuses what `NtDeviceIoControlFile` refuses before any IRP exists: a
/// buffer that fails the probe is STATUS_ACCESS_VIOLATION and the driver
/// never sees the call; a zero length is never probed, whatever the
/// pointer; the access bits of the code are checked against the handle.
#[test]
fn bad_user_buffers_are_refused_before_the_driver() {
    use echo_ioctl::{IOCTL_ECHO_GET_STATISTICS, IOCTL_ECHO_RESET_STATISTICS, Statistics};
    use nt::sim::{HarnessError, UserBuffer};

    let coverage = Arc::new(smoke::coverage::Coverage::default());
    let mut machine = Machine::boot(nt::sim::SimConfig::default(), &[], coverage);
    machine.load().unwrap();
    let session = Arc::clone(machine.session());
    let handle = machine.open().unwrap();
    let call = |input: UserBuffer<'_>, output: UserBuffer<'_>| {
        session
            .ioctl_user(&handle, IOCTL_ECHO_GET_STATISTICS, input, output)
            .and_then(|p| p.wait(Duration::from_secs(10)))
    };
    for output in [
        UserBuffer::Null(Statistics::SIZE),
        UserBuffer::KernelAddress(Statistics::SIZE),
        UserBuffer::Unmapped(Statistics::SIZE),
    ] {
        assert_eq!(
            call(UserBuffer::Data(&[]), output),
            Err(HarnessError::Status(nt::STATUS_ACCESS_VIOLATION)),
            "{output:?}"
        );
    }
    assert_eq!(
        call(
            UserBuffer::Unmapped(4),
            UserBuffer::Output(Statistics::SIZE)
        ),
        Err(HarnessError::Status(nt::STATUS_ACCESS_VIOLATION))
    );
    // Zero lengths: not probed, so the driver answers (too small).
    let r = call(UserBuffer::KernelAddress(0), UserBuffer::KernelAddress(0)).unwrap();
    assert_eq!(r.status, nt::STATUS_BUFFER_TOO_SMALL);
    // A valid call succeeds with the record.
    let r = call(UserBuffer::Data(&[]), UserBuffer::Output(Statistics::SIZE)).unwrap();
    assert_eq!(r.status, nt::STATUS_SUCCESS);
    assert_eq!(r.output.len(), Statistics::SIZE);
    // Access bits: the reset code needs write access.
    let readonly = session
        .open_with_access(echo_ioctl::DOS_DEVICE_NAME, nt::FILE_READ_DATA)
        .unwrap();
    let denied = session.ioctl_user(
        &readonly,
        IOCTL_ECHO_RESET_STATISTICS,
        UserBuffer::Data(&[]),
        UserBuffer::Output(0),
    );
    assert!(matches!(
        denied,
        Err(HarnessError::Status(nt::STATUS_ACCESS_DENIED))
    ));
    session.close(readonly).unwrap();
    machine.close(handle).unwrap();
    machine.finish().unwrap();
}
