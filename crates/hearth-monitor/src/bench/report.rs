//! Benchmark results as a table, JSON or CSV, the history list, and comparisons of two runs with their
//! noise (the relative standard error of each mean, combined).

use super::stats::Summary;
use super::{BenchResult, RunStatus};
use crate::{MonitorError, Result};
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

impl std::str::FromStr for Format {
    type Err = MonitorError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            other => Err(MonitorError::Invalid { field: "--format", reason: format!("{other:?} (expected table, json or csv)") }),
        }
    }
}

pub fn status_label(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Complete => "complete",
        RunStatus::Partial => "PARTIAL",
        RunStatus::Failed => "FAILED",
    }
}

/// One run in full.
pub fn show(r: &BenchResult, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(r).unwrap_or_default(),
        Format::Csv => csv(std::slice::from_ref(r)),
        Format::Table => table(r),
    }
}

fn table(r: &BenchResult) -> String {
    let mut s = String::new();
    let id = r.id.map_or("unsaved".to_string(), |i| format!("#{i}"));
    let _ = writeln!(s, "benchmark {id}: {} ({}) model {} — {}", r.endpoint, api_label(r), r.model, status_label(r.status));
    if let Some(note) = &r.note {
        let _ = writeln!(s, "note: {note}");
    }
    let _ = writeln!(s, "prompts {} ({}), concurrency {}, max tokens {}", r.prompts, r.prompt_count, r.concurrency, r.max_tokens);
    let _ = writeln!(s, "requests: {} completed, {} failed of {} in {:.2} s", r.completed, r.failed, r.requests, r.duration_s);
    let _ = writeln!(s, "output: {} tokens, {:.2} tok/s; {:.3} req/s; per-request decode {:.2} tok/s", r.output_tokens, r.output_tok_s, r.request_throughput, r.avg_tok_s);
    if let Some(t) = r.server_tok_s {
        let _ = writeln!(s, "server-reported decode: {t:.2} tok/s");
    }
    if let Some(p) = r.peak_memory_bytes {
        let _ = writeln!(s, "server peak RSS: {} MiB", p >> 20);
    }
    let _ = writeln!(s, "| metric (ms) |     mean |      p50 |      p95 |      p99 |     n |");
    let _ = writeln!(s, "|-------------|----------|----------|----------|----------|-------|");
    for (name, m) in [("TTFT", &r.ttft_ms), ("TPOT", &r.tpot_ms), ("ITL", &r.itl_ms), ("E2E", &r.e2e_ms)] {
        let _ = writeln!(s, "| {name:<11} | {:8.2} | {:8.2} | {:8.2} | {:8.2} | {:5} |", m.mean, m.p50, m.p95, m.p99, m.n);
    }
    for failed in r.per_request.iter().filter(|q| !q.ok) {
        let _ = writeln!(s, "failed {}: {} ({} tokens before it)", failed.prompt, failed.error.as_deref().unwrap_or("?"), failed.output_tokens);
    }
    s
}

fn api_label(r: &BenchResult) -> &'static str {
    match r.api {
        super::Api::OpenAi => "openai",
        super::Api::Ollama => "ollama",
    }
}

const CSV_HEADER: &str = "id,created_ms,endpoint,api,model,prompts,concurrency,max_tokens,status,requests,completed,failed,duration_s,output_tokens,output_tok_s,request_throughput,avg_tok_s,server_tok_s,ttft_mean_ms,ttft_p50_ms,ttft_p95_ms,ttft_p99_ms,tpot_mean_ms,tpot_p50_ms,itl_p50_ms,itl_p99_ms,e2e_mean_ms,e2e_p50_ms,e2e_p95_ms,e2e_p99_ms,peak_memory_bytes,note";

/// One CSV row per run (summary columns; per-request detail is in the JSON).
pub fn csv(runs: &[BenchResult]) -> String {
    let mut s = format!("{CSV_HEADER}\n");
    for r in runs {
        let opt = |v: Option<String>| v.unwrap_or_default();
        let fields = [
            opt(r.id.map(|i| i.to_string())),
            r.created_ms.to_string(),
            csv_field(&r.endpoint),
            api_label(r).to_string(),
            csv_field(&r.model),
            csv_field(&r.prompts),
            r.concurrency.to_string(),
            r.max_tokens.to_string(),
            status_label(r.status).to_lowercase(),
            r.requests.to_string(),
            r.completed.to_string(),
            r.failed.to_string(),
            format!("{:.4}", r.duration_s),
            r.output_tokens.to_string(),
            format!("{:.4}", r.output_tok_s),
            format!("{:.4}", r.request_throughput),
            format!("{:.4}", r.avg_tok_s),
            opt(r.server_tok_s.map(|v| format!("{v:.4}"))),
            format!("{:.4}", r.ttft_ms.mean),
            format!("{:.4}", r.ttft_ms.p50),
            format!("{:.4}", r.ttft_ms.p95),
            format!("{:.4}", r.ttft_ms.p99),
            format!("{:.4}", r.tpot_ms.mean),
            format!("{:.4}", r.tpot_ms.p50),
            format!("{:.4}", r.itl_ms.p50),
            format!("{:.4}", r.itl_ms.p99),
            format!("{:.4}", r.e2e_ms.mean),
            format!("{:.4}", r.e2e_ms.p50),
            format!("{:.4}", r.e2e_ms.p95),
            format!("{:.4}", r.e2e_ms.p99),
            opt(r.peak_memory_bytes.map(|v| v.to_string())),
            csv_field(r.note.as_deref().unwrap_or("")),
        ];
        s.push_str(&fields.join(","));
        s.push('\n');
    }
    s
}

