"""Drain3 vs selfheal's normalizer on Loghub-2k: lines/s and Grouping Accuracy, side by side.

Run: `scripts/bench-drain3.sh` (makes the venv with the pinned drain3, builds the CLI, runs this).
By hand: `.selfheal/venv/bin/python bench/drain3_bench.py --selfheal target/release/selfheal`
(`--repeat N` timed runs per contender, median lines/s; `--no-selfheal` for the Drain3 half only).

In one run, on the same 32,000 lines (16 systems x 2,000, `content` field of
`../shared/data/loghub/loghub_2k_all.jsonl`):

- Drain3 `TemplateMiner`, a fresh one per system, `add_log_message` on each line; the group of a
  line is its `cluster_id`. Two rows: `default` = `TemplateMinerConfig()` without masks (sim_th
  0.4, depth 4, max_children 100); `masked` = Drain3's `examples/drain3.ini` as recorded in
  `../shared/data/normalization/drain3_masking_config.json` (its 7 masking regexes, `<:`/`:>`
  mask affixes and its [DRAIN] section: sim_th 0.4, depth 4, max_children 100, max_clusters
  1024, extra_delimiters `_`). That file is JSON, not an .ini, so the config object is built
  here from its fields. Timed: the `add_log_message` calls (masking included), in-process.
- selfheal: `target/release/selfheal normalize` as a subprocess, all 32,000 lines as JSON lines
  `{"message": ...}` on stdin, one `{"normalized": ...}` line out per line in; the group of a line
  is its normalized text. Timed: the whole pipe (spawn, write, read, exit); building the input
  bytes and decoding the output are not timed. The normalizer is stateless, so one process
  serves all systems.
- Grouping Accuracy, one implementation for both, logparser's definition
  (`evaluator.get_accuracy`): a line is correct only when its predicted group holds exactly the
  lines of its ground-truth `event_id` group; GA = correct / total, per system, then the plain
  average over the 16 systems.

Prints a table (system, GA of each) and the throughput of each with the ratio selfheal/Drain3.
Timings share the machine with whatever else runs; the load average is printed with them.
"""

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

import importlib.metadata

GOAL_RATIO = 20.0


def load_lines(path):
    """{system: [(content, event_id), ...]} in file order."""
    by = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            by[row["dataset"]].append((row["content"], row["event_id"]))
    return dict(sorted(by.items()))


def grouping_accuracy(pred, truth):
    """logparser's GA: lines of a predicted group count as correct only when the group is exactly
    one ground-truth group (same lines, nothing more, nothing less)."""
    assert len(pred) == len(truth)
    truth_sizes = Counter(truth)
    groups = defaultdict(list)
    for i, p in enumerate(pred):
        groups[p].append(i)
    correct = 0
    for lines in groups.values():
        truths = {truth[i] for i in lines}
        if len(truths) == 1 and truth_sizes[truth[lines[0]]] == len(lines):
            correct += len(lines)
    return correct / max(len(pred), 1)


def default_config():
    return TemplateMinerConfig()


def masking_config(path):
    """TemplateMinerConfig from the JSON record of Drain3's examples/drain3.ini."""
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    cfg = TemplateMinerConfig()
    cfg.mask_prefix = spec["mask_prefix"]
    cfg.mask_suffix = spec["mask_suffix"]
    cfg.masking_instructions = [
        MaskingInstruction(m["regex_pattern"], m["mask_with"]) for m in spec["masking"]
    ]
    drain = spec.get("drain", {})
    cfg.drain_sim_th = float(drain.get("sim_th", cfg.drain_sim_th))
    cfg.drain_depth = int(drain.get("depth", cfg.drain_depth))
    cfg.drain_max_children = int(drain.get("max_children", cfg.drain_max_children))
    if drain.get("max_clusters"):
        cfg.drain_max_clusters = int(drain["max_clusters"])
    if drain.get("extra_delimiters"):
        cfg.drain_extra_delimiters = ast.literal_eval(drain["extra_delimiters"])
    return cfg


def run_drain3(by_system, make_config):
    """(seconds in add_log_message, {system: [cluster_id per line]})."""
    pred = {}
    total = 0.0
    for system, rows in by_system.items():
        miner = TemplateMiner(config=make_config())
        ids = []
        t = time.perf_counter()
        for content, _ in rows:
            ids.append(miner.add_log_message(content)["cluster_id"])
        total += time.perf_counter() - t
        pred[system] = ids
    return total, pred


