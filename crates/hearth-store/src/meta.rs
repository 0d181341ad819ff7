//! What a model is (format, architecture, quantization), read from headers only: the GGUF metadata, or a
//! safetensors directory's config.json.

use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct ModelMeta {
    pub format: String,
    pub architecture: Option<String>,
    pub quantization: Option<String>,
}

/// Reads the GGUF header of `path`; unreadable headers leave the fields empty (the file still gets stored,
/// the loader reports the problem when it is run).
pub fn gguf_meta(path: &Path) -> ModelMeta {
    match hearth_formats::gguf::GgufFile::open(path) {
        Ok(file) => ModelMeta {
            format: "gguf".into(),
            architecture: file.architecture().map(str::to_string),
            quantization: file.quantization_label().map(str::to_string),
        },
        Err(e) => {
            tracing::warn!("{}: GGUF header unreadable: {e}", path.display());
            ModelMeta { format: "gguf".into(), ..ModelMeta::default() }
        }
    }
}

/// Reads `config.json` of a safetensors directory for the architecture and dtype.
pub fn safetensors_meta(config_json: &Path) -> ModelMeta {
    let parsed: Option<serde_json::Value> = std::fs::read(config_json).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let field = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let architecture = parsed.as_ref().and_then(|v| {
        v.get("architectures").and_then(|a| a.get(0)).and_then(|a| a.as_str()).map(str::to_string).or_else(|| field(v, "model_type"))
    });
    let quantization = parsed.as_ref().and_then(|v| field(v, "torch_dtype").or_else(|| field(v, "dtype"))).map(|d| d.to_uppercase());
    ModelMeta { format: "safetensors".into(), architecture, quantization }
}

/// A quantization label guessed from a GGUF file name (`…Q4_K_M.gguf`), for choosing among a repo's files.
pub fn quant_from_file_name(name: &str) -> Option<String> {
    let stem = name.strip_suffix(".gguf").unwrap_or(name);
    let upper = stem.to_uppercase();
    let token = upper.rsplit(['.', '-', '_']).next()?;
    // Labels like Q4_K_M contain underscores: take the longest known label the stem ends with.
    const LABELS: &[&str] = &[
        "Q4_K_M", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q3_K_M", "Q3_K_S", "Q3_K_L", "Q2_K", "Q6_K", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
        "IQ4_XS", "IQ4_NL", "F16", "BF16", "F32",
    ];
    LABELS.iter().find(|l| upper.ends_with(*l)).map(|l| l.to_string()).or_else(|| (token.starts_with('Q') && token.len() <= 6).then(|| token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quant_labels_from_names() {
        assert_eq!(quant_from_file_name("SmolLM2-135M-Instruct.Q4_1.gguf").as_deref(), Some("Q4_1"));
        assert_eq!(quant_from_file_name("gemma-3-270m-q4_k_m.gguf").as_deref(), Some("Q4_K_M"));
        assert_eq!(quant_from_file_name("model.gguf"), None);
    }
}
