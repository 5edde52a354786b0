//! The provider's dispatch tables and their functions: the entry points a
//! client calls through `WSK_PROVIDER_NPI::Dispatch` and
//! `WSK_SOCKET::Dispatch`.
//!
//! Each function checks its IRQL (<= DISPATCH_LEVEL), takes the IRP's next
//! stack location as the provider's own (as `IoCallDriver` would), records
//! the socket there for its cancel routine, and then either finishes the
//! request (inline or pending, per the session's completion policy) or
//! queues it. Every IRP handed in is completed exactly once.

// WDK names: parameters as in wsk.h, enum constants in patterns.
#![allow(non_snake_case, non_upper_case_globals)]

use std::panic::Location;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::super::access::sl_set_arguments;
use super::super::event::require_irql;
use super::super::fault::Completion;
use super::super::ffi::*;
use super::super::io::{IO_NETWORK_INCREMENT, IofCompleteRequest, provider_accept_irp_in};
use super::super::session::{Kernel, current, decide_completion, lock, spawn_kernel_thread};
use super::super::verifier::DRIVER_VERIFIER_DETECTED_VIOLATION;
use super::buf::BufRef;
use super::host;
use super::reactor::Job;
use super::resolve;
use super::socket::{
    Decision, Kind, Released, SendKind, SockState, Socket, complete_irp, mark_pending,
};
use super::{Client, Lookup, state_of, violation, wsk_of};
use crate::status::*;
use crate::types::*;
use crate::wsk::*;

// === Tables ===

/// The client-level provider dispatch (`WSK_PROVIDER_NPI::Dispatch`).
pub(crate) static PROVIDER_DISPATCH: WSK_PROVIDER_DISPATCH = WSK_PROVIDER_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskSocket: Some(wsk_socket),
    WskSocketConnect: Some(wsk_socket_connect),
    WskControlClient: Some(wsk_control_client),
    WskGetAddressInfo: Some(wsk_get_address_info),
    WskFreeAddressInfo: Some(wsk_free_address_info),
    WskGetNameInfo: Some(wsk_get_name_info),
};

const BASIC: WSK_PROVIDER_BASIC_DISPATCH = WSK_PROVIDER_BASIC_DISPATCH {
    WskControlSocket: Some(wsk_control_socket),
    WskCloseSocket: Some(wsk_close_socket),
};

/// The dispatch of listening sockets.
pub(crate) static LISTEN_DISPATCH: WSK_PROVIDER_LISTEN_DISPATCH = WSK_PROVIDER_LISTEN_DISPATCH {
    Basic: BASIC,
    WskBind: Some(wsk_bind),
    WskAccept: Some(wsk_accept),
    WskInspectComplete: Some(wsk_inspect_complete),
    WskGetLocalAddress: Some(wsk_get_local_address),
};

/// The dispatch of datagram sockets.
pub(crate) static DATAGRAM_DISPATCH: WSK_PROVIDER_DATAGRAM_DISPATCH =
    WSK_PROVIDER_DATAGRAM_DISPATCH {
        Basic: BASIC,
        WskBind: Some(wsk_bind),
        WskSendTo: Some(wsk_send_to),
        WskReceiveFrom: Some(wsk_receive_from),
        WskRelease: Some(wsk_release_datagrams),
        WskGetLocalAddress: Some(wsk_get_local_address),
        WskSendMessages: Some(wsk_send_messages),
    };

/// The dispatch of connection sockets (created, connected or accepted).
pub(crate) static CONNECTION_DISPATCH: WSK_PROVIDER_CONNECTION_DISPATCH =
    WSK_PROVIDER_CONNECTION_DISPATCH {
        Basic: BASIC,
        WskBind: Some(wsk_bind),
        WskConnect: Some(wsk_connect),
        WskGetLocalAddress: Some(wsk_get_local_address),
        WskGetRemoteAddress: Some(wsk_get_remote_address),
        WskSend: Some(wsk_send),
        WskReceive: Some(wsk_receive),
        WskDisconnect: Some(wsk_disconnect),
        WskRelease: Some(wsk_release_data),
        WskConnectEx: Some(wsk_connect_ex),
        WskSendEx: Some(wsk_send_ex),
        WskReceiveEx: Some(wsk_receive_ex),
    };

// === Calls ===

/// One provider call: counted (for `WskDeregister`, and on its socket for
/// `WskCloseSocket`) until it returns; its IRP, if any, until completed.
struct Call {
    /// The session, taken once at the call's entry (its API boundary:
    /// the stack-depth check and the perturbation point are there).
    kernel: Arc<Kernel>,
    client: Arc<Client>,
    socket: Option<Arc<Socket>>,
    irp: usize,
    /// The socket whose calls-in-progress count this call holds.
    counted: Option<Arc<Socket>>,
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Some(socket) = &self.counted {
            socket.calls.fetch_sub(1, Ordering::AcqRel);
        }
        self.client.call_done();
    }
}

impl Call {
    /// A call on `socket` (counted on it and on its client, and its IRP,
    /// if any, on the client).
    fn on(kernel: Arc<Kernel>, socket: &Arc<Socket>, irp: usize) -> Call {
        let client = Arc::clone(&socket.client);
        client.call_begin(irp != 0);
        socket.calls.fetch_add(1, Ordering::AcqRel);
        Call {
            kernel,
            client,
            socket: Some(Arc::clone(socket)),
            irp,
            counted: Some(Arc::clone(socket)),
        }
    }

    /// Finishes the request with a known result: inline, or pending and
    /// completed by the provider thread, per the completion policy.
    fn done(self, status: NTSTATUS, information: usize) -> NTSTATUS {
        match self.kernel.completion.decide() {
            Completion::Inline => {
                complete_irp(
                    &self.client,
                    self.socket.as_ref(),
                    self.irp,
                    status,
                    information,
                );
                status
            }
            Completion::Pending => {
                mark_pending(self.irp);
                self.client.reactor.post(Job::Complete {
                    client: Arc::clone(&self.client),
                    socket: self.socket.clone(),
                    irp: self.irp,
                    status,
                    information,
                });
                STATUS_PENDING
            }
        }
    }

    fn decided(self, decision: Decision) -> NTSTATUS {
        match decision {
            Decision::Done(status, information) => self.done(status, information),
            Decision::Queued => STATUS_PENDING,
        }
    }

    fn socket(&self) -> &Arc<Socket> {
        match &self.socket {
            Some(socket) => socket,
            None => unreachable!("socket calls always carry their socket"),
        }
    }
}

/// Completes an IRP no registration accounts for (a call on an unknown
/// or closed socket or client, after its bugcheck).
fn complete_orphan(irp: PIRP, status: NTSTATUS) {
    // SAFETY: the provider accepted the IRP and completes it once.
    unsafe { (*irp).IoStatus.Status = status };
    // SAFETY: as above.
    unsafe { (*irp).IoStatus.Information = 0 };
    // SAFETY: as above.
    unsafe { IofCompleteRequest(irp, IO_NETWORK_INCREMENT) };
}

/// Takes the IRP's next stack location for the provider and records
/// `socket` in it. `None` after a verifier bugcheck.
fn accept_irp(kernel: &Kernel, irp: PIRP, socket: usize) -> Option<()> {
    // SAFETY: a live IRP handed to the provider with a location left for it.
    let location = unsafe { provider_accept_irp_in(kernel, irp) };
    if location.is_null() {
        return None;
    }
    let arguments = [
        socket as PVOID,
        core::ptr::null_mut(),
        core::ptr::null_mut(),
        core::ptr::null_mut(),
    ];
    // SAFETY: the provider's own (current) stack location.
    unsafe { sl_set_arguments(location, arguments) };
    Some(())
}

fn irql_ok(kernel: &Kernel, routine: &str, location: &'static Location<'static>) -> bool {
    require_irql(kernel, DISPATCH_LEVEL, routine, location)
}

