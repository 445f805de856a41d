//! Structured scrubbing: URLs, JSON values, request headers, the `cf` object.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::validate::classify_key;
use super::{FieldRemark, Remark, Scrubbed, TRUNCATION_MARKER, bound, scrub_text};

/// JSON nested deeper than this is replaced by `"[truncated:depth]"`.
pub const MAX_JSON_DEPTH: usize = 16;

/// [`scrub_headers`] keeps at most this many headers (allow-listed ones first); the rest are
/// dropped and counted under the key [`TRUNCATION_MARKER`]. Real requests carry a few dozen.
pub const MAX_HEADERS: usize = 128;

/// Request headers whose values are kept (after scrubbing); every other value becomes
/// `[redacted:header]`. Compared case-insensitively. `sec-ch-ua*` and `sec-fetch-*` are allowed
/// by prefix.
pub const HEADER_ALLOW_LIST: &[&str] = &[
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "cf-ipcountry",
    "cf-ray",
    "cf-visitor",
    "connection",
    "content-encoding",
    "content-language",
    "content-length",
    "content-type",
    "dnt",
    "host",
    "if-modified-since",
    "if-none-match",
    "origin",
    "pragma",
    "priority",
    "referer",
    "te",
    "upgrade",
    "upgrade-insecure-requests",
    "user-agent",
    "x-forwarded-proto",
    "x-request-id",
    "x-requested-with",
];

const HEADER_PLACEHOLDER: &str = "[redacted:header]";
const DEPTH_PLACEHOLDER: &str = "[truncated:depth]";

/// Appends `piece` (scrubbed) to `out`, shifting its remarks.
fn push_scrubbed(out: &mut String, remarks: &mut Vec<Remark>, piece: Scrubbed) {
    let base = out.len();
    out.push_str(&piece.text);
    remarks.extend(piece.remarks.into_iter().map(|r| Remark {
        rule: r.rule,
        start: r.start + base,
        end: r.end + base,
    }));
}

fn push_placeholder(out: &mut String, remarks: &mut Vec<Remark>, rule: &str, text: &str) {
    let start = out.len();
    out.push_str(text);
    remarks.push(Remark {
        rule: rule.to_string(),
        start,
        end: out.len(),
    });
}

/// Query keys whose values are credentials or personal data even though [`classify_key`] does
/// not say so (OAuth `code`/`state`, signatures, one-time codes; names, search terms, contact
/// details): their values are always replaced. Compared case-insensitively.
pub const QUERY_SENSITIVE_KEYS: &[&str] = &[
    "code",
    "state",
    "sig",
    "signature",
    "otp",
    "nonce",
    "hash",
    "ticket",
    "hmac",
    "user",
    "username",
    "login",
    "name",
    "fullname",
    "firstname",
    "lastname",
    "first",
    "last",
    "email",
    "mail",
    "phone",
    "tel",
    "mobile",
    "address",
    "q",
    "query",
    "search",
    "term",
    "s",
    "city",
    "zip",
    "postcode",
    "ssn",
    "dob",
    "birthdate",
    "iban",
    "account",
    "card",
];

/// Where the line is for a query value (`key=value`): it stays visible when the key is harmless
/// (neither [`classify_key`] nor [`QUERY_SENSITIVE_KEYS`]) and the value is benign: a number of at
/// most 6 integer digits (`page=2`, `limit=100`, `ratio=0.5`, `-1`), or one word of 1–16 ASCII
/// letters (`Infinity`, `asc`, `true`, an enum value), and no text rule fires on it. Everything
/// else becomes `[redacted:query]`: ids, tokens, emails, long numbers (phones, cards), free text.
pub fn benign_query_value(key: &str, value: &str) -> bool {
    let k = key.trim().to_ascii_lowercase();
    if classify_key(&k).is_some() || QUERY_SENSITIVE_KEYS.contains(&k.as_str()) {
        return false;
    }
    let v = value.strip_prefix('-').unwrap_or(value);
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let number = !int.is_empty()
        && int.len() <= 6
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 6
        && frac.bytes().all(|b| b.is_ascii_digit());
    let word = (1..=16).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphabetic());
    (number || word) && scrub_text(value).is_clean()
}

