"""From stored pixels to modality values, one frame at a time.

Decoding is pydicom's (with the pylibjpeg plugins); a multi-frame object decodes only the frames
asked for. Colour images come out as RGB (pydicom converts YBR); PALETTE COLOR stays as indices and is
expanded through its palette at display time, so windowing works on a small table, not on the image.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from functools import cached_property

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder
from pydicom.uid import UID

from app.errors import NoPixelDataError, PixelDataError, UnsupportedTransferSyntaxError, UsageError

log = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
GREY = ("MONOCHROME1", "MONOCHROME2")
_CACHE_BYTES = 256 * 1024 * 1024
LUT_DOMAIN_LIMIT = 1 << 17  # stored-value ranges up to this size are displayed through a table


def transfer_syntax_of(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(str(ts))
    # A bare dataset: pydicom tells how it was encoded.
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit:
        return pydicom.uid.ImplicitVRLittleEndian
    return pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian


def describe_transfer_syntax(uid: str) -> str:
    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid


class Image:
    """The pixels of one instance.

    `frame(i)` gives frame i (0-based) as decoded stored values: (rows, columns) for grey and palette
    images, (rows, columns, 3) RGB for colour. `modality(values, i)` maps stored values to modality
    values (HU for CT) for frame i.
    """

    def __init__(self, ds: Dataset, label: str = ""):
        self.ds = ds
        self.label = label or str(getattr(ds, "filename", "") or "the image")
        keyword = next((k for k in _PIXEL_KEYWORDS if k in ds), None)
        if keyword is None:
            sop = UID(str(ds.get("SOPClassUID", ""))).name
            what = f"it is a {sop} object without pixel data" if sop else "there is no pixel data"
            raise NoPixelDataError(self.label, f"contains no image ({what})")
        self.pixel_keyword = keyword
        missing = [k for k in ("Rows", "Columns", "BitsAllocated") if ds.get(k) in (None, "")]
        if missing:
            raise PixelDataError(self.label, f"the image description is incomplete ({', '.join(missing)} missing)")
        try:
            self.rows = int(ds.Rows)
            self.columns = int(ds.Columns)
            self.bits_allocated = int(ds.BitsAllocated)
            self.bits_stored = int(ds.get("BitsStored") or self.bits_allocated)
            self.samples = int(ds.get("SamplesPerPixel") or 1)
            self.signed = int(ds.get("PixelRepresentation") or 0) == 1
            self.frames = int(ds.get("NumberOfFrames") or 1)
        except (AttributeError, TypeError, ValueError) as exc:
            raise PixelDataError(self.label, f"the image description is invalid ({_first_line(exc)})") from None
        if self.rows < 1 or self.columns < 1 or self.frames < 1:
            raise PixelDataError(self.label, "the image has no rows, columns or frames")
        self.photometric = str(ds.get("PhotometricInterpretation") or ("MONOCHROME2" if self.samples == 1 else "RGB"))
        self.photometric = self.photometric.strip().upper()
        self.transfer_syntax = transfer_syntax_of(ds)
        self._check_decodable()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        # Kept here for app.dicom.display: stored min/max per frame, and its lookup tables.
        self.frame_ranges: dict[int, tuple[float, float]] = {}
        self.display_tables: dict = {}

    # -- what kind of image ------------------------------------------------------------------

    @property
    def is_palette(self) -> bool:
        return self.photometric == "PALETTE COLOR"

    @property
    def is_color(self) -> bool:
        return self.samples == 3

    @property
    def is_grey(self) -> bool:
        return not self.is_color and not self.is_palette

    @property
    def is_float(self) -> bool:
        return self.pixel_keyword != "PixelData"

    @property
    def modality_name(self) -> str:
        return str(self.ds.get("Modality", "") or "")

    @property
    def stored_range(self) -> tuple[int, int]:
        """Every value the stored pixels can take, from BitsStored and PixelRepresentation."""
        bits = max(1, min(self.bits_stored, self.bits_allocated, 32))
        if self.signed:
            return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return 0, (1 << bits) - 1

    # -- checks before decoding --------------------------------------------------------------

    def _check_decodable(self) -> None:
        if self.is_float:
            return
        ts = self.transfer_syntax
        try:
            decoder = get_decoder(ts)
        except NotImplementedError:
            raise UnsupportedTransferSyntaxError(
                self.label, f"the transfer syntax {describe_transfer_syntax(ts)} is not supported by Lightbox"
            ) from None
        if not decoder.is_available:
            raise UnsupportedTransferSyntaxError(
                self.label,
                f"no installed decoder handles the transfer syntax {describe_transfer_syntax(ts)}",
            )
        if not ts.is_compressed:
            have = len(self.ds.PixelData)
            bits = self.bits_allocated
            pixels = self.rows * self.columns * self.samples * self.frames
            if self.photometric == "YBR_FULL_422":  # two samples per pixel on disk
                pixels = pixels * 2 // 3
            need = (pixels + 7) // 8 if bits == 1 else pixels * (bits // 8)
            if have < need:
                raise PixelDataError(
                    self.label,
                    f"the pixel data is shorter than the header says ({have} of {need} bytes): "
                    "the file is damaged or was cut off",
                )

    # -- decoding ----------------------------------------------------------------------------

    def frame(self, index: int = 0) -> np.ndarray:
        if not 0 <= index < self.frames:
            raise UsageError(f"frame {index + 1} does not exist: {self.label} has {self.frames} frame(s)")
        with self._cache_lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
        arr = self._decode(index)
        arr.flags.writeable = False
        with self._cache_lock:
            self._cache[index] = arr
            while sum(a.nbytes for a in self._cache.values()) > _CACHE_BYTES and len(self._cache) > 1:
                self._cache.popitem(last=False)
        return arr

    def _decode(self, index: int) -> np.ndarray:
        try:
            if self.is_float:
                arr = pydicom.pixels.pixel_array(self.ds, index=index if self.frames > 1 else None)
            else:
                arr = pydicom.pixels.pixel_array(self.ds, index=index if self.frames > 1 else None,
                                                 as_rgb=not self.is_palette)
        except Exception as exc:  # noqa: BLE001 - decoders raise many types for damaged data
            log.info("decoding %s frame %d failed", self.label, index + 1, exc_info=True)
            what = UID(self.transfer_syntax).name or str(self.transfer_syntax)
            raise PixelDataError(self.label, f"the image data could not be decoded ({what}): {_first_line(exc)}") from None
        if arr.ndim == 3 and self.samples == 1:  # a single frame came back with a frame axis
            arr = arr[0]
        return arr

    @property
    def nbytes(self) -> int:
        """Memory held: the encoded pixel data and the decoded frames kept."""
        encoded = len(self.ds[self.pixel_keyword].value or b"")
        with self._cache_lock:
            return encoded + sum(a.nbytes for a in self._cache.values())

    def has_frame(self, index: int) -> bool:
        """Whether frame `index` is decoded already."""
        with self._cache_lock:
            return index in self._cache

    @property
    def slow_to_decode(self) -> bool:
        """Large frames in syntaxes whose decoders take a noticeable time (JPEG 2000, JPEG-LS, JPEG)."""
        ts = self.transfer_syntax
        return ts.is_compressed and ts != pydicom.uid.RLELossless and self.rows * self.columns >= 1_000_000

    def preview(self, index: int, longest_side: int) -> tuple[np.ndarray, int] | None:
        """A quick reduced-resolution decode of a JPEG 2000 frame, at least `longest_side` pixels
        on its longest side: (pixels, factor), where one preview pixel covers factor x factor
        frame pixels. None where no preview is possible or it would not be smaller."""
        if self.transfer_syntax not in pydicom.uid.JPEG2000TransferSyntaxes or not self.is_grey or self.signed:
            return None
        level = 0
        while max(self.rows, self.columns) >> (level + 1) >= longest_side and level < 5:
            level += 1
        if level == 0:
            return None
        try:
            import io

            from PIL import Image as PILImage
            from pydicom.encaps import get_frame

            from openjpeg import get_parameters

            data = get_frame(self.ds.PixelData, index, number_of_frames=self.frames)
            params = get_parameters(data)
            if params.get("is_signed") or params.get("nr_components", 1) != 1:
                return None
            precision = int(params.get("precision", 16))
            with PILImage.open(io.BytesIO(data)) as picture:
                picture.reduce = level
                picture.load()
                arr = np.asarray(picture)
        except Exception:  # noqa: BLE001 - a preview is optional; the full decode reports problems
            log.info("no preview for %s", self.label, exc_info=True)
            return None
        expected = (-(-self.rows // (1 << level)), -(-self.columns // (1 << level)))
        if arr.shape != expected:
            return None
        dtype = np.uint8 if self.bits_allocated <= 8 else np.uint16
        if arr.dtype == np.uint16 and 8 < precision < 16:  # Pillow scales samples up to 16 bits
            arr = arr >> (16 - precision)
        arr = arr.astype(dtype, copy=False)
        if self.bits_stored < 8 * dtype().itemsize:
            arr = arr & dtype((1 << self.bits_stored) - 1)
        return arr, 1 << level

    # -- modality values ---------------------------------------------------------------------

    def frame_attributes(self, index: int = 0) -> Dataset:
        """The attributes that shape frame `index`'s values: the dataset, or for enhanced objects
        a flat copy of the shared and per-frame functional groups that matter."""
        return self._flattened[index] if self._flattened else self.ds

    @cached_property
    def _flattened(self) -> list[Dataset] | None:
        ds = self.ds
        if "SharedFunctionalGroupsSequence" not in ds and "PerFrameFunctionalGroupsSequence" not in ds:
            return None
        shared = ds.get("SharedFunctionalGroupsSequence")
        shared = shared[0] if shared else Dataset()
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
        out = []
        for i in range(self.frames):
            flat = Dataset()
            for kw in ("BitsStored", "PixelRepresentation", "BitsAllocated", "PhotometricInterpretation",
                       "ModalityLUTSequence", "VOILUTSequence", "RescaleSlope", "RescaleIntercept",
                       "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction"):
                if kw in ds:
                    flat[kw] = ds[kw]
            flat.file_meta = getattr(ds, "file_meta", Dataset())
            frame = per_frame[i] if i < len(per_frame) else Dataset()
            for group in (shared, frame):
                for seq_kw in ("PixelValueTransformationSequence", "FrameVOILUTSequence"):
                    seq = group.get(seq_kw)
                    if seq:
                        for elem in seq[0]:
                            flat[elem.tag] = elem
            out.append(flat)
        return out

    def modality(self, values: np.ndarray, index: int = 0) -> np.ndarray:
        """Stored values -> modality values (Rescale, or the Modality LUT Sequence)."""
        if not self.is_grey:
            return values
        attrs = self.frame_attributes(index)
        if self.is_float:
            slope = float(attrs.get("RescaleSlope", 1) or 1)
            intercept = float(attrs.get("RescaleIntercept", 0) or 0)
            return values * slope + intercept if (slope, intercept) != (1.0, 0.0) else values
        try:
            return apply_modality_lut(values, attrs)
        except Exception as exc:  # noqa: BLE001
            log.info("modality LUT of %s unusable", self.label, exc_info=True)
            raise PixelDataError(self.label, f"the modality LUT or rescale values are invalid ({_first_line(exc)})") from None

    def palette(self, values: np.ndarray) -> np.ndarray:
        """PALETTE COLOR indices -> RGB through the image's palette."""
        try:
            return apply_color_lut(values, self.ds)
        except Exception as exc:  # noqa: BLE001
            raise PixelDataError(self.label, f"the colour palette is invalid ({_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines else type(exc).__name__
    return text[:200]
