//! The measure of the gate: over the incidents an operator labelled (`actionable` |
//! `not_actionable`, `POST /api/incidents/{id}/label`), the confusion matrix of the decision
//! `ticket` against the labels, precision and recall, and the time from an incident's first
//! occurrence to its first `ticket` decision. Served by `GET /api/gate/report` and printed by
//! `selfheal gate-report`.
//!
//! **Positive** = the gate decided `ticket` for the incident at least once (any row of
//! `gate_decisions`, in `enforce` or `shadow` mode), whatever it decides now: an incident that
//! was ticketed and later went to `watch` still reached (or would have reached) an agent.
//!
//! [`build`] is pure; the statements it reads ([`report_statements`]) and the API's other reads
//! and writes on the gate ([`LIST_INCIDENTS_GATED`], [`SELECT_DECISIONS`], [`SET_LABEL`]) are here
//! so that the SQLite tests run the exact SQL the agent-runner sends to D1.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{GatedIncidentRow, IncidentRow, SqlValue, Statement};

/// The operator labels, as stored in `ops_incidents.label`.
pub const LABELS: &[&str] = &["actionable", "not_actionable"];

/// Labelled incidents read per report (newest labels first past this).
pub const MAX_LABELLED: i64 = 10_000;

/// Labelled incidents with their first `ticket` decision (`?1` = limit). `first_ticket_at` is
/// NULL when the gate never decided `ticket`.
pub const SELECT_LABELLED: &str = "SELECT i.id AS incident_id, i.label, i.first_seen, i.gate_decision, \
(SELECT min(d.at) FROM gate_decisions d WHERE d.incident_id = i.id AND d.decision = 'ticket') AS first_ticket_at \
FROM ops_incidents i WHERE i.label IS NOT NULL ORDER BY i.label_at DESC, i.id DESC LIMIT ?1";

/// Incidents per current decision (`decision` NULL = never decided).
pub const SELECT_DECISION_COUNTS: &str = "SELECT gate_decision AS decision, count(*) AS n FROM ops_incidents \
GROUP BY gate_decision ORDER BY gate_decision";

/// Index of each read in [`report_statements`].
pub mod idx {
    /// [`super::SELECT_LABELLED`].
    pub const LABELLED: usize = 0;
    /// [`super::SELECT_DECISION_COUNTS`].
    pub const COUNTS: usize = 1;
}

/// The reads of one report (one batch; indices in [`idx`]).
pub fn report_statements() -> Vec<Statement> {
    vec![
        Statement::new(SELECT_LABELLED, vec![MAX_LABELLED.into()]),
        Statement::new(SELECT_DECISION_COUNTS, Vec::new()),
    ]
}

/// The incidents list of the API: the columns of [`IncidentRow`] and the gate's current decision
/// and the operator's label (most recently active first, 500 at most).
pub const LIST_INCIDENTS_GATED: &str = "SELECT id, fingerprint, fingerprint_version, script_name, route_pattern, \
exception_type, normalized_message, top_frame, status_class, occurrence_count, stored_events, first_seen, last_seen, \
first_release, last_release, status, ticket_id, gate_decision, gate_reasons, gate_priority, gate_at, label, label_at \
FROM ops_incidents ORDER BY last_seen DESC, id DESC LIMIT 500";

/// The incident `?1` (its id, current decision and label); no row when unknown.
pub const SELECT_INCIDENT_GATE: &str =
    "SELECT id, gate_decision, label FROM ops_incidents WHERE id = ?1";

/// Every change of decision of incident `?1`, oldest first (1000 at most).
pub const SELECT_DECISIONS: &str = "SELECT id, incident_id, at, mode, decision, reasons, signals, priority \
FROM gate_decisions WHERE incident_id = ?1 ORDER BY id LIMIT 1000";

/// Stores label `?2` on incident `?1` at `?3` (ms); returns the row, none when the incident is
/// unknown. The column's CHECK rejects any other label.
pub const SET_LABEL: &str = "UPDATE ops_incidents SET label = ?2, label_at = ?3 WHERE id = ?1 \
RETURNING id AS incident_id, label, label_at";

/// [`SELECT_INCIDENT_GATE`] then [`SELECT_DECISIONS`] for incident `id` (one batch).
pub fn decisions_statements(id: i64) -> Vec<Statement> {
    vec![
        Statement::new(SELECT_INCIDENT_GATE, vec![id.into()]),
        Statement::new(SELECT_DECISIONS, vec![id.into()]),
    ]
}

