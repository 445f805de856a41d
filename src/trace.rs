//! The `TraceItem` a Tail Worker receives, as serde types.
//!
//! Shape: the Workers runtime's `TraceItem` (Cloudflare docs, "Tail Workers" → `TraceItem`; workerd
//! `src/workerd/api/trace.h`). Every field is optional: production and `wrangler dev` differ
//! (locally `scriptName` is null and there is no `scriptVersion`/`entrypoint`; see
//! `../shared/data/trace-items/SOURCE.md`), and new runtime versions add fields. Unknown fields are
//! ignored; a field of the wrong JSON type makes the *item* malformed (counted and skipped by
//! [`parse_batch`]), never the batch.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// One invocation of a producer Worker, as delivered to `tail(events)`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TraceItem {
    /// Worker name; `null` under `wrangler dev`.
    pub script_name: Option<String>,
    /// Deployed version (production only): `{id, tag, message}`.
    pub script_version: Option<ScriptVersion>,
    /// Named entrypoint (`WorkerEntrypoint` class) that handled the event, production only.
    pub entrypoint: Option<String>,
    /// `ok`, `exception`, `exceededCpu`, `exceededMemory`, `canceled`, `scriptNotFound`,
    /// `responseStreamDisconnected`, `unknown`, …
    pub outcome: Option<String>,
    /// Milliseconds since the Unix epoch when the event started.
    pub event_timestamp: Option<f64>,
    /// The triggering event; its shape depends on the handler (fetch, scheduled, queue, …).
    pub event: Option<TraceEvent>,
    /// `console.*` calls, in order.
    #[serde(deserialize_with = "null_as_default")]
    pub logs: Vec<TraceLog>,
    /// Uncaught exceptions and rejected `waitUntil` promises.
    #[serde(deserialize_with = "null_as_default")]
    pub exceptions: Vec<TraceException>,
    /// True when the runtime dropped logs because the item was too large.
    pub truncated: Option<bool>,
    /// CPU time in milliseconds (0 locally).
    pub cpu_time: Option<f64>,
    /// Wall time in milliseconds (0 locally).
    pub wall_time: Option<f64>,
    /// Workers for Platforms dispatch namespace, when any.
    pub dispatch_namespace: Option<String>,
}

/// `scriptVersion` of a deployed Worker.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ScriptVersion {
    /// Version id (a UUID).
    pub id: Option<String>,
    /// `--tag` given to `wrangler versions upload` / `deploy`.
    pub tag: Option<String>,
    /// `--message` given at upload.
    pub message: Option<String>,
}

/// The union of the event shapes; only the fields the pipeline reads are typed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TraceEvent {
    /// fetch: the request (headers already partly redacted by the runtime).
    pub request: Option<TraceRequest>,
    /// fetch: the response, absent when the handler threw.
    pub response: Option<TraceResponse>,
    /// scheduled: the cron expression.
    pub cron: Option<String>,
    /// scheduled/alarm: planned time, ms since the epoch.
    pub scheduled_time: Option<f64>,
    /// queue: the queue name.
    pub queue: Option<String>,
    /// queue: messages in the batch.
    pub batch_size: Option<u64>,
    /// email: envelope sender (PII: never stored).
    pub mail_from: Option<Value>,
    /// rpc: method name.
    pub rpc_method: Option<String>,
}

/// `event.request` of a fetch trace.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TraceRequest {
    /// Full URL, query included.
    pub url: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// Header name → value.
    #[serde(deserialize_with = "null_as_default")]
    pub headers: serde_json::Map<String, Value>,
    /// Cloudflare request properties: only the coarse location is read ([`TraceCf`]); the other
    /// thirty-odd properties (TLS, bot management, city, coordinates, …), two thirds of a
    /// TraceItem's bytes, are skipped without being built.
    pub cf: Option<TraceCf>,
}

