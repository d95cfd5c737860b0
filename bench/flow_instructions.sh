#!/usr/bin/env bash
# Instructions per call of each flow workload of examples/flow_cost.rs, in one engine
# in one process, counted by callgrind: the same from run to run whatever else the
# machine does, so two builds compare exactly (time on these shared machines does not).
# Kernel time and the worker's pipes are not in it: `flow_cost pool` measures those.
# Usage: bench/flow_instructions.sh [PROGRAM]  (default: builds examples/flow_cost in
# release). Needs valgrind (Debian: apt-get install valgrind). About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
prog=${1:-}
if [ -z "$prog" ]; then
  cargo build --release --quiet --example flow_cost
  prog=target/release/examples/flow_cost
fi
command -v valgrind >/dev/null || { echo "needs valgrind (Debian: apt-get install valgrind)" >&2; exit 2; }
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$prog" inline "$1" "$2" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
# The difference of 1200 and 200 calls leaves out compiling and starting up.
per_call() { local a b; a=$(count "$1" 200); b=$(count "$1" 1200); echo $(( (b - a) / 1000 )); }
declare -A n
for w in empty1 empty3 one9 three3 real1 real3; do
  n[$w]=$(per_call "$w")
  echo "$w: ${n[$w]} instructions per call"
done
python3 - "${n[empty1]}" "${n[empty3]}" "${n[one9]}" "${n[three3]}" "${n[real1]}" "${n[real3]}" <<'PY'
import sys
e1, e3, o9, t3, r1, r3 = map(int, sys.argv[1:])
print(f"a step's fixed cost (an Action doing nothing): {(e3 - e1) / 2:.0f} instructions")
print(f"nine claims: three Actions / one Action {t3 / o9:.3f} (+{(t3 - o9) / 2:.0f} per extra step)")
print(f"realistic: three Actions / one Action {r3 / r1:.3f} (+{(r3 - r1) / 2:.0f} per extra step)")
PY
