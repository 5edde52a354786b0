//! The sim face offers exactly the signatures of the seam's function
//! contract (the same file the kernel face compiles): a wrong name,
//! parameter type or return type in the sim is a compile error here.
#![allow(missing_docs)]

pub use nt::*;

#[path = "../src/kernel/contract.rs"]
mod contract;

#[test]
fn the_sim_compiles_the_seam_contract() {}
