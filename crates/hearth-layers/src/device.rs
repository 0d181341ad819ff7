//! Device selection: the only place in hearth that mentions the `cuda` and `metal` features.

use crate::attention::AttentionParams;
use crate::{LayerError, Result};
use candle_core::{Device, Tensor};

#[cfg(feature = "cuda")]
#[path = "cuda/mod.rs"]
mod cuda_kernels;

/// A parsed `--device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    Metal(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = LayerError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| LayerError::Device { spec: s.to_string(), reason: reason.to_string() };
        let (kind, index) = match s.split_once(':') {
            Some((k, i)) => (k, i.parse::<usize>().map_err(|_| bad("the index after ':' must be a number"))?),
            None => (s, 0),
        };
        match kind {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(index)),
            "metal" => Ok(DeviceSpec::Metal(index)),
            _ => Err(bad("expected cpu, cuda[:N] or metal[:N]")),
        }
    }
}

/// Open the requested device, with an error that says which build feature is missing.
pub fn select_device(spec: DeviceSpec) -> Result<Device> {
    let unavailable = |name: &str, reason: String| LayerError::Device { spec: name.to_string(), reason };
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(i) => {
            if cfg!(feature = "cuda") {
                Device::new_cuda(i).map_err(|e| unavailable(&format!("cuda:{i}"), e.to_string()))
            } else {
                Err(unavailable(&format!("cuda:{i}"), "this hearth was built without the `cuda` feature".into()))
            }
        }
        DeviceSpec::Metal(i) => {
            if cfg!(feature = "metal") {
                Device::new_metal(i).map_err(|e| unavailable(&format!("metal:{i}"), e.to_string()))
            } else {
                Err(unavailable(&format!("metal:{i}"), "this hearth was built without the `metal` feature".into()))
            }
        }
    }
}

/// Human-readable name of the compiled-in accelerator backends, for `--help` and `hearth show`.
pub fn compiled_backends() -> &'static [&'static str] {
    match (cfg!(feature = "cuda"), cfg!(feature = "metal")) {
        (true, true) => &["cpu", "cuda", "metal"],
        (true, false) => &["cpu", "cuda"],
        (false, true) => &["cpu", "metal"],
        (false, false) => &["cpu"],
    }
}

/// Decode attention (one query token per sequence, all sequences in one launch) by an accelerator
/// kernel over the paged cache rows `k_cache`/`v_cache`, when the device has one; `None` means the
/// caller takes the portable path. `slots` are every sequence's visible cache slots concatenated,
/// sequence `i` owning `slots[offsets[i]..offsets[i + 1]]`.
pub fn decode_attention(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    slots: &[u32],
    offsets: &[u32],
    params: &AttentionParams,
) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if q.device().is_cuda() {
        let device = q.device();
        let (slots, offsets) = (Tensor::new(slots, device)?, Tensor::new(offsets, device)?);
        return Ok(Some(cuda_kernels::decode_attention(q, k_cache, v_cache, slots, offsets, params)?));
    }
    let _ = (q, k_cache, v_cache, slots, offsets, params);
    Ok(None)
}
