//! Storage: how what the pipeline made reaches D1 and stays there.
//!
//! - [`ingest`]: the ingest write path (Queue messages of sanitized events, the one coalesced D1
//!   batch per queue batch, the dead-letter queue's parked messages).
//!
//! The statements of the other stages' reads and writes are still in [`crate::store`].

pub mod ingest;
