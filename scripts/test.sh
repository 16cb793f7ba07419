#!/usr/bin/env bash
# The test command (README, and .ci/run calls exactly this): installs everything the suite
# needs, then lint, format check and the full pytest run (slow conversion tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
# System parts the suite starts for real: systemd-analyze (unit checks), a Mosquitto broker
# (fleet), Debian's Chromium driven by Playwright (kiosk; never Playwright's own download),
# OpenSSH servers on 127.0.0.1 (deploy push).
need() {  # need COMMAND PACKAGE...: install the packages when COMMAND is missing
  command -v "$1" >/dev/null 2>&1 && return 0
  shift
  if [ "$(id -u)" = 0 ]; then
    [ -n "${apt_updated:-}" ] || { apt-get update -qq; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "missing system packages: sudo apt-get install $*" >&2
  fi
}
need systemd-analyze systemd
need /usr/sbin/mosquitto mosquitto mosquitto-clients
need mosquitto_pub mosquitto-clients
need chromium chromium
need /usr/sbin/sshd openssh-server openssh-client
bash scripts/bootstrap.sh "dev"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
# Slow stage: the core subset on arm64 under emulation (docs/arm64.md; 14 min on the loaded
# 2-core dev VM, userland download and build included). Full runs only (no pytest
# arguments); EDGEFACE_SKIP_ARM64=1 skips it.
if [ $# -eq 0 ] && [ "${EDGEFACE_SKIP_ARM64:-0}" != 1 ]; then
  bash scripts/test-arm64.sh
fi
