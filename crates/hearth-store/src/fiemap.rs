//! The FIEMAP ioctl: which physical extents of a file are shared with other files (reflinks / clones).

use std::os::unix::io::AsRawFd;
use std::path::Path;

/// `_IOWR('f', 11, struct fiemap)`.
const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
const FIEMAP_FLAG_SYNC: u32 = 0x1;
const FIEMAP_EXTENT_LAST: u32 = 0x1;
const FIEMAP_EXTENT_SHARED: u32 = 0x2000;
const BATCH: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Extent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

#[repr(C)]
struct Request {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
    extents: [Extent; BATCH],
}

/// The shared extents of a file as (physical start, length clamped to the file size). Empty when the file
/// system has no shared extents or does not support FIEMAP (tmpfs, overlayfs, …).
pub fn shared_extents(path: &Path, size: u64) -> Vec<(u64, u64)> {
    let Ok(file) = std::fs::File::open(path) else { return Vec::new() };
    let mut out = Vec::new();
    let mut start = 0u64;
    loop {
        let mut req = Request { start, length: u64::MAX - start, flags: FIEMAP_FLAG_SYNC, mapped_extents: 0, extent_count: BATCH as u32, reserved: 0, extents: [Extent::default(); BATCH] };
        // SAFETY: `req` is a properly sized, exclusively borrowed fiemap buffer with room for BATCH extents.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP as _, &mut req as *mut Request) };
        if rc != 0 || req.mapped_extents == 0 {
            return out;
        }
        let mapped = (req.mapped_extents as usize).min(BATCH);
        for e in &req.extents[..mapped] {
            if e.flags & FIEMAP_EXTENT_SHARED != 0 && e.logical < size {
                out.push((e.physical, e.length.min(size - e.logical)));
            }
        }
        let last = req.extents[mapped - 1];
        if last.flags & FIEMAP_EXTENT_LAST != 0 || mapped < BATCH {
            return out;
        }
        start = last.logical + last.length;
    }
}
