//! Quantized matrices multiplied the way llama.cpp multiplies them: activations are quantized to the
//! 8-bit block format each weight format's dot product expects (Q8_0, Q8_1 or Q8_K), with llama.cpp's
//! rounding, so hearth's quantized path agrees with the reference implementation, not just with f32.
//!
//! Weights are read in place from their source (a memory-mapped GGUF file): nothing is copied.

mod activations;
mod dot;
pub mod isa;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_kbatch;
#[cfg(target_arch = "x86_64")]
mod x86_tile;

pub use isa::Isa;

use crate::{LayerError, Result};
use candle_core::quantized::k_quants::GgmlType;
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// How llama.cpp (b11434, x86, default 512-row micro-batches) would have batched one activation
/// row, which picks its kernel and so its rounding: the quantized layers round their inputs to
/// 8 bits, where a last-bit difference moves log-probabilities by tenths of a nat (issue 2).
/// Prompt rows come in micro-batches of up to 512; the repacked Q4_K kernel multiplies them in
/// groups of four (a micro-batch's last `len % 4` rows alone), and the other k-quants go through
/// a tiled kernel when the micro-batch has 8 rows or more. Decode rows are multiplied alone.
/// A function of the row's position and its prompt's length only, so batching never changes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowBatch {
    pub in_group_of_four: bool,
    pub in_batch_of_eight: bool,
}

impl RowBatch {
    /// llama.cpp's micro-batch (`n_ubatch`) default.
    const MICRO_BATCH: usize = 512;

    /// The row of the token at `position` in a sequence whose first `prompt_len` tokens are its
    /// prompt (prefilled from position 0).
    pub fn at(position: usize, prompt_len: usize) -> Self {
        if position >= prompt_len {
            return Self::default();
        }
        let start = position / Self::MICRO_BATCH * Self::MICRO_BATCH;
        let len = (prompt_len - start).min(Self::MICRO_BATCH);
        Self { in_group_of_four: position - start < len / 4 * 4, in_batch_of_eight: len >= 8 }
    }
}

/// Bytes of one quantized tensor, e.g. a slice of a memory-mapped file.
pub trait ByteSource: Send + Sync {
    fn bytes(&self) -> &[u8];
}

impl ByteSource for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// A `[rows, cols]` block-quantized matrix (row-major, each row a run of blocks).
#[derive(Clone)]
pub struct QuantMatrix {
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    source: Arc<dyn ByteSource>,
}

impl std::fmt::Debug for QuantMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QuantMatrix({:?}, {}x{})", self.dtype, self.rows, self.cols)
    }
}

/// Output rows per parallel task: big enough to amortise scheduling, small enough to balance cores.
const ROWS_PER_TASK: usize = 64;

impl QuantMatrix {
    /// Checks that `source` holds exactly `rows` rows of `cols` elements in `dtype` blocks.
    pub fn new(dtype: GgmlDType, rows: usize, cols: usize, source: Arc<dyn ByteSource>) -> Result<Self> {
        let bad = |detail: String| LayerError::Shape { what: format!("{dtype:?} matrix {rows}x{cols}"), detail };
        if !dot::supported(dtype) {
            return Err(bad("this block type has no hearth kernel".into()));
        }
        let block = dtype.block_size();
        if !cols.is_multiple_of(block) {
            return Err(bad(format!("row length is not a multiple of the block size {block}")));
        }
        let want = rows * (cols / block) * dtype.type_size();
        let have = source.bytes().len();
        if have != want {
            return Err(bad(format!("{have} bytes of data, expected {want}")));
        }
        if !(source.bytes().as_ptr() as usize).is_multiple_of(4) {
            return Err(bad("data is not 4-byte aligned".into()));
        }
        Ok(Self { dtype, rows, cols, source })
    }

    pub fn dtype(&self) -> GgmlDType {
        self.dtype
    }

    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn row_bytes(&self) -> usize {
        self.cols / self.dtype.block_size() * self.dtype.type_size()
    }

