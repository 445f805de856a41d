//! Throughput of the tail Worker's pure path, per TraceItem, next to two baselines in the same
//! process; and the compile cost of the scrubber's regexes.
//!
//! Run: `cargo bench --bench pipeline` (criterion, then a summary table with ratios; 5-6 min).
//! Only the summary (1-2 min): `cargo bench --bench pipeline -- summary-only` (a criterion filter
//! that matches no benchmark). Cold vs warm first call, in a fresh process:
//! `cargo run --release --example cold_start`.
//!
//! What one iteration does: the whole replay corpus, 10,000 TraceItems derived deterministically
//! from the captured ones (`benches/support/corpus.rs`: varied messages, ids, URLs, emails, stack
//! line numbers and planted secrets), delivered as tail batches of 1 or 100 items
//! (`JSON.stringify(events)` text, built before timing). Throughput is in TraceItems.
//!
//! - `value_floor`: `serde_json::from_str::<Value>` of each batch: the cheapest possible reading of
//!   the same bytes (the floor).
//! - `parse`: `trace::parse_batch` into `TraceItem`s.
//! - `pipeline`: `event::process_batch` with a default `PipelineConfig`: parse, noise filter,
//!   scrub, normalize, route, stack, fingerprint, event key: everything the tail Worker does
//!   before it talks to D1.
//!
//! Two corpora: `mixed` picks the 58 captured items uniformly (most are healthy requests that the
//! noise filter drops after parsing, as in production); `errors` only those that become events (each
//! item is scrubbed, normalized and fingerprinted: the worst case per item).
//!
//! `compile/scrub_rules_uncached`: `scrub::compile_rules()`, every rule regex and the keyword
//! automaton built afresh: the most an isolate can pay. The pipeline builds them lazily, the
//! automaton on the first scrub and each rule's regex the first time its gate lets it run, so an
//! isolate pays only for the rules its texts need (plus the few regexes of `normalize` and
//! `stack`); the cold-start example measures what a first call really costs.
//!
//! The summary re-times the three passes interleaved (5 rounds, median), so that load from other
//! processes hits all three alike, and prints items/s and ratios; it also checks that no planted
//! secret survives into an event.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use selfheal::config::PipelineConfig;
use selfheal::event::{Verdict, process_batch, process_item};
use selfheal::trace::{TraceItem, parse_batch};
use serde_json::Value;

#[path = "support/corpus.rs"]
mod corpus;

/// Items in the replay corpus.
const N_ITEMS: usize = 10_000;
/// Seed of the corpus generator.
const SEED: u64 = 0x5e1f_4ea1;
/// Batch sizes: one item per invocation, and a busy Worker's batch.
const BATCH_SIZES: [usize; 2] = [1, 100];
/// Stand-in clock (only used for items without a timestamp).
const NOW_MS: i64 = 1_795_300_000_000;

struct Corpus {
    name: &'static str,
    /// (batch size, batches)
    by_size: Vec<(usize, Vec<String>)>,
    items: Vec<Value>,
}

fn corpora(cfg: &PipelineConfig) -> Vec<Corpus> {
    let templates = corpus::templates();
    let errors: Vec<Value> = templates
        .iter()
        .filter(|t| {
            let item: TraceItem = serde_json::from_value((*t).clone()).expect("template parses");
            matches!(process_item(&item, cfg, NOW_MS), Verdict::Event(_))
        })
        .cloned()
        .collect();
    [
        ("mixed", corpus::items_from(&templates, N_ITEMS, SEED)),
        ("errors", corpus::items_from(&errors, N_ITEMS, SEED)),
    ]
    .into_iter()
    .map(|(name, items)| Corpus {
        name,
        by_size: BATCH_SIZES
            .iter()
            .map(|&n| (n, corpus::batches(&items, n)))
            .collect(),
        items,
    })
    .collect()
}

fn pass_value(batches: &[String]) -> usize {
    batches
        .iter()
        .map(|b| {
            serde_json::from_str::<Value>(black_box(b))
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                .unwrap_or(0)
        })
        .sum()
}

fn pass_parse(batches: &[String]) -> usize {
    batches
        .iter()
        .map(|b| parse_batch(black_box(b)).map_or(0, |p| p.items.len()))
        .sum()
}

fn pass_pipeline(batches: &[String], cfg: &PipelineConfig) -> usize {
    batches
        .iter()
        .map(|b| {
            process_batch(black_box(b), cfg, NOW_MS).map_or(0, |(events, counts)| {
                black_box(&events);
                counts.items as usize
            })
        })
        .sum()
}

type Pass<'a> = (&'static str, Box<dyn Fn(&[String]) -> usize + 'a>);

fn passes(cfg: &PipelineConfig) -> [Pass<'_>; 3] {
    [
        ("value_floor", Box::new(pass_value)),
        ("parse", Box::new(pass_parse)),
        ("pipeline", Box::new(move |b| pass_pipeline(b, cfg))),
    ]
}

