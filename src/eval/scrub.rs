//! Scrubbing on the public redaction corpora in `redaction/`: gitleaks' rule tests, detect-secrets'
//! plugin tests and presidio's recognizer tests (one JSON object per line: `source`, `kind`, `text`,
//! `contains_secret`, and `secret_spans` ([start, end) in chars) or `secret`).
//!
//! - **Recall** on positives: a row is caught when no secret survives in [`scrub_text`]'s output:
//!   none of its span substrings, else none of its `secret` values, else (no span information) the
//!   output differs from the input. Rows without text (gitleaks' pkcs12 file rule) are not counted.
//! - **Negatives kept**: a negative row comes out unchanged. gitleaks' negatives are its "fps"
//!   (false-positive tests), reported apart: many are placeholders that are reasonable to scrub.
//! - **Precision**: caught positives / (caught positives + changed negatives), per source.
//!
//! Goals (issues 3 and 9): recall 1.0 on every kind DESIGN.md lists ([`DESIGN_KINDS`], minus the
//! [`EXCLUDED`] rows, each with its reason), ≥ 0.995 on all gitleaks positives, and per source no
//! fewer negatives kept than before issue 9 ([`KEPT_BEFORE`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::{EvalError, clip, ratio, read_jsonl, str_at};
use crate::scrub::scrub_text;

/// The corpus files, in report order.
pub const FILES: [&str; 3] = [
    "gitleaks_rules_core.jsonl",
    "detect_secrets_plugins.jsonl",
    "presidio_recognizers.jsonl",
];

/// Minimum recall on all gitleaks positives (issue 9; 0.98 before).
pub const GITLEAKS_RECALL_GOAL: f64 = 0.995;

/// Negatives kept unchanged by the scrubber before issue 9 (main at 36d4eca), per file of
/// [`FILES`]: (kept, negatives). The floor of the "negatives kept" goal.
pub const KEPT_BEFORE: [(usize, usize); 3] = [(133, 277), (69, 126), (405, 416)];

/// The corpus kinds for the formats DESIGN.md requires ("Scrubbing"): recall must be 1.0.
pub const DESIGN_KINDS: &[&str] = &[
    // gitleaks
    "aws-access-token",
    "github-pat",
    "github-oauth",
    "github-app-token",
    "github-refresh-token",
    "github-fine-grained-pat",
    "stripe-access-token",
    "slack-app-token",
    "slack-bot-token",
    "slack-config-access-token",
    "slack-config-refresh-token",
    "slack-legacy-bot-token",
    "slack-legacy-token",
    "slack-legacy-workspace-token",
    "slack-user-token",
    "slack-webhook-url",
    "gcp-api-key",
    "openai-api-key",
    "anthropic-api-key",
    "anthropic-admin-api-key",
    "cloudflare-api-key",
    "cloudflare-global-api-key",
    "cloudflare-origin-ca-key",
    "private-key",
    "jwt",
    "curl-auth-header",
    "curl-auth-user",
    "generic-api-key",
    // detect-secrets
    "detect-secrets:aws_key",
    "detect-secrets:basic_auth",
    "detect-secrets:github_token",
    "detect-secrets:jwt",
    "detect-secrets:keyword",
    "detect-secrets:openai",
    "detect-secrets:private_key",
    "detect-secrets:slack",
    "detect-secrets:stripe_key",
    "detect-secrets:ip_public",
    // presidio
    "pii:EMAIL_ADDRESS",
    "pii:IP_ADDRESS",
    "pii:CREDIT_CARD",
    "pii:PHONE",
    "pii:IBAN_CODE",
];

/// Positive rows left out of the DESIGN-kind goal, matched on (kind, exact text), each with why.
/// They still count in the recall figures.
pub const EXCLUDED: &[(&str, &str, &str)] = &[
    (
        "detect-secrets:keyword",
        "aws_secret_access_key: value with quotes and spaces",
        "an unquoted value with spaces: we redact the first word only, because taking the rest of \
         the line would eat error prose such as `Invalid token: expired at ...`",
    ),
    (
        "pii:PHONE",
        "My CN number is 13812345678",
        "a bare 11-digit run without + or trunk 0: indistinguishable from ids; we keep those",
    ),
];

