#!/bin/sh
# Removes exactly what install.sh put in place (same PREFIX / XDG_DATA_HOME), and Lightbox's default-handler
# entries; the user's library, settings and logs stay (delete the Lightbox data folders by hand).
set -eu
prefix=${PREFIX:-$HOME/.local}
data=${XDG_DATA_HOME:-$HOME/.local/share}
config=${XDG_CONFIG_HOME:-$HOME/.config}
bin=$prefix/bin/lightbox
apps=$data/applications
marker="# Lightbox launcher (installers/linux/install.sh)"

rm -rf "$prefix/opt/lightbox" "$prefix/opt/lightbox.new"
rmdir "$prefix/opt" 2>/dev/null || true
if [ -f "$bin" ] && grep -qF "$marker" "$bin"; then rm -f "$bin"; fi
rm -f "$apps/lightbox.desktop" "$data/icons/hicolor/256x256/apps/lightbox.png"

# lightbox.desktop out of the default-handler lists (xdg-mime has no "unset").
for list in "$config/mimeapps.list" "$apps/mimeapps.list"; do
    [ -f "$list" ] || continue
    awk -F= '
        /^(x-scheme-handler\/lightbox|application\/dicom)=/ {
            n = split($2, ids, ";"); kept = ""
            for (i = 1; i <= n; i++) if (ids[i] != "" && ids[i] != "lightbox.desktop") kept = kept ids[i] ";"
            if (kept != "") print $1 "=" kept
            next
        }
        { print }' "$list" > "$list.tmp" && mv "$list.tmp" "$list"
    grep -q '^[^[]' "$list" || rm -f "$list"  # nothing left but section headers
done
command -v update-desktop-database >/dev/null 2>&1 && [ -d "$apps" ] && update-desktop-database "$apps" || true
rmdir "$data/icons/hicolor/256x256/apps" "$data/icons/hicolor/256x256" 2>/dev/null || true
echo "Lightbox removed"
