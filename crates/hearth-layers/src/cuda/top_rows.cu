// The `count` largest values of each f32 row with their ids, best first and the lowest id first among
// equal values (the host sampler's order, f32::total_cmp), so a sampling step that keeps only its
// top k copies count pairs per sequence instead of the logits row (64 sequences x 128k vocabulary:
// 33 MB, 0.7 ms a step on the H100's bus). One block per row:
//   1. radix select, 8 bits a pass from the top: the exact count-th largest key T, and how many of
//      the values equal to T belong to the top (rank);
//   2. one pass collecting every value above T and those equal to it: all of them unless ties straddle
//      the cut, when a slower pass in id order takes the first `rank` (the lowest ids, as the host);
//   3. a bitonic sort of the collected pairs.
// Output, one buffer of u32 for one copy back: rows x count logits (f32 bits), rows x count ids, then
// one flag a row: 1 where the row holds NaN or +inf (the host samples it from the full row and reports
// the value, as before).
#define THREADS 1024
#define WARPS (THREADS / 32)
#define TOP_MAX 256
#define UNROLL 8

// Unsigned keys in the order of f32::total_cmp for every non-NaN value (-0 below +0).
__device__ __forceinline__ unsigned int order_key(float v) {
  const unsigned int b = __float_as_uint(v);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Adds each key of the row matching `prefix` under `mask` to its bin of 8 bits at `shift`.
__device__ void histogram(const float* row, int cols, unsigned int prefix, unsigned int mask, int shift, unsigned int* hist, int* bad) {
  for (int base = threadIdx.x; base < cols; base += THREADS * UNROLL) {
    float v[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
      const int i = base + u * THREADS;
      v[u] = i < cols ? row[i] : -INFINITY;
    }
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
      if (base + u * THREADS >= cols) break;
      if (isnan(v[u]) || v[u] == INFINITY) *bad = 1;
      const unsigned int key = order_key(v[u]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
  }
}

// Warp 0: the bin holding the `need`-th largest key, counting from bin 255 down; `need` becomes the
// rank within that bin, and `in_bin` its count.
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

// The block's exclusive prefix count of `flag` in thread order, and the block's total.
__device__ unsigned int block_prefix(bool flag, unsigned int* warp_counts, unsigned int* total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const unsigned int ballot = __ballot_sync(0xffffffffu, flag);
  if (lane == 0) warp_counts[warp] = __popc(ballot);
  __syncthreads();
  unsigned int before = 0, all = 0;
  for (int w = 0; w < WARPS; w++) {
    if (w < warp) before += warp_counts[w];
    all += warp_counts[w];
  }
  *total = all;
  return before + __popc(ballot & ((1u << lane) - 1u));
}

__device__ __forceinline__ unsigned long long pair_of(unsigned int key, int id) {
  return ((unsigned long long)key << 32) | (0xffffffffu - (unsigned int)id);
}

// Every value at or above key `threshold` into `pairs`, in any order (the sort orders them).
__device__ void collect_all(const float* row, int cols, unsigned int threshold, unsigned long long* pairs, unsigned int* filled) {
  for (int base = threadIdx.x; base < cols; base += THREADS * UNROLL) {
    float v[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
      const int i = base + u * THREADS;
      v[u] = i < cols ? row[i] : -INFINITY;
    }
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
      const int i = base + u * THREADS;
      const unsigned int key = order_key(v[u]);
      if (i < cols && key >= threshold) pairs[atomicAdd(filled, 1u)] = pair_of(key, i);
    }
  }
}

// Ties straddle the cut: every value above `threshold`, and the first `equal_wanted` equal to it in
// id order, after the `above_slots` slots for the others. One block-wide count per 1024 ids.
__device__ void collect_in_order(const float* row, int cols, unsigned int threshold, unsigned int equal_wanted, unsigned int above_slots,
                                 unsigned long long* pairs, unsigned int* above, unsigned int* taken, unsigned int* warp_counts) {
  for (int base = 0; base < cols; base += THREADS) {
    const int i = base + threadIdx.x;
    const unsigned int key = i < cols ? order_key(row[i]) : 0u;
    const bool is_above = i < cols && key > threshold, is_equal = i < cols && key == threshold;
    if (is_above) pairs[atomicAdd(above, 1u)] = pair_of(key, i);
    unsigned int chunk_equal;
    const unsigned int rank = *taken + block_prefix(is_equal, warp_counts, &chunk_equal);
    if (is_equal && rank < equal_wanted) pairs[above_slots + rank] = pair_of(key, i);
    __syncthreads();
    if (threadIdx.x == 0) *taken += chunk_equal;
    __syncthreads();
  }
}

extern "C" __global__ void __launch_bounds__(THREADS) top_rows(
    const float* __restrict__ x, int cols, int count, unsigned int* __restrict__ out) {
  const size_t top_values = (size_t)gridDim.x * count;
  float* out_logits = (float*)out;
  unsigned int* out_ids = out + top_values;
  unsigned int* bad_rows = out + 2 * top_values;
  const float* row = x + (size_t)blockIdx.x * cols;
  __shared__ unsigned int hist[256];
  __shared__ unsigned int need, bin, in_bin, above, taken;
  __shared__ int bad;
  __shared__ unsigned int warp_counts[WARPS];
  __shared__ unsigned long long pairs[TOP_MAX];
  if (threadIdx.x == 0) { need = count; bad = 0; above = 0; taken = 0; }
  unsigned int prefix = 0, mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += THREADS) hist[b] = 0;
    __syncthreads();
    histogram(row, cols, prefix, mask, shift, hist, &bad);
    __syncthreads();
    if (threadIdx.x < 32) pick_bin(hist, &need, &bin, &in_bin);
    __syncthreads();
    prefix |= bin << shift;
    mask |= 255u << shift;
  }
  // prefix is now the count-th largest key T; `need` of the `in_bin` values equal to T are in the top.
  if (need == in_bin) {
    collect_all(row, cols, prefix, pairs, &above);
  } else {
    collect_in_order(row, cols, prefix, need, count - need, pairs, &above, &taken, warp_counts);
  }
  __syncthreads();
  // Bitonic sort, descending: a larger key first, then a larger (0xffffffff - id), i.e. a lower id.
  int n = 1;
  while (n < count) n <<= 1;
  for (int i = count + threadIdx.x; i < n; i += THREADS) pairs[i] = 0ull;
  __syncthreads();
  for (int size = 2; size <= n; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < n; i += THREADS) {
        const int j = i ^ stride;
        if (j > i) {
          const bool descending = (i & size) == 0;
          const unsigned long long a = pairs[i], b = pairs[j];
          if ((a < b) == descending) { pairs[i] = b; pairs[j] = a; }
        }
      }
      __syncthreads();
    }
  }
  for (int i = threadIdx.x; i < count; i += THREADS) {
    const unsigned int id = 0xffffffffu - (unsigned int)(pairs[i] & 0xffffffffu);
    out_ids[(size_t)blockIdx.x * count + i] = id;
    out_logits[(size_t)blockIdx.x * count + i] = row[id];
  }
  if (threadIdx.x == 0) bad_rows[blockIdx.x] = bad;
}
