// Element conversions the kernels share, so every kernel widens and rounds alike: 16 bytes of a row
// widened to floats (4 f32 or 8 f16/bf16; the last argument only picks the type), and a float stored
// as f32, f16 or bf16, rounded to nearest-even as candle's cast kernels round.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>

__device__ __forceinline__ void widen(const uint4 r, float* o, const float*) {
  o[0] = __uint_as_float(r.x); o[1] = __uint_as_float(r.y); o[2] = __uint_as_float(r.z); o[3] = __uint_as_float(r.w);
}
__device__ __forceinline__ void widen(const uint4 r, float* o, const __half*) {
  const __half2* h = reinterpret_cast<const __half2*>(&r);
#pragma unroll
  for (int i = 0; i < 4; i++) { const float2 f = __half22float2(h[i]); o[2 * i] = f.x; o[2 * i + 1] = f.y; }
}
__device__ __forceinline__ void widen(const uint4 r, float* o, const __nv_bfloat16*) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&r);
#pragma unroll
  for (int i = 0; i < 4; i++) { const float2 f = __bfloat1622float2(h[i]); o[2 * i] = f.x; o[2 * i + 1] = f.y; }
}

__device__ __forceinline__ void put(float* d, float x) { *d = x; }
__device__ __forceinline__ void put(__half* d, float x) { *d = __float2half_rn(x); }
__device__ __forceinline__ void put(__nv_bfloat16* d, float x) { *d = __float2bfloat16_rn(x); }
