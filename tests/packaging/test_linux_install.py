"""installers/linux/install.sh and uninstall.sh on the built bundle, in a throw-away home folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.packaging.test_frozen import EXE

pytestmark = [pytest.mark.skipif(not EXE.is_file() or not sys.platform.startswith("linux"),
                                 reason="no frozen Linux app: run `make package` first"),
              pytest.mark.timeout(120)]

SCRIPTS = ROOT / "installers" / "linux"


def user_env(home) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and k != "PREFIX"}
    return env | {"HOME": str(home)}


def files_under(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def test_install_registers_both_types_and_uninstall_removes_exactly_that(tmp_path):
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    mimeapps = home / ".config" / "mimeapps.list"
    mimeapps.write_text("[Default Applications]\nimage/png=gimp.desktop\n")
    env = user_env(home)

    for _ in range(2):  # installing over an installed copy (an update) works the same
        run = subprocess.run([SCRIPTS / "install.sh"], env=env, capture_output=True, text=True, timeout=100)
        assert run.returncode == 0, run.stderr
    opt = home / ".local" / "opt" / "lightbox"
    launcher = home / ".local" / "bin" / "lightbox"
    desktop = (home / ".local" / "share" / "applications" / "lightbox.desktop").read_text()
    assert f'Exec="{opt}/lightbox" %u' in desktop
    assert "MimeType=x-scheme-handler/lightbox;application/dicom;" in desktop and "Icon=lightbox" in desktop
    assert (home / ".local/share/icons/hicolor/256x256/apps/lightbox.png").is_file()
    version = subprocess.run([launcher, "--version"], env=env, capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith("Lightbox ")
    if shutil.which("xdg-mime"):
        for mime in ("x-scheme-handler/lightbox", "application/dicom"):
            query = subprocess.run(["xdg-mime", "query", "default", mime], env=env, capture_output=True, text=True)
            assert query.stdout.strip() == "lightbox.desktop"

    run = subprocess.run([SCRIPTS / "uninstall.sh"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert files_under(home) == [".config/mimeapps.list"]
    assert mimeapps.read_text() == "[Default Applications]\nimage/png=gimp.desktop\n"


def test_install_refuses_to_overwrite_a_foreign_launcher(tmp_path):
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "lightbox").write_text("#!/bin/sh\necho mine\n")
    run = subprocess.run([SCRIPTS / "install.sh"], env=user_env(home), capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "not Lightbox's launcher" in run.stderr
    assert not (home / ".local" / "opt" / "lightbox").exists()
