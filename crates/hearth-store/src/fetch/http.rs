//! Downloads into the store: resumable (HTTP Range on the partial file left by an interrupted run),
//! verified (sha256 from the hub or the registry digest, size from the manifest, git blob sha1 ETags for
//! small hub files), retried with exponential backoff on 5xx, 429 and dropped connections, several files at
//! once, with one progress bar per file. A partial file lives only under `tmp/`; blobs appear under their
//! final name by rename after verification.
//!
//! A partial file keeps, beside it, the validator (strong ETag, else Last-Modified) of the response it
//! came from; a resume sends it as `If-Range`, so a file that changed on the server comes back whole (200)
//! and replaces the partial instead of its tail being appended to the old bytes.

use crate::config::Remotes;
use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{self, hex};
use crate::store::{BlobDir, StoredFile};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// One file to fetch.
#[derive(Debug, Clone)]
pub struct Download {
    pub url: String,
    /// Name of the file inside the model.
    pub rel_path: String,
    pub expected_sha256: Option<String>,
    pub expected_size: Option<u64>,
    /// Git blob sha1 (the hub's ETag of non-LFS files), checked when no sha256 is known.
    pub git_sha1: Option<String>,
}

pub struct Http {
    client: reqwest::blocking::Client,
    remotes: Remotes,
    bars: MultiProgress,
}

/// Outcome of one attempt, deciding whether to retry.
enum Attempt {
    Done,
    Retry(String),
}

