"""VOI: window/level, VOI LUTs, presets and invert, turned into 8-bit grey or RGB for a viewport.

Window/level goes through a lookup table indexed by stored value, so a change costs the size of the
table plus one lookup per screen pixel. The viewport's region is resampled once per geometry change
(`Renderer.set_region`), not once per window change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from app.dicom.pixels import LUT_DOMAIN_LIMIT, Image
from app.errors import PixelDataError, UsageError

FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


@dataclass(frozen=True)
class Window:
    """A window in modality units (PS3.3 C.11.2.1.2)."""

    center: float
    width: float
    function: str = "LINEAR"

    def __post_init__(self):
        if not math.isfinite(self.center) or not math.isfinite(self.width):
            raise UsageError("window centre and width must be numbers")
        if self.function not in FUNCTIONS:
            object.__setattr__(self, "function", "LINEAR")
        if self.width < 1 and self.function == "LINEAR":
            object.__setattr__(self, "width", 1.0)
        if self.width <= 0:
            object.__setattr__(self, "width", 1e-6)

    def __str__(self) -> str:
        return f"W {self.width:g} L {self.center:g}"


@dataclass(frozen=True)
class VoiLut:
    """Item `index` of the file's VOI LUT Sequence."""

    index: int
    explanation: str = ""

    def __str__(self) -> str:
        return f"VOI LUT {self.explanation or self.index + 1}"


Voi = Window | VoiLut


@dataclass(frozen=True)
class Preset:
    name: str
    voi: Voi
    source: str  # "file", "modality", "auto"


CT_PRESETS = [
    ("Soft tissue", 40, 400),
    ("Lung", -600, 1500),
    ("Bone", 400, 1800),
    ("Brain", 40, 80),
]
PROJECTION_MODALITIES = {"DX", "CR", "RG", "MG", "XA", "RF", "PX", "IO", "DR"}


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Modality values -> 0..1 by DICOM's window functions (LINEAR, LINEAR_EXACT, SIGMOID)."""
    x = np.asarray(values, dtype=np.float64)
    c, w = float(window.center), float(window.width)
    if window.function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if window.function == "LINEAR_EXACT":
        return np.clip((x - c) / w + 0.5, 0.0, 1.0)
    if w <= 1:  # the limit of the linear function: a threshold at c - 0.5
        return (x > c - 0.5).astype(np.float64)
    return np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0)


# -- what the file offers, and presets ----------------------------------------------------------

def _floats(value) -> list[float]:
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = [value]
    out = []
    for v in value:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return out


