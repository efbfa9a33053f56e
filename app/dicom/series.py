"""Files opened for viewing, grouped into series and ordered as a reader pages through them."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from app.dicom.document import PDF, document_type
from app.dicom.patient import Patient, patient_of
from app.dicom.pixels import Image
from app.dicom.reading import read
from app.errors import Cancelled, LightboxError, UsageError

log = logging.getLogger(__name__)

_IMAGE_CACHE_SIZE = 48
_IMAGE_CACHE_BYTES = 1 << 30  # files and decoded frames kept for paging back and forth
_images: OrderedDict[str, Image] = OrderedDict()
_images_lock = threading.Lock()


@dataclass
class Instance:
    path: Path
    sop_instance_uid: str
    instance_number: int | None
    frames: int
    position: float | None = None
    document: str = ""  # MIME type of an encapsulated document (a PDF) instead of an image

    def image(self) -> Image:
        """The decodable image, read in full once and kept in a small shared cache."""
        key = str(self.path)
        with _images_lock:
            if key in _images:
                _images.move_to_end(key)
                return _images[key]
        image = Image(read(self.path), str(self.path))
        with _images_lock:
            _images[key] = image
            while len(_images) > 1 and (len(_images) > _IMAGE_CACHE_SIZE or
                                        sum(i.nbytes for i in _images.values()) > _IMAGE_CACHE_BYTES):
                _images.popitem(last=False)
        return image


@dataclass
class Series:
    uid: str
    study_uid: str
    modality: str
    number: int | None
    description: str
    patient: Patient
    study_date: str
    study_description: str
    instances: list[Instance] = field(default_factory=list)

    @property
    def frame_count(self) -> int:
        return sum(i.frames for i in self.instances)

    def locate(self, position: int) -> tuple[Instance, int]:
        """The instance and frame (0-based) at a position counted over all frames of the series."""
        if not 0 <= position < self.frame_count:
            raise UsageError(f"image {position + 1} does not exist in this series of {self.frame_count}")
        for inst in self.instances:
            if position < inst.frames:
                return inst, position
            position -= inst.frames
        raise AssertionError("unreachable")

    def slice_position(self, position: int) -> float | None:
        """Where the image at `position` lies along the slice normal (mm), when the files say."""
        return self.locate(position)[0].position if 0 <= position < self.frame_count else None

    @property
    def has_positions(self) -> bool:
        return len(self.instances) > 1 and all(i.position is not None and i.frames == 1 for i in self.instances)

    def nearest_position(self, mm: float) -> int:
        """The position of the image whose slice lies nearest `mm` (needs `has_positions`)."""
        return min(range(len(self.instances)), key=lambda n: abs(self.instances[n].position - mm))

    @property
    def is_document(self) -> bool:
        return bool(self.instances) and all(i.document for i in self.instances)

    @property
    def title(self) -> str:
        parts = [self.modality or "?"]
        if self.number is not None:
            parts.append(f"#{self.number}")
        if self.description:
            parts.append(self.description)
        return " ".join(parts)


@dataclass
class Opened:
    series: list[Series]
    problems: list[tuple[str, str]]  # (path, reason) of files that could not be opened

    @property
    def count(self) -> int:
        return sum(len(s.instances) for s in self.series)


def find_files(paths: list[str | os.PathLike]) -> list[Path]:
    """Files named, and every file below folders named (hidden ones and DICOMDIR indexes left out)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(Path(root) / f for f in sorted(files) if not f.startswith(".") and f.upper() != "DICOMDIR")
        else:
            out.append(p)
    return out


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def slice_position(ds: Dataset) -> float | None:
    """Distance along the slice normal, for ordering slices of a volume."""
    try:
        ipp = [float(v) for v in ds.ImagePositionPatient]
        iop = [float(v) for v in ds.ImageOrientationPatient]
    except (AttributeError, TypeError, ValueError):
        return None
    r, c = iop[:3], iop[3:]
    normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    return sum(a * b for a, b in zip(normal, ipp))


def open_paths(paths: list[str | os.PathLike], reporter=None) -> Opened:
    """Read the headers of every file under `paths` and group the images into series."""
    files = find_files(paths)
    by_uid: dict[str, Series] = {}
    seen: set[str] = set()
    problems: list[tuple[str, str]] = []
    if reporter:
        reporter.update(0, len(files), "Reading headers")
    for n, path in enumerate(files, 1):
        if reporter and (n % 16 == 0 or n == len(files)):
            reporter.update(n)
        if not path.exists():
            problems.append((str(path), "file not found"))
            continue
        try:
            ds = read(path, header_only=True)
        except Cancelled:
            raise
        except LightboxError as exc:
            problems.append((str(path), getattr(exc, "reason", str(exc))))
            continue
        document = document_type(ds)
        if "Rows" not in ds and document != PDF:
            problems.append((str(path), "contains no image"))
            continue
        sop = str(ds.get("SOPInstanceUID", "")) or str(path)
        if sop in seen:
            continue
        seen.add(sop)
        uid = str(ds.get("SeriesInstanceUID", "")) or f"series-of-{path.parent}"
        series = by_uid.get(uid)
        if series is None:
            series = by_uid[uid] = Series(
                uid=uid, study_uid=str(ds.get("StudyInstanceUID", "")), modality=str(ds.get("Modality", "")),
                number=_int(ds.get("SeriesNumber")), description=str(ds.get("SeriesDescription", "")),
                patient=patient_of(ds), study_date=str(ds.get("StudyDate", "")),
                study_description=str(ds.get("StudyDescription", "")),
            )
        series.instances.append(Instance(path, sop, _int(ds.get("InstanceNumber")),
                                         1 if document else _int(ds.get("NumberOfFrames")) or 1,
                                         None if document else slice_position(ds), document))
    for series in by_uid.values():
        series.instances.sort(key=lambda i: (i.instance_number is None, i.instance_number or 0,
                                             i.position or 0.0, i.sop_instance_uid))
    ordered = sorted(by_uid.values(), key=lambda s: (s.study_date, s.study_uid, s.number is None, s.number or 0, s.uid))
    return Opened(ordered, problems)


def thumbnail(series: Series, size: int = 96):
    """A small rendering of the series' middle image, with its default window; from a
    reduced-resolution decode where the codec offers one."""
    from app.dicom import display

    instance, frame = series.locate(series.frame_count // 2)
    image = instance.image()
    preview = None if image.has_frame(frame) else image.preview(frame, size)
    pixels, factor = preview if preview else (None, 1)
    renderer = display.Renderer(image, frame, pixels=pixels, scale=factor)
    h, w = image.rows, image.columns
    scale = size / max(h, w)
    renderer.set_region((0, 0, w, h), max(1, round(w * scale)), max(1, round(h * scale)), smooth=True)
    return renderer.render(display.default_voi(image, frame, pixels=pixels))
