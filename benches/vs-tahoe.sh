#!/usr/bin/env bash
# vs-tahoe.sh -- blackbox and Tahoe-LAFS side by side on this machine, same file size, 3-of-10,
# 10 storage nodes on loopback, one after the other in the same run; prints both and the ratios.
#
# Usage: benches/vs-tahoe.sh [SIZE_MIB] [RUNS]      (defaults: 256 MiB, 2 runs; best run counts)
#
# Tahoe runs at its best: Foolscap transport, the web API (curl PUT/GET), via
# ../shared/tools/tahoe-grid.sh; its venv is made from PyPI on first use. blackbox runs
# `blackbox bench e2e` (payments on) with the release binary ($BLACKBOX, default
# target/release/blackbox, built if missing). Needs curl, jq and python3-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-256}
RUNS=${2:-2}
GRID=${TAHOE_GRID_SH:-../shared/tools/tahoe-grid.sh}
BASE=${TAHOE_BASE:-/tmp/tahoe}
BLACKBOX=${BLACKBOX:-target/release/blackbox}

for tool in curl jq python3; do
  command -v "$tool" >/dev/null || { echo "vs-tahoe: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
if [[ ! -x $BASE/venv/bin/tahoe ]]; then
  echo "vs-tahoe: installing tahoe-lafs 1.20.0 into $BASE/venv" >&2
  python3 -m venv "$BASE/venv"
  "$BASE/venv/bin/pip" install --quiet tahoe-lafs==1.20.0
fi
if [[ ! -x $BLACKBOX ]]; then
  cargo build --release -p blackbox-cli
fi

# Tahoe first, then stopped so it burns no CPU while blackbox runs.
FOOLSCAP=1 TAHOE_BASE=$BASE "$GRID" up >&2
# (the grid script may exit non-zero after printing its results: the results decide)
tahoe=$(VIA=http TAHOE_BASE=$BASE "$GRID" bench "$SIZE" "$RUNS") || true
TAHOE_BASE=$BASE "$GRID" down >&2
echo "$tahoe" | grep '^RESULT' >&2
best() { # best MiB/s of op $1 in RESULT lines
  grep "^RESULT op=$1 " | sed -n 's/.*MiBps=\([0-9.]*\).*/\1/p' | sort -g | tail -1
}
t_put=$(echo "$tahoe" | best put)
t_get=$(echo "$tahoe" | best get)
[[ -n $t_put && -n $t_get ]] || { echo "vs-tahoe: the Tahoe bench printed no results" >&2; exit 1; }

b_put=0 b_get=0
for ((r = 1; r <= RUNS; r++)); do
  out=$("$BLACKBOX" bench e2e --size "${SIZE}MiB" --gets 1)
  echo "$out" >&2
  # "put: 2.31 s = 116 MB/s" -> MiB/s from the seconds, for the same unit as Tahoe's
  secs() { echo "$out" | sed -n "s/^  $1: \([0-9.]*\) s = .*/\1/p" | head -1; }
  p=$(awk -v s="$(secs put)" -v m="$SIZE" 'BEGIN{printf "%.1f", m/s}')
  g=$(awk -v s="$(secs get)" -v m="$SIZE" 'BEGIN{printf "%.1f", m/s}')
  b_put=$(awk -v a="$b_put" -v b="$p" 'BEGIN{print (b>a)?b:a}')
  b_get=$(awk -v a="$b_get" -v b="$g" 'BEGIN{print (b>a)?b:a}')
done

echo "vs-tahoe: $SIZE MiB file, 3-of-10, 10 nodes on loopback, best of $RUNS, $(nproc) cores"
printf '  %-22s put %7.1f MiB/s   get %7.1f MiB/s\n' "Tahoe-LAFS 1.20 (http)" "$t_put" "$t_get"
printf '  %-22s put %7.1f MiB/s   get %7.1f MiB/s\n' "blackbox (payments on)" "$b_put" "$b_get"
awk -v bp="$b_put" -v tp="$t_put" -v bg="$b_get" -v tg="$t_get" \
  'BEGIN{printf "  ratio                  put %7.2fx        get %7.2fx\n", bp/tp, bg/tg}'
