//! Glue shared by the three Workers (feature `workers`): D1 binding of [`Statement`]s, config from
//! Worker vars, one error type. No `#[event]` or `#[wasm_bindgen]` exports here, so any Worker
//! can link it.

use serde::de::DeserializeOwned;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result, Env};

use crate::store::{SqlValue, Statement};

/// Name of the D1 binding in every `wrangler.toml`.
pub const DB_BINDING: &str = "DB";
/// Name of the fix-jobs Queue binding (producer in `scheduled`, consumer in the agent-runner).
pub const QUEUE_BINDING: &str = "FIX_JOBS";

/// Errors of the Worker glue. `From<worker::Error>` lets `?` work on workers-rs calls.
#[derive(Debug)]
pub enum GlueError {
    /// A binding, D1 or Queue call failed.
    Worker(worker::Error),
    /// A var or secret is missing or invalid; the message names it.
    Config(String),
    /// D1 returned rows of an unexpected shape.
    Decode(String),
}

impl std::fmt::Display for GlueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GlueError::Worker(e) => write!(f, "worker: {e}"),
            GlueError::Config(m) => write!(f, "config: {m}"),
            GlueError::Decode(m) => write!(f, "decode: {m}"),
        }
    }
}

impl std::error::Error for GlueError {}

impl From<worker::Error> for GlueError {
    fn from(e: worker::Error) -> Self {
        GlueError::Worker(e)
    }
}

impl From<GlueError> for worker::Error {
    fn from(e: GlueError) -> Self {
        match e {
            GlueError::Worker(w) => w,
            other => worker::Error::RustError(other.to_string()),
        }
    }
}

/// Milliseconds since the Unix epoch, from the runtime's clock.
pub fn now_ms() -> i64 {
    // Date.now() is an integral f64 well inside i64.
    js_sys::Date::now() as i64
}

/// The runtime's `crypto` object and its method `name`, to call on it.
fn crypto_method(name: &str) -> Result<(JsValue, js_sys::Function), GlueError> {
    use wasm_bindgen::JsCast;
    let fail = |_| GlueError::Config(format!("crypto.{name} is unavailable"));
    let crypto =
        js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("crypto")).map_err(fail)?;
    let f = js_sys::Reflect::get(&crypto, &JsValue::from_str(name))
        .map_err(fail)?
        .dyn_into()
        .map_err(fail)?;
    Ok((crypto, f))
}

/// `crypto.randomUUID()` of the runtime (a random version-4 UUID), e.g. a lease id.
///
/// Errors: the runtime has no `crypto.randomUUID` (workerd always has it).
pub fn random_uuid() -> Result<String, GlueError> {
    let (crypto, f) = crypto_method("randomUUID")?;
    f.call0(&crypto)
        .ok()
        .and_then(|v| v.as_string())
        .ok_or_else(|| GlueError::Config("randomUUID returned no string".into()))
}

/// 32 bytes from the runtime's CSPRNG (`crypto.getRandomValues`, Web Crypto), e.g. for a
/// per-run token ([`crate::security::mint_run_token`]).
///
/// Errors: the runtime has no `crypto.getRandomValues` (workerd always has it).
pub fn random_bytes32() -> Result<[u8; 32], GlueError> {
    let (crypto, f) = crypto_method("getRandomValues")?;
    let buf = js_sys::Uint8Array::new_with_length(32);
    f.call1(&crypto, &buf)
        .map_err(|_| GlueError::Config("crypto.getRandomValues failed".into()))?;
    let mut out = [0u8; 32];
    buf.copy_to(&mut out);
    Ok(out)
}

/// A Worker var (or secret) as a string, `None` when unset or empty.
pub fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .or_else(|_| env.secret(name).map(|v| v.to_string()))
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// Binds a [`Statement`] to D1.
pub fn prepare(db: &D1Database, s: &Statement) -> Result<D1PreparedStatement, GlueError> {
    let values: Vec<JsValue> = s
        .params
        .iter()
        .map(|p| match p {
            SqlValue::Null => JsValue::NULL,
            // D1 takes JS numbers; store.rs only puts ids, counts and ms timestamps here (< 2^53).
            SqlValue::Integer(i) => JsValue::from_f64(*i as f64),
            SqlValue::Text(t) => JsValue::from_str(t),
            SqlValue::Real(f) if f.is_finite() => JsValue::from_f64(*f),
            SqlValue::Real(_) => JsValue::NULL,
        })
        .collect();
    Ok(db.prepare(s.sql).bind(&values)?)
}

/// Runs statements as one D1 `batch()`: one round trip, one transaction. Results in order.
pub async fn batch(db: &D1Database, stmts: &[Statement]) -> Result<Vec<D1Result>, GlueError> {
    if stmts.is_empty() {
        return Ok(Vec::new());
    }
    let prepared = stmts
        .iter()
        .map(|s| prepare(db, s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(db.batch(prepared).await?)
}

/// Runs one read and decodes its rows.
pub async fn query<T: DeserializeOwned>(
    db: &D1Database,
    s: &Statement,
) -> Result<Vec<T>, GlueError> {
    let result = prepare(db, s)?.all().await?;
    rows(&result)
}

/// Decodes the rows of a D1 result.
pub fn rows<T: DeserializeOwned>(result: &D1Result) -> Result<Vec<T>, GlueError> {
    result
        .results::<T>()
        .map_err(|e| GlueError::Decode(e.to_string()))
}

/// A read statement without parameters.
pub fn sql(sql: &'static str) -> Statement {
    Statement {
        sql,
        params: Vec::new(),
    }
}

/// A read statement with parameters.
pub fn sql_with(sql: &'static str, params: Vec<SqlValue>) -> Statement {
    Statement { sql, params }
}
