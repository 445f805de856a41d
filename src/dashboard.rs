//! The operator dashboard's pure parts (issue 11 §4): sessions, CSRF and origin checks, form
//! parsing, HTML escaping, the occurrences chart, the ticket's markdown and the pages. Native and
//! tested here; the agent-runner's glue (`src/runner/dashboard.rs`) reads D1 through the JSON
//! API's own functions and hands their rows (the API's JSON, as `selfheal show` reads it) to the
//! page functions below.
//!
//! - **Session** ([`session_value`], [`session_ok`]): stateless, `expiry.HMAC-SHA256(token,
//!   "session:" + expiry)` (expiry in seconds since the epoch, the MAC in lowercase hex), in an
//!   `HttpOnly; SameSite=Strict` cookie (`Secure` when served over https). Nothing is stored: a
//!   new `SELFHEAL_API_TOKEN` ends every session. Compared in constant time
//!   ([`crate::security::ct_eq`]).
//! - **CSRF** ([`csrf_token`], [`csrf_ok`], [`same_origin`]): every POST form carries
//!   `HMAC-SHA256(token, "csrf:" + session cookie)` (the OWASP CSRF cheat sheet's "signed
//!   double-submit cookie", bound to the session) and must come from the same origin by the Fetch
//!   Metadata `Sec-Fetch-Site` header, or by `Origin` where a browser sends no `Sec-Fetch-Site`
//!   (OWASP: "Fetch Metadata headers", "Verifying origin with standard headers"). Forms are
//!   POST-redirect-GET (303).
//! - **Escaping** ([`escape`]): every value from D1 is untrusted (incident text comes from
//!   production errors): `& < > " '` become entities, in text and in attributes alike. The
//!   ticket's markdown ([`markdown`]) is escaped first and only then given structure (headings,
//!   lists, code fences, inline code, bold): no raw HTML, no links from its text.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::fingerprint::hex;
use crate::security::ct_eq;
use crate::store::utc_day;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "selfheal_session";
/// How long a session lasts, seconds (12 hours).
pub const SESSION_SECS: u64 = 12 * 3600;
/// Form field of the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// Form field of the API token on the sign-in form.
pub const TOKEN_FIELD: &str = "token";
/// Hours in the incident list's chart (7 days).
pub const CHART_HOURS: usize = 7 * 24;
const HOUR_MS: i64 = 3_600_000;

/// Lowercase hex HMAC-SHA256 of `message` keyed by `key` (RFC 2104).
fn mac_hex(key: &str, message: &str) -> String {
    match <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(message.as_bytes());
            hex(&mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; unreachable, and then no session verifies.
        Err(_) => String::new(),
    }
}

/// The session cookie's value for a session ending at `expiry_secs` (seconds since the epoch):
/// `"{expiry}.{hex HMAC-SHA256(token, "session:{expiry}")}"`.
pub fn session_value(token: &str, expiry_secs: u64) -> String {
    format!(
        "{expiry_secs}.{}",
        mac_hex(token, &format!("session:{expiry_secs}"))
    )
}

/// Whether `value` is a live session of `token` at `now_secs`: well formed, not expired, not
/// further ahead than [`SESSION_SECS`], its MAC equal (constant time) to the one `token` gives.
pub fn session_ok(token: &str, value: &str, now_secs: u64) -> bool {
    let Some((expiry, _)) = value.split_once('.') else {
        return false;
    };
    let Ok(expiry_secs) = expiry.parse::<u64>() else {
        return false;
    };
    if expiry_secs <= now_secs || expiry_secs > now_secs.saturating_add(SESSION_SECS) {
        return false;
    }
    ct_eq(
        value.as_bytes(),
        session_value(token, expiry_secs).as_bytes(),
    )
}

/// The CSRF token of the session whose cookie value is `session`: hex HMAC-SHA256(token,
/// `"csrf:" + session`).
pub fn csrf_token(token: &str, session: &str) -> String {
    mac_hex(token, &format!("csrf:{session}"))
}

/// Whether a submitted CSRF token is the session's (constant time); `None` (no field) → false.
pub fn csrf_ok(token: &str, session: &str, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| ct_eq(p.as_bytes(), csrf_token(token, session).as_bytes()))
}

/// Whether a POST comes from the dashboard's own origin `own` (`scheme://host[:port]`):
/// `Sec-Fetch-Site: same-origin` when the browser sends Fetch Metadata (and then an `Origin`, if
/// any, must be `own` too); otherwise an `Origin` equal to `own`. Neither header → refused.
pub fn same_origin(sec_fetch_site: Option<&str>, origin: Option<&str>, own: &str) -> bool {
    let origin_ok = origin.map(|o| o.trim_end_matches('/') == own);
    match sec_fetch_site {
        Some(site) => site == "same-origin" && origin_ok != Some(false),
        None => origin_ok == Some(true),
    }
}

