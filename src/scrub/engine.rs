//! The matching engine: gates every rule, compiles each rule on first use, finds candidates,
//! resolves overlaps and renders replacements with remarks.
//!
//! Cost model (what a fresh isolate and every text pay):
//! 1. One Aho-Corasick pass over the text with the keywords of every rule (ASCII
//!    case-insensitive; built once per isolate, well under a millisecond), plus the byte-class
//!    checks ([`super::prefilter::ScanKind`], one fused pass) of the rules that have no literal. This is gitleaks' keyword prefilter.
//!    Clean text usually stops here.
//! 2. Only the rules whose gate said yes run their own regex (with captures) and validator; a
//!    rule's regex is compiled the first time its gate says yes, so an isolate pays only for the
//!    rules its texts need.
//!
//! (Until issue 9 the gate was one `RegexSet` over all 31 patterns: its lazy DFA built new states
//! on every new text and was the main cost of the pipeline.)

use std::sync::{LazyLock, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex_automata::meta::{self, Regex};
use regex_automata::util::captures::Captures;
use regex_automata::{Input, PatternID};
use sha2::{Digest, Sha256};

use super::rules::RULES;
use super::{Method, Remark, RuleSpec, Scrubbed};

/// After this many rejected candidates for one rule, a rejection no longer restarts the search
/// one char later (to find a match starting inside the rejected one) but after it: the scan
/// stays linear on hostile input, and accepted matches are never capped.
const MAX_RESTARTS_PER_RULE: usize = 256;

/// The same switch once the rejected candidates of one rule that were restarted inside span
/// this many bytes in all. A restart re-reads the rest of the rejected match with captures (the
/// slow engine), so 256 restarts inside one 16 KiB token (`aKey0aKey0…=x`: `@secret_kv` matches
/// it from every position and its validator rejects each time) took 1.5 s for one text, and
/// base64 blobs in the fuzz corpus took 180 ms per 5 KiB the same way; with this budget, 60 ms
/// and 10 ms. Normal text only rejects short candidates and never reaches it (the scrub result
/// of 5,851 of the 5,852 texts of the fuzz corpus is unchanged).
const MAX_RESTART_BYTES_PER_RULE: usize = 4 * super::MAX_TEXT_BYTES;

/// Salt for [`Method::Hash`]. Public by construction (it is in the source): hashing gives
/// correlation, not secrecy against someone who can enumerate the values.
const HASH_SALT: &[u8] = b"selfheal/scrub/v1";

/// Rules whose regex is built without the meta engine's automatic literal prefilter. For a
/// pattern that starts with digit classes (`[0-9]{3}-[0-9]{2}-…`) the engine extracts hundreds of
/// prefix literals and builds a prefilter from them: most of the rule's compile time (the SSN
/// rule 756 → 70 µs natively), to skip ahead in texts the keyword gate and the digit-run checks
/// already chose. Chosen by measurement (`cargo run --release --example scrub_bench`, the per-rule
/// table, two runs on a shared machine): each of these compiles 1.1–14× faster without it; their
/// search on the gated texts was as fast or faster, except `@ipv4` in one of the two runs (110 →
/// 178 ns per text; 272 → 263 in the other). The rules that start with a literal (`eyJ`,
/// `Bearer`, `AKIA`…) keep it: it made their search up to 4× faster.
const NO_LITERAL_PREFILTER: &[&str] = &["@ssn", "@uk_nhs", "@phone", "@ipv4", "@iban", "@mac"];

/// Builds a rule's regex: `regex` crate syntax and semantics (leftmost-first, Unicode, UTF-8
/// matches; the meta engine `regex::Regex` wraps, with its defaults), with the automatic
/// literal prefilter off for the rules in [`NO_LITERAL_PREFILTER`]. `None` when the pattern is
/// empty or does not compile (a unit test checks every built-in pattern does).
pub fn rule_regex_for(spec: &RuleSpec) -> Option<Regex> {
    if spec.pattern.is_empty() {
        return None;
    }
    meta::Builder::new()
        .configure(meta::Config::new().auto_prefilter(!NO_LITERAL_PREFILTER.contains(&spec.id)))
        .build(spec.pattern)
        .ok()
}

/// A set of rules, one bit per index into [`RULES`] (the table has fewer than 128 rules; a test
/// checks it, and a rule past 128 would simply always run).
type RuleMask = u128;

struct Engine {
    /// One automaton over every rule keyword (lower case, matched ASCII case-insensitively).
    keywords: Option<AhoCorasick>,
    /// Per keyword pattern: the rules it gates.
    keyword_rules: Vec<RuleMask>,
    /// Rules without keywords or scan, and rules past the mask's width: always run.
    always: RuleMask,
    /// Each rule's own regex, compiled on first use (most texts only ever need a few).
    regexes: Vec<OnceLock<Option<Regex>>>,
}

fn bit(i: usize) -> RuleMask {
    1u128
        .checked_shl(u32::try_from(i).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

/// The keyword automaton and, per pattern, the rules it gates.
fn build_keywords() -> (Option<AhoCorasick>, Vec<RuleMask>) {
    let mut words: Vec<String> = Vec::new();
    let mut masks: Vec<RuleMask> = Vec::new();
    for (i, rule) in RULES.iter().enumerate() {
        for kw in rule.keywords {
            let kw = kw.to_ascii_lowercase();
            match words.iter().position(|w| *w == kw) {
                Some(k) => {
                    if let Some(m) = masks.get_mut(k) {
                        *m |= bit(i);
                    }
                }
                None => {
                    words.push(kw);
                    masks.push(bit(i));
                }
            }
        }
    }
    // a DFA: the fastest search (one transition per byte, overlapping matches included) for a
    // few hundred short patterns; built once per isolate
    let ac = AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .kind(Some(AhoCorasickKind::DFA))
        .build(&words)
        .ok();
    (ac, masks)
}

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let (keywords, keyword_rules) = build_keywords();
    let mut always = 0;
    for (i, rule) in RULES.iter().enumerate() {
        let gated = !rule.keywords.is_empty() || rule.scan.is_some();
        // without the automaton, or past the mask's width, a keyword rule runs every time
        if !gated || bit(i) == 0 || (keywords.is_none() && rule.scan.is_none()) {
            always |= bit(i);
        }
    }
    Engine {
        keywords,
        keyword_rules,
        always,
        regexes: RULES.iter().map(|_| OnceLock::new()).collect(),
    }
});

/// Builds the keyword automaton and compiles every rule's regex afresh, bypassing the caches,
/// and returns how many built (rules with a pattern + 1 for the automaton).
///
/// Exists for benchmarking the compile cost (`benches/pipeline.rs`): the pipeline never calls
/// it, it builds lazily (the automaton on the first scrub, each rule regex the first time its
/// gate lets it run).
pub fn compile_rules() -> usize {
    let ac = usize::from(build_keywords().0.is_some());
    let rules = RULES.iter().filter(|r| rule_regex_for(r).is_some()).count();
    ac + rules
}

/// The rules whose gate lets them run on `text`.
fn gate(text: &str) -> RuleMask {
    let engine = &*ENGINE;
    let mut mask = engine.always;
    if let Some(ac) = &engine.keywords {
        for m in ac.find_overlapping_iter(text) {
            mask |= engine
                .keyword_rules
                .get(m.pattern().as_usize())
                .copied()
                .unwrap_or(0);
        }
    }
    let (scans, _) = super::prefilter::scan_all(text.as_bytes());
    for (i, rule) in RULES.iter().enumerate() {
        if let Some(kind) = rule.scan
            && scans.has(kind)
        {
            mask |= bit(i);
        }
    }
    mask
}

fn rule_regex(i: usize) -> Option<&'static Regex> {
    let spec = RULES.get(i)?;
    ENGINE
        .regexes
        .get(i)?
        .get_or_init(|| rule_regex_for(spec))
        .as_ref()
}

