//! The matching engine: compiles the rule table once, finds candidates, resolves overlaps and
//! renders replacements with remarks.
//!
//! Cost model: one `RegexSet` pass (a single lazy DFA over all patterns) tells which rules can
//! match at all; clean text stops there. Only the rules that matched run their own regex (with
//! captures) and their validator.

use std::sync::{LazyLock, OnceLock};

use regex::{Captures, Regex, RegexSet, RegexSetBuilder};
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

struct Engine {
    /// One automaton over every pattern, for the "which rules can fire" prefilter.
    set: Option<RegexSet>,
    /// Each rule's own regex, compiled on first use (most texts only ever need a few).
    regexes: Vec<OnceLock<Option<Regex>>>,
}

static ENGINE: LazyLock<Engine> = LazyLock::new(|| Engine {
    set: build_set(),
    regexes: RULES.iter().map(|_| OnceLock::new()).collect(),
});

/// The prefilter over every rule pattern; `None` when it exceeds its size limits.
fn build_set() -> Option<RegexSet> {
    RegexSetBuilder::new(RULES.iter().map(|r| r.pattern))
        .size_limit(64 << 20)
        .dfa_size_limit(8 << 20)
        .build()
        .ok()
}

/// Compiles the prefilter `RegexSet` and every rule's own regex afresh, bypassing the caches,
/// and returns how many compiled (rules + 1 for the set).
///
/// Exists for benchmarking the compile cost (`benches/pipeline.rs`): the pipeline never calls
/// it, it compiles lazily (the set on the first scrub, each rule regex on its first candidate).
pub fn compile_rules() -> usize {
    let set = usize::from(build_set().is_some());
    let rules = RULES
        .iter()
        .filter(|r| Regex::new(r.pattern).is_ok())
        .count();
    set + rules
}

fn rule_regex(i: usize) -> Option<&'static Regex> {
    let spec = RULES.get(i)?;
    ENGINE
        .regexes
        .get(i)?
        .get_or_init(|| Regex::new(spec.pattern).ok())
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
    for (i, name) in re.capture_names().enumerate() {
        if let (true, Some(m)) = (name.is_some_and(|n| n.starts_with('s')), caps.get(i)) {
            return Some((m.start(), m.end()));
        }
    }
    caps.get(0).map(|m| (m.start(), m.end()))
}

fn next_boundary(text: &str, mut i: usize) -> usize {
    i += 1;
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

fn candidates_for(text: &str, rule: usize, spec: &RuleSpec, re: &Regex, out: &mut Vec<Candidate>) {
    let mut pos = 0;
    let mut restarts = 0;
    let mut restarted_bytes = 0;
    while pos <= text.len() {
        let Some(caps) = re.captures_at(text, pos) else {
            break;
        };
        let Some(whole) = caps.get(0) else { break };
        let Some(span) = secret_span(re, &caps) else {
            break;
        };
        let checked = match spec.check {
            Some(check) => check(text, &caps, span),
            None => Some(super::Hit {
                start: span.0,
                end: span.1,
                refine: None,
            }),
        };
        let past = if whole.end() > whole.start() {
            whole.end()
        } else {
            next_boundary(text, whole.start())
        };
        match checked {
            Some(h)
                if h.start < h.end
                    && text.is_char_boundary(h.start)
                    && text.is_char_boundary(h.end) =>
            {
                out.push(Candidate {
                    start: h.start,
                    end: h.end,
                    rule,
                    refine: h.refine,
                });
                pos = past;
            }
            // rejected: a later match may start inside this one
            _ if restarts < MAX_RESTARTS_PER_RULE
                && restarted_bytes < MAX_RESTART_BYTES_PER_RULE =>
            {
                restarts += 1;
                restarted_bytes += whole.end() - whole.start();
                pos = next_boundary(text, whole.start());
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

/// Applies `rules` to `text` (already bounded in size). `indices` are the rules to try.
pub(crate) fn apply<'r>(
    text: &str,
    rules: &[RuleSpec],
    indices: &[usize],
    regex_of: &dyn Fn(usize) -> Option<&'r Regex>,
) -> Scrubbed {
    let mut cands = Vec::new();
    for &i in indices {
        let (Some(spec), Some(re)) = (rules.get(i), regex_of(i)) else {
            continue;
        };
        candidates_for(text, i, spec, re, &mut cands);
    }
    if cands.is_empty() {
        return Scrubbed {
            text: text.to_string(),
            remarks: Vec::new(),
        };
    }
    let kept = resolve(cands);
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

/// Scrubs bounded text with the built-in table.
pub(crate) fn scrub_bounded(text: &str) -> Scrubbed {
    if text.is_empty() {
        return Scrubbed {
            text: String::new(),
            remarks: Vec::new(),
        };
    }
    let indices: Vec<usize> = match &ENGINE.set {
        Some(set) => set.matches(text).into_iter().collect(),
        // the set failed to build (size limits): fall back to trying every rule
        None => (0..RULES.len()).collect(),
    };
    if indices.is_empty() {
        return Scrubbed {
            text: text.to_string(),
            remarks: Vec::new(),
        };
    }
    apply(text, RULES, &indices, &rule_regex)
}

/// Added to the frozen copy: what `scrub_text` replaces, as `(rule id, start, end)` byte ranges
/// of the (bounded) input.
pub fn scrub_spans(input: &str) -> Vec<(&'static str, usize, usize)> {
    let (text, _) = super::bound(input);
    if text.is_empty() {
        return Vec::new();
    }
    let indices: Vec<usize> = match &ENGINE.set {
        Some(set) => set.matches(text).into_iter().collect(),
        None => (0..RULES.len()).collect(),
    };
    let mut cands = Vec::new();
    for &i in &indices {
        if let (Some(spec), Some(re)) = (RULES.get(i), rule_regex(i)) {
            candidates_for(text, i, spec, re, &mut cands);
        }
    }
    resolve(cands)
        .into_iter()
        .filter_map(|c| {
            let spec = RULES.get(c.rule)?;
            Some((c.refine.map_or(spec.id, |r| r.0), c.start, c.end))
        })
        .collect()
}
