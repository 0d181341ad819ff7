//! Prefill and batched decode for the legacy formats on AVX-512 VNNI: tiles of 4 weight rows × 4
//! activation rows, so each block's scale products, activation loads and offset corrections are
//! shared by a whole tile instead of being redone per (weight row, activation row) pair.
//!
//! Every output is bit-identical to `x86::legacy_rows` (the one-weight-row kernel that single-row
//! decode runs), so a row's result does not depend on how rows were batched:
//! - the 8 i32 lanes of each block's dot are exact integers whichever way they are formed: here
//!   `Σ (q + offset)·a − offset·Σ a` with unsigned weights, there `Σ |q|·sign(a, q)`;
//! - each pair's scale is the same f32 product `d_w · d_a`, only computed 8 pairs at a time;
//! - lanes are accumulated with the same fused multiply-add per block, in block order, and summed
//!   with the same [`hsum`].

use super::activations::Q8Block;
use super::x86::{act_chunk, hsum, legacy_vnni, Legacy, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, TILE};
use super::OutPtr;
use candle_core::quantized::GgmlDType;
use std::arch::x86_64::*;

/// Weight rows per tile.
const WR: usize = 4;

/// As [`legacy_vnni`] over all rows of `w` and all `m` activation rows, with whole tiles through
/// [`legacy_tile`] and the ragged edges through the one-row kernel.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vnni,avx512vl,avx512bw")]
pub(crate) unsafe fn legacy_tiled_vnni(dtype: GgmlDType, w: &[u8], rb: usize, acts: &[Q8Block], m: usize, out: OutPtr) {
    let rows = w.len() / rb;
    // Q8_0 needs no unpacking, so with few activation rows the one-row kernel is already bound by
    // streaming the weights (the 262144-row Gemma output matrix in batched decode) and tiles gain
    // nothing; measured slightly slower below 16 rows.
    if dtype == GgmlDType::Q8_0 && m < 16 {
        legacy_vnni(dtype, w, rb, acts, m, 0..rows, 0, out);
        return;
    }
    let tiled_rows = match dtype {
        GgmlDType::Q4_0 => tiles::<Q4_0>(w, rb, acts, m, out),
        GgmlDType::Q4_1 => tiles::<Q4_1>(w, rb, acts, m, out),
        GgmlDType::Q5_0 => tiles::<Q5_0>(w, rb, acts, m, out),
        GgmlDType::Q5_1 => tiles::<Q5_1>(w, rb, acts, m, out),
        _ => tiles::<Q8_0>(w, rb, acts, m, out),
    };
    let tiled_m = if tiled_rows > 0 { m / TILE * TILE } else { 0 };
    // The activation rows past the last whole tile, for the tiled weight rows; then every
    // activation row for the weight rows past the last whole tile.
    legacy_vnni(dtype, w, rb, acts, m, 0..tiled_rows, tiled_m, out);
    legacy_vnni(dtype, w, rb, acts, m, tiled_rows..rows, 0, out);
}

/// Per-thread tables of block scales, reused across calls (no allocation once grown).
#[derive(Default)]
struct Scales {
    /// Per block of the current 4 weight rows: `[d0 ×4, d1 ×4, d2 ×4, d3 ×4]`.
    w: Vec<f32>,
    /// Per activation tile of the current chunk, per block: the tile's 4 activation `d`s.
    a: Vec<f32>,
}

thread_local! {
    static SCALES: std::cell::Cell<Scales> = const { std::cell::Cell::new(Scales { w: Vec::new(), a: Vec::new() }) };
}