/// [`SET_LABEL`] for incident `id`. `label` must be one of [`LABELS`] (see [`parse_label`]).
pub fn label_statement(id: i64, label: &str, now_ms: i64) -> Statement {
    Statement::new(
        SET_LABEL,
        vec![id.into(), SqlValue::from(label), now_ms.into()],
    )
}

/// Why a label request body was refused (the API answers 400 with this message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError(pub String);

impl std::fmt::Display for LabelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LabelError {}

/// Reads `{"label": "actionable" | "not_actionable"}` (other fields are refused too, so a typo
/// is not silently ignored). Returns the label as stored.
///
/// Errors: not JSON, not an object, no string `label`, an unknown field, or a label outside
/// [`LABELS`].
pub fn parse_label(body: &[u8]) -> Result<&'static str, LabelError> {
    const SHAPE: &str = r#"expected {"label": "actionable" | "not_actionable"}"#;
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| LabelError(format!("body is not JSON ({e}); {SHAPE}")))?;
    let Some(obj) = v.as_object() else {
        return Err(LabelError(SHAPE.into()));
    };
    if let Some(k) = obj.keys().find(|k| k.as_str() != "label") {
        let k: String = k.chars().take(40).collect();
        return Err(LabelError(format!("unknown field {k:?}; {SHAPE}")));
    }
    let Some(label) = obj.get("label").and_then(Value::as_str) else {
        return Err(LabelError(SHAPE.into()));
    };
    LABELS.iter().copied().find(|l| *l == label).ok_or_else(|| {
        let shown: String = label.chars().take(40).collect();
        LabelError(format!(
            "label {shown:?} is not one of actionable, not_actionable"
        ))
    })
}

/// One row of [`SELECT_LABELLED`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledRow {
    /// `ops_incidents.id`.
    pub incident_id: i64,
    /// `actionable` or `not_actionable`.
    pub label: String,
    /// First occurrence, ms since the epoch (the items' clock).
    pub first_seen: i64,
    /// The current decision, if any.
    #[serde(default)]
    pub gate_decision: Option<String>,
    /// The first `ticket` decision, ms since the epoch (the cron's clock); `None` = never.
    #[serde(default)]
    pub first_ticket_at: Option<i64>,
}

/// One row of [`SELECT_DECISION_COUNTS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionCountRow {
    /// `ticket`, `watch`, `external`, `suppressed`; `None` = not decided yet.
    #[serde(default)]
    pub decision: Option<String>,
    /// Incidents.
    pub n: i64,
}

/// The confusion matrix of `ticket` (positive) against the labels (`actionable` = positive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// Decided `ticket`, labelled `actionable`.
    pub true_positive: u64,
    /// Decided `ticket`, labelled `not_actionable`.
    pub false_positive: u64,
    /// Never decided `ticket`, labelled `actionable`.
    pub false_negative: u64,
    /// Never decided `ticket`, labelled `not_actionable`.
    pub true_negative: u64,
}

impl Confusion {
    /// TP / (TP + FP); `None` when the gate decided `ticket` for no labelled incident.
    pub fn precision(&self) -> Option<f64> {
        ratio(self.true_positive, self.true_positive + self.false_positive)
    }

    /// TP / (TP + FN); `None` when no incident is labelled `actionable`.
    pub fn recall(&self) -> Option<f64> {
        ratio(self.true_positive, self.true_positive + self.false_negative)
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Time from first occurrence to the first `ticket` decision of one labelled incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketTiming {
    /// `ops_incidents.id`.
    pub incident_id: i64,
    /// The operator's label.
    pub label: String,
    /// First occurrence, ms since the epoch.
    pub first_seen: i64,
    /// First `ticket` decision, ms since the epoch.
    pub first_ticket_at: i64,
    /// `first_ticket_at - first_seen`, ms; 0 when the items' clock ran ahead of the cron's.
    pub ms: i64,
}

/// Time to ticket over the labelled incidents the gate ever decided `ticket`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeToTicket {
    /// Incidents measured.
    pub count: u64,
    /// Median, ms (the mean of the two middle values, rounded down, for an even count); `None`
    /// when none was measured.
    pub median_ms: Option<i64>,
    /// Longest, ms; `None` when none was measured.
    pub max_ms: Option<i64>,
    /// Per incident, by incident id.
    pub incidents: Vec<TicketTiming>,
}

/// The gate's report (the JSON of `GET /api/gate/report`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    /// Labelled incidents counted (at most [`MAX_LABELLED`]).
    pub labelled: u64,
    /// Of them, labelled `actionable`.
    pub actionable: u64,
    /// `ticket` against the labels.
    pub confusion: Confusion,
    /// See [`Confusion::precision`]; `null` when undefined.
    pub precision: Option<f64>,
    /// See [`Confusion::recall`]; `null` when undefined.
    pub recall: Option<f64>,
    /// First occurrence → first `ticket` decision.
    pub time_to_ticket: TimeToTicket,
    /// Every incident by its current decision (`ticket`, `watch`, `external`, `suppressed`,
    /// `undecided`), labelled or not.
    pub decisions: BTreeMap<String, u64>,
    /// Every incident, labelled or not.
    pub incidents: u64,
}

