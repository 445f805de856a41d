# Sourced by the scripts: tool locations and settings shared by set-up, build, start and test.
# Everything here is derived from the repository; nothing is installed by this file.
SELFHEAL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SELFHEAL_ROOT
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$SELFHEAL_ROOT/node_modules/.bin:$CARGO_BIN:$PATH"
# worker-build would download these from GitHub (unreachable here): use the pinned local ones.
export WASM_BINDGEN_BIN="$CARGO_BIN/wasm-bindgen"
export WASM_OPT_BIN="$SELFHEAL_ROOT/node_modules/.bin/wasm-opt"
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
export WRANGLER_LOG_SANITIZE=true
# One target dir for every crate of the workspace.
export CARGO_TARGET_DIR="$SELFHEAL_ROOT/target"
