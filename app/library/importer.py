"""Import into the library: files, folders, zip archives, DICOMDIR sets, and photos as Secondary Capture."""

from __future__ import annotations

import io
import logging
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from app.dicom.reading import read
from app.errors import Cancelled, FileProblem, LightboxError
from app.library.library import Conflict, Library
from app.library.store import StorageError

log = logging.getLogger(__name__)

IN_MEMORY_LIMIT = 256 << 20  # larger files are parsed and copied from disk, not held in memory
ZIP_MEMBER_LIMIT = 4 << 30
COMMIT_EVERY = 200  # instances per index transaction
COMMIT_SECONDS = 1.0


@dataclass
class ImportEntry:
    path: str
    status: str  # "imported" | "duplicate" | "failed"
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    error: str = ""

    def as_dict(self) -> dict:
        return {"path": self.path, "status": self.status, "sop_instance_uid": self.sop_instance_uid,
                "study_instance_uid": self.study_instance_uid, "error": self.error}


@dataclass
class ImportResult:
    entries: list[ImportEntry] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    stopped: str = ""  # why the import ended early (a full disk ...), else empty

    def count(self, status: str) -> int:
        return sum(1 for e in self.entries if e.status == status)

    @property
    def studies(self) -> list[str]:
        """Studies that received or already had the instances, in the order first met."""
        return list(dict.fromkeys(e.study_instance_uid for e in self.entries
                                  if e.status != "failed" and e.study_instance_uid))

    @property
    def failed(self) -> list[ImportEntry]:
        return [e for e in self.entries if e.status == "failed"]

    def summary(self) -> str:
        parts = [f"{self.count('imported')} imported"]
        if self.count("duplicate"):
            parts.append(f"{self.count('duplicate')} already in the library")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.conflicts:
            parts.append(f"{len(self.conflicts)} patient conflict{'s' if len(self.conflicts) != 1 else ''}")
        return ", ".join(parts)

    def as_dict(self) -> dict:
        return {"entries": [e.as_dict() for e in self.entries], "conflicts": [c.as_dict() for c in self.conflicts],
                "summary": self.summary(), "stopped": self.stopped}


@dataclass
class _Item:
    """One thing to import: a file on disk or a member of an archive."""
    label: str
    path: Path | None = None
    read_bytes: Callable[[], bytes] | None = None
    size: int = 0


def import_paths(paths, *, library: Library | None = None, source: str = "file", context=None,
                 reporter=None) -> ImportResult:
    """Import every file under `paths` (files, folders, zips, DICOMDIRs).

    JPEG and PNG files become Secondary Capture images of the patient and study in `context`
    (an app.dicom.capture.CaptureContext); without one they are reported as failed.
    """
    own = library is None
    library = library or Library()
    try:
        return _Import(library, source, context, reporter).run([Path(p) for p in paths])
    finally:
        if own:
            library.close()


def import_datasets(items, *, library: Library | None = None, source: str, reporter=None) -> ImportResult:
    """Import bytes already in memory (downloads, retrieves): items are (label, bytes) pairs."""
    own = library is None
    library = library or Library()
    try:
        run = _Import(library, source, None, reporter)
        return run.run_items([_Item(label, read_bytes=(lambda d=data: d), size=len(data)) for label, data in items])
    finally:
        if own:
            library.close()


