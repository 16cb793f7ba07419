#!/usr/bin/env bash
# Shared setup for quickstart.sh and test.sh: a virtual environment in .venv with edgeface
# installed editable with the extras named in $1, then the model files fetched and checked.
# Idempotent: a second run only verifies.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-onnx,tools}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
# Weights are read from ../shared/models when present (development), else downloaded from the
# pinned upstream URLs; derived files (MTCNN .npz, dynamic-batch MobileFaceNet) are built once.
.venv/bin/edgeface models fetch
.venv/bin/edgeface models verify
