//! Grouping Accuracy (GA) on Loghub-2k (`loghub/`: 16 systems × 2,000 lines, JSON Lines with
//! `dataset`, `content`, `event_id`), next to Drain's and Brain's published figures.
//!
//! Two groupings are measured. **Fingerprint**: lines grouped by the normalized message the tail
//! Worker computes ([`normalize_message`]); two lines are in one group when their normalized
//! messages are equal. **Merge stage**: those normalized messages grouped by
//! [`crate::signal::grouping::assign_groups`] with [`MinerConfig::default`] (one bucket per system: Loghub
//! lines carry no script, exception type or frame). The goals apply to the merge stage.
//! GA follows logparser's `evaluator.get_accuracy` (He et al., "Tools and Benchmarks for Automated
//! Log Parsing", ICSE-SEIP 2019): a line is correct only when its predicted group holds exactly the
//! lines of its ground-truth group; GA = correct lines / all lines.
//!
//! Columns: the original ground truth (what Drain's published figure uses), the corrected one
//! (Khan et al., ICSE 2022), and — labelled as such — the original with the **dataset-specific
//! masks** of Drain's benchmark settings (`drain_benchmark_settings.json`) applied before
//! normalizing. The product normalizer has no per-dataset rules; that column shows how much of the
//! gap is what those hand-written masks know.

use std::collections::HashMap;
use std::path::Path;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use super::{EvalError, read_jsonl, read_text, str_at};
use crate::normalize::normalize_message;
use crate::signal::grouping::{BucketKey, GroupInput, MinerConfig, assign_groups, group_events};

/// The 16 Loghub systems, in report order.
pub const SYSTEMS: [&str; 16] = [
    "Android",
    "Apache",
    "BGL",
    "HDFS",
    "HPC",
    "Hadoop",
    "HealthApp",
    "Linux",
    "Mac",
    "OpenSSH",
    "OpenStack",
    "Proxifier",
    "Spark",
    "Thunderbird",
    "Windows",
    "Zookeeper",
];

/// Goal on the average GA (original ground truth).
pub const AVERAGE_GOAL: f64 = 0.95;

/// One system's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SystemGa {
    /// Loghub system name.
    pub system: String,
    /// Lines evaluated (2,000).
    pub lines: usize,
    /// Drain's published GA (original ground truth), when the baseline table has it.
    pub drain: Option<f64>,
    /// Brain's published GA (original ground truth), when the baseline table has it.
    pub brain: Option<f64>,
    /// GA of the merge stage over the normalized messages, original ground truth.
    pub merged: f64,
    /// GA of the merge stage, corrected ground truth.
    pub merged_corrected: f64,
    /// Number of groups of the merge stage (original).
    pub merged_groups: usize,
    /// Our GA, original ground truth.
    pub original: f64,
    /// Our GA, corrected ground truth.
    pub corrected: f64,
    /// Our GA with Drain's dataset-specific masks applied first (original ground truth).
    pub with_dataset_masks: f64,
    /// Diagnostic: our GA when every placeholder kind is merged into one (`<int>` = `<hex>` =
    /// `<ip>` = …, original ground truth): how much typed placeholders cost on this corpus.
    pub kinds_merged: f64,
    /// Number of predicted groups (original).
    pub groups: usize,
    /// Number of true groups (original).
    pub true_groups: usize,
}

/// GA on every system, with averages.
#[derive(Debug, Clone, Serialize)]
pub struct GroupingEval {
    /// One row per system of [`SYSTEMS`].
    pub systems: Vec<SystemGa>,
    /// The JavaScript corpus (`tests/fixtures/js-errors/v8_messages.jsonl`).
    pub js: JsGa,
}

/// Goal on the JavaScript corpus, by the identifier rule (identifiers point at code).
pub const JS_GOAL: f64 = 0.98;

