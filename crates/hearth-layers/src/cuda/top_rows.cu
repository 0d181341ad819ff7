// The `count` largest values of each f32 row with their ids, best first and the lowest id first among
// equal values (the host sampler's order, f32::total_cmp), so a sampling step that keeps only its
// top k copies count pairs per sequence instead of the logits row (64 sequences x 128k vocabulary:
// 33 MB, 0.7 ms a step on the H100's bus).
//
// A value and its id are one 64-bit rank, (order key << 32) | ~id: ranks are unique and order as the
// host does, so selecting the `count` largest ranks needs no tie rule. Two launches:
//   top_slices: a block per 8192-value slice of a row holds its ranks in registers and radix-selects
//     the slice's `count` largest (8 bits a pass, from the top);
//   top_merge: a block per row selects the `count` largest of its slices' lists the same way, sorts
//     them, and writes the values and ids.
// Output, one buffer of u32 for one copy back: rows x count values (f32 bits), rows x count ids, then
// one flag a row: 1 where the row holds NaN or +inf (the host samples it from the full row and reports
// the value, as before).
#define THREADS 1024
#define TOP_MAX 256
#define SLICE_PER_THREAD 8
#define SLICE (THREADS * SLICE_PER_THREAD)
#define MERGE_PER_THREAD 16

typedef unsigned long long rank_t;

// Unsigned keys in the order of f32::total_cmp for every non-NaN value (-0 below +0).
__device__ __forceinline__ unsigned int order_key(float v) {
  const unsigned int b = __float_as_uint(v);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ rank_t rank_of(float v, unsigned int id) {
  return ((rank_t)order_key(v) << 32) | (0xffffffffu - id);
}

__device__ __forceinline__ unsigned int id_of(rank_t r) {
  return 0xffffffffu - (unsigned int)(r & 0xffffffffu);
}

// Warp 0: the bin holding the `need`-th largest rank, counting from bin 255 down; `need` becomes the
// rank within that bin, and `in_bin` that bin's count.
__device__ void pick_bin(const unsigned int* hist, unsigned int* need, unsigned int* bin, unsigned int* in_bin) {
  const int lane = threadIdx.x;
  unsigned int sum = 0;  // lane l covers bins 255 - 8l down to 248 - 8l
#pragma unroll
  for (int j = 0; j < 8; j++) sum += hist[255 - 8 * lane - j];
  unsigned int incl = sum;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned int n = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += n;
  }
  const unsigned int target = *need;
  const unsigned int hit = __ballot_sync(0xffffffffu, incl >= target);
  const int first = __ffs(hit) - 1;  // the lane whose bins reach the target
  if (lane == first) {
    unsigned int before = incl - sum;
    for (int j = 0; j < 8; j++) {
      const unsigned int b = 255 - 8 * lane - j;
      if (before + hist[b] >= target) {
        *need = target - before;
        *bin = b;
        *in_bin = hist[b];
        break;
      }
      before += hist[b];
    }
  }
}

// The smallest of the block's `count` largest ranks (every thread holds N, 0 for none; count no more
// than the nonzero ones): radix select from the top, stopping once a bin is taken whole.
template <int N>
__device__ rank_t select_threshold(const rank_t (&r)[N], unsigned int count) {
  __shared__ unsigned int hist[256];
  __shared__ unsigned int need, bin, in_bin;
  if (threadIdx.x == 0) need = count;
  rank_t prefix = 0, mask = 0;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += THREADS) hist[b] = 0;
    __syncthreads();
