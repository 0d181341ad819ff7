//! `hearth convert MODEL.gguf --to DIR`: a Hugging Face safetensors directory from a GGUF file.
//!
//! Weights are dequantized, llama's rope permutation is undone and Gemma's folded `+1` norm offset is
//! removed, so the directory is a plain HF checkpoint that hearth (or transformers) loads as such.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};
use hearth_formats::safetensors::{write_safetensors, StDtype, TensorToWrite};
use std::collections::BTreeMap;
use hearth_models::config::{Activation, Family, ModelConfig};
use hearth_models::weights::{hf_name, WeightFiles};
use hearth_layers::RopeScaling;
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ConvertArgs {
    /// The GGUF file to convert.
    pub model: PathBuf,
    /// Output directory (must not exist, or be empty).
    #[arg(long)]
    pub to: PathBuf,
    /// Weight type in the output.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: OutDtype,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OutDtype {
    F32,
    F16,
    Bf16,
}

impl OutDtype {
    fn pair(self) -> (DType, StDtype) {
        match self {
            OutDtype::F32 => (DType::F32, StDtype::F32),
            OutDtype::F16 => (DType::F16, StDtype::F16),
            OutDtype::Bf16 => (DType::BF16, StDtype::BF16),
        }
    }
}

pub fn run(args: ConvertArgs) -> Result<()> {
    check_target(&args.to)?;
    // Model errors already name the file (and the field) that failed.
    let m = hearth_models::open(&args.model)?;
    let WeightFiles::Gguf(file) = &m.files else { bail!("{} is not a GGUF file", args.model.display()) };
    let parent = args.to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    create_dir(parent)?;
    // Everything is written into a sibling temp dir and renamed at the end: no half-written model.
    let tmp = parent.join(format!(".{}.partial", args.to.file_name().and_then(|n| n.to_str()).unwrap_or("convert")));
    let _ = std::fs::remove_dir_all(&tmp);
    create_dir(&tmp)?;
    let result = write_all(&m, file, &tmp, args.dtype);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if args.to.exists() {
        // Empty, checked above.
        std::fs::remove_dir(&args.to).with_context(|| format!("replacing {}", args.to.display()))?;
    }
    std::fs::rename(&tmp, &args.to).with_context(|| format!("moving the result to {}", args.to.display()))?;
    eprintln!("wrote {}", args.to.display());
    Ok(())
}

/// The output must not exist yet, or be an empty directory: a conversion never overwrites anything.
fn check_target(to: &Path) -> Result<()> {
    if !to.exists() {
        return Ok(());
    }
    if !to.is_dir() {
        bail!("{} already exists and is not a directory", to.display());
    }
    let mut entries = std::fs::read_dir(to).with_context(|| format!("reading {}", to.display()))?;
    if entries.next().is_some() {
        bail!("{} already exists and is not empty", to.display());
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn write_all(m: &hearth_models::ModelFiles, file: &hearth_formats::gguf::GgufFile, dir: &Path, dtype: OutDtype) -> Result<()> {
    let (candle_dtype, st_dtype) = dtype.pair();
    let cfg = &m.config;
    let mut tensors = Vec::new();
    let total = file.tensors().len();
    // A progress line rewritten in place only makes sense on a terminal; logs would get 300 copies.
    let progress = std::io::stderr().is_terminal();
    for (n, info) in file.tensors().iter().enumerate() {
        let Some(name) = hf_name(&info.name, cfg.family) else { continue };
        if progress {
            eprint!("\rconverting tensor {}/{total}", n + 1);
        }
        let w = m.files.require(&info.name, cfg.family, &Device::Cpu)?.to_f32(&Device::Cpu)?;
        let w = fix_layout(&info.name, w, cfg)?;
        let w = w.to_dtype(candle_dtype)?;
        let shape = w.dims().to_vec();
        let bytes = tensor_bytes(&w)?;
        tensors.push((name, st_dtype, shape, bytes));
    }
    if progress {
        eprintln!();
    }
    let views: Vec<TensorToWrite<'_>> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| TensorToWrite { name, dtype: *dtype, shape, data })
        .collect();
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&dir.join("model.safetensors"), &views, &meta).context("writing model.safetensors")?;
    write_json(&dir.join("config.json"), &hf_config(cfg, candle_dtype, m, file.tensor("output.weight").is_none())?)?;
    let tok = m.tokenizer.to_hf_json().context("exporting tokenizer.json")?;
    std::fs::write(dir.join("tokenizer.json"), tok).context("writing tokenizer.json")?;
    write_json(&dir.join("tokenizer_config.json"), &m.tokenizer.tokenizer_config_json(m.chat_template.as_deref()))?;
    let gen = json!({ "bos_token_id": m.tokenizer.bos_id(), "eos_token_id": m.eos_ids });
    write_json(&dir.join("generation_config.json"), &gen)?;
    Ok(())
}

/// Undo GGUF-specific layouts: llama's q/k row permutation and Gemma's folded norm offset.
fn fix_layout(gguf_name: &str, w: Tensor, cfg: &ModelConfig) -> Result<Tensor> {
    let is = |suffix: &str| gguf_name.ends_with(suffix);
    if cfg.family == Family::Llama && (is("attn_q.weight") || is("attn_k.weight")) {
        let heads = if is("attn_q.weight") { cfg.n_heads } else { cfg.n_kv_heads };
        let (rows, cols) = w.dims2()?;
        let half = rows / heads / 2;
        return Ok(w.reshape((heads, half, 2, cols))?.transpose(1, 2)?.contiguous()?.reshape((rows, cols))?);
    }
    if cfg.family == Family::Gemma3 && is("norm.weight") {
        return Ok((w - 1.0)?);
    }
    Ok(w)
}

fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let t = t.flatten_all()?;
    Ok(match t.dtype() {
        DType::F32 => t.to_vec1::<f32>()?.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::F16 => t.to_vec1::<half::f16>()?.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::BF16 => t.to_vec1::<half::bf16>()?.iter().flat_map(|x| x.to_le_bytes()).collect(),
        other => bail!("cannot write {other:?} tensors"),
    })
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(v)?).with_context(|| format!("writing {}", path.display()))
}

