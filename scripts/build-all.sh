#!/usr/bin/env bash
# Builds the three Workers (release wasm) once; cargo skips what did not change.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
for w in tail-worker scheduled agent-runner; do
  echo "selfheal build: $w" >&2
  SELFHEAL_PREBUILT=0 bash "$here/build-worker.sh" "$w"
done
