//! Fingerprints: the identity of an incident.
//!
//! A fingerprint is `sha256` over a versioned, length-prefixed tuple of components (the idea of
//! Sentry's grouping "fingerprint" and its versioned grouping configs). The components are kept next
//! to the hash so a person can see why two events grouped. Changing the recipe bumps
//! [`FINGERPRINT_VERSION`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the recipe below; part of the hashed tuple, stored with each incident.
///
/// History: 1, the first recipe. 2, [`crate::normalize::normalize_message`] keeps a quoted
/// JavaScript identifier in V8's identifier slots (`(reading 'email')` no longer equals
/// `(reading 'id')`), takes a JSON excerpt (`"{…" is not valid JSON`) as one `<quoted>` value
/// instead of normalizing it as a sentence, pairs JSON-escaped quotes (`\"…\"`) inside a
/// quoted sentence, and adds the value families of issue 12 §2 (dates, durations, trace ids, …).
pub const FINGERPRINT_VERSION: u32 = 2;

/// What an incident groups on. All strings are already scrubbed and normalized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Components {
    /// Recipe version ([`FINGERPRINT_VERSION`] when computed here).
    pub version: u32,
    /// Worker name (the configured name when the runtime gives null).
    pub script: String,
    /// Route pattern (`/users/:id`), or the event kind for non-fetch events (`scheduled */5 * * * *`, `queue jobs`).
    pub route: String,
    /// Exception class (`TypeError`), or a synthetic type: `RustPanic`, `ConsoleError`, `HttpStatus`, an outcome name.
    pub exception_type: String,
    /// Normalized message with typed placeholders (`Cannot read properties of undefined (reading <quoted>)`).
    pub message: String,
    /// Top in-app frame key, `function (file)` without line/column; empty when there is none.
    pub top_frame: String,
    /// Status code class: `5xx`, `4xx`, `2xx`, … or `none` when no response was sent.
    pub status_class: String,
}

impl Components {
    /// The fingerprint: lowercase hex of the first 16 bytes (128 bits) of
    /// `sha256("selfheal-fp" ‖ len(v) ‖ v ‖ len(c1) ‖ c1 ‖ …)` with lengths as u32 big-endian.
    /// Length prefixes make `("ab","c")` and `("a","bc")` hash differently.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"selfheal-fp");
        let version = self.version.to_string();
        for part in [
            version.as_str(),
            &self.script,
            &self.route,
            &self.exception_type,
            &self.message,
            &self.top_frame,
            &self.status_class,
        ] {
            // Components are bounded well below 4 GiB by the pipeline; saturate rather than wrap.
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            h.update(len.to_be_bytes());
            h.update(part.as_bytes());
        }
        hex(&h.finalize()[..16])
    }
}

/// `2xx`…`5xx` for a status code, `none` when there was no response.
pub fn status_class(status: Option<u16>) -> String {
    match status {
        Some(s) if (100..600).contains(&s) => format!("{}xx", s / 100),
        Some(_) => "other".to_string(),
        None => "none".to_string(),
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> Components {
        Components {
            version: 1,
            script: "api".into(),
            route: "/users/:id".into(),
            exception_type: "TypeError".into(),
            message: "x is undefined".into(),
            top_frame: "Object.fetch (src/index.js)".into(),
            status_class: "none".into(),
        }
    }

    #[test]
    fn stable_and_sensitive_to_every_component() {
        let base = c().fingerprint();
        assert_eq!(base.len(), 32);
        assert_eq!(base, c().fingerprint());
        type Edit = Box<dyn Fn(&mut Components)>;
        let variants: Vec<Edit> = vec![
            Box::new(|c| c.version = 2),
            Box::new(|c| c.script = "api2".into()),
            Box::new(|c| c.route = "/users".into()),
            Box::new(|c| c.exception_type = "Error".into()),
            Box::new(|c| c.message = "y is undefined".into()),
            Box::new(|c| c.top_frame = String::new()),
            Box::new(|c| c.status_class = "5xx".into()),
        ];
        for v in variants {
            let mut x = c();
            v(&mut x);
            assert_ne!(x.fingerprint(), base);
        }
    }

    #[test]
    fn length_prefix_prevents_shifting() {
        let mut a = c();
        a.script = "ab".into();
        a.route = "c".into();
        let mut b = c();
        b.script = "a".into();
        b.route = "bc".into();
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(Some(500)), "5xx");
        assert_eq!(status_class(Some(404)), "4xx");
        assert_eq!(status_class(None), "none");
        assert_eq!(status_class(Some(42)), "other");
    }
}
