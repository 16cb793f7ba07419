#!/bin/sh
# Install the edgeface door daemon on a Raspberry Pi OS / Debian system. Run as root.
#   sh systemd/install-door.sh [PATH-TO-EDGEFACE-SOURCE-OR-WHEEL]
# Idempotent: re-running upgrades the package and the unit, never overwrites door.toml or keys.
set -eu
SRC="${1:-.}"
PREFIX=/opt/edgeface
STATE=/var/lib/private/edgeface          # StateDirectory= with DynamicUser=yes lives here
CREDSTORE=/etc/credstore.encrypted

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
command -v systemd-creds >/dev/null || { echo "systemd >= 250 (systemd-creds) required" >&2; exit 1; }

# 1. the software, in its own virtual environment (picamera2 comes from apt on Raspberry Pi OS)
python3 -m venv --system-site-packages "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --upgrade "$SRC[pi,gpio,crypto,onnx]"

# 2. config (never overwritten) and state
install -d -m 0755 /etc/edgeface
[ -e /etc/edgeface/door.toml ] || install -m 0644 "$(dirname "$0")/../examples/door.toml" /etc/edgeface/door.toml
install -d -m 0700 /var/lib/private "$STATE" "$STATE/models" "$STATE/audit"

# 3. models: fetched and sha256-checked into the state directory
EDGEFACE_CACHE_DIR="$STATE/models" "$PREFIX/venv/bin/edgeface" models fetch mtcnn edgeface-xs

# 4. the gallery key as an encrypted credential (TPM-bound where available)
install -d -m 0700 "$CREDSTORE"
if [ ! -e "$CREDSTORE/edgeface-gallery.key" ]; then
    if [ -n "${GALLERY_KEY_FILE:-}" ]; then
        systemd-creds encrypt --name=edgeface-gallery.key "$GALLERY_KEY_FILE" "$CREDSTORE/edgeface-gallery.key"
    else
        echo "note: set GALLERY_KEY_FILE=/path/to/gallery.key to install the gallery key" >&2
    fi
fi

# 5. the unit
install -m 0644 "$(dirname "$0")/edgeface-door.service" /etc/systemd/system/edgeface-door.service
systemctl daemon-reload
echo "check:  $PREFIX/venv/bin/edgeface door --config /etc/edgeface/door.toml --check"
echo "start:  systemctl enable --now edgeface-door.service"
