//! The Workers' SQL on SQLite (what D1 is), natively: the real migrations, the exact
//! [`Statement`]s, a batch as one transaction like D1's `batch()`. Used by `selfheal replay` and
//! the storage tests.

use rusqlite::{Connection, params_from_iter, types::Value as Sql};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::store::{SqlValue, Statement};

/// The migrations, in order (the same files `wrangler d1 migrations apply` runs). A test checks
/// that this list is the `migrations/` folder.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init.sql", include_str!("../migrations/0001_init.sql")),
    (
        "0002_tracker.sql",
        include_str!("../migrations/0002_tracker.sql"),
    ),
    (
        "0003_fixer.sql",
        include_str!("../migrations/0003_fixer.sql"),
    ),
    (
        "0004_signal.sql",
        include_str!("../migrations/0004_signal.sql"),
    ),
    (
        "0005_ingest.sql",
        include_str!("../migrations/0005_ingest.sql"),
    ),
    (
        "0006_security.sql",
        include_str!("../migrations/0006_security.sql"),
    ),
    (
        "0008_history.sql",
        include_str!("../migrations/0008_history.sql"),
    ),
    (
        "0009_lifecycle.sql",
        include_str!("../migrations/0009_lifecycle.sql"),
    ),
    (
        "0010_ledger.sql",
        include_str!("../migrations/0010_ledger.sql"),
    ),
    (
        "0011_groups.sql",
        include_str!("../migrations/0011_groups.sql"),
    ),
];

/// A database with every migration applied.
pub struct Db {
    /// The connection (for ad-hoc reads in tests and reports).
    pub conn: Connection,
}

/// A statement that failed, with its SQL.
#[derive(Debug)]
pub struct DbError(pub String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DbError {}

fn bind(params: &[SqlValue]) -> Vec<Sql> {
    params
        .iter()
        .map(|p| match p {
            SqlValue::Null => Sql::Null,
            SqlValue::Integer(i) => Sql::Integer(*i),
            SqlValue::Text(t) => Sql::Text(t.clone()),
            SqlValue::Real(f) if f.is_finite() => Sql::Real(*f),
            SqlValue::Real(_) => Sql::Null,
        })
        .collect()
}

impl Db {
    /// An in-memory database with the migrations applied.
    pub fn memory() -> Result<Db, DbError> {
        Db::open(":memory:")
    }

    /// A database file (created when absent) with the migrations applied to a new one.
    pub fn open(path: &str) -> Result<Db, DbError> {
        let conn = Connection::open(path).map_err(|e| DbError(format!("open {path}: {e}")))?;
        let fresh: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'ops_incidents'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| DbError(e.to_string()))?;
        if fresh == 0 {
            for (name, sql) in MIGRATIONS {
                conn.execute_batch(sql)
                    .map_err(|e| DbError(format!("migration {name}: {e}")))?;
            }
        }
        // Replays write a lot; a crash loses the replay, never a production row.
        let _ = conn.execute_batch("PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF;");
        Ok(Db { conn })
    }

    /// Runs statements as one transaction and returns each one's rows as JSON objects (column
    /// name → value), as D1's `batch()` does.
    pub fn batch(&mut self, stmts: &[Statement]) -> Result<Vec<Vec<Value>>, DbError> {
        run_batch(&mut self.conn, stmts)
    }

    /// Runs one statement and decodes its rows.
    pub fn rows<T: DeserializeOwned>(&mut self, s: Statement) -> Result<Vec<T>, DbError> {
        let rows = self.batch(&[s])?.pop().unwrap_or_default();
        decode(rows)
    }

    /// One integer from ad-hoc SQL (tests and reports).
    pub fn scalar(&self, sql: &str) -> Result<i64, DbError> {
        self.conn
            .query_row(sql, [], |r| r.get(0))
            .map_err(|e| DbError(format!("{sql}: {e}")))
    }
}

/// [`Db::batch`] on any connection: the statements in one transaction, each one's rows as JSON
/// objects.
pub fn run_batch(conn: &mut Connection, stmts: &[Statement]) -> Result<Vec<Vec<Value>>, DbError> {
    let tx = conn.transaction().map_err(|e| DbError(e.to_string()))?;
    let mut out = Vec::with_capacity(stmts.len());
    for s in stmts {
        let mut st = tx
            .prepare_cached(s.sql)
            .map_err(|e| DbError(format!("prepare {}: {e}", s.sql)))?;
        let names: Vec<String> = st.column_names().iter().map(|n| n.to_string()).collect();
        let mut rows = st
            .query(params_from_iter(bind(&s.params)))
            .map_err(|e| DbError(format!("{}: {e}", s.sql)))?;
        let mut got = Vec::new();
        while let Some(r) = rows
            .next()
            .map_err(|e| DbError(format!("{}: {e}", s.sql)))?
        {
            let mut obj = Map::new();
            for (i, n) in names.iter().enumerate() {
                let v: Sql = r.get(i).map_err(|e| DbError(e.to_string()))?;
                obj.insert(
                    n.clone(),
                    match v {
                        Sql::Null | Sql::Blob(_) => Value::Null,
                        Sql::Integer(i) => json!(i),
                        Sql::Real(f) => json!(f),
                        Sql::Text(t) => json!(t),
                    },
                );
            }
            got.push(Value::Object(obj));
        }
        out.push(got);
    }
    tx.commit().map_err(|e| DbError(e.to_string()))?;
    Ok(out)
}

/// Decodes JSON rows into `T`.
pub fn decode<T: DeserializeOwned>(rows: Vec<Value>) -> Result<Vec<T>, DbError> {
    rows.into_iter()
        .map(|r| serde_json::from_value(r).map_err(|e| DbError(format!("decode row: {e}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_list_is_the_migrations_folder() {
        let mut files: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
                .expect("migrations dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|(n, _)| *n).collect();
        assert_eq!(files, listed);
        assert!(Db::memory().is_ok());
    }
}
