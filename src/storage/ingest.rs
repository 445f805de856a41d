//! The ingest write path: sanitized events and traffic counts as Queue messages, and the D1 batch
//! a queue consumer writes for a whole queue batch.
//!
//! ```text
//! tail(events) ── scrub, fingerprint ──▶ IngestMessage (JSON text, ≤ MAX_MESSAGE_BYTES)
//!      │ sendBatch on `selfheal-ingest` (no Queue binding: the same statements straight to D1)
//!      ▼
//! agent-runner queue(batch of ≤ 100 messages) ──▶ apply_statements ──▶ ONE D1 batch (one transaction)
//!      │ failed: each message alone; a message that still fails is retried with backoff
//!      ▼ after max_retries
//! `selfheal-ingest-dlq` ──▶ park_statement (ops_ingest_dead) ──▶ `selfheal ingest replay`
//! ```
//!
//! **Coalescing.** However many messages and events a queue batch holds, its events become four
//! statements per chunk of at most [`MAX_PARAM_BYTES`] of JSON (new incidents under the flood cap,
//! overflow incidents, samples, occurrences: each one `INSERT … SELECT … FROM json_each(?1)`), and
//! its traffic flushes five (flush keys, 5-minute and hourly traffic, releases, delivery counts),
//! plus one row of consumer counts. D1 counts every statement of a batch against the queries of an
//! invocation (50 on the free plan, 1,000 on paid), so the count must not grow with the messages.
//!
//! **Exactly once.** Events are keyed (`ops_occurrences.event_key`, `ops_log_events.event_key`):
//! a redelivered message, a replay or a duplicate inside one batch inserts nothing and counts
//! nothing. Traffic flushes are keyed by (flush id, attempt key) as in
//! [`crate::signal::rates`]: a consumer try uses a fresh nonce as the attempt key, so only the try
//! that inserted the flush's key row applies its counts, and a message redelivered after a
//! committed try changes no count.
//!
//! **Flood cap.** Error text is attacker-controlled: anyone who can make a producer throw can make
//! new messages. A script opens at most [`IngestPolicy::max_new_incidents_per_hour`] incidents per
//! UTC hour (by `ops_incidents.created_at`); the events of the fingerprints past the cap fold into
//! the script's one overflow incident ([`overflow_components`]), which counts them, keeps samples
//! of them with their own messages, and says so in its message.
//!
//! **Sampling.** Per incident the first [`SamplePolicy::keep_first`] events are stored, then the
//! events whose ordinal is a power of two (as before the queue: storage grows with log2 of a
//! flood); ordinals count from the incident's count before the batch.

use serde::{Deserialize, Serialize};

use crate::event::{BatchCounts, Event};
use crate::fingerprint::{Components, FINGERPRINT_VERSION};
use crate::signal::gate::HOUR_MS;
use crate::signal::rates::Flush;
use crate::store::{SamplePolicy, SqlValue, Statement, json_text};

/// Largest message body the tail Worker sends, bytes of JSON (Cloudflare Queues: 128 KB per
/// message; the rest is headroom for the runtime's envelope).
pub const MAX_MESSAGE_BYTES: usize = 120_000;
/// Largest `sendBatch`, bytes of JSON in total (Queues: 256 KB per batch).
pub const MAX_SEND_BATCH_BYTES: usize = 240_000;
/// Largest `sendBatch`, messages (Queues: 100).
pub const MAX_SEND_BATCH_MESSAGES: usize = 100;
/// Largest JSON parameter of one statement, bytes (D1 limits a string value to 2 MB).
pub const MAX_PARAM_BYTES: usize = 1_000_000;
/// Version of [`IngestMessage`]'s shape; a consumer skips (and counts) other versions.
pub const MESSAGE_VERSION: u32 = 1;
/// Exception type of a script's overflow incident.
pub const OVERFLOW_EXCEPTION: &str = "selfheal.overflow";
/// Normalized message of a script's overflow incident.
pub const OVERFLOW_MESSAGE: &str = "new incidents past this script's hourly cap fold here (SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR); each sample keeps its own message";

/// What events are written with: by the Queue's consumer from the agent-runner's vars
/// ([`ConsumerSettings`]), by the tail Worker's direct path from its own
/// `SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR` ([`crate::store::ingest_statements`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestPolicy {
    /// Samples kept per incident.
    pub sample: SamplePolicy,
    /// New incidents one script may open per UTC hour (`SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR`,
    /// default 50); the rest fold into its overflow incident.
    pub max_new_incidents_per_hour: u32,
}

impl IngestPolicy {
    /// The policy from `SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR` (None or blank: the default).
    ///
    /// # Errors
    /// A message naming the variable when it is not a whole number.
    pub fn from_var(max_new_incidents_per_hour: Option<&str>) -> Result<Self, String> {
        let mut p = IngestPolicy::default();
        if let Some(v) = max_new_incidents_per_hour
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            p.max_new_incidents_per_hour = v.parse().map_err(|_| {
                format!("SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR={v:?}: expected a whole number ≥ 0")
            })?;
        }
        Ok(p)
    }
}

impl Default for IngestPolicy {
    fn default() -> Self {
        IngestPolicy {
            sample: SamplePolicy::default(),
            max_new_incidents_per_hour: 50,
        }
    }
}

