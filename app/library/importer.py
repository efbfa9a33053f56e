"""Import into the library: files, folders, zip archives, DICOMDIR sets, and photos as Secondary Capture."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
import struct
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pydicom.dataelem
import pydicom.tag
import pydicom.uid

from app.dicom.reading import part10_bytes, read
from app.errors import Cancelled, FileProblem, LightboxError
from app.library.library import Conflict, InstanceFields, Library, instance_fields
from app.library.store import FileStore, StorageError, process_alive

log = logging.getLogger(__name__)

IN_MEMORY_LIMIT = 256 << 20  # larger files are parsed and copied from disk, not held in memory
ZIP_MEMBER_LIMIT = 4 << 30
COMMIT_EVERY = 200  # instances per index transaction
COMMIT_SECONDS = 1.0
PARALLEL_FROM = 200  # files; fewer are imported in this process (starting workers costs ~0.5 s)
CHUNK = 16


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
    """One thing to import: a file, a member of a zip archive, or bytes in memory."""
    label: str
    path: Path | None = None
    archive: Path | None = None
    member: str = ""
    data: bytes | None = None
    size: int = 0
    problem: str = ""  # known to be unusable before reading


@dataclass
class _Prepared:
    """An item read, checked and (unless a duplicate) stored; the index is written by the importer."""
    label: str
    kind: str  # "stored" | "duplicate" | "failed" | "storage" | "photo"
    fields: InstanceFields | None = None
    relative: str = ""
    partial: str = ""  # written, not yet flushed and renamed: the importer publishes it with its batch
    size: int = 0
    error: str = ""
    photo: bytes | None = None


def import_paths(paths, *, library: Library | None = None, source: str = "file", context=None,
                 reporter=None, labels: dict[str, str] | None = None) -> ImportResult:
    """Import every file under `paths` (files, folders, zips, DICOMDIRs).

    JPEG and PNG files become Secondary Capture images of the patient and study in `context`
    (an app.dicom.capture.CaptureContext); without one they are reported as failed. `labels` names
    files in the result by something other than their path (a download's address).
    """
    own = library is None
    library = library or Library()
    try:
        run = _Import(library, source, context, reporter)
        run.labels = labels or {}
        return run.run([Path(p) for p in paths])
    finally:
        if own:
            library.close()


def import_datasets(items, *, library: Library | None = None, source: str, context=None,
                    reporter=None) -> ImportResult:
    """Import bytes already in memory (downloads, retrieves): items are (label, bytes) pairs."""
    own = library is None
    library = library or Library()
    try:
        run = _Import(library, source, context, reporter)
        return run.run_items([_Item(label, data=data, size=len(data)) for label, data in items], parallel=False)
    finally:
        if own:
            library.close()


class Intake:
    """Instances arriving one at a time (a retrieve, a storage SCP): each is stored and indexed as it comes,
    committed in batches; `close` commits the rest and returns the result. Use from one thread.

        with Intake(library, source="PACS") as intake:
            intake.add(label, data)
    """

    def __init__(self, library: Library, source: str, context=None):
        self._run = _Import(library, source, context, None)
        self._preparer = self._run._preparer()
        self._open = False

    @property
    def result(self) -> ImportResult:
        return self._run.result

    def __enter__(self) -> Intake:
        library = self._run.library
        library.recover()
        library.importing(True)
        library.begin()
        self._open = True
        return self

    def add(self, label: str, data: bytes) -> ImportEntry:
        """Store and index one instance; LightboxError when the library can take no more (a full disk)."""
        if self._run.result.stopped:
            raise LightboxError(self._run.result.stopped)
        if not self._run._take(self._preparer(_Item(label, data=data, size=len(data)))):
            raise LightboxError(self._run.result.stopped)
        return self._run.result.entries[-1]

    def __exit__(self, kind, exc, tb) -> None:
        if not self._open:
            return
        self._open = False
        run, library = self._run, self._run.library
        try:
            if kind is None or issubclass(kind, (Cancelled, KeyboardInterrupt, LightboxError)):
                run._commit()  # what arrived stays
            else:
                library.rollback()
                for partial, _, _ in run._batch:
                    library.store.discard(partial)
        finally:
            library.importing(False)
        log.info("import from %s: %s", run.source, run.result.summary())


class _Preparer:
    """Reads, checks and stores items. Runs in the importing process, or in worker processes."""

    def __init__(self, library_root: Path, issuers: tuple[str, ...], owner: int | None = None):
        self.store = FileStore(library_root / "files", owner)
        self.db_path = Path(library_root).absolute() / "index.sqlite"  # as_uri() needs an absolute path
        self.issuers = issuers
        self._db: sqlite3.Connection | None = None

    def _stored(self, sop_uid: str) -> bool:
        if self._db is None:
            self._db = sqlite3.connect(f"{self.db_path.as_uri()}?mode=ro", uri=True, timeout=10)
        row = self._db.execute("SELECT path FROM instances WHERE sop_uid = ?", (sop_uid,)).fetchone()
        return row is not None and self.store.absolute(row[0]).is_file()

    def __call__(self, item: _Item) -> _Prepared:
        try:
            loaded = _load(item)
            if isinstance(loaded, _Prepared):
                return loaded
            ds, data, file, syntax = loaded
            fields = instance_fields(ds, self.issuers, syntax)
            if self._stored(fields.sop_uid):
                return _Prepared(item.label, "duplicate", fields)
            relative = self.store.relative_path(fields.study_uid, fields.series_uid, fields.sop_uid)
            partial, size = self.store.write_partial(relative, data=data, source=file)
            return _Prepared(item.label, "stored", fields, relative, partial, size)
        except StorageError as exc:
            return _Prepared(item.label, "storage", error=str(exc))
        except LightboxError as exc:
            return _Prepared(item.label, "failed", error=getattr(exc, "reason", None) or str(exc))


_worker: _Preparer | None = None


def _start_worker(library_root: Path, issuers: tuple[str, ...], owner: int) -> None:
    global _worker
    _worker = _Preparer(library_root, issuers, owner)
    threading.Thread(target=_exit_with, args=(owner,), name="exit-with-importer", daemon=True).start()


def _exit_with(owner: int) -> None:
    """End this worker when the importing process is gone (killed): a pool's workers would wait forever."""
    parent = os.getppid()
    while os.getppid() == parent and process_alive(owner):
        time.sleep(0.5)
    os._exit(1)


def _prepare_chunk(items: list[_Item]) -> list[_Prepared]:
    return [_worker(item) for item in items]


class _Import:
    def __init__(self, library: Library, source: str, context, reporter):
        self.library = library
        self.source = source
        self.context = context.resolved() if context is not None else None
        self.reporter = reporter
        self.result = ImportResult()
        self.labels: dict[str, str] = {}
        self._captured = 0
        self._conflict_keys: set[tuple] = set()
        self._own_preparer: _Preparer | None = None
        self._batch: list[tuple[str, str, int]] = []  # (partial, relative, entry index) awaiting publish
        self._last_commit = time.monotonic()

    def run(self, paths: list[Path]) -> ImportResult:
        if self.reporter:
            self.reporter.update(0, None, "Looking for files")
        items: list[_Item] = []
        for path in paths:
            items.extend(self._expand(path))
            if self.reporter:
                self.reporter.check()
        return self.run_items(items)

    def run_items(self, items: list[_Item], parallel: bool = True) -> ImportResult:
        library, reporter = self.library, self.reporter
        library.recover()
        library.importing(True)
        if reporter:
            reporter.update(0, len(items), f"Importing {len(items)} file{'s' if len(items) != 1 else ''}")
        library.begin()
        try:
            if parallel and len(items) >= PARALLEL_FROM and (os.cpu_count() or 1) > 1:
                self._parallel(items)
            else:
                preparer = self._preparer()
                for n, item in enumerate(items):
                    if reporter and n % 8 == 0:
                        reporter.update(n)
                    if not self._take(preparer(item)):
                        break
            self._commit()
        except (Cancelled, KeyboardInterrupt):
            self._commit()  # what was imported stays imported
            raise
        except BaseException:
            library.rollback()
            for partial, _, _ in self._batch:
                library.store.discard(partial)
            raise
        finally:
            library.importing(False)
        if reporter:
            reporter.update(len(items), message=self.result.summary())
        log.info("import from %s: %s", self.source, self.result.summary())
        return self.result

    def _parallel(self, items: list[_Item]) -> None:
        """Worker processes read and store (both cores busy, fsyncs overlapped); this one indexes, in order."""
        workers = min(8, os.cpu_count() or 1)  # more only adds contention: the flushes are batched
        context = multiprocessing.get_context("spawn")  # never fork a process that may run Qt threads
        chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
        done = 0
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                 initargs=(self.library.root, self.library.microchip_issuers, os.getpid())) as pool:
            futures = [pool.submit(_prepare_chunk, chunk) for chunk in chunks]
            consumed = 0  # futures whose results were taken
            try:
                for n, future in enumerate(futures):
                    if self.reporter:
                        self.reporter.update(done)
                    try:
                        prepared = future.result()
                    except BrokenProcessPool:
                        log.warning("import workers stopped; going on in this process")
                        self._abandon(futures[n:])
                        consumed = len(futures)
                        preparer = self._preparer()
                        for item in (item for chunk in chunks[n:] for item in chunk):
                            if self.reporter:
                                self.reporter.check()
                            if not self._take(preparer(item)):
                                return
                        return
                    consumed = n + 1
                    for i, p in enumerate(prepared):
                        if not self._take(p):
                            self._discard(prepared[i + 1:])
                            self._abandon(futures[n + 1:])
                            return
                    done += len(chunks[n])
            except BaseException:
                # Cancelled: stop the queue, but index what the workers already stored.
                for f in futures[consumed:]:
                    f.cancel()
                for f in futures[consumed:]:
                    try:
                        results = f.result()
                    except (CancelledError, BrokenProcessPool):
                        continue
                    for p in results:
                        if p.kind == "stored":
                            self._take(p)
                raise

    def _abandon(self, futures) -> None:
        """Stop queued work; what finished anyway is thrown away (its partial files deleted)."""
        for f in futures:
            f.cancel()
        for f in futures:
            try:
                self._discard(f.result())
            except (CancelledError, BrokenProcessPool):
                continue

    def _discard(self, prepared: list[_Prepared]) -> None:
        for p in prepared:
            if p.partial:
                self.library.store.discard(p.partial)

    def _preparer(self) -> _Preparer:
        if self._own_preparer is None:
            self._own_preparer = _Preparer(self.library.root, self.library.microchip_issuers)
        return self._own_preparer

    def _take(self, prepared: _Prepared) -> bool:
        """Index one prepared item and record its outcome; False when the import must stop."""
        result = self.result
        if prepared.kind == "photo":
            prepared = self._capture(prepared)
        if prepared.kind == "storage":
            result.entries.append(ImportEntry(prepared.label, "failed", error=prepared.error))
            result.stopped = prepared.error
            return False
        if prepared.kind == "failed":
            result.entries.append(ImportEntry(prepared.label, "failed", error=prepared.error))
            return True
        f = prepared.fields
        if prepared.kind == "duplicate":
            result.entries.append(ImportEntry(prepared.label, "duplicate", f.sop_uid, f.study_uid))
            return True
        added = self.library.index(f, prepared.relative, prepared.size, self.source)
        result.entries.append(ImportEntry(prepared.label, added.status, added.sop_uid, added.study_uid))
        if added.status == "imported":
            self._batch.append((prepared.partial, prepared.relative, len(result.entries) - 1))
        else:
            self.library.store.discard(prepared.partial)
        for conflict in added.conflicts:
            key = (conflict.kind, conflict.study_uid, repr(conflict.existing), repr(conflict.incoming))
            if key not in self._conflict_keys:
                self._conflict_keys.add(key)
                result.conflicts.append(conflict)
        if len(self._batch) >= COMMIT_EVERY or time.monotonic() - self._last_commit > COMMIT_SECONDS:
            if not self._commit():
                return False
            self.library.begin()
        return True

    def _commit(self) -> bool:
        """Flush and rename the batch's files, then commit its rows: a row never names a missing file."""
        batch, self._batch = self._batch, []
        self._last_commit = time.monotonic()
        try:
            self.library.store.publish([(partial, relative) for partial, relative, _ in batch])
        except StorageError as exc:
            self.library.rollback()
            for _, _, index in batch:
                self.result.entries[index].status = "failed"
                self.result.entries[index].error = str(exc)
            self.result.stopped = str(exc)
            return False
        self.library.commit()
        return True

    def _capture(self, prepared: _Prepared) -> _Prepared:
        """A photo becomes a Secondary Capture image of the context's patient and study."""
        from app.dicom.capture import capture_kind, secondary_capture

        kind = capture_kind(prepared.photo[:16]) or "photo"
        if self.context is None:
            return _Prepared(prepared.label, "failed", error=f"a {kind.upper()} image: to import photos, say "
                             "which patient and study they belong to")
        self._captured += 1
        try:
            ds = secondary_capture(prepared.photo, self.context, name=os.path.basename(prepared.label),
                                   instance_number=self._captured)
        except LightboxError as exc:
            return _Prepared(prepared.label, "failed", error=getattr(exc, "reason", None) or str(exc))
        return self._preparer()(_Item(prepared.label, data=part10_bytes(ds)))

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
        label = self.labels.get(str(path), str(path))
        try:
            size = path.stat().st_size
            with open(path, "rb") as fp:
                head = fp.read(4)
        except FileNotFoundError:
            yield _Item(label, problem="file not found")
            return
        except PermissionError:
            yield _Item(label, problem="permission denied")
            return
        except OSError as exc:
            yield _Item(label, problem=f"cannot be read ({exc.strerror or exc})")
            return
        if head == b"PK\x03\x04" and zipfile.is_zipfile(path):
            yield from self._zip(path, label)
        else:
            yield _Item(label, path, size=size)

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

    def _zip(self, path: Path, label: str) -> Iterator[_Item]:
        try:
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
        except (zipfile.BadZipFile, OSError) as exc:
            yield _Item(label, problem=f"damaged zip archive ({exc})")
            return
        for member in members:
            name = member.filename
            base = name.rsplit("/", 1)[-1]
            if base.startswith(".") or "__MACOSX/" in name or base.upper() == "DICOMDIR":
                continue
            yield _Item(f"{label}/{name}", archive=path, member=name, size=member.file_size)


