//! Helpers of the `hearth cache` tests: a small HTTP/1.1 server on 127.0.0.1 that speaks the Hugging Face
//! hub protocol (revision → commit with the file list, `resolve` with ETag / X-Repo-Commit /
//! X-Linked-Etag / Range / If-Range) and the Ollama registry protocol (v2 manifests and blobs), with switches for
//! throttling, 5xx failures, auth, and lies; plus isolated homes so no test touches the real user dirs.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// One file served by the fake hub.
#[derive(Clone)]
pub struct HubFile {
    pub name: String,
    pub bytes: Arc<Vec<u8>>,
    /// Served as an LFS file (sha256 in the listing and ETag) rather than a git file.
    pub lfs: bool,
}

/// What the server does; changed by tests between runs through the shared handle.
#[derive(Default)]
pub struct Behaviour {
    /// Repo id → files (HF) and `namespace/name:tag` → (manifest bytes, blobs by digest) (Ollama).
    pub hf: HashMap<String, Vec<HubFile>>,
    pub ollama: HashMap<String, Vec<u8>>,
    pub ollama_blobs: HashMap<String, Arc<Vec<u8>>>,
    /// Required bearer token.
    pub token: Option<String>,
    /// The sha256 the listing claims, per file name, instead of the real one.
    pub lie_sha: HashMap<String, String>,
    /// Bytes per 10 ms when throttled.
    pub throttle: Option<usize>,
    /// Serve ranges whatever If-Range says (a server or proxy that ignores it).
    pub ignore_if_range: bool,
    /// Revision → commit of every HF repo; empty: any revision is `COMMIT`. As on the hub, a revision is one
    /// path segment (`refs%2Fpr%2F1`): a raw `/` in it is not found.
    pub revisions: HashMap<String, String>,
}

pub struct Server {
    pub url: String,
    pub behaviour: Arc<Mutex<Behaviour>>,
    /// Requests of file bodies answered with 503 before serving (counts down).
    pub fail_next: Arc<AtomicUsize>,
    pub log: Arc<Mutex<Vec<String>>>,
    pub body_bytes_sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(behaviour: Behaviour) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let behaviour = Arc::new(Mutex::new(behaviour));
        let stop = Arc::new(AtomicBool::new(false));
        let fail_next = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(AtomicU64::new(0));
        let ctx = Ctx { behaviour: behaviour.clone(), fail_next: fail_next.clone(), log: log.clone(), sent: sent.clone(), stop: stop.clone() };
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if ctx.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let ctx = ctx.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let _ = handle(stream, &ctx);
                });
            }
        });
        Server { url, behaviour, fail_next, log, body_bytes_sent: sent, stop, thread: Some(thread) }
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so the thread ends with the test.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone)]
struct Ctx {
    behaviour: Arc<Mutex<Behaviour>>,
    fail_next: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some(Request { method, path, headers })
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8], throttle: Option<usize>, ctx: &Ctx) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let chunk = throttle.unwrap_or(1 << 20);
    for piece in body.chunks(chunk.max(1)) {
        if ctx.stop.load(Ordering::SeqCst) {
            break;
        }
        stream.write_all(piece)?;
        ctx.sent.fetch_add(piece.len() as u64, Ordering::SeqCst);
        if throttle.is_some() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    stream.flush()
}

