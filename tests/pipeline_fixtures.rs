//! The tail pipeline on real TraceItems captured from workerd (`tests/fixtures/trace-items/`, ours,
//! copied from `../shared/data/trace-items/`; see its SOURCE.md): every payload parses, each
//! labelled one gets the verdict a person would give, and nothing secret survives into an Event.

use selfheal::config::PipelineConfig;
use selfheal::event::{NoiseReason, Verdict, event_key, process_batch, process_item};
use selfheal::trace::{TraceItem, parse_batch};
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/trace-items");

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture");
    serde_json::from_str(&text).expect("json")
}

fn labelled(label: &str) -> TraceItem {
    let all = load("labelled.json");
    let entry = all
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["label"] == label)
        .unwrap_or_else(|| panic!("no fixture {label}"));
    serde_json::from_value(entry["traceItem"].clone()).expect("TraceItem")
}

fn cfg() -> PipelineConfig {
    PipelineConfig::from_vars(Some("producer"), None, None).expect("cfg")
}

fn verdict(label: &str) -> Verdict {
    process_item(&labelled(label), &cfg(), 0)
}

fn event(label: &str) -> selfheal::event::Event {
    match verdict(label) {
        Verdict::Event(e) => *e,
        Verdict::Noise(r) => panic!("{label}: expected an event, got noise {r:?}"),
    }
}

#[test]
fn all_captured_payloads_parse() {
    let all = load("all.json");
    let items: Vec<Value> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["item"].clone())
        .collect();
    assert_eq!(items.len(), 58);
    let batch = serde_json::to_string(&items).expect("json");
    let parsed = parse_batch(&batch).expect("array");
    assert_eq!(parsed.items.len(), 58, "malformed: {:?}", parsed.malformed);
    let (events, counts) = process_batch(&batch, &cfg(), 0).expect("batch");
    assert_eq!(counts.items, 58);
    assert_eq!(counts.events + counts.noise, 58);
    assert_eq!(events.len() as u64, counts.events);
    assert!(counts.events >= 20 && counts.noise >= 10, "{counts:?}");
}

#[test]
fn uncaught_exception_keeps_type_message_and_in_app_frame() {
    let e = event("js_uncaught_exception_no_bundle");
    assert_eq!(e.components.exception_type, "Error");
    assert_eq!(e.components.route, "/throw");
    assert_eq!(e.components.status_class, "none");
    // workerd gives no scriptName locally: the request's host and port name the script (the
    // configured name is only the last resort, for events without a request).
    assert_eq!(e.components.script, "127.0.0.1:8790");
    assert_eq!(
        e.components.top_frame,
        "Object.fetch (/srv/app/producer/index.js)"
    );
    assert_eq!(e.outcome, "exception");
    assert!(e.message.starts_with("boom: uncaught exception"));
    assert_eq!(
        event("js_async_uncaught_exception_no_bundle")
            .components
            .exception_type,
        "TypeError"
    );
}

#[test]
fn bundled_dev_artifact_and_plain_500_are_http_status_incidents() {
    for label in [
        "js_uncaught_exception_bundled_dev_artifact",
        "js_returns_500",
    ] {
        let e = event(label);
        assert_eq!(e.components.exception_type, "HttpStatus", "{label}");
        assert_eq!(e.components.status_class, "5xx", "{label}");
    }
}

#[test]
fn console_error_groups_with_and_without_the_dev_prefix() {
    let plain = event("js_console_log_warn_error");
    let prefixed = event("js_console_multiworker_prefix_artifact");
    assert_eq!(plain.components.exception_type, "ConsoleError");
    assert!(
        plain
            .components
            .message
            .starts_with("something bad happened"),
        "{}",
        plain.components.message
    );
    assert_eq!(plain.components.message, prefixed.components.message);
    // The two were captured from two `wrangler dev` processes (two ports, so two script
    // identities): everything else of the fingerprint is the same.
    let mut same_script = prefixed.components.clone();
    same_script.script = plain.components.script.clone();
    assert_eq!(plain.components, same_script);
    assert_eq!(plain.fingerprint, same_script.fingerprint());
    assert_eq!(
        plain.logs.len(),
        2,
        "warn and error lines kept: {:?}",
        plain.logs
    );
}

