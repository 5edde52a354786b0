//! Percentiles and spreads of measured samples.

use std::time::Duration;

/// Percentiles of a set of round-trip times.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percentiles {
    /// How many samples.
    pub samples: usize,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Largest sample, µs.
    pub max_us: f64,
}

impl Percentiles {
    /// The percentiles of `samples` (nanoseconds; sorted in place). Nearest
    /// rank: the p-th percentile is the smallest sample with at least p% of
    /// the samples at or below it.
    pub fn of(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        // Per mille, in integers (0.999 * 1000 is not 999 in floating point).
        let rank = |per_mille: usize| {
            let index = (per_mille * samples.len()).div_ceil(1000);
            samples[index.clamp(1, samples.len()) - 1] as f64 / 1e3
        };
        Self {
            samples: samples.len(),
            p50_us: rank(500),
            p99_us: rank(990),
            p999_us: rank(999),
            max_us: *samples.last().unwrap_or(&0) as f64 / 1e3,
        }
    }
}

/// Mean, minimum and maximum of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spread {
    /// Arithmetic mean.
    pub mean: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (all zero when empty).
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Self {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            min,
            max,
        }
    }
}

/// Nanoseconds of `d`, saturating.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        samples.reverse();
        let p = Percentiles::of(&mut samples);
        assert_eq!(p.samples, 1000);
        assert_eq!(p.p50_us, 500.0);
        assert_eq!(p.p99_us, 990.0);
        assert_eq!(p.p999_us, 999.0);
        assert_eq!(p.max_us, 1000.0);
        let mut one = [7_000u64];
        assert_eq!(Percentiles::of(&mut one).p999_us, 7.0);
        assert_eq!(Percentiles::of(&mut []).samples, 0);
    }

    #[test]
    fn spread_of_values() {
        let s = Spread::of(&[2.0, 4.0, 9.0]);
        assert_eq!((s.mean, s.min, s.max), (5.0, 2.0, 9.0));
    }
}
