//! `Connection::send_chain`: a caller's MDL chain (three MDLs over three
//! pool blocks, as an upper driver's `Irp->MdlAddress` may be) sent from an
//! offset without copying; the peer gets exactly those bytes, the chain
//! comes back, bad chains are refused before anything is sent, and the
//! report is clean (the test's MDLs and pool are freed by the chain's own
//! drop).

mod common;

use std::io::Read;
use std::net::TcpListener;

use ::wsk::{Connection, MdlChain, SocketAddr};
use common::*;
use nt::access::set_mdl_next;
use nt::*;

const TAG: ULONG = u32::from_le_bytes(*b"Tchn");

/// Pool blocks, each described by an MDL, chained in order.
struct PoolChain {
    blocks: Vec<(*mut u8, PMDL)>,
    offset: usize,
    len: usize,
}

// SAFETY: the blocks and MDLs are owned by the value.
unsafe impl Send for PoolChain {}

impl PoolChain {
    fn new(pieces: &[&[u8]], offset: usize, len: usize) -> PoolChain {
        let mut chain = PoolChain {
            blocks: Vec::new(),
            offset,
            len,
        };
        for piece in pieces {
            // SAFETY: PASSIVE_LEVEL test code.
            let ptr = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, piece.len() as SIZE_T, TAG) }
                .cast::<u8>();
            assert!(!ptr.is_null());
            // SAFETY: a fresh block of piece.len() bytes.
            unsafe { std::ptr::copy_nonoverlapping(piece.as_ptr(), ptr, piece.len()) };
            // SAFETY: the MDL describes our block.
            let mdl = unsafe {
                IoAllocateMdl(
                    ptr.cast(),
                    piece.len() as ULONG,
                    FALSE,
                    FALSE,
                    std::ptr::null_mut(),
                )
            };
            assert!(!mdl.is_null());
            // SAFETY: non-paged pool; our fresh MDL.
            unsafe { MmBuildMdlForNonPagedPool(mdl) };
            if let Some(&(_, last)) = chain.blocks.last() {
                // SAFETY: the previous MDL of our chain.
                unsafe { set_mdl_next(last, mdl) };
            }
            chain.blocks.push((ptr, mdl));
        }
        chain
    }
}

impl Drop for PoolChain {
    fn drop(&mut self) {
        for &(ptr, mdl) in &self.blocks {
            // SAFETY: our MDL, freed once, after WSK is done with it (the
            // value is dropped only after the send completed).
            unsafe { IoFreeMdl(mdl) };
            // SAFETY: our block, freed once, after its MDL.
            unsafe { ExFreePoolWithTag(ptr.cast(), TAG) };
        }
    }
}

// SAFETY: the head MDL stays the same while the value lives; the chain
// describes non-paged pool built with MmBuildMdlForNonPagedPool, covering
// offset + len bytes (the constructor's callers keep within it), freed
// only by the drop.
unsafe impl MdlChain for PoolChain {
    fn mdl(&self) -> PMDL {
        self.blocks.first().map_or(std::ptr::null_mut(), |b| b.1)
    }
    fn offset(&self) -> usize {
        self.offset
    }
    fn len(&self) -> usize {
        self.len
    }
}

#[test]
fn a_callers_mdl_chain_is_sent_from_its_offset() {
    each_policy(|env, _| {
        block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let remote: SocketAddr = listener.local_addr().unwrap();
            let connection = Connection::connect(env.provider(), remote)
                .await
                .expect("connect");
            let (mut peer, _) = listener.accept().unwrap();
            let a = pattern(3000, 1);
            let b = pattern(70_000, 2);
            let c = pattern(5, 3);
            let all: Vec<u8> = [&a[..], &b[..], &c[..]].concat();
            // From inside the first MDL to inside the last.
            let (offset, len) = (100, all.len() - 102);
            let chain = PoolChain::new(&[&a, &b, &c], offset, len);
            let (sent, chain) = connection.send_chain(chain).await;
            assert_eq!(sent.expect("send"), len);
            assert_eq!(chain.len(), len, "the chain came back");
            let mut got = vec![0u8; len];
            peer.read_exact(&mut got).unwrap();
            same_bytes(&got, &all[offset..offset + len], "the chain's bytes");
            drop(chain);
            // Refused before anything is sent.
            let empty = PoolChain::new(&[], 0, 10);
            let (refused, _) = connection.send_chain(empty).await;
            assert_eq!(refused.unwrap_err().status(), STATUS_INVALID_PARAMETER);
            let zero = PoolChain::new(&[&a], 0, 0);
            let (refused, _) = connection.send_chain(zero).await;
            assert_eq!(refused.unwrap_err().status(), STATUS_INVALID_PARAMETER);
            connection.close().await.expect("close");
        });
    });
}
