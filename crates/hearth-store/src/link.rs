//! Sharing bytes between paths, like uv's link modes: reflink (copy-on-write clone), else hard link, else
//! symlink. In `auto` mode the first file between two devices is probed and the mode that worked is tried
//! first for the next ones; each file still falls back on its own (e.g. across file systems).

use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::temp_sibling;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum LinkMode {
    Auto,
    Reflink,
    Hardlink,
    Symlink,
    Copy,
}

impl LinkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMode::Auto => "auto",
            LinkMode::Reflink => "reflink",
            LinkMode::Hardlink => "hardlink",
            LinkMode::Symlink => "symlink",
            LinkMode::Copy => "copy",
        }
    }
}

/// Linux FICLONE: `_IOW(0x94, 9, int)`.
const FICLONE: libc::c_ulong = 0x4004_9409;

/// Clones `src` into a new file `dst` sharing its extents (btrfs, XFS with reflink=1, bcachefs…).
pub fn reflink(src: &Path, dst: &Path) -> std::io::Result<()> {
    let input = std::fs::File::open(src)?;
    let output = std::fs::OpenOptions::new().write(true).create_new(true).open(dst)?;
    // SAFETY: both descriptors are open and owned here; FICLONE takes the source fd by value.
    let rc = unsafe { libc::ioctl(output.as_raw_fd(), FICLONE as _, input.as_raw_fd()) };
    if rc == 0 {
        let perms = input.metadata()?.permissions();
        output.set_permissions(perms)?;
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    drop(output);
    let _ = std::fs::remove_file(dst);
    Err(err)
}

/// Remembers, per (source device, destination device), the mode that worked last.
#[derive(Default)]
pub struct Linker {
    learned: HashMap<(u64, u64), LinkMode>,
}

impl Linker {
    /// Creates `dst` (which must not exist) sharing `src`'s bytes; returns the mode used.
    pub fn link_new(&mut self, src: &Path, dst: &Path, mode: LinkMode) -> Result<LinkMode> {
        let src_dev = std::fs::metadata(src).at(src)?.dev();
        let dst_dir = dst.parent().unwrap_or(Path::new("."));
        let dst_dev = std::fs::metadata(dst_dir).at(dst_dir)?.dev();
        let order = self.order(mode, (src_dev, dst_dev));
        let mut last_err = None;
        for candidate in order {
            match try_mode(candidate, src, dst) {
                Ok(()) => {
                    self.learned.insert((src_dev, dst_dev), candidate);
                    return Ok(candidate);
                }
                Err(e) => {
                    tracing::debug!("{}: {} failed: {e}", dst.display(), candidate.as_str());
                    last_err = Some(e);
                }
            }
        }
        Err(StoreError::Io { path: dst.to_path_buf(), source: last_err.unwrap_or_else(|| std::io::Error::other("no link mode")) })
    }

    /// Atomically replaces `target` with a link to `keeper`: the link is made under a temp name beside
    /// the target, then renamed over it, so the target path is never missing or partial.
    pub fn replace_with_link(&mut self, keeper: &Path, target: &Path, mode: LinkMode) -> Result<LinkMode> {
        let tmp = temp_sibling(target);
        let used = self.link_new(keeper, &tmp, mode)?;
        if let Err(e) = std::fs::rename(&tmp, target) {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::Io { path: target.to_path_buf(), source: e });
        }
        Ok(used)
    }

    fn order(&self, mode: LinkMode, devs: (u64, u64)) -> Vec<LinkMode> {
        match mode {
            LinkMode::Auto => {
                let all = [LinkMode::Reflink, LinkMode::Hardlink, LinkMode::Symlink];
                match self.learned.get(&devs) {
                    // Start from what worked; fall back to the weaker modes only.
                    Some(&learned) => all.iter().copied().skip_while(|m| *m != learned).collect(),
                    None => all.to_vec(),
                }
            }
            fixed => vec![fixed],
        }
    }
}

fn try_mode(mode: LinkMode, src: &Path, dst: &Path) -> std::io::Result<()> {
    match mode {
        LinkMode::Reflink => reflink(src, dst),
        LinkMode::Hardlink => std::fs::hard_link(src, dst),
        LinkMode::Symlink => std::os::unix::fs::symlink(std::fs::canonicalize(src)?, dst),
        LinkMode::Copy | LinkMode::Auto => std::fs::copy(src, dst).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_mode_shares_bytes_and_replace_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"weights").unwrap();
        std::fs::write(&b, b"weights").unwrap();
        let mut linker = Linker::default();
        let used = linker.replace_with_link(&a, &b, LinkMode::Auto).unwrap();
        assert_ne!(used, LinkMode::Copy);
        assert_eq!(std::fs::read(&b).unwrap(), b"weights");
        if used == LinkMode::Hardlink {
            assert_eq!(std::fs::metadata(&a).unwrap().ino(), std::fs::metadata(&b).unwrap().ino());
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 2, "temp files left: {leftovers:?}");
    }
}
