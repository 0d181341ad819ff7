//! Rotary position embeddings with the scaling variants hearth supports.
//!
//! Tables of cos/sin are precomputed once per (base, scaling) up to the model's context length; a
//! forward pass gathers the rows of each token's own position, so one batch can mix sequences at
//! different positions.

use crate::Result;
use candle_core::{DType, Device, Tensor};

/// How the rotated pairs are laid out in a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (x0,x1), (x2,x3)…: llama.cpp's layout for `llama` GGUF files, whose q/k rows the
    /// converter permuted.
    Interleaved,
    /// First half with second half (GPT-NeoX / Hugging Face layout).
    Half,
}

/// Frequency scaling of the rotary base.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (linear interpolation).
    Linear { factor: f32 },
    /// Llama 3.x: long wavelengths slowed by `factor`, short ones kept, smooth in between.
    Llama3 { factor: f32, low_freq_factor: f32, high_freq_factor: f32, original_max_position: f32 },
    /// Per-frequency divisors as stored by llama.cpp in a `rope_freqs.weight` tensor.
    FreqFactors(Vec<f32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    pub head_dim: usize,
    /// How many leading dims of each head are rotated (all of them for every family hearth has).
    pub rotary_dim: usize,
    pub base: f32,
    pub scaling: RopeScaling,
    pub style: RopeStyle,
    pub max_positions: usize,
}

impl RopeConfig {
    /// The inverse frequency of each rotated pair after scaling.
    pub fn inv_freqs(&self) -> Vec<f32> {
        let half = self.rotary_dim / 2;
        (0..half)
            .map(|i| {
                let f = 1.0 / (self.base as f64).powf(2.0 * i as f64 / self.rotary_dim as f64);
                scale_freq(f, i, &self.scaling) as f32
            })
            .collect()
    }
}

fn scale_freq(freq: f64, index: usize, scaling: &RopeScaling) -> f64 {
    match scaling {
        RopeScaling::None => freq,
        RopeScaling::Linear { factor } => freq / *factor as f64,
        RopeScaling::FreqFactors(factors) => freq / factors.get(index).copied().unwrap_or(1.0) as f64,
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position } => {
            let (factor, low, high, orig) =
                (*factor as f64, *low_freq_factor as f64, *high_freq_factor as f64, *original_max_position as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < orig / high {
                freq
            } else if wavelen > orig / low {
                freq / factor
            } else {
                let smooth = (orig / wavelen - low) / (high - low);
                (1.0 - smooth) * freq / factor + smooth * freq
            }
        }
    }
}

/// One rope configuration. Angles are computed for the positions a batch needs rather than held in
/// tables for the whole context (Gemma 3's two 32k-position tables would cost 67 MB of memory).
///
/// The arithmetic is llama.cpp's, in f32: pair `i`'s angle at position `p` is `p · s^i` built by
/// repeated multiplication with `s = base^(−2/dim)`, divided by the pair's frequency factor, times
/// the linear scale; each rotated pair is `(x0·c − x1·s, x0·s + x1·c)` with the first product fused
/// (as GCC contracts llama.cpp's C). The quantized layers after rope round to 8 bits, so matching
/// llama.cpp's last bits here keeps hearth's quantized path next to llama.cpp's (issue 2).
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    /// `base^(−2/rotary_dim)`, the step from one pair's angle to the next.
    theta_scale: f32,
    /// Linear position scaling (`1/factor`), else 1.
    freq_scale: f32,
    /// Per-pair divisors of the angle (llama.cpp's `rope_freqs`, or Llama 3's derived from its rule).
    factors: Option<Vec<f32>>,
    half: usize,
    style: RopeStyle,
    device: Device,
}

/// cos/sin rows `[tokens, rotary_dim / 2]` for one batch's positions, shared by every layer.
#[derive(Debug, Clone)]
pub struct RopeRows {
    cos: Tensor,
    sin: Tensor,
}

impl RopeRows {
    /// No rows (a placeholder until a batch's rows are computed).
    pub fn empty(device: &Device) -> Result<Self> {
        Ok(Self { cos: Tensor::zeros((0, 1), DType::F32, device)?, sin: Tensor::zeros((0, 1), DType::F32, device)? })
    }

