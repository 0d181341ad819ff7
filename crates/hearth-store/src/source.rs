//! Parsing `add` sources (`hf://`, `ollama://`, `file://`) and resolving store names for the engine
//! commands (`org/repo`, `hf://…`, `name:tag`, aliases).

use crate::error::{Result, StoreError};
use crate::fsutil::check_relative_name;
use crate::registry::ModelRecord;
use crate::store::Store;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// `hf://org/repo[@revision][/path-or-glob]`
    Hf { repo: String, revision: String, pattern: Option<String> },
    /// `ollama://[namespace/]name[:tag]`
    Ollama { namespace: String, name: String, tag: String },
    /// `file:///path`
    File(PathBuf),
}

pub fn parse_source(text: &str) -> Result<Source> {
    let bad = |reason: &str| StoreError::BadSource { source_text: text.to_string(), reason: reason.to_string() };
    if let Some(rest) = text.strip_prefix("hf://") {
        return parse_hf(text, rest);
    }
    if let Some(rest) = text.strip_prefix("ollama://") {
        let (path, tag) = match rest.rsplit_once(':') {
            Some((p, t)) => (p, t),
            None => (rest, "latest"),
        };
        let (namespace, name) = match path.split_once('/') {
            Some((ns, n)) => (ns, n),
            None => ("library", path),
        };
        for (what, part) in [("namespace", namespace), ("name", name), ("tag", tag)] {
            if !is_safe_segment(part) {
                return Err(bad(&format!("{what} `{part}` must be letters, digits, `.`, `_` or `-`")));
            }
        }
        return Ok(Source::Ollama { namespace: namespace.into(), name: name.into(), tag: tag.into() });
    }
    if let Some(rest) = text.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(bad("file:// needs an absolute path, e.g. file:///home/me/model.gguf"));
        }
        return Ok(Source::File(PathBuf::from(rest)));
    }
    Err(StoreError::UnknownScheme(text.to_string()))
}

/// `hf://org/repo[@revision][/path-or-glob]`. The revision ends at the next `/`, so a revision with
/// slashes is written URL-encoded (`@feature%2Fx`), as the hub's own URLs carry it; the hub's
/// pull-request refs are common enough to be recognised as written too (`@refs/pr/1`).
fn parse_hf(text: &str, rest: &str) -> Result<Source> {
    let bad = |reason: String| StoreError::BadSource { source_text: text.to_string(), reason };
    let (org, after_org) = rest.split_once('/').ok_or_else(|| bad("expected hf://org/repo".into()))?;
    let repo_end = after_org.find(['/', '@']).unwrap_or(after_org.len());
    let (repo, mut tail) = after_org.split_at(repo_end);
    let mut revision = "main".to_string();
    if let Some(after_at) = tail.strip_prefix('@') {
        let (raw, after_rev) = split_revision(after_at);
        revision = percent_decode(raw).ok_or_else(|| bad(format!("revision `{raw}` has a bad %-escape")))?;
        tail = after_rev;
    }
    for (what, part) in [("organisation", org), ("repository", repo)] {
        if !is_safe_segment(part) {
            return Err(bad(format!("{what} `{part}` must be letters, digits, `.`, `_` or `-`")));
        }
    }
    if !revision.split('/').all(is_safe_segment) {
        return Err(bad(format!("revision `{revision}` must be `/`-separated letters, digits, `.`, `_` or `-`")));
    }
    let pattern = tail.strip_prefix('/').filter(|p| !p.is_empty()).map(str::to_string);
    if let Some(p) = &pattern {
        check_relative_name(p, text)?;
    }
    Ok(Source::Hf { repo: format!("{org}/{repo}"), revision, pattern })
}

