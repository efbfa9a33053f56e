"""The installer definitions agree with each other and with the bundle (Windows and macOS cannot be built here)."""

from __future__ import annotations

import plistlib
import re

from tests.conftest import ROOT

INSTALLERS = ROOT / "installers"


def registry_lines() -> list[str]:
    text = "\n".join((INSTALLERS / "windows" / name).read_text() for name in ("lightbox.iss", "url-scheme.iss"))
    return [line for line in text.splitlines() if line.startswith("Root:")]


def test_the_windows_installer_is_per_user_and_includes_the_scheme():
    iss = (INSTALLERS / "windows" / "lightbox.iss").read_text()
    assert "PrivilegesRequired=lowest" in iss and "ChangesAssociations=yes" in iss
    assert '#include "url-scheme.iss"' in iss
    assert '#define AppExe "lightbox.exe"' in iss  # the name the PyInstaller spec gives the executable


def test_every_registry_entry_is_under_hkcu_and_removed_on_uninstall():
    lines = registry_lines()
    assert lines and all(line.startswith("Root: HKCU;") for line in lines)
    subkeys = [(re.search(r'Subkey: "([^"]+)"', line).group(1), line) for line in lines]
    owned = {key for key, line in subkeys if "uninsdeletekey" in line}
    assert owned == {r"Software\Classes\lightbox", r"Software\Classes\Lightbox.DICOM",
                          r"Software\Classes\Applications\{#AppExe}"}
    for key, line in subkeys:  # everything else lives under a key removed whole, or is one value
        assert any(key.startswith(o) for o in owned) or "uninsdeletevalue" in line, line
    dcm = [line for line in lines if r'"Software\Classes\.dcm' in line]
    assert dcm and all("uninsdeletevalue" in line for line in dcm)
    command = next(line for line in lines if r"lightbox\shell\open\command" in line)
    assert '""open"" ""%1"""' in command and '"URL Protocol"' in "\n".join(lines)


def test_the_macos_bundle_declares_links_and_dicom_files():
    plist = plistlib.loads((INSTALLERS / "macos" / "Info.plist").read_bytes())
    assert plist["CFBundleExecutable"] == "lightbox"  # the spec's executable
    assert plist["CFBundleURLTypes"][0]["CFBundleURLSchemes"] == ["lightbox"]
    (doc,) = plist["CFBundleDocumentTypes"]
    assert doc["LSItemContentTypes"] == ["org.nema.dicom"] and "dcm" in doc["CFBundleTypeExtensions"]
    (uti,) = plist["UTImportedTypeDeclarations"]
    assert uti["UTTypeIdentifier"] == "org.nema.dicom" and "public.data" in uti["UTTypeConformsTo"]


def test_the_linux_desktop_file_takes_links_and_dicom_files():
    entry = (INSTALLERS / "linux" / "lightbox.desktop").read_text().splitlines()
    assert "MimeType=x-scheme-handler/lightbox;application/dicom;" in entry
    assert "Icon=lightbox" in entry and (ROOT / "resources" / "icons" / "lightbox.png").is_file()


def test_nothing_changes_browser_policies():
    marks = ("software\\policies", "externalprotocoldialog", "autolaunchprotocolsfromorigins", "urlallowlist",
             "managed preferences", "defaults write", "policies.json")
    for path in INSTALLERS.rglob("*"):
        if path.is_file() and path.suffix in {".iss", ".sh", ".plist", ".desktop", ".spec", ".py"}:
            text = path.read_text().lower()
            assert not [m for m in marks if m in text], path
