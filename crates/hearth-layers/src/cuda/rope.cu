// Rotary embedding applied to `[tokens, heads, head_dim]` rows in their own layout, with per-token
// cos/sin rows `[tokens, head_dim / 2]`: one launch, no transposes around it. Block (token, head);
// thread i rotates pair i — adjacent elements (2i, 2i+1) in the interleaved style (GGUF llama),
// elements (i, i + head_dim/2) in the half style (NeoX, Hugging Face).
extern "C" __global__ void rope_rows(const float* __restrict__ x, const float* __restrict__ cos,
                                     const float* __restrict__ sin, float* __restrict__ out,
                                     int heads, int head_dim, int interleaved) {
  const int token = blockIdx.x, head = blockIdx.y, half = head_dim / 2;
  const size_t base = ((size_t)token * heads + head) * head_dim;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float c = cos[(size_t)token * half + i], s = sin[(size_t)token * half + i];
    const int a = interleaved ? 2 * i : i;
    const int b = interleaved ? 2 * i + 1 : i + half;
    const float xa = x[base + a], xb = x[base + b];
    out[base + a] = xa * c - xb * s;
    out[base + b] = xa * s + xb * c;
  }
}
