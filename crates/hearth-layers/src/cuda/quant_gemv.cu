// y[b, n] = x[b] . w[n] for a few activation rows (decode) over k-quant weights read as stored
// (ggml's Q4_K and Q6_K super-blocks of 256 values). quantize_q8 first turns each activation row into
// 8-bit values in runs of 32 (q8.cuh: values q, scale d, d * sum q), so weight and activation bytes meet
// in __dp4a and a run costs one float multiply-add: llama.cpp's MMVQ numerics. candle's path for the same
// quantizes x once per weight and clears two buffers per call; here q/k/v share one quantized x and
// one launch, and gate/up apply SiLU x up in their one launch.
// Quantized activation rows are laid out as q8.cuh says; xq / xds below point at row 0's first value /
// run, and rows lie q8_row_bytes(k) bytes apart.
// One warp per weight row (a gate/up pair in the SwiGLU form; up to four warps for long rows); each lane
// takes a 32-value chunk of a super-block at a time (8 chunks a super-block), serving all B activation
// rows from its weight load.
#include "weights.cuh"
#include "q8.cuh"

#define QK 256
#define CHUNKS 8
#define RUNS (QK / 32)
// Warps a block: one output row each, or several sharing one (quant_gemv.rs picks how many).
#define WARPS 4

// Weight formats by the code the host passes (quant_gemv.rs).
#define FORMAT_Q4K 0
#define FORMAT_Q6K 1

// f32 rows (at `stride` floats) to the 8-bit layout of q8.cuh, one warp a run.
extern "C" __global__ void quantize_q8(const float* __restrict__ x, int8_t* __restrict__ q, int rows, int k, long long stride) {
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
  const int runs = k / 32;
  if (warp >= rows * runs) return;
  const int r = warp / runs, run = warp % runs;
  q8_store_run(x[(size_t)r * stride + run * 32 + lane], q + (size_t)r * q8_row_bytes(k), k, run);
}

// A thread's raw bytes of one 32-value chunk, loaded for several chunks before any is used, so each
// thread has that many loads in flight. Chunk i of a row lies in super-block i / CHUNKS.
template <int F> struct Chunk;

// Chunk c of a Q4_K super-block: qs bytes 32g + 16h .. +16 (g = c / 2, h = c % 2) hold values
// 64g + 16h + i in their low nibbles (sub-block 2g) and 64g + 32 + 16h + i in their high ones
// (sub-block 2g + 1); the first 16 bytes hold d, dmin and the packed scales.
template <> struct Chunk<FORMAT_Q4K> {
  struct Raw { int4 qs; uint4 head; };
  static __device__ __forceinline__ Raw load(const uint8_t* row, int i) {
    const block_q4_k* b = reinterpret_cast<const block_q4_k*>(row) + i / CHUNKS;
    const int c = i % CHUNKS;
    return {__ldg(reinterpret_cast<const int4*>(b->qs + 32 * (c >> 1) + 16 * (c & 1))), __ldg(reinterpret_cast<const uint4*>(b))};
  }
  // xq / xds: activation row 0's first value / run.
  template <int B>
  static __device__ __forceinline__ void dot(const Raw& raw, int i, const int8_t* __restrict__ xq, const float2* __restrict__ xds,
                                             int k, float* acc) {
    const int blk = i / CHUNKS, g = (i % CHUNKS) >> 1, h = i & 1;
    float s0, m0, s1, m1;
    q4k_scale_min(raw.head, 2 * g, s0, m0);
    q4k_scale_min(raw.head, 2 * g + 1, s1, m1);
    const float2 dm = __half22float2(*reinterpret_cast<const __half2*>(&raw.head.x));
    const int4 w = raw.qs;
    const int lo[4] = {w.x & 0x0F0F0F0F, w.y & 0x0F0F0F0F, w.z & 0x0F0F0F0F, w.w & 0x0F0F0F0F};
    const int hi[4] = {(w.x >> 4) & 0x0F0F0F0F, (w.y >> 4) & 0x0F0F0F0F, (w.z >> 4) & 0x0F0F0F0F, (w.w >> 4) & 0x0F0F0F0F};
#pragma unroll
    for (int r = 0; r < B; r++) {
      const int8_t* xr = xq + (size_t)r * q8_row_bytes(k) + blk * QK + 64 * g + 16 * h;
      const int4 x0 = *reinterpret_cast<const int4*>(xr);
      const int4 x1 = *reinterpret_cast<const int4*>(xr + 32);
      const int sum_lo = __dp4a(lo[3], x0.w, __dp4a(lo[2], x0.z, __dp4a(lo[1], x0.y, __dp4a(lo[0], x0.x, 0))));
      const int sum_hi = __dp4a(hi[3], x1.w, __dp4a(hi[2], x1.z, __dp4a(hi[1], x1.y, __dp4a(hi[0], x1.x, 0))));
      const float2* ds = xds + (size_t)r * (q8_row_bytes(k) / 8) + blk * RUNS + 2 * g;
      const float2 a0 = ds[0], a1 = ds[1];
      float v = dm.x * (s0 * a0.x * (float)sum_lo + s1 * a1.x * (float)sum_hi);
      // The mins weigh each sub-block's whole activation sum: once, from the chunk with h = 0.
      if (h == 0) v -= dm.y * (m0 * a0.y + m1 * a1.y);
      acc[r] += v;
    }
  }
};

