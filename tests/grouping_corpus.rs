//! Grouping Accuracy on Loghub-2k of `normalize_message` alone and of the merge stage
//! (`selfheal::signal::grouping`) on top of it, through [`selfheal::eval::grouping`] — the same code
//! `selfheal eval` prints. Skips (and passes) when the corpora are absent.
//!
//! The merge stage is at or above Drain's published GA on all 16 systems (asserted), and its
//! average meets the goal of 0.95 (0.9631 measured, 0.9569 on the corrected ground truth;
//! both gated as floors, so a regression fails).

mod common;

use selfheal::eval::grouping;

/// Average GA over the 16 systems (original ground truth) measured; a regression fails.
const FLOOR_AVG_ORIGINAL: f64 = 0.75;
/// Same, corrected ground truth.
const FLOOR_AVG_CORRECTED: f64 = 0.74;
/// Average GA of the merge stage (original ground truth) measured; a regression fails.
const FLOOR_MERGED_ORIGINAL: f64 = 0.963;
/// Same, corrected ground truth.
const FLOOR_MERGED_CORRECTED: f64 = 0.956;
/// Systems where the normalizer alone is measured at or above Drain's published GA.
const AT_OR_ABOVE_DRAIN: &[&str] = &[
    "Apache",
    "HDFS",
    "HPC",
    "Hadoop",
    "HealthApp",
    "Mac",
    "OpenStack",
    "Spark",
    "Zookeeper",
];

#[test]
fn loghub_2k_grouping_accuracy() {
    let Some(loghub) = common::shared_data_or_skip("loghub", "grouping_corpus") else {
        return;
    };
    let data = loghub.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let ev = grouping::evaluate(&data).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", ev.render());
    assert_eq!(ev.systems.len(), 16);
    for s in &ev.systems {
        assert_eq!(s.lines, 2000, "{}", s.system);
        let drain = s
            .drain
            .unwrap_or_else(|| panic!("no Drain figure for {}", s.system));
        assert!(
            s.merged + 1e-9 >= drain,
            "{}: merge stage {:.4} < Drain {drain}",
            s.system,
            s.merged
        );
        if AT_OR_ABOVE_DRAIN.contains(&s.system.as_str()) {
            assert!(
                s.original + 1e-9 >= drain,
                "{}: {:.4} < Drain {drain}",
                s.system,
                s.original
            );
        }
    }
    let (o, c) = (ev.average_original(), ev.average_corrected());
    assert!(o >= FLOOR_AVG_ORIGINAL, "average GA {o:.4}");
    assert!(c >= FLOOR_AVG_CORRECTED, "average GA (corrected) {c:.4}");
    let (mo, mc) = (ev.average_merged(), ev.average_merged_corrected());
    assert!(
        mo >= FLOOR_MERGED_ORIGINAL,
        "merge stage average GA {mo:.4}"
    );
    assert!(
        mc >= FLOOR_MERGED_CORRECTED,
        "merge stage average GA (corrected) {mc:.4}"
    );
    assert_eq!(ev.at_or_above_drain(), 16);
}

/// The JavaScript corpus (in this repository, so never skipped): ≥ 0.98 by the identifier rule,
/// and the figures of both sides are the ones measured.
#[test]
fn javascript_corpus_grouping_accuracy() {
    let js = grouping::evaluate_js(std::path::Path::new(grouping::JS_CORPUS))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", js.render());
    assert_eq!(js.lines, 1037);
    assert!(
        js.by_rule >= grouping::JS_GOAL,
        "by the rule: {:.4}",
        js.by_rule
    );
    // The other side of the rule (identifiers as values) is far lower: the rule is a choice.
    assert!(js.identifiers_as_values < js.by_rule);
    // The merge stage does better than the fingerprint alone.
    assert!(js.by_rule > js.fingerprint_by_rule);
}
