// y[b, n] = sum_k x[b, k] * w[n, k] for a few activation rows (decode): x f32 [B, K], w bf16/f16
// [N, K] as loaded, y f32 [B, N]. One warp per weight row reads it once in 16-byte loads and
// serves all B rows, so the weight streams at memory bandwidth; the activations (B x K floats) stay
// in L1/L2. It replaces cast(x) -> library GEMM -> cast(y), three launches per linear layer.
// Requires K % 8 == 0 and 16-byte aligned rows (checked by the caller).
#include <cuda_fp16.h>
#include <cuda_bf16.h>

__device__ __forceinline__ void widen8(const uint4 raw, float* out, const __nv_bfloat16*) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 f = __bfloat1622float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ void widen8(const uint4 raw, float* out, const __half*) {
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 f = __half22float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

template <typename T, int B>
__device__ void dense_gemv(const float* __restrict__ x, const T* __restrict__ w, float* __restrict__ y, int n_rows, int k) {
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (warp >= n_rows) return;
  const T* row = w + (size_t)warp * k;
  float acc[B];
#pragma unroll
  for (int b = 0; b < B; b++) acc[b] = 0.f;
  for (int i = lane * 8; i < k; i += 32 * 8) {
    float wf[8];
    widen8(__ldg(reinterpret_cast<const uint4*>(row + i)), wf, row);
#pragma unroll
    for (int b = 0; b < B; b++) {
      const float4 x0 = *reinterpret_cast<const float4*>(x + (size_t)b * k + i);
      const float4 x1 = *reinterpret_cast<const float4*>(x + (size_t)b * k + i + 4);
      acc[b] += wf[0] * x0.x + wf[1] * x0.y + wf[2] * x0.z + wf[3] * x0.w
              + wf[4] * x1.x + wf[5] * x1.y + wf[6] * x1.z + wf[7] * x1.w;
    }
  }
#pragma unroll
  for (int b = 0; b < B; b++) {
    float v = acc[b];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffff, v, off);
    if (lane == 0) y[(size_t)b * n_rows + warp] = v;
  }
}

#define DENSE_GEMV(T, SUFFIX, B)                                                                   \
  extern "C" __global__ void dense_gemv_##SUFFIX##_##B(const float* x, const T* w, float* y, int n, int k) { \
    dense_gemv<T, B>(x, w, y, n, k);                                                              \
  }
#define DENSE_GEMV_ALL(T, SUFFIX) \
  DENSE_GEMV(T, SUFFIX, 1) DENSE_GEMV(T, SUFFIX, 2) DENSE_GEMV(T, SUFFIX, 3) DENSE_GEMV(T, SUFFIX, 4) \
  DENSE_GEMV(T, SUFFIX, 5) DENSE_GEMV(T, SUFFIX, 6) DENSE_GEMV(T, SUFFIX, 7) DENSE_GEMV(T, SUFFIX, 8)

DENSE_GEMV_ALL(__nv_bfloat16, bf16)
DENSE_GEMV_ALL(__half, f16)
