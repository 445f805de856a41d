//! `selfheal replay`: recorded TraceItems through the tail pipeline and the cron's gate and
//! ticketing, on SQLite with the real migrations and the same statements the Workers run, on the
//! items' own clock (a cron run at every 5-minute boundary of that clock).
//!
//! In: JSON Lines, one TraceItem or an array of them (one tail invocation) per line, in time
//! order. Out: one [`DecisionLine`] per decision whose verdict or reasons differ from the
//! incident's previous one (the first decision counts), then a [`ReplaySummary`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::gate::{self, BUCKET_MS, Decision, GateMode, GatePolicy, IncidentInput, Verdict};
use super::rates::TrafficAggregator;
use super::step::{self, BucketRow, ReleaseRow, ScriptRow};
use crate::config::PipelineConfig;
use crate::event::process_batch_observed;
use crate::sqlite::{Db, DbError, decode};
use crate::storage::ingest::IngestPolicy;
use crate::store::{
    self, EventSample, GatedIncidentRow, SELECT_EXTERNAL_TICKET_CANDIDATES,
    SELECT_GATED_TICKET_CANDIDATES, SELECT_TICKET_CANDIDATES, utc_day,
};

/// One decision as `selfheal replay` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionLine {
    /// The cron run's clock, ms since the epoch.
    pub at: i64,
    /// `ops_incidents.id`.
    pub incident_id: i64,
    /// Fingerprint.
    pub fingerprint: String,
    /// `ticket`, `watch`, `external` or `suppressed`.
    pub decision: Verdict,
    /// Reason codes.
    pub reasons: Vec<String>,
    /// Every figure.
    pub signals: gate::Signals,
    /// The fingerprint's components.
    pub components: Components,
}

/// The fingerprint's components of a decided incident.
#[derive(Debug, Clone, Serialize)]
pub struct Components {
    /// Script name.
    pub script: String,
    /// Route pattern.
    pub route: String,
    /// Exception type.
    pub exception_type: String,
    /// Normalized message.
    pub message: String,
    /// Top in-app frame.
    pub top_frame: String,
    /// Status class.
    pub status_class: String,
}

/// Totals of one replay.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplaySummary {
    /// Input lines.
    pub lines: u64,
    /// Lines that were not JSON (counted and skipped).
    pub bad_lines: u64,
    /// TraceItems.
    pub items: u64,
    /// Items that became events.
    pub events: u64,
    /// Malformed items (counted and skipped).
    pub malformed: u64,
    /// Incidents at the end.
    pub incidents: u64,
    /// Tickets at the end.
    pub tickets: u64,
    /// Cron runs.
    pub cron_runs: u64,
    /// Decision changes printed.
    pub decision_changes: u64,
    /// Final decision per verdict.
    pub decisions: BTreeMap<String, u64>,
    /// Items' clock: first and last, ms.
    pub clock: (i64, i64),
}

/// A replay in progress.
pub struct Replay {
    db: Db,
    pipeline: PipelineConfig,
    policy: GatePolicy,
    traffic: TrafficAggregator,
    next_cron: Option<i64>,
    last: BTreeMap<i64, (Verdict, Vec<String>)>,
    flushes: u64,
    /// Totals so far.
    pub summary: ReplaySummary,
}

impl Replay {
    /// A replay into a new database at `db_path` (`:memory:` for none).
    pub fn new(
        pipeline: PipelineConfig,
        policy: GatePolicy,
        db_path: &str,
    ) -> Result<Replay, DbError> {
        Ok(Replay {
            db: Db::open(db_path)?,
            pipeline,
            policy,
            traffic: TrafficAggregator::default(),
            next_cron: None,
            last: BTreeMap::new(),
            flushes: 0,
            summary: ReplaySummary::default(),
        })
    }

    /// The database (for reports after the replay).
    pub fn db(&mut self) -> &mut Db {
        &mut self.db
    }

