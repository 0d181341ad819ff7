//! Incremental detokenization: turns a growing list of token ids into text increments that never
//! split a UTF-8 character and keep SentencePiece's leading spaces.

/// Decodes token ids to text; the lead's tokenizer adapter implements it.
///
/// Incomplete UTF-8 sequences (a byte-fallback token cut off mid-character) must decode to a
/// trailing U+FFFD, as lossy decoding does, so the decoder knows to wait for more tokens.
pub trait Detokenize {
    type Error;
    fn decode(&self, ids: &[u32]) -> Result<String, Self::Error>;
}

/// Prompt tokens kept as left context, so the first generated token decodes as it would in the
/// middle of the text (e.g. keeps the leading space a SentencePiece decoder strips at the start).
const CONTEXT_TOKENS: usize = 5;

/// Emits the text of one sequence's tokens as they arrive.
///
/// It decodes two windows: `ids[prefix..read]` (text already emitted, kept as context) and
/// `ids[prefix..]`; the new text is the difference. Decoding a window rather than single tokens
/// keeps context-dependent decoding right (leading spaces, merges), and output waits while the
/// window ends in U+FFFD, i.e. in the middle of a multi-byte character.
#[derive(Debug, Clone, Default)]
pub struct IncrementalDecoder {
    /// Tokens from the start of the context window on; older ones are dropped.
    ids: Vec<u32>,
    /// Number of leading `ids` whose text was already emitted (or is prompt context).
    read: usize,
}

impl IncrementalDecoder {
    /// A decoder for a sequence with no preceding text.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder whose output continues `prompt`: its last few tokens serve as context and are
    /// never emitted.
    pub fn with_prompt(prompt: &[u32]) -> Self {
        let context = prompt
            .get(prompt.len().saturating_sub(CONTEXT_TOKENS)..)
            .unwrap_or_default();
        Self {
            ids: context.to_vec(),
            read: context.len(),
        }
    }

    /// Adds one token; returns the text it completes (often empty while a character is split).
    pub fn push<D: Detokenize + ?Sized>(&mut self, detok: &D, id: u32) -> Result<String, D::Error> {
        self.ids.push(id);
        let (prefix, full) = self.decode_windows(detok)?;
        if full.len() <= prefix.len() || full.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(String::new());
        }
        let Some(new_text) = new_suffix(&prefix, &full) else {
            return Ok(String::new());
        };
        // The emitted tokens become the next window's context; older ones are no longer needed.
        self.ids.drain(..self.read);
        self.read = self.ids.len();
        Ok(new_text.to_owned())
    }

    /// Ends the sequence: returns text still held back, even an incomplete character (as U+FFFD).
    pub fn finish<D: Detokenize + ?Sized>(&mut self, detok: &D) -> Result<String, D::Error> {
        let (prefix, full) = self.decode_windows(detok)?;
        self.ids.drain(..self.read);
        self.read = self.ids.len();
        Ok(new_suffix(&prefix, &full).unwrap_or_default().to_owned())
    }

    fn decode_windows<D: Detokenize + ?Sized>(
        &self,
        detok: &D,
    ) -> Result<(String, String), D::Error> {
        let prefix = detok.decode(self.ids.get(..self.read).unwrap_or_default())?;
        let full = detok.decode(&self.ids)?;
        Ok((prefix, full))
    }
}

/// The text `full` adds after `prefix`. Decoders normally extend the prefix's text; if one
/// rewrites it, fall back to cutting at the prefix's length, as long as that is a char boundary.
fn new_suffix<'a>(prefix: &str, full: &'a str) -> Option<&'a str> {
    full.strip_prefix(prefix)
        .or_else(|| full.get(prefix.len()..))
}
