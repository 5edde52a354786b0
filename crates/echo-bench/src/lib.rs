//! End-to-end echo benchmarks for wdk-async, host only.
//!
//! One load generator, written here, drives every echo server the same
//! way on the same loopback: the sample driver on the simulated kernel
//! (`cargo xtask run`'s loading code, in a child process) and the peers a
//! user would pick instead (tokio multi-thread, tokio current-thread and a
//! blocking thread-per-connection std server, [`peer`], each in a child
//! process of its own). What it measures:
//!
//! - [`tcp::throughput`]: closed-loop echo (one message in flight per
//!   connection) at a number of connections and a message size;
//! - [`tcp::latency`]: round-trip percentiles at a fixed offered load
//!   (open loop: the sender keeps its schedule whatever the replies do, so
//!   a slow reply cannot hide the ones behind it);
//! - [`udp::burst`]: datagrams fired as fast as one thread can, echoes
//!   counted (drop rate, throughput), and [`udp::latency`] at a fixed rate;
//! - the server's CPU time (user+sys of its process, [`procstat`]) and its
//!   resident memory.
//!
//! Every run is bounded in count and time and checks every byte it gets
//! back ([`pattern`]): a server that corrupts, reorders, loses (TCP) or
//! stalls fails the run with an error instead of producing a figure.

pub mod pattern;
pub mod peer;
pub mod procstat;
pub mod record;
pub mod server;
pub mod stats;
pub mod tcp;
pub mod udp;
