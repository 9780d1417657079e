#!/bin/bash
# gilliam userdata: formation {{formation}}, release {{release}}, {{role}} {{service}}.
# Writes the runtime config that the gilliam agent reads, then hands over to the agent,
# which fetches and verifies the artifact, runs the service and signals CloudFormation.
# Contract (runtime config format {{config_version}}): ARCHITECTURE.md, "Userdata and the agent".
set -euo pipefail
umask 077
root="${GILLIAM_ROOT:-}"
config="$root/etc/gilliam/runtime.json"
agent="${GILLIAM_AGENT:-/usr/local/bin/gilliam-agent}"
mkdir -p "$root/etc/gilliam"
cat > "$config.tmp" <<'GILLIAM_RUNTIME_CONFIG'
{{runtime_config}}
GILLIAM_RUNTIME_CONFIG
mv "$config.tmp" "$config"
if [ ! -x "$agent" ]; then
  echo "gilliam: agent $agent is missing: is {{image}} a gilliam runtime image?" >&2
  exit 1
fi
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  # On an instance the agent runs under systemd (unit from the runtime image), not under cloud-init.
  exec systemctl start --no-block gilliam-agent.service
fi
exec "$agent" run --config "$config"
