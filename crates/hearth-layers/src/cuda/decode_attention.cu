// Paged attention for decode steps: one query token per sequence, every sequence of the batch in one
// launch. Block (seq, KV head, run of up to GROUP query heads, split) of 4 warps. A K/V row is read by a
// lane group of LPK lanes, each lane loading 16 bytes (NV of them for rows wider than 32 loads), so a
// warp reads 32 / LPK rows per load instruction and every load is a full 16-byte access: the earlier
// kernel read 2-4 bytes per lane per load and reached an eighth of the memory bandwidth. Each lane group
// keeps its own online softmax over the keys it visits; groups, warps and splits are merged at the end.
// K/V rows are read in place from the paged cache through the slot list, so no gather copy is made.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <math.h>

#define WARPS 4
#define MAX_HEAD_DIM 256
// Rows per lane group per step, loaded together: several loads in flight per lane hide the latency.
#define UNROLL 4
// Query heads served per block (a GQA group, or a run of one).
#define GROUP 4
// Keys per chunk handed to one split.
#define CHUNK 64

// 16 bytes of cache row as floats: 4 f32 or 8 f16/bf16.
__device__ __forceinline__ void widen(const uint4 r, float* o, const float*) {
  o[0] = __uint_as_float(r.x); o[1] = __uint_as_float(r.y); o[2] = __uint_as_float(r.z); o[3] = __uint_as_float(r.w);
}
__device__ __forceinline__ void widen(const uint4 r, float* o, const __half*) {
  const __half2* h = reinterpret_cast<const __half2*>(&r);
#pragma unroll
  for (int i = 0; i < 4; i++) { const float2 f = __half22float2(h[i]); o[2 * i] = f.x; o[2 * i + 1] = f.y; }
}
__device__ __forceinline__ void widen(const uint4 r, float* o, const __nv_bfloat16*) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&r);
#pragma unroll
  for (int i = 0; i < 4; i++) { const float2 f = __bfloat1622float2(h[i]); o[2 * i] = f.x; o[2 * i + 1] = f.y; }
}

// Folds softmax state (m2, l2, a2) into (m, l, a); a state that saw no key has m = -inf.
template <int N>
__device__ __forceinline__ void fold(float& m, float& l, float* a, float m2, float l2, const float* a2) {
  const float top = fmaxf(m, m2);
  const float c1 = m == -INFINITY ? 0.f : expf(m - top), c2 = m2 == -INFINITY ? 0.f : expf(m2 - top);
  l = l * c1 + l2 * c2;
#pragma unroll
  for (int i = 0; i < N; i++) a[i] = a[i] * c1 + a2[i] * c2;
  m = top;
}

template <typename T, int LPK, int NV>
__device__ void decode_attention(
    const float* __restrict__ q,          // [seqs, n_heads, head_dim]
    const T* __restrict__ k_cache,        // [rows, n_kv_heads * head_dim]
    const T* __restrict__ v_cache,
    const unsigned* __restrict__ slots,   // visible slots of every sequence, concatenated
    const unsigned* __restrict__ offsets, // [seqs + 1]: sequence s owns slots[offsets[s]..offsets[s+1]]
    float* __restrict__ out,              // [seqs, n_heads, head_dim], or partials when splits > 1
    int n_heads, int n_kv_heads, int head_dim, float scale, float softcap, int splits) {
  constexpr int VEC = 16 / sizeof(T);  // elements per 16-byte load
  constexpr int PER = NV * VEC;        // dims a lane holds
  constexpr int GROUPS = 32 / LPK;     // lane groups (rows in flight) per warp
  // Block (seq, y): y names a KV head and a run of up to GROUP of the query heads that share it, so
  // each K/V row is read once for all of them (GQA).
  const int group = n_heads / n_kv_heads;
  const int runs = (group + GROUP - 1) / GROUP;
  const int seq = blockIdx.x, kv_head = blockIdx.y / runs;
  const int head0 = kv_head * group + (blockIdx.y % runs) * GROUP;
  const int count = min(GROUP, kv_head * group + group - head0);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int sub = lane % LPK, lg = lane / LPK;  // lane within its group, group within the warp
  const size_t row_width = (size_t)n_kv_heads * head_dim;
  const unsigned begin = offsets[seq], end = offsets[seq + 1];
  // Split s of `splits` (blockIdx.z) takes the key chunks s, s + splits, ...: a few long sequences
  // then still fill the GPU, and the partial results are merged by decode_attention_merge.
  const int split = blockIdx.z;
  // Lane dims: load v covers dims (v * LPK + sub) * VEC .. + VEC; lanes past head_dim idle.
  bool live[NV];
#pragma unroll
  for (int v = 0; v < NV; v++) live[v] = (v * LPK + sub) * VEC < head_dim;

  float qr[GROUP][PER], acc[GROUP][PER], m[GROUP], l[GROUP];
#pragma unroll
  for (int g = 0; g < GROUP; g++) {
    const float* qh = q + ((size_t)seq * n_heads + head0 + min(g, count - 1)) * head_dim;
#pragma unroll
    for (int v = 0; v < NV; v++)
#pragma unroll
      for (int e = 0; e < VEC; e++) {
        const int d = (v * LPK + sub) * VEC + e;
        qr[g][v * VEC + e] = live[v] ? qh[d] : 0.f;
        acc[g][v * VEC + e] = 0.f;
      }
    m[g] = -INFINITY;
    l[g] = 0.f;
  }
  // Step u of a warp's iteration reads rows w0 + u * stride + (its lane groups); the loop bound is the
  // same for the whole warp, since the shuffles below need every lane.
  const unsigned stride = WARPS * GROUPS;
  for (unsigned c0 = begin + split * CHUNK; c0 < end; c0 += splits * CHUNK) {
    const unsigned cend = min(c0 + CHUNK, end);
    for (unsigned w0 = c0 + warp * GROUPS; w0 < cend; w0 += stride * UNROLL) {
      uint4 kraw[UNROLL][NV], vraw[UNROLL][NV];
#pragma unroll
      for (int u = 0; u < UNROLL; u++) {
        const unsigned key = w0 + u * stride + lg;
        const unsigned j = key < cend ? key : w0;  // past the end: reload row w0, masked below
        const size_t base = (size_t)slots[j] * row_width + (size_t)kv_head * head_dim;
#pragma unroll
        for (int v = 0; v < NV; v++) {
          const size_t at = base + (v * LPK + sub) * VEC;
          kraw[u][v] = live[v] ? __ldg(reinterpret_cast<const uint4*>(k_cache + at)) : make_uint4(0, 0, 0, 0);
          vraw[u][v] = live[v] ? __ldg(reinterpret_cast<const uint4*>(v_cache + at)) : make_uint4(0, 0, 0, 0);
        }
      }
      float s[UNROLL][GROUP];
#pragma unroll
      for (int u = 0; u < UNROLL; u++) {
        float kf[PER];
#pragma unroll
        for (int v = 0; v < NV; v++) widen(kraw[u][v], kf + v * VEC, k_cache);
#pragma unroll
        for (int g = 0; g < GROUP; g++) {
          float d = 0.f;
#pragma unroll
          for (int i = 0; i < PER; i++) d += qr[g][i] * kf[i];
#pragma unroll
          for (int o = LPK / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffff, d, o);
          d *= scale;
          if (softcap > 0.f) d = softcap * tanhf(d / softcap);
          s[u][g] = w0 + u * stride + lg < cend ? d : -INFINITY;
        }
      }
#pragma unroll
      for (int g = 0; g < GROUP; g++) {
        float m_new = m[g];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) m_new = fmaxf(m_new, s[u][g]);
        if (m_new == -INFINITY) continue;  // this group saw no key yet
        const float correction = expf(m[g] - m_new);
        l[g] *= correction;
#pragma unroll
        for (int i = 0; i < PER; i++) acc[g][i] *= correction;
        m[g] = m_new;
#pragma unroll
        for (int u = 0; u < UNROLL; u++) s[u][g] = expf(s[u][g] - m_new);  // now the weight p
      }
#pragma unroll
      for (int u = 0; u < UNROLL; u++) {
        float vf[PER];
#pragma unroll
        for (int v = 0; v < NV; v++) widen(vraw[u][v], vf + v * VEC, v_cache);
#pragma unroll
        for (int g = 0; g < GROUP; g++) {
          if (m[g] == -INFINITY) continue;
          const float p = s[u][g];
          l[g] += p;
#pragma unroll
          for (int i = 0; i < PER; i++) acc[g][i] += p * vf[i];
        }
      }
    }
  }
  // Merge the warp's lane groups: afterwards the first group's lanes hold the warp's state.