/// Counts for one kind or one source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Positive rows with text.
    pub positives: usize,
    /// Positives with no secret left in the output.
    pub caught: usize,
    /// Negative rows.
    pub negatives: usize,
    /// Negatives left unchanged.
    pub kept: usize,
}

impl Tally {
    /// caught / positives (1.0 without positives).
    pub fn recall(&self) -> f64 {
        ratio(self.caught, self.positives)
    }
    /// kept / negatives (1.0 without negatives).
    pub fn negatives_kept(&self) -> f64 {
        ratio(self.kept, self.negatives)
    }
    /// caught / (caught + changed negatives) (1.0 when nothing was scrubbed).
    pub fn precision(&self) -> f64 {
        ratio(self.caught, self.caught + (self.negatives - self.kept))
    }
    fn add(&mut self, o: &Tally) {
        self.positives += o.positives;
        self.caught += o.caught;
        self.negatives += o.negatives;
        self.kept += o.kept;
    }
}

/// One row the scrubber got wrong: a leaked positive or a changed negative (text clipped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Miss {
    /// The row's kind.
    pub kind: String,
    /// Its text (at most 90 chars).
    pub text: String,
    /// The scrubbed output (at most 90 chars).
    pub output: String,
    /// Whether the row is a DESIGN kind and not in [`EXCLUDED`] (a goal failure when a positive).
    pub design: bool,
}

/// The result on one corpus file.
#[derive(Debug, Clone, Serialize)]
pub struct SourceEval {
    /// File name under `redaction/`.
    pub file: String,
    /// Per kind.
    pub kinds: BTreeMap<String, Tally>,
    /// All rows.
    pub total: Tally,
    /// Rows of DESIGN kinds only, without the [`EXCLUDED`] rows.
    pub design: Tally,
    /// Positives whose secret survived.
    pub misses: Vec<Miss>,
    /// Negatives that were changed.
    pub changed_negatives: Vec<Miss>,
}

/// Scrubbing results on the three corpora.
#[derive(Debug, Clone, Serialize)]
pub struct ScrubEval {
    /// One entry per file of [`FILES`].
    pub sources: Vec<SourceEval>,
    /// The captured TraceItems and stack corpora ([`CAPTURED`]), present ones only.
    pub captured: Vec<CapturedEval>,
}

/// Corpora of real error text (the captured TraceItems, the stack corpora), scored like
/// negatives: the share of their strings that scrubbing leaves unchanged. Some strings do hold
/// PII (the demo's planted emails, `127.0.0.1` in URLs), so the share is below 1 by design; the
/// floor is the count before issue 9 ([`CapturedEval::kept_before`]), which
/// `tests/scrub_oracle_diff.rs` also checks string by string.
pub const CAPTURED: [(&str, usize); 4] = [
    ("trace-items/all.json", 2_281),
    ("stacktraces/error_stack_parser_fixtures.jsonl", 232),
    ("stacktraces/workerd_tail_exceptions.jsonl", 41),
    ("stacktraces/workerd_tail_event_streams.jsonl", 737),
];

/// One captured corpus: how many of its strings stay unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapturedEval {
    /// Path under the corpora folder.
    pub file: String,
    /// Every string in it (JSON strings at any depth).
    pub strings: usize,
    /// Strings that [`scrub_text`] leaves unchanged.
    pub kept: usize,
    /// The same count before issue 9 (the floor).
    pub kept_before: usize,
}

fn all_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| all_strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| all_strings(x, out)),
        _ => {}
    }
}

