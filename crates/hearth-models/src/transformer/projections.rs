//! The projection groups of a block: q/k/v over the attention's input, and the MLP's gated product.

use super::{Attention, BatchPlan, Mlp, Transformer};
use crate::config::Activation;
use crate::{ModelError, Result};
use candle_core::Tensor;
use hearth_layers::quant::RowBatch;
use hearth_layers::Linear;

impl Transformer {
    /// The stacked layer of a projection group, when there is one and it pays for `rows` rows: past
    /// the device GEMV's rows, which reads the parts in one launch already.
    fn stacked<'a>(&self, stacked: Option<&'a Linear>, rows: usize) -> Option<&'a Linear> {
        stacked.filter(|_| rows > hearth_layers::device::dense_gemv_max_rows(&self.device))
    }

    /// q `[t, heads, head_dim]`, k `[t, kv_heads, head_dim]` and v `[t, kv_heads * head_dim]` of the
    /// batch's rows: with a stacked weight and more rows than the device GEMV serves, one library
    /// matmul and column views of its output (the rope and cache-write kernels read rows at a stride);
    /// else the three projections together.
    pub(super) fn project_qkv(&self, a: &Attention, h: &Tensor, plan: &BatchPlan) -> Result<[Tensor; 3]> {
        let c = &self.config;
        let t = h.dim(0)?;
        if let Some(qkv) = self.stacked(a.qkv.as_ref(), t) {
            let y = qkv.forward(h)?;
            let heads = y.reshape((t, c.n_heads + 2 * c.n_kv_heads, c.head_dim))?;
            let v = y.narrow(1, (c.n_heads + c.n_kv_heads) * c.head_dim, c.n_kv_heads * c.head_dim)?;
            return Ok([heads.narrow(1, 0, c.n_heads)?, heads.narrow(1, c.n_heads, c.n_kv_heads)?, v]);
        }
        let [q, k, v]: [Tensor; 3] = Linear::forward_many(&[&a.q, &a.k, &a.v], h, &plan.row_batching)?
            .try_into()
            .map_err(|_| ModelError::BadBatch("q/k/v projection returned the wrong count".into()))?;
        Ok([q.reshape((t, c.n_heads, c.head_dim))?, k.reshape((t, c.n_kv_heads, c.head_dim))?, v])
    }

    /// The MLP's activated product, act(gate(h)) * up(h): one device kernel for SwiGLU where there is
    /// one (decode on CUDA); else the two projections — one matmul over the stacked weight past the
    /// device GEMV's rows, its halves read in place — and the activation.
    pub(super) fn gated(&self, mlp: &Mlp, h: &Tensor, batching: &[RowBatch]) -> Result<Tensor> {
        if self.config.activation == Activation::Silu {
            if let Some(y) = Linear::forward_swiglu(&mlp.gate, &mlp.up, h)? {
                return Ok(y);
            }
        }
        let rows = h.dim(0)?;
        let [gate, up]: [Tensor; 2] = match self.stacked(mlp.gate_up.as_ref(), rows) {
            Some(both) => {
                let y = both.forward(h)?;
                let width = mlp.gate.out_features();
                [y.narrow(1, 0, width)?, y.narrow(1, width, width)?]
            }
            None => Linear::forward_many(&[&mlp.gate, &mlp.up], h, batching)?
                .try_into()
                .map_err(|_| ModelError::BadBatch("gate/up projection returned the wrong count".into()))?,
        };
        Ok(match self.config.activation {
            Activation::Silu => hearth_layers::cpu::swiglu(&gate, &up, mlp.down.input_dtype(rows))?,
            Activation::GeluTanh => (hearth_layers::cpu::gelu_tanh(&gate)? * up)?,
        })
    }
}
