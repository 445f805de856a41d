//! selfheal core: everything between a raw Cloudflare `TraceItem` and a ticket, as plain Rust.
//!
//! No clock, no randomness and no I/O of its own (time and ids are passed in), so every piece is
//! tested natively. The Worker crates (`tail-worker`, `scheduled`, and the agent-runner behind the
//! `agent-runner` feature of this crate) are thin glue over these modules.

#![warn(missing_docs)]

pub mod config;
#[cfg(feature = "cli")]
pub mod eval;
pub mod event;
pub mod fingerprint;
#[cfg(feature = "cli")]
pub mod fixer;
#[cfg(feature = "cli")]
pub mod fixing;
pub mod github;
pub mod handover;
pub mod intake;
pub mod normalize;
pub mod route;
pub mod scrub;
pub mod security;
pub mod signal;
#[cfg(feature = "cli")]
pub mod sqlite;
pub mod stack;
pub mod storage;
pub mod store;
pub mod text;
pub mod ticket;
pub mod trace;
pub mod tracking;

#[cfg(feature = "agent-runner")]
mod runner;
#[cfg(feature = "workers")]
pub mod workers;
