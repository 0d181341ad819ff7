//! The model store behind `hearth cache`: content-addressed blobs keyed by sha256, per-model manifests and a
//! SQLite registry, fed by the Hugging Face hub, the Ollama registry and local files, and sharing one
//! physical copy of each weight file with the HF cache, Ollama and LM Studio. Builds without candle.
//!
//! - [`Store`] opens a store; [`Store::add`] fetches a source; [`Store::resolve`] turns a name the user
//!   typed into a registered model whose `entry` is the path a loader opens.
//! - [`sync`] indexes other tools' caches in place (reading no weight bytes) and exports store models to
//!   them; [`dedup`] keeps one physical copy of byte-identical files; [`stats`] counts physical bytes by
//!   unique inode and shared extent.
//!
//! Nothing here reads environment variables: the CLI resolves [`Locations`] and [`Remotes`].

pub mod apps;
pub mod config;
pub mod dedup;
pub mod error;
pub mod fetch;
mod fiemap;
pub mod fsutil;
pub mod link;
pub mod maintenance;
pub mod meta;
pub mod registry;
pub mod source;
pub mod stats;
pub mod sync;
mod store;

pub use config::{Config, Locations, Remotes};
pub use error::{Result, StoreError};
pub use link::LinkMode;
pub use registry::{ModelRecord, Origin};
pub use source::{parse_source, Source};
pub use store::{slug, Store, StoredFile, HEARTH_APP};

impl Store {
    /// `hearth cache add SOURCE`: fetches or imports a model and registers it (optionally under an alias).
    pub fn add(&mut self, source: &str, alias: Option<&str>) -> Result<ModelRecord> {
        let model = match parse_source(source)? {
            Source::Hf { repo, revision, pattern } => fetch::hf::add(self, &repo, &revision, pattern.as_deref(), alias)?,
            Source::Ollama { namespace, name, tag } => fetch::ollama::add(self, &namespace, &name, &tag, alias)?,
            // Named after the file; when another file already holds that name, after the alias.
            Source::File(path) => {
                let m = match self.add_local(&path, None) {
                    Err(StoreError::NameTaken { .. }) if alias.is_some() => self.add_local(&path, alias)?,
                    other => other?,
                };
                if let Some(a) = alias.filter(|a| *a != m.name) {
                    self.registry.set_alias(a, m.id)?;
                }
                m
            }
        };
        Ok(model)
    }
}
