//! Untrusted text stays data (issue 4, §4): error messages, URLs, stacks and logs are
//! attacker-controlled. Every payload of `tests/fixtures/injection/payloads.json` (instructions to
//! the agent, fake fences, HTML comments, a forged fingerprint marker, markdown links, mentions,
//! very long lines, control characters) is put into every untrusted field, once straight into the
//! rows (worst case, unscrubbed) and once through the real tail pipeline, and every rendered
//! artefact is checked: ticket body, tracker issue body, run comment, title and task JSON.
//!
//! "Inside its fence" is checked with CommonMark's fenced-code rules (a fence closes only on a
//! line of at least as many backticks, indented at most 3 spaces): every line holding the canary
//! word must be inside a fenced block, each fenced block is preceded by an "Untrusted" note, and
//! each block is bounded.

use selfheal::config::PipelineConfig;
use selfheal::event::{Verdict, process_item};
use selfheal::github::find_marked;
use selfheal::store::{EventSample, IncidentRow, TicketRow};
use selfheal::ticket::{self, MAX_TITLE_CHARS, MAX_UNTRUSTED_BYTES};
use selfheal::trace::TraceItem;
use serde_json::{Value, json};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/injection/payloads.json"
);
const CANARY: &str = "CANARY";
/// Longest rendered ticket body with every field at its bound (measured ~12 KB).
const MAX_BODY_BYTES: usize = 24 * 1024;

struct Payload {
    name: String,
    text: String,
}

fn fixture() -> (Vec<Payload>, String) {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).expect("fixture"))
        .expect("fixture JSON");
    let victim = v["victim_fingerprint"]
        .as_str()
        .expect("victim")
        .to_string();
    let payloads = v["payloads"]
        .as_array()
        .expect("payloads")
        .iter()
        .map(|p| {
            let text = p["text"].as_str().expect("text");
            let times = p.get("repeat").and_then(Value::as_u64).unwrap_or(1) as usize;
            Payload {
                name: p["name"].as_str().expect("name").to_string(),
                text: text.repeat(times),
            }
        })
        .collect();
    (payloads, victim)
}

/// Byte ranges of fenced code blocks' contents, per CommonMark backtick fences.
fn fenced_lines(md: &str) -> Vec<(usize, bool)> {
    // (line index, inside a fence's content)
    let mut out = Vec::new();
    let mut open: Option<usize> = None;
    for (i, line) in md.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        let ticks = rest.len() - rest.trim_start_matches('`').len();
        match open {
            None if indent <= 3 && ticks >= 3 && !rest[ticks..].contains('`') => {
                open = Some(ticks);
                out.push((i, false));
            }
            Some(n) if indent <= 3 && ticks >= n && rest[ticks..].trim().is_empty() => {
                open = None;
                out.push((i, false));
            }
            Some(_) => out.push((i, true)),
            None => out.push((i, false)),
        }
    }
    assert!(open.is_none(), "a fence is left open:\n{md}");
    out
}

/// Every canary line inside a fence; every fence preceded by an "Untrusted" note; blocks bounded.
fn assert_contained(md: &str, what: &str) {
    let lines: Vec<&str> = md.lines().collect();
    let marks = fenced_lines(md);
    for (i, inside) in &marks {
        if lines[*i].contains(CANARY) {
            assert!(
                inside,
                "{what}: canary outside a fence at line {i}: {:?}",
                lines[*i]
            );
        }
    }
    // Contiguous fenced regions: size bound and an "Untrusted" note somewhere above.
    let mut block = 0usize;
    for (i, inside) in &marks {
        if *inside {
            block += lines[*i].len() + 1;
            let above = lines[..*i].join("\n");
            assert!(
                above.contains("Untrusted"),
                "{what}: fence at line {i} not marked untrusted"
            );
        } else {
            assert!(
                block <= MAX_UNTRUSTED_BYTES + 64,
                "{what}: fenced block of {block} bytes"
            );
            block = 0;
        }
    }
    for c in md.chars() {
        assert!(
            c == '\n' || c == '\t' || !c.is_control(),
            "{what}: control character U+{:04X}",
            c as u32
        );
        assert!(
            !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'),
            "{what}: bidi control U+{:04X}",
            c as u32
        );
    }
}

fn incident(text: &str) -> IncidentRow {
    IncidentRow {
        id: 7,
        fingerprint: "0123456789abcdef0123456789abcdef".into(),
        fingerprint_version: 1,
        script_name: text.into(),
        route_pattern: text.into(),
        exception_type: text.into(),
        normalized_message: text.into(),
        top_frame: text.into(),
        status_class: "5xx".into(),
        occurrence_count: 3,
        stored_events: 3,
        first_seen: 0,
        last_seen: 1,
        // Releases (the deployer's scriptVersion tag) and outcomes (the runtime's) are not request
        // data; they are rendered as cleaned table cells, not fences.
        first_release: Some("v1".into()),
        last_release: Some("v2".into()),
        status: "open".into(),
        ticket_id: None,
    }
}

fn sample(fingerprint: &str, text: &str) -> EventSample {
    EventSample {
        fingerprint: fingerprint.into(),
        method: Some(text.into()),
        url: Some(text.into()),
        status: Some(500),
        outcome: "exception".into(),
        message: text.into(),
        stack: text.into(),
        logs: serde_json::to_string(&vec![text, text]).expect("logs"),
        release: Some("v2".into()),
        event_timestamp: 0,
        // Untrusted text in every request field the ticket shows (headers, colo, query keys).
        request: Some(
            serde_json::json!({"method": text, "url": format!("/x?{text}=1"),
                "headers": {"content-type": text, "content-length": text},
                "cf": {"colo": text, "country": text}})
            .to_string(),
        ),
    }
}

