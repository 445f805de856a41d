//! SQL text and parameters for every D1 write and read, so the Workers only execute them.
//!
//! Statements are plain data ([`Statement`]): the Worker crates bind them to D1, the native tests
//! bind them to SQLite with the same `migrations/`. Idempotency lives in the schema (UNIQUE
//! constraints and triggers, see `migrations/0001_init.sql`), not in application checks.

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::storage::ingest;

/// A bound SQL parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// 64-bit integer. D1 passes numbers through JavaScript: values beyond ±2^53 lose precision,
    /// so only ms timestamps, counts and ids go here.
    Integer(i64),
    /// UTF-8 text.
    Text(String),
    /// A finite float (a priority, a share); non-finite values are stored as NULL.
    Real(f64),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Integer(v)
    }
}
impl From<u64> for SqlValue {
    fn from(v: u64) -> Self {
        SqlValue::Integer(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_string())
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

/// One SQL statement with positional parameters (`?1`, `?2`, …).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statement {
    /// SQL text.
    pub sql: &'static str,
    /// Parameters, in order.
    pub params: Vec<SqlValue>,
}

impl Statement {
    pub(crate) fn new(sql: &'static str, params: Vec<SqlValue>) -> Self {
        Statement { sql, params }
    }
}

/// How many sanitized events are kept per incident: all of the first `keep_first`, then the
/// occurrences whose ordinal is a power of two (so storage grows with log2 of a flood).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplePolicy {
    /// Events always kept per incident.
    pub keep_first: u32,
}

impl Default for SamplePolicy {
    fn default() -> Self {
        SamplePolicy { keep_first: 10 }
    }
}

/// The statements of the events of one tail invocation, to run in **one** D1 `batch()` (one
/// transaction) with the traffic flush ([`flush_statements`]): the coalesced statements of
/// [`crate::storage::ingest::event_statements`] (ensure the incidents under `policy`'s flood cap,
/// keep samples, record the occurrences: the triggers count them, and their 5-minute and hourly
/// buckets, only when the event key is new). `now_ms` is the receive time in ms since the epoch.
/// The tail Worker's direct path passes the policy of its `SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR`,
/// as the Queue's consumer does with the agent-runner's.
pub fn ingest_statements(
    events: &[Event],
    now_ms: i64,
    policy: ingest::IngestPolicy,
) -> Vec<Statement> {
    let queued: Vec<ingest::QueuedEvent> = events.iter().map(ingest::QueuedEvent::from).collect();
    ingest::event_statements(&queued, now_ms, policy)
}

/// The statements that write traffic flushes ([`crate::signal::rates`]) in the same D1 batch as
/// the invocation's events: the flushes' attempt keys (`id:attempt`), the 5-minute and hourly
/// traffic, the releases seen and the delivery counts of UTC `day` (`YYYY-MM-DD`); then one count
/// of this write. Each flush applies once, whatever the retries. `now_ms`: ms since the epoch.
pub fn flush_statements(
    flushes: &[crate::signal::rates::Flush],
    day: &str,
    now_ms: i64,
) -> Vec<Statement> {
    let keyed: Vec<(&crate::signal::rates::Flush, String)> = flushes
        .iter()
        .map(|f| (f, format!("{}:{}", f.id, f.attempt)))
        .collect();
    let mut out = ingest::flush_statements(&keyed, day, now_ms);
    let n = out.len() + 1;
    out.push(ingest::count_write(day, n, ingest::WriteCounts::default()));
    out
}

pub(crate) fn json_text<T: Serialize + ?Sized>(v: &T) -> String {
    // Serializing plain data (strings, numbers, maps with string keys) cannot fail.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_string())
}

// ---------------------------------------------------------------------------------------------
// Rows read back (column names = field names).

/// A row of `ops_incidents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentRow {
    /// Row id.
    pub id: i64,
    /// Incident fingerprint (32 hex chars).
    pub fingerprint: String,
    /// Fingerprint recipe version.
    pub fingerprint_version: i64,
    /// Worker name.
    pub script_name: String,
    /// Route pattern (`/users/:id`).
    pub route_pattern: String,
    /// Exception type component.
    pub exception_type: String,
    /// Normalized message component.
    pub normalized_message: String,
    /// Top in-app frame component (`function (file)`), may be empty.
    pub top_frame: String,
    /// Status class component (`5xx`, `none`, …).
    pub status_class: String,
    /// Distinct occurrences counted so far.
    pub occurrence_count: i64,
    /// Sanitized events kept in `ops_log_events`.
    pub stored_events: i64,
    /// First occurrence, ms since the epoch.
    pub first_seen: i64,
    /// Latest occurrence, ms since the epoch.
    pub last_seen: i64,
    /// Release of the first occurrence, when known.
    pub first_release: Option<String>,
    /// Release of the latest occurrence, when known.
    pub last_release: Option<String>,
    /// `open`, `ticketed`, `claimed`, `resolved`, `ignored` or `regressed`.
    pub status: String,
    /// `tickets.id` once ticketed.
    pub ticket_id: Option<i64>,
}

