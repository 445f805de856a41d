//! The `selfheal` binary, run as a user runs it: JSON Lines in, one JSON line out per input line,
//! in order, errors on their own line without stopping the run, and the same results as the
//! library functions the Workers call.

mod common;

use std::process::Output;

use selfheal::config::PipelineConfig;
use selfheal::event::{Verdict, process_item};
use selfheal::normalize::normalize_message;
use selfheal::trace::TraceItem;
use serde_json::{Value, json};

const LABELLED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/trace-items/labelled.json"
);

fn run(args: &[&str], stdin: &[u8]) -> Output {
    common::run_selfheal(args, stdin)
}

fn lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("output line is JSON"))
        .collect()
}

/// An output line that is `{"error": …}` naming `what`.
fn assert_error(line: &Value, what: &str) {
    let e = line["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error line: {line}"));
    assert!(e.contains(what), "{e:?} does not name {what:?}");
}

#[test]
fn scrub_one_line_out_per_line_in_and_errors_do_not_stop_the_run() {
    let token = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
    let mut input = Vec::new();
    input.extend_from_slice(
        format!(
            "{}\n",
            json!({"text": format!("auth for bob@example.com with {token}")})
        )
        .as_bytes(),
    );
    input.extend_from_slice(b"not json\n");
    input.extend_from_slice(b"{\"message\": \"wrong field\"}\n");
    input.extend_from_slice(b"\xff\xfe broken utf-8\n");
    input.extend_from_slice(format!("{}\r\n", json!({"text": "nothing secret here"})).as_bytes());
    let out = lines(&run(&["scrub"], &input));
    assert_eq!(out.len(), 5, "{out:?}");

    let text = out[0]["text"].as_str().expect("text");
    assert!(
        !text.contains(token) && !text.contains("bob@example.com"),
        "{text}"
    );
    let remarks = out[0]["remarks"].as_array().expect("remarks");
    let rules: Vec<&str> = remarks.iter().filter_map(|r| r["rule"].as_str()).collect();
    assert!(rules.contains(&"@email"), "{rules:?}");
    for r in remarks {
        let (s, e) = (
            r["start"].as_u64().expect("start") as usize,
            r["end"].as_u64().expect("end") as usize,
        );
        assert!(text[s..e].starts_with("[redacted:"), "{r} in {text}");
    }
    assert_error(&out[1], "invalid JSON");
    assert_error(&out[2], "\"text\"");
    assert_error(&out[3], "UTF-8");
    assert_eq!(
        out[4],
        json!({"text": "nothing secret here", "remarks": []})
    );
}

#[test]
fn normalize_matches_the_library() {
    let messages = [
        "user 12345 failed at 10.0.0.1",
        "Cannot read properties of undefined (reading 'id')",
        "order 3f2504e0-4f89-11d3-9a0c-0305e82c3301 not found",
        "",
    ];
    let input: String = messages
        .iter()
        .map(|m| format!("{}\n", json!({ "message": m })))
        .collect();
    let out = lines(&run(&["normalize"], input.as_bytes()));
    assert_eq!(out.len(), messages.len());
    for (m, o) in messages.iter().zip(&out) {
        assert_eq!(o, &json!({ "normalized": normalize_message(m) }));
    }
    assert_eq!(out[0]["normalized"], "user <int> failed at <ip>");
}

/// `normalize` writes its line without building a `Value`: the bytes must still be valid JSON
/// that round-trips the library's output, through escapes in and out, error lines, CRLF and a
/// last line without its newline.
#[test]
fn normalize_escapes_errors_and_line_ends() {
    let tricky = "say \"hi\"\tto C:\\Users\\x — \u{1F600} \u{7} at 10:00:01 it\"s a\\b";
    let mut input = format!("{}\r\n", json!({ "message": tricky })).into_bytes();
    input.extend_from_slice(b"not json\n\n{\"text\": \"wrong field\"}\n\xff\xfe\n");
    input.extend_from_slice(json!({ "message": "last 42" }).to_string().as_bytes());
    let out = lines(&run(&["normalize"], &input));
    assert_eq!(out.len(), 6, "{out:?}");
    assert_eq!(out[0], json!({ "normalized": normalize_message(tricky) }));
    // a quote and a backslash the normalizer keeps: the output had to escape them
    assert!(
        out[0]["normalized"]
            .as_str()
            .expect("normalized")
            .ends_with("it\"s a\\b")
    );
    assert_error(&out[1], "invalid JSON");
    assert_error(&out[2], "invalid JSON");
    assert_error(&out[3], "\"message\"");
    assert_error(&out[4], "UTF-8");
    assert_eq!(out[5], json!({ "normalized": "last <int>" }));
}

