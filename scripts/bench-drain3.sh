#!/usr/bin/env bash
# Drain3 vs selfheal's normalizer on Loghub-2k: lines/s and Grouping Accuracy in one run
# (see the docstring of bench/drain3_bench.py for exactly what is timed and how GA is computed).
#
#   scripts/bench-drain3.sh              # venv + pinned drain3 (idempotent), CLI build, the comparison
#   scripts/bench-drain3.sh --repeat 5   # extra arguments go to bench/drain3_bench.py
#
# Makes (once) a Python venv under .selfheal/venv (gitignored) with drain3==$DRAIN3_VERSION from PyPI,
# builds the native CLI and the normalizer's bench example (cargo build --release), runs
# bench/drain3_bench.py, then examples/normalize_bench (in-process ns/line on the same lines).
# Without ../shared/data (the Loghub corpus is not in this repository) it prints SKIPPED and exits 0.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SELFHEAL_ROOT"

DRAIN3_VERSION=0.9.11
DATA=../shared/data/loghub/loghub_2k_all.jsonl
VENV=.selfheal/venv
say() { printf 'bench-drain3: %s\n' "$*" >&2; }

if [ ! -f "$DATA" ]; then
  echo "SKIPPED: $DATA not found (../shared/data is not on this machine)"
  exit 0
fi

if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('drain3') != '$DRAIN3_VERSION')" 2>/dev/null; then
  command -v python3 >/dev/null || { say "FAILED: python3 not found (needs Python >= 3.8 with venv)"; exit 1; }
  say "creating $VENV with drain3==$DRAIN3_VERSION"
  python3 -m venv "$VENV" || { say "FAILED: python3 -m venv (on Debian/Ubuntu: apt-get install python3-venv)"; exit 1; }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "drain3==$DRAIN3_VERSION" \
    || { say "FAILED: pip install drain3==$DRAIN3_VERSION (needs PyPI)"; exit 1; }
fi

say "cargo build --release --bin selfheal --example normalize_bench"
cargo build --quiet --release --bin selfheal --example normalize_bench

"$VENV/bin/python" bench/drain3_bench.py --data "$DATA" --selfheal "$CARGO_TARGET_DIR/release/selfheal" "$@"
# The normalizer in-process, apart from I/O, on the same lines (ns/line; Drain3's in-process
# ns/line is 1e9 / its lines/s above), next to the normalizer before issue 9's speed work.
echo
"$CARGO_TARGET_DIR/release/examples/normalize_bench" --data "$DATA"