/// An incident with the gate's stored decision and label ([`SELECT_GATED_TICKET_CANDIDATES`],
/// [`SELECT_GATE_CANDIDATES`], the API's incident list); absent columns read as None.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatedIncidentRow {
    /// The incident.
    #[serde(flatten)]
    pub incident: IncidentRow,
    /// `ticket`, `watch`, `external` or `suppressed`.
    #[serde(default)]
    pub gate_decision: Option<String>,
    /// JSON array of reason codes.
    #[serde(default)]
    pub gate_reasons: Option<String>,
    /// JSON of [`crate::signal::gate::Signals`].
    #[serde(default)]
    pub gate_signals: Option<String>,
    /// Its priority (share of the script's requests per hour).
    #[serde(default)]
    pub gate_priority: Option<f64>,
    /// When the decision was last written, ms.
    #[serde(default)]
    pub gate_at: Option<i64>,
    /// The operator's label (`actionable` | `not_actionable`).
    #[serde(default)]
    pub label: Option<String>,
    /// When it was labelled, ms.
    #[serde(default)]
    pub label_at: Option<i64>,
}

/// The columns of a sanitized event that go into tickets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSample {
    /// Incident fingerprint (32 hex chars).
    pub fingerprint: String,
    /// HTTP method.
    pub method: Option<String>,
    /// Scrubbed URL.
    pub url: Option<String>,
    /// HTTP status, when a response was sent.
    pub status: Option<i64>,
    /// Runtime outcome.
    pub outcome: String,
    /// Scrubbed message.
    pub message: String,
    /// Scrubbed stack excerpt.
    pub stack: String,
    /// JSON array of scrubbed error/warn lines.
    pub logs: String,
    /// Release, when known.
    pub release: Option<String>,
    /// Event time, ms since the epoch.
    pub event_timestamp: i64,
    /// JSON of the scrubbed request summary: `{method, url, headers (allow-listed), cf: {colo,
    /// country, continent}}`; None in rows read without it.
    #[serde(default)]
    pub request: Option<String>,
}

impl From<&Event> for EventSample {
    /// The sample row that storing `e` gives (`ops_log_events`), as the tickets read it.
    fn from(e: &Event) -> Self {
        EventSample {
            fingerprint: e.fingerprint.clone(),
            method: e.method.clone(),
            url: e.url.clone(),
            status: e.status.map(i64::from),
            outcome: e.outcome.clone(),
            message: e.message.clone(),
            stack: e.stack.clone(),
            logs: json_text(&e.logs),
            release: e.release.clone(),
            event_timestamp: e.timestamp_ms,
            request: Some(json_text(&e.request)),
        }
    }
}

/// A row of `tickets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketRow {
    /// Row id.
    pub id: i64,
    /// `ops_incidents.id`.
    pub incident_id: i64,
    /// Incident fingerprint (32 hex chars).
    pub fingerprint: String,
    /// One-line title.
    pub title: String,
    /// Markdown body (untrusted text fenced).
    pub body: String,
    /// State (see the migration for the values).
    pub state: String,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// When its fix job was sent, ms since the epoch; None = not yet.
    pub queued_at: Option<i64>,
}

/// A row of `fix_runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixRunRow {
    /// Row id.
    pub id: i64,
    /// `ops_incidents.id`.
    pub incident_id: i64,
    /// `tickets.id` of the ticket the run was claimed from.
    pub ticket_id: i64,
    /// Incident fingerprint (32 hex chars).
    pub fingerprint: String,
    /// State (see the migration for the values).
    pub state: String,
    /// UTC day (`YYYY-MM-DD`) whose cap unit this run took.
    pub budget_day: Option<String>,
    /// UTC day it was last deferred on.
    pub deferred_day: Option<String>,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Last change, ms since the epoch.
    pub updated_at: i64,
}

/// A row of `fix_budget`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetRow {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Fix attempts allowed that day.
    pub cap: i64,
    /// Fix attempts taken that day.
    pub used: i64,
}

/// Column list of [`IncidentRow`], as a literal so statements can `concat!` it.
macro_rules! incident_columns {
    () => {
        "id, fingerprint, fingerprint_version, script_name, route_pattern, exception_type, normalized_message, \
         top_frame, status_class, occurrence_count, stored_events, first_seen, last_seen, first_release, last_release, \
         status, ticket_id"
    };
}

// ---------------------------------------------------------------------------------------------
// scheduled: tickets for new incidents.

/// Incidents that need a ticket: open, not ignored, no ticket yet; oldest first. `?1` = limit.
pub const SELECT_TICKET_CANDIDATES: &str = concat!(
    "SELECT ",
    incident_columns!(),
    " FROM ops_incidents WHERE status = 'open' AND ticket_id IS NULL ORDER BY first_seen, id LIMIT ?1"
);

/// Up to `?2` earliest samples for each incident in the JSON array of fingerprints `?1`.
pub const SELECT_SAMPLES: &str = "SELECT fingerprint, method, url, status, outcome, message, stack, logs, release, \
event_timestamp, request FROM (SELECT e.*, row_number() OVER (PARTITION BY e.fingerprint ORDER BY e.event_timestamp, e.id) AS rn \
FROM ops_log_events e WHERE e.fingerprint IN (SELECT value FROM json_each(?1))) WHERE rn <= ?2 \
ORDER BY fingerprint, event_timestamp";

