//! The tail Worker: receives the `TraceItem`s of every producer that names it in
//! `tail_consumers`, runs the core pipeline, counts every item's traffic in the isolate
//! ([`selfheal::signal::rates`]) and writes D1 with **one `batch()` per invocation that writes**:
//! an invocation with error events writes them together with the pending traffic counts; one with
//! only healthy items writes nothing until the counts are `SELFHEAL_TRAFFIC_FLUSH_SECS` old.
//!
//! workers-rs has no `#[event(tail)]`, so the handler is a plain wasm-bindgen export named `tail`
//! (worker-build wires it as the entrypoint's `tail`) and `env` comes from `cloudflare:workers`.
//! There is no `ctx`. A malformed item is counted (`ops_ingest_stats.malformed`) and skipped; the
//! rest of the batch is still stored.

use std::cell::RefCell;
use std::sync::OnceLock;

use selfheal::config::PipelineConfig;
use selfheal::event::process_batch_observed;
use selfheal::signal::rates::{FlushPolicy, TrafficAggregator, batch_hash};
use selfheal::store::{SamplePolicy, flush_statements, ingest_statements, utc_day};
use selfheal::workers::{self, DB_BINDING, GlueError};
use wasm_bindgen::prelude::*;
use worker::{Env, console_error, console_log};

#[wasm_bindgen(module = "cloudflare:workers")]
extern "C" {
    #[wasm_bindgen(thread_local_v2, js_name = env)]
    static CF_ENV: JsValue;
}

/// Config is built once per isolate (regexes compile once).
static CONFIG: OnceLock<Result<(PipelineConfig, FlushPolicy), String>> = OnceLock::new();

thread_local! {
    /// Traffic counted by this isolate since its last write (Wasm here is single-threaded).
    static TRAFFIC: RefCell<TrafficAggregator> = RefCell::new(TrafficAggregator::default());
}

fn config(env: &Env) -> Result<&'static (PipelineConfig, FlushPolicy), GlueError> {
    CONFIG
        .get_or_init(|| {
            let cfg = PipelineConfig::from_vars(
                workers::var(env, "SELFHEAL_SCRIPT_NAME").as_deref(),
                workers::var(env, "SELFHEAL_IGNORE_EXCEPTIONS").as_deref(),
                workers::var(env, "SELFHEAL_IGNORE_MESSAGES").as_deref(),
            )
            .map_err(|e| e.to_string())?;
            let mut flush = FlushPolicy::default();
            if let Some(v) = workers::var(env, "SELFHEAL_TRAFFIC_FLUSH_SECS") {
                let secs: u32 = v.trim().parse().map_err(|_| {
                    format!("SELFHEAL_TRAFFIC_FLUSH_SECS={v:?}: expected whole seconds ≥ 0")
                })?;
                flush.max_age_ms = i64::from(secs) * 1000;
            }
            Ok((cfg, flush))
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
    let (cfg, flush_policy) = config(env)?;
    let now = workers::now_ms();
    let json: String = js_sys::JSON::stringify(events)
        .map_err(|_| GlueError::Decode("JSON.stringify(events) failed".into()))?
        .into();
    let (events, counts, observed) = match process_batch_observed(&json, cfg, now) {
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
                Vec::new(),
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
    // Count traffic once per delivery this isolate has seen; events stay exact by their keys. A
    // redelivery still counts as a delivery (ops_ingest_stats counts every one, by design).
    let flushes = TRAFFIC.with(|t| {
        let mut t = t.borrow_mut();
        if t.first_delivery(batch_hash(&json)) {
            t.add(&observed, &counts, now);
        } else {
            t.add(&[], &counts, now);
        }
        if t.due(now, !events.is_empty(), *flush_policy) {
            Some(t.take(&workers::random_uuid().unwrap_or_else(|_| format!("t{now}"))))
        } else {
            None
        }
    });
    let mut stmts = ingest_statements(&events, now, SamplePolicy::default());
    if let Some(f) = &flushes {
        stmts.extend(flush_statements(f, &utc_day(now), now));
    }
    if stmts.is_empty() {
        return Ok(());
    }
    let db = env.d1(DB_BINDING)?;
    if let Err(e) = workers::batch(&db, &stmts).await {
        // Keep the counts for the next write; the events of this invocation are lost with it
        // (the runtime does not deliver tail events twice).
        if let Some(f) = flushes {
            TRAFFIC.with(|t| t.borrow_mut().failed(f));
        }
        return Err(e);
    }
    console_log!(
        "selfheal tail: items={} events={} noise={} malformed={} flushed={}",
        counts.items,
        counts.events,
        counts.noise,
        counts.malformed,
        flushes.map_or(0, |f| f.len())
    );
    Ok(())
}
