#!/usr/bin/env bash
# The main job on the shipped example: sets up if needed, then compiles examples/quickstart
# (gilliam.yml, release.json, stage.yml) into ./out and prints what it produced.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run --locked -q --bin gilliam-compile -- \
  --app examples/quickstart/gilliam.yml \
  --release examples/quickstart/release.json \
  --stage examples/quickstart/stage.yml \
  --out out
echo
echo "files in ./out:"
find out -type f | sort | sed 's/^/  /'
