//! The merge stage: incidents whose normalized messages have one shape and differ only in
//! positions that vary join one **group**. The fingerprint ([`crate::fingerprint`]) is never
//! recomputed; a group is a set of fingerprints, keyed by the fingerprint of its first member.
//!
//! # Keys: what can never meet
//! Members are first split into **buckets** ([`BucketKey`]): same script, same exception type,
//! same top in-app frame and same status class. The route enters only as a stand-in for the code
//! location: when an event has no top in-app frame, its route takes the frame's place in the key;
//! with a frame, the route does not key (one handler reached from `/users/:id` and
//! `/users/:id/posts` is one bug). Nothing crosses a bucket.
//!
//! # Mining inside a bucket (two passes, deterministic given input order)
//! 1. **Drain** (He, Zhu, Zheng, Lyu: "Drain: An Online Log Parsing Approach with Fixed Depth
//!    Tree", ICWS 2017): each distinct normalized message, in order of first appearance, walks a
//!    fixed-depth tree (token count, then the first [`MinerConfig::prefix_tokens`] tokens, a token
//!    with a digit or a placeholder going to the `<*>` child, at most
//!    [`MinerConfig::max_children`] children per node) to a leaf of clusters; it joins the most
//!    similar cluster (similarity = equal tokens / tokens, ties to the template with more `<*>`)
//!    when the similarity is at least [`MinerConfig::similarity`], and the differing positions of
//!    the template become `<*>`; else it opens a cluster.
//! 2. **Downward split by token frequency**, after Brain (Yu, He, Chen, Zhang, Ye, Zhang, Zhang:
//!    "Brain: Log Parsing with Bidirectional Parallel Tree", IEEE TSC 2023): Drain merges any
//!    words at a position, but the word `root` against `guest` names different code paths while
//!    `alice`, `bob`, `carol`, `dave` are values. Inside a cluster, a column whose values are all
//!    placeholders or digit-bearing is a variable; a word column is a **constant** (the cluster
//!    splits on it) when it holds fewer than [`MinerConfig::min_variable_values`] distinct
//!    values, or at most [`MinerConfig::skewed_max_values`] values with one value carrying at
//!    least [`MinerConfig::skewed_share`] of the events (a rare second word is a second
//!    template, not a sample of a variable). The column with the fewest values splits first and
//!    each part is examined again, as Brain's tree does.
//!
//! Before mining, [`shape`] writes every JSON parse failure wording as `<json_parse_error>`
//! (one malformed-body bug, one shape), and makes every **quantity** one token: a value followed
//! by its parenthesized restatement (`<int> bytes (<float> KB)`) is the value alone, and a number
//! with a spaced unit of time or data size, a comparator glued to it or not (`<int> bytes`,
//! `1.16 KB`, `250 ms`, `<1 sec`), is one `<*>`. Drain's tree keys on token count; without
//! this, one template printed with and without its optional human-readable size splits in
//! three (Drain's own paper assumes equal length per event; logpai's benchmark gets there with
//! per-dataset regexes, Sentry's parameterization with typed placeholders like `<duration>`).
//!
//! # Identifiers and values
//! A number, id, user name or JSON body is a value; a property, variable, function or class name
//! in a JavaScript error names code. The normalizer keeps quoted identifiers in V8's identifier
//! slots (`(reading 'email')`); here such a column, and the subject of V8's `% is not …`
//! templates (`db is not defined`), is never a variable: the cluster always splits on it.
//!
//! Deterministic: the same members in the same order give the same groups and the same keys;
//! membership does not depend on hash order. Batch over all members of a bucket: the cron runs it
//! over a bucket's stored incidents in first-seen order, `selfheal group` over all its input.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use regex::Regex;

use serde::{Deserialize, Serialize};

use crate::fingerprint::{Components, FINGERPRINT_VERSION};
use crate::normalize::normalize_message;
use crate::scrub::scrub_text;

