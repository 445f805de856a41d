//! The agent-runner API's guards, as plain functions (tested natively; the Worker only calls them).
//!
//! - **Constant-time comparison** of every secret ([`ct_eq`], on the `subtle` crate's
//!   `ConstantTimeEq`): the API token, per-run tokens (their SHA-256), webhook and intake
//!   signatures. Only the lengths may leak, and those are public (a bearer header's shape, a hex
//!   digest's size).
//! - **Tokens only in headers** ([`secret_in_query`]): a URL ends up in logs, proxies, browser
//!   history and `Referer` headers (RFC 6750 §5.3: "Bearer tokens SHOULD NOT be passed in page
//!   URLs"; OWASP REST Security Cheat Sheet), so a request carrying a credential-like query
//!   parameter is refused with 400 before anything else happens, even when the header is right.
//! - **Body limits** ([`body_limit`]): every POST route has a largest body; past it the request
//!   gets 413 before its body is parsed, and nothing is stored.
//! - **Per-run tokens** ([`mint_run_token`], [`RunScope`]): a hosted agent (webhook handover) gets
//!   a token that can only report the run it was handed: `POST /api/runs/{id}/heartbeat` and
//!   `/result` of that id, while that run still holds the lease the token was minted with. D1
//!   keeps only the token's SHA-256 (`run_tokens`, migration 0006), so a database read does not
//!   yield a usable token.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::fingerprint::hex;

/// Compares two secrets in constant time for equal lengths (`subtle::ConstantTimeEq`: no early
/// exit on the first differing byte, no data-dependent branch). Different lengths return `false`
/// at once: lengths are not secret here.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Whether an `Authorization` header value is exactly `Bearer <token>` (constant time).
pub fn bearer_is(header: Option<&str>, token: &str) -> bool {
    match header.and_then(|h| h.strip_prefix("Bearer ")) {
        Some(given) => ct_eq(given.as_bytes(), token.as_bytes()),
        None => false,
    }
}

/// The token of an `Authorization: Bearer <token>` header, if it has that shape.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    header
        .and_then(|h| h.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
}

/// Query parameter names that carry credentials in the wild (OAuth's `access_token`, API gateways'
/// `api_key`/`apikey`/`key`, signed URLs' `sig`/`signature`, …), compared case-insensitively.
/// Any name containing `token`, `secret`, `password` or `passwd` counts as well.
pub const CREDENTIAL_QUERY_KEYS: &[&str] = &[
    "auth",
    "authorization",
    "bearer",
    "key",
    "api_key",
    "apikey",
    "api-key",
    "sig",
    "signature",
    "jwt",
    "session",
    "code",
];

/// The first query parameter of `query` (the part after `?`, without it) that looks like a
/// credential, by name (see [`CREDENTIAL_QUERY_KEYS`]); `None` when there is none. Names are
/// percent-decoded for ASCII only; a malformed escape is kept as is.
pub fn secret_in_query(query: &str) -> Option<String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split('=').next().unwrap_or_default())
        .map(percent_decode_ascii)
        .find(|name| {
            let n = name.to_ascii_lowercase();
            CREDENTIAL_QUERY_KEYS.contains(&n.as_str())
                || ["token", "secret", "password", "passwd"]
                    .iter()
                    .any(|w| n.contains(w))
        })
}

fn percent_decode_ascii(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let c = b.get(i).copied().unwrap_or_default();
        let decoded = (c == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(u8::is_ascii);
        match decoded {
            Some(d) => {
                out.push(char::from(d));
                i += 3;
            }
            None => {
                out.push(if c == b'+' { ' ' } else { char::from(c) });
                i += 1;
            }
        }
    }
    out
}

/// Largest body of `POST /api/runs/lease` (`{owner, ttl_secs}`), bytes.
pub const MAX_LEASE_BODY_BYTES: usize = 4 * 1024;
/// Largest body of `POST /api/runs/{id}/heartbeat`, bytes.
pub const MAX_HEARTBEAT_BODY_BYTES: usize = 4 * 1024;
/// Largest body of `POST /api/runs/{id}/result` (diagnosis and evidence included), bytes.
pub const MAX_RESULT_BODY_BYTES: usize = 32 * 1024;
/// Largest body of `POST /api/incidents/{id}/label`, bytes.
pub const MAX_LABEL_BODY_BYTES: usize = 16 * 1024;
/// Largest body of any other POST (an unknown route still gets 413 before its 404), bytes.
pub const MAX_OTHER_BODY_BYTES: usize = 4 * 1024;

/// The body limit of a POST to `path`, bytes (one constant per route above).
pub fn body_limit(path: &str) -> usize {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        ["", "api", "runs", "lease"] => MAX_LEASE_BODY_BYTES,
        ["", "api", "runs", _, "heartbeat"] => MAX_HEARTBEAT_BODY_BYTES,
        ["", "api", "runs", _, "result"] => MAX_RESULT_BODY_BYTES,
        ["", "api", "incidents", _, "label"] => MAX_LABEL_BODY_BYTES,
        _ => MAX_OTHER_BODY_BYTES,
    }
}

