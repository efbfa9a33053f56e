"""The file store: one file per instance under study/series/SOP instance UID folders.

A file is written to `<name>.partial` beside its final name, flushed to disk, then renamed: a reader
never sees half a file, and a crash leaves at most a `.partial` file that `partial_files` finds.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from app.errors import LightboxError

PARTIAL = ".partial"
SUFFIX = ".dcm"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class StorageError(LightboxError):
    """The library cannot write: disk full, permission, a read-only medium."""


def _component(uid: str) -> str:
    """A UID as a folder or file name; anything not a clean UID gets a stable hashed name instead."""
    uid = uid.strip()
    if _UID.match(uid) and len(uid) <= 64:
        return uid
    return "x" + hashlib.sha1(uid.encode("utf-8", "surrogatepass")).hexdigest()


def storage_message(exc: OSError, what: str) -> str:
    if exc.errno == errno.ENOSPC:
        return f"The disk is full: {what} was not saved. Free some space and try again."
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"The library folder cannot be written to ({exc.strerror}): {what} was not saved."
    return f"{what} could not be saved ({exc.strerror or exc})."


class FileStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def relative_path(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        return "/".join((_component(study_uid), _component(series_uid), _component(sop_uid) + SUFFIX))

    def absolute(self, relative: str) -> Path:
        return self.root.joinpath(*relative.split("/"))

    def write(self, relative: str, data: bytes | None = None, source: Path | None = None) -> int:
        """Write bytes (or copy a file) to `relative`, atomically; returns the size written."""
        final = self.absolute(relative)
        partial = final.with_name(final.name + PARTIAL)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as out:
                if data is not None:
                    out.write(data)
                else:
                    with open(source, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
                size = out.tell()
            os.replace(partial, final)
        except OSError as exc:
            try:
                partial.unlink(missing_ok=True)
            except OSError:
                pass
            raise StorageError(storage_message(exc, final.stem)) from exc
        return size

    def remove(self, relative: str) -> None:
        path = self.absolute(relative)
        path.unlink(missing_ok=True)
        for parent in (path.parent, path.parent.parent):  # drop emptied series and study folders
            try:
                parent.rmdir()
            except OSError:
                break

    def files(self) -> Iterator[str]:
        """Every stored file, as a relative path."""
        for root, dirs, names in os.walk(self.root):
            dirs.sort()
            base = Path(root).relative_to(self.root).as_posix()
            for name in sorted(names):
                if name.endswith(SUFFIX):
                    yield name if base == "." else f"{base}/{name}"

    def partial_files(self) -> Iterator[Path]:
        for root, _dirs, names in os.walk(self.root):
            for name in names:
                if name.endswith(PARTIAL):
                    yield Path(root) / name
