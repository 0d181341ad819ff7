// Residual add and RMSNorm in one launch: s = x + r (the new residual stream) and
// h = s / sqrt(mean(s^2) + eps) * w, block per row. Decode runs this twice per layer on a single row
// each time; as candle's add and norm it was two launches whose cost was their latency, not bytes.
// h is written in f32, or in the bf16/f16 of the matmul that reads it next (rounded as a separate cast
// kernel would round it, one launch fewer), or as the k-quant GEMV's 8-bit rows (add_rms_norm_q8).
#include "convert.cuh"
#include "q8.cuh"
#define THREADS 256

// Block-wide sum of one value per thread.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float part[THREADS / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int i = 0; i < THREADS / 32; i++) total += part[i];
  return total;
}

// The register-held part of a row's add + RMSNorm: this thread's sums s = x + r (also stored) and
// weights w at values threadIdx.x + j * THREADS, loaded at once; returns the row's 1 / rms.
template <int PER>
__device__ __forceinline__ float add_and_scale(const float* __restrict__ x, const float* __restrict__ r, const float* __restrict__ w,
                                               float* __restrict__ sum, int dim, float eps, float* s, float* wv) {
  const size_t base = (size_t)blockIdx.x * dim;
  float sq = 0.f;
#pragma unroll
  for (int j = 0; j < PER; j++) {
    const int i = threadIdx.x + j * THREADS;
    s[j] = i < dim ? x[base + i] + r[base + i] : 0.f;
    wv[j] = i < dim ? w[i] : 0.f;
  }
#pragma unroll
  for (int j = 0; j < PER; j++) {
    const int i = threadIdx.x + j * THREADS;
    if (i < dim) sum[base + i] = s[j];
    sq += s[j] * s[j];
  }
  return rsqrtf(block_sum(sq) / dim + eps);
}

// PER > 0: rows of up to PER * THREADS values, each thread's x, r and w loaded into registers at once
// (one memory round trip before the reduction instead of one before it and one after for w). PER = 0:
// any length, in loops.
template <typename O, int PER>
__device__ void add_rms_norm(const float* __restrict__ x, const float* __restrict__ r, const float* __restrict__ w,
                             float* __restrict__ sum, O* __restrict__ out, int dim, float eps) {
  const size_t base = (size_t)blockIdx.x * dim;
  float sq = 0.f;
  if (PER > 0) {
    float s[PER > 0 ? PER : 1], wv[PER > 0 ? PER : 1];
    const float scale = add_and_scale<(PER > 0 ? PER : 1)>(x, r, w, sum, dim, eps, s, wv);
#pragma unroll
    for (int j = 0; j < PER; j++) {
      const int i = threadIdx.x + j * THREADS;
      if (i < dim) put(out + base + i, s[j] * scale * wv[j]);
    }
    return;
  }
  for (int i = threadIdx.x; i < dim; i += THREADS) {
    const float s = x[base + i] + r[base + i];
    sum[base + i] = s;
    sq += s * s;
  }
  const float scale = rsqrtf(block_sum(sq) / dim + eps);
  // Each thread reads back only the sums it wrote itself, so no barrier is needed for them.
  for (int i = threadIdx.x; i < dim; i += THREADS) put(out + base + i, sum[base + i] * scale * w[i]);
}

// add_rms_norm (PER > 0) with the normed row written as the k-quant GEMV's 8-bit runs (q8.cuh) instead of
// floats: the values quantized are exactly the f32 ones add_rms_norm writes, so the bytes equal
// quantize_q8's of them, and the quantize launch before q/k/v and before gate/up is saved. With 256
// threads, each warp holds PER runs of the row (run w + 8 j at its j-th values). dim % 32 == 0.
template <int PER>
__device__ void add_rms_norm_q8(const float* __restrict__ x, const float* __restrict__ r, const float* __restrict__ w,
                                float* __restrict__ sum, int8_t* __restrict__ q, int dim, float eps) {
  float s[PER], wv[PER];
  const float scale = add_and_scale<PER>(x, r, w, sum, dim, eps, s, wv);
  float v[PER];
  int runs[PER];
#pragma unroll
  for (int j = 0; j < PER; j++) {
    const int i = threadIdx.x + j * THREADS;
    v[j] = s[j] * scale * wv[j];
    runs[j] = i < dim ? i / 32 : -1;
  }
  q8_store_runs<PER>(v, q + (size_t)blockIdx.x * q8_row_bytes(dim), dim, runs);
}

#define ADD_RMS_NORM_Q8(PER)                                                                                  \
  extern "C" __global__ void __launch_bounds__(THREADS) add_rms_norm_q8_##PER(const float* x, const float* r, \
      const float* w, float* sum, int8_t* q, int dim, float eps) {                                          \
    add_rms_norm_q8<PER>(x, r, w, sum, q, dim, eps);                                                        \
  }
// Only rows of up to 2048 values (NORM_Q8_MAX_DIM in cuda/mod.rs): at 4096, 16 runs a warp took the
// one-block norm longer than the quantize launch it saves.
ADD_RMS_NORM_Q8(4) ADD_RMS_NORM_Q8(8)

// Entry points add_rms_norm[_f16|_bf16]_PER, PER as in add_rms_norm (cuda/mod.rs picks the smallest that fits).
#define ADD_RMS_NORM(NAME, O, PER)                                                                         \
  extern "C" __global__ void __launch_bounds__(THREADS) NAME##_##PER(const float* x, const float* r, const float* w, \
                                                                     float* sum, O* out, int dim, float eps) { \
    add_rms_norm<O, PER>(x, r, w, sum, out, dim, eps);                                                      \
  }
#define ADD_RMS_NORM_ALL(NAME, O) \
  ADD_RMS_NORM(NAME, O, 0) ADD_RMS_NORM(NAME, O, 4) ADD_RMS_NORM(NAME, O, 8) ADD_RMS_NORM(NAME, O, 16) ADD_RMS_NORM(NAME, O, 32)
ADD_RMS_NORM_ALL(add_rms_norm, float)
ADD_RMS_NORM_ALL(add_rms_norm_f16, __half)
ADD_RMS_NORM_ALL(add_rms_norm_bf16, __nv_bfloat16)
