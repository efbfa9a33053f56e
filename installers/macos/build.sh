#!/bin/sh
# macOS: build Lightbox.app with PyInstaller and install it in /Applications (for every user of this Mac).
#   installers/macos/build.sh            build dist/Lightbox.app
#   installers/macos/build.sh --install  and copy it to /Applications (asks for an administrator password)
set -eu
cd "$(dirname "$0")/../.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e '.[package]'
.venv/bin/pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller installers/pyinstaller/lightbox.spec
echo "built dist/Lightbox.app"
if [ "${1:-}" = "--install" ]; then
    sudo rm -rf /Applications/Lightbox.app
    sudo ditto dist/Lightbox.app /Applications/Lightbox.app
    # Launch Services registers the app on first launch or Finder scan; do it now for the link and .dcm.
    /System/Library/Frameworks/CoreServices.framework/Frameworks/LaunchServices.framework/Support/lsregister \
        -f /Applications/Lightbox.app
    echo "installed /Applications/Lightbox.app"
fi
