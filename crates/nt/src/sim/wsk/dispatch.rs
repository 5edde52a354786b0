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
use std::sync::Arc;

use super::super::access::sl_set_arguments;
use super::super::event::require_irql;
use super::super::fault::Completion;
use super::super::ffi::*;
use super::super::io::{IO_NETWORK_INCREMENT, IofCompleteRequest, provider_accept_irp};
use super::super::session::{current, decide_completion};
use super::buf::BufRef;
use super::reactor::Job;
use super::socket::{Decision, Kind, SendKind, Socket, complete_irp, mark_pending};
use super::{Client, state_of};
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

/// One provider call with an IRP: the request is counted until completed;
/// the call until it returns.
struct Call {
    client: Arc<Client>,
    socket: Option<Arc<Socket>>,
    irp: usize,
}

impl Drop for Call {
    fn drop(&mut self) {
        self.client.call_done();
    }
}

impl Call {
    /// Finishes the request with a known result: inline, or pending and
    /// completed by the provider thread, per the completion policy.
    fn done(self, status: NTSTATUS, information: usize) -> NTSTATUS {
        match decide_completion() {
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
/// socket or client).
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
fn accept_irp(irp: PIRP, socket: usize) -> Option<()> {
    // SAFETY: a live IRP handed to the provider with a location left for it.
    let location = unsafe { provider_accept_irp(irp) };
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

fn irql_ok(routine: &str, location: &'static Location<'static>) -> bool {
    require_irql(&current(), DISPATCH_LEVEL, routine, location)
}

/// Enters a socket call with an IRP.
fn enter(
    socket: PWSK_SOCKET,
    irp: PIRP,
    kinds: &[Kind],
    routine: &str,
    location: &'static Location<'static>,
) -> Result<Call, NTSTATUS> {
    if !irql_ok(routine, location) {
        return Err(STATUS_INVALID_DEVICE_STATE);
    }
    if irp.is_null() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let found = state_of(&current()).socket_at(socket as usize);
    if accept_irp(irp, socket as usize).is_none() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let Some(found) = found else {
        complete_orphan(irp, STATUS_INVALID_HANDLE);
        return Err(STATUS_INVALID_HANDLE);
    };
    let client = Arc::clone(&found.client);
    client.call_begin();
    client.irp_begin();
    if !found.begin_request() {
        let call = Call {
            client,
            socket: None,
            irp: irp as usize,
        };
        return Err(call.done(STATUS_INVALID_HANDLE, 0));
    }
    let kind = found.kind;
    let call = Call {
        client,
        socket: Some(found),
        irp: irp as usize,
    };
    if !kinds.contains(&kind) {
        return Err(call.done(STATUS_INVALID_DEVICE_REQUEST, 0));
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
    if !irql_ok(routine, location) {
        return Err(STATUS_INVALID_DEVICE_STATE);
    }
    if irp.is_null() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let found = state_of(&current()).client_at(client as usize);
    if accept_irp(irp, 0).is_none() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let Some(found) = found else {
        complete_orphan(irp, STATUS_INVALID_PARAMETER);
        return Err(STATUS_INVALID_PARAMETER);
    };
    found.call_begin();
    found.irp_begin();
    let usable = found.usable();
    let call = Call {
        client: found,
        socket: None,
        irp: irp as usize,
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
    if Protocol != 0 && Protocol != protocol {
        return call.done(STATUS_NOT_SUPPORTED, 0);
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
    if Protocol != 0 && Protocol != IPPROTO_TCP {
        return call.done(STATUS_NOT_SUPPORTED, 0);
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
        if !irql_ok("WskControlClient", location) {
            return STATUS_INVALID_DEVICE_STATE;
        }
        let Some(client) = state_of(&current()).client_at(Client as usize) else {
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

unsafe extern "C" fn wsk_get_address_info(
    Client: PWSK_CLIENT,
    _NodeName: PUNICODE_STRING,
    _ServiceName: PUNICODE_STRING,
    _NameSpace: ULONG,
    _Provider: *mut GUID,
    _Hints: PADDRINFOEXW,
    Result: *mut PADDRINFOEXW,
    _OwningProcess: PEPROCESS,
    _OwningThread: PETHREAD,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter_client(
        Client,
        Irp,
        "WskGetAddressInfo",
        Location::caller()
    ));
    if !Result.is_null() {
        // SAFETY: the caller's out-parameter.
        unsafe { Result.write_unaligned(core::ptr::null_mut()) };
    }
    call.done(STATUS_NOT_SUPPORTED, 0)
}

unsafe extern "C" fn wsk_free_address_info(_Client: PWSK_CLIENT, _AddrInfo: PADDRINFOEXW) {}

unsafe extern "C" fn wsk_get_name_info(
    Client: PWSK_CLIENT,
    _SockAddr: PSOCKADDR,
    _SockAddrLength: ULONG,
    _NodeName: PUNICODE_STRING,
    _ServiceName: PUNICODE_STRING,
    _Flags: ULONG,
    _OwningProcess: PEPROCESS,
    _OwningThread: PETHREAD,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter_client(
        Client,
        Irp,
        "WskGetNameInfo",
        Location::caller()
    ));
    call.done(STATUS_NOT_SUPPORTED, 0)
}

// === Basic ===

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
    let irp = (!Irp.is_null()).then_some(Irp as usize);
    let (socket, call) = if Irp.is_null() {
        if !irql_ok("WskControlSocket", location) {
            return STATUS_INVALID_DEVICE_STATE;
        }
        match state_of(&current()).socket_at(Socket as usize) {
            Some(socket) => (socket, None),
            None => return STATUS_INVALID_HANDLE,
        }
    } else {
        let call = enter_or_return!(enter(
            Socket,
            Irp,
            &[Kind::Listen, Kind::Connection, Kind::Datagram],
            "WskControlSocket",
            location
        ));
        (Arc::clone(call.socket()), Some(call))
    };
    let mut returned = 0usize;
    let decision = match (RequestType, ControlCode, Level) {
        (WskSetOption, SO_WSK_EVENT_CALLBACK, SOL_SOCKET) => {
            match event_callback_control(InputBuffer, InputSize) {
                Ok(mask) => socket.with(|st, out| st.event_control(socket.kind, mask, irp, out)),
                Err(status) => Decision::Done(status, 0),
            }
        }
        (WskSetOption, code, level) => {
            if InputBuffer.is_null() || (InputSize as usize) < 4 {
                Decision::Done(STATUS_INVALID_PARAMETER, 0)
            } else {
                // SAFETY: the caller's input buffer of at least 4 bytes.
                let value = unsafe { core::ptr::read_unaligned(InputBuffer as *const ULONG) };
                Decision::Done(socket.state().set_option(level, code, value), 0)
            }
        }
        (WskGetOption, code, level) => match socket.state().get_option(level, code) {
            Ok(value) if !OutputBuffer.is_null() && OutputSize as usize >= 4 => {
                // SAFETY: the caller's output buffer of at least 4 bytes.
                unsafe { (OutputBuffer as *mut ULONG).write_unaligned(value) };
                returned = 4;
                Decision::Done(STATUS_SUCCESS, 4)
            }
            Ok(_) => Decision::Done(STATUS_BUFFER_TOO_SMALL, 0),
            Err(status) => Decision::Done(status, 0),
        },
        _ => Decision::Done(STATUS_NOT_SUPPORTED, 0),
    };
    if !OutputSizeReturned.is_null() {
        // SAFETY: the caller's optional out-parameter.
        unsafe { OutputSizeReturned.write_unaligned(returned as SIZE_T) };
    }
    match call {
        Some(call) => call.decided(decision),
        None => match decision {
            Decision::Done(status, _) => status,
            Decision::Queued => STATUS_PENDING,
        },
    }
}

unsafe extern "C" fn wsk_close_socket(Socket: PWSK_SOCKET, Irp: PIRP) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Listen, Kind::Connection, Kind::Datagram],
        "WskCloseSocket",
        Location::caller()
    ));
    let inline = decide_completion() == Completion::Inline;
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
    let decision = socket.with(|st, out| st.send(call.irp, buf, SendKind::Data, out));
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
    let decision =
        socket.with(|st, out| st.receive(call.irp, buf, Flags, control_length as usize, out));
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
        if buf.length != 0 {
            return call.done(STATUS_INVALID_PARAMETER, 0);
        }
        socket.with(|st, out| st.abort(&socket, out))
    } else {
        socket.with(|st, out| st.send(call.irp, buf, SendKind::Disconnect, out))
    };
    call.decided(decision)
}

fn release_common(
    socket: PWSK_SOCKET,
    head: usize,
    routine: &str,
    location: &'static Location<'static>,
) -> NTSTATUS {
    if !irql_ok(routine, location) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    match state_of(&current()).socket_at(socket as usize) {
        Some(found) => found.release(head),
        None => STATUS_INVALID_HANDLE,
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

unsafe extern "C" fn wsk_send_to(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    _Flags: ULONG,
    RemoteAddress: PSOCKADDR,
    _ControlInfoLength: ULONG,
    _ControlInfo: PCMSGHDR,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Datagram],
        "WskSendTo",
        Location::caller()
    ));
    // SAFETY: the caller's address (WSK contract).
    let Some(remote) = (unsafe { read_sockaddr(RemoteAddress) }) else {
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
    let decision = socket.with(|st, out| st.send_to(call.irp, data, remote, family, out));
    call.decided(decision)
}

unsafe extern "C" fn wsk_receive_from(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    _Flags: ULONG,
    RemoteAddress: PSOCKADDR,
    ControlLength: PULONG,
    _ControlInfo: PCMSGHDR,
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
    // SAFETY: the caller's WSK_BUF with live MDLs.
    let buf = match unsafe { BufRef::from_wsk_buf(Buffer) } {
        Ok(buf) => buf,
        Err(status) => return call.done(status, 0),
    };
    let socket = Arc::clone(call.socket());
    let decision = socket.with(|st, out| {
        st.receive_from(
            call.irp,
            buf,
            RemoteAddress as usize,
            ControlLength as usize,
            ControlFlags as usize,
            out,
        )
    });
    call.decided(decision)
}

unsafe extern "C" fn wsk_send_messages(
    Socket: PWSK_SOCKET,
    _BufferList: PWSK_BUF_LIST,
    _Flags: ULONG,
    _RemoteAddress: PSOCKADDR,
    _ControlInfoLength: ULONG,
    _ControlInfo: PCMSGHDR,
    Irp: PIRP,
) -> NTSTATUS {
    let call = enter_or_return!(enter(
        Socket,
        Irp,
        &[Kind::Datagram],
        "WskSendMessages",
        Location::caller()
    ));
    call.done(STATUS_NOT_SUPPORTED, 0)
}
