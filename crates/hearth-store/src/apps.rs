//! Apps that use store models: `link` registers an app and materialises its models into the app's model
//! folder as links (reflink, hard link or symlink); `unlink` removes exactly the links it made. Exports
//! into Ollama (a manifest plus the GGUF linked as a blob) and LM Studio (`<publisher>/<repo>/<file>`) are
//! links of the same kind, recorded under the apps `ollama` and `lmstudio` so `remove` knows about them.

use crate::error::{IoContext, Result, StoreError};
use crate::fetch::ollama::{Layer, OllamaManifest, MANIFEST_MEDIA_TYPE, MODEL_MEDIA_TYPE};
use crate::fsutil::{self, check_relative_name};
use crate::link::{LinkMode, Linker};
use crate::meta::split_part;
use crate::registry::{ModelRecord, Origin};
use crate::store::Store;
use crate::sync::OLLAMA_HOST;
use serde::Serialize;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize)]
pub struct LinkedFile {
    pub path: PathBuf,
    pub mode: String,
}

impl Store {
    /// Registers the app at `app_path` and links every file of `models` into `model_dir`.
    pub fn link_app(&mut self, app_path: &Path, model_dir: &Path, models: &[ModelRecord]) -> Result<Vec<LinkedFile>> {
        let name = app_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| app_path.display().to_string());
        std::fs::create_dir_all(model_dir).at(model_dir)?;
        let app_id = self.registry.ensure_app(&name, app_path, model_dir)?;
        let mut linker = Linker::default();
        let mut made = Vec::new();
        for model in models {
            for (file, dest) in self.model_link_targets(model, model_dir)? {
                let mode = self.place_link(&mut linker, &file, &dest)?;
                self.registry.add_link(app_id, model.id, &dest, file_sha(&file).as_deref(), mode.as_str())?;
                made.push(LinkedFile { path: dest, mode: mode.as_str().into() });
            }
            self.registry.note_usage(model.id, app_id)?;
        }
        Ok(made)
    }

    /// Removes the links `link_app` made for this app (only files that are still those links) and the app.
    pub fn unlink_app(&mut self, app_path: &Path) -> Result<Vec<PathBuf>> {
        let app = self.registry.app_by_path(app_path)?.ok_or_else(|| StoreError::AppNotLinked(app_path.display().to_string()))?;
        let mut removed = Vec::new();
        for link in self.registry.links_of_app(app.id)? {
            if still_our_link(&link.path, link.sha256.as_deref(), self) {
                std::fs::remove_file(&link.path).at(&link.path)?;
                removed.push(link.path.clone());
            }
            self.registry.delete_link(link.id)?;
        }
        self.registry.delete_app(app.id)?;
        Ok(removed)
    }

    /// (source file, destination) pairs: the GGUF (every part of a split one), or a safetensors model's
    /// files in a sub-folder.
    fn model_link_targets(&self, model: &ModelRecord, model_dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
        if model.format == "gguf" {
            let mut files = self.gguf_files(model)?;
            if let [(name, _)] = files.as_mut_slice() {
                if !name.ends_with(".gguf") {
                    *name = format!("{}.gguf", crate::store::slug(&model.name));
                }
            }
            return Ok(files.into_iter().map(|(name, src)| (src, model_dir.join(name))).collect());
        }
        let sub = model_dir.join(model.name.replace(['/', ':'], "--"));
        let mut out = Vec::new();
        for f in self.registry.model_files(model.id)? {
            let rel = check_relative_name(&f.rel_path, &model.name)?;
            out.push((f.location.clone(), sub.join(rel)));
        }
        Ok(out)
    }

    /// The GGUF files a loader needs side by side, as (file name, file): the entry alone, or every part of
    /// a split GGUF (loaders find the other parts by name next to the first).
    fn gguf_files(&self, model: &ModelRecord) -> Result<Vec<(String, PathBuf)>> {
        let entry_name = model.entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model.gguf".into());
        let Some(part) = split_part(&entry_name) else {
            return Ok(vec![(entry_name, std::fs::canonicalize(&model.entry).at(&model.entry)?)]);
        };
        let files = self.registry.model_files(model.id)?;
        let mut out = Vec::new();
        for index in 1..=part.count {
            let name = part.name_of(index);
            let file = files.iter().find(|f| f.rel_path.rsplit('/').next() == Some(name.as_str()));
            let file = file.ok_or_else(|| StoreError::Unsupported { model: model.name.clone(), reason: format!("split GGUF part `{name}` is not registered with it") })?;
            out.push((name, file.location.clone()));
        }
        Ok(out)
    }

    fn place_link(&self, linker: &mut Linker, src: &Path, dest: &Path) -> Result<LinkMode> {
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        if let (Ok(a), Ok(b)) = (std::fs::metadata(src), std::fs::metadata(dest)) {
            if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
                return Ok(LinkMode::Hardlink);
            }
            return Err(StoreError::Io { path: dest.to_path_buf(), source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a different file is already there; not replacing it") });
        }
        linker.link_new(src, dest, self.config.link_mode)
    }

    /// Makes a store GGUF model visible to Ollama as `name:tag`: the GGUF (and the other layers of a model
    /// pulled from Ollama) linked into `blobs/`, then the manifest written atomically, so Ollama's prune of
    /// unreferenced blobs never sees a blob without its manifest for long, and never a manifest without blobs.
    pub fn export_ollama(&mut self, model: &ModelRecord, as_name: &str) -> Result<PathBuf> {
        let (name, tag) = as_name.rsplit_once(':').unwrap_or((as_name, "latest"));
        for part in [name, tag] {
            check_relative_name(part, "ollama name")?;
            if part.contains('/') {
                return Err(StoreError::BadSource { source_text: as_name.into(), reason: "use name:tag without a namespace".into() });
            }
        }
        if let Some(part) = model.entry.file_name().and_then(|n| n.to_str()).and_then(split_part) {
            let reason = format!("a split GGUF ({} parts) cannot be exported to Ollama, which imports single-file GGUF only; merge it first (llama-gguf-split --merge)", part.count);
            return Err(StoreError::Unsupported { model: model.name.clone(), reason });
        }
        let files = self.registry.model_files(model.id)?;
        let gguf = files.iter().find(|f| f.rel_path.ends_with(".gguf")).ok_or_else(|| StoreError::NotAModel { path: model.entry.clone() })?;
        let gguf_sha = gguf.sha256.clone().ok_or_else(|| StoreError::NotAModel { path: model.entry.clone() })?;
        let (manifest_bytes, layers) = match files.iter().find(|f| f.rel_path == "manifest.json") {
            Some(m) => {
                let bytes = std::fs::read(&m.location).at(&m.location)?;
                let parsed: OllamaManifest = serde_json::from_slice(&bytes).map_err(|e| StoreError::BadResponse { what: m.location.display().to_string(), message: e.to_string() })?;
                let layers: Vec<Layer> = std::iter::once(parsed.config.clone()).chain(parsed.layers).collect();
                (bytes, layers)
            }
            None => self.synthesize_ollama_manifest(model, &gguf_sha, gguf.size)?,
        };
        let ollama = self.locations.ollama_models.clone();
        let app_id = self.registry.ensure_app("ollama", &ollama, &ollama.join("blobs"))?;
        let mut linker = Linker::default();
        for layer in &layers {
            let sha = layer.sha256("manifest")?;
            let src = self.blob_path(&sha);
            let dest = ollama.join("blobs").join(format!("sha256-{sha}"));
            let mode = self.place_link(&mut linker, &src, &dest)?;
            self.registry.add_link(app_id, model.id, &dest, Some(&sha), mode.as_str())?;
        }
        let manifest_path = ollama.join("manifests").join(OLLAMA_HOST).join("library").join(name).join(tag);
        fsutil::write_atomic(&manifest_path, &manifest_bytes)?;
        self.registry.add_link(app_id, model.id, &manifest_path, None, "file")?;
        Ok(manifest_path)
    }

    /// A minimal Ollama manifest for a GGUF: a config blob (written to the store) and the model layer.
    fn synthesize_ollama_manifest(&mut self, model: &ModelRecord, gguf_sha: &str, gguf_size: u64) -> Result<(Vec<u8>, Vec<Layer>)> {
        let config = serde_json::json!({
            "model_format": "gguf",
            "model_family": model.architecture.clone().unwrap_or_default(),
            "model_families": [model.architecture.clone().unwrap_or_default()],
            "file_type": model.quantization.clone().unwrap_or_default(),
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{gguf_sha}")]},
        });
        let config_bytes = serde_json::to_vec(&config).map_err(|e| StoreError::BadResponse { what: model.name.clone(), message: e.to_string() })?;
        let config_sha = fsutil::hex(&<sha2::Sha256 as sha2::Digest>::digest(&config_bytes));
        let tmp = fsutil::temp_sibling(&self.tmp_dir().join("ollama-config"));
        fsutil::write_atomic(&tmp, &config_bytes)?;
        self.publish_blob(&tmp, &config_sha, config_bytes.len() as u64)?;
        let config_layer = Layer { media_type: "application/vnd.docker.container.image.v1+json".into(), digest: format!("sha256:{config_sha}"), size: config_bytes.len() as u64 };
        let model_layer = Layer { media_type: MODEL_MEDIA_TYPE.into(), digest: format!("sha256:{gguf_sha}"), size: gguf_size };
        let manifest = OllamaManifest { schema_version: 2, media_type: Some(MANIFEST_MEDIA_TYPE.into()), config: config_layer.clone(), layers: vec![model_layer.clone()] };
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| StoreError::BadResponse { what: model.name.clone(), message: e.to_string() })?;
        // Keep the synthesized config referenced by this model so `clean` does not treat it as an orphan.
        let mut files = self.registry.model_files(model.id)?;
        if !files.iter().any(|f| f.sha256.as_deref() == Some(&config_sha)) {
            files.push(crate::registry::FileRecord { rel_path: "ollama-config.json".into(), sha256: Some(config_sha.clone()), size: config_bytes.len() as u64, location: self.blob_path(&config_sha) });
            self.reregister_files(model, files)?;
        }
        Ok((bytes, vec![config_layer, model_layer]))
    }

    fn reregister_files(&mut self, model: &ModelRecord, files: Vec<crate::registry::FileRecord>) -> Result<()> {
        let new = crate::registry::NewModel {
            name: model.name.clone(),
            origin: model.origin,
            source: model.source.clone(),
            format: model.format.clone(),
            quantization: model.quantization.clone(),
            architecture: model.architecture.clone(),
            revision: model.revision.clone(),
            entry: model.entry.clone(),
            files,
        };
        self.registry.upsert_model(&new)?;
        Ok(())
    }

    /// Links a store GGUF into LM Studio's folder as `<publisher>/<repo>/<file>.gguf` (every part of a split
    /// GGUF, side by side); returns the path of the first.
    pub fn export_lmstudio(&mut self, model: &ModelRecord) -> Result<PathBuf> {
        if model.format != "gguf" {
            return Err(StoreError::NotAModel { path: model.entry.clone() });
        }
        let base = model.name.split(':').next().unwrap_or(&model.name);
        let (publisher, repo) = base.split_once('/').unwrap_or(("hearth", base));
        let mut files = self.gguf_files(model)?;
        if let [(file, _)] = files.as_mut_slice() {
            if model.origin == Origin::Store && file == "model.gguf" {
                *file = format!("{}.gguf", model.name.replace([':', '/'], "-"));
            }
        }
        let lms = self.locations.lmstudio_models.clone();
        let app_id = self.registry.ensure_app("lmstudio", &lms, &lms)?;
        let mut linker = Linker::default();
        let mut first = None;
        for (file, src) in files {
            let rel = check_relative_name(&format!("{publisher}/{repo}/{file}"), "lmstudio path")?;
            let dest = lms.join(rel);
            let mode = self.place_link(&mut linker, &src, &dest)?;
            self.registry.add_link(app_id, model.id, &dest, file_sha(&src).as_deref(), mode.as_str())?;
            first.get_or_insert(dest);
        }
        first.ok_or_else(|| StoreError::NotAModel { path: model.entry.clone() })
    }
}

fn file_sha(path: &Path) -> Option<String> {
    crate::stats::sha_from_name(path)
}

/// Whether `path` still is the link we made: the same inode as the store blob, a symlink into the store,
/// or (for reflinks and copies) a file of the recorded size whose content hash still matches.
fn still_our_link(path: &Path, sha256: Option<&str>, store: &Store) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return false };
    if meta.file_type().is_symlink() {
        return std::fs::read_link(path).map(|t| t.starts_with(store.root())).unwrap_or(false);
    }
    let Some(sha) = sha256 else { return meta.is_file() };
    let blob = store.blob_path(sha);
    if let Ok(b) = std::fs::metadata(&blob) {
        if (b.dev(), b.ino()) == (meta.dev(), meta.ino()) {
            return true;
        }
    }
    fsutil::sha256_file(path).map(|h| h == sha).unwrap_or(false)
}
