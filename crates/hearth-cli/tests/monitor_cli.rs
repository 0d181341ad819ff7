//! `hearth bench run | list | show | compare`, `hearth dash` (in tmux and, with `--web`, in headless
//! Chromium), `hearth history` and `hearth service` through the real binary, against a real llama-server
//! on 127.0.0.1 where a server is needed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const HEARTH: &str = env!("CARGO_BIN_EXE_hearth");
/// Tests with a llama-server run one at a time (2 cores).
static SERVER_LOCK: Mutex<()> = Mutex::new(());

fn dev_cache() -> PathBuf {
    std::env::var_os("HEARTH_DEV_CACHE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/hearth-dev"))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A raw HTTP/1.1 request (the CLI crate has no HTTP client): status and body. The body ends at
/// Content-Length when there is one (chromedriver keeps the socket open), else at close.
fn http(method: &str, port: u16, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
            let length = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|len| raw.len() >= end + 4 + len) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
    Some((status, body))
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// llama-server with SmolLM2 (2 threads, metrics on) on a free port.
fn llama_server() -> (Killed, u16) {
    let bin = std::env::var_os("HEARTH_LLAMA_SERVER").map(PathBuf::from).unwrap_or_else(|| dev_cache().join("llama.cpp-11434.0.0/build/bin/llama-server"));
    assert!(bin.is_file(), "{} is missing: run scripts/build-llama-cpp.sh (scripts/test.sh does)", bin.display());
    let models = std::env::var_os("HEARTH_TEST_MODELS").map(PathBuf::from).unwrap_or_else(|| dev_cache().join("models"));
    let model = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(model.is_file(), "{} is missing: run scripts/fetch-models.sh", model.display());
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg("-m").arg(model).args(["--host", "127.0.0.1", "--port", &port.to_string(), "-t", "2", "-c", "2048", "-np", "1", "--metrics", "-a", "smollm2"]);
    (start_server(cmd, port, "llama-server"), port)
}

/// Spawns a server (output discarded) and waits for its `/health` on `port`; killed on drop.
fn start_server(mut cmd: Command, port: u16, what: &str) -> Killed {
    let server = Killed(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    wait_until(&format!("{what} /health"), Duration::from_secs(60), || http("GET", port, "/health", "").is_some_and(|(s, _)| s == 200));
    server
}

/// One long generation (EOS ignored) on a thread of its own.
fn long_generation(port: u16, tokens: u32) -> std::thread::JoinHandle<Option<(u16, String)>> {
    let body = format!(r#"{{"model":"smollm2","messages":[{{"role":"user","content":"Tell me a long story."}}],"max_tokens":{tokens},"ignore_eos":true}}"#);
    std::thread::spawn(move || http("POST", port, "/v1/chat/completions", &body))
}

fn hearth(args: &[&str], db: &Path) -> Output {
    Command::new(HEARTH).args(args).arg("--db").arg(db).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn bench_run_list_show_compare_against_llama_server() {
    let _serial = SERVER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (_server, port) = llama_server();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("monitor.db");
    let prompts = dir.path().join("two.txt");
    std::fs::write(&prompts, "Say hello.\nName three colours.\n").unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    // --api and --model are found by probing the server.
    for _ in 0..2 {
        let out = hearth(&["bench", "run", "--endpoint", &endpoint, "--prompts", prompts.to_str().unwrap(), "--max-tokens", "12"], &db);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("model smollm2") && stdout.contains("| TTFT") && stdout.contains("complete"), "{stdout}");
    }
    let out = hearth(&["bench", "list", "--format", "json"], &db);
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[0]["id"], 2);
    assert_eq!(runs[0]["completed"], 2);
    let out = hearth(&["bench", "show", "1", "--format", "csv"], &db);
    let (stdout, _) = text(&out);
    assert!(stdout.starts_with("id,created_ms,endpoint") && stdout.lines().nth(1).unwrap().starts_with("1,"), "{stdout}");
    let out = hearth(&["bench", "compare", "1", "2"], &db);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success() && stdout.contains("decode tok/s") && stdout.contains("B/A"), "{stdout}{stderr}");
    let out = hearth(&["bench", "show", "99"], &db);
    assert!(!out.status.success() && text(&out).1.contains("no benchmark #99"));
}