// === Misuse (verifier bugchecks) ===

/// Raises DRIVER_VERIFIER_DETECTED_VIOLATION with one of the
/// [`super::violation`] codes.
#[track_caller]
fn violation(code: u64, object: usize, irp: usize, extra: u64, description: String) {
    current().bugcheck(
        DRIVER_VERIFIER_DETECTED_VIOLATION,
        [code, object as u64, irp as u64, extra],
        description,
    );
}

/// After its bugcheck, completes a misused call's IRP (if any) with
/// STATUS_INVALID_HANDLE so the client's request does not hang.
fn refuse_irp(irp: PIRP, socket: usize) -> NTSTATUS {
    if !irp.is_null() && accept_irp(&current(), irp, socket).is_some() {
        complete_orphan(irp, STATUS_INVALID_HANDLE);
    }
    STATUS_INVALID_HANDLE
}

/// A call on a socket the client already closed.
#[track_caller]
fn call_after_close(socket: PWSK_SOCKET, routine: &str, irp: PIRP) -> NTSTATUS {
    let what = if routine == "WskCloseSocket" {
        "a second WskCloseSocket".to_owned()
    } else {
        routine.to_owned()
    };
    violation(
        violation::CALL_AFTER_CLOSE,
        socket as usize,
        irp as usize,
        0,
        format!(
            "{what} on socket {socket:p} after WskCloseSocket: WSK frees the socket object at \
             close, so on Windows this call goes through freed memory (PFN_WSK_CLOSE_SOCKET: \
             \"it should not make any further calls to any of the socket's functions\")"
        ),
    );
    refuse_irp(irp, socket as usize)
}

/// A call with a `PWSK_SOCKET` that is no socket of this session.
#[track_caller]
fn not_a_socket(socket: PWSK_SOCKET, routine: &str, irp: PIRP) -> NTSTATUS {
    violation(
        violation::NOT_A_SOCKET,
        socket as usize,
        irp as usize,
        0,
        format!("{routine} with {socket:p}, which is not a WSK socket of this session"),
    );
    refuse_irp(irp, socket as usize)
}

/// A NULL IRP to a function that requires one.
#[track_caller]
fn null_irp(object: usize, routine: &str) -> NTSTATUS {
    violation(
        violation::NULL_IRP,
        object,
        0,
        0,
        format!(
            "{routine} with a NULL IRP: the function completes its request through the IRP \
             (the provider would dereference NULL on Windows)"
        ),
    );
    STATUS_INVALID_PARAMETER
}

/// Finds the open socket a call is made on; `Err` (after the bugcheck and
/// the IRP's completion) when it is closed or unknown.
#[track_caller]
fn open_socket(
    kernel: &Kernel,
    socket: PWSK_SOCKET,
    routine: &str,
    irp: PIRP,
) -> Result<Arc<Socket>, NTSTATUS> {
    match wsk_of(kernel).lookup(socket as usize) {
        Lookup::Open(found) => Ok(found),
        Lookup::Closed => Err(call_after_close(socket, routine, irp)),
        Lookup::Unknown => Err(not_a_socket(socket, routine, irp)),
    }
}

/// Enters a socket call with an IRP.
#[track_caller]
fn enter(
    socket: PWSK_SOCKET,
    irp: PIRP,
    kinds: &[Kind],
    routine: &str,
    location: &'static Location<'static>,
) -> Result<Call, NTSTATUS> {
    let kernel = current();
    if !irql_ok(&kernel, routine, location) {
        return Err(STATUS_INVALID_DEVICE_STATE);
    }
    let found = open_socket(&kernel, socket, routine, irp)?;
    if irp.is_null() {
        return Err(null_irp(socket as usize, routine));
    }
    if accept_irp(&kernel, irp, socket as usize).is_none() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let mut call = Call::on(kernel, &found, irp as usize);
    if !found.begin_request() {
        // WskCloseSocket was called on it (or the provider closed it).
        violation(
            violation::CALL_AFTER_CLOSE,
            socket as usize,
            irp as usize,
            0,
            format!("{routine} on socket {socket:p} after WskCloseSocket was called on it"),
        );
        call.socket = None;
        return Err(call.done(STATUS_INVALID_HANDLE, 0));
    }
    if !kinds.contains(&found.kind) {
        return Err(call.done(STATUS_INVALID_DEVICE_REQUEST, 0));
    }
    Ok(call)
}

/// Enters a socket call without an IRP (`WskRelease`, IRP-less
/// `WskControlSocket`): counted like the others.
#[track_caller]
fn enter_irpless(
    socket: PWSK_SOCKET,
    routine: &str,
    location: &'static Location<'static>,
) -> Result<Call, NTSTATUS> {
    let kernel = current();
    if !irql_ok(&kernel, routine, location) {
        return Err(STATUS_INVALID_DEVICE_STATE);
    }
    let found = open_socket(&kernel, socket, routine, core::ptr::null_mut())?;
    let call = Call::on(kernel, &found, 0);
    if !found.is_open() {
        return Err(call_after_close(socket, routine, core::ptr::null_mut()));
    }
    Ok(call)
}

/// Enters a client-level call with an IRP.
fn enter_client(
    client: PWSK_CLIENT,
    irp: PIRP,
    routine: &str,
    location: &'static Location<'static>,
) -> Result<Call, NTSTATUS> {
    let kernel = current();
    if !irql_ok(&kernel, routine, location) {
        return Err(STATUS_INVALID_DEVICE_STATE);
    }
    if irp.is_null() {
        return Err(null_irp(client as usize, routine));
    }
    let found = wsk_of(&kernel).client_at(client as usize);
    if accept_irp(&kernel, irp, 0).is_none() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let Some(found) = found else {
        complete_orphan(irp, STATUS_INVALID_PARAMETER);
        return Err(STATUS_INVALID_PARAMETER);
    };
    found.call_begin(true);
    let usable = found.usable();
    let call = Call {
        kernel,
        client: found,
        socket: None,
        irp: irp as usize,
        counted: None,
    };
    if !usable {
        return Err(call.done(STATUS_DEVICE_NOT_READY, 0));
    }
    Ok(call)
}

macro_rules! enter_or_return {
    ($e:expr) => {
        match $e {
            Ok(call) => call,
            Err(status) => return status,
        }
    };
}

/// Reads a `WSK_EVENT_CALLBACK_CONTROL` input and checks its NPI id.
fn event_callback_control(input: PVOID, size: SIZE_T) -> Result<ULONG, NTSTATUS> {
    if input.is_null() || (size as usize) < core::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: the caller's input buffer of at least that size.
    let control = unsafe { core::ptr::read_unaligned(input as *const WSK_EVENT_CALLBACK_CONTROL) };
    if control.NpiId.is_null() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: the caller's NPI id.
    let id = unsafe { core::ptr::read_unaligned(control.NpiId) };
    if id != NPI_WSK_INTERFACE_ID {
        return Err(STATUS_NOT_SUPPORTED);
    }
    Ok(control.EventMask)
}

// === Client-level functions ===

