//! The agent-runner Worker (feature `agent-runner`, built by the root `wrangler.toml`).
//!
//! - Queue consumer of `selfheal-fix-jobs` (`max_concurrency = 1`: one agent at a time): each job is
//!   **claimed** by an insert into `fix_runs` guarded by `UNIQUE (incident_id)`, so a redelivered
//!   message is an acked no-op; the claim takes one unit of the daily cap in the same transaction,
//!   or defers the run to a later UTC day. A claimed run waits as `ready`, with its task, for a fixer.
//! - HTTP API (JSON), `Authorization: Bearer $SELFHEAL_API_TOKEN`:
//!   `GET /api/summary`, `/api/incidents`, `/api/tickets`, `/api/runs`, `/api/budget`, `/api/ingest`.

use serde::Deserialize;
use serde_json::{Value, json};
use worker::{
    Context, Env, MessageBatch, MessageExt, Request, Response, console_error, console_log, event,
};

use crate::store::{
    self, BudgetRow, CLAIM_INSERT_INDEX, CLAIM_READBACK_INDEX, FixRunRow, IncidentRow,
    LIST_INCIDENTS, LIST_INGEST_STATS, LIST_RUNS, LIST_TICKETS, SELECT_BUDGET, SELECT_JOB_SOURCE,
    SELECT_TICKET, TicketRow, utc_day,
};
use crate::ticket::{self, FixJob};
use crate::workers::{self, DB_BINDING, GlueError, sql, sql_with};

/// Default daily cap on fix attempts when `SELFHEAL_DAILY_CAP` is unset.
pub const DEFAULT_DAILY_CAP: u32 = 5;

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

fn daily_cap(env: &Env) -> Result<u32, GlueError> {
    match workers::var(env, "SELFHEAL_DAILY_CAP") {
        None => Ok(DEFAULT_DAILY_CAP),
        Some(v) => v.trim().parse::<u32>().map_err(|_| {
            GlueError::Config(format!(
                "SELFHEAL_DAILY_CAP must be a whole number, got {v:?}"
            ))
        }),
    }
}

#[event(queue)]
async fn queue(batch: MessageBatch<Value>, env: Env, _ctx: Context) -> worker::Result<()> {
    console_error_panic_hook::set_once();
    let cap = daily_cap(&env)?;
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
    let task = ticket::task(&incident, &ticket_row).to_string();
    let now = workers::now_ms();
    let stmts = store::claim_statements(
        incident.id,
        ticket_row.id,
        &incident.fingerprint,
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
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    console_error_panic_hook::set_once();
    let path = req.path();
    if path == "/" || path == "/health" {
        return Response::ok("selfheal agent-runner\n");
    }
    if !path.starts_with("/api/") {
        return json_error(404, "not found");
    }
    // Fail closed: no configured token, no API.
    let Some(token) = workers::var(&env, "SELFHEAL_API_TOKEN") else {
        return json_error(503, "SELFHEAL_API_TOKEN is not configured");
    };
    let given = req.headers().get("authorization")?.unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), format!("Bearer {token}").as_bytes()) {
        return json_error(401, "missing or wrong bearer token");
    }
    if req.method() != worker::Method::Get {
        return json_error(405, "only GET");
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
    Ok(Some(match path {
        "/api/incidents" => json!(workers::query::<IncidentRow>(&db, &sql(LIST_INCIDENTS)).await?),
        "/api/tickets" => json!(workers::query::<TicketRow>(&db, &sql(LIST_TICKETS)).await?),
        "/api/runs" => json!(workers::query::<FixRunRow>(&db, &sql(LIST_RUNS)).await?),
        "/api/budget" => budget(workers::query::<BudgetRow>(&db, &budget_sql).await?.pop())?,
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

fn json_error(status: u16, message: &str) -> worker::Result<Response> {
    Ok(Response::from_json(&json!({ "error": message }))?.with_status(status))
}

/// Compares without an early exit on the first differing byte (timing does not reveal the prefix).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
