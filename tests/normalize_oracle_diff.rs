//! `normalize_message` must give exactly the output of the normalizer before its speed work
//! (issue 9, brief normalize-speed): a frozen copy of `src/normalize.rs` at 297ebf4 lives in
//! `tests/normalize_oracle/normalize.rs`, and every text below must normalize byte for byte the
//! same with both.
//!
//! Texts: every string of the shared corpora (`../shared/data/`: Loghub-2k contents and templates,
//! both Loghub files, the Drain3 masking cases, the redaction corpora, the stack corpora, the
//! captured TraceItems; each skipped when absent), every string of the committed fixtures
//! (`tests/fixtures/`), the bench replay corpus (`benches/support/corpus.rs`, always there), each
//! line of every multi-line text, and generated texts (deterministic, seeded): every text cut at
//! seeded char boundaries, pairs of texts spliced, texts with bytes the normalizer branches on
//! (quotes, `:`, `.`, `-`, `\`, `[`, digits, …) inserted, and random token salads built from the
//! value families (dates, times, IPs, hex, ids, quotes, paths, URLs, units, `[redacted:…]`).

mod common;

#[path = "normalize_oracle/normalize.rs"]
mod oracle;

#[path = "../benches/support/corpus.rs"]
mod corpus;

use std::path::Path;

use serde_json::Value;

/// Every string of a `.json` or `.jsonl` file.
fn file_strings(path: &Path, out: &mut Vec<String>) {
    if path.extension().is_some_and(|e| e == "jsonl") {
        for row in common::read_jsonl(path) {
            common::strings(&row, out);
        }
    } else {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        common::strings(&v, out);
    }
}

/// (corpus name, texts). The shared corpora are skipped when absent.
fn corpora() -> Vec<(&'static str, Vec<String>)> {
    let mut out = Vec::new();
    for (name, rel) in [
        ("loghub-2k", "loghub/loghub_2k_all.jsonl"),
        (
            "loghub-2k-corrected",
            "loghub/loghub_2k_corrected_all.jsonl",
        ),
        ("drain3-masking", "normalization/drain3_masking_cases.jsonl"),
        ("gitleaks", "redaction/gitleaks_rules_core.jsonl"),
        ("detect-secrets", "redaction/detect_secrets_plugins.jsonl"),
        ("presidio", "redaction/presidio_recognizers.jsonl"),
        (
            "stack-parser",
            "stacktraces/error_stack_parser_fixtures.jsonl",
        ),
        ("workerd-tail", "stacktraces/workerd_tail_exceptions.jsonl"),
        (
            "workerd-streams",
            "stacktraces/workerd_tail_event_streams.jsonl",
        ),
        ("trace-items", "trace-items/all.json"),
        ("trace-items-labelled", "trace-items/labelled.json"),
    ] {
        if let Some(p) = common::shared_data_or_skip(rel, "normalize oracle diff") {
            let mut texts = Vec::new();
            file_strings(&p, &mut texts);
            out.push((name, texts));
        }
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut texts = Vec::new();
    for rel in [
        "trace-items/all.json",
        "trace-items/labelled.json",
        "js-errors/v8_messages.jsonl",
        "injection/payloads.json",
    ] {
        file_strings(&fixtures.join(rel), &mut texts);
    }
    out.push(("fixtures", texts));
    let mut texts = Vec::new();
    for item in corpus::items(2_000, 0x5e1f_4ea1) {
        common::strings(&item, &mut texts);
    }
    out.push(("replay", texts));
    out
}

/// SplitMix64: a seeded, dependency-free generator for the generated texts.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }
}

/// A char boundary of `s` at or before a random position.
fn cut(rng: &mut Rng, s: &str) -> usize {
    s.floor_char_boundary(rng.below(s.len() + 1))
}

/// Pieces the normalizer branches on, inserted into texts.
const SPECIALS: &[&str] = &[
    "'", "\"", "`", ":", "::", ".", ",", "-", "+", "_", "\\", "\\\"", "[", "]", "(", ")", "/",
    "//", "~/", "@", "=", "%", "#", "?", " ", "  ", "\t", "\n", "\r\n", "0", "1", "9", "00", "255",
    "x", "e", "E", "ms", "s", "h", "AM", "pm", "T", "Z", "é", "—", "\u{a0}", "\u{0}", "0x", "ff",
];

