// Paged attention for decode steps: one query token per sequence, every sequence of the batch in one
// launch. Block (seq, KV head, run of up to GROUP query heads) of 4 warps; each warp walks a strided subset of the sequence's visible keys
// with an online softmax, and the warps' partial results are merged at the end. K/V rows are read in
// place from the paged cache through the slot list, so no gather copy is made.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <math.h>

#define WARPS 4
#define MAX_HEAD_DIM 256
#define PER_LANE (MAX_HEAD_DIM / 32)
#define KEYS 4
// Query heads served per block (a GQA group, or a run of one).
#define GROUP 4
// Keys per chunk handed to one split (a multiple of WARPS * KEYS).
#define CHUNK 64

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
    float* __restrict__ out,              // [seqs, n_heads, head_dim], or partials when splits > 1
    int n_heads, int n_kv_heads, int head_dim, float scale, float softcap, int splits) {
  // Block (seq, y): y names a KV head and a run of up to GROUP of the query heads that share it, so
  // each K/V row is read once for all of them (GQA); reading it once per query head multiplied the
  // cache traffic by the group size and spilled a 64-sequence batch out of L2.
  const int group = n_heads / n_kv_heads;
  const int runs = (group + GROUP - 1) / GROUP;
  const int seq = blockIdx.x, kv_head = blockIdx.y / runs;
  const int head0 = kv_head * group + (blockIdx.y % runs) * GROUP;
  const int count = min(GROUP, kv_head * group + group - head0);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const size_t row_width = (size_t)n_kv_heads * head_dim;
  const unsigned begin = offsets[seq], end = offsets[seq + 1];
  // Split s of `splits` (blockIdx.z) takes the key chunks s, s + splits, ...: a few long sequences
  // then still fill the GPU, and the partial results are merged by decode_attention_merge.
  const int split = blockIdx.z;

  float qr[GROUP][PER_LANE], acc[GROUP][PER_LANE], m[GROUP], l[GROUP];
#pragma unroll
  for (int g = 0; g < GROUP; g++) {
    const float* qh = q + ((size_t)seq * n_heads + head0 + min(g, count - 1)) * head_dim;
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) {
      const int d = lane + 32 * i;
      qr[g][i] = d < head_dim ? qh[d] : 0.f;
      acc[g][i] = 0.f;
    }
    m[g] = -INFINITY;
    l[g] = 0.f;
  }
  // KEYS keys per warp step, their loads issued together: a warp walking one key at a time waits on
  // a global-load round trip per key, and decode attention is exactly that latency.
  for (unsigned c0 = begin + split * CHUNK; c0 < end; c0 += splits * CHUNK) {
  const unsigned cend = min(c0 + CHUNK, end);
  for (unsigned j0 = c0 + warp * KEYS; j0 < cend; j0 += WARPS * KEYS) {
    size_t base[KEYS];
    float s[KEYS][GROUP];
#pragma unroll
    for (int u = 0; u < KEYS; u++) {
      const unsigned j = j0 + u < cend ? j0 + u : j0;  // past the end: recompute key j0, then mask it
      base[u] = (size_t)slots[j] * row_width + (size_t)kv_head * head_dim;
#pragma unroll
      for (int g = 0; g < GROUP; g++) s[u][g] = 0.f;
    }
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) {
      const int d = lane + 32 * i;
      if (d < head_dim) {
#pragma unroll
        for (int u = 0; u < KEYS; u++) {
          const float k = as_float(k_cache[base[u] + d]);
#pragma unroll
          for (int g = 0; g < GROUP; g++) s[u][g] += qr[g][i] * k;
        }
      }
    }
    float p[KEYS][GROUP], correction[GROUP];
#pragma unroll
    for (int g = 0; g < GROUP; g++) {
      float m_new = m[g];
#pragma unroll
      for (int u = 0; u < KEYS; u++) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s[u][g] += __shfl_xor_sync(0xffffffff, s[u][g], o);
        s[u][g] *= scale;
        if (softcap > 0.f) s[u][g] = softcap * tanhf(s[u][g] / softcap);
        if (j0 + u >= cend) s[u][g] = -INFINITY;
        m_new = fmaxf(m_new, s[u][g]);
      }
      correction[g] = expf(m[g] - m_new);
      l[g] *= correction[g];
#pragma unroll
      for (int u = 0; u < KEYS; u++) {
        p[u][g] = expf(s[u][g] - m_new);
        l[g] += p[u][g];
      }
      m[g] = m_new;
    }
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) {
      const int d = lane + 32 * i;
      if (d < head_dim) {
        float a[GROUP];
#pragma unroll
        for (int g = 0; g < GROUP; g++) a[g] = acc[g][i] * correction[g];
#pragma unroll
        for (int u = 0; u < KEYS; u++) {
          const float v = as_float(v_cache[base[u] + d]);
#pragma unroll
          for (int g = 0; g < GROUP; g++) a[g] += p[u][g] * v;
        }
#pragma unroll
        for (int g = 0; g < GROUP; g++) acc[g][i] = a[g];
      }
    }
  }
  }

  __shared__ float warp_max[WARPS][GROUP], warp_sum[WARPS][GROUP];
  __shared__ float warp_acc[WARPS][GROUP][MAX_HEAD_DIM];