fn check_everything(name: &str, inc: &IncidentRow, samples: &[EventSample], victim: &str) {
    let body = ticket::body(inc, samples);
    assert!(
        body.len() <= MAX_BODY_BYTES,
        "{name}: body {} bytes",
        body.len()
    );
    assert_contained(&body, &format!("{name}/body"));

    let issue = ticket::issue_body(inc, samples);
    assert_contained(&issue, &format!("{name}/issue"));
    // A marker quoted by an attacker never makes this issue look like the victim's.
    let listed = json!([{ "number": 1, "html_url": "u", "state": "open", "body": issue }]);
    assert_eq!(find_marked(&listed.to_string(), victim), None, "{name}");
    assert!(
        find_marked(&listed.to_string(), &inc.fingerprint).is_some(),
        "{name}"
    );

    let title = ticket::title(inc);
    assert!(
        !title.contains('\n') && !title.chars().any(char::is_control),
        "{name}: {title:?}"
    );
    assert!(
        title.chars().count() <= MAX_TITLE_CHARS + 1,
        "{name}: title too long"
    );

    let detail = samples.first().map(|s| s.message.as_str());
    let comment = ticket::run_comment(3, "failed", detail, Some("javascript:selfheal-link-test"));
    assert!(
        !comment.contains("selfheal-link-test"),
        "{name}: a link that is not http(s) was kept"
    );
    assert_contained(&comment, &format!("{name}/comment"));

    let t = TicketRow {
        id: 1,
        incident_id: inc.id,
        fingerprint: inc.fingerprint.clone(),
        title: title.clone(),
        body: body.clone(),
        state: "open".into(),
        created_at: 0,
        queued_at: None,
    };
    let task = ticket::task(inc, &t);
    let untrusted: Vec<&str> = task["untrusted_fields"]
        .as_array()
        .expect("untrusted_fields")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (path, value) in leaves(&task, String::new()) {
        if value.contains(CANARY) {
            assert!(
                untrusted.contains(&path.as_str()),
                "{name}: canary in {path}, which is not listed as untrusted"
            );
        }
    }
    assert!(
        task["incident"]["normalized_message"]
            .as_str()
            .is_some_and(|m| m.len() <= MAX_UNTRUSTED_BYTES + 40),
        "{name}: task message unbounded"
    );
}

/// (dotted path, string value) of every string leaf of a JSON value.
fn leaves(v: &Value, path: String) -> Vec<(String, String)> {
    match v {
        Value::String(s) => vec![(path, s.clone())],
        Value::Object(m) => m
            .iter()
            .flat_map(|(k, x)| {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(x, p)
            })
            .collect(),
        Value::Array(a) => a.iter().flat_map(|x| leaves(x, path.clone())).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn payloads_in_every_field_stay_fenced_bounded_and_marked() {
    let (payloads, victim) = fixture();
    assert!(payloads.len() >= 10);
    for p in &payloads {
        let inc = incident(&p.text);
        let samples = vec![sample(&inc.fingerprint, &p.text); 3];
        check_everything(&p.name, &inc, &samples, &victim);
    }
}

#[test]
fn payloads_through_the_tail_pipeline_stay_fenced_bounded_and_marked() {
    let (payloads, victim) = fixture();
    let cfg = PipelineConfig::default();
    for p in &payloads {
        let item: TraceItem = serde_json::from_value(json!({
            "outcome": "exception",
            "eventTimestamp": 1_795_000_000_000_i64,
            "event": { "request": { "method": "GET", "url": format!("https://shop.example/x?q={}", p.text), "headers": {} } },
            "exceptions": [{ "name": "Error", "message": p.text, "stack": format!("Error: {}\n    at fetch (src/index.js:1:2)", p.text), "timestamp": 0 }],
            "logs": [{ "level": "error", "message": [p.text, { "nested": p.text }], "timestamp": 0 }],
        }))
        .expect("TraceItem");
        let Verdict::Event(e) = process_item(&item, &cfg, 0) else {
            panic!("{}: not an event", p.name);
        };
        let inc = IncidentRow {
            fingerprint: e.fingerprint.clone(),
            script_name: e.components.script.clone(),
            route_pattern: e.components.route.clone(),
            exception_type: e.components.exception_type.clone(),
            normalized_message: e.components.message.clone(),
            top_frame: e.components.top_frame.clone(),
            ..incident("x")
        };
        // Exactly the row storing the event gives (request summary included: the ticket shows it).
        let sample = EventSample::from(&*e);
        check_everything(&p.name, &inc, &[sample], &victim);
    }
}

#[test]
fn the_checker_catches_an_unfenced_canary() {
    // The checks above must be able to fail: a canary outside a fence, a fence closed from inside.
    let bad = "Untrusted:\n\n```text\nok\n```\nCANARY here\n";
    assert!(std::panic::catch_unwind(|| assert_contained(bad, "self-test")).is_err());
    let closed = "Untrusted:\n\n```text\nx\n```\nCANARY\n```\n";
    assert!(std::panic::catch_unwind(|| assert_contained(closed, "self-test")).is_err());
    assert_contained("Untrusted:\n\n````text\n```\nCANARY\n````\n", "self-test");
}
