//! Disk usage that does not lie: logical bytes (what every tool's copy would take on its own) against
//! physical bytes (each inode once, and on reflink file systems each shared extent once, found with the
//! FIEMAP ioctl). Summing `st_size` over paths would count a hard-linked or cloned file twice.

use crate::error::Result;
use crate::fsutil::is_sha256_hex;
use crate::store::Store;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file some tool holds, after following symlinks.
#[derive(Debug, Clone)]
pub struct Holding {
    pub tool: String,
    pub path: PathBuf,
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Stats {
    /// Sum of every tool's files, as if each kept its own copy.
    pub logical_bytes: u64,
    /// Bytes on disk: unique inodes, minus extents shared between them (reflinks).
    pub physical_bytes: u64,
    /// Sum over distinct contents (by sha256 where known, else by inode).
    pub unique_content_bytes: u64,
    pub saved_bytes: u64,
    /// Files that take no space of their own because they share an inode or all their extents.
    pub duplicates_avoided: usize,
    pub files: usize,
    /// Bytes held through extents shared by several inodes (0 where the file system has no reflinks).
    pub reflinked_bytes: u64,
    pub by_tool: BTreeMap<String, u64>,
}

/// Every file the store and the tools it knows hold, following symlinks (a symlink holds nothing itself).
pub fn holdings(store: &Store) -> Result<Vec<Holding>> {
    let loc = &store.locations;
    let mut out = Vec::new();
    walk(&loc.store_dir.join("blobs/sha256"), "hearth", 1, &mut out);
    if let Ok(repos) = std::fs::read_dir(&loc.hf_hub_cache) {
        for repo in repos.flatten() {
            if repo.file_name().to_string_lossy().starts_with("models--") {
                walk(&repo.path().join("blobs"), "huggingface", 1, &mut out);
            }
        }
    }
    walk(&loc.ollama_models.join("blobs"), "ollama", 1, &mut out);
    walk(&loc.lmstudio_models, "lmstudio", 4, &mut out);
    for dir in &loc.scan_dirs {
        walk(dir, &dir.display().to_string(), 8, &mut out);
    }
    for link in store.registry.all_links()? {
        if let Some(h) = holding("apps", &link.path) {
            out.push(h);
        }
    }
    // The same path can be reached twice (an app folder inside a scanned one): keep it once.
    let mut seen = HashSet::new();
    out.retain(|h| seen.insert(h.path.clone()));
    for h in &mut out {
        if h.sha256.is_none() {
            h.sha256 = store.registry.cached_hash(&h.path, (h.dev, h.ino, h.size, mtime_of(&h.path)))?;
        }
    }
    Ok(out)
}

pub fn compute(store: &Store) -> Result<Stats> {
    Ok(summarize(&holdings(store)?))
}

pub fn summarize(files: &[Holding]) -> Stats {
    let mut stats = Stats { files: files.len(), ..Stats::default() };
    let mut inodes: HashMap<(u64, u64), &Holding> = HashMap::new();
    let mut contents: HashMap<String, u64> = HashMap::new();
    for h in files {
        stats.logical_bytes += h.size;
        *stats.by_tool.entry(h.tool.clone()).or_default() += h.size;
        inodes.entry((h.dev, h.ino)).or_insert(h);
    }
    for h in inodes.values() {
        let key = h.sha256.clone().unwrap_or_else(|| format!("inode:{}:{}", h.dev, h.ino));
        contents.insert(key, h.size);
    }
    stats.unique_content_bytes = contents.values().sum();
    let (physical, reflinked, clones) = physical_bytes(inodes.values().copied());
    stats.physical_bytes = physical;
    stats.reflinked_bytes = reflinked;
    stats.saved_bytes = stats.logical_bytes.saturating_sub(stats.physical_bytes);
    stats.duplicates_avoided = files.len() - inodes.len() + clones;
    stats
}

/// Unique inodes' sizes, with extents that several of them share (FIEMAP_EXTENT_SHARED) counted once.
/// Returns (physical, bytes in shared extents, inodes whose shared extents repeat an earlier inode's).
fn physical_bytes<'a>(inodes: impl Iterator<Item = &'a Holding>) -> (u64, u64, usize) {
    let mut physical = 0u64;
    let mut shared: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    let mut signatures = HashSet::new();
    let mut repeats = 0usize;
    for h in inodes {
        let extents = crate::fiemap::shared_extents(&h.path, h.size);
        if extents.is_empty() {
            physical += h.size;
            continue;
        }
        let shared_len: u64 = extents.iter().map(|e| e.1).sum();
        physical += h.size.saturating_sub(shared_len);
        // A clone of a whole file has exactly the extents of the original: it takes no space of its own.
        if shared_len == h.size && !signatures.insert((h.dev, extents.clone())) {
            repeats += 1;
        }
        shared.entry(h.dev).or_default().extend(extents);
    }
    let mut reflinked = 0;
    for intervals in shared.values_mut() {
        reflinked += union_len(intervals).0;
    }
    physical += reflinked;
    (physical, reflinked, repeats)
}

