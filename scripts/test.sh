#!/usr/bin/env bash
# npm test: set up, then every check and test: format, lints, native tests (core, storage on SQLite,
# corpora when ../shared is there), the wasm build, and the end-to-end tests in workerd.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/setup.sh"
source "$here/env.sh"
cd "$SELFHEAL_ROOT"

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy (native, all targets)"
cargo clippy --quiet --all-targets -- -D warnings
echo "== cargo clippy (wasm32, Workers)"
cargo clippy --quiet --target wasm32-unknown-unknown -p tail-worker -p scheduled -- -D warnings
cargo clippy --quiet --target wasm32-unknown-unknown --lib --no-default-features --features agent-runner -- -D warnings
echo "== cargo test (native)"
cargo test --workspace
echo "== corpus suites again, with their tables (they print SKIPPED when ../shared/data is absent)"
[ -d "$SELFHEAL_ROOT/../shared/data" ] || echo "corpus suites: SKIPPED (no ../shared/data beside the repository)"
cargo test --quiet --test scrub_corpus --test stack_corpus --test grouping_corpus -- --nocapture
echo "== the gate on the scenario corpus (release build: a full replay takes a minute)"
cargo test --release --test gate_scenarios -- --nocapture
echo "== build the Workers (wasm)"
bash "$here/build-all.sh"
echo "== end-to-end tests (workerd, local D1 and Queue)"
node --test --test-concurrency=1 'tests/e2e/*.test.mjs'
