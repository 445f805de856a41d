//! The gate's step of a cron run, as data: the reads that load [`IncidentInput`]s and
//! [`ScriptInput`]s, the assembly of their rows, and the writes that store each decision. The
//! cron Worker runs these statements on D1, `selfheal replay` on SQLite with the same migrations:
//! one code path, so the replayed decisions are the ones production would make.
//!
//! Round trips: 1. [`store::SELECT_GATE_CANDIDATES`]; 2. [`context_statements`] (samples, occurrence and
//! traffic buckets, scripts, releases; one batch); 3. [`decision_statements`] (one batch).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::gate::{
    BUCKET_MS, Bucket, DAY_MS, Decision, GateMode, HOUR_MS, IncidentInput, RouteTraffic,
    ScriptInput, WEEK_MS,
};
use crate::store::{self, EventSample, GatedIncidentRow, SqlValue, Statement};
use crate::ticket::{self, SignalNote};

/// Incidents the gate considers per run (most recently active first).
pub const MAX_GATE_CANDIDATES: i64 = 500;
/// Only incidents active within this are considered, ms (7 days).
pub const ACTIVE_WINDOW_MS: i64 = WEEK_MS;
/// Fine (5-minute) buckets are read for this long before the run, ms; hourly ones before that.
pub const FINE_HISTORY_MS: i64 = 2 * HOUR_MS;
/// History read for baselines, ms (28 days + a day of margin).
pub const HISTORY_MS: i64 = 29 * DAY_MS;
/// Incidents ticketed per run (the rest wait for the next run).
pub const MAX_TICKETS_PER_RUN: i64 = 50;
/// Samples read per incident for the cause checks.
pub const GATE_SAMPLES: i64 = 3;

/// The statement that reads the candidates at `now_ms`.
pub fn candidates_statement(now_ms: i64) -> Statement {
    Statement::new(
        store::SELECT_GATE_CANDIDATES,
        vec![
            (now_ms - ACTIVE_WINDOW_MS).into(),
            MAX_GATE_CANDIDATES.into(),
        ],
    )
}

/// One bucket row, of occurrences (`key` = fingerprint) or traffic (`key` = script, `route`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketRow {
    /// Fingerprint (occurrences) or script (traffic).
    pub key: String,
    /// Route (traffic only).
    #[serde(default)]
    pub route: Option<String>,
    /// Bucket start, ms.
    pub start_ms: i64,
    /// Bucket width, ms.
    pub width_ms: i64,
    /// Release ('' when unknown).
    pub release: String,
    /// Count.
    pub count: i64,
}

/// A script row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptRow {
    /// Script name.
    pub script: String,
    /// First traffic counted, ms.
    pub first_traffic_ms: Option<i64>,
    /// Requests in the impact window.
    pub requests_in_impact_window: i64,
    /// Incidents decided `ticket` in the last hour.
    pub tickets_last_hour: i64,
    /// … in the last day.
    pub tickets_last_day: i64,
}

/// A release row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRow {
    /// Script name.
    pub script: String,
    /// Release.
    pub release: String,
    /// First seen, ms.
    pub first_seen: i64,
}

const SELECT_GATE_SAMPLES: &str = "SELECT fingerprint, method, url, status, outcome, message, stack, logs, release, \
event_timestamp, request FROM (SELECT e.*, row_number() OVER (PARTITION BY e.fingerprint ORDER BY e.event_timestamp DESC, e.id DESC) AS rn \
FROM ops_log_events e WHERE e.fingerprint IN (SELECT value FROM json_each(?1))) WHERE rn <= ?2";

const SELECT_OCC_BUCKETS: &str = "SELECT fingerprint AS key, NULL AS route, bucket AS start_ms, 300000 AS width_ms, \
release, n AS count FROM ops_occ_5m WHERE fingerprint IN (SELECT value FROM json_each(?1)) AND bucket >= ?2 \
UNION ALL SELECT fingerprint, NULL, bucket, 3600000, release, n FROM ops_occ_1h \
WHERE fingerprint IN (SELECT value FROM json_each(?1)) AND bucket < ?2 AND bucket >= ?3";

const SELECT_TRAFFIC_BUCKETS: &str = "SELECT script AS key, route, bucket AS start_ms, 300000 AS width_ms, release, \
requests AS count FROM ops_traffic_5m WHERE (script, route) IN \
(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1)) AND bucket >= ?2 \
UNION ALL SELECT script, route, bucket, 3600000, release, requests FROM ops_traffic_1h WHERE (script, route) IN \
(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1)) AND bucket < ?2 AND bucket >= ?3";

