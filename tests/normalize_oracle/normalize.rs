//! Frozen copy of `src/normalize.rs` at 297ebf4 (main before the speed work of issue 9, brief
//! normalize-speed), its unit tests left out: the oracle of `tests/normalize_oracle_diff.rs` and
//! the baseline of `examples/normalize_bench.rs`. Only the path of `truncate` changed
//! (`selfheal::text::truncate`, the same function as `crate::event::truncate`). Do not edit.
#![allow(dead_code)]

use std::sync::LazyLock;

use regex::Regex;

/// Input is cut to this many bytes (at a char boundary) before normalization.
pub const MAX_INPUT_BYTES: usize = 8 * 1024;
/// A quoted value longer than this is not treated as one value.
const MAX_QUOTED_BYTES: usize = 1024;
/// Minimum length of a base64 run.
const MIN_B64_LEN: usize = 20;

/// Textual dates (ctime, syslog, RFC 2822 without the day-first form), anchored at an uppercase
/// letter: a month name with a time or a year.
static TEXT_DATE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        ^(?:
          # RFC 822/1123 `Tue, 01 Dec 2026 10:00:00 GMT`, RFC 850 `Tuesday, 01-Dec-26 10:00:00 GMT`
          (?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,\x20+\d{1,2}[\x20-]
          (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[\x20-]\d{2,4}
          (?:\x20+\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,9})?)?
          (?:\x20+(?:[A-Z]{1,4}|[+-]\d{4}|GMT[+-]\d{4}))?
        |
        (?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?\x20+)?      # optional weekday
        (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?
        \x20+\d{1,2}(?:st|nd|rd|th)?,?                           # day of month
        (?:
            \x20+\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,9})?      # time
            (?:\x20+(?:[A-Z]{2,4}T|UTC|GMT|Z|[+-]\d{4}))?       # zone
            (?:\x20+\d{4})?                                    # year after the time (ctime)
          | \x20+\d{4}                                         # or a year
            (?:\x20+\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,9})?)?
            (?:\x20+(?:GMT[+-]\d{4}(?:\x20\([A-Za-z\x20.'-]{1,64}\))?  # JS Date.prototype.toString
                 |[A-Z]{2,4}T|UTC|GMT|Z|[+-]\d{4}))?
        ))",
    )
    .ok()
});

/// Date shapes, anchored at a position where a cheap byte check already saw a date-like start.
/// `None` only if the pattern failed to compile (a test proves it compiles); dates then stay as
/// numbers instead of panicking.
static DATE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        ^(?:
            # ISO 8601: 2026-11-21, 2026-11-21T10:00:00.123Z, 2026-11-21 10:00:00,123 +02:00
            \d{4}-\d{2}-\d{2}
            (?:
                [T\x20]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d{1,9})?
                (?:\x20?(?:Z|[+-]\d{2}:?\d{2}))?
            )?
          | # 2026/11/21 and 2026/11/21 10:00:00
            \d{4}/\d{2}/\d{2}
            (?:[T\x20]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?)?
          | # compact ISO: 20261121T100000Z
            \d{8}T\d{6}(?:Z|[+-]\d{4})?
          | # common log format: 21/Nov/2026:10:00:00 +0000
            \d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}(?:\x20[+-]\d{4})?
          | # day first (RFC 2822 after the weekday): 21 Nov 2026 10:00:00 GMT
            \d{1,2}\x20(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\x20\d{4}
            (?:\x20\d{2}:\d{2}(?::\d{2})?)?(?:\x20(?:GMT|UTC|[+-]\d{4}))?
        )",
    )
    .ok()
});

/// Replaces variable parts of a message by typed placeholders (see the module docs).
pub fn normalize_message(msg: &str) -> String {
    let s = selfheal::text::truncate(msg, MAX_INPUT_BYTES);
    let mut n = Normalizer {
        s,
        b: s.as_bytes(),
        out: String::with_capacity(s.len() + 16),
        closing_quote: usize::MAX,
    };
    n.run();
    let trimmed_len = n.out.trim_end().len();
    n.out.truncate(trimmed_len);
    n.out
}

struct Normalizer<'a> {
    s: &'a str,
    b: &'a [u8],
    out: String,
    /// Position of the closing quote of a quoted sentence being normalized in place.
    closing_quote: usize,
}

#[inline]
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

#[inline]
fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

impl<'a> Normalizer<'a> {
    #[inline]
    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    /// True when `i` starts a token: the previous byte is not part of a word.
    #[inline]
    fn boundary(&self, i: usize) -> bool {
        i == 0 || !is_word(self.at(i - 1))
    }

    /// True when the token ending before `j` is not glued to a following word char.
    #[inline]
    fn ends_clean(&self, j: usize) -> bool {
        j >= self.b.len() || !is_word(self.at(j))
    }

