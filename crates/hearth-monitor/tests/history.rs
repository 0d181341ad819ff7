//! The monitor history: it survives a restart, retention deletes and downsamples old rows, and export
//! round-trips (JSON through import; CSV through a parser).

use hearth_monitor::bench::stats::Summary;
use hearth_monitor::bench::{Api, BenchResult, RequestResult, RunStatus};
use hearth_monitor::history::{parse_csv, History, Retention, Session};

const DAY: i64 = 24 * 3600 * 1000;

fn session(start_ms: i64, model: &str, tokens: u64, tok_s: f64) -> Session {
    Session { id: None, endpoint: "http://127.0.0.1:8080".into(), model: model.into(), start_ms, end_ms: start_ms + 5000, tokens, avg_tok_s: tok_s, server_tok_s: Some(tok_s * 1.01), peak_memory_bytes: Some(150 << 20), source: "monitor".into() }
}

fn bench_result(model: &str) -> BenchResult {
    let summary = Summary::of(&[10.0, 12.0, 14.0]);
    BenchResult {
        id: None,
        created_ms: 1_700_000_000_000,
        endpoint: "http://127.0.0.1:8080".into(),
        api: Api::OpenAi,
        model: model.into(),
        prompts: "standard, \"quoted\"".into(),
        prompt_count: 10,
        concurrency: 1,
        max_tokens: 64,
        status: RunStatus::Partial,
        note: Some("1 of 3 requests failed; first error: x".into()),
        duration_s: 3.5,
        requests: 3,
        completed: 2,
        failed: 1,
        output_tokens: 100,
        output_tok_s: 28.5,
        request_throughput: 0.57,
        avg_tok_s: 30.0,
        server_tok_s: Some(31.0),
        ttft_ms: summary,
        tpot_ms: summary,
        itl_ms: summary,
        e2e_ms: summary,
        peak_memory_bytes: Some(200 << 20),
        per_request: vec![RequestResult { prompt: "fact".into(), ok: false, error: Some("cut".into()), ttft_ms: Some(5.0), e2e_ms: 9.0, output_tokens: 3, prompt_tokens: None, itl_ms: vec![1.0, 2.0], server_tok_s: None }],
    }
}

#[test]
fn history_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/monitor.db");
    let id = {
        let h = History::open(&path).unwrap();
        h.record_session(&session(1000, "smollm2", 50, 90.0)).unwrap();
        h.record_samples(1000, "system", &[("memory_used_bytes", 1e9), ("nan", f64::NAN)]).unwrap();
        h.save_benchmark(&bench_result("smollm2")).unwrap()
    };
    let h = History::open(&path).unwrap();
    assert_eq!(h.sessions(0).unwrap().len(), 1);
    assert_eq!(h.samples(None, 0).unwrap().len(), 1, "non-finite values are not stored");
    let b = h.benchmark(id).unwrap().unwrap();
    assert_eq!((b.id, b.status, b.per_request.len()), (Some(id), RunStatus::Partial, 1));
    assert!(h.benchmark(id + 1).unwrap().is_none());
    let stats = h.model_stats().unwrap();
    assert_eq!((stats[0].model.as_str(), stats[0].sessions, stats[0].tokens), ("smollm2", 1, 50));
}

#[test]
fn retention_deletes_old_rows_and_downsamples_old_samples() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(&dir.path().join("h.db")).unwrap();
    let now = 100 * DAY;
    h.record_session(&session(now - 40 * DAY, "old", 10, 1.0)).unwrap();
    h.record_session(&session(now - DAY, "recent", 10, 1.0)).unwrap();
    h.record_samples(now - 31 * DAY, "e", &[("tok_s", 1.0)]).unwrap();
    // Two days old: four raw samples in one minute become one mean; a fresh sample stays raw.
    let minute_start = now - 2 * DAY - (now - 2 * DAY) % 60_000;
    for (i, v) in [10.0, 20.0, 30.0, 40.0].iter().enumerate() {
        h.record_samples(minute_start + i as i64 * 10_000, "e", &[("tok_s", *v)]).unwrap();
    }
    h.record_samples(now - 1000, "e", &[("tok_s", 7.0)]).unwrap();
    let bench_id = h.save_benchmark(&bench_result("kept")).unwrap();

    let report = h.prune(now, Retention::default()).unwrap();
    assert_eq!((report.sessions_deleted, report.samples_deleted, report.samples_downsampled), (1, 1, 4));
    let sessions = h.sessions(0).unwrap();
    assert_eq!(sessions.iter().map(|s| s.model.as_str()).collect::<Vec<_>>(), vec!["recent"]);
    let samples = h.samples(Some("tok_s"), 0).unwrap();
    assert_eq!(samples.len(), 2);
    assert_eq!((samples[0].ts_ms, samples[0].value, samples[0].bucket_ms), (minute_start, 25.0, 60_000));
    assert_eq!((samples[1].value, samples[1].bucket_ms), (7.0, 0));
    assert!(h.benchmark(bench_id).unwrap().is_some(), "benchmarks are kept");
    // A second prune changes nothing.
    assert_eq!(h.prune(now, Retention::default()).unwrap().samples_downsampled, 0);
    assert_eq!(h.samples(Some("tok_s"), 0).unwrap(), samples);
}

