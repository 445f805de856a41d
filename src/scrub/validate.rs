//! Validators ("checks") that cut the false positives of the patterns in [`super::rules`], the
//! sensitive-key classifier shared by free text and JSON, and the mask helpers.
//!
//! Every function here works on `&str` with `get`/`chars`, never indexing that can panic.

use regex_automata::util::captures::Captures;

use super::Hit;

// ------------------------------------------------------------------ small helpers

/// The char just before byte `i` (None at the start or off a boundary).
pub(crate) fn char_before(text: &str, i: usize) -> Option<char> {
    text.get(..i).and_then(|s| s.chars().next_back())
}

/// The char starting at byte `i`.
pub(crate) fn char_at(text: &str, i: usize) -> Option<char> {
    text.get(i..).and_then(|s| s.chars().next())
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn hit(start: usize, end: usize) -> Option<Hit> {
    Some(Hit {
        start,
        end,
        refine: None,
    })
}

fn has_ascii_alnum(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_alphanumeric())
}

/// Values that stand for "no secret here": empty, null-ish, runtime redaction markers, our own
/// placeholders, template variables.
pub(crate) fn is_placeholder(value: &str) -> bool {
    let v = value.trim();
    if v.is_empty() || !has_ascii_alnum(v) {
        return true;
    }
    let lower = v.to_ascii_lowercase();
    if lower.starts_with("[redacted")
        || lower.starts_with("[truncated")
        || lower.starts_with("[filtered")
    {
        return true;
    }
    if matches!(
        lower.as_str(),
        "null"
            | "undefined"
            | "none"
            | "nil"
            | "true"
            | "false"
            | "redacted"
            | "<redacted>"
            | "***"
            | "[]"
            | "{}"
    ) {
        return true;
    }
    // ${VAR}, {{ var }}, <placeholder>, $VAR, %s
    let tmpl = (v.starts_with("${") || v.starts_with("{{") || v.starts_with("$("))
        && (v.ends_with('}') || v.ends_with(')'));
    let angle = v.starts_with('<') && v.ends_with('>');
    let var = v
        .strip_prefix('$')
        .is_some_and(|r| r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    tmpl || angle || var || v == "%s"
}

/// A stand-in value, not a secret: mostly one filler character (`ghp_xxxx…`, `AKIAXXXX…`,
/// `glc_1111…`, `****`: at least 60% of it one of `x X * # 0 1 .`). This is what gitleaks'
/// per-rule entropy floors keep out; it applies to the token shape rules ([`filler_checked`]),
/// not to values under a credential key (sensitive by key, whatever they look like), never to
/// cards, IBANs or phone numbers (`4111 1111 1111 1111` is a real
/// test card).
pub fn is_filler(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() < 8 {
        return false;
    }
    let most = [b'x', b'X', b'*', b'#', b'0', b'1', b'.']
        .iter()
        .map(|f| b.iter().filter(|c| *c == f).count())
        .max()
        .unwrap_or(0);
    most * 10 >= b.len() * 6
}

/// An alphabet or digit run (`abcdefgh…`, `0123456789…`): at least 40% of adjacent pairs ascend
/// by one (detect-secrets' sequential-string filter). Used by the entropy finder only: the shape
/// rules' test corpora use such values as positives (`12345678-ABCD-…`).
pub fn is_sequential(v: &[u8]) -> bool {
    if v.len() < 8 {
        return false;
    }
    let ascending = v
        .windows(2)
        .filter(|w| w[0].is_ascii_alphanumeric() && w[1] == w[0].wrapping_add(1))
        .count();
    ascending * 10 >= (v.len() - 1) * 4
}

/// The rules whose candidates are dropped when [`is_filler`].
pub const FILLER_CHECKED: &[&str] = &[
    "@bearer",
    "@aws_access_key",
    "@aws_secret_key",
    "@github_token",
    "@stripe_key",
    "@slack_token",
    "@google_api_key",
    "@anthropic_key",
    "@openai_key",
    "@cloudflare_token",
    "@vendor_token",
    "@vendor_context",
    "@bundler_credential",
    "@high_entropy",
];

/// Whether rule `id` drops filler values ([`FILLER_CHECKED`]).
pub fn filler_checked(id: &str) -> bool {
    FILLER_CHECKED.contains(&id)
}

/// Trims closing brackets that do not belong to the value (`(password=abc)` -> `abc`).
fn trim_unbalanced_closers(value: &str) -> &str {
    let mut v = value;
    loop {
        let Some(last) = v.chars().next_back() else {
            return v;
        };
        let open = match last {
            ')' => '(',
            ']' => '[',
            '}' => '{',
            '>' => '<',
            '.' | ':' => {
                // a sentence ending right after the value
                v = &v[..v.len() - 1];
                continue;
            }
            _ => return v,
        };
        let closes = v.chars().filter(|&c| c == last).count();
        let opens = v.chars().filter(|&c| c == open).count();
        if closes > opens {
            v = &v[..v.len() - last.len_utf8()];
        } else {
            return v;
        }
    }
}

// ------------------------------------------------------------------ generic checks

/// A token-looking value: long enough and not a plain word (digits or mixed case present).
pub(crate) fn token_like(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let v = text.get(span.0..span.1)?;
    if looks_random(v) {
        hit(span.0, span.1)
    } else {
        None
    }
}

/// Heuristic "this is not an English word": has a digit, or upper and lower case past the first
/// char, or is long; and is not one repeated character.
pub(crate) fn looks_random(v: &str) -> bool {
    let mut chars = v.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if v.chars()
        .all(|c| c == first || c == 'X' || c == 'x' || c == '*')
    {
        return false;
    }
    let digit = v.bytes().any(|b| b.is_ascii_digit());
    let upper = v.bytes().skip(1).any(|b| b.is_ascii_uppercase());
    let lower = v.bytes().any(|b| b.is_ascii_lowercase());
    digit || (upper && lower)
}

pub(crate) fn not_placeholder(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let v = text.get(span.0..span.1)?;
    if is_placeholder(v) {
        None
    } else {
        hit(span.0, span.1)
    }
}

pub(crate) fn not_followed_by_base64(
    text: &str,
    _c: &Captures,
    span: (usize, usize),
) -> Option<Hit> {
    match char_at(text, span.1) {
        Some(c) if c.is_ascii_alphanumeric() || c == '/' || c == '+' || c == '=' => None,
        _ => hit(span.0, span.1),
    }
}

// ------------------------------------------------------------------ credentials

/// Minimal base64 decoder (standard alphabet, optional padding); None on invalid input.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// `Basic <b64>` must decode to `user:password`.
pub(crate) fn basic_credentials(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let v = text.get(span.0..span.1)?;
    let decoded = base64_decode(v)?;
    if decoded.contains(&b':') {
        hit(span.0, span.1)
    } else {
        None
    }
}

/// Padded base64 that decodes to printable `user:password` (Kubernetes secrets, env files).
pub(crate) fn base64_credentials(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let v = text.get(span.0..span.1)?;
    let decoded = base64_decode(v)?;
    let s = std::str::from_utf8(&decoded).ok()?;
    let (user, pass) = s.split_once(':')?;
    let printable = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_graphic());
    if printable(user) && printable(pass) {
        hit(span.0, span.1)
    } else {
        None
    }
}

