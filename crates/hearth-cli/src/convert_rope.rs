//! Recovering Hugging Face `rope_scaling` (Llama 3 type) from llama.cpp's per-frequency factors.
//!
//! Llama 3 scaling keeps high frequencies, divides low ones by `factor`, and blends linearly in
//! `1/wavelength` in between. With `low_freq_factor` fixed at 1 (it only sets the scale of the other
//! two), `original_max_position` and `high_freq_factor` follow from the blended frequencies: two or
//! more pin them down, fewer leave a range, from which a round value is picked. Every candidate is
//! checked by recomputing the factors.

use anyhow::{bail, Result};
use hearth_layers::{RopeConfig, RopeScaling, RopeStyle};
use serde_json::{json, Value};

/// Below this distance from 0 or 1 a frequency's share counts as fully scaled or fully kept.
const EPS: f64 = 1e-4;

/// The llama3 `rope_scaling` (with `low_freq_factor` = 1) whose factors equal `factors`.
pub fn llama3_from_factors(factors: &[f32], base: f32, head_dim: usize) -> Result<Value> {
    let factor = factors.iter().cloned().fold(1.0f32, f32::max);
    if (factor - 1.0).abs() < 1e-6 {
        return Ok(Value::Null);
    }
    let wavelens: Vec<f64> =
        (0..factors.len()).map(|i| 2.0 * std::f64::consts::PI * (base as f64).powf(2.0 * i as f64 / head_dim as f64)).collect();
    // Share of the unscaled frequency: 1 = kept, 0 = divided by `factor`, in between = blended.
    let inv_factor = 1.0 / factor as f64;
    let shares: Vec<f64> = factors.iter().map(|&f| (1.0 / f as f64 - inv_factor) / (1.0 - inv_factor)).collect();
    let band: Vec<usize> = (0..shares.len()).filter(|&i| shares[i] > EPS && shares[i] < 1.0 - EPS).collect();
    let candidates = match band.as_slice() {
        [] => no_band_candidates(&shares, &wavelens),
        [one] => one_point_candidates(*one, shares[*one], &wavelens),
        [first, .., last] => line_fit(&wavelens, &shares, *first, *last).into_iter().collect(),
    };
    let target = RopeScaling::FreqFactors(factors.to_vec());
    let Some((orig, high)) = candidates.into_iter().find(|&(orig, high)| {
        let s = RopeScaling::Llama3 { factor, low_freq_factor: 1.0, high_freq_factor: high as f32, original_max_position: orig as f32 };
        same_frequencies(&target, &s, base, head_dim)
    }) else {
        bail!("rope_freqs.weight could not be expressed as Llama 3 rope_scaling");
    };
    Ok(json!({
        "rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0,
        "high_freq_factor": high, "original_max_position_embeddings": orig,
    }))
}

/// In the band, share = (orig / wavelen - 1) / (high - 1): a line in 1/wavelen through two points.
fn line_fit(wavelens: &[f64], shares: &[f64], i: usize, j: usize) -> Option<(f64, f64)> {
    let (x0, y0, x1, y1) = (1.0 / wavelens[i], shares[i], 1.0 / wavelens[j], shares[j]);
    let slope = (y1 - y0) / (x1 - x0);
    let intercept = y0 - slope * x0;
    // intercept = -1 / (high - 1) must be negative, slope = orig / (high - 1) positive.
    (intercept < 0.0 && slope > 0.0).then(|| (-slope / intercept, 1.0 - 1.0 / intercept))
}

/// One blended frequency `b`: `orig` lies between its wavelength and the next one's; `high` follows.
fn one_point_candidates(b: usize, share: f64, wavelens: &[f64]) -> Vec<(f64, f64)> {
    let lo = wavelens[b];
    let hi = wavelens.get(b + 1).copied().unwrap_or(lo * 4.0);
    round_values_between(lo, hi).into_iter().map(|orig| (orig, 1.0 + (orig / lo - 1.0) / share)).collect()
}

