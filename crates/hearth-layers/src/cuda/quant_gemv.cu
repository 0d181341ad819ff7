// y[b, n] = x[b] . w[n] for a few activation rows (decode) over k-quant weights read as stored
// (ggml's Q4_K and Q6_K super-blocks of 256 values). quantize_q8 first turns each activation row into
// 8-bit values in runs of 32 (value q, scale d, and d * sum q), so weight and activation bytes meet in
// __dp4a and a run costs one float multiply-add: llama.cpp's MMVQ numerics. candle's path for the same
// quantizes x once per weight and clears two buffers per call; here q/k/v share one quantized x and
// one launch, and gate/up apply SiLU x up in their one launch.
// A quantized activation row of k values: q int8 [k], ds float2 [k / 32] = (d, d * sum q).
// One warp per weight row (a gate/up pair in the SwiGLU form); each lane takes a 32-value chunk of a
// super-block at a time (8 chunks a super-block), serving all B activation rows from its weight load.
#include "weights.cuh"

#define QK 256
#define CHUNKS 8
#define RUNS (QK / 32)

// Weight formats by the code the host passes (quant_gemv.rs).
#define FORMAT_Q4K 0
#define FORMAT_Q6K 1

// 32-value runs to 8 bits each, one warp a run. A run holding NaN/inf gets a NaN scale, so the products
// that read it are NaN too (the host's checks on the logits see them) rather than silently finite.
extern "C" __global__ void quantize_q8(const float* __restrict__ x, int8_t* __restrict__ q, float2* __restrict__ ds,
                                       int rows, int k, long long stride) {
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
  const int runs = k / 32;
  if (warp >= rows * runs) return;
  const int r = warp / runs, run = warp % runs;
  const float v = x[(size_t)r * stride + run * 32 + lane];
  float amax = fabsf(v);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffff, amax, off));
  const bool finite = __all_sync(0xffffffff, isfinite(v));
  const float d = finite ? amax / 127.f : __int_as_float(0x7fc00000);
  const int qi = (finite && amax > 0.f) ? __float2int_rn(v / d) : 0;
  int sum = qi;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffff, sum, off);
  q[(size_t)r * k + run * 32 + lane] = (int8_t)qi;
  if (lane == 0) ds[(size_t)r * runs + run] = make_float2(d, d * (float)sum);
}

// Chunk c of a Q4_K super-block: qs bytes 32g + 16h .. +16 (g = c / 2, h = c % 2) hold values
// 64g + 16h + i in their low nibbles (sub-block 2g) and 64g + 32 + 16h + i in their high ones
// (sub-block 2g + 1). xq / xds point at the super-block's first value / run of activation row 0.
template <int B>
__device__ __forceinline__ void dot_q4k(const block_q4_k* __restrict__ b, int c, const int8_t* __restrict__ xq,
                                        const float2* __restrict__ xds, int k, float* acc) {
  const int g = c >> 1, h = c & 1;
  const int4 w = __ldg(reinterpret_cast<const int4*>(b->qs + 32 * g + 16 * h));
  const uint4 head = __ldg(reinterpret_cast<const uint4*>(b));
  float s0, m0, s1, m1;
  q4k_scale_min(head, 2 * g, s0, m0);
  q4k_scale_min(head, 2 * g + 1, s1, m1);
  const float2 dm = __half22float2(*reinterpret_cast<const __half2*>(&head.x));
  const int lo[4] = {w.x & 0x0F0F0F0F, w.y & 0x0F0F0F0F, w.z & 0x0F0F0F0F, w.w & 0x0F0F0F0F};
  const int hi[4] = {(w.x >> 4) & 0x0F0F0F0F, (w.y >> 4) & 0x0F0F0F0F, (w.z >> 4) & 0x0F0F0F0F, (w.w >> 4) & 0x0F0F0F0F};
#pragma unroll
  for (int r = 0; r < B; r++) {
    const int8_t* xr = xq + (size_t)r * k + 64 * g + 16 * h;
    const int4 x0 = *reinterpret_cast<const int4*>(xr);
    const int4 x1 = *reinterpret_cast<const int4*>(xr + 32);
    const int sum_lo = __dp4a(lo[3], x0.w, __dp4a(lo[2], x0.z, __dp4a(lo[1], x0.y, __dp4a(lo[0], x0.x, 0))));
    const int sum_hi = __dp4a(hi[3], x1.w, __dp4a(hi[2], x1.z, __dp4a(hi[1], x1.y, __dp4a(hi[0], x1.x, 0))));
    const float2 a0 = xds[(size_t)r * (k / 32) + 2 * g], a1 = xds[(size_t)r * (k / 32) + 2 * g + 1];
    float v = dm.x * (s0 * a0.x * (float)sum_lo + s1 * a1.x * (float)sum_hi);
    // The mins weigh each sub-block's whole activation sum: once, from the chunk with h = 0.
    if (h == 0) v -= dm.y * (m0 * a0.y + m1 * a1.y);
    acc[r] += v;
  }
}

