//! The Ollama registry protocol (OCI distribution v2): `GET /v2/{namespace}/{name}/manifests/{tag}` gives
//! a manifest whose config and layers are content-addressed blobs at `/v2/{namespace}/{name}/blobs/{digest}`;
//! the layer of media type `application/vnd.ollama.image.model` is the GGUF.

use super::http::{Download, Http};
use crate::error::{Result, StoreError};
use crate::fsutil::{self, is_sha256_hex};
use crate::registry::ModelRecord;
use crate::store::{Store, StoredFile};
use serde::{Deserialize, Serialize};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MODEL_MEDIA_TYPE: &str = "application/vnd.ollama.image.model";

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OllamaManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub config: Layer,
    pub layers: Vec<Layer>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Layer {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Layer {
    /// The hex sha256 of a `sha256:<hex>` digest, checked.
    pub fn sha256(&self, what: &str) -> Result<String> {
        match self.digest.strip_prefix("sha256:") {
            Some(h) if is_sha256_hex(h) => Ok(h.to_string()),
            _ => Err(StoreError::BadResponse { what: what.to_string(), message: format!("digest `{}` is not sha256:<64 hex>", self.digest) }),
        }
    }

    /// The file name of this layer inside the model's snapshot folder.
    pub fn file_name(&self) -> String {
        if self.media_type == MODEL_MEDIA_TYPE {
            return "model.gguf".into();
        }
        let kind = self.media_type.rsplit('.').next().unwrap_or("layer");
        let kind: String = kind.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        format!("{kind}-{}", &self.digest.trim_start_matches("sha256:")[..12.min(self.digest.len().saturating_sub(7))])
    }
}

pub fn add(store: &mut Store, namespace: &str, name: &str, tag: &str, alias: Option<&str>) -> Result<ModelRecord> {
    let http = Http::new(&store.remotes)?;
    let registry = store.remotes.ollama_registry.trim_end_matches('/').to_string();
    let url = format!("{registry}/v2/{namespace}/{name}/manifests/{tag}");
    let bytes = http.get_bytes(&url, None, Some(MANIFEST_MEDIA_TYPE))?;
    let manifest: OllamaManifest = serde_json::from_slice(&bytes).map_err(|e| StoreError::BadResponse { what: url.clone(), message: e.to_string() })?;
    if !manifest.layers.iter().any(|l| l.media_type == MODEL_MEDIA_TYPE) {
        return Err(StoreError::BadResponse { what: url, message: "manifest has no model layer".into() });
    }
    let mut downloads = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for layer in std::iter::once(&manifest.config).chain(&manifest.layers) {
        let sha = layer.sha256(&url)?;
        let rel_path = if std::ptr::eq(layer, &manifest.config) { "config.json".to_string() } else { layer.file_name() };
        if seen.insert(rel_path.clone()) {
            downloads.push(Download {
                url: format!("{registry}/v2/{namespace}/{name}/blobs/{}", layer.digest),
                rel_path,
                expected_sha256: Some(sha),
                expected_size: Some(layer.size),
                git_sha1: None,
            });
        }
    }
    let mut stored = http.download_all(&store.blobs, &downloads, None)?;
    store.record_blobs(&stored)?;
    stored.push(store_manifest(store, &bytes)?);
    let model_name = if namespace == "library" { format!("{name}:{tag}") } else { format!("{namespace}/{name}:{tag}") };
    let source = format!("ollama://{namespace}/{name}:{tag}");
    let model = store.register(&model_name, &source, None, &stored, Some("model.gguf"))?;
    if let Some(a) = alias {
        store.registry.set_alias(a, model.id)?;
    }
    Ok(model)
}

/// Keeps the registry's manifest bytes as a blob too: export to Ollama writes exactly these.
fn store_manifest(store: &Store, bytes: &[u8]) -> Result<StoredFile> {
    let sha = fsutil::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes));
    let tmp = fsutil::temp_sibling(&store.tmp_dir().join("manifest"));
    fsutil::write_atomic(&tmp, bytes)?;
    store.publish_blob(&tmp, &sha, bytes.len() as u64)?;
    Ok(StoredFile { rel_path: "manifest.json".into(), sha256: sha, size: bytes.len() as u64 })
}
