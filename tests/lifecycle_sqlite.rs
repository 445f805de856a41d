//! The lifecycle after the draft PR (`selfheal::tracking::follow`) on SQLite with the real
//! migrations: merged → a release after the merge → verified on its traffic (or regressed), the
//! next attempt with what the last one did, the maximum of attempts, PRs closed unmerged, Copilot
//! PRs found on the timeline, inactive incidents, and the history row of every change.

use selfheal::sqlite::Db;
use selfheal::store::{self, Statement};
use selfheal::ticket::FixJob;
use selfheal::tracking::follow::{
    self, AttemptCandidate, CopilotRun, PrState, PrToFollow, VerifyingRow,
};
use selfheal::tracking::lifecycle::{AttemptDecision, AttemptSummary, VerifyOutcome};
use serde_json::Value;

const HOUR: i64 = 3_600_000;
const T0: i64 = 1_800_000_000_000; // an hour boundary

fn db() -> Db {
    let db = Db::memory().expect("db");
    // One incident on /r of script `s`, ticketed, with 50 occurrences in 10,000 requests on v1.
    db.conn
        .execute_batch(&format!(
            "INSERT INTO ops_incidents (id, fingerprint, fingerprint_version, script_name, route_pattern, exception_type, \
             normalized_message, top_frame, status_class, first_seen, last_seen, updated_at, status, ticket_id) \
             VALUES (1, 'f1', 2, 's', '/r', 'TypeError', 'm', 'f', '5xx', {T0}, {T0}, {T0}, 'claimed', 1); \
             INSERT INTO tickets (id, incident_id, fingerprint, title, body, created_at, updated_at, queued_at) \
             VALUES (1, 1, 'f1', 't', 'b', {T0}, {T0}, {T0}); \
             INSERT INTO fix_runs (id, incident_id, attempt, ticket_id, fingerprint, state, task, created_at, updated_at, pr_url, result) \
             VALUES (1, 1, 1, 1, 'f1', 'pr_opened', '{{}}', {T0}, {T0}, 'https://github.com/acme/shop/pull/7', \
             '{{\"diagnosis\": \"null user\"}}'); \
             INSERT INTO ops_releases VALUES ('s', 'v1', {T0}, {T0}); \
             INSERT INTO ops_traffic_1h VALUES ('s', '/r', 'v1', {T0}, 10000, 50); \
             INSERT INTO ops_occ_1h VALUES ('f1', {T0}, 'v1', 50);"
        ))
        .expect("fixture");
    db
}

fn status(db: &mut Db) -> String {
    let rows: Vec<Value> = db
        .rows(Statement {
            sql: "SELECT status FROM ops_incidents WHERE id = 1",
            params: vec![],
        })
        .expect("status");
    rows[0]["status"].as_str().unwrap_or("").to_string()
}

fn history(db: &mut Db) -> Vec<(String, String, String)> {
    let rows: Vec<Value> = db
        .rows(Statement {
            sql: "SELECT from_status, to_status, why FROM incident_history WHERE incident_id = 1 ORDER BY id",
            params: vec![],
        })
        .expect("history");
    rows.iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (s("from_status"), s("to_status"), s("why"))
        })
        .collect()
}

fn merged() -> PrState {
    PrState {
        state: "closed".into(),
        merged: true,
        merge_commit_sha: Some("abc1234def".into()),
        merged_at: Some("2027-01-15T08:00:00Z".into()),
    }
}

fn pr() -> PrToFollow {
    PrToFollow {
        run_id: 1,
        incident_id: 1,
        attempt: 1,
        pr_url: "https://github.com/acme/shop/pull/7".into(),
    }
}

fn verifying(db: &mut Db) -> Vec<VerifyingRow> {
    db.rows(Statement {
        sql: follow::SELECT_VERIFYING,
        params: vec![follow::BASELINE_WINDOW_MS.into()],
    })
    .expect("verifying")
}