/// A sanitized event as it travels on the Queue: every string already scrubbed and cut, the JSON
/// columns (`logs`, `request`, `remarks`) already as the text stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedEvent {
    /// Occurrence key (32 hex chars).
    pub event_key: String,
    /// Incident fingerprint (32 hex chars).
    pub fingerprint: String,
    /// What the fingerprint was computed from.
    pub components: Components,
    /// `fetch`, `scheduled`, `queue`, `email`, `rpc` or `other`.
    pub event_kind: String,
    /// HTTP method.
    pub method: Option<String>,
    /// Scrubbed URL.
    pub url: Option<String>,
    /// Response status.
    pub status: Option<u16>,
    /// Runtime outcome.
    pub outcome: String,
    /// Scrubbed message.
    pub message: String,
    /// Scrubbed stack excerpt.
    pub stack: String,
    /// JSON array of scrubbed log lines.
    pub logs: String,
    /// JSON of the scrubbed request summary.
    pub request: String,
    /// Release, when known.
    pub release: Option<String>,
    /// Named entrypoint.
    pub entrypoint: Option<String>,
    /// Event time, ms since the epoch.
    pub timestamp_ms: i64,
    /// JSON array of scrubbing remarks.
    pub remarks: String,
}

impl From<&Event> for QueuedEvent {
    fn from(e: &Event) -> Self {
        QueuedEvent {
            event_key: e.event_key.clone(),
            fingerprint: e.fingerprint.clone(),
            components: e.components.clone(),
            event_kind: e.event_kind.to_string(),
            method: e.method.clone(),
            url: e.url.clone(),
            status: e.status,
            outcome: e.outcome.clone(),
            message: e.message.clone(),
            stack: e.stack.clone(),
            logs: json_text(&e.logs),
            request: json_text(&e.request),
            release: e.release.clone(),
            entrypoint: e.entrypoint.clone(),
            timestamp_ms: e.timestamp_ms,
            remarks: json_text(&e.remarks),
        }
    }
}

/// A traffic flush ([`Flush`]) on the wire: maps with tuple keys as rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedFlush {
    /// Stable flush id (a UUID from the isolate).
    pub id: String,
    /// `[script, route, release, bucket ms, requests, errors]` per 5-minute key.
    pub traffic: Vec<(String, String, String, i64, u64, u64)>,
    /// `[script, release, first seen ms, last seen ms]`.
    pub releases: Vec<(String, String, i64, i64)>,
    /// Delivery counts: items, events, noise, malformed.
    pub counts: [u64; 4],
    /// Tail invocations counted.
    pub batches: u64,
}

impl From<&Flush> for QueuedFlush {
    fn from(f: &Flush) -> Self {
        QueuedFlush {
            id: f.id.clone(),
            traffic: f
                .traffic
                .iter()
                .map(|((s, r, rel, b), c)| {
                    (s.clone(), r.clone(), rel.clone(), *b, c.requests, c.errors)
                })
                .collect(),
            releases: f
                .releases
                .iter()
                .map(|((s, r), (a, b))| (s.clone(), r.clone(), *a, *b))
                .collect(),
            counts: [
                f.counts.items,
                f.counts.events,
                f.counts.noise,
                f.counts.malformed,
            ],
            batches: f.batches,
        }
    }
}

impl QueuedFlush {
    /// Back to a [`Flush`] (attempt 0).
    pub fn to_flush(&self) -> Flush {
        let mut f = Flush {
            id: self.id.clone(),
            batches: self.batches,
            counts: BatchCounts {
                items: self.counts[0],
                events: self.counts[1],
                noise: self.counts[2],
                malformed: self.counts[3],
            },
            ..Default::default()
        };
        for (s, r, rel, b, n, e) in &self.traffic {
            let c = f
                .traffic
                .entry((s.clone(), r.clone(), rel.clone(), *b))
                .or_default();
            c.requests += n;
            c.errors += e;
        }
        for (s, r, a, b) in &self.releases {
            f.releases.insert((s.clone(), r.clone()), (*a, *b));
        }
        f
    }
}

/// One message on the ingest Queue: the sanitized events of (part of) one tail delivery and the
/// traffic flushes that ride along. Sent as JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestMessage {
    /// [`MESSAGE_VERSION`].
    pub v: u32,
    /// Message id (a UUID): the key of a parked message.
    pub id: String,
    /// When the tail Worker sent it, ms since the epoch (for the end-to-end delay).
    pub sent_at: i64,
    /// Sanitized events.
    #[serde(default)]
    pub events: Vec<QueuedEvent>,
    /// Traffic flushes.
    #[serde(default)]
    pub flushes: Vec<QueuedFlush>,
}

/// Why a message body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// Not a string body, or not JSON of [`IngestMessage`]'s shape.
    Malformed(String),
    /// Another [`MESSAGE_VERSION`].
    Version(u32),
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageError::Malformed(e) => write!(f, "malformed ingest message: {e}"),
            MessageError::Version(v) => write!(
                f,
                "ingest message version {v}, this consumer reads {MESSAGE_VERSION}"
            ),
        }
    }
}
impl std::error::Error for MessageError {}

impl IngestMessage {
    /// Parses a message body.
    ///
    /// # Errors
    /// [`MessageError`] when it is not a message of this version.
    pub fn parse(body: &str) -> Result<Self, MessageError> {
        let m: IngestMessage =
            serde_json::from_str(body).map_err(|e| MessageError::Malformed(e.to_string()))?;
        if m.v != MESSAGE_VERSION {
            return Err(MessageError::Version(m.v));
        }
        Ok(m)
    }

    /// The JSON text sent.
    pub fn to_json(&self) -> String {
        json_text(self)
    }
}

/// Splits one delivery's events and flushes into messages of at most [`MAX_MESSAGE_BYTES`] (an
/// event larger than that alone is still sent alone: the tail's truncation keeps events far
/// smaller). `new_id` gives each message its id. Flushes go in the first message.
pub fn messages(
    events: &[Event],
    flushes: &[Flush],
    sent_at: i64,
    mut new_id: impl FnMut() -> String,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = IngestMessage {
        v: MESSAGE_VERSION,
        id: new_id(),
        sent_at,
        events: Vec::new(),
        flushes: flushes.iter().map(QueuedFlush::from).collect(),
    };
    let mut size = current.to_json().len();
    for e in events {
        let q = QueuedEvent::from(e);
        let len = json_text(&q).len() + 1;
        if !current.events.is_empty() && size + len > MAX_MESSAGE_BYTES {
            let next = IngestMessage {
                v: MESSAGE_VERSION,
                id: new_id(),
                sent_at,
                events: Vec::new(),
                flushes: Vec::new(),
            };
            out.push(std::mem::replace(&mut current, next).to_json());
            size = current.to_json().len();
        }
        size += len;
        current.events.push(q);
    }
    if !current.events.is_empty() || !current.flushes.is_empty() {
        out.push(current.to_json());
    }
    out
}

