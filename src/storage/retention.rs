//! How long every table keeps its rows: one [`Rule`] per delete, as data, applied by the cron Worker
//! each run ([`statements`], one D1 batch) and tested natively on SQLite with the real migrations
//! (`tests/control_sqlite.rs`, which also fails when a table of `migrations/` has no rule).
//!
//! What is never deleted by age: incidents that are not `resolved` (open, ticketed, claimed,
//! regressed, ignored — an ignored incident must stay to keep its fingerprint ignored), their
//! samples, tickets, fix runs and gate decisions; and any incident whose fix run is still open
//! (`claimed`, `ready`, `deferred`, `leased`, `fixing`). Growth of those is bounded upstream
//! (samples per incident grow with log2 of its occurrences, see [`crate::store::SamplePolicy`]).
//!
//! To add a table: add its rule(s) to [`RULES`], children before parents (D1 enforces foreign
//! keys), with its window in days and what it keeps.

use crate::store::{Statement, utc_day};

/// One day, ms.
pub const DAY_MS: i64 = 86_400_000;

/// Occurrence keys (redelivery detection; redeliveries come within minutes), days.
pub const OCCURRENCE_DAYS: i64 = 7;
/// 5-minute rate buckets and traffic-flush ids (the gate reads at most a day back), days.
pub const FINE_BUCKET_DAYS: i64 = 2;
/// Hourly rate buckets (the gate's baselines), days.
pub const HOURLY_BUCKET_DAYS: i64 = 35;
/// Daily counters, budgets, releases and gate-decision history, days.
pub const HISTORY_DAYS: i64 = 90;
/// A resolved incident quiet for this long is deleted with its samples, ticket, runs and
/// decisions (a recurrence afterwards is a new incident), days.
pub const RESOLVED_INCIDENT_DAYS: i64 = 90;
/// Days a parked ingest message (dead-letter queue) waits for `selfheal ingest replay`.
pub const PARKED_MESSAGE_DAYS: i64 = 14;

/// What a rule's `?1` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutoff {
    /// `now - days`, ms since the epoch.
    Ms,
    /// The UTC day `YYYY-MM-DD` of `now - days` (tables keyed by day).
    Day,
    /// `now`, ms: the rule deletes what is dead now (expired tokens and holds); `days` is 0.
    Now,
}

/// One retention rule: a `DELETE` on `table` whose only parameter `?1` is the [`Cutoff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The table rows are deleted from.
    pub table: &'static str,
    /// Window, days (0 with [`Cutoff::Now`]).
    pub days: i64,
    /// What `?1` is.
    pub cutoff: Cutoff,
    /// What is kept, for the README and the logs.
    pub keeps: &'static str,
    /// The delete.
    pub sql: &'static str,
}

/// Incidents past their rule: resolved, quiet for [`RESOLVED_INCIDENT_DAYS`] (`?1` = cutoff ms),
/// and no open fix run.
macro_rules! expired_incidents {
    () => {
        "SELECT i.id FROM ops_incidents i WHERE i.status = 'resolved' AND i.last_seen < ?1 \
         AND NOT EXISTS (SELECT 1 FROM fix_runs r WHERE r.incident_id = i.id \
         AND r.state IN ('claimed', 'ready', 'deferred', 'leased', 'fixing'))"
    };
}

