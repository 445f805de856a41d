//! The agent-runner Worker (feature `agent-runner`, built by the root `wrangler.toml`).
//!
//! - Queue consumer of `selfheal-fix-jobs` (`max_concurrency = 1`: one agent at a time): each job is
//!   **claimed** by an insert into `fix_runs` guarded by `UNIQUE (incident_id)`, so a redelivered
//!   message is an acked no-op; the claim takes one unit of the daily cap in the same transaction,
//!   or defers the run to a later UTC day. A claimed run waits as `ready`, with its task, for a fixer.
//! - Queue consumer of `selfheal-ingest` and its dead-letter queue `selfheal-ingest-dlq`
//!   ([`ingest_queue`]): one D1 batch per queue batch of the tail Worker's messages, retries with
//!   backoff, parking. One `queue` export serves every queue, by the batch's queue name
//!   ([`queue`]).
//! - HTTP API (JSON), `Authorization: Bearer $SELFHEAL_API_TOKEN`:
//!   `GET /api/summary`, `/api/incidents`, `/api/tickets`, `/api/runs`, `/api/budget`, `/api/ingest`;
//!   and for the local fixer (`selfheal fix`): `POST /api/runs/lease` (`{owner, ttl_secs}` → 200
//!   with the leased run and its task, or 204 when nothing is ready), `POST /api/runs/{id}/heartbeat`
//!   (`{lease_id, state: "fixing", ttl_secs}`) and `POST /api/runs/{id}/result` (`{lease_id,
//!   outcome: "pr_opened" | "failed", pr_url?, reason?, diagnosis?, evidence?}`); 409 when the
//!   lease is no longer held. A failed result puts the incident on a cool-down
//!   (`SELFHEAL_COOLDOWN_HOURS`, default 24).
//! - The gate ([`crate::signal::report`]): `GET /api/incidents` lists each incident with its
//!   `gate_decision`, `gate_reasons` (array of reason codes), `gate_priority`, `gate_at`, `label`
//!   and `label_at` (`null` until decided / labelled); `GET /api/incidents/{id}/decisions` →
//!   `{incident_id, gate_decision, label, decisions: [{id, at, mode, decision, reasons, signals,
//!   priority}]}` (every change of decision, oldest first; 404 for an unknown incident);
//!   `POST /api/incidents/{id}/label` with `{"label": "actionable" | "not_actionable"}` → 200
//!   `{incident_id, label, label_at}` (400 with `{error}` for a bad body or label, 404 for an
//!   unknown incident, 413 past 16 KiB; nothing is stored on an error); `GET /api/gate/report` →
//!   the [`crate::signal::report::GateReport`] over the labelled incidents.
//! - The ingest dead-letter queue's parked messages ([`ingest`]): `GET /api/ingest/dead`,
//!   `POST /api/ingest/dead/replay`.
//! - An operator's actions ([`operator`]): `POST /api/incidents/{id}/resolve|ignore|reopen`,
//!   `GET /api/incidents/{id}/history`.
//! - Intake: `POST /api/intake/sentry` (Sentry internal integration webhooks, see
//!   [`crate::intake`]; `SELFHEAL_SENTRY_CLIENT_SECRET`), authenticated by `Sentry-Hook-Signature`
//!   instead of the API token; `POST /api/intake/workers-issues` (a Workers Issues automation's
//!   generic webhook; `SELFHEAL_WORKERS_ISSUES_SECRET`), authenticated by `cf-webhook-auth`.
//! - Budgets ([`crate::fixing`]): the lease is held back by the weekly and monthly run caps and
//!   the daily and monthly dollar caps (429 with `{error, cap, retry_after_secs}` and
//!   `Retry-After` when a ready run waits on one); each result writes its run's ledger row
//!   (`fix_ledger`); `GET /api/budget` shows spend against every cap, `GET /api/ledger` the rows.
//! - The operator dashboard ([`dashboard`]): HTML pages at `/` and `/dashboard*`, signed in
//!   with the API token into a session cookie.
//! - Guards ([`crate::security`]), in this order, before any work: a credential-like query
//!   parameter → 400; the bearer token compared in constant time → 401 (a per-run token
//!   `shr_…` of a hosted handover is accepted only on `POST /api/runs/{id}/heartbeat|result` of
//!   its own run, while that run holds the lease it was minted with); every POST's body limit
//!   ([`crate::security::body_limit`]) → 413 before the body is parsed.

mod dashboard;
mod ingest;
mod ingest_queue;
mod operator;

use serde::Deserialize;
use serde_json::{Value, json};
use wasm_bindgen::{JsCast, JsValue, prelude::wasm_bindgen};
use worker::{
    Context, Env, MessageBatch, MessageExt, Request, Response, console_error, console_log, event,
};