/// A match that survived its validator.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    start: usize,
    end: usize,
    /// index into `rules`
    rule: usize,
    refine: Option<(&'static str, &'static str)>,
}

/// The replaced span: the first participating group named `s…`, else the whole match.
fn secret_span(re: &Regex, caps: &Captures) -> Option<(usize, usize)> {
    for (i, name) in re.group_info().pattern_names(PatternID::ZERO).enumerate() {
        if let (true, Some(m)) = (name.is_some_and(|n| n.starts_with('s')), caps.get_group(i)) {
            return Some((m.start, m.end));
        }
    }
    caps.get_match().map(|m| (m.start(), m.end()))
}

fn next_boundary(text: &str, mut i: usize) -> usize {
    i += 1;
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

fn candidates_for(text: &str, rule: usize, spec: &RuleSpec, re: &Regex, out: &mut Vec<Candidate>) {
    let mut caps = re.create_captures();
    let mut next = |pos: usize| {
        re.search_captures(&Input::new(text).span(pos..text.len()), &mut caps);
        let whole = caps.get_match()?;
        let span = secret_span(re, &caps)?;
        let checked = match spec.check {
            Some(check) => check(text, &caps, span),
            None => Some(super::Hit {
                start: span.0,
                end: span.1,
                refine: None,
            }),
        };
        Some(((whole.start(), whole.end()), checked))
    };
    drive(text, spec.id, &mut next, &mut |h| {
        out.push(Candidate {
            start: h.start,
            end: h.end,
            rule,
            refine: h.refine,
        });
    });
}

/// The candidates (byte spans, validated, before overlaps are resolved) of one regex rule on
/// `text`: what the engine takes from `spec` compiled as `re`. For comparing a code matcher
/// with its pattern ([`super::matchers`]).
#[cfg(test)]
pub(crate) fn regex_candidates(text: &str, spec: &RuleSpec, re: &Regex) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    candidates_for(text, 0, spec, re, &mut out);
    out.iter().map(|c| (c.start, c.end)).collect()
}

