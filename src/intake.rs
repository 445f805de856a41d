//! Other ways in: errors another monitor already grouped, turned into the same incidents, tickets
//! and fix runs as TraceItems (the agent-runner's `POST /api/intake/*`).
//!
//! **Sentry** (internal integration webhooks; <https://docs.sentry.io/integrations/integration-platform/webhooks/>):
//! - `Sentry-Hook-Signature`: lowercase hex HMAC-SHA256 of the raw body with the integration's
//!   client secret ([`sentry_signature_ok`], compared in constant time);
//! - `Sentry-Hook-Resource: issue` with `action: "created"` (`data.issue`: `id`, `shortId`,
//!   `title`, `culprit`, `permalink`/`web_url`, `metadata {type, value}`, `project {slug}`,
//!   `count`, `firstSeen`), and `event_alert` with `action: "triggered"` (`data.event`:
//!   `issue_id`, `event_id`, `title`, `culprit`, `web_url`, `release`, `exception.values[]
//!   {type, value, stacktrace.frames[]}`, `request.url`); anything else is acknowledged and ignored;
//! - `Sentry-Hook-Timestamp` (epoch seconds) is not covered by Sentry's signature, so it only
//!   rejects deliveries older than [`SENTRY_MAX_AGE_SECS`]; replays are harmless anyway: **one
//!   incident per Sentry issue id** (the fingerprint is derived from the id, and both
//!   `ops_incidents.fingerprint` and `intake_sentry_issues.sentry_issue_id` are UNIQUE), one
//!   occurrence per delivery key (`issue.created` once; each `event_alert` event id once).
//!
//! The payload becomes a TraceItem-shaped record and goes through [`crate::event::process_item`],
//! so its text is scrubbed, bounded and normalized like every TraceItem; then the fingerprint and
//! event key are replaced by the Sentry ones. The permalink, short id, culprit, count and release
//! ride in the sample's log line, so the ticket and the task carry them (fenced, as all untrusted
//! text).

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::PipelineConfig;
use crate::event::{Event, Verdict, process_item};
use crate::fingerprint::hex;
use crate::security::ct_eq;
use crate::store::{SamplePolicy, Statement, ingest_statements};
use crate::trace::TraceItem;

/// Largest body of `POST /api/intake/sentry`, bytes (Sentry's issue payloads are a few KiB; an
/// event with a long stack tens of KiB).
pub const MAX_SENTRY_BODY_BYTES: usize = 256 * 1024;
/// Oldest `Sentry-Hook-Timestamp` accepted, seconds.
pub const SENTRY_MAX_AGE_SECS: u64 = 300;

/// Why a delivery was refused (nothing is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeError {
    /// Missing or wrong signature (401).
    Signature,
    /// Timestamp too old or too far ahead (401).
    Stale,
    /// Not JSON, or not the documented shape (400); the text says what is missing.
    Body(String),
}

/// Whether `signature` (the `Sentry-Hook-Signature` header) is the hex HMAC-SHA256 of `body` with
/// `secret`. Constant time on the hex digests.
pub fn sentry_signature_ok(secret: &[u8], body: &[u8], signature: Option<&str>) -> bool {
    let Some(given) = signature.map(str::trim) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    let want = hex(&mac.finalize().into_bytes());
    ct_eq(want.as_bytes(), given.to_ascii_lowercase().as_bytes())
}

/// Checks `Sentry-Hook-Timestamp` (epoch seconds, may have a fraction) against `now_secs`; an
/// absent header passes (the docs list it, but the signature does not cover it).
pub fn sentry_timestamp_ok(timestamp: Option<&str>, now_secs: u64) -> bool {
    match timestamp {
        None => true,
        Some(t) => t
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .is_some_and(|v| (v as u64).abs_diff(now_secs) <= SENTRY_MAX_AGE_SECS),
    }
}