/// Bundler credentials (`BUNDLE_GEMS__EXAMPLE__COM=user:pass`).
pub(crate) fn has_colon(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let v = text.get(span.0..span.1)?;
    if v.contains(':') && !is_placeholder(v) {
        hit(span.0, span.1)
    } else {
        None
    }
}

/// `curl -u user:pass`: a colon, and a password part that is not a shell/template variable.
pub(crate) fn curl_credentials(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let v = text.get(span.0..span.1)?;
    let bare: String = v.chars().filter(|c| *c != '"' && *c != '\'').collect();
    let (user, pass) = bare.split_once(':')?;
    let var = |p: &str| {
        p.starts_with('$') || p.starts_with('<') || p.starts_with("{{") || p.starts_with('[')
    };
    if var(pass) || var(user) || (pass.is_empty() && user.is_empty()) {
        return None;
    }
    hit(span.0, span.1)
}

/// URL userinfo that is a template (`${user}:${pass}`) is left alone.
pub(crate) fn userinfo_not_placeholder(
    text: &str,
    _c: &Captures,
    span: (usize, usize),
) -> Option<Hit> {
    let v = text.get(span.0..span.1)?;
    if v.starts_with('$') || v.starts_with('<') || v.starts_with("{{") || v.starts_with("[redacted")
    {
        None
    } else {
        hit(span.0, span.1)
    }
}

// ------------------------------------------------------------------ key = value

/// Classification of a sensitive key: the rule id and the kind used in the placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyClass {
    /// Rule id of the remark, e.g. `@password_kv`.
    pub rule: &'static str,
    /// Placeholder kind, e.g. `password`.
    pub kind: &'static str,
    /// A weak class (`*Key`, `*_KEY`: `HEROKU_KEY` but also `cacheKey`): its value is replaced only
    /// when it looks like a secret ([`looks_like_secret_value`]).
    pub weak: bool,
}

const fn class(rule: &'static str, kind: &'static str) -> Option<KeyClass> {
    Some(KeyClass {
        rule,
        kind,
        weak: false,
    })
}

