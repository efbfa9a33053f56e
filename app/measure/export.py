"""A study's measurements as CSV or JSON: one row per measurement, its values computed now.

Each row names the patient, study, series, instance and frame (numbered from 1, as the command line
counts them), the kind, its first value and unit, every value, and the calibration it was measured
with. Values come from the library's measurements and calibrations (a manual one for the image,
series or study, else the file's), so they follow any later calibration.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.errors import LightboxError, UsageError
from app.measure.tools import ROI_KINDS, Result, measure, measure_image

log = logging.getLogger(__name__)

FORMATS = ("csv", "json")
COLUMNS = ("patient_name", "patient_id", "species", "breed", "owner", "study_uid", "study_date",
           "study_description", "accession", "series_uid", "series_number", "modality", "sop_uid",
           "instance_number", "frame", "measurement_id", "kind", "text", "value", "unit", "values",
           "calibration", "calibrated", "references", "warnings")


def study_results(study_uid: str, library) -> list[tuple[object, Result]]:
    """(InstanceRecord, Result) for every measurement of a study, in series and instance order."""
    from app.dicom.pixels import Image
    from app.dicom.reading import read

    study = library.study(study_uid)
    species, breed = study.patient.species, study.patient.breed
    grouped: dict[str, tuple[object, list]] = {}
    for record, m in library.study_measurements(study_uid):
        grouped.setdefault(record.sop_uid, (record, []))[1].append(m)
    out = []
    for record, measurements in grouped.values():
        needs_pixels = any(m.kind in ROI_KINDS for m in measurements)
        ds = image = None
        problem = ""
        try:
            ds = read(record.path, header_only=not needs_pixels)
            image = Image(ds, str(record.path)) if needs_pixels else None
        except LightboxError as exc:
            problem = f"the image could not be read ({exc}): values without its calibration"
            log.info("measurements of %s: %s", record.path, exc)
        for m in measurements:
            if ds is None:
                result = measure(m, species=species, breed=breed)
                result = Result(result.measurement, result.values, result.lines, result.calibration,
                                result.references, (*result.warnings, problem))
            else:
                calibration = library.calibration(ds, m.frame)
                try:
                    result = measure_image(m, image, calibration, species=species, breed=breed) if image is not None \
                        else measure(m, calibration, species=species, breed=breed)
                except LightboxError as exc:
                    result = measure(m, calibration, species=species, breed=breed)
                    result = Result(result.measurement, result.values, result.lines, result.calibration,
                                    result.references, (*result.warnings, f"pixel values unavailable ({exc})"))
            out.append((record, result))
    return out


def _number(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(value, 4)


def _values_text(result: Result) -> str:
    parts = []
    for v in result.values:
        n = _number(v.value)
        unit = v.unit if v.unit in ("", "°") else f" {v.unit}"
        parts.append(f"{v.label} {'' if n is None else f'{n:g}'}{unit}")
    return "; ".join(parts)


def measurement_rows(study_uid: str, library) -> list[dict]:
    """One dict per measurement: the COLUMNS, plus 'values_list' and 'points' for JSON."""
    study = library.study(study_uid)
    series = {s.uid: s for s in library.series(study_uid)}
    p = study.patient
    rows = []
    for record, result in study_results(study_uid, library):
        m, s = result.measurement, series.get(record.series_uid)
        first = result.primary
        rows.append({
            "patient_name": p.name, "patient_id": p.id, "species": p.species, "breed": p.breed, "owner": p.owner,
            "study_uid": study.uid, "study_date": study.date, "study_description": study.description,
            "accession": study.accession, "series_uid": record.series_uid,
            "series_number": s.number if s else None, "modality": s.modality if s else "",
            "sop_uid": record.sop_uid, "instance_number": record.number, "frame": m.frame + 1,
            "measurement_id": m.id, "kind": m.kind, "text": m.text,
            "value": _number(first.value) if first else None, "unit": first.unit if first else "",
            "values": _values_text(result), "calibration": result.calibration_label,
            "calibrated": result.calibration.calibrated, "references": " | ".join(result.references),
            "warnings": " | ".join(result.warnings),
            "values_list": [{**v.as_dict(), "value": _number(v.as_dict()["value"])} for v in result.values],
            "points": [[x, y] for x, y in m.points], "lines": list(result.lines),
        })
    return rows


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in COLUMNS})
    return buf.getvalue()


def to_json(study_uid: str, rows: list[dict]) -> str:
    items = []
    for row in rows:
        item = {k: row[k] for k in COLUMNS if k not in ("values", "references", "warnings")}
        item["values"] = row["values_list"]
        item["references"] = [r for r in row["references"].split(" | ") if r]
        item["warnings"] = [w for w in row["warnings"].split(" | ") if w]
        item["points"] = row["points"]
        item["lines"] = row["lines"]
        items.append(item)
    return json.dumps({"study_uid": study_uid, "measurements": items}, indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class MeasurementExport:
    text: str
    count: int  # measurements
    path: Path | None = None


def export_measurements(study_uid: str, *, format: str = "csv", to=None, library=None) -> MeasurementExport:
    """The study's measurements as CSV or JSON text; also written to `to` when given (replacing it)."""
    format = (format or "").strip().lower()
    if format not in FORMATS:
        raise UsageError(f"measurements export as {' or '.join(FORMATS)}, not '{format}'")
    own = library is None
    if own:
        from app.library import Library

        library = Library()
    try:
        rows = measurement_rows(study_uid, library)
    finally:
        if own:
            library.close()
    text = to_csv(rows) if format == "csv" else to_json(study_uid, rows)
    if to is not None:
        _write(Path(to), text, "utf-8-sig" if format == "csv" else "utf-8")  # the BOM lets spreadsheets read ° and ²
    return MeasurementExport(text, len(rows), Path(to) if to is not None else None)


def _write(path: Path, text: str, encoding: str) -> None:
    """Written to a temporary name beside it, flushed, then renamed."""
    from app.library.store import StorageError, storage_message

    if path.is_dir():
        raise UsageError(f"{path} is a folder: give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding=encoding, newline="") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StorageError(f"{path} cannot be written to ({exc.strerror}): the measurements were not saved.") \
                from exc
        raise StorageError(storage_message(exc, "the measurements")) from exc
