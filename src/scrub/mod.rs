//! Scrubbing: secrets and PII out of every text before it is stored, logged, put in a ticket or
//! an agent prompt.
//!
//! - [`scrub_text`]: free text (exception messages, stacks, log strings), rule table in
//!   [`rules::RULES`].
//! - [`scrub_url`]: userinfo replaced, query values replaced unless benign under a harmless key
//!   ([`benign_query_value`]: `page=2`, `sort=asc` stay), keys kept, path scrubbed.
//! - [`scrub_json`]: recursive; values under sensitive keys replaced whole; bounded depth.
//! - [`scrub_headers`]: allow-list of harmless request headers, everything else redacted.
//! - [`scrub_cf`]: only `colo`, `country`, `continent` survive.
//!
//! Replacements read `[redacted:<kind>]` (lower snake case, never digits: a message normalizer
//! runs afterwards and rewrites numbers). Remarks record the rule id and the byte range of the
//! replacement in the output, never the value.
//!
//! ## Methods
//! - `Replace` (default): `[redacted:kind]`.
//! - `Mask(hint)`: `[redacted:kind:hint]` where the hint is a digit-free, non-identifying
//!   summary computed from the value: the card network for credit cards (`visa`, `amex`), the
//!   country for IBANs (`de`). The classic "last four digits" mask is deliberately NOT used: it
//!   puts digits in the placeholder (the normalizer would rewrite them, and they would split
//!   otherwise identical messages), and it adds nothing to debugging an error.
//! - `Hash`: `[redacted:kind:<10 letters>]`, a salted SHA-256 prefix spelled with letters a–p,
//!   to correlate equal values without revealing them. The salt is public (compiled in), so it
//!   gives no protection against enumeration of small spaces; no built-in rule uses it.
//! - `Remove`: the value disappears (empty replacement; the remark has an empty range).
//!
//! ## Bounds
//! Text longer than [`MAX_TEXT_BYTES`] is cut first (at a char boundary, backing off to the last
//! whitespace so no token is cut in half and left unrecognisable) and gets [`TRUNCATION_MARKER`]
//! with an `@truncate` remark. Regexes are the `regex` crate's (linear time). Nothing indexes
//! input in a way that can panic.

mod engine;
pub mod entropy;
pub mod matchers;
pub mod prefilter;
pub mod rules;
mod structured;
pub mod validate;

pub use engine::{compile_rules, gated_rules, rule_regex_for, scrub_spans};
pub use structured::{
    HEADER_ALLOW_LIST, MAX_HEADERS, MAX_JSON_DEPTH, QUERY_SENSITIVE_KEYS, benign_query_value,
    cf_location, scrub_cf, scrub_headers, scrub_json, scrub_url,
};
pub use validate::{KeyClass, classify_key};

/// Texts longer than this are truncated before scrubbing.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// Appended to truncated text; covered by an `@truncate` remark.
pub const TRUNCATION_MARKER: &str = "…[truncated]";

/// How far back (bytes) truncation looks for whitespace to avoid cutting a token in half.
const TRUNCATE_BACKOFF: usize = 1024;

/// Byte range [start, end) in the *scrubbed output* covering a replacement, and the rule id that
/// fired (e.g. "@email", "@bearer", "@aws_access_key", "@password_kv", "@truncate").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Remark {
    /// Rule id, e.g. `@email`.
    pub rule: String,
    /// Byte offset in the scrubbed output where the replacement starts.
    pub start: usize,
    /// Byte offset in the scrubbed output where the replacement ends (exclusive).
    pub end: usize,
}

/// Scrubbed text and where the replacements are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Scrubbed {
    /// The text with every match replaced.
    pub text: String,
    /// One remark per replacement, in output order.
    pub remarks: Vec<Remark>,
}

impl Scrubbed {
    /// True when nothing was replaced or truncated.
    pub fn is_clean(&self) -> bool {
        self.remarks.is_empty()
    }
}

/// A remark on a structured field: `field` is a dotted path like
/// "logs[2].message[1].user.password" or "request.url". A remark about an object key itself
/// (a key that contained an email, say) has `#key` appended to the path. An `@truncate` remark
/// on a collection (`request.headers`, an event's `remarks`) counts entries instead of bytes:
/// `start` = entries kept, `end` = entries there were.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldRemark {
    /// Dotted path of the field.
    pub field: String,
    /// Rule id, e.g. `@password_kv`.
    pub rule: String,
    /// Byte offset in the field's scrubbed value where the replacement starts.
    pub start: usize,
    /// Byte offset where it ends (exclusive).
    pub end: usize,
}

