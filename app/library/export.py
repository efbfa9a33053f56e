"""Export a study from the library: DICOM files, a DICOMDIR file-set, a zip, or rendered images.

Layouts (`to` is created when missing):
- dicom:    to/SE001_DX/IM00001.dcm ... one folder per series, in the library's series/instance order;
- dicomdir: to/DICOMDIR and to/PT000000/ST000000/SE000000/IM000000 ... as pydicom's FileSet names them;
- zip:      the dicomdir layout inside one zip; `to` is the zip path (*.zip) or a folder that receives
            <patient>_<date>.zip (the pseudonym instead of the name when anonymised);
- png/jpeg: to/SE001_DX_IM00001.png, with _F001 ... per frame for multi-frame images; with
            measurements=True each frame shows its measurements and their values.

Nothing is overwritten: when a name the export needs already exists in `to`, it stops with a
UsageError before writing anything. Everything is built in a hidden staging folder beside the
result and moved into place at the end (the DICOMDIR last); on failure or cancel the staging folder
is deleted, so no partial export is left behind.

DICOM files keep their bytes: the library file is copied as it is (or, when anonymising, re-encoded
once in its own transfer syntax; the pixel data element's value is never decoded or changed). FileSet
re-saves every instance it is given (dcmread + save_as with enforce_file_format); it is given only a
header-only copy to build its records, and the real files are then put where it placed the copies.
"""

from __future__ import annotations

import copy
import errno
import logging
import os
import re
import shutil
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.fileset import FileSet

from app.errors import Cancelled, FileProblem, LightboxError, NoPixelDataError, UsageError
from app.library.anonymize import Anonymizer, burned_in
from app.library.library import InstanceRecord, Library
from app.library.store import StorageError, storage_message

log = logging.getLogger(__name__)

FORMATS = ("dicom", "dicomdir", "zip", "png", "jpeg")
DICOM_FORMATS = ("dicom", "dicomdir", "zip")
STAGING_PREFIX = ".lightbox-export-"
JPEG_QUALITY = 92

# Extra PATIENT record keys (PS3.3 F.5: any Patient IE attribute may be added): the vet's patient.
_PATIENT_RECORD_KEYS = ("PatientBirthDate", "PatientSex", "PatientSpeciesDescription", "PatientSpeciesCodeSequence",
                        "PatientBreedDescription", "PatientBreedCodeSequence", "PatientSexNeutered",
                        "ResponsiblePerson", "ResponsiblePersonRole", "ResponsibleOrganization")


@dataclass
class ExportResult:
    study_uid: str
    format: str
    destination: Path  # the folder, or the zip file
    paths: list[Path] = field(default_factory=list)  # every file written, in order
    instances: int = 0  # DICOM instances exported (or rendered, for images)
    frames: int = 0  # images written, for png/jpeg
    anonymized: bool = False
    exported_study_uid: str = ""  # the new Study Instance UID when anonymised
    uid_map_size: int = 0  # UIDs replaced by the anonymisation
    warnings: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.paths)

    def summary(self) -> str:
        what = f"{self.frames} image{'s' if self.frames != 1 else ''}" if self.format in ("png", "jpeg") else \
            f"{self.instances} instance{'s' if self.instances != 1 else ''}"
        anon = ", anonymised" if self.anonymized else ""
        return f"Exported {what} ({self.format}{anon}) to {self.destination}"

    def as_dict(self) -> dict:
        return {"study_uid": self.study_uid, "format": self.format, "destination": str(self.destination),
                "paths": [str(p) for p in self.paths], "count": self.count, "instances": self.instances,
                "frames": self.frames, "anonymized": self.anonymized, "exported_study_uid": self.exported_study_uid,
                "uid_map_size": self.uid_map_size, "warnings": list(self.warnings), "summary": self.summary()}


