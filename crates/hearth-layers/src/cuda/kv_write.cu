// Writes the new K (or V) rows of a whole batch into their paged-cache slots in one launch:
// block t copies row t (f32, as the model computes it) into cache row slots[t], converting to the
// cache's element type. Replaces one copy kernel per sequence and per run of consecutive slots.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

__device__ __forceinline__ void store(float* dst, float x) { *dst = x; }
__device__ __forceinline__ void store(__half* dst, float x) { *dst = __float2half_rn(x); }
__device__ __forceinline__ void store(__nv_bfloat16* dst, float x) { *dst = __float2bfloat16_rn(x); }

template <typename T>
__device__ void kv_write(const float* __restrict__ rows, const unsigned* __restrict__ slots, T* __restrict__ cache, int width) {
  const float* src = rows + (size_t)blockIdx.x * width;
  T* dst = cache + (size_t)slots[blockIdx.x] * width;
  for (int i = threadIdx.x; i < width; i += blockDim.x) store(dst + i, src[i]);
}

#define KV_WRITE(NAME, T)                                                                          \
  extern "C" __global__ void NAME(const float* rows, const unsigned* slots, T* cache, int width) { \
    kv_write<T>(rows, slots, cache, width);                                                        \
  }

KV_WRITE(kv_write_f32, float)
KV_WRITE(kv_write_f16, __half)
KV_WRITE(kv_write_bf16, __nv_bfloat16)