/// Open incidents without a `ticket` decision, active since `?1` (ms), most recently active
/// first; `?2` = limit. The gate's candidates ([`crate::signal::step`]).
pub const SELECT_GATE_CANDIDATES: &str = concat!(
    "SELECT ",
    incident_columns!(),
    ", gate_decision FROM ops_incidents WHERE status NOT IN ('ignored', 'resolved') \
     AND (gate_decision IS NULL OR gate_decision <> 'ticket') AND last_seen >= ?1 \
     ORDER BY last_seen DESC, id DESC LIMIT ?2"
);

/// Incidents the gate decided `ticket` (enforce mode) that have no ticket yet, most important
/// first (the gate's priority, then age). `?1` = limit.
pub const SELECT_GATED_TICKET_CANDIDATES: &str = concat!(
    "SELECT ",
    incident_columns!(),
    ", gate_decision, gate_reasons, gate_signals FROM ops_incidents WHERE status = 'open' AND ticket_id IS NULL AND gate_decision = 'ticket' \
     ORDER BY coalesce(gate_priority, 0) DESC, first_seen, id LIMIT ?1"
);

/// Incidents the gate decided `external` that have no ticket (for `SELFHEAL_GATE_EXTERNAL_TICKETS`:
/// a ticket for humans, never a fix job). `?1` = limit.
pub const SELECT_EXTERNAL_TICKET_CANDIDATES: &str = concat!(
    "SELECT ",
    incident_columns!(),
    ", gate_decision, gate_reasons, gate_signals FROM ops_incidents WHERE status = 'open' AND ticket_id IS NULL AND gate_decision = 'external' \
     ORDER BY coalesce(gate_priority, 0) DESC, first_seen, id LIMIT ?1"
);

/// An external ticket whose incident the gate now decides `ticket` becomes a fix ticket whose job
/// is not sent yet (the re-send path sends it). `?1` = now, ms.
pub const UPGRADE_EXTERNAL_TICKETS: &str = "UPDATE tickets SET kind = 'fix', queued_at = NULL, updated_at = ?1 \
WHERE kind = 'external' AND incident_id IN (SELECT id FROM ops_incidents WHERE gate_decision = 'ticket')";

/// Opens a ticket unless the incident has one: returns the new row only when it was inserted, so of
/// two concurrent cron runs exactly one sees it (and sends the queue message).
pub fn insert_ticket(
    incident_id: i64,
    fingerprint: &str,
    title: &str,
    body: &str,
    now_ms: i64,
) -> Statement {
    insert_ticket_of_kind(incident_id, fingerprint, title, body, now_ms, "fix")
}

/// [`insert_ticket`] with the ticket's kind: `fix` (a fix job follows) or `external` (for humans:
/// no job is ever sent).
pub fn insert_ticket_of_kind(
    incident_id: i64,
    fingerprint: &str,
    title: &str,
    body: &str,
    now_ms: i64,
    kind: &str,
) -> Statement {
    Statement::new(
        "INSERT INTO tickets (incident_id, fingerprint, title, body, state, created_at, updated_at, kind) \
         VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?5, ?6) ON CONFLICT (incident_id) DO NOTHING RETURNING id, incident_id",
        vec![
            incident_id.into(),
            fingerprint.into(),
            title.into(),
            body.into(),
            now_ms.into(),
            kind.into(),
        ],
    )
}

/// The history row of an incident getting its ticket (`ticket_opened`, actor `cron`): written only
/// while the incident is not linked yet, so it rides before [`link_ticket`] in the same batch and a
/// racing run that created nothing writes nothing.
pub fn ticket_history(incident_id: i64, now_ms: i64) -> Statement {
    Statement::new(
        "INSERT INTO incident_history (incident_id, at, from_status, to_status, actor, why, figures) \
         SELECT i.id, ?2, i.status, 'ticketed', 'cron', 'ticket_opened', \
         json_object('event', 'ticket_opened', 'ticket_id', t.id, 'kind', t.kind) \
         FROM ops_incidents i JOIN tickets t ON t.incident_id = i.id WHERE i.id = ?1 AND i.ticket_id IS NULL",
        vec![incident_id.into(), now_ms.into()],
    )
}

/// Links an incident to its ticket (idempotent; whichever run inserted the ticket).
pub fn link_ticket(incident_id: i64, now_ms: i64) -> Statement {
    Statement::new(
        "UPDATE ops_incidents SET status = 'ticketed', updated_at = ?2, \
         ticket_id = (SELECT id FROM tickets WHERE incident_id = ?1) \
         WHERE id = ?1 AND ticket_id IS NULL AND EXISTS (SELECT 1 FROM tickets WHERE incident_id = ?1)",
        vec![incident_id.into(), now_ms.into()],
    )
}

/// Records that the fix job of ticket `ticket_id` was sent.
pub fn mark_queued(ticket_id: i64, now_ms: i64) -> Statement {
    Statement::new(
        "UPDATE tickets SET queued_at = ?2, updated_at = ?2 WHERE id = ?1 AND queued_at IS NULL",
        vec![ticket_id.into(), now_ms.into()],
    )
}

