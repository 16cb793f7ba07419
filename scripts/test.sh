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
if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ]; then
  # tests/test_deploy_sshd.py starts real OpenSSH servers on 127.0.0.1 (edgeface deploy push)
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null
  else
    echo "sshd is missing: sudo apt-get install openssh-server" >&2
  fi
fi
bash scripts/bootstrap.sh "dev"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
