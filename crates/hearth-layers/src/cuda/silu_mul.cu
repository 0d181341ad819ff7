// silu(gate) * up for prompt rows in one pass: candle's silu and mul were two launches that read
// 3 and wrote 2 row-sized f32 tensors (8B shape, 512 rows: 86 us a layer); the GEMV path fuses this
// for decode rows already.
extern "C" __global__ void silu_mul(const float* __restrict__ gate, const float* __restrict__ up,
                                    float* __restrict__ out, long long n) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float x = gate[i];
    out[i] = x / (1.0f + expf(-x)) * up[i];
  }
}
