#!/usr/bin/env bash
# Runs a core subset of edgeface on arm64 (the Pi's and Jetson's architecture) under user-mode
# emulation, with no root-level system change:
#   - Debian's arm64 python3.11 and its libraries: `apt-get download` with a private apt state
#     (its own lists, cache and an empty dpkg status; never `dpkg --add-architecture`), then
#     `dpkg -x` into ROOT;
#   - aarch64 wheels: `pip download --platform manylinux2014_aarch64 --only-binary=:all:`,
#     unpacked into ROOT's site-packages;
#   - qemu-aarch64-static from Debian's qemu-user-static package, only unpacked (no binfmt
#     handler is registered: /proc/sys/fs/binfmt_misc is never touched).
# Then scripts/arm64_check.py runs under `qemu-aarch64-static -L ROOT` (one detector worker:
# an emulated program cannot start another emulated program without binfmt) and its outputs
# are compared with the same script run natively on x86.
#
#   scripts/test-arm64.sh [--root DIR] [--keep]
#
# --root DIR: build (or reuse, when DIR/.complete exists) the userland in DIR; default: a
# fresh temporary folder, removed at the end unless --keep.
# ARM64_CPU: the emulated CPU (default cortex-a72, the Raspberry Pi 4's).
# ARM64_DETECT_EVERY=k: the detection part on every k-th fixture image only (default: all
# 110; emulated floating point is ~150x slower than native, see docs/arm64.md).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
ROOT=""
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "usage: scripts/test-arm64.sh [--root DIR] [--keep]" >&2; exit 2 ;;
  esac
done
if [ -z "$ROOT" ]; then
  ROOT=$(mktemp -d /tmp/edgeface-arm64.XXXXXX)
  [ "$KEEP" = 1 ] || trap 'rm -rf "$ROOT"' EXIT
fi
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
SYSROOT=$ROOT/sysroot
QEMU=$ROOT/qemu/usr/bin/qemu-aarch64-static
SITE=$SYSROOT/usr/lib/python3/dist-packages
PY=(env -i PATH=/usr/bin:/bin HOME=/tmp LANG=C.UTF-8 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
    PYTHONPATH="$REPO:$ROOT/pylinks:$SITE" PYTHONDONTWRITEBYTECODE=1
    ARM64_DETECT_EVERY="${ARM64_DETECT_EVERY:-1}"
    "$QEMU" -cpu "${ARM64_CPU:-cortex-a72}" -L "$SYSROOT" "$SYSROOT/usr/bin/python3.11")
# the wheels the subset needs, at the versions of the x86 run's .venv (so the comparison is
# between architectures, not versions); cp311 because Debian bookworm's python is 3.11
WHEEL_PACKAGES=(numpy opencv-python-headless onnxruntime ai-edge-litert cryptography cffi
                pycparser flatbuffers packaging)

