//! Reading streamed completions without caring who sent them: Ollama NDJSON (`/api/generate`,
//! `/api/chat`), OpenAI SSE (`/v1/chat/completions`, `/v1/completions`) and llama.cpp's extras (`timings`).
//! Used by the benchmark client and by the metering proxy, which must parse without altering bytes.

use serde_json::Value;

/// What one streamed line says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunk {
    /// Generated text in this chunk (empty for role-only, usage-only or final chunks).
    pub text: String,
    /// The stream's final message (`done: true`, `data: [DONE]`).
    pub done: bool,
    pub model: Option<String>,
    /// Ollama final chunk: `eval_count`, `eval_duration` (ns), `prompt_eval_count`.
    pub eval_count: Option<u64>,
    pub eval_duration_ns: Option<u64>,
    pub prompt_eval_count: Option<u64>,
    /// OpenAI `usage`.
    pub completion_tokens: Option<u64>,
    pub prompt_tokens: Option<u64>,
    /// llama.cpp `timings.predicted_per_second`.
    pub predicted_per_second: Option<f64>,
    /// An `error` the server put in the stream.
    pub error: Option<String>,
}

impl Chunk {
    /// Decode speed the server reports for the whole response, if it does.
    pub fn server_tok_s(&self) -> Option<f64> {
        match (self.eval_count, self.eval_duration_ns) {
            (Some(n), Some(d)) if d > 0 => Some(n as f64 / (d as f64 / 1e9)),
            _ => self.predicted_per_second,
        }
    }
}

/// Splits a byte stream into lines across chunk boundaries (`\n`, with an optional `\r`).
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Appends bytes and returns the lines they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]);
            lines.push(line.trim_end_matches('\r').to_string());
        }
        lines
    }

    /// The unterminated last line, if any (a stream need not end with a newline).
    pub fn finish(&mut self) -> Option<String> {
        let rest = String::from_utf8_lossy(&std::mem::take(&mut self.pending)).trim().to_string();
        (!rest.is_empty()).then_some(rest)
    }
}

/// Parses one line of NDJSON or SSE. `Ok(None)` for lines that carry nothing (blank lines, SSE comments
/// and non-data fields); `Err` for anything that is neither.
pub fn parse_line(line: &str) -> Result<Option<Chunk>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with(':') {
        return Ok(None);
    }
    let json = if let Some(data) = line.strip_prefix("data:") {
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(Some(Chunk { done: true, ..Chunk::default() }));
        }
        data
    } else if ["event:", "id:", "retry:"].iter().any(|f| line.starts_with(f)) {
        return Ok(None);
    } else {
        line
    };
    let value: Value = serde_json::from_str(json).map_err(|_| format!("not JSON: {:?}", json.chars().take(80).collect::<String>()))?;
    if !value.is_object() {
        return Err(format!("not a JSON object: {:?}", json.chars().take(80).collect::<String>()));
    }
    Ok(Some(chunk_from_json(&value)))
}

fn chunk_from_json(v: &Value) -> Chunk {
    let choice = &v["choices"][0];
    let text = [&v["response"], &v["message"]["content"], &choice["delta"]["content"], &choice["message"]["content"], &choice["text"], &v["content"]]
        .iter()
        .find_map(|t| t.as_str())
        .unwrap_or_default()
        .to_string();
    let error = match &v["error"] {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => Some(o.get("message").and_then(Value::as_str).unwrap_or("error").to_string()),
        _ => None,
    };
    Chunk {
        text,
        // llama.cpp's native /completion ends with `stop: true`.
        // OpenAI: a finish_reason ends the generation (usage and `[DONE]` may follow in a stream).
        done: v["done"].as_bool().unwrap_or(false) || v["stop"].as_bool().unwrap_or(false) || choice["finish_reason"].is_string(),
        model: v["model"].as_str().map(str::to_string),
        eval_count: v["eval_count"].as_u64(),
        eval_duration_ns: v["eval_duration"].as_u64(),
        prompt_eval_count: v["prompt_eval_count"].as_u64(),
        completion_tokens: v["usage"]["completion_tokens"].as_u64(),
        prompt_tokens: v["usage"]["prompt_tokens"].as_u64(),
        predicted_per_second: v["timings"]["predicted_per_second"].as_f64(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_joins_lines_across_chunks() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"{\"a\":").is_empty());
        assert_eq!(s.push(b"1}\r\n{\"b\"\n:"), vec!["{\"a\":1}".to_string(), "{\"b\"".to_string()]);
        assert_eq!(s.finish(), Some(":".to_string()));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn ollama_openai_and_llama_cpp_lines() {
        let c = parse_line(r#"{"model":"m","response":"Hi","done":false}"#).unwrap().unwrap();
        assert_eq!((c.text.as_str(), c.done, c.model.as_deref()), ("Hi", false, Some("m")));
        let c = parse_line(r#"{"message":{"role":"assistant","content":""},"done":true,"eval_count":50,"eval_duration":1000000000}"#).unwrap().unwrap();
        assert!(c.done);
        assert_eq!(c.server_tok_s(), Some(50.0));
        let c = parse_line(r#"data: {"choices":[{"delta":{"content":" there"}}]}"#).unwrap().unwrap();
        assert_eq!(c.text, " there");
        let c = parse_line(r#"data: {"choices":[],"usage":{"completion_tokens":9,"prompt_tokens":3},"timings":{"predicted_per_second":88.5}}"#).unwrap().unwrap();
        assert_eq!((c.completion_tokens, c.prompt_tokens, c.server_tok_s()), (Some(9), Some(3), Some(88.5)));
        assert!(parse_line("data: [DONE]").unwrap().unwrap().done);
        let c = parse_line(r#"{"object":"chat.completion","choices":[{"message":{"content":"Hello!"},"finish_reason":"stop"}],"usage":{"completion_tokens":3}}"#).unwrap().unwrap();
        assert_eq!((c.text.as_str(), c.done, c.completion_tokens), ("Hello!", true, Some(3)));
        assert!(!parse_line(r#"data: {"choices":[{"delta":{"content":"x"},"finish_reason":null}]}"#).unwrap().unwrap().done);
        assert_eq!(parse_line(": keep-alive").unwrap(), None);
        assert_eq!(parse_line("event: message").unwrap(), None);
        let c = parse_line(r#"{"error":"model not found"}"#).unwrap().unwrap();
        assert_eq!(c.error.as_deref(), Some("model not found"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_line("<html>").is_err());
        assert!(parse_line("data: not json").is_err());
        assert!(parse_line("[1,2]").is_err());
    }
}
