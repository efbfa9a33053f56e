"""The local archive: a file store plus an SQLite index of patients, studies, series and instances.

One `Library` object is one connection: open one per thread (the GUI's browser, each import job).
SQLite's WAL mode lets them read while one writes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from app import paths
from app.dicom.patient import Patient, patient_of
from app.dicom.reading import text as _str
from app.dicom.document import ENCAPSULATED_PDF, PDF
from app.dicom.series import Instance, Series, slice_position
from app.errors import LightboxError, UsageError
from app.library import schema
from app.library.store import FileStore, StorageError, process_alive, storage_message
from app.measure.calibration import SCOPES, Calibration, ManualCalibration, apply_manual, calibration_of
from app.measure.tools import Measurement

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000


def library_root() -> Path:
    return paths.data_dir() / "library"


def fold(text: str) -> str:
    """Text as searched and matched: case, accents, '^' and extra spaces do not count."""
    text = unicodedata.normalize("NFKD", text.replace("^", " "))
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.split()).casefold()


def patient_key(patient: Patient) -> str:
    return json.dumps([patient.id.strip(), fold(patient.name), fold(patient.owner), fold(patient.species)],
                      ensure_ascii=False)


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# -- records --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StudyRecord:
    uid: str
    date: str
    time: str
    description: str
    accession: str
    referring_physician: str
    study_id: str
    modalities: str
    series_count: int
    instance_count: int
    added_at: str
    patient: Patient
    patient_pk: int

    def as_dict(self) -> dict:
        d = asdict(self)
        d["patient"] = self.patient.as_dict()
        d.pop("patient_pk")
        return d


@dataclass(frozen=True)
class SeriesRecord:
    uid: str
    study_uid: str
    modality: str
    body_part: str
    description: str
    number: int | None
    instance_count: int


@dataclass(frozen=True)
class InstanceRecord:
    sop_uid: str
    series_uid: str
    study_uid: str
    sop_class: str
    transfer_syntax: str
    rows: int | None
    columns: int | None
    frames: int
    number: int | None
    position: float | None
    file_size: int
    path: Path
    imported_at: str
    source: str


@dataclass(frozen=True)
class Conflict:
    """Two versions of one patient that Lightbox will not merge on its own."""
    kind: str  # "patient-id": one ID, another name or species; "study": a study filed under another patient
    message: str
    existing: Patient
    incoming: Patient
    study_uid: str = ""

    def as_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, "study_uid": self.study_uid,
                "existing": self.existing.as_dict(), "incoming": self.incoming.as_dict()}


@dataclass(frozen=True)
class InstanceFields:
    """What the index keeps of one instance: read once from its header (and cheap to pass between processes)."""
    sop_uid: str
    study_uid: str
    series_uid: str
    patient: Patient
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession: str = ""
    referring_physician: str = ""
    study_id: str = ""
    modality: str = ""
    body_part: str = ""
    series_description: str = ""
    series_number: int | None = None
    sop_class: str = ""
    transfer_syntax: str = ""
    rows: int | None = None
    columns: int | None = None
    frames: int = 1
    instance_number: int | None = None
    position: float | None = None


def instance_fields(ds: Dataset, microchip_issuers=(), transfer_syntax: str | None = None) -> InstanceFields:
    """`transfer_syntax` when known (else the dataset's file meta says)."""
    uids = [_str(ds, k) for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")]
    missing = [name for name, v in zip(("SOP Instance UID", "Study Instance UID", "Series Instance UID"), uids)
               if not v]
    if missing:
        raise UsageError(f"it has no {' and no '.join(missing)}, so it cannot be filed in the library")
    if transfer_syntax is None:
        meta = getattr(ds, "file_meta", None)
        transfer_syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return InstanceFields(
        *uids, patient=patient_of(ds, microchip_issuers),
        study_date=_str(ds, "StudyDate"), study_time=_str(ds, "StudyTime"),
        study_description=_str(ds, "StudyDescription"), accession=_str(ds, "AccessionNumber"),
        referring_physician=_str(ds, "ReferringPhysicianName"), study_id=_str(ds, "StudyID"),
        modality=_str(ds, "Modality"), body_part=_str(ds, "BodyPartExamined"),
        series_description=_str(ds, "SeriesDescription"), series_number=_int(_str(ds, "SeriesNumber")),
        sop_class=_str(ds, "SOPClassUID"),
        transfer_syntax=transfer_syntax,
        rows=_us(ds, 0x00280010, "Rows"), columns=_us(ds, 0x00280011, "Columns"),
        frames=_int(_str(ds, "NumberOfFrames")) or 1, instance_number=_int(_str(ds, "InstanceNumber")),
        position=_position(ds))


# A third of the time of instance_fields went to pydicom's value conversions of these few numbers: read from
# the raw elements when they are plain (else pydicom converts, as before).

def _us(ds: Dataset, tag: int, keyword: str) -> int | None:
    raw = ds.get_item(tag)
    if isinstance(raw, RawDataElement) and raw.VR in (None, "US") and raw.is_little_endian \
            and isinstance(raw.value, bytes) and len(raw.value) == 2:
        return int.from_bytes(raw.value, "little")
    return _int(ds.get(keyword))


def _position(ds: Dataset) -> float | None:
    """slice_position(ds), the same arithmetic on the raw decimal strings."""
    values = []
    for tag, count in ((0x00200032, 3), (0x00200037, 6)):
        raw = ds.get_item(tag)
        if not (isinstance(raw, RawDataElement) and raw.VR in (None, "DS") and isinstance(raw.value, bytes)):
            return slice_position(ds)
        try:
            numbers = [float(v) for v in raw.value.decode("ascii").split("\\")]
        except (UnicodeDecodeError, ValueError):
            return slice_position(ds)
        if len(numbers) != count:
            return slice_position(ds)
        values.append(numbers)
    ipp, (r0, r1, r2, c0, c1, c2) = values
    normal = (r1 * c2 - r2 * c1, r2 * c0 - r0 * c2, r0 * c1 - r1 * c0)
    return sum(a * b for a, b in zip(normal, ipp))


@dataclass
class Added:
    status: str  # "imported" | "duplicate"
    sop_uid: str
    study_uid: str
    conflicts: list[Conflict] = field(default_factory=list)


@dataclass
class CheckReport:
    partial_files_removed: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)  # rows dropped: their file was gone
    adopted_files: list[str] = field(default_factory=list)  # complete files without a row, indexed now
    unreadable_files: list[str] = field(default_factory=list)  # files without a row that do not parse

    @property
    def clean(self) -> bool:
        return not (self.partial_files_removed or self.missing_files or self.adopted_files or self.unreadable_files)


_PATIENT_COLUMNS = ("patient_id", "name", "owner", "species", "breed", "sex", "birth_date", "neutered", "microchip",
                    "owner_role", "owner_organization")
_PATIENT_FIELDS = ("id", "name", "owner", "species", "breed", "sex", "birth_date", "neutered", "microchip",
                   "owner_role", "owner_organization")
_STUDY_SELECT = (
    "SELECT s.study_uid, s.study_date, s.study_time, s.description, s.accession, s.referring_physician, s.study_id, "
    "s.modalities, s.series_count, s.instance_count, s.added_at, s.patient_pk, "
    + ", ".join(f"p.{c}" for c in _PATIENT_COLUMNS)
    + " FROM studies s JOIN patients p ON p.pk = s.patient_pk"
)
_INSTANCE_SELECT = (
    "SELECT i.sop_uid, se.series_uid, st.study_uid, i.sop_class, i.transfer_syntax, i.rows, i.columns, i.frames, "
    "i.number, i.position, i.file_size, i.path, i.imported_at, i.source "
    "FROM instances i JOIN series se ON se.pk = i.series_pk JOIN studies st ON st.pk = se.study_pk"
)


def _patient_from_row(values) -> Patient:
    return Patient(**dict(zip(_PATIENT_FIELDS, values)))


class Library:
    def __init__(self, root: Path | str | None = None, *, microchip_issuers: list[str] | tuple[str, ...] | None = None):
        self.root = Path(root) if root is not None else library_root()
        if microchip_issuers is None:
            from app import settings

            microchip_issuers = settings.load().microchip_issuers
        self.microchip_issuers = tuple(microchip_issuers)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.store = FileStore(self.root / "files")
            self.db = sqlite3.connect(self.root / "index.sqlite", isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except OSError as exc:
            raise StorageError(storage_message(exc, "the library")) from exc
        except sqlite3.Error as exc:
            raise LightboxError(f"The library index cannot be opened ({exc}).") from exc
        try:
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA foreign_keys = ON")
            schema.migrate(self.db)
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise LightboxError(f"The library index {self.root / 'index.sqlite'} is damaged ({exc}).") from exc
        except BaseException:
            self.db.close()
            raise
        self._in_batch = False
        self._batch_sops: set[str] = set()  # indexed in the open transaction; their files may not be final yet
        # Looked up or written in the open transaction (nobody else writes meanwhile): study UID -> (study pk,
        # patient pk), series UID -> pk, and (study UID, patient) pairs checked against the study's patient.
        self._studies: dict[str, tuple[int, int]] = {}
        self._series: dict[str, int] = {}
        self._matched: set[tuple[str, Patient]] = set()

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        if self._in_batch:
            self.commit()
        self.db.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def begin(self) -> None:
        if not self._in_batch:
            self.db.execute("BEGIN IMMEDIATE")
            self._in_batch = True

    def commit(self) -> None:
        if self._in_batch:
            self.db.execute("COMMIT")
            self._in_batch = False
        self._forget()

    def rollback(self) -> None:
        if self._in_batch:
            self.db.execute("ROLLBACK")
            self._in_batch = False
        self._forget()

    def _forget(self) -> None:
        self._batch_sops.clear()
        self._studies.clear()
        self._series.clear()
        self._matched.clear()

    # -- adding ---------------------------------------------------------------------------------

    def add(self, ds: Dataset, *, data: bytes | None = None, file: Path | None = None, source: str = "file") -> Added:
        """Store one instance (its bytes, or a copy of its file) and index it.

        Inside a batch (`begin` ... `commit`) the rows become visible at commit; outside, at once.
        The file is on disk, complete, before its row is written.
        """
        fields = instance_fields(ds, self.microchip_issuers)
        if self.is_stored(fields.sop_uid):
            return Added("duplicate", fields.sop_uid, fields.study_uid)
        relative = self.store.relative_path(fields.study_uid, fields.series_uid, fields.sop_uid)
        size = self.store.write(relative, data=data, source=file)
        return self.index(fields, relative, size, source)

    def has_instance(self, sop_uid: str) -> bool:
        """Whether the index has the instance (no check of its file, no change)."""
        return self.db.execute("SELECT 1 FROM instances WHERE sop_uid = ?", (sop_uid,)).fetchone() is not None

    def is_stored(self, sop_uid: str) -> bool:
        """Whether the instance is in the index with its file; a row whose file vanished is dropped."""
        old = self.db.execute("SELECT pk, path FROM instances WHERE sop_uid = ?", (sop_uid,)).fetchone()
        if old is None:
            return False
        if self.store.absolute(old[1]).is_file():
            return True
        self._delete_instance_rows([old[0]])  # its file vanished: a new copy will take its place
        return False

    def index(self, fields: InstanceFields, relative: str, size: int, source: str) -> Added:
        """Index a file already stored at `relative`."""
        own = not self._in_batch
        if own:
            self.begin()
        self.db.execute("SAVEPOINT one_instance")  # all rows of this instance, or none
        try:
            old = self.db.execute("SELECT pk, path FROM instances WHERE sop_uid = ?", (fields.sop_uid,)).fetchone()
            if old is not None and (fields.sop_uid in self._batch_sops or self.store.absolute(old[1]).is_file()):
                conflicts, status = [], "duplicate"  # twice in one batch, or already stored
            else:
                if old is not None:
                    self._delete_instance_rows([old[0]])  # its file vanished: this copy takes its place
                conflicts, status = self._index(fields, relative, size, source), "imported"
                self._batch_sops.add(fields.sop_uid)
            self.db.execute("RELEASE one_instance")
        except BaseException:
            self.db.execute("ROLLBACK TO one_instance")
            self.db.execute("RELEASE one_instance")
            self._studies.clear()  # rows written since the savepoint are gone
            self._series.clear()
            self._matched.clear()
            if own:
                self.rollback()
            raise
        if own:
            self.commit()
        return Added(status, fields.sop_uid, fields.study_uid, conflicts)

    def _index(self, f: InstanceFields, relative: str, size: int, source: str) -> list[Conflict]:
        db = self.db
        conflicts: list[Conflict] = []
        incoming = f.patient
        study = self._studies.get(f.study_uid) or db.execute(
            "SELECT pk, patient_pk FROM studies WHERE study_uid = ?", (f.study_uid,)).fetchone()
        if study is None:
            patient_pk, found = self._patient_pk(incoming)
            conflicts.extend(found)
            study_pk = db.execute(
                "INSERT INTO studies (patient_pk, study_uid, study_date, study_time, description, accession, "
                "referring_physician, study_id, search, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (patient_pk, f.study_uid, f.study_date, f.study_time, f.study_description, f.accession,
                 f.referring_physician, f.study_id, fold(f"{f.accession} {f.study_description}"), _now())).lastrowid
            self._matched.add((f.study_uid, incoming))  # the study's patient is this one, filled from it
        else:
            study_pk, patient_pk = study
            if (f.study_uid, incoming) not in self._matched:  # the same patient again: nothing new to check
                existing = self._patient(patient_pk)
                if patient_key(existing) != patient_key(incoming):
                    conflicts.append(Conflict(
                        "study",
                        f"Study {f.study_uid} is filed under {_who(existing)}, but a file of it names "
                        f"{_who(incoming)}; it was kept with the study. Check which patient is right.",
                        existing, incoming, f.study_uid))
                elif not self._fill_patient(patient_pk, existing, incoming):
                    self._matched.add((f.study_uid, incoming))
        self._studies[f.study_uid] = (study_pk, patient_pk)
        series_pk = self._series.get(f.series_uid)
        if series_pk is None:
            series = db.execute("SELECT pk FROM series WHERE series_uid = ?", (f.series_uid,)).fetchone()
            if series is None:
                series_pk = db.execute(
                    "INSERT INTO series (study_pk, series_uid, modality, body_part, description, number) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (study_pk, f.series_uid, f.modality, f.body_part,
                                                  f.series_description, f.series_number)).lastrowid
                db.execute("UPDATE studies SET series_count = series_count + 1 WHERE pk = ?", (study_pk,))
                self._update_modalities(study_pk)
            else:
                series_pk = series[0]
            self._series[f.series_uid] = series_pk
        db.execute(
            "INSERT INTO instances (series_pk, sop_uid, sop_class, transfer_syntax, rows, columns, frames, number, "
            "position, file_size, path, imported_at, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (series_pk, f.sop_uid, f.sop_class, f.transfer_syntax, f.rows, f.columns, f.frames, f.instance_number,
             f.position, size, relative, _now(), source))
        db.execute("UPDATE studies SET instance_count = instance_count + 1 WHERE pk = ?", (study_pk,))
        return conflicts

    def _patient_pk(self, incoming: Patient) -> tuple[int, list[Conflict]]:
        key = patient_key(incoming)
        row = self.db.execute("SELECT pk FROM patients WHERE match_key = ?", (key,)).fetchone()
        if row is not None:
            self._fill_patient(row[0], self._patient(row[0]), incoming)
            return row[0], []
        conflicts = []
        if incoming.id.strip():
            for (pk,) in self.db.execute("SELECT pk FROM patients WHERE patient_id = ?", (incoming.id.strip(),)):
                existing = self._patient(pk)
                differs = [what for what, a, b in (("name", existing.name, incoming.name),
                                                   ("species", existing.species, incoming.species))
                           if fold(a) != fold(b)]
                if differs:
                    conflicts.append(Conflict(
                        "patient-id",
                        f"Patient ID {incoming.id} already belongs to {_who(existing)}; this file gives "
                        f"another {' and '.join(differs)} ({_who(incoming)}). Both are kept apart.",
                        existing, incoming))
        values = [getattr(incoming, f) for f in _PATIENT_FIELDS]
        pk = self.db.execute(
            f"INSERT INTO patients (match_key, {', '.join(_PATIENT_COLUMNS)}, search) "
            f"VALUES (?, {', '.join('?' * len(_PATIENT_COLUMNS))}, ?)",
            (key, *values, _patient_search(incoming))).lastrowid
        return pk, conflicts

    def _fill_patient(self, pk: int, existing: Patient, incoming: Patient) -> bool:
        """Details the index lacks (breed, birth date ...) are taken from a later file; none are overwritten.
        Whether there were any."""
        updates = {col: getattr(incoming, f) for col, f in zip(_PATIENT_COLUMNS, _PATIENT_FIELDS)
                   if not getattr(existing, f) and getattr(incoming, f)}
        if updates:
            merged = Patient(**{**{f: getattr(existing, f) for f in _PATIENT_FIELDS},
                                **{f: getattr(incoming, f) for col, f in zip(_PATIENT_COLUMNS, _PATIENT_FIELDS)
                                   if col in updates}})
            sets = ", ".join(f"{c} = ?" for c in updates)
            self.db.execute(f"UPDATE patients SET {sets}, search = ? WHERE pk = ?",
                            (*updates.values(), _patient_search(merged), pk))
        return bool(updates)

    def _update_modalities(self, study_pk: int) -> None:
        found = sorted({m for (m,) in self.db.execute(
            "SELECT DISTINCT modality FROM series WHERE study_pk = ? AND modality != ''", (study_pk,))})
        self.db.execute("UPDATE studies SET modalities = ? WHERE pk = ?", ("\\".join(found), study_pk))

    def _patient(self, pk: int) -> Patient:
        row = self.db.execute(f"SELECT {', '.join(_PATIENT_COLUMNS)} FROM patients WHERE pk = ?", (pk,)).fetchone()
        return _patient_from_row(row)

    # -- reading --------------------------------------------------------------------------------

    def studies(self, query: str = "", *, limit: int | None = None) -> list[StudyRecord]:
        """Studies, newest first; every word of `query` must occur in the patient's name, ID, owner, species,
        breed or microchip, or in the study's accession or description."""
        sql, args = _STUDY_SELECT, []
        words = fold(query).split()
        if words:
            clauses = []
            for word in words:
                pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                clauses.append("(p.search LIKE ? ESCAPE '\\' OR s.search LIKE ? ESCAPE '\\')")
                args += [pattern, pattern]
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY s.study_date DESC, s.study_time DESC, s.pk DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        patients: dict[int, Patient] = {}  # one Patient per animal, however many studies it has
        return [_study(row, patients) for row in self.db.execute(sql, args)]

    def study(self, uid: str) -> StudyRecord:
        row = self.db.execute(_STUDY_SELECT + " WHERE s.study_uid = ?", (uid,)).fetchone()
        if row is None:
            raise UsageError(f"There is no study {uid} in the library.")
        return _study(row)

    def procedure(self, study_uid: str) -> tuple[str, str, str] | None:
        """(PACS configuration id, MPPS SOP Instance UID, state) of the study's performed procedure step."""
        row = self.db.execute("SELECT config_id, mpps_uid, state FROM procedures WHERE study_uid = ?",
                              (study_uid,)).fetchone()
        return tuple(row) if row else None

    def add_procedure(self, study_uid: str, config_id: str, mpps_uid: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO procedures (study_uid, config_id, mpps_uid, state, started_at) "
                            "VALUES (?, ?, ?, 'in progress', ?)", (study_uid, config_id, mpps_uid, _now()))

    def end_procedure(self, mpps_uid: str, state: str = "completed") -> None:
        self.db.execute("UPDATE procedures SET state = ? WHERE mpps_uid = ?", (state, mpps_uid))

    def priors(self, uid: str) -> list[StudyRecord]:
        """The same patient's other studies, newest first."""
        study = self.study(uid)
        return [_study(row) for row in self.db.execute(
            _STUDY_SELECT + " WHERE s.patient_pk = ? AND s.study_uid != ? "
            "ORDER BY s.study_date DESC, s.study_time DESC, s.pk DESC", (study.patient_pk, uid))]

    def series(self, study_uid: str) -> list[SeriesRecord]:
        self.study(study_uid)
        return [SeriesRecord(*row) for row in self.db.execute(
            "SELECT se.series_uid, st.study_uid, se.modality, se.body_part, se.description, se.number, "
            "(SELECT COUNT(*) FROM instances i WHERE i.series_pk = se.pk) "
            "FROM series se JOIN studies st ON st.pk = se.study_pk WHERE st.study_uid = ? "
            "ORDER BY se.number IS NULL, se.number, se.series_uid", (study_uid,))]

    def instances(self, *, study_uid: str | None = None, series_uid: str | None = None) -> list[InstanceRecord]:
        if series_uid is not None:
            where, arg = "se.series_uid = ?", series_uid
        elif study_uid is not None:
            where, arg = "st.study_uid = ?", study_uid
        else:
            raise ValueError("study_uid or series_uid")
        rows = self.db.execute(_INSTANCE_SELECT + f" WHERE {where} "
                               "ORDER BY se.number IS NULL, se.number, se.series_uid, i.number IS NULL, i.number, "
                               "i.position, i.sop_uid", (arg,))
        return [self._instance(row) for row in rows]

    def viewer_series(self, study_uid: str) -> list[Series]:
        """A study's series as the viewer pages through them (images and Encapsulated PDFs), straight from the
        index (no file is read)."""
        study = self.study(study_uid)
        records = {s.uid: s for s in self.series(study_uid)}
        out: dict[str, Series] = {}
        for inst in self.instances(study_uid=study_uid):
            series = out.get(inst.series_uid)
            if series is None:
                record = records[inst.series_uid]
                series = out[inst.series_uid] = Series(
                    uid=record.uid, study_uid=study_uid, modality=record.modality, number=record.number,
                    description=record.description, patient=study.patient, study_date=study.date,
                    study_description=study.description)
            if inst.rows:
                series.instances.append(Instance(inst.path, inst.sop_uid, inst.number, inst.frames, inst.position))
            elif inst.sop_class == ENCAPSULATED_PDF:  # a document the viewer shows in place of an image
                series.instances.append(Instance(inst.path, inst.sop_uid, inst.number, 1, None, PDF))
        return [s for s in out.values() if s.instances]

    def instance(self, sop_uid: str) -> InstanceRecord:
        row = self.db.execute(_INSTANCE_SELECT + " WHERE i.sop_uid = ?", (sop_uid,)).fetchone()
        if row is None:
            raise UsageError(f"There is no instance {sop_uid} in the library.")
        return self._instance(row)

    def _instance(self, row) -> InstanceRecord:
        values = list(row)
        values[11] = self.store.absolute(values[11])
        return InstanceRecord(*values)

    def counts(self) -> dict[str, int]:
        return {table: self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("patients", "studies", "series", "instances")}

    # -- removing -------------------------------------------------------------------------------

    def remove_study(self, uid: str) -> int:
        """Take a study out of the index and delete its files; returns the number of instances removed."""
        study = self.study(uid)
        self.begin()
        try:
            rows = self.db.execute(
                "SELECT i.pk, i.path FROM instances i JOIN series se ON se.pk = i.series_pk "
                "JOIN studies st ON st.pk = se.study_pk WHERE st.study_uid = ?", (uid,)).fetchall()
            self.db.executemany("INSERT OR IGNORE INTO pending_deletes (path) VALUES (?)", [(p,) for _, p in rows])
            self._forget_measurements(uid)
            self.db.execute("DELETE FROM instances WHERE series_pk IN (SELECT se.pk FROM series se "
                            "JOIN studies st ON st.pk = se.study_pk WHERE st.study_uid = ?)", (uid,))
            self.db.execute("DELETE FROM series WHERE study_pk = (SELECT pk FROM studies WHERE study_uid = ?)", (uid,))
            self.db.execute("DELETE FROM studies WHERE study_uid = ?", (uid,))
            self.db.execute("DELETE FROM patients WHERE pk = ? AND NOT EXISTS "
                            "(SELECT 1 FROM studies WHERE patient_pk = ?)", (study.patient_pk, study.patient_pk))
            self._studies.pop(uid, None)
            self._series.clear()
            self.commit()
        except BaseException:
            self.rollback()
            raise
        self._finish_deletes()
        return len(rows)

    def _delete_instance_rows(self, pks: list[int]) -> None:
        own = not self._in_batch
        if own:
            self.begin()
        for pk in pks:
            row = self.db.execute("SELECT i.path, se.study_pk FROM instances i JOIN series se ON se.pk = i.series_pk "
                                  "WHERE i.pk = ?", (pk,)).fetchone()
            if row is None:
                continue
            self.db.execute("DELETE FROM instances WHERE pk = ?", (pk,))
            self.db.execute("UPDATE studies SET instance_count = instance_count - 1 WHERE pk = ?", (row[1],))
        if own:
            self.commit()

    def _finish_deletes(self) -> None:
        # a file removed, then imported again before its deletion ran (a crash in between) is indexed: keep it
        self.db.execute("DELETE FROM pending_deletes WHERE path IN (SELECT path FROM instances)")
        for (path,) in self.db.execute("SELECT path FROM pending_deletes").fetchall():
            try:
                self.store.remove(path)
            except OSError as exc:
                log.warning("could not delete %s: %s", path, exc)
                continue
            self.db.execute("DELETE FROM pending_deletes WHERE path = ?", (path,))

    # -- measurements and manual calibrations --------------------------------------------------

    def measurements(self, sop_uid: str, frame: int | None = None) -> list[Measurement]:
        """The measurements drawn on an instance (on one frame, 0-based, when given), oldest first."""
        sql, args = "SELECT data FROM measurements WHERE sop_uid = ?", [sop_uid]
        if frame is not None:
            sql += " AND frame = ?"
            args.append(int(frame))
        rows = self.db.execute(sql + " ORDER BY frame, created_at, rowid", args).fetchall()
        return [Measurement.from_json(data) for (data,) in rows]

    def study_measurements(self, study_uid: str) -> list[tuple[InstanceRecord, Measurement]]:
        """Every measurement of a study, in the library's series and instance order."""
        out = []
        for record in self.instances(study_uid=study_uid):
            out.extend((record, m) for m in self.measurements(record.sop_uid))
        return out

    def save_measurement(self, sop_uid: str, measurement: Measurement) -> None:
        """Add a measurement to an instance of the library, or replace the one with its id."""
        if self.db.execute("SELECT 1 FROM instances WHERE sop_uid = ?", (sop_uid,)).fetchone() is None:
            raise UsageError(f"Instance {sop_uid} is not in the library: measurements are kept with images "
                             "in the library only.")
        now = _now()
        self.db.execute(
            "INSERT INTO measurements (id, sop_uid, frame, kind, data, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET sop_uid = excluded.sop_uid, "
            "frame = excluded.frame, kind = excluded.kind, data = excluded.data, updated_at = excluded.updated_at",
            (measurement.id, sop_uid, measurement.frame, measurement.kind, measurement.to_json(), now, now))

    def delete_measurement(self, measurement_id: str) -> bool:
        return self.db.execute("DELETE FROM measurements WHERE id = ?", (measurement_id,)).rowcount > 0

    def manual_calibration(self, scope: str, uid: str) -> ManualCalibration | None:
        row = self.db.execute("SELECT scope, uid, row_mm, column_mm, source, created_at FROM manual_calibrations "
                              "WHERE scope = ? AND uid = ?", (scope, uid)).fetchone()
        return ManualCalibration(*row) if row else None

    def set_manual_calibration(self, calibration: ManualCalibration) -> None:
        """Calibrate an image, a series or a study by hand (replacing its earlier manual calibration)."""
        c = calibration
        self.db.execute("INSERT OR REPLACE INTO manual_calibrations (scope, uid, row_mm, column_mm, source, "
                        "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (c.scope, c.uid, c.row_mm, c.column_mm, c.source, c.created_at or _now()))

    def remove_manual_calibration(self, scope: str, uid: str) -> bool:
        return self.db.execute("DELETE FROM manual_calibrations WHERE scope = ? AND uid = ?",
                               (scope, uid)).rowcount > 0

    def manual_calibration_for(self, sop_uid: str, series_uid: str = "",
                               study_uid: str = "") -> ManualCalibration | None:
        """The manual calibration an image is measured with: its own, else its series', else its study's."""
        if not (series_uid and study_uid):
            row = self.db.execute("SELECT se.series_uid, st.study_uid FROM instances i JOIN series se "
                                  "ON se.pk = i.series_pk JOIN studies st ON st.pk = se.study_pk WHERE i.sop_uid = ?",
                                  (sop_uid,)).fetchone()
            if row:
                series_uid, study_uid = series_uid or row[0], study_uid or row[1]
        for scope, uid in zip(SCOPES, (sop_uid, series_uid, study_uid)):
            found = self.manual_calibration(scope, uid) if uid else None
            if found:
                return found
        return None

    def calibration(self, ds: Dataset, frame: int = 0) -> Calibration:
        """The calibration measurements on frame `frame` of `ds` use: a manual one for its image, series or
        study, else what the file says."""
        manual = self.manual_calibration_for(_str(ds, "SOPInstanceUID"), _str(ds, "SeriesInstanceUID"),
                                             _str(ds, "StudyInstanceUID"))
        return apply_manual(calibration_of(ds, frame), manual)

    def _forget_measurements(self, study_uid: str) -> None:
        """Inside remove_study's transaction: the study's measurements and manual calibrations go with it."""
        sops = [sop for (sop,) in self.db.execute(
            "SELECT i.sop_uid FROM instances i JOIN series se ON se.pk = i.series_pk JOIN studies st "
            "ON st.pk = se.study_pk WHERE st.study_uid = ?", (study_uid,))]
        series = [uid for (uid,) in self.db.execute(
            "SELECT se.series_uid FROM series se JOIN studies st ON st.pk = se.study_pk WHERE st.study_uid = ?",
            (study_uid,))]
        self.db.executemany("DELETE FROM measurements WHERE sop_uid = ?", [(s,) for s in sops])
        self.db.executemany("DELETE FROM manual_calibrations WHERE scope = ? AND uid = ?",
                            [("image", s) for s in sops] + [("series", s) for s in series] + [("study", study_uid)])

    # -- consistency ----------------------------------------------------------------------------

    def importing(self, running: bool) -> None:
        """Mark (or unmark) an import under way in this process; a mark left by a killed one means: recover."""
        marker = self.root / "imports" / str(os.getpid())
        if running:
            marker.parent.mkdir(exist_ok=True)
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def recover(self) -> CheckReport | None:
        """Repair after an import that was killed: its mark remains and its process is gone."""
        folder = self.root / "imports"
        dead = [m for m in folder.glob("*") if m.name.isdigit() and not process_alive(int(m.name))] \
            if folder.is_dir() else []
        if not dead:
            return None
        report = self.check(repair=True)
        for marker in dead:
            marker.unlink(missing_ok=True)
        log.warning("recovered after an interrupted import: %s", report)
        return report

    def check(self, *, repair: bool = True) -> CheckReport:
        """Compare the index with the files: rows without files, files without rows, leftover partial files.

        With repair, rows whose file is gone are dropped, complete files without a row are indexed again
        (nothing received is lost) and partial files of imports no longer running are deleted.
        """
        from app.dicom.reading import read

        report = CheckReport()
        if repair:
            self._finish_deletes()
        for path in self.store.partial_files(abandoned_only=True):
            report.partial_files_removed.append(str(path))
            if repair:
                path.unlink(missing_ok=True)
        indexed = {}
        for pk, path in self.db.execute("SELECT pk, path FROM instances"):
            indexed[path] = pk
        on_disk = set(self.store.files())
        missing = [p for p in indexed if p not in on_disk]
        report.missing_files = [str(self.store.absolute(p)) for p in missing]
        if repair and missing:
            self._delete_instance_rows([indexed[p] for p in missing])
        for relative in sorted(on_disk - indexed.keys()):
            absolute = self.store.absolute(relative)
            try:
                ds = read(absolute, header_only=True)
            except LightboxError:
                report.unreadable_files.append(str(absolute))
                continue
            report.adopted_files.append(str(absolute))
            if repair:
                expected = self.store.relative_path(_str(ds, "StudyInstanceUID"), _str(ds, "SeriesInstanceUID"),
                                                    _str(ds, "SOPInstanceUID"))
                if expected != relative or self.db.execute("SELECT 1 FROM instances WHERE sop_uid = ?",
                                                           (_str(ds, "SOPInstanceUID"),)).fetchone():
                    report.unreadable_files.append(str(absolute))  # misplaced or a second copy: left for a person
                    report.adopted_files.pop()
                    continue
                self.index(instance_fields(ds, self.microchip_issuers), relative, absolute.stat().st_size,
                           "recovered")
        return report


def _study(row, patients: dict[int, Patient] | None = None) -> StudyRecord:
    pk = row[11]
    patient = patients.get(pk) if patients is not None else None
    if patient is None:
        patient = _patient_from_row(row[12:])
        if patients is not None:
            patients[pk] = patient
    return StudyRecord(*row[:11], patient=patient, patient_pk=pk)


def _patient_search(patient: Patient) -> str:
    return fold(" ".join((patient.name, patient.id, patient.owner, patient.species, patient.breed, patient.microchip)))


def _who(patient: Patient) -> str:
    parts = [patient.name or "(no name)"]
    if patient.species:
        parts.append(patient.species)
    if patient.owner:
        parts.append(f"owner {patient.owner}")
    return f"'{', '.join(parts)}'"