    /// `x`: `[..., cols]` (any float dtype) → `[..., rows]` f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_batched(x, &[])
    }

    /// As [`Self::forward`], with how llama.cpp would have batched each row (see [`RowBatch`]).
    pub fn forward_batched(&self, x: &Tensor, batching: &[RowBatch]) -> Result<Tensor> {
        let mut out_dims = x.dims().to_vec();
        let k = out_dims.pop().unwrap_or(0);
        if k != self.cols {
            return Err(LayerError::Shape { what: "quantized matmul input".into(), detail: format!("{k} columns, weight has {}", self.cols) });
        }
        let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let m = xs.len() / k.max(1);
        let out = matmul_many(&[self], &xs, m, batching).pop().unwrap_or_default();
        out_dims.push(self.rows);
        Ok(Tensor::from_vec(out, out_dims, x.device())?)
    }

    /// `xs`: `m` rows of `cols` floats → `m` rows of `rows` floats.
    pub fn matmul(&self, xs: &[f32], m: usize) -> Vec<f32> {
        self.matmul_with(isa::active(), xs, m)
    }

    /// As [`Self::matmul`] on a given instruction-set path (one the CPU has; see [`Isa::available`]).
    pub fn matmul_with(&self, isa: Isa, xs: &[f32], m: usize) -> Vec<f32> {
        matmul_many_with(isa, &[self], xs, m, &[]).pop().unwrap_or_default()
    }

    /// As [`Self::matmul_with`], with how llama.cpp would have batched each row (see [`RowBatch`]).
    pub fn matmul_batched_with(&self, isa: Isa, xs: &[f32], m: usize, batching: &[RowBatch]) -> Vec<f32> {
        matmul_many_with(isa, &[self], xs, m, batching).pop().unwrap_or_default()
    }

    fn uses_q8k(&self) -> bool {
        self.dtype.block_size() == 256
    }

    /// Rows `ids` dequantized, as `[ids.len(), cols]` f32 (embedding lookup).
    pub fn rows_f32(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        let rb = self.row_bytes();
        let mut out = vec![0f32; ids.len() * self.cols];
        for (dst, &id) in out.chunks_mut(self.cols).zip(ids) {
            let id = id as usize;
            if id >= self.rows {
                return Err(LayerError::Shape { what: "embedding lookup".into(), detail: format!("token {id} of {} rows", self.rows) });
            }
            dot::dequantize(self.dtype, &self.source.bytes()[id * rb..(id + 1) * rb], dst);
        }
        Ok(Tensor::from_vec(out, (ids.len(), self.cols), device)?)
    }

    /// The whole matrix as f32 (for conversion and for tests).
    pub fn to_f32(&self, device: &Device) -> Result<Tensor> {
        let ids: Vec<u32> = (0..self.rows as u32).collect();
        self.rows_f32(&ids, device)
    }
}

/// Several matrices of the same input width applied to the same `m` activation rows (q/k/v, gate/up)
/// in one parallel pass: activations are quantized once per block family, and the thread pool is
/// woken once instead of once per matrix. Returns each matrix's `m × rows` output.
///
/// `batching[j]` says how llama.cpp would have batched activation row `j` ([`RowBatch`]; missing
/// entries: alone); only the k-quant kernels look at it.
pub fn matmul_many(mats: &[&QuantMatrix], xs: &[f32], m: usize, batching: &[RowBatch]) -> Vec<Vec<f32>> {
    matmul_many_with(isa::active(), mats, xs, m, batching)
}

fn matmul_many_with(isa: Isa, mats: &[&QuantMatrix], xs: &[f32], m: usize, batching: &[RowBatch]) -> Vec<Vec<f32>> {
    let isa = if isa.runs_here() { isa } else { Isa::Scalar };
    let Some(k) = mats.first().map(|q| q.cols) else {
        return Vec::new();
    };
    assert!(mats.iter().all(|q| q.cols == k) && xs.len() >= m * k, "matmul_many: inputs of {} values for width {k}", xs.len());
    let legacy = mats.iter().any(|q| !q.uses_q8k()).then(|| activations::quantize(GgmlDType::Q8_0, xs, m, k));
    let kquant = mats.iter().any(|q| q.uses_q8k()).then(|| activations::quantize(GgmlDType::Q8K, xs, m, k));
    let mut outs: Vec<Vec<f32>> = mats.iter().map(|q| vec![0f32; q.rows * m]).collect();
    let targets: Vec<OutPtr> =
        outs.iter_mut().zip(mats).map(|(o, q)| OutPtr { ptr: o.as_mut_ptr(), ld: q.rows, cols: q.rows, m }).collect();
    let tasks: Vec<(usize, usize)> =
        mats.iter().enumerate().flat_map(|(i, q)| (0..q.rows.div_ceil(ROWS_PER_TASK)).map(move |c| (i, c))).collect();
    tasks.into_par_iter().for_each(|(i, c)| {
        let q = mats[i];
        let acts = if q.uses_q8k() { kquant.as_ref() } else { legacy.as_ref() };
        let (rb, r0) = (q.row_bytes(), c * ROWS_PER_TASK);
        let rows = ROWS_PER_TASK.min(q.rows - r0);
        let Some(acts) = acts else { return };
        // The kernels write straight into the input-row-major result, in this task's own columns:
        // no per-task buffer and no scatter pass over it.
        let out = targets[i].columns(r0, rows);
        rows_dots(isa, q.dtype, &q.source.bytes()[r0 * rb..(r0 + rows) * rb], rb, acts, k, m, out, batching);
    });
    outs
}

