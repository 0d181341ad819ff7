//! File-system helpers: streaming sha256, atomic writes (temp + rename), advisory file locks, and name
//! checks for file names that come from the network.

use crate::error::{IoContext, Result, StoreError};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};

/// Buffer size of streaming reads and copies: large enough that syscalls do not dominate hashing.
pub const CHUNK: usize = 1 << 20;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// sha256 of a whole file, read in large chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).at(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Copies `src` to `dst` while hashing it in the same pass; returns (sha256, bytes).
pub fn copy_hashing(src: &Path, dst: &Path) -> Result<(String, u64)> {
    let mut input = File::open(src).at(src)?;
    let mut output = File::create(dst).at(dst)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).at(src)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n]).at(dst)?;
        total += n as u64;
    }
    output.sync_all().at(dst)?;
    Ok((hex(&hasher.finalize()), total))
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).at(dir)?;
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        std::fs::rename(&tmp, path).at(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A hidden name next to `path` for a temp file, unique per process and call.
pub fn temp_sibling(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.hearth-tmp-{}-{n}", std::process::id()))
}

/// An exclusive advisory lock (flock) held until dropped; the kernel releases it if the process dies.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn acquire(path: &Path) -> Result<FileLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).at(path)?;
        loop {
            // SAFETY: flock on a descriptor we own; no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(StoreError::Io { path: path.to_path_buf(), source: err });
            }
        }
    }
}

/// Checks a relative file name that came from outside (a repo listing, a manifest): no `..`, no absolute
/// paths, no backslashes or control characters, nothing empty.
pub fn check_relative_name(name: &str, origin: &str) -> Result<PathBuf> {
    let bad = |reason: &str| StoreError::UnsafeName { name: name.to_string(), origin: origin.to_string(), reason: reason.into() };
    if name.is_empty() || name.len() > 1024 {
        return Err(bad("empty or too long"));
    }
    if name.contains('\\') || name.chars().any(|c| c.is_control()) {
        return Err(bad("backslash or control character"));
    }
    let path = Path::new(name);
    for component in path.components() {
        match component {
            Component::Normal(_) => {}
            Component::ParentDir => return Err(bad("path traversal (`..`)")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("absolute path")),
            Component::CurDir => return Err(bad("`.` component")),
        }
    }
    Ok(path.to_path_buf())
}

/// Resolves `path` (following symlinks) and checks it stays inside `root`.
pub fn resolve_inside(path: &Path, root: &Path) -> Result<PathBuf> {
    let real = std::fs::canonicalize(path).at(path)?;
    let real_root = std::fs::canonicalize(root).at(root)?;
    if real.starts_with(&real_root) {
        Ok(real)
    } else {
        Err(StoreError::SymlinkEscape { path: path.to_path_buf(), root: root.to_path_buf() })
    }
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names_reject_traversal_and_absolute_paths() {
        assert!(check_relative_name("model.gguf", "t").is_ok());
        assert!(check_relative_name("sub/model.safetensors", "t").is_ok());
        for bad in ["../x", "a/../../x", "/etc/passwd", "a\\b", "", "./a", "a\nb"] {
            assert!(check_relative_name(bad, "t").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sha256_matches_known_vector() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
