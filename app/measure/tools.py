"""Measurements: what was drawn (a `Measurement`), and what it measures (`measure` -> `Result`).

A Measurement holds points in image pixel coordinates (x = column, y = row, floats; see geometry),
the frame (0-based) it was drawn on, an optional text and an id. Results are always computed from
the points, the calibration and (for ROIs) the frame's modality values; they are never stored.

Point schemes, in drawing order (`TOOLS[kind].hints` says the same for prompts):
- length: 2 end points; polyline: 2 or more; angle: arm end, vertex, arm end;
- cobb: two endplate lines (4 points); ellipse, rectangle: two opposite corners of the bounding box;
- arrow: tail, head (the head points at the finding); text: 1 anchor point;
- vhs (Vertebral Heart Score, Buchanan's method, lateral view): long axis (ventral border of the
  left main bronchus at the carina, cardiac apex), short axis (the two borders at the widest part,
  perpendicular to the long axis), then the vertebral scale: the cranial edge of T4, then the caudal
  edge of each vertebra in turn (T4, T5, ...), at least one. Each axis is laid along the marked
  vertebrae from T4 and counted in vertebrae (fractions by the length of the vertebra it ends in);
  beyond the last mark it is extrapolated with the mean vertebral length, and says so.
  VHS = long + short, in vertebrae (v);
- norberg (ventrodorsal hip view): left femoral head centre, left cranial acetabular rim, right
  femoral head centre, right cranial acetabular rim. Each side's angle lies at its femoral head
  centre, between the line to the other head centre and the line to its own acetabular rim;
- tpa (tibial plateau angle, mediolateral view): tibial plateau cranial point, caudal point, then the
  functional axis: centre of the intercondylar eminences (proximal), centre of the talus (distal).
  TPA = the angle between the plateau and the perpendicular to the functional axis, positive when
  the plateau slopes down caudally.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
from pydicom.dataset import Dataset

from app.errors import UsageError
from app.measure import geometry as g
from app.measure.calibration import NOT_CALIBRATED, Calibration

Point = tuple[float, float]


@dataclass(frozen=True)
class Tool:
    kind: str
    name: str
    points: int  # the points it needs (the least, for open-ended tools)
    open_ended: bool  # more points may follow (polyline, vhs)
    hints: tuple[str, ...]  # what each point is; the last repeats for open-ended tools


TOOLS: dict[str, Tool] = {t.kind: t for t in (
    Tool("length", "Length", 2, False, ("start", "end")),
    Tool("polyline", "Polyline", 2, True, ("first point", "next point")),
    Tool("angle", "Angle", 3, False, ("end of the first arm", "vertex", "end of the second arm")),
    Tool("cobb", "Cobb angle", 4, False, ("first endplate: one side", "first endplate: other side",
                                          "second endplate: one side", "second endplate: other side")),
    Tool("ellipse", "Ellipse ROI", 2, False, ("corner", "opposite corner")),
    Tool("rectangle", "Rectangle ROI", 2, False, ("corner", "opposite corner")),
    Tool("arrow", "Arrow", 2, False, ("tail", "head")),
    Tool("text", "Text", 1, False, ("position",)),
    Tool("vhs", "Vertebral heart score", 6, True, (
        "long axis: carina (ventral border of the left main bronchus)", "long axis: cardiac apex",
        "short axis: one border at the widest part", "short axis: opposite border",
        "cranial edge of T4", "caudal edge of T4", "caudal edge of the next vertebra")),
    Tool("norberg", "Norberg angle", 4, False, (
        "left femoral head centre", "left cranial acetabular rim",
        "right femoral head centre", "right cranial acetabular rim")),
    Tool("tpa", "Tibial plateau angle", 4, False, (
        "tibial plateau: cranial point", "tibial plateau: caudal point",
        "functional axis: intercondylar eminences", "functional axis: centre of the talus")),
)}
ROI_KINDS = ("ellipse", "rectangle")
SCALE_FREE = ("angle", "cobb", "vhs", "norberg", "tpa", "arrow", "text")  # values not in mm


def point_hint(kind: str, index: int) -> str:
    """What point `index` (0-based) of a `kind` measurement is, for the drawing prompt."""
    hints = _tool(kind).hints
    return hints[min(index, len(hints) - 1)]


def _tool(kind: str) -> Tool:
    try:
        return TOOLS[kind]
    except KeyError:
        raise UsageError(f"there is no measurement tool '{kind}' (known: {', '.join(TOOLS)})") from None


# -- the model ------------------------------------------------------------------------------------

def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Measurement:
    kind: str
    points: tuple[Point, ...]
    frame: int = 0
    text: str = ""
    id: str = field(default_factory=new_id)

    def __post_init__(self):
        tool = _tool(self.kind)
        try:
            points = tuple((float(x), float(y)) for x, y in self.points)
        except (TypeError, ValueError):
            raise UsageError("measurement points are (x, y) pairs of numbers") from None
        if any(not (math.isfinite(x) and math.isfinite(y)) for x, y in points):
            raise UsageError("measurement points must be finite numbers")
        if len(points) < tool.points or (not tool.open_ended and len(points) != tool.points):
            need = f"at least {tool.points}" if tool.open_ended else str(tool.points)
            raise UsageError(f"a {tool.name.lower()} has {need} points, not {len(points)}")
        if int(self.frame) < 0:
            raise UsageError("frames are numbered from 0")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "frame", int(self.frame))
        object.__setattr__(self, "text", str(self.text or ""))

    # editing gives a new value (undo keeps the old one)
    def with_point(self, index: int, point: Point) -> Measurement:
        points = list(self.points)
        points[index] = point
        return replace(self, points=tuple(points))

    def with_points(self, points: Sequence[Point]) -> Measurement:
        return replace(self, points=tuple(points))

    def translated(self, dx: float, dy: float) -> Measurement:
        return replace(self, points=tuple((x + dx, y + dy) for x, y in self.points))

    def with_text(self, text: str) -> Measurement:
        return replace(self, text=text)

    def as_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "frame": self.frame, "text": self.text,
                "points": [[x, y] for x, y in self.points]}

    @classmethod
    def from_dict(cls, data: dict) -> Measurement:
        return cls(kind=data["kind"], points=tuple(tuple(p) for p in data["points"]), frame=data.get("frame", 0),
                   text=data.get("text", ""), id=data.get("id") or new_id())

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Measurement:
        return cls.from_dict(json.loads(text))


# -- reference ranges -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    what: str  # the population: "canine (general)", "Pug"
    unit: str
    citation: str  # short, shown with the value
    mean: float | None = None
    sd: float | None = None
    low: float | None = None  # a published range or threshold
    high: float | None = None
    note: str = ""

    def text(self) -> str:
        u = "°" if self.unit == "°" else f" {self.unit}"
        parts = []
        if self.mean is not None:
            parts.append(f"{self.mean:g} ± {self.sd:g}{u}" if self.sd is not None else f"{self.mean:g}{u}")
        if self.low is not None and self.high is not None:
            parts.append(f"range {self.low:g}–{self.high:g}{u}")
        elif self.low is not None:
            parts.append(f"normal ≥ {self.low:g}{u}")
        elif self.high is not None:
            parts.append(f"normal ≤ {self.high:g}{u}")
        note = f", {self.note}" if self.note else ""
        return f"{self.what}: {', '.join(parts)}{note} ({self.citation})"

    def assess(self, value: float) -> str:
        """'below', 'above' or 'within' the published range; '' without one."""
        if value is None or math.isnan(value) or (self.low is None and self.high is None):
            return ""
        if self.low is not None and value < self.low:
            return "below"
        if self.high is not None and value > self.high:
            return "above"
        return "within"


# Buchanan JW, Bücheler J. J Am Vet Med Assoc 1995;206:194-199: 100 dogs, 9.7 ± 0.5 v, range 8.5-10.6.
VHS_CANINE = Reference("canine (general)", "v", "Buchanan & Bücheler, JAVMA 1995", mean=9.7, sd=0.5,
                       low=8.5, high=10.6)
# Litster AL, Buchanan JW. J Am Vet Med Assoc 2000;216:210-214: lateral view, 7.5 ± 0.3 v, range 6.7-8.1.
VHS_FELINE = Reference("feline", "v", "Litster & Buchanan, JAVMA 2000", mean=7.5, sd=0.3, low=6.7, high=8.1)

# Breed-specific VHS in dogs, lateral view, as published (mean ± SD). Each entry: breed names matched, reference.
VHS_BREEDS: tuple[tuple[tuple[str, ...], Reference], ...] = (
    # Lamb CR, Wikeley H, Boswood A, Pfeiffer DU. Vet Rec 2001;148:707-711 (right lateral): 10.6 ± 0.5 v.
    (("cavalier", "ckcs"), Reference("Cavalier King Charles spaniel", "v", "Lamb et al., Vet Rec 2001",
                                     mean=10.6, sd=0.5)),
    # Wiegel PS, Mach R, et al. PLoS One 2022;17(9):e0274085: right lateral 11.25 ± 0.62 v, 95% range 10.1-12.8.
    (("pug", "mops", "carlin"), Reference("Pug", "v", "Wiegel et al., PLoS One 2022", mean=11.25, sd=0.62,
                                          low=10.1, high=12.8, note="right lateral")),
    # Taylor CJ, Simon BT, Stanley BJ, et al. Vet Radiol Ultrasound 2020;61:10-15: 10.6 ± 0.6 v.
    (("norwich terrier",), Reference("Norwich terrier", "v", "Taylor et al., Vet Radiol Ultrasound 2020",
                                     mean=10.6, sd=0.6)),
    # Vet Sci 2021;8(12):300 (doi:10.3390/vetsci8120300): right lateral, 10.6 ± 0.2 v.
    (("brittany", "epagneul breton"), Reference("Brittany spaniel", "v", "Vet Sci 2021;8:300", mean=10.6, sd=0.2,
                                                note="right lateral")),
    # Bavegems V, et al. Vet Radiol Ultrasound 2005;46:400-403: 44 whippets, 11.0 ± 0.5 v right-to-left,
    # 11.3 ± 0.5 v left-to-right lateral.
    (("whippet",), Reference("Whippet", "v", "Bavegems et al., Vet Radiol Ultrasound 2005", mean=11.0, sd=0.5,
                             note="right-to-left lateral; 11.3 ± 0.5 v left-to-right")),
    # Kraetschmer S, et al. J Small Anim Pract 2008: 19 beagles, 10.3 ± 0.4 v.
    (("beagle",), Reference("Beagle", "v", "Kraetschmer et al., J Small Anim Pract 2008", mean=10.3, sd=0.4)),
)

# FCI hip dysplasia scheme: grade A (no signs of HD) has a Norberg angle of 105° or more
# (Flückiger M. Scoring radiographs for canine hip dysplasia - the big three organisations in the world. EJCAP 2007).
NORBERG_NORMAL = Reference("Norberg angle", "°", "FCI scheme, Flückiger 2007", low=105.0)

# VCOT Open 2025;8(1):e106-e111 (doi:10.1055/a-2595-2962), 171 dogs: intact cranial cruciate ligament
# 21.49 ± 4.15°, cranial cruciate ligament rupture 25.28 ± 4.65°.
TPA_CANINE = Reference("dogs with intact cruciate ligaments", "°", "VCOT Open 2025", mean=21.49, sd=4.15,
                       note="with rupture 25.28 ± 4.65°")
# Vedrine B, et al. Vet Comp Orthop Traumatol 2013;26:266-270 (healthy dogs): Labrador retriever 25 ± 3°,
# Yorkshire terrier 30 ± 4°.
TPA_BREEDS: tuple[tuple[tuple[str, ...], Reference], ...] = (
    (("labrador",), Reference("Labrador retriever", "°", "Vedrine et al., VCOT 2013", mean=25.0, sd=3.0)),
    (("yorkshire", "yorkie"), Reference("Yorkshire terrier", "°", "Vedrine et al., VCOT 2013", mean=30.0, sd=4.0)),
)

_FELINE = {"feline", "cat", "felis", "katze", "chat", "gato", "kat", "kitten"}
_CANINE = {"canine", "dog", "canis", "hund", "chien", "perro", "hond", "puppy"}


def _words(text: str) -> str:
    text = unicodedata.normalize("NFKD", text or "")
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " " + " ".join(re.findall(r"[a-z0-9]+", text)) + " "


def species_of(species: str) -> str:
    """'canine', 'feline', '' (not said) or 'other'."""
    words = set(_words(species).split())
    if not words:
        return ""
    if words & _FELINE:
        return "feline"
    if words & _CANINE:
        return "canine"
    return "other"


def _breed_references(table, breed: str) -> list[Reference]:
    text = _words(breed)
    return [ref for names, ref in table if any(f" {name} " in text for name in names)]


def vhs_references(species: str = "", breed: str = "") -> list[Reference]:
    """The ranges a VHS is shown with: the breed's where published, then the species' general range."""
    kind = species_of(species)
    if kind == "feline":
        return [VHS_FELINE]
    if kind == "other":
        return []
    return [*_breed_references(VHS_BREEDS, breed), VHS_CANINE]


def tpa_references(species: str = "", breed: str = "") -> list[Reference]:
    if species_of(species) in ("feline", "other"):
        return []
    return [*_breed_references(TPA_BREEDS, breed), TPA_CANINE]


# -- results --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Value:
    name: str  # "length", "mean", "left", "vhs" ...
    value: float | None
    unit: str  # "mm", "px", "mm²", "px²", "°", "v", "HU", "" (modality values without a unit)
    label: str  # "Length", "Mean" ...

    def as_dict(self) -> dict:
        v = None if self.value is None or math.isnan(self.value) else self.value
        return {"name": self.name, "value": v, "unit": self.unit, "label": self.label}


@dataclass(frozen=True)
class Result:
    measurement: Measurement
    values: tuple[Value, ...]
    lines: tuple[str, ...]  # what to show next to the drawing, values with their units
    calibration: Calibration
    references: tuple[str, ...] = ()  # each with its citation
    warnings: tuple[str, ...] = ()

    @property
    def calibration_label(self) -> str:
        return self.calibration.label

    @property
    def scale_free(self) -> bool:
        """Angles and vertebral units: the pixel size's magnitude does not enter (its aspect ratio does)."""
        return self.measurement.kind in SCALE_FREE

    def value(self, name: str) -> float | None:
        return next((v.value for v in self.values if v.name == name), None)

    @property
    def primary(self) -> Value | None:
        return self.values[0] if self.values else None

    def as_dict(self) -> dict:
        return {"measurement": self.measurement.as_dict(), "values": [v.as_dict() for v in self.values],
                "lines": list(self.lines), "calibration": self.calibration.label,
                "calibrated": self.calibration.calibrated, "references": list(self.references),
                "warnings": list(self.warnings)}


