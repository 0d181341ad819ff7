// How a weight row is stored, for the kernels that read weights as loaded (dense_gemv.cu) or
// widen them to f16 (dequant.cu): bf16, f16, and ggml's Q4_K and Q6_K super-blocks.
#pragma once
#include "convert.cuh"
#include <stdint.h>

// How a weight row is stored: `row` finds row n of a dense [N, K] weight, `load` fetches the raw
// bytes behind elements i..i+8 of a row (i a multiple of 8; for the k-quants, of a run of
// super-blocks), `widen` turns them into 8 floats. The GEMV issues loads for several steps before
// widening any, so each lane keeps several in flight.
template <typename T> struct Weights;

template <> struct Weights<__nv_bfloat16> {
  using Raw = uint4;
  static __device__ __forceinline__ const __nv_bfloat16* row(const __nv_bfloat16* w, int n, int k) { return w + (size_t)n * k; }
  static __device__ __forceinline__ Raw load(const __nv_bfloat16* row, int i) { return __ldg(reinterpret_cast<const uint4*>(row + i)); }
  static __device__ __forceinline__ void widen(const Raw raw, float* out) { ::widen(raw, out, static_cast<const __nv_bfloat16*>(nullptr)); }
};

template <> struct Weights<__half> {
  using Raw = uint4;
  static __device__ __forceinline__ const __half* row(const __half* w, int n, int k) { return w + (size_t)n * k; }
  static __device__ __forceinline__ Raw load(const __half* row, int i) { return __ldg(reinterpret_cast<const uint4*>(row + i)); }
  static __device__ __forceinline__ void widen(const Raw raw, float* out) { ::widen(raw, out, static_cast<const __half*>(nullptr)); }
};

// Q4_K and Q6_K super-blocks of 256 values (ggml's layouts); a lane's 8 values lie in one of them.
struct block_q4_k { __half d; __half dmin; uint8_t scales[12]; uint8_t qs[128]; };
struct block_q6_k { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; __half d; };

// The 6-bit scale and min of Q4_K sub-block j (0..8) from a super-block's first 16 bytes (d, dmin,
// then 12 packed scale bytes in head.y/z/w), by shifts: indexing the bytes would put `head` in local memory.
__device__ __forceinline__ void q4k_scale_min(const uint4 head, int j, float& sc, float& m) {
  const int shift = 8 * (j & 3);
  const uint32_t a = (head.y >> shift) & 0xFF, b = (head.z >> shift) & 0xFF, c = (head.w >> shift) & 0xFF;
  if (j < 4) { sc = a & 63; m = b & 63; }
  else { sc = (c & 0xF) | ((a >> 6) << 4); m = (c >> 4) | ((b >> 6) << 4); }
}

// Values computed as the CPU dequantizes them: d * scale * q - dmin * min in f32.
template <> struct Weights<block_q4_k> {
  struct Raw { uint4 head; uint2 qs; int v; };  // d, dmin and the packed scales; 8 nibble bytes
  static __device__ __forceinline__ Raw load(const block_q4_k* row, int i) {
    const block_q4_k* b = row + i / 256;
    const int v = i % 256;
    Raw r;
    r.head = __ldg(reinterpret_cast<const uint4*>(b));
    r.qs = __ldg(reinterpret_cast<const uint2*>(b->qs + 32 * (v / 64) + v % 32));
    r.v = v;
    return r;
  }
  static __device__ __forceinline__ void widen(const Raw& raw, float* out) {
    const int o = raw.v % 64, j = 2 * (raw.v / 64) + (o >= 32);
    float sc, m;
    q4k_scale_min(raw.head, j, sc, m);
    const __half* dh = reinterpret_cast<const __half*>(&raw.head);
    const float d = __half2float(dh[0]) * sc, dm = __half2float(dh[1]) * m;
    const int shift = o >= 32 ? 4 : 0;
    const uint8_t* qs = reinterpret_cast<const uint8_t*>(&raw.qs);
#pragma unroll
    for (int e = 0; e < 8; e++) out[e] = d * (float)((qs[e] >> shift) & 0xF) - dm;
  }
};

// Q6_K rows are 210-byte blocks (2-byte aligned), so a lane reads its bytes one by one.
template <> struct Weights<block_q6_k> {
  struct Raw { uint8_t ql[8]; uint8_t qh[8]; float d; int v; };
  static __device__ __forceinline__ Raw load(const block_q6_k* row, int i) {
    const block_q6_k* b = row + i / 256;
    const int v = i % 256, half_ = v / 128, quarter = (v % 128) / 32, l = v % 32;
    Raw r;
    const uint8_t* ql = b->ql + half_ * 64 + (quarter & 1) * 32 + l;
    const uint8_t* qh = b->qh + half_ * 32 + l;
#pragma unroll
    for (int e = 0; e < 8; e++) { r.ql[e] = __ldg(ql + e); r.qh[e] = __ldg(qh + e); }
    r.d = __half2float(b->d) * (float)b->scales[half_ * 8 + l / 16 + 2 * quarter];
    r.v = v;
    return r;
  }
  static __device__ __forceinline__ void widen(const Raw& raw, float* out) {
    const int quarter = (raw.v % 128) / 32;
    const int lo = quarter >= 2 ? 4 : 0, hi = 2 * quarter;
#pragma unroll
    for (int e = 0; e < 8; e++) out[e] = raw.d * (float)((((raw.ql[e] >> lo) & 0xF) | (((raw.qh[e] >> hi) & 3) << 4)) - 32);
  }
};

