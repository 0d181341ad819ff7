//! The samplers on their cadences — live tok/s every 500 ms, running models every 1 s, memory and GPU
//! every 2 s, temperatures every 5 s — folded into one [`Snapshot`] published on a watch channel for the
//! dashboards, with generation sessions (busy → idle) and samples written to the history.

use crate::history::{History, Session};
use crate::endpoints::{self, EndpointSpec};
use crate::source::{RunningModel, ServerKind, Source};
use crate::system::{local_port, pid_listening_on, GpuStatus, Memory, SystemSampler, Temperature};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const RATE_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    pub tok_s: Duration,
    pub models: Duration,
    pub memory: Duration,
    pub gpu: Duration,
    pub temperature: Duration,
    /// How often an endpoint that is down is probed again.
    pub reprobe: Duration,
}

impl Default for Cadence {
    fn default() -> Self {
        let s = Duration::from_secs;
        Cadence { tok_s: Duration::from_millis(500), models: s(1), memory: s(2), gpu: s(2), temperature: s(5), reprobe: s(5) }
    }
}

/// Model cache figures, read from the store by the caller when there is one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheStatus {
    pub models: u64,
    pub size_bytes: u64,
    pub bytes_saved: u64,
}

pub type CacheReader = Arc<dyn Fn() -> Option<CacheStatus> + Send + Sync>;

#[derive(Clone)]
pub struct MonitorConfig {
    /// Endpoints to watch ([`endpoints::resolve`]); empty = the default ports of hearth, Ollama, llama.cpp,
    /// vLLM and the proxy.
    pub endpoints: Vec<EndpointSpec>,
    pub cadence: Cadence,
    /// Points kept in the tok/s and memory series.
    pub series_len: usize,
    pub history: Option<Arc<Mutex<History>>>,
    pub cache: Option<CacheReader>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig { endpoints: Vec::new(), cadence: Cadence::default(), series_len: 120, history: None, cache: None }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointStatus {
    pub url: String,
    /// The name given in the monitor config.
    #[serde(default)]
    pub name: Option<String>,
    pub kind: Option<ServerKind>,
    pub up: bool,
    pub error: Option<String>,
    pub models: Vec<RunningModel>,
    pub tok_s: f64,
    pub busy: bool,
    pub requests_running: Option<f64>,
    pub pid: Option<u32>,
    pub rss_bytes: Option<u64>,
    /// Average tok/s of the last finished session.
    pub last_session_tok_s: Option<f64>,
}

/// Everything the dashboards show, at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub at_ms: i64,
    /// Sum over endpoints.
    pub tok_s: f64,
    pub busy: bool,
    pub endpoints: Vec<EndpointStatus>,
    pub memory: Option<Memory>,
    pub gpus: Option<GpuStatus>,
    pub temperatures: Vec<Temperature>,
    pub cache: Option<CacheStatus>,
    /// Recent tok/s, oldest first, one point per tok/s tick.
    pub tok_series: Vec<f64>,
    /// Recent system memory used, fraction of total, one point per memory tick.
    pub memory_series: Vec<f64>,
}

impl Snapshot {
    /// The menu-bar style header: "42.3 tok/s" while generating, else "idle".
    pub fn headline(&self) -> String {
        if self.busy || self.tok_s > 0.05 { format!("{:.1} tok/s", self.tok_s) } else { "idle".to_string() }
    }
}

/// Token rate over a moving window of counter readings (2 s by default: one 500 ms poll's timing jitter
/// would swing a single-interval rate by tens of percent); a counter that goes down (server restart)
/// starts the window again.
#[derive(Debug)]
struct Rate {
    window: Duration,
    readings: VecDeque<(Instant, f64)>,
}

impl Rate {
    fn new(window: Duration) -> Self {
        Rate { window, readings: VecDeque::new() }
    }

