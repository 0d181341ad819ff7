//! Kernels for the CPU path that work on plain f32 slices, without tensor dispatch overhead.

pub mod attention;
pub mod expf;
pub mod gelu;
pub mod reduce;

pub use attention::{paged_attention_host, HostSeq};
pub use expf::swiglu;
pub use gelu::gelu_tanh;
