//! Bounded work on pathological input: every hostile TraceItem below is processed with its
//! output fields cut to their documented maximum, with a visible truncation marker and an
//! `@truncate` remark, and never fails the batch it is in. Each hostile item shares its batch
//! with a plain item, which must come out as an event too.
//!
//! The assertions are on sizes, markers and counts, never on timings. Work is bounded by the
//! documented limits: [`MAX_TEXT_BYTES`] per scrubbed text, [`MAX_MESSAGE_BYTES`] per stored
//! message or log line, [`MAX_FRAMES`] per parsed stack, [`MAX_HEADERS`] per request, and
//! [`MAX_REMARKS`] per event.

use selfheal::config::PipelineConfig;
use selfheal::event::{
    Event, MAX_LOG_LINES, MAX_MESSAGE_BYTES, MAX_REMARKS, MAX_STACK_LINES, process_batch,
};
use selfheal::normalize::{MAX_INPUT_BYTES, normalize_message};
use selfheal::route::{MAX_SEGMENTS, MAX_URL_BYTES, route_pattern};
use selfheal::scrub::{MAX_HEADERS, MAX_TEXT_BYTES, TRUNCATION_MARKER, scrub_text, scrub_url};
use selfheal::stack::{MAX_FRAMES, parse_stack, top_in_app_frame};
use selfheal::trace::parse_batch;
use serde_json::{Value, json};

const MB: usize = 1024 * 1024;

/// A plain, healthy-looking failing item: an uncaught exception with a short stack.
fn plain_item() -> Value {
    json!({
        "outcome": "exception",
        "eventTimestamp": 1_795_269_986_919u64,
        "event": {"request": {"url": "https://api.example.com/users/42", "method": "GET", "headers": {}}},
        "exceptions": [{"name": "TypeError", "message": "x is undefined",
                        "stack": "    at getUser (file:///srv/app/index.js:10:15)", "timestamp": 1}],
        "logs": []
    })
}

/// `[hostile, plain]` through the whole pipeline; both must be events. Returns the hostile one.
fn run_with_plain(hostile: Value) -> Event {
    let batch = serde_json::to_string(&json!([hostile, plain_item()])).expect("serializes");
    run_text_with_plain(&batch)
}

/// Like [`run_with_plain`] on batch text (for escapes `serde_json` would not write).
fn run_text_with_plain(batch: &str) -> Event {
    let (events, counts) = process_batch(batch, &PipelineConfig::default(), 0)
        .expect("a hostile item never fails the batch");
    assert_eq!(counts.items, 2, "{counts:?}");
    assert_eq!(counts.malformed, 0, "{counts:?}");
    assert_eq!(counts.events, 2, "{counts:?}");
    assert_eq!(events[1].components.exception_type, "TypeError");
    let e = events.into_iter().next().expect("two events");
    assert_invariants(&e);
    e
}

/// What must hold for every event, hostile or not.
fn assert_invariants(e: &Event) {
    assert!(
        e.message.len() <= MAX_MESSAGE_BYTES,
        "message {}",
        e.message.len()
    );
    assert!(e.logs.len() <= MAX_LOG_LINES);
    for l in &e.logs {
        assert!(l.len() <= MAX_MESSAGE_BYTES, "log line {}", l.len());
    }
    // the excerpt, plus one marker line when lines were dropped
    assert!(e.stack.lines().count() <= MAX_STACK_LINES + 1);
    assert!(
        e.remarks.len() <= MAX_REMARKS,
        "remarks {}",
        e.remarks.len()
    );
    // remarks on the stored text fields point inside them, at char boundaries
    for r in &e.remarks {
        let value = match r.field.as_str() {
            "error.message" => &e.message,
            "error.stack" => &e.stack,
            "request.url" => e.url.as_deref().unwrap_or(""),
            _ => continue,
        };
        assert!(
            r.start <= r.end && value.get(r.start..r.end).is_some(),
            "{r:?} outside {} bytes",
            value.len()
        );
    }
    assert!(e.components.route.split('/').count() <= MAX_SEGMENTS + 1);
    if let Some(h) = e.request.get("headers").and_then(Value::as_object) {
        assert!(h.len() <= MAX_HEADERS + 1, "headers {}", h.len());
    }
}

/// The `@truncate` remark of `field` covers the marker at the end of `value`.
fn assert_truncated(e: &Event, field: &str, value: &str) {
    assert!(value.ends_with(TRUNCATION_MARKER), "{field}: no marker");
    let r = e
        .remarks
        .iter()
        .find(|r| r.field == field && r.rule == "@truncate")
        .unwrap_or_else(|| panic!("{field}: no @truncate remark in {:?}", e.remarks));
    assert_eq!(value.get(r.start..r.end), Some(TRUNCATION_MARKER), "{r:?}");
}

