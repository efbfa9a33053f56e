"""lightbox:// registration for the current user: a real xdg-mime on Linux, a fake registry for Windows."""

import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

from app.desktop import scheme
from tests.conftest import ROOT


@pytest.fixture
def xdg_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    for var, sub in (("HOME", ""), ("XDG_DATA_HOME", ".local/share"), ("XDG_CONFIG_HOME", ".config")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.delenv("XDG_DATA_DIRS", raising=False)
    monkeypatch.delenv("XDG_CONFIG_DIRS", raising=False)
    return home


def xdg_default() -> str:
    tool = shutil.which("xdg-mime")
    assert tool, "xdg-mime is missing: install the Debian package xdg-utils (make test does)"
    return subprocess.run([tool, "query", "default", scheme.MIME], capture_output=True, text=True).stdout.strip()


def test_linux_registration_makes_lightbox_the_default_handler(xdg_home):
    cmd = ["/opt/Light Box/bin/python3", "-m", "app", "open"]
    where = Path(scheme.register(platform="linux", cmd=cmd))
    assert where == xdg_home / ".local/share/applications" / scheme.DESKTOP_ID
    entry = where.read_text()
    assert 'Exec="/opt/Light Box/bin/python3" -m app open %u\n' in entry  # without %u the link is lost
    assert "MimeType=x-scheme-handler/lightbox;\n" in entry
    assert xdg_default() == scheme.DESKTOP_ID
    scheme.unregister(platform="linux")
    assert not where.exists() and xdg_default() != scheme.DESKTOP_ID


def test_exec_quoting_follows_the_desktop_entry_rules():
    assert scheme._exec_quote("/usr/bin/python3") == "/usr/bin/python3"
    assert scheme._exec_quote('/a b/$x"y`z\\') == '"/a b/\\$x\\"y\\`z\\\\"'
    assert scheme._exec_quote("50%") == "50%%"


class FakeRegistry(scheme.WindowsRegistry):
    def __init__(self):
        self.values = {}

    def set_value(self, key, name, value):
        self.values[(key, name)] = value

    def delete_tree(self, key):
        for k in [k for k in self.values if k[0] == key or k[0].startswith(key + "\\")]:
            del self.values[k]


def test_windows_registration_writes_the_user_classes_key():
    registry = FakeRegistry()
    cmd = [r"C:\Program Files\Lightbox\Lightbox.exe", "open"]
    assert scheme.register(platform="win32", registry=registry, cmd=cmd) == \
        r"HKEY_CURRENT_USER\Software\Classes\lightbox"
    values = registry.values
    assert values[(r"Software\Classes\lightbox", "URL Protocol")] == ""
    assert values[(r"Software\Classes\lightbox", "")] == "URL:Lightbox link"
    assert values[(r"Software\Classes\lightbox\shell\open\command", "")] == \
        r'"C:\Program Files\Lightbox\Lightbox.exe" "open" "%1"'
    scheme.unregister(platform="win32", registry=registry)
    assert registry.values == {}


def test_the_macos_bundle_declares_the_scheme():
    with open(ROOT / "installers" / "macos" / "Info.plist", "rb") as fp:
        plist = plistlib.load(fp)
    (url_type,) = plist["CFBundleURLTypes"]
    assert url_type["CFBundleURLSchemes"] == ["lightbox"]
    with pytest.raises(scheme.RegistrationError, match="macOS"):
        scheme.register(platform="darwin")


def test_the_linux_package_desktop_file_takes_links():
    entry = (ROOT / "installers" / "linux" / "lightbox.desktop").read_text()
    exec_line = next(line for line in entry.splitlines() if line.startswith("Exec="))
    assert exec_line.endswith(" %u")
    assert "x-scheme-handler/lightbox;" in next(line for line in entry.splitlines() if line.startswith("MimeType="))


def test_the_windows_installer_registers_the_same_keys_as_register_scheme():
    iss = (ROOT / "installers" / "windows" / "url-scheme.iss").read_text()
    registry = FakeRegistry()
    scheme.register(platform="win32", registry=registry, cmd=[r"C:\Lightbox\Lightbox.exe", "open"])
    for key, name in registry.values:
        assert f'Subkey: "{key}"' in iss and f'ValueName: "{name}"' in iss
    assert '""open"" ""%1"""' in iss
