//! `/metrics` in the Prometheus text format, with vLLM's metric names under a `hearth:` prefix and a
//! `model_name` label: engine gauges and counters read live from each loaded engine, and request
//! latency histograms recorded here as requests finish.

use hearth_engine::{GenerationStats, MetricsSnapshot};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

pub const PREFIX: &str = "hearth:";

/// Bucket bounds in seconds (vLLM's for TTFT, reused: they span 1 ms to minutes).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0,
    640.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum HistogramKind {
    TimeToFirstToken,
    TimePerOutputToken,
    E2eLatency,
    QueueTime,
}

impl HistogramKind {
    const ALL: [Self; 4] = [Self::TimeToFirstToken, Self::TimePerOutputToken, Self::E2eLatency, Self::QueueTime];

    fn name(self) -> &'static str {
        match self {
            Self::TimeToFirstToken => "time_to_first_token_seconds",
            Self::TimePerOutputToken => "time_per_output_token_seconds",
            Self::E2eLatency => "e2e_request_latency_seconds",
            Self::QueueTime => "request_queue_time_seconds",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::TimeToFirstToken => "Time from request arrival to its first generated token.",
            Self::TimePerOutputToken => "Mean time between generated tokens of a request after the first.",
            Self::E2eLatency => "Time from request arrival to its last token.",
            Self::QueueTime => "Time a request waited before its first prefill step.",
        }
    }
}

#[derive(Debug, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new() -> Self {
        Self { counts: vec![0; LATENCY_BUCKETS.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| seconds <= b) {
            self.counts[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// Request-level measurements, by model.
#[derive(Default)]
pub struct ServerMetrics {
    histograms: Mutex<BTreeMap<(HistogramKind, String), Histogram>>,
    /// Finished requests by (model, finish reason).
    finished: Mutex<BTreeMap<(String, String), u64>>,
}

impl ServerMetrics {
    /// Record a finished request's timings.
    pub fn record(&self, model: &str, reason: &str, stats: &GenerationStats) {
        let mut h = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        let mut observe = |kind, d: Duration| {
            h.entry((kind, model.to_string())).or_insert_with(Histogram::new).observe(d.as_secs_f64());
        };
        if stats.generated_tokens > 0 {
            observe(HistogramKind::TimeToFirstToken, stats.time_to_first_token);
        }
        if stats.generated_tokens > 1 {
            observe(HistogramKind::TimePerOutputToken, stats.eval_duration / (stats.generated_tokens as u32 - 1));
        }
        observe(HistogramKind::E2eLatency, stats.total_duration);
        observe(HistogramKind::QueueTime, stats.queue_duration);
        drop(h);
        let mut f = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        *f.entry((model.to_string(), reason.to_string())).or_default() += 1;
    }

    /// The whole exposition: `engines` are the loaded models' live engine numbers.
    pub fn render(&self, engines: &[(String, MetricsSnapshot)]) -> String {
        let mut out = String::new();
        render_engine_metrics(&mut out, engines);
        let finished = self.finished.lock().unwrap_or_else(|e| e.into_inner()).clone();
        family(&mut out, "request_success_total", "counter", "Finished requests by finish reason.");
        for ((model, reason), n) in &finished {
            let _ = writeln!(out, "{PREFIX}request_success_total{{model_name=\"{}\",finished_reason=\"{}\"}} {n}", escape(model), escape(reason));
        }
        let histograms = self.histograms.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for kind in HistogramKind::ALL {
            family(&mut out, kind.name(), "histogram", kind.help());
            for ((_, model), h) in histograms.iter().filter(|((k, _), _)| *k == kind) {
                render_histogram(&mut out, kind.name(), model, h);
            }
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {PREFIX}{name} {help}\n# TYPE {PREFIX}{name} {kind}");
}

fn render_engine_metrics(out: &mut String, engines: &[(String, MetricsSnapshot)]) {
    type Field = fn(&MetricsSnapshot) -> f64;
    let rows: [(&str, &str, &str, Field); 8] = [
        ("num_requests_running", "gauge", "Requests in the running batch.", |m| m.running as f64),
        ("num_requests_waiting", "gauge", "Requests waiting to be scheduled.", |m| m.waiting as f64),
        ("kv_cache_usage_perc", "gauge", "Fraction of KV cache blocks in use (1 = full).", |m| m.kv_usage()),
        ("prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache.", |m| m.prefix_queries as f64),
        ("prefix_cache_hits_total", "counter", "Prompt tokens found in the prefix cache.", |m| m.prefix_hits as f64),
        ("prompt_tokens_total", "counter", "Prompt tokens processed.", |m| m.prompt_tokens as f64),
        ("generation_tokens_total", "counter", "Tokens generated.", |m| m.generation_tokens as f64),
        ("num_preemptions_total", "counter", "Sequences preempted (KV dropped, recomputed later).", |m| m.preemptions as f64),
    ];
    for (name, kind, help, value) in rows {
        family(out, name, kind, help);
        for (model, snapshot) in engines {
            let _ = writeln!(out, "{PREFIX}{name}{{model_name=\"{}\"}} {}", escape(model), value(snapshot));
        }
    }
}

fn render_histogram(out: &mut String, name: &str, model: &str, h: &Histogram) {
    let model = escape(model);
    let mut cumulative = 0;
    for (bound, n) in LATENCY_BUCKETS.iter().zip(&h.counts) {
        cumulative += n;
        let _ = writeln!(out, "{PREFIX}{name}_bucket{{model_name=\"{model}\",le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{PREFIX}{name}_bucket{{model_name=\"{model}\",le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{PREFIX}{name}_sum{{model_name=\"{model}\"}} {}", h.sum);
    let _ = writeln!(out, "{PREFIX}{name}_count{{model_name=\"{model}\"}} {}", h.count);
}

/// Label values escape backslash, quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let m = ServerMetrics::default();
        let stats = |ttft_ms| GenerationStats {
            generated_tokens: 3,
            time_to_first_token: Duration::from_millis(ttft_ms),
            eval_duration: Duration::from_millis(20),
            total_duration: Duration::from_millis(ttft_ms + 20),
            ..Default::default()
        };
        m.record("a\"b", "stop", &stats(3));
        m.record("a\"b", "length", &stats(300));
        let text = m.render(&[("a\"b".into(), MetricsSnapshot { blocks_used: 1, blocks_total: 4, ..Default::default() })]);
        assert!(text.contains("hearth:kv_cache_usage_perc{model_name=\"a\\\"b\"} 0.25"), "{text}");
        assert!(text.contains("hearth:time_to_first_token_seconds_bucket{model_name=\"a\\\"b\",le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("hearth:time_to_first_token_seconds_bucket{model_name=\"a\\\"b\",le=\"0.5\"} 2\n"), "{text}");
        assert!(text.contains("hearth:time_to_first_token_seconds_count{model_name=\"a\\\"b\"} 2\n"), "{text}");
        assert!(text.contains("hearth:request_success_total{model_name=\"a\\\"b\",finished_reason=\"length\"} 1\n"), "{text}");
    }
}
