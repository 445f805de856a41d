//! Grouping Accuracy (GA) of `normalize_message` on Loghub-2k: lines whose normalized message is
//! equal form one group. GA as logparser's `evaluator.get_accuracy`: a line is correct only when its
//! predicted group has exactly the lines of its ground-truth template group; GA = correct / total.
//! Measured against the original and the corrected (Khan et al., ICSE'22) ground truth, next to the
//! published Drain figure (which uses per-dataset regexes; we use none).
//!
//! `GA_DEBUG=<Dataset>` prints that dataset's wrong groups.

mod common;

use std::collections::HashMap;

use selfheal::normalize::normalize_message;
use serde_json::Value;

const SYSTEMS: [&str; 16] = [
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

/// Average GA over the 16 systems (original ground truth) reached today; a regression fails.
const FLOOR_AVG_ORIGINAL: f64 = 0.75;
/// Same, corrected ground truth.
const FLOOR_AVG_CORRECTED: f64 = 0.74;

/// Drain's published GA per system: the `## Drain` table of PUBLISHED_BASELINES.md (logparser's
/// Drain README, Loghub-2k, original ground truth).
fn drain_baseline(md: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let mut in_drain = false;
    for line in md.lines() {
        if line.starts_with("## ") {
            in_drain = line.trim() == "## Drain";
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

struct Row {
    content: String,
    event: String,
}

fn load(path: &std::path::Path) -> HashMap<String, Vec<Row>> {
    let mut by: HashMap<String, Vec<Row>> = HashMap::new();
    for v in common::read_jsonl(path) {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        by.entry(s("dataset")).or_default().push(Row {
            content: s("content"),
            event: s("event_id"),
        });
    }
    by
}

/// logparser's GA over predicted labels and true labels, line by line.
fn grouping_accuracy(pred: &[String], truth: &[String], debug: bool, contents: &[&str]) -> f64 {
    let mut pred_groups: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut truth_sizes: HashMap<&str, usize> = HashMap::new();
    for (i, p) in pred.iter().enumerate() {
        pred_groups.entry(p.as_str()).or_default().push(i);
    }
    for t in truth {
        *truth_sizes.entry(t.as_str()).or_default() += 1;
    }
    let mut correct = 0;
    let mut wrong: Vec<(&str, &Vec<usize>)> = Vec::new();
    for (p, lines) in &pred_groups {
        let first = lines
            .first()
            .map(|&i| truth[i].as_str())
            .unwrap_or_default();
        let one_truth = lines.iter().all(|&i| truth[i] == first);
        if one_truth && truth_sizes.get(first) == Some(&lines.len()) {
            correct += lines.len();
        } else {
            wrong.push((p, lines));
        }
    }
    if debug {
        wrong.sort_by_key(|(_, l)| std::cmp::Reverse(l.len()));
        for (p, lines) in wrong.iter().take(40) {
            let mut ids: Vec<&str> = lines.iter().map(|&i| truth[i].as_str()).collect();
            ids.sort();
            ids.dedup();
            eprintln!(
                "  WRONG {} lines, truth {:?}, sizes {:?}\n    norm: {p}\n    e.g.: {}",
                lines.len(),
                ids,
                ids.iter().map(|t| truth_sizes.get(t)).collect::<Vec<_>>(),
                lines.first().map(|&i| contents[i]).unwrap_or_default()
            );
        }
    }
    correct as f64 / pred.len().max(1) as f64
}

#[test]
fn loghub_2k_grouping_accuracy() {
    let Some(orig_path) =
        common::shared_data_or_skip("loghub/loghub_2k_all.jsonl", "grouping_corpus")
    else {
        return;
    };
    let Some(corr_path) =
        common::shared_data_or_skip("loghub/loghub_2k_corrected_all.jsonl", "grouping_corpus")
    else {
        return;
    };
    let Some(md_path) =
        common::shared_data_or_skip("loghub/PUBLISHED_BASELINES.md", "grouping_corpus")
    else {
        return;
    };
    let drain =
        drain_baseline(&std::fs::read_to_string(&md_path).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(drain.len(), 16, "Drain table: {drain:?}");
    let orig = load(&orig_path);
    let corr = load(&corr_path);
    let debug = std::env::var("GA_DEBUG").ok();

    eprintln!(
        "{:<12} {:>7} {:>7} {:>7} {:>6}",
        "system", "Drain", "ours", "ours*", "groups"
    );
    let (mut sum_o, mut sum_c, mut sum_d, mut at_or_above) = (0.0, 0.0, 0.0, 0);
    for sys in SYSTEMS {
        let rows_o = orig.get(sys).unwrap_or_else(|| panic!("{sys} missing"));
        let rows_c = corr
            .get(sys)
            .unwrap_or_else(|| panic!("{sys} missing (corrected)"));
        assert_eq!(rows_o.len(), 2000, "{sys}");
        assert_eq!(rows_c.len(), 2000, "{sys}");
        let pred: Vec<String> = rows_o
            .iter()
            .map(|r| normalize_message(&r.content))
            .collect();
        let pred_c: Vec<String> = rows_c
            .iter()
            .map(|r| normalize_message(&r.content))
            .collect();
        let truth_o: Vec<String> = rows_o.iter().map(|r| r.event.clone()).collect();
        let truth_c: Vec<String> = rows_c.iter().map(|r| r.event.clone()).collect();
        let contents: Vec<&str> = rows_o.iter().map(|r| r.content.as_str()).collect();
        let dbg = debug.as_deref() == Some(sys);
        let ga_o = grouping_accuracy(&pred, &truth_o, dbg, &contents);
        let contents_c: Vec<&str> = rows_c.iter().map(|r| r.content.as_str()).collect();
        let ga_c = grouping_accuracy(
            &pred_c,
            &truth_c,
            dbg && std::env::var("GA_CORRECTED").is_ok(),
            &contents_c,
        );
        let d = drain.get(sys).copied().unwrap_or(0.0);
        let mut groups = pred.clone();
        groups.sort();
        groups.dedup();
        eprintln!(
            "{sys:<12} {d:>7.4} {ga_o:>7.4} {ga_c:>7.4} {:>6}{}",
            groups.len(),
            if ga_o + 1e-9 >= d { "" } else { "  < Drain" }
        );
        sum_o += ga_o;
        sum_c += ga_c;
        sum_d += d;
        if ga_o + 1e-9 >= d {
            at_or_above += 1;
        }
    }
    let n = SYSTEMS.len() as f64;
    let (avg_o, avg_c, avg_d) = (sum_o / n, sum_c / n, sum_d / n);
    eprintln!("{:<12} {avg_d:>7.4} {avg_o:>7.4} {avg_c:>7.4}", "average");
    eprintln!(
        "(ours = original ground truth, ours* = corrected; at or above Drain on {at_or_above}/16)"
    );
    assert!(
        avg_o >= FLOOR_AVG_ORIGINAL,
        "average GA {avg_o:.4} < floor {FLOOR_AVG_ORIGINAL}"
    );
    assert!(
        avg_c >= FLOOR_AVG_CORRECTED,
        "average GA (corrected) {avg_c:.4} < floor {FLOOR_AVG_CORRECTED}"
    );
}
