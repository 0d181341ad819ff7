//! `hearth cache sync` / `dedup` / `stats` / `link` / `remove` / `clean` / `verify` on fixture homes built
//! with the real layouts of the Hugging Face cache, Ollama's store and LM Studio's folder, each holding a
//! copy of the real SmolLM2 GGUF.

mod cache_common;
mod common;

use cache_common::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

struct Fixture {
    home: Home,
    hf_snapshot_file: PathBuf,
    ollama_blob: PathBuf,
    ollama_manifest: PathBuf,
    lmstudio_file: PathBuf,
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// HF cache (`models--org--name/{blobs,refs,snapshots}`), Ollama (`manifests/…`, `blobs/sha256-…`) and LM
/// Studio (`<publisher>/<repo>/<file>.gguf`), each with its own copy of the model.
fn fixture() -> Fixture {
    let home = Home::new();
    let gguf = model_bytes();
    let sha = sha256_hex(&gguf);
    let repo = home.hf().join("models--test-org--SmolLM2-135M-Instruct-GGUF");
    write(&repo.join("blobs").join(&sha), &gguf);
    let readme = b"# SmolLM2\n";
    write(&repo.join("blobs").join(git_sha1(readme)), readme);
    write(&repo.join("refs/main"), COMMIT.as_bytes());
    let snap = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snap).unwrap();
    std::os::unix::fs::symlink(format!("../../blobs/{sha}"), snap.join(MODEL_FILE)).unwrap();
    std::os::unix::fs::symlink(format!("../../blobs/{}", git_sha1(readme)), snap.join("README.md")).unwrap();

    let config = br#"{"model_format":"gguf","model_family":"llama"}"#;
    let ollama_blob = home.ollama().join("blobs").join(format!("sha256-{sha}"));
    write(&ollama_blob, &gguf);
    write(&home.ollama().join("blobs").join(format!("sha256-{}", sha256_hex(config))), config);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": format!("sha256:{}", sha256_hex(config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": format!("sha256:{sha}"), "size": gguf.len()}],
    });
    let ollama_manifest = home.ollama().join("manifests/registry.ollama.ai/library/smol/latest");
    write(&ollama_manifest, &serde_json::to_vec(&manifest).unwrap());

    let lmstudio_file = home.lmstudio().join("test-org/SmolLM2-135M-Instruct-GGUF").join(MODEL_FILE);
    write(&lmstudio_file, &gguf);
    Fixture { hf_snapshot_file: snap.join(MODEL_FILE), ollama_blob, ollama_manifest, lmstudio_file, home }
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

fn stats(home: &Home) -> serde_json::Value {
    serde_json::from_str(&ok(home.hearth(&["cache", "stats", "--json"]))).unwrap()
}

