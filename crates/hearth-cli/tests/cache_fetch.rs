//! `hearth cache add` against local servers speaking the HF hub and Ollama registry protocols, serving
//! the real SmolLM2 GGUF: auth, retries, resume after kill -9, concurrent adds, checksum and size lies,
//! path traversal, unknown schemes; and the added model resolving by name for `hearth show`.

mod cache_common;
mod common;

use cache_common::*;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn hub(token: Option<&str>) -> Server {
    let mut b = Behaviour::default();
    b.hf.insert(REPO.into(), smol_repo());
    b.token = token.map(str::to_string);
    Server::start(b)
}

fn blob_names(home: &Home) -> Vec<String> {
    std::fs::read_dir(home.store().join("blobs/sha256")).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default()
}

#[test]
fn hf_add_sends_token_verifies_and_resolves_by_name() {
    let server = hub(Some("secret-token"));
    let home = Home::new();
    let source = format!("hf://{REPO}");
    let out = home.hearth_with(&[("HF_ENDPOINT", &server.url)], &["cache", "add", &source]);
    assert!(!out.status.success());
    assert!(text(&out).contains("401") && text(&out).contains("HF_TOKEN"), "{}", text(&out));

    let out = home.hearth_with(&[("HF_ENDPOINT", &server.url), ("HF_TOKEN", "secret-token")], &["cache", "add", &source]);
    assert!(out.status.success(), "{}", text(&out));
    let requests = server.requests();
    assert!(requests[0].ends_with("auth="), "the first run had no token: {requests:?}");
    assert!(requests[1..].iter().all(|r| r.contains("auth=Bearer secret-token")), "{requests:?}");
    let sha = sha256_hex(&model_bytes());
    assert_eq!(blob_names(&home), vec![sha.clone()], "only the chosen GGUF is fetched for a GGUF repo");
    let blob = std::fs::read(home.store().join("blobs/sha256").join(&sha)).unwrap();
    assert_eq!(sha256_hex(&blob), sha);

    let status = home.status();
    let m = &status["models"][0];
    assert_eq!(m["name"], format!("{REPO}:Q4_1"));
    assert_eq!(m["quantization"], "Q4_1");
    assert_eq!(m["architecture"], "llama");
    assert_eq!(m["size"], model_bytes().len());

    // The engine commands take the store name; the use is recorded for hearth.
    let out = home.hearth(&["show", REPO, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Q4_1"));
    let status = home.status();
    assert_eq!(status["models"][0]["used_by"][0], "hearth");
    assert!(status["models"][0]["last_used"].is_i64());

    let out = home.hearth(&["show", "no-such/model"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not found") && text(&out).contains("hearth cache add"), "{}", text(&out));
}

#[test]
fn hf_revisions_with_slashes_are_sent_url_encoded_and_pin_their_commit() {
    let (pr_commit, branch_commit) = ("1".repeat(40), "2".repeat(40));
    let mut b = Behaviour::default();
    b.hf.insert(REPO.into(), smol_repo());
    b.revisions = [("main", COMMIT), ("refs/pr/1", &pr_commit), ("feature/x", &branch_commit)].map(|(r, c)| (r.to_string(), c.to_string())).into();
    let server = Server::start(b);
    // `refs/pr/N` as written, then a branch with `/` written URL-encoded, each followed by a file.
    for (source, commit, segment) in [
        (format!("hf://{REPO}@refs/pr/1/{MODEL_FILE}"), &pr_commit, "refs%2Fpr%2F1"),
        (format!("hf://{REPO}@feature%2Fx/*.gguf"), &branch_commit, "feature%2Fx"),
    ] {
        let home = Home::new();
        let out = home.hearth_with(&[("HF_ENDPOINT", &server.url)], &["cache", "add", &source]);
        assert!(out.status.success(), "{source}: {}", text(&out));
        let requests = server.requests();
        assert!(requests.iter().any(|r| r.starts_with(&format!("GET /api/models/{REPO}/revision/{segment}?"))), "{requests:?}");
        assert!(requests.iter().any(|r| r.starts_with(&format!("GET /{REPO}/resolve/{commit}/{MODEL_FILE}"))), "files come from the pinned commit: {requests:?}");
        let status = home.status();
        assert_eq!(status["models"][0]["source"], format!("hf://{REPO}@{commit}/{}", source.rsplit('/').next().unwrap()), "{status}");
    }
    // Unencoded, a branch's `/` starts the file part: the revision `feature` does not exist.
    let home = Home::new();
    let out = home.hearth_with(&[("HF_ENDPOINT", &server.url)], &["cache", "add", &format!("hf://{REPO}@feature/x")]);
    assert!(!out.status.success() && text(&out).contains("404"), "{}", text(&out));
    let help = text(&home.hearth(&["cache", "add", "--help"]));
    assert!(help.contains("feature%2Fx") && help.contains("refs/pr/1"), "{help}");
}

#[test]
fn hf_add_retries_server_errors() {
    let server = hub(None);
    server.fail_next.store(2, Ordering::SeqCst);
    let home = Home::new();
    let out = home.hearth_with(&[("HF_ENDPOINT", &server.url)], &["cache", "add", &format!("hf://{REPO}/{MODEL_FILE}")]);
    assert!(out.status.success(), "{}", text(&out));
    let gets = server.requests().iter().filter(|r| r.contains("/resolve/")).count();
    assert_eq!(gets, 3, "two 503s then success: {:?}", server.requests());
    assert_eq!(blob_names(&home).len(), 1);
}

#[test]
fn checksum_mismatch_is_a_clear_error_and_leaves_nothing() {
    let server = hub(None);
    server.behaviour.lock().unwrap().lie_sha.insert(MODEL_FILE.into(), "ab".repeat(32));
    let home = Home::new();
    let out = home.hearth_with(&[("HF_ENDPOINT", &server.url)], &["cache", "add", &format!("hf://{REPO}")]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("checksum mismatch") && msg.contains(&"ab".repeat(32)) && msg.contains(&sha256_hex(&model_bytes())), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
    assert!(blob_names(&home).is_empty());
    assert!(files_under(&home.store().join("tmp")).is_empty(), "a bad partial must not be kept for resuming");
    assert_eq!(home.status()["models"].as_array().unwrap().len(), 0);
}

#[test]
fn path_traversal_and_unknown_schemes_are_refused() {
    let mut b = Behaviour::default();
    let mut files = smol_repo();
    files.push(HubFile { name: "../../escaped.gguf".into(), bytes: std::sync::Arc::new(b"x".to_vec()), lfs: false });
    b.hf.insert(REPO.into(), files);
    let server = Server::start(b);
    let home = Home::new();
    let out = home.hearth_with(&[("HF_ENDPOINT", &server.url)], &["cache", "add", &format!("hf://{REPO}")]);
    assert!(!out.status.success());
    assert!(text(&out).contains("path traversal"), "{}", text(&out));
    assert!(files_under(home.path()).iter().all(|p| !p.to_string_lossy().contains("escaped")));
    assert!(server.requests().iter().all(|r| !r.contains("/resolve/")), "nothing is downloaded from a bad listing");

    for bad in ["ftp://example.com/x.gguf", "hf://../x", "hf://org/repo/../../x", "ollama://../../x", "file://relative.gguf"] {
        let out = home.hearth(&["cache", "add", bad]);
        assert!(!out.status.success(), "{bad} accepted");
        let msg = text(&out);
        assert!(msg.contains("error:") && !msg.contains("panicked"), "{bad}: {msg}");
    }
    assert_eq!(home.status()["models"].as_array().unwrap().len(), 0);
}

#[test]
fn download_resumes_after_kill_9_without_a_partial_blob() {
    let server = hub(None);
    // ~6 MB/s: the 94 MiB file takes ~15 s, so the kill lands mid-file.
    server.behaviour.lock().unwrap().throttle = Some(64 << 10);
    let home = Home::new();
    let source = format!("hf://{REPO}/{MODEL_FILE}");
    let mut child = home.command().args(["cache", "add", &source]).env("HF_ENDPOINT", &server.url).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let sha = sha256_hex(&model_bytes());
    let part = home.store().join("tmp").join(format!("{sha}.part"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < (4 << 20) {
        assert!(Instant::now() < deadline, "no progress on the partial download");
        assert!(child.try_wait().unwrap().is_none(), "add finished before it could be killed");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = std::fs::metadata(&part).unwrap().len();
    assert!(partial > 0 && partial < model_bytes().len() as u64);
    assert!(blob_names(&home).is_empty(), "a partial blob is visible under its final name");
    assert_eq!(home.status()["models"].as_array().unwrap().len(), 0);

    server.behaviour.lock().unwrap().throttle = None;
    let before = server.requests().len();
    let out = home.hearth_with(&[("HF_ENDPOINT", &server.url)], &["cache", "add", &source]);
    assert!(out.status.success(), "{}", text(&out));
    let rerun_files: Vec<String> = server.requests()[before..].iter().filter(|r| r.contains("/resolve/")).cloned().collect();
    assert_eq!(rerun_files.len(), 1, "the rerun fetches the file once: {rerun_files:?}");
    let ranged = rerun_files;
    assert!(ranged[0].contains("range=bytes=") && !ranged[0].contains("range=bytes=0-"), "the rerun asks for the rest only: {ranged:?}");
    assert!(ranged[0].contains(&format!("if-range=\"{sha}\"")), "the resume names the version it continues: {ranged:?}");
    let resumed_from: u64 = ranged[0].split("range=bytes=").nth(1).unwrap().split('-').next().unwrap().parse().unwrap();
    assert!(resumed_from >= 4 << 20 && resumed_from <= partial, "resumed from {resumed_from}, partial was {partial}");
    assert_eq!(blob_names(&home), vec![sha.clone()]);
    assert_eq!(sha256_hex(&std::fs::read(home.store().join("blobs/sha256").join(&sha)).unwrap()), sha);
    assert!(!part.exists());
}

/// Deterministic bytes that do not compress or repeat (xorshift), different per seed.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Starts `cache add SOURCE` and SIGKILLs it once a partial file under `tmp/` holds `at_least` bytes;
/// returns that partial's path.
fn kill_mid_download(home: &Home, server: &Server, source: &str, at_least: u64) -> std::path::PathBuf {
    let mut child = home.command().args(["cache", "add", source]).env("HF_ENDPOINT", &server.url).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let part = files_under(&home.store().join("tmp")).into_iter().find(|p| p.extension().is_some_and(|e| e == "part"));
        if let Some(p) = part.filter(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) >= at_least) {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return p;
        }
        assert!(Instant::now() < deadline, "no progress on the partial download");
        assert!(child.try_wait().unwrap().is_none(), "add finished before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills an add of a git-stored (non-LFS) file mid-download, changes the file on the server, reruns the
/// add and checks the result is the new file, whole; returns the rerun's file requests. Git files have no
/// sha256 in the listing, so the partial is keyed by URL and the same URL serves the new version.
fn resume_after_the_file_changed(ignore_if_range: bool) -> Vec<String> {
    let (old, new) = (noise(8 << 20, 1), noise((8 << 20) + 4321, 2));
    let mut b = Behaviour::default();
    b.hf.insert(REPO.into(), vec![HubFile { name: "tokenizer.json".into(), bytes: std::sync::Arc::new(old.clone()), lfs: false }]);
    b.throttle = Some(32 << 10);
    b.ignore_if_range = ignore_if_range;
    let server = Server::start(b);
    let home = Home::new();
    let source = format!("hf://{REPO}/tokenizer.json");
    let part = kill_mid_download(&home, &server, &source, 1 << 20);
    let validator = std::fs::read_to_string(part.with_extension("validator")).expect("the validator is kept beside the partial");
    assert_eq!(validator, format!("\"{}\"", git_sha1(&old)));
    assert!(std::fs::metadata(&part).unwrap().len() < old.len() as u64);

    {
        let mut b = server.behaviour.lock().unwrap();
        b.hf.insert(REPO.into(), vec![HubFile { name: "tokenizer.json".into(), bytes: std::sync::Arc::new(new.clone()), lfs: false }]);
        b.throttle = None;
    }
    let before = server.requests().len();
    let out = home.hearth_with(&[("HF_ENDPOINT", &server.url)], &["cache", "add", &source]);
    assert!(out.status.success(), "{}", text(&out));
    let gets: Vec<String> = server.requests()[before..].iter().filter(|r| r.contains("/resolve/")).cloned().collect();
    assert!(gets[0].contains("range=bytes=") && gets[0].contains(&format!("if-range={validator}")), "the resume names the version it continues: {gets:?}");
    // The old prefix was dropped, not completed with the new version's tail.
    assert_eq!(blob_names(&home), vec![sha256_hex(&new)]);
    let entry = home.status()["models"][0]["path"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read(std::path::Path::new(&entry).join("tokenizer.json")).unwrap(), new);
    assert!(files_under(&home.store().join("tmp")).is_empty(), "partial or validator left behind");
    gets
}

#[test]
fn resume_sends_if_range_and_restarts_when_the_file_changed_on_the_server() {
    let gets = resume_after_the_file_changed(false);
    assert_eq!(gets.len(), 1, "the server answered the stale If-Range with the whole file: {gets:?}");
}

#[test]
fn resume_restarts_when_a_server_ignoring_if_range_sends_another_version() {
    // The 206 carries the new ETag: the client notices, drops the partial and fetches the whole file.
    let gets = resume_after_the_file_changed(true);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert!(gets[1].contains("range= "), "the second request fetches from byte 0: {gets:?}");
}

#[test]
fn two_processes_adding_the_same_model_download_once_and_both_succeed() {
    let server = hub(None);
    server.behaviour.lock().unwrap().throttle = Some(1 << 20);
    let home = Home::new();
    let source = format!("hf://{REPO}");
    let spawn = || home.command().args(["cache", "add", &source]).env("HF_ENDPOINT", &server.url).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    let gguf_gets = server.requests().iter().filter(|r| r.contains(&format!("/resolve/{COMMIT}/{MODEL_FILE}"))).count();
    assert_eq!(gguf_gets, 1, "{:?}", server.requests());
    assert_eq!(home.status()["models"].as_array().unwrap().len(), 1);
}

/// The template, params and system layers of the test manifest, as Ollama writes them.
fn ollama_small_layers() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let template = b"{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n".to_vec();
    let params = br#"{"stop":["<|im_start|>","<|im_end|>"],"temperature":0.2}"#.to_vec();
    (template, params, b"You are a helpful assistant.".to_vec())
}

fn ollama_registry(claimed_size: Option<u64>) -> Server {
    let gguf = model_bytes();
    let config = br#"{"model_format":"gguf","model_family":"llama"}"#.to_vec();
    let (template, params, system) = ollama_small_layers();
    let digest = |b: &[u8]| format!("sha256:{}", sha256_hex(b));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": digest(&gguf), "size": claimed_size.unwrap_or(gguf.len() as u64)},
            {"mediaType": "application/vnd.ollama.image.template", "digest": digest(&template), "size": template.len()},
            {"mediaType": "application/vnd.ollama.image.params", "digest": digest(&params), "size": params.len()},
            {"mediaType": "application/vnd.ollama.image.system", "digest": digest(&system), "size": system.len()},
        ],
    });
    let mut b = Behaviour::default();
    b.ollama.insert("library/smol:135m".into(), serde_json::to_vec(&manifest).unwrap());
    for blob in [gguf.as_ref().clone(), config, template, params, system] {
        b.ollama_blobs.insert(digest(&blob), std::sync::Arc::new(blob));
    }
    Server::start(b)
}

#[test]
fn ollama_add_pulls_manifest_and_blobs() {
    let server = ollama_registry(None);
    let home = Home::new();
    let out = home.hearth_with(&[("HEARTH_OLLAMA_REGISTRY", &server.url)], &["cache", "add", "ollama://smol:135m"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(server.requests().iter().any(|r| r.starts_with("GET /v2/library/smol/manifests/135m")));
    let status = home.status();
    assert_eq!(status["models"][0]["name"], "smol:135m");
    assert_eq!(status["models"][0]["quantization"], "Q4_1");
    let out = home.hearth(&["show", "smol:135m"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn ollama_manifest_lying_about_sizes_is_refused() {
    let real = model_bytes().len() as u64;
    for claimed in [real - 1000, real + 1000] {
        let server = ollama_registry(Some(claimed));
        let home = Home::new();
        let out = home.hearth_with(&[("HEARTH_OLLAMA_REGISTRY", &server.url)], &["cache", "add", "ollama://smol:135m"]);
        assert!(!out.status.success(), "claimed {claimed} accepted");
        let msg = text(&out);
        assert!(msg.contains("size mismatch") && msg.contains(&claimed.to_string()), "{msg}");
        assert!(!blob_names(&home).contains(&sha256_hex(&model_bytes())));
        assert_eq!(home.status()["models"].as_array().unwrap().len(), 0);
    }
}

#[test]
fn ollama_template_params_and_system_layers_are_kept_and_exported_with_their_digests() {
    let server = ollama_registry(None);
    let home = Home::new();
    let out = home.hearth_with(&[("HEARTH_OLLAMA_REGISTRY", &server.url)], &["cache", "add", "ollama://smol:135m"]);
    assert!(out.status.success(), "{}", text(&out));
    let (template, params, system) = ollama_small_layers();
    let blobs = blob_names(&home);
    for layer in [&template, &params, &system] {
        assert!(blobs.contains(&sha256_hex(layer)), "a small layer is not stored: {blobs:?}");
    }

    let out = home.hearth(&["cache", "sync", "--to-ollama", "smol:135m=smol:copy"]);
    assert!(out.status.success(), "{}", text(&out));
    let manifest_path = home.ollama().join("manifests/registry.ollama.ai/library/smol/copy");
    let served = server.behaviour.lock().unwrap().ollama["library/smol:135m"].clone();
    assert_eq!(std::fs::read(&manifest_path).unwrap(), served, "the registry's manifest is written back as pulled");
    let manifest: serde_json::Value = serde_json::from_slice(&served).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    for (kind, bytes) in [("template", &template), ("params", &params), ("system", &system)] {
        let layer = layers.iter().find(|l| l["mediaType"] == format!("application/vnd.ollama.image.{kind}")).unwrap();
        let digest = layer["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let blob = std::fs::read(home.ollama().join("blobs").join(format!("sha256-{digest}"))).unwrap_or_else(|e| panic!("{kind} blob: {e}"));
        assert_eq!(&blob, bytes, "{kind}");
        assert_eq!(blob.len() as u64, layer["size"].as_u64().unwrap(), "{kind}");
    }
    // Ollama's own view: the exported model lists with every layer resolving to a blob of its size.
    let out = home.hearth(&["cache", "sync"]);
    assert!(out.status.success() && !text(&out).contains("size mismatch"), "{}", text(&out));
    let status = home.status();
    assert!(status["models"].as_array().unwrap().iter().any(|m| m["name"] == "smol:copy" && m["origin"] == "ollama"), "{status}");
}
