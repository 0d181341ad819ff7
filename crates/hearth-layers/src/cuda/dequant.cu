// Q4_K and Q6_K weights to f16, for prompt-sized matmuls (the f16 copy then goes through cuBLAS).
// candle's dequantize kernels wrote the 8B shape's weights at about a third of the bandwidth (14 ms
// of a 44 ms prompt): here one warp takes a 256-value super-block, each lane 8 consecutive values
// written as one 16-byte store. Values are computed in f32 as the CPU path does, then rounded.
#include <cuda_fp16.h>
#include <stdint.h>

#define WARPS 8

struct __align__(16) half8 { __half2 v[4]; };

// Q4_K: d, dmin (f16), 12 bytes of packed 6-bit scales and mins, 128 bytes of 4-bit values.
struct block_q4_k { __half d; __half dmin; uint8_t scales[12]; uint8_t qs[128]; };
// Q6_K: low 4 bits, high 2 bits, 16 signed 8-bit scales, d.
struct block_q6_k { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; __half d; };

__device__ __forceinline__ void scale_min_k4(int j, const uint8_t* q, float& sc, float& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) dequant_q4k_f16(
    const block_q4_k* __restrict__ src, half8* __restrict__ dst, long long blocks) {
  const long long b = (long long)blockIdx.x * WARPS + threadIdx.x / 32;
  if (b >= blocks) return;
  const int lane = threadIdx.x % 32;
  const block_q4_k* blk = src + b;
  const int v = lane * 8;              // first of this lane's 8 values
  const int group = v / 64, o = v % 64; // 64-value group; low nibbles for its first 32, high after
  float sc, m;
  scale_min_k4(2 * group + (o >= 32), blk->scales, sc, m);
  const float d = __half2float(blk->d) * sc, dm = __half2float(blk->dmin) * m;
  const uint2 packed = *reinterpret_cast<const uint2*>(blk->qs + 32 * group + (o % 32));
  const int shift = o >= 32 ? 4 : 0;
  half8 out;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const uint32_t w = i < 2 ? packed.x : packed.y;
    const int byte = (i % 2) * 2;
    const float q0 = (w >> (8 * byte + shift)) & 0xF, q1 = (w >> (8 * (byte + 1) + shift)) & 0xF;
    out.v[i] = __floats2half2_rn(d * q0 - dm, d * q1 - dm);
  }
  dst[b * 32 + lane] = out;
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) dequant_q6k_f16(
    const block_q6_k* __restrict__ src, half8* __restrict__ dst, long long blocks) {
  const long long b = (long long)blockIdx.x * WARPS + threadIdx.x / 32;
  if (b >= blocks) return;
  const int lane = threadIdx.x % 32;
  const block_q6_k* blk = src + b;
  const int v = lane * 8;
  const int half_ = v / 128, r = v % 128, quarter = r / 32, l = r % 32;
  const uint8_t* ql = blk->ql + half_ * 64 + (quarter & 1) * 32 + l;
  const uint8_t* qh = blk->qh + half_ * 32 + l;
  const float d = __half2float(blk->d) * blk->scales[half_ * 8 + l / 16 + 2 * quarter];
  const int lo_shift = quarter >= 2 ? 4 : 0, hi_shift = 2 * quarter;
  half8 out;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int a = 2 * i, c = 2 * i + 1;
    const int q0 = (((ql[a] >> lo_shift) & 0xF) | (((qh[a] >> hi_shift) & 3) << 4)) - 32;
    const int q1 = (((ql[c] >> lo_shift) & 0xF) | (((qh[c] >> hi_shift) & 3) << 4)) - 32;
    out.v[i] = __floats2half2_rn(d * q0, d * q1);
  }
  dst[b * 32 + lane] = out;
}