#[test]
fn bench_bad_input_exits_non_zero_with_clear_messages_and_keeps_the_failed_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("monitor.db");
    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = hearth(&["bench", "run", "--endpoint", &closed, "--api", "openai", "--model", "m", "--requests", "2"], &db);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("FAILED") && stderr.contains("cannot reach"), "{stderr}");
    assert!(stdout.contains("failed standard") || stdout.contains("failed greeting"), "{stdout}");
    let list = text(&hearth(&["bench", "list"], &db)).0;
    assert!(list.contains("FAILED"), "the failed run is kept: {list}");

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let out = hearth(&["bench", "run", "--endpoint", &closed, "--prompts", empty.to_str().unwrap()], &db);
    let stderr = text(&out).1;
    assert!(!out.status.success() && stderr.contains("empty.txt") && stderr.contains("no prompts"), "{stderr}");

    let out = hearth(&["bench", "run", "--endpoint", &closed], &db);
    let stderr = text(&out).1;
    assert!(!out.status.success() && stderr.contains("finding the API and model") && stderr.contains("cannot reach"), "{stderr}");
    let out = hearth(&["bench", "run", "--endpoint", &closed, "--api", "grpc", "--model", "m"], &db);
    assert!(text(&out).1.contains("--api"));
    for args in [&["history", "export", "--format", "csv", "--table", "bogus"][..], &["history", "export", "--format", "xml"][..]] {
        let out = hearth(args, &db);
        assert!(!out.status.success() && !text(&out).1.contains("panicked"), "{:?}", text(&out));
    }
    let garbage = dir.path().join("junk.json");
    std::fs::write(&garbage, "[1,2").unwrap();
    let out = hearth(&["history", "import", garbage.to_str().unwrap()], &db);
    assert!(!out.status.success() && text(&out).1.contains("junk.json"));
}

#[test]
fn history_export_import_round_trip_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let closed = format!("http://127.0.0.1:{}", free_port());
    hearth(&["bench", "run", "--endpoint", &closed, "--api", "ollama", "--model", "m", "--requests", "1"], &a);
    let export = dir.path().join("out/export.json");
    let out = hearth(&["history", "export", "-o", export.to_str().unwrap()], &a);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(hearth(&["history", "import", export.to_str().unwrap()], &b).status.success());
    let again = text(&hearth(&["history", "export"], &b)).0;
    assert_eq!(again, std::fs::read_to_string(&export).unwrap());
    assert!(hearth(&["history", "prune", "--keep-days", "1"], &b).status.success());
}

