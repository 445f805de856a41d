//! From one [`TraceItem`] to a sanitized [`Event`] (or a noise verdict): the tail pipeline.
//!
//! Steps, in order: noise filter → pick the primary error (Rust panic, exception, `console.error`,
//! bad outcome, 5xx) → scrub every text field → normalize the message → route pattern and top
//! in-app frame → [`Components`] and fingerprint → deterministic event key.
//! Nothing here reads a clock: `now_ms` is only a fallback when the item has no timestamp.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt::Write as _;

use crate::config::PipelineConfig;
use crate::fingerprint::{Components, FINGERPRINT_VERSION, hex, status_class};
use crate::normalize::normalize_message;
use crate::route::route_pattern;
use crate::scrub::{self, FieldRemark, MAX_TEXT_BYTES, Scrubbed, TRUNCATION_MARKER};
use crate::stack::{Frame, panic_location, top_in_app_frame_of};
use crate::trace::{TraceException, TraceItem, TraceLog};

/// Bytes of scrubbed message kept per event.
pub const MAX_MESSAGE_BYTES: usize = 2048;
/// Stack lines kept per event (the excerpt; the top frame is computed from the whole stack).
pub const MAX_STACK_LINES: usize = 20;
/// Error/warn log lines kept per event, each cut to [`MAX_MESSAGE_BYTES`].
pub const MAX_LOG_LINES: usize = 5;
/// Remarks kept per event. Past it, the first ones are kept with the `@truncate` remarks of the
/// stored fields, and one last remark `{field: "remarks", rule: "@truncate", start: kept, end:
/// total}` says how many there were (its `start`/`end` count remarks, not bytes).
pub const MAX_REMARKS: usize = 256;

/// The message of the runtime's follow-up exception when a request hung (e.g. after a Rust panic).
const HUNG_PREFIX: &str = "The Workers runtime canceled this request because it detected that your Worker's code had hung";

/// Why an item is not an error worth an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseReason {
    /// `ok` outcome, status < 500, no exception and no `console.error`.
    Healthy,
    /// A 4xx response without an uncaught exception: an expected client error.
    ClientError,
    /// The client went away (`canceled`, `responseStreamDisconnected`).
    ClientDisconnected,
    /// Matched `SELFHEAL_IGNORE_EXCEPTIONS` or `SELFHEAL_IGNORE_MESSAGES`.
    Ignored,
}

/// A sanitized error event, ready to store. Every string in it has been scrubbed.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Deterministic id of the occurrence (hex, 32 chars): a redelivered item gets the same key.
    pub event_key: String,
    /// Incident id (hex, 32 chars), see [`Components::fingerprint`].
    pub fingerprint: String,
    /// What the fingerprint was computed from.
    pub components: Components,
    /// `fetch`, `scheduled`, `queue`, `email`, `rpc` or `other`.
    pub event_kind: &'static str,
    /// HTTP method of a fetch event.
    pub method: Option<String>,
    /// Scrubbed request URL (userinfo and query values replaced).
    pub url: Option<String>,
    /// Response status, when a response was sent.
    pub status: Option<u16>,
    /// The runtime's outcome (`ok`, `exception`, …; `unknown` when absent).
    pub outcome: String,
    /// Scrubbed message, not normalized, at most [`MAX_MESSAGE_BYTES`]; a longer one is cut and
    /// ends with [`TRUNCATION_MARKER`], covered by an `@truncate` remark on `error.message`.
    pub message: String,
    /// Scrubbed stack excerpt (top [`MAX_STACK_LINES`] lines), possibly empty; when lines were
    /// dropped, one more line [`TRUNCATION_MARKER`], covered by an `@truncate` remark on
    /// `error.stack`.
    pub stack: String,
    /// Scrubbed error/warn log lines (at most [`MAX_LOG_LINES`], each at most
    /// [`MAX_MESSAGE_BYTES`]; a longer one is cut and ends with [`TRUNCATION_MARKER`], covered by
    /// an `@truncate` remark on `logs[<index in the item>]`).
    pub logs: Vec<String>,
    /// Scrubbed request summary: method, url, allow-listed headers, colo/country.
    pub request: Value,
    /// `scriptVersion.tag` or `.id` (production only).
    pub release: Option<String>,
    /// Named entrypoint (production only).
    pub entrypoint: Option<String>,
    /// Event time, ms since the epoch.
    pub timestamp_ms: i64,
    /// Which scrubbing rules fired where (never the values), at most [`MAX_REMARKS`]. The ranges
    /// of remarks on `error.message`, `error.stack` and `request.url` lie inside the stored field:
    /// remarks on text that was cut off are dropped with it.
    pub remarks: Vec<FieldRemark>,
}

