//! The lifecycle over D1: from a fixer's result to a fix **verified in production**, and the next
//! attempt when one did not hold. The statements are plain SQL (the Workers run them on D1, the
//! tests on SQLite); the decisions are [`crate::tracking::lifecycle`]'s. Every status change is a
//! row of `incident_history` written in the same batch as the change and guarded by the same
//! condition, so a person can check each one with the figures that made it.
//!
//! In the order the cron runs them ([`crate::tracking::lifecycle`] has the state diagram):
//! 1. **Results** (the agent-runner, when a fixer reports; [`result_statements`]): `pr_opened`
//!    moves the incident to `pr_opened`; `failed` ends the attempt (back to `ticketed`).
//! 2. **PRs** ([`SELECT_PRS_TO_FOLLOW`], [`pr_statements`]): each open draft PR is read from the
//!    tracker; merged → `fix_merged` (with its merge commit); closed unmerged → the attempt ended
//!    (`pr_closed`). Copilot runs report no PR URL: their issue's timeline gives it
//!    ([`SELECT_COPILOT_RUNS`], [`copilot_pr_statements`]).
//! 3. **Release** ([`release_seen_statements`]): the first release of the incident's script seen
//!    after the merge makes it `verifying`. The release is tied to the merge by its name carrying
//!    the merge commit (basis `commit`), else by time alone (basis `time`: first seen after the
//!    merge). The basis is stored, so a reviewer knows how strong the link is.
//! 4. **Verify** ([`SELECT_VERIFYING`], [`verify_statements`]): the incident's rate per request on
//!    its route before that release, and the requests and occurrences on it, go to
//!    [`lifecycle::verify`]: `resolved` (verified), `regressed`, or still pending.
//! 5. **Attempts** ([`SELECT_ATTEMPT_CANDIDATES`], [`attempt_statements`]): an incident whose last
//!    attempt ended (failed and past its cool-down, PR closed, fix did not hold) gets attempt n+1
//!    queued, at most `SELFHEAL_MAX_ATTEMPTS`; past that one `attempts_exhausted` row, and it waits
//!    for a person (`selfheal retry`).
//! 6. **Inactive** ([`inactive_statements`]): no fix in flight and quiet for
//!    `SELFHEAL_RESOLVE_AFTER_DAYS` → `resolved` (inactive); a new occurrence regresses it (the
//!    occurrence trigger of migration 0009).
//! 7. **Built-in tickets** ([`ticket_state_statements`]): closed when resolved, open again when
//!    regressed. The GitHub mirror does the same for issues and comments each history row.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::store::{SqlValue, Statement};
use crate::tracking::lifecycle::{
    self, AttemptDecision, AttemptSummary, Verification, VerifyInput,
};

const DAY_MS: i64 = 86_400_000;
/// How far back the baseline rate looks from when the verifying release was first seen, ms
/// (7 days: the occurrences Cloudflare's Workers Issues keeps).
pub const BASELINE_WINDOW_MS: i64 = 7 * DAY_MS;

/// A history row and the status change it records, both guarded by the same condition over the
/// incident row `i`. Parameters: `?1` now (ms), `?2` to-status, `?3` actor, `?4` why, `?5`
/// figures (JSON text), then the guard's own from `?6`.
macro_rules! transition {
    ($guard:expr) => {
        transition!($guard, "")
    };
    ($guard:expr, $set:expr) => {
        (
            concat!(
                "INSERT INTO incident_history (incident_id, at, from_status, to_status, actor, why, figures) \
                 SELECT i.id, ?1, i.status, ?2, ?3, ?4, ?5 FROM ops_incidents AS i WHERE ",
                $guard
            ),
            concat!(
                "UPDATE ops_incidents AS i SET status = ?2, updated_at = max(i.updated_at, ?1)",
                $set,
                " WHERE ",
                $guard
            ),
        )
    };
}

/// The two statements of a [`transition!`] with their parameters.
fn change(
    sql: (&'static str, &'static str),
    now_ms: i64,
    to: &str,
    actor: &str,
    why: &str,
    figures: serde_json::Value,
    guard_params: Vec<SqlValue>,
) -> [Statement; 2] {
    let mut params: Vec<SqlValue> = vec![
        now_ms.into(),
        to.into(),
        actor.into(),
        why.into(),
        figures.to_string().into(),
    ];
    params.extend(guard_params);
    // Each statement binds exactly the parameters it names (D1 and SQLite refuse extra ones).
    let of = |text: &'static str| {
        Statement::new(text, params[..max_param(text).min(params.len())].to_vec())
    };
    [of(sql.0), of(sql.1)]
}

/// The highest `?N` a statement names.
fn max_param(sql: &str) -> usize {
    sql.split('?')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().ok()
        })
        .max()
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// 1. A fixer's result.

