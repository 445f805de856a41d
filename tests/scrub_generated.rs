//! A generated corpus of prefix-less secrets in realistic contexts (database errors echoing a
//! value, logged headers, form bodies, JSON logs, free text), seeded and built here as code, and
//! the four shapes that leaked in issue 9 (a bare AWS secret access key in a DB error,
//! `pk_prod_…`, `sess_…` from a header, a password holding `&`). Each secret goes through the
//! tail pipeline (`event::process_item`) in the exception message and stack, a log line (string
//! and structured argument), the request URL and headers; then into an incident, a ticket body,
//! a tracker issue body and the agent task (`ticket::body`, `ticket::issue_body`, `ticket::task`).
//! No secret, nor any 8-character piece of one, may appear in any of them.

#[path = "../benches/support/corpus.rs"]
mod corpus;

use corpus::Lcg;
use selfheal::config::PipelineConfig;
use selfheal::event::{Event, Verdict, process_item};
use selfheal::store::{EventSample, IncidentRow, TicketRow};
use selfheal::ticket;
use selfheal::trace::TraceItem;
use serde_json::{Value, json};

const SEED: u64 = 0x5ec2_e709;
const NOW_MS: i64 = 1_795_300_000_000;

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const LOWER_NUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";
const PASSWORD: &[u8] = b"ABCDEFGHJKLMNPQRSTabcdefghijkmnopqrst23456789!@#$%^*&";

/// A secret and whether it is recognisable by content alone (random enough) or only by the key
/// it sits under (a password, a hex token).
struct Secret {
    value: String,
    by_content: bool,
}

fn secret(rng: &mut Lcg) -> Secret {
    let (value, by_content) = match rng.below(8) {
        // an AWS secret access key: 40 base64 chars, no prefix
        0 => (rng.chars(B64, 40), true),
        1 => (rng.chars(ALNUM, 32), true),
        2 => (rng.chars(B64URL, 43), true),
        3 => (format!("sess_{}", rng.chars(ALNUM, 24)), true),
        4 => (format!("pk_prod_{}", rng.chars(ALNUM, 24)), true),
        5 => (rng.chars(LOWER_NUM, 48), false),
        6 => (rng.chars(HEX, 32), false),
        // a password with an `&` in it
        _ => {
            let mut p = rng.chars(PASSWORD, 12);
            p.insert(rng.below(10) + 1, '&');
            (p, false)
        }
    };
    // guarantee the classes the content detectors rely on (a generator draw can miss one)
    let value = if by_content && !value.starts_with("sess_") && !value.starts_with("pk_") {
        format!("{value}Q7z")
    } else {
        value
    };
    Secret { value, by_content }
}

/// Contexts that name the secret by a key (any secret), then free-text contexts that do not
/// (only secrets recognisable by content).
const KEYED: &[&str] = &[
    "duplicate key value violates unique constraint \"api_keys_pkey\"\nDETAIL: Key (api_key)=({S}) already exists.",
    "D1_ERROR: UNIQUE constraint failed: sessions.token: {S}",
    "Query failed: SELECT id FROM users WHERE api_key = '{S}' LIMIT 1",
    "x-api-key: {S}",
    "Authorization: {S}",
    "X-Session-Token: {S}",
    "x-acme-key: {S}",
    "cookie: sid={S}; theme=dark",
    "password={S}&user=bob&remember=1",
    "client_secret={S}&grant_type=client_credentials",
    "Unexpected token 'p', \"password={S}&user=bob\" is not valid JSON",
    "{\"level\":\"error\",\"msg\":\"auth failed\",\"apiKey\":\"{S}\"}",
    "{\"user\":\"bob\",\"password\":\"{S}\"}",
    "{\"headers\":{\"x-session\":\"{S}\"}}",
    "login failed { user: 'bob', password: '{S}' }",
];
const FREE: &[&str] = &[
    "SQLITE_ERROR: near \"{S}\": syntax error",
    "error: invalid input syntax for type uuid: \"{S}\"",
    "invalid key {S} for tenant 42",
    "token {S} expired",
    "retrying with {S} after 3 attempts",
    "Stripe error: Invalid API Key provided: {S}",
    "session header {S} not found in store",
    "duplicate key value violates unique constraint\nDETAIL: Key (owner_id, label)=(7, {S}) already exists.",
];