use crate::fixing::caps::{self as budget_caps, Caps, Spend, Windows};
use crate::fixing::ledger::LedgerEntry;
use crate::intake;
use crate::security;
use crate::signal::report::{
    self, DecisionCountRow, DecisionRow, DecisionView, IncidentView, LIST_INCIDENTS_GATED,
    LabelledRow,
};
use crate::storage::ingest::{ConsumerQueue, ConsumerQueues};
use crate::storage::run_tokens::{RunTokenRow, SELECT_RUN_TOKEN};
use crate::store::{
    self, BudgetRow, CLAIM_INSERT_INDEX, CLAIM_READBACK_INDEX, FixRunRow, IncidentRow,
    LIST_INCIDENTS, LIST_INGEST_STATS, LIST_RUNS, LIST_TICKETS, SELECT_BUDGET, SELECT_JOB_SOURCE,
    SELECT_TICKET, TicketRow, utc_day,
};
use crate::ticket::{self, FixJob};
use crate::tracking::lifecycle::AttemptSummary;
use crate::workers::{self, DB_BINDING, GlueError, sql, sql_with};

/// What a claim did with one job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClaimOutcome {
    /// New run, took a unit of today's cap.
    Ready,
    /// New run (or a retried deferred one), cap reached: waits for a later UTC day.
    Deferred,
    /// The incident already had a run: nothing new (a duplicate delivery).
    Duplicate(String),
}

/// The caps in runs and dollars ([`Caps::from_vars`]); a bad value names its variable.
fn caps(env: &Env) -> Result<Caps, GlueError> {
    Caps::from_vars(|name| workers::var(env, name)).map_err(GlueError::Config)
}

fn daily_cap(env: &Env) -> Result<u32, GlueError> {
    Ok(caps(env)?.daily_runs)
}

