//! The owner's caps on fix runs, in runs and in dollars, and the windows they count in.
//!
//! - **Runs per UTC day** (`SELFHEAL_DAILY_CAP`, default 5): as before, a unit is taken when a run is
//!   claimed (`fix_budget`); over it the run is deferred to a later day.
//! - **Runs per week / month** (`SELFHEAL_WEEKLY_CAP`, `SELFHEAL_MONTHLY_CAP`; unset = no cap):
//!   runs *started*, i.e. granted their first lease (`fix_run_starts`, migration 0010), in the ISO
//!   week (Monday 00:00 UTC) or the UTC calendar month. Checked before a lease is granted; a run
//!   that already started (its lease expired) may be leased again, since it already counts.
//! - **Dollars per UTC day / month** (`SELFHEAL_USD_DAILY_CAP`, `SELFHEAL_USD_MONTHLY_CAP`; unset =
//!   no cap): the sum of `fix_ledger.cost_usd` of runs finished in the window. Two dollar caps,
//!   not one: a daily one stops a bad day from eating the month, a monthly one is the bill.
//!   Dollars an agent did not report (Codex) count as 0 and are listed as "not reported"; such
//!   runs are bounded by the run caps and their own wall time only.

use serde::Serialize;

/// Default daily cap on fix attempts when `SELFHEAL_DAILY_CAP` is unset.
pub const DEFAULT_DAILY_CAP: u32 = 5;

/// The caps, from the agent-runner's vars.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Caps {
    /// Runs made ready per UTC day (`SELFHEAL_DAILY_CAP`).
    pub daily_runs: u32,
    /// Runs started per ISO week (`SELFHEAL_WEEKLY_CAP`).
    pub weekly_runs: Option<u32>,
    /// Runs started per UTC month (`SELFHEAL_MONTHLY_CAP`).
    pub monthly_runs: Option<u32>,
    /// Dollars per UTC day (`SELFHEAL_USD_DAILY_CAP`).
    pub daily_usd: Option<f64>,
    /// Dollars per UTC month (`SELFHEAL_USD_MONTHLY_CAP`).
    pub monthly_usd: Option<f64>,
}

impl Caps {
    /// Reads the caps through `var` (a Worker var or an environment lookup). Errors name the
    /// variable: a whole number for run caps, a finite non-negative number for dollars.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Caps, String> {
        let runs = |name: &str| -> Result<Option<u32>, String> {
            var(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("{name} must be a whole number, got {v:?}"))
                })
                .transpose()
        };
        let usd = |name: &str| -> Result<Option<f64>, String> {
            var(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|d| d.is_finite() && *d >= 0.0)
                        .ok_or_else(|| format!("{name} must be a dollar amount, got {v:?}"))
                })
                .transpose()
        };
        Ok(Caps {
            daily_runs: runs("SELFHEAL_DAILY_CAP")?.unwrap_or(DEFAULT_DAILY_CAP),
            weekly_runs: runs("SELFHEAL_WEEKLY_CAP")?,
            monthly_runs: runs("SELFHEAL_MONTHLY_CAP")?,
            daily_usd: usd("SELFHEAL_USD_DAILY_CAP")?,
            monthly_usd: usd("SELFHEAL_USD_MONTHLY_CAP")?,
        })
    }
}