/// Builds the report from the rows of [`report_statements`]. Rows with a label outside
/// [`LABELS`] are skipped (the schema's CHECK keeps them out).
pub fn build(labelled: &[LabelledRow], counts: &[DecisionCountRow]) -> GateReport {
    let mut c = Confusion::default();
    let mut timings = Vec::new();
    let mut labelled_n = 0;
    let mut actionable = 0;
    for r in labelled {
        let positive_label = match r.label.as_str() {
            "actionable" => true,
            "not_actionable" => false,
            _ => continue,
        };
        labelled_n += 1;
        actionable += u64::from(positive_label);
        match (r.first_ticket_at.is_some(), positive_label) {
            (true, true) => c.true_positive += 1,
            (true, false) => c.false_positive += 1,
            (false, true) => c.false_negative += 1,
            (false, false) => c.true_negative += 1,
        }
        if let Some(at) = r.first_ticket_at {
            timings.push(TicketTiming {
                incident_id: r.incident_id,
                label: r.label.clone(),
                first_seen: r.first_seen,
                first_ticket_at: at,
                ms: (at - r.first_seen).max(0),
            });
        }
    }
    timings.sort_by_key(|t| t.incident_id);
    let mut ms: Vec<i64> = timings.iter().map(|t| t.ms).collect();
    ms.sort_unstable();
    let median_ms = match ms.len() {
        0 => None,
        n if n % 2 == 1 => Some(ms[n / 2]),
        n => Some(ms[n / 2 - 1] + (ms[n / 2] - ms[n / 2 - 1]) / 2),
    };
    let mut decisions = BTreeMap::new();
    let mut incidents = 0;
    for r in counts {
        let n = u64::try_from(r.n).unwrap_or(0);
        incidents += n;
        *decisions
            .entry(r.decision.clone().unwrap_or_else(|| "undecided".into()))
            .or_insert(0) += n;
    }
    GateReport {
        labelled: labelled_n,
        actionable,
        confusion: c,
        precision: c.precision(),
        recall: c.recall(),
        time_to_ticket: TimeToTicket {
            count: timings.len() as u64,
            median_ms,
            max_ms: ms.last().copied(),
            incidents: timings,
        },
        decisions,
        incidents,
    }
}

/// An incident as the API lists it: every [`IncidentRow`] field, then `gate_decision`,
/// `gate_reasons` (the reason codes, parsed; `null` before a decision), `gate_priority`,
/// `gate_at`, `label`, `label_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentView {
    /// The incident's columns.
    #[serde(flatten)]
    pub incident: IncidentRow,
    /// The current decision.
    pub gate_decision: Option<String>,
    /// Its reason codes.
    pub gate_reasons: Option<Vec<String>>,
    /// Its priority.
    pub gate_priority: Option<f64>,
    /// When it was last written, ms.
    pub gate_at: Option<i64>,
    /// `actionable`, `not_actionable` or `None`.
    pub label: Option<String>,
    /// When it was labelled, ms.
    pub label_at: Option<i64>,
}

impl From<GatedIncidentRow> for IncidentView {
    fn from(r: GatedIncidentRow) -> Self {
        IncidentView {
            incident: r.incident,
            gate_decision: r.gate_decision,
            // Written by the cron as a JSON array; anything else reads as no reasons.
            gate_reasons: r
                .gate_reasons
                .as_deref()
                .map(|t| serde_json::from_str(t).unwrap_or_default()),
            gate_priority: r.gate_priority,
            gate_at: r.gate_at,
            label: r.label,
            label_at: r.label_at,
        }
    }
}