#[test]
fn service_install_writes_a_systemd_user_unit_and_uninstall_removes_it() {
    if cfg!(target_os = "macos") {
        eprintln!("skipped: the launchd path is untested here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| Command::new(HEARTH).args(args).env("XDG_CONFIG_HOME", dir.path()).output().unwrap();
    let out = run(&["service", "install", "--no-enable", "--dashboard", "--", "--addr", "127.0.0.1:7171"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let unit = std::fs::read_to_string(dir.path().join("systemd/user/hearth-dash.service")).unwrap();
    assert!(unit.contains(&format!("ExecStart=\"{HEARTH}\" \"dash\" \"--web\" \"--addr\" \"127.0.0.1:7171\"")), "{unit}");
    assert!(unit.contains("WantedBy=default.target"));
    assert!(run(&["service", "uninstall", "--no-enable", "--dashboard"]).status.success());
    assert!(!dir.path().join("systemd/user/hearth-dash.service").exists());
    let out = run(&["service", "uninstall", "--no-enable", "--dashboard"]);
    assert!(!out.status.success() && text(&out).1.contains("not installed"));
}

#[test]
fn dash_json_snapshot_names_a_down_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = hearth(&["dash", "--endpoint", &closed, "--json-after", "1.2"], &dir.path().join("m.db"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let snap: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(snap["endpoints"][0]["up"], false);
    assert!(snap["endpoints"][0]["error"].as_str().unwrap().contains("cannot reach"), "{stdout}");
    assert!(snap["memory"]["total_bytes"].as_u64().unwrap() > 0);
}

/// Without `--endpoint`, `hearth dash` watches the servers named in `$XDG_CONFIG_HOME/hearth/monitor.yaml`
/// (here a llama-server on a port no default covers), with their names, besides the default ports.
#[test]
fn dash_lists_an_endpoint_named_in_the_monitor_config() {
    let _serial = SERVER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (_server, port) = llama_server();
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(config_dir.join("hearth")).unwrap();
    let closed = free_port();
    let yaml = format!("endpoints:\n  - name: bench box\n    url: http://127.0.0.1:{port}\n  - name: typed\n    url: http://127.0.0.1:{closed}/v1\n    kind: ollama\n");
    std::fs::write(config_dir.join("hearth/monitor.yaml"), yaml).unwrap();
    let dash = |extra: &[&str]| Command::new(HEARTH).args(["dash", "--json-after", "2.5", "--no-history"]).args(extra).env("XDG_CONFIG_HOME", &config_dir).env_remove("HEARTH_MONITOR_CONFIG").output().unwrap();
    let out = dash(&[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let snap: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let endpoints = snap["endpoints"].as_array().unwrap();
    let by_url = |url: String| endpoints.iter().find(|e| e["url"] == url.as_str()).unwrap_or_else(|| panic!("{url} not listed: {stdout}"));
    let llama = by_url(format!("http://127.0.0.1:{port}"));
    assert_eq!((llama["name"].as_str(), llama["up"].as_bool(), llama["kind"].as_str()), (Some("bench box"), Some(true), Some("llama.cpp")), "{stdout}");
    assert!(llama["models"].to_string().contains("smollm2"), "{stdout}");
    // A configured server that is down is shown (with its name), not hidden like an empty default port.
    let down = by_url(format!("http://127.0.0.1:{closed}/v1"));
    assert_eq!((down["name"].as_str(), down["up"].as_bool()), (Some("typed"), Some(false)), "{stdout}");
    assert!(down["error"].as_str().unwrap().contains("cannot reach"), "{stdout}");

    // A broken file is an error naming it, not a silently empty list.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "endpoints:\n  - url: not a url\n").unwrap();
    let out = dash(&["--config", bad.to_str().unwrap()]);
    let stderr = text(&out).1;
    assert!(!out.status.success() && stderr.contains("bad.yaml") && stderr.contains("endpoints[0].url"), "{stderr}");
}

/// A tmux session, killed on drop.
struct Tmux(String);

impl Tmux {
    fn capture(&self) -> String {
        let out = Command::new("tmux").args(["capture-pane", "-p", "-t", &self.0]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).stderr(Stdio::null()).status();
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

#[test]
fn dash_in_tmux_shows_live_tok_s_then_idle() {
    if !have("tmux") && Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: tmux is not installed (scripts/setup-system.sh installs it as root)");
        return;
    }
    let _serial = SERVER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (_server, port) = llama_server();
    let name = format!("hearth-dash-test-{}", std::process::id());
    let cmd = format!("'{HEARTH}' dash --no-history --endpoint http://127.0.0.1:{port}");
    let status = Command::new("tmux").args(["new-session", "-d", "-s", &name, "-x", "100", "-y", "30", &cmd]).env("TERM", "xterm-256color").status().unwrap();
    assert!(status.success());
    let tmux = Tmux(name.clone());
    wait_until("the dashboard to show the idle server", Duration::from_secs(20), || {
        let s = tmux.capture();
        s.contains("hearth │ idle") && s.contains("llama.cpp") && s.contains("smollm2")
    });
    let generation = long_generation(port, 400);
    let mut live = String::new();
    wait_until("a live tok/s in the header", Duration::from_secs(60), || {
        live = tmux.capture();
        live.lines().next().is_some_and(|l| l.contains(" tok/s │"))
    });
    eprintln!("while generating:\n{live}");
    let (status, _) = generation.join().unwrap().expect("the generation answered");
    assert_eq!(status, 200);
    wait_until("idle after the stream", Duration::from_secs(20), || tmux.capture().lines().next().is_some_and(|l| l.contains("hearth │ idle")));
    Command::new("tmux").args(["send-keys", "-t", &name, "q"]).status().unwrap();
    wait_until("the dashboard to quit on q", Duration::from_secs(10), || !Command::new("tmux").args(["has-session", "-t", &name]).stderr(Stdio::null()).status().unwrap().success());
}

/// `b` in the dashboard runs the standard 10-prompt benchmark against the server it watches: the footer
/// says it runs, then gives the result, which is in the history (`hearth bench list`) and the `h` view.
#[test]
fn dash_in_tmux_runs_the_standard_benchmark_on_b_and_saves_it() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: tmux is not installed (scripts/setup-system.sh installs it as root)");
        return;
    }
    let _serial = SERVER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (_server, port) = llama_server();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("monitor.db");
    let name = format!("hearth-dash-bench-test-{}", std::process::id());
    let cmd = format!("'{HEARTH}' dash --db '{}' --endpoint http://127.0.0.1:{port}", db.display());
    let status = Command::new("tmux").args(["new-session", "-d", "-s", &name, "-x", "110", "-y", "30", &cmd]).env("TERM", "xterm-256color").status().unwrap();
    assert!(status.success());
    let tmux = Tmux(name.clone());
    wait_until("the dashboard to show the idle server", Duration::from_secs(20), || {
        let s = tmux.capture();
        s.contains("hearth │ idle") && s.contains("smollm2")
    });
    Command::new("tmux").args(["send-keys", "-t", &name, "b"]).status().unwrap();
    let mut running = String::new();
    wait_until("the benchmark to start", Duration::from_secs(10), || {
        running = tmux.capture();
        running.contains("running the standard benchmark on smollm2") && running.contains("benchmark running…")
    });
    eprintln!("while the benchmark runs:\n{running}");
    let mut done = String::new();
    wait_until("the benchmark's result", Duration::from_secs(240), || {
        done = tmux.capture();
        done.contains("benchmark #1 complete:")
    });
    eprintln!("after it:\n{done}");
    assert!(done.contains("last bench #1"), "{done}");
    let out = hearth(&["bench", "list", "--format", "json"], &db);
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&out)));
    let r = &runs[0];
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!((r["id"].as_i64(), r["model"].as_str(), r["prompts"].as_str(), r["status"].as_str()), (Some(1), Some("smollm2"), Some("standard"), Some("complete")), "{r}");
    assert_eq!((r["prompt_count"].as_u64(), r["completed"].as_u64(), r["failed"].as_u64()), (Some(10), Some(10), Some(0)), "{r}");
    assert!(r["output_tok_s"].as_f64().unwrap() > 0.0 && r["peak_memory_bytes"].as_u64().is_some(), "{r}");
    Command::new("tmux").args(["send-keys", "-t", &name, "h"]).status().unwrap();
    wait_until("the history view to list the run", Duration::from_secs(10), || {
        let s = tmux.capture();
        s.contains("Benchmarks (h: back)") && s.lines().any(|l| l.contains(" 1  smollm2") && l.contains("complete") && l.contains("10/10"))
    });
    Command::new("tmux").args(["send-keys", "-t", &name, "q"]).status().unwrap();
    wait_until("the dashboard to quit on q", Duration::from_secs(10), || !Command::new("tmux").args(["has-session", "-t", &name]).stderr(Stdio::null()).status().unwrap().success());
}

/// A WebDriver call to chromedriver on `port`; the JSON `value` of the answer.
fn webdriver(port: u16, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let (status, text) = http(method, port, path, &body).unwrap_or_else(|| panic!("chromedriver did not answer {method} {path}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("chromedriver {method} {path}: {e}: {text}"));
    assert_eq!(status, 200, "chromedriver {method} {path}: {text}");
    v["value"].clone()
}

/// A history to chart: two real benchmark runs against the server on `port`, then (imported) 30 minutes
/// of samples whose tok/s peaks at 529 — far above SmolLM2 on this machine, so the chart's peak is theirs —
/// and a proxied session whose server process was unknown.
fn seed_history(db: &Path, port: u16) {
    let dir = db.parent().unwrap();
    let prompts = dir.join("two.txt");
    std::fs::write(&prompts, "Say hello.\nName three colours.\n").unwrap();
    for _ in 0..2 {
        let out = hearth(&["bench", "run", "--endpoint", &format!("http://127.0.0.1:{port}"), "--prompts", prompts.to_str().unwrap(), "--max-tokens", "8"], db);
        assert!(out.status.success(), "{:?}", text(&out));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let samples: Vec<serde_json::Value> = (0..30i64)
        .flat_map(|i| {
            let ts = now - (40 - i) * 60_000;
            [
                serde_json::json!({"ts_ms": ts, "endpoint": "http://127.0.0.1:1", "metric": "tok_s", "value": 500 + i, "bucket_ms": 0}),
                serde_json::json!({"ts_ms": ts, "endpoint": "system", "metric": "memory_used_bytes", "value": (2i64 << 30) + i * (16 << 20), "bucket_ms": 0}),
            ]
        })
        .collect();
    let session = serde_json::json!({"id": null, "endpoint": "http://10.0.0.5:11434", "model": "remote:7b", "start_ms": now - 600_000, "end_ms": now - 590_000,
        "tokens": 40, "avg_tok_s": 20.0, "server_tok_s": null, "peak_memory_bytes": null, "source": "proxy"});
    let export = dir.join("seed.json");
    std::fs::write(&export, serde_json::json!({"sessions": [session], "benchmarks": [], "samples": samples}).to_string()).unwrap();
    let out = hearth(&["history", "import", export.to_str().unwrap()], db);
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn web_dashboard_in_headless_chromium_shows_live_tok_s_history_and_benchmarks() {
    let (chromium, driver) = (Path::new("/usr/bin/chromium"), "chromedriver");
    if !chromium.exists() || !have(driver) {
        eprintln!("skipped: Debian's chromium and chromium-driver are not installed (scripts/setup-system.sh installs them as root)");
        return;
    }
    let _serial = SERVER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (_server, port) = llama_server();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("monitor.db");
    seed_history(&db, port);
    let web_port = free_port();
    let dash = Command::new(HEARTH)
        .args(["dash", "--web", "--addr", &format!("127.0.0.1:{web_port}"), "--endpoint", &format!("http://127.0.0.1:{port}"), "--db"])
        .arg(&db)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _dash = Killed(dash);
    wait_until("the web dashboard", Duration::from_secs(20), || http("GET", web_port, "/", "").is_some_and(|(s, b)| s == 200 && b.contains("id=\"toks\"")));
    let (status, js) = http("GET", web_port, "/app.js", "").unwrap();
    assert!(status == 200 && js.contains("EventSource") && !js.contains("https://"), "assets are embedded, no CDN");

    let driver_port = free_port();
    let chromedriver = Command::new(driver).arg(format!("--port={driver_port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let _chromedriver = Killed(chromedriver);
    wait_until("chromedriver", Duration::from_secs(20), || http("GET", driver_port, "/status", "").is_some_and(|(s, _)| s == 200));
    let caps = serde_json::json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
        "binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,2200"]}}}});
    let session = webdriver(driver_port, "POST", "/session", caps)["sessionId"].as_str().unwrap().to_string();
    let base = format!("/session/{session}");
    webdriver(driver_port, "POST", &format!("{base}/url"), serde_json::json!({"url": format!("http://127.0.0.1:{web_port}/")}));
    let js = |script: &str| webdriver(driver_port, "POST", &format!("{base}/execute/sync"), serde_json::json!({"script": script, "args": []}));
    let toks = || js("return document.getElementById('toks').textContent").as_str().unwrap_or("").to_string();
    wait_until("the page to show idle", Duration::from_secs(20), || toks() == "idle");

    // History charts drawn from the database (not the live series), the benchmarks as bars and rows.
    let chart_points = |id: &str| js(&format!("return Number(document.getElementById('{id}').dataset.points || 0)")).as_u64().unwrap_or(0);
    wait_until("the history charts", Duration::from_secs(20), || chart_points("tok-history") >= 30 && chart_points("mem-history") >= 30);
    assert_eq!(js("return document.querySelector('#tok-history .peak').textContent"), "peak 529.0 tok/s");
    // The seeded minute samples (the oldest) make one unbroken line; live samples of now may follow apart.
    let first_line = js("return document.querySelector('#tok-history polyline')?.getAttribute('points').split(' ').length || 0");
    assert_eq!(first_line.as_u64(), Some(30), "one unbroken line over the 30 minute samples");
    assert_eq!(js("return document.querySelectorAll('#bench-chart rect.bench-bar').length").as_u64(), Some(2));
    assert_eq!(js("return document.querySelectorAll('#benchmarks tbody input[name=a]').length").as_u64(), Some(2));
    let sessions = js("return document.getElementById('sessions').textContent").as_str().unwrap_or("").to_string();
    assert!(sessions.contains("remote:7b") && sessions.contains("unknown"), "a session without a known server process: {sessions}");
    js("document.getElementById('compare-btn').click(); return null");
    wait_until("the comparison of the two runs", Duration::from_secs(10), || js("return document.getElementById('comparison').textContent").as_str().is_some_and(|t| t.contains("×")));

    let generation = long_generation(port, 400);
    let mut seen = Vec::new();
    wait_until("two different live tok/s values", Duration::from_secs(60), || {
        let t = toks();
        if t.ends_with(" tok/s") && !seen.contains(&t) {
            seen.push(t);
        }
        seen.len() >= 2
    });
    let png = webdriver(driver_port, "GET", &format!("{base}/screenshot"), serde_json::Value::Null);
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hearth-dash-web.png");
    std::fs::write(&shot, base64_decode(png.as_str().unwrap())).unwrap();
    eprintln!("live values {seen:?}; screenshot at {}", shot.display());
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"));
    assert_eq!(generation.join().unwrap().unwrap().0, 200);
    wait_until("idle after the generation", Duration::from_secs(20), || toks() == "idle");
    let _ = http("DELETE", driver_port, &base, "");
}

/// Standard base64 (the screenshot), without a dependency.
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = s.bytes().filter_map(value).collect();
    digits
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().enumerate().fold(0u32, |acc, (i, &d)| acc | (u32::from(d) << (18 - 6 * i)));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes[..c.len().saturating_sub(1)].to_vec()
        })
        .collect()
}

