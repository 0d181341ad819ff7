//! The store itself: blobs under `blobs/sha256/<hex>` (read-only, published by rename), per-model
//! manifests under `manifests/`, a snapshot folder per model under `models/` whose entries are relative
//! symlinks to blobs (the path a loader opens), and the registry.

use crate::config::{ensure_dir, Config, Locations, Remotes};
use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{self, FileLock};
use crate::meta::{self, ModelMeta};
use crate::registry::{FileRecord, ModelRecord, NewModel, Origin, Registry};
use serde::Serialize;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The name under which `hearth run` / `serve` uses of a model are recorded.
pub const HEARTH_APP: &str = "hearth";

/// The blob folders of a store, shareable between download threads (the registry is not).
#[derive(Debug, Clone)]
pub struct BlobDir {
    root: PathBuf,
}

impl BlobDir {
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(sha256)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn lock(&self, key: &str) -> Result<FileLock> {
        FileLock::acquire(&self.root.join("locks").join(format!("{key}.lock")))
    }

    /// Publishes a verified temp file as blob `sha256`: made read-only and renamed into place under the
    /// blob's lock, so no reader ever sees a partial blob under its final name.
    pub fn publish(&self, tmp: &Path, sha256: &str) -> Result<PathBuf> {
        let _lock = self.lock(sha256)?;
        self.publish_locked(tmp, sha256)
    }

    /// `publish` for a caller that already holds the blob's lock.
    pub fn publish_locked(&self, tmp: &Path, sha256: &str) -> Result<PathBuf> {
        let dest = self.blob_path(sha256);
        if dest.exists() {
            let _ = std::fs::remove_file(tmp);
        } else {
            std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o444)).at(tmp)?;
            std::fs::rename(tmp, &dest).at(&dest)?;
        }
        Ok(dest)
    }
}

pub struct Store {
    pub blobs: BlobDir,
    pub locations: Locations,
    pub remotes: Remotes,
    pub config: Config,
    pub(crate) registry: Registry,
}

/// One file of a model about to be registered in the store: its name in the model and its blob.
#[derive(Debug, Clone, Serialize)]
pub struct StoredFile {
    pub rel_path: String,
    pub sha256: String,
    pub size: u64,
}

/// The JSON manifest written per store model (the registry holds the same; this survives a lost db).
#[derive(Serialize)]
struct Manifest<'a> {
    name: &'a str,
    source: &'a str,
    revision: Option<&'a str>,
    format: &'a str,
    entry: &'a str,
    files: &'a [StoredFile],
}