#[test]
fn fingerprint_matches_the_tail_pipeline() {
    let all: Value =
        serde_json::from_str(&std::fs::read_to_string(LABELLED).expect("fixture")).expect("json");
    let items: Vec<Value> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["traceItem"].clone())
        .collect();
    let mut input: String = items.iter().map(|i| format!("{i}\n")).collect();
    input.push_str("[1, 2]\n");
    let out = lines(&run(
        &["fingerprint", "--script-name", "producer"],
        input.as_bytes(),
    ));
    assert_eq!(out.len(), items.len() + 1);

    let cfg = PipelineConfig::from_vars(Some("producer"), None, None).expect("cfg");
    let (mut events, mut noise) = (0, 0);
    for (item, o) in items.iter().zip(&out) {
        let item: TraceItem = serde_json::from_value(item.clone()).expect("TraceItem");
        match process_item(&item, &cfg, 0) {
            Verdict::Event(e) => {
                events += 1;
                assert_eq!(o["noise"], false);
                assert_eq!(o["fingerprint"], e.fingerprint.as_str());
                assert_eq!(
                    o["components"],
                    serde_json::to_value(&e.components).expect("c")
                );
            }
            Verdict::Noise(reason) => {
                noise += 1;
                assert_eq!(o["noise"], true);
                assert_eq!(o["fingerprint"], Value::Null);
                assert_eq!(o["noise_reason"], serde_json::to_value(reason).expect("r"));
            }
        }
    }
    assert!(events > 0 && noise > 0, "events {events}, noise {noise}");
    assert!(
        out[items.len()]["error"]
            .as_str()
            .expect("error")
            .contains("TraceItem")
    );
}

#[test]
fn fingerprint_rejects_a_bad_ignore_pattern_before_reading() {
    let out = run(&["fingerprint", "--ignore-messages", "[\"(\"]"], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SELFHEAL_IGNORE_MESSAGES"));
}

#[test]
fn every_command_has_help() {
    for cmd in ["scrub", "normalize", "fingerprint", "eval"] {
        let out = run(&[cmd, "--help"], b"");
        assert!(out.status.success(), "{cmd}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Usage: selfheal"), "{cmd}: {help}");
    }
    let out = run(&["scrub", "--help"], b"");
    assert!(String::from_utf8_lossy(&out.stdout).contains("{\"text\": \"...\"}"));
}

#[test]
fn eval_without_corpora_says_it_skipped() {
    let out = run(&["eval", "--data", "/nonexistent/selfheal-corpora"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SKIPPED"));
}

#[test]
fn eval_json_has_every_section() {
    let Some(data) = common::shared_data_or_skip("", "cli eval") else {
        return;
    };
    let data = data.to_string_lossy().to_string();
    let out = run(&["eval", "--json", "--data", &data], b"");
    let v: Value = serde_json::from_slice(&out.stdout).expect("eval --json is one JSON document");
    assert_eq!(v["scrub"]["sources"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["grouping"]["systems"].as_array().map(Vec::len), Some(16));
    assert!(v["stacks"]["fixtures"].as_u64().is_some_and(|n| n > 0));
    let text = run(&["eval", "--data", &data], b"");
    let text = String::from_utf8_lossy(&text.stdout);
    for heading in [
        "== Scrubbing",
        "== Grouping Accuracy",
        "== Stack parsing",
        "goals:",
    ] {
        assert!(text.contains(heading), "{heading} missing");
    }
}
