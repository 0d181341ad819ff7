//! Summaries of latency samples: mean, standard deviation and percentiles interpolated linearly between
//! order statistics (numpy's default, which `vllm bench serve` uses).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub std: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Summary {
    /// All zeros (n = 0) for an empty slice; NaNs are ignored.
    pub fn of(values: &[f64]) -> Summary {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Summary::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        // Population standard deviation, as numpy's std.
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        Summary { n, mean, std, p50: percentile(&v, 50.0), p95: percentile(&v, 95.0), p99: percentile(&v, 99.0) }
    }

    /// Standard error of the mean, relative to the mean (0 when undefined).
    pub fn relative_standard_error(&self) -> f64 {
        if self.n < 2 || self.mean == 0.0 { 0.0 } else { self.std / (self.n as f64).sqrt() / self.mean.abs() }
    }
}

/// The `q`-th percentile of sorted values, linear interpolation (numpy `method="linear"`).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear() {
        // numpy.percentile([1,2,3,4,10], [50,95,99]) = [3, 8.8, 9.76]
        let s = Summary::of(&[10.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(s.n, 5);
        assert!((s.p50 - 3.0).abs() < 1e-12);
        assert!((s.p95 - 8.8).abs() < 1e-12);
        assert!((s.p99 - 9.76).abs() < 1e-12);
        assert!((s.mean - 4.0).abs() < 1e-12);
        assert!((s.std - 10f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(Summary::of(&[]), Summary::default());
        assert_eq!(Summary::of(&[f64::NAN]).n, 0);
        let one = Summary::of(&[7.0]);
        assert_eq!((one.p50, one.p99, one.std), (7.0, 7.0, 0.0));
        assert_eq!(one.relative_standard_error(), 0.0);
    }
}