impl Http {
    pub fn new(remotes: &Remotes) -> Result<Http> {
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .timeout(None)
            .build()
            .map_err(|e| StoreError::Network { url: remotes.hf_endpoint.clone(), message: e.to_string() })?;
        let bars = MultiProgress::with_draw_target(if remotes.progress { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
        Ok(Http { client, remotes: remotes.clone(), bars })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        Duration::from_millis((self.remotes.backoff_ms << attempt.min(6)).min(30_000))
    }

    /// GET a small document (API JSON, manifest), retrying transient failures; returns the body bytes.
    pub fn get_bytes(&self, url: &str, auth: Option<&str>, accept: Option<&str>) -> Result<Vec<u8>> {
        let mut last = String::new();
        for attempt in 0..self.remotes.attempts.max(1) {
            if attempt > 0 {
                std::thread::sleep(self.backoff(attempt - 1));
            }
            let mut req = self.client.get(url);
            if let Some(token) = auth {
                req = req.bearer_auth(token);
            }
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            match req.send() {
                Ok(resp) if resp.status().is_success() => {
                    let mut body = Vec::new();
                    // Documents are small; refuse anything that pretends otherwise.
                    match resp.take(64 << 20).read_to_end(&mut body) {
                        Ok(_) => return Ok(body),
                        Err(e) => last = e.to_string(),
                    }
                }
                Ok(resp) if is_transient(resp.status()) => last = format!("HTTP {}", resp.status().as_u16()),
                Ok(resp) => return Err(http_error(url, resp.status().as_u16(), auth.is_some())),
                Err(e) => last = error_chain(&e),
            }
            tracing::warn!("{url}: {last}; retrying");
        }
        Err(StoreError::Network { url: url.to_string(), message: format!("gave up after {} attempts: {last}", self.remotes.attempts) })
    }

    /// Downloads every file, `remotes.parallel` at a time; the first error wins, in list order.
    pub fn download_all(&self, store: &BlobDir, downloads: &[Download], auth: Option<&str>) -> Result<Vec<StoredFile>> {
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<StoredFile>>>> = Mutex::new((0..downloads.len()).map(|_| None).collect());
        let workers = self.remotes.parallel.clamp(1, 16).min(downloads.len().max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(d) = downloads.get(i) else { break };
                    let r = self.download(store, d, auth);
                    if let Ok(mut slots) = results.lock() {
                        slots[i] = Some(r);
                    }
                });
            }
        });
        let slots = results.into_inner().unwrap_or_default();
        slots.into_iter().zip(downloads).map(|(r, d)| r.unwrap_or_else(|| Err(StoreError::Network { url: d.url.clone(), message: "worker stopped".into() }))).collect()
    }

    /// Fetches one file into the store (or finds it there already).
    pub fn download(&self, store: &BlobDir, d: &Download, auth: Option<&str>) -> Result<StoredFile> {
        let done = |sha256: String, size: u64| StoredFile { rel_path: d.rel_path.clone(), sha256, size };
        if let Some(sha) = &d.expected_sha256 {
            if store.blob_path(sha).is_file() {
                return Ok(done(sha.clone(), std::fs::metadata(store.blob_path(sha)).map(|m| m.len()).unwrap_or(0)));
            }
        }
        let key = d.expected_sha256.clone().unwrap_or_else(|| hex(&Sha256::digest(d.url.as_bytes())));
        // Held for the whole transfer: a second process adding the same file waits here, then finds the blob.
        let _lock = store.lock(&key)?;
        if let Some(sha) = &d.expected_sha256 {
            if store.blob_path(sha).is_file() {
                return Ok(done(sha.clone(), std::fs::metadata(store.blob_path(sha)).map(|m| m.len()).unwrap_or(0)));
            }
        }
        let part = store.tmp_dir().join(format!("{key}.part"));
        let bar = self.bars.add(ProgressBar::new(d.expected_size.unwrap_or(0)));
        bar.set_style(
            ProgressStyle::with_template("{msg:30!} {bar:30} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(d.rel_path.clone());
        let result = self.fetch_to_part(d, &part, auth, &bar);
        bar.finish_and_clear();
        let (sha256, size) = result?;
        if let Err(e) = verify(d, &part, &sha256, size) {
            // A verified-bad partial must not be resumed.
            discard_partial(&part);
            return Err(e);
        }
        if key == sha256 {
            store.publish_locked(&part, &sha256)?;
        } else {
            store.publish(&part, &sha256)?;
        }
        let _ = std::fs::remove_file(validator_path(&part));
        Ok(done(sha256, size))
    }

    /// Transfers into `part`, resuming from its current length; returns (sha256, size) of the whole file.
    fn fetch_to_part(&self, d: &Download, part: &Path, auth: Option<&str>, bar: &ProgressBar) -> Result<(String, u64)> {
        let mut hasher = Sha256::new();
        let mut have = hash_existing(part, &mut hasher)?;
        if have > 0 {
            tracing::info!("{}: resuming at byte {have}", d.rel_path);
        }
        let mut last = String::new();
        for attempt in 0..self.remotes.attempts.max(1) {
            if attempt > 0 {
                std::thread::sleep(self.backoff(attempt - 1));
            }
            if d.expected_size == Some(have) && have > 0 {
                return Ok((hex(&hasher.clone().finalize()), have));
            }
            match self.attempt(d, part, auth, bar, &mut hasher, &mut have)? {
                Attempt::Done => return Ok((hex(&hasher.finalize()), have)),
                Attempt::Retry(why) => {
                    tracing::warn!("{}: {why}; retrying from byte {have}", d.url);
                    last = why;
                }
            }
        }
        Err(StoreError::Network { url: d.url.clone(), message: format!("gave up after {} attempts: {last}", self.remotes.attempts) })
    }

    fn attempt(&self, d: &Download, part: &Path, auth: Option<&str>, bar: &ProgressBar, hasher: &mut Sha256, have: &mut u64) -> Result<Attempt> {
        let mut req = self.client.get(&d.url);
        if let Some(token) = auth {
            req = req.bearer_auth(token);
        }
        let recorded = if *have > 0 { read_validator(part)? } else { None };
        if *have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
            if let Some(v) = &recorded {
                req = req.header(reqwest::header::IF_RANGE, v.as_str());
            }
        }
        let resp = match req.send() {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Retry(error_chain(&e))),
        };
        let status = resp.status().as_u16();
        match status {
            206 => {
                let start = content_range_start(&resp);
                if start != Some(*have) {
                    return Err(StoreError::BadResponse { what: d.url.clone(), message: format!("asked for bytes from {have}, got Content-Range {start:?}") });
                }
                // A server that ignores If-Range would hand us the tail of another version.
                if let (Some(was), Some(now)) = (&recorded, response_validator(&resp)) {
                    if *was != now {
                        restart(part, hasher, have)?;
                        return Ok(Attempt::Retry(format!("the file changed on the server ({was} → {now}); restarting")));
                    }
                }
            }
            200 => {
                // Whole file again (no range support, or it changed since the partial began): start over.
                // Truncate before recording the new validator: a kill in between leaves an empty partial,
                // never old bytes under the new version's validator.
                *have = 0;
                *hasher = Sha256::new();
                File::create(part).at(part)?;
                record_validator(part, response_validator(&resp).as_deref())?;
            }
            416 => {
                restart(part, hasher, have)?;
                return Ok(Attempt::Retry("range not satisfiable; restarting".into()));
            }
            s if is_transient(resp.status()) => return Ok(Attempt::Retry(format!("HTTP {s}"))),
            s => return Err(http_error(&d.url, s, auth.is_some())),
        }
        let total = resp.content_length().map(|n| n + *have).or(d.expected_size);
        if let (Some(t), Some(e)) = (total, d.expected_size) {
            // The server says how long the file is; a manifest or listing that disagrees is lying.
            if t != e {
                return Err(StoreError::SizeMismatch { what: d.url.clone(), expected: e, actual: t });
            }
        }
        bar.set_length(total.unwrap_or(0));
        bar.set_position(*have);
        let file = OpenOptions::new().create(true).append(true).open(part).at(part)?;
        let mut out = BufWriter::with_capacity(fsutil::CHUNK, file);
        let mut body = resp;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    out.flush().at(part)?;
                    return Ok(Attempt::Retry(format!("connection dropped: {e}")));
                }
            };
            if let Some(e) = d.expected_size {
                if *have + n as u64 > e {
                    out.flush().at(part)?;
                    return Err(StoreError::SizeMismatch { what: d.url.clone(), expected: e, actual: *have + n as u64 });
                }
            }
            out.write_all(&buf[..n]).at(part)?;
            hasher.update(&buf[..n]);
            *have += n as u64;
            bar.set_position(*have);
        }
        out.into_inner().map_err(|e| StoreError::Io { path: part.to_path_buf(), source: e.into_error() })?.sync_all().at(part)?;
        match d.expected_size {
            Some(e) if *have < e => Ok(Attempt::Retry(format!("connection closed at byte {have} of {e}"))),
            _ => Ok(Attempt::Done),
        }
    }
}