const RESULT_PR: (&str, &str) = transition!(
    "i.id = (SELECT incident_id FROM fix_runs WHERE id = ?6 AND state = 'pr_opened' AND updated_at = ?1) \
     AND i.status IN ('open', 'ticketed', 'claimed', 'regressed')"
);
const RESULT_FAILED: (&str, &str) = transition!(
    "i.id = (SELECT incident_id FROM fix_runs WHERE id = ?6 AND state = 'failed' AND updated_at = ?1) \
     AND i.status IN ('open', 'ticketed', 'claimed', 'regressed')"
);

/// What the agent-runner writes after a fixer's result, in the batch of
/// [`crate::store::finish_run`] and after it. The statements only act when that finish matched
/// (the run is in `outcome` and was updated at `now_ms`), so a stale result changes nothing.
/// `pr_opened` → incident `pr_opened`; `failed` → the attempt ended (`ended = 'failed'`) and the
/// incident is `ticketed` again (the cron decides the next attempt).
pub fn result_statements(run_id: i64, outcome: &str, now_ms: i64) -> Vec<Statement> {
    let figures = json!({ "event": "fixer_result", "run_id": run_id, "outcome": outcome });
    if outcome == "pr_opened" {
        return change(
            RESULT_PR,
            now_ms,
            "pr_opened",
            "fixer",
            "pr_opened",
            figures,
            vec![run_id.into()],
        )
        .into();
    }
    let mut out = vec![Statement::new(
        "UPDATE fix_runs SET ended = 'failed', ended_at = ?2 WHERE id = ?1 AND state = 'failed' \
         AND updated_at = ?2 AND ended IS NULL",
        vec![run_id.into(), now_ms.into()],
    )];
    out.extend(change(
        RESULT_FAILED,
        now_ms,
        "ticketed",
        "fixer",
        "attempt_ended",
        figures,
        vec![run_id.into()],
    ));
    out
}

// ---------------------------------------------------------------------------------------------
// 2. Following PRs.

/// Open PRs to read from the tracker, least recently checked first: `?1` = limit. Rows:
/// [`PrToFollow`].
pub const SELECT_PRS_TO_FOLLOW: &str = "SELECT r.id AS run_id, r.incident_id, r.attempt, r.pr_url FROM fix_runs r \
WHERE r.state = 'pr_opened' AND r.ended IS NULL AND r.pr_url IS NOT NULL AND COALESCE(r.pr_state, 'open') = 'open' \
ORDER BY COALESCE(r.pr_checked_at, 0), r.id LIMIT ?1";

/// A run whose PR the cron follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrToFollow {
    /// `fix_runs.id`.
    pub run_id: i64,
    /// `ops_incidents.id`.
    pub incident_id: i64,
    /// The run's attempt number.
    pub attempt: i64,
    /// The PR's web URL (`https://github.com/{owner}/{repo}/pull/{n}`).
    pub pr_url: String,
}

/// The number of a PR from its web URL (`…/pull/{n}`, any host), if it has one.
pub fn pr_number(pr_url: &str) -> Option<u64> {
    let rest = pr_url.split("/pull/").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|n| *n > 0)
}

/// A PR as the tracker reports it (GitHub's "Get a pull request": `state`, `merged`,
/// `merge_commit_sha`, `merged_at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrState {
    /// `open` or `closed`.
    pub state: String,
    /// Whether it was merged.
    #[serde(default)]
    pub merged: bool,
    /// The merge commit, once merged.
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    /// When it was merged (RFC 3339), once merged.
    #[serde(default)]
    pub merged_at: Option<String>,
}

const PR_MERGED: (&str, &str) = transition!(
    "i.id = ?6 AND i.status IN ('ticketed', 'claimed', 'pr_opened', 'regressed')",
    ", fix_run_id = ?7, fix_commit = ?8, fix_merged_at = ?1, verify_release = NULL, verify_since = NULL, \
     verify_basis = NULL"
);
const PR_CLOSED: (&str, &str) = transition!("i.id = ?6 AND i.status IN ('claimed', 'pr_opened')");

/// Records what the tracker said about run `pr`'s PR: always its state and when it was checked;
/// merged → the incident is `fix_merged` (merge commit and time kept for verification); closed
/// without merge → the attempt ended (`pr_closed`) and the incident is `ticketed` again. Times in
/// ms since the epoch (`merged_at` is the cron's clock, the moment the merge was seen: releases
/// first seen after it may carry the fix).
pub fn pr_statements(pr: &PrToFollow, state: &PrState, now_ms: i64) -> Vec<Statement> {
    let pr_state = match (state.state.as_str(), state.merged) {
        (_, true) => "merged",
        ("closed", false) => "closed",
        _ => "open",
    };
    let mut out = vec![Statement::new(
        "UPDATE fix_runs SET pr_state = ?2, pr_merge_commit = ?3, pr_merged_at = CASE WHEN ?2 = 'merged' THEN ?4 END, \
         pr_checked_at = ?4, ended = CASE WHEN ?2 = 'closed' THEN 'pr_closed' ELSE ended END, \
         ended_at = CASE WHEN ?2 = 'closed' THEN ?4 ELSE ended_at END WHERE id = ?1 AND ended IS NULL",
        vec![
            pr.run_id.into(),
            pr_state.into(),
            state.merge_commit_sha.clone().into(),
            now_ms.into(),
        ],
    )];
    let figures = json!({
        "event": if pr_state == "merged" { "pr_merged" } else { "pr_closed" },
        "run_id": pr.run_id, "attempt": pr.attempt, "pr_url": pr.pr_url,
        "merge_commit": state.merge_commit_sha, "merged_at": state.merged_at,
    });
    match pr_state {
        "merged" => out.extend(change(
            PR_MERGED,
            now_ms,
            "fix_merged",
            "cron",
            "pr_merged",
            figures,
            vec![
                pr.incident_id.into(),
                pr.run_id.into(),
                state.merge_commit_sha.clone().into(),
            ],
        )),
        "closed" => out.extend(change(
            PR_CLOSED,
            now_ms,
            "ticketed",
            "cron",
            "pr_closed",
            figures,
            vec![pr.incident_id.into()],
        )),
        _ => {}
    }
    out
}

