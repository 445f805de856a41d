//! The incident lifecycle after the draft PR: which state an incident is in, what moves it, when
//! a fix counts as **verified in production**, and when another fix attempt may start.
//!
//! ```text
//!            ticket opened        run claimed           PR opened
//!   open ──────────────▶ ticketed ──────────▶ claimed ──────────▶ pr_opened
//!     ▲                                                   │ merged      │ closed unmerged /
//!     │ quiet SELFHEAL_RESOLVE_AFTER_DAYS                 ▼             │ run failed
//!     │ (no fix) → resolved (inactive)               fix_merged         ▼
//!     │                                                   │ a newer   (next attempt, or a
//!     │                                                   │ release    person past the max)
//!     │                                                   ▼ is seen
//!     │                           recurred on it      verifying ──────────────▶ resolved (verified)
//!     └── regressed ◀─────────────────────────────────────┘  enough requests, none came
//! ```
//!
//! Verification follows the question a reviewer asks: had the bug still been there, would the new
//! release's traffic have shown it? With the incident's rate per request on its route(s) before the
//! fix, `r = occurrences / requests`, and `n` requests served by the new release there, the chance
//! of at least one occurrence under a Poisson model is `1 − e^(−r·n)`. The incident is `resolved`
//! (verified) when that chance reaches [`VERIFY_CONFIDENCE`] (0.99) with no occurrence on the
//! release, and `regressed` as soon as one occurs there. Cloudflare's Workers Issues resolves
//! nothing by itself; Sentry resolves "in next release" on the user's word, not on traffic.
//!
//! Pure: no clock, no I/O. The cron (or a test) passes the figures in and stores what comes out,
//! with those figures, as a row of the incident's history.

use serde::{Deserialize, Serialize};

/// The probability of detection a release's traffic must reach before a fix counts as verified.
pub const VERIFY_CONFIDENCE: f64 = 0.99;
/// Fix attempts per incident before it waits for a person (`SELFHEAL_MAX_ATTEMPTS`).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Quiet days after which an incident without a fix resolves as inactive
/// (`SELFHEAL_RESOLVE_AFTER_DAYS`).
pub const DEFAULT_RESOLVE_AFTER_DAYS: u32 = 14;

/// What the affected route(s) saw before the fix and on the new release.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VerifyInput {
    /// The incident's occurrences in the baseline window (before the merge).
    pub baseline_occurrences: u64,
    /// Requests on the incident's route(s) in the same window.
    pub baseline_requests: u64,
    /// Requests the new release served on those route(s) since it was first seen.
    pub release_requests: u64,
    /// The incident's occurrences on the new release.
    pub release_occurrences: u64,
}

/// Where a verification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyOutcome {
    /// Not enough traffic on the new release yet.
    Pending,
    /// Enough traffic, no occurrence: the fix held.
    Verified,
    /// It occurred on the new release.
    Regressed,
    /// No baseline rate (no occurrence or no request counted before): nothing to verify against.
    NoBaseline,
}

/// The figures of a verification, as stored in the history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// The outcome.
    pub outcome: VerifyOutcome,
    /// Occurrences per request before the fix.
    pub rate_per_request: f64,
    /// `1 − e^(−rate · release_requests)`: the chance the release's traffic would have shown the bug.
    pub p_detect: f64,
    /// Requests on the release that reach [`VERIFY_CONFIDENCE`] (`⌈ln(1/(1−c)) / rate⌉`; 0 without a
    /// baseline).
    pub requests_needed: u64,
    /// The input.
    pub input: VerifyInput,
}

/// Judges a fix on the new release's traffic (see the module docs). `confidence` in (0, 1).
pub fn verify(input: VerifyInput, confidence: f64) -> Verification {
    if input.release_occurrences > 0 {
        let rate = rate(input);
        return Verification {
            outcome: VerifyOutcome::Regressed,
            rate_per_request: rate,
            p_detect: p_detect(rate, input.release_requests),
            requests_needed: requests_needed(rate, confidence),
            input,
        };
    }
    if input.baseline_occurrences == 0 || input.baseline_requests == 0 {
        return Verification {
            outcome: VerifyOutcome::NoBaseline,
            rate_per_request: 0.0,
            p_detect: 0.0,
            requests_needed: 0,
            input,
        };
    }
    let rate = rate(input);
    let p = p_detect(rate, input.release_requests);
    Verification {
        outcome: if p >= confidence {
            VerifyOutcome::Verified
        } else {
            VerifyOutcome::Pending
        },
        rate_per_request: rate,
        p_detect: p,
        requests_needed: requests_needed(rate, confidence),
        input,
    }
}

