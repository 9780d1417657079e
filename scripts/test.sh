#!/usr/bin/env bash
# Runs every test: unit, validation, property, golden snapshots, cfn-lint on every emitted
# template, and the CLI. Sets up first when the pinned tools are missing; once set up it
# needs no network (CI runs it in a namespace with only loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/cfn-lint ] && [ -x .venv/bin/moto_server ] || scripts/setup.sh
export CFN_LINT="$PWD/.venv/bin/cfn-lint" MOTO_SERVER="$PWD/.venv/bin/moto_server"
# Snapshots are compared, never rewritten, here: review changes with INSTA_UPDATE=always locally.
export INSTA_UPDATE=no
# Tests never reach AWS: no credentials to find, no instance metadata to ask.
export AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
cargo test --locked --offline --workspace