/// The `queue(batch, env, ctx)` export: every Queue this Worker consumes comes here (workers-rs
/// wires one `queue` handler per Worker), and the batch's queue name picks the consumer
/// ([`ConsumerQueues::route`], names from `SELFHEAL_FIX_JOBS_QUEUE`, `SELFHEAL_INGEST_QUEUE`,
/// `SELFHEAL_INGEST_DLQ`): fix jobs (`fix_jobs`), ingest messages (`ingest_queue::consume`)
/// or dead-lettered ones (`ingest_queue::park`). A batch from any other queue is logged as an
/// error and every message retried with the ingest backoff: never acked, so a misnamed var loses
/// nothing (Queues' `max_retries` and dead-letter queue still apply).
///
/// A plain wasm-bindgen export rather than `#[event(queue)]`: the ingest consumer needs each
/// message's `attempts`, which workers-rs 0.8.7's `MessageBatch` does not expose; the fix-job
/// consumer still gets a workers-rs [`MessageBatch`]. Same signature as the macro's export.
///
/// Errors (a rejected promise: the runtime retries the whole batch): a bad config, no D1
/// binding. Every message is otherwise acknowledged or retried on its own.
// The futures glue through workers-rs's re-export, as its macros do (no direct dependency).
#[wasm_bindgen(wasm_bindgen_futures = ::worker::wasm_bindgen_futures)]
pub async fn queue(batch: JsValue, env: Env, _ctx: JsValue) -> Result<JsValue, JsValue> {
    console_error_panic_hook::set_once();
    let name = js_sys::Reflect::get(&batch, &JsValue::from_str("queue"))
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_default();
    let queues = ConsumerQueues::from_vars(|v| workers::var(&env, v));
    let result = match queues.route(&name) {
        Some(ConsumerQueue::FixJobs) => fix_jobs(
            MessageBatch::from(batch.unchecked_into::<worker::worker_sys::MessageBatch>()),
            &env,
        )
        .await
        .map_err(|e| e.to_string()),
        Some(ConsumerQueue::Ingest) => ingest_queue::consume(&env, &ingest_queue::messages(&batch))
            .await
            .map_err(|e| e.to_string()),
        Some(ConsumerQueue::IngestDeadLetter) => {
            ingest_queue::park(&env, &ingest_queue::messages(&batch))
                .await
                .map_err(|e| e.to_string())
        }
        None => {
            let messages = ingest_queue::messages(&batch);
            let settings = ingest_queue::settings(&env).unwrap_or_default();
            console_error!(
                "selfheal runner: a batch of {} message(s) from queue {name:?}, which is none of \
                 SELFHEAL_FIX_JOBS_QUEUE={:?}, SELFHEAL_INGEST_QUEUE={:?}, SELFHEAL_INGEST_DLQ={:?}: \
                 retried, not acked",
                messages.len(),
                queues.fix_jobs,
                queues.ingest,
                queues.ingest_dlq
            );
            for m in &messages {
                m.retry_in(settings.backoff_secs(m.attempts()));
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => Ok(JsValue::UNDEFINED),
        Err(e) => {
            console_error!("selfheal runner: queue {name}: {e}");
            Err(JsValue::from_str(&e))
        }
    }
}

/// The consumer of `selfheal-fix-jobs` (see the module docs): each job claimed once.
///
/// Errors: a bad cap var, no D1 binding (the whole batch is retried). A job whose claim fails is
/// retried on its own.
async fn fix_jobs(batch: MessageBatch<Value>, env: &Env) -> Result<(), GlueError> {
    let cap = daily_cap(env)?;
    let db = env.d1(DB_BINDING)?;
    for message in batch.raw_iter() {
        let job = js_sys::JSON::stringify(&message.body())
            .ok()
            .and_then(|s| s.as_string())
            .and_then(|s| serde_json::from_str::<FixJob>(&s).ok());
        let Some(job) = job else {
            // Not a job of ours: retrying cannot help. Acked, logged without the body.
            console_error!("selfheal runner: malformed message {} acked", message.id());
            message.ack();
            continue;
        };
        match claim(&db, &job, cap).await {
            Ok(outcome) => {
                console_log!(
                    "selfheal runner: incident {} ticket {}: {:?}",
                    job.incident_id,
                    job.ticket_id,
                    outcome
                );
                message.ack();
            }
            Err(e) => {
                console_error!(
                    "selfheal runner: incident {}: {e}; will retry",
                    job.incident_id
                );
                message.retry();
            }
        }
    }
    Ok(())
}

/// Claims the job's incident (see module docs). Errors: D1 failures (the message is retried).
async fn claim(db: &worker::D1Database, job: &FixJob, cap: u32) -> Result<ClaimOutcome, GlueError> {
    let reads = workers::batch(
        db,
        &[
            sql_with(SELECT_JOB_SOURCE, vec![job.incident_id.into()]),
            sql_with(SELECT_TICKET, vec![job.ticket_id.into()]),
            sql_with(store::SELECT_ATTEMPTS, vec![job.incident_id.into()]),
        ],
    )
    .await?;
    let (Some(incident), Some(ticket_row)) = (
        reads
            .first()
            .map(workers::rows::<IncidentRow>)
            .transpose()?
            .and_then(|mut v| v.pop()),
        reads
            .get(1)
            .map(workers::rows::<TicketRow>)
            .transpose()?
            .and_then(|mut v| v.pop()),
    ) else {
        return Ok(ClaimOutcome::Duplicate(
            "incident or ticket not found".into(),
        ));
    };
    let earlier: Vec<AttemptSummary> = reads
        .get(2)
        .map(workers::rows::<AttemptSummary>)
        .transpose()?
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.attempt < job.attempt)
        .collect();
    let task = ticket::task_for_attempt(&incident, &ticket_row, job.attempt, &earlier).to_string();
    let now = workers::now_ms();
    let stmts = store::claim_statements(
        &FixJob::attempt(
            incident.id,
            ticket_row.id,
            incident.fingerprint.clone(),
            job.attempt,
        ),
        &task,
        &utc_day(now),
        cap,
        now,
    );
    let results = workers::batch(db, &stmts).await?;
    #[derive(Deserialize)]
    struct Inserted {
        #[allow(dead_code)]
        id: i64,
    }
    let new = results
        .get(CLAIM_INSERT_INDEX)
        .map(workers::rows::<Inserted>)
        .transpose()?
        .is_some_and(|r| !r.is_empty());
    let run = results
        .get(CLAIM_READBACK_INDEX)
        .map(workers::rows::<FixRunRow>)
        .transpose()?
        .and_then(|mut v| v.pop())
        .ok_or_else(|| GlueError::Decode("fix run missing after claim".into()))?;
    Ok(match (new, run.state.as_str()) {
        (true, "ready") => ClaimOutcome::Ready,
        (_, "deferred") => ClaimOutcome::Deferred,
        (_, state) => ClaimOutcome::Duplicate(state.to_string()),
    })
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    console_error_panic_hook::set_once();
    let path = req.path();
    if path == "/health" {
        return Response::ok("selfheal agent-runner\n");
    }
    // The operator dashboard (HTML, session cookie): `/`, `/signin`, `/signout`, `/dashboard*`.
    if dashboard::owns(&path) {
        return dashboard::handle(&env, &mut req).await;
    }
    if !path.starts_with("/api/") {
        return json_error(404, "not found");
    }
    // Tokens only in headers: a credential in the URL is refused before anything else is done.
    if let Some(name) = req.url()?.query().and_then(security::secret_in_query) {
        console_log!("selfheal api {path}: refused a credential in the query string ({name})");
        return json_error(
            400,
            &format!(
                "credentials go in the Authorization header, never in the URL (query parameter {name:?})"
            ),
        );
    }
    // Intake webhooks authenticate by their sender's signature, not by the API token.
    if path == "/api/intake/sentry" || path == "/api/intake/workers-issues" {
        let handled = if path == "/api/intake/sentry" {
            sentry_intake(&env, &mut req).await
        } else {
            workers_issues_intake(&env, &mut req).await
        };
        return match handled {
            Ok(resp) => Ok(resp),
            Err(e) => {
                console_error!("selfheal intake {path}: {e}");
                json_error(500, "internal error")
            }
        };
    }
    // Fail closed: no configured token, no API.
    let Some(token) = workers::var(&env, "SELFHEAL_API_TOKEN") else {
        return json_error(503, "SELFHEAL_API_TOKEN is not configured");
    };
    let header = req.headers().get("authorization")?;
    let is_post = req.method() == worker::Method::Post;
    let full_access = security::bearer_is(header.as_deref(), &token);
    if !full_access {
        // A per-run token may only report its own run.
        let scope = security::RunScope::of(is_post, &path);
        let presented = security::bearer(header.as_deref())
            .filter(|t| t.starts_with(security::RUN_TOKEN_PREFIX));
        let allowed = match (scope, presented) {
            (Some(scope), Some(t)) => match run_token_ok(&env, scope, t).await {
                Ok(ok) => ok,
                Err(e) => {
                    console_error!("selfheal api {path}: {e}");
                    return json_error(500, "internal error");
                }
            },
            _ => false,
        };
        if !allowed {
            return json_error(401, "missing or wrong bearer token");
        }
    }
    // Every POST: its route's body limit, before the body is parsed.
    let body = if is_post {
        match read_body(&mut req, security::body_limit(&path)).await? {
            Ok(b) => b,
            Err(refused) => return Ok(refused),
        }
    } else {
        Vec::new()
    };
    let routed = match ingest::api(&env, &path, &req).await {
        Ok(None) => operator::api(&env, &path, &req, &body).await,
        other => other,
    };
    match routed {
        Ok(Some(resp)) => return Ok(resp),
        Ok(None) => {}
        Err(e) => {
            console_error!("selfheal api {path}: {e}");
            return json_error(500, "internal error");
        }
    }
    match gate_api(&env, &path, req.method(), &body).await {
        Ok(Some(resp)) => return Ok(resp),
        Ok(None) => {}
        Err(e) => {
            console_error!("selfheal api {path}: {e}");
            return json_error(500, "internal error");
        }
    }
    if is_post {
        return match fixer_api(&env, &path, &body).await {
            Ok(resp) => Ok(resp),
            Err(e) => {
                console_error!("selfheal api {path}: {e}");
                json_error(500, "internal error")
            }
        };
    }
    if req.method() != worker::Method::Get {
        return json_error(405, "only GET and POST");
    }
    match api(&env, &path).await {
        Ok(Some(body)) => Response::from_json(&body),
        Ok(None) => json_error(404, "no such endpoint"),
        Err(e) => {
            console_error!("selfheal api {path}: {e}");
            json_error(500, "internal error")
        }
    }
}

/// `POST /api/intake/sentry` ([`crate::intake`]): body limit, timestamp, signature (constant
/// time), documented shape; then one D1 batch. 404 when `SELFHEAL_SENTRY_CLIENT_SECRET` is unset;
/// 413 / 401 / 400 with nothing stored; 202 for a resource it does not act on; 200 with the
/// incident's fingerprint otherwise.
async fn sentry_intake(env: &Env, req: &mut Request) -> Result<Response, GlueError> {
    let (secret, body) = match intake_request(
        env,
        req,
        "SELFHEAL_SENTRY_CLIENT_SECRET",
        intake::MAX_SENTRY_BODY_BYTES,
    )
    .await?
    {
        Ok(got) => got,
        Err(refused) => return Ok(refused),
    };
    let headers = req.headers();
    let now = workers::now_ms();
    let now_secs = u64::try_from(now / 1000).unwrap_or(0);
    if !intake::sentry_timestamp_ok(headers.get("sentry-hook-timestamp")?.as_deref(), now_secs) {
        return Ok(json_error(401, "stale Sentry-Hook-Timestamp")?);
    }
    let signature = headers.get("sentry-hook-signature")?;
    if !intake::sentry_signature_ok(secret.as_bytes(), &body, signature.as_deref()) {
        return Ok(json_error(401, "missing or wrong Sentry-Hook-Signature")?);
    }
    let resource = headers.get("sentry-hook-resource")?.unwrap_or_default();
    let issue = match intake::parse_sentry(&resource, &body) {
        Ok(Some(issue)) => issue,
        Ok(None) => {
            return Ok(Response::from_json(&json!({ "ignored": resource }))?.with_status(202));
        }
        Err(intake::IntakeError::Body(why)) => return Ok(json_error(400, &why)?),
        Err(_) => return Ok(json_error(401, "refused")?),
    };
    store_intake(env, &issue, now, "sentry_issue_id").await
}

/// The common start of every intake: its secret var (`Err(404)` when unset: the intake is off),
/// POST only (`Err(405)`), the body within `limit` (`Err(413)`, before it is parsed).
async fn intake_request(
    env: &Env,
    req: &mut Request,
    secret_var: &str,
    limit: usize,
) -> Result<Result<(String, Vec<u8>), Response>, GlueError> {
    let Some(secret) = workers::var(env, secret_var) else {
        return Ok(Err(json_error(
            404,
            &format!("this intake is not configured ({secret_var} is unset)"),
        )?));
    };
    if req.method() != worker::Method::Post {
        return Ok(Err(json_error(405, "only POST")?));
    }
    Ok(read_body(req, limit).await?.map(|body| (secret, body)))
}

/// The common end of every intake: the issue through the TraceItem pipeline, then one D1 batch
/// (dedup row, incident, occurrence, sample). 202 when the pipeline calls it noise; 200 with
/// `{<id_field>, fingerprint}` otherwise.
async fn store_intake(
    env: &Env,
    issue: &intake::ExternalIssue,
    now: i64,
    id_field: &str,
) -> Result<Response, GlueError> {
    let cfg = crate::config::PipelineConfig::default();
    let Some(event) = intake::intake_event(issue, &cfg, now) else {
        return Ok(Response::from_json(&json!({ "ignored": "noise" }))?.with_status(202));
    };
    let db = env.d1(DB_BINDING)?;
    workers::batch(&db, &intake::intake_statements(issue, &event, now)).await?;
    console_log!(
        "selfheal intake {}: issue {} → {}",
        issue.source.name(),
        issue.issue_id,
        event.fingerprint
    );
    Ok(Response::from_json(&json!({
        id_field: issue.issue_id,
        "fingerprint": event.fingerprint,
    }))?)
}

/// `POST /api/intake/workers-issues` ([`crate::intake`]): body limit, `cf-webhook-auth` (constant
/// time), JSON, `ts`, documented shape; then one D1 batch. 404 when
/// `SELFHEAL_WORKERS_ISSUES_SECRET` is unset; 413 / 401 / 400 with nothing stored; 202 for the
/// destination's test message; 200 with the incident's fingerprint otherwise.
async fn workers_issues_intake(env: &Env, req: &mut Request) -> Result<Response, GlueError> {
    let (secret, body) = match intake_request(
        env,
        req,
        "SELFHEAL_WORKERS_ISSUES_SECRET",
        intake::MAX_WORKERS_ISSUES_BODY_BYTES,
    )
    .await?
    {
        Ok(got) => got,
        Err(refused) => return Ok(refused),
    };
    let auth = req.headers().get("cf-webhook-auth")?;
    if !intake::workers_issues_secret_ok(&secret, auth.as_deref()) {
        return Ok(json_error(401, "missing or wrong cf-webhook-auth")?);
    }
    let now = workers::now_ms();
    let issue = match intake::parse_workers_issue(&body, u64::try_from(now / 1000).unwrap_or(0)) {
        Ok(Some(issue)) => issue,
        Ok(None) => {
            return Ok(Response::from_json(&json!({ "ignored": "test message" }))?.with_status(202));
        }
        Err(intake::IntakeError::Body(why)) => return Ok(json_error(400, &why)?),
        Err(intake::IntakeError::Stale) => {
            return Ok(json_error(401, "stale ts (replayed or delayed delivery)")?);
        }
        Err(intake::IntakeError::Signature) => return Ok(json_error(401, "refused")?),
    };
    store_intake(env, &issue, now, "issue_id").await
}

/// Whether `presented` is a live per-run token of `scope`'s run: its SHA-256 equals a stored one
/// (constant time) whose run still holds the lease it was minted with.
async fn run_token_ok(
    env: &Env,
    scope: security::RunScope,
    presented: &str,
) -> Result<bool, GlueError> {
    let db = env.d1(DB_BINDING)?;
    let rows: Vec<RunTokenRow> = workers::query(
        &db,
        &sql_with(
            SELECT_RUN_TOKEN,
            vec![scope.run_id.into(), workers::now_ms().into()],
        ),
    )
    .await?;
    // Every stored hash is compared (no early exit), each in constant time.
    Ok(rows.iter().fold(false, |ok, r| {
        security::run_token_matches(presented, &r.token_hash) | ok
    }))
}

/// Reads a POST body of at most `limit` bytes: `Ok(Err(413))` past it (by the declared
/// `Content-Length` before reading, else by the bytes read), `Ok(Err(400))` when unreadable.
async fn read_body(req: &mut Request, limit: usize) -> worker::Result<Result<Vec<u8>, Response>> {
    let too_big = || json_error(413, &format!("body over {limit} bytes"));
    let declared = req.headers().get("content-length")?;
    if security::declared_over(declared.as_deref(), limit) {
        return Ok(Err(too_big()?));
    }
    let Ok(body) = req.bytes().await else {
        return Ok(Err(json_error(400, "unreadable body")?));
    };
    if body.len() > limit {
        return Ok(Err(too_big()?));
    }
    Ok(Ok(body))
}

async fn api(env: &Env, path: &str) -> Result<Option<Value>, GlueError> {
    let db = env.d1(DB_BINDING)?;
    let today = utc_day(workers::now_ms());
    let budget_sql = sql_with(SELECT_BUDGET, vec![today.as_str().into()]);
    // Before the first claim of the day there is no row: today's cap, nothing used.
    let budget = |row: Option<BudgetRow>| -> Result<Value, GlueError> {
        let cap = i64::from(daily_cap(env)?);
        Ok(json!(row.unwrap_or(BudgetRow {
            day: today.clone(),
            cap,
            used: 0
        })))
    };
    if path == "/api/budget" {
        return budget_view(env, &db).await.map(Some);
    }
    Ok(Some(match path {
        "/api/incidents" => json!(
            workers::query::<crate::store::GatedIncidentRow>(&db, &sql(LIST_INCIDENTS_GATED))
                .await?
                .into_iter()
                .map(IncidentView::from)
                .collect::<Vec<_>>()
        ),
        "/api/tickets" => json!(workers::query::<TicketRow>(&db, &sql(LIST_TICKETS)).await?),
        "/api/runs" => json!(workers::query::<FixRunRow>(&db, &sql(LIST_RUNS)).await?),
        "/api/ledger" => json!(workers::query::<Value>(&db, &sql(store::LIST_LEDGER)).await?),
        "/api/ingest" => json!(workers::query::<Value>(&db, &sql(LIST_INGEST_STATS)).await?),
        "/api/summary" => {
            let results = workers::batch(
                &db,
                &[
                    sql(LIST_INCIDENTS),
                    sql(LIST_TICKETS),
                    sql(LIST_RUNS),
                    sql(LIST_INGEST_STATS),
                    budget_sql.clone(),
                ],
            )
            .await?;
            let get = |i: usize| -> Result<Vec<Value>, GlueError> {
                results
                    .get(i)
                    .map(workers::rows::<Value>)
                    .transpose()
                    .map(Option::unwrap_or_default)
            };
            let (incidents, tickets, runs, ingest) = (get(0)?, get(1)?, get(2)?, get(3)?);
            let budget_row = results
                .get(4)
                .map(workers::rows::<BudgetRow>)
                .transpose()?
                .and_then(|mut v| v.pop());
            let count = |state: &str| runs.iter().filter(|r| r["state"] == state).count();
            let events: i64 = incidents
                .iter()
                .filter_map(|i| i["occurrence_count"].as_i64())
                .sum();
            json!({
                "events": events,
                "incidents": incidents.len(),
                "tickets": tickets.len(),
                "runs_ready": count("ready"),
                "runs_deferred": count("deferred"),
                "runs_total": runs.len(),
                "malformed_items": ingest.iter().filter_map(|d| d["malformed"].as_i64()).sum::<i64>(),
                "noise_items": ingest.iter().filter_map(|d| d["noise"].as_i64()).sum::<i64>(),
                "budget": budget(budget_row)?,
            })
        }
        _ => return Ok(None),
    }))
}

/// The gate's endpoints (see the module doc); `None` when `path` is not one of them. `body`: the
/// POST body, already within its limit.
async fn gate_api(
    env: &Env,
    path: &str,
    method: worker::Method,
    body: &[u8],
) -> Result<Option<Response>, GlueError> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let (is_get, is_post) = (
        method == worker::Method::Get,
        method == worker::Method::Post,
    );
    match parts.as_slice() {
        ["", "api", "gate", "report"] => {
            if !is_get {
                return Ok(Some(json_error(405, "only GET")?));
            }
            let db = env.d1(DB_BINDING)?;
            let results = workers::batch(&db, &report::report_statements()).await?;
            let labelled: Vec<LabelledRow> = results
                .get(report::idx::LABELLED)
                .map(workers::rows)
                .transpose()?
                .unwrap_or_default();
            let counts: Vec<DecisionCountRow> = results
                .get(report::idx::COUNTS)
                .map(workers::rows)
                .transpose()?
                .unwrap_or_default();
            Ok(Some(Response::from_json(&report::build(
                &labelled, &counts,
            ))?))
        }
        ["", "api", "incidents", id, action @ ("decisions" | "label")] => {
            let want_post = *action == "label";
            if (want_post && !is_post) || (!want_post && !is_get) {
                let only = if want_post { "only POST" } else { "only GET" };
                return Ok(Some(json_error(405, only)?));
            }
            let Ok(id) = id.parse::<i64>() else {
                return Ok(Some(json_error(404, "no such incident")?));
            };
            let db = env.d1(DB_BINDING)?;
            if want_post {
                return label(&db, id, body).await.map(Some);
            }
            let results = workers::batch(&db, &report::decisions_statements(id)).await?;
            let Some(incident) = results
                .first()
                .map(workers::rows::<Value>)
                .transpose()?
                .and_then(|mut v| v.pop())
            else {
                return Ok(Some(json_error(404, "no such incident")?));
            };
            let decisions: Vec<DecisionView> = results
                .get(1)
                .map(workers::rows::<DecisionRow>)
                .transpose()?
                .unwrap_or_default()
                .into_iter()
                .map(DecisionView::from)
                .collect();
            Ok(Some(Response::from_json(&json!({
                "incident_id": id,
                "gate_decision": incident["gate_decision"],
                "label": incident["label"],
                "decisions": decisions,
            }))?))
        }
        _ => Ok(None),
    }
}

