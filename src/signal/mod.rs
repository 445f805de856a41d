//! Signal: which incidents are one bug, and which are worth an agent.
//!
//! - [`grouping`]: the merge stage that groups incidents whose messages differ only in values.
//! - [`groups`]: the merge stage over the stored incidents (the cron's group step), tickets that
//!   follow the group, and the operator's unmerge.
//! - [`rates`]: traffic counted in the tail Worker's isolate (the denominator of every rate).
//! - [`gate`]: the pure decision (`ticket | watch | external | suppressed`) with its figures.
//! - [`stats`]: the tests it rests on.
//! - [`step`]: the cron's gate step as SQL and assembly, shared by the cron Worker and `selfheal
//!   replay`.
//! - [`report`]: the measure of the gate (confusion matrix of `ticket` against operator labels,
//!   precision, recall, time to ticket) and the API's reads and writes on decisions and labels.
//! - `replay` (native): recorded TraceItems through the pipeline and the cron on SQLite.

pub mod gate;
pub mod grouping;
pub mod groups;
pub mod rates;
#[cfg(feature = "cli")]
pub mod replay;
pub mod report;
pub mod stats;
pub mod step;