/// Groups message bodies into `sendBatch` calls within Queues' limits (at most
/// [`MAX_SEND_BATCH_MESSAGES`] messages and [`MAX_SEND_BATCH_BYTES`] bytes each).
pub fn send_batches(bodies: Vec<String>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut size = 0;
    for b in bodies {
        match out.last_mut() {
            Some(last)
                if last.len() < MAX_SEND_BATCH_MESSAGES
                    && size + b.len() <= MAX_SEND_BATCH_BYTES =>
            {
                size += b.len();
                last.push(b);
            }
            _ => {
                size = b.len();
                out.push(vec![b]);
            }
        }
    }
    out
}

/// The components of `script`'s overflow incident (route `*`, [`OVERFLOW_EXCEPTION`]).
pub fn overflow_components(script: &str) -> Components {
    Components {
        version: FINGERPRINT_VERSION,
        script: script.to_string(),
        route: "*".to_string(),
        exception_type: OVERFLOW_EXCEPTION.to_string(),
        message: OVERFLOW_MESSAGE.to_string(),
        top_frame: String::new(),
        status_class: "none".to_string(),
    }
}

/// One event as the statements' JSON parameter reads it (short keys keep the parameter small).
#[derive(Serialize)]
struct Row<'a> {
    k: &'a str,
    f: &'a str,
    o: &'a str,
    v: u32,
    s: &'a str,
    r: &'a str,
    x: &'a str,
    m: &'a str,
    t: &'a str,
    c: &'a str,
    ts: i64,
    rel: Option<&'a str>,
    kind: &'a str,
    method: Option<&'a str>,
    url: Option<&'a str>,
    status: Option<u16>,
    outcome: &'a str,
    msg: &'a str,
    stack: &'a str,
    logs: &'a str,
    req: &'a str,
    ep: Option<&'a str>,
    rem: &'a str,
}

/// New incidents, at most `?3` per script and UTC hour (`?2` = the hour's start, `?4` = the
/// overflow exception type, `?5` = now): the first event of each new fingerprint in the batch
/// gives its row, in batch order.
const INSERT_NEW_INCIDENTS: &str = "WITH b AS (SELECT j.key AS pos, json_extract(j.value, '$.f') AS f, \
json_extract(j.value, '$.s') AS s, j.value AS e FROM json_each(?1) j), \
firsts AS (SELECT f, s, min(pos) AS pos FROM b WHERE NOT EXISTS (SELECT 1 FROM ops_incidents i WHERE i.fingerprint = b.f) \
GROUP BY f), \
ranked AS (SELECT f, s, pos, row_number() OVER (PARTITION BY s ORDER BY pos) AS rn FROM firsts), \
used AS MATERIALIZED (SELECT script_name AS s, count(*) AS n FROM ops_incidents WHERE created_at >= ?2 \
AND exception_type <> ?4 AND script_name IN (SELECT s FROM ranked) GROUP BY script_name) \
INSERT INTO ops_incidents (fingerprint, fingerprint_version, script_name, route_pattern, exception_type, \
normalized_message, top_frame, status_class, occurrence_count, first_seen, last_seen, first_release, last_release, \
updated_at, created_at) \
SELECT r.f, json_extract(b.e, '$.v'), r.s, json_extract(b.e, '$.r'), json_extract(b.e, '$.x'), json_extract(b.e, '$.m'), \
json_extract(b.e, '$.t'), json_extract(b.e, '$.c'), 0, json_extract(b.e, '$.ts'), json_extract(b.e, '$.ts'), \
json_extract(b.e, '$.rel'), json_extract(b.e, '$.rel'), json_extract(b.e, '$.ts'), ?5 \
FROM ranked r JOIN b ON b.pos = r.pos LEFT JOIN used u ON u.s = r.s WHERE r.rn + coalesce(u.n, 0) <= ?3 \
ON CONFLICT (fingerprint) DO NOTHING";

/// The overflow incident of each script with an event whose fingerprint has no incident after
/// [`INSERT_NEW_INCIDENTS`] (`?2` version, `?3` exception type, `?4` message, `?5` now).
const INSERT_OVERFLOW_INCIDENTS: &str = "WITH b AS (SELECT json_extract(j.value, '$.f') AS f, \
json_extract(j.value, '$.o') AS o, json_extract(j.value, '$.s') AS s, json_extract(j.value, '$.ts') AS ts \
FROM json_each(?1) j) \
INSERT INTO ops_incidents (fingerprint, fingerprint_version, script_name, route_pattern, exception_type, \
normalized_message, top_frame, status_class, occurrence_count, first_seen, last_seen, updated_at, created_at) \
SELECT o, ?2, min(s), '*', ?3, ?4, '', 'none', 0, min(ts), min(ts), min(ts), ?5 FROM b \
WHERE NOT EXISTS (SELECT 1 FROM ops_incidents i WHERE i.fingerprint = b.f) GROUP BY o \
ON CONFLICT (fingerprint) DO NOTHING";

