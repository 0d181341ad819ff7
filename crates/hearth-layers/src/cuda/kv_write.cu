// Writes the new K and V rows of a whole batch into their paged-cache slots in one launch:
// block (t, 0) copies K row t (f32, as the model computes it) into K cache row slots[t], block (t, 1)
// the V row, converting to the cache's element type. Source rows lie k_stride / v_stride elements
// apart (V as a column range of the q/k/v matmul output is read in place). Replaces one copy kernel per sequence and per
// run of consecutive slots (and, since, a second launch for V).
#include "convert.cuh"

template <typename T>
__device__ void kv_write(const float* __restrict__ k_rows, const float* __restrict__ v_rows, const unsigned* __restrict__ slots,
                         T* __restrict__ k_cache, T* __restrict__ v_cache, int width, long long k_stride, long long v_stride) {
  const float* src = blockIdx.y == 0 ? k_rows + (size_t)blockIdx.x * k_stride : v_rows + (size_t)blockIdx.x * v_stride;
  T* dst = (blockIdx.y == 0 ? k_cache : v_cache) + (size_t)slots[blockIdx.x] * width;
  for (int i = threadIdx.x; i < width; i += blockDim.x) put(dst + i, src[i]);
}

#define KV_WRITE(NAME, T)                                                                          \
  extern "C" __global__ void NAME(const float* k_rows, const float* v_rows, const unsigned* slots, T* k_cache, T* v_cache, \
                                  int width, long long k_stride, long long v_stride) {             \
    kv_write<T>(k_rows, v_rows, slots, k_cache, v_cache, width, k_stride, v_stride);              \
  }

KV_WRITE(kv_write_f32, float)
KV_WRITE(kv_write_f16, __half)
KV_WRITE(kv_write_bf16, __nv_bfloat16)
