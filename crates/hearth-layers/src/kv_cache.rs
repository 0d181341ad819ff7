//! Storage of a paged KV cache: per layer, one tensor of `num_blocks * block_size` slots.
//!
//! Which slots a sequence owns is decided by the engine's block manager; here a slot is just a row.
//! On the CPU with f32 entries the rows live in plain host buffers that the CPU attention kernel reads
//! in place; elsewhere they are device tensors.

use crate::{LayerError, Result};
use candle_core::{DType, Device, Tensor};
use std::sync::{RwLock, RwLockReadGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCacheConfig {
    pub num_blocks: usize,
    pub block_size: usize,
    pub n_layers: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub dtype: DType,
}

impl KvCacheConfig {
    /// Bytes of K and V for one token across all layers.
    pub fn bytes_per_token(&self) -> usize {
        2 * self.n_layers * self.n_kv_heads * self.head_dim * self.dtype.size_in_bytes()
    }

    /// How many blocks fit in `budget_bytes`.
    pub fn blocks_for_budget(&self, budget_bytes: usize) -> usize {
        budget_bytes / (self.bytes_per_token() * self.block_size).max(1)
    }
}

/// K and V rows for every slot, every layer.
#[derive(Debug)]
pub struct PagedKvCache {
    config: KvCacheConfig,
    storage: Storage,
}

#[derive(Debug)]
enum Storage {
    Device { keys: Vec<Tensor>, values: Vec<Tensor> },
    /// Zero-filled lazily by the OS, so untouched blocks cost no resident memory.
    Host { keys: Vec<RwLock<HostRows>>, values: Vec<RwLock<HostRows>> },
}

/// One layer's K or V rows on the host, in the cache's element type.
#[derive(Debug)]
pub enum HostRows {
    F32(Vec<f32>),
    /// Half the memory and bandwidth (llama.cpp's default cache type too); rounded once on write.
    F16(Vec<half::f16>),
}

impl HostRows {
    fn zeros(dtype: DType, n: usize) -> Self {
        match dtype {
            DType::F16 => HostRows::F16(vec![half::f16::ZERO; n]),
            _ => HostRows::F32(vec![0f32; n]),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            HostRows::F32(v) => v.len(),
            HostRows::F16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn store(&mut self, at: usize, src: &[f32]) {
        match self {
            HostRows::F32(v) => v[at..at + src.len()].copy_from_slice(src),
            HostRows::F16(v) => v[at..at + src.len()].iter_mut().zip(src).for_each(|(d, s)| *d = half::f16::from_f32(*s)),
        }
    }

    fn load(&self, at: usize, n: usize, out: &mut Vec<f32>) {
        match self {
            HostRows::F32(v) => out.extend_from_slice(&v[at..at + n]),
            HostRows::F16(v) => <half::f16 as crate::cpu::attention::KvElem>::widen(&v[at..at + n], out),
        }
    }
}

/// One layer's host K and V rows, readable while the guard lives.
pub struct HostLayer<'a> {
    pub keys: RwLockReadGuard<'a, HostRows>,
    pub values: RwLockReadGuard<'a, HostRows>,
}

impl PagedKvCache {
    pub fn new(config: KvCacheConfig, device: &Device) -> Result<Self> {
        let rows = config.num_blocks * config.block_size;
        let width = config.n_kv_heads * config.head_dim;
        let storage = if device.is_cpu() && matches!(config.dtype, DType::F32 | DType::F16) {
            let buffers = || (0..config.n_layers).map(|_| RwLock::new(HostRows::zeros(config.dtype, rows * width))).collect();
            Storage::Host { keys: buffers(), values: buffers() }
        } else {
            let mut keys = Vec::with_capacity(config.n_layers);
            let mut values = Vec::with_capacity(config.n_layers);
            for _ in 0..config.n_layers {
                keys.push(Tensor::zeros((rows, width), config.dtype, device)?);
                values.push(Tensor::zeros((rows, width), config.dtype, device)?);
            }
            Storage::Device { keys, values }
        };
        Ok(Self { config, storage })
    }

    pub fn config(&self) -> &KvCacheConfig {
        &self.config
    }

    fn width(&self) -> usize {
        self.config.n_kv_heads * self.config.head_dim
    }

    /// The host rows of `layer`, when this cache keeps them on the host.
    pub fn host_layer(&self, layer: usize) -> Result<Option<HostLayer<'_>>> {
        let Storage::Host { keys, values } = &self.storage else { return Ok(None) };
        let (k, v) = (keys.get(layer).ok_or_else(|| self.bad_layer(layer))?, &values[layer]);
        Ok(Some(HostLayer { keys: read(k), values: read(v) }))
    }

    /// Store rows `k`, `v` (`tokens × kv_heads * head_dim` f32) of `layer` into `slots` (host cache).
    pub fn write_host(&self, layer: usize, slots: &[usize], k: &[f32], v: &[f32]) -> Result<()> {
        let Storage::Host { keys, values } = &self.storage else {
            return self.write(layer, slots, &Tensor::from_slice(k, (slots.len(), self.width()), &Device::Cpu)?, &Tensor::from_slice(v, (slots.len(), self.width()), &Device::Cpu)?);
        };
        let w = self.width();
        let rows = self.config.num_blocks * self.config.block_size;
        if k.len() != slots.len() * w || v.len() != k.len() || slots.iter().any(|&s| s >= rows) {
            return Err(LayerError::Shape { what: "kv cache write".into(), detail: format!("{} slots, {} values of width {w}", slots.len(), k.len()) });
        }
        let (mut kb, mut vb) = (write(keys.get(layer).ok_or_else(|| self.bad_layer(layer))?), write(&values[layer]));
        for (i, &slot) in slots.iter().enumerate() {
            kb.store(slot * w, &k[i * w..(i + 1) * w]);
            vb.store(slot * w, &v[i * w..(i + 1) * w]);
        }
        Ok(())
    }

    /// Store `k`, `v` (`[tokens, kv_heads * head_dim]`) of `layer` into `slots` (one per token).
    pub fn write(&self, layer: usize, slots: &[usize], k: &Tensor, v: &Tensor) -> Result<()> {
        self.write_indexed(layer, slots, None, k, v)
    }

    /// [`Self::write`] with `slots` also given as a u32 tensor on the cache's device, made once per
    /// batch: every layer writes the same slots, and an upload per layer would stall the device queue.
    pub fn write_indexed(&self, layer: usize, slots: &[usize], on_device: Option<&Tensor>, k: &Tensor, v: &Tensor) -> Result<()> {
        if let Storage::Host { .. } = self.storage {
            let flat = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?) };
            return self.write_host(layer, slots, &flat(k)?, &flat(v)?);
        }
        let (keys, values) = self.layer(layer)?;
        let rows = self.config.num_blocks * self.config.block_size;
        if k.dim(0)? != slots.len() || v.dim(0)? != slots.len() || slots.iter().any(|&s| s >= rows) {
            return Err(LayerError::Shape { what: "kv cache write".into(), detail: format!("{} slots for {} rows, {rows} cache rows", slots.len(), k.dim(0)?) });
        }
        if !keys.device().is_cpu() {
            let uploaded;
            let ids = match on_device {
                Some(t) if t.elem_count() == slots.len() => t,
                _ => {
                    let ids: Vec<u32> = slots.iter().map(|&s| s as u32).collect();
                    uploaded = Tensor::new(ids.as_slice(), keys.device())?;
                    &uploaded
                }
            };
            if crate::device::kv_write(keys, values, k, v, ids)? {
                return Ok(());
            }
        }
        let k = k.to_dtype(self.config.dtype)?.contiguous()?;
        let v = v.to_dtype(self.config.dtype)?.contiguous()?;
        // Consecutive slots (a prompt inside one block) are written as one run.
        let mut start = 0;
        while start < slots.len() {
            let mut end = start + 1;
            while end < slots.len() && slots[end] == slots[end - 1] + 1 {
                end += 1;
            }
            keys.slice_set(&k.narrow(0, start, end - start)?, 0, slots[start])?;
            values.slice_set(&v.narrow(0, start, end - start)?, 0, slots[start])?;
            start = end;
        }
        Ok(())
    }

    /// Gather the rows of `slots` as `([n, kv_heads * head_dim], same)`.
    pub fn gather(&self, layer: usize, slots: &Tensor) -> Result<(Tensor, Tensor)> {
        if let Some(host) = self.host_layer(layer)? {
            let w = self.width();
            let ids = slots.to_vec1::<u32>()?;
            let pick = |rows: &HostRows| -> Result<Tensor> {
                let mut out = Vec::with_capacity(ids.len() * w);
                for &s in &ids {
                    let s = s as usize;
                    if (s + 1) * w > rows.len() {
                        return Err(self.bad_layer(layer));
                    }
                    rows.load(s * w, w, &mut out);
                }
                Ok(Tensor::from_vec(out, (ids.len(), w), &Device::Cpu)?)
            };
            return Ok((pick(&host.keys)?, pick(&host.values)?));
        }
        let (keys, values) = self.layer(layer)?;
        Ok((keys.index_select(slots, 0)?, values.index_select(slots, 0)?))
    }

    /// The device tensors `[slots, kv_heads * head_dim]` of `layer`'s K and V, when the cache keeps
    /// its rows on a device (for kernels that read the pages in place).
    pub fn device_layer(&self, layer: usize) -> Result<Option<(&Tensor, &Tensor)>> {
        match self.storage {
            Storage::Device { .. } => self.layer(layer).map(Some),
            Storage::Host { .. } => Ok(None),
        }
    }

    fn layer(&self, layer: usize) -> Result<(&Tensor, &Tensor)> {
        match &self.storage {
            Storage::Device { keys, values } => match (keys.get(layer), values.get(layer)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(self.bad_layer(layer)),
            },
            Storage::Host { .. } => Err(self.bad_layer(layer)),
        }
    }

    fn bad_layer(&self, layer: usize) -> LayerError {
        LayerError::Shape { what: "kv cache layer".into(), detail: format!("layer {layer} of {}", self.config.n_layers) }
    }
}

// A poisoned lock only means another thread panicked mid-write; the rows are still plain floats.
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
