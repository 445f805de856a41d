#!/usr/bin/env bash
# CPU of the tail Worker's tail() handler in workerd: per TraceItem warm, and the first invocation
# of a fresh isolate; with --opt-levels, also the wasm size of the three Workers per release
# opt-level. Run from anywhere; nothing is left running.
#
#   scripts/bench-workerd.sh                        build the tail Worker (scripts/build-worker.sh), measure it
#   scripts/bench-workerd.sh --build-dir DIR        measure an existing build (DIR/index.js, DIR/index_bg.wasm)
#   scripts/bench-workerd.sh --opt-levels "3 2 s z" [--passes N]
#       copy the working tree to $BENCH_WORK/src (default .selfheal/bench/src), build the three
#       Workers there with CARGO_PROFILE_RELEASE_OPT_LEVEL=<level> and a target dir per level
#       ($BENCH_WORK/target-opt-<level>), keep each build in $BENCH_WORK/builds/opt-<level>, print
#       raw and gzip -9 bytes of each Worker's final .wasm, measure the tail builds side by side
#       (one bench per pass, every level in it), and print one table.
#       --no-build: measure the builds already in $BENCH_WORK/builds (sizes from the last build).
#   Other options go to bench/workerd/bench.mjs: --rounds N (21), --per-run K (10 batches),
#   --warmup N (40 batches per arm), --cold N (7 trials; 0 skips), --json FILE, --batch-size N
#   (warm phase only: the same 1,000 items per run in batches of N; 1 is what a producer's single
#   invocation delivers, and shows the fixed cost per tail() call).
#   One measurement of one build takes ~3 min on 2 cores; --opt-levels builds for minutes per level.
#
# HOW IT MEASURES. One workerd process (miniflare 5, the library `wrangler dev` 4.164 runs workerd
# with; the tail Worker's options come from tail-worker/wrangler.toml through wrangler's own
# unstable_getMiniflareWorkerOptions) holds: a driver Worker that keeps the test batches in memory
# and calls `env.X.tail(batch)` over JS RPC (as tests/e2e/replayer does), a no-op tail consumer,
# and the tail Worker build twice: as deployed with the local D1 ("local D1"), and wrapped by
# bench/workerd/tail-nod1.mjs with D1 replaced by a stub ("D1 stubbed"). CPU is read from /proc:
# the sum of /proc/<pid>/task/*/schedstat (ns on CPU, exact, not tick-sampled) before and after a
# run, for the whole process ("all threads") and for its main thread ("main thread": it runs every
# isolate, so every line of JS and wasm and their GC; the other threads are V8's background
# compiler, which tiers hot wasm up to optimized code, and I/O; how production accounts for
# background compilation is not known here, so both are printed). Timers inside workerd do not
# advance during computation (Spectre mitigation), workerd's local TraceItems carry cpuTime =
# wallTime = 0 (hard-coded in server.c++), and the DevTools CPU profiler samples the wall time of a
# thread every isolate shares (a tail-isolate profile sums to more than the whole process's CPU),
# so none of those can give CPU; process CPU with subtraction can. (The profiler is still good for
# where the time goes: see the attribution notes in bench/workerd/harness.mjs.)
#  - Warm: each arm gets 40 batches first (tier-up, regex lazy DFAs), then 21 rounds; in each round
#    the no-op consumer, the stubbed and the local-D1 tail Worker each get the same 10 batches of
#    100 items (order rotated per round). Per item = (arm's CPU - no-op's CPU) / 1000. Reported as
#    median, interquartile range and range over the rounds.
#    Several builds (--opt-levels) are measured in the same workerd, their arms visited in turn in
#    every round, so load from elsewhere on the machine hits them alike.
#  - Fresh isolate: a new workerd process per measurement (7 trials, each with every case of every
#    build). Startup = boot CPU of a workerd with the tail Worker minus that of one booted just
#    before with a no-op Worker in its place (wasm compile and instantiate, index.js evaluation;
#    noisy: the whole boot is ~180 ms of CPU). First invocation = CPU of the first
#    tail() call (100 items, or 1 item with an uncaught exception) minus a no-op delivery of the
#    same batch, after two deliveries to the no-op consumer have warmed the driver and RPC path.
#    It includes the lazy compile of the scrub/normalize regexes (config is built on the first
#    call), V8's lazy compilation of the wasm functions used, the first lazy-DFA states.
# The batches: 20 batches of 100 TraceItems derived from the 58 TraceItems captured from workerd
# (tests/fixtures/trace-items/all.json), ids, timestamps and request ids varied, a third with a
# planted secret or PII (bench/workerd/batches.mjs says how); each delivery moves timestamps so D1
# sees new occurrences, never replays. The output prints what the pipeline made of them.
#
# INCLUDED in "D1 stubbed": JSON.stringify of the items in the tail isolate, the Rust pipeline
# (parse, noise filter, scrub, normalize, fingerprint, SQL statements), binding the statements,
# the serialization workerd's D1 client does in the tail isolate for a batch (JSON request body,
# span text, parsing a JSON answer of one result per statement), the log line, GC.
# EXCLUDED: the delivery of the items to a consumer (the no-op consumer pays it too: RPC
# serialization in the driver and materialization in the consumer; in production the runtime
# builds the TraceItems), the request to D1 and D1's execution. "local D1" adds the real
# cloudflare-internal:d1-api client and miniflare's SQLite Durable Object, which runs in the same
# workerd process (in production D1 runs elsewhere): an upper bound, not a production figure.
# The machine matters: figures are for this host's CPU and this workerd (1.20261117.1); the spread
# printed is over rounds/processes on a shared machine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SELFHEAL_ROOT"