    /// Pushes a placeholder; a comma-joined list of one kind (`<ip>,<ip>`) becomes one.
    fn push_kind(&mut self, kind: &str) {
        if let Some(head) = self.out.strip_suffix(',')
            && head.ends_with(kind)
        {
            self.out.pop();
            return;
        }
        self.out.push_str(kind);
    }

    fn push_space(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with(' ') {
            self.out.push(' ');
        }
    }

    /// Copies `s[from..to]` (both char boundaries by construction).
    fn copy(&mut self, from: usize, to: usize) {
        if let Some(t) = self.s.get(from..to) {
            self.out.push_str(t);
        }
    }

    fn run(&mut self) {
        let len = self.b.len();
        let mut i = 0;
        while i < len {
            let c = self.at(i);
            // Whitespace and control characters collapse to one space.
            if c <= b' ' || c == 0x7f {
                self.push_space();
                i += 1;
                continue;
            }
            if c >= 0x80 {
                // Non-ASCII: copied as one char (Unicode whitespace collapses).
                let ch = self.s.get(i..).and_then(|t| t.chars().next());
                match ch {
                    Some(ch) if ch.is_whitespace() || ch.is_control() => self.push_space(),
                    Some(ch) => self.out.push(ch),
                    None => {}
                }
                i += ch.map_or(1, char::len_utf8);
                continue;
            }
            i = self.step(i);
        }
    }

    /// Handles the ASCII, non-space byte at `i`; returns the next position.
    fn step(&mut self, i: usize) -> usize {
        let c = self.at(i);
        let bnd = self.boundary(i);
        match c {
            b'[' => {
                if let Some(j) = self.redacted_token(i) {
                    self.copy(i, j);
                    return j;
                }
                if let Some(j) = self.bracketed_ipv6(i) {
                    self.push_kind("<ip>");
                    return j;
                }
                if let Some((tag, j)) = self.object_tag(i) {
                    // V8 renders an object value two ways: `[object Array]`
                    // (Object.prototype.toString) and `#<Array>`; written one way.
                    self.out.push_str("#<");
                    self.copy(tag.0, tag.1);
                    self.out.push('>');
                    return j;
                }
            }
            b'"' | b'\'' | b'`' if i == self.closing_quote => {
                self.closing_quote = usize::MAX;
            }
            b'\\' if self.closing_quote != usize::MAX && self.at(i + 1) == b'"' => {
                // A JSON-escaped quote inside a quoted sentence (`"msg": "… \"not json\" …"`):
                // `\"…\"` is one quoted value, paired escaped quote with escaped quote.
                if let Some(j) = self.escaped_quoted(i) {
                    self.push_kind("<quoted>");
                    return j;
                }
            }
            b'"' | b'\'' | b'`' if bnd => {
                if let Some(j) = self.quoted(i) {
                    let inner = self.b.get(i + 1..j - 1).unwrap_or(&[]);
                    if is_js_identifier(inner) && self.identifier_context(i) {
                        // A property, variable or class name in a JavaScript error
                        // (`(reading 'email')`): it names code, so it stays.
                        self.copy(i, j);
                        return j;
                    }
                    if inner.iter().filter(|&&c| c == b' ').count() >= 2
                        && self.closing_quote == usize::MAX
                        && !self.json_excerpt(inner, j)
                    {
                        // A quoted sentence (`"GET /x HTTP/1.1"`) is text: normalized in place.
                        self.closing_quote = j - 1;
                        self.out.push(c as char);
                        return i + 1;
                    }
                    self.push_kind("<quoted>");
                    return j;
                }
            }
            b':' if self.at(i + 1) == b':'
                && (i == 0 || !is_word(self.at(i - 1)) && self.at(i - 1) != b':') =>
            {
                if let Some(j) = self.ipv6(i) {
                    self.push_kind("<ip>");
                    return j;
                }
            }
            b'/' if bnd => {
                if let Some(j) = self.unix_path(i) {
                    self.push_kind("<path>");
                    return j;
                }
            }
            b'~' if self.at(i + 1) == b'/' => {
                if let Some(j) = self.unix_path(i + 1) {
                    self.push_kind("<path>");
                    return j;
                }
            }
            b'-' | b'+' => {
                // A sign belongs to the number when not glued to an alphanumeric (`x=-5`, `blk_-7`).
                let prev_alnum = i > 0 && self.at(i - 1).is_ascii_alphanumeric();
                if !prev_alnum
                    && self.at(i + 1).is_ascii_digit()
                    && self.at(i.wrapping_sub(1)) != b'.'
                    && let Some((kind, j)) = self.number(i + 1)
                {
                    self.push_kind(kind);
                    return j;
                }
            }
            _ => {}
        }
        if bnd && (c.is_ascii_alphanumeric() || c == b'_') {
            return self.token(i);
        }
        self.out.push(c as char);
        i + 1
    }

