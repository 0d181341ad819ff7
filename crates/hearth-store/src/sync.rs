//! `sync`: indexes the Hugging Face cache, Ollama's store and LM Studio's folder in place. Files whose
//! names carry their sha256 (HF LFS blobs, Ollama blobs) are trusted, so indexing reads no weight bytes:
//! only GGUF headers, manifests and small non-LFS files. Models that vanished from a tool are unregistered.

use crate::error::{Result, StoreError};
use crate::fetch::ollama::{OllamaManifest, MODEL_MEDIA_TYPE};
use crate::fsutil::{self, check_relative_name, is_sha256_hex, resolve_inside};
use crate::meta::{self, quant_from_file_name, split_part};
use crate::registry::{FileRecord, NewModel, Origin};
use crate::store::Store;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub const OLLAMA_HOST: &str = "registry.ollama.ai";

#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    pub hf_models: usize,
    pub ollama_models: usize,
    pub lmstudio_models: usize,
    pub unregistered: usize,
    /// Bytes read from files other than model headers (small non-LFS hub files).
    pub small_file_bytes_read: u64,
    /// Problems found (bad symlinks, manifests that lie); the affected models are skipped.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct SyncOptions {
    pub hf: bool,
    pub ollama: bool,
    pub lmstudio: bool,
}

pub fn sync(store: &mut Store, opts: SyncOptions) -> Result<SyncReport> {
    let mut report = SyncReport::default();
    if opts.hf {
        let found = index_hf_cache(store, &mut report)?;
        report.hf_models = found.len();
        report.unregistered += forget_missing(store, Origin::HfCache, &found)?;
    }
    if opts.ollama {
        let found = index_ollama(store, &mut report)?;
        report.ollama_models = found.len();
        report.unregistered += forget_missing(store, Origin::Ollama, &found)?;
    }
    if opts.lmstudio {
        let found = index_lmstudio(store)?;
        report.lmstudio_models = found.len();
        report.unregistered += forget_missing(store, Origin::LmStudio, &found)?;
    }
    Ok(report)
}

fn forget_missing(store: &mut Store, origin: Origin, found: &HashSet<String>) -> Result<usize> {
    let mut n = 0;
    for m in store.registry.models_with_origin(origin)? {
        if !found.contains(&m.name) {
            store.registry.delete_model(m.id)?;
            n += 1;
        }
    }
    Ok(n)
}

fn register_indexed(store: &mut Store, app: &str, app_dir: &Path, model: NewModel) -> Result<()> {
    let id = store.registry.upsert_model(&model)?;
    let app_id = store.registry.ensure_app(app, app_dir, app_dir)?;
    store.registry.note_usage(id, app_id)
}

// ---------------------------------------------------------------------------------------------- HF cache