    /// Feeds one input line; `out` gets the decision changes of the cron runs it passes.
    /// Errors: only a failing statement (a bad line is counted and skipped).
    pub fn feed(&mut self, line: &str, out: &mut dyn FnMut(DecisionLine)) -> Result<(), DbError> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(());
        }
        self.summary.lines += 1;
        // One parse: an object line is one item; the pipeline reads the array as the tail does.
        let wrapped;
        let text = if line.starts_with('{') {
            wrapped = format!("[{line}]");
            wrapped.as_str()
        } else {
            line
        };
        let Ok((events, counts, observed)) =
            process_batch_observed(text, &self.pipeline, self.summary.clock.1)
        else {
            self.summary.bad_lines += 1;
            return Ok(());
        };
        // The line's time: its latest item; a line without timestamps is at the clock before it.
        let now = observed
            .iter()
            .map(|o| o.timestamp_ms)
            .chain(events.iter().map(|e| e.timestamp_ms))
            .max()
            .unwrap_or(self.summary.clock.1);
        if self.summary.clock.0 == 0 {
            self.summary.clock.0 = now;
        }
        // Cron runs due before this line's time see only what came before it.
        let next = *self
            .next_cron
            .get_or_insert((now.div_euclid(BUCKET_MS) + 1) * BUCKET_MS);
        if now >= next {
            let mut t = next;
            while t <= now {
                self.cron(t, out)?;
                t += BUCKET_MS;
            }
            self.next_cron = Some(t);
        }
        self.summary.clock.1 = self.summary.clock.1.max(now);
        self.summary.items += counts.items;
        self.summary.events += counts.events;
        self.summary.malformed += counts.malformed;
        self.traffic.add(&observed, &counts, now);
        if !events.is_empty() {
            let stmts = store::ingest_statements(&events, now, IngestPolicy::default());
            self.db.batch(&stmts)?;
        }
        Ok(())
    }

    /// Runs the last cron (at the boundary after the last item) and returns the summary.
    pub fn finish(mut self, out: &mut dyn FnMut(DecisionLine)) -> Result<ReplaySummary, DbError> {
        if let Some(t) = self.next_cron {
            self.cron(t, out)?;
        }
        let mut s = self.summary.clone();
        s.incidents = self.db.scalar("SELECT count(*) FROM ops_incidents")? as u64;
        s.tickets = self.db.scalar("SELECT count(*) FROM tickets")? as u64;
        for (v, _) in self.last.values() {
            *s.decisions.entry(v.as_str().to_string()).or_insert(0) += 1;
        }
        Ok(s)
    }

    fn flush_traffic(&mut self, now: i64) -> Result<(), DbError> {
        self.flushes += 1;
        let flushes = self.traffic.take(&format!("replay-{}", self.flushes));
        if !flushes.is_empty() {
            self.db
                .batch(&store::flush_statements(&flushes, &utc_day(now), now))?;
        }
        Ok(())
    }

    /// One cron run at `now`: the traffic so far, the gate step, the ticketing of the mode.
    fn cron(&mut self, now: i64, out: &mut dyn FnMut(DecisionLine)) -> Result<(), DbError> {
        self.flush_traffic(now)?;
        self.summary.cron_runs += 1;
        if self.policy.mode != GateMode::Off {
            let (decisions, incidents) = self.gate_step(now)?;
            for (d, inc) in decisions.into_iter().zip(incidents) {
                let key = (d.decision, d.reasons.clone());
                if self.last.get(&d.incident_id) == Some(&key) {
                    continue;
                }
                self.last.insert(d.incident_id, key);
                self.summary.decision_changes += 1;
                out(line_of(now, d, &inc));
            }
        }
        let select = match self.policy.mode {
            GateMode::Enforce => SELECT_GATED_TICKET_CANDIDATES,
            _ => SELECT_TICKET_CANDIDATES,
        };
        self.open_tickets(select, "fix", now)?;
        if self.policy.mode == GateMode::Enforce && self.policy.external_tickets {
            self.open_tickets(SELECT_EXTERNAL_TICKET_CANDIDATES, "external", now)?;
        }
        Ok(())
    }

    fn gate_step(&mut self, now: i64) -> Result<(Vec<Decision>, Vec<IncidentInput>), DbError> {
        let candidates: Vec<GatedIncidentRow> = self.db.rows(step::candidates_statement(now))?;
        if candidates.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut r = self
            .db
            .batch(&step::context_statements(
                &candidates,
                now,
                self.policy.impact_window_ms,
            ))?
            .into_iter();
        let mut next = || r.next().unwrap_or_default();
        let samples: Vec<EventSample> = decode(next())?;
        let occ: Vec<BucketRow> = decode(next())?;
        let traffic: Vec<BucketRow> = decode(next())?;
        let scripts: Vec<ScriptRow> = decode(next())?;
        let releases: Vec<ReleaseRow> = decode(next())?;
        let (incidents, scripts) =
            step::assemble(&candidates, &samples, &occ, &traffic, &scripts, &releases);
        let decisions = gate::decide_all(&incidents, &scripts, &self.policy, now);
        let mut stmts = step::decision_statements(&decisions, self.policy.mode, now);
        stmts.extend(step::prune_statements(now));
        self.db.batch(&stmts)?;
        Ok((decisions, incidents))
    }

    fn open_tickets(&mut self, select: &'static str, kind: &str, now: i64) -> Result<(), DbError> {
        let candidates: Vec<GatedIncidentRow> =
            self.db.rows(step::ticket_candidates_statement(select))?;
        if candidates.is_empty() {
            return Ok(());
        }
        let samples: Vec<EventSample> =
            self.db.rows(step::ticket_samples_statement(&candidates))?;
        self.db
            .batch(&step::ticket_statements(&candidates, &samples, kind, now))?;
        Ok(())
    }
}

fn line_of(at: i64, d: Decision, inc: &IncidentInput) -> DecisionLine {
    DecisionLine {
        at,
        incident_id: d.incident_id,
        fingerprint: d.fingerprint,
        decision: d.decision,
        reasons: d.reasons,
        signals: d.signals,
        components: Components {
            script: inc.script.clone(),
            route: inc.route.clone(),
            exception_type: inc.exception_type.clone(),
            message: inc.message.clone(),
            top_frame: inc.top_frame.clone(),
            status_class: inc.status_class.clone(),
        },
    }
}
