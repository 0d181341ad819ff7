//! Byte-level BPE (`tokenizer.ggml.model = gpt2`): the pre-tokenizer regexes llama.cpp uses for
//! each `tokenizer.ggml.pre`, GPT-2's byte-to-character mapping, and rank-ordered merging.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use tokenizers::utils::SysRegex;

use super::vocab::{string_array, Vocab};
use super::TokenizerError;
use crate::gguf::GgufMetadata;

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer of one `tokenizer.ggml.pre` value: regexes applied in turn (each splits the
/// pieces the previous one produced, keeping unmatched stretches as pieces), and whether a word
/// that is itself a token skips merging.
pub(crate) struct PreTokenizer {
    pub patterns: Vec<&'static str>,
    pub ignore_merges: bool,
}

impl PreTokenizer {
    pub fn for_pre(pre: &str) -> Result<PreTokenizer, TokenizerError> {
        let (patterns, ignore_merges): (Vec<&'static str>, bool) = match pre {
            "default" => (
                vec![r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
                false,
            ),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "jina-v1-en" | "jina-v2-es"
            | "jina-v2-de" | "jina-v2-code" | "roberta-bpe" | "mpt" | "olmo" | "jais"
            | "exaone4" | "mellum" => (vec![GPT2], false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" => {
                (vec![LLAMA3], true)
            }
            "dbrx" | "smaug-bpe" => (vec![LLAMA3], false),
            "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez" => (vec![QWEN2], false),
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => (vec![r"\p{N}", GPT2], false),
            "falcon" => (
                vec![r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
                false,
            ),
            "tekken" => (vec![TEKKEN], true),
            "gpt-4o" | "llama4" => (vec![GPT4O], false),
            "chatglm-bpe" => (vec![LLAMA3], false),
            "glm4" => (vec![LLAMA3], true),
            other => return Err(TokenizerError::UnsupportedPre(other.to_string())),
        };
        Ok(PreTokenizer {
            patterns,
            ignore_merges,
        })
    }
}

/// Byte-level BPE state: compiled regexes, merge ranks and the byte-to-character table.
pub(crate) struct BpeModel {
    pub pre: PreTokenizer,
    regexes: Vec<SysRegex>,
    /// "left right" -> rank (position in `tokenizer.ggml.merges`).
    ranks: HashMap<(String, String), u32>,
    pub merges: Vec<(String, String)>,
    byte_chars: [char; 256],
    char_bytes: HashMap<char, u8>,
}

const KEY_MERGES: &str = "tokenizer.ggml.merges";

impl BpeModel {
    pub fn from_gguf(md: &GgufMetadata, pre: &str) -> Result<BpeModel, TokenizerError> {
        let pre = PreTokenizer::for_pre(pre)?;
        let regexes = pre
            .patterns
            .iter()
            .map(|p| {
                SysRegex::new(p).map_err(|e| TokenizerError::Regex {
                    pattern: p.to_string(),
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let lines = string_array(md, KEY_MERGES)?;
        let merges: Vec<(String, String)> = lines.iter().map(|l| split_merge(l)).collect();
        let ranks = merges
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), i as u32))
            .rev()
            .collect();
        let byte_chars = byte_to_char_table();
        let char_bytes = byte_chars
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        Ok(BpeModel {
            pre,
            regexes,
            ranks,
            merges,
            byte_chars,
            char_bytes,
        })
    }

    /// Tokenizes one raw-text fragment, appending ids to `out`.
    pub fn tokenize(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        for word in self.split_words(text) {
            let encoded: String = word.bytes().map(|b| self.byte_chars[b as usize]).collect();
            self.tokenize_word(vocab, &encoded, out);
        }
    }

    fn split_words<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces = vec![text];
        for regex in &self.regexes {
            pieces = pieces
                .into_iter()
                .flat_map(|p| split_isolated(regex, p))
                .collect();
        }
        pieces
    }

    fn tokenize_word(&self, vocab: &Vocab, word: &str, out: &mut Vec<u32>) {
        if self.pre.ignore_merges {
            if let Some(id) = vocab.id(word) {
                out.push(id);
                return;
            }
        }
        for piece in self.merge(word) {
            match vocab.id(piece) {
                Some(id) => out.push(id),
                // A piece the vocabulary lacks falls back to its characters' single-char tokens.
                None => out.extend(
                    piece
                        .chars()
                        .filter_map(|c| vocab.id(c.encode_utf8(&mut [0; 4]))),
                ),
            }
        }
    }

    /// Applies merges lowest rank first (leftmost on ties) until none applies; returns the pieces.
    fn merge<'w>(&self, word: &'w str) -> Vec<&'w str> {
        let mut pieces: Vec<&'w str> = split_chars(word);
        let mut queue = BinaryHeap::new();
        let mut alive: Vec<bool> = vec![true; pieces.len()];
        let mut next: Vec<Option<usize>> = (0..pieces.len())
            .map(|i| (i + 1 < pieces.len()).then_some(i + 1))
            .collect();
        let mut prev: Vec<Option<usize>> = (0..pieces.len()).map(|i| i.checked_sub(1)).collect();
        for i in 1..pieces.len() {
            self.push(&pieces, i - 1, i, &mut queue);
        }
        while let Some(Candidate {
            left, right, len, ..
        }) = queue.pop()
        {
            if !alive[left]
                || !alive[right]
                || next[left] != Some(right)
                || pieces[left].len() + pieces[right].len() != len
            {
                continue;
            }
            let start = offset_in(word, pieces[left]);
            pieces[left] = &word[start..start + len];
            alive[right] = false;
            next[left] = next[right];
            if let Some(n) = next[right] {
                prev[n] = Some(left);
            }
            if let Some(p) = prev[left] {
                self.push(&pieces, p, left, &mut queue);
            }
            if let Some(n) = next[left] {
                self.push(&pieces, left, n, &mut queue);
            }
        }
        pieces
            .into_iter()
            .zip(alive)
            .filter_map(|(p, a)| a.then_some(p))
            .collect()
    }

    fn push(&self, pieces: &[&str], left: usize, right: usize, queue: &mut BinaryHeap<Candidate>) {
        let key = (pieces[left].to_string(), pieces[right].to_string());
        if let Some(&rank) = self.ranks.get(&key) {
            queue.push(Candidate {
                rank,
                left,
                right,
                len: pieces[left].len() + pieces[right].len(),
            });
        }
    }

    /// The text of a byte-level token: each character maps back to one byte.
    pub fn decode_token_text(&self, text: &str) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(text.len());
        for c in text.chars() {
            match self.char_bytes.get(&c) {
                Some(&b) => bytes.push(b),
                // Not a byte-level character: keep it as UTF-8 rather than inventing bytes.
                None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        bytes
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Candidate {
    rank: u32,
    left: usize,
    right: usize,
    len: usize,
}

// Lowest rank first, then leftmost (llama.cpp's `llm_bigram_bpe` comparator).
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
    }
}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn split_chars(word: &str) -> Vec<&str> {
    word.char_indices()
        .map(|(i, c)| &word[i..i + c.len_utf8()])
        .collect()
}

/// Byte offset of `piece` (a subslice) within `word`.
fn offset_in(word: &str, piece: &str) -> usize {
    piece.as_ptr() as usize - word.as_ptr() as usize
}

/// Regex matches and the stretches between them, in order, all kept (HF's `Isolated` behaviour).
fn split_isolated<'t>(regex: &SysRegex, text: &'t str) -> Vec<&'t str> {
    let mut pieces = Vec::new();
    let mut last = 0;
    for (start, end) in regex.find_iter(text) {
        if start > last {
            pieces.push(&text[last..start]);
        }
        if end > start {
            pieces.push(&text[start..end]);
        }
        last = end;
    }
    if last < text.len() {
        pieces.push(&text[last..]);
    }
    pieces
}

/// A merge line is "left right"; llama.cpp searches the separating space from index 1 so that a
/// left part that is itself a space survives.
fn split_merge(line: &str) -> (String, String) {
    match line.bytes().skip(1).position(|b| b == b' ') {
        Some(i) => (line[..i + 1].to_string(), line[i + 2..].to_string()),
        None => (String::new(), String::new()),
    }
}

/// GPT-2's table: printable bytes map to themselves, the others to code points from U+0100 up.
pub(crate) fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut shifted = 0u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let cp = if printable {
            b
        } else {
            shifted += 1;
            255 + shifted
        };
        table[b as usize] = char::from_u32(cp).unwrap_or('\u{FFFD}');
    }
    table
}