/// For weak keys: a single token of 16+ base64/hex-ish characters, with letters and digits.
pub fn looks_like_secret_value(v: &str) -> bool {
    v.len() >= 16
        && v.len() <= 512
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'=' | b'~' | b'-'))
        && v.bytes().any(|b| b.is_ascii_digit())
        && v.bytes().any(|b| b.is_ascii_alphabetic())
        && looks_random(v)
}

/// Suffixes that make a sensitive-looking key describe metadata, not the secret itself
/// (`passwordLength`, `tokenType`, `prompt_tokens`, `sessionCount`, `secretName`).
const META_SUFFIXES: &[&str] = &[
    "tokens",
    "url",
    "uri",
    "endpoint",
    "path",
    "type",
    "count",
    "length",
    "len",
    "size",
    "limit",
    "expiry",
    "expires",
    "expiresat",
    "expiresin",
    "expiration",
    "ttl",
    "name",
    "enabled",
    "required",
    "policy",
    "format",
    "hint",
    "field",
    "header",
    "timeout",
    "version",
    "store",
    "provider",
];

/// Decides whether a key (JSON field name, `key=` in text, header name) names a secret, and which
/// kind. Case, `_`, `-`, `.` and spaces are ignored; substrings count (`dbPassword`).
pub fn classify_key(key: &str) -> Option<KeyClass> {
    let raw = key.trim().to_ascii_lowercase();
    if raw.starts_with("__secure-") || raw.starts_with("__host-") {
        return class("@session_kv", "session_cookie");
    }
    let n: String = raw
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' ' | '"' | '\''))
        .collect();
    if n.is_empty() || n.len() > 64 {
        return None;
    }
    if META_SUFFIXES
        .iter()
        .any(|s| n.ends_with(s) && n.len() > s.len())
        || n.contains("tokenizer")
    {
        return None;
    }
    if n.contains("password")
        || n.contains("passwd")
        || n.contains("passphrase")
        || n.contains("pwd")
    {
        return class("@password_kv", "password");
    }
    // `db_pass_secure`, `PASS`, `smtpPass`: "pass" as a whole segment (snake, kebab or camel case)
    let segments = key
        .split(|c: char| !c.is_ascii_alphanumeric())
        .flat_map(split_camel)
        .map(|s| s.to_ascii_lowercase());
    for seg in segments {
        if matches!(seg.as_str(), "pass" | "pw" | "passcode" | "pin") {
            return class("@password_kv", "password");
        }
    }
    if (n == "pass" || n.ends_with("pass") || n.starts_with("pass") && n.len() <= 6)
        && !["bypass", "compass", "passage", "passive"]
            .iter()
            .any(|w| n.contains(w))
    {
        return class("@password_kv", "password");
    }
    // custom API-key headers `x-<vendor>-key`, `x-api-key`: strong whatever the vendor
    if raw.starts_with("x-") && (raw.ends_with("-key") || raw.ends_with("_key")) {
        return class("@api_key_kv", "api_key");
    }
    if n.contains("privatekey") {
        return class("@private_key_kv", "private_key");
    }
    if n.contains("secret") {
        return class("@secret_kv", "secret");
    }
    if n.contains("apikey")
        || n.contains("accesskey")
        || n.contains("secretkey")
        || n.contains("signingkey")
        || n.contains("encryptionkey")
        || n.contains("masterkey")
        || n.contains("licensekey")
        || n.contains("subscriptionkey")
    {
        return class("@api_key_kv", "api_key");
    }
    if n.contains("cookie") {
        return class("@session_kv", "session_cookie");
    }
    if n.contains("session")
        || n == "sid"
        || n.ends_with("sessid")
        || n == "sess"
        || n.ends_with("sid")
            && n.len() <= 12
            && (n.contains("connect") || n.contains("sess") || n.starts_with('j') || n == "sid")
    {
        return class("@session_kv", "session_cookie");
    }
    if n.contains("authorization")
        || n == "auth"
        || n.contains("authtoken")
        || n.contains("authkey")
        || n.ends_with("auth") && !n.ends_with("oauth")
        || n.starts_with("auth") && !n.starts_with("author")
    {
        return class("@auth_kv", "auth");
    }
    if n.contains("token")
        || n.contains("jwt")
        || n.contains("bearer")
        || n.contains("csrf")
        || n.contains("xsrf")
    {
        return class("@token_kv", "token");
    }
    if n.contains("credential") {
        return class("@credential_kv", "credential");
    }
    if n.ends_with("key")
        && !n.ends_with("publickey")
        && !n.ends_with("monkey")
        && !n.ends_with("turkey")
    {
        return Some(KeyClass {
            rule: "@api_key_kv",
            kind: "api_key",
            weak: true,
        });
    }
    None
}

