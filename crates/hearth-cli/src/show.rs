//! `hearth show MODEL`: what a model is, read from its headers without loading weights.

use anyhow::Result;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub struct ShowArgs {
    /// A .gguf file, a Hugging Face safetensors directory, or a store name (org/repo, name:tag, alias).
    pub model: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also print the full chat template.
    #[arg(long)]
    pub template: bool,
}

pub fn run(args: ShowArgs) -> Result<()> {
    // Model errors already name the file (and the field) that failed.
    let m = hearth_models::open(&crate::cache::resolve_model_arg(&args.model)?)?;
    let eos: Vec<String> = m
        .eos_ids
        .iter()
        .map(|&id| format!("{} ({id})", m.tokenizer.id_to_token(id).unwrap_or("?")))
        .collect();
    let i = &m.info;
    if args.json {
        let v = json!({
            "path": i.path, "format": i.format, "architecture": i.architecture, "parameters": i.parameters,
            "quantization": i.quantization, "context_length": i.context_length, "vocab_size": i.vocab_size,
            "eos_tokens": eos, "chat_template": m.chat_template, "file_size": i.file_size,
            "layers": m.config.n_layers, "embedding_length": m.config.hidden_size,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("  Model");
    println!("    architecture        {}", i.architecture);
    println!("    parameters          {}", human_count(i.parameters));
    println!("    quantization        {}", i.quantization);
    println!("    context length      {}", i.context_length);
    println!("    embedding length    {}", m.config.hidden_size);
    println!("    layers              {}", m.config.n_layers);
    println!("    vocabulary size     {}", i.vocab_size);
    println!("    eos tokens          {}", eos.join(", "));
    println!("    format              {}", i.format);
    println!("    file size           {}", human_bytes(i.file_size));
    match &m.chat_template {
        Some(t) if args.template => println!("\n  Template\n{t}"),
        Some(t) => println!("    chat template       {} chars (--template prints it)", t.len()),
        None => println!("    chat template       none (base model: prompts are sent as plain text)"),
    }
    Ok(())
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}
