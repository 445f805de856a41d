//! An operator's actions on an incident (agent-runner API), each stored with a row of the
//! incident history ([`crate::tracking::history`]):
//! - `POST /api/incidents/{id}/resolve`, `/ignore`, `/reopen` (no body needed) → 200
//!   `{incident_id, from, to, changed}`; 404 for an unknown incident; 409 when the incident changed
//!   status meanwhile (nothing written).
//!   `ignore` takes an optional `{"until_escalating": true}`: the cron brings the incident back when
//!   it escalates ([`crate::tracking::follow::escalating_statements`]).
//! - `POST /api/incidents/{id}/retry` → 200 `{incident_id, attempt, changed: true}`: the ticket
//!   moves to the next fix attempt (past `SELFHEAL_MAX_ATTEMPTS` too: a person decided) and the
//!   cron sends its job; 409 when an attempt is in flight or none was made yet.
//! - `POST /api/incidents/{id}/unmerge` → 200 `{incident_id, group_key, status, unlinked_ticket_id,
//!   changed}`: the incident is split out of its group and stays out (pinned; its group key is
//!   its own fingerprint); when it was linked to another member's ticket it is unlinked (status
//!   `open`) and the next cron opens its own ticket ([`crate::signal::groups`]). `changed: false`
//!   when it was already split out.
//! - `GET /api/incidents/{id}/history` → `{incident_id, history: [{id, at, from_status, to_status,
//!   actor, why, figures}]}`, oldest first; 404 for an unknown incident.
//! - `GET /api/incidents/{id}/detail` → `{incident_id, daily: [{day, release, occurrences}],
//!   samples: [stored sanitized events, oldest first, at most 5], runs: [{id, attempt, state,
//!   pr_url, pr_state, ended, ended_at}]}` (what `selfheal show` prints beyond the incident row).

use serde::Deserialize;
use serde_json::{Value, json};
use worker::{Env, Request, Response};

use crate::signal::groups;
use crate::tracking::follow;
use crate::tracking::history::{self, SELECT_HISTORY, SELECT_STATUS};
use crate::tracking::lifecycle::{self, LifecycleEvent};
use crate::workers::{self, DB_BINDING, GlueError, sql_with};

#[derive(Deserialize)]
struct StatusRow {
    status: String,
}

fn error(status: u16, message: &str) -> Result<Option<Response>, GlueError> {
    Ok(Some(super::json_error(status, message)?))
}

/// The operator endpoints; `None` when `path` is not one of them.
pub async fn api(
    env: &Env,
    path: &str,
    req: &Request,
    body: &[u8],
) -> Result<Option<Response>, GlueError> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let ["", "api", "incidents", id, action] = parts.as_slice() else {
        return Ok(None);
    };
    if !matches!(
        *action,
        "resolve" | "ignore" | "reopen" | "retry" | "unmerge" | "history" | "detail"
    ) {
        return Ok(None);
    }
    let Ok(id) = id.parse::<i64>() else {
        return error(404, "no such incident");
    };
    let get = matches!(*action, "history" | "detail");
    if get != (req.method() == worker::Method::Get)
        || (!get && req.method() != worker::Method::Post)
    {
        return error(405, if get { "only GET" } else { "only POST" });
    }
    let db = env.d1(DB_BINDING)?;
    let Some(row) = workers::query::<StatusRow>(&db, &sql_with(SELECT_STATUS, vec![id.into()]))
        .await?
        .pop()
    else {
        return error(404, "no such incident");
    };
    if *action == "detail" {
        return Ok(Some(Response::from_json(&detail(&db, id).await?)?));
    }
    if get {
        let rows: Vec<Value> =
            workers::query(&db, &sql_with(SELECT_HISTORY, vec![id.into()])).await?;
        return Ok(Some(Response::from_json(
            &json!({ "incident_id": id, "history": rows }),
        )?));
    }
    if *action == "retry" {
        let results = workers::batch(&db, &follow::retry_statements(id, workers::now_ms())).await?;
        #[derive(Deserialize)]
        struct Moved {
            attempt: i64,
        }
        let moved = results
            .first()
            .map(workers::rows::<Moved>)
            .transpose()?
            .and_then(|mut v| v.pop());
        return match moved {
            Some(m) => Ok(Some(Response::from_json(&json!({
                "incident_id": id, "attempt": m.attempt, "changed": true,
            }))?)),
            None => error(
                409,
                "no attempt to retry: one is in flight, or none was made yet",
            ),
        };
    }
    if *action == "unmerge" {
        return unmerge(&db, id).await.map(Some);
    }
    let until_escalating = *action == "ignore"
        && serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("until_escalating").and_then(Value::as_bool))
            .unwrap_or(false);
    let Some(from) = history::parse_status(&row.status) else {
        return Err(GlueError::Decode(format!(
            "unknown stored status {:?}",
            row.status
        )));
    };
    let event = LifecycleEvent::Operator {
        action: (*action).to_string(),
    };
    let Some(t) = lifecycle::next(from, &event, lifecycle::DEFAULT_RESOLVE_AFTER_DAYS)
        .filter(|t| t.to != t.from)
    else {
        return Ok(Some(Response::from_json(&json!({
            "incident_id": id, "from": from.as_str(), "to": from.as_str(), "changed": false,
        }))?));
    };
    let now = workers::now_ms();
    let mut stmts = history::transition_statements(id, &t, "operator", now);
    stmts.push(follow::operator_marks_statement(id, until_escalating, now));
    let results = workers::batch(&db, &stmts).await?;
    let changed = results
        .get(1)
        .and_then(|r| r.meta().ok().flatten())
        .and_then(|m| m.changes)
        .unwrap_or(0);
    if changed == 0 {
        return error(
            409,
            "the incident changed status meanwhile; nothing written",
        );
    }
    Ok(Some(Response::from_json(&json!({
        "incident_id": id, "from": t.from.as_str(), "to": t.to.as_str(), "changed": true,
    }))?))
}

