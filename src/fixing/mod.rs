//! Fixing: what a fix run may spend and what it spent, and how a fix is verified.
//!
//! - [`usage`]: the agent CLI's reported usage against the run's own limits;
//! - [`caps`]: the owner's daily, weekly and monthly caps, checked before a lease;
//! - [`checks`]: the draft PR's own CI checks, followed until they are completed;
//! - [`ledger`]: the cost ledger's row of a finished run;
//! - [`repro`] (feature `cli`, the local fixer): the production failure reproduced by its
//!   fingerprint, before and after the change.
//!
//! Plain Rust with no clock of its own (times are passed in), so the local fixer and the
//! agent-runner Worker share it.

pub mod caps;
pub mod checks;
pub mod ledger;
#[cfg(feature = "cli")]
pub mod repro;
pub mod usage;

/// A SQLite database with every migration, for the native tests of the statements.
#[cfg(all(test, feature = "cli"))]
pub(crate) fn test_db() -> crate::sqlite::Db {
    crate::sqlite::Db::memory().expect("migrations")
}
