//! Tokenizers: built from GGUF `tokenizer.ggml.*` metadata so that ids match llama.cpp's token for
//! token (byte-level BPE and SentencePiece), or loaded from a Hugging Face `tokenizer.json`; either
//! can be exported as `tokenizer.json` + `tokenizer_config.json`.
//!
//! Encoding a GGUF vocabulary follows llama.cpp: special-token text is split out first (control
//! tokens only when `parse_special`, user-defined tokens always), then each text fragment is
//! tokenized by the model's algorithm, then BOS/EOS are added when `add_special` and the model asks.

mod bpe;
mod error;
mod hf_export;
mod hf_files;
mod partition;
mod spm;
mod vocab;

use std::path::Path;

pub use error::TokenizerError;
pub use vocab::TokenType;

use bpe::BpeModel;
use hf_files::HfBackend;
use partition::{partition, Fragment};
use vocab::{attr, Vocab, VocabKind};

use crate::gguf::GgufMetadata;

/// A tokenizer for one model. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Tokenizer {
    inner: Inner,
}

enum Inner {
    Gguf(Box<GgufBackend>),
    Hf(Box<HfBackend>),
}

struct GgufBackend {
    vocab: Vocab,
    /// Present for byte-level BPE vocabularies.
    bpe: Option<BpeModel>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner {
            Inner::Gguf(g) => format!("gguf/{:?}/{}", g.vocab.kind, g.vocab.pre),
            Inner::Hf(_) => "tokenizer.json".to_string(),
        };
        f.debug_struct("Tokenizer")
            .field("kind", &kind)
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's metadata (`tokenizer.ggml.model` = `gpt2`
    /// or `llama`).
    pub fn from_gguf(md: &GgufMetadata) -> Result<Tokenizer, TokenizerError> {
        let vocab = Vocab::from_gguf(md)?;
        let bpe = match vocab.kind {
            VocabKind::Bpe => Some(BpeModel::from_gguf(md, &vocab.pre)?),
            VocabKind::Spm => None,
        };
        Ok(Tokenizer {
            inner: Inner::Gguf(Box::new(GgufBackend { vocab, bpe })),
        })
    }

    /// Loads a Hugging Face `tokenizer.json`; BOS/EOS, `add_bos_token`/`add_eos_token`, the chat
    /// template and `added_tokens_decoder` come from `tokenizer_config.json` when given.
    pub fn from_hf_files(
        tokenizer_json: &Path,
        tokenizer_config_json: Option<&Path>,
    ) -> Result<Tokenizer, TokenizerError> {
        let backend = HfBackend::load(tokenizer_json, tokenizer_config_json)?;
        Ok(Tokenizer {
            inner: Inner::Hf(Box::new(backend)),
        })
    }