/// `dbPassSecure` -> `db`, `Pass`, `Secure`.
fn split_camel(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let bytes = s.as_bytes();
    for i in 1..bytes.len() {
        let (prev, cur) = (bytes[i - 1], bytes[i]);
        if prev.is_ascii_lowercase() && cur.is_ascii_uppercase() {
            if let Some(p) = s.get(start..i) {
                parts.push(p);
            }
            start = i;
        }
    }
    if let Some(p) = s.get(start..) {
        parts.push(p);
    }
    parts
}

/// Moves `end` (just after a bare `key=value`) past every `&part` that has no `=` before the
/// next `&`, whitespace, quote or `;`.
fn extend_over_ampersands(text: &str, mut end: usize) -> usize {
    while text.get(end..).is_some_and(|r| r.starts_with('&')) {
        let rest = text.get(end + 1..).unwrap_or("");
        let part_len = rest
            .find(|ch: char| {
                ch == '&' || ch.is_whitespace() || matches!(ch, '"' | '\'' | '`' | ';')
            })
            .unwrap_or(rest.len());
        let part = rest.get(..part_len).unwrap_or("");
        if part.contains('=') || (part.is_empty() && !rest.starts_with('&')) {
            break;
        }
        end += 1 + part_len;
    }
    end
}

/// Authorization schemes: `Authorization: <scheme> <credentials>`; the credentials are the secret.
const AUTH_SCHEMES: &[&str] = &[
    "bearer",
    "basic",
    "token",
    "digest",
    "apikey",
    "api-key",
    "api-token",
    "bot",
    "sso-key",
    "key",
    "negotiate",
    "ntlm",
    "hmac",
    "dpop",
    "mac",
];

/// The key=value rule: the key must be a whole identifier that [`classify_key`] accepts, and the
/// value must not be a placeholder. The kind comes from the key.
pub(crate) fn secret_kv(text: &str, c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let has = |n: &str| c.get_group_by_name(n).is_some();
    let key_span = ["k", "k2", "k3", "k4", "k5", "k6", "k7"]
        .iter()
        .find_map(|n| c.get_group_by_name(n))?;
    let key = text.get(key_span.range())?;
    // the quoted, tagged, parenthesised and flag keys are at most 64 chars (checked here, not by
    // a counted repetition in the pattern: see `@secret_kv`)
    if ["k3", "k4", "k5", "k6", "k7"].iter().any(|n| has(n)) && key.chars().count() > 64 {
        return None;
    }
    // the key starts at an identifier boundary (no `bypass` -> `ypass` on a retry); a CLI
    // flag's key starts after its `--`
    let flag = has("k7");
    if !flag
        && char_before(text, key_span.start).is_some_and(|ch| is_word(ch) || ch == '-' || ch == '.')
    {
        return None;
    }
    if char_at(text, key_span.end).is_some_and(is_word) {
        return None;
    }
    let class = classify_key(key)?;
    let (mut start, mut end) = span;
    let raw = text.get(start..end)?;
    let bare = has("s5") || has("s12");
    let quoted = !bare;
    let value = if quoted {
        raw
    } else {
        trim_unbalanced_closers(raw)
    };
    end = start + value.len();
    if has("s5") && value.len() == raw.len() {
        // form syntax: `password=tr0ub&dor&user=x` — an `&` followed by a component without
        // `=` cannot start a new field, so it is still the value
        end = extend_over_ampersands(text, end);
    }
    let value = text.get(start..end)?;
    if is_placeholder(value) || (class.weak && !looks_like_secret_value(value)) {
        return None;
    }
    // `Authorization: Bearer xyz` -> the credentials after the scheme are the secret.
    if AUTH_SCHEMES.iter().any(|s| value.eq_ignore_ascii_case(s)) {
        let rest = text.get(end..)?;
        let after_ws = rest.trim_start_matches([' ', '\t']);
        if after_ws.len() == rest.len() {
            if quoted {
                return None;
            }
            // `token: bearer` alone is no secret
            return None;
        }
        let tok_len = after_ws
            .find(|ch: char| ch.is_whitespace() || matches!(ch, '"' | '\'' | '`' | ',' | ';'))
            .unwrap_or(after_ws.len());
        let tok = after_ws.get(..tok_len)?;
        if tok.is_empty() || is_placeholder(tok) {
            return None;
        }
        start = end + (rest.len() - after_ws.len());
        end = start + tok_len;
    }
    Some(Hit {
        start,
        end,
        refine: Some((class.rule, class.kind)),
    })
}

// ------------------------------------------------------------------ PII

