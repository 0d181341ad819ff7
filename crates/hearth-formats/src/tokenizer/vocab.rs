//! The vocabulary read from GGUF `tokenizer.ggml.*` metadata: token texts, scores, attributes,
//! special ids and the end-of-generation set, resolved the way llama.cpp's `llama_vocab::load` does.

use std::collections::{BTreeSet, HashMap};

use super::TokenizerError;
use crate::gguf::{GgufArray, GgufMetadata};

/// Attribute bits, as llama.cpp keeps them: a token can gain CONTROL or UNUSED after loading.
pub(crate) mod attr {
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
}

/// The GGUF token type of one vocabulary entry (`tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_gguf(code: i64) -> TokenType {
        match code {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }

    fn attr(self) -> u32 {
        match self {
            TokenType::Undefined => 0,
            TokenType::Normal => attr::NORMAL,
            TokenType::Unknown => attr::UNKNOWN,
            TokenType::Control => attr::CONTROL,
            TokenType::UserDefined => attr::USER_DEFINED,
            TokenType::Unused => attr::UNUSED,
            TokenType::Byte => attr::BYTE,
        }
    }
}

/// Which algorithm turns text fragments into ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VocabKind {
    /// `tokenizer.ggml.model = llama`: SentencePiece, score-driven merges with byte fallback.
    Spm,
    /// `tokenizer.ggml.model = gpt2`: byte-level BPE with ranked merges.
    Bpe,
}

/// Ids of the special tokens named in the metadata (or llama.cpp's defaults).
#[derive(Debug, Clone, Default)]
pub(crate) struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct Vocab {
    pub kind: VocabKind,
    pub pre: String,
    pub tokens: Vec<String>,
    pub types: Vec<TokenType>,
    pub scores: Vec<f32>,
    pub attrs: Vec<u32>,
    pub token_to_id: HashMap<String, u32>,
    pub special: SpecialIds,
    pub eog: BTreeSet<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    /// CONTROL, USER_DEFINED and UNKNOWN tokens, longest text first: the order in which llama.cpp
    /// splits them out of raw text.
    pub special_cache: Vec<u32>,
    pub chat_template: Option<String>,
}

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";

/// Texts llama.cpp recognises as end-of-turn / end-of-generation when the metadata does not say.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
pub(crate) const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];
/// Fill-in-the-middle markers: llama.cpp promotes the first one of each kind to CONTROL.
const FIM_TEXTS: &[&[&str]] = &[
    &[
        "<|fim_prefix|>",
        "<fim-prefix>",
        "<fim_prefix>",
        "<｜fim▁begin｜>",
        "<PRE>",
        "▁<PRE>",
        "<|code_prefix|>",
        "<|prefix|>",
    ],
    &[
        "<|fim_suffix|>",
        "<fim-suffix>",
        "<fim_suffix>",
        "<｜fim▁hole｜>",
        "<SUF>",
        "▁<SUF>",
        "<|code_suffix|>",
        "<|suffix|>",
    ],
    &[
        "<|fim_middle|>",
        "<fim-middle>",
        "<fim_middle>",
        "<｜fim▁end｜>",
        "<MID>",
        "▁<MID>",
        "<|code_middle|>",
        "<|middle|>",
    ],
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    &[
        "<|fim_repo|>",
        "<|repo_name|>",
        "<fim-repo>",
        "<REPO>",
        "<reponame>",
    ],
    &["<|file_sep|>"],
];
const FIM_KEYS: &[&str] = &[
    "tokenizer.ggml.fim_pre_token_id",
    "tokenizer.ggml.fim_suf_token_id",
    "tokenizer.ggml.fim_mid_token_id",
    "tokenizer.ggml.fim_pad_token_id",
    "tokenizer.ggml.fim_rep_token_id",
    "tokenizer.ggml.fim_sep_token_id",
];