    /// A word-start: tries each typed shape, else classifies the alphanumeric run.
    fn token(&mut self, i: usize) -> usize {
        let c = self.at(i);
        if c.is_ascii_alphabetic() {
            if let Some(j) = self.url(i) {
                self.push_kind("<url>");
                return j;
            }
            if self.at(i + 1) == b':' && self.at(i + 2) == b'\\' {
                let j = self.scan_until_space(i);
                self.push_kind("<path>");
                return j;
            }
        }
        if let Some(j) = self.email(i) {
            self.push_kind("<email>");
            return j;
        }
        if c.is_ascii_uppercase()
            && let Some(j) = self.text_date(i)
        {
            self.push_kind("<date>");
            return j;
        }
        if let Some(j) = self.host(i) {
            self.push_kind("<host>");
            return j;
        }
        if let Some(j) = self.traceparent(i) {
            self.push_kind("<traceparent>");
            return j;
        }
        if c.is_ascii_digit()
            && let Some(j) = self.duration(i)
        {
            self.push_kind("<duration>");
            return j;
        }
        if is_hex(c)
            && let Some(j) = self.uuid(i)
        {
            self.push_kind("<uuid>");
            return j;
        }
        if c.is_ascii_digit() {
            if let Some(j) = self.date(i) {
                self.push_kind("<date>");
                return j;
            }
            if let Some(j) = self.time(i) {
                self.push_kind("<time>");
                return j;
            }
        }
        if is_hex(c)
            && let Some(j) = self.ipv6(i)
        {
            self.push_kind("<ip>");
            return j;
        }
        if is_hex(c)
            && let Some((kind, j)) = self.colon_hex(i)
        {
            self.push_kind(kind);
            return j;
        }
        if c == b'0' && matches!(self.at(i + 1), b'x' | b'X') && is_hex(self.at(i + 2)) {
            let mut j = i + 2;
            while is_hex(self.at(j)) {
                j += 1;
            }
            if self.ends_clean(j) {
                self.push_kind("<hex>");
                return j;
            }
        }
        if let Some(j) = self.base64(i) {
            self.push_kind("<b64>");
            return j;
        }
        // The alphanumeric run [A-Za-z0-9_]+.
        let mut j = i;
        while self.at(j).is_ascii_alphanumeric() || self.at(j) == b'_' {
            j += 1;
        }
        if !self.ends_clean(j) {
            // Glued to non-ASCII letters: a word in another script; keep it.
            self.copy(i, j);
            return j;
        }
        let run = self.b.get(i..j).unwrap_or(&[]);
        if run.len() >= 8
            && run.first() == Some(&b'0')
            && run.iter().all(u8::is_ascii_digit)
            && self.at(j) != b'.'
        {
            // Zero-padded fixed-width words (`00106210`) are hex dumps like `003a90fc`.
            self.push_kind("<hex>");
            return j;
        }
        if run.iter().all(u8::is_ascii_digit)
            && let Some((kind, k)) = self.number(i)
        {
            self.push_kind(kind);
            return k;
        }
        if run.contains(&b'_') {
            let mut first = true;
            let mut start = i;
            let mut prev_has_digit = true;
            for part in run.split(|&b| b == b'_') {
                if !first {
                    self.out.push('_');
                }
                first = false;
                let end = start + part.len();
                let all_digits = !part.is_empty() && part.iter().all(u8::is_ascii_digit);
                // `rdd_2_3`: numbers after a name part are numbers; `x86_64`: a name with digits.
                let kind = if all_digits && !prev_has_digit {
                    Some("<int>")
                } else {
                    classify_part(part, true)
                };
                if !part.is_empty() {
                    // Only a kept name with digits (`x86`) keeps the next number.
                    prev_has_digit = kind.is_none() && part.iter().any(u8::is_ascii_digit);
                }
                match kind {
                    Some(k) => self.push_kind(k),
                    None => self.copy(start, end),
                }
                start = end + 1;
            }
            return j;
        }
        // A number glued to a unit (`100ms`, `1.5GB`) or to an exponent (`1e10`).
        if c.is_ascii_digit()
            && !is_hex_id(run)
            && let Some((kind, k)) = self.number(i)
        {
            let mut m = k;
            while self.at(m).is_ascii_alphabetic() {
                m += 1;
            }
            if m == j && self.ends_clean(m) {
                self.push_kind(kind);
                self.copy(k, m);
                return m;
            }
        }
        match classify_part(run, false) {
            Some(k) => self.push_kind(k),
            None => self.copy(i, j),
        }
        j
    }

