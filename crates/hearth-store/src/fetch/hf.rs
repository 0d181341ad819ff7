//! The Hugging Face hub protocol: `GET /api/models/{repo}/revision/{rev}?blobs=true` pins the revision to
//! a commit and lists the files (with LFS sha256 and sizes); files come from
//! `/{repo}/resolve/{commit}/{file}`. The revision is one URL path segment (`refs/pr/1` → `refs%2Fpr%2F1`),
//! as huggingface_hub sends it. `HF_TOKEN` is sent as a bearer token, `HF_ENDPOINT` replaces the host.

use super::http::{Download, Http};
use crate::error::{Result, StoreError};
use crate::fsutil::{check_relative_name, is_sha256_hex};
use crate::meta::{quant_from_file_name, split_part};
use crate::registry::ModelRecord;
use crate::source::encode_revision;
use crate::store::{Store, StoredFile};
use serde::Deserialize;

#[derive(Deserialize)]
struct RevisionInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Deserialize, Clone)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<Lfs>,
}

#[derive(Deserialize, Clone)]
struct Lfs {
    sha256: String,
    size: u64,
}

/// Weight formats other than safetensors, skipped when a repo has safetensors.
const OTHER_WEIGHTS: &[&str] = &[".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".ot", ".tflite", ".gguf", ".mlmodel"];

/// Preferred quantizations when a GGUF repo holds several and none was asked for.
const PREFERRED_QUANTS: &[&str] = &["Q4_K_M", "Q4_0", "Q4_1", "Q5_K_M", "Q8_0"];

pub fn add(store: &mut Store, repo: &str, revision: &str, pattern: Option<&str>, alias: Option<&str>) -> Result<ModelRecord> {
    let http = Http::new(&store.remotes)?;
    let endpoint = store.remotes.hf_endpoint.trim_end_matches('/').to_string();
    let token = store.remotes.hf_token.clone();
    let api = format!("{endpoint}/api/models/{repo}/revision/{}?blobs=true", encode_revision(revision));
    let body = http.get_bytes(&api, token.as_deref(), None)?;
    let info: RevisionInfo = serde_json::from_slice(&body).map_err(|e| StoreError::BadResponse { what: api.clone(), message: e.to_string() })?;
    if info.sha.len() < 7 || !info.sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(StoreError::BadResponse { what: api, message: format!("revision sha `{}` is not a commit id", info.sha) });
    }
    for s in &info.siblings {
        check_relative_name(&s.rfilename, &api)?;
    }
    let chosen = complete_split_sets(repo, &info.siblings, select_files(repo, &info.siblings, pattern)?)?;
    let downloads: Vec<Download> = chosen
        .iter()
        .map(|s| Download {
            url: format!("{endpoint}/{repo}/resolve/{}/{}", info.sha, s.rfilename),
            rel_path: s.rfilename.clone(),
            expected_sha256: s.lfs.as_ref().map(|l| l.sha256.to_lowercase()).filter(|h| is_sha256_hex(h)),
            expected_size: s.lfs.as_ref().map(|l| l.size).or(s.size),
            git_sha1: if s.lfs.is_none() { s.blob_id.clone() } else { None },
        })
        .collect();
    let stored = http.download_all(&store.blobs, &downloads, token.as_deref())?;
    store.record_blobs(&stored)?;
    let (name, entry) = name_and_entry(repo, &stored);
    let source = match pattern {
        Some(p) => format!("hf://{repo}@{}/{p}", info.sha),
        None => format!("hf://{repo}@{}", info.sha),
    };
    let model = store.register(&name, &source, Some(&info.sha), &stored, entry.as_deref())?;
    if let Some(a) = alias {
        store.registry.set_alias(a, model.id)?;
    }
    Ok(model)
}

fn select_files(repo: &str, siblings: &[Sibling], pattern: Option<&str>) -> Result<Vec<Sibling>> {
    let nothing = |reason: String| StoreError::NothingToFetch { repo: repo.to_string(), reason };
    if let Some(p) = pattern {
        let hits: Vec<Sibling> = siblings.iter().filter(|s| glob_match(p, &s.rfilename)).cloned().collect();
        if hits.is_empty() {
            return Err(nothing(format!("no file matches `{p}` (files: {})", names(siblings))));
        }
        return Ok(hits);
    }
    let ggufs: Vec<&Sibling> = siblings.iter().filter(|s| s.rfilename.ends_with(".gguf")).collect();
    let has_safetensors = siblings.iter().any(|s| s.rfilename.ends_with(".safetensors"));
    if !ggufs.is_empty() && !has_safetensors {
        let pick = PREFERRED_QUANTS
            .iter()
            .find_map(|q| ggufs.iter().find(|s| quant_from_file_name(&s.rfilename).as_deref() == Some(q)))
            .or(ggufs.first())
            .copied();
        return pick.map(|s| vec![s.clone()]).ok_or_else(|| nothing("no GGUF file".into()));
    }
    let files: Vec<Sibling> = siblings
        .iter()
        .filter(|s| {
            let n = s.rfilename.as_str();
            let hidden = n.split('/').any(|c| c.starts_with('.'));
            let other_weights = OTHER_WEIGHTS.iter().any(|ext| n.ends_with(ext));
            !hidden && !n.ends_with(".md") && !other_weights
        })
        .cloned()
        .collect();
    if !has_safetensors {
        return Err(nothing(format!("neither GGUF nor safetensors files (files: {})", names(siblings))));
    }
    Ok(files)
}

/// Any part of a split GGUF brings its whole set: one part alone is not a model.
fn complete_split_sets(repo: &str, siblings: &[Sibling], chosen: Vec<Sibling>) -> Result<Vec<Sibling>> {
    let mut wanted: std::collections::HashSet<String> = chosen.iter().map(|s| s.rfilename.clone()).collect();
    for s in &chosen {
        let Some(part) = split_part(&s.rfilename) else { continue };
        for index in 1..=part.count {
            let name = part.name_of(index);
            if !siblings.iter().any(|x| x.rfilename == name) {
                let reason = format!("split GGUF `{}` lacks its part `{name}`", s.rfilename);
                return Err(StoreError::NothingToFetch { repo: repo.to_string(), reason });
            }
            wanted.insert(name);
        }
    }
    Ok(siblings.iter().filter(|s| wanted.contains(&s.rfilename)).cloned().collect())
}

/// `repo:QUANT` and the GGUF to open when the files hold one GGUF model (a split set opens at its first
/// part); otherwise the repo and its folder.
fn name_and_entry(repo: &str, stored: &[StoredFile]) -> (String, Option<String>) {
    let models: Vec<&str> =
        stored.iter().map(|f| f.rel_path.as_str()).filter(|p| p.ends_with(".gguf") && split_part(p).is_none_or(|s| s.index == 1)).collect();
    match models.as_slice() {
        [one] => {
            let label = quant_from_file_name(one).unwrap_or_else(|| split_part(one).map_or(one.trim_end_matches(".gguf"), |s| s.base).to_string());
            (format!("{repo}:{label}"), Some(one.to_string()))
        }
        _ => (repo.to_string(), None),
    }
}

fn names(siblings: &[Sibling]) -> String {
    let list: Vec<&str> = siblings.iter().take(20).map(|s| s.rfilename.as_str()).collect();
    list.join(", ")
}

/// Shell-style glob with `*` (any run of characters) and `?` (one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*.Q4_1.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"));
        assert!(glob_match("model.gguf", "model.gguf"));
        assert!(glob_match("m?del*", "model.gguf"));
        assert!(!glob_match("*.Q8_0.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"));
    }
}