impl Vocab {
    pub fn from_gguf(md: &GgufMetadata) -> Result<Vocab, TokenizerError> {
        let model = md
            .get_str(KEY_MODEL)
            .ok_or(TokenizerError::MissingKey { key: KEY_MODEL })?;
        let kind = match model {
            "llama" => VocabKind::Spm,
            "gpt2" => VocabKind::Bpe,
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let pre = md.get_str(KEY_PRE).unwrap_or("default").to_string();
        let tokens = read_tokens(md)?;
        let n = tokens.len();
        let scores = read_scores(md, n)?;
        let types = read_types(md, n)?;
        let attrs = types.iter().map(|t| t.attr()).collect();
        // Later duplicates win, as in llama.cpp's `token_to_id[word] = i`.
        let token_to_id = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut vocab = Vocab {
            kind,
            pre,
            tokens,
            types,
            scores,
            attrs,
            token_to_id,
            special: SpecialIds::default(),
            eog: BTreeSet::new(),
            add_bos: false,
            add_eos: false,
            add_space_prefix: false,
            special_cache: Vec::new(),
            chat_template: md.get_str("tokenizer.chat_template").map(str::to_string),
        };
        vocab.resolve_flags(md);
        vocab.resolve_special_ids(md);
        vocab.promote_by_text(md);
        vocab.build_special_cache();
        vocab.check_required_ids()?;
        Ok(vocab)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    pub fn attr(&self, id: u32) -> u32 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    pub fn text(&self, id: u32) -> Result<&str, TokenizerError> {
        self.tokens
            .get(id as usize)
            .map(String::as_str)
            .ok_or(TokenizerError::InvalidTokenId {
                id,
                vocab_size: self.tokens.len(),
            })
    }

    /// add_bos / add_eos / add_space_prefix: the model type's default, then the metadata's word.
    fn resolve_flags(&mut self, md: &GgufMetadata) {
        let (bos, space) = match self.kind {
            VocabKind::Spm => (true, true),
            VocabKind::Bpe => (
                matches!(
                    self.pre.as_str(),
                    "llama3"
                        | "llama-v3"
                        | "llama-bpe"
                        | "falcon3"
                        | "pixtral"
                        | "tekken"
                        | "chameleon"
                ),
                false,
            ),
        };
        self.add_bos = md.get_bool("tokenizer.ggml.add_bos_token").unwrap_or(bos);
        self.add_eos = md.get_bool("tokenizer.ggml.add_eos_token").unwrap_or(false);
        self.add_space_prefix = match self.kind {
            VocabKind::Spm => md
                .get_bool("tokenizer.ggml.add_space_prefix")
                .unwrap_or(space),
            // llama.cpp ignores the flag for byte-level BPE: spaces are part of the pre-tokenizer.
            VocabKind::Bpe => false,
        };
    }

    fn resolve_special_ids(&mut self, md: &GgufMetadata) {
        let n = self.len() as u64;
        let valid = |id: u32| (u64::from(id) < n).then_some(id);
        let read = |key: &str| {
            md.get_u64(key)
                .and_then(|v| u32::try_from(v).ok())
                .and_then(valid)
        };
        let (bos, eos, unk) = match self.kind {
            VocabKind::Spm => (Some(1), Some(2), Some(0)),
            VocabKind::Bpe => (Some(11), Some(11), None),
        };
        self.special = SpecialIds {
            bos: read("tokenizer.ggml.bos_token_id").or(bos.and_then(valid)),
            eos: read("tokenizer.ggml.eos_token_id").or(eos.and_then(valid)),
            eot: read("tokenizer.ggml.eot_token_id"),
            eom: read("tokenizer.ggml.eom_token_id"),
            unk: read("tokenizer.ggml.unknown_token_id").or(unk.and_then(valid)),
            pad: read("tokenizer.ggml.padding_token_id"),
        };
    }

    /// Text-based detection llama.cpp applies on load: EOT/EOM/FIM/EOG tokens become CONTROL,
    /// control tokens named "unused" become UNUSED, and the end-of-generation set is collected.
    fn promote_by_text(&mut self, md: &GgufMetadata) {
        if self.special.eot.is_none() {
            self.special.eot = self.promote_first(EOT_TEXTS);
        }
        if self.special.eom.is_none() {
            self.special.eom = self.promote_first(&["<|eom_id|>"]);
        }
        let mut eog = BTreeSet::new();
        for (texts, key) in FIM_TEXTS.iter().zip(FIM_KEYS) {
            let fim = md
                .get_u64(key)
                .and_then(|v| u32::try_from(v).ok())
                .or_else(|| self.promote_first(texts));
            // FIM pad, repo and file-separator tokens end generation (llama.cpp's list).
            if matches!(
                *key,
                "tokenizer.ggml.fim_pad_token_id"
                    | "tokenizer.ggml.fim_rep_token_id"
                    | "tokenizer.ggml.fim_sep_token_id"
            ) {
                eog.extend(fim);
            }
        }
        for (i, text) in self.tokens.iter().enumerate() {
            if self.attrs[i] & attr::CONTROL != 0 && text.contains("unused") {
                self.attrs[i] |= attr::UNUSED;
            }
            if EOG_TEXTS.contains(&text.as_str()) {
                eog.insert(i as u32);
                self.attrs[i] |= attr::CONTROL;
            }
            // gpt-oss "harmony" markers are always rendered.
            if matches!(
                text.as_str(),
                "<|channel|>" | "<|message|>" | "<|start|>" | "<|constrain|>"
            ) {
                self.attrs[i] = attr::USER_DEFINED;
            }
        }
        eog.extend(self.special.eos);
        eog.extend(self.special.eot);
        eog.extend(self.special.eom);
        self.drop_ambiguous_eog(&mut eog);
        self.eog = eog;
    }

    /// The first token (lowest id) whose text is in `texts`, marked CONTROL. llama.cpp takes the first
    /// in hash-map order, which is unspecified; the lowest id is a stable choice.
    fn promote_first(&mut self, texts: &[&str]) -> Option<u32> {
        let id = texts.iter().filter_map(|t| self.id(t)).min()?;
        if let Some(a) = self.attrs.get_mut(id as usize) {
            *a |= attr::CONTROL;
        }
        Some(id)
    }

    /// `<|end|>` is not an end of generation in harmony / solar-open vocabularies, nor `</s>` in
    /// gemma4 / plamo ones (llama.cpp's workarounds).
    fn drop_ambiguous_eog(&mut self, eog: &mut BTreeSet<u32>) {
        let has = |t: &str| self.id(t).is_some_and(|id| eog.contains(&id));
        let drop_end = (has("<|return|>") && has("<|call|>") && has("<|end|>"))
            || (has("<|calls|>") && has("<|flush|>") && has("<|end|>"));
        let drop_s = (has("<|tool_response>") || has("<|plamo:eos|>")) && has("</s>");
        for (text, drop, new_attr) in [
            ("<|end|>", drop_end, attr::USER_DEFINED),
            ("</s>", drop_s, attr::NORMAL),
        ] {
            if let (true, Some(id)) = (drop, self.id(text)) {
                eog.remove(&id);
                if let Some(a) = self.attrs.get_mut(id as usize) {
                    *a = new_attr;
                }
            }
        }
    }

    fn build_special_cache(&mut self) {
        let mask = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let mut ids: Vec<u32> = (0..self.len() as u32)
            .filter(|&id| self.attr(id) & mask != 0)
            .collect();
        // Longest first; ties by id so the order is deterministic (llama.cpp's sort is unstable).
        ids.sort_by_key(|&id| (std::cmp::Reverse(self.tokens[id as usize].len()), id));
        self.special_cache = ids;
    }

    fn check_required_ids(&self) -> Result<(), TokenizerError> {
        if self.add_bos && self.special.bos.is_none() {
            return Err(TokenizerError::MissingBos);
        }
        if self.add_eos && self.special.eos.is_none() {
            return Err(TokenizerError::MissingEos);
        }
        Ok(())
    }
}

/// The array under `key`: `Ok(None)` when absent, an error when the key holds something else.
fn array<'m>(
    md: &'m GgufMetadata,
    key: &'static str,
    expected: &'static str,
) -> Result<Option<&'m GgufArray>, TokenizerError> {
    match md.get(key) {
        None => Ok(None),
        Some(value) => value
            .as_array()
            .map(Some)
            .ok_or(TokenizerError::WrongType { key, expected }),
    }
}