unsafe extern "C" fn wsk_socket(
    Client: PWSK_CLIENT,
    AddressFamily: ADDRESS_FAMILY,
    SocketType: USHORT,
    Protocol: ULONG,
    Flags: ULONG,
    SocketContext: PVOID,
    Dispatch: *const core::ffi::c_void,
    _OwningProcess: PEPROCESS,
    _OwningThread: PETHREAD,
    _SecurityDescriptor: PSECURITY_DESCRIPTOR,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter_client(Client, Irp, "WskSocket", Location::caller()));
    let (kind, socket_type, protocol) = match Flags {
        WSK_FLAG_LISTEN_SOCKET => (Kind::Listen, SOCK_STREAM, IPPROTO_TCP),
        WSK_FLAG_CONNECTION_SOCKET => (Kind::Connection, SOCK_STREAM, IPPROTO_TCP),
        WSK_FLAG_DATAGRAM_SOCKET => (Kind::Datagram, SOCK_DGRAM, IPPROTO_UDP),
        WSK_FLAG_BASIC_SOCKET | WSK_FLAG_STREAM_SOCKET => {
            return call.done(STATUS_NOT_SUPPORTED, 0);
        }
        _ => return call.done(STATUS_INVALID_PARAMETER, 0),
    };
    if AddressFamily != AF_INET && AddressFamily != AF_INET6 {
        return call.done(STATUS_NOT_SUPPORTED, 0);
    }
    if SocketType != socket_type {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    // The documented combinations only (AF_INET / AF_INET6 pages):
    // protocol 0 is not one of them.
    if Protocol != protocol {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    match Socket::create(
        &call.client,
        kind,
        AddressFamily,
        SocketContext as usize,
        Dispatch as usize,
    ) {
        Some(socket) => call.done(STATUS_SUCCESS, socket.address()),
        None => call.done(STATUS_INSUFFICIENT_RESOURCES, 0),
    }
}

unsafe extern "C" fn wsk_socket_connect(
    Client: PWSK_CLIENT,
    SocketType: USHORT,
    Protocol: ULONG,
    LocalAddress: PSOCKADDR,
    RemoteAddress: PSOCKADDR,
    _Flags: ULONG,
    SocketContext: PVOID,
    Dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    _OwningProcess: PEPROCESS,
    _OwningThread: PETHREAD,
    _SecurityDescriptor: PSECURITY_DESCRIPTOR,
    Irp: PIRP,
) -> NTSTATUS {
    let mut call = enter_or_return!(enter_client(
        Client,
        Irp,
        "WskSocketConnect",
        Location::caller()
    ));
    if SocketType != SOCK_STREAM {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    if Protocol != IPPROTO_TCP {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    // SAFETY: the caller's addresses (WSK contract).
    let local = unsafe { read_sockaddr(LocalAddress) };
    // SAFETY: as above.
    let remote = unsafe { read_sockaddr(RemoteAddress) };
    let (Some(local), Some(remote)) = (local, remote) else {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    };
    let family = match local {
        std::net::SocketAddr::V4(_) => AF_INET,
        std::net::SocketAddr::V6(_) => AF_INET6,
    };
    let Some(socket) = Socket::create(
        &call.client,
        Kind::Connection,
        family,
        SocketContext as usize,
        Dispatch as usize,
    ) else {
        return call.done(STATUS_INSUFFICIENT_RESOURCES, 0);
    };
    let location = {
        // SAFETY: the provider's own stack location of the live IRP.
        unsafe { super::super::io::IoGetCurrentIrpStackLocation(Irp) }
    };
    let arguments = [
        socket.address() as PVOID,
        core::ptr::null_mut(),
        core::ptr::null_mut(),
        core::ptr::null_mut(),
    ];
    // SAFETY: as above.
    unsafe { sl_set_arguments(location, arguments) };
    socket.begin_request();
    call.socket = Some(Arc::clone(&socket));
    let irp = Irp as usize;
    let decision = socket.with(|st, out| match st.bind(&socket, local) {
        Decision::Done(STATUS_SUCCESS, _) => st.connect(&socket, irp, remote, None, true, out),
        other => other,
    });
    match decision {
        Decision::Queued => STATUS_PENDING,
        Decision::Done(STATUS_SUCCESS, _) => call.done(STATUS_SUCCESS, socket.address()),
        Decision::Done(status, _) => {
            let result = call.done(status, 0);
            socket.close_internal();
            result
        }
    }
}

unsafe extern "C" fn wsk_control_client(
    Client: PWSK_CLIENT,
    ControlCode: ULONG,
    InputSize: SIZE_T,
    InputBuffer: PVOID,
    _OutputSize: SIZE_T,
    _OutputBuffer: PVOID,
    OutputSizeReturned: *mut SIZE_T,
    Irp: PIRP,
) -> NTSTATUS {
    let location = Location::caller();
    if Irp.is_null() {
        let kernel = current();
        if !irql_ok(&kernel, "WskControlClient", location) {
            return STATUS_INVALID_DEVICE_STATE;
        }
        let Some(client) = wsk_of(&kernel).client_at(Client as usize) else {
            return STATUS_INVALID_PARAMETER;
        };
        if !client.usable() {
            return STATUS_DEVICE_NOT_READY;
        }
        if !OutputSizeReturned.is_null() {
            // SAFETY: the caller's optional out-parameter.
            unsafe { OutputSizeReturned.write_unaligned(0) };
        }
        return match ControlCode {
            WSK_SET_STATIC_EVENT_CALLBACKS => {
                match event_callback_control(InputBuffer, InputSize) {
                    Ok(mask)
                        if mask != 0
                            && mask
                                & !(WSK_EVENT_ACCEPT
                                    | WSK_EVENT_RECEIVE
                                    | WSK_EVENT_DISCONNECT
                                    | WSK_EVENT_SEND_BACKLOG
                                    | WSK_EVENT_RECEIVE_FROM)
                                == 0 =>
                    {
                        client.set_static_events(mask)
                    }
                    Ok(_) => STATUS_INVALID_PARAMETER,
                    Err(status) => status,
                }
            }
            _ => STATUS_NOT_SUPPORTED,
        };
    }
    let call = enter_or_return!(enter_client(Client, Irp, "WskControlClient", location));
    let status = match ControlCode {
        // Documented as IRP-less only.
        WSK_SET_STATIC_EVENT_CALLBACKS => STATUS_INVALID_PARAMETER,
        _ => STATUS_NOT_SUPPORTED,
    };
    call.done(status, 0)
}

// === Name resolution ===

/// Checks that a name-resolution routine runs at PASSIVE_LEVEL (a verifier
/// bugcheck otherwise); after the bugcheck the IRP, if any, is completed
/// with STATUS_INVALID_DEVICE_STATE so the caller does not hang.
#[track_caller]
fn passive_only(routine: &str, irp: PIRP, location: &'static Location<'static>) -> bool {
    let kernel = current();
    if require_irql(&kernel, PASSIVE_LEVEL, routine, location) {
        return true;
    }
    if !irp.is_null() && accept_irp(&kernel, irp, 0).is_some() {
        complete_orphan(irp, STATUS_INVALID_DEVICE_STATE);
    }
    false
}

/// Runs a name resolution (`work`, which blocks, returns the IRP's status
/// and writes the caller's out-parameters) for `call`: under the inline
/// completion policy on the caller's thread (PASSIVE_LEVEL, checked) and
/// completed before the call returns; under the pending policy on a
/// resolver thread of its own at PASSIVE_LEVEL, the IRP completed from the
/// provider thread at DISPATCH_LEVEL, never blocking the provider thread.
/// Not cancellable: a cancelled resolution completes when it is done, with
/// its result (the client frees a chain even for a request it cancelled).
fn run_resolution(call: Call, work: impl FnOnce() -> NTSTATUS + Send + 'static) -> NTSTATUS {
    match decide_completion() {
        Completion::Inline => {
            let status = work();
            complete_irp(&call.client, None, call.irp, status, 0);
            status
        }
        Completion::Pending => {
            mark_pending(call.irp);
            let client = Arc::clone(&call.client);
            let irp = call.irp;
            let finish = move |status| {
                client.reactor.post(Job::Complete {
                    client: Arc::clone(&client),
                    socket: None,
                    irp,
                    status,
                    information: 0,
                });
            };
            let resolver = Arc::new(Mutex::new(Some((work, finish))));
            let thread_resolver = Arc::clone(&resolver);
            let spawned =
                spawn_kernel_thread(&current(), "nt-sim wsk resolver".to_owned(), move || {
                    if let Some((work, finish)) = lock(&thread_resolver).take() {
                        let status = work();
                        finish(status);
                    }
                });
            if spawned.is_err()
                && let Some((_, finish)) = lock(&resolver).take()
            {
                finish(STATUS_INSUFFICIENT_RESOURCES);
            }
            STATUS_PENDING
        }
    }
}

unsafe extern "C" fn wsk_get_address_info(
    Client: PWSK_CLIENT,
    NodeName: PUNICODE_STRING,
    ServiceName: PUNICODE_STRING,
    NameSpace: ULONG,
    Provider: *mut GUID,
    Hints: PADDRINFOEXW,
    Result: *mut PADDRINFOEXW,
    OwningProcess: PEPROCESS,
    OwningThread: PETHREAD,
    Irp: PIRP,
) -> NTSTATUS {
    let location = Location::caller();
    let routine = "WskGetAddressInfo";
    if !passive_only(routine, Irp, location) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    let call = enter_or_return!(enter_client(Client, Irp, routine, location));
    if Result.is_null() {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    // SAFETY: the caller's out-parameter (WSK contract: valid until the
    // IRP completes).
    unsafe { Result.write_unaligned(core::ptr::null_mut()) };
    // "OwningThread ... can be non-NULL only if OwningProcess is non-NULL."
    if !OwningThread.is_null() && OwningProcess.is_null() {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    // The sim has no namespace providers to choose from: a specific one is
    // refused rather than ignored.
    if !Provider.is_null() {
        return call.done(STATUS_NOT_SUPPORTED, 0);
    }
    if !matches!(NameSpace, NS_ALL | NS_DNS | NS_TCPIP_LOCAL | NS_TCPIP_HOSTS) {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    // SAFETY: the caller's optional strings (WSK contract).
    let node = match unsafe { resolve::read_unicode(NodeName) } {
        Ok(node) => node,
        Err(status) => return call.done(status, 0),
    };
    // SAFETY: as above.
    let service = match unsafe { resolve::read_unicode(ServiceName) } {
        Ok(service) => service,
        Err(status) => return call.done(status, 0),
    };
    // SAFETY: the caller's optional hints (WSK contract).
    let query = match unsafe { resolve::read_hints(Hints, node, service) } {
        Ok(query) => query,
        Err(status) => return call.done(status, 0),
    };
    let client = Arc::clone(&call.client);
    let result = Result as usize;
    run_resolution(call, move || match resolve::resolve_addresses(&query) {
        Ok(resolved) => {
            let head = client
                .wsk
                .chains
                .hand_out(&resolved, query.flags, client.address());
            // SAFETY: the caller's out-parameter, valid until the IRP
            // completes (after this).
            unsafe { (result as *mut PADDRINFOEXW).write_unaligned(head as PADDRINFOEXW) };
            STATUS_SUCCESS
        }
        Err(status) => status,
    })
}

unsafe extern "C" fn wsk_free_address_info(Client: PWSK_CLIENT, AddrInfo: PADDRINFOEXW) {
    let location = Location::caller();
    let routine = "WskFreeAddressInfo";
    if !require_irql(&current(), PASSIVE_LEVEL, routine, location) {
        return;
    }
    let wsk = state_of(&current());
    let why = if wsk.client_at(Client as usize).is_none() {
        "a client that is not registered (deregistered, or not a PWSK_CLIENT)"
    } else if AddrInfo.is_null() {
        "NULL"
    } else {
        match wsk.chains.free(Client as usize, AddrInfo as usize) {
            resolve::Freed::Done => return,
            resolve::Freed::Twice => "a chain already freed (a double free)",
            resolve::Freed::OtherClient => "a chain WskGetAddressInfo returned to another client",
            resolve::Freed::Foreign => {
                "a pointer that is not the head of a chain WskGetAddressInfo returned"
            }
        }
    };
    violation(
        violation::BAD_ADDRESS_INFO_FREE,
        Client as usize,
        AddrInfo as usize,
        0,
        format!(
            "WskFreeAddressInfo({Client:p}, {AddrInfo:p}) with {why}: on Windows this frees \
             memory the provider does not own for this client (PFN_WSK_FREE_ADDRESS_INFO: \
             \"This pointer was returned through the Result parameter of the WskGetAddressInfo \
             function\")"
        ),
    );
}

unsafe extern "C" fn wsk_get_name_info(
    Client: PWSK_CLIENT,
    SockAddr: PSOCKADDR,
    SockAddrLength: ULONG,
    NodeName: PUNICODE_STRING,
    ServiceName: PUNICODE_STRING,
    Flags: ULONG,
    OwningProcess: PEPROCESS,
    OwningThread: PETHREAD,
    Irp: PIRP,
) -> NTSTATUS {
    let location = Location::caller();
    let routine = "WskGetNameInfo";
    if !passive_only(routine, Irp, location) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    let call = enter_or_return!(enter_client(Client, Irp, routine, location));
    if !OwningThread.is_null() && OwningProcess.is_null() {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    // "NodeBuffer and ServiceBuffer must not both be NULL."
    if NodeName.is_null() && ServiceName.is_null() {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    if let Err(status) = resolve::check_name_flags(Flags) {
        return call.done(status, 0);
    }
    // SAFETY: the caller's address of SockAddrLength bytes (WSK contract).
    let Some(address) = (unsafe { resolve::read_name_address(SockAddr, SockAddrLength) }) else {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    };
    // SAFETY: the caller's optional out-strings (WSK contract).
    let node_capacity = match unsafe { resolve::output_capacity(NodeName) } {
        Ok(capacity) => capacity,
        Err(status) => return call.done(status, 0),
    };
    // SAFETY: as above.
    let service_capacity = match unsafe { resolve::output_capacity(ServiceName) } {
        Ok(capacity) => capacity,
        Err(status) => return call.done(status, 0),
    };
    let (node, service) = (NodeName as usize, ServiceName as usize);
    run_resolution(call, move || match resolve::resolve_name(address, Flags) {
        Ok((host, port)) => {
            // The documentation is silent on a buffer too small: the sim
            // writes nothing and answers STATUS_BUFFER_TOO_SMALL.
            if !resolve::fits(&host, node_capacity) || !resolve::fits(&port, service_capacity) {
                return STATUS_BUFFER_TOO_SMALL;
            }
            // SAFETY: the caller's out-strings, valid until the IRP
            // completes (after this); each fits its buffer.
            unsafe { resolve::write_unicode(node as PUNICODE_STRING, &host) };
            // SAFETY: as above.
            unsafe { resolve::write_unicode(service as PUNICODE_STRING, &port) };
            STATUS_SUCCESS
        }
        Err(status) => status,
    })
}

// === Basic ===

/// Largest control input the sim copies (no WSK option or ioctl it models
/// takes more).
const CONTROL_INPUT_MAX: usize = 4096;

/// `SIO_WSK_SET_REMOTE_ADDRESS`: sets (a SOCKADDR of the socket's family)
/// or clears (no input) a datagram socket's fixed remote address, after
/// bind ("it must do so after the datagram socket has been bound"). Level
/// must be 0, as the page's parameter table has it.
fn set_remote_address(socket: &Arc<Socket>, level: ULONG, input: &[u8]) -> NTSTATUS {
    if socket.kind != Kind::Datagram || level != 0 {
        return STATUS_INVALID_PARAMETER;
    }
    let remote = if input.is_empty() {
        None
    } else {
        let family = match input {
            [a, b, ..] => ADDRESS_FAMILY::from_ne_bytes([*a, *b]),
            _ => return STATUS_INVALID_PARAMETER,
        };
        let needed = match family {
            AF_INET => core::mem::size_of::<SOCKADDR_IN>(),
            AF_INET6 => core::mem::size_of::<SOCKADDR_IN6>(),
            _ => return STATUS_INVALID_PARAMETER,
        };
        if input.len() < needed || family != socket.family {
            return STATUS_INVALID_PARAMETER;
        }
        // SAFETY: `input` holds at least the structure its family names.
        let Some(remote) = (unsafe { read_sockaddr(input.as_ptr().cast()) }) else {
            return STATUS_INVALID_PARAMETER;
        };
        Some(remote)
    };
    let mut st = socket.state();
    if st.local_address().is_none() {
        return STATUS_INVALID_DEVICE_STATE;
    }
    st.fixed_remote = remote;
    STATUS_SUCCESS
}

unsafe extern "C" fn wsk_control_socket(
    Socket: PWSK_SOCKET,
    RequestType: WSK_CONTROL_SOCKET_TYPE,
    ControlCode: ULONG,
    Level: ULONG,
    InputSize: SIZE_T,
    InputBuffer: PVOID,
    OutputSize: SIZE_T,
    OutputBuffer: PVOID,
    OutputSizeReturned: *mut SIZE_T,
    Irp: PIRP,
) -> NTSTATUS {
    let location = Location::caller();
    let routine = "WskControlSocket";
    let irp = (!Irp.is_null()).then_some(Irp as usize);
    let call = enter_or_return!(match irp {
        None => enter_irpless(Socket, routine, location),
        Some(_) => enter(
            Socket,
            Irp,
            &[Kind::Listen, Kind::Connection, Kind::Datagram],
            routine,
            location,
        ),
    });
    let finish = |call: Call, decision: Decision| match irp {
        Some(_) => call.decided(decision),
        None => match decision {
            Decision::Done(status, _) => status,
            Decision::Queued => STATUS_PENDING,
        },
    };
    let event_control =
        (RequestType, ControlCode, Level) == (WskSetOption, SO_WSK_EVENT_CALLBACK, SOL_SOCKET);
    if irp.is_none() && !event_control {
        // Every option and ioctl the sim models needs an IRP (the option
        // pages: "must specify a pointer to an IRP").
        return STATUS_INVALID_PARAMETER;
    }
    if irp.is_some() && !OutputSizeReturned.is_null() {
        // "should set the OutputSizeReturned parameter to NULL except when
        // ... the Irp parameter is set to NULL": the IRP's Information
        // carries the size.
        return finish(call, Decision::Done(STATUS_INVALID_PARAMETER, 0));
    }
    let input_size = InputSize as usize;
    if input_size > CONTROL_INPUT_MAX || (input_size > 0 && InputBuffer.is_null()) {
        return finish(call, Decision::Done(STATUS_INVALID_PARAMETER, 0));
    }
    let input: Vec<u8> = if input_size == 0 {
        Vec::new()
    } else {
        // SAFETY: the caller's input buffer of `InputSize` bytes.
        unsafe { core::slice::from_raw_parts(InputBuffer.cast::<u8>(), input_size) }.to_vec()
    };
    let socket = Arc::clone(call.socket());
    let (kind, family) = (socket.kind, socket.family);
    let mut output = Vec::new();
    let decision = match (RequestType, ControlCode, Level) {
        (WskSetOption, SO_WSK_EVENT_CALLBACK, SOL_SOCKET) => {
            match event_callback_control(InputBuffer, InputSize) {
                Ok(mask) if mask & WSK_EVENT_DISABLE == 0 => {
                    socket.with_inline(|st, out| st.event_control(kind, mask, irp, out))
                }
                Ok(mask) => socket.with(|st, out| st.event_control(kind, mask, irp, out)),
                Err(status) => Decision::Done(status, 0),
            }
        }
        (WskSetOption, code, level) => Decision::Done(
            socket.with(|st, _| st.set_option(kind, family, level, code, &input)),
            0,
        ),
        (WskGetOption, code, level) => match socket.state().get_option(kind, family, level, code) {
            Ok(value) => {
                output = value;
                Decision::Done(STATUS_SUCCESS, 0)
            }
            Err(status) => Decision::Done(status, 0),
        },
        (WskIoctl, SIO_WSK_QUERY_IDEAL_SEND_BACKLOG, _) => {
            if kind != Kind::Connection {
                Decision::Done(STATUS_INVALID_PARAMETER, 0)
            } else {
                match socket.state().ideal_send_backlog() {
                    Some(size) => {
                        output = (size as SIZE_T).to_ne_bytes().to_vec();
                        Decision::Done(STATUS_SUCCESS, 0)
                    }
                    // "must do so after the connection-oriented socket has
                    // been connected".
                    None => Decision::Done(STATUS_INVALID_DEVICE_STATE, 0),
                }
            }
        }
        (WskIoctl, SIO_WSK_SET_REMOTE_ADDRESS, _) => {
            Decision::Done(set_remote_address(&socket, Level, &input), 0)
        }
        _ => Decision::Done(STATUS_NOT_SUPPORTED, 0),
    };
    let decision = match decision {
        Decision::Done(STATUS_SUCCESS, _) if !output.is_empty() => {
            if OutputBuffer.is_null() || (OutputSize as usize) < output.len() {
                Decision::Done(STATUS_BUFFER_TOO_SMALL, 0)
            } else {
                // SAFETY: the caller's output buffer of at least
                // `output.len()` bytes.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        output.as_ptr(),
                        OutputBuffer.cast::<u8>(),
                        output.len(),
                    )
                };
                if !OutputSizeReturned.is_null() {
                    // SAFETY: the caller's optional out-parameter (IRP-less).
                    unsafe { OutputSizeReturned.write_unaligned(output.len() as SIZE_T) };
                }
                Decision::Done(STATUS_SUCCESS, output.len())
            }
        }
        other => {
            if !OutputSizeReturned.is_null() {
                // SAFETY: as above.
                unsafe { OutputSizeReturned.write_unaligned(0) };
            }
            other
        }
    };
    finish(call, decision)
}

unsafe extern "C" fn wsk_close_socket(Socket: PWSK_SOCKET, Irp: PIRP) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Listen, Kind::Connection, Kind::Datagram],
        "WskCloseSocket",
        Location::caller()
    ));
    // This call is one of the socket's calls in progress.
    let others = call
        .socket()
        .calls
        .load(Ordering::Acquire)
        .saturating_sub(1);
    if others > 0 {
        violation(
            violation::CLOSE_DURING_CALL,
            Socket as usize,
            Irp as usize,
            u64::from(others),
            format!(
                "WskCloseSocket on socket {Socket:p} while {others} other call(s) on it had not \
                 returned (PFN_WSK_CLOSE_SOCKET: \"any in-progress calls to the socket's functions \
                 must have returned control to the WSK application before it calls WskCloseSocket\")"
            ),
        );
    }
    let inline = call.kernel.completion.decide() == Completion::Inline;
    call.socket().close(call.irp, inline)
}

// === Listen, datagram and connection functions ===

unsafe extern "C" fn wsk_bind(
    Socket: PWSK_SOCKET,
    LocalAddress: PSOCKADDR,
    _Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Listen, Kind::Connection, Kind::Datagram],
        "WskBind",
        Location::caller()
    ));
    // SAFETY: the caller's address (WSK contract).
    let Some(local) = (unsafe { read_sockaddr(LocalAddress) }) else {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    };
    let socket = Arc::clone(call.socket());
    let decision = socket.with(|st, _| st.bind(&socket, local));
    call.decided(decision)
}