/// A matcher's next match: its whole span (byte offsets) and the validated hit, `None` when the
/// validator rejected it.
pub(crate) type NextMatch = ((usize, usize), Option<super::Hit>);

/// The search loop of every rule, whether its matcher is a regex or code
/// ([`super::matchers`]): `next(pos)` finds the leftmost match starting at or after byte `pos`
/// (look-behind may read before `pos`, as a regex search over a span does) and returns its
/// whole span and the validated hit, `None` when the validator rejected it; the loop stops when
/// `next` finds nothing. An accepted hit (non-empty, on char boundaries, not filler for the
/// rules that check it) goes to `push` and the search goes on after the whole match; a
/// rejection restarts one char after the match's start (a later match may start inside it),
/// at most [`MAX_RESTARTS_PER_RULE`] times and [`MAX_RESTART_BYTES_PER_RULE`] bytes of rejected
/// matches per rule, then after the match.
/// (One copy for every matcher, `dyn`: the tail Worker's wasm has a size budget.)
pub(crate) fn drive(
    text: &str,
    rule_id: &str,
    next: &mut dyn FnMut(usize) -> Option<NextMatch>,
    push: &mut dyn FnMut(super::Hit),
) {
    let mut pos = 0;
    let mut restarts = 0;
    let mut restarted_bytes = 0;
    let filler = super::validate::filler_checked(rule_id);
    while pos <= text.len() {
        let Some(((start, end), checked)) = next(pos) else {
            break;
        };
        let past = if end > start {
            end
        } else {
            next_boundary(text, start)
        };
        let checked = checked.filter(|h| {
            !(filler
                && text
                    .get(h.start..h.end)
                    .is_some_and(super::validate::is_filler))
        });
        match checked {
            Some(h)
                if h.start < h.end
                    && text.is_char_boundary(h.start)
                    && text.is_char_boundary(h.end) =>
            {
                push(h);
                pos = past;
            }
            // rejected: a later match may start inside this one
            _ if restarts < MAX_RESTARTS_PER_RULE
                && restarted_bytes < MAX_RESTART_BYTES_PER_RULE =>
            {
                restarts += 1;
                restarted_bytes += end - start;
                pos = next_boundary(text, start);
            }
            _ => pos = past,
        }
    }
}

