// Residual add and RMSNorm in one launch: s = x + r (the new residual stream) and
// h = s / sqrt(mean(s^2) + eps) * w, block per row. Decode runs this twice per layer on a single row
// each time; as candle's add and norm it was two launches whose cost was their latency, not bytes.
// h is written in f32, or in the bf16/f16 of the matmul that reads it next (rounded as a separate cast
// kernel would round it, one launch fewer).
#include "convert.cuh"
#define THREADS 256

template <typename O>
__device__ void add_rms_norm(const float* __restrict__ x, const float* __restrict__ r, const float* __restrict__ w,
                             float* __restrict__ sum, O* __restrict__ out, int dim, float eps) {
  const size_t base = (size_t)blockIdx.x * dim;
  float sq = 0.f;
  for (int i = threadIdx.x; i < dim; i += THREADS) {
    const float s = x[base + i] + r[base + i];
    sum[base + i] = s;
    sq += s * s;
  }
  __shared__ float part[THREADS / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffff, sq, o);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = sq;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int i = 0; i < THREADS / 32; i++) total += part[i];
  const float scale = rsqrtf(total / dim + eps);
  // Each thread reads back only the sums it wrote itself, so no barrier is needed for them.
  for (int i = threadIdx.x; i < dim; i += THREADS) put(out + base + i, sum[base + i] * scale * w[i]);
}

#define ADD_RMS_NORM(NAME, O)                                                                              \
  extern "C" __global__ void __launch_bounds__(THREADS) NAME(const float* x, const float* r, const float* w, \
                                                             float* sum, O* out, int dim, float eps) {       \
    add_rms_norm<O>(x, r, w, sum, out, dim, eps);                                                          \
  }
ADD_RMS_NORM(add_rms_norm, float)
ADD_RMS_NORM(add_rms_norm_f16, __half)
ADD_RMS_NORM(add_rms_norm_bf16, __nv_bfloat16)
