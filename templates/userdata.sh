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
region='{{region}}'
signal_stack='{{signal_stack}}'
signal_resource='{{signal_resource}}'

# Without the agent nothing would signal, and CloudFormation would wait out the whole signal
# timeout before failing the release: signal FAILURE from here, with curl's SigV4, as the
# instance role (IMDSv2), or with the credentials and endpoints of the environment. Every
# instance carries this in its userdata (the image it guards against has no gilliam on it),
# so it is written short: k, s, t are the access key, secret and session token; i the
# instance id; m the metadata service; h its session header; c the role's credentials.
signal_failure() {
  command -v curl >/dev/null || { echo "gilliam: no curl to signal FAILURE with" >&2; return 0; }
  # --aws-sigv4 came with curl 7.75.0: an older curl cannot sign the request.
  local v
  v=$(curl --version 2>/dev/null | head -n 1 | cut -d ' ' -f 2)
  case "$v" in [0-6].* | 7.[0-9].* | 7.[0-6][0-9].* | 7.7[0-4].*)
    echo "gilliam: curl $v cannot sign requests (--aws-sigv4 needs 7.75.0 or later): FAILURE not signalled" >&2; return 0 ;;
  esac
  local k="${AWS_ACCESS_KEY_ID:-}" s="${AWS_SECRET_ACCESS_KEY:-}" t="${AWS_SESSION_TOKEN:-}" i="${GILLIAM_INSTANCE_ID:-}"
  local m="${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}/latest" h c d=amazonaws.com
  if [ -z "$k" ] || [ -z "$i" ]; then
    [ "${AWS_EC2_METADATA_DISABLED:-}" != true ] || { echo "gilliam: no credentials or instance id to signal FAILURE with" >&2; return 0; }
    h="X-aws-ec2-metadata-token: $(curl -sf -m 5 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$m/api/token")" || return 0
    [ -n "$i" ] || i=$(curl -sf -m 5 -H "$h" "$m/meta-data/instance-id") || return 0
    if [ -z "$k" ]; then
      c=$(curl -sf -m 5 -H "$h" "$m/meta-data/iam/security-credentials/" | head -n 1) || return 0
      c=$(curl -sf -m 5 -H "$h" "$m/meta-data/iam/security-credentials/$c") || return 0
      # One field of the credentials document, which IMDS writes one field to a line.
      f() { printf '%s\n' "$c" | sed -n "s/.*\"$1\" *: *\"\([^\"]*\)\".*/\1/p" | head -n 1; }
      k=$(f AccessKeyId) s=$(f SecretAccessKey) t=$(f Token)
    fi
  fi
  # The China regions' endpoints are under amazonaws.com.cn.
  case "$region" in cn-*) d=amazonaws.com.cn ;; esac
  local a=(--aws-sigv4 "aws:amz:$region:cloudformation" --user "$k:$s")
  [ -z "$t" ] || a+=(-H "X-Amz-Security-Token: $t")
  if curl -sf -m 10 "${a[@]}" "${AWS_ENDPOINT_URL_CLOUDFORMATION:-${AWS_ENDPOINT_URL:-https://cloudformation.$region.$d}}/" \
    --data "Action=SignalResource&Version=2010-05-15&Status=FAILURE" --data-urlencode "StackName=$signal_stack" \
    --data-urlencode "LogicalResourceId=$signal_resource" --data-urlencode "UniqueId=$i" >/dev/null; then
    echo "gilliam: signalled FAILURE for $signal_resource of $signal_stack" >&2
  else
    echo "gilliam: could not signal FAILURE for $signal_resource of $signal_stack" >&2
  fi
}

mkdir -p "$root/etc/gilliam"
cat > "$config.tmp" <<'GILLIAM_RUNTIME_CONFIG'
{{runtime_config}}
GILLIAM_RUNTIME_CONFIG
mv "$config.tmp" "$config"
if [ ! -x "$agent" ]; then
  echo "gilliam: agent $agent is missing: is {{image}} a gilliam runtime image?" >&2
  signal_failure || true
  exit 1
fi
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  # On an instance the agent runs under systemd (unit from the runtime image), not under cloud-init.
  exec systemctl start --no-block gilliam-agent.service
fi
exec "$agent" run --config "$config"