/// A failing fetch TraceItem carrying `secret` in `text` everywhere a secret can sit.
fn item(text: &str, secret: &str, json_key: &str) -> Value {
    json!({
        "outcome": "exception",
        "scriptName": "api",
        "eventTimestamp": NOW_MS,
        "exceptions": [{
            "name": "Error",
            "message": text,
            "stack": format!("Error: {text}\n    at handler (file:///srv/app/index.js:10:5)\n    at async fetch (file:///srv/app/index.js:3:1)"),
            "timestamp": NOW_MS
        }],
        "logs": [{
            "level": "error",
            "message": [text, { json_key: secret, "attempt": 3 }],
            "timestamp": NOW_MS
        }],
        "event": {
            "request": {
                "url": format!("https://api.example.com/v1/export?api_key={secret}&page=2"),
                "method": "POST",
                "headers": {
                    "x-api-key": secret,
                    "authorization": format!("Bearer {secret}"),
                    "x-session": secret,
                    "referer": format!("https://app.example.com/cb?token={secret}"),
                    "user-agent": "Mozilla/5.0"
                }
            },
            "response": { "status": 500 }
        }
    })
}

/// Every place an event's text is stored, sent or shown: the event, its ingest Queue message, and
/// the incident, ticket body, tracker body and agent task built from it.
fn stored_forms(e: &Event) -> Vec<(&'static str, String)> {
    let incident = IncidentRow {
        id: 1,
        fingerprint: e.fingerprint.clone(),
        fingerprint_version: i64::from(e.components.version),
        script_name: e.components.script.clone(),
        route_pattern: e.components.route.clone(),
        exception_type: e.components.exception_type.clone(),
        normalized_message: e.components.message.clone(),
        top_frame: e.components.top_frame.clone(),
        status_class: e.components.status_class.clone(),
        occurrence_count: 1,
        stored_events: 1,
        first_seen: e.timestamp_ms,
        last_seen: e.timestamp_ms,
        first_release: e.release.clone(),
        last_release: e.release.clone(),
        status: "open".into(),
        ticket_id: None,
    };
    // Exactly the row storing the event gives (request summary included: the ticket shows it).
    let sample = EventSample::from(e);
    let samples = [sample];
    let body = ticket::body(&incident, &samples);
    let row = TicketRow {
        id: 1,
        incident_id: 1,
        fingerprint: e.fingerprint.clone(),
        title: ticket::title(&incident),
        body: body.clone(),
        state: "open".into(),
        created_at: NOW_MS,
        queued_at: None,
    };
    vec![
        ("event", serde_json::to_string(e).unwrap_or_default()),
        // The message the tail Worker puts on the ingest Queue (nothing raw may leave it).
        (
            "queue message",
            selfheal::storage::ingest::messages(std::slice::from_ref(e), &[], NOW_MS, || {
                "m".to_string()
            })
            .concat(),
        ),
        ("incident", format!("{incident:?}")),
        ("ticket body", body),
        ("tracker body", ticket::issue_body(&incident, &samples)),
        ("title", row.title.clone()),
        ("task", ticket::task(&incident, &row).to_string()),
    ]
}

/// The first 8-byte piece of `secret` found in `stored` (JSON escaping aside), if any.
fn leaked_piece<'a>(stored: &str, secret: &'a str) -> Option<&'a str> {
    if stored.contains(secret) {
        return Some(secret);
    }
    let b = secret.as_bytes();
    (0..b.len().saturating_sub(7))
        .filter_map(|i| secret.get(i..i + 8))
        .find(|piece| stored.contains(piece))
}

