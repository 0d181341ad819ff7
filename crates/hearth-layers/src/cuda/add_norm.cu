// Residual add and RMSNorm in one launch: s = x + r (the new residual stream) and
// h = s / sqrt(mean(s^2) + eps) * w, block per row. Decode runs this twice per layer on a single row
// each time; as candle's add and norm it was two launches whose cost was their latency, not bytes.
#define THREADS 256

extern "C" __global__ void __launch_bounds__(THREADS) add_rms_norm(
    const float* __restrict__ x, const float* __restrict__ r, const float* __restrict__ w,
    float* __restrict__ sum, float* __restrict__ out, int dim, float eps) {
  const size_t base = (size_t)blockIdx.x * dim;
  float sq = 0.f;
  for (int i = threadIdx.x; i < dim; i += THREADS) {
    const float s = x[base + i] + r[base + i];
    sum[base + i] = s;
    sq += s * s;
  }
  __shared__ float part[THREADS / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffff, sq, o);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = sq;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int i = 0; i < THREADS / 32; i++) total += part[i];
  const float scale = rsqrtf(total / dim + eps);
  // Each thread reads back only the sums it wrote itself, so no barrier is needed for them.
  for (int i = threadIdx.x; i < dim; i += THREADS) out[base + i] = sum[base + i] * scale * w[i];
}
