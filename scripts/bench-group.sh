#!/usr/bin/env bash
# `selfheal group` on all of Loghub-2k and on a synthetic week of errors: seconds, events/s and
# the ratio to `selfheal normalize` on the same input (see bench/group_bench.py).
#
#   scripts/bench-group.sh              # release build of the CLI, then the bench
#   scripts/bench-group.sh --repeat 5   # extra arguments go to bench/group_bench.py
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SELFHEAL_ROOT"
cargo build --release --quiet --bin selfheal
python3 bench/group_bench.py --bin "$CARGO_TARGET_DIR/release/selfheal" "$@"
