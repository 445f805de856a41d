//! Every difference between today's scrubber and the one before issue 9 (a frozen copy in
//! `tests/scrub_oracle/`, main at 36d4eca), rule by rule, on every corpus: the redaction corpora,
//! the captured TraceItems, the stack corpora (`../shared/data/`, skipped when absent) and the
//! bench replay corpus (`benches/support/corpus.rs`, always there).
//!
//! Per text, both scrubbers report what they replace as byte ranges of the input
//! (`scrub_spans`). Per corpus and rule:
//! - **lost**: texts where bytes the *old* rule replaced are left visible by the new scrubber
//!   (a recall loss, whatever rule now covers the rest);
//! - **gained**: texts where the *new* rule replaces bytes the old scrubber left visible.
//!
//! The table must equal [`EXPECTED`], where every entry says why. A speed change (a gate that is
//! not a necessary condition, a rewritten pattern) shows up as an unexpected `lost` and fails
//! the test, with the texts listed.

mod common;

#[path = "scrub_oracle/mod.rs"]
#[allow(dead_code, unused_imports)]
mod oracle;

#[path = "../benches/support/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;

use serde_json::Value;

/// (corpus, rule, lost, gained): every non-zero cell of the difference table, with why.
///
/// `lost` cells are all placeholders that are no secret: values that are at least 60% one filler
/// character (`ghp_xxxx…`, `AKIAXXXX…`, `glc_1111…`; `validate::is_filler`, on the token shape
/// rules only), and two US-looking phone numbers whose exchange starts with 0/1 (not valid in
/// the NANP: `401-023-2138`, `917-123-4567`). None is a positive of a DESIGN kind.
/// `gained` cells are the new families and detectors of issue 9 (`@high_entropy`,
/// `@vendor_context`, `@gcp_service_account`, `@ssn`, `@uk_nhs`) and the key=value rule's
/// new syntaxes (`cloudant_pw=`, `--api-key VALUE`, `Key (col)=(value)`, `x-*-key`).
const EXPECTED: &[(&str, &str, usize, usize)] = &[
    ("detect-secrets", "@api_key_kv", 0, 1), // `--softlayer-api-key VALUE`
    ("detect-secrets", "@high_entropy", 0, 3), // Azure AccountKey=…, long tokens
    ("detect-secrets", "@password_kv", 0, 3), // `cloudant_pw=` / `clou_pw`
    ("detect-secrets", "@vendor_context", 0, 4), // telegram, mailchimp
    ("detect-secrets", "@vendor_token", 1, 0), // `glagent-XXXX…` filler
    ("gitleaks", "@aws_access_key", 1, 0),   // `AKIAXXXXXXXXXXXXXXXX`
    ("gitleaks", "@gcp_service_account", 0, 1), // `"type": "service_account"`
    ("gitleaks", "@github_token", 6, 0),     // `ghp_xxxx…` and kin
    ("gitleaks", "@high_entropy", 0, 14),    // random tokens of wrong-shape fps
    ("gitleaks", "@slack_token", 2, 0),      // `xoxb-xxxx…`
    ("gitleaks", "@vendor_context", 0, 6),   // sumologic ids, sourcegraph, jfrog
    ("gitleaks", "@vendor_token", 14, 0),    // `glpat-XXXX…`, `hvs.xxxx…`, …
    ("presidio", "@high_entropy", 0, 8),     // Bitcoin addresses (2 with a bad checksum)
    ("presidio", "@phone", 3, 0),            // NANP exchange 0/1
    ("presidio", "@ssn", 0, 4),              // US SSNs
    ("presidio", "@uk_nhs", 0, 1),           // `401-023-2137`
];