/// How a rule replaces what it matched.
#[derive(Debug, Clone, Copy)]
pub enum Method {
    /// `[redacted:kind]`
    Replace,
    /// `[redacted:kind:hint]`, hint computed from the value (letters and `_` only, else plain
    /// replace).
    Mask(fn(&str) -> Option<String>),
    /// `[redacted:kind:<letters>]`, salted SHA-256 prefix.
    Hash,
    /// Empty replacement.
    Remove,
}

/// What a validator returns for an accepted candidate: the span to replace (it may narrow the
/// match) and optionally a refined (rule id, kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Byte offset in the input where the replaced span starts.
    pub start: usize,
    /// Byte offset where it ends (exclusive).
    pub end: usize,
    /// A more specific (rule id, kind) than the rule's own, e.g. `@password_kv` for `@secret_kv`.
    pub refine: Option<(&'static str, &'static str)>,
}

/// A validator: (whole text, captures, candidate span) -> accepted hit or rejection.
pub type Check = fn(&str, &regex_automata::util::captures::Captures, (usize, usize)) -> Option<Hit>;

/// A finder: a rule implemented in code instead of a pattern (the high-entropy token scan).
/// Pushes the accepted spans of `text` (byte offsets, on char boundaries) to the vector.
pub type Finder = fn(&str, &mut Vec<Hit>);

/// One scrubbing rule, declared as data (see [`rules::RULES`]).
///
/// Gate (what decides whether the rule runs at all on a text, before its regex is even
/// compiled): the rule runs when one of its `keywords` occurs in the text (ASCII
/// case-insensitive, one Aho-Corasick pass over the text for all rules, as gitleaks' keyword
/// prefilter) or its `scan` says yes; a rule with neither always runs. A gate must be a
/// necessary condition of a match: `tests/scrub_oracle_diff.rs` checks it on every corpus.
#[derive(Debug, Clone, Copy)]
pub struct RuleSpec {
    /// Remark id, e.g. "@email".
    pub id: &'static str,
    /// Placeholder kind, lower snake case, no digits.
    pub kind: &'static str,
    /// How the match is replaced.
    pub method: Method,
    /// `regex` crate syntax; groups named `s…` delimit the replaced part. Empty when `find` is set.
    pub pattern: &'static str,
    /// Validator that accepts, narrows or rejects a candidate (Luhn, mod 97, …); None = accept.
    pub check: Option<Check>,
    /// Literals of which at least one occurs in every match (ASCII case-insensitive).
    pub keywords: &'static [&'static str],
    /// Byte-class pre-check (digit runs, `://` and `@`, …), see [`prefilter::ScanKind`].
    pub scan: Option<prefilter::ScanKind>,
    /// Code instead of a pattern, see [`Finder`].
    pub find: Option<Finder>,
}

impl RuleSpec {
    /// A rule with a pattern and no gate yet (the table fills in `keywords` / `scan`).
    pub const fn new(
        id: &'static str,
        kind: &'static str,
        method: Method,
        pattern: &'static str,
        check: Option<Check>,
    ) -> Self {
        RuleSpec {
            id,
            kind,
            method,
            pattern,
            check,
            keywords: &[],
            scan: None,
            find: None,
        }
    }
}

/// Cuts `input` to at most [`MAX_TEXT_BYTES`]: `(kept, was_truncated)`.
pub(crate) fn bound(input: &str) -> (&str, bool) {
    if input.len() <= MAX_TEXT_BYTES {
        return (input, false);
    }
    let cut = input.floor_char_boundary(MAX_TEXT_BYTES);
    let head = input.get(..cut).unwrap_or("");
    // do not leave half a token behind (it might be a secret's prefix no rule recognises)
    let floor = cut.saturating_sub(TRUNCATE_BACKOFF);
    let cut = match head.rfind(char::is_whitespace) {
        Some(ws) if ws >= floor => ws,
        _ => cut,
    };
    (input.get(..cut).unwrap_or(""), true)
}

/// Texts of at most this many bytes are remembered by [`scrub_text`] (see [`memo_stats`]).
pub const MEMO_MAX_TEXT_BYTES: usize = 4096;

/// What the memo of [`scrub_text`] may hold: input plus output bytes (and a fixed 64 per entry
/// and 48 per remark) of every entry. Reaching it empties the memo.
pub const MEMO_BUDGET_BYTES: usize = 512 * 1024;

/// The memo of one thread (a Worker isolate has one): scrubbed text by input text.
#[derive(Default)]
struct Memo {
    map: std::collections::HashMap<Box<str>, Scrubbed>,
    bytes: usize,
    lookups: u64,
    hits: u64,
}

