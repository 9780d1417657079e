#!/usr/bin/env bash
# The main job, end to end on this machine: sets up, starts a local AWS (moto) on 127.0.0.1,
# compiles the quickstart formation and deploys it as release 1 and release 2, splits traffic,
# flips it, rolls back, makes a config release (3), moves traffic back to 2 step by step,
# shows releases, status and history, and stops the local AWS.
# Nothing here talks to real AWS: dummy credentials, a loopback endpoint, no instance metadata.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Python side (moto) installs while cargo builds: pip mostly waits on the network, the
# build keeps both cores busy. Only what the demo runs is built: the operator's CLI.
scripts/setup.sh --demo &
setup=$!
if ! cargo build --locked -q -p gilliam-cli --bin gilliam; then
  wait $setup || true
  exit 1
fi
wait $setup || { echo "quickstart: setting up the Python tools failed (above)" >&2; exit 1; }

export GILLIAM_ACTOR="${USER:-demo}" AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_EC2_METADATA_DISABLED=true AWS_REGION=eu-west-1
unset AWS_PROFILE AWS_SESSION_TOKEN
work=.gilliam/demo
rm -rf "$work" && mkdir -p "$work"

.venv/bin/python scripts/moto_server.py -H 127.0.0.1 -p 0 >"$work/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; wait $moto 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  port=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/moto.log" | head -1 | cut -d: -f3 || true)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "${port:-}" ] || { echo "quickstart: moto did not start; see $work/moto.log" >&2; exit 1; }
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
echo "== local AWS (moto) on $AWS_ENDPOINT_URL"
.venv/bin/python scripts/demo_aws.py "$AWS_ENDPOINT_URL" "$work"

g() { echo; echo "\$ gilliam $*"; target/debug/gilliam --stage "$work/stage.yml" "$@"; }
g deploy --app examples/quickstart/gilliam.yml --release "$work/release-1.json" --out "$work/out-1" --poll 0.2
g deploy --app examples/quickstart/gilliam.yml --release "$work/release-2.json" --out "$work/out-2" --poll 0.2
g traffic 1=90 2=10
g traffic 2
g rollback
g env set FEATURE_SEARCH=on --poll 0.2
g env
g traffic 2 --strategy linear:50:1s --poll 0.2
g releases
g status
g history
echo
echo "== compiled files of release 2 are in $work/out-2; stopping the local AWS"