unsafe extern "C" fn wsk_accept(
    ListenSocket: PWSK_SOCKET,
    _Flags: ULONG,
    AcceptSocketContext: PVOID,
    AcceptSocketDispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    LocalAddress: PSOCKADDR,
    RemoteAddress: PSOCKADDR,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        ListenSocket,
        Irp,
        &[Kind::Listen],
        "WskAccept",
        Location::caller()
    ));
    let socket = Arc::clone(call.socket());
    let decision = socket.with(|st, out| {
        st.accept(
            &socket,
            call.irp,
            AcceptSocketContext as usize,
            AcceptSocketDispatch as usize,
            LocalAddress as usize,
            RemoteAddress as usize,
            out,
        )
    });
    call.decided(decision)
}

unsafe extern "C" fn wsk_inspect_complete(
    ListenSocket: PWSK_SOCKET,
    _InspectID: PWSK_INSPECT_ID,
    _Action: WSK_INSPECT_ACTION,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        ListenSocket,
        Irp,
        &[Kind::Listen],
        "WskInspectComplete",
        Location::caller()
    ));
    call.done(STATUS_NOT_SUPPORTED, 0)
}

unsafe extern "C" fn wsk_get_local_address(
    Socket: PWSK_SOCKET,
    LocalAddress: PSOCKADDR,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Listen, Kind::Connection, Kind::Datagram],
        "WskGetLocalAddress",
        Location::caller()
    ));
    if LocalAddress.is_null() {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    let address = call.socket().state().local_address();
    match address {
        Some(address) => {
            // SAFETY: the caller's out-parameter with room for its family.
            unsafe { write_sockaddr(LocalAddress, &address) };
            call.done(STATUS_SUCCESS, 0)
        }
        None => call.done(STATUS_INVALID_DEVICE_STATE, 0),
    }
}