    /// A number starting with a digit at `i`: int, float (with exponent), dotted version or IPv4
    /// (with port). Returns the placeholder and the end; `None` when glued to a following word
    /// in a way that is not a unit (the caller decides).
    fn number(&self, i: usize) -> Option<(&'static str, usize)> {
        let mut j = i;
        let mut parts = 1;
        let mut part_ok_for_ip = true;
        let mut part_len = 0;
        while self.at(j).is_ascii_digit() {
            j += 1;
            part_len += 1;
        }
        if part_len > 3 {
            part_ok_for_ip = false;
        }
        while self.at(j) == b'.' && self.at(j + 1).is_ascii_digit() {
            j += 1;
            parts += 1;
            let start = j;
            while self.at(j).is_ascii_digit() {
                j += 1;
            }
            let p = self.s.get(start..j).unwrap_or("");
            if p.len() > 3 || p.parse::<u16>().map_or(true, |v| v > 255) {
                part_ok_for_ip = false;
            }
        }
        if parts == 4 && part_ok_for_ip {
            // IPv4, first part checked too.
            let first = self.s.get(i..i + part_len.min(3)).unwrap_or("");
            if first.parse::<u16>().is_ok_and(|v| v <= 255) {
                let mut k = j;
                if self.at(k) == b':' && self.at(k + 1).is_ascii_digit() {
                    k += 1;
                    while self.at(k).is_ascii_digit() {
                        k += 1;
                    }
                }
                return Some(("<ip>", k));
            }
        }
        if parts >= 3 {
            return Some(("<version>", j));
        }
        // Exponent: 1e10, 2.5E-3.
        if matches!(self.at(j), b'e' | b'E') {
            let k = if matches!(self.at(j + 1), b'+' | b'-') {
                j + 2
            } else {
                j + 1
            };
            if self.at(k).is_ascii_digit() {
                let mut m = k;
                while self.at(m).is_ascii_digit() {
                    m += 1;
                }
                if self.ends_clean(m) {
                    return Some(("<float>", m));
                }
            }
        }
        Some((if parts == 2 { "<float>" } else { "<int>" }, j))
    }

    /// `[redacted:kind]` written by the scrubber.
    fn redacted_token(&self, i: usize) -> Option<usize> {
        let rest = self.b.get(i..)?;
        if !rest.starts_with(b"[redacted:") {
            return None;
        }
        let mut j = i + b"[redacted:".len();
        let limit = j + 40;
        while j < limit {
            match self.at(j) {
                b']' => return Some(j + 1),
                c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => j += 1,
                _ => return None,
            }
        }
        None
    }

    /// A quoted value starting at the quote at `i`: ends at the same quote not followed by a word
    /// char, on the same line, within `MAX_QUOTED_BYTES`.
    fn quoted(&self, i: usize) -> Option<usize> {
        let q = self.at(i);
        if self.at(i + 1) == q && self.at(i + 2) == q && self.ends_clean(i + 3) {
            // The quote character quoted (`Unexpected token ''', ...`).
            return Some(i + 3);
        }
        let limit = (i + 1 + MAX_QUOTED_BYTES).min(self.b.len());
        let mut j = i + 1;
        while j < limit {
            let c = self.at(j);
            if c == b'\n' {
                return None;
            }
            if c == b'\\' {
                j += 2;
                continue;
            }
            if c == q && self.ends_clean(j + 1) {
                return Some(j + 1);
            }
            j += 1;
        }
        None
    }

    /// `\"…\"` starting at the backslash `i`, ending before the enclosing sentence's closing
    /// quote; returns the end (after the closing `\"`).
    fn escaped_quoted(&self, i: usize) -> Option<usize> {
        let limit = self.closing_quote.min(i + 2 + MAX_QUOTED_BYTES);
        // A JSON excerpt of V8's `… is not valid JSON` may hold escaped quotes of its own: it
        // ends at the escaped quote before that phrase.
        let window = self.b.get(i + 2..limit).unwrap_or(&[]);
        for tail in [&b"\\\" is not valid JSON"[..], b"\\\"... is not valid JSON"] {
            if let Some(k) = window.windows(tail.len()).position(|w| w == tail) {
                return Some(i + 2 + k + 2);
            }
        }
        let mut j = i + 2;
        while j + 1 < limit {
            if self.at(j) == b'\\' {
                if self.at(j + 1) == b'"' {
                    return Some(j + 2);
                }
                j += 2;
                continue;
            }
            j += 1;
        }
        None
    }

    /// `[object Tag]` at `i`: the tag's span and the end.
    fn object_tag(&self, i: usize) -> Option<((usize, usize), usize)> {
        if !self.b.get(i..)?.starts_with(b"[object ") {
            return None;
        }
        let start = i + 8;
        let mut j = start;
        while self.at(j).is_ascii_alphanumeric() || self.at(j) == b'_' {
            j += 1;
        }
        (j > start && self.at(j) == b']').then_some(((start, j), j + 1))
    }

    /// True when the quote at `i` follows a word that V8 puts before a code identifier in its
    /// message templates (`(reading '%')`, `Cannot access '%'`, `property '%'`, …).
    fn identifier_context(&self, i: usize) -> bool {
        const PHRASES: [&str; 11] = [
            "reading",
            "setting",
            "property",
            "access",
            "Identifier",
            "with constructor",
            "of",
            "field",
            "method",
            "export",
            "search for",
        ];
        let head = self.s.get(..i).unwrap_or("");
        let head = head.trim_end_matches([' ', '(']);
        PHRASES.iter().any(|p| {
            head.strip_suffix(p).is_some_and(|before| {
                before
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
            })
        })
    }

