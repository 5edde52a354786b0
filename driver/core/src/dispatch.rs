//! The control device's dispatch routines (PASSIVE_LEVEL, the caller's
//! thread): create, cleanup and close succeed; device control serves the
//! METHOD_BUFFERED IOCTLs of [`echo_ioctl`], validating every buffer
//! length before touching the system buffer.

use echo_ioctl::{
    AF_INET, AF_INET6, DatagramHeader, IOCTL_ECHO_GET_STATISTICS, IOCTL_ECHO_RECEIVE_DATAGRAM,
    IOCTL_ECHO_RESET_STATISTICS, MAX_DATAGRAM_OUTPUT, Statistics,
};
use nt::access::*;
use nt::*;

use crate::driver::shared_of;
use crate::receive;

/// Completes an IRP we own with `status` and `information`; returns
/// `status` (what the dispatch routine returns).
///
/// # Safety
/// `irp` was passed to our dispatch routine and is completed once, here.
unsafe fn finish(irp: PIRP, status: NTSTATUS, information: usize) -> NTSTATUS {
    // SAFETY: the caller's contract: a live IRP of ours.
    unsafe { set_irp_status(irp, status) };
    // SAFETY: as above.
    unsafe { set_irp_information(irp, information as ULONG_PTR) };
    // SAFETY: as above; completed once.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
    status
}

/// `IRP_MJ_CREATE`, `IRP_MJ_CLEANUP`, `IRP_MJ_CLOSE`: nothing to do per
/// handle.
///
/// # Safety
/// Called by the I/O manager with our device and an IRP for it.
pub unsafe extern "C" fn create_close(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: an IRP sent to us, completed once.
    unsafe { finish(irp, STATUS_SUCCESS, 0) }
}

/// `IRP_MJ_DEVICE_CONTROL`.
///
/// # Safety
/// Called by the I/O manager with our device and an IRP for it, at
/// PASSIVE_LEVEL.
pub unsafe extern "C" fn device_control(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: our device, whose extension holds the driver's state from
    // DriverEntry until Unload (no IRP reaches it outside that window).
    let shared = unsafe { shared_of(device) };
    // SAFETY: an IRP sent to us: our location is current.
    let sl = unsafe { IoGetCurrentIrpStackLocation(irp) };
    // SAFETY: our live stack location.
    let code = unsafe { sl_ioctl_code(sl) };
    // SAFETY: as above.
    let input = unsafe { sl_input_buffer_length(sl) } as usize;
    // SAFETY: as above.
    let output = unsafe { sl_output_buffer_length(sl) } as usize;
    // SAFETY: METHOD_BUFFERED (every code we serve): the system buffer
    // holds max(input, output) bytes, NULL when both are 0.
    let buffer = unsafe { irp_system_buffer(irp) }.cast::<u8>();
    match code {
        IOCTL_ECHO_GET_STATISTICS => {
            if input != 0 {
                // SAFETY: ours, completed once.
                return unsafe { finish(irp, STATUS_INVALID_PARAMETER, 0) };
            }
            if output < Statistics::SIZE || buffer.is_null() {
                // SAFETY: ours, completed once.
                return unsafe { finish(irp, STATUS_BUFFER_TOO_SMALL, 0) };
            }
            #[cfg(feature = "faults")]
            if shared.config.fault == crate::faults::Fault::LeakOnIoctl && output > Statistics::SIZE
            {
                // Fault 1: a block allocated on this path and never freed.
                // SAFETY: PASSIVE_LEVEL; the block is leaked on purpose.
                let _ = unsafe {
                    ExAllocatePool2(POOL_FLAG_NON_PAGED, 32, u32::from_le_bytes(*b"Lk!!"))
                };
            }
            let record = shared
                .stats
                .snapshot(&shared.spawner.counters(), &shared.config);
            // SAFETY: the system buffer holds at least `output` >=
            // Statistics::SIZE bytes, ours until we complete the IRP.
            let out = unsafe { core::slice::from_raw_parts_mut(buffer, Statistics::SIZE) };
            let written = record.encode(out).unwrap_or(0);
            // SAFETY: ours, completed once.
            unsafe { finish(irp, STATUS_SUCCESS, written) }
        }
        IOCTL_ECHO_RESET_STATISTICS => {
            if input != 0 || output != 0 {
                // SAFETY: ours, completed once.
                return unsafe { finish(irp, STATUS_INVALID_PARAMETER, 0) };
            }
            shared.stats.reset();
            #[cfg(feature = "faults")]
            if shared.config.fault == crate::faults::Fault::DoubleCompletion {
                // Fault 2: completed twice.
                // SAFETY: ours; the first completion of two (on purpose).
                unsafe { set_irp_status(irp, STATUS_SUCCESS) };
                // SAFETY: as above.
                unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
            }
            // SAFETY: ours, completed once.
            unsafe { finish(irp, STATUS_SUCCESS, 0) }
        }
        IOCTL_ECHO_RECEIVE_DATAGRAM => {
            // Input: nothing (IPv4), or a USHORT address family.
            let slot = match input {
                0 => Some(0),
                2 if !buffer.is_null() => {
                    // SAFETY: the system buffer holds the 2 input bytes.
                    let input = unsafe { core::slice::from_raw_parts(buffer, 2) };
                    let family = u16::from_le_bytes([input[0], input[1]]);
                    match family {
                        AF_INET => Some(0),
                        AF_INET6 => Some(1),
                        _ => None,
                    }
                }
                _ => None,
            };
            let Some(slot) = slot else {
                // SAFETY: ours, completed once.
                return unsafe { finish(irp, STATUS_INVALID_PARAMETER, 0) };
            };
            if output < DatagramHeader::SIZE || buffer.is_null() {
                // SAFETY: ours, completed once.
                return unsafe { finish(irp, STATUS_BUFFER_TOO_SMALL, 0) };
            }
            if output > MAX_DATAGRAM_OUTPUT {
                // SAFETY: ours, completed once.
                return unsafe { finish(irp, STATUS_INVALID_PARAMETER, 0) };
            }
            #[cfg(feature = "faults")]
            if shared.config.fault == crate::faults::Fault::PendingIrp {
                // Fault 3: parked with no cancel routine, never completed.
                // SAFETY: our stack location is current.
                unsafe { IoMarkIrpPending(irp) };
                return STATUS_PENDING;
            }
            // SAFETY: passed to us, METHOD_BUFFERED with `output` bytes of
            // system buffer, our location current, our device's stack
            // size leaves WSK a location (DriverEntry); we give the IRP up
            // and return start's status.
            unsafe { receive::start(shared, device, irp, output, slot) }
        }
        // SAFETY: ours, completed once.
        _ => unsafe { finish(irp, STATUS_INVALID_DEVICE_REQUEST, 0) },
    }
}
