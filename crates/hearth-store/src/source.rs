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
        let mut parts = rest.splitn(3, '/');
        let org = parts.next().unwrap_or_default();
        let repo_rev = parts.next().ok_or_else(|| bad("expected hf://org/repo"))?;
        let pattern = parts.next().filter(|p| !p.is_empty()).map(str::to_string);
        let (repo, revision) = match repo_rev.split_once('@') {
            Some((r, rev)) => (r, rev),
            None => (repo_rev, "main"),
        };
        for (what, part) in [("organisation", org), ("repository", repo), ("revision", revision)] {
            if !is_safe_segment(part) {
                return Err(bad(&format!("{what} `{part}` must be letters, digits, `.`, `_` or `-`")));
            }
        }
        if let Some(p) = &pattern {
            check_relative_name(p, text)?;
        }
        return Ok(Source::Hf { repo: format!("{org}/{repo}"), revision: revision.to_string(), pattern });
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
}
