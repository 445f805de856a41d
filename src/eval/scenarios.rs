//! The scenario corpus the gate (issue 8) is evaluated on: a seeded, deterministic generator of
//! production-shaped TraceItems, one `scriptName` per scenario, with a label for every bug.
//!
//! # Time line
//! `start_ms` (a Monday 00:00 UTC) opens `warmup_days` of warm-up (default 7), then `eval_days`
//! evaluation days (default 1). Every scenario's onset lies on the first evaluation day, mostly
//! in the afternoon (UTC), when traffic is near its peak. "Pre-existing" means present from
//! `start_ms`.
//!
//! # Traffic
//! Each script gets Poisson arrivals per minute with mean
//! `requests_per_hour / 60 × traffic_factor(t) × surge(t)`, timestamps uniform within the minute
//! (on a 16 ms grid offset by the scenario's index, so that no two invocations of the corpus share
//! a timestamp). [`traffic_factor`] is the daily rhythm (a cosine, peak at [`PEAK_HOUR_UTC`],
//! peak/trough = (1 + [`DAILY_AMPLITUDE`]) / (1 − [`DAILY_AMPLITUDE`]) = 4) times the weekly one
//! (Saturday and Sunday at [`WEEKEND_FACTOR`] of a weekday), scaled to a mean of 1 over a week.
//! Healthy requests answer 200/201/304 with some 4xx (404, 401, 400, 422), a few client
//! disconnects, `console.log` / `console.warn` lines; one script in three also runs an hourly
//! cron. Releases: one before the start, then a deploy on about every other weekday of the
//! warm-up (09:00–18:00 UTC, never in the last day of it), plus the scenario's own deploys.
//!
//! # Errors
//! A bug is a set of error *shapes* (one route each) with a share of that route's requests that
//! fail (or a mean number per hour) over time windows: a failing request *replaces* a healthy one,
//! so traffic counts do not change with errors. Shapes are uncaught exceptions with V8 stacks
//! (`outcome: "exception"`, no response), `console.error` calls without a stack answered by a
//! 5xx (what apps that catch and log do), and bare 5xx responses; messages carry varied ids and
//! numbers so normalization has work to do.
//!
//! # Size
//! At the default config (8 days, 12 scripts, [`DEFAULT_REQUESTS_PER_HOUR`] per script) the
//! corpus has about 1.16 million items (see the `default_corpus_size` test, which prints it).
//!
//! # Determinism
//! Each script draws from its own ChaCha8 streams (seeded by `seed`, stream by scenario index),
//! so a scenario's items are the same whether it runs alone (`only`) or with the others, and the
//! same seed gives the same corpus byte for byte.

use std::collections::{BTreeSet, VecDeque};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};
use serde_json::Value;

/// One minute, in ms.
pub const MINUTE_MS: i64 = 60_000;
/// One hour, in ms.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// One day, in ms.
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// Default `start_ms`: Monday 2026-11-23 00:00 UTC, ms since the epoch.
pub const DEFAULT_START_MS: i64 = 1_795_392_000_000;
/// Default mean healthy traffic per script, requests per hour (gives ~1.16 M items in 8 days × 12
/// scripts, under the 1.5 M the test-suite replay can afford).
pub const DEFAULT_REQUESTS_PER_HOUR: f64 = 500.0;
/// Traffic on Saturday and Sunday (UTC) relative to a weekday (0.6 = 40% lower).
pub const WEEKEND_FACTOR: f64 = 0.6;
/// Relative amplitude of the daily cosine: the rate swings between 1 ± this times the day's mean.
pub const DAILY_AMPLITUDE: f64 = 0.6;
/// Hour of the day (UTC, 0–24) of the daily peak; the trough is 12 hours later.
pub const PEAK_HOUR_UTC: f64 = 15.0;
/// Timestamps lie on a grid of this many ms, offset by the scenario's index (< this).
const SLOT_MS: i64 = 16;
/// Grid slots per minute.
const SLOTS_PER_MINUTE: i64 = MINUTE_MS / SLOT_MS;
/// Purposes of the per-script random streams.
const STREAM_PLAN: u64 = 0;
const STREAM_RENDER: u64 = 1;
const STREAM_SETUP: u64 = 2;
const STREAM_SAMPLES: u64 = 3;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioConfig {
    /// Seed of every random stream: same seed, same corpus.
    pub seed: u64,
    /// Start of the warm-up, ms since the epoch; meant to be a Monday 00:00 UTC (the weekly
    /// rhythm follows the calendar, so another day shifts which days are the weekend).
    pub start_ms: i64,
    /// Days of warm-up before the evaluation days (default 7).
    pub warmup_days: u32,
    /// Evaluation days (default 1; 0 is read as 1). Onsets lie on the first one.
    pub eval_days: u32,
    /// Mean healthy traffic per script, requests per hour, over a week (default
    /// [`DEFAULT_REQUESTS_PER_HOUR`]). Not finite or ≤ 0: no traffic, only injected items.
    pub requests_per_hour: f64,
    /// Scenario names to generate (see [`Scenarios::names`]); `None` = all. Unknown names match
    /// nothing (see [`ScenarioConfig::unknown_names`]).
    pub only: Option<Vec<String>>,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            seed: 1,
            start_ms: DEFAULT_START_MS,
            warmup_days: 7,
            eval_days: 1,
            requests_per_hour: DEFAULT_REQUESTS_PER_HOUR,
            only: None,
        }
    }
}

impl ScenarioConfig {
    /// The names in `only` that are no scenario (empty when all are known or `only` is `None`).
    pub fn unknown_names(&self) -> Vec<String> {
        self.only
            .iter()
            .flatten()
            .filter(|n| !NAMES.contains(&n.as_str()))
            .cloned()
            .collect()
    }

    /// Start of the first evaluation day, ms since the epoch.
    pub fn eval_start_ms(&self) -> i64 {
        self.start_ms + i64::from(self.warmup_days) * DAY_MS
    }

    /// End of the corpus (exclusive), ms since the epoch.
    pub fn end_ms(&self) -> i64 {
        self.eval_start_ms() + i64::from(self.eval_days.max(1)) * DAY_MS
    }

    fn selected(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| n == name))
    }
}

/// One bug of the corpus with its label: should it reach an agent?
#[derive(Debug, Clone)]
pub struct LabelledBug {
    /// Scenario it belongs to (one of [`Scenarios::names`]).
    pub scenario: &'static str,
    /// Unique id, `<scenario>/<what>` (e.g. `deploy_bug/new_typeerror`).
    pub bug: String,
    /// `scriptName` of its items.
    pub script: String,
    /// True when a ticket for an agent is the right decision.
    pub actionable: bool,
    /// When the behaviour to judge starts, ms since the epoch, always on the first evaluation
    /// day: the deploy, the jump, the outage, the surge; for a failure present since the start
    /// (`first_ms` < onset), the start of the evaluation day or the moment it stops.
    pub onset_ms: i64,
    /// For an actionable bug: a ticket is expected by then (ms since the epoch). `None` when not
    /// actionable.
    pub deadline_ms: Option<i64>,
    /// Why it carries this label (and the deadline's reason).
    pub why: &'static str,
    /// One TraceItem per distinct error shape this bug produces (each a JSON object), so an
    /// evaluator can compute the fingerprints with `event::process_item`.
    pub samples: Vec<Value>,
    /// First occurrence the generator can produce, ms since the epoch: `start_ms` for a
    /// pre-existing failure, else the onset (an addition to the brief's shape).
    pub first_ms: i64,
}

/// Mean traffic relative to a week's mean at `t_ms` (ms since the epoch, UTC): the daily cosine
/// (peak at [`PEAK_HOUR_UTC`]) times the weekend factor, normalised so that a week averages 1.
pub fn traffic_factor(t_ms: i64) -> f64 {
    let days = t_ms.div_euclid(DAY_MS);
    // 1970-01-01 was a Thursday: +3 makes Monday 0.
    let weekday = (days + 3).rem_euclid(7);
    let week = if weekday >= 5 { WEEKEND_FACTOR } else { 1.0 };
    let week_scale = 7.0 / (5.0 + 2.0 * WEEKEND_FACTOR);
    let hour = t_ms.rem_euclid(DAY_MS) as f64 / HOUR_MS as f64;
    let day = 1.0 + DAILY_AMPLITUDE * ((hour - PEAK_HOUR_UTC) / 24.0 * std::f64::consts::TAU).cos();
    week * week_scale * day
}

/// Scenario names, in index order.
const NAMES: &[&str] = &[
    "deploy_bug",
    "slow_burn",
    "third_party_outage",
    "traffic_surge",
    "release_rate_step",
    "cascade",
    "expected_flapping",
    "fix_and_new",
    "one_off",
    "steady_high_impact",
    "bug_during_outage",
    "escalating_no_release",
];

/// The ignore pattern the `expected_flapping` scenario relies on.
const FLAPPING_IGNORE: &str = r"^quota exceeded for tenant \d+";

// ---------------------------------------------------------------------------------------------
// Model

/// A route of a script: method, path template (placeholders, see [`expand`]), query template,
/// relative weight of its traffic.
#[derive(Debug, Clone)]
struct Route {
    method: &'static str,
    path: &'static str,
    query: Option<&'static str>,
    weight: f64,
}

/// How often a bug fires on a request of one of its routes during a window.
#[derive(Debug, Clone, Copy)]
enum Rate {
    /// This share of the route's requests fail (0–1).
    Share(f64),
    /// About this many failures per hour, whatever the traffic (a share computed from the
    /// route's mean rate at that time).
    PerHour(f64),
}

/// `[from_ms, to_ms)` at a rate.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: i64,
    to: i64,
    rate: Rate,
}

