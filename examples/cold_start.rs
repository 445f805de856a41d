//! Cold vs warm: the first `event::process_batch` call of a fresh process (what a new Worker
//! isolate pays: the scrubber's keyword automaton and the regexes of the rules its texts need, the
//! normalizer's and stack parser's regexes are all compiled lazily on first use) against the same
//! call once warm.
//!
//! Run: `cargo run --release --example cold_start` (spawns itself 7 times per case, each child a
//! fresh process that times its very first call, then the median of 50 warm calls on the same
//! batch; prints every child and the medians). One child: `... --example cold_start -- --once 100`;
//! with `--cold-only` after it, the child makes the first call only (for a profiler: every sample
//! of the process is then start-up or the first call; it prints `cold_us 0 events`).
//!
//! Cases: one error item (the first replay-corpus item with an exception: scrubbed, normalized,
//! fingerprinted) and a batch of the first 100 replay-corpus items (`benches/support/corpus.rs`).
//! The batch text is built before timing; building it touches only serde_json, never the pipeline.

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use selfheal::config::PipelineConfig;
use selfheal::event::process_batch;
use serde_json::Value;

#[path = "../benches/support/corpus.rs"]
mod corpus;

const SEED: u64 = 0x5e1f_4ea1;
const NOW_MS: i64 = 1_795_300_000_000;
const CHILDREN: usize = 7;
const WARM_CALLS: usize = 50;

fn batch_of(size: usize) -> String {
    let items = corpus::items(1_000, SEED);
    if size == 1 {
        let first_error = items
            .iter()
            .find(|i| {
                i.get("exceptions")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty())
            })
            .expect("the corpus has exceptions");
        return corpus::batches(std::slice::from_ref(first_error), 1).remove(0);
    }
    corpus::batches(&items[..size.min(items.len())], size).remove(0)
}

/// One fresh process: prints `cold_us warm_us events` (`warm_us` 0 with `cold_only`).
fn once(size: usize, cold_only: bool) {
    let batch = batch_of(size);
    let cfg = PipelineConfig::default();
    let t = Instant::now();
    let (events, _) = process_batch(black_box(&batch), &cfg, NOW_MS).expect("array");
    let cold = t.elapsed().as_secs_f64() * 1e6;
    if cold_only {
        println!("{cold:.1} 0 {}", events.len());
        return;
    }
    let mut warm: Vec<f64> = (0..WARM_CALLS)
        .map(|_| {
            let t = Instant::now();
            black_box(process_batch(black_box(&batch), &cfg, NOW_MS).ok());
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    warm.sort_by(f64::total_cmp);
    println!("{cold:.1} {:.1} {}", warm[WARM_CALLS / 2], events.len());
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--once") {
        let size = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(1);
        once(size, args.iter().any(|a| a == "--cold-only"));
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load().trim());
    println!(
        "first process_batch call in a fresh process vs the same call warm ({CHILDREN} processes per case)"
    );
    println!(
        "{:<10} {:>12} {:>12} {:>8} {:>14}",
        "batch", "cold µs", "warm µs", "ratio", "one-time µs"
    );
    for size in [1usize, 100] {
        let (mut colds, mut warms) = (Vec::new(), Vec::new());
        for _ in 0..CHILDREN {
            let out = Command::new(&exe)
                .args(["--once", &size.to_string()])
                .output()
                .expect("child runs");
            let line = String::from_utf8_lossy(&out.stdout);
            let f: Vec<f64> = line
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            let [cold, warm, events] = f[..] else {
                panic!("child printed {line:?}");
            };
            println!(
                "  {size:<8} {cold:>12.1} {warm:>12.1} {:>7.0}x {:>14.1}   ({events} events)",
                cold / warm,
                cold - warm
            );
            colds.push(cold);
            warms.push(warm);
        }
        let (c, w) = (median(colds), median(warms));
        println!(
            "{:<10} {c:>12.1} {w:>12.1} {:>7.0}x {:>14.1}   median",
            format!("{size} item{}", if size == 1 { "" } else { "s" }),
            c / w,
            c - w
        );
    }
    println!("load average at end: {}", load().trim());
}
