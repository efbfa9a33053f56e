"""JPEG and PNG images -> DICOM Secondary Capture instances, with the caller's patient and study.

A JPEG whose process DICOM carries (baseline, extended, lossless) keeps its bitstream, encapsulated as
it is. Everything else (progressive JPEG, CMYK, a rotated photo, PNG) is decoded with Pillow and
stored uncompressed.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import re
import struct
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from app import __version__
from app.dicom.patient import Patient, write_patient
from app.dicom.reading import describe_content
from app.errors import NotDicomError

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_SIDE = 65535  # Rows and Columns are 16-bit


@dataclass(frozen=True)
class CaptureContext:
    patient: Patient = field(default_factory=Patient)
    study_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession: str = ""
    referring_physician: str = ""
    series_uid: str = ""
    series_description: str = ""
    series_number: int | None = None
    modality: str = "OT"

    def resolved(self) -> CaptureContext:
        """A copy with study and series UIDs, study date and time filled in: images captured with
        it land in one study and one series."""
        now = datetime.datetime.now()
        return replace(
            self,
            study_uid=self.study_uid or generate_uid(),
            series_uid=self.series_uid or generate_uid(),
            study_date=self.study_date or now.strftime("%Y%m%d"),
            study_time=self.study_time or now.strftime("%H%M%S"),
        )


def capture_kind(head: bytes) -> str | None:
    """"jpeg", "png" or None, judged by the first bytes."""
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(PNG_MAGIC):
        return "png"
    return None


def secondary_capture(
    data: bytes, context: CaptureContext, *, name: str = "", instance_number: int | None = None
) -> Dataset:
    """A Secondary Capture dataset (with file meta) holding the JPEG or PNG image `data`.

    `name` labels errors and is recorded, base name only, in DerivationDescription. Pass a resolved
    context to put several images in one series; an unresolved one makes a new study each call.
    Raises NotDicomError for anything that is not a usable JPEG or PNG image.
    """
    label = name or "the image"
    data = bytes(data)
    if not data:
        raise NotDicomError(label, "the file is empty")
    kind = capture_kind(data[:16])
    if kind is None:
        what = describe_content(data[:64])
        raise NotDicomError(label, f"not a JPEG or PNG image{f' (it is {what})' if what else ''}")
    if kind == "jpeg":
        picture = _jpeg_picture(data, label)
    else:
        picture = _decoded(data, label, "PNG")
    if picture.rows > MAX_SIDE or picture.columns > MAX_SIDE:
        raise NotDicomError(
            label, f"the image is too large for DICOM ({picture.columns} x {picture.rows} pixels; at most {MAX_SIDE})"
        )
    return _dataset(picture, context.resolved(), _base_name(name), instance_number)


# -- what goes into the dataset ------------------------------------------------------------------


@dataclass
class _Picture:
    rows: int
    columns: int
    samples: int
    photometric: str
    bits_stored: int
    transfer_syntax: UID
    encoded: bytes = b""  # the JPEG bitstream, when kept
    pixels: np.ndarray | None = None  # decoded pixels, when not
    lossy: bool = False
    source_bytes: int = 0


def _dataset(picture: _Picture, context: CaptureContext, base_name: str, instance_number: int | None) -> Dataset:
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.TransferSyntaxUID = picture.transfer_syntax
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.StudyDate, ds.StudyTime = context.study_date, context.study_time
    ds.ContentDate, ds.ContentTime = date, time
    ds.AccessionNumber = context.accession
    ds.Modality = context.modality or "OT"
    ds.ConversionType = "DI"
    ds.ReferringPhysicianName = context.referring_physician
    if context.study_description:
        ds.StudyDescription = context.study_description
    if context.series_description:
        ds.SeriesDescription = context.series_description
    ds.SecondaryCaptureDeviceManufacturer = "Lightbox"
    ds.SecondaryCaptureDeviceSoftwareVersions = __version__
    if base_name:
        ds.DerivationDescription = f"Imported from {base_name}"[:1024]
    write_patient(ds, context.patient)
    ds.StudyInstanceUID = context.study_uid
    ds.SeriesInstanceUID = context.series_uid
    ds.StudyID = ""
    ds.SeriesNumber = context.series_number
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = ""
    ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = date, time
    if picture.lossy:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        raw = picture.rows * picture.columns * picture.samples * (1 if picture.bits_stored <= 8 else 2)
        if picture.source_bytes:
            ds.LossyImageCompressionRatio = f"{raw / picture.source_bytes:.2f}"[:16]

    if picture.pixels is not None:
        ds.set_pixel_data(picture.pixels, picture.photometric, picture.bits_stored, generate_instance_uid=False)
    else:
        ds.SamplesPerPixel = picture.samples
        ds.PhotometricInterpretation = picture.photometric
        if picture.samples > 1:
            ds.PlanarConfiguration = 0
        ds.Rows, ds.Columns = picture.rows, picture.columns
        ds.BitsAllocated = 8 if picture.bits_stored <= 8 else 16
        ds.BitsStored = picture.bits_stored
        ds.HighBit = picture.bits_stored - 1
        ds.PixelRepresentation = 0
        ds.PixelData = encapsulate([picture.encoded])  # pads an odd-length bitstream to even
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    return ds


def _base_name(name: str) -> str:
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


# -- JPEG --------------------------------------------------------------------------------------------

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROCESS = {
    0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive", 0xC3: "lossless",
    0xC5: "hierarchical", 0xC6: "hierarchical progressive", 0xC7: "hierarchical lossless",
    0xC9: "arithmetic-coded", 0xCA: "arithmetic-coded progressive", 0xCB: "arithmetic-coded lossless",
    0xCD: "hierarchical arithmetic-coded", 0xCE: "hierarchical arithmetic-coded progressive",
    0xCF: "hierarchical arithmetic-coded lossless",
}
# The next marker after entropy-coded data: 0xFF followed by neither stuffing, a restart marker nor fill.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


@dataclass
class JpegHeader:
    """What the segments of a JPEG say (read_jpeg_header)."""

    marker: int = 0  # the SOF marker: 0xC0 baseline, 0xC1 extended, 0xC2 progressive, 0xC3 lossless ...
    precision: int = 0
    rows: int = 0
    columns: int = 0
    components: tuple[tuple[int, int, int], ...] = ()  # (identifier, horizontal, vertical sampling)
    selection: int | None = None  # the first scan's Ss: the predictor of a lossless JPEG
    jfif: bool = False
    adobe_transform: int | None = None
    exif: bytes = b""
    end: int = 0  # offset just past the end-of-image marker

    @property
    def process(self) -> str:
        return _PROCESS.get(self.marker, f"SOF{self.marker - 0xC0}")


def read_jpeg_header(data: bytes, label: str = "the image") -> JpegHeader:
    """Walk a JPEG's segments up to its end-of-image marker. NotDicomError if they do not add up."""
    if not data.startswith(b"\xff\xd8"):
        raise NotDicomError(label, "not a JPEG image")
    header = JpegHeader()
    cut = NotDicomError(label, "the JPEG image is incomplete (the file was cut off)")
    pos, size = 2, len(data)
    while True:
        if pos + 2 > size:
            raise cut
        if data[pos] != 0xFF:  # stray bytes between segments: skipped, as libjpeg does
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                raise NotDicomError(label, f"the JPEG image is damaged (no segment marker after byte {pos})")
            log.info("%s: %d stray bytes at byte %d of the JPEG", label, found.start() - pos, pos)
            pos = found.start()
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            header.end = pos + 2
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # stand-alone markers
            pos += 2
            continue
        if pos + 4 > size:
            raise cut
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if length < 2:
            raise NotDicomError(label, f"the JPEG image is damaged (a segment of length {length} at byte {pos})")
        if pos + 2 + length > size:
            raise cut
        payload = data[pos + 4 : pos + 2 + length]
        if marker in _SOF and not header.marker:
            if len(payload) < 6 or len(payload) < 6 + 3 * payload[5]:
                raise NotDicomError(label, "the JPEG image is damaged (its frame header is too short)")
            header.marker = marker
            header.precision, header.rows, header.columns, count = struct.unpack(">BHHB", payload[:6])
            header.components = tuple(
                (payload[6 + 3 * i], payload[7 + 3 * i] >> 4, payload[7 + 3 * i] & 0x0F) for i in range(count)
            )
        elif marker == 0xE0 and payload.startswith(b"JFIF\x00"):
            header.jfif = True
        elif marker == 0xE1 and payload.startswith(b"Exif\x00") and not header.exif:
            header.exif = payload
        elif marker == 0xEE and payload.startswith(b"Adobe") and len(payload) >= 12:
            header.adobe_transform = payload[11]
        pos += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data follows up to the next marker
            if not header.marker:
                raise NotDicomError(label, "the JPEG image is damaged (image data before its frame header)")
            if header.selection is None and payload:
                count = payload[0]
                if len(payload) > 1 + 2 * count:
                    header.selection = payload[1 + 2 * count]
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                raise cut
            pos = found.start()
    if not header.marker:
        raise NotDicomError(label, "the JPEG image has no frame header")
    if header.rows == 0 or header.columns == 0:
        raise NotDicomError(label, "the JPEG image gives no size in its frame header, which DICOM needs")
    return header