#pragma unroll
  for (int o = LPK; o < 32; o <<= 1) {
#pragma unroll
    for (int g = 0; g < GROUP; g++) {
      float a2[PER];
#pragma unroll
      for (int i = 0; i < PER; i++) a2[i] = __shfl_xor_sync(0xffffffff, acc[g][i], o);
      const float m2 = __shfl_xor_sync(0xffffffff, m[g], o), l2 = __shfl_xor_sync(0xffffffff, l[g], o);
      fold<PER>(m[g], l[g], acc[g], m2, l2, a2);
    }
  }

  __shared__ float warp_max[WARPS][GROUP], warp_sum[WARPS][GROUP];
  __shared__ float warp_acc[WARPS][GROUP][MAX_HEAD_DIM];
  if (lg == 0) {
#pragma unroll
    for (int g = 0; g < GROUP; g++) {
      if (sub == 0) {
        warp_max[warp][g] = m[g];
        warp_sum[warp][g] = l[g];
      }
#pragma unroll
      for (int v = 0; v < NV; v++)
#pragma unroll
        for (int e = 0; e < VEC; e++)
          if (live[v]) warp_acc[warp][g][(v * LPK + sub) * VEC + e] = acc[g][v * VEC + e];
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

// One entry point per cache type and lane layout: LPK lanes of NV 16-byte loads per row (the host
// picks the narrowest that covers head_dim; see decode_attention_layout in mod.rs).
#define DECODE_ATTENTION(NAME, T, LPK, NV)                                                         \
  extern "C" __global__ void __launch_bounds__(WARPS * 32) NAME(                                  \
      const float* q, const T* k, const T* v, const unsigned* slots, const unsigned* offsets,     \
      float* out, int n_heads, int n_kv_heads, int head_dim, float scale, float softcap, int splits) { \
    decode_attention<T, LPK, NV>(q, k, v, slots, offsets, out, n_heads, n_kv_heads, head_dim, scale, softcap, splits); \
  }
#define DECODE_ATTENTION_LAYOUTS(SUFFIX, T)                  \
  DECODE_ATTENTION(decode_attention_##SUFFIX##_4x1, T, 4, 1)   \
  DECODE_ATTENTION(decode_attention_##SUFFIX##_8x1, T, 8, 1)   \
  DECODE_ATTENTION(decode_attention_##SUFFIX##_16x1, T, 16, 1) \
  DECODE_ATTENTION(decode_attention_##SUFFIX##_32x1, T, 32, 1) \
  DECODE_ATTENTION(decode_attention_##SUFFIX##_32x2, T, 32, 2)

DECODE_ATTENTION_LAYOUTS(f32, float)
DECODE_ATTENTION_LAYOUTS(f16, __half)
DECODE_ATTENTION_LAYOUTS(bf16, __nv_bfloat16)
