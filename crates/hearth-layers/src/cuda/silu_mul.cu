// silu(gate) * up for prompt rows in one pass: candle's silu and mul were two launches that read
// 3 and wrote 2 row-sized f32 tensors (8B shape, 512 rows: 86 us a layer); the GEMV path fuses this
// for decode rows already. The product is written in f32, or in the bf16/f16 of the matmul that reads
// it next (one cast launch fewer, the same rounding). gate and up rows may lie at a stride (the two
// halves of one stacked gate/up matmul output); the product is packed.
#include "convert.cuh"

template <typename O>
__device__ void silu_mul(const float* __restrict__ gate, const float* __restrict__ up, O* __restrict__ out, long long n,
                         long long width, long long gate_stride, long long up_stride) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const long long row = i / width, col = i - row * width;
    const float x = gate[row * gate_stride + col];
    put(out + i, x / (1.0f + expf(-x)) * up[row * up_stride + col]);
  }
}

#define SILU_MUL(NAME, O)                                                                       \
  extern "C" __global__ void NAME(const float* gate, const float* up, O* out, long long n, long long width, \
                                  long long gate_stride, long long up_stride) {                           \
    silu_mul<O>(gate, up, out, n, width, gate_stride, up_stride);                                        \
  }
SILU_MUL(silu_mul, float)
SILU_MUL(silu_mul_f16, __half)
SILU_MUL(silu_mul_bf16, __nv_bfloat16)