#[test]
fn one_megabyte_exception_message() {
    let message = format!("boom for bob@example.com {}", "word ".repeat(MB / 5));
    let e = run_with_plain(json!({
        "outcome": "exception",
        "exceptions": [{"name": "Error", "message": message, "stack": "    at f (file:///srv/app/index.js:1:1)"}]
    }));
    assert!(e.message.starts_with("boom for [redacted:email] word"));
    assert!(e.message.len() <= MAX_MESSAGE_BYTES);
    assert_truncated(&e, "error.message", &e.message);
    assert!(e.components.message.len() <= 4 * MAX_MESSAGE_BYTES);
    assert_eq!(e.components.top_frame, "f (/srv/app/index.js)");
}

#[test]
fn one_megabyte_console_error_argument() {
    let arg = format!("token=abc123def456 {}", "é".repeat(MB / 2));
    let e = run_with_plain(json!({
        "outcome": "ok",
        "logs": [{"level": "error", "message": [arg], "timestamp": 1}]
    }));
    assert_eq!(e.components.exception_type, "ConsoleError");
    assert_truncated(&e, "error.message", &e.message);
    assert_eq!(e.logs.len(), 1);
    assert!(
        e.logs[0].starts_with("[error] token=[redacted:"),
        "{}",
        &e.logs[0][..40]
    );
    assert_truncated(&e, "logs[0]", &e.logs[0]);
}

#[test]
fn many_console_error_arguments() {
    let args: Vec<Value> = (0..100_000)
        .map(|i| json!(format!("u{i}@example.com")))
        .collect();
    let e = run_with_plain(json!({
        "outcome": "ok",
        "logs": [{"level": "error", "message": args}]
    }));
    assert_truncated(&e, "logs[0]", &e.logs[0]);
    assert!(!e.logs[0].contains("@example.com"));
}

#[test]
fn many_logs_and_exceptions() {
    let logs: Vec<Value> = (0..50_000)
        .map(|i| json!({"level": if i % 2 == 0 { "error" } else { "warn" }, "message": [format!("failed {i}")]}))
        .collect();
    let exceptions: Vec<Value> = (0..50_000)
        .map(|i| json!({"name": "Error", "message": format!("e{i}")}))
        .collect();
    let e = run_with_plain(json!({"outcome": "exception", "logs": logs, "exceptions": exceptions}));
    assert_eq!(e.message, "e0");
    assert_eq!(e.logs.len(), MAX_LOG_LINES);
}

#[test]
fn ten_thousand_stack_frames() {
    let stack: String = (0..10_000)
        .map(|i| format!("    at fn{i} (file:///srv/app/index.js:{i}:1)\n"))
        .collect();
    assert_eq!(parse_stack(&stack).len(), MAX_FRAMES);
    let e = run_with_plain(json!({
        "outcome": "exception",
        "exceptions": [{"name": "Error", "message": "deep recursion", "stack": stack}]
    }));
    assert_eq!(e.components.top_frame, "fn0 (/srv/app/index.js)");
    assert_eq!(e.stack.lines().count(), MAX_STACK_LINES + 1);
    assert!(
        e.stack
            .starts_with("    at fn0 (file:///srv/app/index.js:0:1)\n")
    );
    assert_truncated(&e, "error.stack", &e.stack);

    // the same frames in one line, and as a wasm trap message with the stack inline
    let one_line = stack.replace('\n', " ");
    assert!(parse_stack(&one_line).len() <= 1);
    let e = run_with_plain(json!({
        "outcome": "exception",
        "exceptions": [{"name": "RuntimeError", "message": format!("unreachable\n{stack}")}]
    }));
    assert_eq!(e.message, "unreachable");
    assert_eq!(e.components.top_frame, "fn0 (/srv/app/index.js)");
}

#[test]
fn rust_panic_with_huge_body() {
    let text = format!(
        "panicked at src/lib.rs:10:5:\n{}\n\nStack:\n{}",
        "x".repeat(MB),
        "    at f (wasm://wasm/m:wasm-function[1]:0x1)\n".repeat(10_000)
    );
    let e = run_with_plain(json!({
        "outcome": "exception",
        "logs": [{"level": "error", "message": [text]}]
    }));
    assert_eq!(e.components.exception_type, "RustPanic");
    assert_eq!(e.components.top_frame, "<anonymous> (src/lib.rs)");
    assert_truncated(&e, "error.message", &e.message);
}

