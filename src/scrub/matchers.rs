//! Rules written as code instead of a regex: the same matches as their pattern, without compiling
//! one.
//!
//! Each matcher here implements one regex of the rule table exactly (leftmost-first, greedy,
//! Unicode `\b` and `\s`: what the `regex` crate gives that pattern). The pattern is kept next
//! to it ([`JWT_PATTERN`], [`BEARER_PATTERN`], [`EMAIL_PATTERN`]) as its definition, and the
//! tests run both on generated texts and the rule's edge cases, and compare the classes on
//! every `char` of the Basic Multilingual Plane and a sample beyond it; they want the same
//! candidates. The search loop and the filler check are the engine's
//! ([`super::engine::drive`]), so rejection restarts and their budgets are the same too.
//!
//! Why (issue 9, throughput): every text with a JWT is gated in for `@jwt`, and as a regex it
//! cost a lazy-DFA search plus a bounded-backtracker pass for the captures on each: 2.3–4.1 µs
//! per gated text in `scrub_bench`'s per-rule table, against 0.3–0.6 µs for this scan (the
//! table `rules as code` prints both in one process). `@bearer` (924 of the 5,896 distinct
//! replay strings are gated in for it): 4.4 µs per gated text as a regex, 1.2 µs as code
//! (3.6×, two runs), and a 0.37 ms compile less on a fresh isolate that meets `bearer`; +781
//! bytes of gzip wasm, which fit since the Unicode case-folding tables left the build (−19.8 KB).
//! `@email` (676 gated strings) is about as fast per text as its regex (0.8–1.1×: the lazy DFA
//! does well on it); it is code for the first call, which no longer compiles its 0.35 ms
//! regex when a text holds an `@` (+318 bytes).

use super::Hit;
use super::engine::drive;
use super::validate;

/// `@jwt`'s definition: header and payload both JSON objects (`ey…` in base64url), then up to
/// three more parts (JWS signature, JWE parts).
pub const JWT_PATTERN: &str = r#"(?x)
            \b(?P<s>
                eyJ[A-Za-z0-9_-]{6,}      # header: {"alg"...
                \.ey[A-Za-z0-9_-]{2,}     # payload
                (?:\.[A-Za-z0-9_-]*){0,3} # signature (JWS), or more parts (JWE)
            )"#;

/// `@bearer`'s definition: `Bearer <token>` anywhere (headers, curl lines, log lines); the
/// token must look random ([`validate::looks_random`], the rule's validator).
pub const BEARER_PATTERN: &str =
    r"(?x)\b(?i-u:bearer)\s+(?P<s>[A-Za-z0-9._~+/=-]{8,}|(?i-u:sha256)~[A-Za-z0-9._~+/=@-]{4,})";

