// Programmatic dependent launch (sm_90+). The host may launch a kernel while the one before it in the
// stream is still running (cuda/launch.rs); such a kernel first does what depends on no earlier kernel
// (loading weights, which never change) and then waits in pdl_wait() until the earlier kernel has
// finished and its writes are visible. A decode step is a chain of short kernels, each bound by its
// own start-up latency, so this overlaps one kernel's start with the previous one's tail.
// Rules every kernel here keeps: every thread that reads an earlier kernel's output or writes global
// memory calls pdl_wait() first (a kernel launched early could otherwise overwrite memory the earlier
// kernel still reads), and at least one thread of each grid waits (so a grid never completes before
// the one it depends on). Compiled for an older architecture, both calls are no-ops and the host
// launches as before.
#pragma once

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel in the stream start once every block of this one has started.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// The start of a kernel with nothing to do before its inputs are ready.
__device__ __forceinline__ void pdl_start() {
  pdl_launch_dependents();
  pdl_wait();
}