/// Total length of a union of (start, len) intervals, and how many disjoint runs it has.
fn union_len(intervals: &mut [(u64, u64)]) -> (u64, usize) {
    intervals.sort_unstable();
    let (mut total, mut runs) = (0u64, 0usize);
    let mut current: Option<(u64, u64)> = None;
    for &(start, len) in intervals.iter() {
        let end = start + len;
        match current {
            Some((s, e)) if start <= e => current = Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                runs += 1;
                current = Some((start, end));
            }
            None => current = Some((start, end)),
        }
    }
    if let Some((s, e)) = current {
        total += e - s;
        runs += 1;
    }
    (total, runs)
}

fn walk(dir: &Path, tool: &str, depth: usize, out: &mut Vec<Holding>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() && depth > 1 => walk(&path, tool, depth - 1, out),
            Ok(m) if m.is_file() => {
                if let Some(h) = holding(tool, &path) {
                    out.push(h);
                }
            }
            _ => {}
        }
    }
}

/// Follows symlinks; the sha256 is taken from names that carry it (store, HF LFS and Ollama blobs).
pub fn holding(tool: &str, path: &Path) -> Option<Holding> {
    let m = std::fs::metadata(path).ok()?;
    if !m.is_file() {
        return None;
    }
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Some(Holding { tool: tool.to_string(), path: path.to_path_buf(), size: m.len(), dev: m.dev(), ino: m.ino(), sha256: sha_from_name(&real) })
}

/// `blobs/sha256/<hex>` (hearth), `blobs/<hex>` (HF LFS), `blobs/sha256-<hex>` (Ollama).
pub fn sha_from_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let parent = path.parent()?.file_name()?.to_str()?;
    let hex = name.strip_prefix("sha256-").unwrap_or(name);
    let in_blobs = parent == "blobs" || parent == "sha256";
    (in_blobs && is_sha256_hex(hex)).then(|| hex.to_string())
}

pub fn mtime_of(path: &Path) -> i64 {
    std::fs::metadata(path).map(|m| m.mtime() * 1_000_000_000 + m.mtime_nsec()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, vec![7u8; 10_000]).unwrap();
        std::fs::hard_link(&a, dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("c"), vec![7u8; 10_000]).unwrap();
        let files: Vec<Holding> = ["a", "b", "c"].iter().map(|n| holding("t", &dir.path().join(n)).unwrap()).collect();
        let s = summarize(&files);
        assert_eq!(s.logical_bytes, 30_000);
        assert_eq!(s.physical_bytes, 20_000);
        assert_eq!(s.duplicates_avoided, 1);
    }

    #[test]
    fn interval_union() {
        let mut v = vec![(0, 10), (5, 10), (20, 5), (20, 5)];
        assert_eq!(union_len(&mut v), (20, 2));
    }
}