unsafe extern "C" fn wsk_get_remote_address(
    Socket: PWSK_SOCKET,
    RemoteAddress: PSOCKADDR,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Connection],
        "WskGetRemoteAddress",
        Location::caller()
    ));
    if RemoteAddress.is_null() {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    let address = call.socket().state().remote_address();
    match address {
        Some(address) => {
            // SAFETY: the caller's out-parameter with room for its family.
            unsafe { write_sockaddr(RemoteAddress, &address) };
            call.done(STATUS_SUCCESS, 0)
        }
        None => call.done(STATUS_INVALID_DEVICE_STATE, 0),
    }
}

unsafe extern "C" fn wsk_connect(
    Socket: PWSK_SOCKET,
    RemoteAddress: PSOCKADDR,
    _Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Connection],
        "WskConnect",
        Location::caller()
    ));
    // SAFETY: the caller's address (WSK contract).
    let Some(remote) = (unsafe { read_sockaddr(RemoteAddress) }) else {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    };
    let socket = Arc::clone(call.socket());
    let decision = socket.with(|st, out| st.connect(&socket, call.irp, remote, None, false, out));
    call.decided(decision)
}

unsafe extern "C" fn wsk_connect_ex(
    Socket: PWSK_SOCKET,
    RemoteAddress: PSOCKADDR,
    Buffer: PWSK_BUF,
    _Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Connection],
        "WskConnectEx",
        Location::caller()
    ));
    // SAFETY: the caller's address (WSK contract).
    let Some(remote) = (unsafe { read_sockaddr(RemoteAddress) }) else {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    };
    let then_send = if Buffer.is_null() {
        None
    } else {
        // SAFETY: the caller's WSK_BUF with live MDLs.
        match unsafe { BufRef::from_wsk_buf(Buffer) } {
            Ok(buf) => Some(buf),
            Err(status) => return call.done(status, 0),
        }
    };
    let socket = Arc::clone(call.socket());
    let decision =
        socket.with(|st, out| st.connect(&socket, call.irp, remote, then_send, false, out));
    call.decided(decision)
}

