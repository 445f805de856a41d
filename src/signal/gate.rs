//! The gate: which open incidents are worth an agent now, with the figures that decided it.
//!
//! [`decide_all`] is a pure function (no I/O, time passed in). The cron Worker and `selfheal
//! replay` load the same inputs with the same SQL ([`crate::signal::step`]) and store every
//! decision with its [`Signals`], so a person can check each one.
//!
//! Verdicts ([`Verdict`]): `ticket` (worth an agent now), `watch` (recorded, not enough evidence
//! yet; re-evaluated every run), `external` (attributed to a dependency or the platform: no fix
//! job), `suppressed` (configured away).
//!
//! Signals, each computed for every incident and stored with the decision:
//! - **new**: first seen within [`GatePolicy::new_window_ms`], and not *pre-existing* (first seen
//!   within [`GatePolicy::learning_ms`] of the script's first observed traffic: an owner who
//!   installs selfheal on a Worker that already fails gets its old low-impact errors on `watch`,
//!   not an agent for each).
//! - **spike / escalating**: the per-request rate over the last [`GatePolicy::spike_window_ms`]
//!   against a baseline rate that knows the hour of the week (the same hour ±1 in earlier weeks,
//!   shrunk towards the trailing rate), tested with an over-dispersed (quasi-Poisson / negative
//!   binomial) upper tail, Benjamini–Hochberg across every incident tested in the run. Expected
//!   counts scale with the route's requests, so an error that only grows with traffic is no spike.
//!   The idea of forecasting an issue's expected volume from its own history and flagging the
//!   excess follows Sentry's escalating issues
//!   (<https://docs.sentry.io/product/issues/states-triage/escalating-issues/>); the test differs.
//! - **regression on a release**: the rate on the release the incident first appeared on (or the
//!   latest release) against the release before it that served the route, by the conditional
//!   two-rate test; names both releases.
//! - **impact**: share of the route's and the script's requests failing over the last
//!   [`GatePolicy::impact_window_ms`]; occurrences per hour. A steady failure of
//!   [`GatePolicy::impact_min_share`] or more is worth a ticket however old it is, and priority
//!   is the share of the script's requests, so a significant spike on 0.01% of requests never
//!   outranks a steady 20% failure.
//! - **cause**: in-app top frame or not; failure kinds that point outside the code (outbound
//!   fetch failures, `Network connection lost`, 502/503/504 from upstreams, timeouts, platform
//!   service errors: [`external_kind`]); a **cascade** (at least
//!   [`GatePolicy::cascade_min_fingerprints`] fingerprints of one script, on two or more routes,
//!   starting within [`GatePolicy::cascade_window_ms`]: one outage, not twenty tickets); whether
//!   the onset lines up with a release of this script. A release-aligned in-app failure is never
//!   folded into a cascade, and a cascade member that goes on after the cascade ended is judged
//!   on its own: a real bug that starts during an outage is still found.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use regex::bytes::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use super::stats::{benjamini_hochberg, count_upper_tail, dispersion, rate_step_p_value};

/// One hour, ms.
pub const HOUR_MS: i64 = 3_600_000;
/// One day, ms.
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// One week, ms.
pub const WEEK_MS: i64 = 7 * DAY_MS;
/// Width of the fine buckets, ms (5 minutes).
pub const BUCKET_MS: i64 = 300_000;
/// Cron runs in a day (one every [`BUCKET_MS`]): the spike tests' false-discovery budget is spent
/// over them.
pub const RUNS_PER_DAY: f64 = (DAY_MS / BUCKET_MS) as f64;
/// History an incident needs before the window for the spike test, ms (a day).
pub const MIN_BASELINE_MS: i64 = DAY_MS;

/// What the gate is allowed to change (`SELFHEAL_GATE_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateMode {
    /// Decisions choose what is ticketed and what reaches an agent.
    Enforce,
    /// Decisions are recorded; tickets and jobs follow the ungated behaviour.
    Shadow,
    /// No gate: every open incident is ticketed (the behaviour before the gate).
    Off,
}

impl GateMode {
    /// Parses `enforce | shadow | off`.
    pub fn parse(s: &str) -> Option<GateMode> {
        match s.trim() {
            "enforce" => Some(GateMode::Enforce),
            "shadow" => Some(GateMode::Shadow),
            "off" => Some(GateMode::Off),
            _ => None,
        }
    }
    /// `enforce`, `shadow` or `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            GateMode::Enforce => "enforce",
            GateMode::Shadow => "shadow",
            GateMode::Off => "off",
        }
    }
}

/// The gate's settings, with documented defaults (chosen on the scenario corpus, see the README's
/// gate table). Every field has a Worker var and a `selfheal replay` flag of the same name
/// ([`GatePolicy::from_vars`]).
#[derive(Debug, Clone, Serialize)]
pub struct GatePolicy {
    /// `SELFHEAL_GATE_MODE`: `enforce` (default), `shadow` or `off`.
    pub mode: GateMode,
    /// `SELFHEAL_GATE_MIN_OCCURRENCES`: minimum evidence before any `ticket` (default 3). One
    /// occurrence is one invocation, so this is also the number of distinct requests.
    pub min_occurrences: u64,
    /// `SELFHEAL_GATE_NEW_WINDOW_HOURS`: an incident first seen this recently is new (24 h).
    pub new_window_ms: i64,
    /// `SELFHEAL_GATE_LEARNING_HOURS`: incidents first seen within this of the script's first
    /// observed traffic are pre-existing, not new (24 h).
    pub learning_ms: i64,
    /// `SELFHEAL_GATE_SPIKE_WINDOW_MINUTES`: the recent window of the spike test (30 min).
    pub spike_window_ms: i64,
    /// `SELFHEAL_GATE_SPIKE_FDR`: false-discovery rate of the spike tests over a **day** of runs
    /// (0.01). Every incident is tested again every 5 minutes, so each run tests at this rate ÷
    /// [`RUNS_PER_DAY`] (Benjamini–Hochberg across the run's fingerprints, Bonferroni across the
    /// day's runs): a 4-error burst on a quiet incident (p = 0.0005) is no spike.
    pub spike_fdr: f64,
    /// `SELFHEAL_GATE_SPIKE_MIN_RATIO`: the recent rate must be at least this multiple of the
    /// baseline rate (3).
    pub spike_min_ratio: f64,
    /// `SELFHEAL_GATE_REGRESSION_ALPHA`: significance of the release step test (0.001).
    pub regression_alpha: f64,
    /// `SELFHEAL_GATE_REGRESSION_MIN_RATIO`: the rate on the new release must be at least this
    /// multiple of the previous release's (3).
    pub regression_min_ratio: f64,
    /// `SELFHEAL_GATE_IMPACT_WINDOW_MINUTES`: the window of the impact figures (60 min).
    pub impact_window_ms: i64,
    /// `SELFHEAL_GATE_IMPACT_MIN_SHARE`: a failure of at least this share of its route's requests
    /// is worth a ticket however old (0.05).
    pub impact_min_share: f64,
    /// `SELFHEAL_GATE_RELEASE_ALIGN_MINUTES`: an onset this soon after a release of the script
    /// lines up with it (30 min).
    pub release_align_ms: i64,
    /// `SELFHEAL_GATE_CASCADE_MIN_FINGERPRINTS`: fingerprints of one script starting together
    /// that make a cascade (4).
    pub cascade_min_fingerprints: usize,
    /// `SELFHEAL_GATE_CASCADE_WINDOW_MINUTES`: how close their onsets must be (15 min).
    pub cascade_window_ms: i64,
    /// `SELFHEAL_GATE_EXTERNAL_TICKETS`: open tickets for `external` incidents, marked external,
    /// for humans (never a fix job). Default false.
    pub external_tickets: bool,
    /// `SELFHEAL_GATE_MAX_TICKETS_PER_HOUR`: per script (5).
    pub max_tickets_per_script_hour: u32,
    /// `SELFHEAL_GATE_MAX_TICKETS_PER_DAY`: per script (20).
    pub max_tickets_per_script_day: u32,
    /// `SELFHEAL_GATE_SUPPRESS`: JSON array of regexes over the normalized message (syntax and
    /// limits: [`crate::text::configured_regex`]) or exact fingerprints; a match is `suppressed`.
    #[serde(skip)]
    pub suppress: Vec<Regex>,
}

impl Default for GatePolicy {
    fn default() -> Self {
        GatePolicy {
            mode: GateMode::Enforce,
            min_occurrences: 3,
            new_window_ms: DAY_MS,
            learning_ms: DAY_MS,
            spike_window_ms: 30 * 60_000,
            spike_fdr: 0.01,
            spike_min_ratio: 3.0,
            regression_alpha: 0.001,
            regression_min_ratio: 3.0,
            impact_window_ms: HOUR_MS,
            impact_min_share: 0.05,
            release_align_ms: 30 * 60_000,
            cascade_min_fingerprints: 4,
            cascade_window_ms: 15 * 60_000,
            external_tickets: false,
            max_tickets_per_script_hour: 5,
            max_tickets_per_script_day: 20,
            suppress: Vec::new(),
        }
    }
}

