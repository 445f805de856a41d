//! Helpers shared by the native integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Path of a file or folder in the public corpora of `../shared/data/` (beside the repository),
/// or `None` when the folder is absent (a clone without `../shared`).
///
/// `SELFHEAL_SHARED_DATA` overrides the location. A suite that gets `None` must print that it
/// skipped and return, so a clone without the corpora still passes.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let path = selfheal::eval::data_dir(None)?.join(rel);
    path.exists().then_some(path)
}

/// Like [`shared_data`], but prints a clear skip line when the corpus is missing.
pub fn shared_data_or_skip(rel: &str, suite: &str) -> Option<PathBuf> {
    let found = shared_data(rel);
    if found.is_none() {
        eprintln!(
            "SKIPPED {suite}: ../shared/data/{rel} not found (set SELFHEAL_SHARED_DATA to run it)"
        );
    }
    found
}

/// Reads a JSON Lines file into values ([`selfheal::eval::read_jsonl`]); a file that cannot be
/// read or a line that does not parse fails the test with its path and line number.
pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    selfheal::eval::read_jsonl(path).unwrap_or_else(|e| panic!("{e}"))
}

/// Appends every string inside a JSON value (object values, array items, nested), in document
/// order: the texts the oracle-diff suites feed to both implementations.
pub fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Runs the `selfheal` binary with `args`, `stdin` on its standard input; its output and status.
pub fn run_selfheal(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn selfheal");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}