    /// Text to ids. `add_special` adds BOS/EOS as the model's `add_bos`/`add_eos` say;
    /// `parse_special` turns special-token text such as `<|im_start|>` into that token (set it for
    /// rendered chat prompts, clear it for untrusted user text).
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        match &self.inner {
            Inner::Gguf(g) => g.encode(text, add_special, parse_special),
            Inner::Hf(h) => h.encode(text, add_special, parse_special),
        }
    }

    /// Ids to text. With `skip_special`, control tokens (BOS, `<|im_end|>`, ...) are left out.
    /// Bytes that do not form valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        match &self.inner {
            Inner::Gguf(g) => {
                let mut bytes = Vec::new();
                for &id in ids {
                    bytes.extend(g.piece(id, !skip_special)?);
                }
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            Inner::Hf(h) => h.decode(ids, skip_special),
        }
    }

    /// The bytes one token stands for (a byte token is a single, possibly partial UTF-8 byte), for
    /// streaming output. Control tokens give their text only when `special` is set.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Result<Vec<u8>, TokenizerError> {
        match &self.inner {
            Inner::Gguf(g) => g.piece(id, special),
            Inner::Hf(h) => h.piece(id, special),
        }
    }

    /// The vocabulary entry of `id` as stored (`▁` and byte-level characters not undone).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.tokens.get(id as usize).map(String::as_str),
            Inner::Hf(h) => h.id_to_token(id),
        }
    }

    /// The id of a vocabulary entry given its stored text.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.id(token),
            Inner::Hf(h) => h.tok.token_to_id(token),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.len(),
            Inner::Hf(h) => h.vocab_size(),
        }
    }

    pub fn bos_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.special.bos,
            Inner::Hf(h) => h.bos,
        }
    }

    /// The model's declared EOS token.
    pub fn eos_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.special.eos,
            Inner::Hf(h) => h.eos,
        }
    }

    /// Every token that ends generation: EOS plus end-of-turn / end-of-message tokens (detected by
    /// text as llama.cpp does when the metadata does not name them), sorted.
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.eog.iter().copied().collect(),
            Inner::Hf(h) => h.eog.clone(),
        }
    }

    pub fn pad_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.special.pad,
            Inner::Hf(h) => h.pad,
        }
    }

    pub fn unk_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.special.unk,
            Inner::Hf(h) => h.unk,
        }
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.add_bos,
            Inner::Hf(h) => h.add_bos,
        }
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.add_eos,
            Inner::Hf(h) => h.add_eos,
        }
    }

    /// Control or unknown tokens: hidden by `decode(.., skip_special = true)`.
    pub fn is_special(&self, id: u32) -> bool {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.attr(id) & (attr::CONTROL | attr::UNKNOWN) != 0,
            Inner::Hf(h) => h.special.contains(&id),
        }
    }

    /// The GGUF token type of `id` (tokenizers from `tokenizer.json` report `Control` for special
    /// added tokens, `UserDefined` for other added tokens and `Normal` otherwise).
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.types.get(id as usize).copied(),
            Inner::Hf(h) => h.token_type(id),
        }
    }

    /// The chat template shipped with the model (`tokenizer.chat_template` or
    /// `tokenizer_config.json`'s `chat_template`), if any.
    pub fn chat_template(&self) -> Option<&str> {
        match &self.inner {
            Inner::Gguf(g) => g.vocab.chat_template.as_deref(),
            Inner::Hf(h) => h.chat_template.as_deref(),
        }
    }

    /// The tokenizer as a Hugging Face `tokenizer.json` document.
    pub fn to_hf_json(&self) -> Result<String, TokenizerError> {
        match &self.inner {
            Inner::Gguf(g) => hf_export::gguf_to_hf_json(&g.vocab, g.bpe.as_ref()),
            Inner::Hf(h) => h
                .tok
                .to_string(true)
                .map_err(|e| TokenizerError::hf("serializing tokenizer.json", e)),
        }
    }

    /// A `tokenizer_config.json` to go with [`Tokenizer::to_hf_json`]: special tokens, add_bos/eos,
    /// `added_tokens_decoder` and the chat template (the given one, else the model's own).
    pub fn tokenizer_config_json(&self, chat_template: Option<&str>) -> serde_json::Value {
        hf_export::tokenizer_config(self, chat_template.or(self.chat_template()))
    }

    /// Ids of all added/special tokens with their text and whether they are special, for exports.
    pub(crate) fn added_tokens(&self) -> Vec<(u32, String, bool)> {
        match &self.inner {
            Inner::Gguf(g) => hf_export::gguf_added_tokens(&g.vocab),
            Inner::Hf(h) => h.added_tokens(),
        }
    }
}

impl GgufBackend {
    fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let vocab = &self.vocab;
        let mut out = Vec::new();
        if add_special && vocab.add_bos {
            out.push(vocab.special.bos.ok_or(TokenizerError::MissingBos)?);
        }
        // SentencePiece prefixes a space to text that starts the input or follows a special token.
        let mut after_special = true;
        for fragment in partition(vocab, text, parse_special) {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(t) => {
                    self.encode_fragment(t, after_special, &mut out)?;
                    after_special = false;
                }
            }
        }
        if add_special && vocab.add_eos {
            out.push(vocab.special.eos.ok_or(TokenizerError::MissingEos)?);
        }
        Ok(out)
    }

    fn encode_fragment(
        &self,
        text: &str,
        after_special: bool,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        match &self.bpe {
            Some(bpe) => {
                bpe.tokenize(&self.vocab, text, out);
                Ok(())
            }
            None => {
                let prefixed;
                let text = if self.vocab.add_space_prefix && after_special {
                    prefixed = format!(" {text}");
                    &prefixed
                } else {
                    text
                };
                spm::tokenize(&self.vocab, &spm::escape_whitespace(text), out)
            }
        }
    }

    /// llama.cpp's `token_to_piece`: control/unknown tokens only with `special`; user-defined tokens
    /// verbatim; normal tokens un-escaped; byte tokens as their byte; unused tokens as nothing.
    fn piece(&self, id: u32, special: bool) -> Result<Vec<u8>, TokenizerError> {
        let text = self.vocab.text(id)?;
        let a = self.vocab.attr(id);
        if a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            return Ok(if special {
                text.as_bytes().to_vec()
            } else {
                Vec::new()
            });
        }
        if a & attr::USER_DEFINED != 0 {
            return Ok(text.as_bytes().to_vec());
        }
        if a & attr::NORMAL != 0 {
            return Ok(match &self.bpe {
                Some(bpe) => bpe.decode_token_text(text),
                None => text.replace(spm::SPACE, " ").into_bytes(),
            });
        }
        if a & attr::BYTE != 0 {
            return Ok(spm::byte_of_token(text)
                .map(|b| vec![b])
                .unwrap_or_default());
        }
        Ok(Vec::new())
    }
}