#pragma unroll
    for (int u = 0; u < N; u++) {
      if ((r[u] & mask) == prefix) atomicAdd(&hist[(r[u] >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x < 32) pick_bin(hist, &need, &bin, &in_bin);
    __syncthreads();
    prefix |= (rank_t)bin << shift;
    mask |= (rank_t)255 << shift;
    // Every rank of this bin is in: the threshold is the bin's lowest possible rank.
    if (need == in_bin) break;
    __syncthreads();
  }
  return prefix;
}

// Writes the ranks at or above `threshold` (exactly `count` of them) to out[0..count) in any order.
template <int N>
__device__ void collect(const rank_t (&r)[N], rank_t threshold, rank_t* out) {
  __shared__ unsigned int filled;
  if (threadIdx.x == 0) filled = 0;
  __syncthreads();
#pragma unroll
  for (int u = 0; u < N; u++) {
    if (r[u] != 0 && r[u] >= threshold) out[atomicAdd(&filled, 1u)] = r[u];
  }
}

// Each slice's `count` largest ranks, unordered, at pairs[(row * slices + slice) * count]; a slice
// of no more than `count` values writes all of them, then zeros. bad[row] |= 1 for NaN or +inf.
extern "C" __global__ void __launch_bounds__(THREADS) top_slices(
    const float* __restrict__ x, int cols, int count, rank_t* __restrict__ pairs, unsigned int* __restrict__ bad) {
  const int slice = blockIdx.x, row = blockIdx.y;
  const float* values = x + (size_t)row * cols;
  const int start = slice * SLICE;
  const int valid = min(SLICE, cols - start);
  rank_t r[SLICE_PER_THREAD];
  int flagged = 0;
#pragma unroll
  for (int u = 0; u < SLICE_PER_THREAD; u++) {
    const int j = u * THREADS + threadIdx.x;
    const float v = j < valid ? values[start + j] : -INFINITY;
    flagged |= isnan(v) || v == INFINITY;
    r[u] = j < valid ? rank_of(v, (unsigned int)(start + j)) : 0;
  }
  if (__syncthreads_or(flagged) && threadIdx.x == 0) atomicOr(&bad[row], 1u);
  rank_t* out = pairs + ((size_t)row * gridDim.x + slice) * count;
  if (valid <= count) {
#pragma unroll
    for (int u = 0; u < SLICE_PER_THREAD; u++) {
      const int j = u * THREADS + threadIdx.x;
      if (j < count) out[j] = r[u];
    }
    return;
  }
  collect(r, select_threshold(r, count), out);
}

// Each row's `count` largest of its slices' lists, sorted best first, into the output buffer.
extern "C" __global__ void __launch_bounds__(THREADS) top_merge(
    const float* __restrict__ x, int cols, int count, int slices, const rank_t* __restrict__ pairs,
    const unsigned int* __restrict__ bad, unsigned int* __restrict__ out) {
  const int row = blockIdx.x;
  const rank_t* listed = pairs + (size_t)row * slices * count;
  const int n = slices * count;
  rank_t r[MERGE_PER_THREAD];
#pragma unroll
  for (int u = 0; u < MERGE_PER_THREAD; u++) {
    const int j = u * THREADS + threadIdx.x;
    r[u] = j < n ? listed[j] : 0;
  }
  __shared__ rank_t top[TOP_MAX];
  collect(r, select_threshold(r, count), top);
  // Bitonic sort, descending, over the next power of two (zeros fill the rest and sort last).
  int size2 = 1;
  while (size2 < count) size2 <<= 1;
  __syncthreads();
  for (int i = count + threadIdx.x; i < size2; i += THREADS) top[i] = 0;
  __syncthreads();
  for (int size = 2; size <= size2; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < size2; i += THREADS) {
        const int j = i ^ stride;
        if (j > i) {
          const bool descending = (i & size) == 0;
          const rank_t a = top[i], b = top[j];
          if ((a < b) == descending) { top[i] = b; top[j] = a; }
        }
      }
      __syncthreads();
    }
  }
  const size_t top_values = (size_t)gridDim.x * count;
  const float* values = x + (size_t)row * cols;
  for (int i = threadIdx.x; i < count; i += THREADS) {
    const unsigned int id = id_of(top[i]);
    out[(size_t)row * count + i] = __float_as_uint(values[id]);
    out[top_values + (size_t)row * count + i] = id;
  }
  if (threadIdx.x == 0) out[2 * top_values + row] = bad[row];
}