/// Copilot runs (handed over to the Copilot coding agent, no PR recorded yet) whose issue's
/// timeline may show the PR Copilot opened: `?1` = limit. Rows: [`CopilotRun`]. Runs whose lease
/// expired are included: the timeline is read before the lease is given back, so a run with a PR
/// is never handed over again.
pub const SELECT_COPILOT_RUNS: &str = "SELECT r.id AS run_id, r.incident_id, r.attempt, t.external_number, \
(SELECT json_group_array(p.pr_url) FROM fix_runs p WHERE p.incident_id = r.incident_id AND p.pr_url IS NOT NULL) AS known_prs \
FROM fix_runs r \
JOIN tickets t ON t.id = r.ticket_id WHERE r.state IN ('leased', 'fixing') AND r.lease_owner = 'copilot' \
AND r.pr_url IS NULL AND t.external_number IS NOT NULL ORDER BY r.id LIMIT ?1";

/// A Copilot run to look up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopilotRun {
    /// `fix_runs.id`.
    pub run_id: i64,
    /// `ops_incidents.id`.
    pub incident_id: i64,
    /// The run's attempt number.
    pub attempt: i64,
    /// Its GitHub issue number.
    pub external_number: i64,
    /// The PRs earlier attempts of the incident recorded (a JSON array of URLs): never this
    /// attempt's PR, though they stay on the issue's timeline.
    #[serde(default)]
    pub known_prs: Option<String>,
}

impl CopilotRun {
    /// [`Self::known_prs`] as a list.
    pub fn known(&self) -> Vec<String> {
        self.known_prs
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default()
    }
}

/// The pull request an issue's timeline links (GitHub's "List timeline events for an issue":
/// a `cross-referenced` event whose `source.issue` has a `pull_request` member, or a `connected`
/// event naming one), preferring one opened by Copilot (`user.login` `Copilot` or
/// `copilot-swe-agent[bot]`) and else the newest, leaving out the `known` ones (earlier
/// attempts'); its web URL. `None` for a body that is not a timeline or holds no new PR.
pub fn timeline_pr(body: &str, known: &[String]) -> Option<String> {
    let events: Vec<serde_json::Value> = serde_json::from_str(body).ok()?;
    let mut found: Vec<(bool, String)> = Vec::new();
    for e in &events {
        let issue = match e.get("event").and_then(|v| v.as_str()) {
            Some("cross-referenced") => e.pointer("/source/issue"),
            Some("connected") => e.get("subject").or_else(|| e.pointer("/source/issue")),
            _ => None,
        };
        let Some(issue) = issue else { continue };
        if issue.get("pull_request").is_none() {
            continue;
        }
        let Some(url) = issue
            .get("html_url")
            .and_then(|v| v.as_str())
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        else {
            continue;
        };
        let login = issue
            .pointer("/user/login")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let by_copilot = login.eq_ignore_ascii_case("copilot") || login == "copilot-swe-agent[bot]";
        if !known.iter().any(|k| k == url) {
            found.push((by_copilot, url.to_string()));
        }
    }
    found
        .iter()
        .rev()
        .find(|(c, _)| *c)
        .or_else(|| found.last())
        .map(|(_, u)| u.clone())
}

const COPILOT_PR: (&str, &str) = transition!(
    "i.id = ?6 AND i.status IN ('open', 'ticketed', 'claimed', 'regressed') \
     AND EXISTS (SELECT 1 FROM fix_runs WHERE id = ?7 AND state = 'pr_opened' AND updated_at = ?1)"
);

