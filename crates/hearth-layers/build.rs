//! With the `cuda` feature, compiles hearth's own CUDA kernels (src/cuda/*.cu) to PTX with nvcc, as
//! candle does for its kernels; the PTX is embedded in the library and loaded on first use. Without
//! the feature this does nothing, so CPU builds need no CUDA toolkit.
use std::path::PathBuf;
use std::process::Command;

/// Kernel sources under src/cuda/, one PTX module each.
const KERNELS: &[&str] = &["add_norm", "argmax", "decode_attention", "dense_gemv", "dequant", "kv_write", "quant_gemv", "rope", "silu_mul", "top_rows"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/cuda");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = std::env::var("CUDA_HOME").map(|h| PathBuf::from(h).join("bin/nvcc")).unwrap_or_else(|_| "nvcc".into());
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    for kernel in KERNELS {
        let src = format!("src/cuda/{kernel}.cu");
        let ptx = out.join(format!("{kernel}.ptx"));
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17"])
            .arg(format!("-arch=compute_{cap}"))
            .arg(&src)
            .arg("-o")
            .arg(&ptx)
            .status()
            .unwrap_or_else(|e| panic!("running {} for {src}: {e} (set CUDA_HOME; see scripts/build-cuda.sh)", nvcc.display()));
        assert!(status.success(), "nvcc failed on {src}");
    }
}
