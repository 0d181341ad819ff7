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

/// How many files the GGUF at `path` is split into (its `split.count`; 1 for a whole file), from its
/// header; `None` when it is no readable GGUF.
pub fn gguf_split_count(path: &Path) -> Option<u64> {
    let file = hearth_formats::gguf::GgufFile::open(path).ok()?;
    Some(file.metadata().get_u64("split.count").unwrap_or(1))
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

/// A part of a split GGUF, named as llama.cpp's gguf-split names them: `<base>-00001-of-00003.gguf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitPart<'a> {
    /// The name without the `-NNNNN-of-NNNNN.gguf` suffix (folders included): shared by the set.
    pub base: &'a str,
    /// 1-based.
    pub index: u32,
    pub count: u32,
}

impl SplitPart<'_> {
    /// The name of part `index` of this set.
    pub fn name_of(&self, index: u32) -> String {
        format!("{}-{index:05}-of-{:05}.gguf", self.base, self.count)
    }
}

/// `Some` when `name` is one part of a split GGUF of two or more parts.
pub fn split_part(name: &str) -> Option<SplitPart<'_>> {
    let stem = name.strip_suffix(".gguf")?;
    let (head, count) = stem.rsplit_once("-of-")?;
    let (base, index) = head.rsplit_once('-')?;
    let number = |s: &str| (s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u32>().ok()).flatten();
    let (index, count) = (number(index)?, number(count)?);
    (!base.is_empty() && count >= 2 && (1..=count).contains(&index)).then_some(SplitPart { base, index, count })
}

/// A quantization label guessed from a GGUF file name (`…Q4_K_M.gguf`, `…Q4_K_M-00001-of-00002.gguf`),
/// for choosing among a repo's files.
pub fn quant_from_file_name(name: &str) -> Option<String> {
    let stem = split_part(name).map(|p| p.base).unwrap_or_else(|| name.strip_suffix(".gguf").unwrap_or(name));
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
        assert_eq!(quant_from_file_name("Q8_0/Big-Q8_0-00001-of-00002.gguf").as_deref(), Some("Q8_0"));
    }

    #[test]
    fn split_part_names() {
        let p = split_part("sub/Big-Q8_0-00002-of-00003.gguf").unwrap();
        assert_eq!((p.base, p.index, p.count), ("sub/Big-Q8_0", 2, 3));
        assert_eq!(p.name_of(1), "sub/Big-Q8_0-00001-of-00003.gguf");
        for not in ["Big-Q8_0.gguf", "Big-00001-of-00001.gguf", "Big-00004-of-00003.gguf", "Big-1-of-3.gguf", "-00001-of-00002.gguf", "Big-00001-of-00002.bin"] {
            assert!(split_part(not).is_none(), "{not}");
        }
    }
}
