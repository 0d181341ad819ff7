//! Kernel launches through `cuLaunchKernelEx`, so a kernel may be started while the previous one in
//! the stream is still running (programmatic dependent launch, sm_90+; see pdl.cuh for what every
//! kernel does to make that safe). cudarc's launch builder has no way to pass launch attributes.

use candle_core::cuda_backend::cudarc::driver::{sys, CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, LaunchConfig};
use candle_core::cuda_backend::WrapErr;
use candle_core::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The architecture the kernels' PTX was compiled for (build.rs); `griddepcontrol` needs 90.
const PTX_COMPUTE_CAP: &str = env!("HEARTH_CUDA_PTX_CAP");

static OVERLAP: AtomicBool = AtomicBool::new(true);

/// Whether kernels may start before the previous one ends (default on, where the PTX supports it).
pub fn set_overlap(on: bool) {
    OVERLAP.store(on, Ordering::Relaxed);
}

/// Whether kernels launched now may start before the previous one ends.
fn overlap() -> bool {
    OVERLAP.load(Ordering::Relaxed) && PTX_COMPUTE_CAP.parse::<u32>().is_ok_and(|cap| cap >= 90)
}

/// A kernel argument as the 8 bytes the driver reads it from (the driver reads only the parameter's
/// own size, so 4-byte values sit in the low bytes; x86-64 and aarch64 are little-endian).
pub trait KernelArg {
    fn bits(&self, stream: &CudaStream) -> u64;
}

macro_rules! scalar_arg {
    ($($ty:ty => $conv:expr),*) => {$(
        impl KernelArg for $ty {
            fn bits(&self, _: &CudaStream) -> u64 {
                let f: fn($ty) -> u64 = $conv;
                f(*self)
            }
        }
    )*};
}
scalar_arg!(i32 => |v| v as u32 as u64, u32 => |v| v as u64, f32 => |v| v.to_bits() as u64, i64 => |v| v as u64, u64 => |v| v);

// Device pointers. Event tracking is off (device.rs), so the guards `device_ptr` returns do nothing.
impl<T> KernelArg for CudaSlice<T> {
    fn bits(&self, stream: &CudaStream) -> u64 {
        self.device_ptr(stream).0
    }
}

impl<T> KernelArg for CudaView<'_, T> {
    fn bits(&self, stream: &CudaStream) -> u64 {
        self.device_ptr(stream).0
    }
}

impl<T> KernelArg for CudaViewMut<'_, T> {
    fn bits(&self, stream: &CudaStream) -> u64 {
        self.device_ptr(stream).0
    }
}

/// One launch of `func` on the device's stream, arguments pushed in the kernel's parameter order.
pub struct Launch<'a> {
    func: &'a CudaFunction,
    stream: Arc<CudaStream>,
    args: Vec<u64>,
}

impl<'a> Launch<'a> {
    pub fn new(func: &'a CudaFunction, dev: &candle_core::CudaDevice) -> Self {
        Launch { func, stream: dev.cuda_stream(), args: Vec::with_capacity(16) }
    }

    pub fn arg<A: KernelArg + ?Sized>(&mut self, a: &A) -> &mut Self {
        self.args.push(a.bits(&self.stream));
        self
    }

    /// # Safety
    /// The arguments must match the kernel's parameters in number, order and type, and every buffer
    /// must hold what the kernel indexes under `cfg`.
    pub unsafe fn launch(&mut self, cfg: LaunchConfig) -> Result<()> {
        let mut params: Vec<*mut std::ffi::c_void> = self.args.iter_mut().map(|a| a as *mut u64 as *mut std::ffi::c_void).collect();
        // SAFETY: a plain C struct; zeroed is a valid empty attribute, filled in below.
        let early = overlap();
        let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let config = sys::CUlaunchConfig {
            gridDimX: cfg.grid_dim.0,
            gridDimY: cfg.grid_dim.1,
            gridDimZ: cfg.grid_dim.2,
            blockDimX: cfg.block_dim.0,
            blockDimY: cfg.block_dim.1,
            blockDimZ: cfg.block_dim.2,
            sharedMemBytes: cfg.shared_mem_bytes,
            hStream: self.stream.cu_stream(),
            attrs: &mut attr,
            numAttrs: early as u32,
        };
        self.stream.context().bind_to_thread().w()?;
        // SAFETY: `params` points at one 8-byte value per kernel parameter, alive for the call (the
        // driver copies them); the caller vouches for their match with the kernel.
        unsafe { sys::cuLaunchKernelEx(&config, self.func.cu_function(), params.as_mut_ptr(), std::ptr::null_mut()) }.result().w()
    }
}
