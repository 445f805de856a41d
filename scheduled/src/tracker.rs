//! Mirrors the built-in tickets to GitHub Issues when `SELFHEAL_TRACKER=github`.
//!
//! Requests and the retry/wait decision come from [`selfheal::github`]; this file only sends them
//! with `fetch` (10 s timeout each) and records results in D1. Each run:
//! 1. for each ticket without an issue: look for an issue carrying the ticket's marker (search,
//!    then the newest labelled issues, since search lags), else create one; record its number;
//! 2. comment each fix-run state change and each lifecycle change (a history row with its
//!    figures), close issues of resolved incidents and reopen those no longer resolved.
//!
//! Writes are paced ([`WritePacer`]); a retry that asks for ≤ [`MAX_INLINE_WAIT_SECS`] is waited
//! out here, a longer one ends the mirror step, is kept as a hold (`tracker_holds`: no cron run
//! sends anything before GitHub's `retry-after` / `x-ratelimit-reset`), and a later run goes on
//! where this one stopped — nothing is lost, because D1 says what is still to do. A write whose
//! response was lost (timeout, 5xx) is looked up before it is sent again (the issue's marker, the
//! comment's last-line marker), so it never lands twice.

use std::time::Duration;

use selfheal::github::{self, IssueRef, Outcome, Repo, Request as GhRequest, WritePacer};
use selfheal::storage::holds::{HoldRow, SELECT_HOLD, hold};
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
/// Timeout of one request, ms (`SELFHEAL_GITHUB_TIMEOUT_MS` overrides it).
const REQUEST_TIMEOUT_MS: u32 = 10_000;
/// This tracker's key in `tracker_holds`.
const TRACKER: &str = "github";

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
struct Client<'a> {
    pacer: WritePacer,
    repo: &'a Repo,
    timeout_ms: u32,
}

/// A request that did not succeed: `Retry` too long to wait here (with the time GitHub asked
/// for, kept as a hold), or `Fail`.
struct Stop {
    why: String,
    /// No request before this time, ms since the epoch.
    hold_until_ms: Option<i64>,
}

impl Stop {
    fn new(why: String) -> Stop {
        Stop {
            why,
            hold_until_ms: None,
        }
    }
}