#pragma unroll
  for (int g = 0; g < GROUP; g++) {
    if (lane == 0) {
      warp_max[warp][g] = m[g];
      warp_sum[warp][g] = l[g];
    }
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) {
      const int d = lane + 32 * i;
      if (d < head_dim) warp_acc[warp][g][d] = acc[g][i];
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < count * head_dim; e += blockDim.x) {
    const int g = e / head_dim, d = e % head_dim;
    float top = -INFINITY;
    for (int w = 0; w < WARPS; w++) top = fmaxf(top, warp_max[w][g]);
    float total = 0.f, value = 0.f;
    for (int w = 0; w < WARPS; w++) {
      if (warp_max[w][g] == -INFINITY) continue;  // a warp that saw no key
      const float c = expf(warp_max[w][g] - top);
      total += warp_sum[w][g] * c;
      value += warp_acc[w][g][d] * c;
    }
    const size_t row = (size_t)seq * n_heads + head0 + g;
    if (splits == 1) {
      out[row * head_dim + d] = total > 0.f ? value / total : 0.f;
    } else {
      // Partials: [rows][splits] of (max, sum, head_dim unnormalised values).
      float* part = out + (row * splits + split) * (head_dim + 2);
      if (d == 0) {
        part[0] = top;
        part[1] = total;
      }
      part[2 + d] = value;
    }
  }
}

// Merges the splits' partial softmax results of one (sequence, head) row: block per row, thread per dim.
extern "C" __global__ void decode_attention_merge(const float* __restrict__ parts, float* __restrict__ out, int head_dim, int splits) {
  const size_t row = blockIdx.x;
  const float* p = parts + row * splits * (head_dim + 2);
  float top = -INFINITY;
  for (int s = 0; s < splits; s++) top = fmaxf(top, p[s * (head_dim + 2)]);
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float total = 0.f, value = 0.f;
    for (int s = 0; s < splits; s++) {
      const float* q = p + s * (head_dim + 2);
      if (q[0] == -INFINITY) continue;  // a split that saw no key
      const float c = expf(q[0] - top);
      total += q[1] * c;
      value += q[2 + d] * c;
    }
    out[row * head_dim + d] = total > 0.f ? value / total : 0.f;
  }
}

#define DECODE_ATTENTION(NAME, T)                                                                  \
  extern "C" __global__ void __launch_bounds__(WARPS * 32) NAME(                                  \
      const float* q, const T* k, const T* v, const unsigned* slots, const unsigned* offsets,     \
      float* out, int n_heads, int n_kv_heads, int head_dim, float scale, float softcap, int splits) { \
    decode_attention<T>(q, k, v, slots, offsets, out, n_heads, n_kv_heads, head_dim, scale, softcap, splits); \
  }

DECODE_ATTENTION(decode_attention_f32, float)
DECODE_ATTENTION(decode_attention_f16, __half)
DECODE_ATTENTION(decode_attention_bf16, __nv_bfloat16)
