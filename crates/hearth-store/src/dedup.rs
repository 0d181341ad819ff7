//! `dedup`: finds byte-identical files across the store, the HF cache, Ollama, LM Studio and extra folders
//! and keeps one physical copy. Candidates are grouped by size first, so only files that could be
//! duplicates are hashed (and hashes of files whose names do not carry one are cached by inode and mtime).
//! Before a file is replaced, the copy that stays is re-hashed; the replacement is a link made under a temp
//! name and renamed over the file, so every tool's path stays valid throughout.

use crate::error::Result;
use crate::fsutil::sha256_file;
use crate::link::{LinkMode, Linker};
use crate::stats::{holding, holdings, mtime_of, Holding};
use crate::store::Store;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Files smaller than this are not worth a link (configs, tokenizers).
pub const MIN_DEDUP_BYTES: u64 = 1 << 20;

#[derive(Debug, Default, Serialize)]
pub struct DedupReport {
    pub dry_run: bool,
    pub groups: usize,
    pub replaced: Vec<Replacement>,
    pub saved_bytes: u64,
    pub bytes_hashed: u64,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Replacement {
    pub path: PathBuf,
    pub kept: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub mode: String,
}

pub fn dedup(store: &Store, extra_dirs: &[PathBuf], dry_run: bool) -> Result<DedupReport> {
    let mut report = DedupReport { dry_run, ..DedupReport::default() };
    let mut files = holdings(store)?;
    for dir in extra_dirs {
        collect_dir(dir, &mut files);
    }
    // Only real files are replaced; a symlink takes no space and its target is a candidate of its own.
    files.retain(|h| h.size >= MIN_DEDUP_BYTES && std::fs::symlink_metadata(&h.path).map(|m| m.file_type().is_file()).unwrap_or(false));
    let mut by_size: HashMap<u64, Vec<Holding>> = HashMap::new();
    for h in files {
        by_size.entry(h.size).or_default().push(h);
    }
    let mut by_sha: BTreeMap<String, Vec<Holding>> = BTreeMap::new();
    for (_, mut group) in by_size {
        if distinct_inodes(&group) < 2 {
            continue;
        }
        for h in &mut group {
            if h.sha256.is_none() {
                h.sha256 = Some(hash_cached(store, h)?);
                report.bytes_hashed += h.size;
            }
        }
        for h in group {
            if let Some(sha) = h.sha256.clone() {
                by_sha.entry(sha).or_default().push(h);
            }
        }
    }
    let mut linker = Linker::default();
    for (sha, mut group) in by_sha {
        if distinct_inodes(&group) < 2 {
            continue;
        }
        report.groups += 1;
        group.sort_by_key(|h| keeper_rank(&h.tool));
        let keeper = group[0].clone();
        // The copy that stays must really be what its name or the cache says.
        let actual = sha256_file(&keeper.path)?;
        report.bytes_hashed += keeper.size;
        if actual != sha {
            report.problems.push(format!("{}: content is sha256 {actual}, expected {sha}; group skipped (run `hearth cache verify`)", keeper.path.display()));
            continue;
        }
        for h in group.iter().skip(1).filter(|h| (h.dev, h.ino) != (keeper.dev, keeper.ino)) {
            let mode = if dry_run { "planned".to_string() } else {
                match linker.replace_with_link(&keeper.path, &h.path, link_mode(store)) {
                    Ok(m) => {
                        // A clone is a new inode: remember its hash so stats and the next dedup need no read.
                        if let Some(now) = holding(&h.tool, &h.path) {
                            store.registry.cache_hash(&now.path, (now.dev, now.ino, now.size, mtime_of(&now.path)), &sha)?;
                        }
                        m.as_str().to_string()
                    }
                    Err(e) => {
                        report.problems.push(e.to_string());
                        continue;
                    }
                }
            };
            report.saved_bytes += h.size;
            report.replaced.push(Replacement { path: h.path.clone(), kept: keeper.path.clone(), sha256: sha.clone(), size: h.size, mode });
        }
    }
    Ok(report)
}

fn link_mode(store: &Store) -> LinkMode {
    match store.config.link_mode {
        // A plain copy shares nothing: dedup then behaves as auto.
        LinkMode::Copy => LinkMode::Auto,
        m => m,
    }
}

/// hearth's own blob stays; then the caches whose names carry the digest; then everything else.
fn keeper_rank(tool: &str) -> u8 {
    match tool {
        "hearth" => 0,
        "huggingface" => 1,
        "ollama" => 2,
        "lmstudio" => 3,
        _ => 4,
    }
}

fn distinct_inodes(group: &[Holding]) -> usize {
    let mut keys: Vec<(u64, u64)> = group.iter().map(|h| (h.dev, h.ino)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.len()
}

/// sha256 of a file whose name does not carry it, cached by (dev, inode, size, mtime).
pub fn hash_cached(store: &Store, h: &Holding) -> Result<String> {
    let key = (h.dev, h.ino, h.size, mtime_of(&h.path));
    if let Some(sha) = store.registry.cached_hash(&h.path, key)? {
        return Ok(sha);
    }
    let sha = sha256_file(&h.path)?;
    store.registry.cache_hash(&h.path, key, &sha)?;
    Ok(sha)
}

fn collect_dir(dir: &Path, out: &mut Vec<Holding>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_dir(&path, out);
        } else if let Some(h) = holding(&dir.display().to_string(), &path) {
            if !out.iter().any(|o| o.path == h.path) {
                out.push(h);
            }
        }
    }
}
