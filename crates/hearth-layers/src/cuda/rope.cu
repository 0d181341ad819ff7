// Rotary embedding applied to `[tokens, heads, head_dim]` rows in their own layout, with per-token
// cos/sin rows `[tokens, head_dim / 2]`: one launch, no transposes around it. A token's input row may
// lie `x_stride` elements after the previous one (q and k as column ranges of one q/k/v matmul
// output); the output is packed. Block (token, head);
// thread i rotates pair i — adjacent elements (2i, 2i+1) in the interleaved style (GGUF llama),
// elements (i, i + head_dim/2) in the half style (NeoX, Hugging Face).
__device__ __forceinline__ void rope_row(const float* __restrict__ x, const float* __restrict__ cos,
                                         const float* __restrict__ sin, float* __restrict__ out,
                                         int token, int head, int heads, int head_dim, long long x_stride, int interleaved) {
  const int half = head_dim / 2;
  const size_t base = ((size_t)token * heads + head) * head_dim, in = (size_t)token * x_stride + (size_t)head * head_dim;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float c = cos[(size_t)token * half + i], s = sin[(size_t)token * half + i];
    const int a = interleaved ? 2 * i : i;
    const int b = interleaved ? 2 * i + 1 : i + half;
    const float xa = x[in + a], xb = x[in + b];
    out[base + a] = xa * c - xb * s;
    out[base + b] = xa * s + xb * c;
  }
}

extern "C" __global__ void rope_rows(const float* __restrict__ x, const float* __restrict__ cos,
                                     const float* __restrict__ sin, float* __restrict__ out,
                                     int heads, int head_dim, int interleaved) {
  rope_row(x, cos, sin, out, blockIdx.x, blockIdx.y, heads, head_dim, (long long)heads * head_dim, interleaved);
}

// q `[tokens, q_heads, head_dim]` and k `[tokens, k_heads, head_dim]` in one launch (the two were
// a launch each per layer): blocks y < q_heads rotate q into out, the rest k into out + the q size.
extern "C" __global__ void rope_rows_pair(const float* __restrict__ q, const float* __restrict__ k,
                                          const float* __restrict__ cos, const float* __restrict__ sin,
                                          float* __restrict__ out, int q_heads, int k_heads, int head_dim,
                                          long long q_stride, long long k_stride, int interleaved) {
  if ((int)blockIdx.y < q_heads) {
    rope_row(q, cos, sin, out, blockIdx.x, blockIdx.y, q_heads, head_dim, q_stride, interleaved);
  } else {
    float* k_out = out + (size_t)gridDim.x * q_heads * head_dim;
    rope_row(k, cos, sin, k_out, blockIdx.x, blockIdx.y - q_heads, k_heads, head_dim, k_stride, interleaved);
  }
}