/// What the pipeline decided for one item.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Dropped, with why.
    Noise(NoiseReason),
    /// Kept.
    Event(Box<Event>),
}

/// The error an event is about, before scrubbing.
///
/// The message and the stack borrow from the item where they can (an exception's fields, a
/// panic log): each is scrubbed into a new string right away, so a copy would be thrown away.
struct Primary<'a> {
    exception_type: String,
    message: Cow<'a, str>,
    stack: Cow<'a, str>,
    /// A frame known without a stack (the `panicked at file:line:col` of a Rust panic).
    frame_hint: Option<Frame>,
}

/// Runs the pipeline on one item. Never fails: anything unusable degrades to an empty field.
///
/// `now_ms` (ms since the epoch) stands in for a missing `eventTimestamp`.
pub fn process_item(item: &TraceItem, cfg: &PipelineConfig, now_ms: i64) -> Verdict {
    if let Some(reason) = pre_noise(item) {
        return Verdict::Noise(reason);
    }
    let Some(primary) = primary_error(item) else {
        return Verdict::Noise(NoiseReason::Healthy);
    };
    if cfg.ignore_exception_names.contains(&primary.exception_type) {
        return Verdict::Noise(NoiseReason::Ignored);
    }

    let mut remarks = Vec::new();
    let message = scrub_field(&primary.message, "error.message", &mut remarks);
    if cfg
        .ignore_message_patterns
        .iter()
        .any(|re| re.is_match(message.as_bytes()))
    {
        return Verdict::Noise(NoiseReason::Ignored);
    }
    let message = bound_field(message, MAX_MESSAGE_BYTES, "error.message", &mut remarks);
    let stack_full = scrub_field(&primary.stack, "error.stack", &mut remarks);

    let top_frame = match primary.frame_hint.as_ref().filter(|f| f.in_app()) {
        Some(hint) => hint.key(),
        // the stack is parsed down to its first in-app frame, not further
        None => top_in_app_frame_of(&stack_full)
            .map(|f| f.key())
            .unwrap_or_default(),
    };

    let request = item.request();
    let url = request
        .and_then(|r| r.url.as_deref())
        .map(|u| scrub_with(scrub::scrub_url(u), "request.url", &mut remarks));
    let method = request.and_then(|r| r.method.clone());
    let status = item.status();

    let components = Components {
        version: FINGERPRINT_VERSION,
        script: script_name(item, cfg),
        route: item_route(item),
        exception_type: primary.exception_type,
        message: normalize_message(&message),
        top_frame,
        status_class: status_class(status),
    };

    let logs = item
        .logs
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l.level.as_deref(), Some("error" | "warn")))
        .take(MAX_LOG_LINES)
        .map(|(i, l)| {
            let text = log_text(l, i, &mut remarks);
            let line = format!("[{}] {}", l.level.as_deref().unwrap_or("log"), text);
            bound_field(line, MAX_MESSAGE_BYTES, &format!("logs[{i}]"), &mut remarks)
        })
        .collect();

    let request_summary = match request {
        Some(r) => {
            let headers = scrub::scrub_headers(&r.headers, "request.headers", &mut remarks);
            let cf =
                r.cf.as_ref()
                    .map(|cf| {
                        scrub::cf_location(|k| match k {
                            "colo" => cf.colo.as_deref(),
                            "country" => cf.country.as_deref(),
                            _ => cf.continent.as_deref(),
                        })
                    })
                    .unwrap_or_default();
            // built by moving the scrubbed parts in (`json!` would serialize a deep copy)
            let mut summary = serde_json::Map::new();
            let text = |t: &Option<String>| t.clone().map_or(Value::Null, Value::String);
            summary.insert("method".into(), text(&method));
            summary.insert("url".into(), text(&url));
            summary.insert("headers".into(), Value::Object(headers));
            summary.insert("cf".into(), Value::Object(cf));
            Value::Object(summary)
        }
        None => Value::Null,
    };

    let timestamp_ms = item_timestamp(item, now_ms);

    let stack = stack_excerpt(&stack_full, &mut remarks);
    cap_remarks(&mut remarks);
    let fingerprint = components.fingerprint();
    Verdict::Event(Box::new(Event {
        event_key: event_key(item),
        fingerprint,
        components,
        event_kind: item.event_kind(),
        method,
        url,
        status,
        outcome: item
            .outcome
            .clone()
            .unwrap_or_else(|| "unknown".to_string()),
        message,
        stack,
        logs,
        request: request_summary,
        release: item.release().map(String::from),
        entrypoint: item.entrypoint.clone(),
        timestamp_ms,
        remarks,
    }))
}