/// Records the PR Copilot opened for `run` (found on the issue's timeline): the run is
/// `pr_opened` with the link (its lease ends: it is never handed over again) and the incident
/// `pr_opened`.
pub fn copilot_pr_statements(run: &CopilotRun, pr_url: &str, now_ms: i64) -> Vec<Statement> {
    let result = json!({ "outcome": "pr_opened", "pr_url": pr_url, "reason": "found on the issue's timeline" });
    let mut out = vec![Statement::new(
        "UPDATE fix_runs SET state = 'pr_opened', pr_url = ?2, result = ?3, lease_id = NULL, lease_expires_at = NULL, \
         updated_at = ?4 WHERE id = ?1 AND state IN ('leased', 'fixing') AND pr_url IS NULL",
        vec![
            run.run_id.into(),
            pr_url.into(),
            result.to_string().into(),
            now_ms.into(),
        ],
    )];
    out.extend(change(
        COPILOT_PR,
        now_ms,
        "pr_opened",
        "cron",
        "pr_opened",
        json!({ "event": "pr_opened", "run_id": run.run_id, "attempt": run.attempt, "pr_url": pr_url,
                "found": "issue timeline" }),
        vec![run.incident_id.into(), run.run_id.into()],
    ));
    out
}

// ---------------------------------------------------------------------------------------------
// 3. The release that carries the fix.

/// The release a `fix_merged` incident `i` is verified on: of its script's releases first seen
/// after the merge, the one whose name holds the merge commit's first 7 hex digits (basis
/// `commit`), else the first seen (basis `time`).
macro_rules! next_release {
    () => {
        "COALESCE((SELECT r.release FROM ops_releases r WHERE r.script = i.script_name \
         AND r.first_seen > i.fix_merged_at AND r.release <> '' AND i.fix_commit IS NOT NULL \
         AND instr(r.release, substr(i.fix_commit, 1, 7)) > 0 ORDER BY r.first_seen LIMIT 1), \
         (SELECT r.release FROM ops_releases r WHERE r.script = i.script_name \
         AND r.first_seen > i.fix_merged_at AND r.release <> '' ORDER BY r.first_seen LIMIT 1))"
    };
}

const RELEASE_SEEN: (&str, &str) = (
    concat!(
        "INSERT INTO incident_history (incident_id, at, from_status, to_status, actor, why, figures) \
         SELECT i.id, ?1, i.status, ?2, ?3, ?4, json_patch(?5, json_object('event', 'release_seen', 'release', ",
        next_release!(),
        ", 'merge_commit', i.fix_commit, 'merged_at', i.fix_merged_at)) FROM ops_incidents AS i \
         WHERE i.status = 'fix_merged' AND ",
        next_release!(),
        " IS NOT NULL"
    ),
    concat!(
        "UPDATE ops_incidents AS i SET status = ?2, updated_at = max(i.updated_at, ?1), verify_release = ",
        next_release!(),
        " WHERE i.status = 'fix_merged' AND ",
        next_release!(),
        " IS NOT NULL"
    ),
);

/// Every `fix_merged` incident whose script has shown a release after the merge becomes
/// `verifying` on it (three statements: history, status and release, then when that release was
/// first seen and the basis of the link). The history row's figures are the release, the merge
/// commit and time, taken from the row itself.
pub fn release_seen_statements(now_ms: i64) -> Vec<Statement> {
    let mut out: Vec<Statement> = change(
        RELEASE_SEEN,
        now_ms,
        "verifying",
        "cron",
        "release_seen",
        json!({}),
        vec![],
    )
    .into();
    out.push(Statement::new(
        "UPDATE ops_incidents SET verify_since = (SELECT r.first_seen FROM ops_releases r \
         WHERE r.script = ops_incidents.script_name AND r.release = ops_incidents.verify_release), \
         verify_basis = CASE WHEN fix_commit IS NOT NULL AND instr(verify_release, substr(fix_commit, 1, 7)) > 0 \
         THEN 'commit' ELSE 'time' END WHERE status = 'verifying' AND verify_since IS NULL",
        vec![],
    ));
    out
}

// ---------------------------------------------------------------------------------------------
// 4. Verification on the release's traffic.

/// The figures of every `verifying` incident: its occurrences and its route's requests in the
/// [`BASELINE_WINDOW_MS`] before the release was first seen on other releases (the baseline),
/// and on the release since. `?1` = [`BASELINE_WINDOW_MS`]. Rows: [`VerifyingRow`] (hourly
/// roll-ups: a request counts where its hour bucket's release says).
pub const SELECT_VERIFYING: &str = "SELECT i.id AS incident_id, i.fix_run_id, i.verify_release, i.verify_since, \
i.verify_basis, i.fix_commit, \
(SELECT COALESCE(sum(o.n), 0) FROM ops_occ_1h o WHERE o.fingerprint = i.fingerprint AND o.release <> i.verify_release \
 AND o.bucket >= i.verify_since - ?1) AS baseline_occurrences, \
(SELECT COALESCE(sum(t.requests), 0) FROM ops_traffic_1h t WHERE t.script = i.script_name AND t.route = i.route_pattern \
 AND t.release <> i.verify_release AND t.bucket >= i.verify_since - ?1) AS baseline_requests, \
(SELECT COALESCE(sum(t.requests), 0) FROM ops_traffic_1h t WHERE t.script = i.script_name AND t.route = i.route_pattern \
 AND t.release = i.verify_release) AS release_requests, \
(SELECT COALESCE(sum(o.n), 0) FROM ops_occ_1h o WHERE o.fingerprint = i.fingerprint AND o.release = i.verify_release) \
 AS release_occurrences \
FROM ops_incidents i WHERE i.status = 'verifying' AND i.verify_since IS NOT NULL ORDER BY i.id LIMIT 100";

