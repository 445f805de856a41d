//! The gate's evaluation: the scenario corpus ([`super::scenarios`]) through `selfheal replay`
//! (the tail pipeline, the cron's gate and ticketing on SQLite), then each labelled bug's
//! incidents against the decisions: precision and recall of `ticket`, time from onset to the
//! first `ticket` decision, next to two trivial policies run on the same corpus — every new
//! incident → ticket (the behaviour before the gate: each incident's first cron run), and nothing
//! → ticket.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::scenarios::{ScenarioConfig, Scenarios};
use crate::config::PipelineConfig;
use crate::event::{Verdict as ItemVerdict, process_item};
use crate::signal::gate::{GatePolicy, Verdict};
use crate::signal::replay::{Replay, ReplaySummary};
use crate::trace::TraceItem;

/// One labelled bug's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct BugOutcome {
    /// Scenario name.
    pub scenario: String,
    /// Bug id.
    pub bug: String,
    /// Should reach an agent.
    pub actionable: bool,
    /// Incidents (fingerprints) it made.
    pub incidents: usize,
    /// Final decision of each of its incidents, by verdict.
    pub decisions: BTreeMap<String, usize>,
    /// Minutes from onset to the first `ticket` decision (None: never).
    pub minutes_to_ticket: Option<f64>,
    /// Ticketed by its deadline (actionable bugs only).
    pub in_time: Option<bool>,
    /// Minutes from onset to the first cron run that saw it (the "every incident" policy).
    pub minutes_to_first_seen: Option<f64>,
    /// Reasons of its first `ticket` decision, or of its last decision.
    pub reasons: Vec<String>,
}

/// Precision and recall of one policy at the bug level (a bug is ticketed when any of its
/// incidents is).
#[derive(Debug, Clone, Serialize)]
pub struct PolicyScore {
    /// Policy name.
    pub policy: String,
    /// Actionable bugs ticketed.
    pub tp: usize,
    /// Non-actionable bugs ticketed.
    pub fp: usize,
    /// Actionable bugs not ticketed.
    pub r#fn: usize,
    /// Non-actionable bugs not ticketed.
    pub tn: usize,
    /// tp / (tp + fp); None when nothing was ticketed.
    pub precision: Option<f64>,
    /// tp / (tp + fn).
    pub recall: Option<f64>,
    /// Actionable bugs ticketed by their deadline.
    pub in_time: usize,
}

/// The gate table.
#[derive(Debug, Clone, Serialize)]
pub struct GateEval {
    /// Per bug.
    pub bugs: Vec<BugOutcome>,
    /// The gate and the trivial policies.
    pub scores: Vec<PolicyScore>,
    /// Incidents that belong to no labelled bug (they count nowhere).
    pub unlabelled_incidents: usize,
    /// The replay's totals.
    pub replay: ReplaySummary,
    /// Replay speed, items per second (wall clock).
    pub items_per_second: f64,
}

fn score(policy: &str, bugs: &[BugOutcome], ticketed: impl Fn(&BugOutcome) -> bool) -> PolicyScore {
    let (mut tp, mut fp, mut fnn, mut tn, mut in_time) = (0, 0, 0, 0, 0);
    for b in bugs {
        match (b.actionable, ticketed(b)) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fnn += 1,
            (false, false) => tn += 1,
        }
        if policy == "gate" && b.in_time == Some(true) {
            in_time += 1;
        }
    }
    PolicyScore {
        policy: policy.to_string(),
        tp,
        fp,
        r#fn: fnn,
        tn,
        precision: (tp + fp > 0).then(|| tp as f64 / (tp + fp) as f64),
        recall: (tp + fnn > 0).then(|| tp as f64 / (tp + fnn) as f64),
        in_time,
    }
}