    /// True when the quoted text `inner` (ending before `end`) is a JSON excerpt rather than a
    /// sentence: it opens like a JSON document, or V8's `… is not valid JSON` follows it.
    fn json_excerpt(&self, inner: &[u8], end: usize) -> bool {
        let tail = self.b.get(end..).unwrap_or(&[]);
        matches!(inner.first(), Some(b'{' | b'['))
            || tail.starts_with(b" is not valid JSON")
            || tail.starts_with(b"... is not valid JSON")
    }

    /// `scheme://…` starting at `i` (a letter).
    fn url(&self, i: usize) -> Option<usize> {
        let mut j = i;
        while self.at(j).is_ascii_alphanumeric() || matches!(self.at(j), b'+' | b'.' | b'-') {
            j += 1;
            if j - i > 32 {
                return None;
            }
        }
        if !self.b.get(j..)?.starts_with(b"://") {
            return None;
        }
        let end = self.scan_until_space(j);
        Some(self.trim_trailing_punct(j + 3, end))
    }

    /// End of the run of non-space, non-quote, non-angle bytes starting at `i`.
    fn scan_until_space(&self, i: usize) -> usize {
        let mut j = i;
        while j < self.b.len() {
            let c = self.at(j);
            if c <= b' ' || matches!(c, b'"' | b'\'' | b'`' | b'<' | b'>' | 0x7f) {
                break;
            }
            j += 1;
        }
        j
    }

    /// Leaves sentence punctuation after a URL/path out of it.
    fn trim_trailing_punct(&self, min: usize, mut end: usize) -> usize {
        while end > min
            && matches!(
                self.at(end - 1),
                b'.' | b',' | b';' | b':' | b'!' | b'?' | b')' | b']' | b'}'
            )
        {
            end -= 1;
        }
        end
    }

