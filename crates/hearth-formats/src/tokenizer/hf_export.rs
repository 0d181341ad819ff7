//! Export to Hugging Face `tokenizer.json` and `tokenizer_config.json`, for `hearth convert`.
//!
//! Byte-level BPE vocabularies map one to one (the pre-tokenizer regexes become `Split` steps).
//! SentencePiece vocabularies become a BPE model with byte fallback whose merges are derived from the
//! token scores, the way Hugging Face converts SentencePiece BPE models: every split of a token into
//! two tokens is a merge, ranked by the merged token's score.

use serde_json::{json, Map, Value};

use super::bpe::BpeModel;
use super::spm::SPACE;
use super::vocab::{attr, TokenType, Vocab, VocabKind};
use super::{Tokenizer, TokenizerError};

pub(crate) fn gguf_to_hf_json(
    vocab: &Vocab,
    bpe: Option<&BpeModel>,
) -> Result<String, TokenizerError> {
    let (normalizer, pre_tokenizer, decoder, model) = match (vocab.kind, bpe) {
        (VocabKind::Bpe, Some(bpe)) => (
            Value::Null,
            byte_level_pre_tokenizer(bpe),
            byte_level_decoder(),
            bpe_model(vocab, bpe),
        ),
        _ => (
            spm_normalizer(vocab),
            Value::Null,
            spm_decoder(vocab),
            spm_model(vocab),
        ),
    };
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens_json(vocab),
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor(vocab),
        "decoder": decoder,
        "model": model,
    });
    serde_json::to_string(&doc).map_err(|e| TokenizerError::hf("serializing tokenizer.json", e))
}

/// Control, unknown and user-defined tokens: HF matches these in the input before the model runs.
pub(crate) fn gguf_added_tokens(vocab: &Vocab) -> Vec<(u32, String, bool)> {
    (0..vocab.len() as u32)
        .filter_map(|id| {
            let a = vocab.attr(id);
            let special = a & (attr::CONTROL | attr::UNKNOWN) != 0;
            let added = special || a & attr::USER_DEFINED != 0;
            added.then(|| (id, vocab.tokens[id as usize].clone(), special))
        })
        .collect()
}

fn added_tokens_json(vocab: &Vocab) -> Vec<Value> {
    gguf_added_tokens(vocab)
        .into_iter()
        .map(|(id, content, special)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": special})
        })
        .collect()
}

fn vocab_map(vocab: &Vocab) -> Map<String, Value> {
    // Insert in id order; a duplicated text keeps its last id, as the GGUF loader does.
    let mut map = Map::new();
    for (id, text) in vocab.tokens.iter().enumerate() {
        map.insert(text.clone(), json!(id));
    }
    map
}

fn byte_level_pre_tokenizer(bpe: &BpeModel) -> Value {
    let mut steps: Vec<Value> = bpe
        .pre
        .patterns
        .iter()
        .map(|p| json!({"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": false}))
        .collect();
    steps.push(json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}));
    json!({"type": "Sequence", "pretokenizers": steps})
}

fn byte_level_decoder() -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true})
}

fn bpe_model(vocab: &Vocab, bpe: &BpeModel) -> Value {
    let merges: Vec<Value> = bpe
        .merges
        .iter()
        .filter(|(a, b)| {
            vocab.id(a).is_some() && vocab.id(b).is_some() && vocab.id(&format!("{a}{b}")).is_some()
        })
        .map(|(a, b)| json!([a, b]))
        .collect();
    json!({
        "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
        "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
        "ignore_merges": bpe.pre.ignore_merges, "vocab": vocab_map(vocab), "merges": merges,
    })
}

fn spm_normalizer(vocab: &Vocab) -> Value {
    let mut steps = Vec::new();
    if vocab.add_space_prefix {
        steps.push(json!({"type": "Prepend", "prepend": SPACE.to_string()}));
    }
    steps
        .push(json!({"type": "Replace", "pattern": {"String": " "}, "content": SPACE.to_string()}));
    json!({"type": "Sequence", "normalizers": steps})
}