/// A gate setting that cannot be used; the message names the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for PolicyError {}

/// The names of every gate variable, in [`GatePolicy`] field order.
pub const POLICY_VARS: &[&str] = &[
    "SELFHEAL_GATE_MODE",
    "SELFHEAL_GATE_MIN_OCCURRENCES",
    "SELFHEAL_GATE_NEW_WINDOW_HOURS",
    "SELFHEAL_GATE_LEARNING_HOURS",
    "SELFHEAL_GATE_SPIKE_WINDOW_MINUTES",
    "SELFHEAL_GATE_SPIKE_FDR",
    "SELFHEAL_GATE_SPIKE_MIN_RATIO",
    "SELFHEAL_GATE_REGRESSION_ALPHA",
    "SELFHEAL_GATE_REGRESSION_MIN_RATIO",
    "SELFHEAL_GATE_IMPACT_WINDOW_MINUTES",
    "SELFHEAL_GATE_IMPACT_MIN_SHARE",
    "SELFHEAL_GATE_RELEASE_ALIGN_MINUTES",
    "SELFHEAL_GATE_CASCADE_MIN_FINGERPRINTS",
    "SELFHEAL_GATE_CASCADE_WINDOW_MINUTES",
    "SELFHEAL_GATE_EXTERNAL_TICKETS",
    "SELFHEAL_GATE_MAX_TICKETS_PER_HOUR",
    "SELFHEAL_GATE_MAX_TICKETS_PER_DAY",
    "SELFHEAL_GATE_SUPPRESS",
];

impl GatePolicy {
    /// Builds a policy from variables: `get(name)` returns the value of one of [`POLICY_VARS`]
    /// (absent or empty = the default). Errors name the variable and the value.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<GatePolicy, PolicyError> {
        let mut p = GatePolicy::default();
        let val = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        fn num<T: std::str::FromStr>(
            name: &str,
            v: &str,
            ok: impl Fn(&T) -> bool,
            what: &str,
        ) -> Result<T, PolicyError> {
            v.parse::<T>()
                .ok()
                .filter(|x| ok(x))
                .ok_or_else(|| PolicyError(format!("{name}={v:?}: expected {what}")))
        }
        if let Some(v) = val("SELFHEAL_GATE_MODE") {
            p.mode = GateMode::parse(&v).ok_or_else(|| {
                PolicyError(format!(
                    "SELFHEAL_GATE_MODE={v:?}: expected enforce, shadow or off"
                ))
            })?;
        }
        let pos_f = |x: &f64| x.is_finite() && *x > 0.0;
        let prob = |x: &f64| x.is_finite() && *x > 0.0 && *x < 1.0;
        let hours = |name: &str, v: &str| -> Result<i64, PolicyError> {
            let h: f64 = num(name, v, pos_f, "a positive number of hours")?;
            Ok((h * HOUR_MS as f64) as i64)
        };
        let minutes = |name: &str, v: &str| -> Result<i64, PolicyError> {
            let m: f64 = num(name, v, pos_f, "a positive number of minutes")?;
            Ok((m * 60_000.0) as i64)
        };
        if let Some(v) = val("SELFHEAL_GATE_MIN_OCCURRENCES") {
            p.min_occurrences = num(
                "SELFHEAL_GATE_MIN_OCCURRENCES",
                &v,
                |x: &u64| *x >= 1,
                "a whole number ≥ 1",
            )?;
        }
        if let Some(v) = val("SELFHEAL_GATE_NEW_WINDOW_HOURS") {
            p.new_window_ms = hours("SELFHEAL_GATE_NEW_WINDOW_HOURS", &v)?;
        }
        if let Some(v) = val("SELFHEAL_GATE_LEARNING_HOURS") {
            // 0 is allowed here: no learning period.
            let h: f64 = num(
                "SELFHEAL_GATE_LEARNING_HOURS",
                &v,
                |x: &f64| x.is_finite() && *x >= 0.0,
                "a number of hours ≥ 0",
            )?;
            p.learning_ms = (h * HOUR_MS as f64) as i64;
        }
        if let Some(v) = val("SELFHEAL_GATE_SPIKE_WINDOW_MINUTES") {
            p.spike_window_ms = minutes("SELFHEAL_GATE_SPIKE_WINDOW_MINUTES", &v)?;
        }
        if let Some(v) = val("SELFHEAL_GATE_SPIKE_FDR") {
            p.spike_fdr = num("SELFHEAL_GATE_SPIKE_FDR", &v, prob, "a number in (0, 1)")?;
        }
        if let Some(v) = val("SELFHEAL_GATE_SPIKE_MIN_RATIO") {
            p.spike_min_ratio = num(
                "SELFHEAL_GATE_SPIKE_MIN_RATIO",
                &v,
                |x: &f64| x.is_finite() && *x >= 1.0,
                "a number ≥ 1",
            )?;
        }
        if let Some(v) = val("SELFHEAL_GATE_REGRESSION_ALPHA") {
            p.regression_alpha = num(
                "SELFHEAL_GATE_REGRESSION_ALPHA",
                &v,
                prob,
                "a number in (0, 1)",
            )?;
        }
        if let Some(v) = val("SELFHEAL_GATE_REGRESSION_MIN_RATIO") {
            p.regression_min_ratio = num(
                "SELFHEAL_GATE_REGRESSION_MIN_RATIO",
                &v,
                |x: &f64| x.is_finite() && *x >= 1.0,
                "a number ≥ 1",
            )?;
        }
        if let Some(v) = val("SELFHEAL_GATE_IMPACT_WINDOW_MINUTES") {
            p.impact_window_ms = minutes("SELFHEAL_GATE_IMPACT_WINDOW_MINUTES", &v)?;
        }
        if let Some(v) = val("SELFHEAL_GATE_IMPACT_MIN_SHARE") {
            p.impact_min_share = num(
                "SELFHEAL_GATE_IMPACT_MIN_SHARE",
                &v,
                |x: &f64| x.is_finite() && *x > 0.0 && *x <= 1.0,
                "a share in (0, 1]",
            )?;
        }
        if let Some(v) = val("SELFHEAL_GATE_RELEASE_ALIGN_MINUTES") {
            p.release_align_ms = minutes("SELFHEAL_GATE_RELEASE_ALIGN_MINUTES", &v)?;
        }
        if let Some(v) = val("SELFHEAL_GATE_CASCADE_MIN_FINGERPRINTS") {
            p.cascade_min_fingerprints = num(
                "SELFHEAL_GATE_CASCADE_MIN_FINGERPRINTS",
                &v,
                |x: &usize| *x >= 2,
                "a whole number ≥ 2",
            )?;
        }
        if let Some(v) = val("SELFHEAL_GATE_CASCADE_WINDOW_MINUTES") {
            p.cascade_window_ms = minutes("SELFHEAL_GATE_CASCADE_WINDOW_MINUTES", &v)?;
        }
        if let Some(v) = val("SELFHEAL_GATE_EXTERNAL_TICKETS") {
            p.external_tickets = match v.as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(PolicyError(format!(
                        "SELFHEAL_GATE_EXTERNAL_TICKETS={v:?}: expected true or false"
                    )));
                }
            };
        }
        if let Some(v) = val("SELFHEAL_GATE_MAX_TICKETS_PER_HOUR") {
            p.max_tickets_per_script_hour = num(
                "SELFHEAL_GATE_MAX_TICKETS_PER_HOUR",
                &v,
                |x: &u32| *x >= 1,
                "a whole number ≥ 1",
            )?;
        }
        if let Some(v) = val("SELFHEAL_GATE_MAX_TICKETS_PER_DAY") {
            p.max_tickets_per_script_day = num(
                "SELFHEAL_GATE_MAX_TICKETS_PER_DAY",
                &v,
                |x: &u32| *x >= 1,
                "a whole number ≥ 1",
            )?;
        }
        if let Some(v) = val("SELFHEAL_GATE_SUPPRESS") {
            let patterns: Vec<String> = serde_json::from_str(&v).map_err(|e| {
                PolicyError(format!(
                    "SELFHEAL_GATE_SUPPRESS must be a JSON array of strings: {e}"
                ))
            })?;
            for pat in patterns {
                p.suppress
                    .push(crate::text::configured_regex(&pat).map_err(|e| {
                        PolicyError(format!("SELFHEAL_GATE_SUPPRESS pattern {pat:?}: {e}"))
                    })?);
            }
        }
        Ok(p)
    }
}