impl Store {
    pub fn open(locations: Locations, remotes: Remotes, config: Config) -> Result<Store> {
        for sub in ["blobs/sha256", "tmp", "locks", "manifests", "models", "quarantine"] {
            ensure_dir(&locations.store_dir.join(sub))?;
        }
        let registry = Registry::open(&locations.store_dir.join("registry.db"))?;
        Ok(Store { blobs: BlobDir { root: locations.store_dir.clone() }, locations, remotes, config, registry })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn root(&self) -> &Path {
        &self.locations.store_dir
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blobs.blob_path(sha256)
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.blobs.tmp_dir()
    }

    pub(crate) fn lock(&self, key: &str) -> Result<FileLock> {
        self.blobs.lock(key)
    }

    /// Publishes a verified temp file as a blob and records it.
    pub(crate) fn publish_blob(&self, tmp: &Path, sha256: &str, size: u64) -> Result<PathBuf> {
        let dest = self.blobs.publish(tmp, sha256)?;
        self.registry.add_blob(sha256, size)?;
        Ok(dest)
    }

    /// Records blobs published by download threads.
    pub(crate) fn record_blobs(&self, files: &[StoredFile]) -> Result<()> {
        for f in files {
            self.registry.add_blob(&f.sha256, f.size)?;
        }
        Ok(())
    }

    /// Copies a local file into the store, hashing it in the same pass.
    pub fn import_file(&self, src: &Path) -> Result<StoredFile> {
        let tmp = fsutil::temp_sibling(&self.tmp_dir().join("import"));
        let (sha256, size) = match fsutil::copy_hashing(src, &tmp) {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        self.publish_blob(&tmp, &sha256, size)?;
        let rel_path = src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| sha256.clone());
        Ok(StoredFile { rel_path, sha256, size })
    }

    /// Registers a store model made of blobs already in the store: writes its snapshot folder (relative
    /// symlinks to blobs) and its manifest atomically, then the registry row.
    pub fn register(&mut self, name: &str, source: &str, revision: Option<&str>, files: &[StoredFile], entry_rel: Option<&str>) -> Result<ModelRecord> {
        let slug = slug(name);
        // Two processes adding one model both get here: one at a time, or one's snapshot rename
        // finds the other's folder in place ("Directory not empty"; seen in CI).
        let _lock = self.lock(&format!("register-{slug}"))?;
        let snapshot = self.root().join("models").join(&slug);
        write_snapshot(&snapshot, files, |sha| self.blob_path(sha))?;
        let entry = match entry_rel {
            Some(rel) => snapshot.join(rel),
            None => snapshot.clone(),
        };
        let meta = detect_meta(&entry, &snapshot);
        let manifest = Manifest { name, source, revision, format: &meta.format, entry: entry_rel.unwrap_or("."), files };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| StoreError::BadResponse { what: name.into(), message: e.to_string() })?;
        fsutil::write_atomic(&self.root().join("manifests").join(format!("{slug}.json")), &json)?;
        let new = NewModel {
            name: name.to_string(),
            origin: Origin::Store,
            source: source.to_string(),
            format: meta.format,
            quantization: meta.quantization,
            architecture: meta.architecture,
            revision: revision.map(str::to_string),
            entry,
            files: files
                .iter()
                .map(|f| FileRecord { rel_path: f.rel_path.clone(), sha256: Some(f.sha256.clone()), size: f.size, location: self.blob_path(&f.sha256) })
                .collect(),
        };
        let id = self.registry.upsert_model(&new)?;
        self.model_by_id(id)
    }

    pub fn model_by_id(&self, id: i64) -> Result<ModelRecord> {
        self.registry.models()?.into_iter().find(|m| m.id == id).ok_or_else(|| StoreError::NotFound(format!("#{id}")))
    }

    /// `add file:///path`: a .gguf file or a safetensors directory, copied into the store.
    pub fn add_local(&mut self, path: &Path, name: Option<&str>) -> Result<ModelRecord> {
        let meta = std::fs::metadata(path).at(path)?;
        let default_name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        let name = name.map(str::to_string).unwrap_or(default_name);
        let source = format!("file://{}", std::fs::canonicalize(path).at(path)?.display());
        // Re-adding the same path updates its model; another file of the same name (every
        // `model-q8_0.gguf`) must not silently replace it.
        if let Some(existing) = self.registry.models()?.into_iter().find(|m| m.name == name && m.origin == Origin::Store && m.source != source) {
            return Err(StoreError::NameTaken { name, existing: existing.source });
        }
        if meta.is_file() {
            if path.extension().and_then(|e| e.to_str()) != Some("gguf") {
                return Err(StoreError::NotAModel { path: path.to_path_buf() });
            }
            let stored = self.import_file(path)?;
            let rel = stored.rel_path.clone();
            return self.register(&name, &source, None, &[stored], Some(&rel));
        }
        let files = local_dir_files(path)?;
        let mut stored = Vec::new();
        for (rel, abs) in files {
            let mut f = self.import_file(&abs)?;
            f.rel_path = rel;
            stored.push(f);
        }
        self.register(&name, &source, None, &stored, None)
    }

    /// Removes a model. Refuses while apps hold links to it unless `force`; store blobs no other store
    /// model lists are deleted. Returns the bytes freed.
    pub fn remove(&mut self, model: &ModelRecord, force: bool) -> Result<u64> {
        let linking = self.registry.apps_linking(model.id)?;
        if !linking.is_empty() && !force {
            return Err(StoreError::InUse { model: model.name.clone(), apps: linking.join(", ") });
        }
        let files = self.registry.model_files(model.id)?;
        self.registry.delete_model(model.id)?;
        if model.origin != Origin::Store {
            return Ok(0);
        }
        let slug = slug(&model.name);
        let snapshot = self.root().join("models").join(&slug);
        if snapshot.exists() {
            std::fs::remove_dir_all(&snapshot).at(&snapshot)?;
        }
        let manifest = self.root().join("manifests").join(format!("{slug}.json"));
        let _ = std::fs::remove_file(manifest);
        let mut freed = 0;
        for f in files {
            if let Some(sha) = f.sha256 {
                freed += self.delete_blob_if_unreferenced(&sha)?;
            }
        }
        Ok(freed)
    }

