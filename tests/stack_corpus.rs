//! Stack parsing against public corpora: error-stack-parser's fixtures (exact frames), workerd's
//! tail-worker test expectations, and real TraceItems captured from `wrangler dev`.

mod common;

use selfheal::eval::stacks;
use selfheal::stack::{Frame, panic_location, parse_stack, top_in_app_frame};
use serde_json::Value;

#[test]
fn error_stack_parser_fixtures() {
    let Some(dir) = common::shared_data_or_skip("stacktraces", "stack_corpus") else {
        return;
    };
    let data = dir.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let ev = stacks::evaluate(&data).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", ev.render());
    assert_eq!(ev.fixtures + ev.out_of_scope, 24);
    assert_eq!(ev.out_of_scope, stacks::OUT_OF_SCOPE.len());
    assert!(ev.goals_met(), "{:?}", ev.mismatches);
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
