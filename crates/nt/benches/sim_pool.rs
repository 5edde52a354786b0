//! The simulated kernel's own costs on the hot paths every benchmark above
//! it pays: a pool allocate/free pair and an IRP allocate/free pair.
//! (`cargo bench -p nt --bench sim_pool`; no peer: a regression guard to
//! read, not a comparison.)

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use nt::*;

fn sim_hot_paths(c: &mut Criterion) {
    let session = nt::sim::Session::boot();
    let mut group = c.benchmark_group("sim");
    group.bench_function("pool/allocate+free 64B", |b| {
        b.iter(|| {
            // SAFETY: PASSIVE_LEVEL in a session.
            let p = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, nt::sim::pool_tag(b"Bnch")) };
            // SAFETY: ours.
            unsafe { ExFreePool(black_box(p)) };
        })
    });
    group.bench_function("irp/allocate+free", |b| {
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

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = sim_hot_paths
}
criterion_main!(benches);