/// Samples, judged on the counts before this batch's occurrences (`?2` = receive time,
/// `?3` = keep_first): the first `keep_first - stored` events of an incident in the batch, and
/// each event whose ordinal (the count before the batch plus its place among the incident's
/// events in the batch) is a power of two.
const INSERT_SAMPLES: &str = "WITH b AS (SELECT j.key AS pos, j.value AS e, coalesce((SELECT i.fingerprint FROM ops_incidents i \
WHERE i.fingerprint = json_extract(j.value, '$.f')), json_extract(j.value, '$.o')) AS g FROM json_each(?1) j), \
w AS (SELECT pos, e, g, row_number() OVER (PARTITION BY g ORDER BY pos) - 1 AS i FROM b), \
snap AS MATERIALIZED (SELECT fingerprint, stored_events, occurrence_count FROM ops_incidents \
WHERE fingerprint IN (SELECT g FROM b)) \
INSERT INTO ops_log_events (event_key, fingerprint, script_name, route_pattern, event_kind, method, url, status, outcome, \
exception_type, message, normalized_message, top_frame, stack, logs, request, release, entrypoint, event_timestamp, \
remarks, received_at) \
SELECT json_extract(w.e, '$.k'), w.g, json_extract(w.e, '$.s'), json_extract(w.e, '$.r'), json_extract(w.e, '$.kind'), \
json_extract(w.e, '$.method'), json_extract(w.e, '$.url'), json_extract(w.e, '$.status'), json_extract(w.e, '$.outcome'), \
json_extract(w.e, '$.x'), json_extract(w.e, '$.msg'), json_extract(w.e, '$.m'), json_extract(w.e, '$.t'), \
json_extract(w.e, '$.stack'), json_extract(w.e, '$.logs'), json_extract(w.e, '$.req'), json_extract(w.e, '$.rel'), \
json_extract(w.e, '$.ep'), json_extract(w.e, '$.ts'), json_extract(w.e, '$.rem'), ?2 \
FROM w JOIN snap ON snap.fingerprint = w.g \
WHERE w.i < ?3 - snap.stored_events \
OR ((snap.occurrence_count + w.i + 1) & (snap.occurrence_count + w.i)) = 0 \
ORDER BY w.pos \
ON CONFLICT (event_key) DO NOTHING";

/// Occurrences (the triggers count the new ones and their buckets), in batch order.
const INSERT_OCCURRENCES: &str = "INSERT INTO ops_occurrences (event_key, fingerprint, ts, release) \
SELECT json_extract(j.value, '$.k'), coalesce((SELECT i.fingerprint FROM ops_incidents i \
WHERE i.fingerprint = json_extract(j.value, '$.f')), json_extract(j.value, '$.o')), json_extract(j.value, '$.ts'), \
json_extract(j.value, '$.rel') FROM json_each(?1) j WHERE true ORDER BY j.key \
ON CONFLICT (event_key) DO NOTHING";

/// The statements that store `events` received at `now_ms`: four per chunk of at most
/// [`MAX_PARAM_BYTES`] of JSON, in the order new incidents, overflow incidents, samples,
/// occurrences. Run them in one D1 batch.
pub fn event_statements(
    events: &[QueuedEvent],
    now_ms: i64,
    policy: IngestPolicy,
) -> Vec<Statement> {
    let mut overflow: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    for e in events {
        overflow
            .entry(e.components.script.as_str())
            .or_insert_with(|| overflow_components(&e.components.script).fingerprint());
    }
    let hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let mut out = Vec::new();
    let mut chunk = String::from("[");
    let flush = |chunk: &mut String, out: &mut Vec<Statement>| {
        if chunk.len() <= 1 {
            return;
        }
        chunk.push(']');
        let param = std::mem::replace(chunk, String::from("["));
        out.push(Statement::new(
            INSERT_NEW_INCIDENTS,
            vec![
                param.clone().into(),
                hour.into(),
                i64::from(policy.max_new_incidents_per_hour).into(),
                OVERFLOW_EXCEPTION.into(),
                now_ms.into(),
            ],
        ));
        out.push(Statement::new(
            INSERT_OVERFLOW_INCIDENTS,
            vec![
                param.clone().into(),
                i64::from(FINGERPRINT_VERSION).into(),
                OVERFLOW_EXCEPTION.into(),
                OVERFLOW_MESSAGE.into(),
                now_ms.into(),
            ],
        ));
        out.push(Statement::new(
            INSERT_SAMPLES,
            vec![
                param.clone().into(),
                now_ms.into(),
                i64::from(policy.sample.keep_first).into(),
            ],
        ));
        out.push(Statement::new(INSERT_OCCURRENCES, vec![param.into()]));
    };
    for e in events {
        let c = &e.components;
        let row = json_text(&Row {
            k: &e.event_key,
            f: &e.fingerprint,
            o: overflow.get(c.script.as_str()).map_or("", String::as_str),
            v: c.version,
            s: &c.script,
            r: &c.route,
            x: &c.exception_type,
            m: &c.message,
            t: &c.top_frame,
            c: &c.status_class,
            ts: e.timestamp_ms,
            rel: e.release.as_deref(),
            kind: &e.event_kind,
            method: e.method.as_deref(),
            url: e.url.as_deref(),
            status: e.status,
            outcome: &e.outcome,
            msg: &e.message,
            stack: &e.stack,
            logs: &e.logs,
            req: &e.request,
            ep: e.entrypoint.as_deref(),
            rem: &e.remarks,
        });
        if chunk.len() > 1 && chunk.len() + row.len() + 2 > MAX_PARAM_BYTES {
            flush(&mut chunk, &mut out);
        }
        if chunk.len() > 1 {
            chunk.push(',');
        }
        chunk.push_str(&row);
    }
    flush(&mut chunk, &mut out);
    out
}

const INSERT_FLUSH_KEYS: &str = "INSERT INTO ops_traffic_flushes (flush_id, attempt, at) \
SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), ?2 FROM json_each(?1) j WHERE true \
ON CONFLICT (flush_id) DO NOTHING";