    /// The rows at `positions` (a u32 tensor) of a table made by [`RotaryEmbedding::rows`] over
    /// `0..len`: the same values, gathered on the device.
    pub fn select(&self, positions: &Tensor) -> Result<Self> {
        Ok(Self { cos: self.cos.index_select(positions, 0)?, sin: self.sin.index_select(positions, 0)? })
    }

    /// How many positions these rows hold.
    pub fn len(&self) -> usize {
        self.cos.dims().first().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RotaryEmbedding {
    pub fn new(config: &RopeConfig, device: &Device) -> Result<Self> {
        let half = config.rotary_dim / 2;
        let theta_scale = config.base.powf(-2.0 / config.rotary_dim as f32);
        let (freq_scale, factors) = match &config.scaling {
            RopeScaling::None => (1.0, None),
            RopeScaling::Linear { factor } => (1.0 / factor, None),
            RopeScaling::FreqFactors(f) => (1.0, Some((0..half).map(|i| f.get(i).copied().unwrap_or(1.0)).collect())),
            scaling @ RopeScaling::Llama3 { .. } => {
                let plain = RopeConfig { scaling: RopeScaling::None, ..config.clone() }.inv_freqs();
                let scaled = RopeConfig { scaling: scaling.clone(), ..config.clone() }.inv_freqs();
                (1.0, Some(plain.iter().zip(&scaled).map(|(p, s)| p / s).collect()))
            }
        };
        Ok(Self { theta_scale, freq_scale, factors, half, style: config.style, device: device.clone() })
    }

    /// The cos/sin of every pair's angle at each of `positions` (see the type's doc).
    pub fn rows(&self, positions: &[u32]) -> Result<RopeRows> {
        let half = self.half;
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &pos in positions {
            let mut theta = pos as f32;
            for i in 0..half {
                let extrapolated = match &self.factors {
                    Some(f) => theta / f[i],
                    None => theta,
                };
                let angle = self.freq_scale * extrapolated;
                cos.push(angle.cos());
                sin.push(angle.sin());
                theta *= self.theta_scale;
            }
        }
        let n = positions.len();
        Ok(RopeRows { cos: Tensor::from_vec(cos, (n, half), &self.device)?, sin: Tensor::from_vec(sin, (n, half), &self.device)? })
    }

    /// Rotate `x` of shape `[tokens, heads, head_dim]`; `positions` is a u32 tensor `[tokens]`.
    pub fn apply(&self, x: &Tensor, positions: &Tensor) -> Result<Tensor> {
        self.apply_rows(x, &self.rows(&positions.to_vec1::<u32>()?)?)
    }

    /// [`Self::apply_rows`] for q and k of one step: one device kernel for both where there is one.
    pub fn apply_rows_pair(&self, q: &Tensor, k: &Tensor, rows: &RopeRows) -> Result<(Tensor, Tensor)> {
        let full_width = rows.cos.dim(1)? * 2 == q.dim(2)? && q.dim(2)? == k.dim(2)?;
        if full_width {
            if let Some(pair) = crate::device::rope_rows_pair(q, k, &rows.cos, &rows.sin, self.style == RopeStyle::Interleaved)? {
                return Ok(pair);
            }
        }
        Ok((self.apply_rows(q, rows)?, self.apply_rows(k, rows)?))
    }

    /// Rotate `x` of shape `[tokens, heads, head_dim]` by rows from [`Self::rows`].
    pub fn apply_rows(&self, x: &Tensor, rows: &RopeRows) -> Result<Tensor> {
        let dtype = x.dtype();
        let full_width = rows.cos.dim(1)? * 2 == x.dim(2)?;
        if full_width {
            if let Some(y) = crate::device::rope_rows(x, &rows.cos, &rows.sin, self.style == RopeStyle::Interleaved)? {
                return Ok(y);
            }
            if matches!(x.device(), Device::Cpu) && dtype == DType::F32 {
                return self.apply_host(x, rows);
            }
        }
        // candle's rope kernels take [batch, heads, seq, dim]; tokens play the role of seq.
        let xt = x.to_dtype(DType::F32)?.transpose(0, 1)?.unsqueeze(0)?.contiguous()?;
        let rotated = match self.style {
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&xt, &rows.cos, &rows.sin)?,
            RopeStyle::Half => candle_nn::rotary_emb::rope(&xt, &rows.cos, &rows.sin)?,
        };
        Ok(rotated.squeeze(0)?.transpose(0, 1)?.to_dtype(dtype)?)
    }

    /// The CPU path, on f32 rows in llama.cpp's arithmetic (see the type's doc).
    fn apply_host(&self, x: &Tensor, rows: &RopeRows) -> Result<Tensor> {
        let (tokens, heads, head_dim) = x.dims3()?;
        let half = head_dim / 2;
        let cos = rows.cos.flatten_all()?.to_vec1::<f32>()?;
        let sin = rows.sin.flatten_all()?.to_vec1::<f32>()?;
        let mut v = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        if cos.len() != tokens * half {
            let detail = format!("{} angles for {tokens} tokens of {half} pairs", cos.len());
            return Err(crate::LayerError::Shape { what: "rope rows".into(), detail });
        }
        let (step, offset) = match self.style {
            RopeStyle::Interleaved => (2, 1),
            RopeStyle::Half => (1, half),
        };
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has FMA (checked just above).
            unsafe { rotate_fma(&mut v, &cos, &sin, heads * head_dim, head_dim, step, offset) };
            return Ok(Tensor::from_vec(v, (tokens, heads, head_dim), x.device())?);
        }
        rotate(&mut v, &cos, &sin, heads * head_dim, head_dim, step, offset);
        Ok(Tensor::from_vec(v, (tokens, heads, head_dim), x.device())?)
    }
}