const SELECT_SCRIPTS: &str = "SELECT s.value AS script, \
(SELECT min(bucket) FROM ops_traffic_1h WHERE script = s.value) AS first_traffic_ms, \
(SELECT coalesce(sum(requests), 0) FROM ops_traffic_5m WHERE script = s.value AND bucket >= ?2) AS requests_in_impact_window, \
(SELECT count(*) FROM gate_decisions d JOIN ops_incidents i ON i.id = d.incident_id \
 WHERE i.script_name = s.value AND d.decision = 'ticket' AND d.at >= ?3) AS tickets_last_hour, \
(SELECT count(*) FROM gate_decisions d JOIN ops_incidents i ON i.id = d.incident_id \
 WHERE i.script_name = s.value AND d.decision = 'ticket' AND d.at >= ?4) AS tickets_last_day \
FROM json_each(?1) s";

const SELECT_RELEASES: &str = "SELECT script, release, first_seen FROM ops_releases \
WHERE script IN (SELECT value FROM json_each(?1))";

/// Index of each read in [`context_statements`].
pub mod ctx {
    /// Samples (for the cause checks).
    pub const SAMPLES: usize = 0;
    /// Occurrence buckets.
    pub const OCCURRENCES: usize = 1;
    /// Traffic buckets.
    pub const TRAFFIC: usize = 2;
    /// Scripts.
    pub const SCRIPTS: usize = 3;
    /// Releases.
    pub const RELEASES: usize = 4;
}

/// Start of the fine buckets for a run at `now_ms`: an hour boundary, so hourly rows before it
/// and 5-minute rows after it never overlap.
pub fn fine_from(now_ms: i64) -> i64 {
    (now_ms - FINE_HISTORY_MS).div_euclid(HOUR_MS) * HOUR_MS
}

/// The reads of the gate's context for `candidates` at `now_ms` (one batch; indices in [`ctx`]).
/// `impact_window_ms` is the policy's impact window.
pub fn context_statements(
    candidates: &[GatedIncidentRow],
    now_ms: i64,
    impact_window_ms: i64,
) -> Vec<Statement> {
    let fps: Vec<&str> = candidates
        .iter()
        .map(|c| c.incident.fingerprint.as_str())
        .collect();
    let pairs: BTreeSet<(&str, &str)> = candidates
        .iter()
        .map(|c| {
            (
                c.incident.script_name.as_str(),
                c.incident.route_pattern.as_str(),
            )
        })
        .collect();
    let pairs: Vec<[&str; 2]> = pairs.into_iter().map(|(s, r)| [s, r]).collect();
    let scripts: BTreeSet<&str> = candidates
        .iter()
        .map(|c| c.incident.script_name.as_str())
        .collect();
    let fine = fine_from(now_ms);
    let since = now_ms - HISTORY_MS;
    let impact_from = (now_ms - impact_window_ms).div_euclid(BUCKET_MS) * BUCKET_MS;
    vec![
        Statement::new(SELECT_GATE_SAMPLES, vec![js(&fps), GATE_SAMPLES.into()]),
        Statement::new(
            SELECT_OCC_BUCKETS,
            vec![js(&fps), fine.into(), since.into()],
        ),
        Statement::new(
            SELECT_TRAFFIC_BUCKETS,
            vec![js(&pairs), fine.into(), since.into()],
        ),
        Statement::new(
            SELECT_SCRIPTS,
            vec![
                js(&scripts),
                impact_from.into(),
                (now_ms - HOUR_MS).into(),
                (now_ms - DAY_MS).into(),
            ],
        ),
        Statement::new(SELECT_RELEASES, vec![js(&scripts)]),
    ]
}

/// JSON text of plain data as a parameter.
fn js<T: Serialize>(v: &T) -> SqlValue {
    SqlValue::Text(store::json_text(v))
}

/// The platform's frames: a stack whose first frame is one of these is not the script's code.
const PLATFORM_FRAME_PREFIXES: &[&str] = &["cloudflare-internal:", "node:", "internal:"];

fn first_frame_is_platform(stack: &str) -> bool {
    stack
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("at "))
        .is_some_and(|l| PLATFORM_FRAME_PREFIXES.iter().any(|p| l.contains(p)))
}