def export_study(study_uid: str, to, *, format: str = "dicom", anonymize: bool = False, voi=None,
                 preset: str | None = None, library: Library | None = None, reporter=None,
                 measurements: bool = False) -> ExportResult:
    """Export one study of the library to `to` (see the module's docstring for the layouts).

    `voi` (an app.dicom.display Window or VoiLut) or `preset` (a preset name) choose the window for
    png/jpeg; without them each image's own default window is used. A preset an image lacks falls back
    to that image's default (with a warning); a preset no image has is an error. With `measurements`,
    png/jpeg images show the measurements drawn on their frames, with their values.
    """
    format = (format or "").strip().lower()
    if format == "jpg":
        format = "jpeg"
    if format not in FORMATS:
        raise UsageError(f"cannot export as '{format}': choose one of {', '.join(FORMATS)}")
    if anonymize and format not in DICOM_FORMATS:
        raise UsageError("anonymising applies to DICOM exports (dicom, dicomdir, zip); "
                         "rendered images carry no patient details")
    if (voi is not None or preset) and format in DICOM_FORMATS:
        raise UsageError("a window or preset applies only to png and jpeg exports")
    if voi is not None and preset:
        raise UsageError("give a window or a preset, not both")
    if measurements and format in DICOM_FORMATS:
        raise UsageError("measurements are drawn into png and jpeg exports only")
    own = library is None
    library = library or Library()
    try:
        study = library.study(study_uid)
        records = library.instances(study_uid=study_uid)
        if not records:
            raise UsageError(f"Study {study_uid} has no files in the library.")
        missing = [r for r in records if not r.path.is_file()]
        if missing:
            raise LightboxError(f"{len(missing)} file(s) of study {study_uid} are missing from the library "
                                f"(first: {missing[0].path}); run 'lightbox library check'.")
        modalities = {s.uid: s.modality for s in library.series(study_uid)}
        job = _Export(study, _numbered(records, modalities), Path(to), format, anonymize, voi, preset, reporter)
        if measurements:
            job.marks = _marks(library, records)
        return job.run()
    finally:
        if own:
            library.close()


@dataclass
class _Item:
    record: InstanceRecord
    series_index: int  # 1-based, in the library's series order
    instance_index: int  # 1-based within its series
    modality: str

    @property
    def series_name(self) -> str:
        return f"SE{self.series_index:03d}_{_safe(self.modality) or 'OT'}"


def _numbered(records: list[InstanceRecord], modalities: dict[str, str]) -> list[_Item]:
    series_order: dict[str, int] = {}
    counts: dict[str, int] = {}
    items = []
    for record in records:
        series_order.setdefault(record.series_uid, len(series_order) + 1)
        counts[record.series_uid] = counts.get(record.series_uid, 0) + 1
        items.append(_Item(record, series_order[record.series_uid], counts[record.series_uid],
                           modalities.get(record.series_uid, "")))
    return items