fn handle(mut stream: TcpStream, ctx: &Ctx) -> std::io::Result<()> {
    let Some(req) = read_request(&stream) else { return Ok(()) };
    let mut range = req.headers.get("range").cloned().unwrap_or_default();
    let if_range = req.headers.get("if-range").cloned().unwrap_or_default();
    let auth = req.headers.get("authorization").cloned().unwrap_or_default();
    ctx.log.lock().unwrap().push(format!("{} {} range={range} if-range={if_range} auth={auth}", req.method, req.path));
    let b = ctx.behaviour.lock().unwrap();
    if let Some(token) = &b.token {
        if auth != format!("Bearer {token}") {
            drop(b);
            return respond(&mut stream, "401 Unauthorized", &[], b"{\"error\":\"Invalid credentials\"}", None, ctx);
        }
    }
    let path = req.path.split('?').next().unwrap_or_default().to_string();
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let body = hf_revision(&b, rest);
        drop(b);
        return match body {
            Some(json) => respond(&mut stream, "200 OK", &[("Content-Type".into(), "application/json".into())], json.as_bytes(), None, ctx),
            None => respond(&mut stream, "404 Not Found", &[], b"{\"error\":\"Repository not found\"}", None, ctx),
        };
    }
    if let Some(rest) = path.strip_prefix("/v2/") {
        return ollama(&mut stream, ctx, b, rest, &range);
    }
    // /{org}/{repo}/resolve/{rev}/{file}
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if let [org, repo, "resolve", _rev, file] = parts.as_slice() {
        let found = b.hf.get(&format!("{org}/{repo}")).and_then(|files| files.iter().find(|f| f.name == *file)).cloned();
        let throttle = b.throttle;
        let ignore_if_range = b.ignore_if_range;
        drop(b);
        let Some(f) = found else { return respond(&mut stream, "404 Not Found", &[], b"Entry not found", None, ctx) };
        if fail_once(ctx) {
            return respond(&mut stream, "503 Service Unavailable", &[], b"try again", None, ctx);
        }
        let etag = if f.lfs { sha256_hex(&f.bytes) } else { git_sha1(&f.bytes) };
        // RFC 9110 If-Range: a validator that no longer matches turns the range request into a full 200.
        if !ignore_if_range && !if_range.is_empty() && if_range != format!("\"{etag}\"") {
            range.clear();
        }
        let mut headers = vec![("ETag".to_string(), format!("\"{etag}\"")), ("X-Repo-Commit".into(), COMMIT.into()), ("Accept-Ranges".into(), "bytes".into())];
        if f.lfs {
            headers.push(("X-Linked-Etag".into(), format!("\"{etag}\"")));
            headers.push(("X-Linked-Size".into(), f.bytes.len().to_string()));
        }
        return serve_range(&mut stream, &f.bytes, &range, headers, throttle, ctx);
    }
    drop(b);
    respond(&mut stream, "404 Not Found", &[], b"no route", None, ctx)
}