// Four bytes of a 2-byte-aligned row (Q6_K's 210-byte blocks allow no wider load).
__device__ __forceinline__ int load_int_b2(const uint8_t* p) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
  return (int)((uint32_t)__ldg(h) | ((uint32_t)__ldg(h + 1) << 16));
}

// Chunk c of a Q6_K super-block: half hf = c / 4, columns l0 = 8 (c % 4) .. +8 of its four 32-value
// quarters (values 128 hf + 32 qt + l), from ql[64 hf + l] (quarters 0, 2), ql[64 hf + 32 + l] (1, 3)
// and qh[32 hf + l] (two bits per quarter); each quarter's 8 values share one scale.
template <> struct Chunk<FORMAT_Q6K> {
  struct Raw { int ql[2], ql2[2], qh[2]; int8_t sc[4]; unsigned short d; };
  static __device__ __forceinline__ Raw load(const uint8_t* row, int i) {
    const block_q6_k* b = reinterpret_cast<const block_q6_k*>(row) + i / CHUNKS;
    const int c = i % CHUNKS, hf = c >> 2, l0 = 8 * (c & 3);
    Raw r;
#pragma unroll
    for (int j = 0; j < 2; j++) {
      r.ql[j] = load_int_b2(b->ql + 64 * hf + l0 + 4 * j);
      r.ql2[j] = load_int_b2(b->ql + 64 * hf + 32 + l0 + 4 * j);
      r.qh[j] = load_int_b2(b->qh + 32 * hf + l0 + 4 * j);
    }
#pragma unroll
    for (int qt = 0; qt < 4; qt++) r.sc[qt] = __ldg(b->scales + 8 * hf + 2 * qt + l0 / 16);
    r.d = __ldg(reinterpret_cast<const unsigned short*>(&b->d));
    return r;
  }
  template <int B>
  static __device__ __forceinline__ void dot(const Raw& raw, int i, const int8_t* __restrict__ xq, const float2* __restrict__ xds,
                                             int k, float* acc) {
    const int blk = i / CHUNKS, hf = (i % CHUNKS) >> 2, l0 = 8 * (i & 3);
    int v[4][2];
#pragma unroll
    for (int j = 0; j < 2; j++) {
      const int a = raw.ql[j], a2 = raw.ql2[j], hb = raw.qh[j];
      v[0][j] = __vsub4((a & 0x0F0F0F0F) | ((hb << 4) & 0x30303030), 0x20202020);
      v[1][j] = __vsub4((a2 & 0x0F0F0F0F) | ((hb << 2) & 0x30303030), 0x20202020);
      v[2][j] = __vsub4(((a >> 4) & 0x0F0F0F0F) | (hb & 0x30303030), 0x20202020);
      v[3][j] = __vsub4(((a2 >> 4) & 0x0F0F0F0F) | ((hb >> 2) & 0x30303030), 0x20202020);
    }
    const float d = __half2float(__ushort_as_half(raw.d));
#pragma unroll
    for (int r = 0; r < B; r++) {
      float t = 0.f;
#pragma unroll
      for (int qt = 0; qt < 4; qt++) {
        const int2 xv = *reinterpret_cast<const int2*>(xq + (size_t)r * q8_row_bytes(k) + blk * QK + 128 * hf + 32 * qt + l0);
        const int s = __dp4a(v[qt][1], xv.y, __dp4a(v[qt][0], xv.x, 0));
        t += (float)raw.sc[qt] * xds[(size_t)r * (q8_row_bytes(k) / 8) + blk * RUNS + 4 * hf + qt].x * (float)s;
      }
      acc[r] += d * t;
    }
  }
};