    /// An absolute path at the `/` at `i`: at least two slashes; stops at `:`, `,`, brackets.
    fn unix_path(&self, i: usize) -> Option<usize> {
        let mut j = i;
        let mut slashes = 0;
        while j < self.b.len() {
            let c = self.at(j);
            if c == b'/' {
                slashes += 1;
            } else if !(c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'.' | b'_' | b'-' | b'~' | b'@' | b'%' | b'+' | b'$' | b'='
                )
                || c >= 0x80)
            {
                break;
            }
            j += 1;
        }
        let first = self.at(i + 1);
        let starts_ok = first.is_ascii_alphanumeric()
            || matches!(first, b'.' | b'_' | b'-' | b'~' | b'@' | b'$')
            || first >= 0x80;
        if slashes >= 2 && matches!(self.at(j), b'?' | b'#') && is_word(self.at(j + 1)) {
            // A query or fragment belongs to the path.
            j = self.scan_until_space(j);
        }
        let end = self.trim_trailing_punct(i + 1, j);
        // The cut must be at a char boundary (the run may end inside multi-byte text only at ASCII).
        if slashes >= 2 && starts_ok && end > i + 2 && self.s.is_char_boundary(end) {
            Some(end)
        } else {
            None
        }
    }

    /// `local@domain.tld` starting at `i`.
    fn email(&self, i: usize) -> Option<usize> {
        let mut j = i;
        while self.at(j).is_ascii_alphanumeric()
            || matches!(self.at(j), b'.' | b'_' | b'%' | b'+' | b'-')
        {
            j += 1;
            if j - i > 64 {
                return None;
            }
        }
        if j == i || self.at(j) != b'@' {
            return None;
        }
        let mut k = j + 1;
        let mut dots = 0;
        let mut label_len = 0;
        loop {
            let c = self.at(k);
            if c.is_ascii_alphanumeric() || c == b'-' {
                label_len += 1;
            } else if c == b'.' && label_len > 0 && self.at(k + 1).is_ascii_alphanumeric() {
                dots += 1;
                label_len = 0;
            } else {
                break;
            }
            k += 1;
        }
        (dots >= 1 && label_len > 0 && self.ends_clean(k)).then_some(k)
    }

    /// 8-4-4-4-12 hex.
    fn uuid(&self, i: usize) -> Option<usize> {
        let t = self.b.get(i..i + 36)?;
        for (k, &c) in t.iter().enumerate() {
            let ok = if matches!(k, 8 | 13 | 18 | 23) {
                c == b'-'
            } else {
                is_hex(c)
            };
            if !ok {
                return None;
            }
        }
        self.ends_clean(i + 36).then_some(i + 36)
    }

    /// Dates, after a cheap check of the first bytes.
    fn date(&self, i: usize) -> Option<usize> {
        let d = |k: usize| self.at(i + k).is_ascii_digit();
        let plausible =
            (d(0) && d(1) && d(2) && d(3) && matches!(self.at(i + 4), b'-' | b'/' | b'0'..=b'9'))
                || (d(0) && d(1) && self.at(i + 2) == b'/' && self.at(i + 3).is_ascii_uppercase())
                || (d(0)
                    && self.at(i + 1 + usize::from(d(1))) == b' '
                    && self.at(i + 2 + usize::from(d(1))).is_ascii_uppercase());
        if !plausible {
            return None;
        }
        let m = DATE.as_ref()?.find(self.s.get(i..)?)?;
        let end = i + m.end();
        self.ends_clean(end).then_some(end)
    }

    /// `Sun Jul 10 03:55:15 2005`, `Jul 10 03:55:15`, `Thu Aug 04 15:29:45 PDT 2005`: a month
    /// name (optionally after a weekday) with a time or a year.
    fn text_date(&self, i: usize) -> Option<usize> {
        if !(self.at(i + 1).is_ascii_lowercase() && self.at(i + 2).is_ascii_lowercase()) {
            return None;
        }
        let m = TEXT_DATE.as_ref()?.find(self.s.get(i..)?)?;
        let end = i + m.end();
        self.ends_clean(end).then_some(end)
    }

    /// A host name: labels joined by dots whose last label is a common top-level domain
    /// (`proxy.cse.cuhk.edu.hk`, `api.github.com`), not a file name (`index.js`).
    fn host(&self, i: usize) -> Option<usize> {
        let mut j = i;
        let mut dots = 0;
        let mut last_start = i;
        loop {
            let c = self.at(j);
            if c.is_ascii_alphanumeric() || c == b'-' {
                j += 1;
            } else if c == b'.' && j > last_start && (self.at(j + 1).is_ascii_alphanumeric()) {
                dots += 1;
                j += 1;
                last_start = j;
            } else {
                break;
            }
            if j - i > 253 {
                return None;
            }
        }
        if dots == 0 || !self.ends_clean(j) || self.at(j) == b'(' {
            return None;
        }
        let tld = self.s.get(last_start..j)?;
        is_tld(tld).then_some(j)
    }

    /// `h:mm:ss[.frac]` not followed by another `:`.
    fn time(&self, i: usize) -> Option<usize> {
        let mut j = i;
        while self.at(j).is_ascii_digit() && j - i < 2 {
            j += 1;
        }
        for n in 0..2 {
            if self.at(j) != b':'
                || !self.at(j + 1).is_ascii_digit()
                || !self.at(j + 2).is_ascii_digit()
            {
                if n == 1 {
                    // `h:mm` is a time only with AM/PM after it.
                    return self.am_pm(j);
                }
                return None;
            }
            j += 3;
        }
        if let Some(k) = self.am_pm(j) {
            return Some(k);
        }
        if matches!(self.at(j), b'.' | b',') && self.at(j + 1).is_ascii_digit() {
            j += 1;
            while self.at(j).is_ascii_digit() {
                j += 1;
            }
        }
        (self.ends_clean(j) && self.at(j) != b':').then_some(j)
    }

    /// A W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, Trace Context §3.2) or an AWS X-Ray
    /// trace id (`1-<8 hex>-<24 hex>`) at `i`: its end.
    fn traceparent(&self, i: usize) -> Option<usize> {
        let hex_run = |from: usize, n: usize| {
            (from..from + n).all(|k| {
                let c = self.at(k);
                c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
            })
        };
        let w3c = hex_run(i, 2)
            && self.at(i + 2) == b'-'
            && hex_run(i + 3, 32)
            && self.at(i + 35) == b'-'
            && hex_run(i + 36, 16)
            && self.at(i + 52) == b'-'
            && hex_run(i + 53, 2);
        if w3c && self.ends_clean(i + 55) {
            return Some(i + 55);
        }
        let xray = self.at(i) == b'1'
            && self.at(i + 1) == b'-'
            && hex_run(i + 2, 8)
            && self.at(i + 10) == b'-'
            && hex_run(i + 11, 24);
        (xray && self.ends_clean(i + 35)).then_some(i + 35)
    }

    /// A duration at `i`: numbers each glued to a time unit (`250ms`, `1.234s`, `3m20s`,
    /// `1h2m3.5s`; units `ns us ms s sec secs m min h hr`; no `d`, which hex ids are full of):
    /// its end.
    fn duration(&self, i: usize) -> Option<usize> {
        const UNITS: [&[u8]; 10] = [
            b"ns", b"us", b"ms", b"sec", b"secs", b"s", b"min", b"m", b"hr", b"h",
        ];
        let mut j = i;
        let mut parts = 0;
        while self.at(j).is_ascii_digit() {
            while self.at(j).is_ascii_digit() {
                j += 1;
            }
            if self.at(j) == b'.' && self.at(j + 1).is_ascii_digit() {
                j += 1;
                while self.at(j).is_ascii_digit() {
                    j += 1;
                }
            }
            let start = j;
            while self.at(j).is_ascii_alphabetic() {
                j += 1;
            }
            let unit = self.b.get(start..j)?;
            if !UNITS.contains(&unit) {
                return None;
            }
            parts += 1;
        }
        (parts > 0 && self.ends_clean(j)).then_some(j)
    }

    /// ` AM`, `pm`, … at `j` (optionally after one space), ending clean: its end.
    fn am_pm(&self, j: usize) -> Option<usize> {
        let k = if self.at(j) == b' ' { j + 1 } else { j };
        (matches!(self.at(k), b'a' | b'A' | b'p' | b'P')
            && matches!(self.at(k + 1), b'm' | b'M')
            && self.ends_clean(k + 2))
        .then_some(k + 2)
    }

    /// An IPv6 address at `i` (a hex digit or the `:` of a leading `::`): `::`, `::1`,
    /// compressed or 8 groups, v4-mapped or embedded IPv4 (`::ffff:192.0.2.1`), a zone
    /// (`fe80::1%eth0`) and a prefix length (`2001:db8::/32`). Returns its end.
    fn ipv6(&self, i: usize) -> Option<usize> {
        let (_, colons, double, mut j, max_group) = self.scan_colon_hex(i);
        if colons < 2 || max_group > 4 || !(double || colons == 7) {
            return None;
        }
        if self.at(j) == b'.' {
            // The last group was the first octet of an embedded IPv4.
            let k = self.b.get(..j)?.iter().rposition(|&c| c == b':')? + 1;
            match self.number(k) {
                Some(("<ip>", e)) => j = e,
                _ => return None,
            }
        }
        if self.at(j) == b'%' && self.at(j + 1).is_ascii_alphanumeric() {
            j += 1;
            while self.at(j).is_ascii_alphanumeric() {
                j += 1;
            }
        }
        if self.at(j) == b'/' && self.at(j + 1).is_ascii_digit() {
            let mut k = j + 1;
            while self.at(k).is_ascii_digit() && k - j <= 3 {
                k += 1;
            }
            if self.ends_clean(k) {
                j = k;
            }
        }
        (self.ends_clean(j) && self.at(j) != b':').then_some(j)
    }

    /// Colon-separated hex groups: IPv6 (with `::` or 8 groups) or a MAC address.
    fn colon_hex(&self, i: usize) -> Option<(&'static str, usize)> {
        let (groups, colons, double, j, max_group) = self.scan_colon_hex(i);
        if colons < 2 || !self.ends_clean(j) {
            return None;
        }
        if colons == 5 && !double && groups == 6 && max_group == 2 {
            return Some(("<mac>", j));
        }
        if (double && groups <= 7) || (groups == 8 && colons == 7) {
            return Some(("<ip>", j));
        }
        None
    }

    /// Scans `[0-9a-f]{0,4}(:[0-9a-f]{0,4})*`: (non-empty groups, colons, saw `::`, end, longest group).
    fn scan_colon_hex(&self, i: usize) -> (usize, usize, bool, usize, usize) {
        let mut j = i;
        let (mut groups, mut colons, mut double, mut cur, mut max_group) = (0, 0, false, 0, 0);
        loop {
            let c = self.at(j);
            if is_hex(c) {
                cur += 1;
                if cur > 4 {
                    return (0, 0, false, j, 5);
                }
            } else if c == b':' {
                if cur > 0 {
                    groups += 1;
                    max_group = max_group.max(cur);
                } else if j > i && self.at(j - 1) == b':' {
                    if double {
                        return (0, 0, false, j, 5);
                    }
                    double = true;
                }
                cur = 0;
                colons += 1;
                if colons > 7 {
                    return (0, 0, false, j, 5);
                }
            } else {
                break;
            }
            j += 1;
        }
        if cur > 0 {
            groups += 1;
            max_group = max_group.max(cur);
        } else if j > i && self.at(j - 1) == b':' && !(j >= 2 && self.at(j - 2) == b':') {
            // A trailing single colon is punctuation, not part of the address.
            j -= 1;
            colons -= 1;
        }
        (groups, colons, double, j, max_group)
    }

    /// `[v6]` with an optional `:port`.
    fn bracketed_ipv6(&self, i: usize) -> Option<usize> {
        let (_, colons, double, j, max_group) = self.scan_colon_hex(i + 1);
        if colons < 2 || max_group > 4 || !(double || colons == 7) || self.at(j) != b']' {
            return None;
        }
        let mut k = j + 1;
        if self.at(k) == b':' && self.at(k + 1).is_ascii_digit() {
            k += 1;
            while self.at(k).is_ascii_digit() {
                k += 1;
            }
        }
        Some(k)
    }

    /// A base64/base64url run that looks random (see [`looks_random`]).
    fn base64(&self, i: usize) -> Option<usize> {
        let mut j = i;
        while self.at(j).is_ascii_alphanumeric() || matches!(self.at(j), b'+' | b'/' | b'_' | b'-')
        {
            j += 1;
        }
        if j - i < MIN_B64_LEN {
            return None;
        }
        let run = self.b.get(i..j)?;
        if !looks_random(run) {
            return None;
        }
        let mut k = j;
        while self.at(k) == b'=' && k - j < 2 {
            k += 1;
        }
        self.ends_clean(k).then_some(k)
    }
}

