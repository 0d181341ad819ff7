//! Tokenizers of safetensors model directories: a Hugging Face `tokenizer.json` run by the
//! `tokenizers` crate, with BOS/EOS, add_bos/add_eos, special tokens and the chat template taken
//! from `tokenizer_config.json` the way transformers reads them.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;

use serde_json::Value;

use super::bpe::byte_to_char_table;
use super::vocab::EOG_TEXTS;
use super::{TokenType, TokenizerError};

pub(crate) struct HfBackend {
    pub tok: tokenizers::Tokenizer,
    /// The same tokenizer with special-token text left unmatched (parse_special = false), built on
    /// first use.
    raw: OnceLock<tokenizers::Tokenizer>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
    pub unk: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub eog: Vec<u32>,
    pub special: HashSet<u32>,
    pub chat_template: Option<String>,
    /// Whether token texts are GPT-2 byte-level characters (decoder `ByteLevel`).
    byte_level: bool,
    /// Token text by id (model vocabulary and added tokens), so lookups can lend `&str`.
    tokens: Vec<String>,
    added: HashSet<u32>,
}

impl HfBackend {
    pub fn load(
        tokenizer_json: &Path,
        config_json: Option<&Path>,
    ) -> Result<HfBackend, TokenizerError> {
        let text = read(tokenizer_json)?;
        let doc: Value = parse(tokenizer_json, &text)?;
        let tok = tokenizers::Tokenizer::from_str(&text).map_err(|e| TokenizerError::Parse {
            path: tokenizer_json.to_path_buf(),
            message: e.to_string(),
        })?;
        let config = match config_json {
            Some(path) => parse(path, &read(path)?)?,
            None => Value::Null,
        };
        let id_of = |key: &str| token_text(config.get(key)).and_then(|t| tok.token_to_id(&t));
        let (bos, eos, pad, unk) = (
            id_of("bos_token"),
            id_of("eos_token"),
            id_of("pad_token"),
            id_of("unk_token"),
        );
        let (bos_by_post, eos_by_post) = post_processor_adds(&tok, bos, eos)?;
        let add_bos = config
            .get("add_bos_token")
            .and_then(Value::as_bool)
            .unwrap_or(bos_by_post);
        let add_eos = config
            .get("add_eos_token")
            .and_then(Value::as_bool)
            .unwrap_or(eos_by_post);
        let special = special_ids(&tok, &config);
        let mut eog: Vec<u32> = EOG_TEXTS
            .iter()
            .filter_map(|t| tok.token_to_id(t))
            .chain(eos)
            .collect();
        eog.sort_unstable();
        eog.dedup();
        let byte_level = doc.pointer("/decoder/type").and_then(Value::as_str) == Some("ByteLevel");
        let tokens = (0..tok.get_vocab_size(true) as u32)
            .map(|id| tok.id_to_token(id).unwrap_or_default())
            .collect();
        let added = tok.get_added_tokens_decoder().keys().copied().collect();
        Ok(HfBackend {
            tokens,
            added,
            tok,
            raw: OnceLock::new(),
            bos,
            eos,
            pad,
            unk,
            add_bos,
            add_eos,
            eog,
            special,
            chat_template: chat_template(&config),
            byte_level,
        })
    }

    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let tok = if parse_special {
            &self.tok
        } else {
            self.raw_tokenizer()
        };
        let encoding = tok
            .encode(text, false)
            .map_err(|e| TokenizerError::hf("encoding", e))?;
        let mut ids = Vec::with_capacity(encoding.get_ids().len() + 2);
        if add_special && self.add_bos {
            ids.push(self.bos.ok_or(TokenizerError::MissingBos)?);
        }
        ids.extend_from_slice(encoding.get_ids());
        if add_special && self.add_eos {
            ids.push(self.eos.ok_or(TokenizerError::MissingEos)?);
        }
        Ok(ids)
    }

    fn raw_tokenizer(&self) -> &tokenizers::Tokenizer {
        self.raw.get_or_init(|| {
            let mut raw = self.tok.clone();
            raw.set_encode_special_tokens(true);
            raw
        })
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        self.check_ids(ids)?;
        self.tok
            .decode(ids, skip_special)
            .map_err(|e| TokenizerError::hf("decoding", e))
    }

    /// One token's bytes: byte-level characters mapped back, `<0xXX>` as its byte, `▁` as a space.
    pub fn piece(&self, id: u32, special: bool) -> Result<Vec<u8>, TokenizerError> {
        self.check_ids(&[id])?;
        let text = self.id_to_token(id).unwrap_or_default();
        if self.special.contains(&id) {
            return Ok(if special {
                text.as_bytes().to_vec()
            } else {
                Vec::new()
            });
        }
        if self.is_added(id) {
            return Ok(text.as_bytes().to_vec());
        }
        if let Some(byte) = super::spm::byte_of_token(text) {
            return Ok(vec![byte]);
        }
        if self.byte_level {
            let table = byte_to_char_table();
            return Ok(text
                .chars()
                .flat_map(|c| match table.iter().position(|&t| t == c) {
                    Some(b) => vec![b as u8],
                    None => c.to_string().into_bytes(),
                })
                .collect());
        }
        Ok(text.replace(super::spm::SPACE, " ").into_bytes())
    }

    fn is_added(&self, id: u32) -> bool {
        self.added.contains(&id)
    }

    fn check_ids(&self, ids: &[u32]) -> Result<(), TokenizerError> {
        let vocab_size = self.vocab_size();
        match ids.iter().find(|&&id| id as usize >= vocab_size) {
            Some(&id) => Err(TokenizerError::InvalidTokenId { id, vocab_size }),
            None => Ok(()),
        }
    }

    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.tokens
            .get(id as usize)
            .map(String::as_str)
            .filter(|t| !t.is_empty())
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        if id as usize >= self.vocab_size() {
            return None;
        }
        Some(if self.special.contains(&id) {
            TokenType::Control
        } else if self.is_added(id) {
            TokenType::UserDefined
        } else {
            TokenType::Normal
        })
    }

    pub fn added_tokens(&self) -> Vec<(u32, String, bool)> {
        let mut out: Vec<(u32, String, bool)> = self
            .tok
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, t)| (id, t.content, self.special.contains(&id)))
            .collect();
        out.sort_by_key(|t| t.0);
        out
    }
}

