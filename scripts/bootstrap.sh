#!/usr/bin/env bash
# Shared setup for quickstart.sh and test.sh: a virtual environment in .venv with edgeface
# installed editable with the extras named in $1, then the model files named in $2.. (default:
# all of the manifest) fetched and checked. Idempotent: a second run only verifies.
# PIP_QUIET_FLAGS (default -q) is passed to pip; the quickstart uses -qq.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-onnx}"
shift || true
py="${PYTHON:-python3}"
pipq="${PIP_QUIET_FLAGS:--q}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
# shellcheck disable=SC2086
.venv/bin/python -m pip install $pipq --upgrade pip
# shellcheck disable=SC2086
.venv/bin/python -m pip install $pipq -e ".[${extras}]"
# Weights are read from ../shared/models when present (development), else downloaded from the
# pinned upstream URLs; derived files (MTCNN .npz, dynamic-batch MobileFaceNet) are built once.
.venv/bin/edgeface models fetch "$@"
.venv/bin/edgeface models verify "$@"
