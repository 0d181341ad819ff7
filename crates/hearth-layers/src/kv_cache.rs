//! Storage of a paged KV cache: per layer, one tensor of `num_blocks * block_size` slots.
//!
//! Which slots a sequence owns is decided by the engine's block manager; here a slot is just a row.

use crate::{LayerError, Result};
use candle_core::{DType, Device, Tensor};

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
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
}

impl PagedKvCache {
    pub fn new(config: KvCacheConfig, device: &Device) -> Result<Self> {
        let rows = config.num_blocks * config.block_size;
        let width = config.n_kv_heads * config.head_dim;
        let mut keys = Vec::with_capacity(config.n_layers);
        let mut values = Vec::with_capacity(config.n_layers);
        for _ in 0..config.n_layers {
            keys.push(Tensor::zeros((rows, width), config.dtype, device)?);
            values.push(Tensor::zeros((rows, width), config.dtype, device)?);
        }
        Ok(Self { config, keys, values })
    }

    pub fn config(&self) -> &KvCacheConfig {
        &self.config
    }

    /// Store `k`, `v` (`[tokens, kv_heads * head_dim]`) of `layer` into `slots` (one per token).
    pub fn write(&self, layer: usize, slots: &[usize], k: &Tensor, v: &Tensor) -> Result<()> {
        let (keys, values) = self.layer(layer)?;
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
        let (keys, values) = self.layer(layer)?;
        Ok((keys.index_select(slots, 0)?, values.index_select(slots, 0)?))
    }

    fn layer(&self, layer: usize) -> Result<(&Tensor, &Tensor)> {
        match (self.keys.get(layer), self.values.get(layer)) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err(LayerError::Shape {
                what: "kv cache layer".into(),
                detail: format!("layer {layer} of {}", self.config.n_layers),
            }),
        }
    }
}
