//! The consumers of the ingest Queue in the agent-runner (they were the tail Worker's `queue()`
//! export until issue 9: the tail keeps only capture and sending, and its wasm shrinks by the
//! consumer). The logic is [`crate::storage::ingest`]; this is the glue:
//! - [`consume`] (`selfheal-ingest`): **one D1 batch per queue batch** (every message's events
//!   coalesced); when that fails, each message alone, so a poisonous message holds up nobody; a
//!   message that still fails is retried with exponential backoff
//!   ([`ConsumerSettings::backoff_secs`]: `SELFHEAL_INGEST_RETRY_BASE_SECS`,
//!   `SELFHEAL_INGEST_RETRY_MAX_SECS`) and, after the consumer's `max_retries`, dead-lettered.
//! - [`park`] (`selfheal-ingest-dlq`): parks dead-lettered messages in `ops_ingest_dead` for
//!   `selfheal ingest replay` (the API side is [`super::ingest`]).
//!
//! Messages are read through the runtime's `Message` objects (`body`, `attempts`, `ack()`,
//! `retry({delaySeconds})`) rather than workers-rs's `MessageExt`, which has no `attempts` in
//! 0.8.7: the backoff needs it.

use wasm_bindgen::{JsCast, JsValue};
use worker::{Env, console_error};

use crate::storage::ingest::{self, ConsumerSettings, IngestMessage, WriteCounts};
use crate::store::{Statement, utc_day};
use crate::workers::{self, DB_BINDING, GlueError};

/// One message of a queue batch, read through the runtime's `Message` object.
pub(super) struct QueueMessage {
    handle: JsValue,
    /// The body when it is text (the tail Worker sends `contentType: "text"`).
    body: Option<String>,
    /// Deliveries so far, this one included (≥ 1).
    attempts: u32,
}

impl QueueMessage {
    fn call(&self, method: &str, args: &js_sys::Array) {
        let f = js_sys::Reflect::get(&self.handle, &JsValue::from_str(method))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        if let Some(f) = f
            && let Err(e) = f.apply(&self.handle, args)
        {
            console_error!("selfheal ingest: message.{method}() failed: {e:?}");
        }
    }

    fn ack(&self) {
        self.call("ack", &js_sys::Array::new());
    }

    /// `message.retry({delaySeconds})`.
    pub(super) fn retry_in(&self, delay_secs: u32) {
        let opts = js_sys::Object::new();
        let _ = js_sys::Reflect::set(
            &opts,
            &JsValue::from_str("delaySeconds"),
            &JsValue::from_f64(f64::from(delay_secs)),
        );
        self.call("retry", &js_sys::Array::of1(&opts));
    }

    /// Deliveries so far, this one included (≥ 1).
    pub(super) fn attempts(&self) -> u32 {
        self.attempts
    }
}