/// GA on the JavaScript corpus of V8 runtime error messages, on both sides of the identifier
/// rule. Each line is grouped through [`crate::signal::grouping::group_events`] with its exception type
/// and route (no frame: the hardest case, every template of one exception type in one bucket).
#[derive(Debug, Clone, Serialize)]
pub struct JsGa {
    /// Lines in the corpus.
    pub lines: usize,
    /// Merge stage against `code_key` (template + identifiers: the rule selfheal follows).
    pub by_rule: f64,
    /// Merge stage against `template` alone (identifiers taken as values: the other side).
    pub identifiers_as_values: f64,
    /// Fingerprint alone against `code_key`.
    pub fingerprint_by_rule: f64,
    /// Fingerprint alone against `template`.
    pub fingerprint_identifiers_as_values: f64,
    /// Groups of the merge stage; distinct fingerprints; distinct `code_key`s; distinct templates.
    pub groups: usize,
    /// Distinct fingerprints.
    pub fingerprints: usize,
    /// Distinct `code_key` labels.
    pub code_keys: usize,
    /// Distinct `template` labels.
    pub templates: usize,
}

/// The JavaScript corpus fixture, in this crate.
pub const JS_CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/js-errors/v8_messages.jsonl"
);

/// Evaluates the JavaScript corpus at `path` (JSON Lines with `message`, `exception_type`,
/// `route`, `template`, `code_key`).
///
/// Errors: the file is missing, a line is not JSON or has no string `message`.
pub fn evaluate_js(path: &Path) -> Result<JsGa, EvalError> {
    let rows = read_jsonl(path)?;
    let mut inputs = Vec::with_capacity(rows.len());
    for (i, v) in rows.iter().enumerate() {
        let input: GroupInput = serde_json::from_value(v.clone()).map_err(|e| EvalError {
            path: path.display().to_string(),
            message: format!("row {}: {e}", i + 1),
        })?;
        inputs.push(input);
    }
    let code: Vec<&str> = rows.iter().map(|v| str_at(v, "code_key")).collect();
    let tpl: Vec<&str> = rows.iter().map(|v| str_at(v, "template")).collect();
    let grouped = group_events(&inputs, &MinerConfig::default());
    let groups: Vec<&str> = grouped.iter().map(|g| g.group.as_str()).collect();
    let fps: Vec<&str> = grouped.iter().map(|g| g.fingerprint.as_str()).collect();
    Ok(JsGa {
        lines: rows.len(),
        by_rule: grouping_accuracy(&groups, &code),
        identifiers_as_values: grouping_accuracy(&groups, &tpl),
        fingerprint_by_rule: grouping_accuracy(&fps, &code),
        fingerprint_identifiers_as_values: grouping_accuracy(&fps, &tpl),
        groups: group_sizes(&groups),
        fingerprints: group_sizes(&fps),
        code_keys: group_sizes(&code),
        templates: group_sizes(&tpl),
    })
}

impl JsGa {
    /// The JavaScript corpus table.
    pub fn render(&self) -> String {
        format!(
            "== Grouping Accuracy, JavaScript corpus (tests/fixtures/js-errors: {} V8 runtime \
             error messages)\n\
             goal: merge stage >= {JS_GOAL} by the rule (identifiers point at code)\n\
             {:<34} {:>8} {:>12}\n\
             {:<34} {:>8.4} {:>12.4}\n\
             {:<34} {:>8.4} {:>12.4}\n\
             groups: merge stage {}, fingerprints {}, code keys {}, templates {}\n",
            self.lines,
            "label",
            "merged",
            "fingerprint",
            "template + identifiers (the rule)",
            self.by_rule,
            self.fingerprint_by_rule,
            "template (identifiers as values)",
            self.identifiers_as_values,
            self.fingerprint_identifiers_as_values,
            self.groups,
            self.fingerprints,
            self.code_keys,
            self.templates
        )
    }
}

/// logparser's GA for predicted labels against true labels (same length; 0.0 when empty).
pub fn grouping_accuracy<P: AsRef<str>, T: AsRef<str>>(pred: &[P], truth: &[T]) -> f64 {
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut truth_sizes: HashMap<&str, usize> = HashMap::new();
    for (i, p) in pred.iter().enumerate() {
        groups.entry(p.as_ref()).or_default().push(i);
    }
    for t in truth {
        *truth_sizes.entry(t.as_ref()).or_default() += 1;
    }
    let mut correct = 0;
    for lines in groups.values() {
        let Some(first) = lines.first().and_then(|&i| truth.get(i)).map(AsRef::as_ref) else {
            continue;
        };
        let one_truth = lines
            .iter()
            .all(|&i| truth.get(i).map(AsRef::as_ref) == Some(first));
        if one_truth && truth_sizes.get(first) == Some(&lines.len()) {
            correct += lines.len();
        }
    }
    if pred.is_empty() {
        0.0
    } else {
        correct as f64 / pred.len() as f64
    }
}