/// Builds the gate's inputs from the rows of [`context_statements`].
pub fn assemble(
    candidates: &[GatedIncidentRow],
    samples: &[EventSample],
    occurrences: &[BucketRow],
    traffic: &[BucketRow],
    scripts: &[ScriptRow],
    releases: &[ReleaseRow],
) -> (Vec<IncidentInput>, Vec<ScriptInput>) {
    let mut occ: BTreeMap<&str, Vec<Bucket>> = BTreeMap::new();
    for r in occurrences {
        occ.entry(r.key.as_str()).or_default().push(bucket(r));
    }
    let mut by_fp: BTreeMap<&str, Vec<&EventSample>> = BTreeMap::new();
    for s in samples {
        by_fp.entry(s.fingerprint.as_str()).or_default().push(s);
    }
    let incidents = candidates
        .iter()
        .map(|row| {
            let c = &row.incident;
            let mine = by_fp
                .get(c.fingerprint.as_str())
                .cloned()
                .unwrap_or_default();
            let mut texts = Vec::new();
            for s in &mine {
                texts.push(s.message.clone());
                if let Ok(logs) = serde_json::from_str::<Vec<String>>(&s.logs) {
                    texts.extend(logs);
                }
            }
            IncidentInput {
                incident_id: c.id,
                fingerprint: c.fingerprint.clone(),
                script: c.script_name.clone(),
                route: c.route_pattern.clone(),
                exception_type: c.exception_type.clone(),
                message: c.normalized_message.clone(),
                top_frame: c.top_frame.clone(),
                status_class: c.status_class.clone(),
                first_seen_ms: c.first_seen,
                last_seen_ms: c.last_seen,
                occurrence_count: u64::try_from(c.occurrence_count).unwrap_or(0),
                sample_texts: texts,
                has_stack: mine.iter().any(|s| !s.stack.trim().is_empty()),
                platform_frame: mine.iter().any(|s| first_frame_is_platform(&s.stack)),
                occurrences: occ.remove(c.fingerprint.as_str()).unwrap_or_default(),
            }
        })
        .collect();

    let mut routes: BTreeMap<(&str, &str), Vec<Bucket>> = BTreeMap::new();
    for r in traffic {
        routes
            .entry((r.key.as_str(), r.route.as_deref().unwrap_or("")))
            .or_default()
            .push(bucket(r));
    }
    let scripts = scripts
        .iter()
        .map(|s| ScriptInput {
            script: s.script.clone(),
            first_traffic_ms: s.first_traffic_ms,
            releases: releases
                .iter()
                .filter(|r| r.script == s.script)
                .map(|r| (r.release.clone(), r.first_seen))
                .collect(),
            routes: routes
                .iter()
                .filter(|((script, _), _)| *script == s.script)
                .map(|((_, route), b)| RouteTraffic {
                    route: route.to_string(),
                    buckets: b.clone(),
                })
                .collect(),
            requests_in_impact_window: u64::try_from(s.requests_in_impact_window).unwrap_or(0),
            tickets_last_hour: u32::try_from(s.tickets_last_hour).unwrap_or(u32::MAX),
            tickets_last_day: u32::try_from(s.tickets_last_day).unwrap_or(u32::MAX),
        })
        .collect();
    (incidents, scripts)
}

fn bucket(r: &BucketRow) -> Bucket {
    Bucket {
        start_ms: r.start_ms,
        width_ms: r.width_ms,
        release: r.release.clone(),
        count: u64::try_from(r.count).unwrap_or(0),
    }
}

const UPDATE_INCIDENT_DECISION: &str = "UPDATE ops_incidents SET gate_decision = ?2, gate_reasons = ?3, \
gate_signals = ?4, gate_priority = ?5, gate_at = ?6 WHERE id = ?1 AND (gate_decision IS NOT ?2 \
OR gate_reasons IS NOT ?3 OR gate_at IS NULL OR gate_at < ?6 - 3600000)";

const INSERT_DECISION_CHANGE: &str = "INSERT INTO gate_decisions (incident_id, at, mode, decision, reasons, signals, priority) \
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE coalesce((SELECT decision FROM gate_decisions WHERE incident_id = ?1 \
ORDER BY id DESC LIMIT 1), '') <> ?4 RETURNING id, incident_id";