def _orientation(header: JpegHeader) -> int:
    if not header.exif:
        return 1
    try:
        from PIL import Image

        exif = Image.Exif()
        exif.load(header.exif)
        value = int(exif.get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a damaged Exif block: the orientation is unknown
        log.info("unreadable Exif block", exc_info=True)
        return 1
    return value if 1 <= value <= 8 else 1


def _jpeg_picture(data: bytes, label: str) -> _Picture:
    header = read_jpeg_header(data, label)
    if header.end < len(data):
        log.info("%s: %d bytes after the JPEG's end-of-image marker are not kept", label, len(data) - header.end)
        data = data[: header.end]
    count = len(header.components)
    orientation = _orientation(header)
    sampling = {(h, v) for _, h, v in header.components}
    lossless = header.marker == 0xC3
    syntax = None
    if header.marker == 0xC0 and header.precision == 8:
        syntax = JPEGBaseline8Bit
    elif header.marker == 0xC1 and header.precision in (8, 12):
        syntax = JPEGExtended12Bit
    elif lossless and 2 <= header.precision <= 16 and (count == 1 or len(sampling) == 1):
        syntax = JPEGLosslessSV1 if header.selection == 1 else JPEGLossless
    why = None
    if syntax is None:
        why = f"the JPEG process ({header.process}, {header.precision}-bit) has no DICOM transfer syntax here"
    elif count not in (1, 3):
        why = f"the JPEG has {count} colour components" + (" (CMYK)" if count == 4 else "")
    elif orientation != 1:
        why = f"the photo is to be turned (Exif orientation {orientation})"

    if why is not None:
        log.info("%s: %s; decoded and stored uncompressed", label, why)
        picture = _decoded(data, label, "JPEG", header=header, orientation=orientation)
        picture.lossy = not lossless
        picture.source_bytes = len(data)
        return picture

    _check_decodes(data, header, label)
    if count == 1:
        photometric = "MONOCHROME2"
    elif lossless or _rgb_components(header):
        photometric = "RGB"
    else:
        photometric = "YBR_FULL" if len(sampling) == 1 else "YBR_FULL_422"
    return _Picture(
        rows=header.rows, columns=header.columns, samples=count, photometric=photometric,
        bits_stored=header.precision, transfer_syntax=syntax, encoded=data,
        lossy=not lossless, source_bytes=len(data),
    )


def _rgb_components(header: JpegHeader) -> bool:
    """Colour stored as RGB, not YCbCr: Adobe's transform flag 0, or components named R, G, B (as libjpeg judges)."""
    if header.jfif:
        return False
    if header.adobe_transform is not None:
        return header.adobe_transform == 0
    return tuple(c[0] for c in header.components) == (0x52, 0x47, 0x42)


def _check_decodes(data: bytes, header: JpegHeader, label: str) -> None:
    """Decode the kept bitstream once, at a reduced scale where possible, to turn away damaged data."""
    try:
        if header.precision == 8 and header.marker in (0xC0, 0xC1):
            from PIL import Image

            with _pillow_quietly(), Image.open(io.BytesIO(data)) as picture:
                picture.draft(picture.mode, (max(1, header.columns // 8), max(1, header.rows // 8)))
                picture.load()
        else:
            from libjpeg import decode

            decode(data)
    except ImportError:
        log.info("%s: no decoder to check the %s JPEG with", label, header.process)
    except Exception as exc:  # noqa: BLE001 - decoders raise many types for damaged data
        log.info("%s: the JPEG does not decode", label, exc_info=True)
        raise NotDicomError(label, f"the JPEG image is damaged ({_first_line(exc)})") from None


# -- decoded with Pillow -------------------------------------------------------------------------------


def _decoded(data: bytes, label: str, kind: str, *, header: JpegHeader | None = None, orientation: int = 1) -> _Picture:
    """Pixels as Pillow decodes them, turned upright, as RGB 8-bit or grey 8/16-bit."""
    from PIL import Image, ImageOps

    try:
        with _pillow_quietly():
            if kind == "PNG":
                with Image.open(io.BytesIO(data)) as picture:
                    picture.verify()  # chunk checksums
            with Image.open(io.BytesIO(data)) as picture:
                picture.load()
                upright = ImageOps.exif_transpose(picture)
                arr, photometric, bits = _pixels(upright)
    except Image.DecompressionBombError:
        raise NotDicomError(label, f"the {kind} image is too large to import") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for damaged or unusual files
        log.info("%s: Pillow cannot decode it", label, exc_info=True)
        if header is not None and header.marker in (0xC1, 0xC3) and orientation != 1:
            return _decoded_libjpeg(data, label, header, orientation)
        text = _first_line(exc)
        if "truncated" in text:
            raise NotDicomError(label, f"the {kind} image is incomplete (the file was cut off)") from None
        if header is not None:
            what = f"{header.process}, {header.precision}-bit"
            raise NotDicomError(label, f"the JPEG image uses a process Lightbox cannot read ({what}: {text})") from None
        raise NotDicomError(label, f"the {kind} image is damaged or unreadable ({text})") from None
    rows, columns = arr.shape[:2]
    return _Picture(
        rows=rows, columns=columns, samples=1 if arr.ndim == 2 else 3, photometric=photometric,
        bits_stored=bits, transfer_syntax=ExplicitVRLittleEndian, pixels=arr,
    )


def _pixels(picture) -> tuple[np.ndarray, str, int]:
    """(array, photometric, bits stored); transparency is laid over black."""
    mode = picture.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(picture)
        if mode == "I":
            arr = np.clip(arr, 0, 65535)
        return np.ascontiguousarray(arr, dtype=np.uint16), "MONOCHROME2", 16
    if mode in ("1", "L"):
        return np.asarray(picture.convert("L"), dtype=np.uint8), "MONOCHROME2", 8
    if mode in ("LA", "La"):
        la = np.asarray(picture.convert("LA"), dtype=np.uint16)
        return _over_black(la[..., 0], la[..., 1]), "MONOCHROME2", 8
    if mode == "RGB":
        return np.asarray(picture, dtype=np.uint8), "RGB", 8
    has_alpha = mode in ("RGBA", "RGBa", "PA") or "transparency" in picture.info
    if not has_alpha:
        return np.asarray(picture.convert("RGB"), dtype=np.uint8), "RGB", 8
    rgba = np.asarray(picture.convert("RGBA"), dtype=np.uint16)
    return _over_black(rgba[..., :3], rgba[..., 3:]), "RGB", 8


def _over_black(values: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return ((values * alpha + 127) // 255).astype(np.uint8)


def _decoded_libjpeg(data: bytes, label: str, header: JpegHeader, orientation: int) -> _Picture:
    """A lossless or 12-bit JPEG Pillow cannot read, decoded with libjpeg and turned upright."""
    try:
        from libjpeg import decode

        arr = np.asarray(decode(data))
    except Exception as exc:  # noqa: BLE001
        log.info("%s: libjpeg cannot decode it", label, exc_info=True)
        raise NotDicomError(label, f"the JPEG image is damaged ({_first_line(exc)})") from None
    arr = _upright(arr, orientation)
    bits = header.precision
    arr = np.ascontiguousarray(arr, dtype=np.uint8 if bits <= 8 else np.uint16)
    rows, columns = arr.shape[:2]
    colour = arr.ndim == 3
    return _Picture(
        rows=rows, columns=columns, samples=3 if colour else 1, photometric="RGB" if colour else "MONOCHROME2",
        bits_stored=bits, transfer_syntax=ExplicitVRLittleEndian, pixels=arr,
    )


def _upright(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Exif orientation 2-8 applied to (rows, columns[, samples]) pixels, as ImageOps.exif_transpose does."""
    turn = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }.get(orientation)
    return turn(arr) if turn else arr


@contextlib.contextmanager
def _pillow_quietly():
    """Pillow's warnings (large images, odd chunks) go to the log, not to the console."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                log.info("Pillow: %s", warning.message)


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:160]