/// Whether a declared `Content-Length` is already over `limit` (an unparsable one is left to the
/// read, which is capped too).
pub fn declared_over(content_length: Option<&str>, limit: usize) -> bool {
    content_length
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

/// Prefix of every per-run token (so a log line or a leaked value is recognisable, as GitHub's
/// `ghp_` tokens are).
pub const RUN_TOKEN_PREFIX: &str = "shr_";

/// A per-run token and the SHA-256 D1 keeps of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedToken {
    /// `shr_` + 64 lowercase hex: handed to the hosted agent once, never stored.
    pub token: String,
    /// [`token_hash`] of it: what `run_tokens.token_hash` holds.
    pub hash: String,
}

/// Builds a per-run token from 32 bytes of the runtime's CSPRNG (`crypto.getRandomValues` in a
/// Worker; the caller passes them in, this crate has no randomness of its own).
pub fn mint_run_token(random: &[u8; 32]) -> MintedToken {
    let token = format!("{RUN_TOKEN_PREFIX}{}", hex(random));
    let hash = token_hash(&token);
    MintedToken { token, hash }
}

/// Lowercase hex SHA-256 of a token (what D1 keeps; 64 characters).
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Whether a presented token is the one whose hash is stored (constant time on the hashes).
pub fn run_token_matches(presented: &str, stored_hash: &str) -> bool {
    ct_eq(token_hash(presented).as_bytes(), stored_hash.as_bytes())
}

/// What a per-run token may do: report the run it was minted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunScope {
    /// `fix_runs.id` in the path.
    pub run_id: i64,
}

impl RunScope {
    /// The run a request reports on, when it is one a per-run token may make:
    /// `POST /api/runs/{id}/heartbeat` or `POST /api/runs/{id}/result`. Everything else (reads,
    /// leases, labels, another method) is `None`: a per-run token is refused there.
    pub fn of(is_post: bool, path: &str) -> Option<RunScope> {
        if !is_post {
            return None;
        }
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match parts.as_slice() {
            ["", "api", "runs", id, "heartbeat" | "result"] => {
                id.parse().ok().map(|run_id| RunScope { run_id })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_and_bearer() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(bearer_is(Some("Bearer s3cret"), "s3cret"));
        assert!(!bearer_is(Some("Bearer s3cre"), "s3cret"));
        assert!(!bearer_is(Some("bearer s3cret"), "s3cret"));
        assert!(!bearer_is(Some("s3cret"), "s3cret"));
        assert!(!bearer_is(None, "s3cret"));
        assert_eq!(bearer(Some("Bearer shr_ab")), Some("shr_ab"));
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("Basic x")), None);
    }

    #[test]
    fn credentials_in_the_query_are_found_by_name() {
        for q in [
            "token=x",
            "a=1&api_token=x",
            "access_token=x",
            "ACCESS_TOKEN=x",
            "acc%65ss_token=x",
            "api_key=x",
            "apikey=1",
            "client_secret=x",
            "password=x",
            "sig=abc",
            "Authorization=Bearer%20x",
            "id_token",
        ] {
            assert!(secret_in_query(q).is_some(), "{q}");
        }
        for q in [
            "",
            "page=2",
            "limit=10&offset=5",
            "state=open",
            "tok=1",
            "keys_only=1",
        ] {
            assert_eq!(secret_in_query(q), None, "{q}");
        }
        assert_eq!(
            secret_in_query("a=1&Access_Token=x").as_deref(),
            Some("Access_Token")
        );
    }

    #[test]
    fn every_post_route_has_its_limit() {
        assert_eq!(body_limit("/api/runs/lease"), MAX_LEASE_BODY_BYTES);
        assert_eq!(
            body_limit("/api/runs/7/heartbeat"),
            MAX_HEARTBEAT_BODY_BYTES
        );
        assert_eq!(body_limit("/api/runs/7/result/"), MAX_RESULT_BODY_BYTES);
        assert_eq!(body_limit("/api/incidents/3/label"), MAX_LABEL_BODY_BYTES);
        assert_eq!(body_limit("/api/whatever"), MAX_OTHER_BODY_BYTES);
        assert!(declared_over(Some("32769"), MAX_RESULT_BODY_BYTES));
        assert!(!declared_over(Some("32768"), MAX_RESULT_BODY_BYTES));
        assert!(!declared_over(Some("nope"), 10));
        assert!(!declared_over(None, 10));
    }

    #[test]
    fn run_tokens_are_stored_as_hashes_and_scoped_to_their_run() {
        let m = mint_run_token(&[7u8; 32]);
        assert!(m.token.starts_with(RUN_TOKEN_PREFIX));
        assert_eq!(m.token.len(), RUN_TOKEN_PREFIX.len() + 64);
        assert_eq!(m.hash.len(), 64);
        assert!(!m.hash.contains(&m.token[RUN_TOKEN_PREFIX.len()..]));
        assert!(run_token_matches(&m.token, &m.hash));
        assert!(!run_token_matches(&m.hash, &m.hash));
        assert_ne!(mint_run_token(&[8u8; 32]).hash, m.hash);
        // Known answer: sha256("abc") (FIPS 180-2, appendix B.1).
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            RunScope::of(true, "/api/runs/12/result"),
            Some(RunScope { run_id: 12 })
        );
        assert_eq!(
            RunScope::of(true, "/api/runs/12/heartbeat/"),
            Some(RunScope { run_id: 12 })
        );
        for (post, p) in [
            (true, "/api/runs/lease"),
            (false, "/api/runs/12/result"),
            (false, "/api/runs"),
            (true, "/api/incidents/1/label"),
            (true, "/api/runs/x/result"),
        ] {
            assert_eq!(RunScope::of(post, p), None, "{p}");
        }
    }
}
