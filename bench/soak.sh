#!/usr/bin/env bash
# Soak test (issue 11 item 8): tokenhook in front of the test IdP (tests/idp/server.mjs)
# for a long while, under steady good traffic mixed with runaway hooks, hot reloads, key
# rotations and IdP outages; see bench/soak.py for what is measured and the bounds.
#
# Usage: bench/soak.sh [--quick | --minutes N] [--release] [--out FILE]
#   default 30 minutes; --quick is about 1 minute.
# Profile: debug (target/debug/tokenhook) unless --release is given, which builds and
# runs target/release/tokenhook (fat LTO: a slow build). Loopback only; every phase is
# bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
args=()
for a in "$@"; do
    case "$a" in
        --release) profile=release ;;
        *) args+=("$a") ;;
    esac
done

if [[ ! -d tests/idp/node_modules/oidc-provider ]]; then
    npm ci --prefix tests/idp --no-audit --no-fund
fi
if [[ $profile == release ]]; then
    cargo build --release --quiet --bin tokenhook
else
    cargo build --quiet --bin tokenhook
fi
exec python3 bench/soak.py --binary "target/$profile/tokenhook" --profile "$profile" "${args[@]}"
