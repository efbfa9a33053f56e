import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "sample"


@pytest.fixture(autouse=True)
def lightbox_home(tmp_path, monkeypatch):
    """Every test writes config, library and logs under its own temporary folder."""
    home = tmp_path / "lightbox-home"
    monkeypatch.setenv("LIGHTBOX_HOME", str(home))
    return home


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""
    from app.cli import main

    def run(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def lightbox_exe():
    """The command as a user runs it (a separate process)."""
    return [sys.executable, "-m", "app"]