/// Merge at T0+1h, release v2 first seen at T0+2h with `requests` on /r and `occurrences` of f1.
fn to_verifying(db: &mut Db, requests: i64, occurrences: i64) {
    db.batch(&follow::pr_statements(&pr(), &merged(), T0 + HOUR))
        .expect("merge");
    assert_eq!(status(db), "fix_merged");
    db.batch(&follow::release_seen_statements(T0 + HOUR + 1))
        .expect("no release yet");
    assert_eq!(status(db), "fix_merged", "no release after the merge yet");
    db.conn
        .execute_batch(&format!(
            "INSERT INTO ops_releases VALUES ('s', 'v2', {t}, {t}); \
             INSERT INTO ops_traffic_1h VALUES ('s', '/r', 'v2', {t}, {requests}, 0); \
             INSERT INTO ops_occ_1h VALUES ('f1', {t}, 'v2', {occurrences});",
            t = T0 + 2 * HOUR
        ))
        .expect("release v2");
    db.batch(&follow::release_seen_statements(T0 + 2 * HOUR + 1))
        .expect("release");
    assert_eq!(status(db), "verifying");
}

#[test]
fn a_merged_fix_is_verified_on_the_release_after_the_merge() {
    let mut db = db();
    to_verifying(&mut db, 900, 0);
    let rows = verifying(&mut db);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].verify_release, "v2");
    assert_eq!(rows[0].verify_basis.as_deref(), Some("time"));
    assert_eq!(
        (rows[0].baseline_occurrences, rows[0].baseline_requests),
        (50, 10_000)
    );
    // 900 requests at 0.005 per request: p = 1 − e^(−4.5) ≈ 0.989 < 0.99 → pending, nothing stored.
    let (v, stmts) = follow::verify_statements(&rows[0], T0 + 3 * HOUR);
    assert_eq!(v.outcome, VerifyOutcome::Pending);
    assert!(stmts.is_empty());
    db.conn
        .execute_batch("UPDATE ops_traffic_1h SET requests = 922 WHERE release = 'v2'")
        .expect("more traffic");
    let (v, stmts) = follow::verify_statements(&verifying(&mut db)[0], T0 + 4 * HOUR);
    assert_eq!(v.outcome, VerifyOutcome::Verified);
    assert_eq!(v.requests_needed, 922);
    db.batch(&stmts).expect("verified");
    db.batch(&follow::ticket_state_statements(T0 + 4 * HOUR))
        .expect("tickets");
    assert_eq!(status(&mut db), "resolved");
    assert_eq!(
        db.scalar("SELECT count(*) FROM fix_runs WHERE ended = 'verified' AND pr_state = 'merged'")
            .expect("q"),
        1
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM tickets WHERE state = 'closed'")
            .expect("q"),
        1
    );
    let figures: Vec<Value> = db
        .rows(Statement {
            sql: "SELECT figures FROM incident_history WHERE why = 'verified'",
            params: vec![],
        })
        .expect("figures");
    let f: Value =
        serde_json::from_str(figures[0]["figures"].as_str().unwrap_or("{}")).expect("json");
    assert_eq!(f["release_requests"], 922);
    assert!(f["p_detect"].as_f64().unwrap_or(0.0) >= 0.99);

    // An isolate still on v1 (first seen before v2) does not regress a verified fix; v2 does.
    db.conn
        .execute_batch(&format!(
            "INSERT INTO ops_occurrences VALUES ('k1', 'f1', {}, 'v1')",
            T0 + 5 * HOUR
        ))
        .expect("old release");
    assert_eq!(status(&mut db), "resolved");
    db.conn
        .execute_batch(&format!(
            "INSERT INTO ops_occurrences VALUES ('k2', 'f1', {}, 'v2')",
            T0 + 5 * HOUR
        ))
        .expect("new release");
    assert_eq!(status(&mut db), "regressed");
    assert_eq!(
        history(&mut db),
        [
            ("claimed".into(), "fix_merged".into(), "pr_merged".into()),
            (
                "fix_merged".into(),
                "verifying".into(),
                "release_seen".into()
            ),
            ("verifying".into(), "resolved".into(), "verified".into()),
            (
                "resolved".into(),
                "regressed".into(),
                "occurred_after_resolve".into()
            ),
        ]
    );
}

