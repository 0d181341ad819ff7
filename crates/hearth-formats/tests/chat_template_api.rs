//! Chat template behaviour beyond the parity fixtures: error reporting, built-in fallbacks and input
//! validation.

use chrono::NaiveDate;
use hearth_formats::chat_template::{ChatTemplate, TemplateError};
use serde_json::json;

fn user(text: &str) -> serde_json::Value {
    json!({"role": "user", "content": text})
}

#[test]
fn syntax_errors_name_the_line() {
    let source = "{% for m in messages %}\n{{ m.content }}\n{{ m.role( }}\n{% endfor %}";
    match ChatTemplate::new(source, "", "") {
        Err(TemplateError::Syntax { line, message }) => {
            assert_eq!(line, 3, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    let unclosed = ChatTemplate::new("{% if add_generation_prompt %}\nx", "", "").unwrap_err();
    assert!(
        matches!(unclosed, TemplateError::Syntax { .. }),
        "{unclosed}"
    );
    assert!(unclosed.to_string().contains("line"), "{unclosed}");
}

#[test]
fn chatml_fallback_renders_chatml() {
    let t = ChatTemplate::fallback();
    let messages = [json!({"role": "system", "content": "Be kind."}), user("Hi")];
    let want = "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(t.render(&messages, true, &json!(null)).unwrap(), want);
    let without_prompt = t.render(&messages, false, &json!({})).unwrap();
    assert_eq!(
        without_prompt,
        want.trim_end_matches("<|im_start|>assistant\n")
    );
}

#[test]
fn plain_fallback_joins_contents() {
    let t = ChatTemplate::plain();
    let messages = [
        user("Once upon a time"),
        json!({"role": "assistant", "content": "there was"}),
    ];
    assert_eq!(
        t.render(&messages, true, &json!(null)).unwrap(),
        "Once upon a time\n\nthere was"
    );
}

#[test]
fn raise_exception_becomes_raised() {
    let t = ChatTemplate::new("{% if messages|length > 1 %}{{ raise_exception('only one message, got ' ~ messages|length) }}{% endif %}ok", "", "").unwrap();
    assert_eq!(t.render(&[user("a")], false, &json!(null)).unwrap(), "ok");
    match t.render(&[user("a"), user("b")], false, &json!(null)) {
        Err(TemplateError::Raised(msg)) => assert_eq!(msg, "only one message, got 2"),
        other => panic!("expected Raised, got {other:?}"),
    }
}

#[test]
fn runtime_errors_are_render_errors_with_a_line() {
    let t = ChatTemplate::new("line one\n{{ messages[0].content.nope.deeper }}", "", "").unwrap();
    match t.render(&[user("x")], false, &json!(null)) {
        Err(TemplateError::Render { line, .. }) => assert_eq!(line, Some(2)),
        other => panic!("expected a render error, got {other:?}"),
    }
}

#[test]
fn extra_context_must_be_an_object() {
    let t = ChatTemplate::fallback();
    let err = t.render(&[user("x")], false, &json!([1, 2])).unwrap_err();
    assert!(matches!(err, TemplateError::InvalidInput(_)), "{err}");
}

#[test]
fn extra_context_and_tokens_reach_the_template() {
    let t = ChatTemplate::new(
        "{{ bos_token }}{{ greeting }}{% if tools is none %} no tools{% endif %}{{ eos_token }}",
        "<s>",
        "</s>",
    )
    .unwrap();
    assert_eq!(
        t.render(&[], false, &json!({"greeting": "hey"})).unwrap(),
        "<s>hey no tools</s>"
    );
}

#[test]
fn strftime_now_uses_the_fixed_time_and_rejects_bad_formats() {
    let now = NaiveDate::from_ymd_opt(2025, 3, 9)
        .unwrap()
        .and_hms_opt(8, 30, 0)
        .unwrap();
    let t = ChatTemplate::new("{{ strftime_now('%d %b %Y %H:%M') }}", "", "")
        .unwrap()
        .with_fixed_time(now);
    assert_eq!(
        t.render(&[], false, &json!(null)).unwrap(),
        "09 Mar 2025 08:30"
    );
    let bad = ChatTemplate::new("{{ strftime_now('%Q') }}", "", "").unwrap();
    assert!(matches!(
        bad.render(&[], false, &json!(null)),
        Err(TemplateError::Render { .. })
    ));
}

#[test]
fn templates_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ChatTemplate>();
}