/// `?1` = JSON array of `[flush id, attempt key, script, route, release, bucket, requests,
/// errors]`: a row applies only when its flush's stored attempt key is its own.
const UPSERT_TRAFFIC_5M: &str = "INSERT INTO ops_traffic_5m (script, route, release, bucket, requests, errors) \
SELECT json_extract(j.value, '$[2]'), json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]'), \
json_extract(j.value, '$[5]'), json_extract(j.value, '$[6]'), json_extract(j.value, '$[7]') FROM json_each(?1) j \
WHERE EXISTS (SELECT 1 FROM ops_traffic_flushes f WHERE f.flush_id = json_extract(j.value, '$[0]') \
AND f.attempt = json_extract(j.value, '$[1]')) \
ON CONFLICT (script, route, bucket, release) DO UPDATE SET requests = requests + excluded.requests, \
errors = errors + excluded.errors";

const UPSERT_TRAFFIC_1H: &str = "INSERT INTO ops_traffic_1h (script, route, release, bucket, requests, errors) \
SELECT json_extract(j.value, '$[2]'), json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]'), \
json_extract(j.value, '$[5]'), json_extract(j.value, '$[6]'), json_extract(j.value, '$[7]') FROM json_each(?1) j \
WHERE EXISTS (SELECT 1 FROM ops_traffic_flushes f WHERE f.flush_id = json_extract(j.value, '$[0]') \
AND f.attempt = json_extract(j.value, '$[1]')) \
ON CONFLICT (script, route, bucket, release) DO UPDATE SET requests = requests + excluded.requests, \
errors = errors + excluded.errors";

const UPSERT_RELEASES: &str = "INSERT INTO ops_releases (script, release, first_seen, last_seen) \
SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'), \
json_extract(j.value, '$[3]') FROM json_each(?1) j WHERE true \
ON CONFLICT (script, release) DO UPDATE SET first_seen = min(first_seen, excluded.first_seen), \
last_seen = max(last_seen, excluded.last_seen)";

/// `?2` = JSON array of `[flush id, attempt key, batches, items, events, noise, malformed]`.
const UPSERT_DELIVERY_COUNTS: &str = "INSERT INTO ops_ingest_stats (day, batches, items, events, noise, malformed) \
SELECT ?1, sum(json_extract(j.value, '$[2]')), sum(json_extract(j.value, '$[3]')), sum(json_extract(j.value, '$[4]')), \
sum(json_extract(j.value, '$[5]')), sum(json_extract(j.value, '$[6]')) FROM json_each(?2) j \
WHERE EXISTS (SELECT 1 FROM ops_traffic_flushes f WHERE f.flush_id = json_extract(j.value, '$[0]') \
AND f.attempt = json_extract(j.value, '$[1]')) HAVING count(*) > 0 \
ON CONFLICT (day) DO UPDATE SET batches = batches + excluded.batches, items = items + excluded.items, \
events = events + excluded.events, noise = noise + excluded.noise, malformed = malformed + excluded.malformed";

/// The statements that write traffic flushes, each with its attempt key (a flush applies only
/// under the key its first committed write stored): five statements whatever the number of
/// flushes (none when there are none). `day` = UTC `YYYY-MM-DD` of the delivery counts.
pub fn flush_statements(flushes: &[(&Flush, String)], day: &str, now_ms: i64) -> Vec<Statement> {
    if flushes.is_empty() {
        return Vec::new();
    }
    let mut keys = Vec::with_capacity(flushes.len());
    let mut five = Vec::new();
    // (flush id, attempt key, script, route, release, hour) → (requests, errors)
    type HourKey<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, i64);
    let mut hourly: std::collections::BTreeMap<HourKey, (u64, u64)> =
        std::collections::BTreeMap::new();
    let mut releases: std::collections::BTreeMap<(&str, &str), (i64, i64)> =
        std::collections::BTreeMap::new();
    let mut counts = Vec::with_capacity(flushes.len());
    for (f, key) in flushes {
        keys.push(serde_json::json!([f.id, key]));
        for ((script, route, release, bucket), c) in &f.traffic {
            five.push(serde_json::json!([
                f.id, key, script, route, release, bucket, c.requests, c.errors
            ]));
            let h = hourly
                .entry((
                    f.id.as_str(),
                    key.as_str(),
                    script,
                    route,
                    release,
                    bucket.div_euclid(HOUR_MS) * HOUR_MS,
                ))
                .or_insert((0, 0));
            h.0 += c.requests;
            h.1 += c.errors;
        }
        for ((s, r), (a, b)) in &f.releases {
            let e = releases.entry((s, r)).or_insert((*a, *b));
            e.0 = e.0.min(*a);
            e.1 = e.1.max(*b);
        }
        let c = &f.counts;
        counts.push(serde_json::json!([
            f.id,
            key,
            f.batches,
            c.items,
            c.events,
            c.noise,
            c.malformed
        ]));
    }
    let hours: Vec<serde_json::Value> = hourly
        .iter()
        .map(|((id, key, s, r, rel, b), (n, e))| serde_json::json!([id, key, s, r, rel, b, n, e]))
        .collect();
    let rel: Vec<serde_json::Value> = releases
        .iter()
        .map(|((s, r), (a, b))| serde_json::json!([s, r, a, b]))
        .collect();
    let mut out = vec![Statement::new(
        INSERT_FLUSH_KEYS,
        vec![json_text(&keys).into(), now_ms.into()],
    )];
    if !five.is_empty() {
        out.push(Statement::new(
            UPSERT_TRAFFIC_5M,
            vec![json_text(&five).into()],
        ));
        out.push(Statement::new(
            UPSERT_TRAFFIC_1H,
            vec![json_text(&hours).into()],
        ));
    }
    if !rel.is_empty() {
        out.push(Statement::new(
            UPSERT_RELEASES,
            vec![json_text(&rel).into()],
        ));
    }
    out.push(Statement::new(
        UPSERT_DELIVERY_COUNTS,
        vec![day.into(), json_text(&counts).into()],
    ));
    out
}