#[test]
fn rust_panic_uses_the_panic_message_and_location() {
    let e = event("rust_panic");
    assert_eq!(e.components.exception_type, "RustPanic");
    assert_eq!(e.message, "deliberate rust panic in cron-worker");
    assert!(
        e.components.top_frame.contains("cron-worker/src/lib.rs"),
        "{}",
        e.components.top_frame
    );
    assert!(!e.components.top_frame.contains("panicking"));
}

#[test]
fn rust_error_logs_and_waituntil_rejections_are_events() {
    let err = event("rust_err_result");
    assert_eq!(err.components.exception_type, "ConsoleError");
    assert_eq!(err.message, "deliberate Err from cron-worker");
    let fetch = event("rust_outbound_fetch_failure");
    assert_eq!(fetch.components.exception_type, "Error");
    assert_eq!(fetch.message, "Network connection lost.");
    assert_eq!(fetch.components.route, "/outbound");
    let rejected = event("js_waituntil_rejection");
    assert_eq!(rejected.message, "rejected in waitUntil");
    assert_eq!(rejected.outcome, "ok");
}

#[test]
fn healthy_invocations_are_noise() {
    for label in [
        "rust_scheduled_event",
        "rust_test_scheduled_route_is_a_fetch",
        "rust_queue_event",
        "js_ok_with_log",
    ] {
        assert!(
            matches!(verdict(label), Verdict::Noise(NoiseReason::Healthy)),
            "{label}"
        );
    }
}

fn item(v: Value) -> TraceItem {
    serde_json::from_value(v).expect("item")
}

