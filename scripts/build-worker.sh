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
  agent-runner) dir="$SELFHEAL_ROOT"; extra=(--features agent-runner) ;;
  *) echo "build-worker.sh: unknown Worker '$name'" >&2; exit 2 ;;
esac
if [ "${SELFHEAL_PREBUILT:-}" = 1 ] && [ -f "$dir/build/index.js" ]; then exit 0; fi
cd "$dir"
worker-build --release "${extra[@]}"