fn spm_decoder(vocab: &Vocab) -> Value {
    let mut steps = vec![
        json!({"type": "Replace", "pattern": {"String": SPACE.to_string()}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if vocab.add_space_prefix {
        steps.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    json!({"type": "Sequence", "decoders": steps})
}

fn spm_model(vocab: &Vocab) -> Value {
    let unk = vocab
        .special
        .unk
        .and_then(|id| vocab.tokens.get(id as usize));
    let merges: Vec<Value> = spm_merges(vocab)
        .into_iter()
        .map(|(a, b)| json!([a, b]))
        .collect();
    json!({
        "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
        "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
        "vocab": vocab_map(vocab), "merges": merges,
    })
}

/// Every split of a normal token into two vocabulary tokens, best merged score first (then by
/// merged id, then left id, so the order is total).
fn spm_merges(vocab: &Vocab) -> Vec<(String, String)> {
    let mut ranked: Vec<(f32, u32, u32, &str, &str)> = Vec::new();
    for (id, text) in vocab.tokens.iter().enumerate() {
        if vocab.types.get(id) != Some(&TokenType::Normal) {
            continue;
        }
        let score = vocab.scores.get(id).copied().unwrap_or(0.0);
        for (split, _) in text.char_indices().skip(1) {
            let (left, right) = text.split_at(split);
            if let (Some(l), Some(_)) = (vocab.id(left), vocab.id(right)) {
                ranked.push((score, id as u32, l, left, right));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    ranked
        .into_iter()
        .map(|(_, _, _, l, r)| (l.to_string(), r.to_string()))
        .collect()
}

/// BOS/EOS insertion as a `TemplateProcessing` post-processor; none when the model adds neither.
fn post_processor(vocab: &Vocab) -> Value {
    let bos = vocab
        .special
        .bos
        .filter(|_| vocab.add_bos)
        .and_then(|id| Some((id, vocab.tokens.get(id as usize)?)));
    let eos = vocab
        .special
        .eos
        .filter(|_| vocab.add_eos)
        .and_then(|id| Some((id, vocab.tokens.get(id as usize)?)));
    if bos.is_none() && eos.is_none() {
        return Value::Null;
    }
    let piece = |seq: &str, type_id: u32| {
        let mut items = Vec::new();
        items.extend(bos.map(|(_, t)| json!({"SpecialToken": {"id": t, "type_id": type_id}})));
        items.push(json!({"Sequence": {"id": seq, "type_id": type_id}}));
        items.extend(eos.map(|(_, t)| json!({"SpecialToken": {"id": t, "type_id": type_id}})));
        items
    };
    let mut pair = piece("A", 0);
    pair.extend(piece("B", 1));
    let special_tokens: Map<String, Value> = bos
        .into_iter()
        .chain(eos)
        .map(|(id, t)| (t.clone(), json!({"id": t, "ids": [id], "tokens": [t]})))
        .collect();
    json!({"type": "TemplateProcessing", "single": piece("A", 0), "pair": pair, "special_tokens": special_tokens})
}

/// `tokenizer_config.json` for an exported tokenizer.
pub(crate) fn tokenizer_config(tok: &Tokenizer, chat_template: Option<&str>) -> Value {
    let text = |id: Option<u32>| id.and_then(|id| tok.id_to_token(id)).map(str::to_string);
    let decoder: Map<String, Value> = tok
        .added_tokens()
        .into_iter()
        .map(|(id, content, special)| {
            (
                id.to_string(),
                json!({"content": content, "lstrip": false, "normalized": false, "rstrip": false,
                                     "single_word": false, "special": special}),
            )
        })
        .collect();
    let mut config = json!({
        "add_bos_token": tok.add_bos(),
        "add_eos_token": tok.add_eos(),
        "bos_token": text(tok.bos_id()),
        "eos_token": text(tok.eos_id()),
        "pad_token": text(tok.pad_id()),
        "unk_token": text(tok.unk_id()),
        "added_tokens_decoder": decoder,
        "clean_up_tokenization_spaces": false,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    if let (Some(t), Some(obj)) = (chat_template, config.as_object_mut()) {
        obj.insert("chat_template".into(), json!(t));
    }
    config
}
