//! `hearth dash`: the terminal dashboard. [`render`] is a pure function of [`DashState`] (tested on
//! ratatui's test backend); [`run`] owns the terminal, the key thread and the snapshot channel. Only
//! terminal-default colours, bold and reverse video are used, so it reads in light and dark themes.

use crate::bench::report::status_label;
use crate::bench::{self, Api, BenchConfig, BenchResult};
use crate::history::{History, ModelStats};
use crate::monitor::{self, MonitorConfig, Snapshot};
use crate::source::ServerKind;
use crate::system::GpuStatus;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline};
use ratatui::Frame;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    #[default]
    Live,
    History,
}

/// Everything on screen.
#[derive(Debug, Clone, Default)]
pub struct DashState {
    pub snapshot: Snapshot,
    pub view: View,
    /// A line for what is going on (benchmark running, its result, an error).
    pub status: String,
    pub last_bench: Option<BenchResult>,
    pub bench_running: bool,
    /// Filled when the history view is opened.
    pub recent_benchmarks: Vec<BenchResult>,
    pub model_stats: Vec<ModelStats>,
}

const GIB: f64 = (1u64 << 30) as f64;

fn mib(b: u64) -> String {
    format!("{} MiB", b >> 20)
}

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

pub fn render(frame: &mut Frame<'_>, state: &DashState) {
    let [header, body, footer] = Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)]).areas(frame.area());
    frame.render_widget(header_line(state, header.width), header);
    match state.view {
        View::Live => render_live(frame, body, state),
        View::History => render_history(frame, body, state),
    }
    frame.render_widget(Paragraph::new(state.status.as_str()), footer);
}

/// "hearth │ 42.3 tok/s │ mem 40% │ …" on the left, the keys on the right, in reverse video.
fn header_line(state: &DashState, width: u16) -> Paragraph<'static> {
    let s = &state.snapshot;
    let mut parts = vec![" hearth".to_string(), s.headline()];
    if let Some(m) = &s.memory {
        parts.push(format!("mem {:.0}%", m.used_fraction() * 100.0));
    }
    if let Some(t) = s.temperatures.iter().map(|t| t.celsius).reduce(f64::max) {
        parts.push(format!("{t:.0}°C"));
    }
    let left = parts.join(" │ ");
    let keys = "b bench  h history  q quit ";
    let pad = (width as usize).saturating_sub(left.chars().count() + keys.len());
    let line = format!("{left}{}{keys}", " ".repeat(pad));
    Paragraph::new(line).style(Style::new().add_modifier(Modifier::REVERSED))
}

fn render_live(frame: &mut Frame<'_>, area: Rect, state: &DashState) {
    let s = &state.snapshot;
    let model_rows = (s.endpoints.len().max(1) * 2) as u16 + 2;
    let [models, perf, system, charts] = Layout::vertical([Constraint::Length(model_rows), Constraint::Length(3), Constraint::Length(6), Constraint::Min(4)]).areas(area);
    frame.render_widget(Paragraph::new(endpoint_lines(s)).block(Block::new().borders(Borders::ALL).title(" Models ")), models);
    frame.render_widget(Paragraph::new(performance_line(state)).block(Block::new().borders(Borders::ALL).title(" Performance ")), perf);
    frame.render_widget(Paragraph::new(system_lines(s)).block(Block::new().borders(Borders::ALL).title(" System ")), system);
    let [tok, mem] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);
    let peak = s.tok_series.iter().copied().fold(0.0, f64::max);
    let tok_data: Vec<u64> = s.tok_series.iter().map(|v| (v * 10.0).round() as u64).collect();
    let mem_data: Vec<u64> = s.memory_series.iter().map(|v| (v * 1000.0).round() as u64).collect();
    let tail = |d: &[u64], w: u16| d[d.len().saturating_sub(w.saturating_sub(2) as usize)..].to_vec();
    frame.render_widget(
        Sparkline::default().block(Block::new().borders(Borders::ALL).title(format!(" tok/s (peak {peak:.1}) "))).data(tail(&tok_data, tok.width)).style(Style::new().fg(Color::Cyan)),
        tok,
    );
    frame.render_widget(
        Sparkline::default().block(Block::new().borders(Borders::ALL).title(" memory used ")).data(tail(&mem_data, mem.width)).max(1000).style(Style::new().fg(Color::Magenta)),
        mem,
    );
}

