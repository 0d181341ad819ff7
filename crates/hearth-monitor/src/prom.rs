//! A lenient parser of the Prometheus text exposition format, and lookups by the *role* of a metric rather
//! than its full name, so `hearth:generation_tokens_total`, `vllm:generation_tokens_total` and
//! `llamacpp:tokens_predicted_total` are all "generated tokens".

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// What a metric means, independent of the server that exports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Counter of generated (output) tokens.
    GeneratedTokens,
    /// Counter of seconds spent generating (llama.cpp only).
    GenerationSeconds,
    /// Counter of prompt tokens processed.
    PromptTokens,
    /// Gauge of requests being processed now.
    RequestsRunning,
    /// Gauge of requests waiting for a slot.
    RequestsWaiting,
}

impl Role {
    /// Name endings (after a `prefix:` or `prefix_`) that carry this role.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Role::GeneratedTokens => &["generation_tokens_total", "tokens_predicted_total"],
            Role::GenerationSeconds => &["tokens_predicted_seconds_total"],
            Role::PromptTokens => &["prompt_tokens_total"],
            Role::RequestsRunning => &["num_requests_running", "requests_processing"],
            Role::RequestsWaiting => &["num_requests_waiting", "requests_deferred"],
        }
    }

    pub fn matches(self, name: &str) -> bool {
        self.suffixes().iter().any(|s| {
            name == *s || (name.ends_with(s) && matches!(name.as_bytes()[name.len() - s.len() - 1], b':' | b'_'))
        })
    }
}

/// The text before the first `:` of a metric name (`hearth`, `vllm`, `llamacpp`), if any.
pub fn prefix(name: &str) -> Option<&str> {
    name.split_once(':').map(|(p, _)| p)
}

/// Parses every well-formed sample line; comments are skipped. Fails only when the text has sample-like
/// lines and none of them parse (an HTML page or JSON is not metrics).
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    let mut bad = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        match parse_line(line) {
            Some(s) => samples.push(s),
            None => bad = bad.or(Some(line)),
        }
    }
    match (samples.is_empty(), bad) {
        (true, Some(line)) => Err(format!("not Prometheus text (first line: {:?})", truncate(line, 80))),
        _ => Ok(samples),
    }
}

/// Sum of all series with this role (across labels); None when no series has it.
pub fn sum(samples: &[Sample], role: Role) -> Option<f64> {
    let mut found = samples.iter().filter(|s| role.matches(&s.name)).peekable();
    found.peek()?;
    Some(found.map(|s| s.value).sum())
}

/// Per-model values of a role, keyed by the `model` or `model_name` label.
pub fn by_model(samples: &[Sample], role: Role) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for s in samples.iter().filter(|s| role.matches(&s.name)) {
        let Some(model) = s.label("model").or_else(|| s.label("model_name")) else { continue };
        match out.iter_mut().find(|(m, _)| m == model) {
            Some((_, v)) => *v += s.value,
            None => out.push((model.to_string(), s.value)),
        }
    }
    out
}

fn truncate(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        return None;
    }
    let (labels, rest) = if line[name_end..].starts_with('{') {
        parse_labels(&line[name_end + 1..])?
    } else {
        (Vec::new(), &line[name_end..])
    };
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some(Sample { name: name.to_string(), labels, value })
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Parses `k="v",k2="v2"}` (escapes `\"`, `\\`, `\n` in values); returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key, value));
        s = &s[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA: &str = "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.\n\
# TYPE llamacpp:prompt_tokens_total counter\n\
llamacpp:prompt_tokens_total 23\n\
llamacpp:tokens_predicted_total 100\n\
llamacpp:tokens_predicted_seconds_total 1.25\n\
llamacpp:requests_processing 1\n";

    #[test]
    fn roles_match_across_servers() {
        let s = parse(LLAMA).unwrap();
        assert_eq!(sum(&s, Role::GeneratedTokens), Some(100.0));
        assert_eq!(sum(&s, Role::GenerationSeconds), Some(1.25));
        assert_eq!(sum(&s, Role::RequestsRunning), Some(1.0));
        assert_eq!(sum(&s, Role::RequestsWaiting), None);
        assert_eq!(prefix(&s[0].name), Some("llamacpp"));
        let vllm = "vllm:generation_tokens_total{model_name=\"m\"} 7.0\nvllm:num_requests_running{model_name=\"m\"} 2\n";
        assert_eq!(sum(&parse(vllm).unwrap(), Role::GeneratedTokens), Some(7.0));
        // A name that merely contains the suffix without a separator is not a match.
        assert!(!Role::GeneratedTokens.matches("mygeneration_tokens_totalx"));
        assert!(!Role::GeneratedTokens.matches("xgeneration_tokens_total"));
    }

    #[test]
    fn labels_with_escapes_and_per_model_sums() {
        let text = "hearth:generation_tokens_total{model=\"a,b\\\"c}\",kind=\"x\"} 5\n\
hearth:generation_tokens_total{model=\"a,b\\\"c}\",kind=\"y\"} 6 1700000000\n\
hearth:generation_tokens_total{model=\"z\"} 1e3\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].label("model"), Some("a,b\"c}"));
        assert_eq!(by_model(&s, Role::GeneratedTokens), vec![("a,b\"c}".to_string(), 11.0), ("z".to_string(), 1000.0)]);
    }

    #[test]
    fn garbage_is_an_error_but_a_bad_line_among_good_ones_is_skipped() {
        assert!(parse("<html><body>nope</body></html>").is_err());
        assert!(parse("{\"error\": \"no\"}").is_err());
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("a 1\nbroken{x=\n b 2").unwrap().len(), 2);
        assert!(parse("x +Inf\n").unwrap()[0].value.is_infinite());
    }
}
