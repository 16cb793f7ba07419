#!/usr/bin/env bash
# The test command (README, and .ci/run calls exactly this): installs everything the suite
# needs, then lint, format check and the full pytest run (slow conversion tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v systemd-analyze >/dev/null 2>&1; then
  # the unit tests run `systemd-analyze verify/security` on systemd/*.service
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
  else
    echo "systemd-analyze is missing: sudo apt-get install systemd" >&2
  fi
fi
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
