"""Where Lightbox keeps its files. LIGHTBOX_HOME moves all of them under one folder."""

import os
import sys
import tempfile
from pathlib import Path

import platformdirs

APP = "Lightbox"


def _home() -> Path | None:
    home = os.environ.get("LIGHTBOX_HOME")
    return Path(home).expanduser() if home else None


def _dir(kind: str) -> Path:
    home = _home()
    if home is not None:
        path = home / kind
    else:
        path = Path(getattr(platformdirs, f"user_{kind}_dir")(APP, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    return _dir("config")


def data_dir() -> Path:
    return _dir("data")


def cache_dir() -> Path:
    return _dir("cache")


def log_dir() -> Path:
    return _dir("log")


def resources_dir() -> Path:
    """Icons, stylesheet and the sample study: beside the package, or inside a frozen bundle."""
    here = Path(__file__).resolve().parent
    bundle = getattr(sys, "_MEIPASS", None)  # PyInstaller: the bundle's data folder
    frozen = [Path(bundle) / "resources"] if bundle else []
    for candidate in (*frozen, here.parent / "resources", here / "resources"):
        if candidate.is_dir():
            return candidate
    return here.parent / "resources"


def sample_study() -> Path:
    return resources_dir() / "sample"


def write_atomically(path: Path, data: bytes | str, *, private: bool = False) -> None:
    """Write a whole file or nothing: a temporary name beside it, flushed, then renamed over it.
    `private`: readable by this user only (secrets)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        if private:
            os.chmod(tmp, 0o600)
        with os.fdopen(fd, "wb") as fp:
            fp.write(data.encode("utf-8") if isinstance(data, str) else data)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