/// Whole tiles only; returns how many weight rows (from the first) it covered.
#[inline(always)]
unsafe fn tiles<F: Legacy>(w: &[u8], rb: usize, acts: &[Q8Block], m: usize, out: OutPtr) -> usize {
    let (rows, nb) = (w.len() / rb, acts.len() / m);
    let (rows_t, m_t) = (rows / WR * WR, m / TILE * TILE);
    if rows_t == 0 || m_t == 0 {
        return 0;
    }
    // Taken out of the thread-local rather than used in a `with` closure: closures do not inherit
    // this function's target features, so the kernel inside one would not be inlined.
    let mut sc = SCALES.take();
    // Activation rows in L2-sized chunks, each passed over by all of this task's weight rows.
    let chunk = act_chunk(nb * std::mem::size_of::<Q8Block>());
    for j0 in (0..m_t).step_by(chunk) {
        let j1 = (j0 + chunk).min(m_t);
        act_scales(&acts[j0 * nb..j1 * nb], nb, &mut sc.a);
        for r0 in (0..rows_t).step_by(WR) {
            let wp: [*const u8; WR] = std::array::from_fn(|i| w.as_ptr().add((r0 + i) * rb));
            weight_scales::<F>(wp, nb, &mut sc.w);
            for j in (j0..j1).step_by(TILE) {
                let ap: [*const Q8Block; TILE] = std::array::from_fn(|i| acts.as_ptr().add((j + i) * nb));
                let ad = &sc.a[(j - j0) * nb..(j - j0 + TILE) * nb];
                let o = legacy_tile::<F>(wp, ap, &sc.w, ad, nb);
                for (r, row) in o.iter().enumerate() {
                    for (i, v) in row.iter().enumerate() {
                        out.put(r0 + r, j + i, *v);
                    }
                }
            }
        }
    }
    SCALES.set(sc);
    rows_t
}

/// `dst[(tile · nb + ib) · 4 + i]` = `d` of block `ib` of activation row `4 · tile + i`.
fn act_scales(acts: &[Q8Block], nb: usize, dst: &mut Vec<f32>) {
    let tiles = acts.len() / (TILE * nb);
    if dst.len() < tiles * nb * TILE {
        dst.resize(tiles * nb * TILE, 0.0);
    }
    for (tile, blocks) in acts.chunks_exact(TILE * nb).enumerate() {
        for ib in 0..nb {
            for i in 0..TILE {
                dst[(tile * nb + ib) * TILE + i] = blocks[i * nb + ib].d;
            }
        }
    }
}

/// `dst[16 ib ..]` = each of the 4 rows' block `ib` scale, four times over (the broadcast layout
/// [`tile_scales`] multiplies with). Every legacy block starts with its f16 `d`.
#[inline(always)]
unsafe fn weight_scales<F: Legacy>(w: [*const u8; WR], nb: usize, dst: &mut Vec<f32>) {
    if dst.len() < nb * WR * TILE {
        dst.resize(nb * WR * TILE, 0.0);
    }
    let (lo, hi) = (_mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3));
    let out = dst.as_mut_ptr();
    for ib in 0..nb {
        // The four f16 scales side by side, converted in one instruction.
        let mut bits = 0u64;
        for (i, p) in w.iter().enumerate() {
            let b = p.add(ib * F::BYTES);
            bits |= (u16::from_le_bytes([*b, *b.add(1)]) as u64) << (16 * i);
        }
        let d = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64)));
        _mm256_storeu_ps(out.add(WR * TILE * ib), _mm256_permutevar8x32_ps(d, lo));
        _mm256_storeu_ps(out.add(WR * TILE * ib + 8), _mm256_permutevar8x32_ps(d, hi));
    }
}

/// Blocks whose scale products are formed ahead of their dots (16 × 8 f32 on the stack).
const SCALE_RUN: usize = 8;