/// Where a pass over some weight rows writes: (weight row `r`, activation row `j`) goes to
/// `ptr[j * ld + r]`, the input-row-major layout of the result, for `r < cols` and `j < m`.
/// Only `matmul_many_with` makes these, one per task over columns no other task has.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr {
    ptr: *mut f32,
    ld: usize,
    cols: usize,
    m: usize,
}
// SAFETY: tasks write disjoint elements (their own weight rows' columns) and the buffer outlives them.
unsafe impl Sync for OutPtr {}
unsafe impl Send for OutPtr {}

impl OutPtr {
    /// Columns `r0..r0 + cols` of this output, as their own `OutPtr`.
    fn columns(self, r0: usize, cols: usize) -> OutPtr {
        assert!(r0 + cols <= self.cols, "output columns {r0}+{cols} of {}", self.cols);
        // SAFETY: r0 + cols <= self.cols <= ld, so the pointer stays inside the buffer's first row.
        OutPtr { ptr: unsafe { self.ptr.add(r0) }, ld: self.ld, cols, m: self.m }
    }

    /// Whether `rows` weight rows × `m` activation rows fit (kernels check this once per call).
    pub(crate) fn holds(self, rows: usize, m: usize) -> bool {
        rows <= self.cols && m <= self.m
    }

    /// Writes (weight row `r`, activation row `j`).
    /// SAFETY: `r < cols` and `j < m` (checked once per call with [`OutPtr::holds`]).
    #[inline(always)]
    pub(crate) unsafe fn put(self, r: usize, j: usize, v: f32) {
        debug_assert!(r < self.cols && j < self.m);
        *self.ptr.add(j * self.ld + r) = v;
    }
}

/// `out(r, j)` = weight row `r` of `w` · activation row `j`, for the `w.len() / rb` rows of `w`.
#[allow(clippy::too_many_arguments)]
fn rows_dots(
    isa: Isa,
    dtype: GgmlDType,
    w: &[u8],
    rb: usize,
    acts: &activations::Activations,
    k: usize,
    m: usize,
    out: OutPtr,
    batching: &[RowBatch],
) {
    let rows = w.len() / rb;
    assert!(out.holds(rows, m), "output smaller than {rows} x {m}");
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar && x86::has_kernel(dtype) {
        match acts {
            activations::Activations::Q8(a) => x86::legacy_rows_all(isa, dtype, w, rb, a, m, out),
            activations::Activations::Q8K(a) => x86::k_rows_all(isa, dtype, w, rb, a, m, out, batching),
        }
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if isa == Isa::Neon && neon::has_kernel(dtype) {
        match acts {
            activations::Activations::Q8(a) => neon::legacy_rows_all(dtype, w, rb, a, m, out),
            activations::Activations::Q8K(a) => neon::k_rows_all(dtype, w, rb, a, m, out),
        }
        return;
    }
    let _ = (isa, batching);
    for r in 0..rows {
        for j in 0..m {
            // SAFETY: r is one of this task's rows, j < m.
            unsafe { out.put(r, j, dot::row_dot(dtype, &w[r * rb..(r + 1) * rb], acts, j, k)) };
        }
    }
}

/// Reinterpret raw block bytes as candle's block structs (alignment checked in `QuantMatrix::new`).
pub(crate) fn as_blocks<T: GgmlType>(bytes: &[u8]) -> &[T] {
    let n = bytes.len() / std::mem::size_of::<T>();
    debug_assert_eq!(bytes.as_ptr() as usize % std::mem::align_of::<T>(), 0);
    // SAFETY: T is a repr(C) block of plain integers and f16/f32 with alignment <= 4; the pointer is
    // 4-byte aligned (checked at construction) and n * size_of::<T>() <= bytes.len().
    unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, n) }
}