/// Top-level domains that mark a host name: common generic ones and two-letter country codes,
/// except those that are also common file extensions.
fn is_tld(label: &str) -> bool {
    const GENERIC: &[&str] = &[
        "com",
        "net",
        "org",
        "edu",
        "gov",
        "mil",
        "int",
        "io",
        "dev",
        "app",
        "info",
        "biz",
        "cloud",
        "xyz",
        "online",
        "site",
        "tech",
        "local",
        "localdomain",
        "internal",
        "lan",
        "arpa",
        "workers",
    ];
    const NOT_TLD: &[&str] = &[
        "js", "ts", "rs", "py", "go", "sh", "md", "db", "so", "cc", "hh", "pl", "rb", "cs", "fs",
        "vb", "kt", "gz", "xz", "ps", "ai", "mk", "am", "in", "do", "is", "it", "to", "at", "as",
        "by", "me", "no", "my", "id", "tv", "pm",
    ];
    let b = label.as_bytes();
    if GENERIC.contains(&label) {
        return true;
    }
    b.len() == 2 && b.iter().all(u8::is_ascii_lowercase) && !NOT_TLD.contains(&label)
}

/// Mixed upper, lower and digits, switching class often (random data switches on ~60% of
/// positions; `CamelCaseNames` and `snake_case_names` on < 30%).
fn looks_random(run: &[u8]) -> bool {
    let (mut up, mut low, mut dig, mut switches) = (0usize, 0usize, 0usize, 0usize);
    let class = |c: u8| -> u8 {
        if c.is_ascii_uppercase() {
            0
        } else if c.is_ascii_lowercase() {
            1
        } else if c.is_ascii_digit() {
            2
        } else {
            3
        }
    };
    let mut prev = 255;
    for &c in run {
        let k = class(c);
        match k {
            0 => up += 1,
            1 => low += 1,
            2 => dig += 1,
            _ => {}
        }
        if prev != 255 && k != prev {
            switches += 1;
        }
        prev = k;
    }
    up >= 2 && low >= 2 && dig >= 2 && switches * 100 >= run.len() * 35
}