/// Scrubs `k=v&k2=v2`: keys scrubbed as text, values kept when [`benign_query_value`], else
/// replaced; a bare component (no `=`) is scrubbed as text, except right after a replaced value:
/// there it is the rest of that value (`password=tr0ub&dor&user=x`, an `&` the producer did not
/// percent-encode) and goes with it. `carry` says the text before ended in a replaced value (a
/// raw `#` in a password starts the fragment); returns whether this one does.
fn scrub_pairs(query: &str, out: &mut String, remarks: &mut Vec<Remark>, carry: bool) -> bool {
    let mut prev_replaced = carry;
    let mut first = true;
    for pair in query.split('&') {
        let split = pair.split_once('=');
        if split.is_none() && prev_replaced {
            continue;
        }
        if !first {
            out.push('&');
        }
        first = false;
        match split {
            Some((k, v)) => {
                push_scrubbed(out, remarks, scrub_text(k));
                out.push('=');
                prev_replaced = false;
                if benign_query_value(k, v) {
                    out.push_str(v);
                } else if !v.is_empty() {
                    push_placeholder(out, remarks, "@query_value", "[redacted:query]");
                    prev_replaced = true;
                } else {
                    // `api_key=` then a raw `#`: the value went into the fragment
                    let key = k.trim().to_ascii_lowercase();
                    prev_replaced = classify_key(&key).is_some()
                        || QUERY_SENSITIVE_KEYS.contains(&key.as_str());
                }
            }
            None => {
                prev_replaced = false;
                push_scrubbed(out, remarks, scrub_text(pair));
            }
        }
    }
    prev_replaced
}

/// Scrubs a URL: userinfo replaced by `[redacted:url_userinfo]`, every query value (and every
/// `k=v` fragment value) replaced by `[redacted:query]` with keys kept, host and path scrubbed
/// with the free-text rules (emails, tokens, IPs in paths). Works on relative URLs too.
pub fn scrub_url(url: &str) -> Scrubbed {
    let (url, truncated) = bound(url);
    let mut out = String::with_capacity(url.len() + 16);
    let mut remarks = Vec::new();

    let (before_frag, fragment) = match url.split_once('#') {
        Some((a, f)) => (a, Some(f)),
        None => (url, None),
    };
    let (before_query, query) = match before_frag.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (before_frag, None),
    };
    // scheme://authority/path
    let (scheme, rest) = match before_query.split_once("://") {
        Some((s, r))
            if !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-')) =>
        {
            (Some(s), r)
        }
        _ => (None, before_query),
    };
    if let Some(s) = scheme {
        out.push_str(s);
        out.push_str("://");
        let (authority, path) = match rest.find('/') {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
            None => (rest, ""),
        };
        let host = match authority.rsplit_once('@') {
            Some((_userinfo, host)) => {
                push_placeholder(
                    &mut out,
                    &mut remarks,
                    "@url_userinfo",
                    "[redacted:url_userinfo]",
                );
                out.push('@');
                host
            }
            None => authority,
        };
        push_scrubbed(&mut out, &mut remarks, scrub_text(host));
        push_scrubbed(&mut out, &mut remarks, scrub_text(path));
    } else {
        push_scrubbed(&mut out, &mut remarks, scrub_text(rest));
    }
    let mut carry = false;
    if let Some(q) = query {
        out.push('?');
        carry = scrub_pairs(q, &mut out, &mut remarks, false);
    }
    if let Some(f) = fragment {
        if carry {
            // the fragment began inside a replaced value: that part goes with it
            let rest = f.split_once('&').map_or("", |(_, r)| r);
            if !rest.is_empty() {
                out.push('&');
                scrub_pairs(rest, &mut out, &mut remarks, true);
            }
        } else {
            out.push('#');
            if f.contains('=') {
                scrub_pairs(f, &mut out, &mut remarks, false);
            } else {
                push_scrubbed(&mut out, &mut remarks, scrub_text(f));
            }
        }
    }
    if truncated {
        push_placeholder(&mut out, &mut remarks, "@truncate", TRUNCATION_MARKER);
    }
    Scrubbed { text: out, remarks }
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn field_remarks(field: &str, remarks: Vec<Remark>, out: &mut Vec<FieldRemark>) {
    out.extend(remarks.into_iter().map(|r| FieldRemark {
        field: field.to_string(),
        rule: r.rule,
        start: r.start,
        end: r.end,
    }));
}