fn fail_once(ctx: &Ctx) -> bool {
    ctx.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

fn serve_range(stream: &mut TcpStream, bytes: &[u8], range: &str, mut headers: Vec<(String, String)>, throttle: Option<usize>, ctx: &Ctx) -> std::io::Result<()> {
    let start = range.strip_prefix("bytes=").and_then(|r| r.split('-').next()).and_then(|s| s.parse::<usize>().ok());
    match start {
        Some(s) if s >= bytes.len() => respond(stream, "416 Range Not Satisfiable", &headers, b"", None, ctx),
        Some(s) => {
            headers.push(("Content-Range".into(), format!("bytes {s}-{}/{}", bytes.len() - 1, bytes.len())));
            respond(stream, "206 Partial Content", &headers, &bytes[s..], throttle, ctx)
        }
        None => respond(stream, "200 OK", &headers, bytes, throttle, ctx),
    }
}

fn hf_revision(b: &Behaviour, rest: &str) -> Option<String> {
    // {org}/{repo}/revision/{rev}
    let parts: Vec<&str> = rest.splitn(4, '/').collect();
    let [org, repo, "revision", rev] = parts.as_slice() else { return None };
    let commit = if b.revisions.is_empty() { COMMIT.to_string() } else { b.revisions.get(&percent_decode(rev)?)?.clone() };
    let files = b.hf.get(&format!("{org}/{repo}"))?;
    let siblings: Vec<String> = files
        .iter()
        .map(|f| {
            let sha = b.lie_sha.get(&f.name).cloned().unwrap_or_else(|| sha256_hex(&f.bytes));
            let name = serde_json_escape(&f.name);
            if f.lfs {
                format!(r#"{{"rfilename":"{name}","size":{},"blobId":"{}","lfs":{{"sha256":"{sha}","size":{},"pointerSize":134}}}}"#, f.bytes.len(), git_sha1(b"x"), f.bytes.len())
            } else {
                format!(r#"{{"rfilename":"{name}","size":{},"blobId":"{}"}}"#, f.bytes.len(), git_sha1(&f.bytes))
            }
        })
        .collect();
    Some(format!(r#"{{"id":"{org}/{repo}","sha":"{commit}","siblings":[{}]}}"#, siblings.join(",")))
}

/// One URL path segment decoded; `None` for a raw `/` (another segment) or a bad escape.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'/' => return None,
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

fn serde_json_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn ollama(stream: &mut TcpStream, ctx: &Ctx, b: std::sync::MutexGuard<Behaviour>, rest: &str, range: &str) -> std::io::Result<()> {
    // {ns}/{name}/manifests/{tag} or {ns}/{name}/blobs/{digest}
    let parts: Vec<&str> = rest.splitn(4, '/').collect();
    match parts.as_slice() {
        [ns, name, "manifests", tag] => {
            let m = b.ollama.get(&format!("{ns}/{name}:{tag}")).cloned();
            drop(b);
            match m {
                Some(m) => respond(stream, "200 OK", &[("Content-Type".into(), "application/vnd.docker.distribution.manifest.v2+json".into())], &m, None, ctx),
                None => respond(stream, "404 Not Found", &[], b"{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\"}]}", None, ctx),
            }
        }
        [_, _, "blobs", digest] => {
            let blob = b.ollama_blobs.get(*digest).cloned();
            let throttle = b.throttle;
            drop(b);
            match blob {
                Some(bytes) => serve_range(stream, &bytes, range, vec![], throttle, ctx),
                None => respond(stream, "404 Not Found", &[], b"blob unknown", None, ctx),
            }
        }
        _ => respond(stream, "404 Not Found", &[], b"no route", None, ctx),
    }
}

pub fn git_sha1(bytes: &[u8]) -> String {
    // The hub's ETag of a git-stored file: sha1 of "blob <len>\0" + content. Computed with the sha1 the
    // store uses would be circular; this is a plain implementation-independent check via `git hash-object`
    // semantics, done here with a tiny SHA-1.
    sha1_hex(&[format!("blob {}\0", bytes.len()).as_bytes(), bytes].concat())
}

/// A minimal SHA-1 (test-side only, so the server does not share code with the client it checks).
fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([block[4 * i], block[4 * i + 1], block[4 * i + 2], block[4 * i + 3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

/// An isolated home: HOME, XDG dirs, HF cache, Ollama store, LM Studio folder and hearth's store all under
/// one temp dir.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home { dir: tempfile::tempdir().expect("temp dir") }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn store(&self) -> PathBuf {
        self.path().join("store")
    }
    pub fn hf(&self) -> PathBuf {
        self.path().join("hf/hub")
    }
    pub fn ollama(&self) -> PathBuf {
        self.path().join("ollama/models")
    }
    pub fn lmstudio(&self) -> PathBuf {
        self.path().join("lmstudio/models")
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("XDG_CACHE_HOME", self.path().join("cache"))
            .env("HEARTH_CACHE_DIR", self.store())
            .env("HF_HUB_CACHE", self.hf())
            .env("OLLAMA_MODELS", self.ollama())
            .env("HEARTH_LMSTUDIO_MODELS", self.lmstudio())
            .env("HEARTH_FETCH_BACKOFF_MS", "20");
        c
    }

    pub fn hearth(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run hearth")
    }

    pub fn hearth_with(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut c = self.command();
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(args).output().expect("run hearth")
    }

    /// `cache status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = self.hearth(&["cache", "status", "--json"]);
        assert!(out.status.success(), "status failed: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("status json")
    }
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Every file under `dir` (recursively), for "nothing written outside the store" checks.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The real test model's bytes, read once per test binary.
pub fn model_bytes() -> Arc<Vec<u8>> {
    static BYTES: std::sync::OnceLock<Arc<Vec<u8>>> = std::sync::OnceLock::new();
    BYTES
        .get_or_init(|| {
            let p = crate::common::real_model(MODEL_FILE);
            let mut v = Vec::new();
            std::fs::File::open(&p).and_then(|mut f| f.read_to_end(&mut v)).expect("read test model");
            Arc::new(v)
        })
        .clone()
}

pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const REPO: &str = "test-org/SmolLM2-135M-Instruct-GGUF";

/// A hub repo holding the real GGUF (LFS), a README and a config (git files).
pub fn smol_repo() -> Vec<HubFile> {
    vec![
        HubFile { name: MODEL_FILE.into(), bytes: model_bytes(), lfs: true },
        HubFile { name: "README.md".into(), bytes: Arc::new(b"# test\n".to_vec()), lfs: false },
    ]
}