/// Scores one captured corpus (`data/<file>`, JSON or JSON Lines).
///
/// Errors: the file cannot be read or parsed.
pub fn evaluate_captured(
    data: &Path,
    file: &str,
    kept_before: usize,
) -> Result<CapturedEval, EvalError> {
    let path = data.join(file);
    let rows = if file.ends_with(".jsonl") {
        read_jsonl(&path)?
    } else {
        let text = super::read_text(&path)?;
        vec![serde_json::from_str(&text).map_err(|e| EvalError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?]
    };
    let mut strings = Vec::new();
    for row in &rows {
        all_strings(row, &mut strings);
    }
    let kept = strings.iter().filter(|s| scrub_text(s).is_clean()).count();
    Ok(CapturedEval {
        file: file.to_string(),
        strings: strings.len(),
        kept,
        kept_before,
    })
}

/// The secrets a positive row must not leak, or `None` when the row gives none.
fn secrets_of(row: &Value) -> Option<Vec<String>> {
    let text = str_at(row, "text");
    if let Some(spans) = row.get("secret_spans").and_then(Value::as_array) {
        let chars: Vec<char> = text.chars().collect();
        let out: Vec<String> = spans
            .iter()
            .filter_map(|span| {
                let s = usize::try_from(span.get(0)?.as_u64()?).ok()?;
                let e = usize::try_from(span.get(1)?.as_u64()?)
                    .ok()?
                    .min(chars.len());
                (s < e).then(|| chars[s..e].iter().collect())
            })
            .collect();
        if !out.is_empty() {
            return Some(out);
        }
    }
    match row.get("secret") {
        Some(Value::String(s)) if !s.is_empty() => Some(vec![s.clone()]),
        Some(Value::Array(items)) => {
            let v: Vec<String> = items
                .iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            (!v.is_empty()).then_some(v)
        }
        _ => None,
    }
}

/// Evaluates one corpus file (`redaction/<file>` under `data`).
///
/// Errors: the file is missing or a line is not JSON.
pub fn evaluate_file(data: &Path, file: &str) -> Result<SourceEval, EvalError> {
    let rows = read_jsonl(&data.join("redaction").join(file))?;
    let mut src = SourceEval {
        file: file.to_string(),
        kinds: BTreeMap::new(),
        total: Tally::default(),
        design: Tally::default(),
        misses: Vec::new(),
        changed_negatives: Vec::new(),
    };
    for row in &rows {
        let kind = row.get("kind").and_then(Value::as_str).unwrap_or("?");
        let text = str_at(row, "text");
        let positive = row
            .get("contains_secret")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if positive && text.is_empty() {
            continue;
        }
        let out = scrub_text(text).text;
        let is_design = DESIGN_KINDS.contains(&kind)
            && !EXCLUDED.iter().any(|(k, x, _)| *k == kind && *x == text);
        let mut t = Tally::default();
        let miss = || Miss {
            kind: kind.to_string(),
            text: clip(text),
            output: clip(&out),
            design: is_design,
        };
        if positive {
            t.positives = 1;
            let ok = match secrets_of(row) {
                Some(secrets) => secrets.iter().all(|s| !out.contains(s.as_str())),
                None => out != text,
            };
            if ok {
                t.caught = 1;
            } else {
                src.misses.push(miss());
            }
        } else {
            t.negatives = 1;
            if out == text {
                t.kept = 1;
            } else {
                src.changed_negatives.push(miss());
            }
        }
        src.kinds.entry(kind.to_string()).or_default().add(&t);
        src.total.add(&t);
        if is_design {
            src.design.add(&t);
        }
    }
    Ok(src)
}

/// Evaluates the three corpus files under `data/redaction/`.
///
/// Errors: a file is missing or a line is not JSON.
pub fn evaluate(data: &Path) -> Result<ScrubEval, EvalError> {
    let sources = FILES
        .iter()
        .map(|f| evaluate_file(data, f))
        .collect::<Result<_, _>>()?;
    let captured = CAPTURED
        .iter()
        .filter(|(f, _)| data.join(f).exists())
        .map(|&(f, before)| evaluate_captured(data, f, before))
        .collect::<Result<_, _>>()?;
    Ok(ScrubEval { sources, captured })
}

fn cell(a: usize, b: usize) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{a}/{b} {:.3}", ratio(a, b))
    }
}

impl SourceEval {
    /// DESIGN-kind positives that leaked (goal failures).
    pub fn design_misses(&self) -> impl Iterator<Item = &Miss> {
        self.misses.iter().filter(|m| m.design)
    }
}

