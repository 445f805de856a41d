//! Hands ready fix runs to a hosted agent when `SELFHEAL_HANDOVER` is `webhook` or `copilot`
//! (with `local`, the default, runs wait for `selfheal fix` on the owner's machine).
//!
//! Each cron run takes at most one lease, through the same statements the local fixer's
//! `POST /api/runs/lease` uses, so "one agent at a time" holds for every mode (the partial unique
//! index on leased/fixing runs). Then:
//! - `webhook`: POSTs `{version, run_id, lease_id, lease_expires_at, run_token, result_path,
//!   heartbeat_path, task}` to `SELFHEAL_WEBHOOK_URL`, signed (see [`selfheal::handover`]); the
//!   receiver reports back with `Authorization: Bearer <run_token>` and the lease id on the
//!   agent-runner's `/api/runs/{id}/heartbeat` and `/result`. The run token is minted here (32
//!   bytes of `crypto.getRandomValues`), stored only as its SHA-256 in the lease's own batch, and
//!   can report that run only ([`selfheal::security`]): the hosted agent never holds the API token;
//! - `copilot`: assigns the run's GitHub issue to the Copilot coding agent (needs the GitHub
//!   tracker, so the issue exists); Copilot opens its own draft PR on the issue and reports
//!   through GitHub, never through the agent-runner's API, so it gets no token at all (a token
//!   placed in an issue or its instructions would be readable by everyone who can read the issue).
//!
//! A 2xx marks the run `fixing`; anything else leaves it `leased` until the lease expires and the
//! run is `ready` again.

use selfheal::fixing::caps::Caps;
use selfheal::github::{self, Outcome};
use selfheal::handover::{Handover, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use selfheal::security::mint_run_token;
use selfheal::storage::run_tokens::lease_with_token;
use selfheal::store::{self, LEASE_READBACK_INDEX, LeasedRun};
use selfheal::workers::{self, GlueError};
use serde_json::json;
use worker::{Fetch, Headers, Method, RequestInit};

/// How long a hosted agent holds a run before it goes back to `ready`, ms (`SELFHEAL_HANDOVER_HOURS`, default 6 h).
fn ttl_ms(env: &worker::Env) -> i64 {
    workers::var(env, "SELFHEAL_HANDOVER_HOURS")
        .and_then(|h| h.trim().parse::<i64>().ok())
        .unwrap_or(6)
        .clamp(1, 168)
        * 3_600_000
}

/// One handover step. Returns the run handed over, if any.
///
/// Errors: D1 failures and misconfiguration; a refused delivery is logged and left to expire.
pub async fn step(
    env: &worker::Env,
    db: &worker::D1Database,
    repo: Option<&github::Repo>,
) -> Result<Option<i64>, GlueError> {
    let mode = Handover::from_vars(
        workers::var(env, "SELFHEAL_HANDOVER").as_deref(),
        workers::var(env, "SELFHEAL_BASE_BRANCH").as_deref(),
        workers::var(env, "SELFHEAL_WEBHOOK_URL").as_deref(),
        workers::var(env, "SELFHEAL_WEBHOOK_SECRET").as_deref(),
    )
    .map_err(|e| GlueError::Config(e.to_string()))?;
    let owner = match &mode {
        Handover::Local => return Ok(None),
        Handover::Copilot { .. } if repo.is_none() => {
            return Err(GlueError::Config(
                "SELFHEAL_HANDOVER=copilot needs SELFHEAL_TRACKER=github".into(),
            ));
        }
        Handover::Copilot { .. } => "copilot",
        Handover::Webhook { .. } => "webhook",
    };
    let now = workers::now_ms();
    let lease_id = workers::random_uuid()?;
    // Webhook: the run's token is minted with the lease, in the same batch (never one without the other).
    let minted = match &mode {
        Handover::Webhook { .. } => Some(mint_run_token(&workers::random_bytes32()?)),
        _ => None,
    };
    // The same caps as the local fixer's lease (runs per week and month, dollars).
    let caps = Caps::from_vars(|name| workers::var(env, name)).map_err(GlueError::Config)?;
    let stmts = match &minted {
        Some(m) => lease_with_token(&lease_id, owner, now, ttl_ms(env), &m.hash, &caps),
        None => store::lease_statements_capped(&lease_id, owner, now, ttl_ms(env), &caps),
    };
    let results = workers::batch(db, &stmts).await?;
    let Some(run) = results
        .get(LEASE_READBACK_INDEX)
        .map(workers::rows::<LeasedRun>)
        .transpose()?
        .and_then(|mut v| v.pop())
    else {
        return Ok(None);
    };
    let delivered = match &mode {
        Handover::Webhook { url, secret } => {
            let body = json!({
                "version": 1,
                "run_id": run.run_id,
                "lease_id": run.lease_id,
                "lease_expires_at": run.lease_expires_at,
                "run_token": minted.as_ref().map(|m| m.token.as_str()),
                "result_path": format!("/api/runs/{}/result", run.run_id),
                "heartbeat_path": format!("/api/runs/{}/heartbeat", run.run_id),
                "task": serde_json::from_str::<serde_json::Value>(&run.task).unwrap_or_default(),
            })
            .to_string();
            let ts = u64::try_from(now / 1000).unwrap_or(0);
            let headers = Headers::new();
            headers.set("content-type", "application/json")?;
            headers.set(TIMESTAMP_HEADER, &ts.to_string())?;
            headers.set(
                SIGNATURE_HEADER,
                &sign(secret.as_bytes(), ts, body.as_bytes()),
            )?;
            let mut init = RequestInit::new();
            init.with_method(Method::Post)
                .with_headers(headers)
                .with_body(Some(body.into()));
            let req = worker::Request::new_with_init(url, &init)?;
            match Fetch::Request(req).send().await {
                Ok(r) if (200..300).contains(&r.status_code()) => Ok(()),
                Ok(r) => Err(format!("webhook answered {}", r.status_code())),
                Err(e) => Err(format!("webhook: {e}")),
            }
        }
        Handover::Copilot { base_branch } => match (repo, run.external_number) {
            (Some(repo), Some(number)) => {
                let req =
                    github::assign_copilot(repo, u64::try_from(number).unwrap_or(0), base_branch);
                let (status, headers, body) =
                    crate::tracker::send_once(&req, crate::tracker::timeout_ms(env)).await;
                let resp = github::Response {
                    status,
                    headers: &headers,
                    body: &body,
                };
                match github::classify(&resp, 1, u64::try_from(now / 1000).unwrap_or(0)) {
                    Outcome::Success => Ok(()),
                    Outcome::Retry { reason, .. } | Outcome::Fail { reason } => Err(reason),
                }
            }
            _ => Err("the run's ticket is not on GitHub yet".into()),
        },
        Handover::Local => Ok(()),
    };
    match delivered {
        Ok(()) => {
            workers::batch(
                db,
                &[store::renew_lease(
                    run.run_id,
                    &run.lease_id,
                    "fixing",
                    now,
                    ttl_ms(env),
                )],
            )
            .await?;
            worker::console_log!("selfheal handover: run {} to {owner}", run.run_id);
            Ok(Some(run.run_id))
        }
        Err(why) => {
            worker::console_error!(
                "selfheal handover: run {} not delivered to {owner}: {why}",
                run.run_id
            );
            Ok(None)
        }
    }
}
