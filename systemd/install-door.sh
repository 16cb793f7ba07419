#!/bin/sh
# Install the edgeface door daemon on a Raspberry Pi OS / Debian system. Run as root.
#   sh systemd/install-door.sh [PATH-TO-EDGEFACE-SOURCE-OR-WHEEL]
# Idempotent: re-running upgrades the package and the unit, never overwrites door.toml or keys.
# Environment (optional):
#   EDGEFACE_EXTRAS   pip extras (default device,pi,gpio: runtime, gallery, camera, relay)
#   GALLERY_KEY_FILE  a gallery key to install as an encrypted systemd credential
#   BUNDLE, TRUSTED_KEY  install the models from a signed bundle (docs/deploy.md)
#   INSTALL_ROOT      install under this directory instead of / (tests, image builds):
#                     no root needed, systemctl is not called
set -eu
SRC="${1:-.}"
ROOT="${INSTALL_ROOT:-}"
EXTRAS="${EDGEFACE_EXTRAS:-device,pi,gpio}"
PREFIX="$ROOT/opt/edgeface"
ETC="$ROOT/etc/edgeface"
STATE="$ROOT/var/lib/private/edgeface"   # StateDirectory= with DynamicUser=yes lives here
CREDSTORE="$ROOT/etc/credstore.encrypted"
UNITDIR="$ROOT/etc/systemd/system"
HERE="$(cd "$(dirname "$0")" && pwd)"

if [ -z "$ROOT" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
    command -v systemd-creds >/dev/null || { echo "systemd >= 250 (systemd-creds) required" >&2; exit 1; }
fi

# 1. the software, in its own virtual environment (picamera2 comes from apt on Raspberry Pi OS)
python3 -m venv --system-site-packages "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --quiet --upgrade "$SRC[$EXTRAS]"

# 2. config (never overwritten) and state
install -d -m 0755 "$ETC"
[ -e "$ETC/door.toml" ] || install -m 0644 "$HERE/../examples/door.toml" "$ETC/door.toml"
install -d -m 0700 "$ROOT/var/lib/private" "$STATE" "$STATE/models" "$STATE/audit"

# 3. models: from a signed bundle built on the operator's workstation (BUNDLE=door-7.efb
#    TRUSTED_KEY=release.pub; docs/deploy.md), else fetched (or built from their pinned
#    sources: the device extra has everything this needs, no operator tools) and sha256-checked
if [ -n "${BUNDLE:-}" ]; then
    install -d -m 0755 "$ETC/trusted-keys"
    [ -z "${TRUSTED_KEY:-}" ] || install -m 0644 "$TRUSTED_KEY" "$ETC/trusted-keys/"
    EDGEFACE_DEVICE_ROOT="$STATE" "$PREFIX/venv/bin/edgeface" bundle install "$BUNDLE" \
        --restart-command "" --health-command ""
else
    EDGEFACE_CACHE_DIR="$STATE/models" "$PREFIX/venv/bin/edgeface" models fetch mtcnn edgeface-xs minifasnet-v2 minifasnet-v1se
fi

# 4. the gallery key as an encrypted credential (TPM-bound where available)
install -d -m 0700 "$CREDSTORE"
if [ ! -e "$CREDSTORE/edgeface-gallery.key" ]; then
    if [ -n "${GALLERY_KEY_FILE:-}" ]; then
        systemd-creds encrypt --name=edgeface-gallery.key "$GALLERY_KEY_FILE" "$CREDSTORE/edgeface-gallery.key"
    else
        echo "note: set GALLERY_KEY_FILE=/path/to/gallery.key to install the gallery key" >&2
    fi
fi

# 4b. the audit log's HMAC key: created here, only ever stored encrypted
if [ ! -e "$CREDSTORE/edgeface-audit.key" ]; then
    tmpkey="$(mktemp -u /run/edgeface-audit.key.XXXXXX)"
    "$PREFIX/venv/bin/edgeface" audit create-key "$tmpkey"
    systemd-creds encrypt --name=edgeface-audit.key "$tmpkey" "$CREDSTORE/edgeface-audit.key"
    rm -f "$tmpkey"
fi

# 5. the unit
install -d -m 0755 "$UNITDIR"
install -m 0644 "$HERE/edgeface-door.service" "$UNITDIR/edgeface-door.service"
[ -n "$ROOT" ] || systemctl daemon-reload
echo "check:  $PREFIX/venv/bin/edgeface door --config $ETC/door.toml --check"
echo "start:  systemctl enable --now edgeface-door.service"