    fn update(&mut self, now: Instant, tokens: f64) -> f64 {
        if self.readings.back().is_some_and(|&(_, prev)| tokens < prev) {
            self.readings.clear();
        }
        self.readings.push_back((now, tokens));
        while self.readings.len() > 2 && self.readings.get(1).is_some_and(|&(t, _)| now.duration_since(t) >= self.window) {
            self.readings.pop_front();
        }
        // Idle once nothing new arrived over the last two polls, not a whole window later.
        let n = self.readings.len();
        let last_step = n >= 2 && self.readings[n.saturating_sub(3)].1 < tokens;
        match (self.readings.front(), last_step) {
            (Some(&(t0, first)), true) if now > t0 => (tokens - first) / (now - t0).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// A session in progress on one endpoint.
#[derive(Debug)]
struct OpenSession {
    start_ms: i64,
    start_tokens: f64,
    start_seconds: Option<f64>,
    generating_s: f64,
    /// First and latest readings taken while a request was generating: their slope is the session's
    /// decode speed, free of the idle time at either end.
    first_generating: Option<(Instant, f64)>,
    last_generating: Option<(Instant, f64)>,
    peak_rss: Option<u64>,
    model: String,
}

struct Tracked {
    status: EndpointStatus,
    source: Option<Source>,
    /// The kind named in the config, if any: probing then skips detection.
    kind_hint: Option<ServerKind>,
    next_probe: Instant,
    rate: Rate,
    tokens: Option<f64>,
    seconds: Option<f64>,
    /// When the last good reading came back.
    read_at: Option<Instant>,
    session: Option<OpenSession>,
    /// Found on a default port rather than asked for: hidden while down.
    optional: bool,
}

impl Tracked {
    fn new(spec: EndpointSpec, now: Instant) -> Tracked {
        Tracked {
            status: EndpointStatus { url: spec.url, name: spec.name, ..Default::default() },
            source: None,
            kind_hint: spec.kind,
            next_probe: now,
            rate: Rate::new(RATE_WINDOW),
            tokens: None,
            seconds: None,
            read_at: None,
            session: None,
            optional: spec.optional,
        }
    }
}

/// Starts the samplers; the receiver always holds the latest snapshot. The task ends when every receiver
/// is dropped.
pub fn spawn(config: MonitorConfig) -> watch::Receiver<Snapshot> {
    let (tx, rx) = watch::channel(Snapshot::default());
    tokio::spawn(run(config, tx));
    rx
}

async fn run(config: MonitorConfig, tx: watch::Sender<Snapshot>) {
    let specs = if config.endpoints.is_empty() { endpoints::resolve(&[], Vec::new()) } else { config.endpoints.clone() };
    let now = Instant::now();
    let mut tracked: Vec<Tracked> = specs.into_iter().map(|spec| Tracked::new(spec, now)).collect();
    let mut system = SystemSampler::new();
    let mut snap = Snapshot::default();
    let (mut tok_series, mut mem_series) = (VecDeque::new(), VecDeque::new());
    let c = config.cadence;
    let (mut next_models, mut next_memory, mut next_gpu, mut next_temp) = (now, now, now, now);
    let mut ticker = tokio::time::interval(c.tok_s);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let read_models = due(&mut next_models, now, c.models);
        futures_util::future::join_all(tracked.iter_mut().map(|t| poll_endpoint(t, now, c.reprobe, read_models))).await;
        if due(&mut next_memory, now, c.memory) {
            let pids: Vec<u32> = tracked.iter().filter_map(|t| t.status.pid).collect();
            let memory = system.memory(&pids);
            for t in &mut tracked {
                t.status.rss_bytes = t.status.pid.and_then(|pid| memory.processes.iter().find(|p| p.pid == pid)).map(|p| p.rss_bytes);
            }
            push(&mut mem_series, memory.used_fraction(), config.series_len);
            record_samples(&config, &tracked, &memory);
            snap.memory = Some(memory);
            snap.cache = config.cache.as_ref().and_then(|read| read());
        }
        if due(&mut next_gpu, now, c.gpu) {
            snap.gpus = Some(system.gpus());
        }
        if due(&mut next_temp, now, c.temperature) {
            snap.temperatures = crate::system::temperatures();
        }
        for t in &mut tracked {
            track_session(t, &config);
        }
        snap.at_ms = crate::now_ms();
        snap.endpoints = tracked.iter().filter(|t| t.status.up || !t.optional).map(|t| t.status.clone()).collect();
        snap.tok_s = snap.endpoints.iter().map(|e| e.tok_s).sum();
        snap.busy = snap.endpoints.iter().any(|e| e.busy);
        push(&mut tok_series, snap.tok_s, config.series_len);
        snap.tok_series = tok_series.iter().copied().collect();
        snap.memory_series = mem_series.iter().copied().collect();
        if tx.send(snap.clone()).is_err() {
            return;
        }
    }
}

fn due(next: &mut Instant, now: Instant, every: Duration) -> bool {
    if now < *next {
        return false;
    }
    *next = now + every;
    true
}

fn push(series: &mut VecDeque<f64>, value: f64, cap: usize) {
    series.push_back(value);
    while series.len() > cap.max(1) {
        series.pop_front();
    }
}

async fn poll_endpoint(t: &mut Tracked, now: Instant, reprobe: Duration, read_models: bool) {
    if t.source.is_none() {
        if now < t.next_probe {
            return;
        }
        t.next_probe = now + reprobe;
        match Source::probe_as(&t.status.url, t.kind_hint).await {
            Ok(source) => {
                t.status.kind = Some(source.kind);
                t.status.pid = local_port(&source.url).and_then(pid_listening_on);
                t.source = Some(source);
            }
            Err(e) => return mark_down(t, e.to_string()),
        }
    }
    let Some(source) = &t.source else { return };
    match source.read().await {
        Ok(reading) => {
            // The answer reflects the server near its arrival; stamping the send time would add the
            // server's queueing delay to the next interval.
            let now = Instant::now();
            t.read_at = Some(now);
            t.status.up = true;
            t.status.error = None;
            if read_models || t.status.models.is_empty() {
                t.status.models = reading.models;
            }
            t.status.requests_running = reading.requests_running;
            t.status.tok_s = reading.generated_tokens.map_or(0.0, |tokens| t.rate.update(now, tokens));
            t.status.busy = reading.requests_running.is_some_and(|r| r > 0.0) || t.status.tok_s > 0.0;
            t.tokens = reading.generated_tokens;
            t.seconds = reading.generation_seconds;
        }
        Err(e) => {
            // Probe again next time: the server may have restarted as something else.
            t.source = None;
            mark_down(t, e.to_string());
        }
    }
}

fn mark_down(t: &mut Tracked, error: String) {
    let (url, name, last_session_tok_s) = (t.status.url.clone(), t.status.name.clone(), t.status.last_session_tok_s);
    t.status = EndpointStatus { url, name, error: Some(error), last_session_tok_s, ..Default::default() };
    t.rate = Rate::new(RATE_WINDOW);
    t.session = None;
}

/// Opens a session when an endpoint turns busy and records it when it turns idle.
fn track_session(t: &mut Tracked, config: &MonitorConfig) {
    let Some(tokens) = t.tokens else { return };
    match (&mut t.session, t.status.busy) {
        (None, true) => {
            // The counter before this window: the rate already includes this window's tokens.
            let window_tokens = t.status.tok_s * config.cadence.tok_s.as_secs_f64();
            t.session = Some(OpenSession {
                start_ms: crate::now_ms(),
                start_tokens: (tokens - window_tokens.round()).max(0.0),
                start_seconds: t.seconds,
                generating_s: 0.0,
                first_generating: None,
                last_generating: None,
                peak_rss: t.status.rss_bytes,
                model: t.status.models.first().map(|m| m.name.clone()).unwrap_or_default(),
            });
            if t.status.tok_s > 0.0 {
                add_generating_time(t, config);
            }
        }
        (Some(_), true) => add_generating_time(t, config),
        (Some(_), false) => close_session(t, tokens, config),
        (None, false) => {}
    }
}

fn add_generating_time(t: &mut Tracked, config: &MonitorConfig) {
    let Some(s) = &mut t.session else { return };
    if t.status.tok_s > 0.0 {
        s.generating_s += config.cadence.tok_s.as_secs_f64();
    }
    // Readings while a request still runs (or, for servers without that gauge, while tokens flow); the
    // first one once tokens flow, so prompt processing is not counted as decoding time.
    let running = t.status.requests_running.map_or(t.status.tok_s > 0.0, |r| r > 0.0);
    if let (true, Some(tokens), Some(at)) = (running, t.tokens, t.read_at) {
        if s.first_generating.is_none() && t.status.tok_s > 0.0 {
            s.first_generating = Some((at, tokens));
        }
        if s.first_generating.is_some() {
            s.last_generating = Some((at, tokens));
        }
    }
    s.peak_rss = s.peak_rss.max(t.status.rss_bytes);
}

fn close_session(t: &mut Tracked, tokens: f64, config: &MonitorConfig) {
    let Some(s) = t.session.take() else { return };
    let generated = (tokens - s.start_tokens).max(0.0);
    if generated < 1.0 {
        return;
    }
    let server_tok_s = match (s.start_seconds, t.seconds) {
        (Some(a), Some(b)) if b > a => Some(generated / (b - a)),
        _ => None,
    };
    let avg_tok_s = match (s.first_generating, s.last_generating) {
        (Some((t0, a)), Some((t1, b))) if t1 > t0 && b > a => (b - a) / (t1 - t0).as_secs_f64(),
        _ if s.generating_s > 0.0 => generated / s.generating_s,
        _ => 0.0,
    };
    t.status.last_session_tok_s = Some(server_tok_s.unwrap_or(avg_tok_s));
    let session = Session {
        id: None,
        endpoint: t.status.url.clone(),
        model: s.model,
        start_ms: s.start_ms,
        end_ms: crate::now_ms(),
        tokens: generated as u64,
        avg_tok_s,
        server_tok_s,
        peak_memory_bytes: s.peak_rss,
        source: "monitor".into(),
    };
    if let Some(h) = &config.history {
        if let Err(e) = h.lock().map_err(|_| "history lock poisoned".to_string()).and_then(|h| h.record_session(&session).map_err(|e| e.to_string())) {
            tracing::warn!("recording a session: {e}");
        }
    }
}

fn record_samples(config: &MonitorConfig, tracked: &[Tracked], memory: &Memory) {
    let Some(h) = &config.history else { return };
    let Ok(h) = h.lock() else { return };
    let now = crate::now_ms();
    let mut result = h.record_samples(now, "system", &[("memory_used_bytes", memory.used_bytes as f64)]);
    for t in tracked.iter().filter(|t| t.status.up) {
        let mut values = vec![("tok_s", t.status.tok_s)];
        if let Some(rss) = t.status.rss_bytes {
            values.push(("rss_bytes", rss as f64));
        }
        result = result.and(h.record_samples(now, &t.status.url, &values));
    }
    if let Err(e) = result {
        tracing::warn!("recording samples: {e}");
    }
}