/// The part of `event.request.cf` the pipeline keeps (Cloudflare docs,
/// `IncomingRequestCfProperties`): string values only; a property of another type reads as
/// absent (as the whole-map reading before it did), never makes the item malformed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TraceCf {
    /// IATA code of the data center (`DFW`).
    #[serde(deserialize_with = "string_or_none")]
    pub colo: Option<String>,
    /// ISO 3166-1 alpha-2 country of the client (`US`).
    #[serde(deserialize_with = "string_or_none")]
    pub country: Option<String>,
    /// Continent code (`NA`).
    #[serde(deserialize_with = "string_or_none")]
    pub continent: Option<String>,
}

/// A string value as `Some`, any other JSON value (skipped without building it) as `None`.
fn string_or_none<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            while a
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// `event.response` of a fetch trace.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TraceResponse {
    /// HTTP status code.
    pub status: Option<u16>,
}

/// One `console.*` call: `message` is the argument list as JSON values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TraceLog {
    /// Arguments of the call (strings, numbers, objects…).
    #[serde(deserialize_with = "null_as_default")]
    pub message: Vec<Value>,
    /// `debug`, `info`, `log`, `warn`, `error`.
    pub level: Option<String>,
    /// ms since the epoch.
    pub timestamp: Option<f64>,
}

/// One exception: `name` is the JS error class (`TypeError`), `stack` is V8's stack text
/// without the leading `Name: message` line.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TraceException {
    /// Error class.
    pub name: Option<String>,
    /// Error message (attacker-controllable text).
    pub message: Option<String>,
    /// Stack frames as text, when the runtime gives them.
    pub stack: Option<String>,
    /// ms since the epoch.
    pub timestamp: Option<f64>,
}

/// `null` reads as the type's default (an empty list or map); any other wrong type is an error.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl TraceItem {
    /// Response status of a fetch event, if any.
    pub fn status(&self) -> Option<u16> {
        self.event.as_ref()?.response.as_ref()?.status
    }

    /// The request of a fetch event, if any.
    pub fn request(&self) -> Option<&TraceRequest> {
        self.event.as_ref()?.request.as_ref()
    }

    /// Which handler ran: `fetch`, `scheduled`, `queue`, `email`, `rpc` or `other`.
    pub fn event_kind(&self) -> &'static str {
        match &self.event {
            Some(e) if e.request.is_some() => "fetch",
            Some(e) if e.cron.is_some() => "scheduled",
            Some(e) if e.queue.is_some() => "queue",
            Some(e) if e.mail_from.is_some() => "email",
            Some(e) if e.rpc_method.is_some() => "rpc",
            _ => "other",
        }
    }

    /// The release this event ran: `scriptVersion.tag`, else `scriptVersion.id`, else None.
    pub fn release(&self) -> Option<&str> {
        let v = self.script_version.as_ref()?;
        v.tag
            .as_deref()
            .filter(|t| !t.is_empty())
            .or(v.id.as_deref())
    }
}

/// Why an item of a batch could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedItem {
    /// Position in the batch (0-based).
    pub index: usize,
    /// serde's message (no payload text, so nothing secret is echoed).
    pub error: String,
}

/// Result of parsing a tail batch: the usable items and the malformed ones.
#[derive(Debug, Default)]
pub struct ParsedBatch {
    /// Items that parsed, with their batch index.
    pub items: Vec<(usize, TraceItem)>,
    /// Items that did not.
    pub malformed: Vec<MalformedItem>,
}

/// Errors of the batch as a whole (the JSON is not an array at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError(pub String);

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tail batch is not a JSON array: {}", self.0)
    }
}

impl std::error::Error for BatchError {}