/// A `verifying` incident and its figures ([`SELECT_VERIFYING`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyingRow {
    /// `ops_incidents.id`.
    pub incident_id: i64,
    /// The run whose PR was merged.
    pub fix_run_id: Option<i64>,
    /// The release under verification.
    pub verify_release: String,
    /// When it was first seen, ms.
    pub verify_since: i64,
    /// `commit` or `time` (see the module docs).
    pub verify_basis: Option<String>,
    /// The merge commit.
    pub fix_commit: Option<String>,
    /// Occurrences before the release.
    pub baseline_occurrences: i64,
    /// Requests on the route before the release.
    pub baseline_requests: i64,
    /// Requests on the route on the release.
    pub release_requests: i64,
    /// Occurrences on the release.
    pub release_occurrences: i64,
}

impl VerifyingRow {
    /// The input of [`lifecycle::verify`].
    pub fn input(&self) -> VerifyInput {
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        VerifyInput {
            baseline_occurrences: u(self.baseline_occurrences),
            baseline_requests: u(self.baseline_requests),
            release_requests: u(self.release_requests),
            release_occurrences: u(self.release_occurrences),
        }
    }
}

const VERIFIED: (&str, &str) = transition!(
    "i.id = ?6 AND i.status = 'verifying'",
    ", resolution = 'verified', resolved_at = ?1"
);
const DID_NOT_HOLD: (&str, &str) = transition!(
    "i.id = ?6 AND i.status = 'verifying'",
    ", resolution = NULL, resolved_at = NULL"
);

/// Judges `row` ([`lifecycle::verify`] at [`lifecycle::VERIFY_CONFIDENCE`]) and returns the
/// verification with its statements: verified → `resolved` (resolution `verified`) and the run's
/// attempt ended `verified`; recurred on the release → `regressed` and the attempt ended
/// `did_not_hold` (the attempt step queues the next); pending or without a baseline → nothing
/// stored (the figures are recomputed every run).
pub fn verify_statements(row: &VerifyingRow, now_ms: i64) -> (Verification, Vec<Statement>) {
    let v = lifecycle::verify(row.input(), lifecycle::VERIFY_CONFIDENCE);
    let figures = json!({
        "event": "verified",
        "outcome": v.outcome,
        "release": row.verify_release,
        "release_first_seen": row.verify_since,
        "basis": row.verify_basis,
        "merge_commit": row.fix_commit,
        "rate_per_request": v.rate_per_request,
        "p_detect": v.p_detect,
        "requests_needed": v.requests_needed,
        "confidence": lifecycle::VERIFY_CONFIDENCE,
        "baseline_occurrences": row.baseline_occurrences,
        "baseline_requests": row.baseline_requests,
        "release_requests": row.release_requests,
        "release_occurrences": row.release_occurrences,
    });
    let (sql, to, why, ended) = match v.outcome {
        lifecycle::VerifyOutcome::Verified => (VERIFIED, "resolved", "verified", "verified"),
        lifecycle::VerifyOutcome::Regressed => {
            (DID_NOT_HOLD, "regressed", "recurred", "did_not_hold")
        }
        _ => return (v, Vec::new()),
    };
    let mut out: Vec<Statement> = Vec::new();
    if let Some(run) = row.fix_run_id {
        out.push(Statement::new(
            "UPDATE fix_runs SET ended = ?2, ended_at = ?3 WHERE id = ?1 AND ended IS NULL \
             AND EXISTS (SELECT 1 FROM ops_incidents WHERE id = ?4 AND status = 'verifying')",
            vec![
                run.into(),
                ended.into(),
                now_ms.into(),
                row.incident_id.into(),
            ],
        ));
    }
    out.extend(change(
        sql,
        now_ms,
        to,
        "cron",
        why,
        figures,
        vec![row.incident_id.into()],
    ));
    (v, out)
}

// ---------------------------------------------------------------------------------------------
// 5. Attempts.

/// Incidents whose last attempt has ended and that may get another: a fix ticket, not resolved,
/// ignored or waiting on a merge or a release, and the ticket's attempt is the last run's (no
/// attempt queued since). `?1` = now (ms; a failed attempt waits out the incident's cool-down).
/// Rows: [`AttemptCandidate`].
pub const SELECT_ATTEMPT_CANDIDATES: &str = "SELECT i.id AS incident_id, i.fingerprint, i.status, t.id AS ticket_id, \
t.attempt AS ticket_attempt FROM ops_incidents i JOIN tickets t ON t.incident_id = i.id \
WHERE t.kind = 'fix' AND i.status IN ('ticketed', 'regressed') \
AND EXISTS (SELECT 1 FROM fix_runs r WHERE r.incident_id = i.id AND r.attempt = t.attempt AND r.ended IS NOT NULL \
  AND (r.ended <> 'failed' OR COALESCE(i.cooldown_until, 0) <= ?1)) \
AND NOT EXISTS (SELECT 1 FROM fix_runs r WHERE r.incident_id = i.id AND r.ended IS NULL) \
AND NOT EXISTS (SELECT 1 FROM incident_history h WHERE h.incident_id = i.id AND h.why = 'attempts_exhausted' \
  AND CAST(json_extract(h.figures, '$.made') AS INTEGER) >= t.attempt) \
ORDER BY i.id LIMIT 50";