/// Candidates from the given rules (indices into `rules`), overlaps resolved: longest first,
/// then the rule declared first; the result is sorted by position and non-overlapping.
fn resolve(mut cands: Vec<Candidate>) -> Vec<Candidate> {
    cands.sort_by(|a, b| {
        (b.end - b.start)
            .cmp(&(a.end - a.start))
            .then(a.rule.cmp(&b.rule))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<Candidate> = Vec::with_capacity(cands.len());
    for c in cands {
        if kept.iter().all(|k| c.end <= k.start || c.start >= k.end) {
            kept.push(c);
        }
    }
    kept.sort_by_key(|c| c.start);
    kept
}

/// Letters-only digest (a..p per nibble) so that no digits end up in the placeholder.
pub(crate) fn letter_hash(kind: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(HASH_SALT);
    h.update(kind.as_bytes());
    h.update([0u8]);
    h.update(value.as_bytes());
    let digest = h.finalize();
    digest
        .iter()
        .take(5)
        .flat_map(|b| [b >> 4, b & 0xf])
        .map(|n| char::from(b'a' + n))
        .collect()
}

/// Renders the replacement of `value` for a rule of `kind` with `method`.
pub(crate) fn render(method: Method, kind: &str, value: &str) -> String {
    match method {
        Method::Replace => format!("[redacted:{kind}]"),
        Method::Remove => String::new(),
        Method::Hash => format!("[redacted:{kind}:{}]", letter_hash(kind, value)),
        Method::Mask(hint) => match hint(value) {
            // hints are letters/underscore only, whatever the hint function returned
            Some(h) if !h.is_empty() && h.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => {
                format!("[redacted:{kind}:{h}]")
            }
            _ => format!("[redacted:{kind}]"),
        },
    }
}

/// Candidates of the rules `indices` (into `rules`) on `text`, overlaps resolved.
fn collect<'r>(
    text: &str,
    rules: &[RuleSpec],
    indices: impl Iterator<Item = usize>,
    regex_of: &dyn Fn(usize) -> Option<&'r Regex>,
) -> Vec<Candidate> {
    let mut cands = Vec::new();
    let mut hits = Vec::new();
    for i in indices {
        let Some(spec) = rules.get(i) else { continue };
        if let Some(find) = spec.find {
            hits.clear();
            find(text, &mut hits);
            cands.extend(
                hits.iter()
                    .filter(|h| {
                        h.start < h.end
                            && text.is_char_boundary(h.start)
                            && text.is_char_boundary(h.end)
                            && h.end <= text.len()
                    })
                    .map(|h| Candidate {
                        start: h.start,
                        end: h.end,
                        rule: i,
                        refine: h.refine,
                    }),
            );
        } else if let Some(re) = regex_of(i) {
            candidates_for(text, i, spec, re, &mut cands);
        }
    }
    if cands.is_empty() {
        cands
    } else {
        resolve(cands)
    }
}

/// Applies `rules` to `text` (already bounded in size). `indices` are the rules to try.
#[cfg(test)]
pub(crate) fn apply<'r>(
    text: &str,
    rules: &[RuleSpec],
    indices: &[usize],
    regex_of: &dyn Fn(usize) -> Option<&'r Regex>,
) -> Scrubbed {
    let kept = collect(text, rules, indices.iter().copied(), regex_of);
    render_all(text, rules, kept)
}

fn render_all(text: &str, rules: &[RuleSpec], kept: Vec<Candidate>) -> Scrubbed {
    if kept.is_empty() {
        return Scrubbed {
            text: text.to_string(),
            remarks: Vec::new(),
        };
    }
    let mut out = String::with_capacity(text.len() + 32 * kept.len());
    let mut remarks = Vec::with_capacity(kept.len());
    let mut last = 0;
    for c in kept {
        let (Some(spec), Some(before), Some(value)) = (
            rules.get(c.rule),
            text.get(last..c.start),
            text.get(c.start..c.end),
        ) else {
            continue;
        };
        let (id, kind) = c.refine.unwrap_or((spec.id, spec.kind));
        out.push_str(before);
        let start = out.len();
        out.push_str(&render(spec.method, kind, value));
        remarks.push(Remark {
            rule: id.to_string(),
            start,
            end: out.len(),
        });
        last = c.end;
    }
    out.push_str(text.get(last..).unwrap_or(""));
    Scrubbed { text: out, remarks }
}

/// The built-in rules that the gate lets run on `text`, in table order.
fn gated(text: &str) -> impl Iterator<Item = usize> {
    let mask = gate(text);
    (0..RULES.len()).filter(move |&i| mask & bit(i) != 0 || bit(i) == 0)
}

