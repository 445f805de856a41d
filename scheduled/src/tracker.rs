//! Mirrors the built-in tickets to GitHub Issues when `SELFHEAL_TRACKER=github`.
//!
//! Requests and the retry/wait decision come from [`selfheal::github`]; this file only sends them
//! with `fetch` (10 s timeout each) and records results in D1. Each run:
//! 1. for each ticket without an issue: look for an issue carrying the ticket's marker (search,
//!    then the newest labelled issues, since search lags), else create one; record its number;
//! 2. comment each fix-run state change, close issues of resolved incidents and reopen regressed
//!    ones.
//!
//! Writes are paced ([`WritePacer`]); a retry that asks for ≤ [`MAX_INLINE_WAIT_SECS`] is waited
//! out here, a longer one ends the mirror step and the next cron run (5 minutes later) goes on
//! where this one stopped — nothing is lost, because D1 says what is still to do.

use std::time::Duration;

use selfheal::github::{self, IssueRef, Outcome, Repo, Request as GhRequest, WritePacer};
use selfheal::store::{
    self, SELECT_TRACKER_CHANGES, SELECT_UNMIRRORED_TICKETS, TrackerChange, UnmirroredTicket,
};
use selfheal::ticket;
use selfheal::workers::{self, GlueError, sql_with};
use worker::{AbortSignal, Delay, Fetch, Headers, Method, RequestInit, console_log};

/// Tickets mirrored per run.
const MAX_MIRRORS_PER_RUN: i64 = 20;
/// Tracker changes announced per run.
const MAX_CHANGES_PER_RUN: i64 = 40;
/// Longest wait for a retry inside one run, seconds.
const MAX_INLINE_WAIT_SECS: u64 = 10;
/// Timeout of one request, ms.
const REQUEST_TIMEOUT_MS: u32 = 10_000;

/// What the mirror step did (logged).
#[derive(Debug, Default)]
pub struct MirrorReport {
    /// Issues created.
    pub created: usize,
    /// Issues found by their marker (a crash after create, or a re-run).
    pub found: usize,
    /// Comments and state changes sent.
    pub changes: usize,
    /// Why the step stopped early, if it did.
    pub stopped: Option<String>,
}

/// The tracker settings when `SELFHEAL_TRACKER=github`; `Ok(None)` for the built-in tracker.
///
/// Errors: `github` with an unusable `SELFHEAL_GITHUB_REPO`/`SELFHEAL_GITHUB_TOKEN`/
/// `SELFHEAL_GITHUB_API`, or an unknown tracker name.
pub fn from_env(env: &worker::Env) -> Result<Option<Repo>, GlueError> {
    match workers::var(env, "SELFHEAL_TRACKER").as_deref() {
        None | Some("builtin") => Ok(None),
        Some("github") => Repo::new(
            workers::var(env, "SELFHEAL_GITHUB_API").as_deref(),
            &workers::var(env, "SELFHEAL_GITHUB_REPO").unwrap_or_default(),
            &workers::var(env, "SELFHEAL_GITHUB_TOKEN").unwrap_or_default(),
        )
        .map(Some)
        .map_err(|e| GlueError::Config(e.to_string())),
        Some(other) => Err(GlueError::Config(format!(
            "SELFHEAL_TRACKER must be builtin or github, got {other:?}"
        ))),
    }
}

/// Sends requests with pacing and the shared retry rules.
struct Client {
    pacer: WritePacer,
}

/// A request that did not succeed: `Retry` too long to wait here, or `Fail`.
struct Stop(String);

/// Sends one request (10 s timeout): status (0 when no response), headers, body.
pub async fn send_once(req: &GhRequest) -> (u16, Vec<(String, String)>, String) {
    let headers = Headers::new();
    for (k, v) in &req.headers {
        if headers.set(k, v).is_err() {
            return (0, Vec::new(), format!("bad header {k}"));
        }
    }
    let method = match req.method {
        "POST" => Method::Post,
        "PATCH" => Method::Patch,
        _ => Method::Get,
    };
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if let Some(body) = &req.body {
        init.with_body(Some(body.to_string().into()));
    }
    let Ok(request) = worker::Request::new_with_init(&req.url, &init) else {
        return (0, Vec::new(), "invalid request".into());
    };
    let signal = AbortSignal::from(web_sys::AbortSignal::timeout_with_u32(REQUEST_TIMEOUT_MS));
    match Fetch::Request(request).send_with_signal(&signal).await {
        Ok(mut resp) => {
            let status = resp.status_code();
            let headers: Vec<(String, String)> = resp.headers().entries().collect();
            let body = resp.text().await.unwrap_or_default();
            (status, headers, body)
        }
        Err(e) => (0, Vec::new(), e.to_string()),
    }
}