/// `[[[…]]]` nested `depth` deep.
fn nested_array(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn nesting_deeper_than_serde_json_allows_is_one_malformed_item() {
    // serde_json stops at 128 levels; a log argument 10,000 deep must cost only its own item.
    for depth in [200, 10_000] {
        let deep = format!(
            r#"{{"outcome":"ok","logs":[{{"level":"error","message":[{}]}}]}}"#,
            nested_array(depth)
        );
        let plain = plain_item().to_string();
        let batch = format!("[{plain},{deep},{plain}]");
        let parsed = parse_batch(&batch).expect("still a batch");
        assert_eq!(parsed.items.len(), 2, "depth {depth}");
        assert_eq!(parsed.malformed.len(), 1);
        assert_eq!(parsed.malformed[0].index, 1);
        assert!(parsed.malformed[0].error.contains("recursion limit"));
        assert_eq!(parsed.items[1].0, 2);
        let (events, counts) = process_batch(&batch, &PipelineConfig::default(), 0).expect("batch");
        assert_eq!((counts.items, counts.events, counts.malformed), (3, 2, 1));
        assert_eq!(events.len(), 2);
    }
    // a batch that is itself one deep array: one malformed item, not a batch error
    let parsed = parse_batch(&nested_array(10_000)).expect("an array");
    assert_eq!((parsed.items.len(), parsed.malformed.len()), (0, 1));
    // an unterminated one is not a JSON array at all
    assert!(parse_batch(&format!("[{}", "[".repeat(10_000))).is_err());
}

#[test]
fn nesting_within_serde_json_limits_is_cut_at_max_json_depth() {
    let mut arg = json!({"password": "hunter2"});
    for _ in 0..100 {
        arg = json!([arg]);
    }
    let e = run_with_plain(
        json!({"outcome": "ok", "logs": [{"level": "error", "message": ["ctx", arg]}]}),
    );
    assert!(e.logs[0].contains("[truncated:depth]"), "{}", e.logs[0]);
    assert!(!e.logs[0].contains("hunter2"));
    assert!(!e.message.contains("hunter2"));
    assert!(
        e.remarks
            .iter()
            .any(|r| r.rule == "@truncate" && r.field.starts_with("logs[0].message[1]"))
    );
}

#[test]
fn lone_surrogates_are_replaced_not_fatal() {
    // JSON.stringify in workerd writes lone surrogates as `\udXXX` escapes; serde_json refuses
    // them in strings. The item must still be processed, with U+FFFD in their place.
    let hostile = r#"{"outcome":"exception","scriptName":"w\ud800","event":{"request":{"url":"https://x.io/a\udfff?q=\ud800","method":"GET","headers":{"user-agent":"ua\udc00","x-\ud800":"v"}}},"exceptions":[{"name":"Error","message":"bad \ud800 and \udc00x and \ud83d\ude00 and \\ud800 and \ud800\ud800 end","stack":"    at f\udbff (file:///srv/app/index.js:1:1)"}],"logs":[{"level":"warn","message":["\udfff",{"k\ud800":"\ud800"}]}]}"#;
    let batch = format!("[{hostile},{}]", plain_item());
    let e = run_text_with_plain(&batch);
    assert_eq!(
        e.message,
        "bad \u{fffd} and \u{fffd}x and \u{1f600} and \\ud800 and \u{fffd}\u{fffd} end"
    );
    assert_eq!(e.components.script, "w\u{fffd}");
    assert_eq!(e.components.top_frame, "f\u{fffd} (/srv/app/index.js)");
    assert_eq!(e.logs[0], "[warn] \u{fffd} {\"k\u{fffd}\":\"\u{fffd}\"}");
    assert_eq!(e.request["headers"]["user-agent"], "ua\u{fffd}");
}

#[test]
fn nul_and_control_characters() {
    let message: String = (0u8..0x20)
        .map(char::from)
        .chain(['\u{7f}', 'x', '\u{0}'])
        .collect();
    let e = run_with_plain(json!({
        "outcome": "exception",
        "scriptName": "\u{0}",
        "event": {"request": {"url": "https://x.io/\u{0}/\u{1}?a=\u{0}", "method": "\u{0}", "headers": {"\u{0}": "\u{0}"}}},
        "exceptions": [{"name": "\u{0}Error", "message": message, "stack": "\u{0}\n    at \u{0} (\u{0}:1:1)"}],
        "logs": [{"level": "error", "message": ["\u{0}", {"\u{0}": "\u{0}"}]}]
    }));
    assert_eq!(e.components.message, "x");
    assert_eq!(e.components.exception_type, "\u{0}Error");
}

#[test]
fn one_megabyte_url() {
    let url = format!(
        "https://u:p@api.example.com/{}?token=secret",
        "seg/".repeat(MB / 4)
    );
    let e = run_with_plain(json!({
        "outcome": "exception",
        "event": {"request": {"url": url, "method": "GET", "headers": {"referer": url}}},
        "exceptions": [{"name": "Error", "message": "m"}]
    }));
    let stored = e.url.clone().expect("url");
    assert!(stored.starts_with("https://[redacted:url_userinfo]@api.example.com/seg/"));
    assert!(!stored.contains("secret"));
    assert_truncated(&e, "request.url", &stored);
    let referer = e.request["headers"]["referer"].as_str().expect("referer");
    assert!(referer.ends_with(TRUNCATION_MARKER));
    assert!(e.components.route.len() <= MAX_URL_BYTES + MAX_SEGMENTS);
    assert_eq!(
        e.components.route.matches("/seg").count(),
        MAX_SEGMENTS,
        "{}",
        e.components.route
    );

    // the url helpers on their own
    let out = scrub_url(&url);
    assert!(out.text.ends_with(TRUNCATION_MARKER));
    assert!(route_pattern(&url).len() <= MAX_URL_BYTES + MAX_SEGMENTS);
    // (a value that is not benign: `a=b` would now stay visible, see scrub::benign_query_value)
    let query = format!("/x?{}", "a=b-1&".repeat(MB / 6));
    let out = scrub_url(&query);
    assert!(out.text.ends_with(TRUNCATION_MARKER));
    assert!(!out.text.contains("=b"));
}

#[test]
fn hundred_thousand_headers_and_cf_keys() {
    let mut headers = serde_json::Map::new();
    let mut cf = serde_json::Map::new();
    for i in 0..100_000 {
        headers.insert(format!("x-h{i}"), json!("v"));
        cf.insert(format!("k{i}"), json!(i));
    }
    headers.insert("user-agent".into(), json!("Mozilla/5.0"));
    cf.insert("colo".into(), json!("AMS"));
    let e = run_with_plain(json!({
        "outcome": "exception",
        "event": {"request": {"url": "/", "method": "GET", "headers": headers, "cf": cf}},
        "exceptions": [{"name": "Error", "message": "m"}]
    }));
    let h = e.request["headers"].as_object().expect("headers");
    assert_eq!(h.len(), MAX_HEADERS + 1);
    assert_eq!(
        h.get(TRUNCATION_MARKER),
        Some(&json!(100_001 - MAX_HEADERS))
    );
    assert!(
        e.remarks
            .iter()
            .any(|r| r.field == "request.headers" && r.rule == "@truncate")
    );
    assert_eq!(e.request["cf"], json!({"colo": "AMS"}));
}

#[test]
fn many_keys_that_scrub_to_the_same_text() {
    // 20,000 keys that are all emails: each becomes `[redacted:email]` and needs a distinct name.
    let mut obj = serde_json::Map::new();
    for i in 0..20_000 {
        obj.insert(format!("user{i}@example.com"), json!(i));
    }
    let e = run_with_plain(json!({
        "outcome": "ok",
        "logs": [{"level": "error", "message": ["users", obj]}]
    }));
    assert!(
        e.logs[0].starts_with("[error] users {\"[redacted:email]\":"),
        "{}",
        &e.logs[0][..60]
    );
    assert!(!e.logs[0].contains("@example.com"));
    assert_truncated(&e, "logs[0]", &e.logs[0]);
    let r = e.remarks.last().expect("remarks");
    assert_eq!(
        (r.field.as_str(), r.rule.as_str()),
        ("remarks", "@truncate")
    );
}

#[test]
fn scrub_and_normalize_bounds() {
    let big = "password=hunter2 ".repeat(MB / 16);
    let out = scrub_text(&big);
    assert!(out.text.ends_with(TRUNCATION_MARKER));
    let replaced: usize = out.remarks.iter().map(|r| r.end - r.start).sum();
    assert!(out.text.len() - replaced <= MAX_TEXT_BYTES);
    assert!(!out.text.contains("hunter2"));
    let n = normalize_message(&"''".repeat(MB));
    assert!(n.len() <= 4 * MAX_INPUT_BYTES, "{}", n.len());
}

#[test]
fn stack_parser_bounds() {
    let gecko = "f@http://x/a.js:1:1\n".repeat(10_000);
    assert_eq!(parse_stack(&gecko).len(), MAX_FRAMES);
    let long_line = format!("    at f (file:///{}:1:1)", "a".repeat(MB));
    assert!(parse_stack(&long_line).is_empty());
    let frames = parse_stack(&"    at node:internal (node:internal/x:1:1)\n".repeat(10_000));
    assert_eq!(frames.len(), MAX_FRAMES);
    assert!(top_in_app_frame(&frames).is_none());
}