def _load(item: _Item):
    """(dataset, bytes or None, file or None, transfer syntax or None: the dataset's file meta says) to store; or
    a _Prepared for a photo or a known problem."""
    if item.problem:
        raise FileProblem(item.label, item.problem)
    if item.path is not None and item.size > IN_MEMORY_LIMIT:
        ds = read(item.path, name=item.label)
        if _has_file_meta_on_disk(item.path):
            return ds, None, item.path, None
        return ds, part10_bytes(ds), None, None
    if item.data is not None:
        data = item.data
    elif item.archive is not None:
        data = _zip_member(item.archive, item.member, item.label)
    else:
        try:
            data = item.path.read_bytes()
        except PermissionError:
            raise FileProblem(item.label, "permission denied") from None
        except OSError as exc:
            raise FileProblem(item.label, f"cannot be read ({exc.strerror or exc})") from None
    if data[:3] == b"\xff\xd8\xff" or data[:8] == b"\x89PNG\r\n\x1a\n":
        return _Prepared(item.label, "photo", photo=data)
    ds, syntax = _header(data) or (read(data, name=item.label), None)
    if "DirectoryRecordSequence" in ds:
        raise FileProblem(item.label, "a DICOMDIR index, not an image (import its folder instead)")
    if data[128:132] != b"DICM":
        return ds, part10_bytes(ds), None, None  # a bare dataset: stored as a proper Part 10 file
    return ds, data, None, syntax

