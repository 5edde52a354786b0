//! The seam's function contract, checked at compile time: every WDK
//! function and accessor `nt` exports, with the WDK's signature written in
//! `nt`'s own type names. For each entry a never-called function calls the
//! export through its public path with arguments of exactly those types
//! and returns its result as exactly that type, so a wrong name, parameter
//! type, parameter count or return type is a compile error here.
//!
//! The file names nothing of either backend, only `crate::` paths: the sim
//! face can compile the same file (`#[path]`) to prove it offers the same
//! signatures.
#![allow(dead_code, non_snake_case, clippy::too_many_arguments)]

use crate::*;

/// One checking function per entry, calling `$module::$name` (`$module`:
/// an alias of the public module that exports the item).
macro_rules! contract {
    ($module:ident { $( fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)? ; )* }) => {
        $(
            fn $name($($arg: $ty),*) $(-> $ret)? {
                // SAFETY: never called; it exists to type-check the call.
                unsafe { $module::$name($($arg),*) }
            }
        )*
    };
}

mod wdk {
    use super::*;
    use crate as nt;

    contract!(nt {
        // Io
        fn IoAllocateIrp(StackSize: CCHAR, ChargeQuota: BOOLEAN) -> PIRP;
        fn IoFreeIrp(Irp: PIRP);
        fn IoReuseIrp(Irp: PIRP, Iostatus: NTSTATUS);
        fn IoInitializeIrp(Irp: PIRP, PacketSize: USHORT, StackSize: CCHAR);
        fn IoSetCompletionRoutine(
            Irp: PIRP,
            CompletionRoutine: PIO_COMPLETION_ROUTINE,
            Context: PVOID,
            InvokeOnSuccess: BOOLEAN,
            InvokeOnError: BOOLEAN,
            InvokeOnCancel: BOOLEAN,
        );
        fn IoSetCompletionRoutineEx(
            DeviceObject: PDEVICE_OBJECT,
            Irp: PIRP,
            CompletionRoutine: PIO_COMPLETION_ROUTINE,
            Context: PVOID,
            InvokeOnSuccess: BOOLEAN,
            InvokeOnError: BOOLEAN,
            InvokeOnCancel: BOOLEAN,
        ) -> NTSTATUS;
        fn IoGetCurrentIrpStackLocation(Irp: PIRP) -> PIO_STACK_LOCATION;
        fn IoGetNextIrpStackLocation(Irp: PIRP) -> PIO_STACK_LOCATION;
        fn IoSetNextIrpStackLocation(Irp: PIRP);
        fn IoSkipCurrentIrpStackLocation(Irp: PIRP);
        fn IoCopyCurrentIrpStackLocationToNext(Irp: PIRP);
        fn IoMarkIrpPending(Irp: PIRP);
        fn IoCallDriver(DeviceObject: PDEVICE_OBJECT, Irp: PIRP) -> NTSTATUS;
        fn IofCallDriver(DeviceObject: PDEVICE_OBJECT, Irp: PIRP) -> NTSTATUS;
        fn IoCompleteRequest(Irp: PIRP, PriorityBoost: CCHAR);
        fn IofCompleteRequest(Irp: PIRP, PriorityBoost: CCHAR);
        fn IoCancelIrp(Irp: PIRP) -> BOOLEAN;
        fn IoSetCancelRoutine(Irp: PIRP, CancelRoutine: PDRIVER_CANCEL) -> PDRIVER_CANCEL;
        fn IoAcquireCancelSpinLock(Irql: PKIRQL);
        fn IoReleaseCancelSpinLock(Irql: KIRQL);
        fn IoCreateDevice(
            DriverObject: PDRIVER_OBJECT,
            DeviceExtensionSize: ULONG,
            DeviceName: PUNICODE_STRING,
            DeviceType: DEVICE_TYPE,
            DeviceCharacteristics: ULONG,
            Exclusive: BOOLEAN,
            DeviceObject: *mut PDEVICE_OBJECT,
        ) -> NTSTATUS;
        fn IoDeleteDevice(DeviceObject: PDEVICE_OBJECT);
        fn IoCreateSymbolicLink(
            SymbolicLinkName: PUNICODE_STRING,
            DeviceName: PUNICODE_STRING,
        ) -> NTSTATUS;
        fn IoDeleteSymbolicLink(SymbolicLinkName: PUNICODE_STRING) -> NTSTATUS;
        fn IoAllocateWorkItem(DeviceObject: PDEVICE_OBJECT) -> PIO_WORKITEM;
        fn IoQueueWorkItem(
            IoWorkItem: PIO_WORKITEM,
            WorkerRoutine: PIO_WORKITEM_ROUTINE,
            QueueType: WORK_QUEUE_TYPE,
            Context: PVOID,
        );
        fn IoFreeWorkItem(IoWorkItem: PIO_WORKITEM);
        fn IoAllocateMdl(
            VirtualAddress: PVOID,
            Length: ULONG,
            SecondaryBuffer: BOOLEAN,
            ChargeQuota: BOOLEAN,
            Irp: PIRP,
        ) -> PMDL;
        fn IoFreeMdl(Mdl: PMDL);
        // Ke
        fn KeGetCurrentIrql() -> KIRQL;
        fn KfRaiseIrql(NewIrql: KIRQL) -> KIRQL;
        fn KeRaiseIrql(NewIrql: KIRQL, OldIrql: PKIRQL);
        fn KeRaiseIrqlToDpcLevel() -> KIRQL;
        fn KeLowerIrql(NewIrql: KIRQL);
        fn KeInitializeEvent(Event: PRKEVENT, Type: EVENT_TYPE, State: BOOLEAN);
        fn KeSetEvent(Event: PRKEVENT, Increment: KPRIORITY, Wait: BOOLEAN) -> LONG;
        fn KeResetEvent(Event: PRKEVENT) -> LONG;
        fn KeClearEvent(Event: PRKEVENT);
        fn KeReadStateEvent(Event: PRKEVENT) -> LONG;
        fn KeQuerySystemTimePrecise(CurrentTime: PLARGE_INTEGER);
        fn KeWaitForSingleObject(
            Object: PVOID,
            WaitReason: KWAIT_REASON,
            WaitMode: KPROCESSOR_MODE,
            Alertable: BOOLEAN,
            Timeout: PLARGE_INTEGER,
        ) -> NTSTATUS;
        fn KeInitializeSpinLock(SpinLock: PKSPIN_LOCK);
        fn KeAcquireSpinLockRaiseToDpc(SpinLock: PKSPIN_LOCK) -> KIRQL;
        fn KeAcquireSpinLock(SpinLock: PKSPIN_LOCK, OldIrql: PKIRQL);
        fn KeReleaseSpinLock(SpinLock: PKSPIN_LOCK, NewIrql: KIRQL);
        fn KeAcquireSpinLockAtDpcLevel(SpinLock: PKSPIN_LOCK);
        fn KeReleaseSpinLockFromDpcLevel(SpinLock: PKSPIN_LOCK);
        fn KeDelayExecutionThread(
            WaitMode: KPROCESSOR_MODE,
            Alertable: BOOLEAN,
            Interval: PLARGE_INTEGER,
        ) -> NTSTATUS;
        // Ex
        fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;
        fn ExFreePool(P: PVOID);
        fn ExFreePoolWithTag(P: PVOID, Tag: ULONG);
        // Mm
        fn MmBuildMdlForNonPagedPool(MemoryDescriptorList: PMDL);
        fn MmGetSystemAddressForMdlSafe(Mdl: PMDL, Priority: ULONG) -> PVOID;
        fn MmGetMdlByteCount(Mdl: PMDL) -> ULONG;
        fn MmGetMdlVirtualAddress(Mdl: PMDL) -> PVOID;
        fn MmGetMdlByteOffset(Mdl: PMDL) -> ULONG;
        // Ps / Ob / Zw / Rtl
        fn PsCreateSystemThread(
            ThreadHandle: PHANDLE,
            DesiredAccess: ULONG,
            ObjectAttributes: POBJECT_ATTRIBUTES,
            ProcessHandle: HANDLE,
            ClientId: PCLIENT_ID,
            StartRoutine: PKSTART_ROUTINE,
            StartContext: PVOID,
        ) -> NTSTATUS;
        fn PsTerminateSystemThread(ExitStatus: NTSTATUS) -> NTSTATUS;
        fn PsGetCurrentThread() -> PETHREAD;
        fn ObReferenceObjectByHandle(
            Handle: HANDLE,
            DesiredAccess: ACCESS_MASK,
            ObjectType: POBJECT_TYPE,
            AccessMode: KPROCESSOR_MODE,
            Object: *mut PVOID,
            HandleInformation: POBJECT_HANDLE_INFORMATION,
        ) -> NTSTATUS;
        fn ObfDereferenceObject(Object: PVOID) -> LONG_PTR;
        fn ObDereferenceObject(Object: PVOID) -> LONG_PTR;
        fn ZwClose(Handle: HANDLE) -> NTSTATUS;
        fn ZwWaitForSingleObject(
            Handle: HANDLE,
            Alertable: BOOLEAN,
            Timeout: PLARGE_INTEGER,
        ) -> NTSTATUS;
        fn KeEnterCriticalRegion();
        fn KeLeaveCriticalRegion();
        fn ZwOpenKey(
            KeyHandle: PHANDLE,
            DesiredAccess: ACCESS_MASK,
            ObjectAttributes: POBJECT_ATTRIBUTES,
        ) -> NTSTATUS;
        fn ZwQueryValueKey(
            KeyHandle: HANDLE,
            ValueName: PUNICODE_STRING,
            KeyValueInformationClass: KEY_VALUE_INFORMATION_CLASS,
            KeyValueInformation: PVOID,
            Length: ULONG,
            ResultLength: PULONG,
        ) -> NTSTATUS;
        fn RtlInitUnicodeString(DestinationString: PUNICODE_STRING, SourceString: PCWSTR);
        fn InitializeObjectAttributes(
            InitializedAttributes: POBJECT_ATTRIBUTES,
            ObjectName: PUNICODE_STRING,
            Attributes: ULONG,
            RootDirectory: HANDLE,
            SecurityDescriptor: PVOID,
        );
    });