/// `POST /api/incidents/{id}/label`: validates the whole body before any write.
async fn label(db: &worker::D1Database, id: i64, body: &[u8]) -> Result<Response, GlueError> {
    let label = match report::parse_label(body) {
        Ok(l) => l,
        Err(e) => return Ok(json_error(400, &e.0)?),
    };
    let now = workers::now_ms();
    let stored = workers::batch(db, &[report::label_statement(id, label, now)]).await?;
    match stored
        .first()
        .map(workers::rows::<Value>)
        .transpose()?
        .and_then(|mut v| v.pop())
    {
        Some(row) => {
            console_log!("selfheal api: incident {id} labelled {label}");
            Ok(Response::from_json(&row)?)
        }
        None => Ok(json_error(404, "no such incident")?),
    }
}

/// Default lease length when the fixer gives none, seconds.
const DEFAULT_LEASE_SECS: i64 = 900;
/// Longest lease a fixer may ask for, seconds.
const MAX_LEASE_SECS: i64 = 4 * 3600;
/// Default cool-down after a failed fix, hours.
const DEFAULT_COOLDOWN_HOURS: i64 = 24;

#[derive(Deserialize)]
struct LeaseBody {
    owner: String,
    ttl_secs: Option<i64>,
}

#[derive(Deserialize)]
struct HeartbeatBody {
    lease_id: String,
    state: Option<String>,
    ttl_secs: Option<i64>,
}