# -- the header of a Part 10 file in memory ------------------------------------------------------
# Indexing needs the elements before the pixel data, as a header-only read gives them. pydicom's reader spends
# ~0.2 ms a small file on the file meta, element objects and checks; this one walks the elements with struct
# to the last byte (what a full read checks: nothing truncated, nothing odd) and keeps those before the pixel
# data raw, for pydicom to convert on demand. Anything it does not expect goes to pydicom's reader instead.

_UNDEFINED = 0xFFFFFFFF
_PIXELS = 0x7FE00008  # float, double float and plain pixel data: where a header-only read stops
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_SHORT_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN", b"SH",
              b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
_VR_NAMES = {vr: vr.decode() for vr in _LONG_VRS | _SHORT_VRS}
_DEPTH = 16  # sequences nested deeper than this go to pydicom
_syntaxes: dict[str, bool] = {}  # transfer syntax -> implicit VR, for those read here


def _little_endian_syntax(uid: str) -> bool | None:
    """Implicit VR (True) or explicit VR (False) for a little endian, not deflated transfer syntax; else None."""
    if uid not in _syntaxes:
        found = pydicom.uid.UID(uid)
        usable = uid in pydicom.uid.AllTransferSyntaxes and found.is_little_endian and not found.is_deflated
        _syntaxes[uid] = found.is_implicit_VR if usable else None
    return _syntaxes[uid]