/// Parses `JSON.stringify(events)` of a tail invocation.
///
/// Input: a JSON array of TraceItems. The whole array is read in one pass first; when that
/// fails, each element is parsed on its own, so an element of the wrong
/// shape (say `"logs": 5`) lands in [`ParsedBatch::malformed`] and the others are kept. So does an
/// element nested deeper than serde_json's recursion limit (128): the array is split with
/// [`RawValue`], which skips over elements without a depth limit, so only that element fails.
/// Lone UTF-16 surrogates (`"\ud800"`, which `JSON.stringify` writes for a string holding half a
/// surrogate pair) become U+FFFD instead of making the item malformed (see `parse_item`).
///
/// Errors: [`BatchError`] only when the text is not a JSON array.
pub fn parse_batch(json: &str) -> Result<ParsedBatch, BatchError> {
    // The common case, a batch whose every item is well formed, in one pass over the text; only
    // a batch that fails goes through the split below (every item parsed on its own).
    if let Ok(items) = serde_json::from_str::<Vec<TraceItem>>(json) {
        return Ok(ParsedBatch {
            items: items.into_iter().enumerate().collect(),
            malformed: Vec::new(),
        });
    }
    let raw: Vec<&RawValue> = serde_json::from_str(json).map_err(|e| BatchError(e.to_string()))?;
    let mut out = ParsedBatch::default();
    for (index, item) in raw.into_iter().enumerate() {
        match parse_item(item.get()) {
            Ok(t) => out.items.push((index, t)),
            Err(e) => out.malformed.push(MalformedItem {
                index,
                error: e.to_string(),
            }),
        }
    }
    Ok(out)
}

/// Parses one TraceItem of a batch.
///
/// serde_json refuses `\uD800`–`\uDFFF` escapes that are not a well-formed surrogate pair (Rust
/// strings cannot hold them), but JavaScript strings can, and `JSON.stringify` writes them as such
/// escapes: a message that sliced an emoji in half would make its whole item malformed. When
/// parsing fails and the text has such escapes, they are replaced by `\uFFFD` (what
/// `String::from_utf16_lossy` does) and the item is parsed once more.
fn parse_item(json: &str) -> Result<TraceItem, serde_json::Error> {
    match serde_json::from_str::<TraceItem>(json) {
        Ok(t) => Ok(t),
        Err(e) => match replace_lone_surrogates(json) {
            Some(fixed) => serde_json::from_str(&fixed),
            None => Err(e),
        },
    }
}