/// Emails, in the regex validator's form (the rule is code now, `matchers::find_email`, which
/// calls [`email_ok`]; this form is what its differential test runs the pattern with).
#[cfg(test)]
pub(crate) fn email(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    if email_ok(text, span) {
        hit(span.0, span.1)
    } else {
        None
    }
}

/// [`email`]'s decision on the span alone (the code matcher's form): not glued to a following
/// letter or digit, and not the userinfo of a `scheme://` authority.
pub(crate) fn email_ok(text: &str, span: (usize, usize)) -> bool {
    if char_at(text, span.1).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return false;
    }
    // `scheme://user:pass@host` is URL userinfo (its own rule), not an email
    let Some(head) = text.get(..span.0) else {
        return false;
    };
    let token_start = head
        .rfind(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '('))
        .map_or(0, |i| i + 1);
    let in_authority = head
        .get(token_start..)
        .and_then(|t| t.split_once("://"))
        .is_some_and(|(_, authority)| !authority.contains('/'));
    !in_authority
}

/// Luhn checksum over the digits of `s` (separators ignored).
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.is_empty() {
        return false;
    }
    let mut sum = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut d = *d;
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// Credit cards: 13–19 digits, Luhn, an issuer-like first digit (a leading `1` only for the
/// 15-digit UATP cards, so 13/16/19-digit timestamps starting with 1 survive), not one repeated
/// digit, not part of a decimal number.
pub(crate) fn credit_card(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let v = text.get(span.0..span.1)?;
    let digits: String = v.chars().filter(|c| c.is_ascii_digit()).collect();
    let n = digits.len();
    if !(13..=19).contains(&n) || !luhn(&digits) {
        return None;
    }
    let first = digits.chars().next()?;
    if digits.chars().all(|c| c == first) {
        return None;
    }
    let ok_prefix = match first {
        '1' => n == 15,
        '2'..='6' => true,
        _ => false,
    };
    if !ok_prefix {
        return None;
    }
    if matches!(char_before(text, span.0), Some('.' | ',' | '+' | '-')) {
        return None;
    }
    if char_at(text, span.1) == Some('.')
        && text
            .get(span.1 + 1..)
            .and_then(|s| s.chars().next())
            .is_some_and(|c| c.is_ascii_digit())
    {
        return None;
    }
    hit(span.0, span.1)
}

/// Mask hint for cards: the network, never digits.
pub(crate) fn card_brand(v: &str) -> Option<String> {
    let d: String = v.chars().filter(|c| c.is_ascii_digit()).collect();
    let p2: u32 = d.get(..2)?.parse().ok()?;
    let p4: u32 = d.get(..4)?.parse().ok()?;
    let brand = match p2 {
        _ if d.starts_with('4') => "visa",
        34 | 37 => "amex",
        51..=55 => "mastercard",
        _ if (2221..=2720).contains(&p4) => "mastercard",
        _ if p4 == 6011 || p2 == 65 || (6440..=6499).contains(&p4) => "discover",
        35 => "jcb",
        30 | 36 | 38 | 39 => "diners",
        62 => "unionpay",
        50 | 56..=69 => "maestro",
        _ if d.starts_with('1') => "uatp",
        _ => "card",
    };
    Some(brand.to_string())
}

