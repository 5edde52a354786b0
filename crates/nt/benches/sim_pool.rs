//! The simulated kernel's own costs on the hot paths every benchmark above
//! it pays: a pool allocate/free pair and an IRP allocate/free pair, with
//! the fast pool (what the other benchmarks run on) and with the special
//! pool (guard pages, quarantine: what the tests run on), side by side so
//! the ratio is measured in one run. (`cargo bench -p nt --bench sim_pool`.)

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use nt::sim::{PoolPolicy, Profile, Session, SimConfig};
use nt::*;

fn sim_hot_paths(c: &mut Criterion) {
    for (name, pool) in [("fast", PoolPolicy::Fast), ("special", PoolPolicy::Special)] {
        let session = Session::boot_config(SimConfig {
            pool,
            ..SimConfig::profile(Profile::Fast, 0)
        });
        let mut group = c.benchmark_group("sim_pool");
        group.bench_function(format!("allocate+free 64B/{name}"), |b| {
            b.iter(|| {
                // SAFETY: PASSIVE_LEVEL in a session.
                let p =
                    unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, nt::sim::pool_tag(b"Bnch")) };
                // SAFETY: ours.
                unsafe { ExFreePool(black_box(p)) };
            })
        });
        group.bench_function(format!("allocate+free 8KiB/{name}"), |b| {
            b.iter(|| {
                // SAFETY: PASSIVE_LEVEL in a session.
                let p = unsafe {
                    ExAllocatePool2(POOL_FLAG_NON_PAGED, 8192, nt::sim::pool_tag(b"Bnch"))
                };
                // SAFETY: ours.
                unsafe { ExFreePool(black_box(p)) };
            })
        });
        group.bench_function(format!("IoAllocateIrp+IoFreeIrp/{name}"), |b| {
            b.iter(|| {
                // SAFETY: PASSIVE_LEVEL in a session.
                let irp = unsafe { IoAllocateIrp(1, FALSE) };
                // SAFETY: ours, never sent.
                unsafe { IoFreeIrp(black_box(irp)) };
            })
        });
        group.finish();
        assert!(session.finish().is_clean());
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = sim_hot_paths
}
criterion_main!(benches);
