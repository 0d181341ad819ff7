//! The monitor's history in SQLite (WAL): generation sessions, benchmark runs and sampled values, with
//! retention (30 days by default) and downsampling of old samples to one-minute means, per-model
//! statistics, and export/import as JSON (round-trips) or CSV.
//!
//! Retention applies to sessions and samples; benchmark runs are kept until deleted, since they are
//! referred to by id (`hearth bench show ID`).

use crate::bench::report::csv_field;
use crate::bench::BenchResult;
use crate::{MonitorError, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    avg_tok_s REAL NOT NULL,
    server_tok_s REAL,
    peak_memory_bytes INTEGER,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_start ON sessions(start_ms);
CREATE TABLE IF NOT EXISTS benchmarks (
    id INTEGER PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    prompt_count INTEGER NOT NULL,
    avg_tok_s REAL NOT NULL,
    output_tok_s REAL NOT NULL,
    e2e_p50_ms REAL NOT NULL,
    e2e_p95_ms REAL NOT NULL,
    peak_memory_bytes INTEGER,
    result_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    ts_ms INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    -- 0 for raw samples, else the width of the bucket this mean stands for
    bucket_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS samples_ts ON samples(metric, ts_ms);
";

/// One generation session: from a server turning busy to it turning idle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: Option<i64>,
    pub endpoint: String,
    pub model: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub tokens: u64,
    pub avg_tok_s: f64,
    /// The server's own figure where it reports one (llama.cpp counters, Ollama `eval_*`).
    pub server_tok_s: Option<f64>,
    pub peak_memory_bytes: Option<u64>,
    /// `monitor` or `proxy`.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplePoint {
    pub ts_ms: i64,
    pub endpoint: String,
    pub metric: String,
    pub value: f64,
    pub bucket_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelStats {
    pub model: String,
    pub sessions: u64,
    pub tokens: u64,
    /// Token-weighted mean tok/s.
    pub avg_tok_s: f64,
    pub peak_memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    pub keep_days: u32,
    /// Raw samples younger than this stay; older ones become one-minute means.
    pub raw_hours: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { keep_days: 30, raw_hours: 24 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PruneReport {
    pub sessions_deleted: usize,
    pub samples_deleted: usize,
    pub samples_downsampled: usize,
}

/// Everything in the history, as exported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Export {
    pub sessions: Vec<Session>,
    pub benchmarks: Vec<BenchResult>,
    pub samples: Vec<SamplePoint>,
}

pub struct History {
    conn: Connection,
    path: PathBuf,
}

const DAY_MS: i64 = 24 * 3600 * 1000;
const MINUTE_MS: i64 = 60_000;

impl History {
    /// Opens (creating directories, file and tables as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<History> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| MonitorError::Io { path: dir.to_path_buf(), source })?;
        }
        let conn = Connection::open(path).map_err(|source| MonitorError::History { path: path.to_path_buf(), source })?;
        let history = History { conn, path: path.to_path_buf() };
        history.conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| history.err(e))?;
        history.conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| history.err(e))?;
        history.conn.execute_batch(SCHEMA).map_err(|e| history.err(e))?;
        Ok(history)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> MonitorError {
        MonitorError::History { path: self.path.clone(), source }
    }

    fn data_err(&self, reason: String) -> MonitorError {
        MonitorError::HistoryData { path: self.path.clone(), reason }
    }

    pub fn record_session(&self, s: &Session) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO sessions (id, endpoint, model, start_ms, end_ms, tokens, avg_tok_s, server_tok_s, peak_memory_bytes, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![s.id, s.endpoint, s.model, s.start_ms, s.end_ms, s.tokens as i64, s.avg_tok_s, s.server_tok_s, s.peak_memory_bytes.map(|b| b as i64), s.source],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn record_samples(&self, ts_ms: i64, endpoint: &str, values: &[(&str, f64)]) -> Result<()> {
        let mut stmt = self.conn.prepare_cached("INSERT INTO samples (ts_ms, endpoint, metric, value, bucket_ms) VALUES (?1, ?2, ?3, ?4, 0)").map_err(|e| self.err(e))?;
        for (metric, value) in values.iter().filter(|(_, v)| v.is_finite()) {
            stmt.execute(params![ts_ms, endpoint, metric, value]).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn insert_sample(&self, p: &SamplePoint) -> Result<()> {
        self.conn
            .execute("INSERT INTO samples (ts_ms, endpoint, metric, value, bucket_ms) VALUES (?1, ?2, ?3, ?4, ?5)", params![p.ts_ms, p.endpoint, p.metric, p.value, p.bucket_ms])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Saves a benchmark run; returns its id (the one it carries, if any, is kept on import).
    pub fn save_benchmark(&self, r: &BenchResult) -> Result<i64> {
        let json = serde_json::to_string(r).map_err(|e| self.data_err(e.to_string()))?;
        self.conn
            .execute(
                "INSERT INTO benchmarks (id, created_ms, endpoint, model, status, prompt_count, avg_tok_s, output_tok_s, e2e_p50_ms, e2e_p95_ms, peak_memory_bytes, result_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![r.id, r.created_ms, r.endpoint, r.model, crate::bench::report::status_label(r.status), r.prompt_count as i64, r.avg_tok_s, r.output_tok_s, r.e2e_ms.p50, r.e2e_ms.p95, r.peak_memory_bytes.map(|b| b as i64), json],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The newest `limit` runs, newest first.
    pub fn benchmarks(&self, limit: usize) -> Result<Vec<BenchResult>> {
        let mut stmt = self.conn.prepare("SELECT id, result_json FROM benchmarks ORDER BY id DESC LIMIT ?1").map_err(|e| self.err(e))?;
        let rows = stmt.query_map([limit as i64], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))).map_err(|e| self.err(e))?;
        rows.map(|row| row.map_err(|e| self.err(e)).and_then(|(id, json)| self.decode_benchmark(id, &json))).collect()
    }

    pub fn benchmark(&self, id: i64) -> Result<Option<BenchResult>> {
        let json: Option<String> = self.conn.query_row("SELECT result_json FROM benchmarks WHERE id = ?1", [id], |r| r.get(0)).optional().map_err(|e| self.err(e))?;
        json.map(|j| self.decode_benchmark(id, &j)).transpose()
    }

    fn decode_benchmark(&self, id: i64, json: &str) -> Result<BenchResult> {
        let mut r: BenchResult = serde_json::from_str(json).map_err(|e| self.data_err(format!("benchmark #{id}: {e}")))?;
        r.id = Some(id);
        Ok(r)
    }

    pub fn sessions(&self, since_ms: i64) -> Result<Vec<Session>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, endpoint, model, start_ms, end_ms, tokens, avg_tok_s, server_tok_s, peak_memory_bytes, source FROM sessions WHERE start_ms >= ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([since_ms], |r| {
                Ok(Session {
                    id: r.get(0)?,
                    endpoint: r.get(1)?,
                    model: r.get(2)?,
                    start_ms: r.get(3)?,
                    end_ms: r.get(4)?,
                    tokens: r.get::<_, i64>(5)? as u64,
                    avg_tok_s: r.get(6)?,
                    server_tok_s: r.get(7)?,
                    peak_memory_bytes: r.get::<_, Option<i64>>(8)?.map(|b| b as u64),
                    source: r.get(9)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// Samples since `since_ms`, oldest first; all metrics when `metric` is None.
    pub fn samples(&self, metric: Option<&str>, since_ms: i64) -> Result<Vec<SamplePoint>> {
        let mut stmt = self
            .conn
            .prepare("SELECT ts_ms, endpoint, metric, value, bucket_ms FROM samples WHERE ts_ms >= ?1 AND (?2 IS NULL OR metric = ?2) ORDER BY ts_ms, metric, endpoint")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![since_ms, metric], |r| Ok(SamplePoint { ts_ms: r.get(0)?, endpoint: r.get(1)?, metric: r.get(2)?, value: r.get(3)?, bucket_ms: r.get(4)? }))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// One metric over `[since_ms, until_ms]` for a chart: at each sampling tick the total over endpoints
    /// (tok/s of every server; memory has the one `system` row), averaged over the ticks of each of at
    /// most `max_points` equal buckets, oldest first, as (first tick of the bucket, value).
    pub fn series(&self, metric: &str, since_ms: i64, until_ms: i64, max_points: usize) -> Result<Vec<(i64, f64)>> {
        let step = ((until_ms - since_ms) / max_points.max(1) as i64).max(1);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT MIN(ts_ms), SUM(value) / COUNT(DISTINCT ts_ms) FROM samples
                 WHERE metric = ?1 AND ts_ms >= ?2 AND ts_ms <= ?3 GROUP BY (ts_ms - ?2) / ?4 ORDER BY 1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map(params![metric, since_ms, until_ms, step], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    pub fn model_stats(&self) -> Result<Vec<ModelStats>> {
        let mut stmt = self
            .conn
            .prepare("SELECT model, COUNT(*), SUM(tokens), SUM(avg_tok_s * tokens) / MAX(SUM(tokens), 1), MAX(peak_memory_bytes) FROM sessions GROUP BY model ORDER BY SUM(tokens) DESC")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ModelStats {
                    model: r.get(0)?,
                    sessions: r.get::<_, i64>(1)? as u64,
                    tokens: r.get::<_, i64>(2)? as u64,
                    avg_tok_s: r.get(3)?,
                    peak_memory_bytes: r.get::<_, Option<i64>>(4)?.map(|b| b as u64),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// Deletes sessions and samples older than the retention, and turns raw samples older than
    /// `raw_hours` into one-minute means (per endpoint and metric), in one transaction.
    pub fn prune(&mut self, now_ms: i64, retention: Retention) -> Result<PruneReport> {
        let cutoff = now_ms - i64::from(retention.keep_days) * DAY_MS;
        let raw_cutoff = now_ms - i64::from(retention.raw_hours) * 3600 * 1000;
        let path = self.path.clone();
        let err = |source| MonitorError::History { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(err)?;
        let sessions_deleted = tx.execute("DELETE FROM sessions WHERE end_ms < ?1", [cutoff]).map_err(err)?;
        let samples_deleted = tx.execute("DELETE FROM samples WHERE ts_ms < ?1", [cutoff]).map_err(err)?;
        tx.execute(
            "INSERT INTO samples (ts_ms, endpoint, metric, value, bucket_ms)
             SELECT (ts_ms / ?2) * ?2, endpoint, metric, AVG(value), ?2 FROM samples
             WHERE bucket_ms = 0 AND ts_ms < ?1 GROUP BY ts_ms / ?2, endpoint, metric",
            params![raw_cutoff, MINUTE_MS],
        )
        .map_err(err)?;
        let samples_downsampled = tx.execute("DELETE FROM samples WHERE bucket_ms = 0 AND ts_ms < ?1", [raw_cutoff]).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(PruneReport { sessions_deleted, samples_deleted, samples_downsampled })
    }

    pub fn export(&self) -> Result<Export> {
        let mut benchmarks = self.benchmarks(usize::MAX >> 1)?;
        benchmarks.reverse();
        Ok(Export { sessions: self.sessions(i64::MIN)?, benchmarks, samples: self.samples(None, i64::MIN)? })
    }

    pub fn export_json(&self) -> Result<String> {
        serde_json::to_string_pretty(&self.export()?).map_err(|e| self.data_err(e.to_string()))
    }

    /// CSV of one table: `sessions`, `benchmarks` (summary columns) or `samples`.
    pub fn export_csv(&self, table: &str) -> Result<String> {
        let data = self.export()?;
        match table {
            "sessions" => Ok(sessions_csv(&data.sessions)),
            "samples" => Ok(samples_csv(&data.samples)),
            "benchmarks" => Ok(crate::bench::report::csv(&data.benchmarks)),
            other => Err(MonitorError::Invalid { field: "--table", reason: format!("{other:?} (expected sessions, benchmarks or samples)") }),
        }
    }

    /// Adds everything in an export in one transaction (ids kept, so importing into an empty history
    /// reproduces it).
    pub fn import_json(&mut self, text: &str) -> Result<(usize, usize, usize)> {
        let data: Export = serde_json::from_str(text).map_err(|e| self.data_err(format!("not a history export: {e}")))?;
        self.conn.execute_batch("BEGIN").map_err(|e| self.err(e))?;
        let inserted = self.insert_all(&data);
        let end = if inserted.is_ok() { "COMMIT" } else { "ROLLBACK" };
        self.conn.execute_batch(end).map_err(|e| self.err(e))?;
        inserted.map(|()| (data.sessions.len(), data.benchmarks.len(), data.samples.len()))
    }

    fn insert_all(&self, data: &Export) -> Result<()> {
        for s in &data.sessions {
            self.record_session(s)?;
        }
        for b in &data.benchmarks {
            self.save_benchmark(b)?;
        }
        data.samples.iter().try_for_each(|p| self.insert_sample(p))
    }
}

fn sessions_csv(sessions: &[Session]) -> String {
    let mut s = "id,endpoint,model,start_ms,end_ms,tokens,avg_tok_s,server_tok_s,peak_memory_bytes,source\n".to_string();
    for x in sessions {
        let opt = |v: Option<String>| v.unwrap_or_default();
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            opt(x.id.map(|i| i.to_string())),
            csv_field(&x.endpoint),
            csv_field(&x.model),
            x.start_ms,
            x.end_ms,
            x.tokens,
            x.avg_tok_s,
            opt(x.server_tok_s.map(|v| v.to_string())),
            opt(x.peak_memory_bytes.map(|v| v.to_string())),
            csv_field(&x.source)
        ));
    }
    s
}

fn samples_csv(samples: &[SamplePoint]) -> String {
    let mut s = "ts_ms,endpoint,metric,value,bucket_ms\n".to_string();
    for p in samples {
        s.push_str(&format!("{},{},{},{},{}\n", p.ts_ms, csv_field(&p.endpoint), csv_field(&p.metric), p.value, p.bucket_ms));
    }
    s
}

/// Parses RFC 4180 CSV (quoted fields with doubled quotes, newlines inside quotes) into rows of fields.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}
