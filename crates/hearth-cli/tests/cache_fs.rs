//! `hearth cache` on special file systems, mounted by the test itself (needs root and `mount`; CI and the
//! dev machines run as root, and scripts/setup-system.sh installs xfsprogs): a full disk (a 32 MiB tmpfs)
//! and reflinks (a loop-mounted XFS image, where `dedup` clones extents and `stats` must count them once).
//! Without root or the tools, each test prints why it could not run and passes without asserting.

mod cache_common;
mod common;

use cache_common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mount that is undone when dropped.
struct Mount {
    point: PathBuf,
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.point).status();
    }
}

fn mount(args: &[&str], point: &Path) -> Result<Mount, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root".into());
    }
    std::fs::create_dir_all(point).map_err(|e| e.to_string())?;
    let out = Command::new("mount").args(args).arg(point).output().map_err(|e| format!("mount: {e}"))?;
    if !out.status.success() {
        return Err(format!("mount failed: {}", text(&out)));
    }
    Ok(Mount { point: point.to_path_buf() })
}

fn home_on(mount: &Path) -> (Home, Command) {
    let home = Home::new();
    let mut c = home.command();
    c.env("HEARTH_CACHE_DIR", mount.join("store")).env("HEARTH_LMSTUDIO_MODELS", mount.join("lmstudio"));
    (home, c)
}

#[test]
fn full_disk_is_a_clear_error_and_leaves_the_store_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let point = tmp.path().join("small");
    let _mount = match mount(&["-t", "tmpfs", "-o", "size=32m", "tmpfs"], &point) {
        Ok(m) => m,
        Err(why) => return eprintln!("full-disk test not run: {why}"),
    };
    let model = common::real_model(MODEL_FILE);
    let (_home, mut cmd) = home_on(&point);
    let out = cmd.args(["cache", "add", &format!("file://{}", model.display())]).output().unwrap();
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("No space left on device") && !msg.contains("panicked"), "{msg}");
    let leftovers: Vec<PathBuf> = files_under(&point.join("store")).into_iter().filter(|p| !p.to_string_lossy().contains("registry.db") && p.extension().is_none_or(|e| e != "lock")).collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    let (_home2, mut cmd) = home_on(&point);
    let out = cmd.args(["cache", "status", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["models"].as_array().unwrap().len(), 0);
}

#[test]
fn stats_count_reflinked_extents_once_on_xfs() {
    if Command::new("mkfs.xfs").arg("-V").output().is_err() {
        return eprintln!("reflink test not run: mkfs.xfs missing (scripts/setup-system.sh installs xfsprogs)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("xfs.img");
    std::fs::File::create(&image).unwrap().set_len(320 << 20).unwrap();
    let mkfs = Command::new("mkfs.xfs").args(["-q", "-f", "-m", "reflink=1"]).arg(&image).output().unwrap();
    assert!(mkfs.status.success(), "{}", text(&mkfs));
    let point = tmp.path().join("xfs");
    let _mount = match mount(&["-o", "loop", image.to_str().unwrap()], &point) {
        Ok(m) => m,
        Err(why) => return eprintln!("reflink test not run: {why}"),
    };
    let model = common::real_model(MODEL_FILE);
    let lms_copy = point.join("lmstudio/test-org/SmolLM2-135M-Instruct-GGUF").join(MODEL_FILE);
    std::fs::create_dir_all(lms_copy.parent().unwrap()).unwrap();
    std::fs::copy(&model, &lms_copy).unwrap();
    let run = |args: &[&str]| {
        let (_home, mut cmd) = home_on(&point);
        let out = cmd.args(args).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["cache", "add", &format!("file://{}", model.display())]);
    run(&["cache", "sync"]);
    let out = run(&["cache", "dedup"]);
    assert!(out.contains("(reflink,"), "dedup should clone on XFS: {out}");
    let stats: serde_json::Value = serde_json::from_str(&run(&["cache", "stats", "--json"])).unwrap();
    let size = model_bytes().len() as u64;
    assert_eq!(stats["logical_bytes"].as_u64().unwrap(), 2 * size);
    assert_eq!(stats["physical_bytes"].as_u64().unwrap(), size, "{stats}");
    assert_eq!(stats["unique_content_bytes"].as_u64().unwrap(), size);
    assert_eq!(stats["duplicates_avoided"].as_u64().unwrap(), 1);
    assert_eq!(sha256_hex(&std::fs::read(&lms_copy).unwrap()), sha256_hex(&model_bytes()));
}
