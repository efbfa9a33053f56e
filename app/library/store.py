"""The file store: one file per instance under study/series/SOP instance UID folders.

A file is written to `<name>.<pid>-<random>.partial` beside its final name, flushed to disk, then renamed:
a reader never sees half a file, and a crash leaves at most a `.partial` file that `partial_files`
finds. Batches are flushed together (`write_partial` ... `publish`): one disk flush per batch.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from app.errors import LightboxError

PARTIAL = ".partial"
SUFFIX = ".dcm"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _load_syncfs():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


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


def process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":
        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def partial_owner(path: Path) -> int | None:
    """The process that wrote a partial file (its name carries the pid)."""
    try:
        return int(path.name[: -len(PARTIAL)].rsplit(".", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


class FileStore:
    def __init__(self, root: Path, owner: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.owner = owner or os.getpid()  # the importing process, named in partial files
        self._root = str(self.root)
        self._folders: set[str] = set()

    def relative_path(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        return "/".join((_component(study_uid), _component(series_uid), _component(sop_uid) + SUFFIX))

    def absolute(self, relative: str) -> Path:
        return self.root.joinpath(*relative.split("/"))

    def _native(self, relative: str) -> str:
        """absolute() as a string: a tenth of the time, for the few calls each file costs."""
        return os.path.join(self._root, *relative.split("/"))

    def write(self, relative: str, data: bytes | None = None, source: Path | None = None) -> int:
        """Write bytes (or copy a file) to `relative`, durably and atomically; returns the size written."""
        partial, size = self.write_partial(relative, data, source)
        self.publish([(partial, relative)])
        return size

    def write_partial(self, relative: str, data: bytes | None = None, source: Path | None = None) -> tuple[str, int]:
        """Write to a fresh partial file beside `relative` (not yet flushed); `publish` makes it final."""
        partial = f"{relative}.{self.owner}-{secrets.token_hex(4)}{PARTIAL}"
        path = self._native(partial)
        folder = os.path.dirname(path)
        try:
            if folder not in self._folders:  # made (or found) once: a series' files share it
                os.makedirs(folder, exist_ok=True)
                self._folders.add(folder)
            try:
                out = open(path, "wb")
            except FileNotFoundError:  # the folder was removed meanwhile
                os.makedirs(folder, exist_ok=True)
                out = open(path, "wb")
            with out:
                if data is not None:
                    out.write(data)
                else:
                    with open(source, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
                size = out.tell()
        except OSError as exc:
            _unlink_quietly(Path(path))
            raise StorageError(storage_message(exc, self.absolute(relative).stem)) from exc
        return partial, size

    def publish(self, written: list[tuple[str, str]]) -> None:
        """Flush partial files to the disk, then rename each to its final name: (partial, relative) pairs."""
        if not written:
            return
        try:
            self._flush([self._native(p) for p, _ in written])
            for partial, relative in written:
                os.replace(self._native(partial), self._native(relative))
        except OSError as exc:
            for partial, _ in written:
                _unlink_quietly(self.absolute(partial))
            raise StorageError(storage_message(exc, f"{len(written)} file(s)")) from exc

    def discard(self, partial: str) -> None:
        _unlink_quietly(self.absolute(partial))

    def _flush(self, paths: list[str]) -> None:
        # Linux flushes a whole batch with one syncfs(); elsewhere each file is fsynced.
        if len(paths) > 1 and _syncfs is not None:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                if _syncfs(fd) == 0:
                    return
            finally:
                os.close(fd)
        for path in paths:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

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

    def partial_files(self, *, abandoned_only: bool = False) -> Iterator[Path]:
        """Partial files; with abandoned_only, those whose writing process has gone."""
        for root, _dirs, names in os.walk(self.root):
            for name in names:
                if name.endswith(PARTIAL):
                    path = Path(root) / name
                    owner = partial_owner(path)
                    if abandoned_only and owner is not None and process_alive(owner):
                        continue
                    yield path
