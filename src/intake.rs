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
//! **Cloudflare Workers Issues** (an automation's generic-webhook destination, which sends the
//! Cloudflare Notifications webhook payload; cloudflare-docs `notifications/reference/
//! webhook-payload-schema` and `workers/observability/issues/automations`):
//! - `cf-webhook-auth`: the secret set on the destination, sent as is ([`workers_issues_secret_ok`],
//!   constant time);
//! - the documented envelope `{name, text, data, ts, account_id, policy_id, policy_name,
//!   alert_type, alert_correlation_id, alert_event}`; `ts` (epoch seconds, in the signed-by-secret
//!   body) must be within [`WORKERS_ISSUES_MAX_AGE_SECS`] of now when given. The docs leave `data`
//!   unspecified for Workers Issues, so every key read from it is optional
//!   ([`parse_workers_issue`] lists them) and the issue id falls back to the documented
//!   `alert_correlation_id`; a body with neither `data` nor `alert_type` (the destination's
//!   "Save and Test" message `{text}`) is acknowledged and ignored;
//! - **one incident per issue id** (`intake_workers_issues.issue_id` UNIQUE, migration 0010), one
//!   occurrence per `(alert_event, ts)`.
//!
//! Either payload becomes a TraceItem-shaped record ([`ExternalIssue`]) and goes through
//! [`crate::event::process_item`], so its text is scrubbed, bounded and normalized like every
//! TraceItem; then the fingerprint and event key are replaced by the sender's ids. The permalink, short id, culprit, count and release
//! ride in the sample's log line, so the ticket and the task carry them (fenced, as all untrusted
//! text).

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::PipelineConfig;
use crate::event::{Event, Verdict, process_item};
use crate::fingerprint::hex;
use crate::security::ct_eq;
use crate::storage::ingest::IngestPolicy;
use crate::store::{SqlValue, Statement, ingest_statements};
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

/// Where an intake delivery came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Sentry internal integration webhooks.
    Sentry,
    /// A Cloudflare Workers Issues automation's generic webhook.
    WorkersIssues,
}

impl Source {
    /// The event kind and script prefix: `sentry`, `workers-issues`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Sentry => "sentry",
            Source::WorkersIssues => "workers-issues",
        }
    }
}

/// One issue of another monitor as selfheal needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalIssue {
    /// Who sent it.
    pub source: Source,
    /// The sender's issue id (the dedup key).
    pub issue_id: String,
    /// This delivery's occurrence key (Sentry: `created`, or `event:<event id>`; Workers Issues:
    /// `<alert_event>:<ts>`).
    pub delivery: String,
    /// Sentry project slug, or the Worker's name (the incident's script is `<source>/<project>`).
    pub project: String,
    /// Exception type (`metadata.type`, `exception.values[-1].type`), else `Error`.
    pub exception_type: String,
    /// Exception value, else the title.
    pub message: String,
    /// V8-style `    at fn (file:line:col)` lines, innermost first.
    pub stack: String,
    /// The issue's web URL.
    pub permalink: Option<String>,
    /// Sentry: `shortId`, culprit, count, release; Workers Issues: the alert and policy. One line
    /// for the ticket.
    pub summary: String,
    /// Request URL of the event, when given.
    pub url: Option<String>,
    /// Release, when given.
    pub release: Option<String>,
    /// Workers Issues: the payload's `account_id` and `alert_type`, when given.
    pub account: (Option<String>, Option<String>),
}

