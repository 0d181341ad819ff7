//! One configuration for every supported family, read from GGUF metadata or a Hugging Face
//! `config.json`. Family differences are data here, not code elsewhere.

use crate::{ModelError, Result};
use hearth_formats::gguf::GgufMetadata;
use hearth_layers::{RopeScaling, RopeStyle};
use serde_json::Value;

/// Architecture families; each one is a set of switches on the shared decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama 2/3.x, SmolLM2, TinyLlama, Mistral.
    Llama,
    /// Qwen2 / Qwen2.5: biases on q, k and v.
    Qwen2,
    /// Qwen3: per-head RMSNorm of q and k.
    Qwen3,
    /// Gemma 3 text: sandwich norms, q/k norms, scaled embeddings, local/global attention.
    Gemma3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The architecture name as the file states it (`llama`, `qwen2`, `gemma3_text`…).
    pub architecture: String,
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub rms_eps: f32,
    pub context_length: usize,
    pub rope_base: f32,
    pub rope_scaling: RopeScaling,
    pub rope_style: RopeStyle,
    /// Rope base of sliding-window layers when it differs (Gemma 3: 10 000).
    pub local_rope_base: Option<f32>,
    pub sliding_window: Option<usize>,
    /// Per layer: does it use the sliding window?
    pub sliding_layers: Vec<bool>,
    pub qkv_bias: bool,
    pub qk_norm: bool,
    /// Norms after attention and after the MLP as well as before (Gemma).
    pub sandwich_norms: bool,
    /// Added to RMSNorm weights at load (1.0 for Gemma's HF checkpoints, which store `w - 1`).
    pub norm_offset: f32,
    pub embed_scale: Option<f32>,
    pub activation: Activation,
    pub attn_scale: f32,
    pub final_logit_softcap: Option<f32>,
}

impl ModelConfig {
    pub fn family_of(architecture: &str) -> Option<Family> {
        Some(match architecture {
            "llama" | "mistral" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            "gemma3" | "gemma3_text" => Family::Gemma3,
            _ => return None,
        })
    }

    /// Parameters of the GGUF file whose metadata is `md` (keys as llama.cpp's converter writes them).
    pub fn from_gguf(md: &GgufMetadata, rope_freq_factors: Option<Vec<f32>>) -> Result<Self> {
        let arch = md.architecture().ok_or_else(|| missing("general.architecture"))?.to_string();
        let family = Self::family_of(&arch).ok_or_else(|| ModelError::UnknownArchitecture(arch.clone()))?;
        let key = |k: &str| format!("{arch}.{k}");
        let req = |k: &str| -> Result<usize> {
            md.get_u64(&key(k)).map(|v| v as usize).ok_or_else(|| missing(&key(k)))
        };
        let hidden_size = req("embedding_length")?;
        let n_heads = req("attention.head_count")?;
        let n_layers = req("block_count")?;
        let head_dim = md.get_u64(&key("attention.key_length")).map(|v| v as usize).unwrap_or(hidden_size / n_heads.max(1));
        let vocab_size = md
            .get_u64(&key("vocab_size"))
            .map(|v| v as usize)
            .or_else(|| md.get_array("tokenizer.ggml.tokens").map(|a| a.len()))
            .ok_or_else(|| missing("tokenizer.ggml.tokens"))?;
        let rope_scaling = match (md.get_str(&key("rope.scaling.type")), rope_freq_factors) {
            (_, Some(factors)) => RopeScaling::FreqFactors(factors),
            (Some("linear"), _) => RopeScaling::Linear { factor: md.get_f64(&key("rope.scaling.factor")).unwrap_or(1.0) as f32 },
            _ => RopeScaling::None,
        };
        let sliding_window = md.get_u64(&key("attention.sliding_window")).map(|v| v as usize).filter(|&w| w > 0);
        let sliding_layers = gguf_sliding_layers(md, &key("attention.sliding_window_pattern"), family, n_layers, sliding_window);
        let mut cfg = Self::family_defaults(arch.clone(), family, hidden_size, head_dim);
        cfg.vocab_size = vocab_size;
        cfg.intermediate_size = req("feed_forward_length")?;
        cfg.n_layers = n_layers;
        cfg.n_heads = n_heads;
        cfg.n_kv_heads = md.get_u64(&key("attention.head_count_kv")).map(|v| v as usize).unwrap_or(n_heads);
        cfg.rms_eps = md.get_f64(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5) as f32;
        cfg.context_length = req("context_length")?;
        cfg.rope_base = md.get_f64(&key("rope.freq_base")).unwrap_or(10_000.0) as f32;
        cfg.rope_scaling = rope_scaling;
        // llama.cpp permutes q/k rows of `llama` models so adjacent pairs rotate; the others keep HF's layout.
        cfg.rope_style = if family == Family::Llama { RopeStyle::Interleaved } else { RopeStyle::Half };
        if family == Family::Gemma3 {
            cfg.local_rope_base = Some(md.get_f64(&key("rope.freq_base_swa")).unwrap_or(10_000.0) as f32);
        }
        cfg.sliding_window = sliding_window;
        cfg.sliding_layers = sliding_layers;
        cfg.final_logit_softcap = md.get_f64(&key("final_logit_softcapping")).map(|v| v as f32).filter(|&c| c > 0.0);
        cfg.norm_offset = 0.0; // llama.cpp's converter already added Gemma's +1 to the norm weights
        cfg.validate()
    }