/// IBAN mod-97 over a compact (no spaces) candidate.
pub fn iban_mod97(compact: &str) -> bool {
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = match (compact.get(..4), compact.get(4..)) {
        (Some(h), Some(t)) => (h, t),
        _ => return false,
    };
    let mut rem: u64 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c {
            '0'..='9' => u64::from(c as u8 - b'0'),
            'A'..='Z' => u64::from(c as u8 - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// IBAN length per country, from the SWIFT IBAN registry (release 99, 2025: 89 countries and
/// territories). A candidate of a listed country must have exactly this length.
pub const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HN", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

/// The registry length of the IBANs of country `cc` (`DE` → 22), if it is in the registry.
pub fn iban_length(cc: &str) -> Option<usize> {
    IBAN_LENGTHS.iter().find(|(c, _)| *c == cc).map(|&(_, n)| n)
}

/// A compact candidate is an IBAN: mod 97, and the registry length when the country is listed
/// (a country outside the registry: any length 15–34, as before).
pub fn is_iban(compact: &str) -> bool {
    let length_ok = match compact.get(..2).and_then(iban_length) {
        Some(n) => compact.len() == n,
        None => true,
    };
    length_ok && iban_mod97(compact)
}

/// IBANs: [`is_iban`]; the greedy pattern may have eaten a following group, so shorter prefixes
/// (on group boundaries) are tried too.
pub(crate) fn iban(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let v = text.get(span.0..span.1)?;
    let mut end = v.len();
    while end >= 15 {
        let cand = v.get(..end)?;
        let compact: String = cand.chars().filter(|c| *c != ' ').collect();
        if is_iban(&compact) {
            return hit(span.0, span.0 + end);
        }
        // drop the last group (or last char when not grouped)
        end = match cand.rfind(' ') {
            Some(i) if i >= 4 => i,
            _ => end - 1,
        };
    }
    None
}

pub(crate) fn iban_country(v: &str) -> Option<String> {
    let cc = v.get(..2)?;
    cc.chars()
        .all(|c| c.is_ascii_uppercase())
        .then(|| cc.to_ascii_lowercase())
}

/// US social security numbers: the SSA's rules (area 001–665 or 667–899, group 01–99, serial
/// 0001–9999), not one repeated digit nor `123-45-6789`/`987-65-4321` (the textbook samples, as
/// presidio), not glued to another number, a dash or a dot (phone numbers, versions, dates).
pub(crate) fn ssn(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let v = text.get(span.0..span.1)?;
    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
    let area: u32 = digits.get(..3)?.parse().ok()?;
    let group: u32 = digits.get(3..5)?.parse().ok()?;
    let serial: u32 = digits.get(5..9)?.parse().ok()?;
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return None;
    }
    let first = digits.chars().next()?;
    if digits.chars().all(|ch| ch == first) || digits == "123456789" || digits == "987654321" {
        return None;
    }
    let glued = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.' | '+' | '/' | '_');
    let decimal_after = char_at(text, span.1) == Some('.')
        && char_at(text, span.1 + 1).is_some_and(|ch| ch.is_ascii_digit());
    if char_before(text, span.0).is_some_and(glued)
        || char_at(text, span.1).is_some_and(|ch| ch != '.' && glued(ch))
        || decimal_after
    {
        return None;
    }
    hit(span.0, span.1)
}

/// UK NHS numbers `401 023 2137` / `401-023-2137`: the mod-11 check digit (weights 10…2 over
/// the first nine digits; 11 − sum mod 11, 11 → 0, 10 invalid), as presidio's recognizer.
pub(crate) fn uk_nhs(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let v = text.get(span.0..span.1)?;
    let d: Vec<u32> = v.chars().filter_map(|ch| ch.to_digit(10)).collect();
    if d.len() != 10 {
        return None;
    }
    let sum: u32 = d
        .iter()
        .take(9)
        .zip((2..=10).rev())
        .map(|(x, w)| x * w)
        .sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return None,
        c => c,
    };
    let glued = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.' | '+' | '/' | '_');
    // not a group of a longer grouped number (`51 824 753 5564`)
    let digit_group_before = char_before(text, span.0) == Some(' ')
        && char_before(text, span.0 - 1).is_some_and(|ch| ch.is_ascii_digit());
    let digit_group_after = char_at(text, span.1) == Some(' ')
        && char_at(text, span.1 + 1).is_some_and(|ch| ch.is_ascii_digit());
    if d.get(9) != Some(&check)
        || digit_group_before
        || digit_group_after
        || char_before(text, span.0).is_some_and(glued)
        || char_at(text, span.1).is_some_and(|ch| ch != '.' && glued(ch))
    {
        return None;
    }
    hit(span.0, span.1)
}

/// Home-directory names that are roles, not people: kept.
pub const HOME_ROLE_ACCOUNTS: &[&str] = &[
    "public",
    "shared",
    "default",
    "default user",
    "all users",
    "defaultapppool",
    "runner",
    "user",
    "username",
    "node",
    "ubuntu",
    "ec2-user",
    "vscode",
    "codespace",
    "circleci",
    "travis",
    "jenkins",
    "app",
    "www-data",
];

/// `@home_user`: the name has at most 64 chars, is no role account ([`HOME_ROLE_ACCOUNTS`]) nor a placeholder
/// (`$USER`, `%USERNAME%`, `<user>`), and the path is not inside a URL or a longer path
/// (`https://x.io/api/Users/5`, `/srv/home/x`): the char before the leading `/` (or the drive
/// letter) must not be a letter, digit, `.`, `-`, `_` or `%`.
pub(crate) fn home_user(text: &str, c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let name = text.get(span.0..span.1)?;
    if name.chars().count() > 64 {
        return None;
    }
    let whole = c.get_match()?;
    if char_before(text, whole.start())
        .is_some_and(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_' | '%'))
    {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    if HOME_ROLE_ACCOUNTS.contains(&lower.as_str())
        || is_placeholder(name)
        || name.starts_with('%')
        || name.starts_with('$')
        || name.starts_with('~')
    {
        return None;
    }
    hit(span.0, span.1)
}

/// Strips a `/len` suffix when it is not a valid prefix length (or runs on into more digits).
fn split_prefix(text: &str, span: (usize, usize), max: u32) -> (usize, usize) {
    let Some(v) = text.get(span.0..span.1) else {
        return span;
    };
    let Some(slash) = v.rfind('/') else {
        return span;
    };
    let valid = v
        .get(slash + 1..)
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p <= max)
        && !char_at(text, span.1).is_some_and(|c| c.is_ascii_digit());
    if valid {
        span
    } else {
        (span.0, span.0 + slash)
    }
}

/// IPv4: not glued to letters or to a longer dotted number, not a `Product/1.2.3.4` version.
pub(crate) fn ipv4(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let (s, e) = split_prefix(text, span, 32);
    match char_before(text, s) {
        Some(c) if c.is_ascii_alphanumeric() || c == '.' || c == '_' => return None,
        // `Chrome/120.0.0.0` is a version; `http://10.0.0.1` and `/24` are not
        Some('/') if char_before(text, s - 1).is_some_and(|c| c.is_ascii_alphanumeric()) => {
            return None;
        }
        _ => {}
    }
    let core_end = text
        .get(s..e)
        .and_then(|v| v.find('/'))
        .map_or(e, |i| s + i);
    if char_at(text, core_end).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    if char_at(text, e).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    hit(s, e)
}

/// IPv6: parsed by `std::net::Ipv6Addr`; not glued to identifiers (`std::cout`, `fe80::1text`).
pub(crate) fn ipv6(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let (s, e) = split_prefix(text, span, 128);
    let v = text.get(s..e)?;
    let core = v.split(['%', '/']).next()?;
    core.parse::<std::net::Ipv6Addr>().ok()?;
    if char_before(text, s)
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == ':' || c == '_' || c == '.')
    {
        return None;
    }
    if char_at(text, e).is_some_and(|c| c.is_ascii_alphanumeric() || c == ':' || c == '_') {
        return None;
    }
    if char_at(text, e) == Some('.')
        && text
            .get(e + 1..)
            .and_then(|r| r.chars().next())
            .is_some_and(|c| c.is_ascii_digit())
    {
        return None;
    }
    hit(s, e)
}

/// MAC addresses: not all-zero / broadcast, not inside a longer hex run.
pub(crate) fn mac(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let v = text.get(span.0..span.1)?;
    let hex: String = v.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    if hex.chars().all(|c| c == '0') || hex.chars().all(|c| c == 'f' || c == 'F') {
        return None;
    }
    let glued = |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '.' | '_');
    if char_before(text, span.0).is_some_and(glued) {
        return None;
    }
    if char_at(text, span.1)
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_'))
    {
        return None;
    }
    hit(span.0, span.1)
}

