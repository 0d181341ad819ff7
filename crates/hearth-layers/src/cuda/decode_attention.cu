// Paged attention for decode steps: one query token per sequence, every sequence of the batch in one
// launch. Block (seq, KV head, run of up to GROUP query heads, split) of 4 warps. A K/V row is read by a
// lane group of LPK lanes, each lane copying 16 bytes (NV pieces for rows wider than 32 of them) into
// shared memory with cp.async, STAGES steps ahead of the arithmetic: every access is a full 16-byte one
// (the first kernel read 2-4 bytes per lane and reached an eighth of the memory bandwidth), and rows in
// flight hold no registers, so 4 blocks still fit an SM. Each lane group
// keeps its own online softmax over the keys it visits; groups, warps and splits are merged at the end.
// K/V rows are read in place from the paged cache through the slot list, so no gather copy is made.
#include <math.h>
#include "convert.cuh"

#define WARPS 4
#define MAX_HEAD_DIM 256
// Rows per lane group per step, copied together; STAGES steps of them are in flight per warp.
#define UNROLL 4
#define STAGES 2
// Query heads served per block (a GQA group, or a run of one).
#define GROUP 4
// Keys per chunk handed to one split.
#define CHUNK 64

// Writes result element i in the output's type: OUT_F32 0, OUT_F16 1, OUT_BF16 2 (the bf16/f16 of the
// matmul that reads the result next, rounded as a cast would round it).
__device__ __forceinline__ void store_out(void* out, size_t i, float x, int kind) {
  if (kind == 2) put(reinterpret_cast<__nv_bfloat16*>(out) + i, x);
  else if (kind == 1) put(reinterpret_cast<__half*>(out) + i, x);
  else put(reinterpret_cast<float*>(out) + i, x);
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

// Moves (chunk c0, warp step w0) to the next step with keys in it: past the chunk's end (or the
// sequence's), the split's next chunk; c0 >= end when none is left.
__device__ __forceinline__ void next_step(unsigned& c0, unsigned& w0, unsigned end, unsigned first, unsigned chunk_step) {
  while (c0 < end && w0 >= min(c0 + CHUNK, end)) {
    c0 += chunk_step;
    w0 = c0 + first;
  }
}

// The slot ids of a lane group's UNROLL keys at step w0; keys past the chunk reload key w0's slot
// (their scores are masked).
template <int UNROLL_>
__device__ __forceinline__ void load_slots(unsigned (&slot)[UNROLL_], const unsigned* __restrict__ slots, unsigned c0, unsigned w0,
                                           unsigned end, unsigned stride, int lg) {
  const unsigned cend = min(c0 + CHUNK, end);
#pragma unroll
  for (int u = 0; u < UNROLL_; u++) {
    const unsigned key = w0 + u * stride + lg;
    slot[u] = __ldg(slots + (key < cend ? key : w0));
  }
}

// Copies 16 bytes from global to shared memory without passing through registers (zero-filled when
// `pred` is false); the copy lands once a cp.async.wait_group covering it returns.
__device__ __forceinline__ void copy_async16(void* dst, const void* src, bool pred) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(pred ? 16 : 0));
}
__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void copy_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Starts the copies of a lane's part of a step's K and V rows into its stage buffers (laid out
// [UN][NV][32 lanes] of 16 bytes, so each lane reads back what it copied, without bank conflicts).
template <typename T, int LPK, int NV, int VEC, int UN>
__device__ __forceinline__ void copy_step(uint4* kbuf, uint4* vbuf, const T* __restrict__ k_cache, const T* __restrict__ v_cache,
                                          const unsigned (&slot)[UN], size_t row_width, size_t head_off, int sub, int lane,
                                          const bool (&live)[NV]) {
#pragma unroll
  for (int u = 0; u < UN; u++) {
    const size_t base = (size_t)slot[u] * row_width + head_off;
#pragma unroll
    for (int v = 0; v < NV; v++) {
      const size_t at = live[v] ? base + (v * LPK + sub) * VEC : base;
      copy_async16(kbuf + (u * NV + v) * 32 + lane, k_cache + at, live[v]);
      copy_async16(vbuf + (u * NV + v) * 32 + lane, v_cache + at, live[v]);
    }
  }
}

template <typename T, int LPK, int NV>
__device__ void decode_attention(
    const float* __restrict__ q,          // [seqs, n_heads, head_dim]
    const T* __restrict__ k_cache,        // [rows, n_kv_heads * head_dim]
    const T* __restrict__ v_cache,
    const unsigned* __restrict__ slots,   // visible slots of every sequence, concatenated
    const unsigned* __restrict__ offsets, // [seqs + 1]: sequence s owns slots[offsets[s]..offsets[s+1]]
    void* __restrict__ out,               // [seqs, n_heads, head_dim] of out_kind, or f32 partials when splits > 1
    int n_heads, int n_kv_heads, int head_dim, float scale, float softcap, int splits, int out_kind) {
  constexpr int VEC = 16 / sizeof(T);  // elements per 16-byte load
  constexpr int PER = NV * VEC;        // dims a lane holds
  constexpr int GROUPS = 32 / LPK;     // lane groups (rows in flight) per warp
  constexpr int UN = NV == 1 ? UNROLL : UNROLL / 2;  // rows per lane group and step (wide rows: fewer)
  // Stage buffers while the keys are read, then the warps' partial sums: whichever is larger.
  constexpr int STAGE_BYTES = WARPS * 2 * STAGES * UN * NV * 32 * 16, ACC_BYTES = WARPS * GROUP * MAX_HEAD_DIM * 4;
  __shared__ __align__(16) unsigned char smem[STAGE_BYTES > ACC_BYTES ? STAGE_BYTES : ACC_BYTES];
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
  // same for the whole warp, since the shuffles below need every lane. Rows reach shared memory by
  // cp.async, STAGES steps ahead of the one being computed, so a warp keeps its next steps' rows in
  // flight without holding them in registers; the slot ids of the step after those are loaded one
  // iteration early, so no copy waits on its slot id's load.
  const unsigned stride = WARPS * GROUPS, first = warp * GROUPS, chunk_step = splits * CHUNK;
  const size_t head_off = (size_t)kv_head * head_dim;
  constexpr int STEP_VECS = UN * NV * 32;  // 16-byte vectors of one warp's step, K or V
  uint4* kbuf = reinterpret_cast<uint4*>(smem) + warp * 2 * STAGES * STEP_VECS;
  uint4* vbuf = kbuf + STAGES * STEP_VECS;
  unsigned c0 = begin + split * CHUNK, w0 = c0 + first;  // the step being computed
  next_step(c0, w0, end, first, chunk_step);
  unsigned ic0 = c0, iw0 = w0;  // the next step to copy
  unsigned slot[UN];
#pragma unroll
  for (int st = 0; st < STAGES; st++) {
    if (ic0 < end) {
      load_slots(slot, slots, ic0, iw0, end, stride, lg);
      copy_step<T, LPK, NV, VEC, UN>(kbuf + st * STEP_VECS, vbuf + st * STEP_VECS, k_cache, v_cache, slot, row_width, head_off, sub, lane, live);
      iw0 += stride * UN;
      next_step(ic0, iw0, end, first, chunk_step);
    }
    copy_async_commit();  // one group per stage, empty or not, so the waits below count alike
  }
  if (ic0 < end) load_slots(slot, slots, ic0, iw0, end, stride, lg);
  int stage = 0;
  while (c0 < end) {
    const unsigned cend = min(c0 + CHUNK, end), at_w0 = w0;
    const uint4* kst = kbuf + stage * STEP_VECS;
    const uint4* vst = vbuf + stage * STEP_VECS;
    copy_async_wait<STAGES - 1>();  // this step's group has landed
    float s[UN][GROUP];
#pragma unroll
    for (int u = 0; u < UN; u++) {
      float kf[PER];
#pragma unroll
      for (int v = 0; v < NV; v++) widen(kst[(u * NV + v) * 32 + lane], kf + v * VEC, k_cache);
#pragma unroll
      for (int g = 0; g < GROUP; g++) {
        float d = 0.f;
#pragma unroll
        for (int i = 0; i < PER; i++) d += qr[g][i] * kf[i];
#pragma unroll
        for (int o = LPK / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffff, d, o);
        d *= scale;
        if (softcap > 0.f) d = softcap * tanhf(d / softcap);
        s[u][g] = at_w0 + u * stride + lg < cend ? d : -INFINITY;
      }
    }
#pragma unroll
    for (int g = 0; g < GROUP; g++) {
      float m_new = m[g];
#pragma unroll
      for (int u = 0; u < UN; u++) m_new = fmaxf(m_new, s[u][g]);
      if (m_new == -INFINITY) continue;  // this group saw no key yet
      const float correction = expf(m[g] - m_new);
      l[g] *= correction;
#pragma unroll
      for (int i = 0; i < PER; i++) acc[g][i] *= correction;
      m[g] = m_new;
#pragma unroll
      for (int u = 0; u < UN; u++) s[u][g] = expf(s[u][g] - m_new);  // now the weight p
    }
#pragma unroll
    for (int u = 0; u < UN; u++) {
      float vf[PER];
#pragma unroll
      for (int v = 0; v < NV; v++) widen(vst[(u * NV + v) * 32 + lane], vf + v * VEC, v_cache);
#pragma unroll
      for (int g = 0; g < GROUP; g++) {
        if (m[g] == -INFINITY) continue;
        const float p = s[u][g];
        l[g] += p;
#pragma unroll
        for (int i = 0; i < PER; i++) acc[g][i] += p * vf[i];
      }
    }
    // The stage just read takes the step STAGES ahead (each lane overwrites only what it read).
    if (ic0 < end) {
      copy_step<T, LPK, NV, VEC, UN>(kbuf + stage * STEP_VECS, vbuf + stage * STEP_VECS, k_cache, v_cache, slot, row_width, head_off, sub, lane, live);
      iw0 += stride * UN;
      next_step(ic0, iw0, end, first, chunk_step);
      if (ic0 < end) load_slots(slot, slots, ic0, iw0, end, stride, lg);
    }
    copy_async_commit();
    stage = stage + 1 == STAGES ? 0 : stage + 1;
    w0 += stride * UN;
    next_step(c0, w0, end, first, chunk_step);
  }
  copy_async_wait<0>();
  __syncthreads();  // the stage buffers become the warps' merge space below
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
  float (*warp_acc)[GROUP][MAX_HEAD_DIM] = reinterpret_cast<float (*)[GROUP][MAX_HEAD_DIM]>(smem);
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
      store_out(out, row * head_dim + d, total > 0.f ? value / total : 0.f, out_kind);
    } else {
      // Partials: [rows][splits] of (max, sum, head_dim unnormalised values).
      float* part = reinterpret_cast<float*>(out) + (row * splits + split) * (head_dim + 2);
      if (d == 0) {
        part[0] = top;
        part[1] = total;
      }
      part[2 + d] = value;
    }
  }
}