/// An incident that may get another attempt ([`SELECT_ATTEMPT_CANDIDATES`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptCandidate {
    /// `ops_incidents.id`.
    pub incident_id: i64,
    /// Its fingerprint.
    pub fingerprint: String,
    /// Its status.
    pub status: String,
    /// `tickets.id`.
    pub ticket_id: i64,
    /// The attempt the ticket was last queued for.
    pub ticket_attempt: i64,
}

/// What the attempt step decided for one incident, with its statements. `queue` is the attempt
/// whose job is to be sent when the first statement returned a row (the ticket moved to it).
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptPlan {
    /// The decision (with the attempts made).
    pub decision: AttemptDecision,
    /// The attempt to queue, if any.
    pub queue: Option<u32>,
    /// The statements; with `queue`, the first one's `RETURNING id` says the ticket moved.
    pub statements: Vec<Statement>,
}

/// Decides the next attempt for `c` from its `attempts` ([`lifecycle::next_attempt`]; the
/// cool-down is already applied by [`SELECT_ATTEMPT_CANDIDATES`]) with at most `max` attempts.
/// Start → the ticket moves to attempt n (unqueued, open) and a history row `attempt_queued`;
/// exhausted → one `attempts_exhausted` history row; the incident keeps its status either way.
pub fn attempt_statements(
    c: &AttemptCandidate,
    attempts: &[AttemptSummary],
    max: u32,
    now_ms: i64,
) -> AttemptPlan {
    let decision = lifecycle::next_attempt(attempts, max, 0, now_ms);
    let last = attempts.iter().max_by_key(|a| a.attempt);
    let figures = |made: u32, next: Option<u32>| {
        json!({
            "event": if next.is_some() { "attempt_queued" } else { "attempts_exhausted" },
            "made": made, "max": max, "next": next,
            "last_ended": last.map(|a| a.ended.clone()), "last_pr_url": last.and_then(|a| a.pr_url.clone()),
        })
        .to_string()
    };
    let history = |why: &str, figures: String| {
        Statement::new(
            "INSERT INTO incident_history (incident_id, at, from_status, to_status, actor, why, figures) \
             SELECT id, ?2, status, status, 'cron', ?3, ?4 FROM ops_incidents WHERE id = ?1 \
             AND NOT EXISTS (SELECT 1 FROM incident_history h WHERE h.incident_id = ?1 AND h.why = ?3 \
               AND json_extract(h.figures, '$.made') = json_extract(?4, '$.made') \
               AND COALESCE(json_extract(h.figures, '$.next'), 0) = COALESCE(json_extract(?4, '$.next'), 0))",
            vec![
                c.incident_id.into(),
                now_ms.into(),
                why.into(),
                figures.into(),
            ],
        )
    };
    match &decision {
        AttemptDecision::Start { n } => {
            let prev = i64::from(*n) - 1;
            AttemptPlan {
                queue: Some(*n),
                statements: vec![
                    Statement::new(
                        "UPDATE tickets SET attempt = ?2, queued_at = NULL, state = 'open', updated_at = ?4 \
                         WHERE id = ?1 AND attempt = ?3 RETURNING id",
                        vec![
                            c.ticket_id.into(),
                            i64::from(*n).into(),
                            prev.into(),
                            now_ms.into(),
                        ],
                    ),
                    history("attempt_queued", figures(*n - 1, Some(*n))),
                ],
                decision,
            }
        }
        AttemptDecision::Exhausted { made } => AttemptPlan {
            queue: None,
            statements: vec![history("attempts_exhausted", figures(*made, None))],
            decision,
        },
        AttemptDecision::Wait { .. } => AttemptPlan {
            queue: None,
            statements: Vec::new(),
            decision,
        },
    }
}

