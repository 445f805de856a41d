//! Bench script for the scrubber: `cargo run --release --example scrub_bench`.
//!
//! Prints ns per `scrub_text` call on a clean and a dirty message, each next to a baseline run in
//! the same process: one precompiled single-pattern regex (an email pattern) scanning the same text,
//! the cheapest a regex scrubber can be; and the time of one call on hostile 16 KB inputs (bounded
//! work: each must stay in milliseconds).
//!
//! Per rule (`rule_costs`): the compile time of its regex with and without the meta engine's
//! automatic literal prefilter, and the search time on the distinct replay-corpus texts its gate
//! lets through, both ways in the same process: the measurement behind the engine's
//! `NO_LITERAL_PREFILTER` list. For the rules written as code (`scrub::matchers`), the same
//! figures for the pattern each implements against the code on the same texts
//! (`code_rule_costs`).

use std::hint::black_box;
use std::time::Instant;

use regex_automata::{Input, meta};
use selfheal::scrub::matchers::RULES_AS_CODE;
use selfheal::scrub::prefilter::{ScanKind, Stats, scan_all};
use selfheal::scrub::rules::RULES;
use selfheal::scrub::{gated_rules, rule_regex_for, scrub_text};
use serde_json::Value;

#[path = "../benches/support/corpus.rs"]
mod corpus;

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn per_call_ns(n: u32, mut f: impl FnMut() -> usize) -> f64 {
    let mut total = 0usize;
    let t = Instant::now();
    for _ in 0..n {
        total = total.wrapping_add(f());
    }
    black_box(total);
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    let clean = "TypeError: Cannot read properties of undefined (reading 'id') at handler (worker.js:12:34)";
    let dirty =
        "login failed for bob@example.com from 203.0.113.9, password=hunter2 token=abc123def456";
    let _ = scrub_text(clean); // compile the rules once, outside the timing
    let email = regex::Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
        .expect("valid pattern");
    let n = 200_000;
    println!("message          bytes  scrub ns/call  1-regex ns/call  ratio");
    for (name, s) in [("clean", clean), ("dirty", dirty)] {
        let scrub = per_call_ns(n, || scrub_text(black_box(s)).text.len());
        let base = per_call_ns(n, || email.find_iter(black_box(s)).count());
        println!(
            "{name:<15} {:>6} {scrub:>14.0} {base:>17.0} {:>6.1}x",
            s.len(),
            scrub / base
        );
    }
    // which rules the gate lets run, over every string of 2,000 replay-corpus items
    let mut texts = Vec::new();
    for item in corpus::items(2_000, 0x5e1f_4ea1) {
        strings(&item, &mut texts);
    }
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for t in &texts {
        for id in gated_rules(t) {
            *counts.entry(id).or_default() += 1;
        }
    }
    let mut by_count: Vec<_> = counts.into_iter().collect();
    by_count.sort_by_key(|e| std::cmp::Reverse(e.1));
    println!(
        "\nrules run past the gate on {} replay-corpus strings (of 2,000 items):",
        texts.len()
    );
    for (id, n) in by_count {
        println!(
            "  {id:<22} {n:>7}  ({:.1}%)",
            100.0 * n as f64 / texts.len().max(1) as f64
        );
    }
    let t = Instant::now();
    let total: usize = texts.iter().map(|s| scrub_text(s).text.len()).sum();
    black_box(total);
    println!(
        "scrub_text over those strings: {:.0} ns per string",
        t.elapsed().as_nanos() as f64 / texts.len().max(1) as f64
    );

    gate_passes(&texts);
    rule_costs(&texts);
    code_rule_costs(&texts);

    println!("\nhostile input     bytes       ms  remarks");
    let cases: Vec<(&str, String)> = vec![
        ("digits", "4".repeat(16_000)),
        ("a@", "a@".repeat(8_000)),
        ("kv", "password=x ".repeat(1_500)),
        ("kv-reject", "bypass=1 ".repeat(1_800)),
        ("colons", ":".repeat(16_000)),
        ("hex-colons", "ab:".repeat(5_000)),
        ("dotted", "1.2.".repeat(4_000)),
        ("plus", "+1 ".repeat(5_000)),
        ("base64=", "QUJD= ".repeat(2_700)),
        ("eyJ", "eyJ".repeat(5_000)),
        ("spaced-digits", "1234 ".repeat(3_200)),
        ("quotes", "token \"".repeat(2_000)),
        ("words", "lorem ipsum dolor sit amet ".repeat(600)),
    ];
    for (name, s) in cases {
        let t = Instant::now();
        let out = scrub_text(&s);
        println!(
            "{name:<14} {:>8} {:>8.2} {:>8}",
            s.len(),
            t.elapsed().as_secs_f64() * 1e3,
            out.remarks.len()
        );
    }
}

