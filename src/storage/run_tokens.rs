//! Per-run tokens of hosted handovers (`run_tokens`, migration 0006; the guards are in
//! [`crate::security`]).
//!
//! The token is minted in the same D1 batch as the lease ([`lease_with_token`]), so a run is never
//! handed over without one, and a token never exists for a lease that was not taken. It is valid
//! while its run holds the lease it was minted with and that lease has not expired
//! ([`SELECT_RUN_TOKEN`]): finishing, expiring or re-leasing the run kills it.

use crate::store::{self, Statement};

/// Index of the lease's read-back in [`lease_with_token`] (the same as in
/// [`store::lease_statements`]).
pub const LEASE_READBACK_INDEX: usize = store::LEASE_READBACK_INDEX;

/// [`store::lease_statements`] followed by the insert of the token hash for the run this lease
/// took (nothing when no run was leased). Times in ms since the epoch; `token_hash` is
/// [`crate::security::token_hash`] of the token handed to the agent.
pub fn lease_with_token(
    lease_id: &str,
    owner: &str,
    now_ms: i64,
    ttl_ms: i64,
    token_hash: &str,
    caps: &crate::fixing::caps::Caps,
) -> Vec<Statement> {
    let mut stmts = store::lease_statements_capped(lease_id, owner, now_ms, ttl_ms, caps);
    stmts.push(Statement::new(
        "INSERT INTO run_tokens (token_hash, run_id, lease_id, expires_at, created_at) \
         SELECT ?1, id, lease_id, lease_expires_at, ?3 FROM fix_runs WHERE lease_id = ?2",
        vec![token_hash.into(), lease_id.into(), now_ms.into()],
    ));
    stmts
}

/// The live token hashes of run `?1` at `?2` (ms): rows `{token_hash, lease_id}`. The caller
/// compares the presented token's hash with each in constant time
/// ([`crate::security::run_token_matches`]).
pub const SELECT_RUN_TOKEN: &str = "SELECT t.token_hash, t.lease_id FROM run_tokens t \
     JOIN fix_runs r ON r.id = t.run_id AND r.lease_id = t.lease_id \
     WHERE t.run_id = ?1 AND r.state IN ('leased', 'fixing') AND r.lease_expires_at >= ?2";

/// A row of [`SELECT_RUN_TOKEN`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct RunTokenRow {
    /// Lowercase hex SHA-256 of the token.
    pub token_hash: String,
    /// The lease the token was minted with.
    pub lease_id: String,
}