/// `@email`'s definition: local part, `@` (or `%40`, percent-encoded), host labels, and a TLD
/// of letters or an IDN `xn--` label.
pub const EMAIL_PATTERN: &str = r"(?x)
            [A-Za-z0-9._%+-]+
            (?:@|%40)
            [A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?
            (?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*
            \.(?:xn--[A-Za-z0-9-]{2,59}|[A-Za-z]{2,24})";

/// A matcher's answer: the whole match and the replaced part (byte offsets into the text).
type Found = ((usize, usize), (usize, usize));

/// The rules written as code: (rule id, the pattern it implements, its finder).
pub const RULES_AS_CODE: [(&str, &str, super::Finder); 3] = [
    ("@jwt", JWT_PATTERN, find_jwt),
    ("@bearer", BEARER_PATTERN, find_bearer),
    ("@email", EMAIL_PATTERN, find_email),
];

/// `@jwt`: pushes the accepted spans of `text` (see [`JWT_PATTERN`]).
pub fn find_jwt(text: &str, out: &mut Vec<Hit>) {
    find(text, "@jwt", jwt_at, |_, _| true, out);
}

/// `@bearer`: pushes the accepted spans of `text` (see [`BEARER_PATTERN`]): a token that does
/// not look random (`Bearer authentication required`) is rejected, and the search restarts
/// inside it as the engine does for a regex rule's rejection.
pub fn find_bearer(text: &str, out: &mut Vec<Hit>) {
    find(
        text,
        "@bearer",
        bearer_at,
        |t, (start, end)| t.get(start..end).is_some_and(validate::looks_random),
        out,
    );
}

/// `@email`: pushes the accepted spans of `text` (see [`EMAIL_PATTERN`]; validator
/// [`validate::email_ok`]: not glued to a following letter or digit, not URL userinfo).
pub fn find_email(text: &str, out: &mut Vec<Hit>) {
    find(text, "@email", email_at, validate::email_ok, out);
}

/// The engine's search loop over a code matcher: `at(text, pos)` is the leftmost match at or
/// after `pos`, `accept(text, span)` the rule's validator on the replaced part.
fn find(
    text: &str,
    rule_id: &str,
    at: fn(&str, usize) -> Option<Found>,
    accept: fn(&str, (usize, usize)) -> bool,
    out: &mut Vec<Hit>,
) {
    let mut next = |pos: usize| {
        let (whole, (start, end)) = at(text, pos)?;
        let hit = accept(text, (start, end)).then_some(Hit {
            start,
            end,
            refine: None,
        });
        Some((whole, hit))
    };
    drive(text, rule_id, &mut next, &mut |h| out.push(h));
}

/// Unicode `\w` (UTS#18 Annex C, the `regex` crate's definition), ASCII answered inline.
fn is_word(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '_'
    } else {
        regex_syntax::try_is_word_character(c).unwrap_or(false)
    }
}

/// `\b` before a word char at `i`: the text starts there or the char before is not a word char.
fn word_start(text: &str, i: usize) -> bool {
    validate::char_before(text, i).is_none_or(|c| !is_word(c))
}

/// `[A-Za-z0-9_-]`, the pattern's one class (ASCII: no `(?i)`, no Unicode).
fn jwt_class(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The leftmost match of [`JWT_PATTERN`] starting at or after byte `pos`. Every run of the class
/// is taken whole: the byte after each piece (`.`) is not in the class, so a shorter run can
/// never let the rest match, and the last parts are greedy with nothing after them.
fn jwt_at(text: &str, pos: usize) -> Option<Found> {
    let b = text.as_bytes();
    let ascii_run = |i: usize| {
        i + b
            .get(i..)
            .map_or(0, |t| t.iter().take_while(|&&c| jwt_class(c)).count())
    };
    let starts = b.get(pos..)?.windows(3).enumerate();
    for p in starts
        .filter(|(_, w)| *w == b"eyJ")
        .map(|(off, _)| pos + off)
    {
        if !word_start(text, p) {
            continue;
        }
        let header = ascii_run(p + 3);
        if header - (p + 3) < 6 || b.get(header) != Some(&b'.') {
            continue;
        }
        let payload = header + 1;
        let end = ascii_run(payload);
        if !b.get(payload..).is_some_and(|t| t.starts_with(b"ey")) || end - payload < 4 {
            continue;
        }
        let mut end = end;
        for _ in 0..3 {
            if b.get(end) != Some(&b'.') {
                break;
            }
            end = ascii_run(end + 1);
        }
        return Some(((p, end), (p, end)));
    }
    None
}

/// `[A-Za-z0-9._~+/=-]` (`@bearer`'s token), with `@` too for its `sha256~` form.
fn bearer_class(b: u8, at_sign: bool) -> bool {
    b.is_ascii_alphanumeric() || b"._~+/=-".contains(&b) || (at_sign && b == b'@')
}

/// The leftmost match of [`BEARER_PATTERN`] starting at or after byte `pos`. A match starts at a
/// `bearer` (ASCII case-insensitive) after a `\b`; the spaces (`\s`: Unicode White_Space, which
/// `char::is_whitespace` is) are taken whole because neither alternative starts with one; the
/// first alternative's run is taken whole (greedy, nothing after it), and the second is tried only
/// when that run is shorter than 8, as leftmost-first alternation does.
fn bearer_at(text: &str, pos: usize) -> Option<Found> {
    let b = text.as_bytes();
    let run = |i: usize, at_sign: bool| {
        b.get(i..).map_or(0, |t| {
            t.iter().take_while(|&&c| bearer_class(c, at_sign)).count()
        })
    };
    let starts = b.get(pos..)?.windows(6).enumerate();
    for p in starts
        .filter(|(_, w)| w.eq_ignore_ascii_case(b"bearer"))
        .map(|(off, _)| pos + off)
    {
        if !word_start(text, p) {
            continue;
        }
        let after = text.get(p + 6..)?;
        let spaces: usize = after
            .chars()
            .take_while(|c| c.is_whitespace())
            .map(char::len_utf8)
            .sum();
        if spaces == 0 {
            continue;
        }
        let r = p + 6 + spaces;
        let n1 = run(r, false);
        if n1 >= 8 {
            return Some(((p, r + n1), (r, r + n1)));
        }
        if b.get(r..r + 7)
            .is_some_and(|t| t[..6].eq_ignore_ascii_case(b"sha256") && t[6] == b'~')
        {
            let n2 = run(r + 7, true);
            if n2 >= 4 {
                return Some(((p, r + 7 + n2), (r, r + 7 + n2)));
            }
        }
    }
    None
}

/// `[A-Za-z0-9._%+-]`, `@email`'s local part.
fn email_local_class(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-".contains(&b)
}

/// `[A-Za-z0-9-]`, a host label's chars.
fn label_class(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// Length of the run of `class` bytes at `i` (0 past the end).
fn run_len(b: &[u8], i: usize, class: fn(u8) -> bool) -> usize {
    b.get(i..)
        .map_or(0, |t| t.iter().take_while(|&&c| class(c)).count())
}

/// The end of [`EMAIL_PATTERN`]'s domain part starting at `q`, if it matches there. A label is
/// followed by a `.` in every use, and `.` is not a label char, so a label is always its whole
/// run (1 to 64 chars, first and last alphanumeric). The repeated labels are greedy: the most of
/// them that leave a `.` and a TLD after, fewer only when the TLD fails, as backtracking does
/// (so the last label end in the chain that has one wins); the TLD tries `xn--` first, then
/// letters, each greedy up to its maximum (nothing follows it).
fn email_domain(b: &[u8], q: usize) -> Option<usize> {
    let label = |i: usize| {
        let n = run_len(b, i, label_class);
        let ok = (1..=64).contains(&n)
            && b.get(i).is_some_and(u8::is_ascii_alphanumeric)
            && b.get(i + n - 1).is_some_and(u8::is_ascii_alphanumeric);
        ok.then_some(i + n)
    };
    let tld = |t: usize| {
        if b.get(t..t + 4) == Some(b"xn--") {
            let n = run_len(b, t + 4, label_class).min(59);
            if n >= 2 {
                return Some(t + 4 + n);
            }
        }
        let n = run_len(b, t, |c| c.is_ascii_alphabetic()).min(24);
        (n >= 2).then_some(t + n)
    };
    let mut best = None;
    let mut e = label(q)?;
    while b.get(e) == Some(&b'.') {
        if let Some(end) = tld(e + 1) {
            best = Some(end);
        }
        match label(e + 1) {
            Some(next) => e = next,
            None => break,
        }
    }
    best
}

/// The leftmost match of [`EMAIL_PATTERN`] starting at or after byte `pos`. Separators (`@`,
/// `%40`) are visited in order; the first with a local part before it (at or after `pos`) and a
/// domain after it fixes the match's start: the start of its run of local-part chars (no earlier
/// run has a separator that matches). From that start the greedy local part prefers the
/// farthest separator of the run: the `@` that ends it, then each later `%40` inside it from
/// the last (`%`, `4`, `0` are local-part chars); the first whose domain matches is the match.
fn email_at(text: &str, pos: usize) -> Option<Found> {
    let b = text.as_bytes();
    let local_before = |j: usize| j > pos && b.get(j - 1).is_some_and(|&c| email_local_class(c));
    let mut j = pos;
    while let Some(off) = b.get(j..)?.iter().position(|&c| c == b'@' || c == b'%') {
        j += off;
        let q = if b[j] == b'@' {
            j + 1
        } else if b.get(j..j + 3) == Some(b"%40") {
            j + 3
        } else {
            j += 1;
            continue;
        };
        if !local_before(j) || email_domain(b, q).is_none() {
            j += 1;
            continue;
        }
        let mut start = j - 1;
        while start > pos && b.get(start - 1).is_some_and(|&c| email_local_class(c)) {
            start -= 1;
        }
        // the run holding this separator ends at `@` or at its first byte outside the class
        let end = j + run_len(b, j, email_local_class);
        let at_sign = (b.get(end) == Some(&b'@')).then_some(end + 1);
        let encoded = (j..end.saturating_sub(2))
            .rev()
            .filter(|&k| b.get(k..k + 3) == Some(b"%40"))
            .map(|k| k + 3);
        let e = at_sign
            .into_iter()
            .chain(encoded)
            .find_map(|q| email_domain(b, q))?;
        return Some(((start, e), (start, e)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrub::RuleSpec;
    use crate::scrub::rules::RULES;
    use regex_automata::meta::Regex;

    /// What the engine gets from a code rule: the hits of its finder.
    fn code_hits(find: fn(&str, &mut Vec<Hit>), text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        find(text, &mut out);
        out.iter().map(|h| (h.start, h.end)).collect()
    }

    /// The same rule as a regex: its pattern and the regex form of its validator, run through
    /// the regex path's search loop (what the engine did before the rule was code).
    fn as_regex(id: &str, pattern: &'static str) -> (RuleSpec, Regex) {
        let spec = RuleSpec {
            pattern,
            find: None,
            // the validator in its regex form (what the rule had before it was code)
            check: match id {
                "@bearer" => Some(validate::token_like),
                "@email" => Some(validate::email),
                _ => None,
            },
            ..*spec(id)
        };
        let re = crate::scrub::rule_regex_for(&spec).expect("pattern compiles");
        (spec, re)
    }

    fn spec(id: &str) -> &'static RuleSpec {
        RULES.iter().find(|r| r.id == id).expect("rule exists")
    }

    /// Pieces the generated texts are made of: JWT parts and near misses, the class's edge chars
    /// (`.`, `-`, `_`, `=`, `~`), non-ASCII word chars and marks next to a boundary (`é`, `ß`,
    /// `日本`, a combining accent, the Kelvin sign), Unicode spaces, and other rules' words as
    /// noise.
    const PIECES: &[&str] = &[
        "eyJ",
        "ey",
        "eyJhbGciOi",
        ".",
        "..",
        "bearer",
        "Bearer",
        "BEARER",
        "bEaReR",
        "basic",
        "Basic",
        "BASIC",
        " ",
        "  ",
        "\t",
        "\n",
        "\u{a0}",
        "\u{2003}",
        "\u{3000}",
        "abc",
        "XYZ",
        "a1B2c3D4e5",
        "0123456789",
        "dXNlcjpwYXNz",
        "YnJvd3Nlcjo",
        "=",
        "==",
        "===",
        "~",
        "+",
        "/",
        "-",
        "_",
        "@",
        "sha256~",
        "SHA256~",
        "\u{17F}ha256~",
        "\u{212A}",
        "\u{17F}",
        "é",
        "ß",
        "日本",
        "\u{301}",
        ":",
        ",",
        "\"",
        "'",
        "(",
        "x",
        "Z9",
        "token",
        "=>",
        "eyJhbGciOiJIUzI1NiJ9",
        ".eyJzdWIi",
        ".eyQ",
        ".sig_-9",
        "eyJhbGc.eyJ",
        "basic dXNlcjpwYXNz",
        "Basic YnJvd3Nlcjo=",
        "BASIC\u{a0}YTpi",
        "@",
        "@",
        "%40",
        "%4",
        "%",
        ".com",
        ".io",
        ".c",
        ".co1",
        "a.b",
        "bob",
        "x-",
        "-y",
        "xn--",
        "XN--",
        "xn--p1ai",
        ".xn--d1",
        "user.name+tag",
        "example.org",
        "://",
        "user:pw@",
        "/",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "cccccccccccccccccccccccc",
    ];

    /// A deterministic xorshift stream (no randomness in the crate).
    struct Xs(u64);
    impl Xs {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn generated(n: usize, seed: u64) -> Vec<String> {
        let mut xs = Xs(seed);
        (0..n)
            .map(|_| {
                let len = 1 + (xs.next() % 14) as usize;
                (0..len)
                    .map(|_| PIECES[(xs.next() % PIECES.len() as u64) as usize])
                    .collect()
            })
            .collect()
    }

    /// Texts that every matcher must answer as its pattern does: the rule table's own cases
    /// and hand-made edges (boundaries, counts one below and at the minimum, five parts where
    /// three more are allowed), and other rules' texts as negatives.
    const EDGES: &[&str] = &[
        "t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc_DEF-123 ok",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0In0.",
        "eyJabcdef.eyab",
        "eyJabcde.eyabcd",
        "eyJabcdef.eya",
        "xeyJabcdef.eyabcd",
        "éeyJabcdef.eyabcd",
        "-eyJabcdef.eyabcd.a.b.c.d.e",
        "eyJabcdef.eyabcd...",
        "eyJeyJabcdef.eyabcd eyJabcdef.eyabcd",
        "Authorization: Bearer abcDEF123456",
        "bearer 0123456789abcdef0123",
        "bearer authentication required",
        "Bearer token missing",
        "Bearer abc.bearer tok123456",
        "bearer\u{a0}\u{2003}ABCdef12",
        "bearer sha256~@abc",
        "bearer sha256~@ab",
        "bearer \u{17F}ha256~@abcd",
        "bearer \u{212A}\u{212A}\u{212A}\u{212A}1234",
        "xbearer abcDEF123456",
        "_bearer abcDEF123456",
        "ébearer abcDEF123456",
        "bearerabcDEF123456",
        "Authorization: Basic dXNlcjpwYXNz",
        "basic YnJvd3Nlcjo=",
        "basic YnJvd3Nlcjo===",
        "basic authentication failed",
        "Basic dGVzdA== is not a credential",
        "basic dXNlcjpwYXNz basic dXNlcjpwYXNz",
        "user bob@example.com not found",
        "a@xn--d1acufc.xn--p1ai",
        "/u/bob%40example.com/x",
        "a%40b%40c.com",
        "a%40b.com%40c.org x%40b.io@c.com",
        "a%40b@c.com",
        "a%40b@c.1",
        "x@b.com.x1 y@b.co1",
        "x@b.cccccccccccccccccccccccccccccc",
        "x@-b.com x@b-.com x@b..com x@.com",
        "x@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
        "x@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
        "x@b.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
        "x@b.xn--a x@b.xn--ab x@b.XN--ab",
        "https://user:pw@example.com/x",
        "é@b.com ß.x@b.com",
        "@b.com",
        "info@presidio.",
        "",
    ];

    #[test]
    fn code_rules_match_their_patterns() {
        let mut texts: Vec<String> = EDGES.iter().map(|s| s.to_string()).collect();
        texts.extend(generated(100_000, 0x9e37_79b9_7f4a_7c15));
        let mut found = [0usize; RULES_AS_CODE.len()];
        let regexes: Vec<(RuleSpec, Regex)> = RULES_AS_CODE
            .iter()
            .map(|(id, pattern, _)| as_regex(id, pattern))
            .collect();
        for text in &texts {
            for (k, ((id, _, find), (spec, re))) in RULES_AS_CODE.iter().zip(&regexes).enumerate() {
                let want = crate::scrub::engine::regex_candidates(text, spec, re);
                let got = code_hits(*find, text);
                assert_eq!(got, want, "{id} on {text:?}");
                found[k] += got.len();
            }
        }
        // the generated texts reach matches of every rule, not only rejections
        for (k, (id, _, _)) in RULES_AS_CODE.iter().enumerate() {
            assert!(found[k] > 300, "{id}: only {} hits", found[k]);
        }
    }

    /// Every char a class of the patterns could meet: the code's class is the regex's class, and
    /// the word chars of `\b` are the same.
    #[test]
    fn classes_agree_with_the_regex_on_every_char() {
        let re = |p: &str| Regex::new(p).expect("compiles");
        type CharClass = fn(char) -> bool;
        let checks: [(&str, Regex, CharClass); 7] = [
            ("\\w", re(r"^\w$"), is_word),
            ("\\s", re(r"^\s$"), char::is_whitespace),
            ("jwt class", re(r"^[A-Za-z0-9_-]$"), |c| {
                u8::try_from(c).is_ok_and(jwt_class)
            }),
            ("bearer class", re(r"^[A-Za-z0-9._~+/=-]$"), |c| {
                u8::try_from(c).is_ok_and(|b| bearer_class(b, false))
            }),
            ("bearer sha256 class", re(r"^[A-Za-z0-9._~+/=@-]$"), |c| {
                u8::try_from(c).is_ok_and(|b| bearer_class(b, true))
            }),
            ("email local class", re(r"^[A-Za-z0-9._%+-]$"), |c| {
                u8::try_from(c).is_ok_and(email_local_class)
            }),
            ("label class", re(r"^[A-Za-z0-9-]$"), |c| {
                u8::try_from(c).is_ok_and(label_class)
            }),
        ];
        let chars = (0u32..0x1_0000).chain((0x1_0000..0x11_0000).step_by(97));
        for c in chars.filter_map(char::from_u32) {
            let mut buf = [0u8; 4];
            let s = c.encode_utf8(&mut buf);
            for (name, re, code) in &checks {
                assert_eq!(code(c), re.is_match(&*s), "{name} on U+{:04X}", c as u32);
            }
        }
    }
}