fn rate(i: VerifyInput) -> f64 {
    if i.baseline_requests == 0 {
        return 0.0;
    }
    // A route can record more occurrences than requests (several events per request): cap at 1.
    (i.baseline_occurrences as f64 / i.baseline_requests as f64).min(1.0)
}

fn p_detect(rate: f64, requests: u64) -> f64 {
    -(-rate * requests as f64).exp_m1()
}

fn requests_needed(rate: f64, confidence: f64) -> u64 {
    if rate <= 0.0 || !(0.0..1.0).contains(&confidence) {
        return 0;
    }
    (-(1.0 - confidence).ln() / rate).ceil() as u64
}

/// An incident's lifecycle state (`ops_incidents.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Seen, no ticket.
    Open,
    /// A ticket exists.
    Ticketed,
    /// A fix run holds it.
    Claimed,
    /// A draft PR is open.
    PrOpened,
    /// The PR was merged.
    FixMerged,
    /// A release newer than the merge is serving traffic.
    Verifying,
    /// Verified on a release, gone quiet, or resolved by a person.
    Resolved,
    /// Came back after a fix or a resolution.
    Regressed,
    /// A person said not to act on it.
    Ignored,
}

impl Status {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Ticketed => "ticketed",
            Status::Claimed => "claimed",
            Status::PrOpened => "pr_opened",
            Status::FixMerged => "fix_merged",
            Status::Verifying => "verifying",
            Status::Resolved => "resolved",
            Status::Regressed => "regressed",
            Status::Ignored => "ignored",
        }
    }
}

/// What happened to an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LifecycleEvent {
    /// The cron opened its ticket.
    TicketOpened,
    /// A fix run claimed it.
    RunClaimed,
    /// The run's draft PR is open.
    PrOpened {
        /// Its URL.
        url: String,
    },
    /// The PR was merged.
    PrMerged {
        /// The merge commit.
        commit: String,
    },
    /// The PR was closed without a merge, or the run failed.
    AttemptEnded {
        /// Why (`pr_closed`, `failed`, …).
        why: String,
    },
    /// A release of the script newer than the merge serves traffic.
    ReleaseSeen {
        /// Its tag or version id.
        release: String,
    },
    /// A verification on that release.
    Verified(Verification),
    /// No occurrence for this many days, with no fix in flight.
    Quiet {
        /// Days since the last occurrence.
        days: u32,
    },
    /// An occurrence after the incident was resolved.
    Occurred,
    /// An operator's action.
    Operator {
        /// `resolve`, `ignore` or `reopen`.
        action: String,
    },
}

/// A state change with the reason and figures that made it (a row of the incident history).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// State before.
    pub from: Status,
    /// State after.
    pub to: Status,
    /// Reason code: `ticket_opened`, `run_claimed`, `pr_opened`, `pr_merged`, `attempt_ended`,
    /// `release_seen`, `verified`, `recurred`, `inactive`, `occurred_after_resolve`, `operator_*`.
    pub why: String,
    /// The event, with its figures.
    pub event: LifecycleEvent,
}

/// The next state for `event` in state `from`; `None` when the event does not move the incident
/// (a verification still pending, a release seen before the merge, a stale event).
pub fn next(
    from: Status,
    event: &LifecycleEvent,
    quiet_days_to_resolve: u32,
) -> Option<Transition> {
    use LifecycleEvent as E;
    use Status as S;
    let (to, why) = match (from, event) {
        (_, E::Operator { action }) => match action.as_str() {
            "resolve" => (S::Resolved, "operator_resolve"),
            "ignore" => (S::Ignored, "operator_ignore"),
            "reopen" => (S::Open, "operator_reopen"),
            _ => return None,
        },
        (S::Open | S::Regressed, E::TicketOpened) => (S::Ticketed, "ticket_opened"),
        (S::Open | S::Ticketed | S::Regressed, E::RunClaimed) => (S::Claimed, "run_claimed"),
        (S::Claimed | S::Ticketed | S::Regressed, E::PrOpened { .. }) => (S::PrOpened, "pr_opened"),
        (S::PrOpened, E::PrMerged { .. }) => (S::FixMerged, "pr_merged"),
        (S::Claimed | S::PrOpened, E::AttemptEnded { .. }) => (S::Ticketed, "attempt_ended"),
        (S::FixMerged, E::ReleaseSeen { .. }) => (S::Verifying, "release_seen"),
        (S::Verifying, E::Verified(v)) => match v.outcome {
            VerifyOutcome::Verified => (S::Resolved, "verified"),
            VerifyOutcome::Regressed => (S::Regressed, "recurred"),
            VerifyOutcome::Pending | VerifyOutcome::NoBaseline => return None,
        },
        (S::Open | S::Ticketed, E::Quiet { days }) if *days >= quiet_days_to_resolve => {
            (S::Resolved, "inactive")
        }
        (S::Resolved, E::Occurred) => (S::Regressed, "occurred_after_resolve"),
        _ => return None,
    };
    Some(Transition {
        from,
        to,
        why: why.to_string(),
        event: event.clone(),
    })
}