// Chunks a thread loads before using any.
#define INFLIGHT 2

// One thread's chunks first, first + step, ... of a row (format F, rows of `k` values) dotted with the B
// activation rows, added to acc.
template <int F, int B>
__device__ __forceinline__ void chunk_dots(const uint8_t* __restrict__ row, int first, int step, const int8_t* __restrict__ xq,
                                           const float2* __restrict__ xds, int k, float* acc) {
  const int chunks = k / QK * CHUNKS;
  int i = first;
  for (; i + (INFLIGHT - 1) * step < chunks; i += INFLIGHT * step) {
    typename Chunk<F>::Raw raw[INFLIGHT];
#pragma unroll
    for (int u = 0; u < INFLIGHT; u++) raw[u] = Chunk<F>::load(row, i + u * step);
#pragma unroll
    for (int u = 0; u < INFLIGHT; u++) Chunk<F>::template dot<B>(raw[u], i + u * step, xq, xds, k, acc);
  }
  for (; i < chunks; i += step) Chunk<F>::template dot<B>(Chunk<F>::load(row, i), i, xq, xds, k, acc);
}

// A gate row and an up row in one loop, so each thread has both rows' loads in flight at once.
template <int FG, int FU, int B>
__device__ __forceinline__ void chunk_dots2(const uint8_t* __restrict__ gate, const uint8_t* __restrict__ up, int first, int step,
                                            const int8_t* __restrict__ xq, const float2* __restrict__ xds, int k, float* g, float* u) {
  const int chunks = k / QK * CHUNKS;
  int i = first;
  for (; i + (INFLIGHT - 1) * step < chunks; i += INFLIGHT * step) {
    typename Chunk<FG>::Raw rg[INFLIGHT];
    typename Chunk<FU>::Raw ru[INFLIGHT];
#pragma unroll
    for (int t = 0; t < INFLIGHT; t++) { rg[t] = Chunk<FG>::load(gate, i + t * step); ru[t] = Chunk<FU>::load(up, i + t * step); }
#pragma unroll
    for (int t = 0; t < INFLIGHT; t++) {
      Chunk<FG>::template dot<B>(rg[t], i + t * step, xq, xds, k, g);
      Chunk<FU>::template dot<B>(ru[t], i + t * step, xq, xds, k, u);
    }
  }
  for (; i < chunks; i += step) {
    Chunk<FG>::template dot<B>(Chunk<FG>::load(gate, i), i, xq, xds, k, g);
    Chunk<FU>::template dot<B>(Chunk<FU>::load(up, i), i, xq, xds, k, u);
  }
}

// Row n of a weight of format f with k values a row.
__device__ __forceinline__ const uint8_t* weight_row(const uint8_t* w, int format, int n, int k) {
  return w + (size_t)n * (k / QK) * (format == FORMAT_Q4K ? sizeof(block_q4_k) : sizeof(block_q6_k));
}

// Sums acc (N values) over the warp, then over the `wpr` warps of the block that share a row (in a fixed
// order); true for the one thread that then holds the row's totals. Every thread of the block calls it.
template <int N>
__device__ __forceinline__ bool reduce_row(float* acc, int wpr) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int r = 0; r < N; r++)
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc[r] += __shfl_xor_sync(0xffffffff, acc[r], off);
  if (wpr == 1) return lane == 0;
  __shared__ float part[WARPS][N];
  if (lane == 0)
#pragma unroll
    for (int r = 0; r < N; r++) part[warp][r] = acc[r];
  __syncthreads();
  if (lane != 0 || warp % wpr != 0) return false;
#pragma unroll
  for (int r = 0; r < N; r++) {
    float s = 0.f;
    for (int w = 0; w < wpr; w++) s += part[warp + w][r];
    acc[r] = s;
  }
  return true;
}

