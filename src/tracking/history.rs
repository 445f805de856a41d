//! The incident history's SQL: a status change and its row in `incident_history` in one
//! transaction (migration 0008), and the reads of the API.

use crate::store::{SqlValue, Statement, json_text};
use crate::tracking::lifecycle::{Status, Transition};

const INSERT_HISTORY: &str = "INSERT INTO incident_history (incident_id, at, from_status, to_status, actor, why, figures) \
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS (SELECT 1 FROM ops_incidents WHERE id = ?1 AND status = ?3)";

const SET_STATUS: &str = "UPDATE ops_incidents SET status = ?3, updated_at = max(updated_at, ?4) WHERE id = ?1 AND status = ?2";

/// The statements of `t` on incident `incident_id` by `actor` (`operator`, `cron`, `fixer`) at
/// `now_ms`: the history row, then the status, both only while the incident is still in
/// `t.from` (a concurrent change wins and this one writes nothing). Run them in one batch.
pub fn transition_statements(
    incident_id: i64,
    t: &Transition,
    actor: &str,
    now_ms: i64,
) -> Vec<Statement> {
    vec![
        Statement {
            sql: INSERT_HISTORY,
            params: vec![
                incident_id.into(),
                now_ms.into(),
                t.from.as_str().into(),
                t.to.as_str().into(),
                actor.into(),
                t.why.as_str().into(),
                json_text(&t.event).into(),
            ],
        },
        Statement {
            sql: SET_STATUS,
            params: vec![
                incident_id.into(),
                t.from.as_str().into(),
                t.to.as_str().into(),
                SqlValue::Integer(now_ms),
            ],
        },
    ]
}

/// An incident's history, oldest first (`?1` = incident id).
pub const SELECT_HISTORY: &str = "SELECT id, at, from_status, to_status, actor, why, figures FROM incident_history \
WHERE incident_id = ?1 ORDER BY at, id";

/// The incident `?1`'s status; no row when unknown.
pub const SELECT_STATUS: &str = "SELECT id, status FROM ops_incidents WHERE id = ?1";

/// Reads a stored status.
pub fn parse_status(s: &str) -> Option<Status> {
    use Status as S;
    Some(match s {
        "open" => S::Open,
        "ticketed" => S::Ticketed,
        "claimed" => S::Claimed,
        "pr_opened" => S::PrOpened,
        "fix_merged" => S::FixMerged,
        "verifying" => S::Verifying,
        "resolved" => S::Resolved,
        "regressed" => S::Regressed,
        "ignored" => S::Ignored,
        _ => return None,
    })
}
