//! The driver's counters: relaxed atomics bumped by the tasks (on the
//! executor thread) and by the receive IOCTL's task, read by the
//! statistics IOCTL. Any IRQL.

use core::sync::atomic::{AtomicU64, Ordering};

use echo_ioctl::Statistics;
use kernel_executor::Counters;

use crate::params::{Config, UdpMode};

/// One counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn bump(&self) {
        self.add(1);
    }

    /// Subtracts one (gauges).
    pub fn drop_one(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The value now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Every counter of [`Statistics`] the driver keeps itself.
#[derive(Debug, Default)]
pub struct Stats {
    /// Gauge: connections open now (not reset).
    pub connections_current: Counter,
    /// See [`Statistics::connections_total`].
    pub connections_total: Counter,
    /// See [`Statistics::connections_refused`].
    pub connections_refused: Counter,
    /// See [`Statistics::connections_idle_closed`].
    pub connections_idle_closed: Counter,
    /// See [`Statistics::connections_aborted`].
    pub connections_aborted: Counter,
    /// See [`Statistics::bytes_received`].
    pub bytes_received: Counter,
    /// See [`Statistics::bytes_sent`].
    pub bytes_sent: Counter,
    /// See [`Statistics::datagrams_received`].
    pub datagrams_received: Counter,
    /// See [`Statistics::datagrams_sent`].
    pub datagrams_sent: Counter,
    /// See [`Statistics::datagrams_dropped`].
    pub datagrams_dropped: Counter,
    /// See [`Statistics::datagrams_delivered`].
    pub datagrams_delivered: Counter,
    /// Gauge: see [`Statistics::receives_pending`] (not reset).
    pub receives_pending: Counter,
}

impl Stats {
    /// Resets the cumulative counters (not the gauge).
    pub fn reset(&self) {
        for counter in [
            &self.connections_total,
            &self.connections_refused,
            &self.connections_idle_closed,
            &self.connections_aborted,
            &self.bytes_received,
            &self.bytes_sent,
            &self.datagrams_received,
            &self.datagrams_sent,
            &self.datagrams_dropped,
            &self.datagrams_delivered,
        ] {
            counter.reset();
        }
    }

    /// The record the statistics IOCTL returns.
    pub fn snapshot(&self, executor: &Counters, config: &Config) -> Statistics {
        Statistics {
            connections_current: self.connections_current.get(),
            connections_total: self.connections_total.get(),
            connections_refused: self.connections_refused.get(),
            connections_idle_closed: self.connections_idle_closed.get(),
            connections_aborted: self.connections_aborted.get(),
            bytes_received: self.bytes_received.get(),
            bytes_sent: self.bytes_sent.get(),
            datagrams_received: self.datagrams_received.get(),
            datagrams_sent: self.datagrams_sent.get(),
            datagrams_dropped: self.datagrams_dropped.get(),
            datagrams_delivered: self.datagrams_delivered.get(),
            receives_pending: self.receives_pending.get(),
            tasks_live: executor.tasks,
            tasks_spawned: executor.spawned,
            spawn_failures: executor.spawn_failures,
            polls: executor.polls,
            wakes: executor.wakes,
            tasks_completed: executor.completed,
            tasks_cancelled: executor.cancelled,
            tcp_port: u32::from(config.tcp_port),
            udp_port: u32::from(config.udp_port),
            udp_mode: match config.udp_mode {
                UdpMode::Queue => 0,
                UdpMode::Callbacks => 1,
            },
            udp_queue_depth: config.udp_queue_depth,
            max_connections: config.max_connections,
            idle_timeout_seconds: config.idle_timeout_seconds,
        }
    }
}