/// `hearth serve` with SmolLM2 on a free port (2 threads).
fn hearth_serve() -> (Killed, u16) {
    let models = std::env::var_os("HEARTH_TEST_MODELS").map(PathBuf::from).unwrap_or_else(|| dev_cache().join("models"));
    let model = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let port = free_port();
    let mut cmd = Command::new(HEARTH);
    cmd.args(["serve", "--threads", "2", "--port", &port.to_string(), "--model"]).arg(format!("smol={}", model.display()));
    (start_server(cmd, port, "hearth serve"), port)
}

/// The bench and the monitor measure hearth's own server exactly as they measure llama.cpp: over HTTP.
#[test]
fn bench_and_dash_against_hearth_serve() {
    let _serial = SERVER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (_server, port) = hearth_serve();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("monitor.db");
    let endpoint = format!("http://127.0.0.1:{port}");
    let prompts = dir.path().join("two.txt");
    std::fs::write(&prompts, "Tell me a story about a lighthouse.\nExplain what a compiler does.\n").unwrap();
    let out = hearth(&["bench", "run", "--endpoint", &endpoint, "--api", "ollama", "--model", "smol", "--prompts", prompts.to_str().unwrap(), "--max-tokens", "48", "--format", "json"], &db);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((r["completed"].as_u64(), r["failed"].as_u64()), (Some(2), Some(0)), "{stdout}");
    // The client-side decode rate agrees with the server's own eval_count / eval_duration.
    let (ours, server) = (r["avg_tok_s"].as_f64().unwrap(), r["server_tok_s"].as_f64().expect("hearth reports eval timings"));
    assert!((ours - server).abs() <= 0.10 * server, "bench {ours:.1} tok/s vs server {server:.1}");
    // The monitor recognises the server from its /metrics and lists the loaded model.
    let out = hearth(&["dash", "--endpoint", &endpoint, "--json-after", "2.5"], &db);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let snap: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let e = &snap["endpoints"][0];
    assert_eq!((e["up"].as_bool(), e["kind"].as_str()), (Some(true), Some("hearth")), "{stdout}");
    assert!(e["models"].to_string().contains("smol"), "{stdout}");
}