/// Where the validator of `part`'s response is kept.
fn validator_path(part: &Path) -> PathBuf {
    part.with_extension("validator")
}

/// The strong validator of a response: its ETag unless weak (`W/…`, not allowed in If-Range), else its
/// Last-Modified date.
fn response_validator(resp: &reqwest::blocking::Response) -> Option<String> {
    let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    header(reqwest::header::ETAG).filter(|e| !e.starts_with("W/")).or_else(|| header(reqwest::header::LAST_MODIFIED)).map(str::to_string)
}

/// Records (atomically) the validator of the response `part` is filled from; none removes a stale one.
fn record_validator(part: &Path, validator: Option<&str>) -> Result<()> {
    let path = validator_path(part);
    match validator {
        Some(v) => fsutil::write_atomic(&path, v.as_bytes()),
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io { path, source: e }),
            _ => Ok(()),
        },
    }
}

/// The validator recorded beside `part`; none for a partial left by a run that got no validator.
fn read_validator(part: &Path) -> Result<Option<String>> {
    let path = validator_path(part);
    match std::fs::read_to_string(&path) {
        // Header values are visible ASCII; anything else is not worth sending.
        Ok(v) => Ok(Some(v.trim().to_string()).filter(|v| !v.is_empty() && v.bytes().all(|b| (0x20..0x7f).contains(&b)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Io { path, source: e }),
    }
}

/// Drops the partial file and its validator so the next attempt starts from byte 0.
fn restart(part: &Path, hasher: &mut Sha256, have: &mut u64) -> Result<()> {
    match std::fs::remove_file(part) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(StoreError::Io { path: part.to_path_buf(), source: e }),
        _ => {}
    }
    record_validator(part, None)?;
    *have = 0;
    *hasher = Sha256::new();
    Ok(())
}

fn discard_partial(part: &Path) {
    let _ = std::fs::remove_file(part);
    let _ = std::fs::remove_file(validator_path(part));
}

/// Hashes what an earlier, interrupted run left in `part`; returns its length.
fn hash_existing(part: &Path, hasher: &mut Sha256) -> Result<u64> {
    let mut file = match File::open(part) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::Io { path: part.to_path_buf(), source: e }),
    };
    let mut buf = vec![0u8; fsutil::CHUNK];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).at(part)?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

fn verify(d: &Download, part: &Path, sha256: &str, size: u64) -> Result<()> {
    if let Some(e) = d.expected_size {
        if e != size {
            return Err(StoreError::SizeMismatch { what: d.url.clone(), expected: e, actual: size });
        }
    }
    if let Some(expected) = &d.expected_sha256 {
        if expected != sha256 {
            return Err(StoreError::ChecksumMismatch { what: d.url.clone(), expected: expected.clone(), actual: sha256.to_string() });
        }
    } else if let Some(expected) = &d.git_sha1 {
        let actual = git_blob_sha1(part, size)?;
        if &actual != expected {
            return Err(StoreError::ChecksumMismatch { what: format!("{} (git blob sha1)", d.url), expected: expected.clone(), actual });
        }
    }
    Ok(())
}

/// The git object id of a file: sha1 of `blob <len>\0` + content (what the hub sends as ETag for
/// files not stored in LFS).
fn git_blob_sha1(path: &Path, size: u64) -> Result<String> {
    use sha1::Sha1;
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {size}\0").as_bytes());
    let bytes = std::fs::read(path).at(path)?;
    hasher.update(&bytes);
    Ok(hex(&hasher.finalize()))
}

fn is_transient(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS || status == reqwest::StatusCode::REQUEST_TIMEOUT
}

fn http_error(url: &str, status: u16, had_token: bool) -> StoreError {
    let hint = match status {
        401 | 403 if had_token => " (the token was refused: check HF_TOKEN)".to_string(),
        401 | 403 => " (gated or private: set HF_TOKEN)".to_string(),
        404 => " (not found: check the name, revision and file)".to_string(),
        _ => String::new(),
    };
    StoreError::Http { url: url.to_string(), status, hint }
}

fn content_range_start(resp: &reqwest::blocking::Response) -> Option<u64> {
    let v = resp.headers().get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let range = v.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