def _header(data: bytes) -> tuple[pydicom.Dataset, str] | None:
    """(the data set up to its pixel data, its transfer syntax) of Part 10 bytes; None: let pydicom read it."""
    if len(data) < 144 or data[128:132] != b"DICM":
        return None
    meta: dict = {}
    pos = _walk(data, 132, len(data), False, meta, 0, group=2)
    value = meta.get(0x00020010)
    if pos is None or value is None:
        return None
    syntax = value.value.decode("ascii", "replace").strip("\0 ")
    implicit = _little_endian_syntax(syntax)
    if implicit is None:
        return None
    found: dict = {}
    if _walk(data, pos, len(data), implicit, found, 0) != len(data) or not found:
        return None
    return _Header(found), syntax


class _Header(pydicom.Dataset):
    """A header read by _header. Plain int tags (what indexing asks for, many times a file) are looked up in it
    directly; everything else as pydicom does."""

    def __contains__(self, name) -> bool:
        return name in self._dict if type(name) is int else super().__contains__(name)

    def get_item(self, key, *, keep_deferred: bool = False):
        return self._dict.get(key) if type(key) is int else super().get_item(key, keep_deferred=keep_deferred)


def _walk(data: bytes, pos: int, end: int, implicit: bool, keep: dict | None, depth: int, group: int = -1):
    """Walk the elements in data[pos:end], stopping at an item delimiter, at the end, or (with `group`) at the
    first element of another group; where it stopped, or None when the encoding is not as expected. `keep`
    receives the elements before the pixel data as pydicom's raw elements."""
    unpack, raw, base_tag = struct.unpack_from, pydicom.dataelem.RawDataElement, pydicom.tag.BaseTag
    while pos < end:
        if pos + 8 > end:
            return None
        if implicit:
            number, element, length = unpack("<HHL", data, pos)
            vr, start = None, pos + 8
        else:
            number, element, vr, length = unpack("<HH2sH", data, pos)
            start = pos + 8
        if number == 0xFFFE or (group >= 0 and number != group):
            return pos
        if vr is not None:
            if vr in _LONG_VRS:
                if length or pos + 12 > end:  # its two reserved bytes are zero
                    return None
                length, start = unpack("<L", data, pos + 8)[0], pos + 12
            elif vr not in _SHORT_VRS:
                return None  # not explicit VR after all: pydicom's reader sorts that out
        tag = number << 16 | element
        if length == _UNDEFINED:
            if depth >= _DEPTH or not (implicit or vr == b"SQ" or (tag == 0x7FE00010 and vr in (b"OB", b"OW"))):
                return None
            stop = _sequence(data, start, end, implicit, depth, fragments=tag == 0x7FE00010)
            if stop is None:
                return None
            pos, value_end = stop, stop - 8  # the value without its sequence delimiter
        else:
            pos = value_end = start + length
            if pos > end:
                return None
        if keep is not None and tag < _PIXELS:
            keep[tag] = raw(base_tag(tag), _VR_NAMES.get(vr), length, data[start:value_end], start, implicit, True,
                            True)
    return pos


