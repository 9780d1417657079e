#!/usr/bin/env bash
# The whole-process compile figure: builds gilliam-compile (release), writes the compile
# bench's formation of N services (default 1,000) as its three inputs, then runs the binary
# RUNS times (default 7) under /usr/bin/time and prints the median wall time, the median peak
# resident set size, and what it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"; runs="${2:-7}"
cargo build -q --release -p gilliam-compile
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cargo bench -q -p gilliam-compiler --bench compile -- --write-inputs "$n" "$work" >/dev/null
for _ in $(seq "$runs"); do
  /usr/bin/time -f '%e %M' -o "$work/t" target/release/gilliam-compile -q \
    --app "$work/gilliam.yml" --release "$work/release.json" --stage "$work/stage.yml" --out "$work/out"
  cat "$work/t" >> "$work/times"
done
files="$(find "$work/out" -type f | wc -l)"; bytes="$(du -sb "$work/out" | cut -f1)"
sort -n -k1 "$work/times" | awk -v r="$runs" 'NR==int(r/2)+1 {printf "gilliam-compile %s services: median wall %.0f ms", "'"$n"'", $1*1000}'
sort -n -k2 "$work/times" | awk -v r="$runs" 'NR==int(r/2)+1 {printf ", median peak RSS %.1f MiB", $2/1024}'
awk -v f="$files" -v b="$bytes" 'BEGIN {printf "; %d files, %.1f MB written (%d runs)\n", f, b/1e6, '"$runs"'}'