/// The Sentry intake's issue (kept name).
pub type SentryIssue = ExternalIssue;

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
pub fn parse_sentry(resource: &str, body: &[u8]) -> Result<Option<ExternalIssue>, IntakeError> {
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
            Ok(Some(ExternalIssue {
                source: Source::Sentry,
                account: (None, None),
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
            Ok(Some(ExternalIssue {
                source: Source::Sentry,
                account: (None, None),
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

/// The fingerprint of an external issue: 32 hex of SHA-256(`<prefix>-issue:<id>`) (prefix
/// `sentry` or `workers`), so one issue is one incident whatever its text
/// (`ops_incidents.fingerprint` is UNIQUE).
pub fn intake_fingerprint(source: Source, issue_id: &str) -> String {
    let prefix = match source {
        Source::Sentry => "sentry",
        Source::WorkersIssues => "workers",
    };
    hex(&Sha256::digest(
        format!("{prefix}-issue:{issue_id}").as_bytes(),
    ))
    .chars()
    .take(32)
    .collect()
}

/// The fingerprint of a Sentry issue ([`intake_fingerprint`] of [`Source::Sentry`]).
pub fn sentry_fingerprint(issue_id: &str) -> String {
    intake_fingerprint(Source::Sentry, issue_id)
}

/// The sanitized event of an external issue (scrubbed and normalized by
/// [`crate::event::process_item`], then keyed by the sender's ids). `None` when the pipeline calls
/// it noise (an ignored exception type or message of `cfg`).
pub fn intake_event(issue: &ExternalIssue, cfg: &PipelineConfig, now_ms: i64) -> Option<Event> {
    let request = issue
        .url
        .as_ref()
        .map(|u| json!({"request": {"url": u, "method": "GET", "headers": {}}}));
    let item = json!({
        "outcome": "exception",
        "scriptName": format!("{}/{}", issue.source.name(), issue.project),
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
            e.fingerprint = intake_fingerprint(issue.source, &issue.issue_id);
            e.event_key = format!(
                "{}:{}:{}",
                issue.source.name(),
                issue.issue_id,
                issue.delivery
            );
            e.event_kind = issue.source.name();
            Some(e)
        }
        Verdict::Noise(_) => None,
    }
}

/// The statements of one accepted delivery, one D1 batch: the issue's dedup row (UNIQUE on the
/// sender's id; first delivery wins), then the ingest of its event (incident, occurrence, sample:
/// the same statements as the tail Worker's).
pub fn intake_statements(issue: &ExternalIssue, event: &Event, now_ms: i64) -> Vec<Statement> {
    let opt = |v: &Option<String>| v.as_deref().map_or(SqlValue::Null, Into::into);
    let dedup = match issue.source {
        Source::Sentry => Statement::new(
            "INSERT INTO intake_sentry_issues (sentry_issue_id, fingerprint, permalink, created_at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (sentry_issue_id) DO NOTHING",
            vec![
                issue.issue_id.as_str().into(),
                event.fingerprint.as_str().into(),
                opt(&issue.permalink),
                now_ms.into(),
            ],
        ),
        Source::WorkersIssues => Statement::new(
            "INSERT INTO intake_workers_issues (issue_id, fingerprint, account_id, alert_type, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (issue_id) DO NOTHING",
            vec![
                issue.issue_id.as_str().into(),
                event.fingerprint.as_str().into(),
                opt(&issue.account.0),
                opt(&issue.account.1),
                now_ms.into(),
            ],
        ),
    };
    let mut stmts = vec![dedup];
    stmts.extend(ingest_statements(
        std::slice::from_ref(event),
        now_ms,
        IngestPolicy::default(),
    ));
    stmts
}

/// Largest body of `POST /api/intake/workers-issues`, bytes (a Notifications payload is a few KiB;
/// the issue's diagnostic context may add a stack and logs).
pub const MAX_WORKERS_ISSUES_BODY_BYTES: usize = 256 * 1024;
/// Oldest (or furthest ahead) `ts` accepted, seconds: Cloudflare retries a failed delivery, so a
/// little more room than Sentry's; a replay within it is harmless (one incident per issue id,
/// one occurrence per `(alert_event, ts)`).
pub const WORKERS_ISSUES_MAX_AGE_SECS: u64 = 900;

/// Whether the `cf-webhook-auth` header is the destination's secret (constant time).
pub fn workers_issues_secret_ok(secret: &str, header: Option<&str>) -> bool {
    header.is_some_and(|h| ct_eq(h.as_bytes(), secret.as_bytes()))
}

/// The first non-empty text (or number) among `keys` of `data.issue`, then of `data`.
fn data_text(data: &Value, keys: &[&[&str]]) -> Option<String> {
    [data.get("issue"), Some(data)]
        .into_iter()
        .flatten()
        .find_map(|scope| keys.iter().find_map(|k| text(scope, k)))
}

/// Parses a Workers Issues delivery (the Notifications webhook payload). `Ok(None)`: the
/// destination's test message (no `data`, no `alert_type`), acknowledged and not stored.
///
/// Read from the documented envelope: `ts`, `text`, `name`, `account_id`, `policy_name`,
/// `alert_type`, `alert_event`, `alert_correlation_id`. Read from `data` when present (each in
/// `data.issue`, then `data`; undocumented for Workers Issues, so all optional): the issue id
/// (`id`, `issue_id`; else `alert_correlation_id`), the Worker (`script_name`, `worker`,
/// `service`), the error (`error.name`/`exception_type`/`type`, `error.message`/`message`, else
/// `text`), `stack`, `url`/`request.url`, the release (`version`, `script_version`, `release`),
/// the link (`dashboard_link`, `url_issue`, `link`) and `occurrences`/`count`.
///
/// Errors: [`IntakeError::Body`] for a body that is not a JSON object or gives no issue id;
/// [`IntakeError::Stale`] for a `ts` that is not epoch seconds within
/// [`WORKERS_ISSUES_MAX_AGE_SECS`] of `now_secs`.
pub fn parse_workers_issue(
    body: &[u8],
    now_secs: u64,
) -> Result<Option<ExternalIssue>, IntakeError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| IntakeError::Body(format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(IntakeError::Body("not a JSON object".into()));
    }
    if let Some(ts) = v.get("ts") {
        let fresh = ts
            .as_u64()
            .is_some_and(|t| t.abs_diff(now_secs) <= WORKERS_ISSUES_MAX_AGE_SECS);
        if !fresh {
            return Err(IntakeError::Stale);
        }
    }
    let data = v.get("data").filter(|d| d.is_object());
    let alert_type = text(&v, &["alert_type"]);
    if data.is_none() && alert_type.is_none() {
        return Ok(None);
    }
    let data = data.cloned().unwrap_or_else(|| json!({}));
    let issue_id = data_text(&data, &[&["id"], &["issue_id"]])
        .or_else(|| text(&v, &["alert_correlation_id"]))
        .filter(|id| id.len() <= 200)
        .ok_or_else(|| {
            IntakeError::Body(
                "missing the issue id (data.issue.id, data.issue_id or alert_correlation_id)"
                    .into(),
            )
        })?;
    let envelope_text = text(&v, &["text"]).or_else(|| text(&v, &["name"]));
    let permalink = data_text(&data, &[&["dashboard_link"], &["url_issue"], &["link"]])
        .filter(|u| u.starts_with("https://"));
    let alert_event = text(&v, &["alert_event"]).unwrap_or_default();
    let summary = format!(
        "workers issue {issue_id} ({}) {} {alert_event}, policy {:?}, {} occurrences",
        permalink.as_deref().unwrap_or("no link"),
        alert_type.as_deref().unwrap_or("alert"),
        text(&v, &["policy_name"]).unwrap_or_default(),
        data_text(&data, &[&["occurrences"], &["count"]]).unwrap_or_else(|| "?".into()),
    );
    Ok(Some(ExternalIssue {
        source: Source::WorkersIssues,
        delivery: format!(
            "{alert_event}:{}",
            text(&v, &["ts"]).unwrap_or_else(|| "none".into())
        ),
        project: data_text(&data, &[&["script_name"], &["worker"], &["service"]])
            .unwrap_or_else(|| "unknown".into()),
        exception_type: data_text(&data, &[&["error", "name"], &["exception_type"], &["type"]])
            .unwrap_or_else(|| "Error".into()),
        message: data_text(&data, &[&["error", "message"], &["message"]])
            .or(envelope_text)
            .unwrap_or_default(),
        stack: data_text(&data, &[&["error", "stack"], &["stack"]]).unwrap_or_default(),
        permalink,
        summary,
        url: data_text(&data, &[&["request", "url"], &["url"]]),
        release: data_text(&data, &[&["version"], &["script_version"], &["release"]]),
        account: (text(&v, &["account_id"]), alert_type),
        issue_id,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
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
        let e = intake_event(&issue, &PipelineConfig::default(), 5).expect("event");
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
        let again = intake_event(&issue, &PipelineConfig::default(), 99).expect("event");
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
        let e = intake_event(&a, &PipelineConfig::default(), 1).expect("event");
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

    /// A Workers Issues delivery: the documented Notifications envelope; `data` carries the keys
    /// selfheal reads when present (the docs do not specify `data` for Workers Issues).
    pub(crate) fn workers_issue(ts: u64) -> Value {
        json!({
            "name": "checkout errors",
            "text": "Issue in shop-api: TypeError: Cannot read properties of undefined (reading 'percent') for bob@example.com",
            "data": {"issue": {
                "id": "wi_7f3a9c", "script_name": "shop-api", "occurrences": 12,
                "error": {"name": "TypeError", "message": "Cannot read properties of undefined (reading 'percent') for bob@example.com",
                          "stack": "TypeError: Cannot read properties of undefined (reading 'percent')\n    at discount (src/price.js:2:24)\n    at fetch (src/index.js:9:12)"},
                "request": {"url": "https://shop.example.com/checkout/4411?token=abc"},
                "version": "v1",
                "dashboard_link": "https://dash.cloudflare.com/acc/workers/services/view/shop-api/production/issues/wi_7f3a9c"
            }},
            "ts": ts,
            "account_id": "9035f53656c247e895c5a6939ae8a0e0",
            "policy_id": "749b911ea5d04344a58e45edd099b328",
            "policy_name": "checkout errors",
            "alert_type": "workers_issues",
            "alert_correlation_id": "000eaa907ed24e78946d3a93adb2ae57",
            "alert_event": "ALERT_STATE_EVENT_START"
        })
    }

    #[test]
    fn a_workers_issue_becomes_a_scrubbed_event_keyed_by_its_issue_id() {
        let now = 1_796_178_840;
        let body = workers_issue(now).to_string();
        let issue = parse_workers_issue(body.as_bytes(), now + 30)
            .expect("parses")
            .expect("acted on");
        assert_eq!(issue.source, Source::WorkersIssues);
        assert_eq!(issue.issue_id, "wi_7f3a9c");
        assert_eq!(issue.delivery, format!("ALERT_STATE_EVENT_START:{now}"));
        assert_eq!(issue.release.as_deref(), Some("v1"));
        let e = intake_event(&issue, &PipelineConfig::default(), 5).expect("event");
        assert_eq!(
            e.fingerprint,
            intake_fingerprint(Source::WorkersIssues, "wi_7f3a9c")
        );
        assert_ne!(
            e.fingerprint,
            sentry_fingerprint("wi_7f3a9c"),
            "sources never share an incident"
        );
        assert_eq!(e.event_kind, "workers-issues");
        assert_eq!(e.components.script, "workers-issues/shop-api");
        assert_eq!(e.components.exception_type, "TypeError");
        assert!(!e.message.contains("bob@example.com"), "{}", e.message);
        assert!(
            !e.url.as_deref().unwrap_or_default().contains("abc"),
            "{:?}",
            e.url
        );
        assert!(
            e.logs.iter().any(|l| l.contains("/issues/wi_7f3a9c")),
            "{:?}",
            e.logs
        );
        assert!(e.stack.contains("discount"), "{}", e.stack);
    }

    #[test]
    fn workers_issues_refusals_and_the_documented_minimum() {
        let now = 1_796_178_840;
        assert!(workers_issues_secret_ok(
            "s3cret-value",
            Some("s3cret-value")
        ));
        assert!(!workers_issues_secret_ok(
            "s3cret-value",
            Some("s3cret-valuE")
        ));
        assert!(!workers_issues_secret_ok("s3cret-value", Some("")));
        assert!(!workers_issues_secret_ok("s3cret-value", None));
        let stale = workers_issue(now - WORKERS_ISSUES_MAX_AGE_SECS - 1).to_string();
        assert_eq!(
            parse_workers_issue(stale.as_bytes(), now),
            Err(IntakeError::Stale)
        );
        let odd_ts = json!({"ts": "yesterday", "data": {}, "alert_type": "x"}).to_string();
        assert_eq!(
            parse_workers_issue(odd_ts.as_bytes(), now),
            Err(IntakeError::Stale)
        );
        assert!(matches!(
            parse_workers_issue(b"not json", now),
            Err(IntakeError::Body(_))
        ));
        assert!(matches!(
            parse_workers_issue(b"[1,2]", now),
            Err(IntakeError::Body(_))
        ));
        // "Save and Test" sends only {text}: acknowledged, nothing to do.
        let hello =
            br#"{"text":"Hello World! This is a test message sent from https://cloudflare.com."}"#;
        assert_eq!(parse_workers_issue(hello, now), Ok(None));
        // No issue id anywhere: refused (nothing to de-duplicate by).
        let anon =
            json!({"text": "x", "data": {}, "ts": now, "alert_type": "workers_issues"}).to_string();
        assert!(
            matches!(parse_workers_issue(anon.as_bytes(), now), Err(IntakeError::Body(m)) if m.contains("issue id"))
        );
        // Only documented fields (no ts either): the correlation id is the issue id, `text` the message.
        let bare = json!({
            "name": "n", "text": "Worker shop-api: Error: upstream 503", "data": {},
            "alert_type": "workers_issues", "alert_correlation_id": "000eaa907ed24e78946d3a93adb2ae57"
        })
        .to_string();
        let issue = parse_workers_issue(bare.as_bytes(), now)
            .expect("parses")
            .expect("acted on");
        assert_eq!(issue.issue_id, "000eaa907ed24e78946d3a93adb2ae57");
        assert_eq!(
            (issue.project.as_str(), issue.exception_type.as_str()),
            ("unknown", "Error")
        );
        assert_eq!(issue.message, "Worker shop-api: Error: upstream 503");
        assert_eq!(issue.delivery, ":none");
        assert!(intake_event(&issue, &PipelineConfig::default(), 1).is_some());
    }

    #[cfg(feature = "cli")]
    #[test]
    fn five_deliveries_store_one_incident_one_row_one_occurrence() {
        let mut db = crate::fixing::test_db();
        let now = 1_796_178_840;
        let body = workers_issue(now).to_string();
        for i in 0..5 {
            let issue = parse_workers_issue(body.as_bytes(), now)
                .expect("parses")
                .expect("issue");
            let e = intake_event(&issue, &PipelineConfig::default(), 1_000 + i).expect("event");
            db.batch(&intake_statements(&issue, &e, 1_000 + i))
                .expect("stored");
        }
        assert_eq!(
            db.scalar("SELECT count(*) FROM intake_workers_issues")
                .expect("n"),
            1
        );
        assert_eq!(
            db.scalar("SELECT count(*) FROM ops_incidents").expect("n"),
            1
        );
        assert_eq!(
            db.scalar("SELECT occurrence_count FROM ops_incidents")
                .expect("n"),
            1
        );
        assert_eq!(
            db.scalar("SELECT count(*) FROM intake_workers_issues WHERE account_id = '9035f53656c247e895c5a6939ae8a0e0' AND alert_type = 'workers_issues'")
                .expect("n"),
            1
        );
        // A later notification of the same issue (new ts): same incident, one more occurrence.
        let later = workers_issue(now + 3600).to_string();
        let issue = parse_workers_issue(later.as_bytes(), now + 3600)
            .expect("parses")
            .expect("issue");
        let e = intake_event(&issue, &PipelineConfig::default(), 9_000).expect("event");
        db.batch(&intake_statements(&issue, &e, 9_000))
            .expect("stored");
        assert_eq!(
            db.scalar("SELECT count(*) FROM ops_incidents").expect("n"),
            1
        );
        assert_eq!(
            db.scalar("SELECT occurrence_count FROM ops_incidents")
                .expect("n"),
            2
        );
    }
}
