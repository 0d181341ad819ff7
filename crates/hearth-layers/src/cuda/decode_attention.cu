// Paged attention for decode steps: one query token per sequence, every sequence of the batch in one
// launch. Block (seq, head) of 4 warps; each warp walks a strided subset of the sequence's visible keys
// with an online softmax, and the warps' partial results are merged at the end. K/V rows are read in
// place from the paged cache through the slot list, so no gather copy is made.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <math.h>

#define WARPS 4
#define MAX_HEAD_DIM 256
#define PER_LANE (MAX_HEAD_DIM / 32)
#define KEYS 4

__device__ __forceinline__ float as_float(float x) { return x; }
__device__ __forceinline__ float as_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float as_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ void decode_attention(
    const float* __restrict__ q,          // [seqs, n_heads, head_dim]
    const T* __restrict__ k_cache,        // [rows, n_kv_heads * head_dim]
    const T* __restrict__ v_cache,
    const unsigned* __restrict__ slots,   // visible slots of every sequence, concatenated
    const unsigned* __restrict__ offsets, // [seqs + 1]: sequence s owns slots[offsets[s]..offsets[s+1]]
    float* __restrict__ out,              // [seqs, n_heads, head_dim]
    int n_heads, int n_kv_heads, int head_dim, float scale, float softcap) {
  const int seq = blockIdx.x, head = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int kv_head = head / (n_heads / n_kv_heads);
  const size_t row_width = (size_t)n_kv_heads * head_dim;
  const unsigned begin = offsets[seq], end = offsets[seq + 1];
  const float* qh = q + ((size_t)seq * n_heads + head) * head_dim;

  float qr[PER_LANE], acc[PER_LANE];
#pragma unroll
  for (int i = 0; i < PER_LANE; i++) {
    const int d = lane + 32 * i;
    qr[i] = d < head_dim ? qh[d] : 0.f;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  // KEYS keys per warp step, their loads issued together: a warp walking one key at a time waits on
  // a global-load round trip per key, and decode attention is exactly that latency.
  for (unsigned j0 = begin + warp * KEYS; j0 < end; j0 += WARPS * KEYS) {
    size_t base[KEYS];
    float s[KEYS];
#pragma unroll
    for (int u = 0; u < KEYS; u++) {
      const unsigned j = j0 + u < end ? j0 + u : j0;  // past the end: recompute key j0, then mask it
      base[u] = (size_t)slots[j] * row_width + (size_t)kv_head * head_dim;
      s[u] = 0.f;
    }
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) {
      const int d = lane + 32 * i;
      if (d < head_dim) {
#pragma unroll
        for (int u = 0; u < KEYS; u++) s[u] += qr[i] * as_float(k_cache[base[u] + d]);
      }
    }
    float m_new = m;
#pragma unroll
    for (int u = 0; u < KEYS; u++) {
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) s[u] += __shfl_xor_sync(0xffffffff, s[u], o);
      s[u] *= scale;
      if (softcap > 0.f) s[u] = softcap * tanhf(s[u] / softcap);
      if (j0 + u >= end) s[u] = -INFINITY;
      m_new = fmaxf(m_new, s[u]);
    }
    const float correction = expf(m - m_new);
    float p[KEYS];
    l *= correction;
#pragma unroll
    for (int u = 0; u < KEYS; u++) {
      p[u] = expf(s[u] - m_new);
      l += p[u];
    }
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) {
      const int d = lane + 32 * i;
      if (d < head_dim) {
        float a = acc[i] * correction;
#pragma unroll
        for (int u = 0; u < KEYS; u++) a += p[u] * as_float(v_cache[base[u] + d]);
        acc[i] = a;
      }
    }
    m = m_new;
  }

  __shared__ float warp_max[WARPS], warp_sum[WARPS];
  __shared__ float warp_acc[WARPS][MAX_HEAD_DIM];
  if (lane == 0) {
    warp_max[warp] = m;
    warp_sum[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < PER_LANE; i++) {
    const int d = lane + 32 * i;
    if (d < head_dim) warp_acc[warp][d] = acc[i];
  }
  __syncthreads();
  float* oh = out + ((size_t)seq * n_heads + head) * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float top = -INFINITY;
    for (int w = 0; w < WARPS; w++) top = fmaxf(top, warp_max[w]);
    float total = 0.f, value = 0.f;
    for (int w = 0; w < WARPS; w++) {
      if (warp_max[w] == -INFINITY) continue;  // a warp that saw no key
      const float c = expf(warp_max[w] - top);
      total += warp_sum[w] * c;
      value += warp_acc[w][d] * c;
    }
    oh[d] = total > 0.f ? value / total : 0.f;
  }
}

#define DECODE_ATTENTION(NAME, T)                                                                  \
  extern "C" __global__ void __launch_bounds__(WARPS * 32) NAME(                                  \
      const float* q, const T* k, const T* v, const unsigned* slots, const unsigned* offsets,     \
      float* out, int n_heads, int n_kv_heads, int head_dim, float scale, float softcap) {        \
    decode_attention<T>(q, k, v, slots, offsets, out, n_heads, n_kv_heads, head_dim, scale, softcap); \
  }

DECODE_ATTENTION(decode_attention_f32, float)
DECODE_ATTENTION(decode_attention_f16, __half)
DECODE_ATTENTION(decode_attention_bf16, __nv_bfloat16)
