#!/usr/bin/env bash
# The whole-process compile figure: builds gilliam-compile (release), writes the compile
# bench's formation of N services (default 1,000) as its three inputs, then runs the binary
# RUNS times (default 9) into a fresh output directory each time and prints the median wall
# time (to the microsecond, from bash's EPOCHREALTIME), the median peak resident set size
# (from /usr/bin/time), and what it wrote. With valgrind on the machine, also the instructions
# of one run (callgrind): the same count for the same build whatever else the machine does, so
# that two builds compare on a noisy machine where wall times move by a third from day to day.
# valgrind runs sha256 in software (no SHA extensions), so the count without sha256's
# compression (the same bytes hashed by any build) is the one to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"; runs="${2:-9}"
cargo build -q --release -p gilliam-compile
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cargo bench -q -p gilliam-compiler --bench compile -- --write-inputs "$n" "$work" >/dev/null
: > "$work/times"
for _ in $(seq "$runs"); do
  rm -rf "$work/out"
  start=$EPOCHREALTIME
  /usr/bin/time -f '%M' -o "$work/rss" target/release/gilliam-compile -q \
    --app "$work/gilliam.yml" --release "$work/release.json" --stage "$work/stage.yml" --out "$work/out"
  end=$EPOCHREALTIME
  echo "$(( (${end/./} - ${start/./}) )) $(cat "$work/rss")" >> "$work/times"
done
files="$(find "$work/out" -type f | wc -l)"; bytes="$(du -sb "$work/out" | cut -f1)"
ms="$(sort -n -k1 "$work/times" | awk -v r="$runs" 'NR==int(r/2)+1 {printf "%.1f", $1/1000}')"
mib="$(sort -n -k2 "$work/times" | awk -v r="$runs" 'NR==int(r/2)+1 {printf "%.1f", $2/1024}')"
range="$(sort -n -k1 "$work/times" | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%.1f-%.1f", lo/1000, hi/1000}')"
echo "gilliam-compile $n services: median wall $ms ms ($range), median peak RSS $mib MiB; $files files, $(awk -v b="$bytes" 'BEGIN {printf "%.1f", b/1e6}') MB written; $runs runs"
if command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null; then
  rm -rf "$work/out"
  valgrind --tool=callgrind --callgrind-out-file="$work/cg" target/release/gilliam-compile -q \
    --app "$work/gilliam.yml" --release "$work/release.json" --stage "$work/stage.yml" --out "$work/out" >/dev/null 2>&1
  callgrind_annotate --inclusive=no --threshold=100 "$work/cg" 2>/dev/null | awk '
    /PROGRAM TOTALS/ { gsub(",", "", $1); t = $1 }
    /sha2::sha256::soft/ { gsub(",", "", $1); s += $1 }
    END { printf "instructions (callgrind, one run): %.1f million, %.1f million without sha256 compression\n", t / 1e6, (t - s) / 1e6 }'
fi
