//! `clean` (models no app uses and not used for N days, orphan blobs, stale partial downloads, and LRU
//! eviction down to `max_cache_size_gb`) and `verify` (re-hash blobs; corrupt store blobs go to
//! `quarantine/`, so the next `add` fetches them again).

use crate::error::{IoContext, Result};
use crate::fsutil::{now_secs, sha256_file};
use crate::registry::{ModelRecord, Origin};
use crate::stats::sha_from_name;
use crate::store::Store;
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;

#[derive(Debug, Default, Serialize)]
pub struct CleanReport {
    pub dry_run: bool,
    pub models: Vec<String>,
    pub orphan_blobs: Vec<String>,
    pub partials: Vec<PathBuf>,
    pub freed_bytes: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub checked: usize,
    pub bytes: u64,
    /// Store blobs whose content did not match their name, now in quarantine.
    pub quarantined: Vec<String>,
    /// Files in other tools' caches whose content does not match their name (left in place).
    pub corrupt_elsewhere: Vec<PathBuf>,
    /// Models that lost a file and need `add` again.
    pub affected_models: Vec<String>,
}

const DAY: i64 = 86_400;

impl Store {
    pub fn clean(&mut self, older_than_days: u32, dry_run: bool) -> Result<CleanReport> {
        let mut report = CleanReport { dry_run, ..CleanReport::default() };
        let cutoff = now_secs() - older_than_days as i64 * DAY;
        for m in self.unlinked_store_models()? {
            // `<=`: with `--days 0` a model added or used this very second qualifies too (timestamps are
            // whole seconds, so `<` made the result depend on how fast the commands ran).
            if m.last_used.unwrap_or(m.added_at) <= cutoff {
                self.clean_model(&m, &mut report)?;
            }
        }
        if let Some(max_gb) = self.config.max_cache_size_gb.filter(|_| self.config.auto_clean) {
            self.evict_lru((max_gb * 1e9) as u64, &mut report)?;
        }
        self.clean_orphans(&mut report)?;
        Ok(report)
    }

    /// After `add`, when `auto_clean` is on: evict least recently used models over `max_cache_size_gb`.
    pub fn auto_clean(&mut self) -> Result<Option<CleanReport>> {
        match self.config.max_cache_size_gb.filter(|_| self.config.auto_clean) {
            Some(max_gb) => {
                let mut report = CleanReport::default();
                self.evict_lru((max_gb * 1e9) as u64, &mut report)?;
                Ok(Some(report))
            }
            None => Ok(None),
        }
    }

    fn unlinked_store_models(&self) -> Result<Vec<ModelRecord>> {
        let mut out = Vec::new();
        for m in self.registry.models_with_origin(Origin::Store)? {
            if self.registry.apps_linking(m.id)?.is_empty() {
                out.push(m);
            }
        }
        Ok(out)
    }

    fn clean_model(&mut self, m: &ModelRecord, report: &mut CleanReport) -> Result<()> {
        report.models.push(m.name.clone());
        if report.dry_run {
            report.freed_bytes += m.size;
        } else {
            report.freed_bytes += self.remove(m, false)?;
        }
        Ok(())
    }

    fn evict_lru(&mut self, max_bytes: u64, report: &mut CleanReport) -> Result<()> {
        let mut used: u64 = self.registry.blobs()?.iter().map(|b| b.1).sum();
        let mut candidates = self.unlinked_store_models()?;
        candidates.sort_by_key(|m| m.last_used.unwrap_or(m.added_at));
        let already: HashSet<String> = report.models.iter().cloned().collect();
        for m in candidates.into_iter().filter(|m| !already.contains(&m.name)) {
            if used <= max_bytes {
                break;
            }
            used = used.saturating_sub(m.size);
            self.clean_model(&m, report)?;
        }
        Ok(())
    }

    /// Blob files no store model lists, blob rows without files, and partial downloads older than a day.
    fn clean_orphans(&mut self, report: &mut CleanReport) -> Result<()> {
        let dir = self.root().join("blobs/sha256");
        for entry in std::fs::read_dir(&dir).at(&dir)?.flatten() {
            let sha = entry.file_name().to_string_lossy().into_owned();
            if !self.registry.blob_referenced(&sha)? {
                report.orphan_blobs.push(sha.clone());
                report.freed_bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                if !report.dry_run {
                    self.delete_blob_if_unreferenced(&sha)?;
                }
            }
        }
        for (sha, _) in self.registry.blobs()? {
            if !self.blob_path(&sha).exists() && !report.dry_run {
                self.registry.delete_blob(&sha)?;
            }
        }
        let tmp = self.tmp_dir();
        let stale = std::time::SystemTime::now() - std::time::Duration::from_secs(DAY as u64);
        for entry in std::fs::read_dir(&tmp).at(&tmp)?.flatten() {
            let old = entry.metadata().and_then(|m| m.modified()).map(|t| t < stale).unwrap_or(false);
            if old {
                report.partials.push(entry.path());
                if !report.dry_run {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Re-hashes every store blob (and with `external`, every digest-named file of indexed models).
    pub fn verify(&mut self, external: bool) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut bad_shas = HashSet::new();
        for (sha, _) in self.registry.blobs()? {
            let path = self.blob_path(&sha);
            if !path.exists() {
                bad_shas.insert(sha.clone());
                self.registry.delete_blob(&sha)?;
                continue;
            }
            let _lock = self.lock(&sha)?;
            let actual = sha256_file(&path)?;
            report.checked += 1;
            report.bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if actual == sha {
                self.registry.mark_verified(&sha)?;
                continue;
            }
            let dest = self.root().join("quarantine").join(format!("{sha}.{}", now_secs()));
            std::fs::rename(&path, &dest).at(&dest)?;
            self.registry.delete_blob(&sha)?;
            report.quarantined.push(sha.clone());
            bad_shas.insert(sha);
        }
        for m in self.registry.models()? {
            let files = self.registry.model_files(m.id)?;
            let mut broken = files.iter().any(|f| f.sha256.as_ref().is_some_and(|s| bad_shas.contains(s)) && m.origin == Origin::Store);
            if external && m.origin != Origin::Store {
                for f in files.iter().filter(|f| sha_from_name(&f.location).is_some()) {
                    report.checked += 1;
                    report.bytes += f.size;
                    if f.sha256.as_deref() != Some(sha256_file(&f.location)?.as_str()) {
                        report.corrupt_elsewhere.push(f.location.clone());
                        broken = true;
                    }
                }
            }
            if broken {
                report.affected_models.push(format!("{} ({})", m.name, m.source));
            }
        }
        Ok(report)
    }
}
