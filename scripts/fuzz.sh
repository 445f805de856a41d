#!/usr/bin/env bash
# Fuzzes the core with cargo-fuzz (libFuzzer), one target after the other, each in one process:
#
#   scripts/fuzz.sh [seconds-per-target] [target ...]     # default: 600 s, every target
#
# Targets (fuzz/fuzz_targets/): trace_batch, scrub, normalize, stack. Not part of `npm test` (too
# long). Installs what is missing, pinned and idempotently: the nightly toolchain and cargo-fuzz
# $CARGO_FUZZ_VERSION. Seeds fuzz/corpus/<target>/ from the captured TraceItems of
# tests/fixtures/ and, when present, from the public corpora of ../shared/data/
# (SELFHEAL_SHARED_DATA overrides the location). Corpora, crash artifacts and logs stay under
# fuzz/ and are git-ignored; a crash worth keeping becomes a test in tests/fuzz_regressions.rs.
#
# Prints, per target: seconds, executions, executions per second, corpus size, crashes. Exits 1
# when a target crashed (its input is in fuzz/artifacts/<target>/, its log in fuzz/logs/).
#
# Builds with overflow checks and debug assertions on (-a) and no sanitizer (safe Rust; the
# sanitizer would halve the speed). CARGO_BUILD_JOBS limits the build's parallelism.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CARGO_FUZZ_VERSION=0.13.2
SECS=${1:-600}
shift || true
ALL_TARGETS=(trace_batch scrub normalize stack)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi
SHARED=${SELFHEAL_SHARED_DATA:-$ROOT/../shared/data}
FUZZ=$ROOT/fuzz
BUILD_FLAGS=(--sanitizer none --debug-assertions)

case "$SECS" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [seconds-per-target] [target ...]" >&2; exit 2 ;;
esac

# --- tools (pinned, idempotent) ---------------------------------------------------------------
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if [ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# --- seed corpora (file name = hash of the content, so re-seeding adds nothing twice) --------
seed() {
  node - "$ROOT" "$SHARED" <<'NODE'
const fs = require("fs"), path = require("path"), crypto = require("crypto");
const [root, shared] = process.argv.slice(2);
const counts = {};
const put = (target, text) => {
  if (typeof text !== "string" || text.length === 0) return;
  const dir = path.join(root, "fuzz", "corpus", target);
  fs.mkdirSync(dir, { recursive: true });
  const name = "seed-" + crypto.createHash("sha1").update(text).digest("hex").slice(0, 16);
  fs.writeFileSync(path.join(dir, name), text);
  counts[target] = (counts[target] || 0) + 1;
};
const readJson = (f) => (fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, "utf8")) : null);
const readJsonl = (f) =>
  fs.existsSync(f)
    ? fs.readFileSync(f, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l))
    : [];
// every string under one of `keys`, anywhere in `v`
const strings = (v, keys, out = []) => {
  if (Array.isArray(v)) v.forEach((x) => strings(x, keys, out));
  else if (v && typeof v === "object")
    for (const [k, x] of Object.entries(v)) {
      if (keys.includes(k) && typeof x === "string") out.push(x);
      else strings(x, keys, out);
    }
  return out;
};

// TraceItems: the repository's captured fixtures, and the shared copy when present
const items = [];
for (const dir of [path.join(root, "tests/fixtures/trace-items"), path.join(shared, "trace-items")]) {
  for (const e of readJson(path.join(dir, "all.json")) || []) items.push(e.item);
  for (const e of readJson(path.join(dir, "labelled.json")) || []) items.push(e.traceItem);
}
items.forEach((item, i) => {
  put("trace_batch", JSON.stringify([item]));
  if (i % 3 === 0) put("trace_batch", JSON.stringify(items.slice(i, i + 3)));
  for (const s of strings(item, ["message", "stack"])) {
    put("scrub", s);
    put("normalize", s);
    put("stack", s);
  }
  for (const u of strings(item, ["url"])) {
    put("scrub", u);
    put("normalize", u);
  }
  const req = item && item.event && item.event.request;
  if (req && req.headers) put("scrub", JSON.stringify(req.headers));
  for (const log of (item && item.logs) || []) put("scrub", JSON.stringify(log.message));
});

// public corpora
for (const f of ["detect_secrets_plugins", "gitleaks_rules_core", "presidio_recognizers"])
  for (const r of readJsonl(path.join(shared, "redaction", f + ".jsonl"))) put("scrub", r.text);
for (const f of ["error_stack_parser_fixtures", "workerd_tail_exceptions", "workerd_tail_event_streams"])
  for (const r of readJsonl(path.join(shared, "stacktraces", f + ".jsonl")))
    for (const s of strings(r, ["stack", "message"])) put("stack", s);
for (const r of readJsonl(path.join(shared, "normalization", "drain3_masking_cases.jsonl")))
  put("normalize", r.input);
// a sample of Loghub-2k (every 40th line of 32,000)
readJsonl(path.join(shared, "loghub", "loghub_2k_all.jsonl")).forEach((r, i) => {
  if (i % 40 === 0) put("normalize", r.content);
});
console.log("seeded:", JSON.stringify(counts));
NODE
}

if command -v node >/dev/null 2>&1; then
  seed
else
  echo "node not found: corpora not seeded (the targets start from nothing)" >&2
fi
[ -d "$SHARED" ] || echo "note: $SHARED not found: seeded from tests/fixtures only" >&2

# --- build once, run each target --------------------------------------------------------------
cd "$ROOT"
cargo +nightly fuzz build "${BUILD_FLAGS[@]}"

max_len() {
  case "$1" in
    # past MAX_TEXT_BYTES (16 KiB), so that cutting and markers are reached
    trace_batch | scrub) echo 65536 ;;
    # past normalize's 8 KiB and route's 2 KiB cuts, and room for MAX_FRAMES (256) lines
    normalize | stack) echo 16384 ;;
  esac
}

summary=()
failed=0
for t in "${TARGETS[@]}"; do
  mkdir -p "$FUZZ/corpus/$t" "$FUZZ/artifacts/$t" "$FUZZ/logs"
  # not under artifacts/: cargo-fuzz reports the newest file there as the failing input
  log="$FUZZ/logs/$t.log"
  extra=()
  [ "$t" = trace_batch ] && extra+=("-dict=$FUZZ/dict/trace.dict")
  echo "== $t: ${SECS}s (log: ${log#"$ROOT"/})"
  before=$(find "$FUZZ/artifacts/$t" -type f | wc -l)
  # No -jobs/-workers: libFuzzer then runs in this one process, on one core.
  set +e
  cargo +nightly fuzz run "${BUILD_FLAGS[@]}" "$t" -- \
    -max_total_time="$SECS" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -max_len="$(max_len "$t")" "${extra[@]}" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "$FUZZ/corpus/$t" -type f | wc -l)
  crashes=$(($(find "$FUZZ/artifacts/$t" -type f | wc -l) - before))
  if [ "$rc" -ne 0 ]; then
    failed=1
    echo "   exit $rc; last lines of the log:"
    tail -n 25 "$log" | sed 's/^/   | /'
  fi
  summary+=("$(printf '%-12s %8s %12s %8s %8s %8s' "$t" "$SECS" "${execs:-?}" "${speed:-?}" "$corpus" "$crashes")")
done

printf '\n%-12s %8s %12s %8s %8s %8s\n' target seconds execs exec/s corpus crashes
printf '%s\n' "${summary[@]}"
exit "$failed"