// Merges the splits' partial softmax results of one (sequence, head) row: block per row, thread per dim.
extern "C" __global__ void decode_attention_merge(const float* __restrict__ parts, void* __restrict__ out, int head_dim, int splits,
                                                  int out_kind) {
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
    store_out(out, row * head_dim + d, total > 0.f ? value / total : 0.f, out_kind);
  }
}

// One entry point per cache type and lane layout: LPK lanes of NV 16-byte loads per row (the host
// picks the narrowest that covers head_dim; see decode_attention_layout in mod.rs).
// Held to 128 registers, so 4 blocks fit an SM (150 let only 3, and a 64-sequence batch's 512 blocks
// then ran in 1.3 waves).
#define DECODE_ATTENTION(NAME, T, LPK, NV)                                                         \
  extern "C" __global__ void __launch_bounds__(WARPS * 32, 4) NAME(                 \
      const float* q, const T* k, const T* v, const unsigned* slots, const unsigned* offsets,     \
      void* out, int n_heads, int n_kv_heads, int head_dim, float scale, float softcap, int splits,  \
      int out_kind) {                                                                              \
    decode_attention<T, LPK, NV>(q, k, v, slots, offsets, out, n_heads, n_kv_heads, head_dim, scale, softcap, splits, out_kind); \
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
