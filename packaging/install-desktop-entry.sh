#!/usr/bin/env bash
# Install ldstudio's .desktop entry and icons for the current user (Linux, freedesktop menus).
# Run after `pip install ldstudio` (or from a checkout); for the PyInstaller bundle, pass the
# bundle's executable:  packaging/install-desktop-entry.sh /opt/ldstudio/ldstudio
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
icons="$here/../resources/icons"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
exec_cmd="${1:-ldstudio-gui}"
for size in 16 32 48 64 128 256 512; do
  install -Dm644 "$icons/ldstudio-$size.png" "$data/icons/hicolor/${size}x${size}/apps/ldstudio.png"
done
install -Dm644 "$icons/ldstudio.svg" "$data/icons/hicolor/scalable/apps/ldstudio.svg"
mkdir -p "$data/applications"
sed "s|^Exec=.*|Exec=$exec_cmd|" "$here/ldstudio.desktop" > "$data/applications/ldstudio.desktop"
command -v update-desktop-database >/dev/null && update-desktop-database "$data/applications" || true
echo "installed $data/applications/ldstudio.desktop (Exec=$exec_cmd)"
