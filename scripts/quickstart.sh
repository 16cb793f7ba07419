#!/usr/bin/env bash
# Install edgeface and run its main job offline: detect faces and verify two photos.
# Installs only what detect + verify need (the `onnx` extra: ONNX Runtime, no TensorFlow).
# Usage: bash scripts/quickstart.sh [IMAGE_A IMAGE_B]   (defaults: two LFW photos in ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== install (.venv, edgeface[onnx]) and models"
PIP_QUIET_FLAGS=-qq bash scripts/bootstrap.sh "onnx" mtcnn edgeface-xs
lfw="../shared/data/lfw/images"
a="${1:-$lfw/Tony_Blair/Tony_Blair_0001.jpg}"
b="${2:-$lfw/Tony_Blair/Tony_Blair_0010.jpg}"
c="$lfw/Colin_Powell/Colin_Powell_0001.jpg"
echo "== detect"
.venv/bin/edgeface detect "$a" --draw quickstart-detect.png
echo "   (drawing written to quickstart-detect.png)"
# verify exits 0 for the same person and 1 for different people; anything else is an error
verify() {
  local rc=0
  .venv/bin/edgeface verify "$1" "$2" || rc=$?
  [ "$rc" -le 1 ] || exit "$rc"
}
echo "== verify: same person?"
verify "$a" "$b"
if [ $# -eq 0 ]; then
  echo "== verify: a different person"
  verify "$a" "$c"
fi
