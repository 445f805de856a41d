//! `scrub_text` and `scrub_url` on any text; `scrub_json`, `scrub_headers` and `scrub_cf` on it
//! when it parses as JSON.
//!
//! Invariants (from the `scrub` module docs): remarks are in output order, do not overlap and
//! cover char-boundary ranges of the output; a replacement reads `[redacted:<kind>…]` with no
//! digit in it; input over `MAX_TEXT_BYTES` is cut and ends with `TRUNCATION_MARKER` under an
//! `@truncate` remark; the text outside the remarks is copied from the (cut) input, so it is at
//! most `MAX_TEXT_BYTES` long. JSON: nesting at most `MAX_JSON_DEPTH + 1` after scrubbing, no
//! object entry lost to key collisions; headers at most `MAX_HEADERS` plus the marker key; `cf`
//! keeps at most `colo`, `country`, `continent`. Scrubbing is deterministic. (Idempotence is
//! only checked on examples in the unit tests and not documented, so it is not asserted here.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::scrub::{
    MAX_HEADERS, MAX_JSON_DEPTH, MAX_TEXT_BYTES, Scrubbed, TRUNCATION_MARKER, scrub_cf,
    scrub_headers, scrub_json, scrub_text, scrub_url,
};
use serde_json::Value;

fn check(input: &str, out: &Scrubbed) {
    let mut last_end = 0;
    let mut replaced = 0;
    for r in &out.remarks {
        assert!(r.start <= r.end, "{r:?}");
        assert!(
            r.start >= last_end,
            "remarks overlap or are out of order: {:?}",
            out.remarks
        );
        let slice = out
            .text
            .get(r.start..r.end)
            .unwrap_or_else(|| panic!("{r:?} not a char range of {} bytes", out.text.len()));
        if r.rule == "@truncate" {
            assert_eq!(slice, TRUNCATION_MARKER);
        } else if !slice.is_empty() {
            assert!(
                slice.starts_with("[redacted:") && slice.ends_with(']'),
                "{slice:?}"
            );
            assert!(
                !slice.bytes().any(|b| b.is_ascii_digit()),
                "digit in {slice:?}"
            );
        }
        replaced += r.end - r.start;
        last_end = r.end;
    }
    let copied = out.text.len() - replaced;
    assert!(
        copied <= input.len().min(MAX_TEXT_BYTES),
        "copied {copied} of {}",
        input.len()
    );
    if input.len() > MAX_TEXT_BYTES {
        assert!(out.text.ends_with(TRUNCATION_MARKER));
        assert_eq!(
            out.remarks.last().map(|r| r.rule.as_str()),
            Some("@truncate")
        );
    }
}

fn nesting(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(nesting).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

fn entries(v: &Value) -> Option<usize> {
    match v {
        Value::Array(a) => Some(a.len()),
        Value::Object(m) => Some(m.len()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let out = scrub_text(text);
    check(text, &out);
    assert_eq!(scrub_text(text), out, "not deterministic");

    let url = scrub_url(text);
    check(text, &url);

    let Ok(mut value) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let before = entries(&value);
    let original = value.clone();
    let mut remarks = Vec::new();
    scrub_json(&mut value, "arg", &mut remarks);
    assert!(
        nesting(&value) <= MAX_JSON_DEPTH + 1,
        "nesting {}",
        nesting(&value)
    );
    assert_eq!(entries(&value), before, "entries lost");
    for r in &remarks {
        assert!(r.start <= r.end && r.field.starts_with("arg"), "{r:?}");
    }
    if let Some(map) = original.as_object() {
        let mut remarks = Vec::new();
        let headers = scrub_headers(map, "request.headers", &mut remarks);
        assert!(headers.len() <= MAX_HEADERS + 1);
        assert!(headers.len() <= map.len() + 1);
        let cf = scrub_cf(map);
        assert!(cf.len() <= 3);
        for (k, v) in &cf {
            assert!(matches!(k.as_str(), "colo" | "country" | "continent"));
            assert!(v.as_str().is_some_and(|s| s.chars().count() <= 16));
        }
    }
});