#[test]
fn a_release_named_after_the_merge_commit_wins_over_an_earlier_one() {
    let mut db = db();
    db.batch(&follow::pr_statements(&pr(), &merged(), T0 + HOUR))
        .expect("merge");
    db.conn
        .execute_batch(&format!(
            "INSERT INTO ops_releases VALUES ('s', 'hotfix-other', {a}, {a}); \
             INSERT INTO ops_releases VALUES ('s', 'deploy-abc1234', {b}, {b});",
            a = T0 + HOUR + 10,
            b = T0 + HOUR + 20
        ))
        .expect("releases");
    db.batch(&follow::release_seen_statements(T0 + 2 * HOUR))
        .expect("release");
    let rows: Vec<Value> = db
        .rows(Statement {
            sql: "SELECT verify_release, verify_basis, verify_since FROM ops_incidents WHERE id = 1",
            params: vec![],
        })
        .expect("row");
    assert_eq!(rows[0]["verify_release"], "deploy-abc1234");
    assert_eq!(rows[0]["verify_basis"], "commit");
    assert_eq!(rows[0]["verify_since"], T0 + HOUR + 20);
}

fn candidates(db: &mut Db, now: i64) -> Vec<AttemptCandidate> {
    db.rows(Statement {
        sql: follow::SELECT_ATTEMPT_CANDIDATES,
        params: vec![now.into()],
    })
    .expect("candidates")
}

fn attempts(db: &mut Db) -> Vec<AttemptSummary> {
    db.rows(Statement {
        sql: store::SELECT_ATTEMPTS,
        params: vec![1i64.into()],
    })
    .expect("attempts")
}

#[test]
fn a_fix_that_did_not_hold_gets_a_second_attempt_and_no_third_past_the_maximum() {
    let mut db = db();
    to_verifying(&mut db, 100, 2);
    let (v, stmts) = follow::verify_statements(&verifying(&mut db)[0], T0 + 3 * HOUR);
    assert_eq!(v.outcome, VerifyOutcome::Regressed);
    db.batch(&stmts).expect("regressed");
    assert_eq!(status(&mut db), "regressed");
    assert!(candidates(&mut db, T0 + 3 * HOUR).len() == 1);

    // Attempt 2 is queued with attempt 1's PR and diagnosis in its task.
    let c = &candidates(&mut db, T0 + 3 * HOUR)[0];
    let plan = follow::attempt_statements(c, &attempts(&mut db), 2, T0 + 3 * HOUR);
    assert_eq!(plan.decision, AttemptDecision::Start { n: 2 });
    let moved = db.batch(&plan.statements).expect("queue");
    assert_eq!(moved[0].len(), 1, "the ticket moved to attempt 2");
    let again = db.batch(&plan.statements).expect("again");
    assert!(
        again[0].is_empty(),
        "a second run of the same plan moves nothing"
    );
    let earlier = attempts(&mut db);
    assert_eq!(earlier[0].ended, "did_not_hold");
    assert_eq!(
        earlier[0].pr_url.as_deref(),
        Some("https://github.com/acme/shop/pull/7")
    );
    assert_eq!(earlier[0].diagnosis.as_deref(), Some("null user"));
    let claim = store::claim_statements(
        &FixJob::attempt(1, 1, "f1".into(), 2),
        "{}",
        "2027-01-15",
        5,
        T0 + 3 * HOUR,
    );
    let claimed = db.batch(&claim).expect("claim 2");
    assert_eq!(
        claimed[store::CLAIM_INSERT_INDEX].len(),
        1,
        "attempt 2 is a new run"
    );
    assert_eq!(
        db.batch(&claim).expect("redelivered")[store::CLAIM_INSERT_INDEX].len(),
        0,
        "a redelivered job of attempt 2 claims nothing"
    );
    assert_eq!(status(&mut db), "claimed");
    assert!(
        candidates(&mut db, T0 + 3 * HOUR).is_empty(),
        "attempt 2 is in flight"
    );

    // Attempt 2 fails (no cool-down set): the maximum (2) is reached, once.
    let now = T0 + 4 * HOUR;
    db.conn
        .execute_batch("UPDATE fix_runs SET state = 'leased', lease_id = 'L' WHERE attempt = 2")
        .expect("lease");
    let mut finish = vec![store::finish_run(
        2,
        "L",
        "failed",
        None,
        "{\"reason\": \"tests red\"}",
        now,
    )];
    finish.extend(follow::result_statements(2, "failed", now));
    db.batch(&finish).expect("failed");
    assert_eq!(status(&mut db), "ticketed");
    let c = &candidates(&mut db, now)[0];
    let plan = follow::attempt_statements(c, &attempts(&mut db), 2, now);
    assert_eq!(plan.decision, AttemptDecision::Exhausted { made: 2 });
    db.batch(&plan.statements).expect("exhausted");
    assert!(
        candidates(&mut db, now).is_empty(),
        "an incident out of attempts is not a candidate again"
    );
    // A person can still retry it.
    let retried = db
        .batch(&follow::retry_statements(1, now + 1))
        .expect("retry");
    assert_eq!(retried[0].len(), 1);
    assert_eq!(
        db.scalar("SELECT attempt FROM tickets WHERE id = 1")
            .expect("q"),
        3
    );
    let whys: Vec<String> = history(&mut db).into_iter().map(|h| h.2).collect();
    assert_eq!(
        whys,
        [
            "pr_merged",
            "release_seen",
            "recurred",
            "attempt_queued",
            "run_claimed",
            "attempt_ended",
            "attempts_exhausted",
            "operator_retry"
        ]
    );
}

