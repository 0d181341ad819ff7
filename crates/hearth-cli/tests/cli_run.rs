//! `hearth run` and `hearth show` end to end, through the real binary on SmolLM2 (and Gemma for show):
//! determinism, stop strings, the verbose statistics and the interactive chat loop.

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn hearth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth")).args(args).output().expect("the hearth binary runs")
}

fn smollm2() -> String {
    real_model("SmolLM2-135M-Instruct.Q4_1.gguf").to_str().expect("UTF-8 path").to_string()
}

/// stdout of a successful `hearth run`; fails the test with stderr otherwise.
fn run_ok(args: &[&str]) -> String {
    let out = hearth(args);
    assert!(out.status.success(), "hearth {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

const PROMPT: &str = "Write one sentence about the sea.";

#[test]
fn greedy_runs_are_identical() {
    let m = smollm2();
    let args = ["run", &m, PROMPT, "--temperature", "0", "--max-tokens", "20"];
    let first = run_ok(&args);
    let second = run_ok(&args);
    assert!(!first.trim().is_empty(), "greedy run printed nothing");
    assert_eq!(first, second, "two greedy runs differ");
}

#[test]
fn seeded_sampling_is_reproducible() {
    let m = smollm2();
    let args = ["run", &m, PROMPT, "--seed", "7", "--temperature", "0.9", "--max-tokens", "20"];
    let first = run_ok(&args);
    let second = run_ok(&args);
    assert!(!first.trim().is_empty(), "sampled run printed nothing");
    assert_eq!(first, second, "two runs with --seed 7 differ");
}

#[test]
fn stop_text_ends_the_reply_and_is_not_printed() {
    let m = smollm2();
    let greedy = run_ok(&["run", &m, PROMPT, "--temperature", "0", "--max-tokens", "20"]);
    // A word from the middle of the greedy reply: generation must stop just before it.
    let words: Vec<&str> = greedy.split_whitespace().collect();
    assert!(words.len() >= 4, "greedy reply too short to pick a stop word: {greedy:?}");
    let stop = words[words.len() / 2];
    let cut = greedy.find(stop).expect("the word is in the reply");
    let stopped = run_ok(&["run", &m, PROMPT, "--temperature", "0", "--max-tokens", "20", "--stop", stop]);
    assert!(!stopped.contains(stop), "stop text {stop:?} was printed: {stopped:?}");
    assert_eq!(stopped.trim_end(), greedy[..cut].trim_end(), "with --stop {stop:?} the reply should end where the text appears");
}

#[test]
fn verbose_prints_ollama_style_statistics() {
    let m = smollm2();
    let out = hearth(&["run", &m, PROMPT, "--temperature", "0", "--max-tokens", "5", "--verbose"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let value = |label: &str| -> String {
        let line = stderr.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label:?} line in:\n{stderr}"));
        line[label.len()..].trim().to_string()
    };
    for label in ["total duration:", "load duration:", "prompt eval duration:", "eval duration:"] {
        let v = value(label);
        assert!(v.ends_with('s') && v.chars().next().is_some_and(|c| c.is_ascii_digit()), "{label} {v:?} is not a duration");
    }
    let count = |label: &str| -> usize {
        let v = value(label);
        v.strip_suffix(" token(s)").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{label} {v:?} is not a token count"))
    };
    assert!(count("prompt eval count:") > 5, "the chat-templated prompt has more than five tokens");
    let generated = count("eval count:");
    assert!((1..=5).contains(&generated), "eval count {generated} outside 1..=5");
    for label in ["prompt eval rate:", "eval rate:"] {
        let v = value(label);
        let rate: Option<f64> = v.strip_suffix(" tokens/s").and_then(|n| n.parse().ok());
        assert!(rate.is_some_and(|r| r >= 0.0), "{label} {v:?} is not a rate");
    }
}

#[test]
fn interactive_chat_replies_twice_and_clear_forgets() {
    let m = smollm2();
    let sampling = ["--temperature", "0", "--max-tokens", "8"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["run", &m])
        .args(sampling)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hearth run");
    child.stdin.take().expect("stdin").write_all(b"Hello\n/clear\nHi\n/bye\n").expect("write stdin");
    let out = child.wait_with_output().expect("hearth run finishes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "interactive run failed:\n{stderr}");
    assert_eq!(stderr.matches(">>> ").count(), 4, "expected four prompts (Hello, /clear, Hi, /bye):\n{stderr}");
    assert!(stderr.contains("Cleared session context"), "{stderr}");
    // After /clear the second reply must be the one a fresh conversation gets: the two replies are
    // exactly two one-shot runs.
    let hello = run_ok(&[&["run", m.as_str(), "Hello"][..], &sampling[..]].concat());
    let hi = run_ok(&[&["run", m.as_str(), "Hi"][..], &sampling[..]].concat());
    assert!(!hello.trim().is_empty() && !hi.trim().is_empty(), "empty one-shot replies");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{hello}{hi}"), "interactive replies differ from one-shot replies");
}

/// The value of a `hearth show` table row.
fn show_field<'a>(table: &'a str, field: &str) -> &'a str {
    table
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(field))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {field:?} row in:\n{table}"))
}

#[test]
fn show_describes_both_models() {
    for (file, arch, quant, ctx) in [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "llama", "Q4_1", "8192"),
        ("gemma-3-270m-q4_k_m.gguf", "gemma3", "Q4_K_M", "32768"),
    ] {
        let path = real_model(file);
        let table = run_ok(&["show", path.to_str().expect("UTF-8 path")]);
        assert_eq!(show_field(&table, "architecture"), arch, "{file}");
        assert_eq!(show_field(&table, "quantization"), quant, "{file}");
        assert_eq!(show_field(&table, "context length"), ctx, "{file}");
    }
}