/// What must be equal for two incidents to share a group. All strings as stored with the
/// fingerprint's components (scrubbed, normalized).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketKey {
    /// Worker name.
    pub script: String,
    /// Exception class (`TypeError`, `SyntaxError`, a synthetic type).
    pub exception_type: String,
    /// Top in-app frame key, or `route:<route>` when the event has no in-app frame.
    pub location: String,
    /// Status class (`5xx`, `none`, …).
    pub status_class: String,
}

impl BucketKey {
    /// The key for one event: the route stands in for the top frame only when that is empty.
    pub fn new(
        script: &str,
        exception_type: &str,
        top_frame: &str,
        route: &str,
        status_class: &str,
    ) -> Self {
        let location = if top_frame.is_empty() {
            format!("route:{route}")
        } else {
            top_frame.to_owned()
        };
        BucketKey {
            script: script.to_owned(),
            exception_type: exception_type.to_owned(),
            location,
            status_class: status_class.to_owned(),
        }
    }
}

/// Settings of the miner; [`MinerConfig::default`] is what the product and `selfheal eval` use
/// (chosen on Loghub-2k, one setting for all 16 systems — no per-dataset tuning).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinerConfig {
    /// Drain's similarity threshold `st` (fraction of equal tokens, 0..=1).
    pub similarity: f64,
    /// Tokens after the length layer in Drain's tree (Drain's depth minus 2).
    pub prefix_tokens: usize,
    /// Children per internal node before new tokens go to the `<*>` child.
    pub max_children: usize,
    /// A word column with at least this many distinct values is a variable.
    pub min_variable_values: usize,
    /// A word column with at most this many values is a constant when one value is skewed.
    pub skewed_max_values: usize,
    /// Share of events (0..=1) of the most common value that makes a column skewed.
    pub skewed_share: f64,
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig {
            similarity: 0.7,
            prefix_tokens: 2,
            max_children: 100,
            min_variable_values: 3,
            skewed_max_values: 5,
            skewed_share: 0.9,
        }
    }
}

/// The JSON parse failures one malformed body produces, as [`normalize_message`] leaves them:
/// every V8 wording (`message-template.h`: `kJsonParseUnexpectedEOS`,
/// `kJsonParseUnexpectedToken*String*` with its excerpt, `kJsonParseExpectedPropNameOrRBrace`,
/// `kJsonParseExpectedCommaOrRBrace`, `kJsonParseExpectedCommaOrRBrack`,
/// `kJsonParseExpectedDoubleQuotedPropertyName`, `kJsonParseUnexpectedNonWhiteSpaceCharacter`,
/// `kJsonParseUnterminatedString`, `kJsonParseBadEscapedCharacter`, …, and the older
/// `Unexpected token % in JSON at position %`), SpiderMonkey's `JSON.parse: … of the JSON data`
/// and JavaScriptCore's `JSON Parse error: …`. `None` only if the pattern failed to compile (a
/// test proves it compiles); the family then stays split by wording.
static JSON_PARSE_FAILURE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        Unexpected\x20end\x20of\x20JSON\x20input
      | Unexpected\x20token\x20.{1,1100}?\x20is\x20not\x20valid\x20JSON
      | (?:\.\.\.)?<quoted>(?:\.\.\.)?\x20is\x20not\x20valid\x20JSON
      | (?:Unexpected\x20(?:token\x20\S+|number|string)
          | Unexpected\x20non-whitespace\x20character\x20after
          | Expected\x20[^()]{1,64}?
          | Unterminated\x20(?:string|fractional\x20number)
          | Bad\x20(?:control\x20character\x20in\x20string\x20literal|escaped\x20character|Unicode\x20escape)
          | No\x20number\x20after\x20minus\x20sign
          | Exponent\x20part\x20is\x20missing\x20a\x20number)
        \x20(?:in\x20)?JSON\x20at\x20position\x20<int>(?:\x20\(line\x20<int>\x20column\x20<int>\))?
      | JSON\.parse:\x20[^.]{1,80}?of\x20the\x20JSON\x20data
      | JSON\x20Parse\x20error:\x20[A-Za-z\x20]{1,60}(?:<quoted>)?
        ",
    )
    .ok()
});

