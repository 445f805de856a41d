#!/usr/bin/env python3
"""Times `selfheal group` (the merge stage, src/grouping.rs) on two inputs and prints seconds,
events/s and the ratio to `selfheal normalize` on the same input (the same binary's stateless
pass: reading, scrubbing is not in it, so the ratio bounds what grouping adds).

Inputs (built in memory, not written to the repository):
- loghub: all of Loghub-2k (16 systems x 2,000 lines, ../shared/data/loghub), each line
  `{"message": content, "script": system}`.
- week: a synthetic week of errors, 7 days at 20 events a minute (201,600 events): the messages
  of tests/fixtures/js-errors/v8_messages.jsonl re-filled with fresh values by a seeded
  generator, spread over 12 scripts x 4 routes, each with its own top frame and exception type.

Each figure is the best of --repeat runs of the whole process (wall clock, includes start-up and
JSON parsing). Usage: bench/group_bench.py --bin target/release/selfheal [--repeat 3]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loghub_input(path):
    out = []
    with open(path) as f:
        for line in f:
            v = json.loads(line)
            out.append(json.dumps({"message": v["content"], "script": v["dataset"]}))
    return "\n".join(out) + "\n"


def week_input():
    rng = random.Random(7)
    fixture = os.path.join(ROOT, "tests/fixtures/js-errors/v8_messages.jsonl")
    rows = [json.loads(l) for l in open(fixture)]
    scripts = ["api-%d" % i for i in range(12)]
    routes = ["GET /users/:id", "POST /orders", "GET /search", "scheduled */5 * * * *"]
    out = []
    n = 7 * 24 * 60 * 20
    for i in range(n):
        r = rng.choice(rows)
        # Fresh values: digits re-drawn, so most events are new strings.
        msg = "".join(str(rng.randint(0, 9)) if c.isdigit() else c for c in r["message"])
        s, route = rng.choice(scripts), rng.choice(routes)
        out.append(json.dumps({
            "message": msg,
            "exception_type": r["exception_type"],
            "script": s,
            "route": route,
            "top_frame": "handle (src/%s.js)" % route.split()[-1].strip("/").replace("/", "_"),
            "status_class": "5xx",
        }))
    return "\n".join(out) + "\n"


def best(cmd, data, repeat):
    times = []
    stats = ""
    for _ in range(repeat):
        t = time.perf_counter()
        p = subprocess.run(cmd, input=data.encode(), capture_output=True)
        times.append(time.perf_counter() - t)
        if p.returncode != 0:
            sys.exit("%s failed: %s" % (" ".join(cmd), p.stderr.decode()[-500:]))
        stats = p.stderr.decode().strip()
    return min(times), stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/selfheal"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", default=os.path.join(ROOT, "../shared/data/loghub/loghub_2k_all.jsonl"))
    a = ap.parse_args()
    inputs = []
    if os.path.exists(a.data):
        inputs.append(("loghub-2k (32,000 lines)", loghub_input(a.data)))
    else:
        print("SKIPPED loghub: %s not found" % a.data)
    inputs.append(("week (201,600 events)", week_input()))
    print("%-26s %10s %12s %12s %8s  %s" % ("input", "group s", "events/s", "normalize s", "ratio", "stats"))
    for name, data in inputs:
        n = data.count("\n")
        g, stats = best([a.bin, "group", "--stats"], data, a.repeat)
        b, _ = best([a.bin, "normalize"], data, a.repeat)
        print("%-26s %10.3f %12.0f %12.3f %8.2f  %s" % (name, g, n / g, b, g / b, stats))


main()
