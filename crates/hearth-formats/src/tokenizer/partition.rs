//! Splitting raw text around special-token text before tokenization, as llama.cpp's
//! `tokenizer_st_partition` does: each special token in turn (longest text first) cuts every
//! remaining text fragment at each of its occurrences.

use super::vocab::{attr, Vocab};

/// A piece of the input: raw text still to tokenize, or a token already decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// Splits `text` into fragments. User-defined tokens are always split out; control and unknown
/// tokens only when `parse_special` is set (so user text cannot inject `<|im_start|>`).
pub(crate) fn partition<'a>(
    vocab: &Vocab,
    text: &'a str,
    parse_special: bool,
) -> Vec<Fragment<'a>> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut fragments = vec![Fragment::Text(text)];
    for &id in &vocab.special_cache {
        let a = vocab.attr(id);
        if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        let Some(special) = vocab.tokens.get(id as usize) else {
            continue;
        };
        // Cheap pre-check: most special tokens occur nowhere in the input.
        if !fragments
            .iter()
            .any(|f| matches!(f, Fragment::Text(t) if t.contains(special.as_str())))
        {
            continue;
        }
        fragments = split_all(fragments, special, id);
    }
    fragments
}

fn split_all<'a>(fragments: Vec<Fragment<'a>>, special: &str, id: u32) -> Vec<Fragment<'a>> {
    let mut out = Vec::with_capacity(fragments.len() + 2);
    for fragment in fragments {
        let Fragment::Text(mut rest) = fragment else {
            out.push(fragment);
            continue;
        };
        while let Some(at) = rest.find(special) {
            if at > 0 {
                out.push(Fragment::Text(&rest[..at]));
            }
            out.push(Fragment::Token(id));
            rest = &rest[at + special.len()..];
        }
        if !rest.is_empty() {
            out.push(Fragment::Text(rest));
        }
    }
    out
}
