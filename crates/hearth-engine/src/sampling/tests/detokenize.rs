//! Tests of `IncrementalDecoder` with mock byte-level and SentencePiece-style detokenizers.

use proptest::prelude::*;

use crate::sampling::{Detokenize, IncrementalDecoder};

/// Each token is an arbitrary run of bytes; decoding is lossy UTF-8, like byte-fallback decoders.
struct ByteVocab(Vec<Vec<u8>>);

impl Detokenize for ByteVocab {
    type Error = String;
    fn decode(&self, ids: &[u32]) -> Result<String, String> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.0.get(id as usize).ok_or(format!("unknown id {id}"))?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// SentencePiece-style: `▁` is a space, and the decoder strips the first leading space.
struct PieceVocab(Vec<&'static str>);

impl Detokenize for PieceVocab {
    type Error = String;
    fn decode(&self, ids: &[u32]) -> Result<String, String> {
        let text: String = ids
            .iter()
            .filter_map(|&id| self.0.get(id as usize).copied())
            .collect();
        let text = text.replace('▁', " ");
        Ok(text.strip_prefix(' ').unwrap_or(&text).to_owned())
    }
}

fn decode_all<D: Detokenize<Error = String>>(
    detok: &D,
    decoder: &mut IncrementalDecoder,
    ids: &[u32],
) -> Vec<String> {
    let mut chunks: Vec<String> = ids
        .iter()
        .map(|&id| decoder.push(detok, id).unwrap())
        .collect();
    chunks.push(decoder.finish(detok).unwrap());
    chunks
}

#[test]
fn sentencepiece_leading_spaces_are_kept_between_tokens() {
    let vocab = PieceVocab(vec!["▁Hello", "▁world", "!", "▁again"]);
    let chunks = decode_all(&vocab, &mut IncrementalDecoder::new(), &[0, 1, 2, 3]);
    assert_eq!(chunks, vec!["Hello", " world", "!", " again", ""]);
}

#[test]
fn prompt_context_keeps_the_first_generated_space() {
    let vocab = PieceVocab(vec!["▁Hello", "▁world"]);
    let mut decoder = IncrementalDecoder::with_prompt(&[0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(decoder.push(&vocab, 1).unwrap(), " world");
}

#[test]
fn split_character_waits_for_its_last_byte() {
    // "é" is C3 A9; "😀" is F0 9F 98 80.
    let vocab = ByteVocab(vec![
        vec![b'a', 0xC3],
        vec![0xA9],
        vec![0xF0, 0x9F],
        vec![0x98],
        vec![0x80, b'!'],
    ]);
    let chunks = decode_all(&vocab, &mut IncrementalDecoder::new(), &[0, 1, 2, 3, 4]);
    assert_eq!(chunks, vec!["", "aé", "", "", "😀!", ""]);
}

#[test]
fn finish_flushes_an_incomplete_character_as_replacement() {
    let vocab = ByteVocab(vec![vec![b'x'], vec![0xE6, 0x97]]);
    let chunks = decode_all(&vocab, &mut IncrementalDecoder::new(), &[0, 1]);
    assert_eq!(chunks, vec!["x", "", "\u{FFFD}"]);
}

#[test]
fn decode_errors_are_returned() {
    let vocab = ByteVocab(vec![vec![b'x']]);
    let mut decoder = IncrementalDecoder::new();
    assert_eq!(decoder.push(&vocab, 5), Err("unknown id 5".to_owned()));
}

/// A string and cut points splitting its bytes into tokens (anywhere, also inside characters).
fn text_and_byte_tokens() -> impl Strategy<Value = (String, Vec<Vec<u8>>)> {
    let text = prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop::sample::select(vec!['a', ' ', 'é', '日', '😀', '\u{FFFD}']),
            0..30
        )
        .prop_map(|c| c.into_iter().collect()),
    ];
    (
        text,
        prop::collection::vec(any::<prop::sample::Index>(), 0..40),
    )
        .prop_map(|(text, cuts)| {
            let bytes = text.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            points.extend([0, bytes.len()]);
            points.sort_unstable();
            points.dedup();
            let tokens = points
                .windows(2)
                .map(|w| bytes[w[0]..w[1]].to_vec())
                .collect();
            (text, tokens)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn byte_tokens_reassemble_the_text_without_broken_characters((text, tokens) in text_and_byte_tokens()) {
        let ids: Vec<u32> = (0..tokens.len() as u32).collect();
        let vocab = ByteVocab(tokens);
        let chunks = decode_all(&vocab, &mut IncrementalDecoder::new(), &ids);
        prop_assert_eq!(chunks.concat(), text.clone());
        if !text.contains('\u{FFFD}') {
            prop_assert!(chunks.iter().all(|c| !c.contains('\u{FFFD}')), "chunks {:?}", chunks);
        }
    }
}
