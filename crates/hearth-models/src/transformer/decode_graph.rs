//! Decode steps recorded once per batch size and replayed as one device graph (CUDA graphs).
//!
//! A decode step of a 1B model is ~500 small kernels; run op by op, the host's bookkeeping and
//! launches take longer than the GPU's work. A recorded step reads its inputs (token ids, positions,
//! cache slots) from device tensors owned here, so a replay only needs those rewritten.

use super::{BatchPlan, DecodeIndex, StepRope, Transformer};
use crate::{ModelError, Result};
use candle_core::{Device, Tensor};
use hearth_layers::device::{self, DeviceGraph};
use hearth_layers::rope::RopeRows;
use hearth_layers::PagedKvCache;
use std::collections::HashMap;
use std::sync::Mutex;

/// Smallest slot-list capacity recorded; lists grow by doubling (each growth records anew).
const MIN_SLOT_CAPACITY: usize = 4096;

pub(super) struct DecodeGraphs {
    state: Mutex<State>,
}

struct State {
    /// One recorded step per batch size.
    graphs: HashMap<usize, DecodeGraph>,
    /// cos/sin of positions `0..len` on the device, gathered inside the graph.
    tables: Option<RopeTables>,
    /// The most tokens any batch has had. candle's quantized matmuls keep grow-only scratch buffers
    /// that recorded steps point into; a larger batch may reallocate them, so it drops every graph.
    max_tokens: usize,
    /// Why recording failed, after which every step runs directly.
    failed: Option<String>,
    /// The KV cache the graphs read and write (by its first layer's key tensor): recorded steps hold
    /// its addresses, so a step on another cache drops them.
    cache: Option<candle_core::TensorId>,
}

struct RopeTables {
    len: usize,
    global: RopeRows,
    local: Option<RopeRows>,
}

struct DecodeGraph {
    graph: DeviceGraph,
    inputs: GraphInputs,
    /// The step's output, at the graph's fixed address: copied out after each replay.
    logits: Tensor,
}

/// One step's inputs as the host computes them.
struct StepInputs<'a> {
    tokens: &'a [u32],
    positions: &'a [u32],
    kv_slots: Vec<u32>,
    global: (Vec<u32>, Vec<u32>),
    local: Option<(Vec<u32>, Vec<u32>)>,
}

/// The device tensors a recorded step reads its inputs from.
struct GraphInputs {
    tokens: Tensor,
    positions: Tensor,
    kv_slots: Tensor,
    global: SlotList,
    local: Option<SlotList>,
}

/// Visible slots of every sequence, concatenated into a buffer of fixed capacity, and offsets.
struct SlotList {
    slots: Tensor,
    offsets: Tensor,
}

impl DecodeGraphs {
    /// Graphs when `enabled` and the device can record them.
    pub(super) fn for_device(device: &Device, enabled: bool) -> Option<Self> {
        (enabled && device::graphs_supported(device)).then(|| Self {
            state: Mutex::new(State { graphs: HashMap::new(), tables: None, max_tokens: 0, failed: None, cache: None }),
        })
    }

    /// Why recording was given up, if it was.
    pub(super) fn failure(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.failed.clone())
    }

    /// Runs a batch of one-token sequences through its recorded graph (recording it first when
    /// needed); `None` for any other batch, which the caller runs directly.
    pub(super) fn decode(&self, model: &Transformer, tokens: &[u32], plan: &mut BatchPlan, cache: &PagedKvCache) -> Result<Option<Tensor>> {
        let mut state = self.state.lock().map_err(|_| ModelError::BadBatch("decode graphs: lock poisoned".into()))?;
        state.note_batch(tokens.len());
        let decoding = plan.seqs.iter().all(|s| s.n_new == 1) && plan.logit_rows.is_none();
        let Some((keys, _)) = cache.device_layer(0)? else { return Ok(None) };
        if state.failed.is_some() || !decoding {
            return Ok(None);
        }
        if state.cache != Some(keys.id()) {
            state.graphs.clear();
            state.cache = Some(keys.id());
        }
        let has_local = plan.seqs.iter().any(|s| s.local_start.is_some());
        let step = StepInputs::of(tokens, plan, has_local);
        let end = plan.positions.iter().max().map_or(0, |&p| p as usize + 1);
        state.ensure_tables(model, end)?;
        let b = plan.seqs.len();
        if let Some(g) = state.graphs.get(&b).filter(|g| g.inputs.fits(&step)) {
            g.inputs.write(&step)?;
            g.graph.replay()?;
            return Ok(Some(g.logits.copy()?));
        }
        state.graphs.remove(&b);
        let inputs = GraphInputs::new(&step, &model.device)?;
        inputs.write(&step)?;
        inputs.attach(plan);
        let tables = state.tables.as_ref().map(|t| (t.global.clone(), t.local.clone())).ok_or_else(|| ModelError::BadBatch("decode graphs: no rope table".into()))?;
        // Everything this allocates is also freed inside it (or is its output): a recording must not
        // free memory allocated outside it.
        let run = || -> Result<Tensor> {
            let rope = StepRope {
                global: tables.0.select(&inputs.positions)?,
                local: tables.1.as_ref().map(|t| t.select(&inputs.positions)).transpose()?,
            };
            model.forward_planned(tokens, &inputs.tokens, plan, &rope, cache)
        };
        let warm = device::warm_up(&model.device, run)?;
        match device::record(&model.device, run) {
            Ok(Some((graph, logits))) => match graph.replay().and_then(|()| Ok(logits.copy()?)) {
                Ok(out) => {
                    state.graphs.insert(b, DecodeGraph { graph, inputs, logits });
                    Ok(Some(out))
                }
                Err(e) => state.give_up(e.to_string(), warm),
            },
            Ok(None) => state.give_up("the driver recorded no graph".into(), warm),
            Err(e) => state.give_up(e.to_string(), warm),
        }
    }
}