/// Tickets whose job was never sent (a crash between insert and send): created before `?1`.
pub const SELECT_UNQUEUED_TICKETS: &str = "SELECT t.id AS ticket_id, t.incident_id, t.fingerprint, t.attempt FROM tickets t \
WHERE t.queued_at IS NULL AND t.kind = 'fix' AND t.created_at < ?1 ORDER BY t.id LIMIT 100";

/// Deferred runs whose deferral day `?1` (today, UTC) has passed: their job is sent again.
/// Most important first (the gate's priority), so the day's cap goes to them.
pub const SELECT_DEFERRED_DUE: &str = "SELECT r.ticket_id, r.incident_id, r.fingerprint, r.attempt FROM fix_runs r \
JOIN ops_incidents i ON i.id = r.incident_id WHERE r.state = 'deferred' AND r.deferred_day < ?1 \
ORDER BY coalesce(i.gate_priority, 0) DESC, r.id LIMIT 100";

/// Drops occurrence keys older than `?1` (ms): redeliveries come within minutes, not days.
pub const PRUNE_OCCURRENCES: &str = "DELETE FROM ops_occurrences WHERE ts < ?1";

// ---------------------------------------------------------------------------------------------
// scheduled: mirroring tickets to an external tracker (GitHub Issues), migration 0002.

/// A ticket not yet on the external tracker, with what its labels need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnmirroredTicket {
    /// `tickets.id`.
    pub ticket_id: i64,
    /// Incident fingerprint (32 hex chars).
    pub fingerprint: String,
    /// Ticket title.
    pub title: String,
    /// Ticket body (markdown).
    pub body: String,
    /// The incident's status class component.
    pub status_class: String,
    /// The incident's exception type component.
    pub exception_type: String,
    /// The incident's occurrence count.
    pub occurrence_count: i64,
}

/// Tickets without a tracker issue, oldest first. `?1` = limit.
pub const SELECT_UNMIRRORED_TICKETS: &str = "SELECT t.id AS ticket_id, t.fingerprint, t.title, t.body, \
i.status_class, i.exception_type, i.occurrence_count FROM tickets t JOIN ops_incidents i ON i.id = t.incident_id \
WHERE t.external_number IS NULL ORDER BY t.id LIMIT ?1";

/// Records the tracker issue of a ticket (first writer wins).
pub fn record_external(ticket_id: i64, number: i64, url: &str, now_ms: i64) -> Statement {
    Statement::new(
        "UPDATE tickets SET external_number = ?2, external_url = ?3, external_state = 'open', updated_at = ?4 \
         WHERE id = ?1 AND external_number IS NULL",
        vec![ticket_id.into(), number.into(), url.into(), now_ms.into()],
    )
}

/// A change to announce on the tracker: a fix run whose state differs from the last one
/// commented, or an incident resolved (close) or regressed (reopen).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerChange {
    /// `tickets.id`.
    pub ticket_id: i64,
    /// Issue number on the tracker.
    pub external_number: i64,
    /// `run` (comment on `state`), `history` (comment a lifecycle change: `state` is the new
    /// status, `run_id` the history row's id) or `issue` (set the issue to `state`: `open` |
    /// `closed`).
    pub kind: String,
    /// The run's state, or the issue state to set.
    pub state: String,
    /// `fix_runs.id` for `run` changes; `incident_history.id` for `history` ones.
    pub run_id: Option<i64>,
    /// The draft PR of a `pr_opened` run.
    #[serde(default)]
    pub pr_url: Option<String>,
    /// The fixer's reason for a `failed` run (untrusted: rendered fenced); for `history`, the
    /// row's figures (JSON).
    #[serde(default)]
    pub detail: Option<String>,
    /// For `history`: the row's reason code (`verified`, `recurred`, …).
    #[serde(default)]
    pub why: Option<String>,
}

/// Pending tracker changes, oldest first, `?1` = limit; per ticket: run-state comments, then one
/// comment per lifecycle history row (with its figures), then the close of a resolved incident's
/// issue or the reopen of one that is no longer resolved (regressed, a new attempt).
pub const SELECT_TRACKER_CHANGES: &str = "SELECT ticket_id, external_number, kind, state, run_id, pr_url, detail, why FROM (\
SELECT t.id AS ticket_id, t.external_number, 'run' AS kind, r.state AS state, r.id AS run_id, r.pr_url AS pr_url, \
CASE WHEN NOT json_valid(r.result) THEN NULL \
  WHEN json_extract(r.result, '$.outcome') = 'diagnosed' \
  THEN json_extract(r.result, '$.reason') || char(10) || char(10) || COALESCE(json_extract(r.result, '$.diagnosis'), '') \
  ELSE json_extract(r.result, '$.reason') END AS detail, NULL AS why, 0 AS ord FROM fix_runs r \
JOIN tickets t ON t.id = r.ticket_id WHERE t.external_number IS NOT NULL AND r.state IS NOT COALESCE(r.notified_state, '') \
UNION ALL \
SELECT t.id, t.external_number, 'history', h.to_status, h.id, NULL, h.figures, h.why, 1 \
FROM incident_history h JOIN tickets t ON t.incident_id = h.incident_id WHERE t.external_number IS NOT NULL \
AND h.notified_at IS NULL AND h.at >= t.created_at AND h.why IN ('pr_merged', 'pr_closed', 'release_seen', 'verified', 'recurred', 'inactive', \
'occurred_after_resolve', 'attempt_queued', 'attempts_exhausted', 'operator_resolve', 'operator_ignore', 'operator_reopen', \
'operator_retry', 'escalating', 'member_joined') \
UNION ALL \
SELECT t.id, t.external_number, 'issue', CASE i.status WHEN 'resolved' THEN 'closed' ELSE 'open' END, NULL, NULL, NULL, NULL, 2 \
FROM tickets t JOIN ops_incidents i ON i.id = t.incident_id WHERE t.external_number IS NOT NULL \
AND ((i.status = 'resolved' AND t.external_state = 'open') \
  OR (i.status NOT IN ('resolved', 'ignored') AND t.external_state = 'closed'))\
) ORDER BY ticket_id, ord, run_id LIMIT ?1";