/// A `console.error` argument.
#[derive(Debug, Clone, Copy)]
enum Arg {
    /// A string, from a template.
    Str(&'static str),
    /// An object of string values, each from a template.
    Obj(&'static [(&'static str, &'static str)]),
}

/// What a failing request looks like.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Uncaught exception: `outcome: "exception"`, no response; `stack` is V8's frame lines.
    Throw {
        name: &'static str,
        message: &'static str,
        stack: &'static str,
    },
    /// Caught and logged with `console.error(...args)` (no stack), answered with `status`.
    Logged { args: &'static [Arg], status: u16 },
    /// A bare 5xx response, with an optional `console.warn`.
    Status {
        status: u16,
        warn: Option<&'static str>,
    },
}

/// One error shape: a kind on a route, with a relative weight among the bug's shapes on that route.
#[derive(Debug, Clone, Copy)]
struct Shape {
    route: usize,
    weight: f64,
    kind: Kind,
}

/// A bug as the generator runs it.
#[derive(Debug, Clone)]
struct Bug {
    label: LabelledBug,
    windows: Vec<Window>,
    shapes: Vec<Shape>,
    /// Extra requests (ms since the epoch) that fail with the first shape, outside the traffic.
    injected: Vec<i64>,
}

impl Bug {
    fn rate_at(&self, t: i64) -> Option<Rate> {
        self.windows
            .iter()
            .find(|w| w.from <= t && t < w.to)
            .map(|w| w.rate)
    }
}

/// A release: from when it serves (ms since the epoch), its tag and id.
#[derive(Debug, Clone)]
struct Release {
    from: i64,
    tag: String,
    id: String,
    message: &'static str,
}

/// One scenario's Worker.
#[derive(Debug, Clone)]
struct Script {
    /// Index in [`NAMES`] (fixes the random streams and the timestamp grid offset).
    index: usize,
    name: String,
    host: &'static str,
    entrypoint: &'static str,
    routes: Vec<Route>,
    releases: Vec<Release>,
    bugs: Vec<Bug>,
    /// Traffic multipliers: `[from, to)` × factor.
    surges: Vec<(i64, i64, f64)>,
    cron: Option<&'static str>,
    /// For each route, the (bug, shape) pairs that can fire on it.
    by_route: Vec<Vec<(usize, Vec<usize>)>>,
    total_weight: f64,
}

impl Script {
    fn surge_at(&self, t: i64) -> f64 {
        self.surges
            .iter()
            .filter(|(a, b, _)| *a <= t && t < *b)
            .map(|s| s.2)
            .product()
    }

    fn release_at(&self, t: i64) -> &Release {
        let i = self.releases.partition_point(|r| r.from <= t);
        &self.releases[i.saturating_sub(1)]
    }

    /// Mean requests per hour of `route` at `t`.
    fn route_rate(&self, rph: f64, route: usize, t: i64) -> f64 {
        rph * traffic_factor(t) * self.surge_at(t) * self.routes[route].weight / self.total_weight
    }

    fn index_bugs(&mut self) {
        self.total_weight = self.routes.iter().map(|r| r.weight).sum();
        let mut by_route = vec![Vec::new(); self.routes.len()];
        for (b, bug) in self.bugs.iter().enumerate() {
            for (r, list) in by_route.iter_mut().enumerate() {
                let shapes: Vec<usize> = (0..bug.shapes.len())
                    .filter(|&s| bug.shapes[s].route == r)
                    .collect();
                if !shapes.is_empty() {
                    list.push((b, shapes));
                }
            }
        }
        self.by_route = by_route;
    }
}

/// What one planned request becomes.
#[derive(Debug, Clone, Copy)]
enum Planned {
    Healthy { route: usize },
    Error { bug: usize, shape: usize },
    Cron,
}

/// The generated corpus: scripts, their bugs and labels. Cheap to build; items are produced on
/// demand by [`Scenarios::invocations`].
#[derive(Debug, Clone)]
pub struct Scenarios {
    cfg: ScenarioConfig,
    scripts: Vec<Script>,
    labels: Vec<LabelledBug>,
}

impl Scenarios {
    /// Builds the scenarios selected by `cfg` (their releases, bugs, labels and samples).
    pub fn new(cfg: &ScenarioConfig) -> Scenarios {
        let mut cfg = cfg.clone();
        cfg.eval_days = cfg.eval_days.max(1);
        let mut scripts = Vec::new();
        for (index, name) in NAMES.iter().enumerate() {
            if cfg.selected(name) {
                scripts.push(build(name, index, &cfg));
            }
        }
        let mut sc = Scenarios {
            cfg,
            scripts,
            labels: Vec::new(),
        };
        sc.labels = sc.make_labels();
        sc
    }

    /// Every bug of the selected scenarios with its label and samples, actionable or not
    /// (background errors and outages included), in scenario order.
    pub fn bugs(&self) -> &[LabelledBug] {
        &self.labels
    }

    /// All scenario names, in the order of their index.
    pub fn names() -> &'static [&'static str] {
        NAMES
    }

    /// The config the corpus was built from (`eval_days` at least 1).
    pub fn config(&self) -> &ScenarioConfig {
        &self.cfg
    }

    /// Regexes for `SELFHEAL_IGNORE_MESSAGES` (as a JSON array) that the `expected_flapping`
    /// scenario relies on; empty when that scenario is not selected.
    pub fn ignore_messages(&self) -> Vec<String> {
        if self.cfg.selected("expected_flapping") {
            vec![FLAPPING_IGNORE.to_string()]
        } else {
            Vec::new()
        }
    }

    /// `(eventTimestamp in ms since the epoch, one tail invocation as a JSON array of
    /// TraceItems)`, in strictly increasing time order across all scripts, generated minute by
    /// minute as the iterator is advanced (never the whole corpus at once). Each call starts
    /// over and yields the same sequence.
    pub fn invocations(&self) -> impl Iterator<Item = (i64, String)> + '_ {
        self.stream()
    }

    fn stream(&self) -> Invocations<'_> {
        Invocations {
            sc: self,
            plan_rngs: self
                .scripts
                .iter()
                .map(|s| stream(self.cfg.seed, s.index, STREAM_PLAN))
                .collect(),
            render_rngs: self
                .scripts
                .iter()
                .map(|s| stream(self.cfg.seed, s.index, STREAM_RENDER))
                .collect(),
            minute: self.cfg.start_ms.div_euclid(MINUTE_MS) * MINUTE_MS,
            end: self.cfg.end_ms(),
            buf: VecDeque::new(),
            plan: Vec::new(),
        }
    }

    /// Expected number of occurrences (the mean of the generator's draws, not a count) of bug
    /// `bug` (a [`LabelledBug::bug`] id) between `from_ms` and `to_ms` (ms since the epoch), from
    /// its rates and the traffic curve, integrated per minute; `None` for an unknown id. Tells
    /// how much evidence a gate can have by a deadline.
    pub fn expected_occurrences(&self, bug: &str, from_ms: i64, to_ms: i64) -> Option<f64> {
        let rph = self.cfg.requests_per_hour;
        let rph = if rph.is_finite() && rph > 0.0 {
            rph
        } else {
            0.0
        };
        for s in &self.scripts {
            let Some(b) = s.bugs.iter().find(|b| b.label.bug == bug) else {
                continue;
            };
            let injected = b
                .injected
                .iter()
                .filter(|&&t| t >= from_ms && t < to_ms)
                .count() as f64;
            let routes: BTreeSet<usize> = b.shapes.iter().map(|sh| sh.route).collect();
            let mut sum = 0.0;
            let mut t = from_ms;
            while t < to_ms {
                let step = (to_ms - t).min(MINUTE_MS);
                let mid = t + step / 2;
                for &r in &routes {
                    let rate = s.route_rate(rph, r, mid);
                    let p = match b.rate_at(mid) {
                        None => 0.0,
                        Some(Rate::Share(p)) => p,
                        Some(Rate::PerHour(h)) => (h / rate.max(1e-9)).min(1.0),
                    };
                    sum += rate * p * step as f64 / HOUR_MS as f64;
                }
                t += step;
            }
            return Some(sum + injected);
        }
        None
    }

    /// Number of items [`Scenarios::invocations`] yields, counted from the plan alone (no JSON
    /// is written): the same figure, much faster.
    pub fn item_count(&self) -> u64 {
        let mut n = 0u64;
        let mut plan = Vec::new();
        for s in &self.scripts {
            let mut rng = stream(self.cfg.seed, s.index, STREAM_PLAN);
            let mut m = self.cfg.start_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
            while m < self.cfg.end_ms() {
                plan.clear();
                self.plan_minute(s, &mut rng, m, &mut plan);
                n += plan.len() as u64;
                m += MINUTE_MS;
            }
        }
        n
    }

    /// Plans one minute of one script: `(timestamp, what)` in time order.
    fn plan_minute(
        &self,
        s: &Script,
        rng: &mut ChaCha8Rng,
        minute: i64,
        out: &mut Vec<(i64, Planned)>,
    ) {
        let start = self.cfg.start_ms;
        let end = self.cfg.end_ms();
        let mid = minute + MINUTE_MS / 2;
        let rph = self.cfg.requests_per_hour;
        let lambda = if rph.is_finite() && rph > 0.0 {
            rph / 60.0 * traffic_factor(mid) * s.surge_at(mid)
        } else {
            0.0
        };
        let n = match Poisson::new(lambda) {
            Ok(p) => (p.sample(rng) as i64).clamp(0, SLOTS_PER_MINUTE / 2),
            Err(_) => 0,
        };
        let mut slots: Vec<i64> = Vec::with_capacity(n as usize + 2);
        for _ in 0..n {
            take_slot(rng, &mut slots);
        }
        slots.sort_unstable();
        let ts_of = |slot: i64| minute + slot * SLOT_MS + s.index as i64;
        for &slot in &slots {
            let ts = ts_of(slot);
            if ts < start || ts >= end {
                continue;
            }
            let route = pick_route(&s.routes, s.total_weight, rng);
            let mut what = Planned::Healthy { route };
            for (b, shapes) in &s.by_route[route] {
                let bug = &s.bugs[*b];
                let p = match bug.rate_at(ts) {
                    None => continue,
                    Some(Rate::Share(p)) => p,
                    Some(Rate::PerHour(h)) => {
                        let rate = s.route_rate(rph.max(1e-9), route, ts);
                        h / rate.max(1e-9)
                    }
                };
                // Always draw, so that a bug's windows do not shift other draws.
                let u: f64 = rng.random();
                if u < p {
                    let shape = pick_shape(&bug.shapes, shapes, rng);
                    what = Planned::Error { bug: *b, shape };
                    break;
                }
            }
            out.push((ts, what));
        }
        // Cron: at the top of the hour, in the first seconds.
        if let Some(_cron) = s.cron
            && minute.rem_euclid(HOUR_MS) == 0
        {
            let want = rng.random_range(0..64i64);
            let slot = free_slot(&slots, want);
            slots.push(slot);
            let ts = ts_of(slot);
            if ts >= start && ts < end {
                out.push((ts, Planned::Cron));
            }
        }
        // Injected one-off requests of this minute.
        for (b, bug) in s.bugs.iter().enumerate() {
            for &t in &bug.injected {
                if t.div_euclid(MINUTE_MS) * MINUTE_MS != minute {
                    continue;
                }
                let want = (t - minute).div_euclid(SLOT_MS);
                let slot = free_slot(&slots, want);
                slots.push(slot);
                out.push((ts_of(slot), Planned::Error { bug: b, shape: 0 }));
            }
        }
        out.sort_unstable_by_key(|(t, _)| *t);
    }

    fn make_labels(&self) -> Vec<LabelledBug> {
        let mut out = Vec::new();
        for s in &self.scripts {
            let mut rng = stream(self.cfg.seed, s.index, STREAM_SAMPLES);
            for (b, bug) in s.bugs.iter().enumerate() {
                let mut label = bug.label.clone();
                let at = sample_time(bug, label.onset_ms, label.first_ms);
                label.samples = (0..bug.shapes.len())
                    .map(|shape| {
                        let mut text = String::new();
                        render(s, &mut rng, at, Planned::Error { bug: b, shape }, &mut text);
                        serde_json::from_str(&text).expect("the generator writes valid JSON")
                    })
                    .collect();
                out.push(label);
            }
        }
        out
    }
}