/// Noise decided before looking for the error: disconnects, 4xx, healthy requests.
fn pre_noise(item: &TraceItem) -> Option<NoiseReason> {
    let outcome = item.outcome.as_deref().unwrap_or("ok");
    if matches!(outcome, "canceled" | "responseStreamDisconnected") {
        return Some(NoiseReason::ClientDisconnected);
    }
    let status = item.status();
    if item.exceptions.is_empty() && status.is_some_and(|s| (400..500).contains(&s)) {
        return Some(NoiseReason::ClientError);
    }
    let error_logs = item
        .logs
        .iter()
        .any(|l| l.level.as_deref() == Some("error"));
    if outcome == "ok"
        && item.exceptions.is_empty()
        && !error_logs
        && status.is_none_or(|s| s < 500)
    {
        return Some(NoiseReason::Healthy);
    }
    None
}

/// Picks what the event is about, most specific first: a Rust panic message, an uncaught
/// exception (skipping the runtime's "hung" follow-up when there is another), a `console.error`,
/// a failed outcome, a 5xx response.
fn primary_error(item: &TraceItem) -> Option<Primary<'_>> {
    if let Some(p) = item.logs.iter().find_map(rust_panic) {
        return Some(p);
    }
    let exception = item
        .exceptions
        .iter()
        .find(|e| !e.message.as_deref().unwrap_or("").starts_with(HUNG_PREFIX))
        .or_else(|| item.exceptions.first());
    if let Some(e) = exception {
        return Some(from_exception(e));
    }
    if let Some(log) = item
        .logs
        .iter()
        .find(|l| l.level.as_deref() == Some("error"))
    {
        let text = log_text_raw(log);
        let (message, stack) = split_stack(&text);
        let (exception_type, message) =
            split_error_prefix(message).unwrap_or(("ConsoleError", message));
        return Some(Primary {
            exception_type: exception_type.to_string(),
            message: Cow::Owned(message.to_string()),
            stack: Cow::Owned(stack.to_string()),
            frame_hint: None,
        });
    }
    let outcome = item.outcome.as_deref().unwrap_or("ok");
    if outcome != "ok" {
        return Some(Primary {
            exception_type: outcome.to_string(),
            message: Cow::Owned(format!("invocation ended with outcome {outcome}")),
            stack: Cow::Borrowed(""),
            frame_hint: None,
        });
    }
    let status = item.status().filter(|s| *s >= 500)?;
    Some(Primary {
        exception_type: "HttpStatus".to_string(),
        message: Cow::Owned(format!("HTTP {status} response")),
        stack: Cow::Borrowed(""),
        frame_hint: None,
    })
}

