//! Sends from memory this crate does not own: an MDL chain the caller
//! already has, such as an upper driver's `Irp->MdlAddress`, sent with
//! `WskSend` without copying ([`Connection::send_chain`]).
//!
//! The chain is passed by value as an [`MdlChain`] and handed back with
//! the result, as owned buffers are: dropping the send future in flight
//! keeps the value alive until WSK completes the IRP, so the pages cannot
//! go away under the transport. A driver forwarding its caller's IRP wraps
//! it in a type whose `Drop` (or explicit completion after the send comes
//! back) completes that IRP.
//!
//! IRQL: as [`Connection::send`]: <= DISPATCH_LEVEL.

use core::ptr::NonNull;

use irp_future::Submission;
use nt::wsk::*;
use nt::*;

use crate::connection::Connection;
use crate::error::{BufResult, Error, check_transferred};
use crate::ops::{self, on_socket};
use crate::shared::{SocketShared, dispatch_entry};
use crate::split::WriteHalf;

/// An MDL chain to send from, owned by the value (see the module docs).
///
/// # Safety
///
/// While the value lives: [`MdlChain::mdl`] returns the same MDL, the head
/// of a chain (linked through `Next`) whose pages are resident and locked
/// (built with `MmBuildMdlForNonPagedPool`, or probed and locked with
/// `MmProbeAndLockPages`), and the chain describes at least
/// `offset() + len()` bytes; nothing frees, unlocks or rewrites it. The
/// transport reads those pages until the send's IRP completes, which may be
/// after the future that sent them was dropped: the value is dropped only
/// then.
pub unsafe trait MdlChain: Send + 'static {
    /// The head of the chain.
    fn mdl(&self) -> PMDL;
    /// Where in the chain the bytes to send begin (bytes from the start of
    /// the first MDL's buffer).
    fn offset(&self) -> usize {
        0
    }
    /// How many bytes to send.
    fn len(&self) -> usize;
    /// Whether there is nothing to send.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `WskSend` of a caller's chain: the chain and its `WSK_BUF`, alive until
/// completion.
struct ChainSendRes<C: MdlChain> {
    shared: NonNull<SocketShared>,
    chain: C,
    wsk: WSK_BUF,
    flags: ULONG,
}

// SAFETY: the socket block is shared through atomics and locks; the chain
// is Send; the WSK_BUF describes the chain only.
unsafe impl<C: MdlChain> Send for ChainSendRes<C> {}

fn submit_chain_send<C: MdlChain>(irp: PIRP, r: &mut ChainSendRes<C>) -> Submission {
    let wsk: *mut WSK_BUF = &mut r.wsk;
    let flags = r.flags;
    on_socket(r.shared, |socket| {
        match dispatch_entry!(socket, WSK_PROVIDER_CONNECTION_DISPATCH, WskSend) {
            // SAFETY: WskSend with our IRP; the WSK_BUF lives in the
            // resources and its chain stays valid while they do (MdlChain's
            // contract), until completion.
            Some(send) => Submission::Submitted(unsafe { send(socket, wsk, flags, irp) }),
            None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
        }
    })
}

impl Connection {
    /// Sends `chain.len()` bytes of a caller's MDL chain from
    /// `chain.offset()` (`WskSend`, no copy); completes as
    /// [`Connection::send`] does (when the bytes were sent) and gives the
    /// chain back. A null MDL, an empty chain, or an offset or length
    /// beyond a ULONG is STATUS_INVALID_PARAMETER (nothing is sent). On
    /// error [`Error::transferred`] bytes went out.
    pub async fn send_chain<C: MdlChain>(&self, chain: C) -> BufResult<usize, C> {
        self.send_chain_with_flags(chain, 0).await
    }

    async fn send_chain_with_flags<C: MdlChain>(
        &self,
        chain: C,
        flags: ULONG,
    ) -> BufResult<usize, C> {
        let (mdl, offset, len) = (chain.mdl(), chain.offset(), chain.len());
        let Ok(offset) = ULONG::try_from(offset) else {
            return (Err(Error::from_status(STATUS_INVALID_PARAMETER)), chain);
        };
        if mdl.is_null() || len == 0 || ULONG::try_from(len).is_err() {
            return (Err(Error::from_status(STATUS_INVALID_PARAMETER)), chain);
        }
        let resources = ChainSendRes {
            shared: self.handle().ptr(),
            wsk: WSK_BUF {
                Mdl: mdl,
                Offset: offset,
                Length: len as SIZE_T,
            },
            chain,
            flags,
        };
        let done = ops::call(resources, submit_chain_send::<C>).await;
        (
            check_transferred(done.status, done.information as usize),
            done.resources.chain,
        )
    }
}

impl WriteHalf {
    /// [`Connection::send_chain`].
    pub async fn send_chain<C: MdlChain>(&self, chain: C) -> BufResult<usize, C> {
        self.connection().send_chain(chain).await
    }
}