    /// Parameters of a Hugging Face checkpoint from its `config.json`.
    pub fn from_hf_config(config: &Value) -> Result<Self> {
        // Multimodal Gemma 3 checkpoints nest the language model's settings.
        let c = config.get("text_config").unwrap_or(config);
        let arch = c.get("model_type").and_then(Value::as_str).ok_or_else(|| missing("model_type"))?.to_string();
        let family = Self::family_of(&arch).ok_or_else(|| ModelError::UnknownArchitecture(arch.clone()))?;
        let num = |k: &str| c.get(k).and_then(Value::as_f64);
        let req = |k: &str| num(k).map(|v| v as usize).ok_or_else(|| missing(k));
        let hidden_size = req("hidden_size")?;
        let n_heads = req("num_attention_heads")?;
        let head_dim = num("head_dim").map(|v| v as usize).unwrap_or(hidden_size / n_heads.max(1));
        let n_layers = req("num_hidden_layers")?;
        let mut cfg = Self::family_defaults(arch.clone(), family, hidden_size, head_dim);
        cfg.vocab_size = req("vocab_size")?;
        cfg.intermediate_size = req("intermediate_size")?;
        cfg.n_layers = n_layers;
        cfg.n_heads = n_heads;
        cfg.n_kv_heads = num("num_key_value_heads").map(|v| v as usize).unwrap_or(n_heads);
        cfg.rms_eps = num("rms_norm_eps").unwrap_or(1e-6) as f32;
        cfg.context_length = req("max_position_embeddings")?;
        cfg.rope_base = num("rope_theta").unwrap_or(10_000.0) as f32;
        cfg.rope_scaling = hf_rope_scaling(c.get("rope_scaling"))?;
        cfg.rope_style = RopeStyle::Half;
        cfg.sliding_window = hf_sliding_window(c, family);
        cfg.sliding_layers = hf_sliding_layers(c, family, n_layers, cfg.sliding_window);
        if family == Family::Gemma3 {
            cfg.local_rope_base = Some(num("rope_local_base_freq").unwrap_or(10_000.0) as f32);
            let scalar = num("query_pre_attn_scalar").unwrap_or(head_dim as f64);
            cfg.attn_scale = (1.0 / scalar.sqrt()) as f32;
            cfg.norm_offset = 1.0;
        }
        if family == Family::Qwen2 || c.get("attention_bias").and_then(Value::as_bool) == Some(true) {
            cfg.qkv_bias = true;
        }
        cfg.final_logit_softcap = num("final_logit_softcapping").map(|v| v as f32).filter(|&v| v > 0.0);
        cfg.validate()
    }

    fn family_defaults(architecture: String, family: Family, hidden_size: usize, head_dim: usize) -> Self {
        let gemma = family == Family::Gemma3;
        Self {
            architecture,
            family,
            vocab_size: 0,
            hidden_size,
            intermediate_size: 0,
            n_layers: 0,
            n_heads: 0,
            n_kv_heads: 0,
            head_dim,
            rms_eps: 1e-5,
            context_length: 0,
            rope_base: 10_000.0,
            rope_scaling: RopeScaling::None,
            rope_style: RopeStyle::Half,
            local_rope_base: None,
            sliding_window: None,
            sliding_layers: Vec::new(),
            qkv_bias: family == Family::Qwen2,
            qk_norm: matches!(family, Family::Qwen3 | Family::Gemma3),
            sandwich_norms: gemma,
            norm_offset: 0.0,
            embed_scale: gemma.then(|| (hidden_size as f32).sqrt()),
            activation: if gemma { Activation::GeluTanh } else { Activation::Silu },
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            final_logit_softcap: None,
        }
    }