fn from_exception(e: &TraceException) -> Primary<'_> {
    let raw = e.message.as_deref().unwrap_or("");
    // Wasm traps put their stack into the message (`RuntimeError: unreachable\n    at …`).
    let (message, inline_stack) = split_stack(raw);
    let stack = e
        .stack
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(inline_stack);
    Primary {
        exception_type: e
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "Error".to_string()),
        message: Cow::Borrowed(message),
        stack: Cow::Borrowed(stack),
        frame_hint: None,
    }
}

/// A workers-rs panic log: `panicked at src/lib.rs:102:13:\n<message>\n\nStack:\n…`. The location
/// (read by [`panic_location`]) is the only in-app frame: the wasm stack holds std and glue frames.
fn rust_panic(log: &TraceLog) -> Option<Primary<'_>> {
    if log.level.as_deref() != Some("error") {
        return None;
    }
    let text = log.message.iter().find_map(Value::as_str)?;
    let rest = text.strip_prefix("panicked at ")?;
    let frame_hint = panic_location(text);
    let body = rest.split_once('\n').map_or("", |(_, b)| b);
    let (message, stack) = body.split_once("\n\nStack:").unwrap_or((body, ""));
    Some(Primary {
        exception_type: "RustPanic".to_string(),
        message: Cow::Borrowed(message.trim()),
        stack: Cow::Borrowed(stack.trim()),
        frame_hint,
    })
}

/// Splits `Error: message\n    at …` into the message part and the stack part.
fn split_stack(text: &str) -> (&str, &str) {
    match text.find("\n    at ").or_else(|| text.find("\nat ")) {
        Some(i) => (text[..i].trim_end(), text[i + 1..].trim_start_matches('\n')),
        None => (text, ""),
    }
}

/// `TypeError: x is undefined` → (`TypeError`, `x is undefined`) when the prefix is an error class name.
fn split_error_prefix(text: &str) -> Option<(&str, &str)> {
    let (name, rest) = text.split_once(": ")?;
    let is_class = !name.is_empty()
        && name.len() <= 64
        && name.ends_with("Error")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    is_class.then_some((name, rest))
}

/// The route component of an item: the route pattern of a fetch (`/users/:id`), `scheduled
/// <cron>`, `queue <name>`, or the handler kind.
pub fn item_route(item: &TraceItem) -> String {
    match (item.event_kind(), item.event.as_ref()) {
        ("fetch", _) => route_pattern(item.request().and_then(|r| r.url.as_deref()).unwrap_or("/")),
        ("scheduled", Some(e)) => format!("scheduled {}", e.cron.as_deref().unwrap_or("")),
        ("queue", Some(e)) => format!("queue {}", e.queue.as_deref().unwrap_or("")),
        (kind, _) => kind.to_string(),
    }
}

/// What the traffic counters need of one item, noise included: the denominator of every rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observation {
    /// Script name (the configured fallback when the runtime gives none).
    pub script: String,
    /// Route component, as in the fingerprint ([`item_route`]).
    pub route: String,
    /// Release (`scriptVersion` tag, else id); empty when unknown.
    pub release: String,
    /// Event time, ms since the epoch (`now_ms` when the item has none).
    pub timestamp_ms: i64,
    /// Whether the item became an [`Event`].
    pub error: bool,
}

/// Like [`process_batch`], and also one [`Observation`] per well-formed item (healthy and noise
/// ones included), for the traffic counters.
pub fn process_batch_observed(
    json: &str,
    cfg: &PipelineConfig,
    now_ms: i64,
) -> Result<(Vec<Event>, BatchCounts, Vec<Observation>), crate::trace::BatchError> {
    let mut observed = Vec::new();
    let (events, counts) = run_batch(json, cfg, now_ms, Some(&mut observed))?;
    Ok((events, counts, observed))
}