pub(crate) fn string_array<'m>(
    md: &'m GgufMetadata,
    key: &'static str,
) -> Result<&'m [String], TokenizerError> {
    match array(md, key, "array of strings")? {
        None => Err(TokenizerError::MissingKey { key }),
        Some(GgufArray::String(v)) => Ok(v),
        Some(_) => Err(TokenizerError::WrongType {
            key,
            expected: "array of strings",
        }),
    }
}

fn read_tokens(md: &GgufMetadata) -> Result<Vec<String>, TokenizerError> {
    let tokens = string_array(md, KEY_TOKENS)?;
    // Empty texts get a unique placeholder, as in llama.cpp, so they never match input text.
    Ok(tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                t.clone()
            }
        })
        .collect())
}

fn read_scores(md: &GgufMetadata, n: usize) -> Result<Vec<f32>, TokenizerError> {
    let Some(array) = array(md, KEY_SCORES, "f32 or i32 array")? else {
        return Ok(vec![0.0; n]);
    };
    let scores = match array {
        GgufArray::I32(v) => v.iter().map(|&x| x as f32).collect(),
        other => other.to_f32_vec().ok_or(TokenizerError::WrongType {
            key: KEY_SCORES,
            expected: "f32 or i32 array",
        })?,
    };
    check_len(KEY_SCORES, scores, n)
}

fn read_types(md: &GgufMetadata, n: usize) -> Result<Vec<TokenType>, TokenizerError> {
    let Some(array) = array(md, KEY_TYPES, "integer array")? else {
        return Ok(vec![TokenType::Normal; n]);
    };
    let codes = array.to_i64_vec().ok_or(TokenizerError::WrongType {
        key: KEY_TYPES,
        expected: "integer array",
    })?;
    check_len(
        KEY_TYPES,
        codes.into_iter().map(TokenType::from_gguf).collect(),
        n,
    )
}

fn check_len<T>(key: &'static str, mut v: Vec<T>, n: usize) -> Result<Vec<T>, TokenizerError> {
    if v.len() < n {
        return Err(TokenizerError::TooShort {
            key,
            expected: n,
            found: v.len(),
        });
    }
    v.truncate(n);
    Ok(v)
}
