//! The tail Worker: receives the `TraceItem`s of every producer that names it in
//! `tail_consumers`, runs the core pipeline and writes D1 with **one `batch()` per invocation**.
//!
//! workers-rs has no `#[event(tail)]`, so the handler is a plain wasm-bindgen export named `tail`
//! (worker-build wires it as the entrypoint's `tail`) and `env` comes from `cloudflare:workers`.
//! There is no `ctx`. A malformed item is counted (`ops_ingest_stats.malformed`) and skipped; the
//! rest of the batch is still stored.

use std::sync::OnceLock;

use selfheal::config::PipelineConfig;
use selfheal::event::process_batch;
use selfheal::store::{SamplePolicy, ingest_statements, utc_day};
use selfheal::workers::{self, DB_BINDING, GlueError};
use wasm_bindgen::prelude::*;
use worker::{Env, console_error, console_log};

#[wasm_bindgen(module = "cloudflare:workers")]
extern "C" {
    #[wasm_bindgen(thread_local_v2, js_name = env)]
    static CF_ENV: JsValue;
}

/// Config is built once per isolate (regexes compile once).
static CONFIG: OnceLock<Result<PipelineConfig, String>> = OnceLock::new();

fn config(env: &Env) -> Result<&'static PipelineConfig, GlueError> {
    CONFIG
        .get_or_init(|| {
            PipelineConfig::from_vars(
                workers::var(env, "SELFHEAL_SCRIPT_NAME").as_deref(),
                workers::var(env, "SELFHEAL_IGNORE_EXCEPTIONS").as_deref(),
                workers::var(env, "SELFHEAL_IGNORE_MESSAGES").as_deref(),
            )
            .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| GlueError::Config(e.clone()))
}

/// The `tail(events)` handler. `events` is the array of `TraceItem`s of one delivery.
///
/// Errors (rejected promise, logged by the runtime): a bad config, D1 unreachable. The batch's
/// items are never the cause: a bad one is counted and skipped.
#[wasm_bindgen]
pub async fn tail(events: js_sys::Array) -> Result<(), JsValue> {
    console_error_panic_hook::set_once();
    let env: Env = CF_ENV.with(|e| e.clone().unchecked_into());
    handle(&env, &events).await.map_err(|e| {
        console_error!("selfheal tail: {e}");
        JsValue::from_str(&e.to_string())
    })
}

async fn handle(env: &Env, events: &js_sys::Array) -> Result<(), GlueError> {
    let cfg = config(env)?;
    let now = workers::now_ms();
    let json: String = js_sys::JSON::stringify(events)
        .map_err(|_| GlueError::Decode("JSON.stringify(events) failed".into()))?
        .into();
    let (events, counts) = match process_batch(&json, cfg, now) {
        Ok(r) => r,
        Err(e) => {
            // Not an array at all: nothing usable, but count it rather than fail the invocation.
            console_error!("selfheal tail: {e}");
            (
                Vec::new(),
                selfheal::event::BatchCounts {
                    items: 1,
                    malformed: 1,
                    ..Default::default()
                },
            )
        }
    };
    if counts.malformed > 0 {
        console_error!(
            "selfheal tail: skipped {} malformed TraceItem(s) of {}",
            counts.malformed,
            counts.items
        );
    }
    let stmts = ingest_statements(
        &events,
        &counts,
        &utc_day(now),
        now,
        SamplePolicy::default(),
    );
    let db = env.d1(DB_BINDING)?;
    workers::batch(&db, &stmts).await?;
    console_log!(
        "selfheal tail: items={} events={} noise={} malformed={}",
        counts.items,
        counts.events,
        counts.noise,
        counts.malformed
    );
    Ok(())
}