// Four bytes of a 2-byte-aligned row (Q6_K's 210-byte blocks allow no wider load).
__device__ __forceinline__ int load_int_b2(const uint8_t* p) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
  return (int)((uint32_t)__ldg(h) | ((uint32_t)__ldg(h + 1) << 16));
}

// Chunk c of a Q6_K super-block: half hf = c / 4, columns l0 = 8 (c % 4) .. +8 of its four 32-value
// quarters (values 128 hf + 32 qt + l), from ql[64 hf + l] (quarters 0, 2), ql[64 hf + 32 + l] (1, 3)
// and qh[32 hf + l] (two bits per quarter); each quarter's 8 values share one scale.
template <int B>
__device__ __forceinline__ void dot_q6k(const block_q6_k* __restrict__ b, int c, const int8_t* __restrict__ xq,
                                        const float2* __restrict__ xds, int k, float* acc) {
  const int hf = c >> 2, l0 = 8 * (c & 3);
  int v[4][2];
#pragma unroll
  for (int i = 0; i < 2; i++) {
    const int a = load_int_b2(b->ql + 64 * hf + l0 + 4 * i);
    const int a2 = load_int_b2(b->ql + 64 * hf + 32 + l0 + 4 * i);
    const int hb = load_int_b2(b->qh + 32 * hf + l0 + 4 * i);
    v[0][i] = __vsub4((a & 0x0F0F0F0F) | ((hb << 4) & 0x30303030), 0x20202020);
    v[1][i] = __vsub4((a2 & 0x0F0F0F0F) | ((hb << 2) & 0x30303030), 0x20202020);
    v[2][i] = __vsub4(((a >> 4) & 0x0F0F0F0F) | (hb & 0x30303030), 0x20202020);
    v[3][i] = __vsub4(((a2 >> 4) & 0x0F0F0F0F) | ((hb >> 2) & 0x30303030), 0x20202020);
  }
  float sc[4];
#pragma unroll
  for (int qt = 0; qt < 4; qt++) sc[qt] = (float)__ldg(b->scales + 8 * hf + 2 * qt + l0 / 16);
  const float d = __half2float(__ushort_as_half(__ldg(reinterpret_cast<const unsigned short*>(&b->d))));
#pragma unroll
  for (int r = 0; r < B; r++) {
    float t = 0.f;
#pragma unroll
    for (int qt = 0; qt < 4; qt++) {
      const int2 xv = *reinterpret_cast<const int2*>(xq + (size_t)r * k + 128 * hf + 32 * qt + l0);
      const int s = __dp4a(v[qt][1], xv.y, __dp4a(v[qt][0], xv.x, 0));
      t += sc[qt] * xds[(size_t)r * (k / 32) + 4 * hf + qt].x * (float)s;
    }
    acc[r] += d * t;
  }
}