/// Phone numbers: 9–15 digits (10+ for the trunk-0 national forms), not inside a longer number,
/// a version, a decimal or an identifier.
pub(crate) fn phone(text: &str, _c: &Captures, span: (usize, usize)) -> Option<Hit> {
    let v = text.get(span.0..span.1)?;
    // a trailing separator is not part of the number
    let v = v.trim_end_matches([' ', '-', '.', '(']);
    let end = span.0 + v.len();
    let digits = v.chars().filter(|c| c.is_ascii_digit()).count();
    // North American `NXX-NXX-XXXX` without +1: the exchange starts with 2–9 (NANP), so
    // `401-023-2138` is some other id (`401-023-2137` is a UK NHS number, `@uk_nhs`)
    let b = v.as_bytes();
    if b.len() == 12
        && matches!(b.get(3), Some(b'-' | b'.'))
        && matches!(b.get(7), Some(b'-' | b'.'))
        && matches!(b.get(4), Some(b'0' | b'1'))
    {
        return None;
    }
    let min = if v.starts_with('+') || v.starts_with('(') && !v.starts_with("(0") {
        8
    } else {
        10
    };
    // `09-7625400`: a two/three-digit trunk area code and a 7-digit subscriber number
    let short_national = v.starts_with('0')
        && !v.contains(' ')
        && v.split_once('-').is_some_and(|(a, b)| {
            a.len() <= 3 && b.len() == 7 && b.bytes().all(|c| c.is_ascii_digit())
        });
    let min = if short_national { 9 } else { min };
    let min = if v.starts_with(|c: char| ('2'..='9').contains(&c)) {
        10
    } else {
        min
    };
    if !(min..=15).contains(&digits) {
        return None;
    }
    let before = char_before(text, span.0);
    if before.is_some_and(|c| c.is_ascii_digit() || c == '.' || c == '_' || c == '+' || c == '/') {
        return None;
    }
    // `x+12 345` or `1+2`: a plus glued to a word is arithmetic
    if v.starts_with('+') && before.is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    if v.starts_with('0') && before.is_some_and(|c| c.is_ascii_alphabetic() || c == '-') {
        return None;
    }
    if char_at(text, end).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        || (char_at(text, end) == Some('.')
            && text
                .get(end + 1..)
                .and_then(|s| s.chars().next())
                .is_some_and(|c| c.is_ascii_digit()))
        || (char_at(text, end) == Some('-')
            && text
                .get(end + 1..)
                .and_then(|s| s.chars().next())
                .is_some_and(|c| c.is_ascii_digit()))
    {
        return None;
    }
    hit(span.0, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_values() {
        assert!(luhn("4111111111111111"));
        assert!(luhn("4012 8888 8888 1881"));
        assert!(!luhn("4012888888881882"));
        assert!(!luhn(""));
    }

    #[test]
    fn iban_known_values() {
        assert!(iban_mod97("DE89370400440532013000"));
        assert!(iban_mod97("GB82WEST12345698765432"));
        assert!(!iban_mod97("GB82WEST12345698765433"));
        assert!(!iban_mod97("DE89"));
        assert!(!iban_mod97("de89370400440532013000"));
    }

    #[test]
    fn base64_roundtrip_shapes() {
        assert_eq!(
            base64_decode("dXNlcjpwYXNz").as_deref(),
            Some(&b"user:pass"[..])
        );
        assert_eq!(
            base64_decode("YnJvd3Nlcjo=").as_deref(),
            Some(&b"browser:"[..])
        );
        assert!(base64_decode("not base64!").is_none());
    }

    #[test]
    fn key_classes() {
        let k = |s| classify_key(s).map(|c| c.kind);
        assert_eq!(k("password"), Some("password"));
        assert_eq!(k("dbPassword"), Some("password"));
        assert_eq!(k("DB_PASS"), Some("password"));
        assert_eq!(k("x-api-key"), Some("api_key"));
        assert_eq!(k("client_secret"), Some("secret"));
        assert_eq!(k("Authorization"), Some("auth"));
        assert_eq!(k("access_token"), Some("token"));
        assert_eq!(k("Cookie"), Some("session_cookie"));
        assert_eq!(k("JSESSIONID"), Some("session_cookie"));
        assert_eq!(k("sid"), Some("session_cookie"));
        assert_eq!(
            k("__Secure-next-auth.session-token"),
            Some("session_cookie")
        );
        assert_eq!(k("private_key"), Some("private_key"));
        assert_eq!(k("credentials"), Some("credential"));
        for harmless in [
            "author",
            "authorName",
            "prompt_tokens",
            "passwordLength",
            "tokenType",
            "bypass",
            "inside",
            "consider",
            "user",
            "message",
            "secretName",
            "passenger",
            "publicKey",
            "",
        ] {
            assert_eq!(k(harmless), None, "{harmless}");
        }
        // `*key` names are weak: only secret-looking values go
        for weak in ["key", "cacheKey", "HEROKU_KEY"] {
            assert!(classify_key(weak).is_some_and(|c| c.weak), "{weak}");
        }
        assert!(looks_like_secret_value("bXlwYXNzd29yZA=="));
        assert!(!looks_like_secret_value("user:42:profile"));
        assert!(!looks_like_secret_value("uploads/avatar.png"));
        assert_eq!(k("db_pass_secure"), Some("password"));
        assert_eq!(k("smtpPass"), Some("password"));
    }

    #[test]
    fn placeholders() {
        for p in [
            "",
            "  ",
            "null",
            "undefined",
            "${link}",
            "{{ pass }}",
            "<password>",
            "$PASSWORD",
            "[redacted:x]",
            "***",
            ",.:-",
        ] {
            assert!(is_placeholder(p), "{p:?}");
        }
        for s in ["hunter2", "abc", "m{{h}o)p${e]nob"] {
            assert!(!is_placeholder(s), "{s:?}");
        }
    }

    #[test]
    fn closers() {
        assert_eq!(trim_unbalanced_closers("abc)"), "abc");
        assert_eq!(trim_unbalanced_closers("a(b)c)"), "a(b)c");
        assert_eq!(
            trim_unbalanced_closers("m{{h}o)p${e]nob(ody[finds>-_$#thisone}}"),
            "m{{h}o)p${e]nob(ody[finds>-_$#thisone}}"
        );
        assert_eq!(trim_unbalanced_closers("abc."), "abc");
    }

    #[test]
    fn helpers_do_not_panic_off_boundaries() {
        let s = "héllo";
        assert_eq!(char_before(s, 2), None); // inside 'é'
        assert_eq!(char_at(s, 2), None);
        assert_eq!(char_at(s, 99), None);
        assert!(card_brand("12").is_none());
        assert_eq!(iban_country("de").as_deref(), None);
    }
}