/// A time at which the bug is active: the onset when it is active then, else the start of its
/// first window (or its first injected request).
fn sample_time(bug: &Bug, onset: i64, first: i64) -> i64 {
    if let Some(&t) = bug.injected.first() {
        return t;
    }
    if bug.rate_at(onset).is_some() {
        return onset;
    }
    bug.windows.first().map_or(first, |w| w.from)
}

/// The lazy stream behind [`Scenarios::invocations`].
struct Invocations<'a> {
    sc: &'a Scenarios,
    plan_rngs: Vec<ChaCha8Rng>,
    render_rngs: Vec<ChaCha8Rng>,
    minute: i64,
    end: i64,
    buf: VecDeque<(i64, String)>,
    plan: Vec<(i64, Planned)>,
}

impl Iterator for Invocations<'_> {
    type Item = (i64, String);

    fn next(&mut self) -> Option<(i64, String)> {
        loop {
            if let Some(x) = self.buf.pop_front() {
                return Some(x);
            }
            if self.minute >= self.end {
                return None;
            }
            let mut items: Vec<(i64, String)> = Vec::new();
            for (i, s) in self.sc.scripts.iter().enumerate() {
                self.plan.clear();
                self.sc
                    .plan_minute(s, &mut self.plan_rngs[i], self.minute, &mut self.plan);
                for &(ts, what) in &self.plan {
                    let mut text = String::with_capacity(1400);
                    text.push('[');
                    render(s, &mut self.render_rngs[i], ts, what, &mut text);
                    text.push(']');
                    items.push((ts, text));
                }
            }
            items.sort_unstable_by_key(|(t, _)| *t);
            self.buf.extend(items);
            self.minute += MINUTE_MS;
        }
    }
}

/// Draws a grid slot of the minute not in `slots` and records it.
fn take_slot(rng: &mut ChaCha8Rng, slots: &mut Vec<i64>) -> i64 {
    loop {
        let slot = rng.random_range(0..SLOTS_PER_MINUTE);
        if !slots.contains(&slot) {
            slots.push(slot);
            return slot;
        }
    }
}

/// The first slot at or after `want` (wrapping) that is not in `slots`.
fn free_slot(slots: &[i64], want: i64) -> i64 {
    (0..SLOTS_PER_MINUTE)
        .map(|k| (want + k).rem_euclid(SLOTS_PER_MINUTE))
        .find(|c| !slots.contains(c))
        .expect("a minute has more slots than requests")
}

/// A ChaCha8 stream for one script and purpose.
fn stream(seed: u64, index: usize, purpose: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64 * 16 + purpose);
    rng
}

fn pick_route(routes: &[Route], total: f64, rng: &mut ChaCha8Rng) -> usize {
    let mut x = rng.random::<f64>() * total;
    for (i, r) in routes.iter().enumerate() {
        if r.weight > 0.0 && x < r.weight {
            return i;
        }
        x -= r.weight;
    }
    routes
        .iter()
        .rposition(|r| r.weight > 0.0)
        .expect("a route with traffic")
}

fn pick_shape(all: &[Shape], candidates: &[usize], rng: &mut ChaCha8Rng) -> usize {
    let total: f64 = candidates.iter().map(|&i| all[i].weight).sum();
    let mut x = rng.random::<f64>() * total;
    for &i in candidates {
        if x < all[i].weight {
            return i;
        }
        x -= all[i].weight;
    }
    *candidates.last().expect("a shape on the route")
}

// ---------------------------------------------------------------------------------------------
// Rendering

const COLOS: &[(&str, &str, &str, &str)] = &[
    ("FRA", "DE", "EU", "Europe/Berlin"),
    ("LHR", "GB", "EU", "Europe/London"),
    ("CDG", "FR", "EU", "Europe/Paris"),
    ("AMS", "NL", "EU", "Europe/Amsterdam"),
    ("IAD", "US", "NA", "America/New_York"),
    ("ORD", "US", "NA", "America/Chicago"),
    ("SJC", "US", "NA", "America/Los_Angeles"),
    ("GRU", "BR", "SA", "America/Sao_Paulo"),
    ("NRT", "JP", "AS", "Asia/Tokyo"),
    ("SIN", "SG", "AS", "Asia/Singapore"),
    ("SYD", "AU", "OC", "Australia/Sydney"),
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "okhttp/4.12.0",
    "shop-ios/5.12.1 (iPhone15,2; iOS 18.1)",
    "python-requests/2.32.3",
];

const WORDS: &[&str] = &[
    "shoes",
    "red+dress",
    "laptop",
    "coffee",
    "tent",
    "jacket",
    "usb-c",
    "lamp",
    "yoga",
    "kettle",
];