/// How to tell whether a write whose response was lost ([`github::maybe_applied`]) landed anyway.
enum Landed<'a> {
    /// A lookup: safe to re-send as is.
    Idempotent,
    /// An issue carrying this fingerprint's marker.
    Issue(&'a str),
    /// A comment on issue `.0` whose last line is the marker `.1`.
    Comment(u64, &'a str),
}

/// What one send gave.
enum Sent {
    Done(String),
    /// Wait this long, then send again; `maybe_applied`: the write may have landed.
    Again {
        after_secs: u64,
        maybe_applied: bool,
    },
}

/// Sends one request (`timeout_ms` each): status (0 when no response), headers, body.
pub async fn send_once(req: &GhRequest, timeout_ms: u32) -> (u16, Vec<(String, String)>, String) {
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
    let signal = AbortSignal::from(web_sys::AbortSignal::timeout_with_u32(timeout_ms));
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

/// The request timeout, ms: `SELFHEAL_GITHUB_TIMEOUT_MS` (1 000–30 000), default 10 000.
pub fn timeout_ms(env: &worker::Env) -> u32 {
    workers::var(env, "SELFHEAL_GITHUB_TIMEOUT_MS")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map_or(REQUEST_TIMEOUT_MS, |v| v.clamp(1_000, 30_000))
}

impl Client<'_> {
    /// One paced send of try number `attempt`, classified.
    async fn send(&mut self, req: &GhRequest, attempt: u32) -> Result<Sent, Stop> {
        if req.is_write() {
            let wait = self.pacer.delay_ms(now_ms());
            if wait > 0 {
                Delay::from(Duration::from_millis(wait)).await;
            }
            self.pacer.record(now_ms());
        }
        let (status, headers, body) = send_once(req, self.timeout_ms).await;
        let resp = github::Response {
            status,
            headers: &headers,
            body: &body,
        };
        let now_secs = now_ms() / 1000;
        match github::classify(&resp, attempt, now_secs) {
            Outcome::Success => Ok(Sent::Done(body)),
            Outcome::Retry { after_secs, reason } if after_secs <= MAX_INLINE_WAIT_SECS => {
                console_log!(
                    "selfheal tracker: {} {}: {reason}; retrying in {after_secs} s",
                    req.method,
                    req.url
                );
                Ok(Sent::Again {
                    after_secs,
                    maybe_applied: req.is_write() && github::maybe_applied(status),
                })
            }
            Outcome::Retry { reason, .. } | Outcome::Fail { reason } => {
                // A wait GitHub asked for that this run cannot spend: no later run calls earlier.
                let hold_until_ms = github::asked_wait(&resp, now_secs)
                    .filter(|(w, _)| *w > MAX_INLINE_WAIT_SECS)
                    .map(|(w, _)| {
                        i64::try_from(now_secs.saturating_add(w).saturating_mul(1000))
                            .unwrap_or(i64::MAX)
                    });
                Err(Stop {
                    why: format!("{} {}: {reason}", req.method, req.url),
                    hold_until_ms,
                })
            }
        }
    }

    /// Sends a lookup until it succeeds (its body), or returns why not.
    async fn get(&mut self, req: &GhRequest) -> Result<String, Stop> {
        for attempt in 1..=github::MAX_ATTEMPTS {
            match self.send(req, attempt).await? {
                Sent::Done(body) => return Ok(body),
                Sent::Again { after_secs, .. } => {
                    Delay::from(Duration::from_secs(after_secs)).await;
                }
            }
        }
        Err(Stop::new(format!("{} {}: gave up", req.method, req.url)))
    }

    /// Sends `req` until it succeeds (its body, or the body of what the lookup found), within
    /// GitHub's limits. A write that may have landed is looked up (`landed`) before it is sent
    /// again, so a lost response never makes a duplicate issue or comment.
    async fn call(&mut self, req: &GhRequest, landed: Landed<'_>) -> Result<String, Stop> {
        for attempt in 1..=github::MAX_ATTEMPTS {
            match self.send(req, attempt).await? {
                Sent::Done(body) => return Ok(body),
                Sent::Again {
                    after_secs,
                    maybe_applied,
                } => {
                    Delay::from(Duration::from_secs(after_secs)).await;
                    if maybe_applied && let Some(found) = self.landed(&landed).await? {
                        console_log!(
                            "selfheal tracker: {} {} had landed; not sent again",
                            req.method,
                            req.url
                        );
                        return Ok(found);
                    }
                }
            }
        }
        Err(Stop::new(format!("{} {}: gave up", req.method, req.url)))
    }

    /// What a lost write left behind, if anything (see [`Landed`]).
    async fn landed(&mut self, landed: &Landed<'_>) -> Result<Option<String>, Stop> {
        match landed {
            Landed::Idempotent => Ok(None),
            Landed::Issue(fingerprint) => Ok(self
                .find(fingerprint)
                .await?
                .and_then(|i| serde_json::to_string(&i).ok())),
            Landed::Comment(number, marker) => {
                let list = self.get(&github::list_comments(self.repo, *number)).await?;
                Ok(github::has_marked_comment(&list, marker).then(|| "{}".to_string()))
            }
        }
    }

    /// The issue carrying the ticket's marker, if one exists (search, then the newest list).
    async fn find(&mut self, fingerprint: &str) -> Result<Option<IssueRef>, Stop> {
        for req in [
            github::search_marker(self.repo, fingerprint),
            github::recent_issues(self.repo),
        ] {
            let body = self.get(&req).await?;
            if let Some(found) = github::find_marked(&body, fingerprint) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

/// One GitHub lookup for the lifecycle step (a PR, an issue's timeline), with the tracker's
/// retry rules; `Err` with the reason when it did not succeed (nothing is held: lookups are
/// retried by the next cron run).
pub async fn read(repo: &Repo, req: &GhRequest, timeout_ms: u32) -> Result<String, String> {
    let mut client = Client {
        pacer: WritePacer::default(),
        repo,
        timeout_ms,
    };
    client.get(req).await.map_err(|s| s.why)
}

/// Whether a hold GitHub asked for is in force now (no request may be sent).
pub async fn held(db: &worker::D1Database) -> Result<bool, GlueError> {
    let now = workers::now_ms();
    let held: Vec<HoldRow> =
        workers::query(db, &sql_with(SELECT_HOLD, vec![TRACKER.into(), now.into()])).await?;
    Ok(!held.is_empty())
}

fn now_ms() -> u64 {
    u64::try_from(workers::now_ms()).unwrap_or(0)
}

/// One mirror step (see the module doc). Nothing is sent while a hold GitHub asked for is in
/// force (`tracker_holds`); a wait this run cannot spend is stored as a hold.
///
/// Errors: D1 failures only; tracker failures end the step and are reported in
/// [`MirrorReport::stopped`].
pub async fn mirror(
    db: &worker::D1Database,
    repo: &Repo,
    timeout_ms: u32,
) -> Result<MirrorReport, GlueError> {
    let now = workers::now_ms();
    let held: Vec<HoldRow> =
        workers::query(db, &sql_with(SELECT_HOLD, vec![TRACKER.into(), now.into()])).await?;
    if let Some(h) = held.first() {
        return Ok(MirrorReport {
            stopped: Some(format!(
                "held for {} s more: {}",
                (h.until_ms - now + 999) / 1000,
                h.reason
            )),
            ..MirrorReport::default()
        });
    }
    let mut client = Client {
        pacer: WritePacer::default(),
        repo,
        timeout_ms,
    };
    let mut report = MirrorReport::default();
    if let Err(stop) = mirror_with(db, &mut client, &mut report).await? {
        if let Some(until) = stop.hold_until_ms {
            workers::batch(db, &[hold(TRACKER, until, &stop.why, now)]).await?;
        }
        report.stopped = Some(stop.why);
    }
    Ok(report)
}

/// The mirror's work; `Ok(Err(stop))` when the tracker ended it.
async fn mirror_with(
    db: &worker::D1Database,
    client: &mut Client<'_>,
    report: &mut MirrorReport,
) -> Result<Result<(), Stop>, GlueError> {
    let repo = client.repo;
    let tickets: Vec<UnmirroredTicket> = workers::query(
        db,
        &sql_with(SELECT_UNMIRRORED_TICKETS, vec![MAX_MIRRORS_PER_RUN.into()]),
    )
    .await?;
    for t in &tickets {
        let issue = match client.find(&t.fingerprint).await {
            Ok(Some(found)) => {
                report.found += 1;
                found
            }
            Ok(None) => {
                let body = ticket::with_marker(&t.fingerprint, &t.body);
                let labels = ticket::labels(&t.status_class, &t.exception_type, t.occurrence_count);
                let req = github::create_issue(repo, &t.title, &body, &labels);
                match client.call(&req, Landed::Issue(&t.fingerprint)).await {
                    Ok(created) => match github::parse_created(&created) {
                        Some(issue) => {
                            report.created += 1;
                            issue
                        }
                        None => {
                            return Ok(Err(Stop::new("create issue: unexpected response".into())));
                        }
                    },
                    Err(stop) => return Ok(Err(stop)),
                }
            }
            Err(stop) => return Ok(Err(stop)),
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
        let marker;
        let (req, record, landed) = match (c.kind.as_str(), c.run_id) {
            ("run", Some(run_id)) => {
                marker = github::comment_marker(run_id, &c.state);
                let text = format!(
                    "{}\n{marker}\n",
                    ticket::run_comment(run_id, &c.state, c.detail.as_deref(), c.pr_url.as_deref(),)
                );
                (
                    github::comment(repo, number, &text),
                    store::mark_notified(run_id, &c.state),
                    Landed::Comment(number, &marker),
                )
            }
            ("history", Some(history_id)) => {
                marker = github::history_marker(history_id);
                let text = format!(
                    "{}\n{marker}\n",
                    ticket::history_comment(
                        c.why.as_deref().unwrap_or(""),
                        &c.state,
                        c.detail.as_deref()
                    )
                );
                (
                    github::comment(repo, number, &text),
                    store::mark_history_notified(history_id, workers::now_ms()),
                    Landed::Comment(number, &marker),
                )
            }
            _ => (
                github::set_open(repo, number, c.state == "open"),
                store::record_external_state(c.ticket_id, &c.state, workers::now_ms()),
                Landed::Idempotent,
            ),
        };
        if let Err(stop) = client.call(&req, landed).await {
            return Ok(Err(stop));
        }
        workers::batch(db, &[record]).await?;
        report.changes += 1;
    }
    Ok(Ok(()))
}