levels=""
passes=1
build=1
build_dir=""
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --opt-levels) levels="$2"; shift 2 ;;
    --passes) passes="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) pass+=("$1"); shift ;;
  esac
done

if [ -z "$levels" ]; then
  if [ -z "$build_dir" ]; then
    SELFHEAL_PREBUILT=0 bash scripts/build-worker.sh tail-worker
    build_dir="$SELFHEAL_ROOT/tail-worker/build"
  fi
  exec node bench/workerd/bench.mjs --build "main=$build_dir" "${pass[@]}"
fi

work="${BENCH_WORK:-$SELFHEAL_ROOT/.selfheal/bench}"
mkdir -p "$work/builds" "$work/results"
work="$(cd "$work" && pwd)"
if [ "$build" = 1 ]; then
  src="$work/src"
  echo "== snapshot of the working tree -> $src" >&2
  rm -rf "$src"
  mkdir -p "$src"
  tar -C "$SELFHEAL_ROOT" --exclude=./.git --exclude=target --exclude=node_modules --exclude=./.selfheal \
    --exclude=.wrangler --exclude=build --exclude=./fuzz -cf - . | tar -C "$src" -xf -
  ln -s "$SELFHEAL_ROOT/node_modules" "$src/node_modules"

  sizes="$work/results/sizes.tsv"
  : > "$sizes"
  for level in $levels; do
    echo "== build, opt-level $level" >&2
    mkdir -p "$work/target-opt-$level"
    ln -sfn "$work/target-opt-$level" "$src/target" # env.sh points CARGO_TARGET_DIR at <root>/target
    rm -rf "$src/build" "$src/tail-worker/build" "$src/scheduled/build"
    for w in tail-worker scheduled agent-runner; do
      CARGO_PROFILE_RELEASE_OPT_LEVEL="$level" SELFHEAL_PREBUILT=0 bash "$src/scripts/build-worker.sh" "$w"
    done
    out="$work/builds/opt-$level"
    rm -rf "$out"
    mkdir -p "$out"
    cp -r "$src/tail-worker/build" "$out/tail-worker"
    cp -r "$src/scheduled/build" "$out/scheduled"
    cp -r "$src/build" "$out/agent-runner"
    for w in tail-worker scheduled agent-runner; do
      f="$out/$w/index_bg.wasm"
      printf '%s\t%s\t%s\t%s\n' "$level" "$w" "$(stat -c %s "$f")" "$(gzip -9c "$f" | wc -c)" >> "$sizes"
    done
  done
fi

builds=()
for level in $levels; do builds+=(--build "$level=$work/builds/opt-$level/tail-worker"); done
rm -f "$work"/results/pass*.json
for ((p = 1; p <= passes; p++)); do
  echo "== measure opt-levels $levels side by side, pass $p/$passes" >&2
  node bench/workerd/bench.mjs "${builds[@]}" --json "$work/results/pass$p.json" "${pass[@]}"
done
node bench/workerd/table.mjs "$work/results" $levels
