//! Byte-for-byte parity with Hugging Face's `apply_chat_template` renderer on the committed fixtures
//! (scripts/gen-template-fixtures.py): every case renders the same text, or fails the same way.

use std::path::PathBuf;

use chrono::NaiveDateTime;
use hearth_formats::chat_template::{ChatTemplate, TemplateError};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Fixture {
    name: String,
    now: String,
    bos_token: String,
    eos_token: String,
    source: String,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    conversation: String,
    messages: Vec<serde_json::Value>,
    add_generation_prompt: bool,
    extra: serde_json::Value,
    expected: Option<String>,
    error: Option<ExpectedError>,
}

#[derive(Debug, Deserialize)]
struct ExpectedError {
    /// `raised` (the template called raise_exception) or `other`.
    kind: String,
    message: String,
}

fn fixtures() -> Vec<(PathBuf, Fixture)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/templates");
    let mut out = Vec::new();
    for entry in
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
    {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("fixture readable");
            let fixture = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
            out.push((path, fixture));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn compile(fx: &Fixture) -> ChatTemplate {
    let now = NaiveDateTime::parse_from_str(&fx.now, "%Y-%m-%dT%H:%M:%S").expect("fixture time");
    ChatTemplate::new(&fx.source, &fx.bos_token, &fx.eos_token)
        .unwrap_or_else(|e| panic!("template {} does not compile: {e}", fx.name))
        .with_fixed_time(now)
}

/// A description of how `case` differs from the reference, if it does.
fn check_case(fx: &Fixture, template: &ChatTemplate, case: &Case) -> Option<String> {
    let label = format!(
        "{} / {} / add_generation_prompt={} / extra={}",
        fx.name, case.conversation, case.add_generation_prompt, case.extra
    );
    let got = template.render(&case.messages, case.add_generation_prompt, &case.extra);
    match (&case.expected, &case.error, got) {
        (Some(want), _, Ok(got)) if *want == got => None,
        (Some(want), _, Ok(got)) => Some(format!(
            "{label}\n--- expected\n{want}\n--- hearth\n{got}\n---"
        )),
        (Some(_), _, Err(e)) => Some(format!("{label}: unexpected error {e}")),
        (None, Some(want), Err(TemplateError::Raised(msg)))
            if want.kind == "raised" && want.message == msg =>
        {
            None
        }
        (None, Some(want), Err(e))
            if want.kind == "other" && !matches!(e, TemplateError::Raised(_)) =>
        {
            None
        }
        (None, Some(want), got) => Some(format!(
            "{label}: expected {} error {:?}, got {got:?}",
            want.kind, want.message
        )),
        (None, None, _) => Some(format!(
            "{label}: fixture case has neither expected text nor error"
        )),
    }
}

#[test]
fn templates_render_like_transformers() {
    let fixtures = fixtures();
    let names: Vec<&str> = fixtures.iter().map(|(_, f)| f.name.as_str()).collect();
    for required in [
        "smollm2",
        "llama3_2",
        "qwen2_5",
        "mistral",
        "gemma",
        "loop_controls",
        "tojson_misc",
    ] {
        assert!(
            names.contains(&required),
            "fixture {required} missing (have {names:?})"
        );
    }
    let mut failures = Vec::new();
    let mut total = 0;
    for (_, fx) in &fixtures {
        let template = compile(fx);
        for case in &fx.cases {
            total += 1;
            failures.extend(check_case(fx, &template, case));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn raise_exception_cases_are_covered() {
    let raised = fixtures()
        .iter()
        .flat_map(|(_, f)| &f.cases)
        .filter(|c| c.error.as_ref().is_some_and(|e| e.kind == "raised"))
        .count();
    assert!(
        raised >= 4,
        "expected several raise_exception cases, found {raised}"
    );
}

#[test]
fn the_chatml_fixture_checks_the_built_in_fallback() {
    let fixtures = fixtures();
    let chatml = fixtures.iter().find(|(_, f)| f.name == "chatml_fallback").expect("chatml_fallback fixture");
    assert_eq!(chatml.1.source, hearth_formats::chat_template::CHATML_TEMPLATE);
}