/// How an earlier attempt of an incident ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptSummary {
    /// 1-based attempt number.
    pub attempt: u32,
    /// `failed`, `pr_closed`, `regressed` (the fix did not hold), or `open` (still running).
    pub ended: String,
    /// When it ended, ms since the epoch (None while open).
    pub ended_at_ms: Option<i64>,
    /// Its PR, when it opened one.
    pub pr_url: Option<String>,
    /// Its diagnosis, when it gave one.
    pub diagnosis: Option<String>,
}

/// Whether another fix attempt may start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum AttemptDecision {
    /// Start attempt `n`.
    Start {
        /// Its number.
        n: u32,
    },
    /// Not yet: an attempt is still open, or the cool-down after a failure has not passed.
    Wait {
        /// `attempt_open` or `cooling_down`.
        why: String,
        /// When it may start, ms (cool-down only).
        until_ms: Option<i64>,
    },
    /// `max` attempts were made: a person decides.
    Exhausted {
        /// Attempts made.
        made: u32,
    },
}

/// The next attempt's decision, given the earlier ones (any order), the cap `max`, the
/// cool-down after a failed attempt (ms) and `now_ms`. A PR closed unmerged or a fix that did not
/// hold may retry at once; a failed run waits out the cool-down.
pub fn next_attempt(
    attempts: &[AttemptSummary],
    max: u32,
    cooldown_ms: i64,
    now_ms: i64,
) -> AttemptDecision {
    let made = attempts.iter().map(|a| a.attempt).max().unwrap_or(0);
    if attempts.iter().any(|a| a.ended == "open") {
        return AttemptDecision::Wait {
            why: "attempt_open".into(),
            until_ms: None,
        };
    }
    if made >= max {
        return AttemptDecision::Exhausted { made };
    }
    if let Some(last) = attempts.iter().max_by_key(|a| a.attempt)
        && last.ended == "failed"
        && let Some(at) = last.ended_at_ms
        && now_ms < at.saturating_add(cooldown_ms)
    {
        return AttemptDecision::Wait {
            why: "cooling_down".into(),
            until_ms: Some(at.saturating_add(cooldown_ms)),
        };
    }
    AttemptDecision::Start { n: made + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(bo: u64, br: u64, rr: u64, ro: u64) -> VerifyInput {
        VerifyInput {
            baseline_occurrences: bo,
            baseline_requests: br,
            release_requests: rr,
            release_occurrences: ro,
        }
    }

    #[test]
    fn a_fix_is_verified_once_the_release_would_have_shown_the_bug_with_99_percent() {
        // 50 occurrences in 10,000 requests: rate 0.005; ln(100)/0.005 = 921.03 → 922 requests.
        let pending = verify(input(50, 10_000, 900, 0), VERIFY_CONFIDENCE);
        assert_eq!(pending.outcome, VerifyOutcome::Pending);
        assert_eq!(pending.requests_needed, 922);
        assert!((pending.p_detect - (1.0 - (-4.5f64).exp())).abs() < 1e-12);
        let done = verify(input(50, 10_000, 922, 0), VERIFY_CONFIDENCE);
        assert_eq!(done.outcome, VerifyOutcome::Verified);
        assert!(done.p_detect >= 0.99 && done.p_detect < 0.9901);
        let back = verify(input(50, 10_000, 10, 1), VERIFY_CONFIDENCE);
        assert_eq!(back.outcome, VerifyOutcome::Regressed);
        assert_eq!(
            verify(input(0, 10_000, 10_000, 0), VERIFY_CONFIDENCE).outcome,
            VerifyOutcome::NoBaseline
        );
        assert_eq!(
            verify(input(5, 0, 10_000, 0), VERIFY_CONFIDENCE).outcome,
            VerifyOutcome::NoBaseline
        );
        // More events than requests on a route: the rate is capped at one per request.
        assert_eq!(
            verify(input(30, 10, 5, 0), VERIFY_CONFIDENCE).outcome,
            VerifyOutcome::Verified
        );
    }

    #[test]
    fn the_lifecycle_follows_the_diagram() {
        let v = |o| {
            LifecycleEvent::Verified(Verification {
                outcome: o,
                ..verify(input(1, 100, 1000, 0), 0.99)
            })
        };
        let steps = [
            (
                Status::Open,
                LifecycleEvent::TicketOpened,
                Some(Status::Ticketed),
            ),
            (
                Status::Ticketed,
                LifecycleEvent::RunClaimed,
                Some(Status::Claimed),
            ),
            (
                Status::Claimed,
                LifecycleEvent::PrOpened { url: "u".into() },
                Some(Status::PrOpened),
            ),
            (
                Status::PrOpened,
                LifecycleEvent::PrMerged { commit: "c".into() },
                Some(Status::FixMerged),
            ),
            (
                Status::FixMerged,
                LifecycleEvent::ReleaseSeen {
                    release: "v2".into(),
                },
                Some(Status::Verifying),
            ),
            (Status::Verifying, v(VerifyOutcome::Pending), None),
            (
                Status::Verifying,
                v(VerifyOutcome::Verified),
                Some(Status::Resolved),
            ),
            (
                Status::Verifying,
                v(VerifyOutcome::Regressed),
                Some(Status::Regressed),
            ),
            (
                Status::Resolved,
                LifecycleEvent::Occurred,
                Some(Status::Regressed),
            ),
            (
                Status::Regressed,
                LifecycleEvent::RunClaimed,
                Some(Status::Claimed),
            ),
            (
                Status::PrOpened,
                LifecycleEvent::AttemptEnded {
                    why: "pr_closed".into(),
                },
                Some(Status::Ticketed),
            ),
            (Status::Ticketed, LifecycleEvent::Quiet { days: 13 }, None),
            (
                Status::Ticketed,
                LifecycleEvent::Quiet { days: 14 },
                Some(Status::Resolved),
            ),
            (Status::FixMerged, LifecycleEvent::Quiet { days: 30 }, None),
            (
                Status::Open,
                LifecycleEvent::PrMerged { commit: "c".into() },
                None,
            ),
            (
                Status::Resolved,
                LifecycleEvent::Operator {
                    action: "reopen".into(),
                },
                Some(Status::Open),
            ),
            (
                Status::Open,
                LifecycleEvent::Operator {
                    action: "ignore".into(),
                },
                Some(Status::Ignored),
            ),
            (
                Status::Open,
                LifecycleEvent::Operator {
                    action: "bogus".into(),
                },
                None,
            ),
        ];
        for (from, event, want) in steps {
            let got = next(from, &event, DEFAULT_RESOLVE_AFTER_DAYS).map(|t| t.to);
            assert_eq!(got, want, "{from:?} + {event:?}");
        }
    }

    fn attempt(n: u32, ended: &str, at: Option<i64>) -> AttemptSummary {
        AttemptSummary {
            attempt: n,
            ended: ended.into(),
            ended_at_ms: at,
            pr_url: None,
            diagnosis: None,
        }
    }

    #[test]
    fn attempts_wait_for_the_previous_one_the_cool_down_and_stop_at_the_max() {
        let hour = 3_600_000;
        assert_eq!(
            next_attempt(&[], 3, hour, 0),
            AttemptDecision::Start { n: 1 }
        );
        assert!(matches!(
            next_attempt(&[attempt(1, "open", None)], 3, hour, 0),
            AttemptDecision::Wait { .. }
        ));
        assert_eq!(
            next_attempt(
                &[attempt(1, "failed", Some(1000))],
                3,
                hour,
                1000 + hour - 1
            ),
            AttemptDecision::Wait {
                why: "cooling_down".into(),
                until_ms: Some(1000 + hour)
            }
        );
        assert_eq!(
            next_attempt(&[attempt(1, "failed", Some(1000))], 3, hour, 1000 + hour),
            AttemptDecision::Start { n: 2 }
        );
        assert_eq!(
            next_attempt(
                &[
                    attempt(2, "regressed", Some(5)),
                    attempt(1, "pr_closed", Some(1))
                ],
                3,
                hour,
                6
            ),
            AttemptDecision::Start { n: 3 }
        );
        assert_eq!(
            next_attempt(
                &[
                    attempt(1, "failed", Some(1)),
                    attempt(2, "failed", Some(2)),
                    attempt(3, "regressed", Some(3))
                ],
                3,
                hour,
                10 * hour
            ),
            AttemptDecision::Exhausted { made: 3 }
        );
    }
}
