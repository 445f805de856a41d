//! What a fix run may spend and what it spent: the agent CLI's reported usage against the run's
//! own limits ([`usage`]), the owner's daily, weekly and monthly caps checked before a lease
//! ([`caps`]), and the cost ledger's row of a finished run ([`ledger`]). Plain Rust with no clock
//! of its own (times are passed in), so the local fixer (feature `cli`) and the agent-runner
//! Worker share it.

pub mod caps;
pub mod ledger;
pub mod usage;

/// A SQLite database with every migration and 0010 (this module's tables), for the native tests
/// of the statements; 0010 is applied here while `crate::sqlite::MIGRATIONS` does not list it.
#[cfg(all(test, feature = "cli"))]
pub(crate) fn test_db() -> crate::sqlite::Db {
    let db = crate::sqlite::Db::memory().expect("migrations");
    if db
        .scalar("SELECT count(*) FROM sqlite_master WHERE name = 'fix_ledger'")
        .expect("schema")
        == 0
    {
        db.conn
            .execute_batch(include_str!("../../migrations/0010_ledger.sql"))
            .expect("migration 0010");
    }
    db
}