    /// Priority boosts are `CCHAR`s, `IoCompleteRequest`'s parameter type.
    const _: [CCHAR; 2] = [IO_NO_INCREMENT, IO_NETWORK_INCREMENT];
}

mod accessors {
    use super::*;
    use crate::access;

    contract!(access {
        fn irp_status(irp: PIRP) -> NTSTATUS;
        fn set_irp_status(irp: PIRP, status: NTSTATUS);
        fn irp_information(irp: PIRP) -> ULONG_PTR;
        fn set_irp_information(irp: PIRP, information: ULONG_PTR);
        fn irp_pending_returned(irp: PIRP) -> bool;
        fn irp_cancel(irp: PIRP) -> bool;
        fn irp_system_buffer(irp: PIRP) -> PVOID;
        fn irp_mdl_address(irp: PIRP) -> PMDL;
        fn set_irp_mdl_address(irp: PIRP, mdl: PMDL);
        fn irp_user_buffer(irp: PIRP) -> PVOID;
        fn irp_stack_count(irp: PIRP) -> CCHAR;
        fn irp_current_location(irp: PIRP) -> CCHAR;
        fn irp_driver_context(irp: PIRP) -> *mut [PVOID; 4];
        fn irp_list_entry(irp: PIRP) -> PLIST_ENTRY;
        fn sl_major_function(sl: PIO_STACK_LOCATION) -> UCHAR;
        fn sl_minor_function(sl: PIO_STACK_LOCATION) -> UCHAR;
        fn sl_set_function(sl: PIO_STACK_LOCATION, major: UCHAR, minor: UCHAR);
        fn sl_control(sl: PIO_STACK_LOCATION) -> UCHAR;
        fn sl_device_object(sl: PIO_STACK_LOCATION) -> PDEVICE_OBJECT;
        fn sl_file_object(sl: PIO_STACK_LOCATION) -> PFILE_OBJECT;
        fn sl_ioctl_code(sl: PIO_STACK_LOCATION) -> ULONG;
        fn sl_input_buffer_length(sl: PIO_STACK_LOCATION) -> ULONG;
        fn sl_output_buffer_length(sl: PIO_STACK_LOCATION) -> ULONG;
        fn sl_type3_input_buffer(sl: PIO_STACK_LOCATION) -> PVOID;
        fn sl_set_device_io_control(
            sl: PIO_STACK_LOCATION,
            code: ULONG,
            input_length: ULONG,
            output_length: ULONG,
            type3_input: PVOID,
        );
        fn sl_arguments(sl: PIO_STACK_LOCATION) -> [PVOID; 4];
        fn sl_set_arguments(sl: PIO_STACK_LOCATION, arguments: [PVOID; 4]);
        fn driver_set_major_function(
            driver: PDRIVER_OBJECT,
            major: UCHAR,
            dispatch: PDRIVER_DISPATCH,
        ) -> bool;
        fn driver_set_unload(driver: PDRIVER_OBJECT, unload: PDRIVER_UNLOAD);
        fn driver_first_device(driver: PDRIVER_OBJECT) -> PDEVICE_OBJECT;
        fn device_extension(device: PDEVICE_OBJECT) -> PVOID;
        fn device_driver_object(device: PDEVICE_OBJECT) -> PDRIVER_OBJECT;
        fn device_next(device: PDEVICE_OBJECT) -> PDEVICE_OBJECT;
        fn device_stack_size(device: PDEVICE_OBJECT) -> CCHAR;
        fn set_device_stack_size(device: PDEVICE_OBJECT, stack_size: CCHAR);
        fn device_flags(device: PDEVICE_OBJECT) -> ULONG;
        fn set_device_flags(device: PDEVICE_OBJECT, flags: ULONG);
        fn mdl_next(mdl: PMDL) -> PMDL;
        fn set_mdl_next(mdl: PMDL, next: PMDL);
        fn mdl_flags(mdl: PMDL) -> CSHORT;
    });

