//! The lifecycle step of the cron: follows draft PRs to their merge, the merge to a release, the
//! release to a verdict on production traffic, and queues the next attempt when a fix did not
//! hold. The statements and decisions are [`selfheal::tracking::follow`]'s; this file reads the
//! tracker (GitHub) and runs them on D1.

use selfheal::github::{self, Repo};
use selfheal::store::SELECT_ATTEMPTS;
use selfheal::ticket::FixJob;
use selfheal::tracking::follow::{
    self, AttemptCandidate, BASELINE_WINDOW_MS, CopilotRun, PrState, PrToFollow,
    SELECT_ATTEMPT_CANDIDATES, SELECT_COPILOT_RUNS, SELECT_PRS_TO_FOLLOW, SELECT_VERIFYING,
    VerifyingRow,
};
use selfheal::tracking::lifecycle::{AttemptDecision, AttemptSummary};
use selfheal::workers::{self, GlueError, sql_with};
use worker::console_log;

/// PRs (and Copilot timelines) read per run.
const MAX_PR_READS_PER_RUN: i64 = 20;

/// What one lifecycle step did (logged).
#[derive(Debug, Default)]
pub struct LifecycleReport {
    /// PRs read, and of them merged / closed.
    pub prs: (usize, usize, usize),
    /// Copilot PRs found on issue timelines.
    pub copilot_prs: usize,
    /// Verifications decided (resolved, regressed) and still pending.
    pub verified: (usize, usize, usize),
    /// Attempts queued (their jobs are returned to send), and incidents out of attempts.
    pub attempts: (usize, usize),
    /// Why the tracker part stopped early, if it did.
    pub tracker: Option<String>,
}

/// One lifecycle step (see [`follow`] for the order). Returns the report and the fix jobs of
/// the attempts it queued (the caller sends them with the others).
///
/// Errors: D1 failures only; a tracker that does not answer ends its part of the step (the next
/// run goes on).
pub async fn step(
    env: &worker::Env,
    db: &worker::D1Database,
    repo: Option<&Repo>,
    now: i64,
) -> Result<(LifecycleReport, Vec<FixJob>), GlueError> {
    let mut report = LifecycleReport::default();
    if let Some(repo) = repo {
        if crate::tracker::held(db).await? {
            report.tracker = Some("held".into());
        } else if let Err(why) = follow_tracker(env, db, repo, now, &mut report).await? {
            report.tracker = Some(why);
        }
    }

    // The release, then the verdict.
    workers::batch(db, &follow::release_seen_statements(now)).await?;
    let verifying: Vec<VerifyingRow> = workers::query(
        db,
        &sql_with(SELECT_VERIFYING, vec![BASELINE_WINDOW_MS.into()]),
    )
    .await?;
    let mut stmts = Vec::new();
    for row in &verifying {
        let (v, s) = follow::verify_statements(row, now);
        match v.outcome {
            selfheal::tracking::lifecycle::VerifyOutcome::Verified => report.verified.0 += 1,
            selfheal::tracking::lifecycle::VerifyOutcome::Regressed => report.verified.1 += 1,
            _ => report.verified.2 += 1,
        }
        stmts.extend(s);
    }
    if !stmts.is_empty() {
        workers::batch(db, &stmts).await?;
    }

    // Attempts.
    let max = follow::max_attempts(workers::var(env, "SELFHEAL_MAX_ATTEMPTS").as_deref());
    let candidates: Vec<AttemptCandidate> =
        workers::query(db, &sql_with(SELECT_ATTEMPT_CANDIDATES, vec![now.into()])).await?;
    let mut jobs = Vec::new();
    if !candidates.is_empty() {
        let reads: Vec<_> = candidates
            .iter()
            .map(|c| sql_with(SELECT_ATTEMPTS, vec![c.incident_id.into()]))
            .collect();
        let attempts = workers::batch(db, &reads).await?;
        let mut plans = Vec::new();
        for (c, rows) in candidates.iter().zip(attempts.iter()) {
            let made: Vec<AttemptSummary> = workers::rows(rows)?;
            plans.push((c, follow::attempt_statements(c, &made, max, now)));
        }
        // Every plan in one batch; each plan's first statement says whether its ticket moved.
        let mut stmts = Vec::new();
        let mut firsts = Vec::new();
        for (_, plan) in &plans {
            firsts.push(stmts.len());
            stmts.extend(plan.statements.iter().cloned());
        }
        let results = if stmts.is_empty() {
            Vec::new()
        } else {
            workers::batch(db, &stmts).await?
        };
        for ((c, plan), first) in plans.iter().zip(firsts) {
            match (plan.queue, &plan.decision) {
                (Some(n), _) => {
                    let moved = results
                        .get(first)
                        .map(workers::rows::<serde_json::Value>)
                        .transpose()?
                        .is_some_and(|r| !r.is_empty());
                    if moved {
                        report.attempts.0 += 1;
                        jobs.push(FixJob::attempt(
                            c.incident_id,
                            c.ticket_id,
                            c.fingerprint.clone(),
                            n,
                        ));
                    }
                }
                (None, AttemptDecision::Exhausted { .. }) => report.attempts.1 += 1,
                _ => {}
            }
        }
    }

    // Quiet incidents, then the built-in tickets follow their incidents.
    let days =
        follow::resolve_after_days(workers::var(env, "SELFHEAL_RESOLVE_AFTER_DAYS").as_deref());
    let mut tail = follow::escalating_statements(now);
    tail.extend(follow::inactive_statements(days, now));
    tail.extend(follow::ticket_state_statements(now));
    workers::batch(db, &tail).await?;
    Ok((report, jobs))
}

