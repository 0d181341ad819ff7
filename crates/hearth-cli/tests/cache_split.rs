//! Split GGUF (`NAME-00001-of-00002.gguf` …) through `hearth cache`: a quant choice or a glob that picks
//! any part fetches the whole set as one model opened at its first part; links and the LM Studio export
//! keep the parts side by side; Ollama export and `hearth run` refuse it by name, since neither Ollama nor
//! hearth's loader reads split GGUF.

mod cache_common;
mod common;

use cache_common::*;
use hearth_formats::gguf::{GgufFile, GgufValue, GgufWriter};
use std::path::Path;
use std::sync::Arc;

const PART1: &str = "Tiny-Q8_0-00001-of-00002.gguf";
const PART2: &str = "Tiny-Q8_0-00002-of-00002.gguf";

/// Splits a GGUF the way llama-gguf-split does: the first part keeps the metadata, every part carries
/// `split.no` / `split.count` / `split.tensors.count` and a share of the tensors.
fn split_gguf(path: &Path, n: u16) -> Vec<Vec<u8>> {
    let file = GgufFile::open(path).unwrap();
    let tensors = file.tensors();
    let per = tensors.len().div_ceil(n as usize);
    (0..n)
        .map(|i| {
            let mut w = GgufWriter::new();
            if i == 0 {
                for (k, v) in &file.metadata().entries {
                    w.add_metadata(k, v.clone());
                }
            }
            w.add_metadata("split.no", GgufValue::U16(i));
            w.add_metadata("split.count", GgufValue::U16(n));
            w.add_metadata("split.tensors.count", GgufValue::I32(tensors.len() as i32));
            for t in tensors.iter().skip(i as usize * per).take(per) {
                w.add_tensor(&t.name, &t.dims, t.ggml_type, file.tensor_bytes(t).to_vec());
            }
            w.to_bytes()
        })
        .collect()
}

struct Repo {
    server: Server,
    parts: Vec<Vec<u8>>,
}

/// A GGUF repo holding a single-file F32 model (listed first, so a pick by list order would take it) and
/// a Q8_0 model split in two.
fn repo() -> Repo {
    let parts = split_gguf(&common::tiny_model("llama3/model-q8_0.gguf"), 2);
    let f32 = std::fs::read(common::tiny_model("llama3/model-f32.gguf")).unwrap();
    let file = |name: &str, bytes: Vec<u8>| HubFile { name: name.into(), bytes: Arc::new(bytes), lfs: true };
    let mut b = Behaviour::default();
    b.hf.insert(REPO.into(), vec![file("Tiny-F32.gguf", f32), file(PART2, parts[1].clone()), file(PART1, parts[0].clone())]);
    Repo { server: Server::start(b), parts }
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

fn blob_names(home: &Home) -> Vec<String> {
    let mut names: Vec<String> = files_under(&home.store().join("blobs/sha256")).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// The one model in the store is the split set: both parts as blobs, opened at part 1, parts side by side.
fn assert_stored_as_one_model(home: &Home, parts: &[Vec<u8>]) {
    let mut want: Vec<String> = parts.iter().map(|p| sha256_hex(p)).collect();
    want.sort();
    assert_eq!(blob_names(home), want, "exactly the parts are fetched");
    let status = home.status();
    let models = status["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{status}");
    assert_eq!(models[0]["name"], format!("{REPO}:Q8_0"));
    assert_eq!(models[0]["size"], (parts[0].len() + parts[1].len()) as u64);
    let entry = Path::new(models[0]["path"].as_str().unwrap()).to_path_buf();
    assert_eq!(entry.file_name().unwrap(), PART1);
    assert_eq!(std::fs::read(&entry).unwrap(), parts[0]);
    assert_eq!(std::fs::read(entry.with_file_name(PART2)).unwrap(), parts[1], "part 2 lies next to part 1");
}

#[test]
fn split_gguf_is_fetched_whole_as_one_model_linked_side_by_side_and_refused_by_run() {
    let Repo { server, parts } = repo();
    let home = Home::new();
    ok(home.hearth_with(&[("HF_ENDPOINT", &server.url)], &["cache", "add", &format!("hf://{REPO}")]));
    assert_stored_as_one_model(&home, &parts);

    // hearth's loader reads single files: run refuses by name, through the store name and the path alike.
    let entry = home.status()["models"][0]["path"].as_str().unwrap().to_string();
    for model in [format!("{REPO}:Q8_0"), entry] {
        let out = home.hearth(&["run", &model, "Hi", "--raw", "--max-tokens", "1"]);
        let msg = text(&out);
        assert!(!out.status.success() && msg.contains("split GGUF") && msg.contains("llama-gguf-split --merge"), "{model}: {msg}");
        assert!(!msg.contains("panicked"), "{msg}");
    }

    // Links and the LM Studio export carry every part under its own name; Ollama, which cannot read
    // split GGUF, is refused with the reason.
    let app = home.path().join("app");
    ok(home.hearth(&["cache", "link", app.to_str().unwrap(), "--model", &format!("{REPO}:Q8_0")]));
    for (name, bytes) in [(PART1, &parts[0]), (PART2, &parts[1])] {
        assert_eq!(&std::fs::read(app.join("models").join(name)).unwrap(), bytes, "{name}");
    }
    ok(home.hearth(&["cache", "sync", "--to-lmstudio", &format!("{REPO}:Q8_0")]));
    let lms = home.lmstudio().join(REPO);
    for (name, bytes) in [(PART1, &parts[0]), (PART2, &parts[1])] {
        assert_eq!(&std::fs::read(lms.join(name)).unwrap(), bytes, "{name}");
    }
    let out = home.hearth(&["cache", "sync", "--to-ollama", &format!("{REPO}:Q8_0=tiny:split")]);
    let msg = text(&out);
    assert!(!out.status.success() && msg.contains("split GGUF") && msg.contains("Ollama"), "{msg}");
    assert!(!home.ollama().join("manifests").exists(), "no manifest for a model Ollama cannot load");

    // Indexing LM Studio's folder finds the exported set as one model of both parts.
    ok(home.hearth(&["cache", "sync"]));
    let status = home.status();
    let lm: Vec<&serde_json::Value> = status["models"].as_array().unwrap().iter().filter(|m| m["origin"] == "lmstudio").collect();
    assert_eq!(lm.len(), 1, "{status}");
    assert_eq!(lm[0]["size"], (parts[0].len() + parts[1].len()) as u64, "{status}");
    assert!(lm[0]["path"].as_str().unwrap().ends_with(PART1), "{status}");
}

#[test]
fn a_glob_matching_one_part_fetches_the_whole_split_set() {
    let Repo { server, parts } = repo();
    let home = Home::new();
    ok(home.hearth_with(&[("HF_ENDPOINT", &server.url)], &["cache", "add", &format!("hf://{REPO}/*-00002-of-00002.gguf")]));
    assert_stored_as_one_model(&home, &parts);
}