/// An operator's retry (`selfheal retry ID`): the ticket moves to the next attempt even past the
/// maximum, when no attempt is in flight; the cron sends its job. `RETURNING id` on the first
/// statement says whether it moved.
pub fn retry_statements(incident_id: i64, now_ms: i64) -> Vec<Statement> {
    vec![
        Statement::new(
            "UPDATE tickets SET attempt = attempt + 1, queued_at = NULL, state = 'open', updated_at = ?2 \
             WHERE incident_id = ?1 AND kind = 'fix' \
             AND EXISTS (SELECT 1 FROM fix_runs r WHERE r.incident_id = ?1 AND r.attempt = tickets.attempt) \
             AND NOT EXISTS (SELECT 1 FROM fix_runs r WHERE r.incident_id = ?1 AND r.ended IS NULL) \
             RETURNING id, attempt",
            vec![incident_id.into(), now_ms.into()],
        ),
        Statement::new(
            "INSERT INTO incident_history (incident_id, at, from_status, to_status, actor, why, figures) \
             SELECT i.id, ?2, i.status, CASE WHEN i.status IN ('resolved', 'ignored') THEN 'ticketed' ELSE i.status END, \
             'operator', 'operator_retry', json_object('event', 'operator', 'action', 'retry', 'attempt', t.attempt) \
             FROM ops_incidents i JOIN tickets t ON t.incident_id = i.id WHERE i.id = ?1 AND t.updated_at = ?2 \
             AND t.queued_at IS NULL",
            vec![incident_id.into(), now_ms.into()],
        ),
        Statement::new(
            "UPDATE ops_incidents SET status = 'ticketed', cooldown_until = NULL, updated_at = ?2 \
             WHERE id = ?1 AND EXISTS (SELECT 1 FROM tickets t WHERE t.incident_id = ?1 AND t.updated_at = ?2 \
             AND t.queued_at IS NULL) AND status IN ('resolved', 'ignored', 'ticketed', 'regressed')",
            vec![incident_id.into(), now_ms.into()],
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Operators: what a status change by a person also records; escalation of an ignored incident.

/// Rides after an operator's status change (same batch, same `now_ms`): a resolve records
/// resolution `operator`; an ignore records whether an escalation brings it back
/// (`until_escalating`); any other status clears both.
pub fn operator_marks_statement(
    incident_id: i64,
    until_escalating: bool,
    now_ms: i64,
) -> Statement {
    Statement::new(
        "UPDATE ops_incidents SET \
         ignore_until_escalating = CASE WHEN status = 'ignored' THEN ?2 ELSE 0 END, \
         resolution = CASE WHEN status = 'resolved' THEN 'operator' ELSE resolution END, \
         resolved_at = CASE WHEN status = 'resolved' THEN ?3 ELSE resolved_at END \
         WHERE id = ?1 AND updated_at = ?3",
        vec![
            incident_id.into(),
            i64::from(until_escalating).into(),
            now_ms.into(),
        ],
    )
}

/// Occurrences of incident `i` in the hour before `?1`, and its hourly average over the 7 days
/// before it was ignored (the last `ignored` history row).
macro_rules! escalation_figures {
    () => {
        "(SELECT COALESCE(sum(o.n), 0) FROM ops_occ_1h o WHERE o.fingerprint = i.fingerprint AND o.bucket >= ?1 - 3600000)"
    };
    (baseline) => {
        "((SELECT COALESCE(sum(o.n), 0) FROM ops_occ_1h o WHERE o.fingerprint = i.fingerprint \
          AND o.bucket < (SELECT max(h.at) FROM incident_history h WHERE h.incident_id = i.id AND h.to_status = 'ignored') \
          AND o.bucket >= (SELECT max(h.at) FROM incident_history h WHERE h.incident_id = i.id AND h.to_status = 'ignored') - 604800000) \
          / 168.0)"
    };
}

/// Escalation: an hour with at least [`ESCALATING_MIN_PER_HOUR`] occurrences and
/// [`ESCALATING_FACTOR`]× the hourly average of the 7 days before the ignore (a fixed-ratio
/// stand-in for Sentry's forecast-based "escalating" issues).
macro_rules! escalating_guard {
    () => {
        concat!(
            "i.status = 'ignored' AND i.ignore_until_escalating = 1 AND ",
            escalation_figures!(),
            " >= max(?2, ?3 * ",
            escalation_figures!(baseline),
            ")"
        )
    };
}

/// Occurrences in one hour an ignored incident must reach to escalate.
pub const ESCALATING_MIN_PER_HOUR: i64 = 10;
/// How many times its hourly average before the ignore that hour must be.
pub const ESCALATING_FACTOR: i64 = 3;

/// Ignored-until-escalating incidents that escalate come back: `ticketed` when they have a
/// ticket, else `open`, with a history row (`escalating`) giving the hour's occurrences and the
/// baseline.
pub fn escalating_statements(now_ms: i64) -> Vec<Statement> {
    let params: Vec<SqlValue> = vec![
        now_ms.into(),
        ESCALATING_MIN_PER_HOUR.into(),
        ESCALATING_FACTOR.into(),
    ];
    vec![
        Statement::new(
            concat!(
                "INSERT INTO incident_history (incident_id, at, from_status, to_status, actor, why, figures) \
                 SELECT i.id, ?1, i.status, CASE WHEN i.ticket_id IS NULL THEN 'open' ELSE 'ticketed' END, 'cron', \
                 'escalating', json_object('event', 'escalating', 'last_hour', ",
                escalation_figures!(),
                ", 'baseline_per_hour', ",
                escalation_figures!(baseline),
                ", 'min_per_hour', ?2, 'factor', ?3) FROM ops_incidents AS i WHERE ",
                escalating_guard!()
            ),
            params.clone(),
        ),
        Statement::new(
            concat!(
                "UPDATE ops_incidents AS i SET status = CASE WHEN i.ticket_id IS NULL THEN 'open' ELSE 'ticketed' END, \
                 ignore_until_escalating = 0, updated_at = max(i.updated_at, ?1) WHERE ",
                escalating_guard!()
            ),
            params,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// 6. Inactive incidents, 7. built-in tickets.

const INACTIVE: (&str, &str) = transition!(
    "i.status IN ('open', 'ticketed', 'regressed') AND i.last_seen < ?6 \
     AND NOT EXISTS (SELECT 1 FROM fix_runs r WHERE r.incident_id = i.id AND r.ended IS NULL)",
    ", resolution = 'inactive', resolved_at = ?1"
);

/// Incidents without a fix in flight and quiet for `days` become `resolved` (inactive).
pub fn inactive_statements(days: u32, now_ms: i64) -> Vec<Statement> {
    change(
        INACTIVE,
        now_ms,
        "resolved",
        "cron",
        "inactive",
        json!({ "event": "quiet", "days": days }),
        vec![(now_ms - i64::from(days) * DAY_MS).into()],
    )
    .into()
}

/// The built-in tracker follows the incidents: a ticket is closed when its incident is resolved or
/// ignored, and open again when it regressed or an attempt was queued.
pub fn ticket_state_statements(now_ms: i64) -> Vec<Statement> {
    vec![
        Statement::new(
            "UPDATE tickets SET state = 'closed', updated_at = ?1 WHERE state = 'open' AND incident_id IN \
             (SELECT id FROM ops_incidents WHERE status IN ('resolved', 'ignored'))",
            vec![now_ms.into()],
        ),
        Statement::new(
            "UPDATE tickets SET state = 'open', updated_at = ?1 WHERE state = 'closed' AND incident_id IN \
             (SELECT id FROM ops_incidents WHERE status NOT IN ('resolved', 'ignored'))",
            vec![now_ms.into()],
        ),
    ]
}

/// `SELFHEAL_MAX_ATTEMPTS` (1–10), default [`lifecycle::DEFAULT_MAX_ATTEMPTS`].
pub fn max_attempts(var: Option<&str>) -> u32 {
    var.and_then(|v| v.trim().parse::<u32>().ok())
        .map_or(lifecycle::DEFAULT_MAX_ATTEMPTS, |v| v.clamp(1, 10))
}

/// `SELFHEAL_RESOLVE_AFTER_DAYS` (1–365), default [`lifecycle::DEFAULT_RESOLVE_AFTER_DAYS`].
pub fn resolve_after_days(var: Option<&str>) -> u32 {
    var.and_then(|v| v.trim().parse::<u32>().ok())
        .map_or(lifecycle::DEFAULT_RESOLVE_AFTER_DAYS, |v| v.clamp(1, 365))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pr_numbers_come_from_web_urls() {
        assert_eq!(pr_number("https://github.com/acme/shop/pull/7"), Some(7));
        assert_eq!(
            pr_number("http://127.0.0.1:9/acme/shop/pull/12#x"),
            Some(12)
        );
        assert_eq!(pr_number("https://github.com/acme/shop/issues/7"), None);
        assert_eq!(pr_number("https://github.com/acme/shop/pull/"), None);
    }

    #[test]
    fn the_timeline_gives_copilots_pr_first() {
        let body = r#"[
          {"event": "labeled"},
          {"event": "cross-referenced", "source": {"type": "issue", "issue": {"number": 3,
             "html_url": "https://github.com/acme/shop/issues/3"}}},
          {"event": "cross-referenced", "source": {"type": "issue", "issue": {"number": 8,
             "html_url": "https://github.com/acme/shop/pull/8", "pull_request": {}, "user": {"login": "Copilot"}}}},
          {"event": "cross-referenced", "source": {"type": "issue", "issue": {"number": 9,
             "html_url": "https://github.com/acme/shop/pull/9", "pull_request": {}, "user": {"login": "octocat"}}}}
        ]"#;
        assert_eq!(
            timeline_pr(body, &[]).as_deref(),
            Some("https://github.com/acme/shop/pull/8")
        );
        // Attempt 2: attempt 1's PR (8) is known, so the other one is this attempt's.
        assert_eq!(
            timeline_pr(body, &["https://github.com/acme/shop/pull/8".into()]).as_deref(),
            Some("https://github.com/acme/shop/pull/9")
        );
        assert_eq!(timeline_pr("[]", &[]), None);
        assert_eq!(timeline_pr("{\"message\": \"Not Found\"}", &[]), None);
        let human = r#"[{"event": "cross-referenced", "source": {"issue": {"html_url":
            "https://github.com/acme/shop/pull/4", "pull_request": {}, "user": {"login": "octocat"}}}}]"#;
        assert_eq!(
            timeline_pr(human, &[]).as_deref(),
            Some("https://github.com/acme/shop/pull/4")
        );
    }

    #[test]
    fn settings_are_clamped() {
        assert_eq!(max_attempts(None), 3);
        assert_eq!(max_attempts(Some("0")), 1);
        assert_eq!(max_attempts(Some("x")), 3);
        assert_eq!(resolve_after_days(Some("30")), 30);
    }
}
