"""What a file is about, as plain data: patient, study, series, instance."""

from __future__ import annotations

from pydicom.dataset import Dataset

from app.dicom.patient import patient_of
from app.dicom.pixels import transfer_syntax_of
from app.measure.calibration import pixel_spacing


def _s(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _int(ds: Dataset, keyword: str, default=None):
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def summary(ds: Dataset) -> dict:
    p = patient_of(ds)
    spacing = pixel_spacing(ds)
    has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    return {
        "patient": {
            "name": p.name, "id": p.id, "species": p.species, "breed": p.breed, "owner": p.owner,
            "sex": p.sex, "birth_date": p.birth_date, "neutered": p.neutered, "owner_role": p.owner_role,
        },
        "study": {
            "instance_uid": _s(ds, "StudyInstanceUID"), "date": _s(ds, "StudyDate"), "time": _s(ds, "StudyTime"),
            "description": _s(ds, "StudyDescription"), "accession": _s(ds, "AccessionNumber"),
            "referring_physician": _s(ds, "ReferringPhysicianName"),
        },
        "series": {
            "instance_uid": _s(ds, "SeriesInstanceUID"), "modality": _s(ds, "Modality"),
            "number": _int(ds, "SeriesNumber"), "description": _s(ds, "SeriesDescription"),
            "body_part": _s(ds, "BodyPartExamined"),
        },
        "instance": {
            "sop_class_uid": _s(ds, "SOPClassUID"), "sop_instance_uid": _s(ds, "SOPInstanceUID"),
            "instance_number": _int(ds, "InstanceNumber"),
            "transfer_syntax_uid": str(transfer_syntax_of(ds)),
            "rows": _int(ds, "Rows"), "columns": _int(ds, "Columns"),
            "frames": _int(ds, "NumberOfFrames") or (1 if has_pixels or _int(ds, "Rows") else 0),
            "photometric_interpretation": _s(ds, "PhotometricInterpretation") or None,
            "bits_stored": _int(ds, "BitsStored"),
            "pixel_spacing_mm": spacing.as_list() if spacing else None,
            "spacing_source": spacing.source if spacing else None,
        },
    }


def format_date(value: str) -> str:
    """DICOM's YYYYMMDD as YYYY-MM-DD; anything else as it is."""
    v = (value or "").strip()
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 and v.isdigit() else v
