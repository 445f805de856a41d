//! The cron Worker (`*/5 * * * *`): opens one ticket on the built-in tracker per open incident that
//! has none, then sends one fix job per new ticket on the `fix-jobs` Queue.
//!
//! Exactly-once comes from the schema: `tickets.incident_id` is UNIQUE and the insert returns a row
//! only when it created one, so of two concurrent runs only one sends the job. A crash between
//! insert and send leaves `tickets.queued_at` NULL; a later run sends it then (the agent-runner's
//! claim makes a duplicate job a no-op). Deferred fix runs whose day has passed are sent again.
//! With `SELFHEAL_TRACKER=github` the tickets are then mirrored to GitHub Issues ([`tracker`]).

mod groups;
mod handover;
mod lifecycle;
mod tracker;

use selfheal::signal::gate::{self, GateMode, GatePolicy};
use selfheal::signal::step::{self, BucketRow, ReleaseRow, ScriptRow};
use selfheal::store::{
    self, EventSample, GatedIncidentRow, PRUNE_OCCURRENCES, SELECT_DEFERRED_DUE,
    SELECT_EXTERNAL_TICKET_CANDIDATES, SELECT_GATED_TICKET_CANDIDATES, SELECT_TICKET_CANDIDATES,
    SELECT_UNQUEUED_TICKETS, utc_day,
};
use selfheal::ticket::FixJob;
use selfheal::workers::{self, DB_BINDING, GlueError, QUEUE_BINDING, sql_with};
use serde::Deserialize;
use worker::{
    Context, Env, Request, Response, ScheduleContext, ScheduledEvent, console_error, console_log,
    event,
};

/// Grace before an unsent job counts as lost (a concurrent run may still be sending it), ms;
/// `SELFHEAL_UNQUEUED_GRACE_MS` overrides it (the fault test uses a few seconds).
const UNQUEUED_GRACE_MS: i64 = 120_000;
/// How long occurrence keys are kept for redelivery detection, ms (7 days).
const OCCURRENCE_RETENTION_MS: i64 = 7 * 86_400_000;

/// What one run did (logged).
#[derive(Debug, Default)]
struct RunReport {
    gate: Option<(usize, usize)>,
    tickets_opened: usize,
    jobs_sent: usize,
    jobs_resent: usize,
    mirror: Option<tracker::MirrorReport>,
    handed_over: Option<i64>,
    lifecycle: Option<lifecycle::LifecycleReport>,
}

#[derive(Deserialize)]
struct JobRef {
    ticket_id: i64,
    incident_id: i64,
    fingerprint: String,
    #[serde(default)]
    attempt: Option<u32>,
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    console_error_panic_hook::set_once();
    match run(&env).await {
        Ok(r) => console_log!(
            "selfheal cron: gate(decided, changed)={:?} tickets_opened={} jobs_sent={} jobs_resent={} tracker={:?} handed_over={:?} lifecycle={:?}",
            r.gate,
            r.tickets_opened,
            r.jobs_sent,
            r.jobs_resent,
            r.mirror,
            r.handed_over,
            r.lifecycle
        ),
        Err(e) => console_error!("selfheal cron failed: {e}"),
    }
}

/// Health check only: the cron is triggered by the runtime (locally through
/// `/cdn-cgi/handler/scheduled`), never by an unauthenticated request.
#[event(fetch)]
async fn fetch(_req: Request, _env: Env, _ctx: Context) -> worker::Result<Response> {
    Response::ok("selfheal scheduled: cron */5 * * * *\n")
}

async fn run(env: &Env) -> Result<RunReport, GlueError> {
    let db = env.d1(DB_BINDING)?;
    let queue = env.queue(QUEUE_BINDING)?;
    let now = workers::now_ms();
    let mut report = RunReport::default();

    // Bad gate settings fail the run with a message naming the variable.
    let policy = GatePolicy::from_vars(|name| workers::var(env, name))
        .map_err(|e| GlueError::Config(e.to_string()))?;
    if policy.mode != GateMode::Off {
        report.gate = Some(gate_step(&db, &policy, now).await?);
    }
    groups::step_logged(&db, now).await;

    // Enforce: only what the gate decided `ticket`, most important first. Shadow and off: every
    // open incident, as before the gate.
    let (select, kind) = match policy.mode {
        GateMode::Enforce => (SELECT_GATED_TICKET_CANDIDATES, "fix"),
        GateMode::Shadow | GateMode::Off => (SELECT_TICKET_CANDIDATES, "fix"),
    };
    let mut jobs = open_tickets(&db, select, kind, now).await?;
    if policy.mode == GateMode::Enforce && policy.external_tickets {
        // Tickets for humans: never a job.
        open_tickets(&db, SELECT_EXTERNAL_TICKET_CANDIDATES, "external", now).await?;
    }
    report.tickets_opened = jobs.len();

    // The tracker (a misconfigured or unreachable one never blocks tickets or jobs).
    let repo = match tracker::from_env(env) {
        Ok(repo) => repo,
        Err(e) => {
            console_error!("selfheal cron: tracker not mirrored: {e}");
            None
        }
    };
    // After the PR: merges, releases, verification, next attempts (their jobs go out below).
    match lifecycle::step(env, &db, repo.as_ref(), now).await {
        Ok((r, attempts)) => {
            jobs.extend(attempts);
            report.lifecycle = Some(r);
        }
        Err(e) => console_error!("selfheal cron: lifecycle: {e}"),
    }
    report.jobs_sent = send_jobs(&db, &queue, std::mem::take(&mut jobs), now).await?;

    // Jobs that were never sent (crash after insert), deferred runs whose day has passed, and the
    // retention of occurrence keys: one round trip.
    let results = workers::batch(
        &db,
        &[
            sql_with(
                SELECT_UNQUEUED_TICKETS,
                vec![
                    (now - workers::var(env, "SELFHEAL_UNQUEUED_GRACE_MS")
                        .and_then(|v| v.trim().parse::<i64>().ok())
                        .unwrap_or(UNQUEUED_GRACE_MS))
                    .into(),
                ],
            ),
            sql_with(SELECT_DEFERRED_DUE, vec![utc_day(now).into()]),
            sql_with(
                PRUNE_OCCURRENCES,
                vec![(now - OCCURRENCE_RETENTION_MS).into()],
            ),
        ],
    )
    .await?;
    let mut resend = Vec::new();
    for result in results.iter().take(2) {
        for j in workers::rows::<JobRef>(result)? {
            resend.push(FixJob::attempt(
                j.incident_id,
                j.ticket_id,
                j.fingerprint,
                j.attempt.unwrap_or(1),
            ));
        }
    }
    report.jobs_resent = send_jobs(&db, &queue, resend, now).await?;

    // The external tracker last.
    if let Some(repo) = &repo {
        report.mirror = Some(tracker::mirror(&db, repo, tracker::timeout_ms(env)).await?);
    }
    // Hosted agents (webhook, copilot): at most one lease per run, one agent at a time.
    match handover::step(env, &db, repo.as_ref()).await {
        Ok(run) => report.handed_over = run,
        Err(e) => console_error!("selfheal cron: handover: {e}"),
    }
    // Every table's retention rule (selfheal::storage::retention), one batch.
    if let Err(e) = workers::batch(&db, &selfheal::storage::retention::statements(now)).await {
        console_error!("selfheal cron: retention: {e}");
    }
    Ok(report)
}