fn read(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse(path: &Path, text: &str) -> Result<Value, TokenizerError> {
    serde_json::from_str(text).map_err(|e| TokenizerError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A special token in `tokenizer_config.json`: a string, or an AddedToken object with `content`.
fn token_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Whether the tokenizer's own post-processor adds BOS / EOS (e.g. Llama 3's TemplateProcessing),
/// which transformers honours when the config does not say.
fn post_processor_adds(
    tok: &tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
) -> Result<(bool, bool), TokenizerError> {
    let with = tok
        .encode("a", true)
        .map_err(|e| TokenizerError::hf("probing the post-processor", e))?;
    let ids = with.get_ids();
    Ok((
        bos.is_some() && ids.first().copied() == bos,
        eos.is_some() && ids.len() > 1 && ids.last().copied() == eos,
    ))
}

/// Added tokens marked special in tokenizer.json or in the config's `added_tokens_decoder`.
fn special_ids(tok: &tokenizers::Tokenizer, config: &Value) -> HashSet<u32> {
    let mut ids: HashSet<u32> = tok
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(_, t)| t.special)
        .map(|(id, _)| id)
        .collect();
    if let Some(decoder) = config
        .get("added_tokens_decoder")
        .and_then(Value::as_object)
    {
        for (id, entry) in decoder {
            if let (Ok(id), Some(true)) = (
                id.parse::<u32>(),
                entry.get("special").and_then(Value::as_bool),
            ) {
                ids.insert(id);
            }
        }
    }
    ids
}

/// `chat_template` as a string, or the `default` entry of a list of named templates.
fn chat_template(config: &Value) -> Option<String> {
    match config.get("chat_template")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => {
            let named = |name: &str| {
                list.iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
            };
            named("default")
                .or(list.first())?
                .get("template")?
                .as_str()
                .map(str::to_string)
        }
        _ => None,
    }
}