/// One row of [`SELECT_DECISIONS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRow {
    /// `gate_decisions.id`.
    pub id: i64,
    /// The incident.
    pub incident_id: i64,
    /// When decided, ms since the epoch.
    pub at: i64,
    /// `enforce` or `shadow`.
    pub mode: String,
    /// `ticket`, `watch`, `external` or `suppressed`.
    pub decision: String,
    /// JSON text of the reason codes.
    pub reasons: String,
    /// JSON text of the figures ([`crate::signal::gate::Signals`]).
    pub signals: String,
    /// Priority.
    pub priority: f64,
}

/// A decision as the API returns it: the row with `reasons` and `signals` parsed (`reasons` an
/// array of codes, `signals` the object of figures; `null` if the stored text is not JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionView {
    /// `gate_decisions.id`.
    pub id: i64,
    /// The incident.
    pub incident_id: i64,
    /// When decided, ms since the epoch.
    pub at: i64,
    /// `enforce` or `shadow`.
    pub mode: String,
    /// The verdict.
    pub decision: String,
    /// Reason codes.
    pub reasons: Value,
    /// Figures.
    pub signals: Value,
    /// Priority.
    pub priority: f64,
}

impl From<DecisionRow> for DecisionView {
    fn from(r: DecisionRow) -> Self {
        DecisionView {
            id: r.id,
            incident_id: r.incident_id,
            at: r.at,
            mode: r.mode,
            decision: r.decision,
            reasons: serde_json::from_str(&r.reasons).unwrap_or(Value::Null),
            signals: serde_json::from_str(&r.signals).unwrap_or(Value::Null),
            priority: r.priority,
        }
    }
}

