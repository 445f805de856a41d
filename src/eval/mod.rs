//! Evaluations of the core against public corpora, run by `selfheal eval` and asserted by the
//! corpus test suites (`tests/*_corpus.rs`), so the printed tables and the CI gates are one code.
//!
//! The corpora live in `../shared/data/` beside the repository (see its `README.md` for sources and
//! licenses); they are read in place, never copied. Every evaluation calls exactly the functions the
//! Workers run ([`crate::scrub::scrub_text`], [`crate::normalize::normalize_message`],
//! [`crate::stack::parse_stack`]).
//!
//! - [`scrub`]: recall and precision of scrubbing on gitleaks, detect-secrets and presidio rows.
//! - [`grouping`]: Grouping Accuracy of the fingerprint and of the merge stage
//!   ([`crate::signal::grouping`]) on Loghub-2k next to Drain's and Brain's published figures, and on the
//!   JavaScript corpus of V8 error messages (`tests/fixtures/js-errors`).
//! - [`stacks`]: exact frames on error-stack-parser's fixtures and workerd's tail exceptions.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

pub mod gate;
pub mod grouping;
pub mod scenarios;
pub mod scrub;
pub mod stacks;

/// A corpus that could not be read or parsed: the file and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvalError {
    /// The file (or folder) concerned.
    pub path: String,
    /// What went wrong, with the line number for JSON Lines.
    pub message: String,
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for EvalError {}

/// The corpora folder: `explicit` when given, else `$SELFHEAL_SHARED_DATA`, else `../shared/data`
/// relative to the working directory, else relative to this crate's source folder. `None` when
/// none of them exists (a clone without `../shared`: callers print that they skipped).
pub fn data_dir(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return p.is_dir().then(|| p.to_path_buf());
    }
    let candidates = [
        std::env::var_os("SELFHEAL_SHARED_DATA").map(PathBuf::from),
        Some(PathBuf::from("../shared/data")),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_dir())
}

/// Reads a whole corpus file. Errors: the file is missing or unreadable.
pub fn read_text(path: &Path) -> Result<String, EvalError> {
    std::fs::read_to_string(path).map_err(|e| EvalError {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Reads a JSON Lines file into values, skipping blank lines.
///
/// Errors: unreadable file, or a line that is not JSON (the message names the 1-based line).
pub fn read_jsonl(path: &Path) -> Result<Vec<Value>, EvalError> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(line).map_err(|e| EvalError {
            path: path.display().to_string(),
            message: format!("line {}: {e}", i + 1),
        })?;
        out.push(v);
    }
    Ok(out)
}

/// The string at `key` of a JSON object, or `""`.
pub(crate) fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// `a/b` as a ratio, 1.0 for an empty denominator (nothing to get wrong).
pub(crate) fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// At most 90 characters of `s` on one line, for tables of misses.
pub(crate) fn clip(s: &str) -> String {
    let mut one: String = s.chars().take(90).collect();
    if s.chars().nth(90).is_some() {
        one.push('…');
    }
    one.replace('\n', "\\n")
}

/// Every evaluation's result; a section is `None` when its corpus folder is absent.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The corpora folder used.
    pub data_dir: String,
    /// Scrubbing recall/precision.
    pub scrub: scrub::ScrubEval,
    /// Grouping Accuracy.
    pub grouping: grouping::GroupingEval,
    /// Stack parsing.
    pub stacks: stacks::StackEval,
}

impl Evaluation {
    /// Runs the three evaluations on the corpora under `data` (a `../shared/data` folder).
    ///
    /// Errors: a corpus file that is missing or does not parse.
    pub fn run(data: &Path) -> Result<Self, EvalError> {
        Ok(Evaluation {
            data_dir: data.display().to_string(),
            scrub: scrub::evaluate(data)?,
            grouping: grouping::evaluate(data)?,
            stacks: stacks::evaluate(data)?,
        })
    }

    /// The three tables as text, each with its baseline and goal.
    pub fn render(&self) -> String {
        format!(
            "corpora: {}\n\n{}\n{}\n{}",
            self.data_dir,
            self.scrub.render(),
            self.grouping.render(),
            self.stacks.render()
        )
    }

    /// True when every goal of the three evaluations is met.
    pub fn goals_met(&self) -> bool {
        self.scrub.goals_met() && self.grouping.goals_met() && self.stacks.goals_met()
    }
}