const COUNT_WRITE: &str = "INSERT INTO ops_ingest_stats (day, writes, statements, messages, malformed_messages, \
retried_messages) VALUES (?1, 1, ?2, ?3, ?4, ?5) \
ON CONFLICT (day) DO UPDATE SET writes = writes + 1, statements = statements + excluded.statements, \
messages = messages + excluded.messages, malformed_messages = malformed_messages + excluded.malformed_messages, \
retried_messages = retried_messages + excluded.retried_messages";

/// What a write says about itself in `ops_ingest_stats` (a redelivered message counts again:
/// these count work done, not data).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCounts {
    /// Queue messages applied by this write.
    pub messages: u64,
    /// Messages skipped as malformed (acknowledged, never retried).
    pub malformed_messages: u64,
    /// Messages of this queue batch that failed and were retried.
    pub retried_messages: u64,
}

/// The statement that counts one D1 batch of `statements` statements (itself included) and what
/// it did, under UTC `day`.
pub fn count_write(day: &str, statements: usize, counts: WriteCounts) -> Statement {
    Statement::new(
        COUNT_WRITE,
        vec![
            day.into(),
            SqlValue::from(statements as u64),
            counts.messages.into(),
            counts.malformed_messages.into(),
            counts.retried_messages.into(),
        ],
    )
}

/// The one D1 batch for a queue batch's `messages`: their events coalesced
/// ([`event_statements`]), their flushes keyed by `nonce` (a fresh random string per consumer
/// try: see the module docs), and the count of the write. `day` = UTC day of `now_ms`.
pub fn apply_statements(
    messages: &[IngestMessage],
    nonce: &str,
    now_ms: i64,
    day: &str,
    policy: IngestPolicy,
    counts: WriteCounts,
) -> Vec<Statement> {
    let events: Vec<QueuedEvent> = messages
        .iter()
        .flat_map(|m| m.events.iter().cloned())
        .collect();
    let flushes: Vec<Flush> = messages
        .iter()
        .flat_map(|m| m.flushes.iter().map(QueuedFlush::to_flush))
        .collect();
    let keyed: Vec<(&Flush, String)> = flushes
        .iter()
        .map(|f| (f, format!("{}:{nonce}", f.id)))
        .collect();
    let mut out = event_statements(&events, now_ms, policy);
    out.extend(flush_statements(&keyed, day, now_ms));
    let n = out.len() + 1;
    out.push(count_write(
        day,
        n,
        WriteCounts {
            messages: messages.len() as u64,
            ..counts
        },
    ));
    out
}

const PARK: &str = "INSERT INTO ops_ingest_dead (message_id, body, attempts, error, parked_at) \
VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (message_id) DO UPDATE SET attempts = excluded.attempts, \
error = excluded.error";

const COUNT_DEAD: &str = "INSERT INTO ops_ingest_stats (day, dead_messages) VALUES (?1, ?2) \
ON CONFLICT (day) DO UPDATE SET dead_messages = dead_messages + excluded.dead_messages";

/// A message from the dead-letter queue, kept as it came (`body` is the message text; its id is
/// read from it when it parses, else a hash of the body). `error` says why the last try failed.
pub fn park_statement(body: &str, attempts: u32, error: &str, now_ms: i64) -> Statement {
    let id = IngestMessage::parse(body).map_or_else(
        |_| {
            use sha2::{Digest, Sha256};
            let d = Sha256::digest(body.as_bytes());
            d.iter().take(16).map(|b| format!("{b:02x}")).collect()
        },
        |m| m.id,
    );
    Statement::new(
        PARK,
        vec![
            id.into(),
            body.into(),
            i64::from(attempts).into(),
            crate::event::truncate(error, 2000).into(),
            now_ms.into(),
        ],
    )
}

const COUNT_RETRIED: &str = "INSERT INTO ops_ingest_stats (day, retried_messages) VALUES (?1, ?2) \
ON CONFLICT (day) DO UPDATE SET retried_messages = retried_messages + excluded.retried_messages";

/// Counts `n` messages a consumer retried under UTC `day` (written best-effort after the
/// retries: when D1 is down it is lost, and the retried messages are what matters).
pub fn count_retried(day: &str, n: u64) -> Statement {
    Statement::new(COUNT_RETRIED, vec![day.into(), n.into()])
}

/// Counts `n` parked messages under UTC `day`.
pub fn count_dead(day: &str, n: u64) -> Statement {
    Statement::new(COUNT_DEAD, vec![day.into(), n.into()])
}

/// Parked messages, oldest first (`?1` = limit).
pub const SELECT_DEAD: &str = "SELECT message_id, body, attempts, error, parked_at FROM ops_ingest_dead \
ORDER BY parked_at, message_id LIMIT ?1";

/// A row of `ops_ingest_dead`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadRow {
    /// Message id.
    pub message_id: String,
    /// The message text.
    pub body: String,
    /// Deliveries before it was dead-lettered.
    pub attempts: i64,
    /// The last error.
    pub error: String,
    /// When it was parked, ms.
    pub parked_at: i64,
}

const DELETE_DEAD: &str = "DELETE FROM ops_ingest_dead WHERE message_id = ?1";

/// What replaying parked messages will do: the batch that applies the `rows` that parse (and
/// deletes them in the same transaction), and the ids of those that do not (left parked).
pub fn replay_statements(
    rows: &[DeadRow],
    nonce: &str,
    now_ms: i64,
    day: &str,
    policy: IngestPolicy,
) -> (Vec<Statement>, Vec<String>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut deletes = Vec::new();
    for r in rows {
        match IngestMessage::parse(&r.body) {
            Ok(m) => {
                deletes.push(Statement::new(
                    DELETE_DEAD,
                    vec![r.message_id.as_str().into()],
                ));
                good.push(m);
            }
            Err(_) => bad.push(r.message_id.clone()),
        }
    }
    if good.is_empty() {
        return (Vec::new(), bad);
    }
    let mut out = apply_statements(&good, nonce, now_ms, day, policy, WriteCounts::default());
    out.extend(deletes);
    (out, bad)
}