fn hf_config(c: &ModelConfig, dtype: DType, m: &hearth_models::ModelFiles, tied: bool) -> Result<Value> {
    let model_type = match c.family {
        Family::Llama => "llama",
        Family::Qwen2 => "qwen2",
        Family::Qwen3 => "qwen3",
        Family::Gemma3 => "gemma3_text",
    };
    let mut v = json!({
        "architectures": [architecture_class(c.family)],
        "model_type": model_type,
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "rms_norm_eps": short_f32(c.rms_eps),
        "max_position_embeddings": c.context_length,
        "rope_theta": short_f32(c.rope_base),
        "rope_scaling": rope_scaling_json(&c.rope_scaling, c)?,
        "tie_word_embeddings": tied,
        "torch_dtype": match dtype { DType::F16 => "float16", DType::BF16 => "bfloat16", _ => "float32" },
        "hidden_act": match c.activation { Activation::Silu => "silu", Activation::GeluTanh => "gelu_pytorch_tanh" },
        "bos_token_id": m.tokenizer.bos_id(),
        "eos_token_id": m.eos_ids,
    });
    if c.family == Family::Qwen2 {
        v["use_sliding_window"] = json!(false);
    }
    if c.family == Family::Gemma3 {
        v["query_pre_attn_scalar"] = json!(1.0 / (c.attn_scale * c.attn_scale));
        v["rope_local_base_freq"] = json!(c.local_rope_base.map(short_f32));
        v["sliding_window"] = json!(c.sliding_window);
        let types: Vec<&str> = (0..c.n_layers).map(|i| if c.is_sliding(i) { "sliding_attention" } else { "full_attention" }).collect();
        v["layer_types"] = json!(types);
        v["final_logit_softcapping"] = json!(c.final_logit_softcap);
    } else if let Some(w) = c.sliding_window {
        v["sliding_window"] = json!(w);
    }
    Ok(v)
}

/// An f32 as the shortest decimal that reads back as it (1e-5, not 9.999999747378752e-6).
fn short_f32(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

fn architecture_class(f: Family) -> &'static str {
    match f {
        Family::Llama => "LlamaForCausalLM",
        Family::Qwen2 => "Qwen2ForCausalLM",
        Family::Qwen3 => "Qwen3ForCausalLM",
        Family::Gemma3 => "Gemma3ForCausalLM",
    }
}

/// HF rope_scaling for a GGUF scaling. llama.cpp stores Llama 3 scaling as per-frequency factors; the
/// HF parameters are recovered from them (low_freq_factor fixed at 1, which identifies the rest).
fn rope_scaling_json(s: &RopeScaling, c: &ModelConfig) -> Result<Value> {
    Ok(match s {
        RopeScaling::None => Value::Null,
        RopeScaling::Linear { factor } => json!({"rope_type": "linear", "factor": factor}),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position } => json!({
            "rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor, "original_max_position_embeddings": original_max_position,
        }),
        RopeScaling::FreqFactors(f) => crate::convert_rope::llama3_from_factors(f, c.rope_base, c.head_dim)?,
    })
}