fn endpoint_lines(s: &Snapshot) -> Vec<Line<'static>> {
    if s.endpoints.is_empty() {
        return vec![Line::from("no server found (hearth :8337, Ollama :11434, llama.cpp :8080, vLLM :8000); pass --endpoint URL")];
    }
    let mut lines = Vec::new();
    for e in &s.endpoints {
        let (dot, color) = if e.up { ("●", Color::Green) } else { ("○", Color::Red) };
        let kind = e.kind.map_or("?", ServerKind::label);
        let mut head = vec![Span::styled(format!("{dot} "), Style::new().fg(color)), Span::styled(format!("{kind:<10}"), bold())];
        if let Some(name) = &e.name {
            head.push(Span::styled(format!(" {name}"), bold()));
        }
        head.push(Span::raw(format!(" {}", e.url)));
        if e.up {
            let activity = if e.busy { format!("  {:.1} tok/s", e.tok_s) } else { "  idle".to_string() };
            head.push(Span::styled(activity, bold()));
            if let Some(r) = e.requests_running {
                head.push(Span::raw(format!("  running {r:.0}")));
            }
        }
        lines.push(Line::from(head));
        let detail = if let Some(err) = &e.error {
            format!("  down: {err}")
        } else {
            let models: Vec<String> = e.models.iter().map(|m| match m.size_bytes { Some(b) => format!("{} ({})", m.name, mib(b)), None => m.name.clone() }).collect();
            let rss = e.rss_bytes.map_or(String::new(), |b| format!("  process RSS {}", mib(b)));
            format!("  {}{rss}", if models.is_empty() { "no model loaded".to_string() } else { models.join(", ") })
        };
        lines.push(Line::from(detail));
    }
    lines
}

fn performance_line(state: &DashState) -> Line<'static> {
    let s = &state.snapshot;
    let mut text = format!("now {}", s.headline());
    if let Some(t) = s.endpoints.iter().find_map(|e| e.last_session_tok_s) {
        text.push_str(&format!("   last session {t:.1} tok/s"));
    }
    match (&state.last_bench, state.bench_running) {
        (_, true) => text.push_str("   benchmark running…"),
        (Some(b), false) => text.push_str(&format!("   last bench #{} {:.1} tok/s, e2e p50 {:.0} ms ({})", b.id.unwrap_or(0), b.output_tok_s, b.e2e_ms.p50, status_label(b.status))),
        (None, false) => {}
    }
    Line::from(text)
}

fn system_lines(s: &Snapshot) -> Vec<Line<'static>> {
    let memory = match &s.memory {
        Some(m) => format!("memory  {:.1} / {:.1} GiB ({:.0}%)", m.used_bytes as f64 / GIB, m.total_bytes as f64 / GIB, m.used_fraction() * 100.0),
        None => "memory  …".to_string(),
    };
    let gpu = match &s.gpus {
        Some(GpuStatus::Gpus(gpus)) => gpus
            .iter()
            .map(|g| {
                let util = g.utilization_percent.map_or("?".into(), |u| format!("{u}%"));
                let mem = match (g.memory_used_bytes, g.memory_total_bytes) {
                    (Some(u), Some(t)) => format!(" {:.1}/{:.1} GiB", u as f64 / GIB, t as f64 / GIB),
                    _ => String::new(),
                };
                let power = g.power_watts.map_or(String::new(), |w| format!(" {w:.0} W"));
                let temp = g.temperature_c.map_or(String::new(), |t| format!(" {t}°C"));
                format!("{} {util}{mem}{power}{temp}", g.name)
            })
            .collect::<Vec<_>>()
            .join("; "),
        Some(GpuStatus::NoGpu(why)) => why.clone(),
        None => "…".to_string(),
    };
    let temps = if s.temperatures.is_empty() { "no sensors".to_string() } else { s.temperatures.iter().take(3).map(|t| format!("{} {:.0}°C", t.label, t.celsius)).collect::<Vec<_>>().join(", ") };
    let cache = match &s.cache {
        Some(c) => format!("{} models, {:.2} GiB, {} saved", c.models, c.size_bytes as f64 / GIB, mib(c.bytes_saved)),
        None => "no model store found".to_string(),
    };
    vec![Line::from(memory), Line::from(format!("GPU     {gpu}")), Line::from(format!("temp    {temps}")), Line::from(format!("cache   {cache}"))]
}

