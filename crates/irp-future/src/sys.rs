//! The kernel calls the operation code makes, in one place: `nt`'s
//! functions normally, and under `--cfg loom` the fakes of
//! [`crate::loom_irp`], so that the loom models drive the crate's real
//! completion routine, drop, cancel and release code (not a copy of it)
//! against an IRP whose every use loom checks.

#[cfg(not(loom))]
pub(crate) use nt::access::{
    irp_current_location, irp_information, irp_pending_returned, irp_status, set_irp_information,
    set_irp_status,
};
#[cfg(not(loom))]
pub(crate) use nt::{
    ExAllocatePool2, ExFreePoolWithTag, IoAllocateIrp, IoCancelIrp, IoCompleteRequest,
    IoCopyCurrentIrpStackLocationToNext, IoFreeIrp, IoInitializeIrp, IoMarkIrpPending, IoReuseIrp,
    IoSetCompletionRoutine, IoSetCompletionRoutineEx, IoSizeOfIrp,
};

#[cfg(loom)]
pub(crate) use crate::loom_irp::fake::*;