impl State {
    fn note_batch(&mut self, tokens: usize) {
        if tokens > self.max_tokens {
            self.max_tokens = tokens;
            self.graphs.clear();
        }
    }

    /// Rope tables covering positions `0..end`; growing them drops the graphs that read the old ones.
    fn ensure_tables(&mut self, model: &Transformer, end: usize) -> Result<()> {
        if self.tables.as_ref().is_some_and(|t| t.len >= end) {
            return Ok(());
        }
        let len = end.next_power_of_two().max(MIN_SLOT_CAPACITY).min(model.config.context_length.max(end));
        let positions: Vec<u32> = (0..len as u32).collect();
        let global = model.rope_global.rows(&positions)?;
        let local = model.rope_local.as_ref().map(|r| r.rows(&positions)).transpose()?;
        self.graphs.clear();
        self.tables = Some(RopeTables { len, global, local });
        Ok(())
    }

    /// Records nothing more on this device; this step's result came from the warm-up run.
    fn give_up(&mut self, reason: String, warm: Tensor) -> Result<Option<Tensor>> {
        self.graphs.clear();
        self.failed = Some(reason);
        Ok(Some(warm))
    }
}

impl<'a> StepInputs<'a> {
    fn of(tokens: &'a [u32], plan: &'a BatchPlan, has_local: bool) -> Self {
        let all: Vec<usize> = (0..plan.seqs.len()).collect();
        Self {
            tokens,
            positions: &plan.positions,
            kv_slots: plan.slots.iter().map(|&s| s as u32).collect(),
            global: plan.decode_slots(&all, false),
            local: has_local.then(|| plan.decode_slots(&all, true)),
        }
    }
}

impl GraphInputs {
    fn new(step: &StepInputs, device: &Device) -> Result<Self> {
        let u32s = |n: usize| Tensor::zeros(n, candle_core::DType::U32, device);
        let list = |(slots, offsets): &(Vec<u32>, Vec<u32>)| -> Result<SlotList> {
            let capacity = slots.len().next_power_of_two().max(MIN_SLOT_CAPACITY);
            Ok(SlotList { slots: u32s(capacity)?, offsets: u32s(offsets.len())? })
        };
        let b = step.tokens.len();
        Ok(Self {
            tokens: u32s(b)?,
            positions: u32s(b)?,
            kv_slots: u32s(b)?,
            global: list(&step.global)?,
            local: step.local.as_ref().map(list).transpose()?,
        })
    }

    fn fits(&self, step: &StepInputs) -> bool {
        let fits = |list: &SlotList, (slots, _): &(Vec<u32>, Vec<u32>)| slots.len() <= list.slots.elem_count();
        fits(&self.global, &step.global)
            && match (&self.local, &step.local) {
                (Some(l), Some(s)) => fits(l, s),
                (None, None) => true,
                _ => false,
            }
    }

    fn write(&self, step: &StepInputs) -> Result<()> {
        device::write_u32(&self.tokens, step.tokens)?;
        device::write_u32(&self.positions, step.positions)?;
        device::write_u32(&self.kv_slots, &step.kv_slots)?;
        self.global.write(&step.global)?;
        if let (Some(list), Some(s)) = (&self.local, &step.local) {
            list.write(s)?;
        }
        Ok(())
    }

    /// Points the plan's per-batch device indices at these tensors.
    fn attach(&self, plan: &mut BatchPlan) {
        let b = plan.seqs.len();
        let index = |l: &SlotList| Some(DecodeIndex { covered: (0..b).map(|i| (i, i)).collect(), slots: l.slots.clone(), offsets: l.offsets.clone(), q_rows: None });
        let _ = plan.slot_tensor.set(self.kv_slots.clone());
        let _ = plan.decode_global.set(index(&self.global));
        if let Some(local) = &self.local {
            let _ = plan.decode_local.set(index(local));
        }
    }
}

impl SlotList {
    fn write(&self, (slots, offsets): &(Vec<u32>, Vec<u32>)) -> Result<()> {
        device::write_u32(&self.slots.narrow(0, 0, slots.len())?, slots)?;
        device::write_u32(&self.offsets, offsets)?;
        Ok(())
    }
}