/// (corpus name, texts). The shared corpora are skipped when absent.
fn corpora() -> Vec<(&'static str, Vec<String>)> {
    let mut out = Vec::new();
    for (name, rel) in [
        ("gitleaks", "redaction/gitleaks_rules_core.jsonl"),
        ("detect-secrets", "redaction/detect_secrets_plugins.jsonl"),
        ("presidio", "redaction/presidio_recognizers.jsonl"),
    ] {
        if let Some(p) = common::shared_data_or_skip(rel, "scrub oracle diff") {
            let texts = common::read_jsonl(&p)
                .iter()
                .filter_map(|r| r.get("text").and_then(Value::as_str).map(str::to_string))
                .collect();
            out.push((name, texts));
        }
    }
    for (name, rel) in [
        (
            "stack-parser",
            "stacktraces/error_stack_parser_fixtures.jsonl",
        ),
        ("workerd-tail", "stacktraces/workerd_tail_exceptions.jsonl"),
        (
            "workerd-streams",
            "stacktraces/workerd_tail_event_streams.jsonl",
        ),
    ] {
        if let Some(p) = common::shared_data_or_skip(rel, "scrub oracle diff") {
            let mut texts = Vec::new();
            for row in common::read_jsonl(&p) {
                common::strings(&row, &mut texts);
            }
            out.push((name, texts));
        }
    }
    if let Some(p) = common::shared_data_or_skip("trace-items/all.json", "scrub oracle diff") {
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{e}"));
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut texts = Vec::new();
        common::strings(&v, &mut texts);
        out.push(("trace-items", texts));
    }
    let mut texts = Vec::new();
    for item in corpus::items(600, 0x5e1f_4ea1) {
        common::strings(&item, &mut texts);
    }
    out.push(("replay", texts));
    out
}

/// Bytes of `text` covered by spans, as a bitmap.
fn covered(len: usize, spans: &[(&str, usize, usize)]) -> Vec<bool> {
    let mut m = vec![false; len];
    for &(_, s, e) in spans {
        for b in m.iter_mut().take(e.min(len)).skip(s) {
            *b = true;
        }
    }
    m
}

#[test]
fn differences_against_the_frozen_scrubber() {
    let mut table: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    let mut listing = String::new();
    let mut texts_seen = 0;
    let all = corpora();
    let present: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
    for (name, texts) in &all {
        let name = *name;
        for text in texts {
            texts_seen += 1;
            let old = oracle::scrub_spans(text);
            let new = selfheal::scrub::scrub_spans(text);
            if old == new {
                continue;
            }
            let (old_cov, new_cov) = (covered(text.len(), &old), covered(text.len(), &new));
            let mut lost_rules: Vec<&str> = old
                .iter()
                .filter(|(_, s, e)| (*s..*e).any(|i| !new_cov.get(i).copied().unwrap_or(false)))
                .map(|(r, _, _)| *r)
                .collect();
            let mut gained_rules: Vec<&str> = new
                .iter()
                .filter(|(_, s, e)| (*s..*e).any(|i| !old_cov.get(i).copied().unwrap_or(false)))
                .map(|(r, _, _)| *r)
                .collect();
            lost_rules.dedup();
            gained_rules.sort_unstable();
            gained_rules.dedup();
            lost_rules.sort_unstable();
            lost_rules.dedup();
            for r in &lost_rules {
                table
                    .entry((name.to_string(), r.to_string()))
                    .or_default()
                    .0 += 1;
            }
            for r in &gained_rules {
                table
                    .entry((name.to_string(), r.to_string()))
                    .or_default()
                    .1 += 1;
            }
            if !lost_rules.is_empty() || !gained_rules.is_empty() {
                let clip: String = text.chars().take(140).collect();
                let new_text = selfheal::scrub::scrub_text(text).text;
                let new_clip: String = new_text.chars().take(140).collect();
                listing += &format!(
                    "  [{name}] lost {lost_rules:?} gained {gained_rules:?}\n    in:  {clip:?}\n    out: {new_clip:?}\n"
                );
            }
        }
    }
    eprintln!("{texts_seen} texts compared");
    eprintln!("difference table (corpus, rule, lost, gained):");
    for ((c, r), (l, g)) in &table {
        eprintln!("    (\"{c}\", \"{r}\", {l}, {g}),");
    }
    eprintln!("every text that differs:\n{listing}");
    let got: Vec<(String, String, usize, usize)> = table
        .into_iter()
        .map(|((c, r), (l, g))| (c, r, l, g))
        .collect();
    let want: Vec<(String, String, usize, usize)> = EXPECTED
        .iter()
        .filter(|(c, ..)| present.contains(c))
        .map(|(c, r, l, g)| (c.to_string(), r.to_string(), *l, *g))
        .collect();
    assert_eq!(got, want, "difference table changed (listing above)");
    assert!(texts_seen > 1000, "only {texts_seen} texts");
    let mut sorted = want.clone();
    sorted.sort();
    assert_eq!(sorted, want, "EXPECTED must be sorted by (corpus, rule)");
}