thread_local! {
    static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::new(Memo::default());
}

/// `(hits, lookups)` of this thread's [`scrub_text`] memo since the thread started: how many
/// texts were answered from it, of those that could be (at most [`MEMO_MAX_TEXT_BYTES`]).
/// For the benches' reports.
pub fn memo_stats() -> (u64, u64) {
    MEMO.try_with(|m| m.try_borrow().map_or((0, 0), |m| (m.hits, m.lookups)))
        .unwrap_or((0, 0))
}

/// Scrubs free text (exception messages, stack traces, log lines).
///
/// Each distinct text is scrubbed once per thread: the result (a pure function of the text) is
/// remembered for texts up to [`MEMO_MAX_TEXT_BYTES`], within [`MEMO_BUDGET_BYTES`]. The same
/// header values, hosts, URL paths, log lines and error messages recur across the TraceItems an
/// isolate sees and across the fields of one item (a logged error and the exception).
pub fn scrub_text(input: &str) -> Scrubbed {
    // a short run of letters is answered faster by the engine's own check than by a lookup
    if input.len() > MEMO_MAX_TEXT_BYTES
        || (input.len() < 20 && input.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        return scrub_uncached(input);
    }
    let hit = MEMO
        .try_with(|m| {
            let mut m = m.try_borrow_mut().ok()?;
            m.lookups += 1;
            let found = m.map.get(input).cloned();
            if found.is_some() {
                m.hits += 1;
            }
            found
        })
        .ok()
        .flatten();
    if let Some(hit) = hit {
        return hit;
    }
    let out = scrub_uncached(input);
    let _ = MEMO.try_with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            let cost = input.len() + out.text.len() + 64 + 48 * out.remarks.len();
            if m.bytes + cost > MEMO_BUDGET_BYTES {
                m.map.clear();
                m.bytes = 0;
            }
            m.bytes += cost;
            m.map.insert(input.into(), out.clone());
        }
    });
    out
}

