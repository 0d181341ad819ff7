//! The largest values of each logits row with their ids (top_rows.cu), so a step whose sequences all
//! sample from their top k copies those instead of whole rows.

use super::view;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{DType, Result, Storage, Tensor};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/top_rows.ptx"));

/// Most values a row may ask for (TOP_MAX in top_rows.cu).
pub const TOP_ROWS_MAX: usize = 256;

/// Values a top_slices block takes (SLICE in top_rows.cu), and the most ranks top_merge selects from
/// (THREADS * MERGE_PER_THREAD): rows of up to 512k values at a count of 256.
const SLICE: usize = 8192;
const MERGE_MAX: usize = 16 * 1024;

/// Whether [`top_rows`] takes rows of `cols` values for a list of `count`.
pub fn top_rows_takes(cols: usize, count: usize) -> bool {
    (1..=TOP_ROWS_MAX.min(cols)).contains(&count) && cols <= i32::MAX as usize && cols.div_ceil(SLICE) * count <= MERGE_MAX
}

/// Each row's `count` largest values of f32 `[rows, cols]` `x` (`count` at most [`TOP_ROWS_MAX`]
/// and `cols`), best first and the lowest id first among equals: `(ids, values, bad)` on the host,
/// `rows * count` of each and one flag a row, true where the row holds NaN or +inf.
pub fn top_rows(x: &Tensor, count: usize) -> Result<(Vec<u32>, Vec<f32>, Vec<bool>)> {
    let (rows, cols) = x.dims2()?;
    if rows == 0 || !top_rows_takes(cols, count) {
        candle_core::bail!("top rows: the top {count} of {rows} rows of {cols} values");
    }
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cuda(s) = &*storage else { candle_core::bail!("top rows: x must live on the CUDA device") };
    let xs = view::<f32>(s, layout, "top rows: x")?;
    let dev = s.device.clone();
    let slices = cols.div_ceil(SLICE);
    let values = rows * count;
    // SAFETY: every slice writes its `count` entries (a short slice pads with zeros).
    let mut pairs = unsafe { dev.alloc::<u64>(rows * slices * count)? };
    let mut bad = dev.alloc_zeros::<u32>(rows)?;
    // SAFETY: top_merge writes every row's `count` values and ids and its flag: every u32 of the buffer.
    let mut out = unsafe { dev.alloc::<u32>(2 * values + rows)? };
    let (cols_i, count_i, slices_i) = (cols as i32, count as i32, slices as i32);
    let func = dev.get_or_load_custom_func("top_slices", "hearth_top_rows", PTX)?;
    let cfg = LaunchConfig { grid_dim: (slices as u32, rows as u32, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 };
    let mut b = func.builder();
    b.arg(&xs).arg(&cols_i).arg(&count_i).arg(&mut pairs).arg(&mut bad);
    // SAFETY: argument order and types match top_slices in top_rows.cu; shapes were checked above.
    unsafe { b.launch(cfg) }.w()?;
    let func = dev.get_or_load_custom_func("top_merge", "hearth_top_rows", PTX)?;
    let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 };
    let mut b = func.builder();
    b.arg(&xs).arg(&cols_i).arg(&count_i).arg(&slices_i).arg(&pairs).arg(&bad).arg(&mut out);
    // SAFETY: argument order and types match top_merge; `pairs` holds rows * slices * count ranks.
    unsafe { b.launch(cfg) }.w()?;
    let stream = dev.cuda_stream();
    let host = stream.clone_dtoh(&out).w()?;
    stream.synchronize().w()?;
    let values_of = host[..values].iter().map(|&b| f32::from_bits(b)).collect();
    let bad = host[2 * values..].iter().map(|&f| f != 0).collect();
    Ok((host[values..2 * values].to_vec(), values_of, bad))
}