def rounded(value: float, digits: int = 1) -> float:
    """Half away from zero, as people round (5.25 -> 5.3), on the value as it prints."""
    if value is None or not math.isfinite(value):
        return value
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def _number(value: float, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{rounded(value, digits):.{digits}f}".replace("-", "−")


def length_text(value: float, unit: str) -> str:
    if unit == "mm" and not math.isnan(value) and value < 10:
        return f"{_number(value, 2)} mm"
    return f"{_number(value)} {unit}"


def area_text(value: float, unit: str) -> str:
    if unit == "mm²" and not math.isnan(value) and value >= 100:
        return f"{_number(value / 100, 2)} cm²"
    return f"{_number(value, 1 if unit == 'mm²' else 0)} {unit}"


def angle_text(value: float) -> str:
    return f"{_number(value)}°"


def value_unit(ds: Dataset) -> str:
    """The unit of a frame's modality values: HU for CT, else the Rescale Type when it names one."""
    if str(ds.get("Modality") or "").strip().upper() == "CT":
        return "HU"
    kind = str(ds.get("RescaleType") or "").strip()
    return kind if kind and kind.upper() != "US" else ""  # US: unspecified


def roi_statistics(values: np.ndarray, mask: np.ndarray) -> dict | None:
    """Mean, SD (population, as numpy's default), min, max and the number of pixels in `mask`."""
    selected = np.asarray(values)[mask].astype(np.float64)
    if selected.size == 0:
        return None
    return {"mean": float(selected.mean()), "sd": float(selected.std()), "min": float(selected.min()),
            "max": float(selected.max()), "pixels": int(selected.size)}


def roi_region(m: Measurement, shape: tuple[int, int]) -> g.Region:
    if m.kind == "ellipse":
        return g.ellipse_region(shape, *m.points)
    if m.kind == "rectangle":
        return g.rectangle_region(shape, *m.points)
    raise UsageError(f"a {m.kind} is not a region")


def roi_mask(m: Measurement, shape: tuple[int, int]) -> np.ndarray:
    """The pixels an ROI measurement covers (pixel centres inside the shape)."""
    return g.full_mask(shape, roi_region(m, shape))


def _vertebrae(length: float, vertebrae: Sequence[float]) -> tuple[float, bool]:
    """`length` laid along the vertebrae from the first: (vertebrae counted, extrapolated)."""
    count, remaining = 0.0, length
    for size in vertebrae:
        if remaining <= size:
            return count + remaining / size, False
        remaining -= size
        count += 1
    return count + remaining / (sum(vertebrae) / len(vertebrae)), True


def measure(m: Measurement, calibration: Calibration = NOT_CALIBRATED, *, values: np.ndarray | None = None,
            unit: str = "", species: str = "", breed: str = "") -> Result:
    """Compute what `m` measures with `calibration`.

    `values`: the frame's modality values (rows x columns), for ROI statistics in `unit` ("HU" for CT);
    `species` and `breed` choose the reference ranges shown with VHS and TPA.
    """
    sx, sy = calibration.scale
    u = calibration.unit
    p = m.points
    vals: list[Value] = []
    lines: list[str] = []
    refs: list[str] = []
    warnings: list[str] = []
    kind = m.kind
    if m.text and kind not in ("text", "arrow"):
        lines.append(m.text)

    if kind in ("length", "polyline"):
        length = g.path_length(p, sx, sy)
        vals.append(Value("length", length, u, "Length"))
        lines.append(length_text(length, u) if kind == "length" else f"Length {length_text(length, u)}")
    elif kind == "angle":
        angle = g.angle_at(p[0], p[1], p[2], sx, sy)
        vals.append(Value("angle", angle, "°", "Angle"))
        lines.append(angle_text(angle))
    elif kind == "cobb":
        angle = g.cobb_angle(*p, sx, sy)
        vals.append(Value("angle", angle, "°", "Cobb angle"))
        lines.append(f"Cobb {angle_text(angle)}")
    elif kind in ROI_KINDS:
        area = (g.ellipse_area if kind == "ellipse" else g.rectangle_area)(p[0], p[1], sx, sy)
        area_unit = f"{u}²"
        stats = None
        if values is not None:
            values = np.asarray(values)
            if values.ndim != 2:
                warnings.append("colour pixels have no single value: only the area is measured")
            else:
                rows, cols, inside = roi_region(m, values.shape)
                stats = roi_statistics(values[rows, cols], inside)
                if stats is None:
                    warnings.append("the region holds no pixel centre")
        if stats:
            vals += [Value("mean", stats["mean"], unit, "Mean"), Value("sd", stats["sd"], unit, "SD"),
                     Value("min", stats["min"], unit, "Min"), Value("max", stats["max"], unit, "Max")]
        vals.append(Value("area", area, area_unit, "Area"))
        if stats:
            vals.append(Value("pixels", float(stats["pixels"]), "", "Pixels"))
        sp = f" {unit}" if unit else ""
        lines.append(f"Area {area_text(area, area_unit)}" + (f" ({stats['pixels']} px)" if stats and u == "mm" else ""))
        if stats:
            lines.append(f"Mean {_number(stats['mean'])}{sp}  SD {_number(stats['sd'])}")
            lines.append(f"Min {_number(stats['min'])}  Max {_number(stats['max'])}{sp}")
    elif kind in ("arrow", "text"):
        if m.text:
            lines.append(m.text)
    elif kind == "vhs":
        long_len = g.distance(p[0], p[1], sx, sy)
        short_len = g.distance(p[2], p[3], sx, sy)
        sizes = [g.distance(a, b, sx, sy) for a, b in zip(p[4:], p[5:])]
        sizes = [s for s in sizes if s > 0]
        if not sizes:
            long_v = short_v = math.nan
            warnings.append("the vertebral marks coincide: mark the cranial edge of T4 and the end of each vertebra")
        else:
            long_v, beyond_long = _vertebrae(long_len, sizes)
            short_v, beyond_short = _vertebrae(short_len, sizes)
            if beyond_long or beyond_short:
                warnings.append(f"the {'long' if beyond_long else 'short'} axis reaches beyond the {len(sizes)} "
                                "marked vertebrae: extrapolated with their mean length; mark more vertebrae")
        total = long_v + short_v
        vals += [Value("vhs", total, "v", "VHS"), Value("long", long_v, "v", "Long axis"),
                 Value("short", short_v, "v", "Short axis"), Value("long_length", long_len, u, "Long axis length"),
                 Value("short_length", short_len, u, "Short axis length")]
        # each axis to the nearest 0.1 vertebra, and their sum, as Buchanan counts
        lines.append(f"VHS {_number(rounded(long_v) + rounded(short_v))} v")
        lines.append(f"L {_number(long_v)} v + S {_number(short_v)} v")
        axes = g.line_angle(p[0], p[1], p[2], p[3], sx, sy)
        if not math.isnan(axes) and axes < 80:
            warnings.append(f"the short axis is {90 - axes:.0f}° from perpendicular to the long axis")
        for ref in vhs_references(species, breed):
            refs.append(_assessed(ref, total))
    elif kind == "norberg":
        left = g.angle_at(p[2], p[0], p[1], sx, sy)
        right = g.angle_at(p[0], p[2], p[3], sx, sy)
        vals += [Value("left", left, "°", "Left Norberg angle"), Value("right", right, "°", "Right Norberg angle")]
        for side, angle in (("Left", left), ("Right", right)):
            flag = NORBERG_NORMAL.assess(angle)
            below = f" (below {NORBERG_NORMAL.low:g}°)" if flag == "below" else ""
            lines.append(f"{side} {angle_text(angle)}{below}")
        refs.append(NORBERG_NORMAL.text())
    elif kind == "tpa":
        angle = g.signed_angle_to_perpendicular((p[1], p[0]), (p[3], p[2]), sx, sy)
        vals.append(Value("tpa", angle, "°", "Tibial plateau angle"))
        lines.append(f"TPA {angle_text(angle)}")
        refs += [ref.text() for ref in tpa_references(species, breed)]
    if not warnings and any(v.value is not None and math.isnan(v.value) for v in vals):
        warnings.append("some points coincide: the value cannot be computed")
    if calibration.warning and kind not in SCALE_FREE:
        warnings.append(calibration.warning)
    return Result(m, tuple(vals), tuple(lines), calibration, tuple(refs), tuple(warnings))


def _assessed(ref: Reference, value: float) -> str:
    flag = ref.assess(value)
    return ref.text() + (f": {flag} the range" if flag in ("above", "below") else "")


def measure_image(m: Measurement, image, calibration: Calibration, *, species: str = "", breed: str = "") -> Result:
    """`measure` on an app.dicom.pixels.Image: ROI statistics on frame m.frame's modality values."""
    if m.kind not in ROI_KINDS:
        return measure(m, calibration, species=species, breed=breed)
    if not image.is_grey:
        result = measure(m, calibration, species=species, breed=breed)
        return replace(result, warnings=("colour pixels have no single value: only the area is measured",
                                         *result.warnings))
    values = image.modality(image.frame(m.frame), m.frame)
    return measure(m, calibration, values=values, unit=value_unit(image.ds), species=species, breed=breed)


# -- drawing primitives ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    kind: str  # "line", "polyline", "ellipse", "rectangle", "arrow" (tail, head), "point"
    points: tuple[Point, ...]


def shapes(m: Measurement, calibration: Calibration = NOT_CALIBRATED) -> list[Shape]:
    """What to draw for `m`, in image coordinates (the viewer and the exports draw the same)."""
    p = m.points
    if m.kind == "length":
        return [Shape("line", p)]
    if m.kind in ("polyline", "angle"):
        return [Shape("polyline", p)]
    if m.kind == "cobb":
        return [Shape("line", p[:2]), Shape("line", p[2:])]
    if m.kind in ROI_KINDS:
        return [Shape(m.kind, p)]
    if m.kind == "arrow":
        return [Shape("arrow", p)]
    if m.kind == "text":
        return []
    if m.kind == "vhs":
        return [Shape("line", p[:2]), Shape("line", p[2:4]), Shape("polyline", p[4:]),
                *[Shape("point", (q,)) for q in p[4:]]]
    if m.kind == "norberg":
        return [Shape("line", (p[0], p[2])), Shape("line", (p[0], p[1])), Shape("line", (p[2], p[3])),
                Shape("point", (p[0],)), Shape("point", (p[2],))]
    if m.kind == "tpa":
        sx, sy = calibration.scale
        ax, ay = (p[2][0] - p[3][0]) * sx, (p[2][1] - p[3][1]) * sy
        size = g.distance(p[0], p[1], sx, sy) / 2 or 1.0
        norm = math.hypot(ax, ay) or 1.0
        nx, ny = -ay / norm * size, ax / norm * size  # perpendicular to the axis, in physical units
        perpendicular = ((p[2][0] - nx / sx, p[2][1] - ny / sy), (p[2][0] + nx / sx, p[2][1] + ny / sy))
        return [Shape("line", p[:2]), Shape("line", p[2:]), Shape("line", perpendicular)]
    return []


def label_anchor(m: Measurement) -> Point:
    """Where a measurement's text goes (its top-left corner, before any offset)."""
    p = m.points
    if m.kind in ROI_KINDS:
        left, top, right, bottom = g.box(*p)
        return right, top
    if m.kind in ("arrow", "text"):
        return p[0]
    if m.kind == "angle":
        return p[1]
    if m.kind == "norberg":
        return (p[0][0] + p[2][0]) / 2, (p[0][1] + p[2][1]) / 2
    if m.kind in ("vhs",):
        return p[1]
    if m.kind == "tpa":
        return p[0]
    return p[-1]
