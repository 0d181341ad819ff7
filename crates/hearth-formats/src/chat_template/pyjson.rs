//! JSON written the way Python's `json.dumps` writes it, for the `tojson` filter of chat templates:
//! `", "`/`": "` separators (`","` with an indent), non-ASCII kept, floats in Python's `repr` form.

use serde_json::Value;

/// `json.dumps` options that Hugging Face's `tojson` filter forwards.
#[derive(Debug, Clone, Default)]
pub(crate) struct DumpOptions {
    /// `None`: single line. `Some(s)`: one item per line, each level indented by `s`.
    pub indent: Option<String>,
    pub item_separator: Option<String>,
    pub key_separator: Option<String>,
    pub sort_keys: bool,
    pub ensure_ascii: bool,
}

pub(crate) fn dumps(value: &Value, opts: &DumpOptions) -> String {
    let default_item = if opts.indent.is_some() { "," } else { ", " };
    let writer = Writer {
        opts,
        item_sep: opts.item_separator.as_deref().unwrap_or(default_item),
        key_sep: opts.key_separator.as_deref().unwrap_or(": "),
    };
    let mut out = String::new();
    writer.write(value, 0, &mut out);
    out
}

struct Writer<'a> {
    opts: &'a DumpOptions,
    item_sep: &'a str,
    key_sep: &'a str,
}

impl Writer<'_> {
    fn write(&self, value: &Value, depth: usize, out: &mut String) {
        match value {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => out.push_str(&i.to_string()),
                (_, Some(u), _) => out.push_str(&u.to_string()),
                (_, _, Some(f)) => out.push_str(&py_float_repr(f)),
                _ => out.push_str(&n.to_string()),
            },
            Value::String(s) => self.write_str(s, out),
            Value::Array(items) => {
                let parts: Vec<String> = items.iter().map(|v| self.nested(v, depth + 1)).collect();
                self.write_container('[', ']', parts, depth, out);
            }
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                if self.opts.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                let parts = entries
                    .into_iter()
                    .map(|(k, v)| {
                        let mut part = String::new();
                        self.write_str(k, &mut part);
                        part.push_str(self.key_sep);
                        part.push_str(&self.nested(v, depth + 1));
                        part
                    })
                    .collect();
                self.write_container('{', '}', parts, depth, out);
            }
        }
    }

    fn nested(&self, value: &Value, depth: usize) -> String {
        let mut s = String::new();
        self.write(value, depth, &mut s);
        s
    }

    fn write_container(
        &self,
        open: char,
        close: char,
        parts: Vec<String>,
        depth: usize,
        out: &mut String,
    ) {
        out.push(open);
        if parts.is_empty() {
            out.push(close);
            return;
        }
        match &self.opts.indent {
            None => out.push_str(&parts.join(self.item_sep)),
            Some(unit) => {
                let inner = format!("\n{}", unit.repeat(depth + 1));
                out.push_str(&inner);
                out.push_str(&parts.join(&format!("{}{inner}", self.item_sep)));
                out.push('\n');
                out.push_str(&unit.repeat(depth));
            }
        }
        out.push(close);
    }

    fn write_str(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0C}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c if self.opts.ensure_ascii && !c.is_ascii() => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's `repr(float)`: shortest round-trip digits, fixed notation for exponents in [-4, 16),
/// otherwise `d.ddde+XX`.
pub(crate) fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. "-1.5e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e-7, "1.5e-07"),
            (123456.789, "123456.789"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e15, "1000000000000000.0"),
            (0.0, "0.0"),
        ];
        for (f, want) in cases {
            assert_eq!(py_float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn dumps_matches_python_layout() {
        let v: Value =
            serde_json::from_str(r#"{"b": [1, {"x": null}], "a": "é\n", "c": {}}"#).unwrap();
        assert_eq!(
            dumps(&v, &DumpOptions::default()),
            r#"{"b": [1, {"x": null}], "a": "é\n", "c": {}}"#
        );
        let indented = DumpOptions {
            indent: Some("  ".into()),
            sort_keys: true,
            ..Default::default()
        };
        assert_eq!(dumps(&v, &indented), "{\n  \"a\": \"é\\n\",\n  \"b\": [\n    1,\n    {\n      \"x\": null\n    }\n  ],\n  \"c\": {}\n}");
    }
}
