//! Benchmark workloads: the committed standard suite of 10 prompts, a prompt file (JSON list of
//! `{name, prompt}` or plain text with one prompt per line), or random-length synthetic prompts.

use crate::{MonitorError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

const STANDARD: &str = include_str!("../../prompts/standard.json");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    pub name: String,
    pub prompt: String,
}

/// The standard 10-prompt suite, from simple questions to a short story.
pub fn standard() -> Vec<Prompt> {
    // The file is compiled in and checked by a test, so this cannot fail at run time.
    serde_json::from_str(STANDARD).unwrap_or_default()
}

/// `standard`, `random[:N]` (N synthetic prompts, default 10), or a file path.
pub fn load(spec: &str) -> Result<Vec<Prompt>> {
    if spec == "standard" {
        return Ok(standard());
    }
    if let Some(count) = spec.strip_prefix("random") {
        let n = match count.strip_prefix(':') {
            Some(n) => n.parse().map_err(|_| MonitorError::Invalid { field: "--prompts", reason: format!("{spec:?}: expected random:N") })?,
            None if count.is_empty() => 10,
            None => return load_file(Path::new(spec)),
        };
        return Ok(synthetic(n, 0x5eed));
    }
    load_file(Path::new(spec))
}

pub fn load_file(path: &Path) -> Result<Vec<Prompt>> {
    let text = std::fs::read_to_string(path).map_err(|source| MonitorError::Io { path: path.to_path_buf(), source })?;
    let bad = |reason: String| MonitorError::Prompts { path: path.to_path_buf(), reason };
    let prompts: Vec<Prompt> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text).map_err(|e| bad(format!("not a JSON list of {{name, prompt}}: {e}")))?
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .enumerate()
            .map(|(i, l)| Prompt { name: format!("line{}", i + 1), prompt: l.to_string() })
            .collect()
    };
    if prompts.is_empty() {
        return Err(bad("has no prompts (it is empty)".into()));
    }
    if let Some(p) = prompts.iter().find(|p| p.prompt.trim().is_empty()) {
        return Err(bad(format!("prompt {:?} is empty", p.name)));
    }
    Ok(prompts)
}

/// `n` prompts of 8..=256 random words from a fixed vocabulary (deterministic for a seed).
pub fn synthetic(n: usize, seed: u64) -> Vec<Prompt> {
    const WORDS: &[&str] = &["river", "stone", "light", "engine", "garden", "window", "number", "cloud", "signal", "paper", "market", "winter", "orbit", "bridge", "letter", "forest"];
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64: good enough for prompt lengths, no dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let len = 8 + (next() % 249) as usize;
            let words: Vec<&str> = (0..len).map(|_| WORDS[(next() % WORDS.len() as u64) as usize]).collect();
            Prompt { name: format!("random{}-{len}w", i + 1), prompt: format!("Continue this list: {}", words.join(" ")) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_suite_has_ten_distinct_prompts_of_varying_length() {
        let s = standard();
        assert_eq!(s.len(), 10);
        let lens: Vec<usize> = s.iter().map(|p| p.prompt.len()).collect();
        assert!(lens.iter().max().unwrap() > &(4 * lens.iter().min().unwrap()));
        let mut names: Vec<_> = s.iter().map(|p| &p.name).collect();
        names.dedup();
        assert_eq!(names.len(), 10);
    }

    #[test]
    fn files_and_specs() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "\n \n").unwrap();
        let err = load(empty.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("empty.txt") && err.contains("no prompts"), "{err}");
        let lines = dir.path().join("p.txt");
        std::fs::write(&lines, "one\n\ntwo\n").unwrap();
        assert_eq!(load(lines.to_str().unwrap()).unwrap().len(), 2);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "[{\"nope\": 1}]").unwrap();
        assert!(load(bad.to_str().unwrap()).unwrap_err().to_string().contains("bad.json"));
        assert!(load("/no/such/file").unwrap_err().to_string().contains("/no/such/file"));
        assert_eq!(load("random:3").unwrap().len(), 3);
        assert_eq!(synthetic(4, 1), synthetic(4, 1));
        assert!(load("random:x").is_err());
    }
}