/// Counts in one time bucket `[start_ms, start_ms + width_ms)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Bucket start, ms since the epoch.
    pub start_ms: i64,
    /// Bucket width, ms ([`BUCKET_MS`] or [`HOUR_MS`]).
    pub width_ms: i64,
    /// Release (`scriptVersion` tag, else id); empty when unknown.
    pub release: String,
    /// Occurrences or requests in the bucket.
    pub count: u64,
}

/// What the gate knows about one incident.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IncidentInput {
    /// `ops_incidents.id`.
    pub incident_id: i64,
    /// Fingerprint (32 hex chars).
    pub fingerprint: String,
    /// Script name component.
    pub script: String,
    /// Route pattern component.
    pub route: String,
    /// Exception type component.
    pub exception_type: String,
    /// Normalized message component.
    pub message: String,
    /// Top in-app frame component (empty: none).
    pub top_frame: String,
    /// Status class component (`5xx`, `none`, …).
    pub status_class: String,
    /// First occurrence, ms since the epoch.
    pub first_seen_ms: i64,
    /// Latest occurrence, ms since the epoch.
    pub last_seen_ms: i64,
    /// Occurrences counted so far.
    pub occurrence_count: u64,
    /// Scrubbed (not normalized) texts of a few samples: messages, error logs. The cause check
    /// reads numbers (`503`) that the normalizer replaced.
    pub sample_texts: Vec<String>,
    /// Whether any sample carried a stack (errors logged with `console.error` carry none).
    pub has_stack: bool,
    /// Whether the first frame of a sample's stack is the platform's (`cloudflare-internal:`,
    /// `node:`), not the script's.
    pub platform_frame: bool,
    /// Occurrence buckets, not overlapping: 5-minute ones for the recent past, hourly before.
    pub occurrences: Vec<Bucket>,
}

/// Request counts of one route of a script.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RouteTraffic {
    /// Route pattern.
    pub route: String,
    /// Request buckets (every TraceItem counts), not overlapping, like
    /// [`IncidentInput::occurrences`].
    pub buckets: Vec<Bucket>,
}

/// What the gate knows about one script.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScriptInput {
    /// Script name.
    pub script: String,
    /// First traffic ever counted for it, ms since the epoch (None: none yet).
    pub first_traffic_ms: Option<i64>,
    /// Releases seen, with when each was first seen (ms); any order.
    pub releases: Vec<(String, i64)>,
    /// Requests per route (only the routes the gate needs).
    pub routes: Vec<RouteTraffic>,
    /// Requests of the whole script over the impact window.
    pub requests_in_impact_window: u64,
    /// Tickets opened for this script in the last hour.
    pub tickets_last_hour: u32,
    /// Tickets opened for this script in the last 24 hours.
    pub tickets_last_day: u32,
}

/// A verdict of the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Worth an agent now.
    Ticket,
    /// Recorded; not enough evidence yet. Re-evaluated each run.
    Watch,
    /// Attributed to a dependency or the platform: no fix job.
    External,
    /// Configured away.
    Suppressed,
}

impl Verdict {
    /// `ticket`, `watch`, `external` or `suppressed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ticket => "ticket",
            Verdict::Watch => "watch",
            Verdict::External => "external",
            Verdict::Suppressed => "suppressed",
        }
    }
}

/// The `new` signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSignal {
    /// First seen within the new window.
    pub recent: bool,
    /// First seen within the learning period of the script's first traffic.
    pub pre_existing: bool,
    /// Age of the incident at decision time, ms.
    pub age_ms: i64,
    /// Occurrences so far.
    pub occurrences: u64,
    /// Whether the minimum evidence is met.
    pub evidence_met: bool,
    /// The signal fired.
    pub fired: bool,
}

/// The spike / escalating signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpikeSignal {
    /// Window, ms.
    pub window_ms: i64,
    /// Occurrences in the window.
    pub observed: u64,
    /// Route requests in the window.
    pub requests: u64,
    /// Baseline errors per request (hour-of-week aware).
    pub baseline_rate: f64,
    /// Occurrences expected in the window at the baseline rate.
    pub expected: f64,
    /// Observed rate ÷ baseline rate.
    pub ratio: f64,
    /// Quasi-Poisson dispersion of the incident's hourly counts.
    pub dispersion: f64,
    /// Upper-tail p-value.
    pub p_value: f64,
    /// Benjamini–Hochberg adjusted p-value across the run's tests.
    pub q_value: f64,
    /// Hours of baseline history used.
    pub baseline_hours: u64,
    /// Whether the incident had the day of history the test needs ([`MIN_BASELINE_MS`]).
    #[serde(default)]
    pub tested: bool,
    /// The signal fired.
    pub fired: bool,
}

/// The regression-on-a-release signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionSignal {
    /// The release the incident appeared on or stepped up on.
    pub release: String,
    /// The release before it that served the route.
    pub previous: String,
    /// Occurrences on `release` / its route requests.
    pub occurrences: u64,
    /// Route requests on `release`.
    pub requests: u64,
    /// Occurrences on `previous`.
    pub previous_occurrences: u64,
    /// Route requests on `previous`.
    pub previous_requests: u64,
    /// Rate ratio (infinite when `previous` had none: reported as null).
    pub ratio: Option<f64>,
    /// Conditional two-rate test p-value.
    pub p_value: f64,
    /// The signal fired.
    pub fired: bool,
}

/// The impact figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpactSignal {
    /// Window, ms.
    pub window_ms: i64,
    /// Occurrences in the window.
    pub occurrences: u64,
    /// Route requests in the window.
    pub route_requests: u64,
    /// Share of the route's requests (None: no traffic counted).
    pub route_share: Option<f64>,
    /// Script requests in the window.
    pub script_requests: u64,
    /// Share of the script's requests.
    pub script_share: Option<f64>,
    /// Occurrences per hour over the window.
    pub per_hour: f64,
    /// Routes affected (a fingerprint has one route; a group may have more).
    pub routes_affected: u32,
    /// The steady-impact rule fired.
    pub fired: bool,
}

/// A cascade the incident belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CascadeSignal {
    /// Fingerprints of the script starting within the cascade window.
    pub fingerprints: usize,
    /// Distinct routes among them.
    pub routes: usize,
    /// Earliest onset, ms.
    pub start_ms: i64,
    /// Latest activity of the other members, ms.
    pub end_ms: i64,
    /// Whether this incident went on after the cascade ended (then it is judged on its own).
    pub outlived: bool,
}

/// The cause findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CauseSignal {
    /// The top frame is the script's own code.
    pub in_app_top_frame: bool,
    /// Samples carried a stack.
    pub has_stack: bool,
    /// The first frame is the platform's.
    pub platform_frame: bool,
    /// A failure kind that points outside the code (`network`, `upstream_5xx`, `timeout`,
    /// `platform`).
    pub external_kind: Option<String>,
    /// The onset came within the alignment window after this release.
    pub release_aligned: Option<String>,
    /// The cascade, when any.
    pub cascade: Option<CascadeSignal>,
    /// Which finding decided the cause: `code`, `external_kind`, `cascade`, `platform_frame`.
    pub decided_by: String,
}

/// Every figure behind one decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signals {
    /// New incident.
    pub new: NewSignal,
    /// Spike / escalating.
    pub spike: SpikeSignal,
    /// Regression on a release, when the script has two releases to compare.
    pub regression: Option<RegressionSignal>,
    /// Impact.
    pub impact: ImpactSignal,
    /// Cause.
    pub cause: CauseSignal,
}

/// One decision: the verdict, why (reason codes, most important first) and the figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// `ops_incidents.id`.
    pub incident_id: i64,
    /// Fingerprint.
    pub fingerprint: String,
    /// The verdict.
    pub decision: Verdict,
    /// Reason codes: `new`, `regression`, `spike`, `impact`, `external_kind`, `cascade`,
    /// `platform_frame`, `pre_existing`, `insufficient_evidence`, `no_signal`, `script_cap_hour`,
    /// `script_cap_day`, `suppressed`, `overflow` (the flood cap's overflow incident: always
    /// `watch`).
    pub reasons: Vec<String>,
    /// The figures.
    pub signals: Signals,
    /// Priority for the daily cap: share of the script's requests affected per hour (impact),
    /// higher first; ties go to the most recent.
    pub priority: f64,
}

