//! FROZEN COPY of `src/scrub/` as it was on main at 36d4eca (before issue 9), kept as the test
//! oracle of `tests/scrub_oracle_diff.rs`: that test lists every difference between this
//! scrubber and today's, rule by rule, on every corpus. Do not edit (only `scrub_spans` in
//! `engine.rs` was added, and the unit tests were dropped). One mechanical change since: the
//! crate no longer links regex's Unicode case-folding tables (tail wasm size), so the rules'
//! `(?xi)` flags are spelled `(?x)` with `(?i-u:…)` around each word and explicit upper-case
//! letters in classes and escapes (`[a-fA-F0-9]`, `\\[nrtNRT]`): the same matches on every text
//! except the two non-ASCII letters Unicode folds into ASCII ones (U+212A KELVIN SIGN into `k`,
//! U+017F LONG S into `s`). Original module docs follow.
//!
//! Scrubbing: secrets and PII out of every text before it is stored, logged, put in a ticket or
//! an agent prompt.
//!
//! - [`scrub_text`]: free text (exception messages, stacks, log strings), rule table in
//!   [`rules::RULES`].
//! - [`scrub_url`]: userinfo replaced, every query value replaced (keys kept), path scrubbed.
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
pub mod rules;
mod structured;
pub mod validate;

pub use engine::{compile_rules, scrub_spans};
pub use structured::{
    HEADER_ALLOW_LIST, MAX_HEADERS, MAX_JSON_DEPTH, scrub_cf, scrub_headers, scrub_json, scrub_url,
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
pub type Check = fn(&str, &regex::Captures, (usize, usize)) -> Option<Hit>;

/// One scrubbing rule, declared as data (see [`rules::RULES`]).
#[derive(Debug, Clone, Copy)]
pub struct RuleSpec {
    /// Remark id, e.g. "@email".
    pub id: &'static str,
    /// Placeholder kind, lower snake case, no digits.
    pub kind: &'static str,
    /// How the match is replaced.
    pub method: Method,
    /// `regex` crate syntax; groups named `s…` delimit the replaced part.
    pub pattern: &'static str,
    /// Validator that accepts, narrows or rejects a candidate (Luhn, mod 97, …); None = accept.
    pub check: Option<Check>,
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

/// Scrubs free text (exception messages, stack traces, log lines).
pub fn scrub_text(input: &str) -> Scrubbed {
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