/// Retry delay for a message's `attempts`-th failed delivery (1-based), seconds: `base · 2^(n-1)`
/// capped at `max` (Queues' own `retry_delay` is fixed; per-message backoff follows
/// Cloudflare's documented `message.retry({ delaySeconds })` pattern).
pub fn backoff_secs(attempts: u32, base: u32, max: u32) -> u32 {
    let exp = attempts.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << exp).min(max)
}

/// Default name of the ingest Queue: the tail Worker's `INGEST` producer sends on it and the
/// agent-runner consumes it (`tail-worker/wrangler.toml`, root `wrangler.toml`).
pub const INGEST_QUEUE: &str = "selfheal-ingest";
/// Default name of the ingest Queue's dead-letter queue (`dead_letter_queue` of the consumer of
/// [`INGEST_QUEUE`]), whose consumer parks what it gets ([`park_statement`]).
pub const INGEST_DLQ: &str = "selfheal-ingest-dlq";
/// Default name of the fix-jobs Queue (the cron Worker's `FIX_JOBS` producer, the agent-runner's
/// claim consumer).
pub const FIX_JOBS_QUEUE: &str = "selfheal-fix-jobs";

/// Which of the agent-runner's consumers a queue batch is for. workers-rs gives a Worker one
/// `queue` handler for every Queue it consumes; the batch's queue name picks the consumer
/// ([`ConsumerQueues::route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerQueue {
    /// Fix jobs: claimed once each, within the daily cap.
    FixJobs,
    /// Ingest messages: one D1 batch per queue batch, retries with backoff.
    Ingest,
    /// Dead-lettered ingest messages: parked in `ops_ingest_dead`.
    IngestDeadLetter,
}

/// The names of the Queues the agent-runner consumes, from its vars `SELFHEAL_FIX_JOBS_QUEUE`,
/// `SELFHEAL_INGEST_QUEUE` and `SELFHEAL_INGEST_DLQ` (unset or blank: [`FIX_JOBS_QUEUE`],
/// [`INGEST_QUEUE`], [`INGEST_DLQ`], the names in the root `wrangler.toml`). A deployment that
/// renames a queue in its wrangler config sets the matching var.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerQueues {
    /// Name of the fix-jobs Queue.
    pub fix_jobs: String,
    /// Name of the ingest Queue.
    pub ingest: String,
    /// Name of the ingest Queue's dead-letter queue.
    pub ingest_dlq: String,
}

impl Default for ConsumerQueues {
    fn default() -> Self {
        ConsumerQueues {
            fix_jobs: FIX_JOBS_QUEUE.into(),
            ingest: INGEST_QUEUE.into(),
            ingest_dlq: INGEST_DLQ.into(),
        }
    }
}

/// `var(name)` trimmed, `None` when unset or blank.
fn set_var(var: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    var(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl ConsumerQueues {
    /// The names from the Worker's vars (`var` reads one var; see the type's doc for the names).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let d = ConsumerQueues::default();
        ConsumerQueues {
            fix_jobs: set_var(&var, "SELFHEAL_FIX_JOBS_QUEUE").unwrap_or(d.fix_jobs),
            ingest: set_var(&var, "SELFHEAL_INGEST_QUEUE").unwrap_or(d.ingest),
            ingest_dlq: set_var(&var, "SELFHEAL_INGEST_DLQ").unwrap_or(d.ingest_dlq),
        }
    }

    /// The consumer of the batch from queue `name` (exact match); `None` for any other queue (the
    /// handler logs it and retries the batch: never acked, never lost to a misconfiguration).
    pub fn route(&self, name: &str) -> Option<ConsumerQueue> {
        if name == self.fix_jobs {
            Some(ConsumerQueue::FixJobs)
        } else if name == self.ingest {
            Some(ConsumerQueue::Ingest)
        } else if name == self.ingest_dlq {
            Some(ConsumerQueue::IngestDeadLetter)
        } else {
            None
        }
    }
}

/// What the ingest consumers write with, from the agent-runner's vars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// Samples and flood cap (`SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR`, [`IngestPolicy::from_var`]).
    pub policy: IngestPolicy,
    /// Backoff of a failed message, seconds for its first retry, doubling per attempt
    /// (`SELFHEAL_INGEST_RETRY_BASE_SECS`, default 10).
    pub retry_base_secs: u32,
    /// Longest backoff, seconds (`SELFHEAL_INGEST_RETRY_MAX_SECS`, default 900).
    pub retry_max_secs: u32,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            policy: IngestPolicy::default(),
            retry_base_secs: 10,
            retry_max_secs: 900,
        }
    }
}