def run_selfheal(by_system, exe):
    """(seconds for the whole pipe, {system: [normalized per line]})."""
    payload = "".join(
        json.dumps({"message": content}) + "\n"
        for rows in by_system.values()
        for content, _ in rows
    ).encode("utf-8")
    t = time.perf_counter()
    proc = subprocess.run([exe, "normalize"], input=payload, capture_output=True, check=False)
    secs = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{exe} normalize exited {proc.returncode}: {proc.stderr.decode()[:500]}")
    out = proc.stdout.decode("utf-8").splitlines()
    n = sum(len(rows) for rows in by_system.values())
    if len(out) != n:
        sys.exit(f"{exe} normalize wrote {len(out)} lines for {n} inputs")
    normalized = [json.loads(line)["normalized"] for line in out]
    pred, i = {}, 0
    for system, rows in by_system.items():
        pred[system] = normalized[i : i + len(rows)]
        i += len(rows)
    return secs, pred


def spawn_seconds(exe, repeat):
    """Median seconds of `selfheal normalize` on empty stdin: process start and exit alone."""
    secs = []
    for _ in range(max(repeat, 3)):
        t = time.perf_counter()
        subprocess.run([exe, "normalize"], input=b"", capture_output=True, check=False)
        secs.append(time.perf_counter() - t)
    return statistics.median(secs)


def timed(repeat, run):
    """Median seconds over `repeat` runs, and the first run's predictions (all runs agree)."""
    secs, first = [], None
    for _ in range(repeat):
        s, pred = run()
        secs.append(s)
        if first is None:
            first = pred
        elif pred != first:
            sys.exit("predictions differ between runs")
    return statistics.median(secs), secs, first


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    shared = os.path.join(root, "..", "shared", "data")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(shared, "loghub", "loghub_2k_all.jsonl"))
    ap.add_argument(
        "--masking",
        default=os.path.join(shared, "normalization", "drain3_masking_config.json"),
    )
    ap.add_argument("--selfheal", default=os.path.join(root, "target", "release", "selfheal"))
    ap.add_argument("--no-selfheal", action="store_true", help="only the Drain3 half")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per contender (median)")
    args = ap.parse_args()

    if not os.path.exists(args.data):
        print(f"SKIPPED: {args.data} not found (../shared/data is not on this machine)")
        return 0
    by_system = load_lines(args.data)
    n_lines = sum(len(r) for r in by_system.values())
    truth = {s: [e for _, e in rows] for s, rows in by_system.items()}
    print(
        f"Loghub-2k: {len(by_system)} systems, {n_lines} lines; drain3 "
        f"{importlib.metadata.version('drain3')}, Python {sys.version.split()[0]}; "
        f"{args.repeat} timed run(s) each, median; load average before: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )

    contenders = [("Drain3 default", lambda: run_drain3(by_system, default_config))]
    if os.path.exists(args.masking):
        contenders.append(
            ("Drain3 masked", lambda: run_drain3(by_system, lambda: masking_config(args.masking)))
        )
    else:
        print(f"(no {args.masking}: the masked Drain3 row is left out)")
    if not args.no_selfheal:
        if not os.access(args.selfheal, os.X_OK):
            sys.exit(f"{args.selfheal} not found: cargo build --release --bin selfheal")
        contenders.append(("selfheal", lambda: run_selfheal(by_system, args.selfheal)))

    results = []
    for name, run in contenders:
        secs, all_secs, pred = timed(args.repeat, run)
        ga = {s: grouping_accuracy([str(p) for p in pred[s]], truth[s]) for s in by_system}
        results.append((name, n_lines / secs, all_secs, ga))

    names = [r[0] for r in results]
    width = max(12, *(len(n) for n in names))
    print()
    print(f"{'system':<12} " + " ".join(f"{n + ' GA':>{width + 3}}" for n in names))
    for s in by_system:
        print(f"{s:<12} " + " ".join(f"{r[3][s]:>{width + 3}.4f}" for r in results))
    avgs = [statistics.fmean(r[3].values()) for r in results]
    print(f"{'average':<12} " + " ".join(f"{a:>{width + 3}.4f}" for a in avgs))

    print()
    print(f"{'contender':<{width}} {'lines/s':>12} {'ns/line':>9}  runs (s)")
    for name, lps, all_secs, _ in results:
        runs = " ".join(f"{x:.3f}" for x in all_secs)
        print(f"{name:<{width}} {lps:>12.0f} {1e9 / lps:>9.0f}  {runs}")
    if "selfheal" in names:
        print(
            f"(selfheal's pipe time includes process start and exit: "
            f"{spawn_seconds(args.selfheal, args.repeat) * 1e3:.1f} ms on empty stdin)"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    if "selfheal" in names:
        k = names.index("selfheal")
        lps_s, avg_s = results[k][1], avgs[k]
        print()
        for j, (name, lps, _, _) in enumerate(results):
            if j == k:
                continue
            ratio = lps_s / lps
            ok = ratio >= GOAL_RATIO and avg_s + 1e-12 >= avgs[j]
            print(
                f"selfheal / {name}: {ratio:.1f}x lines/s, average GA {avg_s:.4f} vs "
                f"{avgs[j]:.4f} -> goal (>= {GOAL_RATIO:.0f}x at equal or better GA) "
                f"{'MET' if ok else 'NOT MET'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