def _sequence(data: bytes, pos: int, end: int, implicit: bool, depth: int, fragments: bool) -> int | None:
    """Where the undefined-length sequence starting at `pos` ends (after its delimiter); None if it does not.
    Items of data sets are walked too; pixel data `fragments` are not."""
    unpack = struct.unpack_from
    while pos + 8 <= end:
        group, number, length = unpack("<HHL", data, pos)
        pos += 8
        if (group, number) == (0xFFFE, 0xE0DD):
            return pos if length == 0 else None
        if (group, number) != (0xFFFE, 0xE000):
            return None
        if length == _UNDEFINED:
            if fragments:
                return None
            pos = _walk(data, pos, end, implicit, None, depth + 1)
            if pos is None or pos + 8 > end or unpack("<HHL", data, pos) != (0xFFFE, 0xE00D, 0):
                return None
            pos += 8
        elif pos + length > end:
            return None
        elif fragments:
            pos += length
        else:
            if _walk(data, pos, pos + length, implicit, None, depth + 1) != pos + length:
                return None
            pos += length
    return None


_open_archive: list = []  # (path, ZipFile): the archive last read, kept open for its next member


def _zip_member(path: Path, name: str, label: str) -> bytes:
    try:
        if not _open_archive or _open_archive[0][0] != path:
            while _open_archive:
                _open_archive.pop()[1].close()
            _open_archive.append((path, zipfile.ZipFile(path)))
        archive = _open_archive[0][1]
        member = archive.getinfo(name)
        if member.file_size > ZIP_MEMBER_LIMIT:
            raise FileProblem(label, "too large to import from an archive; unpack it first")
        with archive.open(member) as fp:
            data = fp.read(ZIP_MEMBER_LIMIT + 1)
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise FileProblem(label, f"damaged in the zip archive ({exc})") from None
    except RuntimeError as exc:  # an encrypted member
        raise FileProblem(label, f"cannot be read from the zip archive ({exc})") from None
    if len(data) > ZIP_MEMBER_LIMIT:
        raise FileProblem(label, "too large to import from an archive; unpack it first")
    return data


def _has_file_meta_on_disk(path: Path) -> bool:
    with open(path, "rb") as fp:
        fp.seek(128)
        return fp.read(4) == b"DICM"