/// Scrubs bounded text with the built-in table.
pub(crate) fn scrub_bounded(text: &str) -> Scrubbed {
    if text.is_empty() {
        return Scrubbed {
            text: String::new(),
            remarks: Vec::new(),
        };
    }
    // a short run of ASCII letters (a JSON key, an enum value, a header word): no rule can match
    // one (every pattern needs a digit, a separator, an operator or 20+ chars)
    if text.len() < 20 && text.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Scrubbed {
            text: text.to_string(),
            remarks: Vec::new(),
        };
    }
    let kept = collect(text, RULES, gated(text), &rule_regex);
    render_all(text, RULES, kept)
}

/// The ids of the rules whose gate lets them run on `text` (bounded first), in table order: what
/// a text costs beyond the gate itself. For diagnostics (`examples/scrub_bench.rs` counts them
/// over the replay corpus).
pub fn gated_rules(input: &str) -> Vec<&'static str> {
    let (text, _) = super::bound(input);
    gated(text)
        .filter_map(|i| RULES.get(i).map(|r| r.id))
        .collect()
}

/// What [`super::scrub_text`] replaces, in *input* coordinates: `(rule id, start, end)` byte
/// ranges of `input` (after the [`super::MAX_TEXT_BYTES`] cut), sorted and non-overlapping.
/// For tests and evaluations that compare scrubbers span by span (`tests/scrub_oracle_diff.rs`).
pub fn scrub_spans(input: &str) -> Vec<(&'static str, usize, usize)> {
    let (text, _) = super::bound(input);
    if text.is_empty() {
        return Vec::new();
    }
    collect(text, RULES, gated(text), &rule_regex)
        .into_iter()
        .filter_map(|c| {
            let spec = RULES.get(c.rule)?;
            Some((c.refine.map_or(spec.id, |r| r.0), c.start, c.end))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_builds_and_fits_the_mask() {
        assert!(ENGINE.keywords.is_some(), "keyword automaton builds");
        assert!(RULES.len() <= 128, "RuleMask has 128 bits");
        // the clean-text fast path: no keyword and no scan fires
        assert_eq!(gate("TypeError: x is not a function") & !ENGINE.always, 0);
        assert_ne!(gate("password=x") & !ENGINE.always, 0);
    }

    #[test]
    fn rules_without_literal_prefilter_exist_and_compile() {
        for id in NO_LITERAL_PREFILTER {
            let specs: Vec<&RuleSpec> = RULES.iter().filter(|r| r.id == *id).collect();
            assert!(!specs.is_empty(), "{id} is not a rule");
            assert!(specs.iter().all(|r| rule_regex_for(r).is_some()), "{id}");
        }
    }

    #[test]
    fn hash_and_mask_methods() {
        static TEST_RULES: &[RuleSpec] = &[
            RuleSpec::new("@user_hash", "user", Method::Hash, r"user-[a-z]+", None),
            RuleSpec::new("@gone", "gone", Method::Remove, r"DROPME", None),
        ];
        let res: Vec<Regex> = TEST_RULES
            .iter()
            .filter_map(|r| Regex::new(r.pattern).ok())
            .collect();
        let get = |i: usize| res.get(i);
        let a = apply(
            "x user-alice y DROPME z user-alice",
            TEST_RULES,
            &[0, 1],
            &get,
        );
        let h = letter_hash("user", "user-alice");
        assert_eq!(
            a.text,
            format!("x [redacted:user:{h}] y  z [redacted:user:{h}]")
        );
        assert!(!h.bytes().any(|b| b.is_ascii_digit()));
        assert_eq!(a.remarks.len(), 3);
        assert_eq!(
            a.remarks[1].start, a.remarks[1].end,
            "Remove leaves an empty range"
        );
        assert_ne!(letter_hash("user", "user-bob"), h);
        // a mask hint with digits is refused
        assert_eq!(
            render(Method::Mask(|_| Some("1234".into())), "k", "v"),
            "[redacted:k]"
        );
    }

    #[test]
    fn overlaps_longest_then_first_rule() {
        let c = |start, end, rule| Candidate {
            start,
            end,
            rule,
            refine: None,
        };
        let kept = resolve(vec![c(0, 5, 3), c(2, 10, 5), c(2, 10, 4), c(10, 12, 0)]);
        let got: Vec<(usize, usize, usize)> =
            kept.iter().map(|k| (k.start, k.end, k.rule)).collect();
        assert_eq!(got, vec![(2, 10, 4), (10, 12, 0)]);
    }
}
