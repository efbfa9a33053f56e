#!/bin/sh
# Installs the Lightbox bundle (make package -> dist/lightbox) for the current user and makes it the
# handler of lightbox:// links and DICOM files. No root, no browser policy. Undo: uninstall.sh.
#   installers/linux/install.sh [BUNDLE_DIR]      PREFIX (default ~/.local) moves everything
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bundle=${1:-$here/../../dist/lightbox}
prefix=${PREFIX:-$HOME/.local}
data=${XDG_DATA_HOME:-$HOME/.local/share}
opt=$prefix/opt/lightbox
bin=$prefix/bin/lightbox
apps=$data/applications
icon=$data/icons/hicolor/256x256/apps/lightbox.png
marker="# Lightbox launcher (installers/linux/install.sh)"

[ -x "$bundle/lightbox" ] || { echo "error: no Lightbox bundle at $bundle (run: make package)" >&2; exit 1; }
if [ -e "$bin" ] && ! grep -qF "$marker" "$bin" 2>/dev/null; then
    echo "error: $bin exists and is not Lightbox's launcher; move it away first" >&2; exit 1
fi

# The bundle: copied beside, then swapped in, so an update never leaves half of two versions.
mkdir -p "$prefix/opt" "$prefix/bin" "$apps" "$(dirname "$icon")"
rm -rf "$opt.new"
cp -R "$bundle" "$opt.new"
rm -rf "$opt"
mv "$opt.new" "$opt"

printf '#!/bin/sh\n%s\nexec "%s/lightbox" "$@"\n' "$marker" "$opt" > "$bin"
chmod 755 "$bin"
cp "$opt/_internal/resources/icons/lightbox.png" "$icon"

# Exec with the absolute path (quoted per the desktop entry spec): menus may not have ~/.local/bin on PATH.
exe=$(printf '%s' "$opt/lightbox" | sed 's/[\\"`$]/\\&/g')
sed "s|^Exec=.*|Exec=\"$exe\" %u|" "$here/lightbox.desktop" > "$apps/lightbox.desktop"

if command -v xdg-mime >/dev/null 2>&1; then
    xdg-mime default lightbox.desktop x-scheme-handler/lightbox
    xdg-mime default lightbox.desktop application/dicom
else
    echo "note: xdg-mime not found (Debian package xdg-utils): links may not open Lightbox" >&2
fi
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$apps" || true

echo "Lightbox installed in $opt (launcher: $bin)"
case ":$PATH:" in *":$prefix/bin:"*) ;; *) echo "note: $prefix/bin is not on PATH" >&2 ;; esac
