"""How big a pixel is, and on what authority.

`calibration_of(ds, frame)` reads what the file says, in this order:
- PixelSpacing (or an enhanced object's Pixel Measures, per frame or shared): in the patient. With
  PixelSpacingCalibrationType (GEOMETRY, FIDUCIAL) the label names it. A PixelSpacing that merely
  repeats ImagerPixelSpacing without a calibration type is taken for what it is: detector values;
- ImagerPixelSpacing, divided by EstimatedRadiographicMagnificationFactor when present, else labelled
  "at detector": never as if it were PixelSpacing;
- an ultrasound region's PhysicalDeltaX/Y (in cm);
- nothing: values are in pixels and say so.

A `ManualCalibration` (a circle across a marker of known diameter, or a line of known length) applies
to an image, a series or a study; `apply_manual` lets it override the file, with a warning.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass

from pydicom.dataset import Dataset

from app.errors import UsageError

DEFAULT_MARKER_MM = 25.0  # the usual calibration sphere
SCOPES = ("image", "series", "study")

# Calibration.source values
NONE = "none"
PIXEL_SPACING = "PixelSpacing"
CALIBRATION_TYPE = "PixelSpacingCalibrationType"
DETECTOR = "ImagerPixelSpacing"
MAGNIFICATION = "EstimatedRadiographicMagnificationFactor"
ULTRASOUND = "SequenceOfUltrasoundRegions"
MANUAL = "manual"


@dataclass(frozen=True)
class Calibration:
    """mm per pixel step, or none. Points are (x = column, y = row): x steps are column_mm apart."""
    row_mm: float | None = None  # distance between rows (the vertical size of a pixel)
    column_mm: float | None = None  # distance between columns (the horizontal size of a pixel)
    source: str = NONE
    label: str = "not calibrated (pixels)"  # shown next to every measured value
    warning: str = ""
    aspect: float = 1.0  # row / column pixel size when not calibrated (PixelAspectRatio)

    @property
    def calibrated(self) -> bool:
        return self.row_mm is not None and self.column_mm is not None

    @property
    def at_detector(self) -> bool:
        return self.source == DETECTOR

    @property
    def unit(self) -> str:
        return "mm" if self.calibrated else "px"

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) size of one pixel step in `unit`; uncalibrated, x is 1 px and y the aspect ratio."""
        if self.calibrated:
            return self.column_mm, self.row_mm
        return 1.0, self.aspect

    @property
    def isotropic(self) -> bool:
        sx, sy = self.scale
        return math.isclose(sx, sy, rel_tol=1e-6)

    def pixel_size_text(self) -> str:
        """'0.15 mm', '0.1 × 0.2 mm' (column × row), or 'not calibrated'."""
        if not self.calibrated:
            return "not calibrated"
        if self.isotropic:
            return f"{self.column_mm:.3g} mm"
        return f"{self.column_mm:.3g} × {self.row_mm:.3g} mm"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


NOT_CALIBRATED = Calibration()


# -- reading the file -----------------------------------------------------------------------------

def _pair(value) -> tuple[float, float] | None:
    try:
        row, col = float(value[0]), float(value[1])
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    if row > 0 and col > 0 and math.isfinite(row) and math.isfinite(col):
        return row, col
    return None


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 and math.isfinite(number) else None


def _measures(ds: Dataset, frame: int = 0) -> list[Dataset]:
    """An enhanced object's Pixel Measures items: the frame's own first, then the shared one."""
    out = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and 0 <= frame < len(per_frame):
        item = per_frame[frame].get("PixelMeasuresSequence")
        if item:
            out.append(item[0])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        item = shared[0].get("PixelMeasuresSequence")
        if item:
            out.append(item[0])
    return out


def _file_pixel_spacing(ds: Dataset, frame: int = 0) -> tuple[float, float] | None:
    for holder in (ds, *_measures(ds, frame)):
        if "PixelSpacing" in holder:
            pair = _pair(holder.PixelSpacing)
            if pair:
                return pair
    return None


def _aspect(ds: Dataset) -> float:
    pair = _pair(ds.get("PixelAspectRatio"))  # vertical \ horizontal
    return pair[0] / pair[1] if pair else 1.0


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-4) for x, y in zip(a, b))


def _ultrasound(ds: Dataset) -> tuple[tuple[float, float], str] | None:
    """(row mm, column mm) of the spatial ultrasound regions (units cm), and a warning when they differ."""
    regions = []
    for item in ds.get("SequenceOfUltrasoundRegions") or []:
        if item.get("PhysicalUnitsXDirection") != 3 or item.get("PhysicalUnitsYDirection") != 3:
            continue  # 3 = cm; other units (seconds, cm/s) are not lengths
        dx, dy = _positive(item.get("PhysicalDeltaX")), _positive(item.get("PhysicalDeltaY"))
        if dx and dy:
            try:
                area = (int(item.RegionLocationMaxX1) - int(item.RegionLocationMinX0)) * \
                       (int(item.RegionLocationMaxY1) - int(item.RegionLocationMinY0))
            except (AttributeError, TypeError, ValueError):
                area = 0
            regions.append((area, (dy * 10.0, dx * 10.0)))
    if not regions:
        return None
    regions.sort(key=lambda r: -r[0])
    spacing = regions[0][1]
    if any(not _same(spacing, r[1]) for r in regions[1:]):
        return spacing, "the ultrasound regions have different scales: the largest region's is used"
    return spacing, ""