/// The incident `?1`'s fix runs, one per attempt, with their PRs and how each attempt ended.
const SELECT_ATTEMPT_RUNS: &str = "SELECT id, attempt, state, pr_url, pr_state, ended, ended_at FROM fix_runs \
WHERE incident_id = ?1 ORDER BY attempt";

/// `GET /api/incidents/{id}/detail` (see the module docs).
async fn detail(db: &worker::D1Database, id: i64) -> Result<Value, GlueError> {
    #[derive(Deserialize)]
    struct Fp {
        fingerprint: String,
    }
    #[derive(Deserialize)]
    struct Bucket {
        bucket: i64,
        release: String,
        n: i64,
    }
    let fp = workers::query::<Fp>(
        db,
        &sql_with(
            "SELECT fingerprint FROM ops_incidents WHERE id = ?1",
            vec![id.into()],
        ),
    )
    .await?
    .pop()
    .map(|f| f.fingerprint)
    .unwrap_or_default();
    let results = workers::batch(
        db,
        &[
            sql_with(
                super::dashboard::SELECT_INCIDENT_BUCKETS,
                vec![fp.as_str().into()],
            ),
            sql_with(
                crate::store::SELECT_SAMPLES,
                vec![json!([fp]).to_string().into(), 5i64.into()],
            ),
            sql_with(SELECT_ATTEMPT_RUNS, vec![id.into()]),
        ],
    )
    .await?;
    let get = |i: usize| {
        results
            .get(i)
            .ok_or_else(|| GlueError::Decode("missing batch result".into()))
    };
    let buckets: Vec<(i64, String, i64)> = workers::rows::<Bucket>(get(0)?)?
        .into_iter()
        .map(|b| (b.bucket, b.release, b.n))
        .collect();
    let daily: Vec<Value> = crate::dashboard::daily_counts(&buckets)
        .into_iter()
        .map(|(day, release, n)| json!({ "day": day, "release": release, "occurrences": n }))
        .collect();
    let samples: Vec<Value> = workers::rows(get(1)?)?;
    let runs: Vec<Value> = workers::rows(get(2)?)?;
    Ok(json!({ "incident_id": id, "daily": daily, "samples": samples, "runs": runs }))
}

/// `POST /api/incidents/{id}/unmerge` for an existing incident `id`.
async fn unmerge(db: &worker::D1Database, id: i64) -> Result<Response, GlueError> {
    let results = workers::batch(db, &groups::unmerge_statements(id, workers::now_ms())).await?;
    #[derive(Deserialize)]
    struct Unlinked {
        unlinked_ticket_id: Option<i64>,
    }
    let unlinked = results
        .first()
        .map(workers::rows::<Unlinked>)
        .transpose()?
        .and_then(|mut v| v.pop())
        .and_then(|u| u.unlinked_ticket_id);
    let pinned = results
        .get(1)
        .map(workers::rows::<groups::Unmerged>)
        .transpose()?
        .and_then(|mut v| v.pop());
    Ok(Response::from_json(&match pinned {
        Some(u) => json!({
            "incident_id": id, "group_key": u.group_key, "status": u.status,
            "unlinked_ticket_id": unlinked, "changed": true,
        }),
        None => json!({ "incident_id": id, "changed": false }),
    })?)
}