fn send_common(call: Call, Buffer: PWSK_BUF, Flags: ULONG) -> NTSTATUS {
    if Flags & !WSK_FLAG_NODELAY != 0 {
        return call.done(STATUS_NOT_SUPPORTED, 0);
    }
    // SAFETY: the caller's WSK_BUF with live MDLs.
    let buf = match unsafe { BufRef::from_wsk_buf(Buffer) } {
        Ok(buf) => buf,
        Err(status) => return call.done(status, 0),
    };
    let socket = Arc::clone(call.socket());
    let nodelay = Flags & WSK_FLAG_NODELAY != 0;
    let decision =
        socket.with_sending(|st, out| st.send(call.irp, buf, SendKind::Data, nodelay, out));
    call.decided(decision)
}

unsafe extern "C" fn wsk_send(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Connection],
        "WskSend",
        Location::caller()
    ));
    send_common(call, Buffer, Flags)
}

unsafe extern "C" fn wsk_send_ex(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    _ControlInfoLength: ULONG,
    _ControlInfo: PCMSGHDR,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Connection],
        "WskSendEx",
        Location::caller()
    ));
    send_common(call, Buffer, Flags)
}

fn receive_common(call: Call, Buffer: PWSK_BUF, Flags: ULONG, control_length: PULONG) -> NTSTATUS {
    // SAFETY: the caller's WSK_BUF with live MDLs.
    let buf = match unsafe { BufRef::from_wsk_buf(Buffer) } {
        Ok(buf) => buf,
        Err(status) => return call.done(status, 0),
    };
    let socket = Arc::clone(call.socket());
    let rearm = buf.length == 0 && Flags & WSK_FLAG_DRAIN == 0;
    let receive = |st: &mut SockState, out: &mut _| {
        st.receive(call.irp, buf, Flags, control_length as usize, out)
    };
    let decision = if rearm {
        socket.with_inline(receive)
    } else {
        socket.with(receive)
    };
    call.decided(decision)
}

unsafe extern "C" fn wsk_receive(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Connection],
        "WskReceive",
        Location::caller()
    ));
    receive_common(call, Buffer, Flags, core::ptr::null_mut())
}

unsafe extern "C" fn wsk_receive_ex(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    ControlInfoLength: PULONG,
    _ControlInfo: PCMSGHDR,
    _ControlFlags: PULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Connection],
        "WskReceiveEx",
        Location::caller()
    ));
    receive_common(call, Buffer, Flags, ControlInfoLength)
}

unsafe extern "C" fn wsk_disconnect(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Connection],
        "WskDisconnect",
        Location::caller()
    ));
    if Flags & !WSK_FLAG_ABORTIVE != 0 {
        return call.done(STATUS_NOT_SUPPORTED, 0);
    }
    if Flags & WSK_FLAG_ABORTIVE != 0 && !Buffer.is_null() {
        // "If the WSK_FLAG_ABORTIVE flag is specified, the Buffer
        // parameter must be NULL" (PFN_WSK_DISCONNECT).
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    let buf = if Buffer.is_null() {
        BufRef::EMPTY
    } else {
        // SAFETY: the caller's WSK_BUF with live MDLs.
        match unsafe { BufRef::from_wsk_buf(Buffer) } {
            Ok(buf) => buf,
            Err(status) => return call.done(status, 0),
        }
    };
    let socket = Arc::clone(call.socket());
    let decision = if Flags & WSK_FLAG_ABORTIVE != 0 {
        socket.with(|st, out| st.abort(&socket, out))
    } else {
        socket.with_sending(|st, out| st.send(call.irp, buf, SendKind::Disconnect, false, out))
    };
    call.decided(decision)
}

fn release_common(
    socket: PWSK_SOCKET,
    head: usize,
    routine: &str,
    location: &'static Location<'static>,
) -> NTSTATUS {
    let call = enter_or_return!(enter_irpless(socket, routine, location));
    let found = Arc::clone(call.socket());
    match found.release(head) {
        Released::Yes => STATUS_SUCCESS,
        Released::InsideCallback => {
            violation(
                violation::OWNERSHIP_IN_CALLBACK,
                socket as usize,
                head,
                0,
                format!(
                    "{routine} on socket {socket:p} of chain {head:#x} inside the event callback \
                     that was handed it: the chain becomes the client's only when that callback \
                     returns STATUS_PENDING"
                ),
            );
            STATUS_SUCCESS
        }
        Released::Unknown => {
            violation(
                violation::BAD_RELEASE,
                socket as usize,
                head,
                0,
                format!(
                    "{routine} on socket {socket:p} of chain {head:#x}, which the provider did \
                     not hand out or which was already released (on Windows: a double free of \
                     transport buffers)"
                ),
            );
            STATUS_INVALID_PARAMETER
        }
    }
}

