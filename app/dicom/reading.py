"""Open DICOM files or bytes, in full or header only, with errors a user can act on."""

from __future__ import annotations

import io
import logging
import os
import struct
import warnings
from pathlib import Path

import pydicom
import pydicom.datadict
import pydicom.dataelem
import pydicom.uid
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from app.errors import NotDicomError, TruncatedFileError

log = logging.getLogger(__name__)

Source = str | os.PathLike | bytes

_UNDEFINED = 0xFFFFFFFF
_MAGIC = [
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
]


def describe_content(head: bytes) -> str | None:
    """What a non-DICOM file looks like, judged by its first bytes."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if text.startswith(b"<?xml") or text.startswith(b"<"):
        return "an XML document"
    if text.startswith((b"{", b"[")):
        return "a JSON document"
    return None


def source_name(source: Source, name: str | None = None) -> str:
    if name:
        return name
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "the data"
    return str(source)


def read(source: Source, *, header_only: bool = False, name: str | None = None) -> Dataset:
    """Read a Part 10 file (or a bare dataset without preamble) from a path or bytes.

    header_only stops before the pixel data: what indexing needs, without reading the image.
    """
    label = source_name(source, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        size = len(data)
        opener = lambda: io.BytesIO(data)  # noqa: E731
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise NotDicomError(label, "file not found") from None
        except OSError as exc:
            raise NotDicomError(label, f"cannot be read ({exc.strerror or exc})") from None
        if path.is_dir():
            raise NotDicomError(label, "is a folder, not a file")
        opener = lambda: open(path, "rb")  # noqa: E731
    if size == 0:
        raise NotDicomError(label, "the file is empty")

    try:
        with opener() as fp:
            head = fp.read(132)
            fp.seek(0)
            ds = _parse(fp, label, head, size, header_only)
    except PermissionError:
        raise NotDicomError(label, "permission denied") from None
    if not isinstance(source, (bytes, bytearray, memoryview)):
        ds.filename = str(source)
    return ds


def _parse(fp, label: str, head: bytes, size: int, header_only: bool) -> Dataset:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=header_only)
            except InvalidDicomError:
                if len(head) >= 132 and head[128:132] == b"DICM":
                    raise
                what = describe_content(head)
                if what:
                    raise NotDicomError(label, f"not a DICOM file (it is {what})") from None
                fp.seek(0)
                ds = _read_bare(fp, label, header_only)
        except (NotDicomError, TruncatedFileError):
            raise
        except (EOFError, struct.error) as exc:
            log.info("truncated %s: %s", label, exc)
            raise TruncatedFileError(label, "the file is truncated (it ends in the middle of the header)") from None
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged headers
            log.info("unreadable %s", label, exc_info=True)
            raise NotDicomError(label, f"not a readable DICOM file ({_short(exc)})") from None
    for warning in caught:
        if "End of file reached" in str(warning.message):
            raise TruncatedFileError(label, "the file is truncated (the image data ends early)")
    _check_complete(ds, label, size, header_only)
    return ds


def _read_bare(fp, label: str, header_only: bool) -> Dataset:
    """A dataset without preamble and file meta: accepted only when it really looks like one."""
    ds = pydicom.dcmread(fp, force=True, stop_before_pixels=header_only)
    tags = list(ds.keys())
    if not tags or tags[0].group not in (0x0002, 0x0008) or "SOPClassUID" not in ds:
        raise NotDicomError(label, "not a DICOM file")
    try:
        uid = str(ds.SOPClassUID)
    except Exception:  # noqa: BLE001
        raise NotDicomError(label, "not a DICOM file") from None
    if not pydicom.uid.UID(uid).is_valid:
        raise NotDicomError(label, "not a DICOM file")
    if "TransferSyntaxUID" not in ds.file_meta:  # record how it was encoded, for the decoders
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian if implicit
            else pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian
        )
    return ds


def _check_complete(ds: Dataset, label: str, size: int, header_only: bool) -> None:
    """pydicom stops quietly at the end of a short file; find out whether it ended mid-element."""
    if not len(ds):
        raise TruncatedFileError(label, "the file is truncated (no data set after the file header)")
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian:
        return  # offsets are positions in the inflated stream, not in the file
    last = ds.get_item(list(ds.keys())[-1])
    if last is None:
        return
    tell = getattr(last, "value_tell", None)
    length = getattr(last, "length", None)
    if tell is None or length is None or length == _UNDEFINED:
        return
    end = tell + length
    if end > size:
        raise TruncatedFileError(label, f"the file is truncated ({size} bytes; {end} expected)")
    if not header_only and 0 < size - end < 8:
        raise TruncatedFileError(label, "the file is truncated (it ends inside an element header)")


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def part10_bytes(ds: Dataset) -> bytes:
    """The dataset as a Part 10 file (preamble, file meta) in memory."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def part10_from_network(sop_class: str, sop_uid: str, transfer_syntax: str, dataset: bytes, source_aet: str = "") -> bytes:
    """A Part 10 file of a data set as a C-STORE brought it (encoded in `transfer_syntax`), the file meta written
    here directly: a tenth of the time of a pydicom FileMetaDataset."""
    def element(number: int, vr: bytes, value: bytes) -> bytes:
        if len(value) % 2:
            value += b"\0" if vr == b"UI" else b" "
        if vr == b"OB":
            return struct.pack("<HH2sHL", 2, number, vr, 0, len(value)) + value
        return struct.pack("<HH2sH", 2, number, vr, len(value)) + value

    body = b"".join((
        element(0x0001, b"OB", b"\x00\x01"), element(0x0002, b"UI", sop_class.encode("ascii")),
        element(0x0003, b"UI", sop_uid.encode("ascii")), element(0x0010, b"UI", transfer_syntax.encode("ascii")),
        element(0x0012, b"UI", pydicom.uid.PYDICOM_IMPLEMENTATION_UID.encode("ascii")), element(0x0013, b"SH", b"LIGHTBOX"),
        element(0x0016, b"AE", source_aet.strip().encode("ascii", "replace")) if source_aet.strip() else b"",
    ))
    return b"".join((b"\0" * 128, b"DICM", element(0x0000, b"UL", struct.pack("<L", len(body))), body, dataset))


def text(ds: Dataset, keyword: str) -> str:
    """An attribute as text ("a\\b" when it has several values; "" when absent).

    Plain-ASCII values are read straight from the raw element, without pydicom's value conversion:
    indexing reads a dozen of these per file, and conversion is most of the cost.
    """
    tag = _TAGS.get(keyword)
    if tag is None:
        tag = _TAGS[keyword] = pydicom.datadict.tag_for_keyword(keyword)
    if tag is None or tag not in ds:
        return ""
    raw = ds.get_item(tag)
    value = getattr(raw, "value", None)
    if isinstance(raw, pydicom.dataelem.RawDataElement) and isinstance(value, bytes) and value.isascii() \
            and b"\x1b" not in value and pydicom.datadict.dictionary_VR(tag) in _ASCII_VRS:
        return "\\".join(v.strip(" \x00") for v in value.decode("ascii").split("\\")).strip()
    value = ds.get(keyword)
    if value is None:
        return ""
    if not isinstance(value, (str, bytes)) and hasattr(value, "__iter__") and not hasattr(value, "family_name"):
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


_TAGS: dict[str, int | None] = {}
# Text VRs whose ASCII bytes are their value in every character set (no escapes, no multi-byte codes).
_ASCII_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UT"}