#[test]
fn a_pr_closed_without_merge_ends_the_attempt() {
    let mut db = db();
    db.conn
        .execute_batch("UPDATE ops_incidents SET status = 'pr_opened'")
        .expect("status");
    let closed = PrState {
        state: "closed".into(),
        merged: false,
        merge_commit_sha: None,
        merged_at: None,
    };
    db.batch(&follow::pr_statements(&pr(), &closed, T0 + HOUR))
        .expect("closed");
    assert_eq!(status(&mut db), "ticketed");
    assert_eq!(attempts(&mut db)[0].ended, "pr_closed");
    let open = db
        .rows::<PrToFollow>(Statement {
            sql: follow::SELECT_PRS_TO_FOLLOW,
            params: vec![10i64.into()],
        })
        .expect("prs");
    assert!(open.is_empty(), "a closed PR is not followed again");
}

#[test]
fn a_stale_result_changes_no_incident() {
    let mut db = db();
    db.conn
        .execute_batch("UPDATE fix_runs SET state = 'leased', lease_id = 'L'; UPDATE ops_incidents SET status = 'claimed'")
        .expect("lease");
    let mut stale = vec![store::finish_run(1, "other", "failed", None, "{}", T0 + 5)];
    stale.extend(follow::result_statements(1, "failed", T0 + 5));
    db.batch(&stale).expect("stale");
    assert_eq!(status(&mut db), "claimed");
    assert!(history(&mut db).is_empty());
    let mut good = vec![store::finish_run(
        1,
        "L",
        "pr_opened",
        Some("https://github.com/acme/shop/pull/9"),
        "{}",
        T0 + 6,
    )];
    good.extend(follow::result_statements(1, "pr_opened", T0 + 6));
    db.batch(&good).expect("pr");
    assert_eq!(status(&mut db), "pr_opened");
}

#[test]
fn a_copilot_pr_on_the_timeline_ends_the_lease_for_good() {
    let mut db = db();
    db.conn
        .execute_batch(&format!(
            "UPDATE tickets SET external_number = 5; \
             UPDATE fix_runs SET state = 'fixing', pr_url = NULL, lease_id = 'L', lease_owner = 'copilot', \
             lease_expires_at = {}",
            T0 + 10
        ))
        .expect("copilot run");
    let runs: Vec<CopilotRun> = db
        .rows(Statement {
            sql: follow::SELECT_COPILOT_RUNS,
            params: vec![10i64.into()],
        })
        .expect("runs");
    assert_eq!(runs.len(), 1);
    db.batch(&follow::copilot_pr_statements(
        &runs[0],
        "https://github.com/acme/shop/pull/11",
        T0 + 20,
    ))
    .expect("pr");
    assert_eq!(status(&mut db), "pr_opened");
    // The lease has expired; taking the next lease must not hand this run out again.
    let leased = db
        .batch(&store::lease_statements("L2", "copilot", T0 + 30, HOUR))
        .expect("lease");
    assert!(leased[store::LEASE_READBACK_INDEX].is_empty());
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM fix_runs WHERE state = 'pr_opened' AND pr_url LIKE '%/pull/11'"
        )
        .expect("q"),
        1
    );
}

