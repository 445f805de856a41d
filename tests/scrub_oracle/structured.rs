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

/// Scrubs `k=v&k2=v2`: every non-empty value replaced, keys scrubbed as text; a bare component
/// (no `=`) is scrubbed as text.
fn scrub_pairs(query: &str, out: &mut String, remarks: &mut Vec<Remark>) {
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((k, v)) => {
                push_scrubbed(out, remarks, scrub_text(k));
                out.push('=');
                if !v.is_empty() {
                    push_placeholder(out, remarks, "@query_value", "[redacted:query]");
                }
            }
            None => push_scrubbed(out, remarks, scrub_text(pair)),
        }
    }
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
    if let Some(q) = query {
        out.push('?');
        scrub_pairs(q, &mut out, &mut remarks);
    }
    if let Some(f) = fragment {
        out.push('#');
        if f.contains('=') {
            scrub_pairs(f, &mut out, &mut remarks);
        } else {
            push_scrubbed(&mut out, &mut remarks, scrub_text(f));
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

fn header_allowed(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    HEADER_ALLOW_LIST.contains(&n.as_str())
        || n.starts_with("sec-ch-ua")
        || n.starts_with("sec-fetch-")
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
    let allowed = headers.iter().filter(|(name, _)| header_allowed(name));
    let others = headers.iter().filter(|(name, _)| !header_allowed(name));
    for (name, value) in allowed.chain(others).take(MAX_HEADERS) {
        let path = join_key(field, name);
        if !header_allowed(name) {
            remarks.push(FieldRemark {
                field: path,
                rule: "@header".into(),
                start: 0,
                end: HEADER_PLACEHOLDER.len(),
            });
            out.insert(name.clone(), Value::String(HEADER_PLACEHOLDER.to_string()));
            continue;
        }
        let lower = name.trim().to_ascii_lowercase();
        let scrubbed = match value {
            Value::String(s) if s == "REDACTED" => {
                remarks.push(FieldRemark {
                    field: path,
                    rule: "@header".into(),
                    start: 0,
                    end: HEADER_PLACEHOLDER.len(),
                });
                Value::String(HEADER_PLACEHOLDER.to_string())
            }
            Value::String(s) => {
                let out = if lower == "referer" || lower == "origin" {
                    scrub_url(s)
                } else {
                    scrub_text(s)
                };
                field_remarks(&path, out.remarks, remarks);
                Value::String(out.text)
            }
            other => {
                let mut v = other.clone();
                walk(&mut v, &path, 1, remarks);
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
    ["colo", "country", "continent"]
        .iter()
        .filter_map(|k| match cf.get(*k) {
            Some(Value::String(s)) => Some((
                (*k).to_string(),
                Value::String(s.chars().take(16).collect()),
            )),
            _ => None,
        })
        .collect()
}
