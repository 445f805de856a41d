#!/usr/bin/env bash
# npm start: set up, build the Workers, run the whole loop on the demo (see scripts/start.mjs).
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/setup.sh"
source "$here/env.sh"
bash "$here/build-all.sh"
exec node "$here/start.mjs" "$@"