const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`,
/// <https://howardhinnant.github.io/date_algorithms.html>).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The windows the caps count in, ms since the epoch (UTC): each start, and when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Windows {
    /// Today 00:00.
    pub day_start: i64,
    /// This ISO week's Monday 00:00.
    pub week_start: i64,
    /// This month's first day 00:00.
    pub month_start: i64,
    /// Tomorrow 00:00.
    pub day_end: i64,
    /// Next Monday 00:00.
    pub week_end: i64,
    /// Next month's first day 00:00.
    pub month_end: i64,
}

impl Windows {
    /// The windows around `now_ms`.
    pub fn at(now_ms: i64) -> Windows {
        let days = now_ms.div_euclid(DAY_MS);
        // 1970-01-01 was a Thursday: Monday-based weekday index 3.
        let monday = days - (days + 3).rem_euclid(7);
        let day = crate::store::utc_day(now_ms);
        let ymd: Vec<i64> = day.split('-').filter_map(|p| p.parse().ok()).collect();
        let (y, m) = match ymd.as_slice() {
            [y, m, _] => (*y, *m),
            _ => (1970, 1),
        };
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        Windows {
            day_start: days * DAY_MS,
            week_start: monday * DAY_MS,
            month_start: days_from_civil(y, m, 1) * DAY_MS,
            day_end: (days + 1) * DAY_MS,
            week_end: (monday + 7) * DAY_MS,
            month_end: days_from_civil(ny, nm, 1) * DAY_MS,
        }
    }
}

/// What was spent in each window (a row of [`crate::store::SELECT_SPEND`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, serde::Deserialize)]
pub struct Spend {
    /// Cap units taken today (`fix_budget.used`).
    pub daily_runs: i64,
    /// Runs started this week.
    pub weekly_runs: i64,
    /// Runs started this month.
    pub monthly_runs: i64,
    /// Dollars reported by runs finished today.
    pub daily_usd: f64,
    /// Dollars reported by runs finished this month.
    pub monthly_usd: f64,
    /// Runs finished this month whose agent reported no dollars.
    pub monthly_unreported: i64,
    /// Ready runs not cooling down (could be leased now).
    #[serde(default)]
    pub ready: i64,
}

/// One cap against its spend, as `GET /api/budget` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapView {
    /// `daily_runs`, `weekly_runs`, `monthly_runs`, `daily_usd` or `monthly_usd`.
    pub name: &'static str,
    /// `runs` or `usd`.
    pub unit: &'static str,
    /// Its variable.
    pub var: &'static str,
    /// Spent in the window.
    pub used: f64,
    /// The cap; `None` = no cap.
    pub cap: Option<f64>,
    /// Window start, ms since the epoch.
    pub since: i64,
    /// Window end (when the spend resets), ms since the epoch.
    pub resets_at: i64,
    /// Whether the cap is reached (`used >= cap`).
    pub reached: bool,
}

/// Every cap against its spend, daily runs first.
pub fn view(caps: &Caps, spend: &Spend, w: &Windows) -> Vec<CapView> {
    let cap = |name, unit, var, used: f64, cap: Option<f64>, since, resets_at| CapView {
        name,
        unit,
        var,
        used,
        cap,
        since,
        resets_at,
        reached: cap.is_some_and(|c| used >= c),
    };
    vec![
        cap(
            "daily_runs",
            "runs",
            "SELFHEAL_DAILY_CAP",
            spend.daily_runs as f64,
            Some(f64::from(caps.daily_runs)),
            w.day_start,
            w.day_end,
        ),
        cap(
            "weekly_runs",
            "runs",
            "SELFHEAL_WEEKLY_CAP",
            spend.weekly_runs as f64,
            caps.weekly_runs.map(f64::from),
            w.week_start,
            w.week_end,
        ),
        cap(
            "monthly_runs",
            "runs",
            "SELFHEAL_MONTHLY_CAP",
            spend.monthly_runs as f64,
            caps.monthly_runs.map(f64::from),
            w.month_start,
            w.month_end,
        ),
        cap(
            "daily_usd",
            "usd",
            "SELFHEAL_USD_DAILY_CAP",
            spend.daily_usd,
            caps.daily_usd,
            w.day_start,
            w.day_end,
        ),
        cap(
            "monthly_usd",
            "usd",
            "SELFHEAL_USD_MONTHLY_CAP",
            spend.monthly_usd,
            caps.monthly_usd,
            w.month_start,
            w.month_end,
        ),
    ]
}

/// The cap that holds a lease back, when one does: the first reached cap among those checked at
/// lease time (weekly and monthly runs, daily and monthly dollars; the daily run cap works at
/// claim time), with the human reason and the seconds until it resets.
pub fn holding(caps: &Caps, spend: &Spend, w: &Windows, now_ms: i64) -> Option<(CapView, String)> {
    view(caps, spend, w)
        .into_iter()
        .filter(|c| c.name != "daily_runs" && c.reached)
        .max_by_key(|c| c.resets_at)
        .map(|c| {
            let amount = |v: f64| match c.unit {
                "usd" => format!("${v:.2}"),
                _ => format!("{v:.0} runs"),
            };
            let why = format!(
                "{} cap reached: {} of {} ({}) since {}; resets at {} (in {} s)",
                c.name.replace('_', " "),
                amount(c.used),
                amount(c.cap.unwrap_or(0.0)),
                c.var,
                crate::ticket::utc_datetime(c.since),
                crate::ticket::utc_datetime(c.resets_at),
                (c.resets_at - now_ms).max(0) / 1000,
            );
            (c, why)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_utc_day_iso_week_and_month() {
        // 2026-12-02 (a Wednesday) 02:34:00 UTC.
        let now = 1_796_178_840_000;
        assert_eq!(crate::store::utc_day(now), "2026-12-02");
        let w = Windows::at(now);
        assert_eq!(crate::store::utc_day(w.day_start), "2026-12-02");
        assert_eq!(w.day_end - w.day_start, DAY_MS);
        assert_eq!(crate::store::utc_day(w.week_start), "2026-11-30", "Monday");
        assert_eq!(crate::store::utc_day(w.week_end), "2026-12-07");
        assert_eq!(crate::store::utc_day(w.month_start), "2026-12-01");
        assert_eq!(crate::store::utc_day(w.month_end), "2027-01-01");
        assert_eq!(w.week_start % DAY_MS, 0);
        // A Monday is its own week's start; February of a leap year ends on the 29th.
        let monday = Windows::at(w.week_start + 5);
        assert_eq!(monday.week_start, w.week_start);
        let feb = Windows::at(951_782_400_000); // 2000-02-29
        assert_eq!(crate::store::utc_day(feb.month_end), "2000-03-01");
        assert_eq!(crate::store::utc_day(feb.month_start), "2000-02-01");
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn caps_from_vars_name_the_bad_variable() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let none = Caps::from_vars(vars(&[])).expect("defaults");
        assert_eq!(none.daily_runs, DEFAULT_DAILY_CAP);
        assert_eq!((none.weekly_runs, none.daily_usd), (None, None));
        let set = Caps::from_vars(vars(&[
            ("SELFHEAL_WEEKLY_CAP", "2"),
            ("SELFHEAL_USD_MONTHLY_CAP", " 25.5 "),
        ]))
        .expect("caps");
        assert_eq!((set.weekly_runs, set.monthly_usd), (Some(2), Some(25.5)));
        let bad = Caps::from_vars(vars(&[("SELFHEAL_MONTHLY_CAP", "ten")])).unwrap_err();
        assert!(bad.contains("SELFHEAL_MONTHLY_CAP"), "{bad}");
        let neg = Caps::from_vars(vars(&[("SELFHEAL_USD_DAILY_CAP", "-1")])).unwrap_err();
        assert!(neg.contains("SELFHEAL_USD_DAILY_CAP"), "{neg}");
    }

    #[test]
    fn a_reached_cap_holds_with_its_reason() {
        let now = 1_796_178_840_000;
        let w = Windows::at(now);
        let caps = Caps {
            daily_runs: 5,
            weekly_runs: Some(2),
            daily_usd: Some(1.0),
            ..Caps::default()
        };
        let mut spend = Spend {
            daily_runs: 5,
            weekly_runs: 1,
            daily_usd: 0.4,
            ..Spend::default()
        };
        assert_eq!(
            holding(&caps, &spend, &w, now),
            None,
            "the daily run cap acts at claim time, not here"
        );
        let v = view(&caps, &spend, &w);
        assert_eq!(v.len(), 5);
        assert!(v[0].reached && !v[1].reached);
        assert_eq!(v[2].cap, None);
        spend.weekly_runs = 2;
        let (cap, why) = holding(&caps, &spend, &w, now).expect("held");
        assert_eq!(cap.name, "weekly_runs");
        assert!(
            why.starts_with("weekly runs cap reached: 2 runs of 2 runs (SELFHEAL_WEEKLY_CAP)"),
            "{why}"
        );
        assert!(why.contains("2026-12-07"), "{why}");
        spend.daily_usd = 1.25;
        // Both reached: the one that lasts longer is the one to wait for.
        assert_eq!(
            holding(&caps, &spend, &w, now).map(|c| c.0.name),
            Some("weekly_runs")
        );
        spend.weekly_runs = 0;
        let (cap, why) = holding(&caps, &spend, &w, now).expect("held");
        assert_eq!(cap.name, "daily_usd");
        assert!(why.contains("$1.25 of $1.00"), "{why}");
    }
}

#[cfg(all(test, feature = "cli"))]
mod sqlite_tests {
    use super::*;
    use crate::fixing::ledger::LedgerEntry;
    use crate::sqlite::Db;
    use crate::store::{self, LeasedRun};
    use serde_json::json;

    const NOW: i64 = 1_796_178_840_000; // Wednesday 2026-12-02 02:34 UTC

    /// `n` incidents (one per external issue id), each ticketed and claimed: `n` ready runs.
    fn ready_runs(db: &mut Db, n: usize) {
        for k in 0..n {
            let mut body = crate::intake::tests::workers_issue(1_796_178_840);
            body["data"]["issue"]["id"] = json!(format!("wi_{k}"));
            let issue =
                crate::intake::parse_workers_issue(body.to_string().as_bytes(), 1_796_178_840)
                    .expect("parses")
                    .expect("issue");
            let e = crate::intake::intake_event(&issue, &Default::default(), NOW).expect("event");
            db.batch(&crate::intake::intake_statements(&issue, &e, NOW))
                .expect("ingest");
            let id = i64::try_from(k).expect("small") + 1;
            db.batch(&[
                store::insert_ticket(id, &e.fingerprint, "t", "b", NOW),
                store::link_ticket(id, NOW),
            ])
            .expect("ticket");
            db.batch(&store::claim_statements(
                &crate::ticket::FixJob::new(id, id, e.fingerprint.clone()),
                "{}",
                &store::utc_day(NOW),
                10,
                NOW,
            ))
            .expect("claim");
        }
    }

    fn lease(db: &mut Db, id: &str, now: i64, caps: &Caps) -> (Option<LeasedRun>, Spend) {
        let res = db
            .batch(&store::lease_statements_capped(id, "t", now, 60_000, caps))
            .expect("lease");
        let run = res[store::LEASE_READBACK_INDEX]
            .first()
            .map(|v| serde_json::from_value(v.clone()).expect("run"));
        let spend =
            serde_json::from_value(res[store::LEASE_SPEND_INDEX][0].clone()).expect("spend");
        (run, spend)
    }

    fn finish(db: &mut Db, run: &LeasedRun, result: serde_json::Value, at: i64) -> bool {
        let entry = LedgerEntry::from_result("budget_exhausted", &result);
        let res = db
            .batch(&[
                store::finish_run(
                    run.run_id,
                    &run.lease_id,
                    "failed",
                    None,
                    &result.to_string(),
                    at,
                ),
                store::record_ledger(run.run_id, &entry, at),
            ])
            .expect("finish");
        !res[0].is_empty()
    }

    #[test]
    fn the_weekly_cap_holds_new_runs_but_not_a_started_one() {
        let mut db = crate::fixing::test_db();
        ready_runs(&mut db, 3);
        let caps = Caps {
            daily_runs: 10,
            weekly_runs: Some(2),
            ..Caps::default()
        };
        let (a, _) = lease(&mut db, "a", NOW, &caps);
        let a = a.expect("first run");
        let usage = json!({"timings": [["agent", 2.5]], "usage": {"reporter": "claude-code", "turns": 12, "cost_usd": 0.61}});
        assert!(finish(&mut db, &a, usage.clone(), NOW + 10));
        let (b, _) = lease(&mut db, "b", NOW + 20, &caps);
        let b = b.expect("second run");
        // b's lease expires without a result: it goes back to ready and may be leased again.
        let (again, spend) = lease(&mut db, "b2", NOW + 100_000, &caps);
        assert_eq!(
            again.map(|r| r.run_id),
            Some(b.run_id),
            "a started run is not held"
        );
        assert_eq!(spend.weekly_runs, 2, "counted once");
        let b2 = LeasedRun {
            lease_id: "b2".into(),
            ..b
        };
        assert!(finish(&mut db, &b2, json!({}), NOW + 100_010));
        let (c, spend) = lease(&mut db, "c", NOW + 100_020, &caps);
        assert_eq!(c, None, "the third run waits for next week");
        assert_eq!(
            (spend.weekly_runs, spend.monthly_runs, spend.ready),
            (2, 2, 1)
        );
        assert_eq!((spend.daily_usd, spend.monthly_unreported), (0.61, 1));
        let w = Windows::at(NOW);
        let (held, why) = holding(&caps, &spend, &w, NOW).expect("held");
        assert_eq!(held.name, "weekly_runs");
        assert!(why.contains("SELFHEAL_WEEKLY_CAP"), "{why}");
        // Next Monday the cap has room again.
        let (c, _) = lease(&mut db, "c2", w.week_end + 1, &caps);
        assert!(c.is_some(), "a new week");
        // The ledger: one row per finished run, NULL where nothing was reported.
        let rows: Vec<serde_json::Value> = db
            .rows(crate::store::Statement::new(store::LIST_LEDGER, vec![]))
            .expect("ledger");
        assert_eq!(rows.len(), 2);
        let first = rows
            .iter()
            .find(|r| r["run_id"] == json!(a.run_id))
            .expect("a's row");
        assert_eq!(
            (first["turns"].clone(), first["cost_usd"].clone()),
            (json!(12), json!(0.61))
        );
        assert_eq!(first["outcome"], json!("budget_exhausted"));
        assert_eq!(first["phases"], json!("{\"agent\":2.5}"));
        let second = rows
            .iter()
            .find(|r| r["run_id"] == json!(b2.run_id))
            .expect("b's row");
        assert_eq!(
            (
                second["turns"].clone(),
                second["cost_usd"].clone(),
                second["reporter"].clone()
            ),
            (json!(null), json!(null), json!(null))
        );
    }

    #[test]
    fn dollar_caps_hold_every_lease_and_a_stale_result_writes_no_row() {
        let mut db = crate::fixing::test_db();
        ready_runs(&mut db, 3);
        let caps = Caps {
            daily_runs: 10,
            daily_usd: Some(1.0),
            ..Caps::default()
        };
        let (a, _) = lease(&mut db, "a", NOW, &caps);
        let a = a.expect("run");
        let spent = json!({"usage": {"reporter": "claude-code", "turns": 3, "cost_usd": 1.25}});
        // A result under a lease that is not held finishes nothing and writes no ledger row.
        let stranger = LeasedRun {
            lease_id: "not-a".into(),
            ..a.clone()
        };
        assert!(!finish(&mut db, &stranger, spent.clone(), NOW + 5));
        assert_eq!(db.scalar("SELECT count(*) FROM fix_ledger").expect("n"), 0);
        assert!(finish(&mut db, &a, spent.clone(), NOW + 10));
        assert!(
            !finish(&mut db, &a, spent, NOW + 11),
            "a second result is refused"
        );
        assert_eq!(db.scalar("SELECT count(*) FROM fix_ledger").expect("n"), 1);
        let (b, spend) = lease(&mut db, "b", NOW + 20, &caps);
        assert_eq!(b, None, "$1.25 of $1.00 spent today");
        assert_eq!(spend.daily_usd, 1.25);
        let (held, _) = holding(&caps, &spend, &Windows::at(NOW), NOW).expect("held");
        assert_eq!(held.name, "daily_usd");
        // Tomorrow: a new day's dollars (the monthly dollars, uncapped here, still count).
        let tomorrow = Windows::at(NOW).day_end + 1;
        let (b, spend) = lease(&mut db, "b", tomorrow, &caps);
        assert!(b.is_some());
        assert_eq!((spend.daily_usd, spend.monthly_usd), (0.0, 1.25));
    }
}