fn index_hf_cache(store: &mut Store, report: &mut SyncReport) -> Result<HashSet<String>> {
    let root = store.locations.hf_hub_cache.clone();
    let mut found = HashSet::new();
    let Ok(entries) = std::fs::read_dir(&root) else { return Ok(found) };
    let mut repos: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    repos.sort();
    for repo_dir in repos {
        let Some(dir_name) = repo_dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        let Some(repo_id) = dir_name.strip_prefix("models--").map(|r| r.replacen("--", "/", 1)) else { continue };
        match hf_repo_models(&repo_dir, &repo_id, report) {
            Ok(models) => {
                for m in models {
                    found.insert(m.name.clone());
                    register_indexed(store, "huggingface", &root, m)?;
                }
            }
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    Ok(found)
}

/// The models of one `models--org--name` folder, at the commit [`hf_commit`] picks.
fn hf_repo_models(repo_dir: &Path, repo_id: &str, report: &mut SyncReport) -> Result<Vec<NewModel>> {
    let Some(commit) = hf_commit(repo_dir) else { return Ok(Vec::new()) };
    check_relative_name(&commit, &repo_dir.display().to_string())?;
    let snapshot = repo_dir.join("snapshots").join(&commit);
    let mut files = Vec::new();
    for rel in list_files(&snapshot)? {
        let link = snapshot.join(&rel);
        let real = resolve_inside(&link, repo_dir)?;
        let size = std::fs::metadata(&real).map(|m| m.len()).unwrap_or(0);
        let etag = real.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let sha256 = if is_sha256_hex(&etag) {
            etag
        } else {
            // A small file kept in git, named by its git sha1: hashing it reads no weights.
            report.small_file_bytes_read += size;
            fsutil::sha256_file(&real)?
        };
        files.push((rel, FileRecord { rel_path: String::new(), sha256: Some(sha256), size, location: real }));
    }
    let source = format!("hf://{repo_id}@{commit}");
    let ggufs: Vec<&String> = files.iter().map(|(rel, _)| rel).filter(|r| r.ends_with(".gguf")).collect();
    let mut models = Vec::new();
    // A split GGUF is one model of all its parts, opened at the first.
    for g in ggufs.iter().filter(|g| split_part(g).is_none_or(|p| p.index == 1)) {
        let Some(records) = gguf_set(g, |rel| files.iter().find(|(r, _)| r == rel).map(|(r, f)| FileRecord { rel_path: r.clone(), ..f.clone() })) else {
            report.problems.push(format!("{}: split GGUF `{g}` is incomplete; skipped", snapshot.display()));
            continue;
        };
        let entry = snapshot.join(g);
        let meta = meta::gguf_meta(&entry);
        let label = quant_from_file_name(g).or_else(|| meta.quantization.clone()).unwrap_or_else(|| g.trim_end_matches(".gguf").to_string());
        let name = format!("{repo_id}:{label}");
        models.push(new_model(name, Origin::HfCache, format!("{source}/{g}"), meta, Some(commit.clone()), entry, records));
    }
    let has_safetensors = files.iter().any(|(rel, _)| rel.ends_with(".safetensors"));
    if has_safetensors && snapshot.join("config.json").exists() {
        let meta = meta::safetensors_meta(&snapshot.join("config.json"));
        let records = files.into_iter().map(|(rel, f)| FileRecord { rel_path: rel, ..f }).collect();
        models.push(new_model(repo_id.to_string(), Origin::HfCache, source, meta, Some(commit), snapshot, records));
    }
    Ok(models)
}

/// The snapshot to index: the one `refs/main` names; else the one every other ref names (huggingface_hub
/// writes a ref at its name's path, so `refs/pr/1` is the file `refs/refs/pr/1`); else the only snapshot.
fn hf_commit(repo_dir: &Path) -> Option<String> {
    let refs = repo_dir.join("refs");
    let read = |rel: &str| std::fs::read_to_string(refs.join(rel)).ok().map(|s| s.trim().to_string());
    if let Some(main) = read("main") {
        return Some(main);
    }
    let mut named: Vec<String> = list_files(&refs).unwrap_or_default().iter().filter_map(|r| read(r)).collect();
    named.sort_unstable();
    named.dedup();
    if let [one] = named.as_slice() {
        return Some(one.clone());
    }
    let snaps: Vec<String> = std::fs::read_dir(repo_dir.join("snapshots")).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    match snaps.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// The records of GGUF `name` (every part, for the first part of a split GGUF), found by `record`; none
/// when a part is missing.
fn gguf_set(name: &str, record: impl Fn(&str) -> Option<FileRecord>) -> Option<Vec<FileRecord>> {
    match split_part(name) {
        Some(p) => (1..=p.count).map(|i| record(&p.name_of(i))).collect(),
        None => record(name).map(|r| vec![r]),
    }
}

fn new_model(name: String, origin: Origin, source: String, meta: meta::ModelMeta, revision: Option<String>, entry: PathBuf, files: Vec<FileRecord>) -> NewModel {
    NewModel { name, origin, source, format: meta.format, quantization: meta.quantization, architecture: meta.architecture, revision, entry, files }
}

/// Relative names of the files (or symlinks to files) under `dir`, recursively; names are checked.
fn list_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| StoreError::Io { path: d.clone(), source })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().into_owned();
                check_relative_name(&rel, &dir.display().to_string())?;
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}

// ------------------------------------------------------------------------------------------------ Ollama

fn index_ollama(store: &mut Store, report: &mut SyncReport) -> Result<HashSet<String>> {
    let root = store.locations.ollama_models.clone();
    let mut found = HashSet::new();
    let manifests = root.join("manifests");
    let Ok(files) = list_files(&manifests) else { return Ok(found) };
    for rel in files {
        let parts: Vec<&str> = rel.split('/').collect();
        let [host, namespace, name, tag] = parts.as_slice() else { continue };
        let model_name = ollama_name(host, namespace, name, tag);
        match ollama_model(&root, &manifests.join(&rel), &model_name) {
            Ok(m) => {
                found.insert(model_name);
                register_indexed(store, "ollama", &root, m)?;
            }
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    Ok(found)
}

pub fn ollama_name(host: &str, namespace: &str, name: &str, tag: &str) -> String {
    match (host, namespace) {
        (OLLAMA_HOST, "library") => format!("{name}:{tag}"),
        (OLLAMA_HOST, ns) => format!("{ns}/{name}:{tag}"),
        (h, ns) => format!("{h}/{ns}/{name}:{tag}"),
    }
}

/// Reads one manifest; every blob it names must exist with the size it claims (a stat, no reads).
fn ollama_model(root: &Path, manifest_path: &Path, name: &str) -> Result<NewModel> {
    let what = manifest_path.display().to_string();
    let bytes = std::fs::read(manifest_path).map_err(|source| StoreError::Io { path: manifest_path.to_path_buf(), source })?;
    let manifest: OllamaManifest = serde_json::from_slice(&bytes).map_err(|e| StoreError::BadResponse { what: what.clone(), message: e.to_string() })?;
    let mut files = Vec::new();
    let mut entry = None;
    for layer in std::iter::once(&manifest.config).chain(&manifest.layers) {
        let sha = layer.sha256(&what)?;
        let blob = root.join("blobs").join(format!("sha256-{sha}"));
        let actual = std::fs::metadata(&blob).map_err(|source| StoreError::Io { path: blob.clone(), source })?.len();
        if actual != layer.size {
            return Err(StoreError::SizeMismatch { what: format!("{what}: layer {}", layer.digest), expected: layer.size, actual });
        }
        if layer.media_type == MODEL_MEDIA_TYPE {
            entry = Some(blob.clone());
        }
        let rel_path = if std::ptr::eq(layer, &manifest.config) { "config.json".into() } else { layer.file_name() };
        files.push(FileRecord { rel_path, sha256: Some(sha), size: layer.size, location: blob });
    }
    let entry = entry.ok_or_else(|| StoreError::BadResponse { what: what.clone(), message: "no model layer".into() })?;
    let meta = meta::gguf_meta(&entry);
    Ok(new_model(name.to_string(), Origin::Ollama, format!("ollama://{name}"), meta, None, entry, files))
}

// --------------------------------------------------------------------------------------------- LM Studio

/// `<models>/<publisher>/<repo>/<file>.gguf`; not hashed here (LM Studio names carry no digest): `dedup`
/// hashes the files whose size matches another file's.
fn index_lmstudio(store: &mut Store) -> Result<HashSet<String>> {
    let root = store.locations.lmstudio_models.clone();
    let mut found = HashSet::new();
    let Ok(files) = list_files(&root) else { return Ok(found) };
    for rel in files.into_iter().filter(|r| r.ends_with(".gguf") && split_part(r).is_none_or(|p| p.index == 1)) {
        let parts: Vec<&str> = rel.split('/').collect();
        let [publisher, repo, file] = parts.as_slice() else { continue };
        let dir = root.join(publisher).join(repo);
        let record = |name: &str| {
            let path = dir.join(name);
            std::fs::metadata(&path).ok().map(|m| FileRecord { rel_path: name.to_string(), sha256: None, size: m.len(), location: path })
        };
        let Some(records) = gguf_set(file, record) else { continue };
        let path = root.join(&rel);
        let meta = meta::gguf_meta(&path);
        let label = quant_from_file_name(file).unwrap_or_else(|| file.trim_end_matches(".gguf").to_string());
        let name = format!("{publisher}/{repo}:{label}");
        found.insert(name.clone());
        let model = new_model(name, Origin::LmStudio, format!("file://{}", path.display()), meta, None, path, records);
        register_indexed(store, "lmstudio", &root, model)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::hf_commit;

    #[test]
    fn hf_commit_follows_refs_with_slashes() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        for c in ["c0", "c1"] {
            std::fs::create_dir_all(repo.join("snapshots").join(c)).unwrap();
        }
        assert_eq!(hf_commit(repo), None, "two snapshots and no ref: ambiguous");
        std::fs::create_dir_all(repo.join("refs/refs/pr")).unwrap();
        std::fs::write(repo.join("refs/refs/pr/1"), "c1").unwrap();
        assert_eq!(hf_commit(repo).as_deref(), Some("c1"));
        std::fs::write(repo.join("refs/main"), "c0\n").unwrap();
        assert_eq!(hf_commit(repo).as_deref(), Some("c0"), "main wins");
    }
}