build() {
  local t0=$SECONDS apt=$ROOT/apt
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs" "$SYSROOT" \
    "$ROOT/qemu" "$ROOT/wheels" "$SITE"
  : >"$apt/status"
  local opts=(-o APT::Architecture=arm64 -o APT::Architectures=arm64
    -o Dir::State::Lists="$apt/lists" -o Dir::State::Status="$apt/status"
    -o Dir::Cache="$apt/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  echo "arm64: apt lists (private state in $apt)"
  apt-get "${opts[@]}" -qq update
  # the dependency closure of python3.11 (+ C++ runtime for the ML wheels) against an empty
  # status: a simulation, nothing is installed
  local pkgs
  pkgs=$(apt-get "${opts[@]}" -s install --no-install-recommends python3.11 libstdc++6 \
    | awk '/^Inst /{print $2}')
  echo "arm64: downloading $(echo "$pkgs" | wc -w) Debian packages"
  (cd "$apt/debs" && apt-get "${opts[@]}" -qq download $pkgs)
  for deb in "$apt/debs"/*.deb; do dpkg -x "$deb" "$SYSROOT"; done
  # qemu-user-static is an amd64 package: the host's own apt state and architecture
  (cd "$ROOT/qemu" && apt-get -qq -o APT::Sandbox::User=root download qemu-user-static \
    && dpkg -x qemu-user-static_*.deb .)
  # only the aarch64 emulator: the package holds one static qemu per architecture (430 MB)
  find "$ROOT/qemu" -type f ! -name qemu-aarch64-static -delete
  local wheels
  wheels=$(.venv/bin/python -c 'import sys; from importlib.metadata import version
print(" ".join(f"{p}=={version(p)}" for p in sys.argv[1:]))' "${WHEEL_PACKAGES[@]}")
  echo "arm64: downloading aarch64 wheels: $wheels"
  python3 -m pip download -q --no-deps --dest "$ROOT/wheels" --platform manylinux2014_aarch64 \
    --platform manylinux_2_17_aarch64 --platform manylinux_2_27_aarch64 \
    --platform manylinux_2_28_aarch64 --python-version 3.11 --implementation cp \
    --only-binary=:all: $wheels
  for whl in "$ROOT/wheels"/*.whl; do
    python3 -m zipfile -e "$whl" "$SITE"
  done
  # qemu 7.2 shows an emulated program the host's /proc/cpuinfo (x86). ONNX Runtime >= 1.28
  # parses it with the cpuinfo library, finds no ARM core and dereferences NULL on import.
  # qemu looks paths up under -L first, so the sysroot gets a Pi 4's (Cortex-A72) cpuinfo,
  # one entry per CPU the host has (the CPU topology under /sys stays the host's).
  mkdir -p "$SYSROOT/proc"
  local cpus
  cpus=$(getconf _NPROCESSORS_CONF)
  for ((i = 0; i < cpus; i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n'
    printf 'CPU part\t: 0xd08\nCPU revision\t: 3\n\n'
  done >"$SYSROOT/proc/cpuinfo"
  touch "$ROOT/.complete"
  echo "arm64: userland built in $((SECONDS - t0)) s ($(du -sh "$ROOT" | cut -f1))"
}

models() {
  # the model files both runs use, resolved (and built where needed) on x86
  local m=$ROOT/models
  mkdir -p "$m"
  .venv/bin/python - "$m" <<'PY'
import shutil, sys
from pathlib import Path
from edgeface.modelstore import resolve_model
out = Path(sys.argv[1])
for name, file in (("mtcnn", "mtcnn_weights.npz"), ("mobilefacenet-dyn", "mobilefacenet.onnx"),
                   ("edgeface-xs", "edgeface_xs.onnx")):
    if not (out / file).is_file():
        shutil.copyfile(resolve_model(name), out / file)
tfl = out / "mobilefacenet-fp32.tflite"
if not tfl.is_file():  # float TFLite from the same ONNX (TensorFlow: the tools extra)
    from edgeface_tools.quantize.tflite import onnx_to_saved_model, saved_model_to_tflite
    saved = onnx_to_saved_model(out / "mobilefacenet.onnx", out / "saved_model")
    saved_model_to_tflite(saved, tfl, precision="fp32")
    shutil.rmtree(out / "saved_model")
PY
}

[ -f "$ROOT/.complete" ] || build
models
mkdir -p "$ROOT/pylinks"
ln -sfn "$REPO/models" "$ROOT/pylinks/edgeface_models"  # the package's import name
"$QEMU" --version | head -1
"${PY[@]}" -c 'import platform, sys; print("emulated:", platform.machine(), sys.version.split()[0])'
if [ "${ARM64_BUILD_ONLY:-0}" = 1 ]; then exit 0; fi
OUT=$(mktemp -d /tmp/edgeface-arm64-out.XXXXXX)
PARTS=(detect align embed-litert embed-onnxruntime embed-edgeface gallery door)
t0=$SECONDS
for part in "${PARTS[@]}"; do
  OPENBLAS_NUM_THREADS=1 .venv/bin/python scripts/arm64_check.py run "$part" \
    --out "$OUT/x86" --models "$ROOT/models"
done
t1=$SECONDS
for part in "${PARTS[@]}"; do
  # a part that crashes under emulation (exit code, signal) is reported by the comparison
  p0=$SECONDS
  "${PY[@]}" "$REPO/scripts/arm64_check.py" run "$part" --out "$OUT/arm64" \
    --models "$ROOT/models" --gallery-from "$OUT/x86" \
    || echo "arm64: part $part exited with status $?"
  echo "arm64: part $part took $((SECONDS - p0)) s"
done
t2=$SECONDS
rc=0
.venv/bin/python scripts/arm64_check.py compare "$OUT/x86" "$OUT/arm64" || rc=$?
echo "arm64: x86 runs $((t1 - t0)) s, emulated runs $((t2 - t1)) s"
if [ "$rc" = 0 ]; then rm -rf "$OUT"; else echo "arm64: outputs kept in $OUT" >&2; fi
exit $rc
