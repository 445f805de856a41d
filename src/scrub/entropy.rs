//! Secrets without a known shape, found by their content: high-entropy tokens.
//!
//! The idea is detect-secrets' `Base64HighEntropyString` / `HexHighEntropyString` plugins
//! (Shannon entropy of a token over its own characters, against a limit), with guards of our own
//! because this scans free text (error messages, stacks, logs), not only quoted strings. The exact
//! line is on [`is_secret_token`]; [`find_tokens`] is the rule `@high_entropy` of
//! [`super::rules::RULES`].

use super::Hit;

/// Shortest token considered (bytes). A 40-character AWS secret access key, `sess_…` and
/// `pk_…_…` keys are longer; shorter random strings are too often ids.
pub const MIN_TOKEN_LEN: usize = 20;

/// Shortest random part after a `prefix_` (`sess_`, `pk_prod_`).
pub const MIN_PREFIXED_BODY: usize = 16;

/// Shortest lower-case-plus-digits token without a prefix (a jfrog or generic 64-char token;
/// shorter ones of that alphabet are usually ids and build hashes).
pub const MIN_LOWER_DIGIT_LEN: usize = 32;

/// Token prefixes of object *ids*, not secrets (Stripe's object ids: `cus_`, `ch_`, `evt_`,
/// `req_`, …; and generic `id_`, `user_`, `order_`): a `prefix_<random>` with one of these is
/// kept. Stripe's publishable keys (`pk_live_`, `pk_test_`) are public by design and kept too.
pub const SAFE_ID_PREFIXES: &[&str] = &[
    "acct", "ba", "card", "ch", "cus", "evt", "file", "in", "ii", "pi", "pm", "po", "price",
    "prod", "py", "req", "seti", "si", "sub", "txn", "id", "user", "usr", "org", "order", "cart",
    "inv", "msg", "job", "run", "build", "trace", "span", "commit", "sha", "rev",
];

/// Bytes that make up a token: base64 (`+ / =`), base64url (`- _`) and alphanumerics.
pub const fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-')
}