class _Export:
    def __init__(self, study, items: list[_Item], to: Path, format: str, anonymize: bool, voi, preset, reporter):
        self.study = study
        self.items = items
        self.to = to
        self.format = format
        self.anonymizer = Anonymizer() if anonymize else None
        self.voi = voi
        self.preset = preset
        self.reporter = reporter
        self.done = 0
        self.total = len(items) * (2 if format == "zip" else 1)
        self.result = ExportResult(study.uid, format, to, anonymized=anonymize, exported_study_uid=study.uid)
        self.marks: dict[str, tuple[list, object]] = {}  # sop_uid -> (measurements, manual calibration), to draw

    # -- the frame of every export --------------------------------------------------------------

    def run(self) -> ExportResult:
        zip_path = self._zip_path() if self.format == "zip" else None
        root = zip_path.parent if zip_path else self.to
        if root.exists() and not root.is_dir():
            raise UsageError(f"{root} is a file, not a folder")
        self._refuse_existing(root, self._known_names(zip_path))
        created = not root.exists()
        staging = None
        try:
            try:
                root.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
            except OSError as exc:
                raise self._storage_error(exc) from exc
            self._progress("Preparing the export")
            try:
                if self.format == "dicom":
                    self._dicom_folder(staging)
                elif self.format == "dicomdir":
                    self._dicomdir(staging, staging)
                elif self.format == "zip":
                    self._zip(staging, zip_path)
                else:
                    self._images(staging)
                if self.format != "zip":
                    self._move_into_place(staging, root)
            except OSError as exc:
                raise self._storage_error(exc) from exc
        except BaseException:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            if created:
                _remove_empty(root)
            raise
        shutil.rmtree(staging, ignore_errors=True)
        if self.anonymizer is not None:
            self.result.uid_map_size = len(self.anonymizer.uid_map)
            self.result.exported_study_uid = self.anonymizer.uid_map.get(self.study.uid, self.study.uid)
        try:
            self._progress(self.result.summary(), done=self.total)
        except Cancelled:
            pass  # the export was complete before the cancel came
        log.info("%s", self.result.summary())
        return self.result

    def _zip_path(self) -> Path:
        if self.to.suffix.lower() == ".zip" and not self.to.is_dir():
            return self.to
        patient = self.study.patient
        who = self.anonymizer.pseudonym if self.anonymizer else (patient.name or patient.id or "study")
        name = f"{_safe(who) or 'study'}_{_safe(self.study.date) or 'undated'}.zip"
        return self.to / name

    def _known_names(self, zip_path: Path | None) -> list[str]:
        if zip_path is not None:
            return [zip_path.name]
        if self.format == "dicom":
            return sorted({item.series_name for item in self.items})
        if self.format == "dicomdir":
            return ["DICOMDIR"]
        return []  # images: checked once their names are known

    def _refuse_existing(self, root: Path, names) -> None:
        for name in names:
            if (root / name).exists() or (root / name).is_symlink():
                raise UsageError(f"{root / name} already exists; Lightbox does not overwrite exports: "
                                 "choose another folder or remove it first")

    def _move_into_place(self, staging: Path, root: Path) -> None:
        """Move what was built into `root`: everything else first, the DICOMDIR last."""
        entries = sorted((p for p in staging.iterdir() if not p.name.startswith(".")),
                         key=lambda p: (p.name == "DICOMDIR", p.name))
        self._refuse_existing(root, [p.name for p in entries])
        moved = []
        try:
            for entry in entries:
                os.replace(entry, root / entry.name)
                moved.append(root / entry.name)
        except BaseException:
            for path in moved:  # an export is complete or absent
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            raise
        self.result.paths = [root / p.relative_to(staging) for p in self.result.paths]

    def _storage_error(self, exc: OSError) -> StorageError:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return StorageError(f"{self.to} cannot be written to ({exc.strerror}): the export was not saved.")
        return StorageError(storage_message(exc, "the export"))

    def _progress(self, message: str | None = None, *, done: int | None = None) -> None:
        if self.reporter is not None:
            self.reporter.update(self.done if done is None else done, self.total, message)

    def _step(self, message: str | None = None) -> None:
        self.done += 1
        if self.reporter is not None and (self.done % 4 == 0 or self.done == self.total or message):
            self._progress(message)

    # -- DICOM ----------------------------------------------------------------------------------

    def _write_instance(self, item: _Item, dest: Path) -> None:
        """The instance's file at `dest`: the library's bytes, or an anonymised copy."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self.anonymizer is None:
            with open(item.record.path, "rb") as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
                _sync(out)
            return
        from app.dicom.reading import read

        ds = read(item.record.path)
        if burned_in(ds):
            self.result.warnings.append(f"{item.series_name}/IM{item.instance_index:05d}: the image says it has "
                                        "burned-in annotation; its pixels were not changed")
        self.anonymizer.anonymize(ds)
        with open(dest, "wb") as out:
            ds.save_as(out, enforce_file_format=True)
            _sync(out)

    def _dicom_folder(self, staging: Path) -> None:
        verb = "Anonymising" if self.anonymizer else "Copying"
        for item in self.items:
            width = max(5, len(str(len(self.items))))
            dest = staging / item.series_name / f"IM{item.instance_index:0{width}d}.dcm"
            self._write_instance(item, dest)
            self.result.paths.append(dest)
            self.result.instances += 1
            self._step(f"{verb} {item.series_name}" if item.instance_index == 1 else None)

    def _dicomdir(self, staging: Path, set_root: Path) -> None:
        """A DICOMDIR file-set in `set_root`, its files first built in `staging`/.files."""
        files = staging / ".files"
        verb = "Anonymising" if self.anonymizer else "Copying"
        fileset = FileSet()
        try:
            staged: dict[str, Path] = {}
            patients: dict[int, tuple] = {}  # one (record node, header) per PATIENT record
            for n, item in enumerate(self.items, 1):
                path = files / f"{n:08d}.dcm"
                self._write_instance(item, path)
                header = pydicom.dcmread(path, stop_before_pixels=True)
                _fill_record_keys(header, item)
                try:
                    instance = fileset.add(header)
                except (ValueError, KeyError, AttributeError) as exc:
                    raise FileProblem(str(item.record.path), f"cannot be listed in a DICOMDIR ({exc})") from None
                staged[instance.SOPInstanceUID] = path
                top = instance.node.ancestors[-1] if instance.node.ancestors else None
                if top is not None and top.record_type == "PATIENT":
                    patients.setdefault(id(top), (top, header))
                self.result.instances += 1
                self._step(f"{verb} {item.series_name}" if item.instance_index == 1 else None)
            for node, header in patients.values():
                _describe_patient(node, header)
            self._progress("Writing the DICOMDIR")
            set_root.mkdir(parents=True, exist_ok=True)
            fileset.write(set_root)
            written = []
            for instance in fileset:
                final = set_root / Path(instance.FileID)  # FileSet's header-only copy: replace it by the real file
                os.replace(staged[instance.SOPInstanceUID], final)
                written.append(final)
        finally:
            _discard_stage(fileset)
        shutil.rmtree(files, ignore_errors=True)
        _sync_path(set_root / "DICOMDIR")
        self.result.paths.extend([set_root / "DICOMDIR", *sorted(written)])

    def _zip(self, staging: Path, zip_path: Path) -> None:
        set_root = staging / "set"
        self._dicomdir(staging, set_root)
        partial = staging / (zip_path.name + ".partial")
        self._progress("Writing the zip archive")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            for path in self.result.paths:
                archive.write(path, path.relative_to(set_root).as_posix())
                self._step()
        with open(partial, "rb+") as fp:
            _sync(fp)
        self._refuse_existing(zip_path.parent, [zip_path.name])
        os.replace(partial, zip_path)
        self.result.paths = [zip_path]
        self.result.destination = zip_path

    # -- rendered images ------------------------------------------------------------------------

    def _images(self, staging: Path) -> None:
        from app.dicom import display
        from app.dicom.pixels import Image
        from app.dicom.reading import read

        suffix = ".png" if self.format == "png" else ".jpg"
        no_image = preset_missing = 0
        preset_found = False
        preset_error: UsageError | None = None
        width = max(5, len(str(len(self.items))))
        for item in self.items:
            if not item.record.rows:
                no_image += 1
                self._step()
                continue
            try:
                image = Image(read(item.record.path), str(item.record.path))
            except NoPixelDataError:
                no_image += 1
                self._step()
                continue
            except FileProblem as exc:
                self.result.warnings.append(f"{item.series_name}/IM{item.instance_index:05d} was not rendered: "
                                            f"{exc.reason}")
                self._step()
                continue
            base = f"{item.series_name}_IM{item.instance_index:0{width}d}"
            fwidth = max(3, len(str(image.frames)))
            for frame in range(image.frames):
                voi = self.voi
                if voi is None and self.preset:
                    try:
                        voi = display.find_preset(image, self.preset, frame).voi
                        preset_found = True
                    except UsageError as exc:
                        preset_error = preset_error or exc
                        preset_missing += 1
                if voi is None:
                    voi = display.default_voi(image, frame, auto_for_projection=False)
                try:
                    pixels = display.render(image, frame, voi)
                except FileProblem as exc:
                    self.result.warnings.append(f"{base} frame {frame + 1} was not rendered: {exc.reason}")
                    continue
                if item.record.sop_uid in self.marks:
                    pixels = self._draw_measurements(item.record.sop_uid, image, frame, pixels)
                name = base + (f"_F{frame + 1:0{fwidth}d}" if image.frames > 1 else "") + suffix
                self._refuse_existing(self.to, [name])
                dest = staging / name
                _save_picture(pixels, dest, self.format)
                self.result.paths.append(dest)
                self.result.frames += 1
                if self.reporter is not None:
                    self.reporter.check()
            self.result.instances += 1
            self._step(f"Rendering {item.series_name}" if item.instance_index == 1 else None)
        if self.preset and not preset_found:
            raise preset_error or UsageError(f"no image of the study has a preset named '{self.preset}'")
        if preset_missing:
            self.result.warnings.append(f"{preset_missing} image(s) have no preset '{self.preset}' and were "
                                        "rendered with their own default window")
        if no_image:
            self.result.warnings.append(f"{no_image} object(s) without an image were skipped")

    def _draw_measurements(self, sop_uid: str, image, frame: int, pixels):
        from app.measure.calibration import apply_manual, calibration_of
        from app.measure.drawing import draw_measurements
        from app.measure.tools import measure_image

        measurements, manual = self.marks[sop_uid]
        on_frame = [m for m in measurements if m.frame == frame]
        if not on_frame:
            return pixels
        calibration = apply_manual(calibration_of(image.ds, frame), manual)
        patient = self.study.patient
        results = []
        for m in on_frame:
            try:
                results.append(measure_image(m, image, calibration, species=patient.species, breed=patient.breed))
            except FileProblem as exc:
                self.result.warnings.append(f"a measurement on {image.label} frame {frame + 1} was not drawn: "
                                            f"{exc.reason}")
        return draw_measurements(pixels, results)


def _marks(library: Library, records: list[InstanceRecord]) -> dict[str, tuple[list, object]]:
    """The measurements of each instance that has some, with the manual calibration it is measured with."""
    out = {}
    for record in records:
        measurements = library.measurements(record.sop_uid)
        if measurements:
            manual = library.manual_calibration_for(record.sop_uid, record.series_uid, record.study_uid)
            out[record.sop_uid] = (measurements, manual)
    return out


# -- helpers ------------------------------------------------------------------------------------

def _fill_record_keys(header: pydicom.Dataset, item: _Item) -> None:
    """DICOMDIR records need some type 1 keys files may lack; only the record gets these stand-ins."""
    def empty(keyword):
        value = header.get(keyword)
        return value is None or str(value).strip() == ""

    if empty("PatientID"):
        header.PatientID = "UNKNOWN"
    if empty("StudyDate"):
        header.StudyDate = next((str(header.get(k)) for k in ("SeriesDate", "AcquisitionDate", "ContentDate")
                                 if not empty(k)), "19000101")
    if empty("StudyTime"):
        header.StudyTime = "000000"
    if empty("StudyID"):
        header.StudyID = "1"
    if empty("Modality"):
        header.Modality = "OT"
    if empty("SeriesNumber"):
        header.SeriesNumber = item.series_index
    if empty("InstanceNumber"):
        header.InstanceNumber = item.instance_index


def _discard_stage(fileset: FileSet) -> None:
    """FileSet keeps its header copies in a temporary folder until garbage collection: remove it now."""
    stage = getattr(fileset, "_stage", {}).get("t")
    if stage is not None and hasattr(stage, "cleanup"):
        stage.cleanup()


def _describe_patient(node, header: pydicom.Dataset) -> None:
    """Species, breed, sex and owner into the PATIENT record (FileSet puts only name and ID there)."""
    record = getattr(node, "_record", None)
    if record is None:  # pydicom changed: the record keeps only what FileSet puts there
        return
    for keyword in _PATIENT_RECORD_KEYS:
        if keyword in header and header[keyword].value:
            record[keyword] = copy.deepcopy(header[keyword])


def _save_picture(pixels, path: Path, format: str) -> None:
    from PIL import Image as PILImage

    picture = PILImage.fromarray(pixels)
    with open(path, "wb") as out:
        if format == "png":
            picture.save(out, format="PNG", compress_level=3)
        else:
            picture.save(out, format="JPEG", quality=JPEG_QUALITY)
        _sync(out)


def _sync(fp) -> None:
    fp.flush()
    os.fsync(fp.fileno())


def _sync_path(path: Path) -> None:
    with open(path, "rb+") as fp:
        _sync(fp)


def _safe(text: str) -> str:
    """A file-name part: accents dropped, anything but letters, digits, '.', '-' and '_' made '_'."""
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return text[:64]


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass

