//! Which instruction set the quantized kernels use, chosen once at run time from the CPU's features.
//!
//! [`force`] (the CLI's `HEARTH_ISA=scalar|neon|avx2|avx512vnni`) pins a path no wider than what the
//! CPU has, for benchmarks that compare paths; a path the CPU lacks falls back to detection.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust, every platform.
    Scalar,
    /// arm64 NEON (every ARMv8 core): 8-bit products widened and pairwise-added.
    Neon,
    /// x86-64 AVX2 + FMA: 256-bit integer dot products through `vpmaddubsw`.
    Avx2,
    /// AVX2 plus AVX-512 VNNI/VL/BW: the same kernels with `vpdpbusd` and mask registers.
    Avx512Vnni,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Neon => "neon",
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
        #[cfg(target_arch = "aarch64")]
        return Isa::Neon;
        #[allow(unreachable_code)]
        Isa::Scalar
    }

    /// Every path this CPU can run, narrowest first (what the property tests cover).
    pub fn available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Neon, Isa::Avx2, Isa::Avx512Vnni].into_iter().filter(|i| i.runs_here()).collect()
    }

    /// Whether this CPU can run this path: the scalar one, or one of its own architecture no wider
    /// than what it has.
    pub fn runs_here(self) -> bool {
        let detected = Isa::detect();
        match self {
            Isa::Scalar => true,
            Isa::Neon => detected == Isa::Neon,
            Isa::Avx2 | Isa::Avx512Vnni => detected >= Isa::Avx2 && self <= detected,
        }
    }
}

static ACTIVE: OnceLock<Isa> = OnceLock::new();

/// The path the kernels use in this process.
pub fn active() -> Isa {
    *ACTIVE.get_or_init(Isa::detect)
}

/// Use `isa` (or the widest path the CPU has, if narrower) for the rest of the process. Only takes
/// effect before the first kernel runs; returns the path in effect.
pub fn force(isa: Isa) -> Isa {
    *ACTIVE.get_or_init(|| if isa.runs_here() { isa } else { Isa::detect() })
}

impl std::str::FromStr for Isa {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "scalar" => Ok(Isa::Scalar),
            "neon" => Ok(Isa::Neon),
            "avx2" => Ok(Isa::Avx2),
            "avx512vnni" => Ok(Isa::Avx512Vnni),
            other => Err(format!("unknown instruction set '{other}' (scalar, neon, avx2, avx512vnni)")),
        }
    }
}
