#!/usr/bin/env bash
# Installs what building and testing gilliam needs on a fresh machine, and nothing twice:
# a virtual environment (.venv) with the pinned Python tools (cfn-lint; moto, the local AWS
# the materializer's tests start on 127.0.0.1), checkov pinned in .venv-checkov, a few system
# tools, and the Rust dependencies (fetched, not built).
# Needs the network (PyPI, crates.io); everything after it runs offline.
# `--demo`: only what the quickstart runs (the .venv with moto); the quickstart runs it beside
# its build, since pip waits on the network while cargo keeps both cores busy.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=false
case "${1:-}" in
  --demo) demo=true ;;
  "") ;;
  *) echo "setup: unknown option $1 (only --demo)" >&2; exit 2 ;;
esac

CFN_LINT_VERSION=1.58.0
MOTO_VERSION=5.2.5
CHECKOV_VERSION=3.2.500

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

have() { .venv/bin/pip show "$1" 2>/dev/null | grep -qx "Version: $2"; }
if ! have cfn-lint "$CFN_LINT_VERSION" || ! have moto "$MOTO_VERSION"; then
  if ! python3 -m venv .venv 2>/dev/null; then
    # Debian's python3 without ensurepip: the venv module comes as a package.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .venv
    else
      echo "setup: python3 -m venv failed: install python3-venv" >&2
      exit 1
    fi
  fi
  .venv/bin/pip install -q --disable-pip-version-check "cfn-lint==$CFN_LINT_VERSION" "moto[server]==$MOTO_VERSION"
fi
echo "setup: $(.venv/bin/cfn-lint --version), moto $MOTO_VERSION in .venv"
if $demo; then
  exit 0
fi

# checkov in a virtual environment of its own: its pins would fight moto's.
if ! .venv-checkov/bin/pip show checkov 2>/dev/null | grep -qx "Version: $CHECKOV_VERSION"; then
  python3 -m venv .venv-checkov
  .venv-checkov/bin/pip install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi
echo "setup: checkov $CHECKOV_VERSION in .venv-checkov"

# System tools the tests use: shellcheck (the image's scripts and userdata), systemd-analyze
# (the agent's unit), a system python3 (the agent tests' demo service runs as an
# unprivileged user, who cannot reach a python under /root), and for image releases the
# container engine (Debian's docker.io: dockerd and its CLI), a registry (docker-registry) and
# busybox-static (the test image is built from it); the tests start and stop them on
# 127.0.0.1, and pull nothing from the internet.
missing=()
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v systemd-analyze >/dev/null || missing+=(systemd)
[ -x /usr/bin/python3 ] || missing+=(python3)
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v busybox >/dev/null || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: install ${missing[*]} (apt-get) for the whole test suite" >&2
  fi
fi

# Only the crates are fetched: each command builds what it runs (the demo its binary, the tests
# their targets), and the features are aligned so that no crate is built twice between them.
cargo fetch --locked -q
echo "setup: crates fetched"
