//! `selfheal group` run as a user runs it: JSON Lines in, one `{"group", "fingerprint"}` line per
//! valid input line in input order, malformed lines reported by number and skipped (exit 1), and
//! the same result as the library's [`selfheal::signal::grouping::group_events`].

use std::process::Output;

use selfheal::signal::grouping::{GroupInput, MinerConfig, group_events};
use serde_json::{Value, json};

mod common;

fn run(stdin: &[u8]) -> Output {
    common::run_selfheal(&["group"], stdin)
}

fn out_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("output line is JSON"))
        .collect()
}

/// Runs `selfheal group` on valid input: it must succeed; its output lines.
fn grouped(input: &str) -> Vec<Value> {
    let out = run(input.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out_lines(&out)
}

fn event(message: &str, route: &str) -> Value {
    json!({"message": message, "exception_type": "Error", "script": "api", "route": route,
           "status_class": "5xx"})
}

#[test]
fn one_line_per_input_in_order_keyed_by_first_member() {
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let mut input = String::new();
    for u in users {
        input += &format!(
            "{}\n",
            event(&format!("Permission denied for user {u}"), "/a")
        );
    }
    input += &format!("{}\n", event("Permission denied for user gina", "/b"));
    let v = grouped(&input);
    assert_eq!(v.len(), 7);
    let first = v[0]["fingerprint"].as_str().expect("fingerprint");
    for line in &v[..6] {
        assert_eq!(line["group"], first, "{line}");
    }
    // Six names are six fingerprints (words stay in the fingerprint) but one group.
    let mut fps: Vec<&str> = v[..6]
        .iter()
        .filter_map(|l| l["fingerprint"].as_str())
        .collect();
    fps.dedup();
    assert_eq!(fps.len(), 6);
    // No frame: the route keys the bucket, so /b is its own group.
    assert_eq!(v[6]["group"], v[6]["fingerprint"]);

    let inputs: Vec<GroupInput> = input
        .lines()
        .map(|l| GroupInput::parse(l).expect("valid"))
        .collect();
    let lib = group_events(&inputs, &MinerConfig::default());
    for (l, o) in lib.iter().zip(&v) {
        assert_eq!(o["group"], l.group.as_str());
        assert_eq!(o["fingerprint"], l.fingerprint.as_str());
    }
}

#[test]
fn malformed_lines_are_named_counted_and_skipped() {
    let input = format!(
        "{}\nnot json\n\n{{\"route\": \"/x\"}}\n{}\nX\n",
        event("boom 1", "/x"),
        event("boom 2", "/x")
    );
    let mut bytes = input.into_bytes();
    // Make the last line invalid UTF-8.
    let n = bytes.len();
    bytes[n - 2] = 0xff;
    let out = run(&bytes);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2:"), "{err}");
    assert!(err.contains("line 4:") && err.contains("message"), "{err}");
    assert!(err.contains("line 6:") && err.contains("UTF-8"), "{err}");
    assert!(err.contains("3 malformed line(s) skipped"), "{err}");
    let v = out_lines(&out);
    assert_eq!(v.len(), 2, "the two valid lines are kept");
    assert_eq!(v[0]["group"], v[1]["group"]);
}

/// One missing-validation bug (a handler calling `request.json()` on whatever the client sent),
/// hit with a dozen malformed bodies: V8 words each failure its own way, so the fingerprints
/// differ, but the group is one. A second bug on the same route (a property read on undefined)
/// stays its own group, and two different properties are two groups.
#[test]
fn a_dozen_malformed_bodies_are_one_group_and_other_bugs_stay_apart() {
    let malformed = [
        "Unexpected end of JSON input",
        "Unexpected token 'o', \"not json\" is not valid JSON",
        "Unexpected token '<', \"<html><bod\"... is not valid JSON",
        "Unexpected token ',', ...\" 3, 4, , 6\"... is not valid JSON",
        "Expected property name or '}' in JSON at position 1 (line 1 column 2)",
        "Expected ',' or '}' after property value in JSON at position 14 (line 1 column 15)",
        "Expected ',' or ']' after array element in JSON at position 7 (line 1 column 8)",
        "Expected double-quoted property name in JSON at position 12 (line 1 column 13)",
        "Unexpected non-whitespace character after JSON at position 13 (line 1 column 14)",
        "Unterminated string in JSON at position 20 (line 1 column 21)",
        "Bad control character in string literal in JSON at position 5 (line 1 column 6)",
        "\"[object Object]\" is not valid JSON",
    ];
    let frame = "Object.fetch (src/index.js)";
    let mut input = String::new();
    for m in malformed {
        let e = json!({"message": m, "exception_type": "SyntaxError", "script": "api",
                       "route": "POST /orders", "top_frame": frame, "status_class": "5xx"});
        input += &format!("{e}\n");
    }
    for p in ["email", "email", "id"] {
        let e = json!({"message": format!("Cannot read properties of undefined (reading '{p}')"),
                       "exception_type": "TypeError", "script": "api", "route": "POST /orders",
                       "top_frame": frame, "status_class": "5xx"});
        input += &format!("{e}\n");
    }
    let v = grouped(&input);
    assert_eq!(v.len(), 15);
    let mut fps: Vec<&str> = v[..12]
        .iter()
        .filter_map(|l| l["fingerprint"].as_str())
        .collect();
    fps.sort_unstable();
    fps.dedup();
    assert!(
        fps.len() >= 10,
        "the wordings are distinct fingerprints: {}",
        fps.len()
    );
    for line in &v[..12] {
        assert_eq!(line["group"], v[0]["group"], "{line}");
    }
    assert_eq!(v[12]["group"], v[13]["group"]);
    assert_ne!(v[12]["group"], v[0]["group"]);
    assert_ne!(v[14]["group"], v[12]["group"]);
}
