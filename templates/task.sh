#!/bin/bash
# gilliam task userdata: formation {{formation}}, release {{release}}, service {{service}}.
# A one-off instance ({{purpose}}): the agent boots the release as the service would, runs one
# command instead of the service, ships its output and exit status to CloudWatch Logs, and
# powers the instance off, which terminates it (launched with InstanceInitiatedShutdownBehavior
# terminate). Contract (runtime config format 1, role "task"): ARCHITECTURE.md, "Tasks".
set -euo pipefail
umask 077
root="${GILLIAM_ROOT:-}"
config="$root/etc/gilliam/runtime.json"
agent="${GILLIAM_AGENT:-/usr/local/bin/gilliam-agent}"
on_instance=false
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  on_instance=true
  # The backstop: whatever becomes of the agent, the command or the gilliam that launched
  # it, the instance powers off (and so terminates) by then.
  shutdown -h +{{backstop_minutes}} "gilliam task deadline" || true
fi
mkdir -p "$root/etc/gilliam"
cat > "$config.tmp" <<'GILLIAM_RUNTIME_CONFIG'
{{runtime_config}}
GILLIAM_RUNTIME_CONFIG
mv "$config.tmp" "$config"
if [ ! -x "$agent" ]; then
  echo "gilliam: agent $agent is missing: is {{image}} a gilliam runtime image?" >&2
  if $on_instance; then
    shutdown -h now || true
  fi
  exit 1
fi
if $on_instance; then
  # On an instance the agent runs under systemd (unit from the runtime image), not under cloud-init.
  exec systemctl start --no-block gilliam-agent.service
fi
exec "$agent" run --config "$config"