fn render_history(frame: &mut Frame<'_>, area: Rect, state: &DashState) {
    let [benches, models] = Layout::vertical([Constraint::Min(4), Constraint::Length(state.model_stats.len() as u16 + 3)]).areas(area);
    let mut lines = vec![Line::styled(format!("{:>4}  {:<20} {:<9} {:>8} {:>10} {:>7}", "id", "model", "status", "tok/s", "e2e p50", "reqs"), bold())];
    for b in &state.recent_benchmarks {
        lines.push(Line::from(format!("{:>4}  {:<20.20} {:<9} {:>8.1} {:>7.0} ms {:>3}/{:<3}", b.id.unwrap_or(0), b.model, status_label(b.status), b.output_tok_s, b.e2e_ms.p50, b.completed, b.requests)));
    }
    if state.recent_benchmarks.is_empty() {
        lines.push(Line::from("no benchmarks yet: press b to run the standard suite"));
    }
    frame.render_widget(Paragraph::new(lines).block(Block::new().borders(Borders::ALL).title(" Benchmarks (h: back) ")), benches);
    let mut lines = vec![Line::styled(format!("{:<24} {:>8} {:>10} {:>8} {:>10}", "model", "sessions", "tokens", "tok/s", "peak"), bold())];
    for m in &state.model_stats {
        lines.push(Line::from(format!("{:<24.24} {:>8} {:>10} {:>8.1} {:>10}", m.model, m.sessions, m.tokens, m.avg_tok_s, m.peak_memory_bytes.map_or("unknown".into(), mib))));
    }
    frame.render_widget(Paragraph::new(lines).block(Block::new().borders(Borders::ALL).title(" Per model ")), models);
}

/// The benchmark the `b` key runs: the standard suite against the first endpoint that is up with a model.
pub fn standard_bench_for(s: &Snapshot) -> Option<BenchConfig> {
    let e = s.endpoints.iter().find(|e| e.up && !e.models.is_empty())?;
    let api = if matches!(e.kind, Some(ServerKind::Ollama | ServerKind::Proxy)) { Api::Ollama } else { Api::OpenAi };
    Some(BenchConfig {
        endpoint: e.url.clone(),
        api,
        model: e.models[0].name.clone(),
        prompts_label: "standard".into(),
        prompts: bench::prompts::standard(),
        concurrency: 1,
        requests: None,
        max_tokens: 128,
        request_timeout: Duration::from_secs(300),
    })
}

enum Event {
    Key(char),
    Bench(Box<Result<BenchResult, String>>),
}

/// Runs the dashboard until `q` (or Esc in the live view, or Ctrl-C).
pub async fn run(config: MonitorConfig) -> crate::Result<()> {
    let history = config.history.clone();
    let mut snapshots = monitor::spawn(config);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    spawn_key_thread(tx.clone());
    let mut terminal = ratatui::init();
    let mut state = DashState { status: "starting…".into(), ..DashState::default() };
    let result = loop {
        if let Err(e) = terminal.draw(|f| render(f, &state)) {
            break Err(crate::MonitorError::Io { path: "<terminal>".into(), source: e });
        }
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() { break Ok(()); }
                state.snapshot = snapshots.borrow_and_update().clone();
                if state.status == "starting…" { state.status.clear(); }
            }
            event = rx.recv() => match event {
                None | Some(Event::Key('q')) => break Ok(()),
                Some(Event::Key(key)) => on_key(key, &mut state, &history, &tx),
                Some(Event::Bench(result)) => on_bench_done(*result, &mut state, &history),
            },
        }
    };
    ratatui::restore();
    result
}

