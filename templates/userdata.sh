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
# instance role (IMDSv2), or with the credentials and endpoints of the environment.
signal_failure() {
  command -v curl >/dev/null || { echo "gilliam: no curl to signal FAILURE with" >&2; return 0; }
  # --aws-sigv4 came with curl 7.75.0: an older curl cannot sign the request.
  local curl_version
  curl_version=$(curl --version 2>/dev/null | head -n 1 | cut -d ' ' -f 2)
  case "$curl_version" in
    [0-6].* | 7.[0-9].* | 7.[0-6][0-9].* | 7.7[0-4].*)
      echo "gilliam: curl $curl_version cannot sign requests (--aws-sigv4 needs 7.75.0 or later): FAILURE not signalled; CloudFormation waits out the signal timeout" >&2
      return 0
      ;;
  esac
  local key="${AWS_ACCESS_KEY_ID:-}" secret="${AWS_SECRET_ACCESS_KEY:-}" session="${AWS_SESSION_TOKEN:-}"
  local instance="${GILLIAM_INSTANCE_ID:-}" imds="${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}" token="" role="" creds=""
  if [ -z "$key" ] || [ -z "$instance" ]; then
    if [ "${AWS_EC2_METADATA_DISABLED:-}" = true ]; then
      echo "gilliam: no credentials or instance id to signal FAILURE with" >&2
      return 0
    fi
    token=$(curl -sf -m 5 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$imds/latest/api/token") || return 0
    if [ -z "$instance" ]; then
      instance=$(curl -sf -m 5 -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/instance-id") || return 0
    fi
    if [ -z "$key" ]; then
      role=$(curl -sf -m 5 -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/iam/security-credentials/" | head -n 1) || return 0
      creds=$(curl -sf -m 5 -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/iam/security-credentials/$role") || return 0
      key=$(printf '%s\n' "$creds" | sed -n 's/.*"AccessKeyId" *: *"\([^"]*\)".*/\1/p' | head -n 1)
      secret=$(printf '%s\n' "$creds" | sed -n 's/.*"SecretAccessKey" *: *"\([^"]*\)".*/\1/p' | head -n 1)
      session=$(printf '%s\n' "$creds" | sed -n 's/.*"Token" *: *"\([^"]*\)".*/\1/p' | head -n 1)
    fi
  fi
  # The China regions' endpoints are under amazonaws.com.cn.
  local domain=amazonaws.com
  case "$region" in cn-*) domain=amazonaws.com.cn ;; esac
  local endpoint="${AWS_ENDPOINT_URL_CLOUDFORMATION:-${AWS_ENDPOINT_URL:-https://cloudformation.$region.$domain}}"
  local auth=(--aws-sigv4 "aws:amz:$region:cloudformation" --user "$key:$secret")
  if [ -n "$session" ]; then
    auth+=(-H "X-Amz-Security-Token: $session")
  fi
  if curl -sf -m 10 "${auth[@]}" "$endpoint/" --data "Action=SignalResource" --data "Version=2010-05-15" \
    --data-urlencode "StackName=$signal_stack" --data-urlencode "LogicalResourceId=$signal_resource" \
    --data-urlencode "UniqueId=$instance" --data "Status=FAILURE" >/dev/null; then
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
