#!/usr/bin/env bash
# Architecture invariant: every crate the demo's build (`-p gilliam-cli`) shares with the
# tests' build (the whole workspace, dev-dependencies included) has the same features in both,
# so that no crate is compiled twice between `scripts/quickstart.sh` and `scripts/test.sh`.
# Prints the crates whose features differ and exits 1; silent and 0 when they all agree.
set -euo pipefail
cd "$(dirname "$0")/.."
feats() { cargo tree -q --locked --offline "$@" --prefix none -f '{p} {f}' | sed 's/ (\*)//; s/ (proc-macro)//' | sort -u; }
demo=$(feats -p gilliam-cli -e normal,build)
tests=$(feats --workspace -e normal,build,dev)
differ=$(join -j1 -t'|' <(sed -E 's/^([^ ]+ [^ ]+) ?/\1|/' <<<"$demo" | sort -t'|' -k1,1) \
                      <(sed -E 's/^([^ ]+ [^ ]+) ?/\1|/' <<<"$tests" | sort -t'|' -k1,1) \
         | awk -F'|' '$2 != $3 { printf "  %s: demo [%s], tests [%s]\n", $1, $2, $3 }')
if [ -n "$differ" ]; then
  echo "same_features: crates built with other features by the demo than by the tests (each would be compiled twice):" >&2
  echo "$differ" >&2
  exit 1
fi