fn spawn_key_thread(tx: tokio::sync::mpsc::UnboundedSender<Event>) {
    use ratatui::crossterm::event::{self, KeyCode, KeyEventKind, KeyModifiers};
    std::thread::spawn(move || loop {
        let Ok(ev) = event::read() else { return };
        let event::Event::Key(k) = ev else { continue };
        if k.kind != KeyEventKind::Press {
            continue;
        }
        let key = match k.code {
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => 'q',
            KeyCode::Char(c) => c.to_ascii_lowercase(),
            KeyCode::Esc => '\u{1b}',
            _ => continue,
        };
        if tx.send(Event::Key(key)).is_err() {
            return;
        }
    });
}

fn on_key(key: char, state: &mut DashState, history: &Option<Arc<Mutex<History>>>, tx: &tokio::sync::mpsc::UnboundedSender<Event>) {
    match key {
        'h' | '\u{1b}' if state.view == View::History => state.view = View::Live,
        'h' => {
            load_history(state, history);
            state.view = View::History;
        }
        'b' if !state.bench_running => match standard_bench_for(&state.snapshot) {
            Some(config) => {
                state.bench_running = true;
                state.status = format!("running the standard benchmark on {} ({})…", config.model, config.endpoint);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = bench::run(&config, std::future::pending()).await.map_err(|e| e.to_string());
                    let _ = tx.send(Event::Bench(Box::new(result)));
                });
            }
            None => state.status = "no endpoint with a model is up: nothing to benchmark".into(),
        },
        _ => {}
    }
}

fn load_history(state: &mut DashState, history: &Option<Arc<Mutex<History>>>) {
    let Some(h) = history.as_ref().and_then(|h| h.lock().ok()) else {
        state.status = "no history database".into();
        return;
    };
    match (h.benchmarks(20), h.model_stats()) {
        (Ok(b), Ok(m)) => (state.recent_benchmarks, state.model_stats) = (b, m),
        (Err(e), _) | (_, Err(e)) => state.status = format!("history: {e}"),
    }
}

