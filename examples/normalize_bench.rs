//! Bench script for the normalizer: `cargo run --release --example normalize_bench [-- OPTIONS]`.
//!
//! Prints the in-process cost of `normalize::normalize_message` per line, apart from any I/O, on
//! the 32,000 Loghub-2k lines that `bench/drain3_bench.py` gives Drain3 (the `content` field of
//! `../shared/data/loghub/loghub_2k_all.jsonl`, 16 systems x 2,000, in file order), next to two
//! baselines timed in the same process, interleaved round by round so that load from other
//! processes hits all of them alike:
//!
//! - `old`: the normalizer before the speed work of issue 9 (the frozen copy in
//!   `tests/normalize_oracle/normalize.rs`, main at 297ebf4);
//! - `copy`: `String::from(line)` per line, the floor of any normalizer that returns a new
//!   `String` (one allocation and one copy).
//!
//! Each round times every line once per contender; the figures are the median over the rounds
//! (ns per line, lines/s) and the ratio old / new. It also checks that old and new agree on
//! every line (a difference is printed and fails the run).
//!
//! Options: `--rounds N` (default 15); `--only new|old` times one contender for `--rounds`
//! rounds and prints only its figures (for `perf record`); `--data PATH` another JSON Lines file
//! with a `content` (or `message`) field.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

#[path = "../tests/normalize_oracle/normalize.rs"]
mod oracle;

use selfheal::normalize::normalize_message;
use serde_json::Value;

/// Seconds to normalize every line once with `f`; the output bytes are summed so that the work
/// cannot be optimized away.
fn once(lines: &[String], f: impl Fn(&str) -> String) -> f64 {
    let mut total = 0usize;
    let t = Instant::now();
    for l in lines {
        total = total.wrapping_add(f(black_box(l)).len());
    }
    black_box(total);
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() -> Result<(), String> {
    let mut rounds = 15usize;
    let mut only: Option<String> = None;
    let mut data: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--rounds N")?;
            }
            "--only" => only = Some(args.next().ok_or("--only new|old")?),
            "--data" => data = Some(PathBuf::from(args.next().ok_or("--data PATH")?)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let path = match data {
        Some(p) => p,
        None => selfheal::eval::data_dir(None)
            .ok_or("SKIPPED: ../shared/data not found (set SELFHEAL_SHARED_DATA)")?
            .join("loghub/loghub_2k_all.jsonl"),
    };
    let rows = selfheal::eval::read_jsonl(&path).map_err(|e| e.to_string())?;
    let lines: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.get("content")
                .or_else(|| r.get("message"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    let n = lines.len();
    let bytes: usize = lines.iter().map(String::len).sum();
    println!(
        "{n} lines ({:.1} bytes/line) from {}; {rounds} rounds, median; load average before: {}",
        bytes as f64 / n.max(1) as f64,
        path.display(),
        load_avg()
    );

    if let Some(which) = only {
        let f: fn(&str) -> String = match which.as_str() {
            "new" => normalize_message,
            "old" => oracle::normalize_message,
            _ => return Err("--only new|old".into()),
        };
        let secs: Vec<f64> = (0..rounds).map(|_| once(&lines, f)).collect();
        let s = median(secs);
        println!(
            "{which}: {:.0} ns/line, {:.0} lines/s",
            s * 1e9 / n as f64,
            n as f64 / s
        );
        return Ok(());
    }

    let mut differ = 0;
    for l in &lines {
        let (o, w) = (oracle::normalize_message(l), normalize_message(l));
        if o != w {
            differ += 1;
            if differ <= 5 {
                println!("DIFFERS: {l:?}\n  old: {o:?}\n  new: {w:?}");
            }
        }
    }

    // Warm-up: every lazily compiled regex and the allocator, outside the timing.
    once(&lines, normalize_message);
    once(&lines, oracle::normalize_message);
    let (mut new, mut old, mut copy) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        new.push(once(&lines, normalize_message));
        old.push(once(&lines, oracle::normalize_message));
        copy.push(once(&lines, |l| l.to_owned()));
    }
    let (new, old, copy) = (median(new), median(old), median(copy));
    let ns = |s: f64| s * 1e9 / n as f64;
    println!("contender          ns/line      lines/s   vs new");
    for (name, s) in [
        ("new (normalize)", new),
        ("old (297ebf4)", old),
        ("copy (floor)", copy),
    ] {
        println!(
            "{name:<16} {:>9.1} {:>12.0} {:>7.2}x",
            ns(s),
            n as f64 / s,
            s / new
        );
    }
    println!("load average after: {}", load_avg());
    if differ > 0 {
        return Err(format!("{differ} lines normalize differently from old"));
    }
    Ok(())
}