    fn validate(self) -> Result<Self> {
        let bad = |field: &str, why: String| Err(ModelError::BadConfig { field: field.into(), reason: why });
        if self.n_heads == 0 || self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad("head_count_kv", format!("{} query heads cannot share {} kv heads", self.n_heads, self.n_kv_heads));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad("head_dim", format!("{} must be even and non-zero", self.head_dim));
        }
        for (field, v) in [("vocab_size", self.vocab_size), ("hidden_size", self.hidden_size), ("n_layers", self.n_layers), ("context_length", self.context_length), ("intermediate_size", self.intermediate_size)] {
            if v == 0 {
                return bad(field, "must be positive".into());
            }
        }
        Ok(self)
    }

    /// Is layer `i` a sliding-window layer?
    pub fn is_sliding(&self, layer: usize) -> bool {
        self.sliding_window.is_some() && self.sliding_layers.get(layer).copied().unwrap_or(false)
    }
}

fn missing(field: &str) -> ModelError {
    ModelError::MissingField(field.to_string())
}

fn gguf_sliding_layers(md: &GgufMetadata, pattern_key: &str, family: Family, n_layers: usize, window: Option<usize>) -> Vec<bool> {
    if window.is_none() {
        return vec![false; n_layers];
    }
    if let Some(flags) = md.get_array(pattern_key).and_then(|a| a.to_i64_vec()) {
        return (0..n_layers).map(|i| flags.get(i).is_some_and(|&f| f != 0)).collect();
    }
    // Gemma 3 alternates five local layers with one global; other families slide on every layer.
    let period = md.get_u64(pattern_key).map(|p| p as usize).unwrap_or(if family == Family::Gemma3 { 6 } else { 0 });
    pattern_layers(n_layers, period)
}

fn pattern_layers(n_layers: usize, period: usize) -> Vec<bool> {
    (0..n_layers).map(|i| period == 0 || i % period < period - 1).collect()
}

fn hf_sliding_window(c: &Value, family: Family) -> Option<usize> {
    // Qwen2 configs carry a sliding_window that is off unless use_sliding_window is true.
    let qwen = family == Family::Qwen2 || family == Family::Qwen3;
    if qwen && c.get("use_sliding_window").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    c.get("sliding_window").and_then(Value::as_u64).map(|w| w as usize).filter(|&w| w > 0)
}

fn hf_sliding_layers(c: &Value, family: Family, n_layers: usize, window: Option<usize>) -> Vec<bool> {
    if window.is_none() {
        return vec![false; n_layers];
    }
    if let Some(types) = c.get("layer_types").and_then(Value::as_array) {
        return (0..n_layers)
            .map(|i| types.get(i).and_then(Value::as_str) == Some("sliding_attention"))
            .collect();
    }
    let default_period = if family == Family::Gemma3 { 6 } else { 0 };
    let period = c.get("sliding_window_pattern").and_then(Value::as_u64).map(|p| p as usize).unwrap_or(default_period);
    pattern_layers(n_layers, period)
}

fn hf_rope_scaling(v: Option<&Value>) -> Result<RopeScaling> {
    let Some(s) = v.filter(|s| !s.is_null()) else { return Ok(RopeScaling::None) };
    let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(Value::as_str).unwrap_or("default");
    let f = |k: &str, default: f64| s.get(k).and_then(Value::as_f64).unwrap_or(default) as f32;
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear { factor: f("factor", 1.0) }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: f("factor", 8.0),
            low_freq_factor: f("low_freq_factor", 1.0),
            high_freq_factor: f("high_freq_factor", 4.0),
            original_max_position: f("original_max_position_embeddings", 8192.0),
        }),
        other => Err(ModelError::BadConfig { field: "rope_scaling.rope_type".into(), reason: format!("'{other}' is not supported") }),
    }
}