fn on_bench_done(result: Result<BenchResult, String>, state: &mut DashState, history: &Option<Arc<Mutex<History>>>) {
    state.bench_running = false;
    match result {
        Ok(mut r) => {
            if let Some(h) = history.as_ref().and_then(|h| h.lock().ok()) {
                match h.save_benchmark(&r) {
                    Ok(id) => r.id = Some(id),
                    Err(e) => state.status = format!("saving the benchmark: {e}"),
                }
            }
            state.status = format!("benchmark #{} {}: {:.1} tok/s, e2e p50 {:.0} ms", r.id.unwrap_or(0), status_label(r.status), r.output_tok_s, r.e2e_ms.p50);
            state.last_bench = Some(r);
        }
        Err(e) => state.status = format!("benchmark failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::EndpointStatus;
    use crate::source::RunningModel;
    use crate::system::{Memory, ProcessMemory, Temperature};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn busy_snapshot() -> Snapshot {
        Snapshot {
            at_ms: 0,
            tok_s: 42.3,
            busy: true,
            endpoints: vec![
                EndpointStatus {
                    url: "http://127.0.0.1:8080".into(),
                    name: None,
                    kind: Some(ServerKind::LlamaCpp),
                    up: true,
                    models: vec![RunningModel { name: "smollm2".into(), size_bytes: None, vram_bytes: None }],
                    tok_s: 42.3,
                    busy: true,
                    requests_running: Some(1.0),
                    pid: Some(4242),
                    rss_bytes: Some(150 << 20),
                    last_session_tok_s: Some(40.1),
                    error: None,
                },
                EndpointStatus { url: "http://127.0.0.1:11434".into(), error: Some("cannot reach http://127.0.0.1:11434: Connection refused".into()), ..Default::default() },
            ],
            memory: Some(Memory { used_bytes: 3 << 30, total_bytes: 8 << 30, processes: vec![ProcessMemory { pid: 4242, name: "llama-server".into(), rss_bytes: 150 << 20 }] }),
            gpus: Some(GpuStatus::NoGpu("no GPU (NVML: a libloading error occurred)".into())),
            temperatures: vec![Temperature { label: "k10temp Tctl".into(), celsius: 54.1 }],
            cache: Some(crate::monitor::CacheStatus { models: 3, size_bytes: 1 << 30, bytes_saved: 300 << 20 }),
            tok_series: vec![0.0, 10.0, 40.0, 42.0, 43.0, 42.3],
            memory_series: vec![0.3, 0.35, 0.37, 0.375],
        }
    }

    fn draw(state: &DashState, w: u16, h: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| render(f, state)).unwrap();
        terminal
    }

    #[test]
    fn live_view_while_generating() {
        let state = DashState { snapshot: busy_snapshot(), ..DashState::default() };
        insta::assert_snapshot!(draw(&state, 100, 28).backend());
    }

    #[test]
    fn idle_header_and_no_servers() {
        let state = DashState { snapshot: Snapshot::default(), status: "starting…".into(), ..DashState::default() };
        let t = draw(&state, 100, 24);
        insta::assert_snapshot!(t.backend());
        let header: String = (0..100).map(|x| t.backend().buffer()[(x, 0)].symbol().to_string()).collect();
        assert!(header.starts_with(" hearth │ idle"), "{header}");
        assert!(t.backend().buffer()[(1, 0)].modifier.contains(Modifier::REVERSED));
    }

    #[test]
    fn history_view_lists_benchmarks_and_models() {
        let bench = BenchResult {
            id: Some(7),
            created_ms: 0,
            endpoint: "http://127.0.0.1:8080".into(),
            api: Api::OpenAi,
            model: "smollm2".into(),
            prompts: "standard".into(),
            prompt_count: 10,
            concurrency: 1,
            max_tokens: 128,
            status: crate::bench::RunStatus::Complete,
            note: None,
            duration_s: 12.0,
            requests: 10,
            completed: 10,
            failed: 0,
            output_tokens: 1000,
            output_tok_s: 83.3,
            request_throughput: 0.83,
            avg_tok_s: 88.0,
            server_tok_s: Some(89.0),
            ttft_ms: Default::default(),
            tpot_ms: Default::default(),
            itl_ms: Default::default(),
            e2e_ms: crate::bench::stats::Summary { n: 10, mean: 1200.0, std: 10.0, p50: 1180.0, p95: 1300.0, p99: 1310.0 },
            peak_memory_bytes: Some(160 << 20),
            per_request: vec![],
        };
        // A model seen only through a proxy whose upstream process is unknown has no peak memory.
        let stats = vec![
            ModelStats { model: "smollm2".into(), sessions: 4, tokens: 1234, avg_tok_s: 87.5, peak_memory_bytes: Some(160 << 20) },
            ModelStats { model: "remote:7b".into(), sessions: 1, tokens: 40, avg_tok_s: 20.0, peak_memory_bytes: None },
        ];
        let state = DashState { view: View::History, recent_benchmarks: vec![bench], model_stats: stats, ..DashState::default() };
        insta::assert_snapshot!(draw(&state, 90, 16).backend());
    }

    #[test]
    fn the_b_key_targets_the_first_endpoint_with_a_model() {
        let c = standard_bench_for(&busy_snapshot()).unwrap();
        assert_eq!((c.endpoint.as_str(), c.api, c.model.as_str(), c.prompts.len()), ("http://127.0.0.1:8080", Api::OpenAi, "smollm2", 10));
        assert!(standard_bench_for(&Snapshot::default()).is_none());
    }
}