/// One parser's GA per system from the `## <parser>` table of `PUBLISHED_BASELINES.md`
/// (`parser` = `Drain`, `Brain`, …).
pub fn published_baseline(md: &str, parser: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let mut in_drain = false;
    let heading = format!("## {parser}");
    for line in md.lines() {
        if line.starts_with("## ") {
            in_drain = line.trim() == heading;
            continue;
        }
        if !in_drain {
            continue;
        }
        let cells: Vec<&str> = line
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        if let [name, _f1, acc] = cells.as_slice()
            && let Ok(ga) = acc.parse::<f64>()
        {
            out.insert((*name).to_owned(), ga);
        }
    }
    out
}

/// (content, event id) per system.
fn load(path: &Path) -> Result<HashMap<String, Vec<(String, String)>>, EvalError> {
    let mut by: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for v in read_jsonl(path)? {
        by.entry(str_at(&v, "dataset").to_owned())
            .or_default()
            .push((
                str_at(&v, "content").to_owned(),
                str_at(&v, "event_id").to_owned(),
            ));
    }
    Ok(by)
}

/// Drain's per-system mask regexes from `drain_benchmark_settings.json` (`settings.<sys>.regex`).
///
/// Errors: a regex that the `regex` crate cannot compile (the message names it).
fn dataset_masks(settings: &Value, system: &str) -> Result<Vec<Regex>, EvalError> {
    let list = settings
        .pointer(&format!("/settings/{system}/regex"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter_map(Value::as_str)
        .map(|p| {
            Regex::new(p).map_err(|e| EvalError {
                path: "loghub/drain_benchmark_settings.json".into(),
                message: format!("{system}: regex {p:?}: {e}"),
            })
        })
        .collect()
}

/// Replaces every typed placeholder `<kind>` (lowercase ASCII letters, digits, `_`) with `<*>`.
fn merge_kinds(normalized: &str) -> String {
    let mut out = String::with_capacity(normalized.len());
    let mut rest = normalized;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let n = tail
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        if n > 0 && tail.as_bytes().get(n) == Some(&b'>') {
            out.push_str("<*>");
            rest = &tail[n + 1..];
        } else {
            out.push('<');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// The merge stage's group label (first member's line index, as text) of each normalized line.
fn merge_stage(normalized: &[String]) -> Vec<String> {
    let bucket = BucketKey::new("", "", "", "", "");
    let members: Vec<(BucketKey, String)> = normalized
        .iter()
        .map(|n| (bucket.clone(), n.clone()))
        .collect();
    assign_groups(&members, &MinerConfig::default())
        .into_iter()
        .map(|g| g.to_string())
        .collect()
}

fn group_sizes<S: AsRef<str>>(pred: &[S]) -> usize {
    let mut g: Vec<&str> = pred.iter().map(AsRef::as_ref).collect();
    g.sort_unstable();
    g.dedup();
    g.len()
}

/// Evaluates every system under `data/loghub/`.
///
/// Errors: a corpus file is missing or malformed, or a system has no lines.
pub fn evaluate(data: &Path) -> Result<GroupingEval, EvalError> {
    let dir = data.join("loghub");
    let orig = load(&dir.join("loghub_2k_all.jsonl"))?;
    let corr = load(&dir.join("loghub_2k_corrected_all.jsonl"))?;
    let md = read_text(&dir.join("PUBLISHED_BASELINES.md"))?;
    let drain = published_baseline(&md, "Drain");
    let brain = published_baseline(&md, "Brain");
    let settings_path = dir.join("drain_benchmark_settings.json");
    let settings: Value =
        serde_json::from_str(&read_text(&settings_path)?).map_err(|e| EvalError {
            path: settings_path.display().to_string(),
            message: e.to_string(),
        })?;
    let mut systems = Vec::new();
    for sys in SYSTEMS {
        let missing = |which: &str| EvalError {
            path: dir.display().to_string(),
            message: format!("no {which} lines for {sys}"),
        };
        let rows_o = orig.get(sys).ok_or_else(|| missing("original"))?;
        let rows_c = corr.get(sys).ok_or_else(|| missing("corrected"))?;
        let truth_o: Vec<&str> = rows_o.iter().map(|r| r.1.as_str()).collect();
        let truth_c: Vec<&str> = rows_c.iter().map(|r| r.1.as_str()).collect();
        let pred_o: Vec<String> = rows_o.iter().map(|r| normalize_message(&r.0)).collect();
        let pred_c: Vec<String> = rows_c.iter().map(|r| normalize_message(&r.0)).collect();
        let masks = dataset_masks(&settings, sys)?;
        let pred_m: Vec<String> = rows_o
            .iter()
            .map(|r| {
                let masked = masks.iter().fold(r.0.clone(), |acc, re| {
                    re.replace_all(&acc, "<*>").into_owned()
                });
                normalize_message(&masked)
            })
            .collect();
        let pred_k: Vec<String> = pred_o.iter().map(|p| merge_kinds(p)).collect();
        let merged_o = merge_stage(&pred_o);
        let merged_c = merge_stage(&pred_c);
        let mut true_groups = truth_o.clone();
        true_groups.sort_unstable();
        true_groups.dedup();
        systems.push(SystemGa {
            system: sys.to_string(),
            lines: rows_o.len(),
            drain: drain.get(sys).copied(),
            brain: brain.get(sys).copied(),
            merged: grouping_accuracy(&merged_o, &truth_o),
            merged_corrected: grouping_accuracy(&merged_c, &truth_c),
            merged_groups: group_sizes(&merged_o),
            original: grouping_accuracy(&pred_o, &truth_o),
            corrected: grouping_accuracy(&pred_c, &truth_c),
            with_dataset_masks: grouping_accuracy(&pred_m, &truth_o),
            kinds_merged: grouping_accuracy(&pred_k, &truth_o),
            groups: group_sizes(&pred_o),
            true_groups: true_groups.len(),
        });
    }
    let js = evaluate_js(Path::new(JS_CORPUS))?;
    Ok(GroupingEval { systems, js })
}

impl GroupingEval {
    fn avg(&self, f: impl Fn(&SystemGa) -> f64) -> f64 {
        let n = self.systems.len().max(1) as f64;
        self.systems.iter().map(f).sum::<f64>() / n
    }
    /// Average GA, original ground truth.
    pub fn average_original(&self) -> f64 {
        self.avg(|s| s.original)
    }
    /// Average GA, corrected ground truth.
    pub fn average_corrected(&self) -> f64 {
        self.avg(|s| s.corrected)
    }
    /// Average GA with placeholder kinds merged (diagnostic).
    pub fn average_kinds_merged(&self) -> f64 {
        self.avg(|s| s.kinds_merged)
    }
    /// Average GA with Drain's dataset-specific masks.
    pub fn average_with_masks(&self) -> f64 {
        self.avg(|s| s.with_dataset_masks)
    }
    /// Average GA of the merge stage, original ground truth.
    pub fn average_merged(&self) -> f64 {
        self.avg(|s| s.merged)
    }
    /// Average GA of the merge stage, corrected ground truth.
    pub fn average_merged_corrected(&self) -> f64 {
        self.avg(|s| s.merged_corrected)
    }
    /// Average of Brain's published GA.
    pub fn average_brain(&self) -> f64 {
        self.avg(|s| s.brain.unwrap_or(0.0))
    }
    /// Average of Drain's published GA.
    pub fn average_drain(&self) -> f64 {
        self.avg(|s| s.drain.unwrap_or(0.0))
    }
    /// Systems where the merge stage's GA (original) is at or above Drain's.
    pub fn at_or_above_drain(&self) -> usize {
        self.systems
            .iter()
            .filter(|s| s.drain.is_some_and(|d| s.merged + 1e-9 >= d))
            .count()
    }
    /// Systems where the fingerprint alone (normalized messages, original) is at or above Drain's.
    pub fn fingerprint_at_or_above_drain(&self) -> usize {
        self.systems
            .iter()
            .filter(|s| s.drain.is_some_and(|d| s.original + 1e-9 >= d))
            .count()
    }
    /// The merge stage at or above Drain on every system, and its average ≥ [`AVERAGE_GOAL`].
    pub fn goals_met(&self) -> bool {
        self.at_or_above_drain() == self.systems.len()
            && self.average_merged() >= AVERAGE_GOAL
            && self.js.by_rule >= JS_GOAL
    }

    /// The table: system, Drain and Brain (published), the merge stage (original and corrected
    /// ground truth), the fingerprint alone (original, corrected, with dataset masks, kinds
    /// merged) and group counts.
    pub fn render(&self) -> String {
        let mut o = String::from(
            "== Grouping Accuracy (loghub/: Loghub-2k, logparser's GA)\n\
             goal: merge stage >= Drain on every system, average >= 0.95 (original ground truth)\n",
        );
        o += &format!(
            "{:<12} {:>7} {:>7} | {:>7} {:>9} | {:>7} {:>9} {:>9} {:>9} | {:>9} {:>9}\n",
            "system",
            "Drain",
            "Brain",
            "merged",
            "m.corr",
            "fp",
            "fp.corr",
            "+masks[1]",
            "kinds[2]",
            "merged/",
            "fp/true"
        );
        for s in &self.systems {
            let d = s.drain.unwrap_or(0.0);
            o += &format!(
                "{:<12} {:>7.4} {:>7.4} | {:>7.4} {:>9.4} | {:>7.4} {:>9.4} {:>9.4} {:>9.4} | {:>9} {:>4}/{:<4}{}\n",
                s.system,
                d,
                s.brain.unwrap_or(0.0),
                s.merged,
                s.merged_corrected,
                s.original,
                s.corrected,
                s.with_dataset_masks,
                s.kinds_merged,
                s.merged_groups,
                s.groups,
                s.true_groups,
                if s.merged + 1e-9 >= d { "" } else { " < Drain" }
            );
        }
        o += &format!(
            "{:<12} {:>7.4} {:>7.4} | {:>7.4} {:>9.4} | {:>7.4} {:>9.4} {:>9.4} {:>9.4}\n",
            "average",
            self.average_drain(),
            self.average_brain(),
            self.average_merged(),
            self.average_merged_corrected(),
            self.average_original(),
            self.average_corrected(),
            self.average_with_masks(),
            self.average_kinds_merged()
        );
        o += &format!(
            "merge stage at or above Drain on {}/{} systems (fingerprint alone: {}/{})\n\
             merged: the merge stage (selfheal::signal::grouping, Drain tree + Brain-style frequency split) \
             over the normalized messages; fp: the fingerprint's normalized message alone\n\
             [1] dataset-specific: Drain's per-system benchmark regexes applied before normalizing; \
             not in the product\n\
             [2] diagnostic: every placeholder kind merged into one (<int> = <hex> = <ip> = ...)\n\
             groups: merge stage, fingerprint/true (original)\n",
            self.at_or_above_drain(),
            self.systems.len(),
            self.fingerprint_at_or_above_drain(),
            self.systems.len()
        );
        o += "\n";
        o += &self.js.render();
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ga_needs_exact_group_membership() {
        // truth: {0,1} A, {2} B. pred: {0,1} x, {2} y → all right.
        assert_eq!(grouping_accuracy(&["x", "x", "y"], &["A", "A", "B"]), 1.0);
        // pred merges A and B: nothing right.
        assert_eq!(grouping_accuracy(&["x", "x", "x"], &["A", "A", "B"]), 0.0);
        // pred splits A: the split lines are wrong, B is right.
        let ga = grouping_accuracy(&["x", "z", "y"], &["A", "A", "B"]);
        assert!((ga - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(grouping_accuracy::<&str, &str>(&[], &[]), 0.0);
    }

    #[test]
    fn merge_kinds_touches_placeholders_only() {
        assert_eq!(
            merge_kinds("at <ip>:<int> a<b <Foo> <x_1> <"),
            "at <*>:<*> a<b <Foo> <*> <"
        );
    }

    #[test]
    fn drain_table_is_read_from_its_section_only() {
        let md = "## Drain\n| HDFS | 0.99 | 0.9975 |\n## Brain\n| HDFS | 1 | 1 |\n";
        let d = published_baseline(md, "Drain");
        assert_eq!(published_baseline(md, "Brain").get("HDFS"), Some(&1.0));
        assert_eq!(d.get("HDFS"), Some(&0.9975));
        assert_eq!(d.len(), 1);
    }
}
