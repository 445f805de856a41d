//! The control plane's own tables (migration `0006_security.sql`) and the retention rules of every
//! table, as [`Statement`](crate::store::Statement)s like [`crate::store`]: the Workers run them on
//! D1, the native tests on SQLite with the same migrations.

pub mod holds;
pub mod retention;
pub mod run_tokens;
