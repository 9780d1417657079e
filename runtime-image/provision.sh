#!/bin/bash
# Provisions a gilliam runtime image: base packages, the agent binary, its systemd unit, the
# unprivileged `gilliam` user that services run as, and optionally an etcd binary (verified).
# Packer runs it on the build instance (gilliam-runtime.pkr.hcl); tests run it into a scratch
# root with --root DIR --no-packages. Safe to run twice.
#
# Usage: provision.sh --agent PATH [--unit PATH] [--readme PATH] [--root DIR] [--no-packages]
#                     [--etcd-version V --etcd-sha256 SHA]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root=/
agent=
unit="$here/gilliam-agent.service"
readme="$here/README.md"
packages=1
etcd_version=
etcd_sha256=

die() { echo "provision.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --agent) agent="${2:?--agent needs a path}"; shift 2 ;;
    --unit) unit="${2:?--unit needs a path}"; shift 2 ;;
    --readme) readme="${2:?--readme needs a path}"; shift 2 ;;
    --no-packages) packages=0; shift ;;
    --etcd-version) etcd_version="${2:?}"; shift 2 ;;
    --etcd-sha256) etcd_sha256="${2:?}"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

[ -n "$agent" ] || die "--agent PATH is required (build it: cargo build --release -p gilliam-agent)"
[ -x "$agent" ] || die "agent $agent is not an executable file"
[ -f "$unit" ] || die "unit file $unit is missing"
"$agent" --version >/dev/null || die "agent $agent does not run on this machine (built for another libc or architecture?)"
if [ -n "$etcd_version" ] && [ -z "$etcd_sha256" ]; then
  die "--etcd-version needs --etcd-sha256 (from the release's SHA256SUMS): nothing unverified goes into the image"
fi
[ "$(id -u)" = 0 ] || [ "$root" != / ] || die "run as root to provision this machine (or pass --root DIR)"
root="${root%/}"

if [ "$packages" = 1 ]; then
  # What the agent calls: blkid, mkfs.ext4 and mount for etcd volumes; CA certificates for
  # HTTPS to AWS; the time service; python3 for services written in it is the artifact's affair.
  # Image releases: Docker Engine (what ECS on EC2, Kamal and Empire run; the agent talks to
  # its API over /var/run/docker.sock), enabled at boot; ECR pulls authenticate through the
  # instance role (the agent asks ECR for the token, so no credential helper is needed).
  if command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends ca-certificates e2fsprogs util-linux chrony curl docker.io
    apt-get clean
  elif command -v dnf >/dev/null; then
    dnf install -y -q ca-certificates e2fsprogs util-linux chrony docker
    dnf clean all
  else
    die "neither apt-get nor dnf found: use a Debian or Amazon Linux base image"
  fi
fi

install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system" "$root/etc/gilliam" "$root/var/lib/gilliam" "$root/usr/local/share/doc/gilliam"
install -m 0755 "$agent" "$root/usr/local/bin/gilliam-agent"
install -m 0644 "$unit" "$root/etc/systemd/system/gilliam-agent.service"
if [ -f "$readme" ]; then
  install -m 0644 "$readme" "$root/usr/local/share/doc/gilliam/README.md"
fi

# The service user: a system account with no login and no password.
if ! grep -q '^gilliam:' "$root/etc/passwd" 2>/dev/null; then
  nologin=/usr/sbin/nologin
  [ -x "$root$nologin" ] || [ -x "$nologin" ] || nologin=/sbin/nologin
  if [ -z "$root" ]; then
    useradd --system --user-group --home-dir /var/lib/gilliam/home --no-create-home --shell "$nologin" --comment "gilliam services" gilliam
  else
    useradd --prefix "$root" --system --user-group --home-dir /var/lib/gilliam/home --no-create-home --shell "$nologin" --comment "gilliam services" gilliam
  fi
fi
install -d -m 0750 "$root/var/lib/gilliam/home"
if [ -z "$root" ]; then
  chown gilliam:gilliam /var/lib/gilliam/home
else
  ids="$(awk -F: '$1 == "gilliam" { print $3 ":" $4 }' "$root/etc/passwd")"
  chown "$ids" "$root/var/lib/gilliam/home"
fi

# Enabled, so that the release comes back after a reboot (the unit waits for its config).
install -d -m 0755 "$root/etc/systemd/system/multi-user.target.wants"
ln -sfn /etc/systemd/system/gilliam-agent.service "$root/etc/systemd/system/multi-user.target.wants/gilliam-agent.service"

if [ -n "$etcd_version" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  arch="$(uname -m)"; case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
  url="https://github.com/etcd-io/etcd/releases/download/v$etcd_version/etcd-v$etcd_version-linux-$arch.tar.gz"
  curl -fsSL --retry 3 -o "$tmp/etcd.tar.gz" "$url"
  echo "$etcd_sha256  $tmp/etcd.tar.gz" | sha256sum --check --quiet || die "etcd $etcd_version does not match its sha256"
  tar -xzf "$tmp/etcd.tar.gz" -C "$tmp" --no-same-owner
  install -d -m 0755 "$root/opt/etcd/$etcd_version"
  install -m 0755 "$tmp/etcd-v$etcd_version-linux-$arch/etcd" "$root/opt/etcd/$etcd_version/etcd"
  install -m 0755 "$tmp/etcd-v$etcd_version-linux-$arch/etcdctl" "$root/opt/etcd/$etcd_version/etcdctl"
  ln -sfn "/opt/etcd/$etcd_version/etcd" "$root/usr/local/bin/etcd"
  ln -sfn "/opt/etcd/$etcd_version/etcdctl" "$root/usr/local/bin/etcdctl"
fi

# No instance identity may be baked into the image.
rm -f "$root/etc/gilliam/runtime.json"
echo "provision.sh: gilliam runtime provisioned into ${root:-/} (agent $("$agent" --version))"
