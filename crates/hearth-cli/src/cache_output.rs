//! Printing for `hearth cache`: tables for people, `--json` for scripts.

use anyhow::Result;
use hearth_store::dedup::DedupReport;
use hearth_store::maintenance::{CleanReport, VerifyReport};
use hearth_store::stats::Stats;
use hearth_store::sync::SyncReport;
use hearth_store::Store;
use serde_json::json;

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn ago(when: Option<i64>) -> String {
    let Some(t) = when else { return "never".into() };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(t);
    match now.saturating_sub(t) {
        s if s < 120 => "just now".into(),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

pub fn status(store: &Store, as_json: bool) -> Result<()> {
    let models = store.registry().models()?;
    let stats = hearth_store::stats::compute(store)?;
    let mut rows = Vec::new();
    for m in &models {
        rows.push((m, store.registry().apps_using(m.id)?));
    }
    if as_json {
        let list: Vec<_> = rows
            .iter()
            .map(|(m, apps)| {
                json!({"name": m.name, "origin": m.origin, "source": m.source, "format": m.format, "quantization": m.quantization,
                       "architecture": m.architecture, "size": m.size, "used_by": apps, "last_used": m.last_used, "path": m.entry})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!({"models": list, "totals": stats}))?);
        return Ok(());
    }
    let header = ["NAME", "SOURCE", "FORMAT", "QUANT", "SIZE", "USED BY", "LAST USED"];
    let table: Vec<[String; 7]> = rows
        .iter()
        .map(|(m, apps)| {
            [
                m.name.clone(),
                format!("{} {}", m.origin.as_str(), short_source(&m.source)),
                m.format.clone(),
                m.quantization.clone().unwrap_or_else(|| "-".into()),
                bytes(m.size),
                if apps.is_empty() { "-".into() } else { apps.join(",") },
                ago(m.last_used),
            ]
        })
        .collect();
    print_table(&header, &table);
    println!(
        "\n{} model(s), {} logical, {} physical, {} saved, {} duplicate(s) avoided",
        models.len(),
        bytes(stats.logical_bytes),
        bytes(stats.physical_bytes),
        bytes(stats.saved_bytes),
        stats.duplicates_avoided
    );
    Ok(())
}

fn short_source(s: &str) -> String {
    if s.chars().count() > 48 {
        let tail: String = s.chars().rev().take(45).collect::<Vec<_>>().into_iter().rev().collect();
        format!("…{tail}")
    } else {
        s.to_string()
    }
}

fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub fn stats(s: &Stats, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    for (tool, n) in &s.by_tool {
        println!("{tool:<14} {}", bytes(*n));
    }
    println!("logical        {} ({} files: what each tool would hold on its own)", bytes(s.logical_bytes), s.files);
    println!("physical       {} (unique inodes; shared extents once)", bytes(s.physical_bytes));
    println!("unique content {}", bytes(s.unique_content_bytes));
    println!("saved          {} ({} duplicate(s) avoided; {} in reflinked extents)", bytes(s.saved_bytes), s.duplicates_avoided, bytes(s.reflinked_bytes));
    Ok(())
}

pub fn clean(r: &CleanReport) {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    for m in &r.models {
        println!("{verb} model {m}");
    }
    for b in &r.orphan_blobs {
        println!("{verb} orphan blob {b}");
    }
    for p in &r.partials {
        println!("{verb} stale partial {}", p.display());
    }
    println!("{verb} {} in total", bytes(r.freed_bytes));
}

pub fn sync(r: &SyncReport, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!(
        "indexed {} HF cache, {} Ollama, {} LM Studio model(s); {} gone; read {} of small non-LFS files, no weights",
        r.hf_models,
        r.ollama_models,
        r.lmstudio_models,
        r.unregistered,
        bytes(r.small_file_bytes_read)
    );
    for p in &r.problems {
        eprintln!("warning: skipped: {p}");
    }
    Ok(())
}

pub fn dedup(r: &DedupReport, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        for x in &r.replaced {
            println!("{} -> {} ({}, {})", x.path.display(), x.kept.display(), x.mode, bytes(x.size));
        }
        let verb = if r.dry_run { "would save" } else { "saved" };
        println!("{} group(s) of identical files; {verb} {}; hashed {}", r.groups, bytes(r.saved_bytes), bytes(r.bytes_hashed));
    }
    for p in &r.problems {
        eprintln!("warning: {p}");
    }
    if r.problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} file(s) could not be deduplicated", r.problems.len())
    }
}

pub fn verify(r: &VerifyReport) -> Result<()> {
    println!("checked {} file(s), {}", r.checked, bytes(r.bytes));
    for q in &r.quarantined {
        println!("corrupt blob {q}: moved to quarantine");
    }
    for p in &r.corrupt_elsewhere {
        println!("corrupt file {} (left in place)", p.display());
    }
    for m in &r.affected_models {
        println!("needs `hearth cache add` again: {m}");
    }
    if r.quarantined.is_empty() && r.corrupt_elsewhere.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} corrupt file(s)", r.quarantined.len() + r.corrupt_elsewhere.len())
    }
}