/// Units a number is printed with, separated by a space (`250 ms`, `1.16 KB`, `<1 sec`, `12
/// bytes`): time units (the spelled-out forms of the normalizer's `<duration>` units) and data
/// sizes, decimal and binary (SI and IEC 80000-13 prefixes). Single letters (`s`, `m`, `B`) are
/// left out: after a space they are as often a word as a unit.
const SPACED_UNITS: &str =
    r"ns|us|µs|ms|secs?|seconds?|mins?|minutes?|hrs?|hours?|days?|bytes?|[kKMGTP]i?B|[kKMGTP]?bps";

/// A normalized number with a spaced unit, optionally after a comparator glued to it (`<1 sec`,
/// `~3 ms`, `>= 2 GB` is left alone: the comparator must touch the number). Group 1 is the
/// space (or start) before it. `None` only if the pattern failed to compile (a test proves it
/// compiles).
static NUMBER_WITH_UNIT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(^|\s)(?:[<>~≈]=?)?<(?:int|float)>\x20(?:{})(?:\b|$)",
        SPACED_UNITS
    ))
    .ok()
});

/// A value followed by its restatement in parentheses: `<int> bytes (<float> KB)`,
/// `<int> (<float>%)`, `<duration> (<int> ms)`. Group 1 is the value it restates.
static PARENTHESIZED_RESTATEMENT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(<(?:int|float|duration)>(?:\x20(?:{u}))?)\x20\((?:[<>~≈]=?)?<(?:int|float)>\x20?(?:%|{u})?\)",
        u = SPACED_UNITS
    ))
    .ok()
});

/// The message the miner sees for a normalized message. Three rewrites, none of which touches
/// the fingerprint (it keeps the wording; only the group unites them):
/// - the JSON parse failures of [`JSON_PARSE_FAILURE`] become `<json_parse_error>`, so the
///   eight-plus wordings of one malformed-body bug (and the same inside a JSON-escaped log line)
///   have one shape;
/// - a value followed by its parenthesized restatement in another unit
///   ([`PARENTHESIZED_RESTATEMENT`]: `<int> bytes (<float> KB)`) is that value alone: printers
///   add the human-readable form only above a threshold, so it comes and goes within one
///   template;
/// - a number with a spaced unit ([`NUMBER_WITH_UNIT`]: `<int> bytes`, `<float> KB`, `<1 sec`,
///   `250 ms`) is one `<*>` token, like a glued one (`250ms`, Sentry's `<duration>`) is one
///   placeholder: a quantity is one value whatever its unit or comparator.
///
/// Drain's tree is keyed by token count (He et al., ICWS 2017, §III-B: "log messages with the
/// same log event will probably have the same log message length"); these rewrites are what
/// makes that assumption hold for quantities, as logpai's benchmark preprocessing does with
/// per-dataset regexes (`drain_benchmark_settings.json`) and Sentry's message parameterization
/// does with typed placeholders — here as one general family, for every source.
pub fn shape(normalized: &str) -> String {
    let mut s = match JSON_PARSE_FAILURE.as_ref() {
        Some(re) => re
            .replace_all(normalized, "<json_parse_error>")
            .into_owned(),
        None => normalized.to_owned(),
    };
    if let Some(re) = PARENTHESIZED_RESTATEMENT.as_ref() {
        s = re.replace_all(&s, "$1").into_owned();
    }
    if let Some(re) = NUMBER_WITH_UNIT.as_ref() {
        s = re.replace_all(&s, "${1}<*>").into_owned();
    }
    s
}