/// The batch loop of [`process_batch`] and [`process_batch_observed`]: observations only when
/// asked for (they cost a route pattern per healthy item).
fn run_batch(
    json: &str,
    cfg: &PipelineConfig,
    now_ms: i64,
    mut observed: Option<&mut Vec<Observation>>,
) -> Result<(Vec<Event>, BatchCounts), crate::trace::BatchError> {
    let parsed = crate::trace::parse_batch(json)?;
    let mut counts = BatchCounts {
        items: (parsed.items.len() + parsed.malformed.len()) as u64,
        malformed: parsed.malformed.len() as u64,
        ..BatchCounts::default()
    };
    let mut events = Vec::with_capacity(parsed.items.len());
    for (_, item) in &parsed.items {
        let verdict = process_item(item, cfg, now_ms);
        if let Some(out) = observed.as_deref_mut() {
            let (route, timestamp_ms) = match &verdict {
                Verdict::Event(e) => (e.components.route.clone(), e.timestamp_ms),
                Verdict::Noise(_) => (item_route(item), item_timestamp(item, now_ms)),
            };
            out.push(Observation {
                script: script_name(item, cfg),
                route,
                release: item.release().unwrap_or("").to_string(),
                timestamp_ms,
                error: matches!(verdict, Verdict::Event(_)),
            });
        }
        match verdict {
            Verdict::Event(e) => {
                counts.events += 1;
                events.push(*e);
            }
            Verdict::Noise(_) => counts.noise += 1,
        }
    }
    Ok((events, counts))
}

fn item_timestamp(item: &TraceItem, now_ms: i64) -> i64 {
    item.event_timestamp
        .filter(|t| t.is_finite() && *t >= 0.0)
        // Saturating float→int cast: timestamps beyond i64 are nonsense but must not panic.
        .map(|t| t as i64)
        .unwrap_or(now_ms)
}

/// The script's identity: the runtime's `scriptName`; when it gives none (always so under
/// `wrangler dev`), the request's host and port ([`crate::route::script_host`]), so two local
/// producers never meet under one name; the configured `SELFHEAL_SCRIPT_NAME` only as the last
/// resort (events without a request: scheduled, queue, …).
fn script_name(item: &TraceItem, cfg: &PipelineConfig) -> String {
    if let Some(name) = item.script_name.as_deref().filter(|s| !s.is_empty()) {
        return name.to_string();
    }
    item.request()
        .and_then(|r| r.url.as_deref())
        .and_then(crate::route::script_host)
        .unwrap_or_else(|| cfg.fallback_script_name.clone())
}

/// Arguments of a `console.*` call joined by spaces, without the `"[name]"` first argument that a
/// multi-config `wrangler dev` injects; `render` appends one argument (its index, its value).
///
/// Stops before the next argument once the text is longer than `limit` bytes: the caller cuts
/// it to that size anyway, and a call with 100,000 arguments would otherwise scrub (and remark)
/// every one of them.
fn join_log_args(
    log: &TraceLog,
    limit: usize,
    mut render: impl FnMut(&mut String, usize, &Value),
) -> String {
    let mut out = String::new();
    for (i, arg) in dev_prefix_stripped(&log.message).iter().enumerate() {
        if out.len() > limit {
            break;
        }
        if i > 0 {
            out.push(' ');
        }
        render(&mut out, i, arg);
    }
    out
}

/// The log's text as written (objects as JSON). Not scrubbed. Arguments past
/// [`MAX_TEXT_BYTES`] are left out (scrubbing would cut them off).
fn log_text_raw(log: &TraceLog) -> String {
    join_log_args(log, MAX_TEXT_BYTES, |out, _, arg| match arg {
        Value::String(s) => out.push_str(s),
        other => out.push_str(&other.to_string()),
    })
}

/// The text of `logs[index]` with every argument scrubbed first (structured ones with key
/// awareness); remarks on `logs[index].message[i]`. Arguments past [`MAX_MESSAGE_BYTES`] are
/// left out (the line is cut to that size).
fn log_text(log: &TraceLog, index: usize, remarks: &mut Vec<FieldRemark>) -> String {
    join_log_args(log, MAX_MESSAGE_BYTES, |out, i, arg| {
        // the field's name is built only for an argument with remarks (most have none)
        let arg_field = || format!("logs[{index}].message[{i}]");
        match arg {
            Value::String(s) => {
                let scrubbed = scrub::scrub_text(s);
                if scrubbed.remarks.is_empty() {
                    out.push_str(&scrubbed.text);
                } else {
                    out.push_str(&scrub_with(scrubbed, &arg_field(), remarks));
                }
            }
            other => {
                let mut v = other.clone();
                scrub::scrub_json(&mut v, &arg_field(), remarks);
                out.push_str(&v.to_string());
            }
        }
    })
}