/// Shannon entropy of `s` over its own bytes, in bits per byte (0 for an empty string).
pub fn shannon(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The entropy a token of `len` bytes over an alphabet of `alphabet` symbols must reach: 80% of
/// the most it could have (`log2(min(len, alphabet))`). Random strings sit near the top (a random
/// 40-char base64 string has about 4.8 of at most 5.3); words and identifiers well below.
pub fn entropy_limit(len: usize, alphabet: usize) -> f64 {
    let n = len.min(alphabet).max(2) as f64;
    0.8 * n.log2()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Upper,
    Lower,
    Digit,
    Other,
}

fn class(b: u8) -> Class {
    if b.is_ascii_uppercase() {
        Class::Upper
    } else if b.is_ascii_lowercase() {
        Class::Lower
    } else if b.is_ascii_digit() {
        Class::Digit
    } else {
        Class::Other
    }
}

/// Share of `s` covered by word-like humps (`[A-Z]?[a-z]{3,}`: `Encoder`, `index`): high in
/// identifiers (`Base64EncoderV2Instance`), low in random strings.
fn word_share(s: &[u8]) -> f64 {
    let mut covered = 0usize;
    let mut i = 0;
    while i < s.len() {
        let start = i;
        if s[i].is_ascii_uppercase() {
            i += 1;
        }
        let lower_start = i;
        while i < s.len() && s[i].is_ascii_lowercase() {
            i += 1;
        }
        if i - lower_start >= 3 {
            covered += i - start;
        }
        if i == start {
            i += 1;
        }
    }
    covered as f64 / s.len().max(1) as f64
}

/// Number of places where the character class (upper, lower, digit, other) changes.
fn transitions(s: &[u8]) -> usize {
    s.windows(2).filter(|w| class(w[0]) != class(w[1])).count()
}

/// `prefix_` (or `prefix_env_`) and the rest, when `tok` has that shape: a lower-case prefix of
/// 2–16 chars, optionally a second segment of 1–10 (`pk_prod_`, `sess_`).
fn split_prefix(tok: &[u8]) -> Option<(&[u8], &[u8])> {
    let first = tok.iter().position(|&b| b == b'_')?;
    let prefix = tok.get(..first)?;
    let ok_seg = |seg: &[u8], max: usize| {
        !seg.is_empty()
            && seg.len() <= max
            && seg
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if prefix.len() < 2 || !ok_seg(prefix, 16) || !prefix[0].is_ascii_lowercase() {
        return None;
    }
    let rest = tok.get(first + 1..)?;
    // an optional second segment (`prod_`, `live_`)
    if let Some(second) = rest.iter().position(|&b| b == b'_')
        && let (Some(seg), Some(body)) = (rest.get(..second), rest.get(second + 1..))
        && ok_seg(seg, 10)
        && body.len() >= MIN_PREFIXED_BODY
    {
        return Some((prefix, body));
    }
    Some((prefix, rest))
}

/// Words that make a `prefix_` mean a credential (`sess_`, `sk_`, `api_key_`, `tok_`).
pub const CREDENTIAL_PREFIX_WORDS: &[&str] = &[
    "sess", "sid", "tok", "key", "secret", "sk", "pk", "rk", "api", "auth", "pat", "access",
    "refresh", "bearer", "pass", "pwd", "cred", "sig",
];

fn credential_prefix(tok: &[u8]) -> bool {
    let end = tok.iter().rposition(|&b| b == b'_').unwrap_or(0);
    tok.get(..end).is_some_and(|head| {
        head.split(|&b| b == b'_').any(|seg| {
            CREDENTIAL_PREFIX_WORDS
                .iter()
                .any(|w| seg.eq_ignore_ascii_case(w.as_bytes()) || seg.starts_with(w.as_bytes()))
        })
    })
}

fn counts(s: &[u8]) -> (usize, usize, usize) {
    s.iter().fold((0, 0, 0), |(u, l, d), &b| match class(b) {
        Class::Upper => (u + 1, l, d),
        Class::Lower => (u, l + 1, d),
        Class::Digit => (u, l, d + 1),
        Class::Other => (u, l, d),
    })
}

/// Base64 (standard or URL alphabet) whose decoding is printable ASCII text: encoded words
/// (`bm90X3ZhbGlk…` is `not_valid…`), not key material, which decodes to binary (30 random bytes
/// are all printable with probability 0.37^30).
fn encodes_text(tok: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(tok) else {
        return false;
    };
    let usable = s.len() - s.len() % 4;
    let Some(decoded) = s.get(..usable).and_then(super::validate::base64_decode) else {
        return false;
    };
    decoded.len() >= 12
        && decoded.iter().all(|&b| b.is_ascii_graphic() || b == b' ')
        && decoded.iter().filter(|b| b.is_ascii_alphabetic()).count() * 10 >= decoded.len() * 6
}

/// Whether a token (a maximal run of [`is_token_byte`]s) is a secret by its content. The line:
///
/// - kept (not a secret): shorter than [`MIN_TOKEN_LEN`]; filler or an alphabet run
///   ([`super::validate::is_filler`]); base64 of printable text; only hex digits and dashes (uuids,
///   hashes, trace and ray ids: the normalizer owns those); only digits and separators; base64 of
///   JSON or PEM (`eyJ…`, `LS0t…`: `@jwt` and `@base64_blob` judge those by their shape);
///   subresource-integrity hashes (`sha384-…`); a `prefix_` in [`SAFE_ID_PREFIXES`];
/// - `prefix_<body>` (`sess_…`, `pk_prod_…`): the body has 16+ alphanumerics, letters and digits
///   (or both cases, under a credential prefix: [`CREDENTIAL_PREFIX_WORDS`]), and entropy ≥ [`entropy_limit`] (hex bodies: ≥ 3.0, detect-secrets' hex limit);
/// - otherwise upper case, lower case and digits all present, entropy ≥ [`entropy_limit`] for a
///   64-symbol alphabet, class changes on at least 30% of the positions, and less than 60% of
///   it in word-like humps (`Base64EncoderV2Instance` is an identifier);
/// - or lower case and digits only (no hex-only), 32+ chars, entropy ≥ the limit for 36 symbols,
///   at least 15% digits.
pub fn is_secret_token(tok: &[u8]) -> bool {
    let body = tok.strip_suffix(b"==").or_else(|| tok.strip_suffix(b"="));
    let tok = body.unwrap_or(tok);
    if tok.len() < MIN_TOKEN_LEN {
        return false;
    }
    // hex with dashes, where a short tail is allowed (`8a1b2c3d4e5f6a7b-AMS`, a cf-ray)
    if tok
        .split(|&b| b == b'-')
        .all(|seg| seg.len() <= 4 || seg.iter().all(u8::is_ascii_hexdigit))
        || tok
            .iter()
            .all(|&b| b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'+' | b'/'))
    {
        return false;
    }
    let lower: Vec<u8> = tok.iter().take(8).map(u8::to_ascii_lowercase).collect();
    if tok.starts_with(b"eyJ")
        || tok.starts_with(b"LS0t")
        || ["sha1-", "sha256-", "sha384-", "sha512-"]
            .iter()
            .any(|p| lower.starts_with(p.as_bytes()))
    {
        return false;
    }
    if super::validate::is_filler(std::str::from_utf8(tok).unwrap_or(""))
        || super::validate::is_sequential(tok)
        || encodes_text(tok)
    {
        return false;
    }
    if let Some((prefix, body)) = split_prefix(tok) {
        let safe = SAFE_ID_PREFIXES.iter().any(|p| p.as_bytes() == prefix)
            || (prefix == b"pk" && (tok.starts_with(b"pk_live_") || tok.starts_with(b"pk_test_")));
        if safe {
            return false;
        }
        if body.len() >= MIN_PREFIXED_BODY && body.iter().all(u8::is_ascii_alphanumeric) {
            let (u, l, d) = counts(body);
            if (d > 0 && u + l > 0) || (u > 0 && l > 0 && credential_prefix(tok)) {
                let h = shannon(body);
                let hex = body.iter().all(u8::is_ascii_hexdigit);
                // a hex body is a hash as often as a secret (`__wbg_new_bb74001155cb8ca8` is a
                // wasm-bindgen function): only under a prefix that means a credential
                let limit = if hex {
                    if credential_prefix(tok) {
                        3.0
                    } else {
                        f64::INFINITY
                    }
                } else {
                    entropy_limit(body.len(), 62)
                };
                if h >= limit {
                    return true;
                }
            }
        }
    }
    let (u, l, d) = counts(tok);
    let n = tok.len();
    if u > 0 && l > 0 && d > 0 {
        return shannon(tok) >= entropy_limit(n, 64)
            && transitions(tok) * 10 >= 3 * n
            && word_share(tok) < 0.6;
    }
    if u == 0 && l > 0 && d > 0 && n >= MIN_LOWER_DIGIT_LEN {
        let only_alnum = tok.iter().all(u8::is_ascii_alphanumeric);
        return only_alnum
            && tok.iter().any(|b| (b'g'..=b'z').contains(b))
            && d * 100 >= 15 * n
            && shannon(tok) >= entropy_limit(n, 36);
    }
    false
}

/// The `@high_entropy` finder: every maximal token run of `text` that [`is_secret_token`]
/// accepts. A run is first cut at an inner `=` (`token=<value>`: the key is no secret; `=` at
/// the end is base64 padding) and has leading `- _ /` trimmed; a run that starts with `/` is a
/// path and its `/`-separated segments are judged one by one.
pub fn find_tokens(text: &str, out: &mut Vec<Hit>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !is_token_byte(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_token_byte(bytes[i]) {
            i += 1;
        }
        if i - start >= MIN_TOKEN_LEN {
            judge_run(bytes, start, i, out);
        }
    }
}

/// Splits a run at inner `=` (not padding) and judges the pieces.
fn judge_run(bytes: &[u8], start: usize, end: usize, out: &mut Vec<Hit>) {
    let mut piece = start;
    let mut k = start;
    while k < end {
        let inner_eq =
            bytes[k] == b'=' && bytes.get(k + 1).is_some_and(|&b| b != b'=' && k + 1 < end);
        if inner_eq {
            judge_piece(bytes, piece, k, out);
            piece = k + 1;
        }
        k += 1;
    }
    judge_piece(bytes, piece, end, out);
}

fn judge_piece(bytes: &[u8], mut start: usize, end: usize, out: &mut Vec<Hit>) {
    if end.saturating_sub(start) < MIN_TOKEN_LEN {
        return;
    }
    if bytes.get(start) == Some(&b'/') {
        // a path: each segment on its own
        let mut seg = start;
        for k in start..=end {
            if k == end || bytes[k] == b'/' {
                judge_token(bytes, seg, k, out);
                seg = k + 1;
            }
        }
        return;
    }
    while start < end && matches!(bytes[start], b'-' | b'_') {
        start += 1;
    }
    judge_token(bytes, start, end, out);
}

fn judge_token(bytes: &[u8], start: usize, end: usize, out: &mut Vec<Hit>) {
    // one part of a dotted compound (`a.b.c`: JWT-, Discord- and SendGrid-like tokens, host
    // names, file names) is left to the shape rules, which know those formats
    let dotted = |i: Option<usize>| i.and_then(|i| bytes.get(i)).is_some_and(|&b| b == b'.');
    let before = start.checked_sub(1);
    let glued_before = dotted(before)
        && before
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| bytes.get(i))
            .is_some_and(|&b| !b.is_ascii_whitespace() && !matches!(b, b'"' | b'\'' | b'`'));
    let glued_after = dotted(Some(end)) && bytes.get(end + 1).is_some_and(|&b| is_token_byte(b));
    // the right part of a `word:token` compound without a space (`bot123:AAH…`, `urn:x:…`):
    // `user:password` pairs have rules of their own (`@curl_user`, `@url_userinfo`, …)
    let colon_compound = before.and_then(|i| bytes.get(i)) == Some(&b':')
        && before
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| bytes.get(i))
            .is_some_and(u8::is_ascii_alphanumeric);
    if glued_before || glued_after || colon_compound {
        return;
    }
    if let Some(tok) = bytes.get(start..end)
        && is_secret_token(tok)
    {
        out.push(Hit {
            start,
            end,
            refine: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&str> {
        let mut hits = Vec::new();
        find_tokens(text, &mut hits);
        hits.iter().map(|h| &text[h.start..h.end]).collect()
    }

    #[test]
    fn entropy_values() {
        assert_eq!(shannon(b""), 0.0);
        assert_eq!(shannon(b"aaaa"), 0.0);
        assert!((shannon(b"abcd") - 2.0).abs() < 1e-9);
        assert!(shannon(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") > 4.5);
    }

    #[test]
    fn secrets_by_content() {
        for (text, want) in [
            (
                "Key (secret)=(wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY) already exists",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            (
                "invalid key pk_prod_9fK2mQ7xLp3RtZ8vB1nW",
                "pk_prod_9fK2mQ7xLp3RtZ8vB1nW",
            ),
            (
                "session sess_8f3a9c2e7b1d4f60a5e9 expired",
                "sess_8f3a9c2e7b1d4f60a5e9",
            ),
            (
                "token=q8Zr3T0fWm1XcV7bN4kJ2pLs9HdYg6Ea5uRiOt==",
                "q8Zr3T0fWm1XcV7bN4kJ2pLs9HdYg6Ea5uRiOt==",
            ),
            (
                "t 9dk9n369oxrsq3qge7b6djzrge87gevxqrmidcgs2q5hmrriz2td88n5mhf3trbr",
                "9dk9n369oxrsq3qge7b6djzrge87gevxqrmidcgs2q5hmrriz2td88n5mhf3trbr",
            ),
        ] {
            assert_eq!(found(text), [want], "{text}");
        }
    }

    #[test]
    fn kept_by_shape() {
        for text in [
            "uuid 123e4567-e89b-12d3-a456-426614174000 not found",
            "sha 8f953371d3e85eddb89b05ed6b9e680791055315c73e1025ab5dba7bb2aee189",
            "cf-ray 8a1b2c3d4e5f6a7b-AMS",
            "ts 17485035430121748503543012",
            "class Base64EncoderV2Instance failed",
            "at getElementsByTagNameNS2 (index.js:1:2)",
            "header eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
            "integrity sha384-oqVuAfXRKap7fdgcCY5uykM6+R9GqQ8K/uxy9rx7HNQlGYl1kPzQho1wx4JwY8wC",
            "customer cus_NffrFeUfNV2Hib9xKQ7 charge ch_3MmlLrLkdIwHu7ix0snN0B15",
            "pk_live_j5krY8XTgIcDaHDb3YrsAfCl",
            "at /home/runner/work/app/node_modules/some-package/dist/index.js",
            "ERR_HTTP2_STREAM_CANCEL_REQUESTED_BY_CLIENT",
            "my_function_name_2024_version_two_and_more",
            "/_next/static/chunks/pages/_app-1a2b3c4d5e6f7a8b.js",
            "page=2&limit=Infinity&sort=created_at_desc",
            "meraki: abdefghjk0123456789mnopqrstuvwx12345678",
            "b64 bm90X3ZhbGlkX2pzb25fYXRfYWxsX2F0X2FsbA",
            "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "at __wbg_new_bb74001155cb8ca8 (file:///srv/app/index.js:1:2)",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }
}