/// Tokens of the value families and their near misses, for the token salads.
const TOKENS: &[&str] = &[
    "42",
    "-5",
    "+7",
    "3.14",
    "1e10",
    "2.5E-3",
    "1.2.3",
    "1.2.3.4",
    "999.1.1.1",
    "10.0.0.1:8080",
    "::1",
    "::",
    "fe80::1%eth0",
    "2001:db8::/32",
    "[2001:db8::1]:443",
    "::ffff:192.0.2.1",
    "00:1a:2b:3c:4d:5e",
    "std::io::Error",
    "0x7fff",
    "deadbeef",
    "9f4ef63",
    "00106210",
    "facade",
    "123e4567-e89b-12d3-a456-426614174000",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "1-5759e988-bd862e3fe1be46a994272793",
    "2026-11-21T10:00:00.123Z",
    "2026-11-21 10:00:00,123 +02:00",
    "2026/11/21",
    "20261121T100000Z",
    "21/Nov/2026:10:00:00 +0000",
    "21 Nov 2026 10:00:00 GMT",
    "Tue, 01 Dec 2026 10:00:00 GMT",
    "Tuesday, 01-Dec-26 10:00:00 GMT",
    "Sun Jul 10 03:55:15 2005",
    "Jul  1 07:57:30",
    "Tue Dec 01 2026 10:00:00 GMT+0100 (Central European Standard Time)",
    "May",
    "Monday",
    "10:00:01.5",
    "10:00 PM",
    "7:05pm",
    "12:34",
    "250ms",
    "1h2m3.5s",
    "15min",
    "1.5GB",
    "https://x.io/a?b=1.",
    "http://[::1]:80/",
    "/srv/app/x.js:3:4",
    "~/code/a.rs",
    "C:\\Users\\bob",
    "/v2/x?all=1#f",
    "and/or",
    "bob.s+1@ex.com",
    "a@b",
    "api.github.com",
    "index.js",
    "com.android.Foo",
    "'email'",
    "(reading 'id')",
    "property 'a.b'",
    "'a b c'",
    "\"GET /x HTTP/1.1\"",
    "\"{a: 1, b: 2}\"",
    "\" is not valid JSON",
    "\"... is not valid JSON",
    "\\\"x y\\\"",
    "can't",
    "''''",
    "[object Array]",
    "#<Array>",
    "[redacted:email]",
    "[redacted:",
    "blk_-1608999687919862906",
    "rdd_2_3",
    "x86_64",
    "utf8",
    "ord8f3k2j9",
    "user12345",
    "ch_3MqLiO2eZvKYlo2C",
    "dGhpcyBpcyBhIHRlc3Qgb2YgYjY0IGVuY29kaW5n==",
    "getElementByIdAndClassName2",
    "1,2,3",
    "10.0.0.1,10.0.0.2",
    "ユーザー",
    "é123",
    "🔥",
];

/// Generated texts from the corpus texts (see the module docs).
fn generated(texts: &[String], seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for t in texts {
        // Each line of a multi-line text on its own.
        if t.contains('\n') {
            out.extend(t.lines().map(str::to_string));
        }
        if t.is_empty() {
            continue;
        }
        // Cut at two seeded boundaries: a prefix, a suffix and a middle slice.
        let (a, b) = (cut(&mut rng, t), cut(&mut rng, t));
        let (lo, hi) = (a.min(b), a.max(b));
        out.push(t[..hi].to_string());
        out.push(t[lo..].to_string());
        out.push(t[lo..hi].to_string());
        // Special pieces inserted at seeded boundaries.
        let mut m = t.clone();
        for _ in 0..1 + rng.below(3) {
            let at = cut(&mut rng, &m);
            m.insert_str(at, SPECIALS[rng.below(SPECIALS.len())]);
        }
        out.push(m);
        // A splice of this text and another.
        let other = &texts[rng.below(texts.len())];
        let (x, y) = (cut(&mut rng, t), cut(&mut rng, other));
        out.push(format!("{}{}", &t[..x], &other[y..]));
    }
    // Token salads: family tokens glued by specials or spaces.
    for _ in 0..20_000 {
        let mut s = String::new();
        for _ in 0..1 + rng.below(8) {
            if rng.below(3) == 0 {
                s.push_str(SPECIALS[rng.below(SPECIALS.len())]);
            } else {
                s.push(' ');
            }
            s.push_str(TOKENS[rng.below(TOKENS.len())]);
        }
        out.push(s);
    }
    out
}

/// Checks the texts, returning the number of differences and a listing of the first ones.
fn diff(texts: &[String], listing: &mut String, shown: &mut usize) -> usize {
    let mut differ = 0;
    for text in texts {
        let old = oracle::normalize_message(text);
        let new = selfheal::normalize::normalize_message(text);
        if old != new {
            differ += 1;
            if *shown < 20 {
                *shown += 1;
                listing.push_str(&format!(
                    "  in:  {text:?}\n  old: {old:?}\n  new: {new:?}\n"
                ));
            }
        }
    }
    differ
}

#[test]
fn same_output_as_the_frozen_normalizer() {
    let mut listing = String::new();
    let mut shown = 0;
    let mut total = 0;
    let mut differ = 0;
    let mut report = String::new();
    let all = corpora();
    for (name, texts) in &all {
        let made = generated(texts, 0x9e37_0000 ^ texts.len() as u64);
        let d = diff(texts, &mut listing, &mut shown);
        let g = diff(&made, &mut listing, &mut shown);
        report.push_str(&format!(
            "{name}: {} texts ({d} differ), {} generated ({g} differ)\n",
            texts.len(),
            made.len()
        ));
        total += texts.len() + made.len();
        differ += d + g;
    }
    eprintln!("{report}{total} texts in all");
    assert!(
        total > 50_000,
        "only {total} texts: the corpora went missing"
    );
    assert_eq!(
        differ, 0,
        "{differ} texts normalize differently from the frozen normalizer:\n{listing}"
    );
}

/// The oracle is a separate copy (not a re-export of today's code) and gives the old outputs.
#[test]
fn the_oracle_gives_the_old_outputs() {
    let text = "user 42 at 10.0.0.1 req 123e4567-e89b-12d3-a456-426614174000 'a b' 250ms";
    assert_eq!(
        oracle::normalize_message(text),
        "user <int> at <ip> req <uuid> <quoted> <duration>"
    );
    assert_eq!(
        oracle::MAX_INPUT_BYTES,
        selfheal::normalize::MAX_INPUT_BYTES
    );
}
