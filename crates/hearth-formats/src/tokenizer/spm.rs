//! SentencePiece (`tokenizer.ggml.model = llama`) tokenization of one text fragment: start from
//! single characters, repeatedly merge the adjacent pair whose concatenation is the best-scoring
//! vocabulary token, and emit `<0xXX>` byte tokens for pieces the vocabulary lacks.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::vocab::Vocab;
use super::TokenizerError;

/// SentencePiece's visible space.
pub(crate) const SPACE: char = '▁';

/// One still-live piece of the text, linked to its neighbours.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

#[derive(Debug)]
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    len: usize,
}

// Highest score first; among equal scores the leftmost pair (llama.cpp's `llm_bigram_spm` order).
impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}

/// Tokenizes an already escaped fragment (spaces replaced by `▁`), appending ids to `out`.
pub(crate) fn tokenize(
    vocab: &Vocab,
    text: &str,
    out: &mut Vec<u32>,
) -> Result<(), TokenizerError> {
    let mut symbols = initial_symbols(text);
    let mut queue = BinaryHeap::new();
    for i in 1..symbols.len() {
        push_bigram(vocab, text, &symbols, Some(i - 1), Some(i), &mut queue);
    }
    while let Some(bigram) = queue.pop() {
        let (left, right) = (symbols[bigram.left], symbols[bigram.right]);
        // Stale entry: one side was merged away since it was queued.
        if left.len == 0 || right.len == 0 || left.len + right.len != bigram.len {
            continue;
        }
        symbols[bigram.left].len += right.len;
        symbols[bigram.right].len = 0;
        symbols[bigram.left].next = right.next;
        if let Some(n) = right.next {
            symbols[n].prev = Some(bigram.left);
        }
        push_bigram(
            vocab,
            text,
            &symbols,
            left.prev,
            Some(bigram.left),
            &mut queue,
        );
        push_bigram(
            vocab,
            text,
            &symbols,
            Some(bigram.left),
            right.next,
            &mut queue,
        );
    }
    let mut cursor = if symbols.is_empty() { None } else { Some(0) };
    while let Some(i) = cursor {
        let s = symbols[i];
        emit(vocab, &text[s.start..s.start + s.len], out)?;
        cursor = s.next;
    }
    Ok(())
}

fn initial_symbols(text: &str) -> Vec<Symbol> {
    let count = text.chars().count();
    text.char_indices()
        .enumerate()
        .map(|(i, (start, c))| Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: (i + 1 < count).then_some(i + 1),
        })
        .collect()
}

fn push_bigram(
    vocab: &Vocab,
    text: &str,
    symbols: &[Symbol],
    left: Option<usize>,
    right: Option<usize>,
    queue: &mut BinaryHeap<Bigram>,
) {
    let (Some(left), Some(right)) = (left, right) else {
        return;
    };
    let start = symbols[left].start;
    let len = symbols[left].len + symbols[right].len;
    let Some(id) = vocab.id(&text[start..start + len]) else {
        return;
    };
    let score = vocab.scores.get(id as usize).copied().unwrap_or(0.0);
    queue.push(Bigram {
        left,
        right,
        score,
        len,
    });
}

/// A final piece is a vocabulary token (every merge produced one) or a lone character the vocabulary
/// lacks, which falls back to its UTF-8 bytes.
fn emit(vocab: &Vocab, piece: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
    if let Some(id) = vocab.id(piece) {
        out.push(id);
        return Ok(());
    }
    for byte in piece.bytes() {
        out.push(byte_token(vocab, byte)?);
    }
    Ok(())
}

pub(crate) fn byte_token(vocab: &Vocab, byte: u8) -> Result<u32, TokenizerError> {
    vocab
        .id(&format!("<0x{byte:02X}>"))
        .ok_or(TokenizerError::MissingByteToken { byte })
}

/// The byte a `<0xXX>` token stands for.
pub(crate) fn byte_of_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// Spaces become `▁`, as SentencePiece sees them.
pub(crate) fn escape_whitespace(text: &str) -> String {
    text.replace(' ', "▁")
}