impl ConsumerSettings {
    /// The settings from the Worker's vars (`var` reads one var; unset or blank: the default).
    ///
    /// # Errors
    /// A message naming the variable when one is not a whole number ≥ 0.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let d = ConsumerSettings::default();
        let num = |name: &str, default: u32| match set_var(&var, name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("{name}={v:?}: expected a whole number ≥ 0")),
        };
        Ok(ConsumerSettings {
            policy: IngestPolicy::from_var(var("SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR").as_deref())?,
            retry_base_secs: num("SELFHEAL_INGEST_RETRY_BASE_SECS", d.retry_base_secs)?,
            retry_max_secs: num("SELFHEAL_INGEST_RETRY_MAX_SECS", d.retry_max_secs)?,
        })
    }

    /// Retry delay of a message on its `attempts`-th delivery (1-based), seconds
    /// ([`backoff_secs`] with these settings).
    pub fn backoff_secs(&self, attempts: u32) -> u32 {
        backoff_secs(attempts, self.retry_base_secs, self.retry_max_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| m.get(name).cloned()
    }

    /// `queue = "…"` of every `[[queues.<kind>]]` table of a wrangler.toml, in order.
    fn queues(toml: &str, kind: &str) -> Vec<String> {
        let header = format!("[[queues.{kind}]]");
        let mut out = Vec::new();
        let mut inside = false;
        for line in toml.lines().map(str::trim) {
            if line.starts_with('[') {
                inside = line == header;
            } else if inside && let Some(rest) = line.strip_prefix("queue") {
                let name = rest.trim_start().trim_start_matches('=').trim();
                let name = name
                    .split('#')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_matches('"');
                out.push(name.to_string());
            }
        }
        out
    }

    #[test]
    fn default_names_are_the_wrangler_configs_names() {
        let runner = include_str!("../../wrangler.toml");
        let tail = include_str!("../../tail-worker/wrangler.toml");
        let cron = include_str!("../../scheduled/wrangler.toml");
        let q = ConsumerQueues::from_vars(vars(&[]));
        let mut consumed = queues(runner, "consumers");
        consumed.sort();
        let mut expected = vec![q.fix_jobs.clone(), q.ingest.clone(), q.ingest_dlq.clone()];
        expected.sort();
        assert_eq!(
            consumed, expected,
            "the agent-runner consumes exactly these"
        );
        assert!(
            runner.contains(&format!("dead_letter_queue = \"{}\"", q.ingest_dlq)),
            "the ingest consumer dead-letters to the queue parked from"
        );
        assert_eq!(queues(tail, "producers"), vec![q.ingest.clone()]);
        assert!(
            queues(tail, "consumers").is_empty(),
            "the tail Worker consumes nothing"
        );
        assert_eq!(queues(cron, "producers"), vec![q.fix_jobs.clone()]);
    }

    /// `NAME = "value"` of a wrangler.toml's `[vars]`, when set there.
    fn toml_var(toml: &str, name: &str) -> Option<String> {
        toml.lines().map(str::trim).find_map(|l| {
            let rest = l.strip_prefix(name)?.trim_start().strip_prefix('=')?;
            Some(rest.split('#').next()?.trim().trim_matches('"').to_string())
        })
    }

    #[test]
    fn the_tail_and_the_consumer_cap_new_incidents_alike() {
        // The tail's direct path and the agent-runner's consumer each read their own var.
        let runner = include_str!("../../wrangler.toml");
        let tail = include_str!("../../tail-worker/wrangler.toml");
        let name = "SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR";
        let (r, t) = (toml_var(runner, name), toml_var(tail, name));
        assert!(r.is_some(), "{name} in wrangler.toml");
        assert_eq!(r, t, "{name}: agent-runner and tail Worker");
        let cap = IngestPolicy::from_var(r.as_deref()).unwrap();
        assert_eq!(cap, IngestPolicy::default());
    }

    #[test]
    fn a_batch_goes_to_the_consumer_of_its_queue_and_no_other() {
        let q = ConsumerQueues::from_vars(vars(&[]));
        assert_eq!(q.route("selfheal-fix-jobs"), Some(ConsumerQueue::FixJobs));
        assert_eq!(q.route("selfheal-ingest"), Some(ConsumerQueue::Ingest));
        assert_eq!(
            q.route("selfheal-ingest-dlq"),
            Some(ConsumerQueue::IngestDeadLetter)
        );
        // Exact names: no suffix or prefix rule (the tail's old `ends_with("-dlq")`).
        assert_eq!(q.route("selfheal-fix-jobs-dlq"), None);
        assert_eq!(q.route("other-ingest-dlq"), None);
        assert_eq!(q.route(""), None);
        assert_eq!(q.route("SELFHEAL-INGEST"), None);
    }

    #[test]
    fn queue_names_follow_their_vars() {
        let q = ConsumerQueues::from_vars(vars(&[
            ("SELFHEAL_INGEST_QUEUE", " prod-ingest "),
            ("SELFHEAL_INGEST_DLQ", "prod-ingest-dead"),
            ("SELFHEAL_FIX_JOBS_QUEUE", ""),
        ]));
        assert_eq!(q.route("prod-ingest"), Some(ConsumerQueue::Ingest));
        assert_eq!(
            q.route("prod-ingest-dead"),
            Some(ConsumerQueue::IngestDeadLetter)
        );
        assert_eq!(
            q.route("selfheal-ingest"),
            None,
            "renamed: the old name is unknown"
        );
        assert_eq!(q.route("selfheal-fix-jobs"), Some(ConsumerQueue::FixJobs));
    }

    #[test]
    fn consumer_settings_from_vars() {
        let d = ConsumerSettings::from_vars(vars(&[])).unwrap();
        assert_eq!(d, ConsumerSettings::default());
        assert_eq!(
            (d.backoff_secs(1), d.backoff_secs(2), d.backoff_secs(8)),
            (10, 20, 900)
        );
        let s = ConsumerSettings::from_vars(vars(&[
            ("SELFHEAL_INGEST_RETRY_BASE_SECS", "1"),
            ("SELFHEAL_INGEST_RETRY_MAX_SECS", " 3 "),
            ("SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR", "20"),
        ]))
        .unwrap();
        assert_eq!(s.policy.max_new_incidents_per_hour, 20);
        assert_eq!(
            (s.backoff_secs(1), s.backoff_secs(2), s.backoff_secs(5)),
            (1, 2, 3)
        );
        let e = ConsumerSettings::from_vars(vars(&[("SELFHEAL_INGEST_RETRY_MAX_SECS", "15m")]))
            .unwrap_err();
        assert!(e.contains("SELFHEAL_INGEST_RETRY_MAX_SECS"), "{e}");
        let e = ConsumerSettings::from_vars(vars(&[("SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR", "-1")]))
            .unwrap_err();
        assert!(e.contains("SELFHEAL_MAX_NEW_INCIDENTS_PER_HOUR"), "{e}");
    }
}