#[test]
fn export_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("a.db")).unwrap();
    h.record_session(&session(5000, "model, with \"comma\"", 20, 33.3)).unwrap();
    h.record_session(&session(6000, "b", 30, 44.4)).unwrap();
    h.record_samples(7000, "system", &[("memory_used_bytes", 123.0)]).unwrap();
    h.save_benchmark(&bench_result("m")).unwrap();
    let json = h.export_json().unwrap();

    let mut copy = History::open(&dir.path().join("b.db")).unwrap();
    assert_eq!(copy.import_json(&json).unwrap(), (2, 1, 1));
    assert_eq!(copy.export_json().unwrap(), json);
    assert_eq!(copy.export().unwrap(), h.export().unwrap());
    // Importing the same ids again fails as a whole and leaves the history as it was.
    assert!(copy.import_json(&json).is_err());
    assert_eq!(copy.export_json().unwrap(), json);
    assert!(copy.import_json("{not json").unwrap_err().to_string().contains("not a history export"));

    let csv = h.export_csv("sessions").unwrap();
    let rows = parse_csv(&csv);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][2], "model");
    assert_eq!(rows[1][2], "model, with \"comma\"");
    let exported = h.sessions(0).unwrap();
    for (row, s) in rows[1..].iter().zip(&exported) {
        assert_eq!(row[5].parse::<u64>().unwrap(), s.tokens);
        assert_eq!(row[6].parse::<f64>().unwrap(), s.avg_tok_s);
        assert_eq!(row[3].parse::<i64>().unwrap(), s.start_ms);
    }
    let bench_rows = parse_csv(&h.export_csv("benchmarks").unwrap());
    assert_eq!(bench_rows[1][5], "standard, \"quoted\"");
    assert_eq!(bench_rows[0].len(), bench_rows[1].len());
    assert!(h.export_csv("nope").is_err());
}

#[test]
fn a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = History::open(&path).err().unwrap().to_string();
    assert!(err.contains("junk.db"), "{err}");
}

#[test]
fn chart_series_sum_servers_per_tick_and_average_ticks_per_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("h.db")).unwrap();
    // Two servers sampled on the same ticks, 1 s apart; memory has the one system row per tick.
    for (i, ts) in (0..4).map(|i| (i, 10_000 + i * 1000)) {
        h.record_samples(ts, "http://a", &[("tok_s", 10.0 * i as f64)]).unwrap();
        h.record_samples(ts, "http://b", &[("tok_s", 1.0)]).unwrap();
        h.record_samples(ts, "system", &[("memory_used_bytes", 100.0 + i as f64)]).unwrap();
    }
    h.record_samples(99_000, "http://a", &[("tok_s", 1e6)]).unwrap();
    // One point per tick when the buckets are narrower than the ticks; the sample past the span is left out.
    assert_eq!(h.series("tok_s", 10_000, 13_999, 8).unwrap(), vec![(10_000, 1.0), (11_000, 11.0), (12_000, 21.0), (13_000, 31.0)]);
    // Two buckets of two ticks each: the mean of the per-tick totals.
    assert_eq!(h.series("tok_s", 10_000, 13_999, 2).unwrap(), vec![(10_000, 6.0), (12_000, 26.0)]);
    assert_eq!(h.series("memory_used_bytes", 10_000, 13_999, 1).unwrap(), vec![(10_000, 101.5)]);
    assert!(h.series("rss_bytes", 0, 1, 10).unwrap().is_empty());
}