/// All hex with a letter: ≥ 6 chars with a digit, or ≥ 8 chars of one case (`ffffffff`).
/// A JavaScript identifier or dotted property path (`email`, `user.profile`, `$x`), ≤ 64 bytes.
fn is_js_identifier(inner: &[u8]) -> bool {
    inner.len() <= 64
        && inner.split(|&b| b == b'.').all(|part| {
            part.first()
                .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_' || c == b'$')
                && part
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
        })
}

fn is_hex_id(run: &[u8]) -> bool {
    if run.len() < 6 || !run.iter().all(|&c| is_hex(c)) || !run.iter().any(u8::is_ascii_alphabetic)
    {
        return false;
    }
    run.iter().any(u8::is_ascii_digit)
        || (run.len() >= 8
            && (run.iter().all(|c| !c.is_ascii_uppercase())
                || run.iter().all(|c| !c.is_ascii_lowercase())))
}

/// Classifies an alphanumeric run (or one `_`-separated part of one): `None` keeps it.
fn classify_part(part: &[u8], in_snake: bool) -> Option<&'static str> {
    if part.is_empty() {
        return None;
    }
    if is_hex_id(part) {
        return Some("<hex>");
    }
    let digits = part.iter().filter(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    if digits == part.len() {
        // In `snake_case`, a short number is part of the name (`x86_64`); standalone it is a number.
        return (!in_snake || digits >= 3).then_some("<int>");
    }
    if is_hex_id(part) {
        return Some("<hex>");
    }
    if part.len() >= 12 && looks_random(part) {
        return Some("<id>");
    }
    let mut switches = 0;
    let mut longest_digit_run = 0;
    let mut run = 0;
    for w in part.windows(2) {
        if let [a, b] = w
            && a.is_ascii_digit() != b.is_ascii_digit()
        {
            switches += 1;
        }
    }
    for &c in part {
        if c.is_ascii_digit() {
            run += 1;
            longest_digit_run = longest_digit_run.max(run);
        } else {
            run = 0;
        }
    }
    let starts_digit = part.first().is_some_and(u8::is_ascii_digit);
    if (switches >= 3 && part.len() >= 6) || (starts_digit && switches >= 2 && part.len() >= 5) {
        return Some("<id>");
    }
    if longest_digit_run >= 5 || (switches >= 2 && digits >= 4) {
        return Some("<id>");
    }
    None
}
