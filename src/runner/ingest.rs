//! The ingest endpoints of the agent-runner API (the dead-letter side of
//! [`crate::storage::ingest`]):
//! - `GET /api/ingest/dead` → `{parked: [{message_id, attempts, error, parked_at, bytes,
//!   events}]}`, oldest first (at most 500; the bodies are not returned).
//! - `POST /api/ingest/dead/replay` (no body) → `{replayed, unreadable: [message_id], left}`:
//!   applies up to [`REPLAY_LIMIT`] parked messages in one D1 batch and deletes them in the same
//!   transaction (exactly once: their events are keyed, their flushes applied under a fresh
//!   nonce); a message that does not parse stays parked and is named. Call it again while `left`
//!   is above 0.

use serde_json::{Value, json};
use worker::{Env, Request, Response};

use crate::storage::ingest::{self, DeadRow, IngestMessage, IngestPolicy};
use crate::store::utc_day;
use crate::workers::{self, DB_BINDING, GlueError, sql_with};

/// Parked messages one replay call applies.
pub const REPLAY_LIMIT: i64 = 50;

/// The ingest endpoints; `None` when `path` is not one of them.
pub async fn api(env: &Env, path: &str, req: &Request) -> Result<Option<Response>, GlueError> {
    let method = req.method();
    match path.trim_end_matches('/') {
        "/api/ingest/dead" if method == worker::Method::Get => {
            let db = env.d1(DB_BINDING)?;
            let rows: Vec<DeadRow> =
                workers::query(&db, &sql_with(ingest::SELECT_DEAD, vec![500i64.into()])).await?;
            let parked: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "message_id": r.message_id,
                        "attempts": r.attempts,
                        "error": r.error,
                        "parked_at": r.parked_at,
                        "bytes": r.body.len(),
                        "events": IngestMessage::parse(&r.body).map_or(0, |m| m.events.len()),
                    })
                })
                .collect();
            Ok(Some(Response::from_json(&json!({ "parked": parked }))?))
        }
        "/api/ingest/dead/replay" if method == worker::Method::Post => {
            let db = env.d1(DB_BINDING)?;
            let rows: Vec<DeadRow> = workers::query(
                &db,
                &sql_with(ingest::SELECT_DEAD, vec![REPLAY_LIMIT.into()]),
            )
            .await?;
            let now = workers::now_ms();
            let nonce = workers::random_uuid()?;
            let policy = IngestPolicy::from_var(
                workers::var(env, "SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR").as_deref(),
            )
            .map_err(GlueError::Config)?;
            let (stmts, unreadable) =
                ingest::replay_statements(&rows, &nonce, now, &utc_day(now), policy);
            if !stmts.is_empty() {
                workers::batch(&db, &stmts).await?;
            }
            let left: Vec<Value> = workers::query(
                &db,
                &sql_with("SELECT count(*) AS n FROM ops_ingest_dead", vec![]),
            )
            .await?;
            Ok(Some(Response::from_json(&json!({
                "replayed": rows.len() - unreadable.len(),
                "unreadable": unreadable,
                "left": left.first().and_then(|r| r["n"].as_i64()).unwrap_or(0),
            }))?))
        }
        "/api/ingest/dead" | "/api/ingest/dead/replay" => {
            Ok(Some(super::json_error(405, "method not allowed")?))
        }
        _ => Ok(None),
    }
}
