//! The cron's group step ([`selfheal::signal::groups`]): the merge stage over the incidents of
//! the window, each changed group key stored with its history row. Runs after the gate and before
//! the tickets, so the tickets of this run already follow the groups.

use selfheal::signal::grouping::MinerConfig;
use selfheal::signal::groups::{self, GroupMemberRow};
use selfheal::workers::{self, GlueError};
use worker::{console_error, console_log};

/// Reads the incidents, groups them, stores the changed keys. Returns (incidents read, keys
/// changed).
async fn step(db: &worker::D1Database, now: i64) -> Result<(usize, usize), GlueError> {
    let rows: Vec<GroupMemberRow> = workers::query(db, &groups::members_statement(now)).await?;
    let changes = groups::plan(&rows, &MinerConfig::default());
    if !changes.is_empty() {
        workers::batch(db, &groups::store_statements(&changes, now)).await?;
    }
    Ok((rows.len(), changes.len()))
}

/// [`step`], logged; a failure is logged and never blocks the tickets (they then follow the keys
/// stored by earlier runs).
pub async fn step_logged(db: &worker::D1Database, now: i64) {
    match step(db, now).await {
        Ok((read, changed)) => {
            if changed > 0 {
                console_log!("selfheal cron: groups: {read} incidents, {changed} keys changed");
            }
        }
        Err(e) => console_error!("selfheal cron: groups: {e}"),
    }
}