fn criterion_benches(c: &mut Criterion, corpora: &[Corpus], cfg: &PipelineConfig) {
    for corpus in corpora {
        let mut g = c.benchmark_group(format!("tail/{}", corpus.name));
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4))
            .throughput(Throughput::Elements(corpus.items.len() as u64));
        for (size, batches) in &corpus.by_size {
            for (name, pass) in passes(cfg).iter() {
                g.bench_with_input(BenchmarkId::new(*name, size), batches, |b, batches| {
                    b.iter(|| pass(batches))
                });
            }
        }
        g.finish();
    }
    let mut g = c.benchmark_group("compile");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.bench_function("scrub_rules_uncached", |b| {
        b.iter(selfheal::scrub::compile_rules)
    });
    g.finish();
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Planted secrets found in the stored form of the events (must be 0), and event/noise counts.
fn leak_check(corpus: &Corpus, cfg: &PipelineConfig) -> (usize, u64, u64) {
    let (mut leaks, mut events, mut noise) = (0, 0, 0);
    let batches = corpus
        .by_size
        .last()
        .map(|(_, b)| b.as_slice())
        .unwrap_or_default();
    for b in batches {
        let (evs, counts) = process_batch(b, cfg, NOW_MS).expect("batch is an array");
        events += counts.events;
        noise += counts.noise;
        for e in &evs {
            let stored = serde_json::to_string(e).expect("event serializes");
            leaks += corpus::PLANTED_MARKERS
                .iter()
                .filter(|m| stored.contains(*m))
                .count();
        }
    }
    (leaks, events, noise)
}

/// CPU time of this thread in seconds (Linux `/proc/thread-self/schedstat`), if readable: on a
/// shared machine it leaves out the time other processes held the core.
fn thread_cpu_secs() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

/// (wall seconds, CPU seconds if known) of one call.
fn clock<T>(f: impl FnOnce() -> T) -> (f64, Option<f64>) {
    let (c0, t) = (thread_cpu_secs(), Instant::now());
    black_box(f());
    let wall = t.elapsed().as_secs_f64();
    (wall, thread_cpu_secs().zip(c0).map(|(b, a)| b - a))
}

fn summary(corpora: &[Corpus], cfg: &PipelineConfig) {
    const ROUNDS: usize = 5;
    println!(
        "\nsummary: {N_ITEMS} TraceItems per pass, median of {ROUNDS} interleaved rounds, one thread;"
    );
    for corpus in corpora {
        let bytes: usize = corpus.by_size[0].1.iter().map(String::len).sum();
        println!(
            "  ({}: {} bytes of JSON per item on average)",
            corpus.name,
            bytes / corpus.items.len().max(1)
        );
    }
    println!(
        "wall clock, and in [brackets] this thread's CPU time (other processes' share left out)"
    );
    println!(
        "{:<7} {:>5} {:>20} {:>20} {:>20} {:>15} {:>15}  events/noise  leaks",
        "corpus", "batch", "floor it/s", "parse it/s", "pipeline it/s", "pipe/floor", "pipe/parse"
    );
    for corpus in corpora {
        let (leaks, events, noise) = leak_check(corpus, cfg);
        for (size, batches) in &corpus.by_size {
            let ps = passes(cfg);
            let mut wall: Vec<Vec<f64>> = vec![Vec::new(); ps.len()];
            let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); ps.len()];
            for _ in 0..ROUNDS {
                for (k, (_, pass)) in ps.iter().enumerate() {
                    let (w, c) = clock(|| pass(batches));
                    wall[k].push(w);
                    cpu[k].extend(c);
                }
            }
            let w: Vec<f64> = wall.into_iter().map(median).collect();
            let c: Vec<f64> = cpu
                .into_iter()
                .map(|x| if x.is_empty() { f64::NAN } else { median(x) })
                .collect();
            let n = corpus.items.len() as f64;
            let rate = |k: usize| format!("{:.0} [{:.0}]", n / w[k], n / c[k]);
            let ratio = |a: usize, b: usize| format!("{:.1}x [{:.1}x]", w[a] / w[b], c[a] / c[b]);
            println!(
                "{:<7} {:>5} {:>20} {:>20} {:>20} {:>15} {:>15}  {events:>5}/{noise:<5}  {leaks}",
                corpus.name,
                size,
                rate(0),
                rate(1),
                rate(2),
                ratio(2, 0),
                ratio(2, 1),
            );
        }
    }
    let compile: Vec<f64> = (0..15)
        .map(|_| clock(selfheal::scrub::compile_rules).0)
        .collect();
    println!(
        "compile: scrub::compile_rules() = {} (rule regexes + keyword automaton) in {:.2} ms wall (median of 15)",
        selfheal::scrub::compile_rules(),
        median(compile) * 1e3
    );
    let (hits, lookups) = selfheal::scrub::memo_stats();
    println!(
        "scrub_text memo (this thread, whole run): {hits} of {lookups} texts answered from it ({:.1}%)",
        100.0 * hits as f64 / lookups.max(1) as f64
    );
    println!(
        "(pipe/floor: pipeline time over serde_json::Value time for the same bytes; goal ≥ 100,000 it/s mixed, 50,000 errors)"
    );
    println!("load average: {}", load_average());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let test_mode = args.iter().any(|a| a == "--test" || a == "--list");
    if !test_mode {
        println!("load average at start: {}", load_average());
    }
    let cfg = PipelineConfig::default();
    let corpora = corpora(&cfg);
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &corpora, &cfg);
    c.final_summary();
    if !test_mode {
        summary(&corpora, &cfg);
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