/// Token positions that name code and so are never a variable (see the identifier rule in
/// the module docs): a quoted identifier the normalizer kept (`'email')`, it only keeps those in
/// V8's identifier slots), and the subject of V8's `% is not …` templates (`kCalledNonCallable`
/// `x.y is not a function`, `kNotDefined`, `kNotConstructor`, `kNotIterable`).
fn pinned_positions(tokens: &[&str]) -> Vec<bool> {
    (0..tokens.len())
        .map(|p| {
            let t = tokens.get(p).copied().unwrap_or("");
            let quoted_ident = t.contains(['\'', '"', '`']) && !t.contains('<');
            let subject = tokens.get(p + 1) == Some(&"is")
                && tokens.get(p + 2) == Some(&"not")
                && !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'.'))
                && t.bytes().next().is_some_and(|b| !b.is_ascii_digit());
            quoted_ident || subject
        })
        .collect()
}

/// A token that Drain treats as a parameter when it picks a tree branch: it has a digit, is
/// (or contains) a normalizer placeholder (`<int>`, `<quoted>`, …), or is one of JavaScript's
/// non-finite number values (`Infinity`, `-Infinity`, `NaN`).
fn looks_variable(t: &str) -> bool {
    t.bytes().any(|b| b.is_ascii_digit())
        || t.contains('<')
        || matches!(t.trim_start_matches('-'), "Infinity" | "NaN")
}

const WILDCARD: &str = "<*>";

/// One distinct message of a bucket.
struct Distinct<'a> {
    tokens: Vec<&'a str>,
    /// Positions that name code ([`pinned_positions`]).
    pinned: Vec<bool>,
    /// Events carrying this message.
    weight: usize,
    /// Index of its first event in the input.
    first: usize,
}

#[derive(Default)]
struct Node {
    children: BTreeMap<String, Node>,
    clusters: Vec<usize>,
}

