"""Make the operating system send lightbox:// links to Lightbox, for the current user only.

Linux: a .desktop file with `Exec=... %u` and `MimeType=x-scheme-handler/lightbox;` in the user's
applications folder, made the default with xdg-mime. Windows: HKEY_CURRENT_USER\\Software\\Classes\\lightbox
with "URL Protocol" and the open command. macOS: the app bundle's Info.plist declares the scheme
(installers/macos); nothing to do at run time. No browser policy or security setting is touched.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from app.errors import LightboxError

log = logging.getLogger(__name__)

SCHEME = "lightbox"
DESKTOP_ID = "lightbox-url-handler.desktop"
MIME = f"x-scheme-handler/{SCHEME}"


class RegistrationError(LightboxError):
    pass


def command() -> list[str]:
    """How the operating system should start Lightbox for a link."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "open"]
    return [sys.executable, "-m", "app", "open"]


# -- Linux ----------------------------------------------------------------------------------------

def _exec_quote(arg: str) -> str:
    """An argument for a desktop entry's Exec key (the spec's quoting rules)."""
    arg = arg.replace("%", "%%")
    if not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`='):
        return arg
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return f'"{escaped}"'


def _applications_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "applications"


def desktop_entry(cmd: list[str]) -> str:
    exec_line = " ".join(_exec_quote(a) for a in cmd) + " %u"
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Name=Lightbox",
        "GenericName=DICOM viewer",
        "Comment=Opens lightbox:// links to radiographs and studies",
        f"Exec={exec_line}",
        "Terminal=false",
        "NoDisplay=true",
        f"MimeType={MIME};",
        "Categories=Graphics;MedicalSoftware;",
        "",
    ])


def _xdg_mime(*args: str) -> str:
    tool = shutil.which("xdg-mime")
    if tool is None:
        raise RegistrationError("xdg-mime is not installed (Debian package xdg-utils); it sets the default "
                                "handler for lightbox:// links.")
    done = subprocess.run([tool, *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RegistrationError(f"xdg-mime failed: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def _register_linux(cmd: list[str]) -> str:
    folder = _applications_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DESKTOP_ID
    tmp = path.with_suffix(".tmp")
    tmp.write_text(desktop_entry(cmd), encoding="utf-8")
    os.replace(tmp, path)
    _xdg_mime("default", DESKTOP_ID, MIME)
    database = shutil.which("update-desktop-database")
    if database:
        subprocess.run([database, str(folder)], capture_output=True, timeout=30)
    return str(path)


def _unregister_linux() -> str:
    path = _applications_dir() / DESKTOP_ID
    path.unlink(missing_ok=True)
    mimeapps = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "mimeapps.list"
    if mimeapps.is_file():
        lines = mimeapps.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if not (line.startswith(f"{MIME}=") and DESKTOP_ID in line)]
        if kept != lines:
            mimeapps.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return str(path)


# -- Windows --------------------------------------------------------------------------------------

class WindowsRegistry:
    """The few registry calls needed, on HKEY_CURRENT_USER (a fake stands in for it in tests)."""

    def set_value(self, key: str, name: str, value: str) -> None:
        import winreg

        with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, key, 0, winreg.KEY_WRITE) as handle:
            winreg.SetValueEx(handle, name, 0, winreg.REG_SZ, value)

    def delete_tree(self, key: str) -> None:
        import winreg

        def delete(path: str) -> None:
            try:
                with winreg.OpenKey(winreg.HKEY_CURRENT_USER, path, 0, winreg.KEY_ALL_ACCESS) as handle:
                    while True:
                        try:
                            child = winreg.EnumKey(handle, 0)
                        except OSError:
                            break
                        delete(f"{path}\\{child}")
                winreg.DeleteKey(winreg.HKEY_CURRENT_USER, path)
            except FileNotFoundError:
                pass

        delete(key)


CLASSES_KEY = rf"Software\Classes\{SCHEME}"


def _windows_command(cmd: list[str]) -> str:
    return " ".join(f'"{a}"' for a in cmd) + ' "%1"'


def _register_windows(cmd: list[str], registry: WindowsRegistry) -> str:
    registry.set_value(CLASSES_KEY, "", "URL:Lightbox link")
    registry.set_value(CLASSES_KEY, "URL Protocol", "")
    registry.set_value(rf"{CLASSES_KEY}\DefaultIcon", "", f'"{cmd[0]}",0')
    registry.set_value(rf"{CLASSES_KEY}\shell\open\command", "", _windows_command(cmd))
    return rf"HKEY_CURRENT_USER\{CLASSES_KEY}"


# -- front door -----------------------------------------------------------------------------------

def register(*, platform: str | None = None, registry: WindowsRegistry | None = None,
             cmd: list[str] | None = None) -> str:
    """Register the scheme for this user; returns where it was written."""
    platform = platform or sys.platform
    cmd = cmd or command()
    if platform.startswith("linux") or platform.startswith("freebsd"):
        return _register_linux(cmd)
    if platform == "win32":
        return _register_windows(cmd, registry or WindowsRegistry())
    if platform == "darwin":
        raise RegistrationError("On macOS the Lightbox app registers lightbox:// links itself when it is "
                                "installed in Applications; nothing to do.")
    raise RegistrationError(f"Registering links is not supported on {platform}.")


def unregister(*, platform: str | None = None, registry: WindowsRegistry | None = None) -> str:
    platform = platform or sys.platform
    if platform.startswith("linux") or platform.startswith("freebsd"):
        return _unregister_linux()
    if platform == "win32":
        (registry or WindowsRegistry()).delete_tree(CLASSES_KEY)
        return rf"HKEY_CURRENT_USER\{CLASSES_KEY}"
    raise RegistrationError(f"Nothing to unregister on {platform}.")
