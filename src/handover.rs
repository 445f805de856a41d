//! How the agent-runner hands a ready fix run to a fixer agent, and the signature of webhook
//! deliveries.
//!
//! Modes (`SELFHEAL_HANDOVER`): [`Handover::Local`] (default: the run waits, `ready`, for
//! `selfheal fix` on the owner's machine), [`Handover::Copilot`] (the GitHub issue is assigned to
//! the Copilot coding agent, see [`crate::github::assign_copilot`]) and [`Handover::Webhook`] (the
//! task JSON is POSTed to a URL). All three carry the same agent-neutral task
//! ([`crate::ticket::task`]).
//!
//! Webhook signature: `x-selfheal-timestamp: <UTC epoch seconds>` and
//! `x-selfheal-signature: sha256=<lowercase hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`,
//! the scheme of Stripe's and the Standard Webhooks signatures (timestamp inside the MAC, so a
//! captured delivery cannot be replayed later; receivers reject timestamps older than
//! [`SIGNATURE_TOLERANCE_SECS`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::ConfigError;
use crate::fingerprint::hex;

/// Header with the signing time, UTC epoch seconds.
pub const TIMESTAMP_HEADER: &str = "x-selfheal-timestamp";
/// Header with `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-selfheal-signature";
/// How old (or how far in the future) a signed timestamp may be, in seconds.
pub const SIGNATURE_TOLERANCE_SECS: u64 = 300;

/// Who fixes a ready run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// The run stays `ready` until `selfheal fix` leases it.
    Local,
    /// Assign the tracker's GitHub issue to the Copilot coding agent.
    Copilot {
        /// Branch the agent starts from (`SELFHEAL_BASE_BRANCH`, default `main`).
        base_branch: String,
    },
    /// POST the signed task to a URL.
    Webhook {
        /// `https://…` (or `http://` for local testing).
        url: String,
        /// HMAC key (`SELFHEAL_WEBHOOK_SECRET`), at least 16 bytes.
        secret: String,
    },
}

impl Handover {
    /// Builds the mode from the Worker vars `SELFHEAL_HANDOVER` (`local` | `copilot` |
    /// `webhook`, default `local`), `SELFHEAL_BASE_BRANCH`, `SELFHEAL_WEBHOOK_URL` and the secret
    /// `SELFHEAL_WEBHOOK_SECRET`.
    ///
    /// Errors: an unknown mode; webhook without an http(s) URL or with a secret under 16 bytes.
    pub fn from_vars(
        mode: Option<&str>,
        base_branch: Option<&str>,
        webhook_url: Option<&str>,
        webhook_secret: Option<&str>,
    ) -> Result<Handover, ConfigError> {
        fn nonempty(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|s| !s.is_empty())
        }
        match nonempty(mode).unwrap_or("local") {
            "local" => Ok(Handover::Local),
            "copilot" => Ok(Handover::Copilot {
                base_branch: nonempty(base_branch).unwrap_or("main").to_string(),
            }),
            "webhook" => {
                let url = nonempty(webhook_url)
                    .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
                    .ok_or_else(|| {
                        ConfigError("SELFHEAL_WEBHOOK_URL must be an http(s) URL".into())
                    })?;
                let secret = nonempty(webhook_secret)
                    .filter(|s| s.len() >= 16)
                    .ok_or_else(|| {
                        ConfigError("SELFHEAL_WEBHOOK_SECRET must be at least 16 bytes".into())
                    })?;
                Ok(Handover::Webhook {
                    url: url.to_string(),
                    secret: secret.to_string(),
                })
            }
            other => Err(ConfigError(format!(
                "SELFHEAL_HANDOVER must be local, copilot or webhook, got {other:?}"
            ))),
        }
    }
}

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length: new_from_slice cannot fail for Hmac<Sha256>.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The [`SIGNATURE_HEADER`] value for `body` signed at `timestamp` (UTC epoch seconds).
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex(&mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Why a delivery's signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// The timestamp header is missing or not a number.
    BadTimestamp,
    /// The timestamp is more than [`SIGNATURE_TOLERANCE_SECS`] away from now.
    Stale,
    /// The signature header is missing or not `sha256=<64 hex>`.
    Malformed,
    /// The MAC does not match.
    Mismatch,
}

/// Checks a delivery as a receiver does: timestamp within tolerance of `now_secs`, then the MAC
/// in constant time.
///
/// Errors: see [`SignatureError`].
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: u64,
) -> Result<(), SignatureError> {
    let ts: u64 = timestamp
        .and_then(|t| t.trim().parse().ok())
        .ok_or(SignatureError::BadTimestamp)?;
    if ts.abs_diff(now_secs) > SIGNATURE_TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let hex_sig = signature
        .and_then(|s| s.trim().strip_prefix("sha256="))
        .filter(|h| h.len() == 64)
        .ok_or(SignatureError::Malformed)?;
    let bytes: Option<Vec<u8>> = (0..32)
        .map(|i| u8::from_str_radix(hex_sig.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let bytes = bytes.ok_or(SignatureError::Malformed)?;
    mac(secret, ts, body)
        .verify_slice(&bytes)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_from_vars() {
        assert_eq!(
            Handover::from_vars(None, None, None, None),
            Ok(Handover::Local)
        );
        assert_eq!(
            Handover::from_vars(Some("copilot"), None, None, None),
            Ok(Handover::Copilot {
                base_branch: "main".into()
            })
        );
        let secret = "0123456789abcdef";
        assert!(matches!(
            Handover::from_vars(
                Some("webhook"),
                None,
                Some("https://x.test/h"),
                Some(secret)
            ),
            Ok(Handover::Webhook { .. })
        ));
        assert!(Handover::from_vars(Some("webhook"), None, Some("x.test"), Some(secret)).is_err());
        assert!(
            Handover::from_vars(Some("webhook"), None, Some("https://x"), Some("short")).is_err()
        );
        assert!(Handover::from_vars(Some("devin"), None, None, None).is_err());
    }

    #[test]
    fn known_answer() {
        // Expected value computed independently with Python's standard library:
        // hmac.new(b"Jefe", b"0.what do ya want for nothing?", hashlib.sha256).hexdigest()
        assert_eq!(
            sign(b"Jefe", 0, b"what do ya want for nothing?"),
            "sha256=37f471929915ccd2cbbe79feb84ffcff4f2bb25e15fc41c2506687331ae179cc"
        );
    }

    #[test]
    fn sign_then_verify_and_every_rejection() {
        let (key, body) = (
            b"0123456789abcdef".as_slice(),
            br#"{"version":1}"#.as_slice(),
        );
        let sig = sign(key, 1000, body);
        assert_eq!(verify(key, Some("1000"), Some(&sig), body, 1100), Ok(()));
        assert_eq!(
            verify(key, Some("1000"), Some(&sig), b"{\"version\":2}", 1100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"another key 1234", Some("1000"), Some(&sig), body, 1100),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is inside the MAC: moving it breaks the signature.
        assert_eq!(
            verify(key, Some("1001"), Some(&sig), body, 1100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                key,
                Some("1000"),
                Some(&sig),
                body,
                1000 + SIGNATURE_TOLERANCE_SECS + 1
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(key, None, Some(&sig), body, 1000),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            verify(key, Some("1000"), Some("sha1=abc"), body, 1000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(
                key,
                Some("1000"),
                Some(&format!("sha256={}", "zz".repeat(32))),
                body,
                1000
            ),
            Err(SignatureError::Malformed)
        );
    }
}