impl ScrubEval {
    /// The source evaluated from `file`, if any.
    pub fn source(&self, file: &str) -> Option<&SourceEval> {
        self.sources.iter().find(|s| s.file == file)
    }

    /// Recall 1.0 on DESIGN kinds (but [`EXCLUDED`]) everywhere, ≥ [`GITLEAKS_RECALL_GOAL`] on
    /// gitleaks positives, and no fewer negatives kept than [`KEPT_BEFORE`].
    pub fn goals_met(&self) -> bool {
        let design_ok = self.sources.iter().all(|s| s.design_misses().count() == 0);
        let kept_ok = self.sources.iter().all(|s| {
            FILES
                .iter()
                .position(|f| *f == s.file)
                .and_then(|i| KEPT_BEFORE.get(i))
                .is_none_or(|&(k, n)| s.total.negatives != n || s.total.kept >= k)
        });
        let gitleaks_ok = self
            .source(FILES[0])
            .is_some_and(|s| s.total.recall() >= GITLEAKS_RECALL_GOAL);
        let captured_ok = self.captured.iter().all(|c| c.kept >= c.kept_before);
        design_ok && gitleaks_ok && kept_ok && captured_ok
    }

    /// Summary per source, then per kind (DESIGN kinds starred), then every miss.
    pub fn render(&self) -> String {
        let mut o = String::from(
            "== Scrubbing (redaction/: gitleaks, detect-secrets, presidio)\n\
             goal: recall 1.0 on DESIGN kinds (*), >= 0.995 on all gitleaks positives, negatives kept >= before issue 9\n",
        );
        o += &format!(
            "{:<30} {:>16} {:>16} {:>16} {:>16} {:>10}\n",
            "source",
            "recall DESIGN[1]",
            "recall all",
            "negatives kept",
            "kept before #9",
            "precision"
        );
        for s in &self.sources {
            let before = FILES
                .iter()
                .position(|f| *f == s.file)
                .and_then(|i| KEPT_BEFORE.get(i))
                .map_or("-".to_string(), |&(k, n)| cell(k, n));
            o += &format!(
                "{:<30} {:>16} {:>16} {:>16} {:>16} {:>10.3}\n",
                s.file,
                cell(s.design.caught, s.design.positives),
                cell(s.total.caught, s.total.positives),
                cell(s.total.kept, s.total.negatives),
                before,
                s.total.precision()
            );
        }
        o += "(gitleaks negatives are its own false-positive tests, many of them placeholders: reported apart)\n";
        if !self.captured.is_empty() {
            o += &format!(
                "\n{:<48} {:>18} {:>18}\n",
                "captured text (strings left unchanged)", "kept", "kept before #9"
            );
            for c in &self.captured {
                o += &format!(
                    "{:<48} {:>18} {:>18}\n",
                    c.file,
                    cell(c.kept, c.strings),
                    cell(c.kept_before, c.strings)
                );
            }
        }
        for s in &self.sources {
            o += &format!("\n-- {} per kind\n", s.file);
            o += &format!("{:<48} {:>14} {:>14}\n", "kind", "recall", "neg. kept");
            for (k, t) in &s.kinds {
                let star = if DESIGN_KINDS.contains(&k.as_str()) {
                    "*"
                } else {
                    " "
                };
                o += &format!(
                    "{star}{k:<47} {:>14} {:>14}\n",
                    cell(t.caught, t.positives),
                    cell(t.kept, t.negatives)
                );
            }
            for m in &s.misses {
                let tag = if m.design { "MISS*" } else { "MISS " };
                o += &format!("  {tag} {}: {:?} -> {:?}\n", m.kind, m.text, m.output);
            }
            for m in &s.changed_negatives {
                o += &format!("  NEG   {}: {:?} -> {:?}\n", m.kind, m.text, m.output);
            }
        }
        o += "\n[1] DESIGN kinds (*) without these rows, excluded from the goal (counted in \"recall all\"):\n";
        for (k, t, why) in EXCLUDED {
            o += &format!("  {k}: {t:?}: {why}\n");
        }
        o
    }
}