unsafe extern "C" fn wsk_release_data(
    Socket: PWSK_SOCKET,
    DataIndication: PWSK_DATA_INDICATION,
) -> NTSTATUS {
    release_common(
        Socket,
        DataIndication as usize,
        "WskRelease",
        Location::caller(),
    )
}

unsafe extern "C" fn wsk_release_datagrams(
    Socket: PWSK_SOCKET,
    DatagramIndication: PWSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    release_common(
        Socket,
        DatagramIndication as usize,
        "WskRelease",
        Location::caller(),
    )
}

/// `WskSendTo`'s control information: none, or exactly one `IN_PKTINFO`
/// (IPv4 socket) / `IN6_PKTINFO` (IPv6 socket) message choosing the
/// datagram's source address and interface. A length without a buffer (or
/// the reverse), a message whose length does not fit, or a packet
/// information of the other family: STATUS_INVALID_PARAMETER; any other
/// message, or a host that cannot choose the source: STATUS_NOT_SUPPORTED.
fn send_control_info(
    length: ULONG,
    control: PCMSGHDR,
    family: ADDRESS_FAMILY,
) -> Result<Option<host::PacketInfo>, NTSTATUS> {
    if length == 0 && control.is_null() {
        return Ok(None);
    }
    let length = length as usize;
    if control.is_null() || !(CMSG_DATA_OFFSET..=CONTROL_INPUT_MAX).contains(&length) {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: the caller's ControlInfo buffer of ControlInfoLength bytes
    // (WSK contract), read during the call.
    let bytes = unsafe { core::slice::from_raw_parts(control.cast::<u8>(), length) };
    // SAFETY: at least a header's bytes (checked above); unaligned read.
    let header = unsafe { control.read_unaligned() };
    let message_len = header.cmsg_len as usize;
    if message_len < CMSG_DATA_OFFSET || message_len > length {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let data = &bytes[CMSG_DATA_OFFSET..message_len];
    let interface =
        |at: usize| ULONG::from_ne_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    let info = match (header.cmsg_level as ULONG, header.cmsg_type as ULONG) {
        (IPPROTO_IP, IP_PKTINFO) if family == AF_INET && data.len() == 8 => host::PacketInfo {
            to: std::net::IpAddr::V4([data[0], data[1], data[2], data[3]].into()),
            interface: interface(4),
        },
        (IPPROTO_IPV6, IPV6_PKTINFO) if family == AF_INET6 && data.len() == 20 => {
            let mut address = [0u8; 16];
            address.copy_from_slice(&data[..16]);
            host::PacketInfo {
                to: std::net::IpAddr::V6(address.into()),
                interface: interface(16),
            }
        }
        (IPPROTO_IP, IP_PKTINFO) | (IPPROTO_IPV6, IPV6_PKTINFO) => {
            return Err(STATUS_INVALID_PARAMETER);
        }
        _ => return Err(STATUS_NOT_SUPPORTED),
    };
    // One message only: anything after it is not modelled.
    if cmsg_space(message_len - CMSG_DATA_OFFSET) < length {
        return Err(STATUS_NOT_SUPPORTED);
    }
    if !host::SOURCE_SELECTION {
        return Err(STATUS_NOT_SUPPORTED);
    }
    Ok(Some(info))
}

unsafe extern "C" fn wsk_send_to(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    RemoteAddress: PSOCKADDR,
    ControlInfoLength: ULONG,
    ControlInfo: PCMSGHDR,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Datagram],
        "WskSendTo",
        Location::caller()
    ));
    // "Flags: This parameter is reserved for system use. A WSK application
    // must set this parameter to zero."
    if Flags != 0 {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    let source = match send_control_info(ControlInfoLength, ControlInfo, call.socket().family) {
        Ok(source) => source,
        Err(status) => return call.done(status, 0),
    };
    // "If the WSK application has set ... a fixed remote transport address
    // ... this pointer is optional and may be NULL": the datagram goes to
    // the fixed address.
    let remote = if RemoteAddress.is_null() {
        call.socket().state().fixed_remote
    } else {
        // SAFETY: the caller's address (WSK contract).
        unsafe { read_sockaddr(RemoteAddress) }
    };
    let Some(remote) = remote else {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    };
    // SAFETY: the caller's WSK_BUF with live MDLs.
    let buf = match unsafe { BufRef::from_wsk_buf(Buffer) } {
        Ok(buf) => buf,
        Err(status) => return call.done(status, 0),
    };
    // SAFETY: the request is being made: its buffer is locked.
    let data = match unsafe { buf.read(0, buf.length) } {
        Ok(data) => data,
        Err(status) => return call.done(status, 0),
    };
    let socket = Arc::clone(call.socket());
    let family = socket.family;
    let decision =
        socket.with(|st, out| st.send_to(call.irp, vec![data], (remote, source), family, out));
    call.decided(decision)
}

unsafe extern "C" fn wsk_receive_from(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    RemoteAddress: PSOCKADDR,
    ControlLength: PULONG,
    ControlInfo: PCMSGHDR,
    ControlFlags: PULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Datagram],
        "WskReceiveFrom",
        Location::caller()
    ));
    // Reserved: must be zero.
    if Flags != 0 {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    // SAFETY: the caller's WSK_BUF with live MDLs.
    let buf = match unsafe { BufRef::from_wsk_buf(Buffer) } {
        Ok(buf) => buf,
        Err(status) => return call.done(status, 0),
    };
    // "If ControlLength is NULL or points to zero, ControlInfo is ignored";
    // otherwise *ControlLength is the size of the ControlInfo buffer.
    let control = if ControlLength.is_null() || ControlInfo.is_null() {
        (ControlLength as usize, 0, 0)
    } else {
        // SAFETY: the caller's in/out parameter, valid until completion.
        let room = unsafe { ControlLength.read_unaligned() } as usize;
        (ControlLength as usize, ControlInfo as usize, room)
    };
    let socket = Arc::clone(call.socket());
    let decision = socket.with(|st, out| {
        st.receive_from(
            call.irp,
            buf,
            RemoteAddress as usize,
            control,
            ControlFlags as usize,
            out,
        )
    });
    call.decided(decision)
}

/// The most datagrams one `WskSendMessages` may carry in the sim. The
/// page gives no limit; the bound turns a corrupt or cyclic `WSK_BUF_LIST`
/// into STATUS_INVALID_PARAMETER instead of a walk that never ends (a
/// client sending more splits its list).
pub(crate) const SEND_MESSAGES_MAX: usize = 1024;