/// The failure kinds that point outside the script's code, by pattern over scrubbed texts:
/// `(kind, regex)`, matched over the texts' bytes with ASCII case folding and ASCII word
/// boundaries (`(?i-u)`: the Workers link no Unicode case-folding tables). Sources: the Workers runtime's documented errors (`Network connection lost`,
/// `fetch failed`; <https://developers.cloudflare.com/workers/observability/errors/>), D1/KV/R2
/// service errors, and upstream HTTP statuses 502/503/504.
pub const EXTERNAL_KINDS: &[(&str, &str)] = &[
    (
        "network",
        r"(?i-u)network connection lost|\bfetch failed\b|failed to fetch|econnreset|econnrefused|enotfound|getaddrinfo|socket hang up|connection (?:reset|refused|closed)|dns (?:lookup|resolution) failed",
    ),
    (
        "upstream_5xx",
        r"(?i-u)\b(?:upstream|origin|backend|gateway|service|api|provider|responded|returned|status(?: code)?)\b[^\n]{0,40}\b50[234]\b|\b50[234] (?:bad gateway|service unavailable|gateway time-?out)|\bbad gateway\b|\bservice unavailable\b|\bgateway time-?out\b|^HTTP 50[234] response$",
    ),
    (
        "timeout",
        r"(?i-u)\btimed? ?out\b|\betimedout\b|\btimeout (?:exceeded|error)\b|operation was aborted due to timeout",
    ),
    (
        "platform",
        r"(?i-u)\bD1_ERROR\b|\bD1 DB (?:is )?overloaded|\bKV (?:GET|PUT|DELETE|LIST) failed\b|\bR2 (?:GET|PUT|HEAD|DELETE|LIST) failed\b|durable object (?:is )?overloaded|internal error in durable object storage|\binternal error\b.*\b(?:d1|kv|r2|queue)\b",
    ),
];

fn external_set() -> &'static RegexSet {
    static SET: OnceLock<RegexSet> = OnceLock::new();
    SET.get_or_init(|| {
        // The patterns are constants, tested below; a failure here is a programming error.
        RegexSet::new(EXTERNAL_KINDS.iter().map(|(_, p)| *p)).expect("EXTERNAL_KINDS compile")
    })
}

/// The first external failure kind found in `texts` (messages, logs), if any.
pub fn external_kind<'a>(texts: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    let set = external_set();
    let mut best: Option<usize> = None;
    for t in texts {
        if let Some(i) = set.matches(t.as_bytes()).iter().next() {
            best = Some(best.map_or(i, |b| b.min(i)));
        }
    }
    best.map(|i| EXTERNAL_KINDS[i].0)
}

/// Hour of the week of a time (0 = Monday 00:00–01:00 UTC, 167 = Sunday 23:00).
pub fn hour_of_week(ms: i64) -> i64 {
    // 1970-01-01 was a Thursday: three days after a Monday.
    (ms.div_euclid(HOUR_MS) + 72).rem_euclid(168)
}

/// Sum of `buckets` whose start lies in `[from, to)`, optionally of one release.
fn sum(buckets: &[Bucket], from: i64, to: i64) -> u64 {
    buckets
        .iter()
        .filter(|b| b.start_ms >= from && b.start_ms < to)
        .map(|b| b.count)
        .sum()
}

/// Per-hour totals of buckets in `[from, to)`: hour start → count.
fn hourly(buckets: &[Bucket], from: i64, to: i64) -> BTreeMap<i64, u64> {
    let mut out = BTreeMap::new();
    for b in buckets
        .iter()
        .filter(|b| b.start_ms >= from && b.start_ms < to)
    {
        *out.entry(b.start_ms.div_euclid(HOUR_MS) * HOUR_MS)
            .or_insert(0) += b.count;
    }
    out
}

/// Per-release totals: release → (count, earliest bucket start).
fn by_release(buckets: &[Bucket]) -> BTreeMap<&str, (u64, i64)> {
    let mut out: BTreeMap<&str, (u64, i64)> = BTreeMap::new();
    for b in buckets {
        let e = out.entry(b.release.as_str()).or_insert((0, b.start_ms));
        e.0 += b.count;
        e.1 = e.1.min(b.start_ms);
    }
    out
}

struct Prepared<'a> {
    inc: &'a IncidentInput,
    script: Option<&'a ScriptInput>,
    route: Option<&'a RouteTraffic>,
    /// The end of the run's windows: the run's clock aligned up to a bucket boundary.
    now: i64,
    /// The run's clock, ms.
    now_ms: i64,
    spike_p: f64,
    spike: SpikeSignal,
    regression: Option<RegressionSignal>,
    /// When the failure started ([`onset`]).
    onset_ms: i64,
}

fn prepare<'a>(
    inc: &'a IncidentInput,
    scripts: &'a [ScriptInput],
    policy: &GatePolicy,
    now_ms: i64,
) -> Prepared<'a> {
    let script = scripts.iter().find(|s| s.script == inc.script);
    let route = script.and_then(|s| s.routes.iter().find(|r| r.route == inc.route));
    let empty: &[Bucket] = &[];
    let traffic = route.map_or(empty, |r| r.buckets.as_slice());
    // Buckets after `now` (clock skew between items) count in the current window.
    let end = i64::MAX;
    // Windows end at the bucket boundary at or after `now_ms`, so they cover whole buckets.
    let now = (now_ms + BUCKET_MS - 1).div_euclid(BUCKET_MS) * BUCKET_MS;
    let w_start = now - policy.spike_window_ms.max(BUCKET_MS);
    let x = sum(&inc.occurrences, w_start, end);
    let n = sum(traffic, w_start, end).max(x);

    // Baseline: the incident's own history before the window, up to four weeks. An incident
    // younger than a day has no baseline to escalate from: that is the `new` signal's case.
    let base_from = (w_start - 4 * WEEK_MS).max(inc.first_seen_ms.div_euclid(HOUR_MS) * HOUR_MS);
    let testable = w_start - base_from >= MIN_BASELINE_MS;
    let occ_h = hourly(&inc.occurrences, base_from, w_start);
    let req_h = hourly(traffic, base_from, w_start);
    let trailing_from = w_start - WEEK_MS;
    let (mut e_all, mut n_all) = (0u64, 0u64);
    for (h, r) in req_h.range(trailing_from..) {
        n_all += r;
        e_all += occ_h.get(h).copied().unwrap_or(0);
    }
    // Jeffreys-style floor: a baseline of zero errors is not a rate of zero.
    let p_all = (e_all as f64 + 0.5) / (n_all as f64 + 1.0);
    // Same hour of the week (±1 hour) in earlier weeks.
    let how = hour_of_week(now - BUCKET_MS);
    let (mut e_how, mut n_how) = (0u64, 0u64);
    for (h, r) in &req_h {
        let d = (hour_of_week(*h) - how).rem_euclid(168);
        if (d <= 1 || d == 167) && *h < w_start - 2 * HOUR_MS {
            n_how += r;
            e_how += occ_h.get(h).copied().unwrap_or(0);
        }
    }
    // Shrink the hour-of-week rate towards the trailing one with the weight of K requests.
    const K: f64 = 1000.0;
    let baseline_rate = (e_how as f64 + K * p_all) / (n_how as f64 + K);
    let expected = n as f64 * baseline_rate;
    let pairs: Vec<(f64, f64)> = req_h
        .range(trailing_from..)
        .map(|(h, r)| (occ_h.get(h).copied().unwrap_or(0) as f64, *r as f64 * p_all))
        .collect();
    let phi = dispersion(&pairs, 24, 2.0);
    let p_value = if testable {
        count_upper_tail(x, expected, phi)
    } else {
        1.0
    };
    let ratio = if n > 0 {
        (x as f64 / n as f64) / baseline_rate
    } else {
        0.0
    };
    let spike = SpikeSignal {
        window_ms: now - w_start,
        observed: x,
        requests: n,
        baseline_rate,
        expected,
        ratio,
        dispersion: phi,
        p_value,
        q_value: 1.0,
        baseline_hours: req_h.range(trailing_from..).count() as u64,
        tested: testable,
        fired: false,
    };
    let mut p = Prepared {
        inc,
        script,
        route,
        now,
        now_ms,
        spike_p: p_value,
        spike,
        regression: None,
        onset_ms: inc.first_seen_ms,
    };
    p.regression = regression(&p, policy);
    p
}

/// When the failure started: the first occurrence in the window of a spike, else the first
/// occurrence on the release it regressed on, else when it was first seen.
fn onset(p: &Prepared<'_>) -> i64 {
    let w_start = p.now - p.spike.window_ms;
    let first_from = |from: i64, release: Option<&str>| {
        p.inc
            .occurrences
            .iter()
            .filter(|b| b.start_ms >= from && b.count > 0)
            .filter(|b| release.is_none_or(|r| b.release == r))
            .map(|b| b.start_ms)
            .min()
    };
    if p.spike.fired {
        return first_from(w_start, None).unwrap_or(p.inc.last_seen_ms);
    }
    if let Some(r) = p.regression.as_ref().filter(|r| r.fired) {
        return first_from(i64::MIN, Some(&r.release))
            .unwrap_or(p.inc.first_seen_ms)
            .max(p.inc.first_seen_ms);
    }
    p.inc.first_seen_ms
}

