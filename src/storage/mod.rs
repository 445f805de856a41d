//! Storage: how what the pipeline made reaches D1 and how long it stays there, as
//! [`Statement`](crate::store::Statement)s like [`crate::store`]: the Workers run them on D1, the
//! native tests on SQLite with the same migrations.
//!
//! - [`ingest`]: the ingest write path (Queue messages of sanitized events, the one coalesced D1
//!   batch per queue batch, the dead-letter queue's parked messages; migration 0005).
//! - [`retention`]: the retention rule of every table, applied by the cron.
//! - [`run_tokens`], [`holds`]: the control plane's own tables (migration `0006_security.sql`).
//!
//! The statements of the other stages' reads and writes are still in [`crate::store`].

pub mod holds;
pub mod ingest;
pub mod retention;
pub mod run_tokens;