    /// Safe on both faces: the global is valid whenever driver code runs.
    fn ps_thread_type() -> POBJECT_TYPE {
        access::ps_thread_type()
    }
}

/// Callback types: a driver's routines are `unsafe extern "C" fn`s with
/// exactly these parameters (bindgen emits `extern "C"` for x64 `NTAPI`).
mod callbacks {
    use super::*;

    unsafe extern "C" fn completion(_: PDEVICE_OBJECT, _: PIRP, _: PVOID) -> NTSTATUS {
        STATUS_SUCCESS
    }
    unsafe extern "C" fn cancel(_: PDEVICE_OBJECT, _: PIRP) {}
    unsafe extern "C" fn dispatch(_: PDEVICE_OBJECT, _: PIRP) -> NTSTATUS {
        STATUS_SUCCESS
    }
    unsafe extern "C" fn unload(_: PDRIVER_OBJECT) {}
    unsafe extern "C" fn entry(_: PDRIVER_OBJECT, _: PUNICODE_STRING) -> NTSTATUS {
        STATUS_SUCCESS
    }
    unsafe extern "C" fn start(_: PVOID) {}
    unsafe extern "C" fn work(_: PDEVICE_OBJECT, _: PVOID) {}

    const _: PIO_COMPLETION_ROUTINE = Some(completion);
    const _: PDRIVER_CANCEL = Some(cancel);
    const _: PDRIVER_DISPATCH = Some(dispatch);
    const _: PDRIVER_UNLOAD = Some(unload);
    const _: PDRIVER_INITIALIZE = Some(entry);
    const _: DRIVER_INITIALIZE = Some(entry);
    const _: PKSTART_ROUTINE = Some(start);
    const _: PIO_WORKITEM_ROUTINE = Some(work);
}

/// The WSK registration functions (`nt::wsk`; netio.lib on the kernel
/// face, the simulated WSK subsystem on the host face).
mod wsk_registration {
    use crate::types::*;
    use crate::wsk;
    use crate::wsk::*;

    contract!(wsk {
        fn WskRegister(
            WskClientNpi: PWSK_CLIENT_NPI,
            WskRegistration: PWSK_REGISTRATION,
        ) -> NTSTATUS;
        fn WskDeregister(WskRegistration: PWSK_REGISTRATION);
        fn WskCaptureProviderNPI(
            WskRegistration: PWSK_REGISTRATION,
            WaitTimeout: ULONG,
            WskProviderNpi: PWSK_PROVIDER_NPI,
        ) -> NTSTATUS;
        fn WskReleaseProviderNPI(WskRegistration: PWSK_REGISTRATION);
    });
}