fn regression(p: &Prepared<'_>, policy: &GatePolicy) -> Option<RegressionSignal> {
    let script = p.script?;
    let mut releases: Vec<&(String, i64)> = script.releases.iter().collect();
    releases.sort_by_key(|(r, t)| (*t, r.clone()));
    let occ = by_release(&p.inc.occurrences);
    let empty: &[Bucket] = &[];
    let traffic = by_release(p.route.map_or(empty, |r| r.buckets.as_slice()));
    // The release the incident first appeared on; if it was already there before the latest
    // release, the latest release (a step up).
    let first = occ
        .iter()
        .filter(|(r, _)| !r.is_empty())
        .min_by_key(|(_, (_, t))| *t)
        .map(|(r, _)| *r)?;
    let latest = occ
        .iter()
        .filter(|(r, _)| !r.is_empty())
        .max_by_key(|(r, (_, t))| {
            releases
                .iter()
                .find(|(name, _)| name == *r)
                .map_or(*t, |(_, seen)| *seen)
        })
        .map(|(r, _)| *r)?;
    let pos = |name: &str| releases.iter().position(|(r, _)| r == name);
    let candidates = [latest, first];
    for release in candidates {
        let Some(i) = pos(release) else { continue };
        // The release before it that served the route.
        let Some(previous) = releases[..i]
            .iter()
            .rev()
            .find(|(r, _)| traffic.get(r.as_str()).is_some_and(|(n, _)| *n > 0))
        else {
            continue;
        };
        let x1 = occ.get(release).map_or(0, |v| v.0);
        let n1 = traffic.get(release).map_or(0, |v| v.0).max(x1);
        let x0 = occ.get(previous.0.as_str()).map_or(0, |v| v.0);
        let n0 = traffic.get(previous.0.as_str()).map_or(0, |v| v.0).max(x0);
        let p_value = rate_step_p_value(x1, n1 as f64, x0, n0 as f64);
        let ratio = (x0 > 0 && n1 > 0).then(|| (x1 as f64 / n1 as f64) / (x0 as f64 / n0 as f64));
        let fired = p_value <= policy.regression_alpha
            && x1 >= policy.min_occurrences
            && ratio.is_none_or(|r| r >= policy.regression_min_ratio);
        let signal = RegressionSignal {
            release: release.to_string(),
            previous: previous.0.clone(),
            occurrences: x1,
            requests: n1,
            previous_occurrences: x0,
            previous_requests: n0,
            ratio,
            p_value,
            fired,
        };
        if fired || release == first {
            return Some(signal);
        }
    }
    None
}

fn impact(p: &Prepared<'_>, policy: &GatePolicy) -> ImpactSignal {
    let from = p.now - policy.impact_window_ms.max(BUCKET_MS);
    let occurrences = sum(&p.inc.occurrences, from, i64::MAX);
    let empty: &[Bucket] = &[];
    let route_requests = sum(
        p.route.map_or(empty, |r| r.buckets.as_slice()),
        from,
        i64::MAX,
    )
    .max(occurrences);
    let script_requests = p
        .script
        .map_or(0, |s| s.requests_in_impact_window)
        .max(route_requests);
    let share = |n: u64| (n > 0).then(|| occurrences as f64 / n as f64);
    let route_share = share(route_requests);
    let has_traffic = p
        .route
        .is_some_and(|r| r.buckets.iter().any(|b| b.count > 0));
    ImpactSignal {
        window_ms: p.now - from,
        occurrences,
        route_requests,
        route_share,
        script_requests,
        script_share: share(script_requests),
        per_hour: occurrences as f64 * HOUR_MS as f64 / (p.now - from) as f64,
        routes_affected: 1,
        // Only a share of counted traffic is an impact: without a denominator there is none.
        fired: has_traffic
            && occurrences >= policy.min_occurrences
            && route_share.is_some_and(|s| s >= policy.impact_min_share),
    }
}

fn release_aligned(p: &Prepared<'_>, policy: &GatePolicy) -> Option<String> {
    let script = p.script?;
    script
        .releases
        .iter()
        .filter(|(_, t)| *t <= p.onset_ms && p.onset_ms - *t <= policy.release_align_ms)
        .max_by_key(|(_, t)| *t)
        .map(|(r, _)| r.clone())
}

/// Decides every incident of one run. `incidents` are the open incidents the run considers,
/// `scripts` what is known of their scripts, `now_ms` the run's clock (ms since the epoch).
/// Returns one [`Decision`] per incident, in input order.
pub fn decide_all(
    incidents: &[IncidentInput],
    scripts: &[ScriptInput],
    policy: &GatePolicy,
    now_ms: i64,
) -> Vec<Decision> {
    let mut prepared: Vec<Prepared<'_>> = incidents
        .iter()
        .map(|i| prepare(i, scripts, policy, now_ms))
        .collect();

    // Benjamini–Hochberg over the spike tests of incidents with enough evidence to test.
    let tested: Vec<usize> = prepared
        .iter()
        .enumerate()
        .filter(|(_, p)| p.spike.observed >= policy.min_occurrences)
        .map(|(i, _)| i)
        .collect();
    let pvals: Vec<f64> = tested.iter().map(|&i| prepared[i].spike_p).collect();
    for (&i, (sig, q)) in tested
        .iter()
        .zip(benjamini_hochberg(&pvals, policy.spike_fdr / RUNS_PER_DAY))
    {
        let s = &mut prepared[i].spike;
        s.q_value = q;
        s.fired = sig && s.ratio >= policy.spike_min_ratio;
    }

    for p in &mut prepared {
        p.onset_ms = onset(p);
    }

    // Cascades: per script, incidents whose onset is recent (within a day), clustered by onset.
    let mut onsets: BTreeMap<&str, Vec<(i64, usize)>> = BTreeMap::new();
    for (i, p) in prepared.iter().enumerate() {
        // A cascade is fingerprints *rising* together: one first seen in the learning period was
        // there when selfheal started watching (a fresh install sees all its old errors at once),
        // so it has not risen.
        let active = p.spike.fired || p.inc.first_seen_ms >= p.now - DAY_MS;
        if active && !pre_existing(p, policy) {
            onsets
                .entry(p.inc.script.as_str())
                .or_default()
                .push((p.onset_ms, i));
        }
    }
    let mut cascades: Vec<Option<CascadeSignal>> = vec![None; prepared.len()];
    for list in onsets.values_mut() {
        list.sort();
        for &(t, i) in list.iter() {
            // The densest cluster within the window that contains this onset.
            let members: Vec<usize> = list
                .iter()
                .filter(|(u, _)| (u - t).abs() <= policy.cascade_window_ms)
                .map(|(_, j)| *j)
                .collect();
            let routes: BTreeSet<&str> = members
                .iter()
                .map(|&j| prepared[j].inc.route.as_str())
                .collect();
            if members.len() >= policy.cascade_min_fingerprints && routes.len() >= 2 {
                let start_ms = members
                    .iter()
                    .map(|&j| prepared[j].onset_ms)
                    .min()
                    .unwrap_or(t);
                let mut others: Vec<i64> = members
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| prepared[j].inc.last_seen_ms)
                    .collect();
                others.sort_unstable();
                // The cascade ends when most of the others have stopped (their median).
                let end_ms = others.get(others.len() / 2).copied().unwrap_or(t);
                cascades[i] = Some(CascadeSignal {
                    fingerprints: members.len(),
                    routes: routes.len(),
                    start_ms,
                    end_ms,
                    outlived: prepared[i].inc.last_seen_ms > end_ms + policy.cascade_window_ms,
                });
            }
        }
    }

    let mut decisions: Vec<Decision> = prepared
        .iter()
        .zip(cascades)
        .map(|(p, cascade)| decide_one(p, cascade, policy))
        .collect();

    // Per-script ticket caps, most important first.
    let mut order: Vec<usize> = (0..decisions.len()).collect();
    order.sort_by(|&a, &b| {
        decisions[b]
            .priority
            .total_cmp(&decisions[a].priority)
            .then(incidents[b].last_seen_ms.cmp(&incidents[a].last_seen_ms))
    });
    let mut taken: BTreeMap<&str, u32> = BTreeMap::new();
    for i in order {
        if decisions[i].decision != Verdict::Ticket {
            continue;
        }
        let script = incidents[i].script.as_str();
        let (hour, day) = scripts
            .iter()
            .find(|s| s.script == script)
            .map_or((0, 0), |s| (s.tickets_last_hour, s.tickets_last_day));
        let n = taken.entry(script).or_insert(0);
        let cap = if hour + *n >= policy.max_tickets_per_script_hour {
            Some("script_cap_hour")
        } else if day + *n >= policy.max_tickets_per_script_day {
            Some("script_cap_day")
        } else {
            None
        };
        match cap {
            Some(reason) => {
                decisions[i].decision = Verdict::Watch;
                decisions[i].reasons.insert(0, reason.to_string());
            }
            None => *n += 1,
        }
    }
    decisions
}