fn venv_python() -> PathBuf {
    let script = common::repo_root().join("scripts/setup-venv.sh");
    let out = std::process::Command::new(&script).output().expect("scripts/setup-venv.sh");
    assert!(out.status.success(), "setup-venv failed: {}", text(&out));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn sync_and_dedup_leave_one_physical_copy_and_every_layout_valid() {
    let f = fixture();
    let home = &f.home;
    let size = model_bytes().len() as u64;
    let sha = sha256_hex(&model_bytes());
    ok(home.hearth(&["cache", "add", &format!("file://{}", common::real_model(MODEL_FILE).display()), "--name", "smol"]));

    let out = ok(home.hearth(&["cache", "sync"]));
    assert!(out.contains("indexed 1 HF cache, 1 Ollama, 1 LM Studio"), "{out}");
    let status = home.status();
    let origins: Vec<&str> = status["models"].as_array().unwrap().iter().map(|m| m["origin"].as_str().unwrap()).collect();
    for o in ["store", "hf-cache", "ollama", "lmstudio"] {
        assert!(origins.contains(&o), "{o} missing: {origins:?}");
    }
    let before = stats(home);
    assert_eq!(before["physical_bytes"].as_u64().unwrap(), before["logical_bytes"].as_u64().unwrap(), "four real copies before dedup");

    let dry = ok(home.hearth(&["cache", "dedup", "--dry-run"]));
    assert!(dry.contains("would save"), "{dry}");
    assert_eq!(stats(home)["physical_bytes"], before["physical_bytes"], "dry run changes nothing");
    ok(home.hearth(&["cache", "dedup"]));

    let after = stats(home);
    assert_eq!(after["physical_bytes"], after["unique_content_bytes"], "no duplicate weights: {after}");
    assert_eq!(after["logical_bytes"], before["logical_bytes"]);
    assert!(after["saved_bytes"].as_u64().unwrap() >= 3 * size);
    let store_blob = home.store().join("blobs/sha256").join(&sha);
    let ino = std::fs::metadata(&store_blob).unwrap().ino();
    for p in [&f.hf_snapshot_file, &f.ollama_blob, &f.lmstudio_file] {
        assert_eq!(std::fs::metadata(p).unwrap().ino(), ino, "{} not linked to the store blob", p.display());
    }

    // Each tool's layout still holds: Ollama digests name blobs with that content, HF reads its cache
    // cleanly, and hearth loads the model through every tool's path and by name.
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&f.ollama_manifest).unwrap()).unwrap();
    for layer in manifest["layers"].as_array().unwrap().iter().chain([&manifest["config"]]) {
        let digest = layer["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let blob = std::fs::read(home.ollama().join("blobs").join(format!("sha256-{digest}"))).unwrap();
        assert_eq!(sha256_hex(&blob), digest);
        assert_eq!(blob.len() as u64, layer["size"].as_u64().unwrap());
    }
    let script = "import json, sys, warnings\nfrom huggingface_hub import scan_cache_dir\nwith warnings.catch_warnings(record=True) as w:\n    warnings.simplefilter('always')\n    info = scan_cache_dir(sys.argv[1])\nrepos = [{'id': r.repo_id, 'files': sorted(f.file_name for rev in r.revisions for f in rev.files), 'size': r.size_on_disk} for r in info.repos]\nprint(json.dumps({'warnings': [str(x) for x in info.warnings] + [str(x.message) for x in w], 'repos': repos}))\n";
    let out = std::process::Command::new(venv_python()).args(["-c", script]).arg(home.hf()).output().unwrap();
    let scan: serde_json::Value = serde_json::from_str(ok(out).lines().last().unwrap()).unwrap();
    assert_eq!(scan["warnings"].as_array().unwrap().len(), 0, "{scan}");
    assert_eq!(scan["repos"][0]["id"], "test-org/SmolLM2-135M-Instruct-GGUF");
    assert_eq!(scan["repos"][0]["files"], serde_json::json!(["README.md", MODEL_FILE]));
    // Loading means generating: the weights are read through each path (an Ollama blob has no
    // `.gguf` name), and the same bytes give the same greedy text.
    let generate = |model: &str| ok(home.hearth(&["run", model, "The capital of France is", "--raw", "--max-tokens", "4", "--temperature", "0"]));
    let reference = generate(f.hf_snapshot_file.to_str().unwrap());
    assert!(!reference.trim().is_empty(), "no text generated");
    for p in [&f.ollama_blob, &f.lmstudio_file] {
        assert_eq!(generate(p.to_str().unwrap()), reference, "{} generates differently", p.display());
    }
    assert_eq!(generate("smol"), reference, "the store name generates differently");
    for name in ["smol:latest", "test-org/SmolLM2-135M-Instruct-GGUF"] {
        assert!(ok(home.hearth(&["show", name])).contains("Q4_1"));
    }
    // A second dedup finds nothing left to do.
    assert!(ok(home.hearth(&["cache", "dedup"])).contains("0 group(s)"));
}

#[test]
fn sync_skips_symlinks_leaving_the_cache_and_manifests_that_lie() {
    let f = fixture();
    let home = &f.home;
    let outside = home.path().join("outside.gguf");
    std::fs::write(&outside, b"secret").unwrap();
    let evil = home.hf().join("models--evil--repo");
    write(&evil.join("refs/main"), COMMIT.as_bytes());
    std::fs::create_dir_all(evil.join("snapshots").join(COMMIT)).unwrap();
    std::os::unix::fs::symlink(&outside, evil.join("snapshots").join(COMMIT).join("model.gguf")).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&f.ollama_manifest).unwrap()).unwrap();
    manifest["layers"][0]["size"] = serde_json::json!(12345);
    write(&home.ollama().join("manifests/registry.ollama.ai/library/liar/latest"), &serde_json::to_vec(&manifest).unwrap());

    let out = ok(home.hearth(&["cache", "sync"]));
    assert!(out.contains("points outside") && out.contains("models--evil--repo"), "{out}");
    assert!(out.contains("size mismatch") && out.contains("12345"), "{out}");
    let names: Vec<String> = home.status()["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_string()).collect();
    assert!(names.iter().all(|n| !n.starts_with("evil/") && !n.starts_with("liar")), "{names:?}");
    assert!(names.contains(&"smol:latest".to_string()));
    assert_eq!(std::fs::read(&outside).unwrap(), b"secret");
}

