//! Scrubbing on the public redaction corpora (`../shared/data/redaction/`), through
//! [`selfheal::eval::scrub`] — the same code `selfheal eval` prints. Skips (and passes) when the
//! corpora are absent.
//!
//! Gates: recall 1.0 on the DESIGN kinds of every source, ≥ 0.995 on all gitleaks positives, and
//! the negatives left unchanged must be no fewer than before issue 9 (`scrub::KEPT_BEFORE`).

mod common;

use selfheal::eval::scrub::{self, GITLEAKS_RECALL_GOAL, SourceEval};

/// The negatives kept before issue 9 for `file`, and that floor checked.
fn kept_no_lower(src: &SourceEval) {
    let i = scrub::FILES
        .iter()
        .position(|f| *f == src.file)
        .unwrap_or_else(|| panic!("{} is not a corpus file", src.file));
    let (kept, negatives) = scrub::KEPT_BEFORE[i];
    assert_eq!(src.total.negatives, negatives, "the corpus changed");
    assert!(
        src.total.kept >= kept,
        "{}: negatives kept {} < {kept} before issue 9",
        src.file,
        src.total.kept
    );
}

fn source(file: &str) -> Option<SourceEval> {
    let data = common::shared_data_or_skip("redaction", "scrub corpus")?;
    let data = data.parent()?.to_path_buf();
    let src = scrub::evaluate_file(&data, file).unwrap_or_else(|e| panic!("{e}"));
    let ev = scrub::ScrubEval {
        sources: vec![src.clone()],
        captured: Vec::new(),
    };
    eprintln!("{}", ev.render());
    let misses: Vec<String> = src
        .design_misses()
        .map(|m| format!("{}: {:?} -> {:?}", m.kind, m.text, m.output))
        .collect();
    assert!(
        misses.is_empty(),
        "DESIGN-kind misses:\n{}",
        misses.join("\n")
    );
    assert_eq!(src.design.recall(), 1.0);
    Some(src)
}

#[test]
fn gitleaks_corpus() {
    let Some(src) = source("gitleaks_rules_core.jsonl") else {
        return;
    };
    assert!(src.design.positives > 200, "{:?}", src.design);
    let recall = src.total.recall();
    assert!(
        recall >= GITLEAKS_RECALL_GOAL,
        "gitleaks recall {recall:.4}"
    );
    kept_no_lower(&src);
}

#[test]
fn detect_secrets_corpus() {
    let Some(src) = source("detect_secrets_plugins.jsonl") else {
        return;
    };
    kept_no_lower(&src);
}

#[test]
fn presidio_corpus() {
    let Some(src) = source("presidio_recognizers.jsonl") else {
        return;
    };
    kept_no_lower(&src);
}

#[test]
fn captured_text_keeps_what_it_kept() {
    let Some(data) = common::shared_data_or_skip("trace-items", "scrub corpus") else {
        return;
    };
    let Some(data) = data.parent() else { return };
    for (file, before) in scrub::CAPTURED {
        if !data.join(file).exists() {
            eprintln!("SKIPPED {file}: not found");
            continue;
        }
        let c = scrub::evaluate_captured(data, file, before).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{file}: kept {}/{} (before issue 9: {before})",
            c.kept, c.strings
        );
        assert!(c.kept >= before, "{file}: kept {} < {before}", c.kept);
    }
}