/// First seen within the learning period of the script's first counted traffic.
fn pre_existing(p: &Prepared<'_>, policy: &GatePolicy) -> bool {
    p.script
        .and_then(|s| s.first_traffic_ms)
        .is_some_and(|t| p.inc.first_seen_ms < t + policy.learning_ms)
}

fn decide_one(p: &Prepared<'_>, cascade: Option<CascadeSignal>, policy: &GatePolicy) -> Decision {
    let inc = p.inc;
    let age_ms = (p.now_ms - inc.first_seen_ms).max(0);
    let pre_existing = pre_existing(p, policy);
    let evidence_met = inc.occurrence_count >= policy.min_occurrences;
    let recent = age_ms <= policy.new_window_ms;
    let new = NewSignal {
        recent,
        pre_existing,
        age_ms,
        occurrences: inc.occurrence_count,
        evidence_met,
        fired: recent && !pre_existing && evidence_met,
    };
    let regression = p.regression.clone();
    let impact = impact(p, policy);
    let aligned = release_aligned(p, policy);
    let kind = external_kind(
        inc.sample_texts
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(inc.message.as_str())),
    );
    let in_app = !inc.top_frame.is_empty();
    let regressed = regression.as_ref().is_some_and(|r| r.fired);

    let mut reasons = Vec::new();
    let code_signals: Vec<&str> = [
        (new.fired, "new"),
        (regressed, "regression"),
        (p.spike.fired, "spike"),
        (impact.fired, "impact"),
    ]
    .into_iter()
    .filter_map(|(on, r)| on.then_some(r))
    .collect();

    let suppressed = policy
        .suppress
        .iter()
        .any(|re| re.is_match(inc.message.as_bytes()) || re.as_str() == inc.fingerprint);
    let bound_to_cascade = cascade.as_ref().is_some_and(|c| !c.outlived);
    let decided_by;
    let verdict = if suppressed {
        decided_by = "config";
        reasons.push("suppressed".to_string());
        Verdict::Suppressed
    } else if inc.exception_type == crate::storage::ingest::OVERFLOW_EXCEPTION {
        // The flood cap's fold of many fingerprints (crate::storage::ingest): many unrelated
        // failures, or attacker-made text, never one bug for an agent; a person reads it.
        decided_by = "overflow";
        reasons.push("overflow".to_string());
        Verdict::Watch
    } else if kind.is_some() {
        // A failure kind that points outside the code, even on a new release: an outage that
        // starts with a deploy (measured on the scenario corpus) is likelier than a deploy that
        // breaks an outbound call, and SELFHEAL_GATE_EXTERNAL_TICKETS still shows it to a person.
        decided_by = "external_kind";
        reasons.push("external_kind".to_string());
        if bound_to_cascade {
            reasons.push("cascade".to_string());
        }
        Verdict::External
    } else if bound_to_cascade && !(in_app && aligned.is_some()) {
        decided_by = "cascade";
        reasons.push("cascade".to_string());
        Verdict::External
    } else if inc.platform_frame && !in_app && aligned.is_none() {
        decided_by = "platform_frame";
        reasons.push("platform_frame".to_string());
        Verdict::External
    } else {
        decided_by = "code";
        if code_signals.is_empty() {
            if !evidence_met {
                reasons.push("insufficient_evidence".to_string());
            } else if pre_existing && recent {
                reasons.push("pre_existing".to_string());
            } else {
                reasons.push("no_signal".to_string());
            }
            Verdict::Watch
        } else {
            reasons.extend(code_signals.iter().map(|s| s.to_string()));
            Verdict::Ticket
        }
    };
    if verdict != Verdict::Ticket && verdict != Verdict::Watch {
        // The code signals are still worth reading beside an external verdict.
        reasons.extend(code_signals.iter().map(|s| format!("also_{s}")));
    }

    let priority =
        impact.script_share.unwrap_or(0.0) * HOUR_MS as f64 / impact.window_ms.max(1) as f64;
    Decision {
        incident_id: inc.incident_id,
        fingerprint: inc.fingerprint.clone(),
        decision: verdict,
        reasons,
        signals: Signals {
            new,
            spike: p.spike.clone(),
            regression,
            impact,
            cause: CauseSignal {
                in_app_top_frame: in_app,
                has_stack: inc.has_stack,
                platform_frame: inc.platform_frame,
                external_kind: kind.map(String::from),
                release_aligned: aligned,
                cascade,
                decided_by: decided_by.to_string(),
            },
        },
        priority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Monday 2026-11-30 00:00 UTC.
    const MONDAY: i64 = 1_795_996_800_000;

    fn hourly_traffic(
        route: &str,
        from: i64,
        to: i64,
        per_hour: u64,
        release: &str,
    ) -> RouteTraffic {
        RouteTraffic {
            route: route.into(),
            buckets: (0..)
                .map(|h| from + h * HOUR_MS)
                .take_while(|t| *t < to)
                .map(|t| Bucket {
                    start_ms: t,
                    width_ms: HOUR_MS,
                    release: release.into(),
                    count: per_hour,
                })
                .collect(),
        }
    }

    fn fine(route_or_none: &mut Vec<Bucket>, from: i64, to: i64, per_bucket: u64, release: &str) {
        let mut t = from;
        while t < to {
            route_or_none.push(Bucket {
                start_ms: t,
                width_ms: BUCKET_MS,
                release: release.into(),
                count: per_bucket,
            });
            t += BUCKET_MS;
        }
    }

    fn incident(id: i64, route: &str, message: &str) -> IncidentInput {
        IncidentInput {
            incident_id: id,
            fingerprint: format!("fp{id}"),
            script: "api".into(),
            route: route.into(),
            exception_type: "TypeError".into(),
            message: message.into(),
            top_frame: "handler (src/index.ts)".into(),
            status_class: "5xx".into(),
            has_stack: true,
            ..IncidentInput::default()
        }
    }

    /// Gives `inc` `n` occurrences spread over fine buckets in `[from, to)`.
    fn occur(inc: &mut IncidentInput, from: i64, to: i64, per_bucket: u64, release: &str) {
        fine(&mut inc.occurrences, from, to, per_bucket, release);
        let n: u64 = inc.occurrences.iter().map(|b| b.count).sum();
        inc.occurrence_count = n;
        inc.first_seen_ms = inc
            .occurrences
            .iter()
            .map(|b| b.start_ms)
            .min()
            .unwrap_or(from);
        inc.last_seen_ms = inc
            .occurrences
            .iter()
            .map(|b| b.start_ms + b.width_ms - 1)
            .max()
            .unwrap_or(to);
    }

    fn script(routes: Vec<RouteTraffic>, first_traffic: i64) -> ScriptInput {
        ScriptInput {
            script: "api".into(),
            first_traffic_ms: Some(first_traffic),
            releases: vec![("v1".into(), first_traffic)],
            requests_in_impact_window: routes
                .iter()
                .flat_map(|r| &r.buckets)
                .filter(|b| b.start_ms >= NOW - HOUR_MS)
                .map(|b| b.count)
                .sum(),
            routes,
            ..ScriptInput::default()
        }
    }

    /// Two weeks after the first traffic, Monday 14:00.
    const NOW: i64 = MONDAY + 2 * WEEK_MS + 14 * HOUR_MS;
    const FINE: i64 = NOW - 2 * HOUR_MS;

    /// 1,200 requests an hour on `/a` for two weeks: hourly, then 100 per 5 minutes.
    fn steady_route(route: &str) -> RouteTraffic {
        let mut r = hourly_traffic(route, MONDAY, FINE, 1200, "v1");
        fine(&mut r.buckets, FINE, NOW, 100, "v1");
        r
    }

    fn decide(incs: &[IncidentInput], scripts: &[ScriptInput]) -> Vec<Decision> {
        decide_all(incs, scripts, &GatePolicy::default(), NOW)
    }

    #[test]
    fn the_flood_caps_overflow_incident_is_watched_never_ticketed() {
        let s = script(vec![steady_route("/a")], MONDAY);
        let mut overflow = incident(1, "*", crate::storage::ingest::OVERFLOW_MESSAGE);
        overflow.exception_type = crate::storage::ingest::OVERFLOW_EXCEPTION.to_string();
        occur(
            &mut overflow,
            NOW - 10 * 60_000,
            NOW - 5 * 60_000,
            500,
            "v1",
        );
        let mut same_but_code = incident(2, "/a", "y is undefined");
        occur(
            &mut same_but_code,
            NOW - 10 * 60_000,
            NOW - 5 * 60_000,
            500,
            "v1",
        );
        let d = decide(&[overflow, same_but_code], &[s]);
        assert_eq!(d[0].decision, Verdict::Watch);
        assert_eq!(d[0].reasons, ["overflow"]);
        assert_eq!(
            d[1].decision,
            Verdict::Ticket,
            "the same figures on code are a ticket"
        );
    }

    #[test]
    fn a_new_incident_needs_its_minimum_evidence() {
        let s = script(vec![steady_route("/a")], MONDAY);
        let mut two = incident(1, "/a", "x is undefined");
        occur(&mut two, NOW - 10 * 60_000, NOW - 5 * 60_000, 2, "v1");
        let mut three = incident(2, "/a", "y is undefined");
        occur(&mut three, NOW - 10 * 60_000, NOW - 5 * 60_000, 3, "v1");
        let d = decide(&[two, three], &[s]);
        assert_eq!(d[0].decision, Verdict::Watch);
        assert_eq!(d[0].reasons, vec!["insufficient_evidence"]);
        assert_eq!(d[1].decision, Verdict::Ticket);
        assert!(d[1].reasons.contains(&"new".to_string()));
        assert!(d[1].signals.new.fired);
    }

    #[test]
    fn pre_existing_low_impact_errors_wait() {
        // The script's traffic was first seen an hour before the incident: pre-existing.
        let mut s = script(vec![steady_route("/a")], NOW - 3 * HOUR_MS);
        s.first_traffic_ms = Some(NOW - 3 * HOUR_MS);
        let mut inc = incident(1, "/a", "legacy failure");
        occur(&mut inc, NOW - 2 * HOUR_MS, NOW, 1, "v1");
        let d = decide(&[inc], &[s]);
        assert_eq!(d[0].decision, Verdict::Watch, "{:?}", d[0].reasons);
        assert_eq!(d[0].reasons, vec!["pre_existing"]);
        assert!(d[0].signals.new.pre_existing);
    }

    /// A background error at `per_hour` in 1,200 requests an hour for two weeks.
    fn background(id: i64, per_hour: u64) -> IncidentInput {
        let mut inc = incident(id, "/a", "background");
        inc.occurrences = (0..)
            .map(|h| MONDAY + h * HOUR_MS)
            .take_while(|t| *t < FINE)
            .map(|t| Bucket {
                start_ms: t,
                width_ms: HOUR_MS,
                release: "v1".into(),
                count: per_hour,
            })
            .collect();
        inc.first_seen_ms = MONDAY;
        inc
    }

    #[test]
    fn a_rate_jump_is_a_spike_and_a_traffic_surge_is_not() {
        // Steady: 2 errors an hour (0.17%) for two weeks; the last 30 minutes: 30 in 600 (5%).
        let mut spiking = background(1, 2);
        fine(&mut spiking.occurrences, FINE, NOW - 30 * 60_000, 0, "v1");
        fine(&mut spiking.occurrences, NOW - 30 * 60_000, NOW, 5, "v1");
        spiking.occurrence_count = 1000;
        spiking.last_seen_ms = NOW - 1;
        let s = script(vec![steady_route("/a")], MONDAY);
        let d = decide(std::slice::from_ref(&spiking), std::slice::from_ref(&s));
        assert_eq!(d[0].decision, Verdict::Ticket, "{:?}", d[0].signals.spike);
        assert_eq!(d[0].reasons, vec!["spike"]);
        assert!(d[0].signals.spike.ratio > 10.0);

        // Surge: traffic x5 in the last 30 minutes, errors x5 with it: same rate, no spike.
        let mut surge_route = steady_route("/b");
        surge_route
            .buckets
            .retain(|b| b.start_ms < NOW - 30 * 60_000);
        fine(&mut surge_route.buckets, NOW - 30 * 60_000, NOW, 500, "v1");
        let mut surging = background(2, 2);
        surging.route = "/b".into();
        // 2 an hour = 1 per 6 buckets; x5 traffic: about 5 in the 30-minute window (0.17%).
        fine(&mut surging.occurrences, NOW - 30 * 60_000, NOW, 1, "v1");
        surging.occurrence_count = 700;
        surging.last_seen_ms = NOW - 1;
        let s2 = script(vec![surge_route], MONDAY);
        let d = decide(&[surging], &[s2]);
        assert_eq!(d[0].decision, Verdict::Watch, "{:?}", d[0].signals.spike);
        assert!(!d[0].signals.spike.fired);
        assert!(
            d[0].signals.spike.ratio < 3.0,
            "{}",
            d[0].signals.spike.ratio
        );
    }

    #[test]
    fn a_step_on_a_new_release_is_a_regression_naming_both_releases() {
        let v2_at = NOW - HOUR_MS;
        let mut route = hourly_traffic("/a", MONDAY, v2_at, 1200, "v1");
        fine(&mut route.buckets, v2_at, NOW, 100, "v2");
        let mut s = script(vec![route], MONDAY - WEEK_MS);
        s.releases = vec![("v1".into(), MONDAY), ("v2".into(), v2_at)];
        let mut inc = background(1, 1);
        fine(&mut inc.occurrences, v2_at, NOW, 4, "v2");
        inc.occurrence_count = 400;
        inc.last_seen_ms = NOW - 1;
        let d = decide(&[inc], &[s]);
        let r = d[0].signals.regression.as_ref().expect("regression signal");
        assert!(r.fired, "{r:?}");
        assert_eq!((r.release.as_str(), r.previous.as_str()), ("v2", "v1"));
        assert_eq!(d[0].decision, Verdict::Ticket);
        assert!(d[0].reasons.contains(&"regression".to_string()));
        // The step's onset is its first occurrence on v2, right after v2 was first seen.
        assert_eq!(d[0].signals.cause.release_aligned.as_deref(), Some("v2"));
    }

    #[test]
    fn a_steady_high_impact_failure_outranks_a_tiny_spike() {
        let s = script(vec![steady_route("/a"), steady_route("/b")], MONDAY);
        // 20% of /a for two weeks: pre-existing, but high impact.
        let mut steady = background(1, 240);
        fine(&mut steady.occurrences, FINE, NOW, 20, "v1");
        steady.occurrence_count = 80_000;
        steady.last_seen_ms = NOW - 1;
        // A significant spike on /b, but on a tiny share: 0 before, 3 in the window.
        let mut tiny = incident(2, "/b", "rare");
        tiny.first_seen_ms = MONDAY;
        tiny.occurrences = vec![Bucket {
            start_ms: NOW - 10 * 60_000,
            width_ms: BUCKET_MS,
            release: "v1".into(),
            count: 3,
        }];
        tiny.occurrence_count = 3;
        tiny.last_seen_ms = NOW - 1;
        let d = decide(&[steady, tiny], &[s]);
        assert_eq!(d[0].decision, Verdict::Ticket);
        assert!(d[0].reasons.contains(&"impact".to_string()));
        assert!(d[0].signals.impact.route_share.expect("share") > 0.15);
        assert!(
            d[0].priority > d[1].priority * 10.0,
            "{} vs {}",
            d[0].priority,
            d[1].priority
        );
    }

    #[test]
    fn failures_that_point_outside_the_code_are_external() {
        let s = script(vec![steady_route("/pay")], MONDAY);
        let mut inc = incident(1, "/pay", "payment upstream failed: <int>");
        inc.sample_texts = vec!["payment upstream failed: Network connection lost.".into()];
        occur(&mut inc, NOW - 20 * 60_000, NOW, 5, "v1");
        let d = decide(&[inc], &[s]);
        assert_eq!(d[0].decision, Verdict::External);
        assert_eq!(d[0].signals.cause.external_kind.as_deref(), Some("network"));
        assert_eq!(d[0].signals.cause.decided_by, "external_kind");
        assert!(d[0].reasons.contains(&"also_new".to_string()));
    }

    #[test]
    fn external_kinds_by_pattern() {
        for (text, kind) in [
            ("TypeError: fetch failed", Some("network")),
            ("Error: Network connection lost.", Some("network")),
            ("upstream responded 503", Some("upstream_5xx")),
            (
                "geo service returned status 504 after retry",
                Some("upstream_5xx"),
            ),
            ("502 Bad Gateway", Some("upstream_5xx")),
            ("The operation was aborted due to timeout", Some("timeout")),
            (
                "D1_ERROR: D1 DB is overloaded. Requests queued for too long.",
                Some("platform"),
            ),
            (
                "KV GET failed: 503 Service Unavailable",
                Some("upstream_5xx"),
            ),
            (
                "Cannot read properties of undefined (reading 'results')",
                None,
            ),
            ("invalid coupon code 503", None),
            ("HTTP 500 response", None),
            // A Worker's own 502/503/504 without an exception: a gateway passing on a failure.
            ("HTTP 504 response", Some("upstream_5xx")),
        ] {
            assert_eq!(external_kind([text]), kind, "{text}");
        }
    }

    fn cascade_members(onset: i64, until: i64) -> Vec<IncidentInput> {
        (1..=6)
            .map(|i| {
                let route = ["/a", "/b", "/c"][(i % 3) as usize];
                let mut inc = incident(
                    i,
                    route,
                    &format!("Cannot read properties of undefined (reading 'f{i}')"),
                );
                occur(&mut inc, onset, until, 2, "v1");
                inc
            })
            .collect()
    }

    #[test]
    fn a_cascade_is_one_external_finding_and_a_release_aligned_bug_in_it_is_still_found() {
        let s = script(
            vec![steady_route("/a"), steady_route("/b"), steady_route("/c")],
            MONDAY,
        );
        let incs = cascade_members(NOW - 20 * 60_000, NOW);
        let d = decide(&incs, std::slice::from_ref(&s));
        for x in &d {
            assert_eq!(x.decision, Verdict::External, "{:?}", x.reasons);
            assert_eq!(x.signals.cause.decided_by, "cascade");
            let c = x.signals.cause.cascade.as_ref().expect("cascade");
            assert_eq!((c.fingerprints, c.routes), (6, 3));
        }
        // The same, but one member started right after a deploy of the script: judged as code.
        let mut s2 = s.clone();
        s2.releases.push(("v2".into(), NOW - 25 * 60_000));
        let d = decide(&incs, &[s2]);
        assert!(
            d.iter()
                .all(|x| x.signals.cause.release_aligned.as_deref() == Some("v2"))
        );
        // A bad deploy: tickets, up to the per-script hourly cap (5); the rest wait for it.
        assert_eq!(
            d.iter().filter(|x| x.decision == Verdict::Ticket).count(),
            5
        );
        assert!(d.iter().all(|x| x.decision != Verdict::External));
    }

    #[test]
    fn errors_seen_at_once_on_a_fresh_install_are_no_cascade() {
        // The script's traffic was first counted 20 minutes ago, with six failures from the start:
        // nothing rose, so each is judged on its own (impact: 2 of 100 requests per bucket).
        let s = script(
            vec![steady_route("/a"), steady_route("/b"), steady_route("/c")],
            NOW - 20 * 60_000,
        );
        let incs = cascade_members(NOW - 20 * 60_000, NOW);
        let d = decide(&incs, &[s]);
        for x in &d {
            assert!(x.signals.cause.cascade.is_none(), "{:?}", x.signals.cause);
            assert!(x.signals.new.pre_existing);
            assert_eq!(
                x.decision,
                Verdict::Watch,
                "2% of requests is below the impact share"
            );
        }
    }

    #[test]
    fn a_cascade_member_that_outlives_the_cascade_is_judged_on_its_own() {
        let s = script(
            vec![steady_route("/a"), steady_route("/b"), steady_route("/c")],
            MONDAY,
        );
        // Five members stopped 40 minutes ago; one goes on until now.
        let mut incs = cascade_members(NOW - 70 * 60_000, NOW - 40 * 60_000);
        occur(&mut incs[0], NOW - 40 * 60_000, NOW, 2, "v1");
        let d = decide(&incs, &[s]);
        assert_eq!(d[0].decision, Verdict::Ticket, "{:?}", d[0].reasons);
        assert!(
            d[0].signals
                .cause
                .cascade
                .as_ref()
                .expect("cascade")
                .outlived
        );
        assert!(d[1..].iter().all(|x| x.decision == Verdict::External));
    }

    #[test]
    fn edge_cases_no_traffic_one_request_a_day_clock_skew_and_silent_release() {
        // No traffic counted yet: new still works, impact has no share.
        let mut inc = incident(1, "/a", "boom");
        occur(&mut inc, NOW - 10 * 60_000, NOW, 2, "");
        let d = decide(std::slice::from_ref(&inc), &[]);
        assert_eq!(d[0].decision, Verdict::Ticket);
        assert_eq!(
            d[0].signals.impact.route_share,
            Some(1.0),
            "occurrences are their own floor"
        );
        assert!(
            !d[0].signals.impact.fired,
            "no counted traffic, no impact claim"
        );

        // One request a day for two weeks, one error a day: no spike from two occurrences.
        let daily = RouteTraffic {
            route: "/a".into(),
            buckets: (0..14)
                .map(|d| Bucket {
                    start_ms: MONDAY + d * DAY_MS,
                    width_ms: HOUR_MS,
                    release: "v1".into(),
                    count: 1,
                })
                .collect(),
        };
        let mut rare = incident(2, "/a", "rare");
        rare.occurrences = daily.buckets.clone();
        rare.first_seen_ms = MONDAY;
        rare.last_seen_ms = MONDAY + 13 * DAY_MS;
        rare.occurrence_count = 14;
        let d = decide(&[rare], &[script(vec![daily], MONDAY)]);
        assert_eq!(d[0].decision, Verdict::Watch);
        assert!(d[0].signals.spike.p_value.is_finite());

        // Clock skew: occurrences stamped 10 minutes in the future count in the current window.
        let mut skewed = incident(3, "/a", "skew");
        occur(&mut skewed, NOW + 5 * 60_000, NOW + 15 * 60_000, 3, "v1");
        let d = decide(&[skewed], &[script(vec![steady_route("/a")], MONDAY)]);
        assert_eq!(d[0].signals.spike.observed, 6);
        assert_eq!(d[0].decision, Verdict::Ticket);

        // A release with traffic and no occurrences after the one the incident is on.
        let mut s = script(vec![steady_route("/a")], MONDAY);
        s.releases.push(("v3".into(), NOW - 10 * 60_000));
        let mut quiet = background(4, 1);
        quiet.occurrence_count = 300;
        quiet.last_seen_ms = FINE;
        let d = decide(&[quiet], &[s]);
        assert_eq!(d[0].decision, Verdict::Watch);
        assert!(d[0].signals.regression.as_ref().is_none_or(|r| !r.fired));
    }

    #[test]
    fn suppressions_and_per_script_caps() {
        let mut policy = GatePolicy::from_vars(|name| match name {
            "SELFHEAL_GATE_SUPPRESS" => Some(r#"["^known flake"]"#.into()),
            "SELFHEAL_GATE_MAX_TICKETS_PER_HOUR" => Some("2".into()),
            _ => None,
        })
        .expect("valid");
        let s = script(vec![steady_route("/a")], MONDAY);
        let mut incs: Vec<IncidentInput> = (1..=4)
            .map(|i| {
                let mut inc = incident(i, "/a", &format!("bug {i}"));
                occur(&mut inc, NOW - 10 * 60_000, NOW, i as u64 + 2, "v1");
                inc
            })
            .collect();
        incs[3].message = "known flake in tests".into();
        let d = decide_all(&incs, std::slice::from_ref(&s), &policy, NOW);
        assert_eq!(d[3].decision, Verdict::Suppressed);
        let tickets = d.iter().filter(|x| x.decision == Verdict::Ticket).count();
        assert_eq!(tickets, 2);
        assert_eq!(
            d[0].reasons[0], "script_cap_hour",
            "the least important waits"
        );
        policy.max_tickets_per_script_hour = 10;
        let mut s2 = s;
        s2.tickets_last_day = 20;
        let d = decide_all(&incs, &[s2], &policy, NOW);
        assert!(d[..3].iter().all(|x| x.reasons[0] == "script_cap_day"));
    }

    #[test]
    fn bad_policy_values_name_their_variable() {
        for (name, value) in [
            ("SELFHEAL_GATE_MODE", "sometimes"),
            ("SELFHEAL_GATE_MIN_OCCURRENCES", "0"),
            ("SELFHEAL_GATE_SPIKE_FDR", "1.5"),
            ("SELFHEAL_GATE_IMPACT_MIN_SHARE", "-1"),
            ("SELFHEAL_GATE_EXTERNAL_TICKETS", "maybe"),
            ("SELFHEAL_GATE_SUPPRESS", "[\"(\"]"),
            ("SELFHEAL_GATE_NEW_WINDOW_HOURS", "soon"),
        ] {
            let e =
                GatePolicy::from_vars(|n| (n == name).then(|| value.to_string())).expect_err(name);
            assert!(e.0.contains(name), "{e}");
        }
        let p = GatePolicy::from_vars(|n| (n == "SELFHEAL_GATE_MODE").then(|| "shadow".into()))
            .expect("valid");
        assert_eq!(p.mode, GateMode::Shadow);
        assert_eq!(p.min_occurrences, GatePolicy::default().min_occurrences);
    }

    #[test]
    fn hour_of_week_starts_on_monday() {
        assert_eq!(hour_of_week(MONDAY), 0);
        assert_eq!(hour_of_week(MONDAY + 14 * HOUR_MS), 14);
        assert_eq!(hour_of_week(MONDAY - HOUR_MS), 167);
    }
}
