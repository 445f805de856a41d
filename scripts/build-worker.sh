#!/usr/bin/env bash
# Builds one Worker to <dir>/build with worker-build (release). Usage:
#   scripts/build-worker.sh tail-worker | scheduled | agent-runner
# `agent-runner` is the root crate with its `agent-runner` feature. With SELFHEAL_PREBUILT=1 and an
# existing build it does nothing (tests build once, then start `wrangler dev` many times).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
name="${1:?usage: build-worker.sh tail-worker|scheduled|agent-runner}"
case "$name" in
  tail-worker|scheduled) dir="$SELFHEAL_ROOT/$name"; extra=() ;;
  agent-runner) dir="$SELFHEAL_ROOT"; extra=(--no-default-features --features agent-runner) ;;
  *) echo "build-worker.sh: unknown Worker '$name'" >&2; exit 2 ;;
esac
out="$dir/build/index_bg.wasm"
if [ "${SELFHEAL_PREBUILT:-}" = 1 ] && [ -f "$dir/build/index.js" ]; then exit 0; fi
# Up to date when the output is newer than every input: the core, this crate, the manifests.
# (worker-build would otherwise re-run wasm-bindgen and wasm-opt, ~15 s per Worker, for nothing.)
if [ -f "$out" ] && [ -f "$dir/build/index.js" ] && [ -z "$(find "$SELFHEAL_ROOT/src" "$dir/src" \
    "$SELFHEAL_ROOT/Cargo.toml" "$SELFHEAL_ROOT/Cargo.lock" "$dir/Cargo.toml" -newer "$out" -print -quit)" ]; then
  echo "selfheal build: $name is up to date" >&2
  exit 0
fi
cd "$dir"
worker-build --release "${extra[@]}"
# The tail Worker has a size budget (issue 9: <= 400 KB gzip -9). worker-build runs `wasm-opt -O`
# once; running the same speed level again until it stops shrinking (`--converge`) takes ~1 KB
# more off the gzip (measured: 400,445 -> 399,529 bytes) and ~20 s. Same features and names
# section as worker-build's own run (worker-build 0.8.7, src/build/mod.rs step_run_wasm_opt).
if [ "$name" = tail-worker ]; then
  "$WASM_OPT_BIN" "$out" -o "$out.converge" -O --converge --debuginfo \
    --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling
  mv "$out.converge" "$out"
fi