/// Quotes a CSV field when it holds a comma, quote or newline (RFC 4180).
pub fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_string() }
}

/// The history list.
pub fn list(runs: &[BenchResult], format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(runs).unwrap_or_default(),
        Format::Csv => csv(runs),
        Format::Table => {
            let mut s = "|   id | when (UTC ms)   | model                | endpoint                       | status   | tok/s   | e2e p50 ms | reqs  |\n".to_string();
            s.push_str("|------|-----------------|----------------------|--------------------------------|----------|---------|------------|-------|\n");
            for r in runs {
                let _ = writeln!(s, "| {:>4} | {:<15} | {:<20.20} | {:<30.30} | {:<8} | {:7.2} | {:10.1} | {:>2}/{:<2} |", r.id.unwrap_or(0), r.created_ms, r.model, r.endpoint, status_label(r.status), r.output_tok_s, r.e2e_ms.p50, r.completed, r.requests);
            }
            s
        }
    }
}

/// One metric of a comparison: B / A and that ratio's relative noise.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Ratio {
    pub metric: &'static str,
    pub a: f64,
    pub b: f64,
    pub ratio: f64,
    /// Relative standard error of the ratio (0 when a metric has no spread, e.g. one sample).
    pub noise: f64,
    /// |ratio − 1| is under twice the noise: no difference can be claimed.
    pub within_noise: bool,
}

fn ratio(metric: &'static str, a: &Summary, b: &Summary) -> Ratio {
    let r = if a.mean == 0.0 { f64::NAN } else { b.mean / a.mean };
    let noise = (a.relative_standard_error().powi(2) + b.relative_standard_error().powi(2)).sqrt();
    Ratio { metric, a: a.mean, b: b.mean, ratio: r, noise, within_noise: (r - 1.0).abs() <= 2.0 * noise }
}

/// B relative to A for decode speed and latencies (means), with noise.
pub fn compare(a: &BenchResult, b: &BenchResult) -> Vec<Ratio> {
    let decode = |r: &BenchResult| Summary::of(&r.per_request.iter().filter(|q| q.ok).filter_map(|q| q.tpot_ms()).map(|t| 1000.0 / t).collect::<Vec<_>>());
    let mut out = vec![ratio("decode tok/s", &decode(a), &decode(b))];
    let throughput = |r: &BenchResult| Summary { n: 1, mean: r.output_tok_s, ..Summary::default() };
    out.push(ratio("output tok/s", &throughput(a), &throughput(b)));
    for (name, fa, fb) in [("TTFT ms", &a.ttft_ms, &b.ttft_ms), ("TPOT ms", &a.tpot_ms, &b.tpot_ms), ("ITL ms", &a.itl_ms, &b.itl_ms), ("E2E ms", &a.e2e_ms, &b.e2e_ms)] {
        out.push(ratio(name, fa, fb));
    }
    out
}

pub fn comparison(a: &BenchResult, b: &BenchResult, format: Format) -> String {
    let rows = compare(a, b);
    match format {
        Format::Json => serde_json::to_string_pretty(&serde_json::json!({"a": a.id, "b": b.id, "ratios": rows})).unwrap_or_default(),
        Format::Csv => {
            let mut s = "metric,a,b,ratio,noise,within_noise\n".to_string();
            for r in &rows {
                let _ = writeln!(s, "{},{:.4},{:.4},{:.4},{:.4},{}", csv_field(r.metric), r.a, r.b, r.ratio, r.noise, r.within_noise);
            }
            s
        }
        Format::Table => {
            let mut s = format!("B = #{} ({}) vs A = #{} ({})\n", b.id.unwrap_or(0), b.model, a.id.unwrap_or(0), a.model);
            s.push_str("| metric       |        A |        B |  B/A  | noise  |\n|--------------|----------|----------|-------|--------|\n");
            for r in &rows {
                let flag = if r.within_noise { " (within noise)" } else { "" };
                let _ = writeln!(s, "| {:<12} | {:8.2} | {:8.2} | {:5.2}× | ±{:4.1}% |{flag}", r.metric, r.a, r.b, r.ratio, r.noise * 100.0);
            }
            s
        }
    }
}
