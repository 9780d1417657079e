#!/bin/bash
# Builds the gilliam runtime image: the agent (release build), then the AMI with Packer.
# Prints the AMI id, which goes into release.json as `runtime_image`.
#   runtime-image/build.sh VERSION [packer -var arguments...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="${1:?usage: build.sh VERSION [-var name=value ...]}"
shift
command -v packer >/dev/null || { echo "build.sh: packer is not installed (https://developer.hashicorp.com/packer/install)" >&2; exit 1; }
cd "$here/.."
cargo build --release --locked -p gilliam-agent
packer init "$here/gilliam-runtime.pkr.hcl"
packer build -var "agent=$PWD/target/release/gilliam-agent" -var "version=$version" "$@" "$here/gilliam-runtime.pkr.hcl"
# image-manifest.json: builds[-1].artifact_id is "REGION:AMI".
python3 -c 'import json,sys; print(json.load(open("image-manifest.json"))["builds"][-1]["artifact_id"].split(":")[1])'