fn check(text: &str, secret: &str, json_key: &str, failures: &mut Vec<String>) {
    let value = item(text, secret, json_key);
    let item: TraceItem = match serde_json::from_value(value) {
        Ok(i) => i,
        Err(e) => panic!("test item does not parse: {e}"),
    };
    let Verdict::Event(e) = process_item(&item, &PipelineConfig::default(), NOW_MS) else {
        panic!("a failing request with an exception must be an event: {text}");
    };
    for (place, stored) in stored_forms(&e) {
        if let Some(piece) = leaked_piece(&stored, secret) {
            let at = stored.find(piece).unwrap_or(0);
            let from = stored.floor_char_boundary(at.saturating_sub(60));
            let to = stored.ceil_char_boundary((at + 60).min(stored.len()));
            failures.push(format!(
                "{place}: {piece:?} of {secret:?} in context {text:?}: …{}…",
                &stored[from..to]
            ));
        }
    }
}

#[test]
fn the_four_leaked_shapes_are_scrubbed_everywhere() {
    let mut failures = Vec::new();
    for (text, secret) in [
        (
            "duplicate key value violates unique constraint \"credentials_pkey\"\nDETAIL: Key (id, secret)=(7, wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY) already exists.",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        (
            "Invalid API Key provided: pk_prod_4eC39HqLyjWDarjtT1zdp7dc",
            "pk_prod_4eC39HqLyjWDarjtT1zdp7dc",
        ),
        (
            "session lookup failed for header x-session: sess_9fKd02LmQx7PzR4tVb81NcWe",
            "sess_9fKd02LmQx7PzR4tVb81NcWe",
        ),
        (
            "login failed for {\"user\":\"bob\",\"password\":\"tr0ub&dor&Pa55\"} and password=tr0ub&dor&Pa55&user=bob",
            "tr0ub&dor&Pa55",
        ),
    ] {
        check(text, secret, "password", &mut failures);
    }
    assert!(failures.is_empty(), "leaks:\n{}", failures.join("\n"));
}

#[test]
fn generated_prefixless_secrets_are_scrubbed_everywhere() {
    let mut rng = Lcg::new(SEED);
    let json_keys = [
        "apiKey",
        "password",
        "session",
        "client_secret",
        "x-api-key",
    ];
    let mut failures = Vec::new();
    let (mut keyed, mut free) = (0, 0);
    for _ in 0..400 {
        let s = secret(&mut rng);
        let use_free = s.by_content && rng.chance(50);
        let template = if use_free {
            free += 1;
            FREE[rng.below(FREE.len())]
        } else {
            keyed += 1;
            KEYED[rng.below(KEYED.len())]
        };
        let text = template.replace("{S}", &s.value);
        let key = json_keys[rng.below(json_keys.len())];
        check(&text, &s.value, key, &mut failures);
    }
    assert!(keyed > 100 && free > 50, "keyed {keyed}, free {free}");
    assert!(
        failures.is_empty(),
        "{} leaks:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The other side of the line: benign values under harmless keys stay visible where an agent
/// needs them to reproduce (message, URL).
#[test]
fn benign_values_stay_visible() {
    let text = "export failed: page=2 limit=Infinity sort=asc pageSize=50 retries=3";
    let value = json!({
        "outcome": "exception",
        "scriptName": "api",
        "eventTimestamp": NOW_MS,
        "exceptions": [{ "name": "Error", "message": text, "stack": "", "timestamp": NOW_MS }],
        "logs": [],
        "event": { "request": {
            "url": "https://api.example.com/v1/export?page=2&limit=Infinity&sort=asc&pageSize=50",
            "method": "GET", "headers": {} }, "response": { "status": 500 } }
    });
    let item: TraceItem = serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"));
    let Verdict::Event(e) = process_item(&item, &PipelineConfig::default(), NOW_MS) else {
        panic!("not an event");
    };
    assert_eq!(e.message, text);
    assert_eq!(
        e.url.as_deref(),
        Some("https://api.example.com/v1/export?page=2&limit=Infinity&sort=asc&pageSize=50")
    );
}