def _strings(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        return [str(value)]
    return [str(v) for v in value]


def file_presets(image: Image, frame: int = 0) -> list[Preset]:
    """The windows and VOI LUTs the file itself proposes, in order."""
    if not image.is_grey:
        return []
    attrs = image.frame_attributes(frame)
    centers = _floats(attrs.get("WindowCenter"))
    widths = _floats(attrs.get("WindowWidth"))
    names = _strings(attrs.get("WindowCenterWidthExplanation"))
    function = str(attrs.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    out = []
    for i, (c, w) in enumerate(zip(centers, widths)):
        if not (math.isfinite(c) and math.isfinite(w)) or w <= 0:
            continue
        name = names[i].strip() if i < len(names) and names[i].strip() else f"File window {i + 1}"
        out.append(Preset(name.title() if name.isupper() else name, Window(c, w, function), "file"))
    for i, item in enumerate(attrs.get("VOILUTSequence") or []):
        if item.get("LUTDescriptor") is None or item.get("LUTData") is None:
            continue
        name = str(item.get("LUTExplanation", "") or "").strip()
        out.append(Preset(name or f"File VOI LUT {i + 1}", VoiLut(i, name), "file"))
    return out


def frame_range(image: Image, frame: int = 0, pixels: np.ndarray | None = None) -> tuple[float, float]:
    """Smallest and largest modality value in a frame (or in `pixels`, a preview of it)."""
    lo, hi = _stored_minmax(image, frame) if pixels is None else (pixels.min().item(), pixels.max().item())
    if image.is_float:
        m = image.modality(np.array([lo, hi], dtype=np.float64), frame)
    elif "ModalityLUTSequence" in image.frame_attributes(frame):  # a LUT need not be monotonic
        m = image.modality(np.arange(int(lo), int(hi) + 1, dtype=np.int64), frame)
    else:
        m = image.modality(np.array([lo, hi], dtype=np.int64), frame)
    return float(np.min(m)), float(np.max(m))


def _stored_minmax(image: Image, frame: int) -> tuple[float, float]:
    cache = image.frame_ranges
    if frame not in cache:
        arr = image.frame(frame)
        if arr.size == 0:
            raise PixelDataError(image.label, "the image is empty")
        lo, hi = arr.min(), arr.max()
        if image.is_float and not (np.isfinite(lo) and np.isfinite(hi)):
            finite = arr[np.isfinite(arr)]
            lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        cache[frame] = (lo.item(), hi.item())
    return cache[frame]


def full_range_window(image: Image, frame: int = 0, pixels: np.ndarray | None = None) -> Window:
    if image.is_color:
        top = float((1 << min(image.bits_stored, 32)) - 1)
        return Window(top / 2 + 0.5, top + 1)
    if image.is_palette:
        return Window(32767.5 + 0.5, 65536) if _palette_bits(image) > 8 else Window(128, 256)
    lo, hi = frame_range(image, frame, pixels)
    if hi <= lo:
        return Window(lo + 0.5, 1)
    if image.is_float:
        return Window((lo + hi) / 2, hi - lo, "LINEAR_EXACT")
    return Window((lo + hi) / 2 + 0.5, hi - lo + 1)


def auto_window(image: Image, frame: int = 0, low: float = 1.0, high: float = 99.5,
                pixels: np.ndarray | None = None) -> Window:
    """A window from robust percentiles of the frame's modality values (for radiographs)."""
    if not image.is_grey:
        return full_range_window(image, frame, pixels)
    arr = image.frame(frame) if pixels is None else pixels
    step = max(1, int(math.sqrt(arr.size / 262_144)))
    sample = arr[::step, ::step]
    values = image.modality(sample.astype(np.float64) if image.is_float else sample, frame)
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return full_range_window(image, frame, pixels)
    a, b = np.percentile(values, [low, high])
    if b <= a:
        return full_range_window(image, frame, pixels)
    return Window((a + b) / 2, b - a, "LINEAR_EXACT")


def presets(image: Image, frame: int = 0, pixels: np.ndarray | None = None) -> list[Preset]:
    """Everything a presets menu offers: the file's first, then the modality's, then automatic ones."""
    out = list(file_presets(image, frame))
    if image.is_grey:
        if image.modality_name == "CT":
            out += [Preset(n, Window(c, w), "modality") for n, c, w in CT_PRESETS]
        out.append(Preset("Auto", auto_window(image, frame, pixels=pixels), "auto"))
    out.append(Preset("Full range", full_range_window(image, frame, pixels), "auto"))
    return out


def find_preset(image: Image, name: str, frame: int = 0) -> Preset:
    wanted = name.strip().casefold().replace("-", " ").replace("_", " ")
    available = presets(image, frame)
    for p in available:
        if p.name.casefold() == wanted:
            return p
    names = ", ".join(p.name for p in available)
    raise UsageError(f"no preset named '{name}' for this image; available: {names}")


def default_voi(image: Image, frame: int = 0, *, auto_for_projection: bool = True,
                pixels: np.ndarray | None = None) -> Voi:
    """The file's first window or VOI LUT; else an automatic window for radiographs (when asked),
    else the full range of modality values. `pixels` stands in for a frame not yet decoded."""
    mine = file_presets(image, frame)
    if mine:
        return mine[0].voi
    if auto_for_projection and image.is_grey and image.modality_name in PROJECTION_MODALITIES:
        return auto_window(image, frame, pixels=pixels)
    return full_range_window(image, frame, pixels)


def shows_inverted(image: Image, invert: bool) -> bool:
    """MONOCHROME1 is shown inverted by default; the user's invert flips what is shown."""
    return (image.photometric == "MONOCHROME1") != bool(invert)


# -- the lookup table -------------------------------------------------------------------------

def _palette_bits(image: Image) -> int:
    desc = image.ds.get("RedPaletteColorLookupTableDescriptor")
    return int(desc[2]) if desc else 8


def _voi_unit(values: np.ndarray, image: Image, frame: int, voi: Voi) -> np.ndarray:
    """Modality values -> 0..1 by a window or a VOI LUT."""
    if isinstance(voi, Window):
        return apply_window(values, voi)
    attrs = image.frame_attributes(frame)
    seq = attrs.get("VOILUTSequence") or []
    if not 0 <= voi.index < len(seq):
        raise UsageError(f"the image has no VOI LUT {voi.index + 1}")
    return _voi_lut_lookup(values, seq[voi.index], attrs)


def _voi_lut_lookup(values: np.ndarray, item, attrs) -> np.ndarray:
    """A VOI LUT item applied to modality values, as 0..1 (PS3.3 C.11.2.1.1): values below the
    first mapped value take the first entry, values beyond the table the last."""
    n, first, bits = (int(v) for v in item.LUTDescriptor)
    n = n or 65536
    data = item.LUTData
    if isinstance(data, (bytes, bytearray)):  # OW: 16-bit words in the dataset's byte order
        little = getattr(attrs, "original_encoding", (None, True))[1] is not False
        lut = np.frombuffer(data, dtype="<u2" if little else ">u2")
    else:
        lut = np.asarray(data if isinstance(data, (list, tuple)) else [data])
    lut = lut[:n].astype(np.float64)
    if first >= 32768 and first > n:  # US descriptor holding a negative (SS) first value
        first -= 65536
    idx = np.clip(np.floor(np.asarray(values, dtype=np.float64)) - first, 0, len(lut) - 1).astype(np.intp)
    top = float((1 << bits) - 1)
    if lut.size and lut.max() > top:  # descriptors that understate the LUT's real depth
        top = float((1 << int(math.ceil(math.log2(lut.max() + 1)))) - 1)
    return np.clip(lut[idx] / top, 0.0, 1.0)


def _to_uint8(unit: np.ndarray, inverted: bool) -> np.ndarray:
    if inverted:
        unit = 1.0 - unit
    return np.rint(unit * 255.0).astype(np.uint8)


@dataclass
class Table:
    """Stored value -> display value (uint8, or (N, 3) uint8 for colour).

    Indexed by the stored value itself; signed data is indexed through its unsigned view, so a
    lookup never needs an offset (an extra pass over the pixels)."""

    table: np.ndarray
    signed_view: np.dtype | None = None

    def apply(self, stored: np.ndarray) -> np.ndarray:
        if self.signed_view is not None:
            stored = stored.view(self.signed_view)
        return self.table[stored]


def _domain(image: Image, frame: int, dtype: np.dtype) -> tuple[np.ndarray, np.dtype | None] | None:
    """The stored values a table for arrays of `dtype` must cover, and the unsigned view that indexes it.
    8- and 16-bit data get a table over every value of the type, which needs no look at the pixels."""
    if dtype.kind not in "iu":
        return None
    if dtype.itemsize <= 2:
        if dtype.kind == "i":
            unsigned = np.dtype(f"u{dtype.itemsize}")
            return np.arange(1 << (8 * dtype.itemsize), dtype=np.int64).astype(unsigned).view(dtype), unsigned
        return np.arange(1 << (8 * dtype.itemsize)), None
    if image.is_color:
        return None
    flo, fhi = _stored_minmax(image, frame)
    if flo >= 0 and fhi < LUT_DOMAIN_LIMIT:
        return np.arange(int(fhi) + 1), None
    return None


def display_table(image: Image, frame: int, voi: Voi, invert: bool = False,
                  dtype: np.dtype | None = None) -> Table | None:
    """The table for looking up stored values of `dtype` (default: the frame's), or None where
    values must be computed directly."""
    if dtype is None:
        dtype = image.frame(frame).dtype
    dtype = np.dtype(dtype)
    key = (_table_key_frame(image, frame), voi, shows_inverted(image, invert), dtype.str)
    cache = image.display_tables
    if key in cache:
        return cache[key]
    dom = _domain(image, frame, dtype)
    if dom is None:
        return None
    domain, view = dom
    if image.is_color:
        values = domain
    elif image.is_palette:
        values = image.palette(domain.astype(np.uint16))
    else:
        values = image.modality(domain.astype(np.int64), frame)
    table = Table(_to_uint8(_voi_unit(values, image, frame, voi), key[2]), view)
    if len(cache) > 16:
        cache.clear()
    cache[key] = table
    return table


def _table_key_frame(image: Image, frame: int) -> int:
    # Frames share a table unless enhanced functional groups give each its own values.
    if image.frame_attributes(frame) is not image.ds or image.bits_allocated > 16:
        return frame
    return 0


def to_display(image: Image, frame: int, stored: np.ndarray, voi: Voi, invert: bool = False) -> np.ndarray:
    """Stored values (any shape) of `frame` -> display values, through the table when there is one."""
    table = display_table(image, frame, voi, invert, stored.dtype)
    if table is not None:
        return table.apply(stored)
    values = image.modality(stored.astype(np.float64), frame)
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    return _to_uint8(_voi_unit(values, image, frame, voi), shows_inverted(image, invert))


# -- the region of a viewport -------------------------------------------------------------------

Region = tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixel coordinates


@lru_cache(maxsize=64)
def _sample_indices(start: float, stop: float, count: int, limit: int) -> np.ndarray:
    step = (stop - start) / count
    idx = np.floor(start + (np.arange(count) + 0.5) * step).astype(np.intp)
    return np.clip(idx, 0, limit - 1)


def resample(arr: np.ndarray, region: Region, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resample of region of arr (rows, cols[, 3]) to height x width."""
    x0, y0, x1, y1 = region
    rows, cols = arr.shape[:2]
    if (x0, y0, x1, y1) == (0, 0, cols, rows) and (width, height) == (cols, rows):
        return arr
    r = _sample_indices(float(y0), float(y1), int(height), rows)
    c = _sample_indices(float(x0), float(x1), int(width), cols)
    sy, sx = (y1 - y0) / height, (x1 - x0) / width
    inside = x0 >= 0 and y0 >= 0 and x1 <= cols and y1 <= rows
    if inside and sy == int(sy) and sx == int(sx) and sy >= 1 and sx >= 1:  # a strided view, no copy
        return arr[r[0]: r[-1] + 1: int(sy), c[0]: c[-1] + 1: int(sx)]
    return arr.take(r, axis=0).take(c, axis=1)


def resample_smooth(arr: np.ndarray, region: Region, width: int, height: int) -> np.ndarray:
    """Like `resample`, but when shrinking by k >= 2 each k x k block is averaged first, so fine
    detail and noise do not alias. Values stay of the array's type (stored values, for the table)."""
    x0, y0, x1, y1 = region
    k = int(min((x1 - x0) / width, (y1 - y0) / height))
    if k < 2 or arr.dtype.kind not in "iuf":
        return resample(arr, region, width, height)
    rows, cols = arr.shape[:2]
    xa, ya = max(0, math.floor(x0)), max(0, math.floor(y0))
    w = (min(cols, math.ceil(x1)) - xa) // k * k
    h = (min(rows, math.ceil(y1)) - ya) // k * k
    if w < k or h < k:
        return resample(arr, region, width, height)
    block = arr[ya: ya + h, xa: xa + w]
    wide = np.float64 if arr.dtype.kind == "f" else np.int64 if arr.dtype.itemsize > 2 else np.int32
    total = np.zeros((h // k, w // k) + arr.shape[2:], dtype=wide)
    for i in range(k):  # k*k strided adds: much faster than a reshape-and-mean
        for j in range(k):
            total += block[i::k, j::k]
    if arr.dtype.kind == "f":
        reduced = (total / (k * k)).astype(arr.dtype)
    else:
        reduced = ((total + (k * k) // 2) // (k * k)).astype(arr.dtype)
    return resample(reduced, ((x0 - xa) / k, (y0 - ya) / k, (x1 - xa) / k, (y1 - ya) / k), width, height)


class Renderer:
    """One viewport's pixels for one frame: resample on geometry changes, re-table on VOI changes.

    `pixels` with `scale` stands in for the frame while it is decoded: a reduced-resolution preview
    whose pixel (x, y) covers frame pixels (x * scale, y * scale). Regions are always in frame pixels.
    """

    def __init__(self, image: Image, frame: int = 0, pixels: np.ndarray | None = None, scale: float = 1.0):
        self.image = image
        self.frame = frame
        self.pixels = pixels
        self.scale = scale if pixels is not None else 1.0
        self._sampled: np.ndarray | None = None
        self._region_key = None

    @property
    def is_preview(self) -> bool:
        return self.pixels is not None

    def set_region(self, region: Region, width: int, height: int, smooth: bool = False) -> None:
        """Sample `region` (frame pixels) to width x height; `smooth` averages when shrinking
        (grey and RGB images; palette indices cannot be averaged)."""
        smooth = smooth and not self.image.is_palette
        key = (region, width, height, smooth)
        if key != self._region_key:
            source = self.image.frame(self.frame) if self.pixels is None else self.pixels
            if self.scale != 1.0:
                region = tuple(v / self.scale for v in region)
            sample = resample_smooth if smooth else resample
            self._sampled = sample(source, region, max(1, width), max(1, height))
            self._region_key = key

    def render(self, voi: Voi, invert: bool = False) -> np.ndarray:
        if self._sampled is None:
            h, w = self.image.rows, self.image.columns
            self.set_region((0, 0, w, h), w, h)
        return to_display(self.image, self.frame, self._sampled, voi, invert)


def render(image: Image, frame: int, voi: Voi, *, invert: bool = False, longest_side: int | None = None) -> np.ndarray:
    """The whole frame, at full resolution or scaled so its longest side is `longest_side`."""
    h, w = image.rows, image.columns
    if longest_side and longest_side > 0 and max(h, w) != longest_side:
        scale = longest_side / max(h, w)
        out_w, out_h = max(1, round(w * scale)), max(1, round(h * scale))
    else:
        out_w, out_h = w, h
    renderer = Renderer(image, frame)
    renderer.set_region((0, 0, w, h), out_w, out_h, smooth=True)
    return np.ascontiguousarray(renderer.render(voi, invert))