/// The gate's step: load the candidates and their context, decide, store every decision (the
/// same statements `selfheal replay` runs). Returns (decided, changed).
async fn gate_step(
    db: &worker::D1Database,
    policy: &GatePolicy,
    now: i64,
) -> Result<(usize, usize), GlueError> {
    let candidates: Vec<GatedIncidentRow> =
        workers::query(db, &step::candidates_statement(now)).await?;
    if candidates.is_empty() {
        return Ok((0, 0));
    }
    let results = workers::batch(
        db,
        &step::context_statements(&candidates, now, policy.impact_window_ms),
    )
    .await?;
    let get = |i: usize| {
        results
            .get(i)
            .ok_or_else(|| GlueError::Decode("short batch".into()))
    };
    let samples: Vec<EventSample> = workers::rows(get(step::ctx::SAMPLES)?)?;
    let occ: Vec<BucketRow> = workers::rows(get(step::ctx::OCCURRENCES)?)?;
    let traffic: Vec<BucketRow> = workers::rows(get(step::ctx::TRAFFIC)?)?;
    let scripts: Vec<ScriptRow> = workers::rows(get(step::ctx::SCRIPTS)?)?;
    let releases: Vec<ReleaseRow> = workers::rows(get(step::ctx::RELEASES)?)?;
    let (incidents, scripts) =
        step::assemble(&candidates, &samples, &occ, &traffic, &scripts, &releases);
    let decisions = gate::decide_all(&incidents, &scripts, policy, now);
    let mut stmts = step::decision_statements(&decisions, policy.mode, now);
    stmts.extend(step::prune_statements(now));
    let written = workers::batch(db, &stmts).await?;
    #[derive(Deserialize)]
    struct Changed {
        #[allow(dead_code)]
        id: i64,
    }
    let changed = written
        .iter()
        .step_by(2)
        .take(decisions.len())
        .map(|r| workers::rows::<Changed>(r).map(|v| v.len()))
        .sum::<Result<usize, _>>()?;
    Ok((decisions.len(), changed))
}

/// Opens tickets of `kind` for the incidents `select` returns (one batch), and returns the fix
/// jobs of the tickets this run created (none for `external` tickets).
async fn open_tickets(
    db: &worker::D1Database,
    select: &'static str,
    kind: &str,
    now: i64,
) -> Result<Vec<FixJob>, GlueError> {
    let candidates: Vec<GatedIncidentRow> =
        workers::query(db, &step::ticket_candidates_statement(select)).await?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let samples: Vec<EventSample> =
        workers::query(db, &step::ticket_samples_statement(&candidates)).await?;
    let stmts = step::ticket_statements(&candidates, &samples, kind, now);
    let results = workers::batch(db, &stmts).await?;
    // Rows come back only for tickets this run created (INSERT … ON CONFLICT DO NOTHING RETURNING).
    let mut jobs = Vec::new();
    for (c, result) in candidates
        .iter()
        .zip(results.iter().step_by(step::TICKET_STATEMENTS_PER_INCIDENT))
    {
        #[derive(Deserialize)]
        struct Created {
            id: i64,
        }
        for created in workers::rows::<Created>(result)? {
            if kind == "fix" {
                jobs.push(FixJob::new(
                    c.incident.id,
                    created.id,
                    c.incident.fingerprint.clone(),
                ));
            }
        }
    }
    Ok(jobs)
}

/// Sends the jobs (one `sendBatch`), then records `queued_at` on their tickets.
async fn send_jobs(
    db: &worker::D1Database,
    queue: &worker::Queue,
    jobs: Vec<FixJob>,
    now: i64,
) -> Result<usize, GlueError> {
    if jobs.is_empty() {
        return Ok(0);
    }
    let marks: Vec<_> = jobs
        .iter()
        .map(|j| store::mark_queued(j.ticket_id, now))
        .collect();
    let n = jobs.len();
    // sendBatch accepts at most 100 messages.
    for chunk in jobs.chunks(100) {
        queue.send_batch(chunk.to_vec()).await?;
    }
    workers::batch(db, &marks).await?;
    Ok(n)
}
