#!/bin/sh
# Install the edgeface kiosk on a Jetson (JetPack / Ubuntu) or a Raspberry Pi 5. Run as root.
#   sh systemd/install-kiosk.sh [PATH-TO-EDGEFACE-SOURCE-OR-WHEEL]
# Idempotent: re-running upgrades the package and the units, never overwrites kiosk.toml,
# keys or the PIN. Optional: GALLERY_KEY_FILE=/path/to/gallery.key, KIOSK_PIN=digits.
set -eu
SRC="${1:-.}"
PREFIX=/opt/edgeface
STATE=/var/lib/private/edgeface          # StateDirectory= with DynamicUser=yes lives here
CREDSTORE=/etc/credstore.encrypted
HERE="$(dirname "$0")"

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
command -v systemd-creds >/dev/null || { echo "systemd >= 250 (systemd-creds) required" >&2; exit 1; }
command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
    || echo "note: install Chromium for the screen (apt-get install chromium)" >&2

# 1. the software, in its own virtual environment (the Jetson's OpenCV/GStreamer come from apt)
python3 -m venv --system-site-packages "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --upgrade "$SRC[kiosk,crypto,onnx]"

# 2. config (never overwritten) and state
install -d -m 0755 /etc/edgeface
[ -e /etc/edgeface/kiosk.toml ] || install -m 0644 "$HERE/../examples/kiosk.toml" /etc/edgeface/kiosk.toml
install -d -m 0700 /var/lib/private "$STATE" "$STATE/models" "$STATE/kiosk"

# 3. models: fetched and sha256-checked into the state directory
EDGEFACE_CACHE_DIR="$STATE/models" "$PREFIX/venv/bin/edgeface" models fetch mtcnn mobilefacenet-dyn

# 4. the gallery key as an encrypted credential (TPM-bound where available)
install -d -m 0700 "$CREDSTORE"
if [ ! -e "$CREDSTORE/edgeface-gallery.key" ]; then
    if [ -n "${GALLERY_KEY_FILE:-}" ]; then
        systemd-creds encrypt --name=edgeface-gallery.key "$GALLERY_KEY_FILE" "$CREDSTORE/edgeface-gallery.key"
    else
        echo "note: set GALLERY_KEY_FILE=/path/to/gallery.key to install the gallery key" >&2
    fi
fi

# 5. the units: the service (system) and the screen (user unit for the kiosk's session)
install -m 0644 "$HERE/edgeface-kiosk.service" /etc/systemd/system/edgeface-kiosk.service
install -d -m 0755 /etc/systemd/user
install -m 0644 "$HERE/edgeface-kiosk-browser.service" /etc/systemd/user/edgeface-kiosk-browser.service
systemctl daemon-reload

# 6. the operator PIN, written as the service's own (dynamic) user into its state directory
as_kiosk="systemd-run --quiet --pipe --wait -p DynamicUser=yes -p User=edgeface -p StateDirectory=edgeface"
if [ -n "${KIOSK_PIN:-}" ]; then
    printf '%s\n' "$KIOSK_PIN" | $as_kiosk "$PREFIX/venv/bin/edgeface" kiosk pin --config /etc/edgeface/kiosk.toml
fi
echo "check:   $PREFIX/venv/bin/edgeface kiosk --config /etc/edgeface/kiosk.toml --check"
echo "start:   systemctl enable --now edgeface-kiosk.service"
echo "screen:  as the kiosk's auto-login user: systemctl --user enable edgeface-kiosk-browser.service"
echo "invite:  $as_kiosk $PREFIX/venv/bin/edgeface kiosk invite 'Ada Lovelace' --config /etc/edgeface/kiosk.toml"