/// Records that history row `history_id` was commented on the tracker.
pub fn mark_history_notified(history_id: i64, now_ms: i64) -> Statement {
    Statement::new(
        "UPDATE incident_history SET notified_at = ?2 WHERE id = ?1",
        vec![history_id.into(), now_ms.into()],
    )
}

/// Records that run `run_id`'s state `state` was announced.
pub fn mark_notified(run_id: i64, state: &str) -> Statement {
    Statement::new(
        "UPDATE fix_runs SET notified_state = ?2 WHERE id = ?1",
        vec![run_id.into(), state.into()],
    )
}

/// Records the issue state last set on the tracker.
pub fn record_external_state(ticket_id: i64, state: &str, now_ms: i64) -> Statement {
    Statement::new(
        "UPDATE tickets SET external_state = ?2, updated_at = ?3 WHERE id = ?1",
        vec![ticket_id.into(), state.into(), now_ms.into()],
    )
}

// ---------------------------------------------------------------------------------------------
// agent-runner: the local fixer's lease (migration 0003).

/// What a fixer gets with its lease: the run, its task and where its ticket lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeasedRun {
    /// `fix_runs.id`.
    pub run_id: i64,
    /// `ops_incidents.id`.
    pub incident_id: i64,
    /// `tickets.id`.
    pub ticket_id: i64,
    /// Incident fingerprint.
    pub fingerprint: String,
    /// The lease id to present with heartbeats and the result.
    pub lease_id: String,
    /// When the lease ends unless renewed, ms since the epoch.
    pub lease_expires_at: i64,
    /// The agent-neutral task (JSON text, see [`crate::ticket::task`]).
    pub task: String,
    /// The incident's latest release (`scriptVersion` tag or id), to pick the base commit.
    pub last_release: Option<String>,
    /// Tracker issue number, when mirrored.
    pub external_number: Option<i64>,
    /// Tracker issue URL, when mirrored.
    pub external_url: Option<String>,
}

/// Index of the read-back statement in [`lease_statements`].
pub const LEASE_READBACK_INDEX: usize = 2;

/// The lease `UPDATE` of [`lease_statements`] up to the candidate's conditions (`?1` lease id,
/// `?2` owner, `?3` now, `?4` ttl).
macro_rules! lease_head {
    () => {
        "UPDATE fix_runs SET state = 'leased', lease_id = ?1, lease_owner = ?2, lease_expires_at = ?3 + ?4, \
         updated_at = ?3 WHERE id = (SELECT r.id FROM fix_runs r JOIN ops_incidents i ON i.id = r.incident_id \
         WHERE r.state = 'ready' AND COALESCE(i.cooldown_until, 0) <= ?3"
    };
}
/// The rest of the lease `UPDATE`: the order, and one lease at a time.
macro_rules! lease_tail {
    () => {
        " ORDER BY coalesce(i.gate_priority, 0) DESC, r.id LIMIT 1) \
         AND NOT EXISTS (SELECT 1 FROM fix_runs WHERE state IN ('leased', 'fixing'))"
    };
}

/// Takes the lease on the oldest `ready` run whose incident is not cooling down, as one D1
/// `batch()`: 0. expired leases go back to `ready`; 1. the lease, only when no run is `leased` or
/// `fixing` (the partial unique index `fix_runs_one_lease` is the guarantee); 2. read back.
/// Times in ms since the epoch. No caps beyond the daily one (taken at claim): the agent-runner
/// leases with [`lease_statements_capped`].
pub fn lease_statements(lease_id: &str, owner: &str, now_ms: i64, ttl_ms: i64) -> Vec<Statement> {
    vec![
        Statement::new(
            "UPDATE fix_runs SET state = 'ready', lease_id = NULL, lease_owner = NULL, lease_expires_at = NULL, \
             updated_at = ?1 WHERE state IN ('leased', 'fixing') AND lease_expires_at < ?1",
            vec![now_ms.into()],
        ),
        Statement::new(
            concat!(lease_head!(), lease_tail!()),
            vec![lease_id.into(), owner.into(), now_ms.into(), ttl_ms.into()],
        ),
        Statement::new(
            "SELECT r.id AS run_id, r.incident_id, r.ticket_id, r.fingerprint, r.lease_id, r.lease_expires_at, r.task, \
             i.last_release, t.external_number, t.external_url FROM fix_runs r \
             JOIN ops_incidents i ON i.id = r.incident_id JOIN tickets t ON t.id = r.ticket_id WHERE r.lease_id = ?1",
            vec![lease_id.into()],
        ),
    ]
}