/// The tracker's part: open PRs, then Copilot timelines. `Ok(Err(why))` when GitHub stopped it.
async fn follow_tracker(
    env: &worker::Env,
    db: &worker::D1Database,
    repo: &Repo,
    now: i64,
    report: &mut LifecycleReport,
) -> Result<Result<(), String>, GlueError> {
    let timeout = crate::tracker::timeout_ms(env);
    let prs: Vec<PrToFollow> = workers::query(
        db,
        &sql_with(SELECT_PRS_TO_FOLLOW, vec![MAX_PR_READS_PER_RUN.into()]),
    )
    .await?;
    for pr in &prs {
        let Some(number) = follow::pr_number(&pr.pr_url) else {
            continue;
        };
        let body = match crate::tracker::read(repo, &github::get_pull(repo, number), timeout).await
        {
            Ok(b) => b,
            Err(why) => return Ok(Err(why)),
        };
        let Ok(state) = serde_json::from_str::<PrState>(&body) else {
            console_log!("selfheal lifecycle: PR {number}: unexpected response");
            continue;
        };
        report.prs.0 += 1;
        if state.merged {
            report.prs.1 += 1;
        } else if state.state == "closed" {
            report.prs.2 += 1;
        }
        workers::batch(db, &follow::pr_statements(pr, &state, now)).await?;
    }
    let copilot: Vec<CopilotRun> = workers::query(
        db,
        &sql_with(SELECT_COPILOT_RUNS, vec![MAX_PR_READS_PER_RUN.into()]),
    )
    .await?;
    for run in &copilot {
        let number = u64::try_from(run.external_number).unwrap_or(0);
        let body = match crate::tracker::read(repo, &github::issue_timeline(repo, number), timeout)
            .await
        {
            Ok(b) => b,
            Err(why) => return Ok(Err(why)),
        };
        if let Some(url) = follow::timeline_pr(&body, &run.known()) {
            report.copilot_prs += 1;
            workers::batch(db, &follow::copilot_pr_statements(run, &url, now)).await?;
        }
    }
    Ok(Ok(()))
}