/// One Sentry issue as selfheal needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct SentryIssue {
    /// Sentry's issue id (the dedup key).
    pub issue_id: String,
    /// This delivery's occurrence key (`created`, or `event:<event id>`).
    pub delivery: String,
    /// Project slug (the incident's script is `sentry/<slug>`).
    pub project: String,
    /// Exception type (`metadata.type`, `exception.values[-1].type`), else `Error`.
    pub exception_type: String,
    /// Exception value, else the title.
    pub message: String,
    /// V8-style `    at fn (file:line:col)` lines, innermost first.
    pub stack: String,
    /// The issue's web URL.
    pub permalink: Option<String>,
    /// `shortId`, culprit, count, release: one line for the ticket.
    pub summary: String,
    /// Request URL of the event, when given.
    pub url: Option<String>,
    /// Release, when given.
    pub release: Option<String>,
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn frames_to_stack(frames: Option<&Vec<Value>>) -> String {
    // Sentry lists frames oldest call first; a V8 stack starts at the innermost.
    frames
        .map(|f| {
            f.iter()
                .rev()
                .take(50)
                .map(|fr| {
                    format!(
                        "    at {} ({}:{}:{})",
                        text(fr, &["function"]).unwrap_or_else(|| "<anonymous>".into()),
                        text(fr, &["filename"])
                            .or_else(|| text(fr, &["abs_path"]))
                            .unwrap_or_else(|| "<unknown>".into()),
                        text(fr, &["lineno"]).unwrap_or_else(|| "0".into()),
                        text(fr, &["colno"]).unwrap_or_else(|| "0".into()),
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Parses a delivery of `resource` (`Sentry-Hook-Resource`). `Ok(None)`: a resource or action
/// selfheal does not act on (acknowledged, nothing stored).
///
/// Errors: [`IntakeError::Body`] for a body that is not JSON or lacks the documented fields.
pub fn parse_sentry(resource: &str, body: &[u8]) -> Result<Option<SentryIssue>, IntakeError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| IntakeError::Body(format!("not JSON: {e}")))?;
    let action = text(&v, &["action"]).unwrap_or_default();
    let need = |what: &str| IntakeError::Body(format!("missing {what}"));
    match (resource, action.as_str()) {
        ("issue", "created") => {
            let issue = v
                .get("data")
                .and_then(|d| d.get("issue"))
                .ok_or_else(|| need("data.issue"))?;
            let issue_id = text(issue, &["id"]).ok_or_else(|| need("data.issue.id"))?;
            let title = text(issue, &["title"]).unwrap_or_default();
            let culprit = text(issue, &["culprit"]).unwrap_or_default();
            let permalink = text(issue, &["permalink"]).or_else(|| text(issue, &["web_url"]));
            let summary = format!(
                "sentry issue {} ({}) culprit {culprit:?}, {} events",
                text(issue, &["shortId"]).unwrap_or_else(|| issue_id.clone()),
                permalink.as_deref().unwrap_or("no permalink"),
                text(issue, &["count"]).unwrap_or_else(|| "?".into()),
            );
            Ok(Some(SentryIssue {
                delivery: "created".into(),
                project: text(issue, &["project", "slug"]).unwrap_or_else(|| "unknown".into()),
                exception_type: text(issue, &["metadata", "type"])
                    .unwrap_or_else(|| "Error".into()),
                message: text(issue, &["metadata", "value"]).unwrap_or(title),
                stack: culprit_frame(&culprit),
                permalink,
                summary,
                url: None,
                release: None,
                issue_id,
            }))
        }
        ("event_alert", "triggered") => {
            let event = v
                .get("data")
                .and_then(|d| d.get("event"))
                .ok_or_else(|| need("data.event"))?;
            let issue_id = text(event, &["issue_id"]).ok_or_else(|| need("data.event.issue_id"))?;
            let event_id = text(event, &["event_id"]).ok_or_else(|| need("data.event.event_id"))?;
            let last = event
                .get("exception")
                .and_then(|e| e.get("values"))
                .and_then(Value::as_array)
                .and_then(|a| a.last());
            let culprit = text(event, &["culprit"]).unwrap_or_default();
            let stack = last
                .map(|x| {
                    frames_to_stack(
                        x.get("stacktrace")
                            .and_then(|s| s.get("frames"))
                            .and_then(Value::as_array),
                    )
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| culprit_frame(&culprit));
            let permalink = text(event, &["web_url"]);
            let release = text(event, &["release"]);
            let summary = format!(
                "sentry issue {issue_id} ({}) culprit {culprit:?}, release {}",
                permalink.as_deref().unwrap_or("no permalink"),
                release.as_deref().unwrap_or("unknown"),
            );
            Ok(Some(SentryIssue {
                delivery: format!("event:{event_id}"),
                // The event carries its project's numeric id.
                project: text(event, &["project"]).unwrap_or_else(|| "unknown".into()),
                exception_type: last
                    .and_then(|x| text(x, &["type"]))
                    .unwrap_or_else(|| "Error".into()),
                message: last
                    .and_then(|x| text(x, &["value"]))
                    .or_else(|| text(event, &["title"]))
                    .unwrap_or_default(),
                stack,
                permalink,
                summary,
                url: text(event, &["request", "url"]),
                release,
                issue_id,
            }))
        }
        _ => Ok(None),
    }
}

fn culprit_frame(culprit: &str) -> String {
    if culprit.trim().is_empty() {
        String::new()
    } else {
        format!("    at {culprit} (sentry:0:0)")
    }
}

/// The fingerprint of a Sentry issue: 32 hex of SHA-256(`sentry-issue:<id>`), so one Sentry
/// issue is one incident whatever its text (`ops_incidents.fingerprint` is UNIQUE).
pub fn sentry_fingerprint(issue_id: &str) -> String {
    hex(&Sha256::digest(
        format!("sentry-issue:{issue_id}").as_bytes(),
    ))
    .chars()
    .take(32)
    .collect()
}

/// The sanitized event of a Sentry issue (scrubbed and normalized by
/// [`crate::event::process_item`], then keyed by the Sentry ids). `None` when the pipeline calls
/// it noise (an ignored exception type or message of `cfg`).
pub fn sentry_event(issue: &SentryIssue, cfg: &PipelineConfig, now_ms: i64) -> Option<Event> {
    let request = issue
        .url
        .as_ref()
        .map(|u| json!({"request": {"url": u, "method": "GET", "headers": {}}}));
    let item = json!({
        "outcome": "exception",
        "scriptName": format!("sentry/{}", issue.project),
        "eventTimestamp": now_ms,
        "scriptVersion": issue.release.as_ref().map(|r| json!({"tag": r})),
        "event": request,
        "exceptions": [{"name": issue.exception_type, "message": issue.message, "stack": issue.stack, "timestamp": now_ms}],
        "logs": [{"level": "error", "message": [issue.summary], "timestamp": now_ms}],
    });
    let item: TraceItem = serde_json::from_value(item).ok()?;
    match process_item(&item, cfg, now_ms) {
        Verdict::Event(e) => {
            let mut e = *e;
            e.fingerprint = sentry_fingerprint(&issue.issue_id);
            e.event_key = format!("sentry:{}:{}", issue.issue_id, issue.delivery);
            e.event_kind = "sentry";
            Some(e)
        }
        Verdict::Noise(_) => None,
    }
}

/// The statements of one accepted delivery, one D1 batch: the Sentry issue's row (UNIQUE on its
/// id; first delivery wins), then the ingest of its event (incident, occurrence, sample: the same
/// statements as the tail Worker's).
pub fn sentry_statements(issue: &SentryIssue, event: &Event, now_ms: i64) -> Vec<Statement> {
    let mut stmts = vec![Statement::new(
        "INSERT INTO intake_sentry_issues (sentry_issue_id, fingerprint, permalink, created_at) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (sentry_issue_id) DO NOTHING",
        vec![
            issue.issue_id.as_str().into(),
            event.fingerprint.as_str().into(),
            issue
                .permalink
                .as_deref()
                .map_or(crate::store::SqlValue::Null, Into::into),
            now_ms.into(),
        ],
    )];
    stmts.extend(ingest_statements(
        std::slice::from_ref(event),
        now_ms,
        SamplePolicy::default(),
    ));
    stmts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data.issue` as Sentry's "Issues" webhook page documents it (trimmed to the fields used).
    pub(crate) fn issue_created() -> Value {
        json!({
            "action": "created",
            "installation": {"uuid": "eac5a0ae-60ec-418f-9318-46dc5e7e52ec"},
            "data": {"issue": {
                "id": "1170820242", "shortId": "FRONTEND-9", "title": "TypeError: Cannot read properties of undefined (reading 'total')",
                "culprit": "priceCart(app/cart)", "permalink": "https://acme.sentry.io/issues/1170820242/",
                "level": "error", "status": "unresolved", "platform": "javascript",
                "project": {"id": "1", "name": "frontend", "slug": "frontend", "platform": "javascript"},
                "type": "error", "metadata": {"type": "TypeError", "value": "Cannot read properties of undefined (reading 'total') for alice@example.com"},
                "count": "3", "userCount": 1, "firstSeen": "2026-12-01T10:00:00.000000Z", "lastSeen": "2026-12-01T10:05:00.000000Z"
            }},
            "actor": {"type": "application", "id": "sentry", "name": "Sentry"}
        })
    }

    #[test]
    fn signature_is_hex_hmac_of_the_raw_body() {
        let body = br#"{"action":"created"}"#;
        // Known answer from Python's standard library (an independent implementation):
        // hmac.new(b"client-secret", b'{"action":"created"}', hashlib.sha256).hexdigest()
        let real = "1c20166a5a6576f55b72d626aefc22c6e73a252e1f4cc8e87dc0ede1cdf4b5bc";
        assert!(sentry_signature_ok(b"client-secret", body, Some(real)));
        assert!(sentry_signature_ok(
            b"client-secret",
            body,
            Some(&real.to_ascii_uppercase())
        ));
        assert!(!sentry_signature_ok(b"other-secret", body, Some(real)));
        assert!(!sentry_signature_ok(b"client-secret", b"{}", Some(real)));
        assert!(!sentry_signature_ok(
            b"client-secret",
            body,
            Some(&real[..63])
        ));
        assert!(!sentry_signature_ok(b"client-secret", body, None));
        assert!(sentry_timestamp_ok(Some("1000.25"), 1100));
        assert!(!sentry_timestamp_ok(
            Some("1000"),
            1000 + SENTRY_MAX_AGE_SECS + 1
        ));
        assert!(!sentry_timestamp_ok(Some("soon"), 1000));
        assert!(sentry_timestamp_ok(None, 1000));
    }

    #[test]
    fn an_issue_becomes_a_scrubbed_event_keyed_by_its_sentry_id() {
        let body = issue_created().to_string();
        let issue = parse_sentry("issue", body.as_bytes())
            .expect("parses")
            .expect("acted on");
        assert_eq!(issue.issue_id, "1170820242");
        let e = sentry_event(&issue, &PipelineConfig::default(), 5).expect("event");
        assert_eq!(e.fingerprint, sentry_fingerprint("1170820242"));
        assert_eq!(e.fingerprint.len(), 32);
        assert_eq!(e.event_key, "sentry:1170820242:created");
        assert_eq!(e.components.script, "sentry/frontend");
        assert_eq!(e.components.exception_type, "TypeError");
        assert!(!e.message.contains("alice@example.com"), "{}", e.message);
        assert!(
            e.logs
                .iter()
                .any(|l| l.contains("https://acme.sentry.io/issues/1170820242/"))
        );
        assert!(e.logs.iter().any(|l| l.contains("FRONTEND-9")));
        // Another delivery of the same issue: same incident and occurrence keys.
        let again = sentry_event(&issue, &PipelineConfig::default(), 99).expect("event");
        assert_eq!(
            (again.fingerprint, again.event_key),
            (e.fingerprint, e.event_key)
        );
    }

    #[test]
    fn event_alerts_map_to_their_issue_and_other_resources_are_ignored() {
        let alert = json!({"action": "triggered", "data": {"event": {
            "event_id": "ab12", "issue_id": "1170820242", "title": "TypeError: x", "culprit": "priceCart",
            "web_url": "https://acme.sentry.io/issues/1170820242/events/ab12/", "release": "frontend@1.4.2",
            "exception": {"values": [{"type": "TypeError", "value": "x is undefined",
                "stacktrace": {"frames": [{"function": "main", "filename": "app.js", "lineno": 1, "colno": 2},
                                          {"function": "priceCart", "filename": "cart.js", "lineno": 40, "colno": 7}]}}]},
            "request": {"url": "https://shop.example.com/cart/77"}
        }, "triggered_rule": "New issue"}});
        let a = parse_sentry("event_alert", alert.to_string().as_bytes())
            .expect("parses")
            .expect("acted on");
        assert_eq!(a.issue_id, "1170820242");
        assert_eq!(a.delivery, "event:ab12");
        assert!(
            a.stack.starts_with("    at priceCart (cart.js:40:7)"),
            "{}",
            a.stack
        );
        let e = sentry_event(&a, &PipelineConfig::default(), 1).expect("event");
        assert_eq!(
            e.fingerprint,
            sentry_fingerprint("1170820242"),
            "same incident as the issue"
        );
        assert_eq!(e.release.as_deref(), Some("frontend@1.4.2"));
        assert_eq!(
            parse_sentry("comment", b"{\"action\":\"created\"}"),
            Ok(None)
        );
        assert_eq!(
            parse_sentry("issue", b"{\"action\":\"resolved\"}"),
            Ok(None)
        );
        assert!(matches!(
            parse_sentry("issue", b"not json"),
            Err(IntakeError::Body(_))
        ));
        assert!(matches!(
            parse_sentry("issue", br#"{"action":"created","data":{}}"#),
            Err(IntakeError::Body(m)) if m.contains("data.issue")
        ));
    }
}
