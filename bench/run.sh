#!/usr/bin/env bash
# One-command benchmark; see bench/run.py. Loopback only, bounded in time (~2 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/run.py "$@"