    /// Deletes a store blob that no store model lists; returns its size (0 if kept or absent).
    pub(crate) fn delete_blob_if_unreferenced(&self, sha256: &str) -> Result<u64> {
        let _lock = self.lock(sha256)?;
        if self.registry.blob_referenced(sha256)? {
            return Ok(0);
        }
        let path = self.blob_path(sha256);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::Io { path, source: e }),
        }
        self.registry.delete_blob(sha256)?;
        Ok(size)
    }

    /// Counts a use of the model by an app (by default hearth itself) and updates its last use.
    pub fn record_use(&self, model: &ModelRecord, app: &str) -> Result<()> {
        let app_path = PathBuf::from(format!("{app}:"));
        let app_id = self.registry.ensure_app(app, &app_path, &app_path)?;
        self.registry.record_use(model.id, app_id)
    }
}

/// A file-system-safe, collision-free folder name for a model name.
pub fn slug(name: &str) -> String {
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
    let digest = fsutil::hex(&<sha2::Sha256 as sha2::Digest>::digest(name.as_bytes()));
    format!("{}-{}", clean.trim_start_matches('.'), &digest[..8])
}

fn detect_meta(entry: &Path, snapshot: &Path) -> ModelMeta {
    if entry.extension().and_then(|e| e.to_str()) == Some("gguf") {
        meta::gguf_meta(entry)
    } else {
        meta::safetensors_meta(&snapshot.join("config.json"))
    }
}

/// Builds the snapshot folder beside its final name, then swaps it in.
fn write_snapshot(snapshot: &Path, files: &[StoredFile], blob_path: impl Fn(&str) -> PathBuf) -> Result<()> {
    let staging = fsutil::temp_sibling(snapshot);
    let result = (|| {
        for f in files {
            let rel = fsutil::check_relative_name(&f.rel_path, "manifest")?;
            let link = staging.join(&rel);
            let dir = link.parent().unwrap_or(&staging);
            ensure_dir(dir)?;
            let target = relative_to(&blob_path(&f.sha256), dir);
            std::os::unix::fs::symlink(&target, &link).at(&link)?;
        }
        if files.is_empty() {
            ensure_dir(&staging)?;
        }
        if snapshot.exists() {
            let old = fsutil::temp_sibling(snapshot);
            std::fs::rename(snapshot, &old).at(snapshot)?;
            std::fs::rename(&staging, snapshot).at(snapshot)?;
            std::fs::remove_dir_all(&old).at(&old)
        } else {
            std::fs::rename(&staging, snapshot).at(snapshot)
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// `target` expressed relative to `from_dir` (both inside the store), so the store can be moved.
fn relative_to(target: &Path, from_dir: &Path) -> PathBuf {
    let t: Vec<_> = target.components().collect();
    let f: Vec<_> = from_dir.components().collect();
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// The files of a local safetensors directory, as (relative name, path); symlinks must stay inside it.
fn local_dir_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    if !dir.join("config.json").is_file() {
        return Err(StoreError::NotAModel { path: dir.to_path_buf() });
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).at(&d)? {
            let entry = entry.at(&d)?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let real = fsutil::resolve_inside(&path, dir)?;
            if real.is_dir() {
                stack.push(path);
            } else if real.is_file() {
                let rel = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().into_owned();
                out.push((rel, real));
            }
        }
    }
    if !out.iter().any(|(rel, _)| rel.ends_with(".safetensors")) {
        return Err(StoreError::NotAModel { path: dir.to_path_buf() });
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_between_store_folders() {
        assert_eq!(relative_to(Path::new("/s/blobs/sha256/ab"), Path::new("/s/models/m")), PathBuf::from("../../blobs/sha256/ab"));
    }

    #[test]
    fn slugs_differ_for_names_that_sanitize_alike() {
        assert_ne!(slug("a/b"), slug("a-b"));
        assert!(!slug("../x").contains('/'));
    }
}