#[test]
fn quiet_incidents_without_a_fix_in_flight_resolve_as_inactive() {
    let mut db = db();
    db.conn
        .execute_batch(&format!(
            "UPDATE ops_incidents SET status = 'ticketed'; \
             INSERT INTO ops_incidents (id, fingerprint, fingerprint_version, script_name, route_pattern, exception_type, \
             normalized_message, top_frame, status_class, first_seen, last_seen, updated_at, status) \
             VALUES (2, 'f2', 2, 's', '/q', 'Error', 'm', 'f', '5xx', {T0}, {T0}, {T0}, 'open');"
        ))
        .expect("incidents");
    let now = T0 + 15 * 86_400_000;
    db.batch(&follow::inactive_statements(14, now))
        .expect("inactive");
    // Incident 1 still has a run with a PR open (not ended): it stays.
    assert_eq!(status(&mut db), "ticketed");
    assert_eq!(
        db.scalar("SELECT count(*) FROM ops_incidents WHERE id = 2 AND status = 'resolved' AND resolution = 'inactive'")
            .expect("q"),
        1
    );
    db.conn
        .execute_batch(&format!(
            "INSERT INTO ops_occurrences VALUES ('k9', 'f2', {now}, 'v1')"
        ))
        .expect("occurs again");
    assert_eq!(
        db.scalar("SELECT count(*) FROM ops_incidents WHERE id = 2 AND status = 'regressed'")
            .expect("q"),
        1
    );
}

#[test]
fn an_incident_ignored_until_escalating_comes_back_when_it_escalates() {
    let mut db = db();
    // Ignored at T0+7d after 50 occurrences in the 7 days before (0.3 per hour).
    let ignored_at = T0 + 7 * 86_400_000;
    db.conn
        .execute_batch(&format!(
            "UPDATE ops_incidents SET status = 'ignored', ignore_until_escalating = 1; \
             UPDATE ops_occ_1h SET bucket = {b}; \
             INSERT INTO incident_history (incident_id, at, from_status, to_status, actor, why, figures) \
             VALUES (1, {ignored_at}, 'ticketed', 'ignored', 'operator', 'operator_ignore', '{{}}'); \
             INSERT INTO ops_occ_1h VALUES ('f1', {h}, 'v1', 9);",
            b = T0 + 86_400_000,
            h = ignored_at + 5 * HOUR
        ))
        .expect("ignored");
    let now = ignored_at + 5 * HOUR + 10;
    db.batch(&follow::escalating_statements(now))
        .expect("not yet");
    assert_eq!(
        status(&mut db),
        "ignored",
        "9 in an hour is below the minimum of 10"
    );
    db.conn
        .execute_batch("UPDATE ops_occ_1h SET n = 12 WHERE n = 9")
        .expect("more");
    db.batch(&follow::escalating_statements(now))
        .expect("escalates");
    assert_eq!(status(&mut db), "ticketed");
    let rows: Vec<Value> = db
        .rows(Statement {
            sql: "SELECT figures FROM incident_history WHERE why = 'escalating'",
            params: vec![],
        })
        .expect("history");
    let f: Value = serde_json::from_str(rows[0]["figures"].as_str().unwrap_or("{}")).expect("json");
    assert_eq!(f["last_hour"], 12);
    assert!((f["baseline_per_hour"].as_f64().unwrap_or(0.0) - 50.0 / 168.0).abs() < 1e-9);
}

#[test]
fn a_diagnosed_run_puts_its_diagnosis_in_the_tracker_comment() {
    let mut db = db();
    db.conn
        .execute_batch(
            "UPDATE tickets SET external_number = 4, external_state = 'open'; \
             UPDATE fix_runs SET state = 'failed', result = json_object('outcome', 'diagnosed', \
             'reason', 'diagnosed: the agent changed nothing and wrote a diagnosis', \
             'diagnosis', 'Expected: the upstream answered 402.')",
        )
        .expect("diagnosed run");
    let changes: Vec<store::TrackerChange> = db
        .rows(Statement {
            sql: store::SELECT_TRACKER_CHANGES,
            params: vec![10i64.into()],
        })
        .expect("changes");
    let run = changes
        .iter()
        .find(|c| c.kind == "run")
        .expect("a run change");
    let detail = run.detail.as_deref().unwrap_or("");
    assert!(
        detail.starts_with("diagnosed: the agent changed nothing"),
        "{detail}"
    );
    assert!(
        detail.ends_with("Expected: the upstream answered 402."),
        "{detail}"
    );
    let comment = selfheal::ticket::run_comment(1, &run.state, run.detail.as_deref(), None);
    assert!(
        comment.contains("Untrusted"),
        "the diagnosis is fenced as untrusted: {comment}"
    );
}