/// Drain over the distinct messages of one bucket (in first-appearance order): returns the
/// cluster index of each distinct message.
fn drain(msgs: &[Distinct<'_>], cfg: &MinerConfig) -> Vec<usize> {
    let mut roots: BTreeMap<usize, Node> = BTreeMap::new();
    let mut templates: Vec<Vec<String>> = Vec::new();
    let mut out = Vec::with_capacity(msgs.len());
    for m in msgs {
        let mut node = roots.entry(m.tokens.len()).or_default();
        for t in m.tokens.iter().take(cfg.prefix_tokens) {
            let mut key = if looks_variable(t) { WILDCARD } else { t };
            if !node.children.contains_key(key) && node.children.len() >= cfg.max_children {
                key = WILDCARD;
            }
            node = node.children.entry(key.to_owned()).or_default();
        }
        let mut best: Option<(usize, f64, usize)> = None;
        for &c in &node.clusters {
            let Some(tpl) = templates.get(c) else {
                continue;
            };
            let equal = tpl.iter().zip(&m.tokens).filter(|(a, b)| a == *b).count();
            let sim = equal as f64 / m.tokens.len().max(1) as f64;
            let params = tpl.iter().filter(|t| *t == WILDCARD).count();
            let better = match best {
                None => true,
                Some((_, s, p)) => sim > s || (sim == s && params > p),
            };
            if better {
                best = Some((c, sim, params));
            }
        }
        match best {
            Some((c, sim, _)) if sim >= cfg.similarity => {
                if let Some(tpl) = templates.get_mut(c) {
                    for (a, b) in tpl.iter_mut().zip(&m.tokens) {
                        if a != b {
                            *a = WILDCARD.to_owned();
                        }
                    }
                }
                out.push(c);
            }
            _ => {
                let c = templates.len();
                templates.push(m.tokens.iter().map(|t| (*t).to_owned()).collect());
                node.clusters.push(c);
                out.push(c);
            }
        }
    }
    out
}

/// The column a set of distinct messages (all of one length) splits on, if any (see the module
/// docs, pass 2).
fn split_column(msgs: &[Distinct<'_>], part: &[usize], cfg: &MinerConfig) -> Option<usize> {
    let len = part
        .first()
        .and_then(|&i| msgs.get(i))
        .map_or(0, |m| m.tokens.len());
    let total: usize = part
        .iter()
        .filter_map(|&i| msgs.get(i))
        .map(|m| m.weight)
        .sum();
    let mut best: Option<(usize, usize)> = None;
    for p in 0..len {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for m in part.iter().filter_map(|&i| msgs.get(i)) {
            if let Some(t) = m.tokens.get(p) {
                *counts.entry(t).or_default() += m.weight;
            }
        }
        let values = counts.len();
        if values <= 1 {
            continue;
        }
        let pinned = part
            .iter()
            .filter_map(|&i| msgs.get(i))
            .any(|m| m.pinned.get(p).copied().unwrap_or(false));
        if pinned {
            // A code identifier column splits first, whatever its count.
            best = Some((0, p));
            break;
        }
        if counts.keys().all(|t| looks_variable(t)) {
            continue;
        }
        let top = counts.values().copied().max().unwrap_or(0);
        let skewed =
            values <= cfg.skewed_max_values && top as f64 >= cfg.skewed_share * total.max(1) as f64;
        let constant = values < cfg.min_variable_values || skewed;
        if constant && best.is_none_or(|(v, _)| values < v) {
            best = Some((values, p));
        }
    }
    best.map(|(_, p)| p)
}

/// Pass 2 on one Drain cluster: its final parts (lists of distinct-message indices).
fn split(msgs: &[Distinct<'_>], cluster: Vec<usize>, cfg: &MinerConfig) -> Vec<Vec<usize>> {
    let mut done = Vec::new();
    let mut todo = vec![cluster];
    while let Some(part) = todo.pop() {
        let Some(p) = split_column(msgs, &part, cfg) else {
            done.push(part);
            continue;
        };
        // Children in order of first appearance of their value.
        let mut order: Vec<&str> = Vec::new();
        let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
        for &i in &part {
            let t = msgs
                .get(i)
                .and_then(|m| m.tokens.get(p))
                .copied()
                .unwrap_or("");
            children
                .entry(t)
                .or_insert_with(|| {
                    order.push(t);
                    Vec::new()
                })
                .push(i);
        }
        for t in order.into_iter().rev() {
            if let Some(c) = children.remove(t) {
                todo.push(c);
            }
        }
    }
    done
}

/// Groups events: `members[i]` is `(bucket, normalized message)` of event `i`, in input order.
/// Returns, for each event, the index of its group's first event (so equal values = one group,
/// and the group's key is that event's fingerprint). Events with equal bucket and message are
/// always in one group.
pub fn assign_groups(members: &[(BucketKey, String)], cfg: &MinerConfig) -> Vec<usize> {
    let shapes: Vec<String> = members.iter().map(|(_, m)| shape(m)).collect();
    // Distinct shapes per bucket, buckets in order of first appearance.
    let mut bucket_of: HashMap<&BucketKey, usize> = HashMap::new();
    let mut buckets: Vec<Vec<Distinct<'_>>> = Vec::new();
    let mut distinct_of: HashMap<(usize, &str), usize> = HashMap::new();
    let mut where_is: Vec<(usize, usize)> = Vec::with_capacity(members.len());
    for (i, ((key, _), msg)) in members.iter().zip(&shapes).enumerate() {
        let b = *bucket_of.entry(key).or_insert_with(|| {
            buckets.push(Vec::new());
            buckets.len() - 1
        });
        let Some(list) = buckets.get_mut(b) else {
            continue;
        };
        let d = *distinct_of.entry((b, msg.as_str())).or_insert_with(|| {
            let tokens: Vec<&str> = msg.split_whitespace().collect();
            list.push(Distinct {
                pinned: pinned_positions(&tokens),
                tokens,
                weight: 0,
                first: i,
            });
            list.len() - 1
        });
        if let Some(m) = list.get_mut(d) {
            m.weight += 1;
        }
        where_is.push((b, d));
    }
    // Group (first event index) of every distinct message, per bucket.
    let mut group_of: Vec<Vec<usize>> = Vec::with_capacity(buckets.len());
    for msgs in &buckets {
        let clusters = drain(msgs, cfg);
        let mut by_cluster: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (d, c) in clusters.iter().enumerate() {
            by_cluster.entry(*c).or_default().push(d);
        }
        let mut g = vec![usize::MAX; msgs.len()];
        for (_, cluster) in by_cluster {
            for part in split(msgs, cluster, cfg) {
                let first = part
                    .iter()
                    .filter_map(|&d| msgs.get(d))
                    .map(|m| m.first)
                    .min()
                    .unwrap_or(usize::MAX);
                for d in part {
                    if let Some(slot) = g.get_mut(d) {
                        *slot = first;
                    }
                }
            }
        }
        group_of.push(g);
    }
    where_is
        .iter()
        .enumerate()
        .map(|(i, &(b, d))| {
            group_of
                .get(b)
                .and_then(|g| g.get(d))
                .copied()
                .filter(|&f| f != usize::MAX)
                .unwrap_or(i)
        })
        .collect()
}

/// One event as `selfheal group` reads it (one JSON object per line). Absent or `null` fields
/// are empty strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GroupInput {
    /// The error message as thrown or logged (scrubbed and normalized here, as the tail Worker
    /// does before fingerprinting).
    pub message: String,
    /// Exception class.
    #[serde(default)]
    pub exception_type: Option<String>,
    /// Worker name.
    #[serde(default)]
    pub script: Option<String>,
    /// Route pattern (`/users/:id`) or event kind.
    #[serde(default)]
    pub route: Option<String>,
    /// Top in-app frame key, `function (file)`.
    #[serde(default)]
    pub top_frame: Option<String>,
    /// Status class (`5xx`, `none`, …).
    #[serde(default)]
    pub status_class: Option<String>,
}

impl GroupInput {
    /// Parses one JSON Lines line. Errors: not JSON, not an object, or no string `message`
    /// (the message says which).
    pub fn parse(line: &str) -> Result<Self, String> {
        serde_json::from_str(line).map_err(|e| format!("invalid group input: {e}"))
    }

    /// The fingerprint's components of this event (message scrubbed, then normalized).
    pub fn components(&self) -> Components {
        let s = |o: &Option<String>| o.clone().unwrap_or_default();
        Components {
            version: FINGERPRINT_VERSION,
            script: s(&self.script),
            route: s(&self.route),
            exception_type: s(&self.exception_type),
            message: normalize_message(&scrub_text(&self.message).text),
            top_frame: s(&self.top_frame),
            status_class: s(&self.status_class),
        }
    }
}

/// One output line of `selfheal group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grouped {
    /// The group's key: the fingerprint of its first member in input order.
    pub group: String,
    /// This event's fingerprint ([`Components::fingerprint`]).
    pub fingerprint: String,
}

/// Fingerprints and groups events, one [`Grouped`] per input in input order.
pub fn group_events(inputs: &[GroupInput], cfg: &MinerConfig) -> Vec<Grouped> {
    let comps: Vec<Components> = inputs.iter().map(GroupInput::components).collect();
    let fps: Vec<String> = comps.iter().map(Components::fingerprint).collect();
    let members: Vec<(BucketKey, String)> = comps
        .into_iter()
        .map(|c| {
            let key = BucketKey::new(
                &c.script,
                &c.exception_type,
                &c.top_frame,
                &c.route,
                &c.status_class,
            );
            (key, c.message)
        })
        .collect();
    assign_groups(&members, cfg)
        .into_iter()
        .zip(&fps)
        .map(|(g, fp)| Grouped {
            group: fps.get(g).unwrap_or(fp).clone(),
            fingerprint: fp.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> BucketKey {
        BucketKey::new("api", "TypeError", "", "/users/:id", "5xx")
    }

    fn groups(msgs: &[&str]) -> Vec<usize> {
        let members: Vec<(BucketKey, String)> =
            msgs.iter().map(|m| (key(), (*m).to_owned())).collect();
        assign_groups(&members, &MinerConfig::default())
    }

    #[test]
    fn varied_word_values_merge_and_few_words_stay_apart() {
        let g = groups(&[
            "session opened for user alice by <int>",
            "session opened for user bob by <int>",
            "session opened for user carol by <int>",
            "session opened for user dave by <int>",
            "Ending installer initialization",
            "Ending installer finalization",
        ]);
        assert_eq!(g, vec![0, 0, 0, 0, 4, 5]);
    }

    #[test]
    fn a_rare_second_word_is_a_second_template() {
        let mut msgs = vec!["failure user=root"; 19];
        msgs.push("failure user=guest");
        let g = groups(&msgs);
        assert_eq!(g.iter().filter(|&&x| x == 0).count(), 19);
        assert_eq!(g.last(), Some(&19));
    }

    #[test]
    fn buckets_never_meet_and_route_keys_only_without_a_frame() {
        let a = BucketKey::new("api", "TypeError", "", "/a", "5xx");
        let b = BucketKey::new("api", "TypeError", "", "/b", "5xx");
        let c = BucketKey::new("api", "TypeError", "f (src/x.js)", "/a", "5xx");
        let d = BucketKey::new("api", "TypeError", "f (src/x.js)", "/b", "5xx");
        assert_ne!(a, b);
        assert_eq!(c, d);
        let m = "x is <int>".to_owned();
        let g = assign_groups(
            &[(a, m.clone()), (b, m.clone()), (c, m.clone()), (d, m)],
            &MinerConfig::default(),
        );
        assert_eq!(g, vec![0, 1, 2, 2]);
    }

    #[test]
    fn group_events_keys_groups_by_first_member_fingerprint() {
        let lines = [
            r#"{"message": "No user with id 17", "exception_type": "Error", "script": "api"}"#,
            r#"{"message": "No user with id 99", "exception_type": "Error", "script": "api"}"#,
            r#"{"message": "No user with id 99", "exception_type": "Error", "script": "web"}"#,
        ];
        let inputs: Vec<GroupInput> = lines
            .iter()
            .filter_map(|l| GroupInput::parse(l).ok())
            .collect();
        let g = group_events(&inputs, &MinerConfig::default());
        assert_eq!(g.len(), 3);
        // 17 and 99 normalize alike: one fingerprint, one group keyed by it.
        assert_eq!(g[0].fingerprint, g[1].fingerprint);
        assert_eq!(g[0].group, g[0].fingerprint);
        assert_eq!(g[1].group, g[0].fingerprint);
        // Another script: another bucket.
        assert_eq!(g[2].group, g[2].fingerprint);
        assert_ne!(g[2].group, g[0].group);
        assert!(GroupInput::parse(r#"{"exception_type": "Error"}"#).is_err());
        assert!(GroupInput::parse("not json").is_err());
        assert!(GroupInput::parse(r#"{"message": "x", "script": null}"#).is_ok());
    }

    #[test]
    fn json_parse_wordings_share_one_shape() {
        assert!(JSON_PARSE_FAILURE.is_some());
        let wordings = [
            "Unexpected end of JSON input",
            "Unexpected token 'o', \"not json\" is not valid JSON",
            "Unexpected token ',', ...\" 3, 4, 5, , 7\"... is not valid JSON",
            "Expected property name or '}' in JSON at position 1 (line 1 column 2)",
            "Expected ',' or '}' after property value in JSON at position 9 (line 1 column 10)",
            "Expected ',' or ']' after array element in JSON at position 11 (line 1 column 12)",
            "Expected double-quoted property name in JSON at position 12 (line 1 column 13)",
            "Unexpected non-whitespace character after JSON at position 8 (line 1 column 9)",
            "Unterminated string in JSON at position 9 (line 1 column 10)",
            "\"[object Object]\" is not valid JSON",
            "Unexpected token u in JSON at position 0",
            "JSON.parse: unexpected character at line 1 column 1 of the JSON data",
        ];
        for w in wordings {
            assert_eq!(shape(&normalize_message(w)), "<json_parse_error>", "{w}");
        }
        let logged =
            r#"{"level":"error","msg":"Unexpected token 'o', \"not json\" is not valid JSON"}"#;
        let eos = r#"{"level":"error","msg":"Unexpected end of JSON input"}"#;
        assert_eq!(
            shape(&normalize_message(logged)),
            shape(&normalize_message(eos))
        );
    }

    #[test]
    fn quantities_are_one_token_whatever_their_unit_or_annotation() {
        assert!(NUMBER_WITH_UNIT.is_some() && PARENTHESIZED_RESTATEMENT.is_some());
        let n = |m: &str| shape(&normalize_message(m));
        // One template, three token counts before the rewrite (Proxifier's `close` line).
        let close = [
            "h:80 close, 0 bytes sent, 0 bytes received, lifetime 00:01",
            "h:80 close, 403 bytes sent, 426 bytes received, lifetime <1 sec",
            "h:80 close, 451 bytes sent, 18846 bytes (18.4 KB) received, lifetime <1 sec",
            "h:80 close, 1190 bytes (1.16 KB) sent, 3 bytes received, lifetime 00:02",
        ];
        let shapes: Vec<String> = close.iter().map(|m| n(m)).collect();
        let len = |s: &String| s.split_whitespace().count();
        assert!(
            shapes.iter().all(|s| len(s) == len(&shapes[0])),
            "{shapes:?}"
        );
        assert!(shapes[1].ends_with("lifetime <*>"), "{}", shapes[1]);
        assert_eq!(
            groups(&shapes.iter().map(String::as_str).collect::<Vec<_>>()),
            [0; 4]
        );
        assert_eq!(n("took 250 ms"), "took <*>");
        assert_eq!(n("copied 3 MiB (<1 sec)"), "copied <*>");
        assert_eq!(n("disk 90 (95%) full"), "disk <int> full");
        // A word after a number is not a unit, a comparator must touch the number, and a
        // parenthesized word is not a restatement.
        assert_eq!(n("received 5 blocks"), "received <int> blocks");
        assert_eq!(n("wait >= 2 sec"), "wait >= <*>");
        assert_eq!(n("retry 3 (backoff)"), "retry <int> (backoff)");
        assert_eq!(n("secondary 4 secondsx"), "secondary <int> secondsx");
    }

    #[test]
    fn identifiers_in_js_errors_stay_apart() {
        let props = ["email", "id", "name", "user", "headers"];
        let msgs: Vec<String> = props
            .iter()
            .map(|p| {
                normalize_message(&format!(
                    "Cannot read properties of undefined (reading '{p}')"
                ))
            })
            .collect();
        let refs: Vec<&str> = msgs.iter().map(String::as_str).collect();
        assert_eq!(groups(&refs), vec![0, 1, 2, 3, 4]);
        let g = groups(&[
            "db is not defined",
            "kv is not defined",
            "session is not defined",
            "logger is not defined",
        ]);
        assert_eq!(g, vec![0, 1, 2, 3]);
    }

    #[test]
    fn same_input_same_groups() {
        let msgs = [
            "open <int> through proxy HTTPS",
            "open <int> through proxy SOCKS5",
            "close <int> bytes",
        ];
        assert_eq!(groups(&msgs), groups(&msgs));
        assert_eq!(groups(&msgs), vec![0, 1, 2]);
    }
}