/// Rotates each token's heads in place: pairs `(i·step, i·step + offset)` by the token's angles
/// (`half` cos / sin per token).
#[inline(always)]
fn rotate(v: &mut [f32], cos: &[f32], sin: &[f32], token_len: usize, head_dim: usize, step: usize, offset: usize) {
    let half = head_dim / 2;
    for (t, token) in v.chunks_mut(token_len).enumerate() {
        let (c, s) = (&cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half]);
        for head in token.chunks_mut(head_dim) {
            for i in 0..half {
                let (a, b) = (i * step, i * step + offset);
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0.mul_add(c[i], -(x1 * s[i]));
                head[b] = x0.mul_add(s[i], x1 * c[i]);
            }
        }
    }
}

/// [`rotate`] compiled with FMA, so `mul_add` is an instruction rather than a call into
/// compiler-builtins' `fmaf` per value (the same result either way).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn rotate_fma(v: &mut [f32], cos: &[f32], sin: &[f32], token_len: usize, head_dim: usize, step: usize, offset: usize) {
    rotate(v, cos, sin, token_len, head_dim, step, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(scaling: RopeScaling) -> RopeConfig {
        RopeConfig { head_dim: 8, rotary_dim: 8, base: 10000.0, scaling, style: RopeStyle::Half, max_positions: 4 }
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let plain = config(RopeScaling::None).inv_freqs();
        let scaled = config(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position: 64.0,
        })
        .inv_freqs();
        // wavelength of pair 0 is 2π < 64/4: unchanged; pair 3 (freq 1e-3) has wavelength 6283 > 64: divided.
        assert_eq!(plain[0], scaled[0]);
        assert!((scaled[3] - plain[3] / 8.0).abs() < 1e-9);
    }

    #[test]
    fn half_and_interleaved_rotate_position_zero_to_identity() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 16.0, &dev)?.reshape((1, 2, 8))?;
        for style in [RopeStyle::Half, RopeStyle::Interleaved] {
            let rope = RotaryEmbedding::new(&RopeConfig { style, ..config(RopeScaling::None) }, &dev)?;
            let pos = Tensor::new(&[0u32], &dev)?;
            let y = rope.apply(&x, &pos)?;
            let diff = (y - &x)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-6, "{style:?} moved position 0 by {diff}");
        }
        Ok(())
    }

    #[test]
    fn interleaved_rotates_adjacent_pairs() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = RopeConfig { style: RopeStyle::Interleaved, ..config(RopeScaling::None) };
        let rope = RotaryEmbedding::new(&cfg, &dev)?;
        // x = unit vector on dim 0: at position 1 pair (0,1) rotates by angle 1 rad (inv_freq[0] = 1).
        let mut v = vec![0f32; 8];
        v[0] = 1.0;
        let x = Tensor::from_vec(v, (1, 1, 8), &dev)?;
        let y = rope.apply(&x, &Tensor::new(&[1u32], &dev)?)?.flatten_all()?.to_vec1::<f32>()?;
        assert!((y[0] - 1f32.cos()).abs() < 1e-6 && (y[1] - 1f32.sin()).abs() < 1e-6, "{y:?}");
        Ok(())
    }
}
