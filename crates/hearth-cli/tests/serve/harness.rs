//! Runs a real `hearth serve` process on 127.0.0.1 (a free port it picks and prints) and drives it with
//! Python scripts that use the real `openai` and `ollama` client packages from the dev venv.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{real_model, repo_root};

/// The chat model every server test uses (it has a chat template).
pub const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `hearth serve` with `smol` = SmolLM2, a small KV cache, and `extra` flags.
pub fn start(extra: &[&str]) -> Server {
    let model = format!("smol={}", real_model(SMOL).display());
    let mut args = vec!["serve", "--port", "0", "--model", &model, "--threads", "2"];
    if !extra.contains(&"--kv-cache") {
        args.extend(["--kv-cache", "48M"]);
    }
    args.extend_from_slice(extra);
    start_with(&args)
}

pub fn start_with(args: &[&str]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hearth"));
    command.args(args).env_remove("HEARTH_API_KEY");
    start_command(command)
}

/// Start a prepared `hearth serve` command (its own environment and flags; `--port 0` to print the
/// address it picks) and wait for the address.
pub fn start_command(mut command: Command) -> Server {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start hearth serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("hearth serve listening on ") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let url = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(url) => url,
        Err(_) => {
            let _ = child.kill();
            panic!("hearth serve did not report its address in time");
        }
    };
    Server { child, url }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait (bounded) for the process to exit by itself.
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("hearth serve did not exit within 30 s");
    }

}

/// The dev venv's python (scripts/setup-venv.sh creates or reuses it).
pub fn python() -> PathBuf {
    let out = Command::new(repo_root().join("scripts/setup-venv.sh")).output().expect("run scripts/setup-venv.sh");
    assert!(out.status.success(), "setup-venv.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Run `tests/serve/SCRIPT` with `args`; panics with its output if it fails or exceeds `timeout`.
pub fn run_script(script: &str, args: &[&str], timeout: Duration) -> String {
    let path = repo_root().join("crates/hearth-cli/tests/serve").join(script);
    let mut child = Command::new(python())
        .arg(&path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    std::thread::spawn(move || {
        let _ = tx.send(std::io::read_to_string(stdout).unwrap_or_default());
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(out) => out,
        Err(_) => {
            let _ = child.kill();
            panic!("{script} ran past {timeout:?}");
        }
    };
    let status = child.wait().expect("wait python");
    let err = err_reader.join().unwrap_or_default();
    assert!(status.success(), "{script} failed ({status}):\n--- stdout\n{out}\n--- stderr\n{err}");
    out
}