/// No blended frequency: the band fits between the last kept and the first scaled wavelength.
fn no_band_candidates(shares: &[f64], wavelens: &[f64]) -> Vec<(f64, f64)> {
    let Some(first_scaled) = shares.iter().position(|&s| s <= EPS) else { return Vec::new() };
    let scaled = wavelens[first_scaled];
    let kept = first_scaled.checked_sub(1).map(|i| wavelens[i]);
    let Some(kept) = kept else {
        // Everything is scaled: any band below the shortest wavelength.
        return vec![(scaled * 0.999, 4.0)];
    };
    round_values_between(kept, scaled)
        .into_iter()
        .flat_map(|orig| [4.0, orig / kept].into_iter().filter(move |&h| h > 1.0 && orig / h >= kept).map(move |h| (orig, h)))
        .collect()
}

/// Values in `(lo, hi]`, roundest first: powers of two, then the geometric mean, then just under `hi`.
fn round_values_between(lo: f64, hi: f64) -> Vec<f64> {
    let mut out: Vec<f64> = (0..64).map(|e| 2f64.powi(e)).filter(|&p| p > lo && p <= hi).collect();
    out.push((lo * hi).sqrt());
    out.push(hi * 0.999);
    out
}

fn same_frequencies(a: &RopeScaling, b: &RopeScaling, base: f32, head_dim: usize) -> bool {
    let cfg = |scaling: &RopeScaling| RopeConfig {
        head_dim,
        rotary_dim: head_dim,
        base,
        scaling: scaling.clone(),
        style: RopeStyle::Half,
        max_positions: 1,
    };
    let (want, got) = (cfg(a).inv_freqs(), cfg(b).inv_freqs());
    want.iter().zip(&got).all(|(w, g)| ((w - g) / w).abs() <= 1e-3)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's factors for a Llama 3 scaling: the divisor of each frequency.
    fn factors_of(scaling: RopeScaling, base: f32, head_dim: usize) -> Vec<f32> {
        let cfg = |s| RopeConfig { head_dim, rotary_dim: head_dim, base, scaling: s, style: RopeStyle::Half, max_positions: 1 };
        let plain = cfg(RopeScaling::None).inv_freqs();
        let scaled = cfg(scaling).inv_freqs();
        plain.iter().zip(&scaled).map(|(p, s)| p / s).collect()
    }

    fn llama3(factor: f32, high: f32, orig: f32) -> RopeScaling {
        RopeScaling::Llama3 { factor, low_freq_factor: 1.0, high_freq_factor: high, original_max_position: orig }
    }

    #[test]
    fn recovers_llama_3_1_scaling() {
        let factors = factors_of(llama3(8.0, 4.0, 8192.0), 500000.0, 128);
        let v = llama3_from_factors(&factors, 500000.0, 128).expect("fits");
        assert_eq!(v["factor"].as_f64(), Some(8.0));
        assert!((v["original_max_position_embeddings"].as_f64().unwrap_or(0.0) - 8192.0).abs() < 1.0, "{v}");
        assert!((v["high_freq_factor"].as_f64().unwrap_or(0.0) - 4.0).abs() < 1e-3, "{v}");
    }

    #[test]
    fn recovers_a_band_holding_one_frequency() {
        // head_dim 16, base 5e5, original 256: only the third frequency falls inside the blend band.
        let factors = factors_of(llama3(8.0, 4.0, 256.0), 500000.0, 16);
        let v = llama3_from_factors(&factors, 500000.0, 16).expect("fits");
        assert_eq!(v["original_max_position_embeddings"].as_f64(), Some(256.0), "{v}");
        assert!((v["high_freq_factor"].as_f64().unwrap_or(0.0) - 4.0).abs() < 1e-3, "{v}");
    }

    #[test]
    fn fits_a_band_holding_no_frequency() {
        // With head_dim 8 the wavelengths jump by 26x; a band between two of them is empty.
        let factors = factors_of(llama3(4.0, 2.0, 1000.0), 500000.0, 8);
        let v = llama3_from_factors(&factors, 500000.0, 8).expect("fits");
        let s = llama3(4.0, v["high_freq_factor"].as_f64().unwrap_or(0.0) as f32, v["original_max_position_embeddings"].as_f64().unwrap_or(0.0) as f32);
        assert_eq!(factors_of(s, 500000.0, 8), factors, "{v}");
    }

    #[test]
    fn refuses_factors_that_are_not_llama_3() {
        let factors = [1.0, 8.0, 1.0, 8.0];
        assert!(llama3_from_factors(&factors, 10000.0, 8).is_err());
    }
}