/// The byte-class half of the gate on every replay-corpus string, two ways in the same process:
/// each rule's check on its own after a byte count (one or more passes per rule: the gate until
/// this comparison) against `scan_all` (every check in one pass: the gate now). Same answers
/// (a unit test compares them); prints ns per string and the ratio, for all strings and for the
/// long ones (stack traces, where every check used to run to the end of the text).
fn gate_passes(texts: &[String]) {
    let kinds: Vec<ScanKind> = RULES.iter().filter_map(|r| r.scan).collect();
    let per_check = |t: &String| {
        let st = Stats::of(t.as_bytes());
        kinds.iter().filter(|k| k.check(t.as_bytes(), &st)).count()
    };
    let fused = |t: &String| {
        let (set, _) = scan_all(t.as_bytes());
        kinds.iter().filter(|k| set.has(**k)).count()
    };
    let long: Vec<String> = texts.iter().filter(|t| t.len() >= 512).cloned().collect();
    println!(
        "\ngate byte checks ({} rules with one)   strings  bytes avg  per-check ns  fused ns  ratio",
        kinds.len()
    );
    for (name, set) in [
        ("all replay strings", texts),
        ("strings >= 512 bytes", &long[..]),
    ] {
        let mut rounds: Vec<(f64, f64)> = (0..7)
            .map(|_| {
                let a = per_call_ns(1, || set.iter().map(per_check).sum());
                let b = per_call_ns(1, || set.iter().map(fused).sum());
                (a / set.len().max(1) as f64, b / set.len().max(1) as f64)
            })
            .collect();
        rounds.sort_by(|x, y| (x.0 / x.1).total_cmp(&(y.0 / y.1)));
        let (a, b) = rounds[rounds.len() / 2];
        let bytes = set.iter().map(String::len).sum::<usize>() / set.len().max(1);
        println!(
            "{name:<36} {:>8} {bytes:>10} {a:>13.0} {b:>9.0} {:>5.1}x",
            set.len(),
            a / b
        );
    }
}

/// Median of 9 timings of `f`, in µs.
fn median_us(mut f: impl FnMut()) -> f64 {
    let mut ts: Vec<f64> = (0..9)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    ts[ts.len() / 2]
}

/// Every match of `re` in `text` with captures, as the engine searches (one `Captures` reused).
fn count_matches(
    re: &meta::Regex,
    caps: &mut regex_automata::util::captures::Captures,
    text: &str,
) -> usize {
    let (mut n, mut at) = (0, 0);
    while at <= text.len() {
        re.search_captures(&Input::new(text).span(at..text.len()), caps);
        let Some(m) = caps.get_match() else { break };
        n += 1;
        at = if m.end() > m.start() {
            m.end()
        } else {
            m.end() + 1
        };
    }
    n
}