fn get(v: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(v, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// The messages of a queue batch (the runtime's `MessageBatch` object); none when it has no
/// `messages` array.
pub(super) fn messages(batch: &JsValue) -> Vec<QueueMessage> {
    let list = get(batch, "messages");
    if !js_sys::Array::is_array(&list) {
        return Vec::new();
    }
    js_sys::Array::from(&list)
        .iter()
        .map(|m| QueueMessage {
            body: get(&m, "body").as_string(),
            attempts: get(&m, "attempts")
                .as_f64()
                .filter(|a| a.is_finite())
                .map_or(1, |a| a.clamp(1.0, f64::from(u32::MAX)) as u32),
            handle: m,
        })
        .collect()
}

/// The consumer's settings from the agent-runner's vars.
///
/// Errors: [`GlueError::Config`] naming a var that is not a whole number.
pub(super) fn settings(env: &Env) -> Result<ConsumerSettings, GlueError> {
    ConsumerSettings::from_vars(|name| workers::var(env, name)).map_err(GlueError::Config)
}

/// Writes a queue batch of `selfheal-ingest`: all good messages in one D1 batch, else each alone.
/// A malformed message is counted and acknowledged (retrying cannot help).
///
/// Errors: a bad config or no D1 binding (the caller rejects: the runtime retries the batch).
/// Every message is otherwise acknowledged or retried on its own.
pub(super) async fn consume(env: &Env, messages: &[QueueMessage]) -> Result<(), GlueError> {
    let settings = settings(env)?;
    let db = env.d1(DB_BINDING)?;
    let now = workers::now_ms();
    let day = utc_day(now);
    let mut good: Vec<(&QueueMessage, IngestMessage)> = Vec::with_capacity(messages.len());
    let mut malformed = 0u64;
    for m in messages {
        match m.body.as_deref().map(IngestMessage::parse) {
            Some(Ok(parsed)) => good.push((m, parsed)),
            Some(Err(e)) => {
                malformed += 1;
                console_error!("selfheal ingest: skipped a message: {e}");
                m.ack();
            }
            None => {
                malformed += 1;
                console_error!("selfheal ingest: skipped a message whose body is not text");
                m.ack();
            }
        }
    }
    let nonce = || workers::random_uuid().unwrap_or_else(|_| format!("n{now}"));
    let all: Vec<IngestMessage> = good.iter().map(|(_, p)| p.clone()).collect();
    let counts = WriteCounts {
        malformed_messages: malformed,
        ..Default::default()
    };
    let stmts = if all.is_empty() {
        if malformed == 0 {
            return Ok(());
        }
        vec![ingest::count_write(&day, 1, counts)]
    } else {
        ingest::apply_statements(&all, &nonce(), now, &day, settings.policy, counts)
    };
    let first_error = match workers::batch(&db, &stmts).await {
        Ok(_) => {
            for (m, _) in &good {
                m.ack();
            }
            return Ok(());
        }
        Err(e) => e,
    };
    if let [(only, _)] = good.as_slice() {
        retry(&settings, only, &first_error.to_string());
        count_retried(&db, &day, 1).await;
        return Ok(());
    }
    // Each message alone, so one that always fails (a poisonous message) holds up nobody. Two
    // failures in a row with no success means D1 itself is failing: the rest wait for a retry.
    let mut failures_in_a_row = 0;
    let mut retried = 0;
    for (m, parsed) in &good {
        if failures_in_a_row >= 2 {
            retry(
                &settings,
                m,
                "not tried: D1 failed for the messages before it",
            );
            retried += 1;
            continue;
        }
        let stmts: Vec<Statement> = ingest::apply_statements(
            std::slice::from_ref(parsed),
            &nonce(),
            now,
            &day,
            settings.policy,
            WriteCounts::default(),
        );
        match workers::batch(&db, &stmts).await {
            Ok(_) => {
                failures_in_a_row = 0;
                m.ack();
            }
            Err(e) => {
                failures_in_a_row += 1;
                retried += 1;
                retry(&settings, m, &e.to_string());
            }
        }
    }
    count_retried(&db, &day, retried).await;
    Ok(())
}

/// Best-effort count of retried messages (D1 may be the reason they were retried).
async fn count_retried(db: &worker::D1Database, day: &str, n: u64) {
    if n > 0
        && workers::batch(db, &[ingest::count_retried(day, n)])
            .await
            .is_err()
    {
        console_error!("selfheal ingest: {n} retried message(s) not counted (D1 failed)");
    }
}

fn retry(settings: &ConsumerSettings, m: &QueueMessage, why: &str) {
    let delay = settings.backoff_secs(m.attempts);
    console_error!(
        "selfheal ingest: message retried in {delay} s (attempt {}): {why}",
        m.attempts
    );
    m.retry_in(delay);
}

/// Parks a queue batch of `selfheal-ingest-dlq` in `ops_ingest_dead` (one D1 batch); every
/// message is retried with backoff when D1 fails.
///
/// Errors: a bad config or no D1 binding (the caller rejects: the runtime retries the batch).
pub(super) async fn park(env: &Env, messages: &[QueueMessage]) -> Result<(), GlueError> {
    let settings = settings(env)?;
    let now = workers::now_ms();
    let mut stmts: Vec<Statement> = messages
        .iter()
        .map(|m| {
            ingest::park_statement(
                m.body.as_deref().unwrap_or("(body not text)"),
                m.attempts,
                "dead-lettered after the ingest consumer's max_retries",
                now,
            )
        })
        .collect();
    if stmts.is_empty() {
        return Ok(());
    }
    stmts.push(ingest::count_dead(&utc_day(now), messages.len() as u64));
    let db = env.d1(DB_BINDING)?;
    match workers::batch(&db, &stmts).await {
        Ok(_) => messages.iter().for_each(QueueMessage::ack),
        Err(e) => {
            for m in messages {
                retry(&settings, m, &e.to_string());
            }
        }
    }
    Ok(())
}