/// [`scrub_text`] without the memo.
fn scrub_uncached(input: &str) -> Scrubbed {
    let (body, truncated) = bound(input);
    let mut out = engine::scrub_bounded(body);
    if truncated {
        let start = out.text.len();
        out.text.push_str(TRUNCATION_MARKER);
        out.remarks.push(Remark {
            rule: "@truncate".to_string(),
            start,
            end: out.text.len(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_is_untouched() {
        for s in [
            "",
            "TypeError: Cannot read properties of undefined (reading 'id')",
            "    at handler (worker.js:12:34)\n    at async Object.fetch (index.js:88:5)",
            "D1_ERROR: no such table: users (code 1) after 1234 ms at 2024-05-01T10:20:30.123Z",
            "KV put failed for key user:42:profile, status 503, request id 8f14e45fceea167a",
            "fetch https://api.example.com/v1/items?page=2 failed with 502",
            "Error: Network connection lost. cf-ray 8a1b2c3d4e5f6a7b-AMS",
            "std::collections::HashMap::new() panicked at src/lib.rs:10:5",
            "uuid 123e4567-e89b-12d3-a456-426614174000 not found",
            "sha 8f953371d3e85eddb89b05ed6b9e680791055315c73e1025ab5dba7bb2aee189",
            "Worker exceeded CPU time limit (50 ms), v1.2.3, build 20240501",
        ] {
            let out = scrub_text(s);
            assert_eq!(out.text, s, "remarks {:?}", out.remarks);
            assert!(out.is_clean());
        }
    }

    #[test]
    fn memo_answers_repeats_with_the_same_result() {
        let text = "login failed for memo-test@example.com, password=hunter2 (memo test)";
        let first = scrub_text(text);
        let (hits, lookups) = memo_stats();
        let again = scrub_text(text);
        assert_eq!(first, again);
        assert_eq!(first, scrub_uncached(text));
        assert_eq!(memo_stats(), (hits + 1, lookups + 1));
        // texts past the limit are not remembered (nor counted)
        let long = "x ".repeat(MEMO_MAX_TEXT_BYTES);
        assert_eq!(scrub_text(&long), scrub_uncached(&long));
        assert_eq!(memo_stats(), (hits + 1, lookups + 1));
    }

    #[test]
    fn remarks_point_at_replacements() {
        let s =
            "user bob@example.com from 203.0.113.9 with password=hunter2 and AKIALALEMEL33243OLIB";
        let out = scrub_text(s);
        assert_eq!(
            out.text,
            "user [redacted:email] from [redacted:ip] with password=[redacted:password] and [redacted:aws_access_key]"
        );
        let rules: Vec<&str> = out.remarks.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(
            rules,
            ["@email", "@ipv4", "@password_kv", "@aws_access_key"]
        );
        for r in &out.remarks {
            let slice = &out.text[r.start..r.end];
            assert!(
                slice.starts_with("[redacted:") && slice.ends_with(']'),
                "{slice}"
            );
        }
    }

    #[test]
    fn idempotent() {
        for s in [
            "password=hunter2 token: abc123def email a@b.io ip 10.1.2.3 card 4111111111111111",
            "Authorization: Bearer abcDEF123456xyz\nCookie: session=abc",
            r#"{"password":"x1","api_key":"abc123","user":"bob@example.com"}"#,
            "postgres://app:pw1@db:5432/x and +1 415 555 0132, IBAN DE89370400440532013000",
            "-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----",
            "2001:db8::1 fe80::1%eth0 00:1A:2B:3C:4D:5E",
        ] {
            let once = scrub_text(s);
            let twice = scrub_text(&once.text);
            assert_eq!(twice.text, once.text, "not idempotent: {:?}", twice.remarks);
            assert!(twice.remarks.is_empty(), "{:?}", twice.remarks);
        }
    }

    #[test]
    fn no_digits_in_placeholders() {
        let s = "4111 1111 1111 1111 GB82 WEST 1234 5698 7654 32 bob@example.com";
        let out = scrub_text(s);
        for r in &out.remarks {
            assert!(
                !out.text[r.start..r.end].bytes().any(|b| b.is_ascii_digit()),
                "{}",
                out.text
            );
        }
    }

    #[test]
    fn truncation() {
        let long = "a".repeat(MAX_TEXT_BYTES + 100);
        let out = scrub_text(&long);
        assert!(out.text.ends_with(TRUNCATION_MARKER));
        assert_eq!(out.text.len(), MAX_TEXT_BYTES + TRUNCATION_MARKER.len());
        let last = out.remarks.last().cloned();
        assert_eq!(
            last,
            Some(Remark {
                rule: "@truncate".into(),
                start: MAX_TEXT_BYTES,
                end: out.text.len()
            })
        );
        // multi-byte at the cut
        let multi = "é".repeat(MAX_TEXT_BYTES);
        let out = scrub_text(&multi);
        assert!(out.text.ends_with(TRUNCATION_MARKER));
        // a token straddling the cut is dropped whole, not left half-recognisable
        let mut s = "x ".repeat(MAX_TEXT_BYTES / 2 - 10);
        s.push_str("AKIALALEMEL33243OLIB AKIALALEMEL33243OLIB");
        let out = scrub_text(&s);
        assert!(
            !out.text.contains("AKIA"),
            "{}",
            &out.text[out.text.len() - 60..]
        );
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let mut inputs: Vec<String> = vec![
            "\u{0}\u{1}\u{feff}".into(),
            "🙂@🙂.🙂 password=🙂🙂 token:\u{200b}x".into(),
            "-----BEGIN PRIVATE KEY-----".into(),
            "::::::::::::::::::::".repeat(500),
            "4".repeat(20_000),
            "a@".repeat(10_000),
            "password=".repeat(3000),
            "1.1.1.1.".repeat(3000),
            "+1 ".repeat(6000),
            "é1-".repeat(6000),
            "Bearer ".repeat(3000),
            "\"password\": \"".repeat(2000),
        ];
        inputs.push(
            String::from_utf8_lossy(&[0xff, 0xfe, b'a', b'@', b'b', b'.', b'c', b'o']).into_owned(),
        );
        for s in &inputs {
            let out = scrub_text(s);
            for r in &out.remarks {
                assert!(r.start <= r.end && r.end <= out.text.len());
                assert!(out.text.is_char_boundary(r.start) && out.text.is_char_boundary(r.end));
            }
        }
    }

    #[test]
    fn design_formats() {
        let cases = [
            (
                "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_123",
                "Authorization: Bearer [redacted:jwt]",
            ),
            (
                "Set-Cookie: __Secure-sid=abc; HttpOnly",
                "Set-Cookie: [redacted:session_cookie]",
            ),
            (
                "secret = \"Zm9vYmFyYmF6cXV4\"",
                "secret = \"[redacted:secret]\"",
            ),
            (
                "mysql://root:toor@10.0.0.5/db",
                "mysql://[redacted:url_userinfo]@[redacted:ip]/db",
            ),
            (
                "xoxb-263594206564-FGqddMF8t08v8N7Oq4i57vs1 expired",
                "[redacted:slack_token] expired",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(scrub_text(input).text, want, "{input}");
        }
    }
}