/// Index of the spend read-back ([`SELECT_SPEND`], after the lease) in [`lease_statements_capped`].
pub const LEASE_SPEND_INDEX: usize = 3;

/// [`lease_statements`] under the weekly and monthly run caps and the daily and monthly dollar
/// caps of `caps` ([`crate::fixing::caps`], migration 0010), then 3. the spend after the lease
/// ([`SELECT_SPEND`]), so a lease held back by a cap can say which. A run that already started
/// (its earlier lease expired) is exempt from the run caps, never from the dollar caps.
pub fn lease_statements_capped(
    lease_id: &str,
    owner: &str,
    now_ms: i64,
    ttl_ms: i64,
    caps: &crate::fixing::caps::Caps,
) -> Vec<Statement> {
    let w = crate::fixing::caps::Windows::at(now_ms);
    let runs = |c: Option<u32>| c.map_or(SqlValue::Null, |c| SqlValue::Integer(i64::from(c)));
    let usd = |c: Option<f64>| c.map_or(SqlValue::Null, SqlValue::Real);
    let mut stmts = lease_statements(lease_id, owner, now_ms, ttl_ms);
    let capped = Statement::new(
        concat!(
            lease_head!(),
            " AND (EXISTS (SELECT 1 FROM fix_run_starts s WHERE s.run_id = r.id) OR (\
             (?5 IS NULL OR (SELECT count(*) FROM fix_run_starts WHERE started_at >= ?6) < ?5) AND \
             (?7 IS NULL OR (SELECT count(*) FROM fix_run_starts WHERE started_at >= ?8) < ?7))) \
             AND (?9 IS NULL OR (SELECT coalesce(sum(cost_usd), 0) FROM fix_ledger WHERE finished_at >= ?10) < ?9) \
             AND (?11 IS NULL OR (SELECT coalesce(sum(cost_usd), 0) FROM fix_ledger WHERE finished_at >= ?8) < ?11)",
            lease_tail!()
        ),
        vec![
            lease_id.into(),
            owner.into(),
            now_ms.into(),
            ttl_ms.into(),
            runs(caps.weekly_runs),
            w.week_start.into(),
            runs(caps.monthly_runs),
            w.month_start.into(),
            usd(caps.daily_usd),
            w.day_start.into(),
            usd(caps.monthly_usd),
        ],
    );
    if let Some(lease) = stmts.get_mut(1) {
        *lease = capped;
    }
    stmts.push(spend_statement(now_ms));
    stmts
}