#[test]
fn client_errors_disconnects_and_configured_ignores_are_noise() {
    let c = PipelineConfig::from_vars(None, Some("AbortError"), Some(r#"["^rate limited"]"#))
        .expect("cfg");
    let v404 = item(
        json!({"outcome":"ok","event":{"request":{"url":"https://x/a"},"response":{"status":404}},
        "logs":[{"level":"error","message":["not found"]}]}),
    );
    assert!(matches!(
        process_item(&v404, &c, 0),
        Verdict::Noise(NoiseReason::ClientError)
    ));
    let canceled =
        item(json!({"outcome":"canceled","exceptions":[{"name":"Error","message":"x"}]}));
    assert!(matches!(
        process_item(&canceled, &c, 0),
        Verdict::Noise(NoiseReason::ClientDisconnected)
    ));
    let abort = item(
        json!({"outcome":"exception","exceptions":[{"name":"AbortError","message":"aborted"}]}),
    );
    assert!(matches!(
        process_item(&abort, &c, 0),
        Verdict::Noise(NoiseReason::Ignored)
    ));
    let limited = item(
        json!({"outcome":"exception","exceptions":[{"name":"Error","message":"rate limited by upstream"}]}),
    );
    assert!(matches!(
        process_item(&limited, &c, 0),
        Verdict::Noise(NoiseReason::Ignored)
    ));
    // A 4xx during which code threw is not noise: the exception is unexpected.
    let threw = item(
        json!({"outcome":"ok","event":{"request":{"url":"https://x/a"},"response":{"status":400}},
        "exceptions":[{"name":"TypeError","message":"x is undefined"}]}),
    );
    assert!(matches!(process_item(&threw, &c, 0), Verdict::Event(_)));
    // Exceeded CPU is a real incident even without an exception.
    let cpu = item(json!({"outcome":"exceededCpu","event":{"request":{"url":"https://x/heavy"}}}));
    match process_item(&cpu, &c, 0) {
        Verdict::Event(e) => assert_eq!(e.components.exception_type, "exceededCpu"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn same_bug_with_different_ids_and_values_has_one_fingerprint() {
    let mk = |id: u32, email: &str| {
        item(json!({"outcome":"exception","eventTimestamp": 1000 + id,
            "event":{"request":{"url":format!("https://api.example.com/users/{id}?ref={id}"),"method":"GET"}},
            "exceptions":[{"name":"TypeError","message":format!("user {id} ({email}) has no profile at 2026-11-21T10:00:0{}Z", id % 10),
                "stack":format!("    at getUser (file:///srv/app/index.js:{}:15)\n    at Object.fetch (file:///srv/app/index.js:40:3)", 10 + id)}]}))
    };
    let a = match process_item(&mk(17, "a@example.com"), &cfg(), 0) {
        Verdict::Event(e) => e,
        n => panic!("{n:?}"),
    };
    let b = match process_item(&mk(90211, "zed@example.org"), &cfg(), 0) {
        Verdict::Event(e) => e,
        n => panic!("{n:?}"),
    };
    assert_eq!(a.components, b.components);
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_ne!(a.event_key, b.event_key);
    assert_eq!(a.components.route, "/users/:id");
    assert_eq!(a.components.top_frame, "getUser (/srv/app/index.js)");
}

#[test]
fn event_key_is_deterministic_per_item() {
    let i = labelled("js_uncaught_exception_no_bundle");
    assert_eq!(event_key(&i), event_key(&i.clone()));
    let mut later = i.clone();
    later.event_timestamp = later.event_timestamp.map(|t| t + 1.0);
    assert_ne!(event_key(&i), event_key(&later));
}

/// Stored keys outlive a release: an item the runtime delivers again after a deploy must get
/// the key it got before (the insert is idempotent on it). Pinned from the release before
/// `event_key` wrote its numbers into a reused buffer.
#[test]
fn event_key_is_stable_across_releases() {
    // timestamps on the item, its exceptions and its logs; request headers
    let i = labelled("rust_panic");
    assert!(i.event_timestamp.is_some() && i.logs.iter().all(|l| l.timestamp.is_some()));
    assert!(!i.exceptions.is_empty() && i.request().is_some_and(|r| !r.headers.is_empty()));
    assert_eq!(event_key(&i), "d37325d9784899da81e0a66460e74a59");
}

#[test]
fn no_secret_survives_into_the_event() {
    let secrets = [
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "alice.secret@example.com",
        "AKIA2E0A8F3B244C9986",
        "hunter2-Sup3rSecret!",
        "ghp_DemoLeakedToken0000000000000000000001",
        "sk_live_51HdemoSecretKey000000000000",
        "4111 1111 1111 1111",
        "203.0.113.77",
    ];
    let [jwt, email, aws, password, gh, stripe, card, ip] = secrets;
    let hostile = item(json!({
        "outcome": "exception", "scriptName": "api", "eventTimestamp": 1,
        "event": {"request": {
            "url": format!("https://bob:{password}@api.example.com/u/{email}?token={jwt}&key={aws}"),
            "method": "POST",
            "headers": {"authorization": format!("Bearer {jwt}"), "cookie": format!("session={jwt}"),
                        "x-forwarded-for": ip, "user-agent": "curl/8", "referer": format!("https://x/?k={stripe}")},
            "cf": {"colo": "DFW", "country": "US", "city": "Austin", "latitude": "30.27", "asn": 395747}
        }},
        "exceptions": [{"name": "Error", "message": format!("charge failed for {email} card {card} from {ip} with {stripe}"),
                        "stack": format!("    at charge (file:///srv/app/pay.js:3:9) {aws}")}],
        "logs": [
            {"level": "error", "message": ["login", {"user": email, "password": password, "nested": {"token": gh}}]},
            {"level": "warn", "message": [format!("Authorization: Bearer {gh}")]}
        ]
    }));
    let e = match process_item(&hostile, &cfg(), 0) {
        Verdict::Event(e) => e,
        n => panic!("{n:?}"),
    };
    let stored = serde_json::to_string(&*e).expect("json");
    for s in secrets {
        assert!(!stored.contains(s), "secret {s:?} survived: {stored}");
    }
    assert!(
        !stored.contains("Austin") && !stored.contains("395747"),
        "cf beyond colo/country kept: {stored}"
    );
    assert!(stored.contains("DFW"));
    assert!(!e.remarks.is_empty());
    assert!(
        e.remarks
            .iter()
            .all(|r| !r.rule.is_empty() && r.start <= r.end)
    );
}

#[test]
fn a_malformed_item_is_counted_and_the_rest_kept() {
    let good = load("labelled.json")[0]["traceItem"].clone();
    let batch = json!([good, {"logs": "not a list"}, good, 42]).to_string();
    let (events, counts) = process_batch(&batch, &cfg(), 0).expect("batch");
    assert_eq!(counts.items, 4);
    assert_eq!(counts.malformed, 2);
    assert_eq!(events.len(), 2);
    assert!(process_batch("{\"not\":\"an array\"}", &cfg(), 0).is_err());
}
