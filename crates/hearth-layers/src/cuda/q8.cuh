// Activation rows quantized to 8 bits for the k-quant GEMV (quant_gemv.cu), in runs of 32 values: q =
// round(v / d) with d = max |v| / 127, and per run d and d * sum q (the values' sum as the integer dot
// products see it). A row of k values is its k int8 values, then one float2 (d, d * sum q) per run:
// k + k / 4 bytes (k a multiple of 32), written by quantize_q8 (quant_gemv.cu).
#pragma once
#include <stdint.h>

__device__ __forceinline__ size_t q8_row_bytes(int k) { return (size_t)k + (size_t)(k / 4); }

// The calling warp's 32 lanes quantize N runs of a row at once, one value of each per lane (value n of
// lane l: value runs[n] * 32 + l of the row; runs[n] < 0 stores nothing, and must be so for the whole
// warp). The N reductions are interleaved, so a warp pays about one reduction's latency, not N. A run
// holding NaN/inf gets a NaN scale, so the products that read it are NaN too (the host's checks on the
// logits see them) rather than silently finite.
template <int N>
__device__ __forceinline__ void q8_store_runs(const float* v, int8_t* row, int k, const int* runs) {
  const int lane = threadIdx.x & 31;
  float amax[N];
#pragma unroll
  for (int n = 0; n < N; n++) amax[n] = fabsf(v[n]);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1)
#pragma unroll
    for (int n = 0; n < N; n++) amax[n] = fmaxf(amax[n], __shfl_xor_sync(0xffffffff, amax[n], off));
  float d[N];
  int qi[N], sum[N];
#pragma unroll
  for (int n = 0; n < N; n++) {
    const bool finite = __all_sync(0xffffffff, isfinite(v[n]));
    d[n] = finite ? amax[n] / 127.f : __int_as_float(0x7fc00000);
    qi[n] = (finite && amax[n] > 0.f) ? __float2int_rn(v[n] / d[n]) : 0;
    sum[n] = qi[n];
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1)
#pragma unroll
    for (int n = 0; n < N; n++) sum[n] += __shfl_xor_sync(0xffffffff, sum[n], off);
#pragma unroll
  for (int n = 0; n < N; n++) {
    if (runs[n] < 0) continue;
    row[runs[n] * 32 + lane] = (int8_t)qi[n];
    if (lane == 0) reinterpret_cast<float2*>(row + k)[runs[n]] = make_float2(d[n], d[n] * (float)sum[n]);
  }
}

// One run: lane l holds value run * 32 + l.
__device__ __forceinline__ void q8_store_run(float v, int8_t* row, int k, int run) {
  q8_store_runs<1>(&v, row, k, &run);
}