class _Import:
    def __init__(self, library: Library, source: str, context, reporter):
        self.library = library
        self.source = source
        self.context = context.resolved() if context is not None else None
        self.reporter = reporter
        self.result = ImportResult()
        self._captured = 0
        self._conflict_keys: set[tuple] = set()

    def run(self, paths: list[Path]) -> ImportResult:
        if self.reporter:
            self.reporter.update(0, None, "Looking for files")
        items: list[_Item] = []
        for path in paths:
            items.extend(self._expand(path))
            if self.reporter:
                self.reporter.check()
        return self.run_items(items)

    def run_items(self, items: list[_Item]) -> ImportResult:
        library, reporter = self.library, self.reporter
        if reporter:
            reporter.update(0, len(items), f"Importing {len(items)} file{'s' if len(items) != 1 else ''}")
        last_commit, pending = time.monotonic(), 0
        library.begin()
        try:
            for n, item in enumerate(items, 1):
                if reporter and (n % 8 == 1 or n == len(items)):
                    reporter.update(n - 1)
                try:
                    self._one(item)
                except StorageError as exc:
                    self.result.entries.append(ImportEntry(item.label, "failed", error=str(exc)))
                    self.result.stopped = str(exc)
                    break
                pending += 1
                if pending >= COMMIT_EVERY or time.monotonic() - last_commit > COMMIT_SECONDS:
                    library.commit()
                    library.begin()
                    last_commit, pending = time.monotonic(), 0
            library.commit()
        except (Cancelled, KeyboardInterrupt):
            library.commit()  # what was imported stays imported
            raise
        except BaseException:
            library.rollback()
            raise
        if reporter:
            reporter.update(len(items), message=self.result.summary())
        log.info("import from %s: %s", self.source, self.result.summary())
        return self.result

    # -- finding files --------------------------------------------------------------------------

    def _expand(self, path: Path) -> Iterator[_Item]:
        if path.is_dir():
            own = self.library.root.resolve()
            for root, dirs, names in os.walk(path):
                if Path(root).resolve() == own:  # a folder holding the library itself
                    dirs[:] = []
                    continue
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if name.startswith(".") or name.upper() == "DICOMDIR":
                        continue  # the files a DICOMDIR lists are in this tree anyway
                    yield from self._file(Path(root) / name)
        elif path.name.upper() == "DICOMDIR" and path.is_file():
            yield from self._dicomdir(path)
        else:
            yield from self._file(path)

    def _file(self, path: Path) -> Iterator[_Item]:
        try:
            size = path.stat().st_size
            with open(path, "rb") as fp:
                head = fp.read(4)
        except FileNotFoundError:
            yield _Item(str(path), path, size=-1)
            return
        except OSError:
            yield _Item(str(path), path, size=0)
            return
        if head == b"PK\x03\x04" and zipfile.is_zipfile(path):
            yield from self._zip(path)
        else:
            yield _Item(str(path), path, size=size)

    def _dicomdir(self, path: Path) -> Iterator[_Item]:
        from pydicom.fileset import FileSet

        try:
            fileset = FileSet(pydicom.dcmread(path))
        except Exception as exc:  # noqa: BLE001 - a damaged DICOMDIR: import the folder it stands in
            log.info("DICOMDIR %s unreadable (%s); importing its folder", path, exc)
            yield from self._expand(path.parent)
            return
        for instance in fileset:
            yield from self._file(Path(instance.path))

    def _zip(self, path: Path) -> Iterator[_Item]:
        try:
            archive = zipfile.ZipFile(path)
            members = [m for m in archive.infolist() if not m.is_dir()]
        except (zipfile.BadZipFile, OSError) as exc:
            yield _Item(str(path), path, read_bytes=lambda: _raise(FileProblem(str(path), f"damaged zip archive ({exc})")))
            return
        for member in members:
            name = member.filename
            base = name.rsplit("/", 1)[-1]
            if base.startswith(".") or "__MACOSX/" in name or base.upper() == "DICOMDIR":
                continue
            label = f"{path}/{name}"
            yield _Item(label, read_bytes=lambda m=member, a=archive, l=label: _zip_member(a, m, l),
                        size=member.file_size)

    # -- one file -------------------------------------------------------------------------------

    def _one(self, item: _Item) -> None:
        try:
            ds, data, file = self._load(item)
            added = self.library.add(ds, data=data, file=file, source=self.source)
        except Cancelled:
            raise
        except StorageError:
            raise
        except LightboxError as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            self.result.entries.append(ImportEntry(item.label, "failed", error=reason))
            return
        self.result.entries.append(ImportEntry(item.label, added.status, added.sop_uid, added.study_uid))
        for conflict in added.conflicts:
            key = (conflict.kind, conflict.study_uid, repr(conflict.existing), repr(conflict.incoming))
            if key not in self._conflict_keys:
                self._conflict_keys.add(key)
                self.result.conflicts.append(conflict)

    def _load(self, item: _Item) -> tuple[Dataset, bytes | None, Path | None]:
        """The dataset, and the bytes (or the file) to store for it."""
        if item.size == -1:
            raise FileProblem(item.label, "file not found")
        if item.path is not None and item.size > IN_MEMORY_LIMIT:
            ds = read(item.path, name=item.label)
            if _has_file_meta_on_disk(item.path):
                return ds, None, item.path
            return ds, _part10(ds), None
        try:
            data = item.read_bytes() if item.read_bytes else item.path.read_bytes()
        except PermissionError:
            raise FileProblem(item.label, "permission denied") from None
        except OSError as exc:
            raise FileProblem(item.label, f"cannot be read ({exc.strerror or exc})") from None
        from app.dicom.capture import capture_kind, secondary_capture

        kind = capture_kind(data[:16])
        if kind:
            if self.context is None:
                raise FileProblem(item.label, f"a {kind.upper()} image: to import photos, say which patient and "
                                  "study they belong to")
            self._captured += 1
            ds = secondary_capture(data, self.context, name=os.path.basename(item.label),
                                   instance_number=self._captured)
            return ds, _part10(ds), None
        ds = read(data, name=item.label)
        if "DirectoryRecordSequence" in ds:
            raise FileProblem(item.label, "a DICOMDIR index, not an image (import its folder instead)")
        if data[128:132] != b"DICM":
            return ds, _part10(ds), None  # a bare dataset: stored as a proper Part 10 file
        return ds, data, None


def _raise(exc):
    raise exc


def _zip_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, label: str) -> bytes:
    if member.file_size > ZIP_MEMBER_LIMIT:
        raise FileProblem(label, "too large to import from an archive; unpack it first")
    try:
        with archive.open(member) as fp:
            data = fp.read(ZIP_MEMBER_LIMIT + 1)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise FileProblem(label, f"damaged in the zip archive ({exc})") from None
    except RuntimeError as exc:  # encrypted member
        raise FileProblem(label, f"cannot be read from the zip archive ({exc})") from None
    if len(data) > ZIP_MEMBER_LIMIT:
        raise FileProblem(label, "too large to import from an archive; unpack it first")
    return data


def _has_file_meta_on_disk(path: Path) -> bool:
    with open(path, "rb") as fp:
        fp.seek(128)
        return fp.read(4) == b"DICM"


def _part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()