/// Splits what follows `@` into the revision (still %-encoded) and the rest (`/path` or nothing).
fn split_revision(s: &str) -> (&str, &str) {
    if let Some(after) = s.strip_prefix("refs/pr/") {
        let digits = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
        if digits > 0 {
            return s.split_at("refs/pr/".len() + digits);
        }
    }
    s.split_at(s.find('/').unwrap_or(s.len()))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A revision as one URL path segment (what huggingface_hub's `quote(revision, safe="")` gives):
/// `refs/pr/1` → `refs%2Fpr%2F1`.
pub fn encode_revision(revision: &str) -> String {
    revision.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn is_safe_segment(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s != "." && s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl Store {
    /// The model a user means by `name`: a store name, an alias, `hf://org/repo[...]`, `ollama://name:tag`,
    /// or `name` without a tag (Ollama's `:latest`, or an HF repo's single quant). The store's own copy wins
    /// over copies indexed in other tools' caches.
    pub fn resolve(&self, name: &str) -> Result<ModelRecord> {
        let key = match name.strip_prefix("hf://") {
            Some(rest) => {
                let mut parts = rest.splitn(3, '/');
                let org = parts.next().unwrap_or_default();
                let repo = parts.next().unwrap_or_default().split('@').next().unwrap_or_default();
                format!("{org}/{repo}")
            }
            None => match parse_source(name) {
                Ok(Source::Ollama { namespace, name, tag }) if namespace == "library" => format!("{name}:{tag}"),
                Ok(Source::Ollama { namespace, name, tag }) => format!("{namespace}/{name}:{tag}"),
                _ => name.to_string(),
            },
        };
        let mut found = self.registry.models_named(&key)?;
        if found.is_empty() && !key.contains(':') {
            found = self.registry.models_named(&format!("{key}:latest"))?;
        }
        if found.is_empty() {
            // `org/repo` for a model registered as `org/repo:QUANT`.
            let prefix = format!("{key}:");
            found = self.registry.models()?.into_iter().filter(|m| m.name.starts_with(&prefix)).collect();
        }
        let mut names: Vec<&str> = found.iter().map(|m| m.name.as_str()).collect();
        names.dedup();
        if names.len() > 1 {
            return Err(StoreError::Ambiguous { name: name.to_string(), candidates: names.join(", ") });
        }
        found.sort_by_key(|m| m.origin.priority());
        found.into_iter().next().ok_or_else(|| StoreError::NotFound(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_reject_bad_input() {
        assert_eq!(
            parse_source("hf://org/repo@v1/model.Q4_1.gguf").unwrap(),
            Source::Hf { repo: "org/repo".into(), revision: "v1".into(), pattern: Some("model.Q4_1.gguf".into()) }
        );
        assert_eq!(parse_source("ollama://smollm2:135m").unwrap(), Source::Ollama { namespace: "library".into(), name: "smollm2".into(), tag: "135m".into() });
        assert!(matches!(parse_source("ftp://x"), Err(StoreError::UnknownScheme(_))));
        assert!(parse_source("hf://org/repo/../../etc/passwd").is_err());
        assert!(parse_source("hf://../repo").is_err());
        assert!(parse_source("ollama://../x:1").is_err());
        assert!(parse_source("file://relative").is_err());
    }

    #[test]
    fn revisions_with_slashes() {
        let hf = |repo: &str, rev: &str, pattern: Option<&str>| Source::Hf { repo: repo.into(), revision: rev.into(), pattern: pattern.map(str::to_string) };
        assert_eq!(parse_source("hf://o/r@refs/pr/12/sub/m.gguf").unwrap(), hf("o/r", "refs/pr/12", Some("sub/m.gguf")));
        assert_eq!(parse_source("hf://o/r@refs/pr/3").unwrap(), hf("o/r", "refs/pr/3", None));
        assert_eq!(parse_source("hf://o/r@feature%2Fx/*.gguf").unwrap(), hf("o/r", "feature/x", Some("*.gguf")));
        assert_eq!(parse_source("hf://o/r@refs%2Fpr%2F1").unwrap(), hf("o/r", "refs/pr/1", None));
        // Without the encoding, what follows the first `/` is a file: the revision is `feature`.
        assert_eq!(parse_source("hf://o/r@feature/x").unwrap(), hf("o/r", "feature", Some("x")));
        assert_eq!(parse_source("hf://o/r/m.gguf").unwrap(), hf("o/r", "main", Some("m.gguf")));
        for bad in ["hf://o/r@..%2Fx", "hf://o/r@a%2F%2Fb", "hf://o/r@%2Fa", "hf://o/r@a%2", "hf://o/r@", "hf://o/r@a%20b"] {
            assert!(parse_source(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(encode_revision("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode_revision("v1.0_a-b"), "v1.0_a-b");
    }
}