fn dev_prefix_stripped(args: &[Value]) -> &[Value] {
    match args {
        [Value::String(first), rest @ ..]
            if !rest.is_empty()
                && first.starts_with('[')
                && first.ends_with(']')
                && !first.contains(' ') =>
        {
            rest
        }
        _ => args,
    }
}

fn scrub_field(text: &str, field: &str, remarks: &mut Vec<FieldRemark>) -> String {
    scrub_with(scrub::scrub_text(text), field, remarks)
}

fn scrub_with(s: Scrubbed, field: &str, remarks: &mut Vec<FieldRemark>) -> String {
    remarks.extend(s.remarks.into_iter().map(|r| FieldRemark {
        field: field.to_string(),
        rule: r.rule,
        start: r.start,
        end: r.end,
    }));
    s.text
}

/// Re-exported from [`crate::text`] (where it moved so that the stages below `event` need not
/// import it from here); kept so that `event::truncate` paths still compile.
pub use crate::text::truncate;

/// Cuts `text`, the stored value of `field`, to at most `max` bytes with a visible end: the
/// kept prefix, then [`TRUNCATION_MARKER`] covered by an `@truncate` remark. The cut never
/// splits a replacement of `field` (a half `[redacted:` placeholder would read as text), and
/// the remarks of `field` past the cut are dropped: they would point outside the stored text.
/// Text within `max` is returned unchanged.
fn bound_field(
    mut text: String,
    max: usize,
    field: &str,
    remarks: &mut Vec<FieldRemark>,
) -> String {
    if text.len() <= max {
        return text;
    }
    let mut cut = text.floor_char_boundary(max.saturating_sub(TRUNCATION_MARKER.len()));
    // Replacements of one field do not overlap, so one pass finds the one the cut falls in.
    if let Some(r) = remarks
        .iter()
        .find(|r| r.field == field && r.start < cut && cut < r.end)
    {
        cut = r.start;
    }
    remarks.retain(|r| r.field != field || r.end <= cut);
    text.truncate(cut);
    text.push_str(TRUNCATION_MARKER);
    remarks.push(FieldRemark {
        field: field.to_string(),
        rule: "@truncate".to_string(),
        start: cut,
        end: text.len(),
    });
    text
}

/// The top [`MAX_STACK_LINES`] lines of the scrubbed stack, as a prefix of it (so the remarks of
/// `error.stack` keep their offsets), without trailing line breaks. When lines are dropped, a last
/// line [`TRUNCATION_MARKER`] gets an `@truncate` remark and the remarks past the cut go.
fn stack_excerpt(full: &str, remarks: &mut Vec<FieldRemark>) -> String {
    let cut = full
        .match_indices('\n')
        .nth(MAX_STACK_LINES - 1)
        .map(|(i, _)| i)
        .filter(|&i| !full[i..].trim_end_matches(['\r', '\n']).is_empty());
    let Some(cut) = cut else {
        return full.trim_end_matches(['\r', '\n']).to_string();
    };
    let mut out = full[..cut].trim_end_matches(['\r', '\n']).to_string();
    remarks.retain(|r| r.field != "error.stack" || r.end <= out.len());
    out.push('\n');
    let start = out.len();
    out.push_str(TRUNCATION_MARKER);
    remarks.push(FieldRemark {
        field: "error.stack".to_string(),
        rule: "@truncate".to_string(),
        start,
        end: out.len(),
    });
    out
}