impl Client {
    /// Sends `req` until it succeeds (its body), or returns why not.
    async fn call(&mut self, req: &GhRequest) -> Result<String, Stop> {
        for attempt in 1.. {
            if req.is_write() {
                let wait = self.pacer.delay_ms(now_ms());
                if wait > 0 {
                    Delay::from(Duration::from_millis(wait)).await;
                }
                self.pacer.record(now_ms());
            }
            let (status, headers, body) = send_once(req).await;
            let resp = github::Response {
                status,
                headers: &headers,
                body: &body,
            };
            match github::classify(&resp, attempt, now_ms() / 1000) {
                Outcome::Success => return Ok(body),
                Outcome::Retry { after_secs, reason } if after_secs <= MAX_INLINE_WAIT_SECS => {
                    console_log!(
                        "selfheal tracker: {} {}: {reason}; retrying",
                        req.method,
                        req.url
                    );
                    Delay::from(Duration::from_secs(after_secs)).await;
                }
                Outcome::Retry { reason, .. } | Outcome::Fail { reason } => {
                    return Err(Stop(format!("{} {}: {reason}", req.method, req.url)));
                }
            }
        }
        Err(Stop("unreachable".into()))
    }

    /// The issue carrying the ticket's marker, if one exists (search, then the newest list).
    async fn find(&mut self, repo: &Repo, fingerprint: &str) -> Result<Option<IssueRef>, Stop> {
        for req in [
            github::search_marker(repo, fingerprint),
            github::recent_issues(repo),
        ] {
            let body = self.call(&req).await?;
            if let Some(found) = github::find_marked(&body, fingerprint) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

fn now_ms() -> u64 {
    u64::try_from(workers::now_ms()).unwrap_or(0)
}

/// One mirror step (see the module doc).
///
/// Errors: D1 failures only; tracker failures end the step and are reported in
/// [`MirrorReport::stopped`].
pub async fn mirror(db: &worker::D1Database, repo: &Repo) -> Result<MirrorReport, GlueError> {
    let mut report = MirrorReport::default();
    let mut client = Client {
        pacer: WritePacer::default(),
    };
    let tickets: Vec<UnmirroredTicket> = workers::query(
        db,
        &sql_with(SELECT_UNMIRRORED_TICKETS, vec![MAX_MIRRORS_PER_RUN.into()]),
    )
    .await?;
    for t in &tickets {
        let issue = match client.find(repo, &t.fingerprint).await {
            Ok(Some(found)) => {
                report.found += 1;
                found
            }
            Ok(None) => {
                let body = ticket::with_marker(&t.fingerprint, &t.body);
                let labels = ticket::labels(&t.status_class, &t.exception_type, t.occurrence_count);
                let req = github::create_issue(repo, &t.title, &body, &labels);
                match client.call(&req).await {
                    Ok(created) => match github::parse_created(&created) {
                        Some(issue) => {
                            report.created += 1;
                            issue
                        }
                        None => {
                            report.stopped = Some("create issue: unexpected response".into());
                            return Ok(report);
                        }
                    },
                    Err(Stop(why)) => {
                        report.stopped = Some(why);
                        return Ok(report);
                    }
                }
            }
            Err(Stop(why)) => {
                report.stopped = Some(why);
                return Ok(report);
            }
        };
        let number = i64::try_from(issue.number).unwrap_or(i64::MAX);
        workers::batch(
            db,
            &[store::record_external(
                t.ticket_id,
                number,
                &issue.html_url,
                workers::now_ms(),
            )],
        )
        .await?;
    }

    let changes: Vec<TrackerChange> = workers::query(
        db,
        &sql_with(SELECT_TRACKER_CHANGES, vec![MAX_CHANGES_PER_RUN.into()]),
    )
    .await?;
    for c in &changes {
        let number = u64::try_from(c.external_number).unwrap_or(0);
        let (req, record) = match (c.kind.as_str(), c.run_id) {
            ("run", Some(run_id)) => (
                github::comment(
                    repo,
                    number,
                    &ticket::run_comment(
                        run_id,
                        &c.state,
                        c.detail.as_deref(),
                        c.pr_url.as_deref(),
                    ),
                ),
                store::mark_notified(run_id, &c.state),
            ),
            _ => (
                github::set_open(repo, number, c.state == "open"),
                store::record_external_state(c.ticket_id, &c.state, workers::now_ms()),
            ),
        };
        if let Err(Stop(why)) = client.call(&req).await {
            report.stopped = Some(why);
            return Ok(report);
        }
        workers::batch(db, &[record]).await?;
        report.changes += 1;
    }
    Ok(report)
}
