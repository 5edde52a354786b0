//! Batched datagram sends: [`DatagramSocket::send_batch`], one
//! `WskSendMessages` IRP for several datagrams to one address (Windows 8
//! and later; older providers' datagram tables end before the entry).
//!
//! The datagrams are copied into one buffer described by one MDL, and one
//! `WSK_BUF_LIST` node per datagram points into it: three allocations per
//! batch (buffer, MDL, list) and one IRP, instead of an IRP, an MDL and a
//! buffer per datagram. WSK sends them in list order. On an error, the
//! datagrams before the failing one were sent: [`crate::Error::transferred`]
//! says how many bytes (the simulated provider's reading; the page does
//! not say).
//!
//! Dropping the future in flight requests `IoCancelIrp`; datagrams may
//! still go out (all or a prefix), as with `send_to`.
//!
//! IRQL <= DISPATCH_LEVEL; nothing blocks.

use alloc::vec::Vec;
use core::net::SocketAddr;
use core::ptr::NonNull;

use irp_future::{MdlBuf, Submission};
use nt::wsk::*;
use nt::*;

use crate::addr::SockAddrBuf;
use crate::datagram::DatagramSocket;
use crate::error::{Error, Result, check_transferred};
use crate::ops::{self, on_socket};
use crate::shared::{SocketShared, dispatch_entry};

/// `WskSendMessages`: the copied datagrams, their list and the address,
/// alive until completion.
struct SendBatchRes {
    shared: NonNull<SocketShared>,
    /// The datagrams' bytes and their MDL (only kept alive: the nodes
    /// describe them).
    _data: MdlBuf<Vec<u8>>,
    /// One node per datagram; `Next` links are set at submission (the
    /// nodes' heap block does not move with the resources).
    nodes: Vec<WSK_BUF_LIST>,
    remote: SockAddrBuf,
}

// SAFETY: the socket block is shared through atomics and locks; the nodes
// point only into `data`, owned with them; the rest is plain data.
unsafe impl Send for SendBatchRes {}

fn submit_send_batch(irp: PIRP, r: &mut SendBatchRes) -> Submission {
    let count = r.nodes.len();
    let first = r.nodes.as_mut_ptr();
    for i in 1..count {
        r.nodes[i - 1].Next = first.wrapping_add(i);
    }
    let remote = r.remote.as_mut_ptr();
    on_socket(r.shared, |socket| {
        match dispatch_entry!(socket, WSK_PROVIDER_DATAGRAM_DISPATCH, WskSendMessages) {
            // SAFETY: WskSendMessages with our IRP; the list, the buffer
            // its nodes describe and the address live in the resources
            // until completion.
            Some(send_messages) => Submission::Submitted(unsafe {
                send_messages(socket, first, 0, remote, 0, core::ptr::null_mut(), irp)
            }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}

impl DatagramSocket {
    /// Sends `datagrams` to `to`, in order, with one `WskSendMessages`
    /// (Windows 8 and later). Returns the bytes sent (their total); an
    /// empty batch sends nothing and returns 0 without calling WSK. On an
    /// error, [`Error::transferred`] is the bytes of the datagrams sent
    /// before the failure. STATUS_INSUFFICIENT_RESOURCES when the copy or
    /// its list cannot be allocated; STATUS_INVALID_PARAMETER for more
    /// than 4 GiB in all.
    pub async fn send_batch(&self, datagrams: &[&[u8]], to: SocketAddr) -> Result<usize> {
        if datagrams.is_empty() {
            return Ok(0);
        }
        let total = datagrams.iter().map(|d| d.len()).sum::<usize>();
        if u32::try_from(total).is_err() {
            return Err(Error::from_status(STATUS_INVALID_PARAMETER));
        }
        // Built apart: the list's raw pointers are not held across the
        // await (the future stays `Send`, spawnable on an executor).
        let resources = self.batch_resources(datagrams, total, to)?;
        let done = ops::call(resources, submit_send_batch).await;
        check_transferred(done.status, done.information as usize)
    }

    /// The copy of `datagrams` (`total` bytes), its MDL and list, and the
    /// address, for one `WskSendMessages`.
    fn batch_resources(
        &self,
        datagrams: &[&[u8]],
        total: usize,
        to: SocketAddr,
    ) -> Result<SendBatchRes> {
        let no_memory = |_| Error::from_status(STATUS_INSUFFICIENT_RESOURCES);
        let mut data = Vec::new();
        data.try_reserve_exact(total).map_err(no_memory)?;
        let mut nodes = Vec::new();
        nodes
            .try_reserve_exact(datagrams.len())
            .map_err(no_memory)?;
        for datagram in datagrams {
            data.extend_from_slice(datagram);
        }
        let data = MdlBuf::new(data).map_err(|(status, _)| Error::from_status(status))?;
        let mdl = data.mdl();
        let mut offset = 0;
        for datagram in datagrams {
            let empty = datagram.is_empty() || mdl.is_null();
            nodes.push(WSK_BUF_LIST {
                Next: core::ptr::null_mut(),
                Buffer: WSK_BUF {
                    Mdl: if empty { core::ptr::null_mut() } else { mdl },
                    Offset: if empty { 0 } else { offset as ULONG },
                    Length: datagram.len() as SIZE_T,
                },
            });
            offset += datagram.len();
        }
        Ok(SendBatchRes {
            shared: self.handle().ptr(),
            _data: data,
            nodes,
            remote: SockAddrBuf::new(&to),
        })
    }
}