/// The `Set-Cookie` header value of a session (`Path=/`, `HttpOnly`, `SameSite=Strict`,
/// `Max-Age` = [`SESSION_SECS`], `Secure` when `secure`).
pub fn session_cookie(value: &str, secure: bool) -> String {
    cookie_header(value, SESSION_SECS, secure)
}

/// The `Set-Cookie` header value that ends the session (empty, `Max-Age=0`).
pub fn cleared_cookie(secure: bool) -> String {
    cookie_header("", 0, secure)
}

fn cookie_header(value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    )
}

/// The value of cookie `name` in a `Cookie` request header (RFC 6265 §5.4: `a=b; c=d`).
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The first value of field `name` in an `application/x-www-form-urlencoded` body (WHATWG URL
/// standard: `+` is a space, `%XX` a byte; invalid UTF-8 replaced).
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|b| *b == b'&')
        .filter_map(|pair| {
            let mut kv = pair.splitn(2, |b| *b == b'=');
            Some((kv.next()?, kv.next().unwrap_or_default()))
        })
        .find(|(k, _)| percent_decode(k) == name)
        .map(|(_, v)| percent_decode(v))
}

/// `s` percent-encoded for a URL query value (every byte but the unreserved `A-Z a-z 0-9 - . _ ~`).
pub fn percent_encode(s: &str) -> String {
    s.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                match std::str::from_utf8(&s[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `s` with `& < > " '` as HTML entities: safe in element text and in quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as escaped cell text: strings bare, arrays joined by `, `, null as `-`.
pub fn cell(v: &Value) -> String {
    escape(&match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(plain).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    })
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// ms since the epoch as `YYYY-MM-DD HH:MM` (UTC); `-` for a non-number.
pub fn utc_minute(v: &Value) -> String {
    let Some(ms) = v.as_i64() else {
        return "-".to_string();
    };
    let rem = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{} {:02}:{:02}", utc_day(ms), rem / 3600, rem % 3600 / 60)
}

/// Occurrences per hour over the [`CHART_HOURS`] hours that end with the hour of `now_ms`,
/// oldest first, from `(bucket start ms, count)` rows (`ops_occ_1h`, one row per release: they
/// add up); rows outside the window are left out.
pub fn hourly_counts(rows: &[(i64, i64)], now_ms: i64) -> Vec<i64> {
    let mut counts = vec![0i64; CHART_HOURS];
    let start = now_ms.div_euclid(HOUR_MS) * HOUR_MS - (CHART_HOURS as i64 - 1) * HOUR_MS;
    for &(bucket, n) in rows {
        let i = (bucket - start).div_euclid(HOUR_MS);
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| counts.get_mut(i)) {
            *slot += n.max(0);
        }
    }
    counts
}

/// Occurrences per UTC day and release from `(bucket start ms, release, count)` rows
/// (`ops_occ_1h`): `(YYYY-MM-DD, release, total)`, by day then release (`""` = unknown release).
pub fn daily_counts(rows: &[(i64, String, i64)]) -> Vec<(String, String, i64)> {
    let mut days: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for (bucket, release, n) in rows {
        *days.entry((utc_day(*bucket), release.clone())).or_default() += n;
    }
    days.into_iter().map(|((d, r), n)| (d, r, n)).collect()
}

/// Width of the chart, px (2 per hour).
pub const CHART_WIDTH: usize = 2 * CHART_HOURS;
/// Height of the chart, px.
pub const CHART_HEIGHT: i64 = 24;

/// A small inline SVG bar chart of `counts` (one bar per hour, oldest left, 2 px wide; heights
/// scaled to the largest count, at least 1 px for a non-zero hour), with a `<title>` giving the
/// total and the peak. Only non-zero hours get a bar.
pub fn chart_svg(counts: &[i64]) -> String {
    let peak = counts.iter().copied().max().unwrap_or(0).max(0);
    let total: i64 = counts.iter().map(|n| n.max(&0)).sum();
    let mut svg = format!(
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{CHART_HEIGHT}\" \
         viewBox=\"0 0 {w} {CHART_HEIGHT}\" role=\"img\" aria-label=\"{total} occurrences in 7 days, peak {peak} per hour\">\
         <title>{total} occurrences in 7 days, peak {peak}/h</title>\
         <rect class=\"axis\" x=\"0\" y=\"{base}\" width=\"{w}\" height=\"1\"/>",
        w = 2 * counts.len(),
        base = CHART_HEIGHT - 1,
    );
    for (i, &n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
        let h = ((n * (CHART_HEIGHT - 1)) as f64 / peak as f64)
            .round()
            .max(1.0) as i64;
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"2\" height=\"{h}\"/>",
            2 * i,
            CHART_HEIGHT - 1 - h
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The ticket's markdown as HTML, safely: every character escaped first; then ATX headings
/// (shown two levels down, at most `h6`), `-`/`*` list items, pipe tables (GFM: rows of
/// `| a | b |`, the `|---|` delimiter row left out, the first row the header), fenced code blocks
/// (CommonMark: a fence of n ≥ 3 backticks or tildes closes only on a line of at least n of the
/// same), inline code and `**bold**`; other lines are paragraphs. HTML comments on their own line
/// (the tracker's fingerprint marker) are left out; no link or raw HTML is ever produced.
pub fn markdown(md: &str) -> String {
    let mut b = Blocks::default();
    let mut fence: Option<(char, usize)> = None;
    for line in md.lines() {
        let t = line.trim();
        if let Some((ch, n)) = fence {
            let run = t.chars().take_while(|c| *c == ch).count();
            if run >= n && run == t.chars().count() {
                b.out.push_str("</code></pre>");
                fence = None;
            } else {
                b.out.push_str(&escape(line));
                b.out.push('\n');
            }
            continue;
        }
        let (ch, run) = match t.chars().next() {
            Some(c @ ('`' | '~')) => (c, t.chars().take_while(|x| *x == c).count()),
            _ => (' ', 0),
        };
        if run >= 3 {
            b.flush();
            b.out.push_str("<pre><code>");
            fence = Some((ch, run));
            continue;
        }
        if t.is_empty() || (t.starts_with("<!--") && t.ends_with("-->")) {
            b.flush();
            continue;
        }
        let hashes = t.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && t[hashes..].starts_with(' ') {
            b.flush();
            let level = (hashes + 2).min(6);
            let _ = write!(b.out, "<h{level}>{}</h{level}>", inline(t[hashes..].trim()));
            continue;
        }
        if let Some(row) = t.strip_prefix('|') {
            if b.table.is_empty() {
                b.flush();
            }
            b.table.push(row.trim_end_matches('|').to_string());
            continue;
        }
        if let Some(item) = t.strip_prefix("- ").or_else(|| t.strip_prefix("* ")) {
            if !b.list {
                b.flush();
                b.out.push_str("<ul>");
                b.list = true;
            }
            let _ = write!(b.out, "<li>{}</li>", inline(item));
            continue;
        }
        if b.list || !b.table.is_empty() {
            b.flush();
        }
        b.para.push(inline(t));
    }
    if fence.is_some() {
        b.out.push_str("</code></pre>");
    }
    b.flush();
    b.out
}

/// The open blocks of [`markdown`]: a paragraph's lines, a list, a table's rows.
#[derive(Default)]
struct Blocks {
    out: String,
    para: Vec<String>,
    list: bool,
    table: Vec<String>,
}

impl Blocks {
    /// Closes whatever block is open.
    fn flush(&mut self) {
        if !self.para.is_empty() {
            let _ = write!(self.out, "<p>{}</p>", self.para.join("<br>"));
            self.para.clear();
        }
        if self.list {
            self.out.push_str("</ul>");
            self.list = false;
        }
        if self.table.is_empty() {
            return;
        }
        self.out.push_str("<table>");
        let delimiter =
            |r: &str| r.contains('-') && r.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '));
        for (i, row) in self.table.iter().filter(|r| !delimiter(r)).enumerate() {
            let tag = if i == 0 { "th" } else { "td" };
            self.out.push_str("<tr>");
            for c in row.split('|') {
                let _ = write!(self.out, "<{tag}>{}</{tag}>", inline(c.trim()));
            }
            self.out.push_str("</tr>");
        }
        self.out.push_str("</table>");
        self.table.clear();
    }
}

/// Inline markdown of one line: escaped, `` `code` `` and `**bold**` (outside code).
fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        let part = escape(part);
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
            continue;
        }
        for (j, piece) in part.split("**").enumerate() {
            if j % 2 == 1 {
                let _ = write!(out, "<strong>{piece}</strong>");
            } else {
                out.push_str(piece);
            }
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f4f4f4}code,pre{font:12px ui-monospace,monospace}pre{background:#f6f6f6;padding:.5em;overflow:auto;white-space:pre-wrap}\
.chart .bar{fill:#c0392b}.chart .axis{fill:#bbb}.status{font-weight:600}header{display:flex;gap:1em;align-items:center}\
form.inline{display:inline}.error{color:#b00;font-weight:600}.ticket{border:1px solid #ddd;padding:0 1em}";

/// A whole page: `title`, a header (with the sign-out form when `csrf` is given, i.e. signed in)
/// and `body` (already HTML).
pub fn page(title: &str, csrf: Option<&str>, body: &str) -> String {
    let nav = match csrf {
        Some(c) => format!(
            "<a href=\"/dashboard\">incidents</a><a href=\"/dashboard/runs\">fix runs</a>{}",
            post_form("/signout", c, &[], "sign out")
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · selfheal</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><style>{STYLE}</style></head>\
         <body><header><strong>selfheal</strong>{nav}</header><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    )
}

/// A POST form of one button, with the CSRF token and the `fields` (name, value) hidden.
pub fn post_form(action: &str, csrf: &str, fields: &[(&str, &str)], button: &str) -> String {
    let mut f = format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">",
        escape(action),
        escape(csrf)
    );
    for (k, v) in fields {
        let _ = write!(
            f,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(k),
            escape(v)
        );
    }
    let _ = write!(
        f,
        "<button type=\"submit\">{}</button></form>",
        escape(button)
    );
    f
}

/// The sign-in page: one password field posting the API token to `/signin` (never in a URL).
pub fn signin_page(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" id=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        "Sign in",
        None,
        &format!(
            "{error}<form method=\"post\" action=\"/signin\"><label>API token \
             <input type=\"password\" name=\"{TOKEN_FIELD}\" autocomplete=\"current-password\" required></label> \
             <button type=\"submit\">sign in</button></form>\
             <p>The agent-runner's <code>SELFHEAL_API_TOKEN</code>. The session is a cookie only this site can read.</p>"
        ),
    )
}

/// A message page (an action refused, nothing found) with a link back.
pub fn message_page(title: &str, message: &str, csrf: Option<&str>) -> String {
    page(
        title,
        csrf,
        &format!(
            "<p class=\"error\" id=\"error\">{}</p><p><a href=\"/dashboard\">back to the incidents</a></p>",
            escape(message)
        ),
    )
}

fn table(out: &mut String, id: &str, header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let _ = write!(out, "<table id=\"{id}\"><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{c}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

/// Today's budget line from the API's budget object (`{day, cap, used}`).
fn budget_line(budget: &Value) -> String {
    format!(
        "<p id=\"budget\">Today's fix budget ({} UTC): <strong>{}/{}</strong> attempts used.</p>",
        cell(&budget["day"]),
        cell(&budget["used"]),
        cell(&budget["cap"])
    )
}

fn runs_table(out: &mut String, runs: &[Value]) {
    table(
        out,
        "runs",
        &[
            "run",
            "incident",
            "ticket",
            "state",
            "attempt",
            "budget day",
            "updated",
        ],
        runs.iter().map(|r| {
            vec![
                cell(&r["id"]),
                format!(
                    "<a href=\"/dashboard/incidents/{0}\">#{0}</a>",
                    cell(&r["incident_id"])
                ),
                cell(&r["ticket_id"]),
                cell(&r["state"]),
                cell(&r["attempt"]),
                cell(&r["budget_day"]),
                utc_minute(&r["updated_at"]),
            ]
        }),
    );
}

/// The incident list: every incident of `GET /api/incidents` (only those of `status` when given,
/// as `selfheal incidents --status`; links to each status present) with its status, gate decision,
/// label, occurrences, a chart of its occurrences per hour (`hourly`: one [`hourly_counts`] per
/// incident, same order; missing = no occurrences), releases and components; then today's
/// budget.
pub fn incidents_page(
    incidents: &[Value],
    hourly: &[Vec<i64>],
    budget: &Value,
    status: Option<&str>,
    csrf: &str,
) -> String {
    let mut body = budget_line(budget);
    let empty = vec![0; CHART_HOURS];
    // The filter: every status present, as stored (the set is not fixed here).
    let mut statuses: Vec<&str> = Vec::new();
    for s in incidents.iter().filter_map(|i| i["status"].as_str()) {
        if !statuses.contains(&s) {
            statuses.push(s);
        }
    }
    body.push_str("<p id=\"filter\">status: <a href=\"/dashboard\">all</a>");
    for s in statuses {
        let _ = write!(
            body,
            " · <a href=\"/dashboard?status={}\">{}</a>",
            escape(&percent_encode(s)),
            escape(s)
        );
    }
    body.push_str("</p>");
    table(
        &mut body,
        "incidents",
        &[
            "id",
            "status",
            "gate",
            "label",
            "count",
            "last 7 days (per hour)",
            "last seen",
            "releases",
            "script",
            "route",
            "exception",
            "message",
        ],
        incidents
            .iter()
            .enumerate()
            .filter(|(_, i)| status.is_none_or(|s| i["status"] == s))
            .map(|(k, i)| {
                vec![
                    format!(
                        "<a href=\"/dashboard/incidents/{0}\">#{0}</a>",
                        cell(&i["id"])
                    ),
                    format!("<span class=\"status\">{}</span>", cell(&i["status"])),
                    cell(&i["gate_decision"]),
                    cell(&i["label"]),
                    cell(&i["occurrence_count"]),
                    chart_svg(hourly.get(k).unwrap_or(&empty)),
                    utc_minute(&i["last_seen"]),
                    releases(i),
                    cell(&i["script_name"]),
                    cell(&i["route_pattern"]),
                    cell(&i["exception_type"]),
                    cell(&i["normalized_message"]),
                ]
            }),
    );
    page("Incidents", Some(csrf), &body)
}

fn releases(i: &Value) -> String {
    let (first, last) = (cell(&i["first_release"]), cell(&i["last_release"]));
    if first == last {
        first
    } else {
        format!("{first} → {last}")
    }
}

/// The fix runs of `GET /api/runs` and today's budget.
pub fn runs_page(runs: &[Value], budget: &Value, csrf: &str) -> String {
    let mut body = budget_line(budget);
    runs_table(&mut body, runs);
    page("Fix runs", Some(csrf), &body)
}

/// Everything one incident's page shows (the API's JSON rows, as `selfheal show` gets them).
pub struct IncidentPage<'a> {
    /// Its row of `GET /api/incidents`.
    pub incident: &'a Value,
    /// `decisions` of `GET /api/incidents/{id}/decisions`, oldest first.
    pub decisions: &'a [Value],
    /// `history` of `GET /api/incidents/{id}/history`, oldest first.
    pub history: &'a [Value],
    /// Its tickets (`GET /api/tickets` rows, with `external_url` where the tracker has it).
    pub tickets: &'a [Value],
    /// Its fix runs (`GET /api/runs` rows, with `pr_url` once a PR is open).
    pub runs: &'a [Value],
    /// Sanitized samples ([`crate::store::EventSample`] as JSON), earliest first.
    pub samples: &'a [Value],
    /// Occurrences per UTC day and release: `(day, release, count)`, oldest first.
    pub daily: &'a [(String, String, i64)],
    /// [`hourly_counts`] of the incident.
    pub hourly: &'a [i64],
}

/// An incident's components and releases as `selfheal show` and the incident page list them:
/// (`GET /api/incidents` field, label).
pub const COMPONENTS: &[(&str, &str)] = &[
    ("fingerprint", "fingerprint"),
    ("script_name", "script"),
    ("route_pattern", "route"),
    ("exception_type", "exception"),
    ("normalized_message", "message"),
    ("top_frame", "top frame"),
    ("status_class", "status class"),
    ("first_release", "first release"),
    ("last_release", "last release"),
];

/// Actions of the CLI on one incident, as POST forms to `/dashboard/incidents/{id}/{action}`.
pub const ACTIONS: &[&str] = &["resolve", "ignore", "reopen", "retry"];

/// One incident's page: components, the chart, counts per day, the actions (resolve, ignore,
/// ignore until escalating, reopen, retry, label), gate decisions, history, samples, tickets
/// (rendered with [`markdown`], with their tracker link) and fix runs (with their PR link).
pub fn incident_page(p: &IncidentPage, csrf: &str) -> String {
    let i = p.incident;
    let id = cell(&i["id"]);
    let base = format!("/dashboard/incidents/{id}");
    let mut b = format!(
        "<p>Status <span class=\"status\" id=\"status\">{}</span> · {} occurrences · gate <span id=\"gate\">{}</span> \
         ({}) · label <span id=\"label\">{}</span></p>{}<p id=\"actions\">",
        cell(&i["status"]),
        cell(&i["occurrence_count"]),
        cell(&i["gate_decision"]),
        cell(&i["gate_reasons"]),
        cell(&i["label"]),
        chart_svg(p.hourly),
    );
    for a in ACTIONS {
        b.push_str(&post_form(&format!("{base}/{a}"), csrf, &[], a));
    }
    b.push_str(&post_form(
        &format!("{base}/ignore"),
        csrf,
        &[("until_escalating", "1")],
        "ignore until escalating",
    ));
    for l in ["actionable", "not_actionable"] {
        b.push_str(&post_form(
            &format!("{base}/label"),
            csrf,
            &[("label", l)],
            &format!("label {l}"),
        ));
    }
    b.push_str("</p><h2>Components</h2>");
    let mut rows: Vec<Vec<String>> = COMPONENTS
        .iter()
        .map(|(k, label)| vec![escape(label), cell(&i[*k])])
        .collect();
    rows.push(vec!["first seen".into(), utc_minute(&i["first_seen"])]);
    rows.push(vec!["last seen".into(), utc_minute(&i["last_seen"])]);
    table(
        &mut b,
        "components",
        &["component", "value"],
        rows.into_iter(),
    );
    b.push_str("<h2>Occurrences per day</h2>");
    table(
        &mut b,
        "daily",
        &["day (UTC)", "release", "occurrences"],
        p.daily.iter().map(|(d, r, n)| {
            vec![
                escape(d),
                escape(if r.is_empty() { "-" } else { r.as_str() }),
                n.to_string(),
            ]
        }),
    );
    b.push_str("<h2>Gate decisions</h2>");
    table(
        &mut b,
        "decisions",
        &["at", "mode", "decision", "reasons", "priority"],
        p.decisions.iter().map(|d| {
            vec![
                utc_minute(&d["at"]),
                cell(&d["mode"]),
                cell(&d["decision"]),
                cell(&d["reasons"]),
                cell(&d["priority"]),
            ]
        }),
    );
    b.push_str("<h2>History</h2>");
    table(
        &mut b,
        "history",
        &["at", "from", "to", "by", "why"],
        p.history.iter().map(|h| {
            vec![
                utc_minute(&h["at"]),
                cell(&h["from_status"]),
                cell(&h["to_status"]),
                cell(&h["actor"]),
                cell(&h["why"]),
            ]
        }),
    );
    b.push_str("<h2>Fix runs</h2>");
    runs_table(&mut b, p.runs);
    for r in p.runs {
        if let Some(url) = http_url(&r["pr_url"]) {
            let _ = write!(
                b,
                "<p>Run #{}: <a class=\"pr\" href=\"{}\">pull request</a></p>",
                cell(&r["id"]),
                escape(url)
            );
        }
    }
    b.push_str("<h2>Samples</h2>");
    for s in p.samples {
        let _ = write!(
            b,
            "<div class=\"sample\"><p>{} · {} {} → {} ({}) · release {}</p><pre>{}</pre><pre>{}</pre></div>",
            utc_minute(&s["event_timestamp"]),
            cell(&s["method"]),
            cell(&s["url"]),
            cell(&s["status"]),
            cell(&s["outcome"]),
            cell(&s["release"]),
            cell(&s["message"]),
            cell(&s["stack"]),
        );
    }
    for t in p.tickets {
        let _ = write!(
            b,
            "<h2>Ticket #{} ({})</h2>",
            cell(&t["id"]),
            cell(&t["state"])
        );
        if let Some(url) = http_url(&t["external_url"]) {
            let _ = write!(
                b,
                "<p><a class=\"tracker\" href=\"{}\">on the tracker</a></p>",
                escape(url)
            );
        }
        let _ = write!(
            b,
            "<div class=\"ticket\"><h3>{}</h3>{}</div>",
            cell(&t["title"]),
            markdown(t["body"].as_str().unwrap_or_default())
        );
    }
    page(&format!("Incident #{}", plain(&i["id"])), Some(csrf), &b)
}

/// A link target only when it is an http(s) URL (never `javascript:` or `data:`).
fn http_url(v: &Value) -> Option<&str> {
    v.as_str()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOKEN: &str = "selfheal-local-dev-token";

    #[test]
    fn session_round_trips_and_refuses_forgeries() {
        let v = session_value(TOKEN, 1_000 + SESSION_SECS);
        assert!(session_ok(TOKEN, &v, 1_000));
        // Another token, an expired or too-far expiry, a changed MAC, junk: refused.
        assert!(!session_ok("other-token", &v, 1_000));
        assert!(!session_ok(TOKEN, &v, 1_000 + SESSION_SECS));
        let far = session_value(TOKEN, 1_000 + SESSION_SECS + 1);
        assert!(!session_ok(TOKEN, &far, 1_000));
        let (exp, mac) = v.split_once('.').unwrap();
        let mut flipped = mac.to_string().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let forged = format!("{exp}.{}", String::from_utf8(flipped).unwrap());
        assert!(!session_ok(TOKEN, &forged, 1_000));
        let moved = format!("{}.{mac}", 999 + SESSION_SECS);
        assert!(!session_ok(TOKEN, &moved, 1_000));
        for junk in ["", ".", "abc", "12.", "x.y"] {
            assert!(!session_ok(TOKEN, junk, 1_000), "{junk:?}");
        }
    }

    #[test]
    fn session_mac_is_hmac_sha256_of_the_documented_message() {
        // RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?").
        assert_eq!(
            mac_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let v = session_value(TOKEN, 42);
        assert_eq!(v, format!("42.{}", mac_hex(TOKEN, "session:42")));
    }

    #[test]
    fn csrf_is_bound_to_the_session() {
        let s1 = session_value(TOKEN, 5_000);
        let s2 = session_value(TOKEN, 5_001);
        let t1 = csrf_token(TOKEN, &s1);
        assert!(csrf_ok(TOKEN, &s1, Some(&t1)));
        assert!(!csrf_ok(TOKEN, &s2, Some(&t1)));
        assert!(!csrf_ok(TOKEN, &s1, None));
        assert!(!csrf_ok(TOKEN, &s1, Some("")));
        assert!(!csrf_ok("other", &s1, Some(&t1)));
    }

    #[test]
    fn same_origin_by_fetch_metadata_or_origin() {
        let own = "http://127.0.0.1:8787";
        assert!(same_origin(Some("same-origin"), Some(own), own));
        assert!(same_origin(Some("same-origin"), None, own));
        assert!(same_origin(None, Some("http://127.0.0.1:8787/"), own));
        assert!(!same_origin(Some("cross-site"), Some(own), own));
        assert!(!same_origin(Some("same-site"), None, own));
        assert!(!same_origin(Some("none"), None, own));
        assert!(!same_origin(
            Some("same-origin"),
            Some("https://evil.example"),
            own
        ));
        assert!(!same_origin(None, Some("https://evil.example"), own));
        assert!(!same_origin(None, Some("null"), own));
        assert!(!same_origin(None, None, own));
    }

    #[test]
    fn cookies_and_forms_parse() {
        let h = Some("a=1; selfheal_session=123.abc; b=2");
        assert_eq!(cookie(h, SESSION_COOKIE), Some("123.abc"));
        assert_eq!(cookie(Some("selfheal_session="), SESSION_COOKIE), None);
        assert_eq!(cookie(None, SESSION_COOKIE), None);
        let set = session_cookie("v", true);
        for part in [
            "selfheal_session=v",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Secure",
            "Max-Age=43200",
        ] {
            assert!(set.contains(part), "{set}");
        }
        assert!(!session_cookie("v", false).contains("Secure"));
        assert!(cleared_cookie(false).contains("Max-Age=0"));
        let body = b"csrf=ab%2Fc&token=a+b%26c%3D%ZZ&label=actionable&x";
        assert_eq!(form_field(body, "csrf").as_deref(), Some("ab/c"));
        assert_eq!(form_field(body, "token").as_deref(), Some("a b&c=%ZZ"));
        assert_eq!(form_field(body, "label").as_deref(), Some("actionable"));
        assert_eq!(form_field(body, "x").as_deref(), Some(""));
        assert_eq!(form_field(body, "missing"), None);
        assert_eq!(form_field(b"t=%4", "t").as_deref(), Some("%4"));
        assert_eq!(form_field(b"t=%41", "t").as_deref(), Some("A"));
    }

    #[test]
    fn every_value_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        let evil = "<img src=x onerror=alert(1)>";
        let incident = json!({
            "id": 7, "status": "<b>open</b>", "gate_decision": evil, "gate_reasons": [evil],
            "label": null, "occurrence_count": 3, "last_seen": 0, "first_release": evil,
            "last_release": "r2", "script_name": evil, "route_pattern": "/x/\"", "exception_type": evil,
            "normalized_message": evil, "fingerprint": evil, "top_frame": evil, "status_class": "5xx",
        });
        let list = incidents_page(
            std::slice::from_ref(&incident),
            &[],
            &json!({"day": evil, "cap": 3, "used": 1}),
            None,
            "c\"sr<f",
        );
        let hist = [
            json!({"at": 1, "from_status": evil, "to_status": "resolved", "actor": evil, "why": evil}),
        ];
        let sample = [
            json!({"event_timestamp": 1, "method": "GET", "url": evil, "status": 500, "outcome": evil, "message": evil, "stack": evil, "release": evil}),
        ];
        let ticket = [
            json!({"id": 1, "state": "open", "title": evil, "body": format!("## {evil}\n\n{evil}\n```text\n{evil}\n```\n"), "external_url": "javascript:alert(1)"}),
        ];
        let run =
            [json!({"id": 2, "incident_id": 7, "state": evil, "pr_url": "javascript:alert(2)"})];
        let daily = [(evil.to_string(), evil.to_string(), 3)];
        let one = incident_page(
            &IncidentPage {
                incident: &incident,
                decisions: &[json!({"at": 1, "mode": evil, "decision": evil, "reasons": [evil]})],
                history: &hist,
                tickets: &ticket,
                runs: &run,
                samples: &sample,
                daily: &daily,
                hourly: &[1, 2],
            },
            "c\"sr<f",
        );
        for html in [&list, &one] {
            assert!(!html.contains("<img"), "{html}");
            assert!(!html.contains("<b>"), "{html}");
            assert!(!html.contains("javascript:"), "{html}");
            assert!(!html.contains("c\"sr<f"), "{html}");
            assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        }
        assert!(one.contains("value=\"c&quot;sr&lt;f\""));
    }

    #[test]
    fn the_list_filters_by_status_and_links_every_status_present() {
        let rows = [
            json!({"id": 1, "status": "open"}),
            json!({"id": 2, "status": "fix merged&<"}),
            json!({"id": 3, "status": "open"}),
        ];
        let budget = json!({});
        let all = incidents_page(&rows, &[], &budget, None, "t");
        assert_eq!(all.matches("<a href=\"/dashboard/incidents/").count(), 3);
        assert_eq!(all.matches("href=\"/dashboard?status=open\"").count(), 1);
        assert!(
            all.contains("href=\"/dashboard?status=fix%20merged%26%3C\">fix merged&amp;&lt;</a>"),
            "{all}"
        );
        let open = incidents_page(&rows, &[], &budget, Some("open"), "t");
        assert!(
            open.contains("href=\"/dashboard/incidents/1\"")
                && open.contains("href=\"/dashboard/incidents/3\"")
        );
        assert!(!open.contains("href=\"/dashboard/incidents/2\""));
        assert_eq!(
            incidents_page(&rows, &[], &budget, Some("gone"), "t")
                .matches("/dashboard/incidents/")
                .count(),
            0
        );
    }

    #[test]
    fn hourly_counts_place_buckets_by_hour_and_add_releases() {
        let now = 1_700_000_000_000i64; // 22:13:20 UTC
        let this_hour = now - now % HOUR_MS;
        let rows = [
            (this_hour, 2),
            (this_hour, 3), // another release, same hour
            (this_hour - HOUR_MS, 1),
            (this_hour - 167 * HOUR_MS, 4),
            (this_hour - 168 * HOUR_MS, 100), // outside the window
            (this_hour + HOUR_MS, 100),       // future
        ];
        let c = hourly_counts(&rows, now);
        assert_eq!(c.len(), CHART_HOURS);
        assert_eq!(c[CHART_HOURS - 1], 5);
        assert_eq!(c[CHART_HOURS - 2], 1);
        assert_eq!(c[0], 4);
        assert_eq!(c.iter().sum::<i64>(), 10);
    }

    #[test]
    fn daily_counts_add_hours_per_day_and_release() {
        let day = 86_400_000i64;
        let rows = [
            (3 * day + HOUR_MS, "r2".to_string(), 2),
            (day, "r1".to_string(), 1),
            (day + 5 * HOUR_MS, "r1".to_string(), 4),
            (day + 23 * HOUR_MS, String::new(), 1),
        ];
        assert_eq!(
            daily_counts(&rows),
            vec![
                ("1970-01-02".to_string(), String::new(), 1),
                ("1970-01-02".to_string(), "r1".to_string(), 5),
                ("1970-01-04".to_string(), "r2".to_string(), 2),
            ]
        );
    }

    #[test]
    fn chart_has_one_bar_per_non_zero_hour_scaled_to_the_peak() {
        let mut counts = vec![0; CHART_HOURS];
        counts[0] = 1;
        counts[10] = 46;
        counts[167] = 23;
        let svg = chart_svg(&counts);
        assert_eq!(svg.matches("class=\"bar\"").count(), 3);
        let full = CHART_HEIGHT - 1;
        assert!(
            svg.contains(&format!(
                "<rect class=\"bar\" x=\"20\" y=\"0\" width=\"2\" height=\"{full}\"/>"
            )),
            "{svg}"
        );
        assert!(
            svg.contains("x=\"334\" y=\"11\" width=\"2\" height=\"12\""),
            "{svg}"
        );
        // The smallest non-zero hour still shows (1 px).
        assert!(
            svg.contains("x=\"0\" y=\"22\" width=\"2\" height=\"1\""),
            "{svg}"
        );
        assert!(svg.contains("70 occurrences in 7 days, peak 46"));
        assert_eq!(
            chart_svg(&[0; CHART_HOURS])
                .matches("class=\"bar\"")
                .count(),
            0
        );
    }

    #[test]
    fn markdown_structures_escaped_text_only() {
        let md = "<!-- selfheal:fingerprint=abc -->\n## Incident <x>\n\n**bold** and `a<b`\n\n- one\n- `two`\n\n\
                  ````text\n```\n## not a heading <script>\n````\nafter";
        let html = markdown(md);
        assert_eq!(
            html,
            "<h4>Incident &lt;x&gt;</h4><p><strong>bold</strong> and <code>a&lt;b</code></p>\
             <ul><li>one</li><li><code>two</code></li></ul>\
             <pre><code>```\n## not a heading &lt;script&gt;\n</code></pre><p>after</p>"
        );
        // An unclosed fence still ends its block.
        assert_eq!(markdown("```\n<x>"), "<pre><code>&lt;x&gt;\n</code></pre>");
        // A pipe table (the ticket's counts), its cells escaped.
        assert_eq!(
            markdown("| | |\n|---|---|\n| occurrences | <b>10</b> |\nafter"),
            "<table><tr><th></th><th></th></tr><tr><td>occurrences</td><td>&lt;b&gt;10&lt;/b&gt;</td></tr></table><p>after</p>"
        );
        // A link is text.
        assert_eq!(markdown("[a](javascript:x)"), "<p>[a](javascript:x)</p>");
    }
}