/// Per rule with a pattern: compile µs with the literal prefilter and without it (median of 9),
/// and ns per text searching the distinct texts its gate lets through, both ways; `*` marks the
/// rules the engine builds without it (`rule_regex_for`). Rules that share an id (the pieces of
/// `@vendor_token`) share their text count: `gated_rules` names rules by id.
fn rule_costs(texts: &[String]) {
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<&String> = texts.iter().filter(|t| seen.insert(t.as_str())).collect();
    let gates: Vec<Vec<&str>> = distinct.iter().map(|t| gated_rules(t)).collect();
    println!(
        "\nper rule, on the {} distinct strings   compile us: prefilter / none   texts   search ns/text: prefilter / none",
        distinct.len()
    );
    let build = |pattern: &str, prefilter: bool| {
        meta::Builder::new()
            .configure(meta::Config::new().auto_prefilter(prefilter))
            .build(pattern)
            .ok()
    };
    let (mut total_with, mut total_without, mut total_shipped) = (0.0, 0.0, 0.0);
    for rule in RULES.iter().filter(|r| !r.pattern.is_empty()) {
        let (Some(with), Some(without)) = (build(rule.pattern, true), build(rule.pattern, false))
        else {
            continue;
        };
        let c_with = median_us(|| drop(black_box(build(rule.pattern, true))));
        let c_without = median_us(|| drop(black_box(build(rule.pattern, false))));
        let shipped_off =
            rule_regex_for(rule).is_some_and(|re| !re.get_config().get_auto_prefilter());
        total_with += c_with;
        total_without += c_without;
        total_shipped += if shipped_off { c_without } else { c_with };
        let mine: Vec<&str> = distinct
            .iter()
            .zip(&gates)
            .filter(|(_, g)| g.contains(&rule.id))
            .map(|(t, _)| t.as_str())
            .collect();
        let mut caps = with.create_captures();
        let search = |re: &meta::Regex, caps: &mut _| {
            median_us(|| {
                black_box(
                    mine.iter()
                        .map(|t| count_matches(re, caps, t))
                        .sum::<usize>(),
                );
            }) * 1e3
                / mine.len().max(1) as f64
        };
        let s_with = search(&with, &mut caps);
        let mut caps = without.create_captures();
        let s_without = search(&without, &mut caps);
        println!(
            "  {:<22}{} {c_with:>8.0} / {c_without:<8.0} {:>7} {s_with:>10.0} / {s_without:.0}",
            rule.id,
            if shipped_off { '*' } else { ' ' },
            mine.len()
        );
    }
    println!(
        "  every rule's compile: {total_with:.0} us with the prefilter, {total_without:.0} without, {total_shipped:.0} as shipped"
    );
}

/// Per rule written as code: the compile time of the regex it replaces (as the engine built it)
/// and, on the distinct replay-corpus texts its gate lets through, ns per text for that regex
/// (every match, with captures, no validator) against the code (every match, validator
/// included), in the same process.
fn code_rule_costs(texts: &[String]) {
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<&String> = texts.iter().filter(|t| seen.insert(t.as_str())).collect();
    println!(
        "\nrules as code, on the {} distinct strings   regex compile us   texts   ns/text: regex / code   ratio",
        distinct.len()
    );
    for (id, pattern, find) in RULES_AS_CODE {
        let Ok(re) = meta::Regex::new(pattern) else {
            continue;
        };
        let compile = median_us(|| drop(black_box(meta::Regex::new(pattern))));
        let mine: Vec<&str> = distinct
            .iter()
            .filter(|t| gated_rules(t).contains(&id))
            .map(|t| t.as_str())
            .collect();
        let per_text = |us: f64| us * 1e3 / mine.len().max(1) as f64;
        let mut caps = re.create_captures();
        let regex = per_text(median_us(|| {
            black_box(
                mine.iter()
                    .map(|t| count_matches(&re, &mut caps, t))
                    .sum::<usize>(),
            );
        }));
        let mut hits = Vec::new();
        let code = per_text(median_us(|| {
            black_box(
                mine.iter()
                    .map(|t| {
                        hits.clear();
                        find(t, &mut hits);
                        hits.len()
                    })
                    .sum::<usize>(),
            );
        }));
        println!(
            "  {id:<22} {compile:>12.0} {:>12} {regex:>10.0} / {code:<8.0} {:>6.1}x",
            mine.len(),
            regex / code.max(1e-9)
        );
    }
}