/// Renews a lease and sets the run's state (`leased` → `fixing`); returns `id` only when the
/// caller still holds the lease.
pub fn renew_lease(
    run_id: i64,
    lease_id: &str,
    state: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Statement {
    Statement::new(
        "UPDATE fix_runs SET state = ?3, lease_expires_at = ?4 + ?5, updated_at = ?4 \
         WHERE id = ?1 AND lease_id = ?2 AND state IN ('leased', 'fixing') AND lease_expires_at >= ?4 RETURNING id",
        vec![
            run_id.into(),
            lease_id.into(),
            state.into(),
            now_ms.into(),
            ttl_ms.into(),
        ],
    )
}

/// Ends a lease with the fixer's result: `pr_opened` (with the PR URL) or `failed`. Returns `id`
/// only when the caller still held the lease. `result` is the JSON the fixer reported.
pub fn finish_run(
    run_id: i64,
    lease_id: &str,
    state: &str,
    pr_url: Option<&str>,
    result: &str,
    now_ms: i64,
) -> Statement {
    Statement::new(
        "UPDATE fix_runs SET state = ?3, pr_url = ?4, result = ?5, lease_id = NULL, lease_expires_at = NULL, \
         updated_at = ?6 WHERE id = ?1 AND lease_id = ?2 AND state IN ('leased', 'fixing') RETURNING id",
        vec![
            run_id.into(),
            lease_id.into(),
            state.into(),
            pr_url.map_or(SqlValue::Null, SqlValue::from),
            result.into(),
            now_ms.into(),
        ],
    )
}

/// Puts the incident of run `run_id` on a cool-down until `until_ms`, only when the run was just
/// marked `failed` at `finished_at_ms` (so it can ride in the same batch as [`finish_run`]: a
/// stale result, which finishes nothing, cools nothing down).
pub fn cool_down(run_id: i64, until_ms: i64, finished_at_ms: i64) -> Statement {
    Statement::new(
        "UPDATE ops_incidents SET cooldown_until = ?2 WHERE id = \
         (SELECT incident_id FROM fix_runs WHERE id = ?1 AND state = 'failed' AND updated_at = ?3)",
        vec![run_id.into(), until_ms.into(), finished_at_ms.into()],
    )
}

// ---------------------------------------------------------------------------------------------
// agent-runner: claim once, then take a unit of the daily cap.

/// Incident and ticket a fix job refers to. `?1` = incident id.
pub const SELECT_JOB_SOURCE: &str = concat!(
    "SELECT ",
    incident_columns!(),
    " FROM ops_incidents WHERE id = ?1"
);

/// Ticket by id.
pub const SELECT_TICKET: &str = "SELECT id, incident_id, fingerprint, title, body, state, created_at, queued_at FROM tickets WHERE id = ?1";

/// The claim of one fix job (attempt `job.attempt` of the incident), to run as one D1 `batch()` (one
/// transaction). In order:
/// 0. insert the run as `claimed` unless the incident has one for this attempt (`RETURNING id`
///    only when new: `UNIQUE (incident_id, attempt)` is the guarantee);
/// 1. ensure today's budget row with the configured cap;
/// 2. take a unit: `claimed`/`deferred` → `ready` when `used < cap` (the trigger increments `used`);
/// 3. otherwise `claimed`/`deferred` → `deferred` with today's date;
/// 4. its history row, 5. mark the incident `claimed` (from open, ticketed or regressed);
/// 6. read the run back (state after the transaction).
///
/// A redelivered message changes nothing for a `ready` run; for a `deferred` one it retries the cap,
/// which is how a deferred run goes ahead on a later UTC day.
pub fn claim_statements(
    job: &crate::ticket::FixJob,
    task_json: &str,
    day: &str,
    cap: u32,
    now_ms: i64,
) -> Vec<Statement> {
    let (incident_id, ticket_id, attempt) = (job.incident_id, job.ticket_id, job.attempt);
    vec![
        Statement::new(
            "INSERT INTO fix_runs (incident_id, ticket_id, fingerprint, state, task, created_at, updated_at, attempt) \
             VALUES (?1, ?2, ?3, 'claimed', ?4, ?5, ?5, ?6) ON CONFLICT (incident_id, attempt) DO NOTHING RETURNING id",
            vec![
                incident_id.into(),
                ticket_id.into(),
                job.fingerprint.as_str().into(),
                task_json.into(),
                now_ms.into(),
                i64::from(attempt).into(),
            ],
        ),
        Statement::new(
            "INSERT INTO fix_budget (day, cap, used) VALUES (?1, ?2, 0) ON CONFLICT (day) DO UPDATE SET cap = excluded.cap",
            vec![day.into(), i64::from(cap).into()],
        ),
        Statement::new(
            "UPDATE fix_runs SET state = 'ready', budget_day = ?2, updated_at = ?3 \
             WHERE incident_id = ?1 AND attempt = ?4 AND state IN ('claimed', 'deferred') \
             AND (SELECT used < cap FROM fix_budget WHERE day = ?2)",
            vec![
                incident_id.into(),
                day.into(),
                now_ms.into(),
                i64::from(attempt).into(),
            ],
        ),
        Statement::new(
            "UPDATE fix_runs SET state = 'deferred', deferred_day = ?2, updated_at = ?3 \
             WHERE incident_id = ?1 AND attempt = ?4 AND state IN ('claimed', 'deferred')",
            vec![
                incident_id.into(),
                day.into(),
                now_ms.into(),
                i64::from(attempt).into(),
            ],
        ),
        Statement::new(
            "INSERT INTO incident_history (incident_id, at, from_status, to_status, actor, why, figures) \
             SELECT id, ?2, status, 'claimed', 'agent-runner', 'run_claimed', \
             json_object('event', 'run_claimed', 'attempt', ?3, 'run_state', \
               (SELECT state FROM fix_runs WHERE incident_id = ?1 AND attempt = ?3)) \
             FROM ops_incidents WHERE id = ?1 AND status IN ('open', 'ticketed', 'regressed')",
            vec![incident_id.into(), now_ms.into(), i64::from(attempt).into()],
        ),
        Statement::new(
            "UPDATE ops_incidents SET status = 'claimed', updated_at = ?2 WHERE id = ?1 AND status IN ('open', 'ticketed', 'regressed')",
            vec![incident_id.into(), now_ms.into()],
        ),
        Statement::new(
            "SELECT id, incident_id, ticket_id, fingerprint, state, budget_day, deferred_day, created_at, updated_at \
             FROM fix_runs WHERE incident_id = ?1 AND attempt = ?2",
            vec![incident_id.into(), i64::from(attempt).into()],
        ),
    ]
}

/// The attempts an incident's runs made so far, oldest first, as
/// [`crate::tracking::lifecycle::AttemptSummary`] rows (`ended` is `open` while a run can still
/// succeed; the diagnosis is the fixer's reported one). `?1` = incident id.
pub const SELECT_ATTEMPTS: &str = "SELECT attempt, COALESCE(ended, 'open') AS ended, ended_at AS ended_at_ms, pr_url, \
CASE WHEN json_valid(result) THEN COALESCE(json_extract(result, '$.diagnosis'), json_extract(result, '$.reason')) END AS diagnosis \
FROM fix_runs WHERE incident_id = ?1 ORDER BY attempt";

/// Index of the statement in [`claim_statements`] whose rows say whether the claim was new.
pub const CLAIM_INSERT_INDEX: usize = 0;
/// Index of the statement in [`claim_statements`] that reads the run back.
pub const CLAIM_READBACK_INDEX: usize = 6;

// ---------------------------------------------------------------------------------------------
// HTTP API reads.

/// All incidents, most recent first.
pub const LIST_INCIDENTS: &str = concat!(
    "SELECT ",
    incident_columns!(),
    " FROM ops_incidents ORDER BY last_seen DESC, id DESC LIMIT 500"
);
/// All tickets.
pub const LIST_TICKETS: &str = "SELECT id, incident_id, fingerprint, title, body, state, created_at, queued_at FROM tickets ORDER BY id LIMIT 500";
/// All fix runs.
pub const LIST_RUNS: &str = "SELECT id, incident_id, ticket_id, fingerprint, state, budget_day, deferred_day, \
created_at, updated_at FROM fix_runs ORDER BY id LIMIT 500";
/// Budget row of day `?1`.
pub const SELECT_BUDGET: &str = "SELECT day, cap, used FROM fix_budget WHERE day = ?1";
/// Ingest counters, all days.
pub const LIST_INGEST_STATS: &str = "SELECT day, batches, items, events, noise, malformed, writes, statements, messages, \
malformed_messages, retried_messages, dead_messages FROM ops_ingest_stats ORDER BY day DESC LIMIT 60";

/// `YYYY-MM-DD` (UTC) of a time in ms since the epoch (proleptic Gregorian; Howard Hinnant's
/// `civil_from_days` algorithm, <https://howardhinnant.github.io/date_algorithms.html>).
pub fn utc_day(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

// ---------------------------------------------------------------------------------------------
// agent-runner: caps in runs and dollars, and the cost ledger (migration 0010).

/// What was spent in each cap's window, one row ([`crate::fixing::caps::Spend`]): `?1` today
/// (`YYYY-MM-DD`), `?2` week start, `?3` month start, `?4` day start, `?5` now (ms).
pub const SELECT_SPEND: &str = "SELECT \
(SELECT coalesce(sum(used), 0) FROM fix_budget WHERE day = ?1) AS daily_runs, \
(SELECT count(*) FROM fix_run_starts WHERE started_at >= ?2) AS weekly_runs, \
(SELECT count(*) FROM fix_run_starts WHERE started_at >= ?3) AS monthly_runs, \
(SELECT coalesce(sum(cost_usd), 0.0) FROM fix_ledger WHERE finished_at >= ?4) AS daily_usd, \
(SELECT coalesce(sum(cost_usd), 0.0) FROM fix_ledger WHERE finished_at >= ?3) AS monthly_usd, \
(SELECT count(*) FROM fix_ledger WHERE finished_at >= ?3 AND cost_usd IS NULL) AS monthly_unreported, \
(SELECT count(*) FROM fix_runs r JOIN ops_incidents i ON i.id = r.incident_id \
 WHERE r.state = 'ready' AND COALESCE(i.cooldown_until, 0) <= ?5) AS ready";

/// [`SELECT_SPEND`] bound for `now_ms`.
pub fn spend_statement(now_ms: i64) -> Statement {
    let w = crate::fixing::caps::Windows::at(now_ms);
    Statement::new(
        SELECT_SPEND,
        vec![
            utc_day(now_ms).into(),
            w.week_start.into(),
            w.month_start.into(),
            w.day_start.into(),
            now_ms.into(),
        ],
    )
}

/// The ledger row of run `run_id`, to ride in the batch of [`finish_run`] after it: inserted only
/// when that finish matched (the run's lease just ended at `finished_at_ms`), once per run.
pub fn record_ledger(
    run_id: i64,
    entry: &crate::fixing::ledger::LedgerEntry,
    finished_at_ms: i64,
) -> Statement {
    let usd = |v: Option<f64>| v.map_or(SqlValue::Null, SqlValue::Real);
    Statement::new(
        "INSERT INTO fix_ledger (run_id, incident_id, outcome, reporter, turns, input_tokens, output_tokens, \
         cache_read_tokens, cache_write_tokens, cost_usd, max_turns, max_usd, phases, seconds, finished_at, day) \
         SELECT id, incident_id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15 FROM fix_runs \
         WHERE id = ?1 AND updated_at = ?14 AND lease_id IS NULL ON CONFLICT (run_id) DO NOTHING",
        vec![
            run_id.into(),
            entry.outcome.as_str().into(),
            entry.reporter.clone().into(),
            entry.turns.into(),
            entry.input_tokens.into(),
            entry.output_tokens.into(),
            entry.cache_read_tokens.into(),
            entry.cache_write_tokens.into(),
            usd(entry.cost_usd),
            entry.max_turns.into(),
            usd(entry.max_usd),
            entry.phases_json().into(),
            usd(entry.seconds()),
            finished_at_ms.into(),
            utc_day(finished_at_ms).into(),
        ],
    )
}

/// The ledger, newest first (`GET /api/ledger`); `phases` is JSON text.
pub const LIST_LEDGER: &str = "SELECT run_id, incident_id, outcome, reporter, turns, input_tokens, output_tokens, \
cache_read_tokens, cache_write_tokens, cost_usd, max_turns, max_usd, phases, seconds, finished_at, day \
FROM fix_ledger ORDER BY finished_at DESC, run_id DESC LIMIT 500";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_days() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(1_795_269_986_919), "2026-11-21");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(utc_day(-1), "1969-12-31");
    }
}
