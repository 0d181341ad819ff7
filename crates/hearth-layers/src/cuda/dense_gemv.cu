// y[b, n] = sum_k x[b, k] * w[n, k] for a few activation rows (decode): x f32 [B, K], w bf16/f16
// [N, K] as loaded, y f32 [B, N]. One warp per weight row reads it once in 16-byte loads and
// serves all B rows, so the weight streams at memory bandwidth; the activations (B x K floats) stay
// in L1/L2. It replaces cast(x) -> library GEMM -> cast(y), three launches per linear layer.
// One launch serves up to three weights over the same x (q/k/v): their rows are numbered one after
// the other, so small matrices (k/v) share the launch and the GPU fills. The SwiGLU form reads a gate
// and an up row per warp and writes silu(gate) * up, so gate/up, SiLU and the product are one launch.
// Requires K % 8 == 0 and 16-byte aligned rows (checked by the caller).

// 16-byte loads each lane keeps in flight per weight row: one at a time left the warp waiting on a
// memory round trip per 256 elements.
#define UNROLL 4
#define STEP (32 * 8)

#include "weights.cuh"

// acc[b] += x[b, i..i+8] . w[i..i+8] (w already widened).
template <int B>
__device__ __forceinline__ void accumulate(const float* __restrict__ x, int k, int i, const float* wf, float* acc) {
#pragma unroll
  for (int b = 0; b < B; b++) {
    const float4 x0 = *reinterpret_cast<const float4*>(x + (size_t)b * k + i);
    const float4 x1 = *reinterpret_cast<const float4*>(x + (size_t)b * k + i + 4);
    acc[b] += wf[0] * x0.x + wf[1] * x0.y + wf[2] * x0.z + wf[3] * x0.w
            + wf[4] * x1.x + wf[5] * x1.y + wf[6] * x1.z + wf[7] * x1.w;
  }
}

// This lane's partial dots of R weight rows with the B activation rows (lane-strided 8-element runs,
// the same order whatever R is), then summed over the warp.
template <typename T, int B, int R>
__device__ __forceinline__ void warp_dots(const float* __restrict__ x, const T* const* rows, int k, float (*acc)[B]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int b = 0; b < B; b++) acc[r][b] = 0.f;
  int i = lane * 8;
  for (; i + (UNROLL - 1) * STEP < k; i += UNROLL * STEP) {
    typename Weights<T>::Raw raw[R][UNROLL];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
      for (int u = 0; u < UNROLL; u++) raw[r][u] = Weights<T>::load(rows[r], i + u * STEP);
#pragma unroll
    for (int u = 0; u < UNROLL; u++)
#pragma unroll
      for (int r = 0; r < R; r++) {
        float wf[8];
        Weights<T>::widen(raw[r][u], wf);
        accumulate<B>(x, k, i + u * STEP, wf, acc[r]);
      }
  }
  for (; i < k; i += STEP)
#pragma unroll
    for (int r = 0; r < R; r++) {
      float wf[8];
      Weights<T>::widen(Weights<T>::load(rows[r], i), wf);
      accumulate<B>(x, k, i, wf, acc[r]);
    }
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int b = 0; b < B; b++)
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) acc[r][b] += __shfl_xor_sync(0xffffffff, acc[r][b], off);
}

// Up to three weights w0/w1/w2 ([n0|n1|n2, K]) over one x; y holds [B, n0] then [B, n1] then [B, n2].
template <typename T, int B>
__device__ void dense_gemv(const float* __restrict__ x, const T* w0, const T* w1, const T* w2, float* __restrict__ y,
                           int n0, int n1, int n2, int k) {
  int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const T* w = w0;
  int n = n0;
  if (row >= n0) { row -= n0; w = w1; n = n1; y += (size_t)B * n0;
    if (row >= n1) { row -= n1; w = w2; n = n2; y += (size_t)B * n1; } }
  if (row >= n) return;
  const T* rows[1] = {Weights<T>::row(w, row, k)};
  float acc[1][B];
  warp_dots<T, B, 1>(x, rows, k, acc);
  if ((threadIdx.x & 31) == 0)
#pragma unroll
    for (int b = 0; b < B; b++) y[(size_t)b * n + row] = acc[0][b];
}

// y[b, n] = silu(x . gate[n]) * (x . up[n]), silu(g) = g / (1 + exp(-g)) as candle computes it.
template <typename T, int B>
__device__ void dense_swiglu(const float* __restrict__ x, const T* gate, const T* up, float* __restrict__ y, int n, int k) {
  const int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  if (row >= n) return;
  const T* rows[2] = {Weights<T>::row(gate, row, k), Weights<T>::row(up, row, k)};
  float acc[2][B];
  warp_dots<T, B, 2>(x, rows, k, acc);
  if ((threadIdx.x & 31) == 0)
#pragma unroll
    for (int b = 0; b < B; b++) {
      const float g = acc[0][b];
      y[(size_t)b * n + row] = g / (1.f + expf(-g)) * acc[1][b];
    }
}

#define DENSE_GEMV(T, SUFFIX, B)                                                                   \
  extern "C" __global__ void dense_gemv_##SUFFIX##_##B(const float* x, const T* w0, const T* w1, const T* w2, float* y, \
                                                       int n0, int n1, int n2, int k) {          \
    dense_gemv<T, B>(x, w0, w1, w2, y, n0, n1, n2, k);                                            \
  }                                                                                               \
  extern "C" __global__ void dense_swiglu_##SUFFIX##_##B(const float* x, const T* gate, const T* up, float* y, int n, int k) { \
    dense_swiglu<T, B>(x, gate, up, y, n, k);                                                     \
  }
#define DENSE_GEMV_ALL(T, SUFFIX) \
  DENSE_GEMV(T, SUFFIX, 1) DENSE_GEMV(T, SUFFIX, 2) DENSE_GEMV(T, SUFFIX, 3) DENSE_GEMV(T, SUFFIX, 4) \
  DENSE_GEMV(T, SUFFIX, 5) DENSE_GEMV(T, SUFFIX, 6)

DENSE_GEMV_ALL(__nv_bfloat16, bf16)
DENSE_GEMV_ALL(__half, f16)