def calibration_of(ds: Dataset, frame: int = 0) -> Calibration:
    """What the file says about the size of frame `frame`'s pixels (see the module's docstring)."""
    aspect = _aspect(ds)
    spacing = _file_pixel_spacing(ds, frame)
    imager = _pair(ds.get("ImagerPixelSpacing"))
    kind = str(ds.get("PixelSpacingCalibrationType") or "").strip().upper()
    if spacing and kind:
        description = str(ds.get("PixelSpacingCalibrationDescription") or "").strip()
        label = f"PixelSpacing, {kind.lower()}" + (f": {description}" if description else "")  # the calibration type
        return Calibration(spacing[0], spacing[1], CALIBRATION_TYPE, label)
    if spacing and not (imager and _same(spacing, imager)):
        return Calibration(spacing[0], spacing[1], PIXEL_SPACING, "PixelSpacing")
    if imager:
        factor = _positive(ds.get("EstimatedRadiographicMagnificationFactor"))
        if factor:
            return Calibration(imager[0] / factor, imager[1] / factor, MAGNIFICATION,
                               f"ImagerPixelSpacing ÷ magnification {factor:g}")
        return Calibration(imager[0], imager[1], DETECTOR, "at detector (ImagerPixelSpacing)",
                           "sizes are at the detector: the patient is smaller by the (unknown) magnification")
    us = _ultrasound(ds)
    if us:
        (row, col), warning = us
        return Calibration(row, col, ULTRASOUND, "ultrasound region (PhysicalDeltaX/Y)", warning)
    return Calibration(aspect=aspect)


@dataclass(frozen=True)
class Spacing:
    """The raw attribute (kept for `info` and the viewport's pixel-size line); measure with calibration_of."""
    row_mm: float  # distance between rows (vertical)
    column_mm: float  # distance between columns (horizontal)
    source: str  # the attribute it came from: "PixelSpacing" or "ImagerPixelSpacing"

    def as_list(self) -> list[float]:
        return [self.row_mm, self.column_mm]


def pixel_spacing(ds: Dataset) -> Spacing | None:
    """PixelSpacing (in the patient) where present, else ImagerPixelSpacing (at the detector)."""
    pair = _file_pixel_spacing(ds)
    if pair:
        return Spacing(pair[0], pair[1], "PixelSpacing")
    pair = _pair(ds.get("ImagerPixelSpacing"))
    if pair:
        return Spacing(pair[0], pair[1], "ImagerPixelSpacing")
    return None


# -- manual calibration ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ManualCalibration:
    """A calibration drawn by the user, for one image (SOP Instance UID), series or study."""
    scope: str  # "image" | "series" | "study"
    uid: str
    row_mm: float
    column_mm: float
    source: str  # shown as the label: "manual: 25 mm sphere"
    created_at: str = ""

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise UsageError(f"a calibration applies to an image, a series or a study, not '{self.scope}'")
        if not (self.row_mm > 0 and self.column_mm > 0):
            raise UsageError("a calibration needs a positive size per pixel")

    def as_dict(self) -> dict:
        return asdict(self)


def _format_mm(value: float) -> str:
    return f"{value:g}"


def manual_calibration(shape: str, points, known_mm: float = DEFAULT_MARKER_MM, *, scope: str, uid: str,
                       file: Calibration | None = None, marker: str = "") -> ManualCalibration:
    """A calibration from a drawn shape across something of known size.

    shape "circle": `points` are two opposite corners of the circle's bounding box (as the ellipse
    tool draws it) across a marker of diameter `known_mm` (default: a 25 mm sphere); "line": its two
    end points, `known_mm` apart. The result keeps the file's pixel aspect ratio (its spacing, or
    PixelAspectRatio) and is isotropic when the file says nothing.
    """
    if not known_mm or known_mm <= 0 or not math.isfinite(known_mm):
        raise UsageError("the known size must be a positive number of millimetres")
    pts = [(float(x), float(y)) for x, y in points]
    if len(pts) != 2:
        raise UsageError("a calibration is drawn with two points")
    aspect = 1.0
    if file is not None:
        aspect = file.row_mm / file.column_mm if file.calibrated else file.aspect
    (x0, y0), (x1, y1) = pts
    dx, dy = abs(x1 - x0), abs(y1 - y0)
    if shape == "circle":
        across = (dx + dy * aspect) / 2.0  # mean diameter, in column-pixel units
        what = marker or "sphere"
    elif shape == "line":
        across = math.hypot(dx, dy * aspect)
        what = marker or "line"
    else:
        raise UsageError(f"calibrate with a circle or a line, not '{shape}'")
    if across < 1.0:
        raise UsageError("the calibration shape is too small: draw it across the whole marker")
    column_mm = known_mm / across
    return ManualCalibration(scope, uid, column_mm * aspect, column_mm, f"manual: {_format_mm(known_mm)} mm {what}",
                             dt.datetime.now().astimezone().isoformat(timespec="seconds"))


def apply_manual(file: Calibration, manual: ManualCalibration | None) -> Calibration:
    """The calibration measurements use: the manual one when there is one (warning when it overrides the file's)."""
    if manual is None:
        return file
    warning = ""
    if file.calibrated:
        warning = (f"the manual calibration overrides the file's spacing ({file.label}, {file.pixel_size_text()}) "
                   f"with {_size(manual)} per pixel")
    return Calibration(manual.row_mm, manual.column_mm, MANUAL, manual.source, warning)


def _size(manual: ManualCalibration) -> str:
    if math.isclose(manual.row_mm, manual.column_mm, rel_tol=1e-6):
        return f"{manual.column_mm:.3g} mm"
    return f"{manual.column_mm:.3g} × {manual.row_mm:.3g} mm"