/// Every rule, in the order they run (children before parents).
pub const RULES: &[Rule] = &[
    Rule {
        table: "run_tokens",
        days: 0,
        cutoff: Cutoff::Now,
        keeps: "tokens whose run still holds the lease they were minted with, unexpired",
        sql: "DELETE FROM run_tokens WHERE NOT EXISTS (SELECT 1 FROM fix_runs r WHERE r.id = run_tokens.run_id \
              AND r.lease_id = run_tokens.lease_id AND r.state IN ('leased', 'fixing') AND r.lease_expires_at >= ?1)",
    },
    Rule {
        table: "tracker_holds",
        days: 0,
        cutoff: Cutoff::Now,
        keeps: "holds still in force",
        sql: "DELETE FROM tracker_holds WHERE until_ms < ?1",
    },
    Rule {
        table: "ops_occurrences",
        days: OCCURRENCE_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "occurrence keys of the last 7 days (redelivery detection)",
        sql: crate::store::PRUNE_OCCURRENCES,
    },
    Rule {
        table: "ops_traffic_5m",
        days: FINE_BUCKET_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "5-minute traffic buckets of the last 2 days",
        sql: "DELETE FROM ops_traffic_5m WHERE bucket < ?1",
    },
    Rule {
        table: "ops_occ_5m",
        days: FINE_BUCKET_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "5-minute occurrence buckets of the last 2 days",
        sql: "DELETE FROM ops_occ_5m WHERE bucket < ?1",
    },
    Rule {
        table: "ops_traffic_flushes",
        days: FINE_BUCKET_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "flush ids of the last 2 days (a retried flush comes within minutes)",
        sql: "DELETE FROM ops_traffic_flushes WHERE at < ?1",
    },
    Rule {
        table: "ops_traffic_1h",
        days: HOURLY_BUCKET_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "hourly traffic buckets of the last 35 days",
        sql: "DELETE FROM ops_traffic_1h WHERE bucket < ?1",
    },
    Rule {
        table: "ops_occ_1h",
        days: HOURLY_BUCKET_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "hourly occurrence buckets of the last 35 days",
        sql: "DELETE FROM ops_occ_1h WHERE bucket < ?1",
    },
    Rule {
        table: "ops_releases",
        days: HISTORY_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "releases seen in the last 90 days",
        sql: "DELETE FROM ops_releases WHERE last_seen < ?1",
    },
    Rule {
        table: "ops_ingest_stats",
        days: HISTORY_DAYS,
        cutoff: Cutoff::Day,
        keeps: "daily delivery counters of the last 90 days",
        sql: "DELETE FROM ops_ingest_stats WHERE day < ?1",
    },
    Rule {
        table: "fix_budget",
        days: HISTORY_DAYS,
        cutoff: Cutoff::Day,
        keeps: "daily fix caps of the last 90 days",
        sql: "DELETE FROM fix_budget WHERE day < ?1",
    },
    Rule {
        table: "gate_decisions",
        days: HISTORY_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "decisions of the last 90 days, and always each incident's latest",
        sql: "DELETE FROM gate_decisions WHERE at < ?1 \
              AND id NOT IN (SELECT max(id) FROM gate_decisions GROUP BY incident_id)",
    },
    Rule {
        table: "fix_run_starts",
        days: RESOLVED_INCIDENT_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "the start of every run that is kept",
        sql: concat!(
            "DELETE FROM fix_run_starts WHERE run_id IN (SELECT id FROM fix_runs WHERE incident_id IN (",
            expired_incidents!(),
            "))"
        ),
    },
    Rule {
        table: "fix_ledger",
        days: RESOLVED_INCIDENT_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "the ledger row of every run that is kept",
        sql: concat!(
            "DELETE FROM fix_ledger WHERE run_id IN (SELECT id FROM fix_runs WHERE incident_id IN (",
            expired_incidents!(),
            "))"
        ),
    },
    Rule {
        table: "fix_runs",
        days: RESOLVED_INCIDENT_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "runs of every incident that is kept",
        sql: concat!(
            "DELETE FROM fix_runs WHERE incident_id IN (",
            expired_incidents!(),
            ")"
        ),
    },
    Rule {
        table: "tickets",
        days: RESOLVED_INCIDENT_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "tickets of every incident that is kept (so every ticket with an open run)",
        sql: concat!(
            "DELETE FROM tickets WHERE incident_id IN (",
            expired_incidents!(),
            ")"
        ),
    },
    Rule {
        table: "gate_decisions",
        days: RESOLVED_INCIDENT_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "decisions of every incident that is kept",
        sql: concat!(
            "DELETE FROM gate_decisions WHERE incident_id IN (",
            expired_incidents!(),
            ")"
        ),
    },
    Rule {
        table: "ops_log_events",
        days: RESOLVED_INCIDENT_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "samples of every incident that is kept",
        sql: concat!(
            "DELETE FROM ops_log_events WHERE fingerprint IN (SELECT fingerprint FROM ops_incidents WHERE id IN (",
            expired_incidents!(),
            "))"
        ),
    },
    Rule {
        table: "incident_history",
        days: RESOLVED_INCIDENT_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "the history of every incident that is kept",
        sql: concat!(
            "DELETE FROM incident_history WHERE incident_id IN (",
            expired_incidents!(),
            ")"
        ),
    },
    Rule {
        table: "ops_ingest_dead",
        days: PARKED_MESSAGE_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "parked ingest messages of the last 14 days (Queues keeps a message at most 14 days too)",
        sql: "DELETE FROM ops_ingest_dead WHERE parked_at < ?1",
    },
    Rule {
        table: "ops_incidents",
        days: RESOLVED_INCIDENT_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "every incident not resolved, resolved ones seen in the last 90 days, any with an open run",
        sql: concat!(
            "DELETE FROM ops_incidents WHERE id IN (",
            expired_incidents!(),
            ")"
        ),
    },
    Rule {
        table: "intake_sentry_issues",
        days: RESOLVED_INCIDENT_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "the Sentry issue of every incident that is kept",
        sql: "DELETE FROM intake_sentry_issues WHERE created_at < ?1 \
              AND fingerprint NOT IN (SELECT fingerprint FROM ops_incidents)",
    },
    Rule {
        table: "intake_workers_issues",
        days: RESOLVED_INCIDENT_DAYS,
        cutoff: Cutoff::Ms,
        keeps: "the Workers Issues issue of every incident that is kept",
        sql: "DELETE FROM intake_workers_issues WHERE created_at < ?1 \
              AND fingerprint NOT IN (SELECT fingerprint FROM ops_incidents)",
    },
];

/// The retention batch at `now_ms` (ms since the epoch): one statement per [`RULES`] entry, in
/// order. Run as one D1 `batch()` (one transaction).
pub fn statements(now_ms: i64) -> Vec<Statement> {
    RULES
        .iter()
        .map(|r| {
            let at = now_ms - r.days * DAY_MS;
            let param = match r.cutoff {
                Cutoff::Ms => at.into(),
                Cutoff::Day => utc_day(at).into(),
                Cutoff::Now => now_ms.into(),
            };
            Statement::new(r.sql, vec![param])
        })
        .collect()
}