/// `out[r][j]` = weight row `w[r]` · activation row `a[j]`, over `nb` blocks; `dw` and `da` are
/// the tables of [`weight_scales`] and [`act_scales`] for these rows.
#[inline(always)]
unsafe fn legacy_tile<F: Legacy>(w: [*const u8; WR], a: [*const Q8Block; TILE], dw: &[f32], da: &[f32], nb: usize) -> [[f32; TILE]; WR] {
    debug_assert!(dw.len() >= nb * WR * TILE && da.len() >= nb * TILE);
    let mut acc = [[_mm256_setzero_ps(); TILE]; WR];
    let mut summs = [[0f32; TILE]; WR];
    let mut scales = [[0f32; WR * TILE]; SCALE_RUN];
    for ib0 in (0..nb).step_by(SCALE_RUN) {
        let run = SCALE_RUN.min(nb - ib0);
        for (i, s) in scales[..run].iter_mut().enumerate() {
            let ib = ib0 + i;
            tile_scales(dw.as_ptr().add(ib * WR * TILE), da.as_ptr().add(ib * TILE), s);
        }
        // Keep the products in memory, so that each pair's multiply-add takes its scale as a
        // broadcast memory operand ({1to8}) instead of the compiler shuffling registers for it.
        std::hint::black_box(&mut scales);
        for (i, s) in scales[..run].iter().enumerate() {
            let (b, ab) = (block_ptrs::<F>(w, ib0 + i), act_blocks(a, ib0 + i));
            let (mut qa, mut corr) = ([_mm256_setzero_si256(); TILE], [_mm256_setzero_si256(); TILE]);
            // Plain loops, not `array::map`: closures do not inherit the caller's target features,
            // so intrinsics inside them would become calls.
            for j in 0..TILE {
                qa[j] = _mm256_loadu_si256(ab[j].qs.as_ptr() as *const __m256i);
                corr[j] = offset_correction::<F>(qa[j]);
            }
            for r in 0..WR {
                let u = F::unsigned_bw(b[r]);
                for j in 0..TILE {
                    if !F::SIGNED {
                        summs[r][j] += F::m(b[r]) * ab[j].sum_scaled;
                    }
                    let p = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(corr[j], u, qa[j]));
                    acc[r][j] = _mm256_fmadd_ps(_mm256_set1_ps(s[TILE * r + j]), p, acc[r][j]);
                }
            }
        }
    }
    let mut out = [[0f32; TILE]; WR];
    for r in 0..WR {
        for j in 0..TILE {
            out[r][j] = hsum(acc[r][j]) + summs[r][j];
        }
    }
    out
}

#[inline(always)]
unsafe fn block_ptrs<F: Legacy>(w: [*const u8; WR], ib: usize) -> [*const u8; WR] {
    [w[0].add(ib * F::BYTES), w[1].add(ib * F::BYTES), w[2].add(ib * F::BYTES), w[3].add(ib * F::BYTES)]
}

#[inline(always)]
unsafe fn act_blocks<'a>(a: [*const Q8Block; TILE], ib: usize) -> [&'a Q8Block; TILE] {
    [&*a[0].add(ib), &*a[1].add(ib), &*a[2].add(ib), &*a[3].add(ib)]
}

/// `scales[4 r + j]` = `dw` of row `r` × `da` of activation `j`: the 16 products the one-row
/// kernel forms one at a time (`dw · da`, the same f32 multiply), in two.
#[inline(always)]
unsafe fn tile_scales(dw: *const f32, da: *const f32, scales: &mut [f32; WR * TILE]) {
    let ad4 = _mm_loadu_ps(da);
    let ad = _mm256_set_m128(ad4, ad4);
    _mm256_storeu_ps(scales.as_mut_ptr(), _mm256_mul_ps(_mm256_loadu_ps(dw), ad));
    _mm256_storeu_ps(scales.as_mut_ptr().add(8), _mm256_mul_ps(_mm256_loadu_ps(dw.add(8)), ad));
}

/// `−offset · Σ a` over each lane's 4 bytes: the start value that turns `Σ (q + offset)·a` into `Σ q·a`.
#[inline(always)]
unsafe fn offset_correction<F: Legacy>(qa: __m256i) -> __m256i {
    if F::OFFSET == 0 {
        return _mm256_setzero_si256();
    }
    let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(F::OFFSET as i8), qa);
    _mm256_sub_epi32(_mm256_setzero_si256(), s)
}