/// Scrubs a JSON value in place. Strings go through [`scrub_text`]; numbers long enough to be a
/// card or phone number are scrubbed as text too (and become strings if something fired); values
/// under sensitive keys ([`classify_key`]: password, secret, token, api_key, authorization,
/// cookie, session, credential, private_key, ... also as substrings like `dbPassword`) are
/// replaced whole whatever their type, except `null` and `""` which hide nothing; object keys
/// that contain PII are scrubbed too (remark path gets `#key`), and keys of one object that
/// scrub to the same text are told apart by a suffix `_2`, `_3`, … in order. Deeper than
/// [`MAX_JSON_DEPTH`] levels, a value is replaced by `"[truncated:depth]"` with an `@truncate`
/// remark.
pub fn scrub_json(value: &mut Value, field: &str, remarks: &mut Vec<FieldRemark>) {
    walk(value, field, 0, remarks);
}

fn walk(value: &mut Value, field: &str, depth: usize, remarks: &mut Vec<FieldRemark>) {
    if depth > MAX_JSON_DEPTH {
        *value = Value::String(DEPTH_PLACEHOLDER.to_string());
        remarks.push(FieldRemark {
            field: field.to_string(),
            rule: "@truncate".into(),
            start: 0,
            end: DEPTH_PLACEHOLDER.len(),
        });
        return;
    }
    match value {
        Value::String(s) => {
            let out = scrub_text(s);
            if !out.remarks.is_empty() {
                *s = out.text;
                field_remarks(field, out.remarks, remarks);
            }
        }
        Value::Number(n) => {
            let text = n.to_string();
            if text.bytes().filter(u8::is_ascii_digit).count() >= 9 {
                let out = scrub_text(&text);
                if !out.remarks.is_empty() {
                    *value = Value::String(out.text);
                    field_remarks(field, out.remarks, remarks);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{field}[{i}]"), depth + 1, remarks);
            }
        }
        Value::Object(map) => {
            let old = std::mem::take(map);
            // Per scrubbed key, the last suffix used. (Appending one `_` per collision made
            // 20,000 email keys, all `[redacted:email]`, cost quadratic time and memory.)
            let mut suffixes: HashMap<String, usize> = HashMap::new();
            for (key, mut item) in old {
                let scrubbed_key = scrub_text(&key);
                let mut new_key = if scrubbed_key.remarks.is_empty() {
                    key.clone()
                } else {
                    scrubbed_key.text
                };
                if map.contains_key(&new_key) {
                    let n = suffixes.entry(new_key.clone()).or_insert(1);
                    new_key = loop {
                        *n += 1;
                        let candidate = format!("{new_key}_{n}");
                        if !map.contains_key(&candidate) {
                            break candidate;
                        }
                    };
                }
                let path = join_key(field, &new_key);
                if !scrubbed_key.remarks.is_empty() {
                    field_remarks(&format!("{path}#key"), scrubbed_key.remarks, remarks);
                }
                match classify_key(&key) {
                    Some(class) if !matches!(&item, Value::Null) && item.as_str() != Some("") => {
                        let placeholder = format!("[redacted:{}]", class.kind);
                        if item.as_str() != Some(placeholder.as_str()) {
                            remarks.push(FieldRemark {
                                field: path,
                                rule: class.rule.into(),
                                start: 0,
                                end: placeholder.len(),
                            });
                            item = Value::String(placeholder);
                        }
                    }
                    _ => walk(&mut item, &path, depth + 1, remarks),
                }
                map.insert(new_key, item);
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

/// `name` (trimmed) is on [`HEADER_ALLOW_LIST`] or a client-hint / fetch-metadata header, ASCII
/// case-insensitively (without a lower-cased copy: this runs for every header of every event;
/// a binary search of the sorted, lower-case list: a unit test checks both).
fn header_allowed(name: &str) -> bool {
    let n = name.trim();
    let has_prefix = |p: &str| n.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    HEADER_ALLOW_LIST
        .binary_search_by(|h| h.bytes().cmp(n.bytes().map(|b| b.to_ascii_lowercase())))
        .is_ok()
        || has_prefix("sec-ch-ua")
        || has_prefix("sec-fetch-")
}

/// Scrubs request headers: allow-listed headers ([`HEADER_ALLOW_LIST`]) keep their values
/// (`referer` and `origin` scrubbed as URLs, the rest with the text rules); every other header
/// keeps its name and gets `[redacted:header]` with an `@header` remark, including values the
/// runtime already replaced with `REDACTED`.
///
/// At most [`MAX_HEADERS`] headers are kept, allow-listed ones first. When some are dropped, the
/// key [`TRUNCATION_MARKER`] holds how many, and an `@truncate` remark on `field` has `start` =
/// headers kept and `end` = headers there were (counts, not bytes).
pub fn scrub_headers(
    headers: &Map<String, Value>,
    field: &str,
    remarks: &mut Vec<FieldRemark>,
) -> Map<String, Value> {
    let mut out = Map::new();
    // each header's allow-list check once; the allowed ones first
    let mut order: Vec<(bool, &String, &Value)> = headers
        .iter()
        .map(|(name, value)| (header_allowed(name), name, value))
        .collect();
    order.sort_by_key(|(allowed, _, _)| !allowed);
    for (allowed, name, value) in order.into_iter().take(MAX_HEADERS) {
        // the remark path, built only for a header with remarks
        let path = || join_key(field, name);
        if !allowed {
            remarks.push(FieldRemark {
                field: path(),
                rule: "@header".into(),
                start: 0,
                end: HEADER_PLACEHOLDER.len(),
            });
            out.insert(name.clone(), Value::String(HEADER_PLACEHOLDER.to_string()));
            continue;
        }
        let trimmed = name.trim();
        let scrubbed = match value {
            Value::String(s) if s == "REDACTED" => {
                remarks.push(FieldRemark {
                    field: path(),
                    rule: "@header".into(),
                    start: 0,
                    end: HEADER_PLACEHOLDER.len(),
                });
                Value::String(HEADER_PLACEHOLDER.to_string())
            }
            Value::String(s) => {
                let out = if trimmed.eq_ignore_ascii_case("referer")
                    || trimmed.eq_ignore_ascii_case("origin")
                {
                    scrub_url(s)
                } else {
                    scrub_text(s)
                };
                if !out.remarks.is_empty() {
                    field_remarks(&path(), out.remarks, remarks);
                }
                Value::String(out.text)
            }
            other => {
                let mut v = other.clone();
                walk(&mut v, &path(), 1, remarks);
                v
            }
        };
        out.insert(name.clone(), scrubbed);
    }
    if headers.len() > out.len() {
        let kept = out.len();
        remarks.push(FieldRemark {
            field: field.to_string(),
            rule: "@truncate".into(),
            start: kept,
            end: headers.len(),
        });
        out.insert(
            TRUNCATION_MARKER.to_string(),
            Value::from(headers.len() - kept),
        );
    }
    out
}

/// Keeps only the coarse location fields of the Workers `cf` object: `colo`, `country`,
/// `continent` (strings). City, region, postal code, coordinates, timezone, ASN, TLS client
/// certificate, bot management... are dropped.
pub fn scrub_cf(cf: &Map<String, Value>) -> Map<String, Value> {
    cf_location(|k| cf.get(k).and_then(Value::as_str))
}

/// The `cf` summary [`scrub_cf`] keeps, from the three string properties `get` gives (by name:
/// `colo`, `country`, `continent`), each cut to 16 chars; absent ones are left out. The tail
/// pipeline reads only those three while parsing (`trace::TraceCf`) and calls this directly.
pub fn cf_location<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Map<String, Value> {
    ["colo", "country", "continent"]
        .iter()
        .filter_map(|k| {
            get(k).map(|s| {
                (
                    (*k).to_string(),
                    Value::String(s.chars().take(16).collect()),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_allow_list_is_searched_like_a_scan() {
        assert!(
            HEADER_ALLOW_LIST
                .windows(2)
                .all(|w| w[0] < w[1] && w[0].bytes().all(|b| !b.is_ascii_uppercase())),
            "sorted, unique, lower case: what the binary search needs"
        );
        let scan = |n: &str| {
            let n = n.trim();
            HEADER_ALLOW_LIST.iter().any(|h| h.eq_ignore_ascii_case(n))
                || n.get(..9)
                    .is_some_and(|h| h.eq_ignore_ascii_case("sec-ch-ua"))
                || n.get(..10)
                    .is_some_and(|h| h.eq_ignore_ascii_case("sec-fetch-"))
        };
        let mut names: Vec<String> = Vec::new();
        for h in HEADER_ALLOW_LIST {
            names.push((*h).to_string());
            names.push(h.to_ascii_uppercase());
            names.push(format!(" {h} "));
            names.push(format!("{h}x"));
            names.push(h[..h.len() - 1].to_string());
        }
        for n in [
            "",
            "a",
            "zzz",
            "authorization",
            "Cookie",
            "SEC-CH-UA-Mobile",
            "sec-fetch-site",
            "x-api-key",
            "Accept\u{212A}",
            "ACCEPT-ENCODING",
        ] {
            names.push(n.to_string());
        }
        for n in &names {
            assert_eq!(header_allowed(n), scan(n), "{n:?}");
        }
        assert!(header_allowed("User-Agent") && !header_allowed("Authorization"));
    }

    #[test]
    fn url_userinfo_query_path() {
        let out = scrub_url(
            "https://bob:hunter2@api.example.com/users/bob@example.com/x?token=abc&page=2&flag#access_token=xyz",
        );
        assert_eq!(
            out.text,
            "https://[redacted:url_userinfo]@api.example.com/users/[redacted:email]/x?token=[redacted:query]&page=2&flag#access_token=[redacted:query]"
        );
        for r in &out.remarks {
            assert!(out.text[r.start..r.end].starts_with("[redacted:"), "{r:?}");
        }
        let rules: Vec<&str> = out.remarks.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(
            rules,
            ["@url_userinfo", "@email", "@query_value", "@query_value"]
        );
    }

    #[test]
    fn query_value_with_raw_ampersand_or_hash() {
        assert_eq!(
            scrub_url("/login?password=tr0ub&dor&user=bob&page=2").text,
            "/login?password=[redacted:query]&user=[redacted:query]&page=2"
        );
        assert_eq!(
            scrub_url("/x?api_key=c#c&Q#S&page=2").text,
            "/x?api_key=[redacted:query]&page=2"
        );
        assert_eq!(scrub_url("/x?a&b").text, "/x?a&b");
    }

    #[test]
    fn query_values_benign_or_not() {
        // the visible side: harmless key, short number or one word
        assert_eq!(
            scrub_url("/items?page=2&limit=Infinity&sort=asc&ratio=0.25&offset=-1").text,
            "/items?page=2&limit=Infinity&sort=asc&ratio=0.25&offset=-1"
        );
        // the replaced side: sensitive key, personal key, long number, id, token, email, text
        assert_eq!(
            scrub_url(
                "/x?token=2&password=Infinity&code=1234&q=alice&id=1234567&ref=ab12cd&to=a%40b.io&msg=hi%20there&session=asc"
            )
            .text,
            "/x?token=[redacted:query]&password=[redacted:query]&code=[redacted:query]&q=[redacted:query]&id=[redacted:query]&ref=[redacted:query]&to=[redacted:query]&msg=[redacted:query]&session=[redacted:query]"
        );
    }

    #[test]
    fn url_plain_and_relative() {
        assert_eq!(
            scrub_url("https://example.com/a/b").text,
            "https://example.com/a/b"
        );
        assert!(scrub_url("https://example.com/a/b").remarks.is_empty());
        assert_eq!(
            scrub_url("/cb?code=1234&state=").text,
            "/cb?code=[redacted:query]&state="
        );
        assert_eq!(
            scrub_url("http://10.0.0.1:8080/x").text,
            "http://[redacted:ip]:8080/x"
        );
        assert_eq!(scrub_url("").text, "");
        assert_eq!(
            scrub_url("https://user@github.com/org/repo.git").text,
            "https://[redacted:url_userinfo]@github.com/org/repo.git"
        );
        let tok =
            scrub_url("https://api.example.com/v1/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/x");
        assert_eq!(
            tok.text,
            "https://api.example.com/v1/[redacted:github_token]/x"
        );
        // idempotent
        let once = scrub_url("https://u:p@h.io/a?x=1");
        assert_eq!(scrub_url(&once.text).text, once.text);
    }

    #[test]
    fn json_sensitive_keys_and_strings() {
        let mut v = json!({
            "user": {"email": "bob@example.com", "dbPassword": {"nested": 1}, "name": "Bob"},
            "logs": [{"message": ["login", {"user": {"password": "x", "apiKey": 12345}}]}],
            "Authorization": "Bearer abcDEF123456",
            "token": null,
            "prompt_tokens": 123,
            "card": 4111111111111111u64,
            "count": 3
        });
        let mut remarks = Vec::new();
        scrub_json(&mut v, "", &mut remarks);
        assert_eq!(v["user"]["email"], "[redacted:email]");
        assert_eq!(v["user"]["dbPassword"], "[redacted:password]");
        assert_eq!(v["user"]["name"], "Bob");
        assert_eq!(
            v["logs"][0]["message"][1]["user"]["password"],
            "[redacted:password]"
        );
        assert_eq!(
            v["logs"][0]["message"][1]["user"]["apiKey"],
            "[redacted:api_key]"
        );
        assert_eq!(v["Authorization"], "[redacted:auth]");
        assert_eq!(v["token"], Value::Null);
        assert_eq!(v["prompt_tokens"], 123);
        assert_eq!(v["card"], "[redacted:credit_card:visa]");
        assert_eq!(v["count"], 3);
        let fields: Vec<&str> = remarks.iter().map(|r| r.field.as_str()).collect();
        assert!(
            fields.contains(&"logs[0].message[1].user.password"),
            "{fields:?}"
        );
        assert!(fields.contains(&"user.email"), "{fields:?}");
        // idempotent
        let before = v.clone();
        let mut again = Vec::new();
        scrub_json(&mut v, "", &mut again);
        assert_eq!(v, before);
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn json_keys_with_pii_and_depth() {
        let mut v = json!({"bob@example.com": 1});
        let mut remarks = Vec::new();
        scrub_json(&mut v, "req", &mut remarks);
        assert_eq!(v, json!({"[redacted:email]": 1}));
        assert_eq!(remarks[0].field, "req.[redacted:email]#key");

        let mut deep = json!("bottom");
        for _ in 0..40 {
            deep = json!({ "a": deep });
        }
        let mut remarks = Vec::new();
        scrub_json(&mut deep, "", &mut remarks);
        let mut cur = &deep;
        let mut levels = 0;
        while let Some(next) = cur.get("a") {
            cur = next;
            levels += 1;
        }
        assert_eq!(levels, MAX_JSON_DEPTH + 1);
        assert_eq!(cur, &json!("[truncated:depth]"));
        assert_eq!(remarks.len(), 1);
        assert_eq!(remarks[0].rule, "@truncate");
    }

    #[test]
    fn headers_allow_list() {
        let h = json!({
            "Accept": "text/html",
            "User-Agent": "Mozilla/5.0 (X11) Chrome/120.0.0.0 Safari/537.36",
            "Referer": "https://example.com/login?next=/admin&token=abc",
            "Authorization": "Bearer abc",
            "Cookie": "REDACTED",
            "cf-connecting-ip": "203.0.113.9",
            "x-forwarded-for": "203.0.113.9",
            "X-Custom": "whatever",
            "cf-ray": "8a1b2c3d4e5f6a7b-AMS",
            "sec-ch-ua-platform": "\"Linux\"",
            "host": "10.0.0.1"
        });
        let mut remarks = Vec::new();
        let out = scrub_headers(
            h.as_object().unwrap_or(&Map::new()),
            "request.headers",
            &mut remarks,
        );
        assert_eq!(out["Accept"], "text/html");
        assert_eq!(
            out["User-Agent"],
            "Mozilla/5.0 (X11) Chrome/120.0.0.0 Safari/537.36"
        );
        assert_eq!(
            out["Referer"],
            "https://example.com/login?next=[redacted:query]&token=[redacted:query]"
        );
        for k in [
            "Authorization",
            "Cookie",
            "cf-connecting-ip",
            "x-forwarded-for",
            "X-Custom",
        ] {
            assert_eq!(out[k], "[redacted:header]", "{k}");
        }
        assert_eq!(out["cf-ray"], "8a1b2c3d4e5f6a7b-AMS");
        assert_eq!(out["sec-ch-ua-platform"], "\"Linux\"");
        assert_eq!(out["host"], "[redacted:ip]");
        assert!(
            remarks
                .iter()
                .any(|r| r.field == "request.headers.Authorization" && r.rule == "@header")
        );
        assert!(
            remarks
                .iter()
                .any(|r| r.field == "request.headers.Cookie" && r.rule == "@header")
        );
    }

    #[test]
    fn cf_keeps_only_coarse_location() {
        let cf = json!({
            "colo": "AMS", "country": "NL", "continent": "EU", "city": "Amsterdam", "postalCode": "1011",
            "latitude": "52.37", "longitude": "4.89", "asn": 1136, "tlsClientAuth": {"certPresented": "1"},
            "botManagement": {"score": 99}, "region": "North Holland", "timezone": "Europe/Amsterdam"
        });
        let out = scrub_cf(cf.as_object().unwrap_or(&Map::new()));
        assert_eq!(
            Value::Object(out),
            json!({"colo": "AMS", "country": "NL", "continent": "EU"})
        );
    }
}