// This lane's share of row `row` of weight w (format `format`, k / 256 super-blocks a row) dotted with
// the B activation rows, summed over the warp.
template <int B>
__device__ __forceinline__ void row_dots(const uint8_t* __restrict__ w, int format, int row, const int8_t* __restrict__ xq,
                                         const float2* __restrict__ xds, int k, float* acc) {
  const int blocks = k / QK, lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < B; r++) acc[r] = 0.f;
  if (format == FORMAT_Q4K) {
    const block_q4_k* wr = reinterpret_cast<const block_q4_k*>(w) + (size_t)row * blocks;
#pragma unroll 4
    for (int i = lane; i < blocks * CHUNKS; i += 32)
      dot_q4k<B>(wr + i / CHUNKS, i % CHUNKS, xq + (i / CHUNKS) * QK, xds + (i / CHUNKS) * RUNS, k, acc);
  } else {
    const block_q6_k* wr = reinterpret_cast<const block_q6_k*>(w) + (size_t)row * blocks;
#pragma unroll 4
    for (int i = lane; i < blocks * CHUNKS; i += 32)
      dot_q6k<B>(wr + i / CHUNKS, i % CHUNKS, xq + (i / CHUNKS) * QK, xds + (i / CHUNKS) * RUNS, k, acc);
  }
#pragma unroll
  for (int r = 0; r < B; r++)
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc[r] += __shfl_xor_sync(0xffffffff, acc[r], off);
}

// Up to three weights ([n0|n1|n2, k], each of its own format) over one x; y holds [B, n0] then
// [B, n1] then [B, n2].
template <int B>
__device__ void quant_gemv(const int8_t* xq, const float2* xds, const uint8_t* w0, const uint8_t* w1, const uint8_t* w2,
                           int f0, int f1, int f2, float* __restrict__ y, int n0, int n1, int n2, int k) {
  int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const uint8_t* w = w0;
  int n = n0, format = f0;
  if (row >= n0) { row -= n0; w = w1; n = n1; format = f1; y += (size_t)B * n0;
    if (row >= n1) { row -= n1; w = w2; n = n2; format = f2; y += (size_t)B * n1; } }
  if (row >= n) return;
  float acc[B];
  row_dots<B>(w, format, row, xq, xds, k, acc);
  if ((threadIdx.x & 31) == 0)
#pragma unroll
    for (int b = 0; b < B; b++) y[(size_t)b * n + row] = acc[b];
}

// y[b, n] = silu(x . gate[n]) * (x . up[n]), silu(g) = g / (1 + exp(-g)) as candle computes it.
template <int B>
__device__ void quant_swiglu(const int8_t* xq, const float2* xds, const uint8_t* gate, const uint8_t* up, int fg, int fu,
                             float* __restrict__ y, int n, int k) {
  const int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  if (row >= n) return;
  float g[B], u[B];
  row_dots<B>(gate, fg, row, xq, xds, k, g);
  row_dots<B>(up, fu, row, xq, xds, k, u);
  if ((threadIdx.x & 31) == 0)
#pragma unroll
    for (int b = 0; b < B; b++) y[(size_t)b * n + row] = g[b] / (1.f + expf(-g[b])) * u[b];
}

#define QUANT_GEMV(B)                                                                                          \
  extern "C" __global__ void quant_gemv_##B(const int8_t* xq, const float2* xds, const uint8_t* w0, const uint8_t* w1, \
                                            const uint8_t* w2, int f0, int f1, int f2, float* y, int n0, int n1,  \
                                            int n2, int k) {                                                   \
    quant_gemv<B>(xq, xds, w0, w1, w2, f0, f1, f2, y, n0, n1, n2, k);                                          \
  }                                                                                                            \
  extern "C" __global__ void quant_swiglu_##B(const int8_t* xq, const float2* xds, const uint8_t* gate,          \
                                              const uint8_t* up, int fg, int fu, float* y, int n, int k) {      \
    quant_swiglu<B>(xq, xds, gate, up, fg, fu, y, n, k);                                                       \
  }

QUANT_GEMV(1) QUANT_GEMV(2) QUANT_GEMV(3) QUANT_GEMV(4) QUANT_GEMV(5) QUANT_GEMV(6)
