//! Route pattern: the path of a request URL with its id segments replaced by `:id`, so that
//! `/users/123` and `/users/456` are one route.
//!
//! Rules:
//! - Absolute URL (`scheme://authority/path`) or protocol-relative (`//host/path`): the authority
//!   (userinfo, host, port) is dropped; a bare path is taken as it is; anything else without a
//!   leading `/` (`users/1`) is read as a path. Query (`?…`) and fragment (`#…`) are dropped.
//!   No percent-decoding.
//! - Empty segments (`//`, a trailing `/`) are dropped; the result starts with `/` and has no
//!   trailing slash; no segments → `/`.
//! - A segment becomes `:id` when it is: an integer; a UUID; hex of ≥ 8 chars with a digit; an
//!   email; a date (`2026-11-21`); a mixed alphanumeric id with ≥ 3 digits (`ord_8f3k2j9`,
//!   `user123`, `a1b2c3`); an opaque token of ≥ 16 url-safe chars with upper, lower and digits;
//!   any of those followed by a short extension (`123.json` → `:id.json`); and `REDACTED`, which
//!   workerd itself writes into TraceItem URLs in place of id-like segments (seen in real traces:
//!   `/orders/<uuid>` arrives as `/orders/REDACTED`).
//!   Words (`users`, `v1`, `oauth2`, `my-blog-post`) stay.
//! - Bounded: the input is cut to 2 KiB (at a char boundary), at most 32 segments are kept.

/// Input is cut to this many bytes first.
pub const MAX_URL_BYTES: usize = 2048;
/// At most this many path segments are kept.
pub const MAX_SEGMENTS: usize = 32;