/// `WskSendMessages` (Windows 8 and later): the datagrams of `BufferList`,
/// in order, to one remote address (`RemoteAddress`, or the fixed one when
/// NULL, as `WskSendTo`), with `WskSendTo`'s control information applied
/// to each. Information: the bytes sent. The page does not say what a
/// failure in the middle means; here the datagrams before it are sent,
/// the request completes with the failure's status and their bytes as
/// Information (a client learns how many went out), and the rest is not
/// sent.
unsafe extern "C" fn wsk_send_messages(
    Socket: PWSK_SOCKET,
    BufferList: PWSK_BUF_LIST,
    Flags: ULONG,
    RemoteAddress: PSOCKADDR,
    ControlInfoLength: ULONG,
    ControlInfo: PCMSGHDR,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Datagram],
        "WskSendMessages",
        Location::caller()
    ));
    if BufferList.is_null() {
        violation(
            violation::NULL_ARGUMENT,
            Socket as usize,
            Irp as usize,
            0,
            "WskSendMessages with a NULL BufferList: the page requires \"an initialized \
             WSK_BUF_LIST structure\" (Windows would dereference NULL)"
                .to_owned(),
        );
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    // Reserved: must be zero.
    if Flags != 0 {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    }
    let source = match send_control_info(ControlInfoLength, ControlInfo, call.socket().family) {
        Ok(source) => source,
        Err(status) => return call.done(status, 0),
    };
    let remote = if RemoteAddress.is_null() {
        call.socket().state().fixed_remote
    } else {
        // SAFETY: the caller's address (WSK contract).
        unsafe { read_sockaddr(RemoteAddress) }
    };
    let Some(remote) = remote else {
        return call.done(STATUS_INVALID_PARAMETER, 0);
    };
    let mut datagrams = Vec::new();
    let mut node = BufferList;
    while !node.is_null() {
        if datagrams.len() == SEND_MESSAGES_MAX {
            return call.done(STATUS_INVALID_PARAMETER, 0);
        }
        // SAFETY: a node of the caller's list, live during the call (WSK
        // contract); only the address of its Buffer is taken.
        let wsk_buf = unsafe { &raw const (*node).Buffer };
        // SAFETY: that WSK_BUF, whose MDLs are live and locked (the
        // request is being made).
        let buf = match unsafe { BufRef::from_wsk_buf(wsk_buf) } {
            Ok(buf) => buf,
            Err(status) => return call.done(status, 0),
        };
        // SAFETY: as above: the request is being made, its buffers locked.
        match unsafe { buf.read(0, buf.length) } {
            Ok(data) => datagrams.push(data),
            Err(status) => return call.done(status, 0),
        }
        // SAFETY: as above.
        node = unsafe { (*node).Next };
    }
    let socket = Arc::clone(call.socket());
    let family = socket.family;
    let decision =
        socket.with(|st, out| st.send_to(call.irp, datagrams, (remote, source), family, out));
    call.decided(decision)
}

// === Poisoned tables (closed sockets) ===

/// Defines a poisoned dispatch entry: the same signature as the real one,
/// and a verifier bugcheck naming the call.
macro_rules! poisoned {
    ($name:ident, $routine:literal, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(Socket: PWSK_SOCKET, $($arg: $ty,)* Irp: PIRP) -> NTSTATUS {
            $(let _ = $arg;)*
            call_after_close(Socket, $routine, Irp)
        }
    };
}

poisoned!(poisoned_control_socket, "WskControlSocket", (
    _request: WSK_CONTROL_SOCKET_TYPE,
    _code: ULONG,
    _level: ULONG,
    _input_size: SIZE_T,
    _input: PVOID,
    _output_size: SIZE_T,
    _output: PVOID,
    _returned: *mut SIZE_T
));
poisoned!(poisoned_close_socket, "WskCloseSocket", ());
poisoned!(poisoned_bind, "WskBind", (_address: PSOCKADDR, _flags: ULONG));
poisoned!(poisoned_accept, "WskAccept", (
    _flags: ULONG,
    _context: PVOID,
    _dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    _local: PSOCKADDR,
    _remote: PSOCKADDR
));
poisoned!(poisoned_inspect_complete, "WskInspectComplete", (
    _id: PWSK_INSPECT_ID,
    _action: WSK_INSPECT_ACTION
));
poisoned!(poisoned_get_local_address, "WskGetLocalAddress", (_address: PSOCKADDR));
poisoned!(poisoned_get_remote_address, "WskGetRemoteAddress", (_address: PSOCKADDR));
poisoned!(poisoned_send_to, "WskSendTo", (
    _buffer: PWSK_BUF,
    _flags: ULONG,
    _remote: PSOCKADDR,
    _control_length: ULONG,
    _control: PCMSGHDR
));
poisoned!(poisoned_receive_from, "WskReceiveFrom", (
    _buffer: PWSK_BUF,
    _flags: ULONG,
    _remote: PSOCKADDR,
    _control_length: PULONG,
    _control: PCMSGHDR,
    _control_flags: PULONG
));
poisoned!(poisoned_send_messages, "WskSendMessages", (
    _list: PWSK_BUF_LIST,
    _flags: ULONG,
    _remote: PSOCKADDR,
    _control_length: ULONG,
    _control: PCMSGHDR
));
poisoned!(poisoned_connect, "WskConnect", (_remote: PSOCKADDR, _flags: ULONG));
poisoned!(poisoned_connect_ex, "WskConnectEx", (
    _remote: PSOCKADDR,
    _buffer: PWSK_BUF,
    _flags: ULONG
));
poisoned!(poisoned_send, "WskSend", (_buffer: PWSK_BUF, _flags: ULONG));
poisoned!(poisoned_receive, "WskReceive", (_buffer: PWSK_BUF, _flags: ULONG));
poisoned!(poisoned_disconnect, "WskDisconnect", (_buffer: PWSK_BUF, _flags: ULONG));
poisoned!(poisoned_send_ex, "WskSendEx", (
    _buffer: PWSK_BUF,
    _flags: ULONG,
    _control_length: ULONG,
    _control: PCMSGHDR
));
poisoned!(poisoned_receive_ex, "WskReceiveEx", (
    _buffer: PWSK_BUF,
    _flags: ULONG,
    _control_length: PULONG,
    _control: PCMSGHDR,
    _control_flags: PULONG
));

unsafe extern "C" fn poisoned_release_data(
    Socket: PWSK_SOCKET,
    _DataIndication: PWSK_DATA_INDICATION,
) -> NTSTATUS {
    call_after_close(Socket, "WskRelease", core::ptr::null_mut())
}

unsafe extern "C" fn poisoned_release_datagrams(
    Socket: PWSK_SOCKET,
    _DatagramIndication: PWSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    call_after_close(Socket, "WskRelease", core::ptr::null_mut())
}

const POISONED_BASIC: WSK_PROVIDER_BASIC_DISPATCH = WSK_PROVIDER_BASIC_DISPATCH {
    WskControlSocket: Some(poisoned_control_socket),
    WskCloseSocket: Some(poisoned_close_socket),
};

static POISONED_LISTEN: WSK_PROVIDER_LISTEN_DISPATCH = WSK_PROVIDER_LISTEN_DISPATCH {
    Basic: POISONED_BASIC,
    WskBind: Some(poisoned_bind),
    WskAccept: Some(poisoned_accept),
    WskInspectComplete: Some(poisoned_inspect_complete),
    WskGetLocalAddress: Some(poisoned_get_local_address),
};

static POISONED_DATAGRAM: WSK_PROVIDER_DATAGRAM_DISPATCH = WSK_PROVIDER_DATAGRAM_DISPATCH {
    Basic: POISONED_BASIC,
    WskBind: Some(poisoned_bind),
    WskSendTo: Some(poisoned_send_to),
    WskReceiveFrom: Some(poisoned_receive_from),
    WskRelease: Some(poisoned_release_datagrams),
    WskGetLocalAddress: Some(poisoned_get_local_address),
    WskSendMessages: Some(poisoned_send_messages),
};

static POISONED_CONNECTION: WSK_PROVIDER_CONNECTION_DISPATCH = WSK_PROVIDER_CONNECTION_DISPATCH {
    Basic: POISONED_BASIC,
    WskBind: Some(poisoned_bind),
    WskConnect: Some(poisoned_connect),
    WskGetLocalAddress: Some(poisoned_get_local_address),
    WskGetRemoteAddress: Some(poisoned_get_remote_address),
    WskSend: Some(poisoned_send),
    WskReceive: Some(poisoned_receive),
    WskDisconnect: Some(poisoned_disconnect),
    WskRelease: Some(poisoned_release_data),
    WskConnectEx: Some(poisoned_connect_ex),
    WskSendEx: Some(poisoned_send_ex),
    WskReceiveEx: Some(poisoned_receive_ex),
};

/// The poisoned table a closed socket of `kind` points to.
pub(crate) fn poisoned_table(kind: Kind) -> *const core::ffi::c_void {
    match kind {
        Kind::Listen => (&raw const POISONED_LISTEN).cast(),
        Kind::Connection => (&raw const POISONED_CONNECTION).cast(),
        Kind::Datagram => (&raw const POISONED_DATAGRAM).cast(),
    }
}
