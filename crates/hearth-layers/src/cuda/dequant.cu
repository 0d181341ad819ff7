// Q4_K and Q6_K weights to f16, for prompt-sized matmuls (the f16 copy then goes through cuBLAS).
// candle's dequantize kernels wrote the 8B shape's weights at about a third of the bandwidth (14 ms
// of a 44 ms prompt): here one warp takes a 256-value super-block, each lane 8 consecutive values
// (widened as the decode GEMV widens them, weights.cuh) written as one 16-byte store.
#include "weights.cuh"

#define WARPS 8

struct __align__(16) half8 { __half2 v[4]; };

template <typename T>
__device__ void dequant_f16(const T* __restrict__ src, half8* __restrict__ dst, long long blocks) {
  const long long b = (long long)blockIdx.x * WARPS + threadIdx.x / 32;
  if (b >= blocks) return;
  const int lane = threadIdx.x % 32;
  float f[8];
  Weights<T>::widen(Weights<T>::load(src + b, lane * 8), f);
  half8 out;
#pragma unroll
  for (int j = 0; j < 4; j++) out.v[j] = __floats2half2_rn(f[2 * j], f[2 * j + 1]);
  dst[b * 32 + lane] = out;
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) dequant_q4k_f16(const block_q4_k* src, half8* dst, long long blocks) {
  dequant_f16(src, dst, blocks);
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) dequant_q6k_f16(const block_q6_k* src, half8* dst, long long blocks) {
  dequant_f16(src, dst, blocks);
}
