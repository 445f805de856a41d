//! Tail batch text → `parse_batch` and `process_batch` (default config).
//!
//! Invariants: the two agree on whether the text is a batch; counts add up (events + noise +
//! malformed = items); every event keeps its documented bounds (message and log lines within
//! `MAX_MESSAGE_BYTES`, at most `MAX_LOG_LINES` lines, the stack excerpt within
//! `MAX_STACK_LINES` lines plus a marker line, at most `MAX_REMARKS` remarks, at most
//! `MAX_HEADERS` headers plus the marker key, a route of at most `MAX_SEGMENTS` segments),
//! remarks on the stored text fields point inside them at char boundaries, a cut field ends
//! with the truncation marker, and the same batch gives the same events again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal::config::PipelineConfig;
use selfheal::event::{
    Event, MAX_LOG_LINES, MAX_MESSAGE_BYTES, MAX_REMARKS, MAX_STACK_LINES, process_batch,
};
use selfheal::route::{MAX_SEGMENTS, MAX_URL_BYTES};
use selfheal::scrub::{MAX_HEADERS, TRUNCATION_MARKER};
use selfheal::trace::parse_batch;

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_event(e: &Event) {
    assert!(
        e.message.len() <= MAX_MESSAGE_BYTES,
        "message {}",
        e.message.len()
    );
    assert!(e.logs.len() <= MAX_LOG_LINES, "logs {}", e.logs.len());
    for l in &e.logs {
        assert!(l.len() <= MAX_MESSAGE_BYTES, "log line {}", l.len());
    }
    assert!(
        e.stack.lines().count() <= MAX_STACK_LINES + 1,
        "stack lines"
    );
    assert!(
        e.remarks.len() <= MAX_REMARKS,
        "remarks {}",
        e.remarks.len()
    );
    assert!(is_hex32(&e.event_key) && is_hex32(&e.fingerprint));
    assert_eq!(e.fingerprint, e.components.fingerprint());
    let route = &e.components.route;
    if e.event_kind == "fetch" {
        assert!(route.starts_with('/'), "{route:?}");
        assert!(route.split('/').count() <= MAX_SEGMENTS + 1, "{route:?}");
        assert!(route.len() <= MAX_URL_BYTES + 3 * MAX_SEGMENTS + 1);
    }
    for r in &e.remarks {
        let value = match r.field.as_str() {
            "error.message" => e.message.as_str(),
            "error.stack" => e.stack.as_str(),
            "request.url" => e.url.as_deref().unwrap_or(""),
            _ => continue,
        };
        assert!(
            r.start <= r.end && value.get(r.start..r.end).is_some(),
            "{r:?} outside {} bytes",
            value.len()
        );
        if r.rule == "@truncate" {
            assert_eq!(value.get(r.start..r.end), Some(TRUNCATION_MARKER), "{r:?}");
        }
    }
    let truncated = |field: &str| {
        e.remarks
            .iter()
            .any(|r| r.field == field && r.rule == "@truncate")
    };
    if truncated("error.message") {
        assert!(e.message.ends_with(TRUNCATION_MARKER));
    }
    if let Some(h) = e.request.get("headers").and_then(|h| h.as_object()) {
        assert!(h.len() <= MAX_HEADERS + 1, "headers {}", h.len());
        if truncated("request.headers") {
            // the count of dropped headers (a header of that name would hold a string)
            assert!(h.get(TRUNCATION_MARKER).is_some_and(|v| v.is_u64()));
        }
    }
    if let Some(cf) = e.request.get("cf").and_then(|c| c.as_object()) {
        assert!(cf.len() <= 3);
    }
    // everything an event holds can be stored (serialized)
    assert!(serde_json::to_string(e).is_ok());
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = PipelineConfig::default();
    let parsed = parse_batch(text);
    let processed = process_batch(text, &cfg, 1_700_000_000_000);
    match (parsed, processed) {
        (Err(_), Err(_)) => {}
        (Ok(p), Ok((events, counts))) => {
            assert_eq!(counts.items, (p.items.len() + p.malformed.len()) as u64);
            assert_eq!(counts.malformed, p.malformed.len() as u64);
            assert_eq!(
                counts.events + counts.noise + counts.malformed,
                counts.items
            );
            assert_eq!(events.len() as u64, counts.events);
            for e in &events {
                check_event(e);
            }
            // deterministic: the same batch gives the same events (no clock, no randomness)
            let (again, counts_again) =
                process_batch(text, &cfg, 1_700_000_000_000).expect("parsed once already");
            assert_eq!(counts_again, counts);
            for (a, b) in events.iter().zip(&again) {
                assert_eq!(a.event_key, b.event_key);
                assert_eq!(a.fingerprint, b.fingerprint);
                assert_eq!(a.message, b.message);
                assert_eq!(a.remarks, b.remarks);
            }
        }
        (p, r) => panic!(
            "parse_batch ok={} but process_batch ok={}",
            p.is_ok(),
            r.is_ok()
        ),
    }
});
