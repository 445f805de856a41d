//! Stack parsing against public corpora: error-stack-parser's fixtures (exact frames), workerd's
//! tail-worker test expectations, and real TraceItems captured from `wrangler dev`.

mod common;

use selfheal::stack::{Frame, panic_location, parse_stack, top_in_app_frame};
use serde_json::Value;

/// Fixtures without a `stack`: error-stack-parser reads them from Opera's `stacktrace` /
/// `opera#sourceloc` fields, which no runtime we see (V8 in workerd) produces. Out of scope.
const OUT_OF_SCOPE: &[&str] = &["OPERA_927", "OPERA_10"];

/// Fixtures that must match exactly (every one in scope, today).
const FLOOR_EXACT: usize = 22;

fn expected_frame(v: &Value) -> Frame {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let n = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|x| u32::try_from(x).ok())
    };
    Frame {
        function: s("functionName"),
        file: s("fileName"),
        line: n("lineNumber"),
        column: n("columnNumber"),
    }
}

fn field(frame: &Frame, name: &str) -> Value {
    match name {
        "functionName" => frame.function.clone().map_or(Value::Null, Value::from),
        "fileName" => frame.file.clone().map_or(Value::Null, Value::from),
        "lineNumber" => frame.line.map_or(Value::Null, Value::from),
        "columnNumber" => frame.column.map_or(Value::Null, Value::from),
        _ => Value::Null,
    }
}

#[test]
fn error_stack_parser_fixtures() {
    let Some(path) = common::shared_data_or_skip(
        "stacktraces/error_stack_parser_fixtures.jsonl",
        "stack_corpus",
    ) else {
        return;
    };
    let fixtures = common::read_jsonl(&path);
    let (mut in_scope, mut exact, mut top_ok) = (0, 0, 0);
    for fx in &fixtures {
        let id = fx.get("id").and_then(Value::as_str).unwrap_or("?");
        if OUT_OF_SCOPE.contains(&id) {
            eprintln!("{id}: out of scope (no stack field)");
            continue;
        }
        let Some(stack) = fx.get("stack").and_then(Value::as_str) else {
            panic!("{id}: in scope but has no stack");
        };
        in_scope += 1;
        let frames = parse_stack(stack);
        let mut problems = Vec::new();
        let want_count = fx
            .get("expected_frame_count")
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        if frames.len() != want_count {
            problems.push(format!("frame count {} != {want_count}", frames.len()));
        }
        let expected: Vec<Frame> = fx
            .get("expected_frames")
            .and_then(Value::as_array)
            .map_or_else(Vec::new, |a| a.iter().map(expected_frame).collect());
        for (k, want) in expected.iter().enumerate() {
            match frames.get(k) {
                Some(got) if got == want => {}
                got => problems.push(format!("frame {k}: got {got:?}, want {want:?}")),
            }
        }
        let mut top_matches = expected.first().is_none_or(|w| frames.first() == Some(w));
        for f in fx
            .get("expected_fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let idx = f.get(0).and_then(Value::as_u64).unwrap_or(0) as usize;
            let name = f.get(1).and_then(Value::as_str).unwrap_or("");
            let want = f.get(2).cloned().unwrap_or(Value::Null);
            let got = frames.get(idx).map_or(Value::Null, |fr| field(fr, name));
            if got != want {
                problems.push(format!("frame {idx}.{name}: got {got}, want {want}"));
                if idx == 0 {
                    top_matches = false;
                }
            }
        }
        if top_matches && !frames.is_empty() {
            top_ok += 1;
        }
        if problems.is_empty() {
            exact += 1;
        } else {
            eprintln!("{id}: MISMATCH\n  {}", problems.join("\n  "));
        }
    }
    eprintln!(
        "error-stack-parser fixtures: {exact}/{in_scope} exact, {top_ok}/{in_scope} top frame, {} out of scope",
        OUT_OF_SCOPE.len()
    );
    assert_eq!(in_scope, fixtures.len() - OUT_OF_SCOPE.len());
    assert!(exact >= FLOOR_EXACT, "exact {exact} < floor {FLOOR_EXACT}");
    assert_eq!(top_ok, in_scope);
}