/// `json` with every `\u` escape of a lone surrogate (inside a string) replaced by `\ufffd`, or
/// `None` when there is none. A well-formed pair (`\ud83d\ude00`) and an escaped backslash
/// followed by `u` (`\\ud800`, literal text) are left alone. Only ASCII is rewritten, so the
/// result is valid UTF-8 whatever the input.
fn replace_lone_surrogates(json: &str) -> Option<String> {
    let b = json.as_bytes();
    let escape_at = |i: usize| -> Option<u16> {
        if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
            return None;
        }
        let hex = json.get(i + 2..i + 6)?;
        u16::from_str_radix(hex, 16).ok()
    };
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut in_string = false;
    let mut i = 0;
    while i < b.len() {
        match b.get(i) {
            Some(b'"') => {
                in_string = !in_string;
                i += 1;
            }
            Some(b'\\') if in_string => match escape_at(i) {
                Some(0xD800..=0xDBFF)
                    if escape_at(i + 6).is_some_and(|lo| (0xDC00..=0xDFFF).contains(&lo)) =>
                {
                    i += 12;
                }
                Some(0xD800..=0xDFFF) => {
                    let o = out.get_or_insert_with(|| String::with_capacity(json.len()));
                    o.push_str(json.get(copied..i).unwrap_or(""));
                    o.push_str("\\ufffd");
                    i += 6;
                    copied = i;
                }
                Some(_) => i += 6,
                // any other escape: the backslash and the escaped char
                None => i += 2,
            },
            _ => i += 1,
        }
    }
    let mut o = out?;
    o.push_str(json.get(copied..).unwrap_or(""));
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_item_is_isolated() {
        let batch = r#"[{"outcome":"ok","logs":[]},{"outcome":"ok","logs":5},{"exceptions":[{"name":"E","message":"m"}]}]"#;
        let parsed = parse_batch(batch).expect("array");
        assert_eq!(parsed.items.len(), 2);
        assert_eq!(parsed.malformed.len(), 1);
        assert_eq!(parsed.malformed[0].index, 1);
        assert_eq!(parsed.items[1].0, 2);
    }

    #[test]
    fn lone_surrogates_become_replacement_chars() {
        let batch = r#"[{"exceptions":[{"message":"a\ud800b \udc00 \ud83d\ude00 \\ud800"}]}]"#;
        let parsed = parse_batch(batch).expect("array");
        assert!(parsed.malformed.is_empty(), "{:?}", parsed.malformed);
        let message = parsed.items[0].1.exceptions[0].message.clone();
        assert_eq!(
            message.as_deref(),
            Some("a\u{fffd}b \u{fffd} \u{1f600} \\ud800")
        );
        // an item that is malformed for another reason stays malformed
        assert_eq!(
            parse_batch(r#"[{"logs":5,"k":"\ud800"}]"#)
                .expect("array")
                .malformed
                .len(),
            1
        );
        assert_eq!(replace_lone_surrogates(r#"{"a":"\u0041\n"}"#), None);
    }

    #[test]
    fn cf_keeps_location_strings_and_skips_the_rest() {
        let batch = r#"[{"event":{"request":{"url":"/","cf":{"colo":5,"country":"US","continent":"NA",
            "tlsClientAuth":{"certPresented":"0"},"botManagement":{"score":99,"detectionIds":[1,[2]]}}}}},
            {"event":{"request":{"url":"/","cf":{"colo":["x"],"country":{"a":null}}}}}]"#;
        let parsed = parse_batch(batch).expect("array");
        assert!(parsed.malformed.is_empty(), "{:?}", parsed.malformed);
        let cf = |i: usize| parsed.items[i].1.request().and_then(|r| r.cf.clone());
        let first = cf(0).expect("cf");
        assert_eq!(first.colo, None, "a number reads as absent");
        assert_eq!(first.country.as_deref(), Some("US"));
        assert_eq!(first.continent.as_deref(), Some("NA"));
        let second = cf(1).expect("cf");
        assert_eq!((second.colo, second.country), (None, None));
        // cf of the wrong type is still a malformed item (as a map field was before)
        assert_eq!(
            parse_batch(r#"[{"event":{"request":{"cf":5}}}]"#)
                .expect("array")
                .malformed
                .len(),
            1
        );
    }

    #[test]
    fn whole_batch_and_split_reading_agree() {
        let good = r#"[{"outcome":"ok"},{"outcome":"exception","exceptions":[{"name":"E"}]}]"#;
        let parsed = parse_batch(good).expect("array");
        let idx: Vec<usize> = parsed.items.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, vec![0, 1]);
        // one bad item sends the batch through the split: the others keep their indices
        let bad = r#"[{"outcome":"ok"},{"logs":"x"},{"outcome":"exception"}]"#;
        let parsed = parse_batch(bad).expect("array");
        let idx: Vec<usize> = parsed.items.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, vec![0, 2]);
        assert_eq!(parsed.malformed[0].index, 1);
    }

    #[test]
    fn not_an_array_is_a_batch_error() {
        assert!(parse_batch("{}").is_err());
        assert!(parse_batch("").is_err());
    }

    #[test]
    fn production_fields_and_release() {
        let item: TraceItem = serde_json::from_str(
            r#"{"scriptName":"api","entrypoint":"Api","scriptVersion":{"id":"5f1c","tag":"v1.2.3","message":"fix"},
                "event":{"request":{"url":"https://x/y","method":"POST","headers":{}},"response":{"status":502}},
                "outcome":"ok","eventTimestamp":1795269986919,"somethingNew":{"a":1}}"#,
        )
        .expect("parses");
        assert_eq!(item.release(), Some("v1.2.3"));
        assert_eq!(item.status(), Some(502));
        assert_eq!(item.event_kind(), "fetch");
        assert_eq!(item.entrypoint.as_deref(), Some("Api"));
    }

    #[test]
    fn nulls_everywhere_are_tolerated() {
        let item: TraceItem = serde_json::from_str(
            r#"{"scriptName":null,"event":null,"logs":null,"exceptions":[],"outcome":null,"eventTimestamp":null}"#,
        )
        .expect("parses");
        assert_eq!(item.event_kind(), "other");
        assert_eq!(item.release(), None);
    }
}