/// Formats a duration in ms for people (`42 s`, `7.5 min`, `3.2 h`).
pub fn human_ms(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// The report as text (what `selfheal gate-report` prints).
pub fn render(r: &GateReport) -> String {
    let c = &r.confusion;
    let pct = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.3}"));
    let mut out = String::new();
    out.push_str(&format!(
        "gate report: {} labelled incidents ({} actionable) of {}\n\n",
        r.labelled, r.actionable, r.incidents
    ));
    out.push_str("                      labelled actionable   labelled not_actionable\n");
    out.push_str(&format!(
        "decided ticket        {:>19}   {:>23}\n",
        c.true_positive, c.false_positive
    ));
    out.push_str(&format!(
        "never ticket          {:>19}   {:>23}\n\n",
        c.false_negative, c.true_negative
    ));
    out.push_str(&format!(
        "precision {}   recall {}\n",
        pct(r.precision),
        pct(r.recall)
    ));
    let t = &r.time_to_ticket;
    match (t.median_ms, t.max_ms) {
        (Some(med), Some(max)) => out.push_str(&format!(
            "time to ticket (first occurrence -> first ticket decision, {} incident{}): median {}, max {}\n",
            t.count,
            if t.count == 1 { "" } else { "s" },
            human_ms(med),
            human_ms(max)
        )),
        _ => out.push_str("time to ticket: no labelled incident was decided ticket\n"),
    }
    for i in &t.incidents {
        out.push_str(&format!(
            "  incident {:>6}  {:<15} {}\n",
            i.incident_id,
            i.label,
            human_ms(i.ms)
        ));
    }
    let decisions: Vec<String> = r
        .decisions
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    out.push_str(&format!(
        "current decisions: {}\n",
        if decisions.is_empty() {
            "none".to_string()
        } else {
            decisions.join(" ")
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, label: &str, first_seen: i64, ticket_at: Option<i64>) -> LabelledRow {
        LabelledRow {
            incident_id: id,
            label: label.into(),
            first_seen,
            gate_decision: ticket_at.map(|_| "ticket".into()),
            first_ticket_at: ticket_at,
        }
    }

    #[test]
    fn confusion_precision_recall_and_times() {
        let rows = [
            row(1, "actionable", 1_000, Some(61_000)),     // TP, 60 s
            row(2, "actionable", 1_000, Some(301_000)),    // TP, 300 s
            row(3, "actionable", 1_000, None),             // FN
            row(4, "not_actionable", 5_000, Some(65_000)), // FP, 60 s
            row(5, "not_actionable", 5_000, None),         // TN
            row(6, "not_actionable", 5_000, None),         // TN
        ];
        let counts = [
            DecisionCountRow {
                decision: Some("ticket".into()),
                n: 3,
            },
            DecisionCountRow {
                decision: Some("watch".into()),
                n: 4,
            },
            DecisionCountRow {
                decision: None,
                n: 2,
            },
        ];
        let r = build(&rows, &counts);
        assert_eq!(
            r.confusion,
            Confusion {
                true_positive: 2,
                false_positive: 1,
                false_negative: 1,
                true_negative: 2
            }
        );
        assert_eq!((r.labelled, r.actionable, r.incidents), (6, 3, 9));
        assert!((r.precision.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.recall.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.time_to_ticket.count, 3);
        assert_eq!(r.time_to_ticket.median_ms, Some(60_000));
        assert_eq!(r.time_to_ticket.max_ms, Some(300_000));
        let ids: Vec<i64> = r
            .time_to_ticket
            .incidents
            .iter()
            .map(|t| t.incident_id)
            .collect();
        assert_eq!(ids, vec![1, 2, 4]);
        assert_eq!(r.decisions.get("undecided"), Some(&2));
        assert_eq!(r.decisions.get("ticket"), Some(&3));
        let text = render(&r);
        assert!(text.contains("precision 0.667   recall 0.667"), "{text}");
        assert!(text.contains("median 60 s, max 5.0 min"), "{text}");
    }

    #[test]
    fn undefined_figures_are_none_not_zero() {
        let r = build(&[], &[]);
        assert_eq!((r.precision, r.recall), (None, None));
        assert_eq!(r.time_to_ticket.median_ms, None);
        assert!(render(&r).contains("precision n/a   recall n/a"));
        // Only negatives labelled: no ticket → precision undefined; no actionable → recall undefined.
        let r = build(&[row(1, "not_actionable", 0, None)], &[]);
        assert_eq!((r.precision, r.recall), (None, None));
        assert_eq!(r.confusion.true_negative, 1);
        // Only an actionable one, missed: recall 0, precision undefined.
        let r = build(&[row(1, "actionable", 0, None)], &[]);
        assert_eq!((r.precision, r.recall), (None, Some(0.0)));
    }

    #[test]
    fn even_median_clock_skew_and_unknown_labels() {
        let rows = [
            row(1, "actionable", 0, Some(10_000)),
            row(2, "actionable", 0, Some(20_001)),
            // The items' clock ahead of the cron's: never a negative time.
            row(3, "actionable", 50_000, Some(40_000)),
            row(4, "actionable", 0, Some(40_000)),
            row(5, "maybe", 0, Some(1)),
        ];
        let r = build(&rows, &[]);
        assert_eq!(r.labelled, 4);
        assert_eq!(r.time_to_ticket.incidents[2].ms, 0);
        // sorted: 0, 10000, 20001, 40000 → (10000 + 20001) / 2 rounded down.
        assert_eq!(r.time_to_ticket.median_ms, Some(15_000));
        assert_eq!(r.time_to_ticket.max_ms, Some(40_000));
    }

    #[test]
    fn label_bodies() {
        assert_eq!(parse_label(br#"{"label":"actionable"}"#), Ok("actionable"));
        assert_eq!(
            parse_label(br#"{"label": "not_actionable"}"#),
            Ok("not_actionable")
        );
        for bad in [
            &b""[..],
            b"not json",
            b"[]",
            b"{}",
            br#"{"label": 1}"#,
            br#"{"label": "Actionable"}"#,
            br#"{"label": "actionable", "note": "x"}"#,
            br#"{"label": null}"#,
        ] {
            let e = parse_label(bad).expect_err(&String::from_utf8_lossy(bad));
            assert!(e.0.contains("label") || e.0.contains("expected"), "{e}");
        }
    }

    #[test]
    fn stored_json_is_parsed_for_the_api() {
        let d = DecisionView::from(DecisionRow {
            id: 1,
            incident_id: 2,
            at: 3,
            mode: "shadow".into(),
            decision: "ticket".into(),
            reasons: r#"["new","impact"]"#.into(),
            signals: r#"{"new":{"fired":true}}"#.into(),
            priority: 0.5,
        });
        assert_eq!(d.reasons, serde_json::json!(["new", "impact"]));
        assert_eq!(d.signals["new"]["fired"], true);
        let bad = DecisionView::from(DecisionRow {
            reasons: "{".into(),
            signals: "".into(),
            ..serde_json::from_value(
                serde_json::json!({"id":1,"incident_id":2,"at":3,"mode":"enforce",
                "decision":"watch","reasons":"[]","signals":"{}","priority":0.0}),
            )
            .unwrap()
        });
        assert_eq!((bad.reasons, bad.signals), (Value::Null, Value::Null));
    }
}
