//! Which instruction set the quantized kernels use, chosen once at run time from the CPU's features.
//!
//! `HEARTH_ISA=scalar|avx2|avx512vnni` forces a path no wider than what the CPU has (for tests and
//! benchmarks that compare paths); anything else, or a path the CPU lacks, falls back to detection.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust, every platform.
    Scalar,
    /// x86-64 AVX2 + FMA: 256-bit integer dot products through `vpmaddubsw`.
    Avx2,
    /// AVX2 plus AVX-512 VNNI/VL/BW: the same kernels with `vpdpbusd` and mask registers.
    Avx512Vnni,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2+fma",
            Isa::Avx512Vnni => "avx512-vnni",
        }
    }

    /// The widest path this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            let vnni = is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512bw");
            if avx2 && vnni {
                return Isa::Avx512Vnni;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    /// Every path this CPU can run, narrowest first (what the property tests cover).
    pub fn available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni].into_iter().filter(|&i| i <= Isa::detect()).collect()
    }
}

/// The path the kernels use in this process.
pub fn active() -> Isa {
    static ACTIVE: OnceLock<Isa> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        let best = Isa::detect();
        let forced = match std::env::var("HEARTH_ISA").as_deref() {
            Ok("scalar") => Some(Isa::Scalar),
            Ok("avx2") => Some(Isa::Avx2),
            Ok("avx512vnni") => Some(Isa::Avx512Vnni),
            _ => None,
        };
        forced.filter(|&f| f <= best).unwrap_or(best)
    })
}
