//! A tracker's "do not call before" (`tracker_holds`, migration 0006).
//!
//! GitHub documents how long to wait after a rate limit (`retry-after` seconds, or
//! `x-ratelimit-reset` epoch seconds with `x-ratelimit-remaining: 0`; "Rate limits for the REST
//! API"). A wait one cron run cannot spend is stored here, and later runs send nothing to the
//! tracker before it has passed: retrying earlier is what GitHub says can get an integration
//! banned.

use crate::store::Statement;

/// The hold of tracker `?1` still in force at `?2` (ms): rows `{until_ms, reason}`.
pub const SELECT_HOLD: &str =
    "SELECT until_ms, reason FROM tracker_holds WHERE tracker = ?1 AND until_ms > ?2";

/// A row of [`SELECT_HOLD`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct HoldRow {
    /// No request before this time, ms since the epoch.
    pub until_ms: i64,
    /// The response that asked for it.
    pub reason: String,
}

/// Holds `tracker` until `until_ms` (a later hold wins over an earlier one). Times in ms.
pub fn hold(tracker: &str, until_ms: i64, reason: &str, now_ms: i64) -> Statement {
    Statement::new(
        "INSERT INTO tracker_holds (tracker, until_ms, reason, created_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (tracker) DO UPDATE SET until_ms = max(until_ms, excluded.until_ms), \
         reason = excluded.reason, created_at = excluded.created_at",
        vec![
            tracker.into(),
            until_ms.into(),
            reason.chars().take(300).collect::<String>().into(),
            now_ms.into(),
        ],
    )
}
