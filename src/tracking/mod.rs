//! Tracking: what happens to an incident after its ticket (the lifecycle to a fix verified in
//! production, attempts).
//!
//! - [`lifecycle`]: states, transitions with their reasons, verification on a new release's
//!   traffic, and when another fix attempt may start (pure; the cron will drive it).
//! - [`history`]: a status change and its `incident_history` row, in one transaction.

pub mod follow;
pub mod history;
pub mod lifecycle;
