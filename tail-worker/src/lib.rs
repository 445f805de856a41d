//! The tail Worker: receives the `TraceItem`s of every producer that names it in
//! `tail_consumers`, runs the core pipeline (scrubbing first: nothing raw leaves this isolate),
//! counts every item's traffic in the isolate ([`selfheal::signal::rates`]) and hands what it made
//! to the ingest Queue ([`selfheal::storage::ingest`]):
//! - `tail(events)`: an invocation with error events sends them, with the pending traffic
//!   counts, as messages on `INGEST` (one `sendBatch`); one with only healthy items sends nothing
//!   until the counts are `SELFHEAL_TRAFFIC_FLUSH_SECS` old. Without an `INGEST` binding, with
//!   `SELFHEAL_INGEST_MODE=direct`, or when the send fails, the same data is written straight to
//!   D1 in one `batch()` (the write path before the Queue), under this Worker's flood cap
//!   (`SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR`).
//! - The consumer of `selfheal-ingest` (one D1 batch per queue batch, retries with backoff,
//!   dead-letter parking) is the agent-runner's (`src/runner/ingest_queue.rs`): this Worker only
//!   captures and sends, which keeps its wasm small (issue 9).
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
use selfheal::storage::ingest::{self, IngestPolicy};
use selfheal::store::{flush_statements, ingest_statements, utc_day};
use selfheal::workers::{self, DB_BINDING, GlueError};
use wasm_bindgen::prelude::*;
use worker::{Env, console_error, console_log};

#[wasm_bindgen(module = "cloudflare:workers")]
extern "C" {
    #[wasm_bindgen(thread_local_v2, js_name = env)]
    static CF_ENV: JsValue;
}

/// Name of the ingest Queue's producer binding.
const INGEST_BINDING: &str = "INGEST";

/// What the tail handler is configured with.
struct Settings {
    pipeline: PipelineConfig,
    flush: FlushPolicy,
    /// Samples and flood cap of the direct path (`SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR`); the
    /// Queue's consumer applies the agent-runner's own.
    ingest: IngestPolicy,
    /// `SELFHEAL_INGEST_MODE=direct`: write D1 from tail() even with an `INGEST` binding.
    direct: bool,
}

/// Config is built once per isolate (regexes compile once).
static CONFIG: OnceLock<Result<Settings, String>> = OnceLock::new();

thread_local! {
    /// Traffic counted by this isolate since its last write (Wasm here is single-threaded).
    static TRAFFIC: RefCell<TrafficAggregator> = RefCell::new(TrafficAggregator::default());
}

fn config(env: &Env) -> Result<&'static Settings, GlueError> {
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
            let ingest = IngestPolicy::from_var(
                workers::var(env, "SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR").as_deref(),
            )?;
            Ok(Settings {
                pipeline: cfg,
                flush,
                ingest,
                direct: match workers::var(env, "SELFHEAL_INGEST_MODE")
                    .as_deref()
                    .map(str::trim)
                {
                    None | Some("" | "queue") => false,
                    Some("direct") => true,
                    Some(other) => {
                        return Err(format!(
                            "SELFHEAL_INGEST_MODE={other:?}: expected \"queue\" or \"direct\""
                        ));
                    }
                },
            })
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
    let settings = config(env)?;
    let (cfg, flush_policy) = (&settings.pipeline, &settings.flush);
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
    if events.is_empty() && flushes.is_none() {
        return Ok(());
    }
    let flushes = flushes.unwrap_or_default();
    let queue = if settings.direct {
        None
    } else {
        js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(INGEST_BINDING))
            .ok()
            .filter(|q| q.is_object())
    };
    let sent = match queue {
        Some(queue) => match send(&queue, &events, &flushes, now).await {
            Ok(n) => Some(n),
            Err(e) => {
                console_error!(
                    "selfheal tail: ingest queue send failed ({e}); writing D1 directly"
                );
                None
            }
        },
        None => None,
    };
    let direct = sent.is_none();
    if direct {
        // This Worker's flood cap (SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR): the same rule the Queue's
        // consumer applies with the agent-runner's var.
        let mut stmts = ingest_statements(&events, now, settings.ingest);
        stmts.extend(flush_statements(&flushes, &utc_day(now), now));
        let db = env.d1(DB_BINDING)?;
        if let Err(e) = workers::batch(&db, &stmts).await {
            // Keep the counts for the next write; the events of this invocation are lost with it
            // (the runtime does not deliver tail events twice, and the queue refused them).
            TRAFFIC.with(|t| t.borrow_mut().failed(flushes));
            return Err(e);
        }
    }
    console_log!(
        "selfheal tail: items={} events={} noise={} malformed={} flushed={} {}",
        counts.items,
        counts.events,
        counts.noise,
        counts.malformed,
        flushes.len(),
        sent.map_or_else(|| "written=d1".to_string(), |n| format!("messages={n}"))
    );
    Ok(())
}

/// Sends one delivery's events and flushes on the ingest Queue (`queue` is the producer
/// binding's JS object); the number of messages. Called through the binding's own
/// `sendBatch([{body, contentType: "text"}])` rather than workers-rs's typed wrapper, which would
/// link a serde-to-JS serializer into the Worker for two fixed fields.
async fn send(
    queue: &JsValue,
    events: &[selfheal::event::Event],
    flushes: &[selfheal::signal::rates::Flush],
    now: i64,
) -> Result<usize, GlueError> {
    let mut fallback = 0u64;
    let bodies = ingest::messages(events, flushes, now, || {
        workers::random_uuid().unwrap_or_else(|_| {
            fallback += 1;
            format!("m{now}-{fallback}")
        })
    });
    let n = bodies.len();
    let send_batch = js_sys::Reflect::get(queue, &JsValue::from_str("sendBatch"))
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or_else(|| GlueError::Decode(format!("{INGEST_BINDING} has no sendBatch")))?;
    let js_err = |e: JsValue| GlueError::Decode(format!("{INGEST_BINDING}.sendBatch: {e:?}"));
    for chunk in ingest::send_batches(bodies) {
        let batch = js_sys::Array::new();
        for b in chunk {
            let m = js_sys::Object::new();
            js_sys::Reflect::set(&m, &JsValue::from_str("body"), &JsValue::from_str(&b))
                .map_err(js_err)?;
            js_sys::Reflect::set(
                &m,
                &JsValue::from_str("contentType"),
                &JsValue::from_str("text"),
            )
            .map_err(js_err)?;
            batch.push(&m);
        }
        let promise = send_batch.call1(queue, &batch).map_err(js_err)?;
        wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&promise))
            .await
            .map_err(js_err)?;
    }
    Ok(n)
}
