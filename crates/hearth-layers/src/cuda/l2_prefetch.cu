// Warms the L2 cache with weights a decode step reads next.
//
// A decode step is a chain of small kernels; during most of them (norms, rope, the K/V write,
// attention) memory bandwidth sits idle, and each GEMV then waits on DRAM latency with all its warps at
// once. Prefetching the next GEMVs' weights into L2 while the small kernels run moves that DRAM
// traffic into the idle time. The prefetches have no result: a kernel issues them and ends.
//
// Modes: BULK issues Hopper's cp.async.bulk.prefetch.L2 (the copy engine walks a chunk of up to
// BULK_CHUNK bytes by itself); LINE issues one prefetch.global.L2 per 128-byte line (any arch).

#define MAX_RANGES 8
#define MODE_BULK 1
#define MODE_LINE 2
#define BULK_CHUNK (32u * 1024u)
#define LINE 128u

__device__ __forceinline__ void prefetch_bulk(const char* p, unsigned bytes) {
#if __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
    for (unsigned off = 0; off < bytes; off += LINE) {
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p + off));
    }
#endif
}

__device__ __forceinline__ void prefetch_range(const char* p, unsigned long long bytes, int mode, unsigned long long tid, unsigned long long threads) {
    const unsigned long long chunk = mode == MODE_BULK ? BULK_CHUNK : LINE;
    const unsigned long long chunks = bytes / chunk + (bytes % chunk >= 16 ? 1 : 0);
    for (unsigned long long c = tid; c < chunks; c += threads) {
        const unsigned long long off = c * chunk;
        if (mode == MODE_BULK) {
            // The bulk form wants a multiple of 16 bytes; a tail under 16 is left to the reader.
            const unsigned long long left = bytes - off;
            prefetch_bulk(p + off, (unsigned)((left < chunk ? left : chunk) & ~15ull));
        } else {
            asm volatile("prefetch.global.L2 [%0];" ::"l"(p + off));
        }
    }
}

// Up to MAX_RANGES ranges (address, bytes; unused ones have 0 bytes), every 16-byte aligned.
extern "C" __global__ void l2_prefetch(
    const char* p0, const char* p1, const char* p2, const char* p3, const char* p4, const char* p5, const char* p6, const char* p7,
    unsigned long long n0, unsigned long long n1, unsigned long long n2, unsigned long long n3,
    unsigned long long n4, unsigned long long n5, unsigned long long n6, unsigned long long n7, int mode) {
    const char* ps[MAX_RANGES] = {p0, p1, p2, p3, p4, p5, p6, p7};
    const unsigned long long ns[MAX_RANGES] = {n0, n1, n2, n3, n4, n5, n6, n7};
    const unsigned long long tid = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned long long threads = (unsigned long long)gridDim.x * blockDim.x;
#pragma unroll
    for (int r = 0; r < MAX_RANGES; r++) {
        prefetch_range(ps[r], ns[r], mode, tid, threads);
    }
}