/// True for the `@truncate` remark of a field stored in the event (message, stack, url, headers,
/// a log line): those say that what is stored was cut, and survive [`cap_remarks`].
fn is_field_truncation(r: &FieldRemark) -> bool {
    let f = r.field.as_str();
    r.rule == "@truncate"
        && (matches!(
            f,
            "error.message" | "error.stack" | "request.url" | "request.headers"
        ) || f
            .strip_prefix("logs[")
            .and_then(|rest| rest.strip_suffix(']'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
}

/// Keeps at most [`MAX_REMARKS`] remarks (see there): a hostile item can carry tens of thousands
/// of secrets (say a logged object with 50,000 email keys), and the remarks are stored with the
/// event in one D1 value, whose size is limited.
fn cap_remarks(remarks: &mut Vec<FieldRemark>) {
    let total = remarks.len();
    if total <= MAX_REMARKS {
        return;
    }
    let pinned = remarks.iter().filter(|r| is_field_truncation(r)).count();
    let mut budget = (MAX_REMARKS - 1).saturating_sub(pinned);
    remarks.retain(|r| {
        if is_field_truncation(r) {
            return true;
        }
        let keep = budget > 0;
        budget = budget.saturating_sub(1);
        keep
    });
    let kept = remarks.len();
    remarks.push(FieldRemark {
        field: "remarks".to_string(),
        rule: "@truncate".to_string(),
        start: kept,
        end: total,
    });
}

/// Deterministic key of one occurrence: the same item delivered twice gets the same key, two
/// invocations differ in timestamp, request or errors. Hex of 16 bytes of sha256 over
/// length-prefixed fields (script, version, timestamp, outcome, request line and headers, cron,
/// queue, exceptions, log levels and timestamps).
pub fn event_key(item: &TraceItem) -> String {
    fn put(h: &mut Sha256, s: &str) {
        h.update(u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
        h.update(s.as_bytes());
    }
    // a number as `f64`'s `Display` text (empty when absent), written into one reused buffer
    let mut num = String::new();
    let mut put_num = |h: &mut Sha256, t: Option<f64>| {
        num.clear();
        if let Some(t) = t {
            let _ = write!(num, "{t}");
        }
        put(h, &num);
    };
    let mut hasher = Sha256::new();
    let h = &mut hasher;
    put(h, item.script_name.as_deref().unwrap_or(""));
    put(
        h,
        item.script_version
            .as_ref()
            .and_then(|v| v.id.as_deref())
            .unwrap_or(""),
    );
    put_num(h, item.event_timestamp);
    put(h, item.outcome.as_deref().unwrap_or(""));
    if let Some(e) = &item.event {
        if let Some(r) = &e.request {
            put(h, r.method.as_deref().unwrap_or(""));
            put(h, r.url.as_deref().unwrap_or(""));
            for (k, v) in &r.headers {
                put(h, k);
                put(h, v.as_str().unwrap_or(""));
            }
        }
        put(h, e.cron.as_deref().unwrap_or(""));
        put_num(h, e.scheduled_time);
        put(h, e.queue.as_deref().unwrap_or(""));
    }
    for ex in &item.exceptions {
        put(h, ex.name.as_deref().unwrap_or(""));
        put(h, ex.message.as_deref().unwrap_or(""));
        put_num(h, ex.timestamp);
    }
    for l in &item.logs {
        put(h, l.level.as_deref().unwrap_or(""));
        put_num(h, l.timestamp);
    }
    hex(&hasher.finalize()[..16])
}

/// Counts of one processed batch, for the `ops_ingest_stats` row and the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BatchCounts {
    /// Items in the batch.
    pub items: u64,
    /// Items kept as events.
    pub events: u64,
    /// Items dropped as noise.
    pub noise: u64,
    /// Items that did not parse.
    pub malformed: u64,
}

/// Parses and processes a whole tail batch (`JSON.stringify(events)`).
///
/// Returns the events and the counts; malformed items are counted and skipped.
/// Errors: [`crate::trace::BatchError`] only when the text is not a JSON array.
pub fn process_batch(
    json: &str,
    cfg: &PipelineConfig,
    now_ms: i64,
) -> Result<(Vec<Event>, BatchCounts), crate::trace::BatchError> {
    run_batch(json, cfg, now_ms, None)
}