/// URL or bare path → route pattern (see the module docs).
pub fn route_pattern(url: &str) -> String {
    let url = crate::text::truncate(url, MAX_URL_BYTES).trim();
    let path = path_of(url);
    let mut out = String::with_capacity(path.len().min(256) + 1);
    for seg in path.split('/').filter(|s| !s.is_empty()).take(MAX_SEGMENTS) {
        out.push('/');
        if is_id_segment(seg) {
            out.push_str(":id");
        } else if let Some((stem, ext)) = seg.rsplit_once('.')
            && !stem.is_empty()
            && (1..=5).contains(&ext.len())
            && ext.bytes().all(|c| c.is_ascii_alphanumeric())
            && is_id_segment(stem)
        {
            out.push_str(":id.");
            out.push_str(ext);
        } else {
            out.push_str(seg);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The path part of `url`: after the authority, before `?`/`#`.
/// Longest host name kept as a script identity, bytes.
pub const MAX_SCRIPT_HOST_BYTES: usize = 100;

/// The authority of an absolute URL as a script identity: its host, lowercased, with the port
/// when one is given (`api.example.com`, `127.0.0.1:8787`), or None when the URL has no
/// authority, carries user info, or the host has characters a DNS name or address does not.
/// Used when the runtime reports no script name (always so under `wrangler dev`): two producers
/// on two ports stay two scripts instead of meeting under one configured name.
pub fn script_host(url: &str) -> Option<String> {
    let pos = url
        .find("://")
        .filter(|&p| is_scheme(url.get(..p).unwrap_or("")))?;
    let rest = url.get(pos + 3..)?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') || authority.len() > MAX_SCRIPT_HOST_BYTES {
        return None;
    }
    authority
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        .then(|| authority.to_ascii_lowercase())
}

fn path_of(url: &str) -> &str {
    let after_authority = if let Some(pos) = url
        .find("://")
        .filter(|&p| is_scheme(url.get(..p).unwrap_or("")))
    {
        let rest = url.get(pos + 3..).unwrap_or("");
        rest.find(['/', '?', '#'])
            .and_then(|p| rest.get(p..))
            .unwrap_or("")
    } else if let Some(rest) = url.strip_prefix("//") {
        rest.find(['/', '?', '#'])
            .and_then(|p| rest.get(p..))
            .unwrap_or("")
    } else if url.contains(char::is_whitespace) {
        // Not a URL or a path.
        ""
    } else {
        url
    };
    let end = after_authority
        .find(['?', '#'])
        .unwrap_or(after_authority.len());
    after_authority.get(..end).unwrap_or("")
}

fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|c| c.is_ascii_alphabetic())
        && bytes.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// True for segments that are ids (see the module docs).
fn is_id_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    if seg == "REDACTED" {
        return true;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
    // Integer (optionally signed).
    let unsigned = b.strip_prefix(b"-").unwrap_or(b);
    if !unsigned.is_empty() && unsigned.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(b) {
        return true;
    }
    // Hex of ≥ 8 chars with a digit (hashes, object ids, uuids without dashes).
    if b.len() >= 8 && digits > 0 && b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    // Email.
    if let Some((local, domain)) = seg.split_once('@')
        && !local.is_empty()
        && domain.contains('.')
    {
        return true;
    }
    if is_date(b) {
        return true;
    }
    let url_safe = b
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'~' | b'=' | b'%'));
    if !url_safe {
        return false;
    }
    // Mixed alphanumeric id with ≥ 3 digits: `ord_8f3k2j9`, `user123`.
    if digits >= 3 && letters > 0 {
        return true;
    }
    // Opaque token: long, upper + lower + digits.
    b.len() >= 16
        && digits > 0
        && b.iter().any(u8::is_ascii_uppercase)
        && b.iter().any(u8::is_ascii_lowercase)
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(k, &c)| {
            if matches!(k, 8 | 13 | 18 | 23) {
                c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// `2026-11-21`, `2026-11-21T10:00:00Z`-like, `20261121`.
fn is_date(b: &[u8]) -> bool {
    let d = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
    b.len() >= 10
        && d(0)
        && d(1)
        && d(2)
        && d(3)
        && b.get(4) == Some(&b'-')
        && d(5)
        && d(6)
        && b.get(7) == Some(&b'-')
        && d(8)
        && d(9)
}

#[cfg(test)]
mod tests {
    use super::route_pattern as r;

    #[test]
    fn a_script_host_is_the_urls_authority_or_nothing() {
        use super::script_host;
        assert_eq!(
            script_host("https://API.example.com/users/1?x=1").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            script_host("http://127.0.0.1:8787/").as_deref(),
            Some("127.0.0.1:8787")
        );
        assert_eq!(
            script_host("http://[::1]:8788/a").as_deref(),
            Some("[::1]:8788")
        );
        assert_eq!(
            script_host("http://localhost:8787").as_deref(),
            Some("localhost:8787")
        );
        for bad in [
            "/users/1",
            "",
            "https://user:pw@example.com/",
            "not a url",
            "https:///x",
            "http://ex ample.com/",
        ] {
            assert_eq!(script_host(bad), None, "{bad:?}");
        }
        assert_eq!(
            script_host(&format!("https://{}.com/", "a".repeat(200))),
            None
        );
    }

    #[test]
    fn absolute_and_bare() {
        assert_eq!(r("http://host:8787/users/123?x=1#f"), "/users/:id");
        assert_eq!(r("https://user:pw@example.com/a/b/"), "/a/b");
        assert_eq!(r("/users/123"), "/users/:id");
        assert_eq!(r("users/123"), "/users/:id");
        assert_eq!(r("//cdn.example.com/x/1"), "/x/:id");
        assert_eq!(r("http://127.0.0.1:8790/throw"), "/throw");
    }

    #[test]
    fn root_and_empty() {
        assert_eq!(r(""), "/");
        assert_eq!(r("   "), "/");
        assert_eq!(r("/"), "/");
        assert_eq!(r("http://host"), "/");
        assert_eq!(r("http://host?x=1"), "/");
        assert_eq!(r("http://host/#frag"), "/");
        assert_eq!(r("not a url"), "/");
        assert_eq!(r("?x=1"), "/");
        assert_eq!(r("///a//b///"), "/a/b");
    }

    #[test]
    fn id_shapes() {
        assert_eq!(r("/users/123/orders/-5"), "/users/:id/orders/:id");
        assert_eq!(r("/r/123e4567-e89b-12d3-a456-426614174000"), "/r/:id");
        assert_eq!(r("/obj/507f1f77bcf86cd799439011"), "/obj/:id");
        assert_eq!(r("/commit/deadbeef12"), "/commit/:id");
        assert_eq!(r("/u/bob@example.com/x"), "/u/:id/x");
        assert_eq!(r("/orders/ord_8f3k2j9"), "/orders/:id");
        assert_eq!(r("/u/user123"), "/u/:id");
        assert_eq!(r("/t/dGhpcyBpcyBhIHRva2Vu1"), "/t/:id");
        assert_eq!(r("/day/2026-11-21"), "/day/:id");
        assert_eq!(r("/files/123.json"), "/files/:id.json");
        assert_eq!(r("http://127.0.0.1:8787/orders/REDACTED"), "/orders/:id");
    }

    #[test]
    fn words_stay() {
        assert_eq!(r("/api/v1/oauth2/callback"), "/api/v1/oauth2/callback");
        assert_eq!(
            r("/blog/my-first-post-about-things"),
            "/blog/my-first-post-about-things"
        );
        assert_eq!(r("/static/app.js"), "/static/app.js");
        assert_eq!(r("/__scheduled"), "/__scheduled");
        assert_eq!(r("/users/:id"), "/users/:id");
        assert_eq!(r("/decade"), "/decade");
    }

    #[test]
    fn bounded_and_never_panics() {
        let many = "/a".repeat(1000);
        assert_eq!(r(&many).matches('/').count(), super::MAX_SEGMENTS);
        let big = format!("http://h/{}", "é".repeat(1_000_000));
        assert!(r(&big).len() <= super::MAX_URL_BYTES);
        for s in [
            "://",
            "http://",
            "a://b",
            "\u{0}/\u{1}",
            "/é/ü/1",
            "http://[::1]:8080/x/1",
            "//",
            "#",
            "/?/",
        ] {
            let _ = r(s);
        }
        assert_eq!(r("http://[::1]:8080/x/1"), "/x/:id");
        assert_eq!(r("/é/ü/1"), "/é/ü/:id");
    }
}