#[test]
fn workerd_tail_exceptions() {
    let Some(path) =
        common::shared_data_or_skip("stacktraces/workerd_tail_exceptions.jsonl", "stack_corpus")
    else {
        return;
    };
    let mut keys = Vec::new();
    for ex in common::read_jsonl(&path) {
        let Some(stack) = ex.get("stack").and_then(Value::as_str) else {
            continue;
        };
        let frames = parse_stack(stack);
        assert_eq!(frames.len(), 1, "{stack}");
        let top = top_in_app_frame(&frames).unwrap_or_else(|| panic!("no in-app frame in {stack}"));
        assert_eq!(top.file.as_deref(), Some("worker"));
        assert!(top.line.is_some() && top.column.is_some());
        keys.push(top.key());
    }
    keys.sort();
    keys.dedup();
    eprintln!("workerd keys: {keys:?}");
    assert_eq!(
        keys,
        [
            "<anonymous> (worker)",
            "DurableObjectExample.fetch (worker)",
            "Function.<anonymous> (worker)",
            "Object.scheduled (worker)"
        ]
    );
}

fn labelled(label: &str) -> Option<Value> {
    let path = common::shared_data_or_skip("trace-items/labelled.json", "stack_corpus")?;
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let all: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let item = all
        .as_array()?
        .iter()
        .find(|x| x.get("label").and_then(Value::as_str) == Some(label))
        .cloned();
    Some(item.unwrap_or_else(|| panic!("label {label} missing")))
}

#[test]
fn trace_item_js_exception() {
    let Some(item) = labelled("js_uncaught_exception_no_bundle") else {
        return;
    };
    let stack = item
        .pointer("/traceItem/exceptions/0/stack")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let frames = parse_stack(stack);
    let top = top_in_app_frame(&frames).unwrap_or_else(|| panic!("no in-app frame"));
    assert_eq!(top.line, Some(6));
    assert_eq!(top.column, Some(15));
    assert_eq!(top.key(), "Object.fetch (/srv/app/producer/index.js)");
}

#[test]
fn trace_item_rust_panic() {
    let Some(item) = labelled("rust_panic") else {
        return;
    };
    // The exception's message holds the wasm stack after a `RuntimeError: unreachable` header.
    let message = item
        .pointer("/traceItem/exceptions/0/message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let frames = parse_stack(message);
    assert_eq!(frames.len(), 9, "{frames:#?}");
    assert!(
        frames
            .first()
            .and_then(|f| f.function.as_deref())
            .is_some_and(|f| f.contains("std[a543996e6e7dbf1e]::panicking"))
    );
    // Every frame is std/core/js_sys/wasm_bindgen or the dev bundle's JS glue: none is the user's.
    for f in &frames {
        assert!(!f.in_app(), "{f:?}");
    }
    assert_eq!(top_in_app_frame(&frames), None);
    // Keys survive a rebuild: no crate disambiguators, no symbol hashes, no module hash.
    let key0 = frames.first().map(Frame::key).unwrap_or_default();
    assert_eq!(
        key0,
        "std::panicking::panic_with_hook (wasm://wasm/cron_worker.wasm-*)"
    );
    assert_eq!(
        frames.get(2).map(Frame::key).unwrap_or_default(),
        "core::ops::function::FnOnce::call_once (wasm://wasm/cron_worker.wasm-*)"
    );

    // The panic message logged by workers-rs names the user's code.
    let logs = item
        .pointer("/traceItem/logs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let text = logs
        .iter()
        .filter_map(|l| l.pointer("/message/0").and_then(Value::as_str))
        .find(|m| m.contains("panicked at"))
        .unwrap_or_else(|| panic!("no panic log"));
    let loc = panic_location(text).unwrap_or_else(|| panic!("no location in {text}"));
    assert!(loc.in_app());
    assert_eq!(loc.key(), "<anonymous> (cron-worker/src/lib.rs)");
    assert_eq!((loc.line, loc.column), (Some(102), Some(13)));
    // Its stack (after "Stack:") parses too, and has no in-app frame either.
    let log_frames = parse_stack(text);
    assert_eq!(log_frames.len(), 11);
    assert_eq!(top_in_app_frame(&log_frames), None);
}

#[test]
fn all_trace_items_parse() {
    let Some(path) = common::shared_data_or_skip("trace-items/all.json", "stack_corpus") else {
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let all: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let mut n = 0;
    for x in all.as_array().into_iter().flatten() {
        for ex in x
            .pointer("/item/exceptions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let stack = ex
                .get("stack")
                .and_then(Value::as_str)
                .or_else(|| ex.get("message").and_then(Value::as_str))
                .unwrap_or("");
            let frames = parse_stack(stack);
            if let Some(top) = top_in_app_frame(&frames) {
                // The only in-app code of these captures is the producer's, never wrangler's bundle.
                assert!(!top.key().contains(".wrangler"), "{top:?}");
                n += 1;
            }
        }
    }
    eprintln!("trace items with an in-app frame: {n}");
    assert!(n > 0);
}