#[test]
fn link_remove_unlink_clean_and_verify() {
    let home = Home::new();
    let model = common::real_model(MODEL_FILE);
    ok(home.hearth(&["cache", "add", &format!("file://{}", model.display()), "--name", "smol"]));
    let app = home.path().join("apps/chat-ui");
    let out = ok(home.hearth(&["cache", "link", app.to_str().unwrap(), "--model", "smol"]));
    let linked = app.join("models").join(MODEL_FILE);
    assert!(out.contains("hardlink") || out.contains("reflink"), "{out}");
    assert_eq!(sha256_hex(&std::fs::read(&linked).unwrap()), sha256_hex(&model_bytes()));

    let out = home.hearth(&["cache", "remove", "smol"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("used by chat-ui"), "{}", text(&out));
    let out = ok(home.hearth(&["cache", "clean", "--days", "0", "--dry-run"]));
    assert!(!out.contains("model SmolLM2"), "a linked model is never cleaned: {out}");

    ok(home.hearth(&["cache", "unlink", app.to_str().unwrap()]));
    assert!(!linked.exists());
    assert!(home.store().join("blobs/sha256").join(sha256_hex(&model_bytes())).exists(), "unlink removes only the app's link");
    let out = ok(home.hearth(&["cache", "clean", "--days", "0"]));
    assert!(out.contains("removed model SmolLM2"), "{out}");
    assert_eq!(home.status()["models"].as_array().unwrap().len(), 0);
    assert!(files_under(&home.store().join("blobs")).is_empty());

    // verify: a corrupted blob is quarantined and `add` fetches it again.
    ok(home.hearth(&["cache", "add", &format!("file://{}", model.display()), "--name", "smol"]));
    let blob = home.store().join("blobs/sha256").join(sha256_hex(&model_bytes()));
    let mut perms = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let out = home.hearth(&["cache", "verify"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("quarantine") && text(&out).contains("needs `hearth cache add` again"), "{}", text(&out));
    assert!(!blob.exists());
    let out = home.hearth(&["show", "smol"]);
    assert!(!out.status.success() && text(&out).contains("files are missing"), "{}", text(&out));
    ok(home.hearth(&["cache", "add", &format!("file://{}", model.display()), "--name", "smol"]));
    ok(home.hearth(&["cache", "verify"]));
    ok(home.hearth(&["show", "smol"]));
}

#[test]
fn config_set_get_and_bad_values() {
    let home = Home::new();
    ok(home.hearth(&["cache", "config", "set", "max_cache_size_gb", "20"]));
    assert_eq!(ok(home.hearth(&["cache", "config", "get", "max_cache_size_gb"])).trim(), "20.0");
    let out = home.hearth(&["cache", "config", "set", "auto_clean", "sometimes"]);
    assert!(!out.status.success() && text(&out).contains("auto_clean"), "{}", text(&out));
    let out = home.hearth(&["cache", "config", "set", "colour", "blue"]);
    assert!(!out.status.success() && text(&out).contains("unknown key"), "{}", text(&out));
    assert!(home.path().join("config/hearth/config.yaml").is_file());
}

#[test]
fn export_to_ollama_and_lmstudio_gives_valid_layouts_and_blocks_remove() {
    let home = Home::new();
    let model = common::real_model(MODEL_FILE);
    ok(home.hearth(&["cache", "add", &format!("file://{}", model.display()), "--name", "smol"]));
    let out = ok(home.hearth(&["cache", "sync", "--to-ollama", "smol=smol:v1", "--to-lmstudio", "smol"]));
    assert!(out.contains("exported") && out.contains("LM Studio"), "{out}");

    let manifest_path = home.ollama().join("manifests/registry.ollama.ai/library/smol/v1");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["layers"][0]["mediaType"], "application/vnd.ollama.image.model");
    for layer in manifest["layers"].as_array().unwrap().iter().chain([&manifest["config"]]) {
        let digest = layer["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let blob = std::fs::read(home.ollama().join("blobs").join(format!("sha256-{digest}"))).unwrap();
        assert_eq!(sha256_hex(&blob), digest);
        assert_eq!(blob.len() as u64, layer["size"].as_u64().unwrap());
    }
    // Indexing the exported model finds it as Ollama would list it; the bytes are shared, not copied.
    ok(home.hearth(&["cache", "sync"]));
    let status = home.status();
    let names: Vec<String> = status["models"].as_array().unwrap().iter().map(|m| format!("{}@{}", m["name"].as_str().unwrap(), m["origin"].as_str().unwrap())).collect();
    assert!(names.contains(&"smol:v1@ollama".to_string()), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("@lmstudio")), "{names:?}");
    let st = stats(&home);
    assert_eq!(st["physical_bytes"], st["unique_content_bytes"], "{st}");

    let out = home.hearth(&["cache", "remove", "smol"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("lmstudio") && text(&out).contains("ollama"), "{}", text(&out));
}

#[test]
fn auto_clean_evicts_the_least_recently_used_models_down_to_the_size_cap() {
    let home = Home::new();
    let tiny = |arch: &str| common::tiny_model(&format!("{arch}/model-q8_0.gguf"));
    for (name, arch) in [("a", "llama3"), ("b", "qwen2"), ("c", "qwen3")] {
        ok(home.hearth(&["cache", "add", &format!("file://{}", tiny(arch).display()), "--name", name]));
    }
    // Timestamps are whole seconds: the pauses make the order of use unambiguous (c, then b, then a).
    let use_model = |name: &str| {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        ok(home.hearth(&["run", name, "Hello", "--raw", "--max-tokens", "1", "--temperature", "0"]));
    };
    use_model("b");
    use_model("a");
    let size = |arch: &str| std::fs::metadata(tiny(arch)).unwrap().len();
    // Room for a, b and the new d, but not for c as well.
    let cap_gb = (size("llama3") + size("qwen2") + size("mistral") + 1000) as f64 / 1e9;
    ok(home.hearth(&["cache", "config", "set", "max_cache_size_gb", &format!("{cap_gb:.9}")]));
    ok(home.hearth(&["cache", "config", "set", "auto_clean", "true"]));
    ok(home.hearth(&["cache", "add", &format!("file://{}", tiny("mistral").display()), "--name", "d"]));
    // Identified by source: the files share one name, so the first keeps it and the others take theirs
    // from --name.
    let status = home.status();
    let mut kept: Vec<String> = status["models"].as_array().unwrap().iter().map(|m| m["source"].as_str().unwrap().to_string()).collect();
    kept.sort_unstable();
    let want: Vec<String> = ["llama3", "mistral", "qwen2"].iter().map(|a| format!("file://{}", tiny(a).canonicalize().unwrap().display())).collect();
    assert_eq!(kept, want, "c (qwen3), least recently used, is evicted: {status}");
    let blobs = files_under(&home.store().join("blobs"));
    let total: u64 = blobs.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert!(total as f64 <= cap_gb * 1e9, "store holds {total} bytes over a cap of {cap_gb} GB: {blobs:?}");
}

#[test]
fn a_different_file_with_a_stored_name_is_refused_not_swapped_in() {
    let home = Home::new();
    let tiny = |arch: &str| common::tiny_model(&format!("{arch}/model-q8_0.gguf"));
    ok(home.hearth(&["cache", "add", &format!("file://{}", tiny("qwen2").display())]));
    // Same file name, other content: refused with a clear message; the stored model stays.
    let out = home.hearth(&["cache", "add", &format!("file://{}", tiny("qwen3").display())]);
    assert!(!out.status.success() && text(&out).contains("--name"), "{}", text(&out));
    let status = home.status();
    let models = status["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{status}");
    assert!(models[0]["source"].as_str().unwrap().contains("qwen2"), "{status}");
    // Re-adding the same path is an update, not a conflict.
    ok(home.hearth(&["cache", "add", &format!("file://{}", tiny("qwen2").display())]));
}