// Up to three weights ([n0|n1|n2, k], each of its own format) over one x; y holds [B, n0] then
// [B, n1] then [B, n2]. `wpr` warps (1, 2 or 4, of the block's WARPS) share each output row: long rows
// (the down projection's) would otherwise leave too few warps to keep enough loads in flight.
template <int B>
__device__ void quant_gemv(const int8_t* x, const uint8_t* w0, const uint8_t* w1, const uint8_t* w2,
                           int f0, int f1, int f2, float* __restrict__ y, int n0, int n1, int n2, int k, int wpr) {
  const int8_t* xq = x;
  const float2* xds = reinterpret_cast<const float2*>(x + k);
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  int row = warp / wpr;
  const int first = (warp % wpr) * 32 + (threadIdx.x & 31);
  const uint8_t* w = w0;
  int n = n0, format = f0;
  if (row >= n0) { row -= n0; w = w1; n = n1; format = f1; y += (size_t)B * n0;
    if (row >= n1) { row -= n1; w = w2; n = n2; format = f2; y += (size_t)B * n1; } }
  const bool valid = row < n;
  float acc[B];
#pragma unroll
  for (int b = 0; b < B; b++) acc[b] = 0.f;
  if (valid) {
    const uint8_t* wr = weight_row(w, format, row, k);
    if (format == FORMAT_Q4K) chunk_dots<FORMAT_Q4K, B>(wr, first, 32 * wpr, xq, xds, k, acc);
    else chunk_dots<FORMAT_Q6K, B>(wr, first, 32 * wpr, xq, xds, k, acc);
  }
  if (reduce_row<B>(acc, wpr) && valid)
#pragma unroll
    for (int b = 0; b < B; b++) y[(size_t)b * n + row] = acc[b];
}

// y[b, n] = silu(x . gate[n]) * (x . up[n]), silu(g) = g / (1 + exp(-g)) as candle computes it.
template <int B>
__device__ void quant_swiglu(const int8_t* x, const uint8_t* gate, const uint8_t* up, int fg, int fu,
                             float* __restrict__ y, int n, int k, int wpr) {
  const int8_t* xq = x;
  const float2* xds = reinterpret_cast<const float2*>(x + k);
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int row = warp / wpr, first = (warp % wpr) * 32 + (threadIdx.x & 31), step = 32 * wpr;
  const bool valid = row < n;
  float acc[2 * B];  // gate's B sums, then up's
#pragma unroll
  for (int b = 0; b < 2 * B; b++) acc[b] = 0.f;
  if (valid) {
    const uint8_t *g = weight_row(gate, fg, row, k), *u = weight_row(up, fu, row, k);
    if (fg == FORMAT_Q4K && fu == FORMAT_Q4K) chunk_dots2<FORMAT_Q4K, FORMAT_Q4K, B>(g, u, first, step, xq, xds, k, acc, acc + B);
    else if (fg == FORMAT_Q4K) chunk_dots2<FORMAT_Q4K, FORMAT_Q6K, B>(g, u, first, step, xq, xds, k, acc, acc + B);
    else if (fu == FORMAT_Q4K) chunk_dots2<FORMAT_Q6K, FORMAT_Q4K, B>(g, u, first, step, xq, xds, k, acc, acc + B);
    else chunk_dots2<FORMAT_Q6K, FORMAT_Q6K, B>(g, u, first, step, xq, xds, k, acc, acc + B);
  }
  if (reduce_row<2 * B>(acc, wpr) && valid)
#pragma unroll
    for (int b = 0; b < B; b++) y[(size_t)b * n + row] = acc[b] / (1.f + expf(-acc[b])) * acc[B + b];
}

#define QUANT_GEMV(B)                                                                                          \
  extern "C" __global__ void __launch_bounds__(WARPS * 32) quant_gemv_##B(const int8_t* x,                      \
      const uint8_t* w0, const uint8_t* w1, const uint8_t* w2, int f0, int f1, int f2, float* y, int n0, int n1, \
      int n2, int k, int wpr) {                                                                                \
    quant_gemv<B>(x, w0, w1, w2, f0, f1, f2, y, n0, n1, n2, k, wpr);                                     \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(WARPS * 32) quant_swiglu_##B(const int8_t* x,                    \
      const uint8_t* gate, const uint8_t* up, int fg, int fu, float* y, int n, int k, int wpr) {                \
    quant_swiglu<B>(x, gate, up, fg, fu, y, n, k, wpr);                                                  \
  }

QUANT_GEMV(1) QUANT_GEMV(2) QUANT_GEMV(3) QUANT_GEMV(4) QUANT_GEMV(5) QUANT_GEMV(6) QUANT_GEMV(7) QUANT_GEMV(8)