/// The writes of one run's decisions (one batch): per decision, first the history row (only when
/// the verdict changed; `RETURNING` tells which did), then the incident's current decision.
/// Figures are refreshed at most hourly while nothing changes, to bound D1 writes. In `enforce`
/// mode one more statement follows: an external ticket whose incident is now decided `ticket`
/// becomes a fix ticket whose job the re-send path sends ([`store::UPGRADE_EXTERNAL_TICKETS`]).
pub fn decision_statements(decisions: &[Decision], mode: GateMode, now_ms: i64) -> Vec<Statement> {
    let mut out = Vec::with_capacity(decisions.len() * 2);
    for d in decisions {
        let reasons = serde_json::to_string(&d.reasons).unwrap_or_else(|_| "[]".into());
        let signals = serde_json::to_string(&d.signals).unwrap_or_else(|_| "{}".into());
        let priority = SqlValue::Real(d.priority);
        out.push(Statement::new(
            INSERT_DECISION_CHANGE,
            vec![
                d.incident_id.into(),
                now_ms.into(),
                mode.as_str().into(),
                d.decision.as_str().into(),
                reasons.clone().into(),
                signals.clone().into(),
                priority.clone(),
            ],
        ));
        out.push(Statement::new(
            UPDATE_INCIDENT_DECISION,
            vec![
                d.incident_id.into(),
                d.decision.as_str().into(),
                reasons.into(),
                signals.into(),
                priority,
                now_ms.into(),
            ],
        ));
    }
    if mode == GateMode::Enforce {
        out.push(Statement::new(
            store::UPGRADE_EXTERNAL_TICKETS,
            vec![now_ms.into()],
        ));
    }
    out
}

/// Prunes the rate tables at `now_ms`: 5-minute rows after 2 days, hourly ones and flush keys
/// after 35 days (flush keys after 2 days).
pub fn prune_statements(now_ms: i64) -> Vec<Statement> {
    let fine = now_ms - 2 * DAY_MS;
    let coarse = now_ms - 35 * DAY_MS;
    vec![
        Statement::new(
            "DELETE FROM ops_traffic_5m WHERE bucket < ?1",
            vec![fine.into()],
        ),
        Statement::new(
            "DELETE FROM ops_occ_5m WHERE bucket < ?1",
            vec![fine.into()],
        ),
        Statement::new(
            "DELETE FROM ops_traffic_1h WHERE bucket < ?1",
            vec![coarse.into()],
        ),
        Statement::new(
            "DELETE FROM ops_occ_1h WHERE bucket < ?1",
            vec![coarse.into()],
        ),
        Statement::new(
            "DELETE FROM ops_traffic_flushes WHERE at < ?1",
            vec![fine.into()],
        ),
    ]
}

/// The read of up to [`MAX_TICKETS_PER_RUN`] ticket candidates with `select` (one of
/// [`store::SELECT_TICKET_CANDIDATES`], [`store::SELECT_GATED_TICKET_CANDIDATES`],
/// [`store::SELECT_EXTERNAL_TICKET_CANDIDATES`]).
pub fn ticket_candidates_statement(select: &'static str) -> Statement {
    Statement::new(select, vec![MAX_TICKETS_PER_RUN.into()])
}

/// The read of the samples the ticket bodies of `candidates` show.
pub fn ticket_samples_statement(candidates: &[GatedIncidentRow]) -> Statement {
    let fps: Vec<&str> = candidates
        .iter()
        .map(|c| c.incident.fingerprint.as_str())
        .collect();
    Statement::new(
        store::SELECT_SAMPLES,
        vec![js(&fps), (ticket::MAX_SAMPLES as i64).into()],
    )
}

/// Statements per incident in [`ticket_statements`] ([`super::groups::STATEMENTS_PER_INCIDENT`]).
pub const TICKET_STATEMENTS_PER_INCIDENT: usize = super::groups::STATEMENTS_PER_INCIDENT;

/// The statements that open tickets of `kind` (`fix` | `external`) for `candidates`, four per
/// incident ([`super::groups::group_ticket_statements`]: insert unless the incident's group
/// already has a ticket, history row, `member_joined` row on the group's ticket holder, link; the
/// insert returns a row only when it created the ticket), with the gate's **Signal** section in
/// the body when the incident has a stored decision. Tickets follow the group: the first
/// candidate of a group (most important first) opens its ticket, later ones join it.
pub fn ticket_statements(
    candidates: &[GatedIncidentRow],
    samples: &[EventSample],
    kind: &str,
    now_ms: i64,
) -> Vec<Statement> {
    let mut out = Vec::with_capacity(candidates.len() * TICKET_STATEMENTS_PER_INCIDENT);
    for c in candidates {
        let inc = &c.incident;
        let note = SignalNote::from_columns(
            c.gate_decision.as_deref(),
            c.gate_reasons.as_deref(),
            c.gate_signals.as_deref(),
        );
        let title = ticket::title(inc);
        let body = ticket::body_with_signal(inc, samples, note.as_ref());
        out.extend(super::groups::group_ticket_statements(
            inc.id,
            &inc.fingerprint,
            &title,
            &body,
            kind,
            now_ms,
        ));
    }
    out
}