/// Runs the evaluation on the scenario corpus of `cfg` with `policy` (its mode is forced to
/// `enforce`). Errors: a failing SQLite statement.
pub fn evaluate(cfg: &ScenarioConfig, policy: &GatePolicy) -> Result<GateEval, String> {
    let scenarios = Scenarios::new(cfg);
    let ignore = serde_json::to_string(&scenarios.ignore_messages()).map_err(|e| e.to_string())?;
    let pipeline =
        PipelineConfig::from_vars(None, None, Some(&ignore)).map_err(|e| e.to_string())?;
    let mut policy = policy.clone();
    policy.mode = crate::signal::gate::GateMode::Enforce;

    // Fingerprint → bug, from each bug's samples through the same pipeline.
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for (i, bug) in scenarios.bugs().iter().enumerate() {
        for s in &bug.samples {
            if let Ok(item) = serde_json::from_value::<TraceItem>(s.clone())
                && let ItemVerdict::Event(e) = process_item(&item, &pipeline, 0)
            {
                owner.insert(e.fingerprint, i);
            }
        }
    }

    let started = std::time::Instant::now();
    let mut replay = Replay::new(pipeline, policy, ":memory:").map_err(|e| e.to_string())?;
    // Per fingerprint: first decision time, first ticket time, last verdict.
    let mut first_seen: BTreeMap<String, i64> = BTreeMap::new();
    let mut first_ticket: BTreeMap<String, i64> = BTreeMap::new();
    let mut last: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut why: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut on_line = |d: crate::signal::replay::DecisionLine| {
        first_seen.entry(d.fingerprint.clone()).or_insert(d.at);
        if d.decision == Verdict::Ticket && !first_ticket.contains_key(&d.fingerprint) {
            first_ticket.insert(d.fingerprint.clone(), d.at);
            why.insert(d.fingerprint.clone(), d.reasons.clone());
        } else if !first_ticket.contains_key(&d.fingerprint) {
            why.insert(d.fingerprint.clone(), d.reasons.clone());
        }
        last.insert(d.fingerprint, d.decision);
    };
    for (_, line) in scenarios.invocations() {
        replay
            .feed(&line, &mut on_line)
            .map_err(|e| e.to_string())?;
    }
    let summary = replay.finish(&mut on_line).map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();

    let mut per_bug: Vec<Vec<&String>> = vec![Vec::new(); scenarios.bugs().len()];
    let mut unlabelled = BTreeSet::new();
    for fp in first_seen.keys() {
        match owner.get(fp) {
            Some(&i) => per_bug[i].push(fp),
            None => {
                unlabelled.insert(fp.clone());
            }
        }
    }
    let minutes = |t: i64, onset: i64| (t - onset) as f64 / 60_000.0;
    let bugs: Vec<BugOutcome> = scenarios
        .bugs()
        .iter()
        .zip(&per_bug)
        .map(|(b, fps)| {
            let ticket_at = fps
                .iter()
                .filter_map(|f| first_ticket.get(*f))
                .min()
                .copied();
            let seen_at = fps.iter().filter_map(|f| first_seen.get(*f)).min().copied();
            let mut decisions = BTreeMap::new();
            for f in fps {
                if let Some(v) = last.get(*f) {
                    *decisions.entry(v.as_str().to_string()).or_insert(0) += 1;
                }
            }
            BugOutcome {
                scenario: b.scenario.to_string(),
                bug: b.bug.clone(),
                actionable: b.actionable,
                incidents: fps.len(),
                decisions,
                minutes_to_ticket: ticket_at.map(|t| minutes(t, b.onset_ms)),
                in_time: b
                    .actionable
                    .then(|| ticket_at.is_some_and(|t| b.deadline_ms.is_none_or(|d| t <= d))),
                minutes_to_first_seen: seen_at.map(|t| minutes(t, b.onset_ms)),
                reasons: fps
                    .iter()
                    .filter_map(|f| why.get(*f))
                    .flatten()
                    .cloned()
                    .collect::<BTreeSet<String>>()
                    .into_iter()
                    .collect(),
            }
        })
        .collect();
    let scores = vec![
        score("gate", &bugs, |b| b.minutes_to_ticket.is_some()),
        score("every new incident", &bugs, |b| b.incidents > 0),
        score("nothing", &bugs, |_| false),
    ];
    Ok(GateEval {
        items_per_second: summary.items as f64 / secs.max(1e-9),
        bugs,
        scores,
        unlabelled_incidents: unlabelled.len(),
        replay: summary,
    })
}

/// The table as text.
pub fn render(e: &GateEval) -> String {
    let mut out = String::from(
        "Gate on the scenario corpus (selfheal replay, enforce mode, shipped defaults)\n\n",
    );
    out.push_str("| scenario | bug | label | incidents | final decisions | reasons | onset → ticket | in time | onset → first seen |\n|---|---|---|---|---|---|---|---|---|\n");
    let m = |x: Option<f64>| x.map_or("—".to_string(), |v| format!("{v:.0} min"));
    for b in &e.bugs {
        let decisions: Vec<String> = b
            .decisions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            b.scenario,
            b.bug,
            if b.actionable {
                "actionable"
            } else {
                "not actionable"
            },
            b.incidents,
            decisions.join(", "),
            b.reasons.join(" "),
            m(b.minutes_to_ticket),
            b.in_time.map_or("", |t| if t { "yes" } else { "NO" }),
            m(b.minutes_to_first_seen),
        ));
    }
    out.push_str(
        "\n| policy | tp | fp | fn | tn | precision | recall |\n|---|---|---|---|---|---|---|\n",
    );
    let f = |x: Option<f64>| x.map_or("—".to_string(), |v| format!("{v:.3}"));
    for s in &e.scores {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            s.policy,
            s.tp,
            s.fp,
            s.r#fn,
            s.tn,
            f(s.precision),
            f(s.recall)
        ));
    }
    out.push_str(&format!(
        "\nreplay: {} items, {} events, {} incidents ({} unlabelled), {} tickets, {} cron runs, {:.0} items/s\n",
        e.replay.items,
        e.replay.events,
        e.replay.incidents,
        e.unlabelled_incidents,
        e.replay.tickets,
        e.replay.cron_runs,
        e.items_per_second
    ));
    out
}