/// Expands a template: `{int}` (4–6 digits), `{small}` (1–99), `{uuid}`, `{hex}` (16 hex chars,
/// digits and letters), `{tenant}` (one of four tenant ids), `{ms}` (1000–30000), `{word}` (a
/// search term), `{sku}` (`sku` + 5 digits). Anything else is copied.
fn expand(tpl: &str, rng: &mut ChaCha8Rng, out: &mut String) {
    let mut rest = tpl;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(j) = after.find('}') else {
            out.push_str(after);
            return;
        };
        let name = &after[1..j];
        match name {
            "int" => {
                let v: u32 = rng.random_range(1000..999_999);
                out.push_str(&v.to_string());
            }
            "small" => out.push_str(&rng.random_range(1..100u32).to_string()),
            "uuid" => out.push_str(&uuid(rng)),
            "hex" => out.push_str(&hex_id(rng, 16)),
            "tenant" => {
                let t = ["4411", "9823", "150", "77012"][rng.random_range(0..4usize)];
                out.push_str(t);
            }
            "ms" => out.push_str(&rng.random_range(1000..30_000u32).to_string()),
            "word" => out.push_str(WORDS[rng.random_range(0..WORDS.len())]),
            "sku" => {
                out.push_str("sku");
                out.push_str(&rng.random_range(10_000..99_999u32).to_string());
            }
            _ => out.push_str(&after[..=j]),
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
}

fn expanded(tpl: &str, rng: &mut ChaCha8Rng) -> String {
    let mut s = String::new();
    expand(tpl, rng, &mut s);
    s
}

fn uuid(rng: &mut ChaCha8Rng) -> String {
    let b: u128 = rng.random();
    // Version 4, variant 10.
    let b = (b & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{b:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `len` lowercase hex chars, starting with a digit and then a letter (so it is an id to both
/// the route and the message normalizer).
fn hex_id(rng: &mut ChaCha8Rng, len: usize) -> String {
    const HEX: &[u8] = b"0123456789abcdef";
    let mut s = String::with_capacity(len);
    s.push(char::from(b'1' + rng.random_range(0..9u8)));
    s.push(char::from(b'a' + rng.random_range(0..6u8)));
    for _ in 2..len {
        s.push(char::from(HEX[rng.random_range(0..16usize)]));
    }
    s
}

/// Appends `s` as a JSON string.
fn js(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a str serializes"));
}

/// Writes one TraceItem (a JSON object) for `what` at `ts`.
fn render(s: &Script, rng: &mut ChaCha8Rng, ts: i64, what: Planned, out: &mut String) {
    use std::fmt::Write as _;
    let release = s.release_at(ts);
    out.push_str("{\"scriptName\":");
    js(out, &s.name);
    out.push_str(",\"scriptVersion\":{\"id\":");
    js(out, &release.id);
    out.push_str(",\"tag\":");
    js(out, &release.tag);
    out.push_str(",\"message\":");
    js(out, release.message);
    out.push_str("},\"entrypoint\":");
    js(out, s.entrypoint);
    out.push_str(
        ",\"executionModel\":\"stateless\",\"truncated\":false,\"diagnosticsChannelEvents\":[]",
    );
    let _ = write!(out, ",\"eventTimestamp\":{ts}");

    if let Planned::Cron = what {
        let cpu = rng.random_range(2..40u32);
        let wall = cpu + rng.random_range(20..900u32);
        let _ = write!(
            out,
            ",\"cpuTime\":{cpu},\"wallTime\":{wall},\"outcome\":\"ok\",\"event\":{{\"cron\":"
        );
        js(out, s.cron.unwrap_or("0 * * * *"));
        let scheduled = ts.div_euclid(MINUTE_MS) * MINUTE_MS;
        let _ = write!(
            out,
            ",\"scheduledTime\":{scheduled}}},\"exceptions\":[],\"logs\":[{{\"level\":\"log\",\"message\":["
        );
        let line = format!(
            "cron: swept {} expired rows in {}ms",
            rng.random_range(0..400u32),
            wall
        );
        js(out, &line);
        let _ = write!(out, "],\"timestamp\":{}}}]}}", ts + i64::from(wall));
        return;
    }

    let (route_idx, error) = match what {
        Planned::Healthy { route } => (route, None),
        Planned::Error { bug, shape } => {
            let sh = s.bugs[bug].shapes[shape];
            (sh.route, Some(sh.kind))
        }
        Planned::Cron => unreachable!("handled above"),
    };
    let route = &s.routes[route_idx];

    // Request.
    let mut url = format!("https://{}", s.host);
    expand(route.path, rng, &mut url);
    if let Some(q) = route.query {
        url.push('?');
        expand(q, rng, &mut url);
    }
    let (colo, country, continent, tz) = COLOS[rng.random_range(0..COLOS.len())];
    let ip = format!(
        "{}.{}.{}.{}",
        rng.random_range(11..223u8),
        rng.random_range(0..255u8),
        rng.random_range(0..255u8),
        rng.random_range(1..255u8)
    );
    let ua = USER_AGENTS[rng.random_range(0..USER_AGENTS.len())];
    let write = matches!(route.method, "POST" | "PUT" | "PATCH");
    let cpu = rng.random_range(1..12u32) + if error.is_some() { 2 } else { 0 };
    let mut wall = cpu + rng.random_range(3..180u32);

    // Response, logs, exceptions.
    let mut status: Option<u16> = None;
    let mut outcome = "ok";
    let mut logs = String::new();
    let mut exceptions = String::new();
    let log = |logs: &mut String, level: &str, args: &str, at: i64| {
        if !logs.is_empty() {
            logs.push(',');
        }
        let _ = write!(
            logs,
            "{{\"level\":\"{level}\",\"message\":[{args}],\"timestamp\":{at}}}"
        );
    };
    match error {
        None => {
            let x: f64 = rng.random();
            if x < 0.001 {
                outcome = "canceled";
            } else if x < 0.0015 {
                outcome = "responseStreamDisconnected";
                status = Some(200);
            } else if x < 0.021 {
                status = Some(404);
            } else if x < 0.031 {
                status = Some(401);
            } else if x < 0.036 {
                status = Some(if write { 422 } else { 400 });
            } else if !write && x < 0.12 {
                status = Some(304);
            } else {
                status = Some(if write && x < 0.8 { 201 } else { 200 });
            }
            let y: f64 = rng.random();
            if y < 0.25 {
                let mut a = String::new();
                js(
                    &mut a,
                    &format!("{} {} {}ms", route.method, route.path_label(), wall),
                );
                log(&mut logs, "log", &a, ts + i64::from(wall) - 1);
            } else if y < 0.27 {
                wall += rng.random_range(800..2500u32);
                let mut a = String::new();
                js(&mut a, &format!("slow upstream response: {wall}ms"));
                log(&mut logs, "warn", &a, ts + i64::from(wall) - 2);
            }
        }
        Some(Kind::Throw {
            name,
            message,
            stack,
        }) => {
            outcome = "exception";
            let _ = write!(exceptions, "{{\"name\":");
            js(&mut exceptions, name);
            exceptions.push_str(",\"message\":");
            js(&mut exceptions, &expanded(message, rng));
            exceptions.push_str(",\"stack\":");
            js(&mut exceptions, stack);
            let _ = write!(exceptions, ",\"timestamp\":{}}}", ts + i64::from(wall));
        }
        Some(Kind::Logged { args, status: st }) => {
            status = Some(st);
            let mut a = String::new();
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    a.push(',');
                }
                match arg {
                    Arg::Str(t) => js(&mut a, &expanded(t, rng)),
                    Arg::Obj(fields) => {
                        a.push('{');
                        for (k, (key, t)) in fields.iter().enumerate() {
                            if k > 0 {
                                a.push(',');
                            }
                            js(&mut a, key);
                            a.push(':');
                            js(&mut a, &expanded(t, rng));
                        }
                        a.push('}');
                    }
                }
            }
            log(&mut logs, "error", &a, ts + i64::from(wall) - 1);
        }
        Some(Kind::Status { status: st, warn }) => {
            status = Some(st);
            if let Some(w) = warn {
                let mut a = String::new();
                js(&mut a, &expanded(w, rng));
                log(&mut logs, "warn", &a, ts + i64::from(wall) - 1);
            }
        }
    }

    let _ = write!(
        out,
        ",\"cpuTime\":{cpu},\"wallTime\":{wall},\"outcome\":\"{outcome}\",\"event\":{{\"request\":{{\"url\":"
    );
    js(out, &url);
    let _ = write!(
        out,
        ",\"method\":\"{}\",\"headers\":{{\"accept\":\"application/json\",\"accept-encoding\":\"gzip, br\",\"cf-connecting-ip\":\"{ip}\",\"cf-ipcountry\":\"{country}\",\"cf-ray\":\"{}-{colo}\",\"host\":\"{}\",\"user-agent\":",
        route.method,
        hex_id(rng, 16),
        s.host
    );
    js(out, ua);
    if write {
        let _ = write!(
            out,
            ",\"content-type\":\"application/json\",\"content-length\":\"{}\"",
            rng.random_range(40..4000u32)
        );
    }
    let _ = write!(
        out,
        ",\"x-forwarded-proto\":\"https\"}},\"cf\":{{\"colo\":\"{colo}\",\"country\":\"{country}\",\"continent\":\"{continent}\",\"timezone\":\"{tz}\",\"asn\":{},\"httpProtocol\":\"HTTP/2\",\"tlsVersion\":\"TLSv1.3\",\"clientTcpRtt\":{}}}}}",
        rng.random_range(1000..65_000u32),
        rng.random_range(2..180u32)
    );
    if let Some(st) = status {
        let _ = write!(out, ",\"response\":{{\"status\":{st}}}");
    }
    let _ = write!(out, "}},\"exceptions\":[{exceptions}],\"logs\":[{logs}]}}");
}

impl Route {
    /// The path template with placeholders shown as `:id`, for access-log lines.
    fn path_label(&self) -> String {
        let mut out = String::new();
        let mut rest = self.path;
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            match rest[i..].find('}') {
                Some(j) => {
                    out.push_str(":id");
                    rest = &rest[i + j + 1..];
                }
                None => {
                    rest = &rest[i..];
                    break;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The scenarios

fn route(method: &'static str, path: &'static str, weight: f64) -> Route {
    Route {
        method,
        path,
        query: None,
        weight,
    }
}

fn route_q(method: &'static str, path: &'static str, query: &'static str, weight: f64) -> Route {
    Route {
        method,
        path,
        query: Some(query),
        weight,
    }
}

fn throw(route: usize, name: &'static str, message: &'static str, stack: &'static str) -> Shape {
    Shape {
        route,
        weight: 1.0,
        kind: Kind::Throw {
            name,
            message,
            stack,
        },
    }
}

fn logged(route: usize, args: &'static [Arg], status: u16) -> Shape {
    Shape {
        route,
        weight: 1.0,
        kind: Kind::Logged { args, status },
    }
}

fn bare(route: usize, status: u16, warn: Option<&'static str>) -> Shape {
    Shape {
        route,
        weight: 1.0,
        kind: Kind::Status { status, warn },
    }
}

/// Shared fields of a label; samples are filled in later.
struct L {
    scenario: &'static str,
    what: &'static str,
    actionable: bool,
    onset: i64,
    deadline: Option<i64>,
    first: i64,
    why: &'static str,
}

fn bug(script: &str, l: L, windows: Vec<Window>, shapes: Vec<Shape>) -> Bug {
    Bug {
        label: LabelledBug {
            scenario: l.scenario,
            bug: format!("{}/{}", l.scenario, l.what),
            script: script.to_string(),
            actionable: l.actionable,
            onset_ms: l.onset,
            deadline_ms: l.deadline,
            why: l.why,
            samples: Vec::new(),
            first_ms: l.first,
        },
        windows,
        shapes,
        injected: Vec::new(),
    }
}

fn win(from: i64, to: i64, rate: Rate) -> Window {
    Window { from, to, rate }
}

/// `h` hours and `m` minutes, in ms.
fn hm(h: i64, m: i64) -> i64 {
    h * HOUR_MS + m * MINUTE_MS
}

const COMMIT_MESSAGES: &[&str] = &[
    "deps: bump hono",
    "feat: pagination cursor",
    "fix: trim header values",
    "chore: logging tweaks",
    "perf: cache lookups",
    "feat: new fields in response",
    "refactor: split handlers",
];

/// Warm-up release history: one release from before the start, then a deploy on about every
/// other weekday (09:00–18:00 UTC), none in the last day of the warm-up; `extra` are the
/// scenario's own deploys (ms since the epoch) with their messages.
fn releases(
    rng: &mut ChaCha8Rng,
    cfg: &ScenarioConfig,
    extra: &[(i64, &'static str)],
) -> Vec<Release> {
    let mut tag: u32 = rng.random_range(20..80);
    let mut out = vec![Release {
        from: cfg.start_ms - rng.random_range(1..5i64) * DAY_MS,
        tag: format!("v{tag}"),
        id: uuid(rng),
        message: COMMIT_MESSAGES[0],
    }];
    let last_ok = cfg.eval_start_ms() - DAY_MS;
    for d in 0..i64::from(cfg.warmup_days) {
        let day = cfg.start_ms + d * DAY_MS;
        let weekday = (day.div_euclid(DAY_MS) + 3).rem_euclid(7);
        let deploy = rng.random_bool(0.55);
        let at = day + rng.random_range(hm(9, 0)..hm(18, 0));
        if weekday < 5 && deploy && at < last_ok {
            tag += 1;
            out.push(Release {
                from: at,
                tag: format!("v{tag}"),
                id: uuid(rng),
                message: COMMIT_MESSAGES[rng.random_range(0..COMMIT_MESSAGES.len())],
            });
        }
    }
    for &(at, message) in extra {
        tag += 1;
        out.push(Release {
            from: at,
            tag: format!("v{tag}"),
            id: uuid(rng),
            message,
        });
    }
    out.sort_by_key(|r| r.from);
    out
}

/// Builds scenario `name` (index `index` in [`NAMES`]).
fn build(name: &'static str, index: usize, cfg: &ScenarioConfig) -> Script {
    let mut rng = stream(cfg.seed, index, STREAM_SETUP);
    let s0 = cfg.start_ms;
    let e = cfg.eval_start_ms();
    let end = cfg.end_ms();
    let always = |rate| vec![win(s0, end, rate)];
    let script = format!(
        "{}-{}",
        match name {
            "deploy_bug" => "shop-api",
            "slow_burn" => "billing-api",
            "third_party_outage" => "checkout-edge",
            "traffic_surge" => "media-api",
            "release_rate_step" => "search-api",
            "cascade" => "orders-api",
            "expected_flapping" => "notify-api",
            "fix_and_new" => "profile-api",
            "one_off" => "assets-worker",
            "steady_high_impact" => "export-api",
            "bug_during_outage" => "travel-api",
            _ => "catalog-api",
        },
        name.replace('_', "-")
    );
    let sn = script.as_str();
    let host;
    let mut entrypoint = "default";
    let mut cron = None;
    let mut surges = Vec::new();
    let mut deploys: Vec<(i64, &'static str)> = Vec::new();
    let routes: Vec<Route>;
    let mut bugs: Vec<Bug> = Vec::new();

    match name {
        "deploy_bug" => {
            host = "shop.example.com";
            entrypoint = "ShopApi";
            routes = vec![
                route("GET", "/products/{int}", 30.0),
                route("GET", "/cart", 15.0),
                route("POST", "/cart/items", 15.0),
                route("POST", "/checkout", 8.0),
                route("GET", "/orders/{uuid}", 20.0),
                route("GET", "/users/{int}/profile", 12.0),
            ];
            let onset = e + hm(14, 5);
            deploys.push((onset, "feat: show unit prices on product pages"));
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "product_price_typeerror",
                    actionable: true,
                    onset,
                    deadline: Some(onset + 15 * MINUTE_MS),
                    first: onset,
                    why: "a deploy introduces a TypeError on ~10% of GET /products/:id: a regression on that release",
                },
                vec![win(onset, end, Rate::Share(0.10))],
                vec![throw(
                    0,
                    "TypeError",
                    "Cannot read properties of undefined (reading 'price')",
                    "    at formatUnitPrice (index.js:1842:27)\n    at renderProduct (index.js:2210:13)\n    at async Object.fetch (index.js:3120:22)",
                )],
            ));
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "background_coupon",
                    actionable: false,
                    onset: e,
                    deadline: None,
                    first: s0,
                    why: "background: a logged coupon failure on ~0.2% of GET /cart since the start, steady across the deploy",
                },
                always(Rate::Share(0.002)),
                vec![logged(
                    1,
                    &[Arg::Str(
                        "[cart] failed to apply coupon: coupon {int} expired for cart {hex}",
                    )],
                    500,
                )],
            ));
        }
        "slow_burn" => {
            host = "billing.example.com";
            cron = Some("0 * * * *");
            routes = vec![
                route("GET", "/invoices/{uuid}", 25.0),
                route_q("GET", "/invoices", "customer={int}&page={small}", 20.0),
                route("POST", "/invoices", 10.0),
                route("GET", "/customers/{int}", 25.0),
                route("POST", "/webhooks/stripe", 15.0),
                route("GET", "/customers/{int}/receipts", 5.0),
            ];
            let onset = e + hm(10, 0);
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "receipt_null_email",
                    actionable: true,
                    onset,
                    deadline: Some(onset + DAY_MS),
                    first: onset,
                    why: "a new in-app bug at ~3 per hour without a deploy: worth a ticket within a day",
                },
                vec![win(onset, end, Rate::PerHour(3.0))],
                vec![throw(
                    3,
                    "TypeError",
                    "Cannot read properties of null (reading 'email')",
                    "    at buildReceiptContext (src/billing/receipts.ts:88:31)\n    at async getCustomer (src/routes/customers.ts:52:18)\n    at async Object.fetch (src/index.ts:44:20)",
                )],
            ));
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "background_webhook_503",
                    actionable: false,
                    onset: e,
                    deadline: None,
                    first: s0,
                    why: "background: ~0.3% of webhook deliveries answered 503 (deferred) since the start",
                },
                always(Rate::Share(0.003)),
                vec![bare(
                    4,
                    503,
                    Some("webhook processing deferred: {int} events pending"),
                )],
            ));
        }
        "third_party_outage" => {
            host = "checkout.example.com";
            routes = vec![
                route("POST", "/checkout", 15.0),
                route("POST", "/payments/{hex}/capture", 10.0),
                route_q("GET", "/shipping/quote", "zip={int}&country=DE", 15.0),
                route("GET", "/geo/lookup", 20.0),
                route("GET", "/cart/{uuid}", 30.0),
                route("GET", "/health", 10.0),
            ];
            let onset = e + hm(15, 0);
            let mut shapes = vec![
                throw(
                    0,
                    "TypeError",
                    "fetch failed",
                    "    at async chargeCard (src/payments/client.ts:61:17)\n    at async handleCheckout (src/routes/checkout.ts:29:5)\n    at async Object.fetch (src/index.ts:38:16)",
                ),
                logged(
                    0,
                    &[Arg::Str("payment upstream responded 503 for order {uuid}")],
                    502,
                ),
                logged(1, &[Arg::Str("Error: Network connection lost.")], 502),
                bare(1, 504, None),
                bare(2, 502, Some("shipping rates upstream timeout after {ms}ms")),
                throw(
                    2,
                    "TypeError",
                    "fetch failed",
                    "    at async fetchRates (src/shipping/rates.ts:22:19)\n    at async quote (src/routes/shipping.ts:17:21)\n    at async Object.fetch (src/index.ts:38:16)",
                ),
                logged(3, &[Arg::Str("geo upstream responded 503")], 503),
                logged(3, &[Arg::Str("Error: Network connection lost.")], 500),
            ];
            shapes[0].weight = 2.0;
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "payment_geo_outage",
                    actionable: false,
                    onset,
                    deadline: None,
                    first: onset,
                    why: "the payment and geo upstreams fail for 30 minutes across 4 routes: external, not a code bug",
                },
                vec![win(onset, onset + 30 * MINUTE_MS, Rate::Share(0.7))],
                shapes,
            ));
        }
        "traffic_surge" => {
            host = "media.example.com";
            routes = vec![
                route("GET", "/videos/{int}", 30.0),
                route("GET", "/videos/{int}/thumbnail.jpg", 25.0),
                route_q("GET", "/feed", "cursor={hex}", 25.0),
                route("POST", "/uploads", 5.0),
                route_q("GET", "/search", "q={word}", 10.0),
                route("GET", "/channels/{int}", 5.0),
            ];
            let onset = e + hm(12, 0);
            surges.push((onset, onset + 2 * HOUR_MS, 5.0));
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "feed_invalid_date",
                    actionable: false,
                    onset,
                    deadline: None,
                    first: s0,
                    why: "a pre-existing error on ~0.2% of GET /feed that grows only because traffic grows x5 for 2 hours: not a spike, low impact",
                },
                always(Rate::Share(0.002)),
                vec![throw(
                    2,
                    "RangeError",
                    "Invalid time value",
                    "    at Date.toISOString (<anonymous>)\n    at formatEntry (index.js:912:31)\n    at Array.map (<anonymous>)\n    at renderFeed (index.js:1004:22)\n    at async Object.fetch (index.js:1530:18)",
                )],
            ));
        }
        "release_rate_step" => {
            host = "search.example.com";
            routes = vec![
                route_q("GET", "/search", "q={word}&page={small}", 55.0),
                route_q("GET", "/suggest", "q={word}", 20.0),
                route("GET", "/items/{int}", 15.0),
                route("POST", "/events/click", 10.0),
            ];
            let onset = e + hm(14, 30);
            deploys.push((onset, "feat: highlight matched terms"));
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "highlight_length_step",
                    actionable: true,
                    onset,
                    deadline: Some(onset + 15 * MINUTE_MS),
                    first: s0,
                    why: "a background error (~0.1% of GET /search) steps to ~3% on a new release: a regression on that release",
                },
                vec![
                    win(s0, onset, Rate::Share(0.001)),
                    win(onset, end, Rate::Share(0.03)),
                ],
                vec![throw(
                    0,
                    "TypeError",
                    "Cannot read properties of undefined (reading 'length')",
                    "    at highlightTerms (src/search/highlight.ts:19:34)\n    at Array.map (<anonymous>)\n    at async searchItems (src/search/query.ts:71:19)\n    at async Object.fetch (src/index.ts:27:14)",
                )],
            ));
        }
        "cascade" => {
            host = "orders.example.com";
            routes = vec![
                route("GET", "/orders/{uuid}", 25.0),
                route_q("GET", "/orders", "status=open&limit=50", 20.0),
                route("POST", "/orders", 15.0),
                route("GET", "/users/{int}/orders", 15.0),
                route("GET", "/inventory/{sku}", 15.0),
                route("PATCH", "/orders/{uuid}", 10.0),
            ];
            let onset = e + hm(16, 0);
            const D1_STACK_GET: &str = "    at D1Database._sendOrThrow (cloudflare-internal:d1-api:141:19)\n    at async D1PreparedStatement.first (cloudflare-internal:d1-api:322:17)\n    at async getOrder (src/db/orders.ts:22:18)\n    at async Object.fetch (src/index.ts:61:20)";
            const D1_STACK_LIST: &str = "    at D1Database._sendOrThrow (cloudflare-internal:d1-api:141:19)\n    at async D1PreparedStatement.all (cloudflare-internal:d1-api:301:21)\n    at async listOrders (src/db/orders.ts:40:20)\n    at async Object.fetch (src/index.ts:61:20)";
            const D1_STACK_UPDATE: &str = "    at D1Database._sendOrThrow (cloudflare-internal:d1-api:141:19)\n    at async D1PreparedStatement.run (cloudflare-internal:d1-api:344:17)\n    at async updateOrder (src/db/orders.ts:77:5)\n    at async Object.fetch (src/index.ts:61:20)";
            let shapes = vec![
                throw(
                    0,
                    "Error",
                    "D1_ERROR: D1 DB is overloaded. Requests queued for too long.",
                    D1_STACK_GET,
                ),
                throw(
                    0,
                    "TypeError",
                    "Cannot read properties of undefined (reading 'results')",
                    "    at loadOrder (src/routes/orders.ts:48:33)\n    at async Object.fetch (src/index.ts:61:20)",
                ),
                throw(
                    1,
                    "Error",
                    "D1_ERROR: D1 DB is overloaded. Requests queued for too long.",
                    D1_STACK_LIST,
                ),
                throw(
                    1,
                    "TypeError",
                    "Cannot read properties of undefined (reading 'results')",
                    "    at listOpenOrders (src/routes/orders.ts:97:29)\n    at async Object.fetch (src/index.ts:61:20)",
                ),
                logged(
                    2,
                    &[Arg::Str(
                        "failed to insert order: Error: D1_ERROR: internal error; reference = {hex}",
                    )],
                    500,
                ),
                logged(3, &[Arg::Str("KV GET failed: 503")], 500),
                throw(
                    3,
                    "TypeError",
                    "Cannot read properties of undefined (reading 'results')",
                    "    at userOrders (src/routes/users.ts:31:40)\n    at async Object.fetch (src/index.ts:61:20)",
                ),
                logged(4, &[Arg::Str("KV GET failed: 503")], 503),
                throw(
                    4,
                    "Error",
                    "KV GET failed: 503 Service Unavailable",
                    "    at getStock (src/kv/inventory.ts:14:11)\n    at async Object.fetch (src/index.ts:61:20)",
                ),
                throw(
                    5,
                    "Error",
                    "D1_ERROR: Network connection lost.",
                    D1_STACK_UPDATE,
                ),
            ];
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "d1_kv_cascade",
                    actionable: false,
                    onset,
                    deadline: None,
                    first: onset,
                    why: "one D1/KV platform failure for 20 minutes makes 10 fingerprints on 6 routes at once: one external finding, not tickets",
                },
                vec![win(onset, onset + 20 * MINUTE_MS, Rate::Share(0.8))],
                shapes,
            ));
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "background_transition",
                    actionable: false,
                    onset: e,
                    deadline: None,
                    first: s0,
                    why: "background: an invalid state transition on ~0.05% of PATCH /orders/:id since the start",
                },
                always(Rate::Share(0.0005)),
                vec![throw(
                    5,
                    "Error",
                    "invalid status transition: shipped -> pending for order {uuid}",
                    "    at assertTransition (src/domain/order-state.ts:12:11)\n    at async patchOrder (src/routes/orders.ts:131:7)\n    at async Object.fetch (src/index.ts:61:20)",
                )],
            ));
        }
        "expected_flapping" => {
            host = "notify.example.com";
            routes = vec![
                route("POST", "/notifications", 30.0),
                route("POST", "/tenants/{int}/send", 30.0),
                route("GET", "/tenants/{int}/usage", 20.0),
                route("GET", "/templates/{int}", 20.0),
            ];
            let onset = e + hm(11, 0);
            let flaps = [(0, 12), (90, 25), (190, 8), (280, 25), (380, 10)];
            let windows = flaps
                .iter()
                .map(|&(at, len)| {
                    let from = onset + at * MINUTE_MS;
                    win(from, from + len * MINUTE_MS, Rate::Share(0.4))
                })
                .collect();
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "tenant_quota",
                    actionable: false,
                    onset,
                    deadline: None,
                    first: onset,
                    why: "an expected RateLimitedError that flaps on and off; SELFHEAL_IGNORE_MESSAGES covers it",
                },
                windows,
                vec![
                    throw(
                        1,
                        "RateLimitedError",
                        "quota exceeded for tenant {tenant}",
                        "    at enforceQuota (index.js:412:15)\n    at async sendBatch (index.js:640:5)\n    at async Object.fetch (index.js:905:24)",
                    ),
                    logged(
                        0,
                        &[Arg::Str(
                            "RateLimitedError: quota exceeded for tenant {tenant} (retry after {small}s)",
                        )],
                        500,
                    ),
                ],
            ));
        }
        "fix_and_new" => {
            host = "profile.example.com";
            routes = vec![
                route("GET", "/users/{int}", 35.0),
                route("PUT", "/users/{int}", 10.0),
                route("GET", "/users/{int}/avatar", 20.0),
                route_q("GET", "/users/{int}/followers", "page={small}", 25.0),
                route("POST", "/sessions", 10.0),
            ];
            let onset = e + hm(13, 20);
            deploys.push((onset, "fix: birthday formatting; feat: follower cards"));
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "fixed_birthday",
                    actionable: false,
                    onset,
                    deadline: None,
                    first: s0,
                    why: "a pre-existing low-rate bug (~0.3% of GET /users/:id) that the deploy fixes: it stops",
                },
                vec![win(s0, onset, Rate::Share(0.003))],
                vec![throw(
                    0,
                    "RangeError",
                    "Invalid time value",
                    "    at Date.toISOString (<anonymous>)\n    at formatBirthday (src/profile/format.ts:27:18)\n    at async getUser (src/routes/users.ts:22:16)\n    at async Object.fetch (src/index.ts:33:12)",
                )],
            ));
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "new_followers_map",
                    actionable: true,
                    onset,
                    deadline: Some(onset + 15 * MINUTE_MS),
                    first: onset,
                    why: "the same deploy introduces a TypeError on ~10% of GET /users/:id/followers: a regression on that release",
                },
                vec![win(onset, end, Rate::Share(0.10))],
                vec![throw(
                    3,
                    "TypeError",
                    "followers.map is not a function",
                    "    at renderFollowers (src/routes/followers.ts:41:27)\n    at async Object.fetch (src/index.ts:33:12)",
                )],
            ));
        }
        "one_off" => {
            host = "static.example.com";
            routes = vec![
                route("GET", "/assets/{hex}.js", 40.0),
                route("GET", "/assets/{hex}.css", 20.0),
                route("GET", "/img/{int}.webp", 30.0),
                route("GET", "/", 10.0),
                route("GET", "/assets/fonts/%E0%A4%A.woff2", 0.0),
            ];
            let at = e + hm(13, 37) + 12_345;
            let mut b = bug(
                sn,
                L {
                    scenario: name,
                    what: "malformed_uri",
                    actionable: false,
                    onset: at,
                    deadline: None,
                    first: at,
                    why: "a single URIError from one malformed request path: a one-off",
                },
                Vec::new(),
                vec![throw(
                    4,
                    "URIError",
                    "URI malformed",
                    "    at decodeURIComponent (<anonymous>)\n    at resolveAssetPath (index.js:211:19)\n    at async Object.fetch (index.js:388:22)",
                )],
            );
            b.injected.push(at);
            bugs.push(b);
        }
        "steady_high_impact" => {
            host = "exports.example.com";
            cron = Some("*/30 * * * *");
            routes = vec![
                route("GET", "/exports/{uuid}/download", 25.0),
                route("POST", "/exports", 15.0),
                route("GET", "/exports/{uuid}", 35.0),
                route_q("GET", "/exports", "page={small}", 25.0),
            ];
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "csv_bigint",
                    actionable: true,
                    onset: e,
                    deadline: Some(e + DAY_MS),
                    first: s0,
                    why: "a steady failure of ~20% of GET /exports/:id/download since the start: high impact, no spike; a ticket within 24 h of the start of the evaluation day is fine",
                },
                always(Rate::Share(0.20)),
                vec![throw(
                    0,
                    "Error",
                    "CSV serializer: unsupported value of type bigint in column {small}",
                    "    at serializeCell (src/export/csv.ts:64:11)\n    at serializeRow (src/export/csv.ts:51:22)\n    at async streamExport (src/export/stream.ts:33:9)\n    at async Object.fetch (src/index.ts:52:18)",
                )],
            ));
        }
        "bug_during_outage" => {
            host = "travel.example.com";
            routes = vec![
                route("GET", "/trips/{uuid}", 30.0),
                route_q("GET", "/places/search", "q={word}", 20.0),
                route("GET", "/places/{int}/map", 15.0),
                route("POST", "/trips", 10.0),
                route_q("GET", "/weather", "lat=52.{int}&lon=13.{int}", 25.0),
            ];
            let onset = e + hm(15, 0);
            deploys.push((onset, "feat: trip summary card"));
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "maps_outage",
                    actionable: false,
                    onset,
                    deadline: None,
                    first: onset,
                    why: "the maps/places upstream fails for 30 minutes on 3 routes: external",
                },
                vec![win(onset, onset + 30 * MINUTE_MS, Rate::Share(0.6))],
                vec![
                    throw(
                        1,
                        "TypeError",
                        "fetch failed",
                        "    at async searchPlaces (src/upstream/places.ts:40:15)\n    at async Object.fetch (src/index.ts:29:18)",
                    ),
                    logged(2, &[Arg::Str("maps upstream responded 503")], 502),
                    bare(2, 504, None),
                    logged(4, &[Arg::Str("Error: Network connection lost.")], 500),
                ],
            ));
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "trip_segments",
                    actionable: true,
                    onset,
                    deadline: Some(onset + 15 * MINUTE_MS),
                    first: onset,
                    why: "a deploy at the start of an outage introduces an in-app TypeError on ~10% of GET /trips/:id that outlasts the outage",
                },
                vec![win(onset, end, Rate::Share(0.10))],
                vec![throw(
                    0,
                    "TypeError",
                    "Cannot read properties of undefined (reading 'segments')",
                    "    at summarizeTrip (src/trips/summary.ts:58:40)\n    at async getTrip (src/routes/trips.ts:19:22)\n    at async Object.fetch (src/index.ts:29:18)",
                )],
            ));
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "background_validation",
                    actionable: false,
                    onset: e,
                    deadline: None,
                    first: s0,
                    why: "background: a logged validation failure (an object argument) on ~0.2% of POST /trips since the start",
                },
                always(Rate::Share(0.002)),
                vec![logged(
                    3,
                    &[
                        Arg::Str("trip validation failed"),
                        Arg::Obj(&[("tripId", "{uuid}"), ("reason", "end before start")]),
                    ],
                    500,
                )],
            ));
        }
        _ => {
            // escalating_no_release
            host = "catalog.example.com";
            routes = vec![
                route("GET", "/catalog/{sku}", 50.0),
                route_q("GET", "/catalog", "category={word}", 20.0),
                route("GET", "/brands/{int}", 12.0),
                route("POST", "/catalog/{sku}/reviews", 8.0),
                route("GET", "/health", 10.0),
            ];
            let onset = e + hm(14, 15);
            bugs.push(bug(
                sn,
                L {
                    scenario: name,
                    what: "null_variants",
                    actionable: true,
                    onset,
                    deadline: Some(onset + 30 * MINUTE_MS),
                    first: s0,
                    why: "a background error (~0.05% of GET /catalog/:sku) jumps to ~2% without a deploy (data-dependent): escalating",
                },
                vec![
                    win(s0, onset, Rate::Share(0.0005)),
                    win(onset, end, Rate::Share(0.02)),
                ],
                vec![throw(
                    0,
                    "TypeError",
                    "Cannot read properties of null (reading 'variants')",
                    "    at pickVariant (index.js:733:41)\n    at renderItem (index.js:802:19)\n    at async Object.fetch (index.js:1290:26)",
                )],
            ));
        }
    }

    let releases = releases(&mut rng, cfg, &deploys);
    let mut s = Script {
        index,
        name: script,
        host,
        entrypoint,
        routes,
        releases,
        bugs,
        surges,
        cron,
        by_route: Vec::new(),
        total_weight: 0.0,
    };
    s.index_bugs();
    s
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crate::config::PipelineConfig;
    use crate::event::{NoiseReason, Verdict, process_item};
    use crate::trace::{TraceItem, parse_batch};

    fn small(seed: u64) -> ScenarioConfig {
        ScenarioConfig {
            seed,
            warmup_days: 1,
            eval_days: 1,
            requests_per_hour: 200.0,
            start_ms: DEFAULT_START_MS + 6 * DAY_MS, // a Sunday: warm-up on the weekend
            only: None,
        }
    }

    fn item(v: &Value) -> TraceItem {
        serde_json::from_value(v.clone()).expect("a TraceItem")
    }

    fn ignore_cfg(sc: &Scenarios) -> PipelineConfig {
        let json = serde_json::to_string(&sc.ignore_messages()).expect("json");
        PipelineConfig::from_vars(None, None, Some(&json)).expect("valid patterns")
    }

    #[test]
    fn same_seed_same_output_different_seed_differs() {
        let a = Scenarios::new(&small(7));
        let b = Scenarios::new(&small(7));
        let c = Scenarios::new(&small(8));
        let first = |s: &Scenarios| s.invocations().take(3000).collect::<Vec<_>>();
        assert_eq!(first(&a), first(&b));
        assert_ne!(first(&a), first(&c));
        let samples = |s: &Scenarios| {
            s.bugs()
                .iter()
                .map(|b| serde_json::to_string(&b.samples).expect("json"))
                .collect::<Vec<_>>()
        };
        assert_eq!(samples(&a), samples(&b));
        assert_ne!(samples(&a), samples(&c));
    }

    #[test]
    fn lazy_and_in_time_order() {
        // The default corpus (a million items): the first 2,000 come from its first hours only.
        let sc = Scenarios::new(&ScenarioConfig::default());
        let mut it = sc.stream();
        let firsts: Vec<_> = it.by_ref().take(2000).collect();
        assert_eq!(firsts.len(), 2000);
        assert!(it.minute - DEFAULT_START_MS <= 6 * HOUR_MS, "{}", it.minute);
        assert!(it.buf.len() < 500, "{}", it.buf.len());
        assert!(firsts.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(firsts[0].0 >= DEFAULT_START_MS);
    }

    #[test]
    fn every_invocation_parses_in_order_with_its_timestamp() {
        let sc = Scenarios::new(&small(3));
        let names: BTreeSet<String> = sc.scripts.iter().map(|s| s.name.clone()).collect();
        let mut last = i64::MIN;
        let mut n = 0u64;
        for (ts, json) in sc.invocations() {
            assert!(ts > last, "{ts} after {last}");
            last = ts;
            let batch = parse_batch(&json).expect("an array");
            assert!(batch.malformed.is_empty(), "{json}");
            assert_eq!(batch.items.len(), 1);
            let t = &batch.items[0].1;
            assert_eq!(t.event_timestamp, Some(ts as f64));
            assert!(names.contains(t.script_name.as_deref().unwrap_or("")));
            assert!(t.release().is_some_and(|r| r.starts_with('v')));
            assert_eq!(t.entrypoint.as_deref().map(str::is_empty), Some(false));
            n += 1;
        }
        assert!(last < sc.cfg.end_ms());
        assert_eq!(n, sc.item_count());
    }

    #[test]
    fn weekly_and_daily_rhythm_as_configured() {
        let cfg = ScenarioConfig {
            seed: 11,
            warmup_days: 13,
            eval_days: 1,
            requests_per_hour: 400.0,
            only: Some(vec!["one_off".to_string()]),
            ..ScenarioConfig::default()
        };
        let sc = Scenarios::new(&cfg);
        let mut per_day = [0f64; 14];
        let (mut peak, mut trough) = (0f64, 0f64);
        for (ts, _) in sc.invocations() {
            per_day[((ts - cfg.start_ms) / DAY_MS) as usize] += 1.0;
            let h = ts.rem_euclid(DAY_MS) / HOUR_MS;
            if (13..17).contains(&h) {
                peak += 1.0;
            } else if (1..5).contains(&h) {
                trough += 1.0;
            }
        }
        let weekday: f64 = [0, 1, 2, 3, 4, 7, 8, 9, 10, 11]
            .iter()
            .map(|&d| per_day[d])
            .sum::<f64>()
            / 10.0;
        let weekend: f64 = [5, 6, 12, 13].iter().map(|&d| per_day[d]).sum::<f64>() / 4.0;
        let ratio = weekend / weekday;
        assert!(
            (ratio - WEEKEND_FACTOR).abs() < 0.03,
            "weekend/weekday {ratio}"
        );
        // Mean over two weeks: requests_per_hour (within 2%).
        let mean = per_day.iter().sum::<f64>() / (14.0 * 24.0);
        assert!((mean / 400.0 - 1.0).abs() < 0.02, "mean per hour {mean}");
        // Afternoon 13–17 h against night 01–05 h: the cosine's integral ratio, ~3.4.
        let integral = |from: i64, to: i64| {
            (from * 60..to * 60)
                .map(|m| traffic_factor(DEFAULT_START_MS + m * MINUTE_MS + MINUTE_MS / 2))
                .sum::<f64>()
        };
        let expected = integral(13, 17) / integral(1, 5);
        assert!(expected > 3.0, "{expected}");
        let got = peak / trough;
        assert!(
            (got / expected - 1.0).abs() < 0.05,
            "day/night {got} vs {expected}"
        );
    }

    #[test]
    fn samples_are_events_and_only_the_expected_error_is_ignored() {
        let sc = Scenarios::new(&ScenarioConfig::default());
        let plain = PipelineConfig::default();
        let ignoring = ignore_cfg(&sc);
        assert_eq!(sc.ignore_messages().len(), 1);
        let mut shapes = 0;
        for b in sc.bugs() {
            assert!(!b.samples.is_empty(), "{}", b.bug);
            for s in &b.samples {
                shapes += 1;
                let t = item(s);
                assert_eq!(t.script_name.as_deref(), Some(b.script.as_str()));
                assert!(
                    matches!(process_item(&t, &plain, 0), Verdict::Event(_)),
                    "{}: {s}",
                    b.bug
                );
                let v = process_item(&t, &ignoring, 0);
                if b.scenario == "expected_flapping" {
                    assert!(
                        matches!(v, Verdict::Noise(NoiseReason::Ignored)),
                        "{}",
                        b.bug
                    );
                } else {
                    assert!(matches!(v, Verdict::Event(_)), "{}: ignored", b.bug);
                }
            }
        }
        assert!(shapes >= 30, "{shapes}");
        // Without its samples the expected error would not be covered: the config matters.
        assert!(
            Scenarios::new(&ScenarioConfig {
                only: Some(vec!["deploy_bug".into()]),
                ..ScenarioConfig::default()
            })
            .ignore_messages()
            .is_empty()
        );
    }

    fn fingerprint(t: &TraceItem, cfg: &PipelineConfig) -> Option<String> {
        match process_item(t, cfg, 0) {
            Verdict::Event(e) => Some(e.fingerprint),
            Verdict::Noise(_) => None,
        }
    }

    /// Every event of the stream has the fingerprint of one of its bug's samples, and everything
    /// else is noise: healthy traffic never makes an incident, and the ids and numbers in
    /// messages and URLs never split one.
    #[test]
    fn stream_events_are_the_labelled_fingerprints() {
        let sc = Scenarios::new(&small(5));
        let cfg = PipelineConfig::default();
        let mut known: HashMap<String, &str> = HashMap::new();
        for b in sc.bugs() {
            for s in &b.samples {
                let fp = fingerprint(&item(s), &cfg).expect("an event");
                known.insert(fp, b.bug.as_str());
            }
        }
        let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
        let (mut noise, mut events) = (0u64, 0u64);
        for (_, json) in sc.invocations() {
            let batch = parse_batch(&json).expect("array");
            for (_, t) in &batch.items {
                match fingerprint(t, &cfg) {
                    None => noise += 1,
                    Some(fp) => {
                        events += 1;
                        let bug = known
                            .get(&fp)
                            .unwrap_or_else(|| panic!("unlabelled fingerprint from {json}"));
                        *seen.entry(bug).or_default() += 1;
                    }
                }
            }
        }
        assert!(noise > 50 * events, "noise {noise} events {events}");
        // The labelled bugs with a real rate in these two days all show up.
        for b in [
            "deploy_bug/product_price_typeerror",
            "third_party_outage/payment_geo_outage",
            "cascade/d1_kv_cascade",
            "steady_high_impact/csv_bigint",
            "expected_flapping/tenant_quota",
            "one_off/malformed_uri",
        ] {
            assert!(seen.get(b).copied().unwrap_or(0) > 0, "{b}: {seen:?}");
        }
        assert_eq!(seen.get("one_off/malformed_uri"), Some(&1));
    }

    #[test]
    fn cascade_makes_at_least_eight_fingerprints() {
        let sc = Scenarios::new(&ScenarioConfig::default());
        let cfg = PipelineConfig::default();
        let b = sc
            .bugs()
            .iter()
            .find(|b| b.bug == "cascade/d1_kv_cascade")
            .expect("the cascade");
        let fps: BTreeSet<String> = b
            .samples
            .iter()
            .filter_map(|s| fingerprint(&item(s), &cfg))
            .collect();
        assert!(fps.len() >= 8, "{}", fps.len());
        let routes: BTreeSet<String> = b
            .samples
            .iter()
            .map(|s| {
                crate::route::route_pattern(s["event"]["request"]["url"].as_str().unwrap_or(""))
            })
            .collect();
        // Route patterns leave the method out: GET and PATCH /orders/:id are one route.
        assert!(routes.len() >= 4, "{routes:?}");
    }

    #[test]
    fn labels_are_complete_and_onsets_lie_in_the_eval_day() {
        let cfg = ScenarioConfig::default();
        let sc = Scenarios::new(&cfg);
        let e = cfg.eval_start_ms();
        let ids: BTreeSet<&str> = sc.bugs().iter().map(|b| b.bug.as_str()).collect();
        assert_eq!(ids.len(), sc.bugs().len(), "bug ids are unique");
        for name in Scenarios::names() {
            assert!(sc.bugs().iter().any(|b| b.scenario == *name), "{name}");
        }
        for b in sc.bugs() {
            assert!(
                b.onset_ms >= e && b.onset_ms < e + DAY_MS,
                "{}: onset {}",
                b.bug,
                b.onset_ms
            );
            assert!(
                b.first_ms >= cfg.start_ms && b.first_ms <= b.onset_ms,
                "{}",
                b.bug
            );
            match b.deadline_ms {
                Some(d) => assert!(b.actionable && d > b.onset_ms, "{}", b.bug),
                None => assert!(!b.actionable, "{}", b.bug),
            }
            assert!(!b.why.is_empty());
        }
        let actionable: Vec<&str> = sc
            .bugs()
            .iter()
            .filter(|b| b.actionable)
            .map(|b| b.scenario)
            .collect();
        assert_eq!(
            actionable,
            [
                "deploy_bug",
                "slow_burn",
                "release_rate_step",
                "fix_and_new",
                "steady_high_impact",
                "bug_during_outage",
                "escalating_no_release"
            ]
        );
    }

    #[test]
    fn a_scenario_alone_is_the_same_as_in_the_whole_corpus() {
        let all = Scenarios::new(&small(9));
        let alone = Scenarios::new(&ScenarioConfig {
            only: Some(vec!["fix_and_new".into()]),
            ..small(9)
        });
        assert_eq!(alone.bugs().len(), 2);
        let script = alone.bugs()[0].script.clone();
        let mine: Vec<(i64, String)> = all
            .invocations()
            .filter(|(_, j)| j.contains(&format!("\"scriptName\":\"{script}\"")))
            .collect();
        let theirs: Vec<(i64, String)> = alone.invocations().collect();
        assert!(theirs.len() > 1000);
        assert_eq!(mine, theirs);
        assert!(
            ScenarioConfig {
                only: Some(vec!["fix_and_new".into(), "nope".into()]),
                ..small(9)
            }
            .unknown_names()
            .contains(&"nope".to_string())
        );
    }

    /// Release tags and per-request rates around the onsets, read back from the stream.
    #[test]
    fn deploys_rates_and_surge_behave_as_labelled() {
        let cfg = ScenarioConfig {
            warmup_days: 7,
            requests_per_hour: 300.0,
            only: Some(
                [
                    "deploy_bug",
                    "escalating_no_release",
                    "steady_high_impact",
                    "traffic_surge",
                ]
                .map(String::from)
                .to_vec(),
            ),
            ..ScenarioConfig::default()
        };
        let sc = Scenarios::new(&cfg);
        let onset = |scenario: &str| {
            sc.bugs()
                .iter()
                .find(|b| b.scenario == scenario && b.onset_ms > cfg.eval_start_ms())
                .map(|b| b.onset_ms)
                .expect("onset")
        };
        let (deploy, escalate, surge) = (
            onset("deploy_bug"),
            onset("escalating_no_release"),
            onset("traffic_surge"),
        );
        let pcfg = PipelineConfig::default();
        let mut tags: BTreeMap<(String, bool), BTreeSet<String>> = BTreeMap::new();
        let (mut export_route, mut export_fail) = (0f64, 0f64);
        let mut surge_traffic = [0f64; 2]; // the surge window on the first and the eval Monday
        for (ts, json) in sc.invocations() {
            let batch = parse_batch(&json).expect("array");
            let t = &batch.items[0].1;
            let script = t.script_name.clone().unwrap_or_default();
            let release = t.release().unwrap_or_default().to_string();
            if ts >= cfg.eval_start_ms() - DAY_MS {
                let pivot = if script.starts_with("shop") {
                    deploy
                } else {
                    escalate
                };
                tags.entry((script.clone(), ts >= pivot))
                    .or_default()
                    .insert(release);
            }
            let url = t.request().and_then(|r| r.url.clone()).unwrap_or_default();
            if script.starts_with("export") && url.ends_with("/download") {
                export_route += 1.0;
                export_fail += f64::from(u8::from(fingerprint(t, &pcfg).is_some()));
            }
            if script.starts_with("media") {
                for (k, base) in [cfg.start_ms, cfg.eval_start_ms()].iter().enumerate() {
                    let from = base + (surge - cfg.eval_start_ms());
                    if ts >= from && ts < from + 2 * HOUR_MS {
                        surge_traffic[k] += 1.0;
                    }
                }
            }
        }
        let shop = |after| tags[&("shop-api-deploy-bug".to_string(), after)].clone();
        assert_eq!(shop(false).len(), 1, "{:?}", shop(false));
        assert_eq!(shop(true).len(), 1);
        assert_ne!(shop(false), shop(true), "the deploy is a new release");
        let cat = |after| tags[&("catalog-api-escalating-no-release".to_string(), after)].clone();
        assert_eq!(cat(false), cat(true), "no deploy around the jump");
        let share = export_fail / export_route;
        assert!((share - 0.20).abs() < 0.01, "steady share {share}");
        let x = surge_traffic[1] / surge_traffic[0];
        assert!((x - 5.0).abs() < 0.5, "surge x{x}");
    }

    #[test]
    fn healthy_traffic_is_noise() {
        let sc = Scenarios::new(&ScenarioConfig::default());
        let cfg = PipelineConfig::default();
        let mut reasons: BTreeMap<String, u32> = BTreeMap::new();
        for s in &sc.scripts {
            let mut rng = stream(99, s.index, STREAM_RENDER);
            for k in 0..400 {
                let route = k % s.routes.len();
                if s.routes[route].weight == 0.0 {
                    continue;
                }
                let mut text = String::new();
                render(
                    s,
                    &mut rng,
                    sc.cfg.eval_start_ms(),
                    Planned::Healthy { route },
                    &mut text,
                );
                let t: TraceItem = serde_json::from_str(&text).expect("json");
                match process_item(&t, &cfg, 0) {
                    Verdict::Noise(r) => *reasons.entry(format!("{r:?}")).or_default() += 1,
                    Verdict::Event(e) => panic!("healthy item became an event: {e:?}"),
                }
            }
            if s.cron.is_some() {
                let mut text = String::new();
                render(
                    s,
                    &mut rng,
                    sc.cfg.eval_start_ms(),
                    Planned::Cron,
                    &mut text,
                );
                let t: TraceItem = serde_json::from_str(&text).expect("json");
                assert_eq!(t.event_kind(), "scheduled");
                assert!(matches!(process_item(&t, &cfg, 0), Verdict::Noise(_)));
            }
        }
        // Mostly healthy, some 4xx, a few disconnects.
        assert!(
            reasons["Healthy"] > 10 * reasons["ClientError"],
            "{reasons:?}"
        );
        assert!(reasons["ClientError"] > 50, "{reasons:?}");
    }

    /// Every actionable bug leaves evidence before its deadline (in expectation), and the
    /// expectation matches what the stream draws.
    #[test]
    fn expected_evidence_and_what_the_stream_draws() {
        let sc = Scenarios::new(&ScenarioConfig::default());
        for b in sc.bugs().iter().filter(|b| b.actionable) {
            let d = b.deadline_ms.expect("actionable");
            let n = sc
                .expected_occurrences(&b.bug, b.onset_ms, d)
                .expect("known bug");
            assert!(n >= 3.5, "{}: {n:.1} expected by the deadline", b.bug);
        }
        assert_eq!(sc.expected_occurrences("nope", 0, 1), None);
        assert_eq!(
            sc.expected_occurrences("one_off/malformed_uri", sc.cfg.start_ms, sc.cfg.end_ms()),
            Some(1.0)
        );
        // steady_high_impact over its eval day: the stream's count within 6% of the expectation.
        let cfg = ScenarioConfig {
            only: Some(vec!["steady_high_impact".into()]),
            warmup_days: 0,
            ..ScenarioConfig::default()
        };
        let one = Scenarios::new(&cfg);
        let pcfg = PipelineConfig::default();
        let drawn = one
            .invocations()
            .filter(|(_, j)| {
                let batch = parse_batch(j).expect("array");
                fingerprint(&batch.items[0].1, &pcfg).is_some()
            })
            .count() as f64;
        let expected = one
            .expected_occurrences("steady_high_impact/csv_bigint", cfg.start_ms, cfg.end_ms())
            .expect("known");
        assert!(
            (drawn / expected - 1.0).abs() < 0.06,
            "{drawn} vs {expected:.0}"
        );
    }

    /// The table of the report: `cargo test --lib eval::scenarios::tests::corpus_table --
    /// --ignored --nocapture`.
    #[test]
    #[ignore]
    fn corpus_table() {
        let sc = Scenarios::new(&ScenarioConfig::default());
        let cfg = PipelineConfig::default();
        let e = sc.cfg.eval_start_ms();
        for b in sc.bugs() {
            let d = b.deadline_ms.unwrap_or(b.onset_ms + 15 * MINUTE_MS);
            let x = |to| {
                sc.expected_occurrences(&b.bug, b.onset_ms, to)
                    .expect("known")
            };
            println!(
                "{} | {} | onset +{}:{:02} | actionable {} | deadline +{} min | 15 min: {:.1} | by deadline: {:.1} | first hour: {:.1}",
                b.bug,
                b.script,
                (b.onset_ms - e) / HOUR_MS,
                (b.onset_ms - e) % HOUR_MS / MINUTE_MS,
                b.actionable,
                b.deadline_ms.map_or(0, |d| (d - b.onset_ms) / MINUTE_MS),
                x(b.onset_ms + 15 * MINUTE_MS),
                x(d),
                x(b.onset_ms + HOUR_MS)
            );
            for s in &b.samples {
                if let Verdict::Event(ev) = process_item(&item(s), &cfg, 0) {
                    let c = &ev.components;
                    println!(
                        "    {} | {} | {}: {} | {} | {}",
                        &ev.fingerprint[..8],
                        c.route,
                        c.exception_type,
                        c.message,
                        c.top_frame,
                        c.status_class
                    );
                }
            }
        }
    }

    #[test]
    fn default_corpus_size() {
        let sc = Scenarios::new(&ScenarioConfig::default());
        let n = sc.item_count();
        println!("default corpus: {n} items (8 days x 12 scripts)");
        assert!(n > 1_000_000 && n < 1_500_000, "{n}");
    }

    /// `cargo test --release --lib eval::scenarios::tests::generation_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn generation_speed() {
        let sc = Scenarios::new(&ScenarioConfig::default());
        let t0 = std::time::Instant::now();
        let (mut n, mut bytes) = (0u64, 0u64);
        for (_, json) in sc.invocations() {
            n += 1;
            bytes += json.len() as u64;
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "generated {n} items ({} MB) in {secs:.2} s: {:.0} items/s",
            bytes / 1_000_000,
            n as f64 / secs
        );
        assert_eq!(n, sc.item_count());
    }
}