#[derive(Deserialize)]
struct ResultBody {
    lease_id: String,
    outcome: String,
    pr_url: Option<String>,
}

fn ttl_ms(ttl_secs: Option<i64>) -> i64 {
    ttl_secs
        .unwrap_or(DEFAULT_LEASE_SECS)
        .clamp(30, MAX_LEASE_SECS)
        * 1000
}

/// The fixer's POST endpoints (see the module doc).
async fn fixer_api(env: &Env, path: &str, body: &[u8]) -> Result<Response, GlueError> {
    let db = env.d1(DB_BINDING)?;
    let now = workers::now_ms();
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        ["", "api", "runs", "lease"] => {
            let Ok(body) = serde_json::from_slice::<LeaseBody>(body) else {
                return Ok(json_error(400, "expected {owner, ttl_secs?}")?);
            };
            let lease_id = workers::random_uuid()?;
            let owner: String = body.owner.chars().take(100).collect();
            let caps = caps(env)?;
            let results = workers::batch(
                &db,
                &store::lease_statements_capped(
                    &lease_id,
                    &owner,
                    now,
                    ttl_ms(body.ttl_secs),
                    &caps,
                ),
            )
            .await?;
            let leased = results
                .get(store::LEASE_READBACK_INDEX)
                .map(workers::rows::<store::LeasedRun>)
                .transpose()?
                .and_then(|mut v| v.pop());
            let spend = results
                .get(store::LEASE_SPEND_INDEX)
                .map(workers::rows::<Spend>)
                .transpose()?
                .and_then(|mut v| v.pop())
                .unwrap_or_default();
            match leased {
                Some(run) => {
                    console_log!("selfheal api: run {} leased by {owner}", run.run_id);
                    Ok(Response::from_json(&run)?)
                }
                None => match budget_caps::holding(&caps, &spend, &Windows::at(now), now)
                    .filter(|_| spend.ready > 0)
                {
                    // A ready run waits on a cap: say which, and until when.
                    Some((cap, why)) => {
                        let retry = ((cap.resets_at - now).max(0) + 999) / 1000;
                        console_log!("selfheal api: lease for {owner} held: {why}");
                        let mut resp = Response::from_json(&json!({
                            "error": why,
                            "cap": cap,
                            "retry_after_secs": retry,
                        }))?
                        .with_status(429);
                        resp.headers_mut().set("retry-after", &retry.to_string())?;
                        Ok(resp)
                    }
                    None => Ok(Response::empty()?.with_status(204)),
                },
            }
        }
        ["", "api", "runs", id, action] => {
            let Ok(run_id) = id.parse::<i64>() else {
                return Ok(json_error(404, "no such run")?);
            };
            let (stmts, lease_id) = match *action {
                "heartbeat" => {
                    let Ok(b) = serde_json::from_slice::<HeartbeatBody>(body) else {
                        return Ok(json_error(400, "expected {lease_id, state?, ttl_secs?}")?);
                    };
                    let state = b.state.unwrap_or_else(|| "fixing".into());
                    if state != "fixing" && state != "leased" {
                        return Ok(json_error(400, "state must be leased or fixing")?);
                    }
                    let s =
                        store::renew_lease(run_id, &b.lease_id, &state, now, ttl_ms(b.ttl_secs));
                    (vec![s], b.lease_id)
                }
                "result" => {
                    let Ok(text) = std::str::from_utf8(body) else {
                        return Ok(json_error(400, "body is not UTF-8")?);
                    };
                    let Ok(b) = serde_json::from_str::<ResultBody>(text) else {
                        return Ok(json_error(400, "expected {lease_id, outcome, ...}")?);
                    };
                    if !matches!(
                        b.outcome.as_str(),
                        "pr_opened"
                            | "failed"
                            | "budget_exhausted"
                            | "diagnosed"
                            | "not_reproduced"
                    ) {
                        return Ok(json_error(
                            400,
                            "outcome must be pr_opened, failed, budget_exhausted, diagnosed or not_reproduced",
                        )?);
                    }
                    let pr_url = b
                        .pr_url
                        .as_deref()
                        .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
                    if b.outcome == "pr_opened" && pr_url.is_none() {
                        return Ok(json_error(400, "pr_opened needs an http(s) pr_url")?);
                    }
                    // Whole: the body is within MAX_RESULT_BODY_BYTES already.
                    let result = text;
                    // A run over its budget, one that only diagnosed, and one that could not
                    // reproduce the failure have ended like a failed one (their state); the
                    // ledger and the result keep the outcome.
                    let state = if b.outcome == "pr_opened" {
                        "pr_opened"
                    } else {
                        "failed"
                    };
                    let entry = LedgerEntry::from_result(
                        &b.outcome,
                        &serde_json::from_str::<Value>(text).unwrap_or(Value::Null),
                    );
                    let mut stmts = vec![
                        store::finish_run(run_id, &b.lease_id, state, pr_url, result, now),
                        store::record_ledger(run_id, &entry, now),
                    ];
                    // The lifecycle: the incident follows its run (only when the finish matched).
                    stmts.extend(crate::tracking::follow::result_statements(
                        run_id, state, now,
                    ));
                    if state == "failed" {
                        let hours = workers::var(env, "SELFHEAL_COOLDOWN_HOURS")
                            .and_then(|h| h.trim().parse::<i64>().ok())
                            .unwrap_or(DEFAULT_COOLDOWN_HOURS);
                        stmts.push(store::cool_down(
                            run_id,
                            now + hours.max(0) * 3_600_000,
                            now,
                        ));
                    }
                    (stmts, b.lease_id)
                }
                _ => return Ok(json_error(404, "no such endpoint")?),
            };
            // The cool-down rides in the same batch and only applies when the finish matched.
            let results = workers::batch(&db, &stmts).await?;
            let held = results
                .first()
                .map(workers::rows::<Value>)
                .transpose()?
                .is_some_and(|rows| !rows.is_empty());
            if !held {
                console_log!("selfheal api: run {run_id}: lease {lease_id} not held");
                return Ok(json_error(409, "lease not held (expired or taken over)")?);
            }
            Ok(Response::from_json(
                &json!({ "run_id": run_id, "ok": true }),
            )?)
        }
        _ => Ok(json_error(404, "no such endpoint")?),
    }
}

/// `GET /api/budget`: today's daily row as before (`day`, `cap`, `used`), and every cap against
/// its spend (`caps`: [`budget_caps::CapView`]), the windows, and how many of this month's runs
/// reported no dollars.
async fn budget_view(env: &Env, db: &worker::D1Database) -> Result<Value, GlueError> {
    let caps = caps(env)?;
    let now = workers::now_ms();
    let spend = workers::query::<Spend>(db, &store::spend_statement(now))
        .await?
        .pop()
        .unwrap_or_default();
    let w = Windows::at(now);
    Ok(json!({
        "day": utc_day(now),
        "cap": caps.daily_runs,
        "used": spend.daily_runs,
        "caps": budget_caps::view(&caps, &spend, &w),
        "windows": w,
        "monthly_runs_without_dollars": spend.monthly_unreported,
    }))
}

pub(super) fn json_error(status: u16, message: &str) -> worker::Result<Response> {
    Ok(Response::from_json(&json!({ "error": message }))?.with_status(status))
}
