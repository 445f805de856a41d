//! Stack parsing on `stacktraces/`: error-stack-parser's fixtures (exact frames: function, file,
//! line, column, and the top frame) and workerd's own tail-worker test exceptions (an in-app top
//! frame in every one).
//!
//! Fixture rows carry `id`, `stack`, `expected_frame_count`, `expected_frames` (objects with
//! `functionName`, `fileName`, `lineNumber`, `columnNumber`) and `expected_fields`
//! (`[index, field, value]` triples).

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::{EvalError, read_jsonl, str_at};
use crate::stack::{Frame, parse_stack, top_in_app_frame};

/// Fixtures without a `stack`: error-stack-parser reads them from Opera's `stacktrace` /
/// `opera#sourceloc` fields, which no runtime we see (V8 in workerd) produces. Out of scope.
pub const OUT_OF_SCOPE: &[&str] = &["OPERA_927", "OPERA_10"];

/// Stack parsing results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StackEval {
    /// error-stack-parser fixtures in scope.
    pub fixtures: usize,
    /// Fixtures whose every frame matches exactly.
    pub exact: usize,
    /// Fixtures whose top frame matches.
    pub top_frame: usize,
    /// Fixtures left out ([`OUT_OF_SCOPE`]) or without a stack.
    pub out_of_scope: usize,
    /// `id: what differs` for each fixture that is not exact.
    pub mismatches: Vec<String>,
    /// workerd tail exceptions with a stack.
    pub workerd_exceptions: usize,
    /// Of those, how many have an in-app top frame with file, line and column.
    pub workerd_top_in_app: usize,
}

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

/// Compares one fixture: (problems, top frame right).
fn check_fixture(fx: &Value, stack: &str) -> (Vec<String>, bool) {
    let frames = parse_stack(stack);
    let mut problems = Vec::new();
    let want_count = fx
        .get("expected_frame_count")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
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
    let mut top_ok = expected.first().is_none_or(|w| frames.first() == Some(w));
    for f in fx
        .get("expected_fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let idx = f
            .get(0)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        let name = f.get(1).and_then(Value::as_str).unwrap_or("");
        let want = f.get(2).cloned().unwrap_or(Value::Null);
        let got = frames.get(idx).map_or(Value::Null, |fr| field(fr, name));
        if got != want {
            problems.push(format!("frame {idx}.{name}: got {got}, want {want}"));
            if idx == 0 {
                top_ok = false;
            }
        }
    }
    (problems, top_ok && !frames.is_empty())
}

/// Evaluates the fixtures under `data/stacktraces/`.
///
/// Errors: a corpus file is missing or a line is not JSON.
pub fn evaluate(data: &Path) -> Result<StackEval, EvalError> {
    let dir = data.join("stacktraces");
    let mut ev = StackEval::default();
    for fx in read_jsonl(&dir.join("error_stack_parser_fixtures.jsonl"))? {
        let id = fx.get("id").and_then(Value::as_str).unwrap_or("?");
        let stack = fx.get("stack").and_then(Value::as_str);
        let Some(stack) = stack.filter(|_| !OUT_OF_SCOPE.contains(&id)) else {
            ev.out_of_scope += 1;
            continue;
        };
        ev.fixtures += 1;
        let (problems, top_ok) = check_fixture(&fx, stack);
        ev.top_frame += usize::from(top_ok);
        if problems.is_empty() {
            ev.exact += 1;
        } else {
            ev.mismatches.push(format!("{id}: {}", problems.join("; ")));
        }
    }
    for ex in read_jsonl(&dir.join("workerd_tail_exceptions.jsonl"))? {
        let stack = str_at(&ex, "stack");
        if stack.is_empty() {
            continue;
        }
        ev.workerd_exceptions += 1;
        let frames = parse_stack(stack);
        if top_in_app_frame(&frames).is_some_and(|f| f.line.is_some() && f.column.is_some()) {
            ev.workerd_top_in_app += 1;
        }
    }
    Ok(ev)
}

impl StackEval {
    /// Every in-scope fixture exact, and every workerd exception with an in-app top frame.
    pub fn goals_met(&self) -> bool {
        self.fixtures > 0
            && self.exact == self.fixtures
            && self.top_frame == self.fixtures
            && self.workerd_top_in_app == self.workerd_exceptions
    }

    /// The figures and each mismatch.
    pub fn render(&self) -> String {
        let mut o = String::from(
            "== Stack parsing (stacktraces/)\n\
             goal: every in-scope fixture exact (function, file, line, column) and its top frame right\n",
        );
        o += &format!(
            "error-stack-parser fixtures: {}/{} exact, {}/{} top frame ({} out of scope: Opera's non-stack fields)\n",
            self.exact, self.fixtures, self.top_frame, self.fixtures, self.out_of_scope
        );
        o += &format!(
            "workerd tail exceptions:     {}/{} with an in-app top frame (file, line, column)\n",
            self.workerd_top_in_app, self.workerd_exceptions
        );
        for m in &self.mismatches {
            o += &format!("  MISMATCH {m}\n");
        }
        o
    }
}
