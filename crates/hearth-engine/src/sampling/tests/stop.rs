//! Tests of `StopMatcher`: hand-written streams and a chunking-independence property.

use proptest::prelude::*;

use crate::sampling::{StopMatcher, StopScan};

fn matcher(stops: &[&str]) -> StopMatcher {
    StopMatcher::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

fn emitted(scan: StopScan) -> String {
    match scan {
        StopScan::Emit(text) => text,
        StopScan::Stop { .. } => panic!("unexpected stop"),
    }
}

#[test]
fn stop_split_across_increments_is_never_emitted() {
    let mut m = matcher(&["###"]);
    assert_eq!(emitted(m.push("ab#")), "ab");
    assert_eq!(emitted(m.push("#")), "");
    assert_eq!(
        m.push("#c"),
        StopScan::Stop {
            text: String::new(),
            stop_index: 0
        }
    );
    assert!(m.is_stopped());
    assert_eq!(emitted(m.push("more")), "");
    assert_eq!(m.finish(), StopScan::Emit(String::new()));
}

#[test]
fn held_text_is_released_when_it_stops_matching() {
    let mut m = matcher(&["###"]);
    assert_eq!(emitted(m.push("a#")), "a");
    assert_eq!(emitted(m.push("#b")), "##b");
}

#[test]
fn finish_flushes_held_text() {
    let mut m = matcher(&["</s>"]);
    assert_eq!(emitted(m.push("end </")), "end ");
    assert_eq!(m.finish(), StopScan::Emit("</".into()));
}

#[test]
fn earliest_stop_wins_and_reports_its_index() {
    let mut m = matcher(&["world", "lo w"]);
    assert_eq!(
        m.push("hello world"),
        StopScan::Stop {
            text: "hel".to_owned(),
            stop_index: 1
        }
    );
}

#[test]
fn multibyte_stop_strings_match_across_chunks() {
    let mut m = matcher(&["日本"]);
    assert_eq!(emitted(m.push("café 日")), "café ");
    assert_eq!(
        m.push("本語"),
        StopScan::Stop {
            text: String::new(),
            stop_index: 0
        }
    );
}

#[test]
fn no_stops_emits_everything_at_once() {
    let mut m = StopMatcher::new(&[String::new()]);
    assert_eq!(emitted(m.push("abc")), "abc");
    assert_eq!(m.finish(), StopScan::Emit(String::new()));
}

/// Text over a small alphabet (with multi-byte chars) so stop strings occur often.
fn small_alphabet_text(max_len: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!['a', 'b', '#', 'é', '日', ' ']),
        0..max_len,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// Splits `text` at the given char positions (chosen by index into its char boundaries).
fn chunk(text: &str, cuts: &[prop::sample::Index]) -> Vec<String> {
    let mut boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    boundaries.push(text.len());
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| boundaries[c.index(boundaries.len())])
        .collect();
    points.extend([0, text.len()]);
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| text[w[0]..w[1]].to_owned())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn output_is_text_truncated_at_first_stop_for_any_chunking(
        text in small_alphabet_text(40),
        stops in prop::collection::vec(small_alphabet_text(4).prop_filter("non-empty", |s| !s.is_empty()), 1..4),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let first = stops.iter().filter_map(|s| text.find(s.as_str())).min();
        let expected = &text[..first.unwrap_or(text.len())];
        let mut m = StopMatcher::new(&stops);
        let mut output = String::new();
        let mut stopped_with = None;
        for piece in chunk(&text, &cuts) {
            match m.push(&piece) {
                StopScan::Emit(emit) => {
                    prop_assert!(stopped_with.is_none() || emit.is_empty());
                    output.push_str(&emit);
                }
                StopScan::Stop { text, stop_index } => {
                    prop_assert!(stopped_with.is_none());
                    output.push_str(&text);
                    stopped_with = Some(stop_index);
                }
            }
            // Whatever was emitted so far can never be retracted, so it must be a prefix.
            prop_assert!(expected.starts_with(&output), "emitted {:?} beyond {:?}", output, expected);
        }
        match m.finish() {
            StopScan::Emit(rest) => output.push_str(&rest),
            StopScan::Stop { text, stop_index } => {
                prop_assert!(stopped_with.is_none());
                output.push_str(&text);
                stopped_with = Some(stop_index);
            }
        }
        prop_assert_eq!(&output, expected);
        match stopped_with {
            Some(index) => prop_assert!(text[output.len()..].starts_with(stops[index].as_str())),
            None => prop_assert!(first.is_none()),
        }
    }
}

#[test]
fn a_longer_stop_starting_earlier_wins_over_a_shorter_one_completed_first() {
    // Found by the property test: " " completes at byte 1 while "a 日" (starting at 0) is still open.
    let stops = vec![" ".to_string(), "a 日".to_string()];
    let mut m = StopMatcher::new(&stops);
    assert_eq!(m.push("a "), StopScan::Emit(String::new()));
    assert_eq!(m.push("日"), StopScan::Stop { text: String::new(), stop_index: 1 });
    // If the stream ends before the longer stop completes, the shorter match still applies.
    let mut m = StopMatcher::new(&stops);
    assert_eq!(m.push("a "), StopScan::Emit(String::new()));
    assert_eq!(m.finish(), StopScan::Stop { text: "a".into(), stop_index: 0 });
}
