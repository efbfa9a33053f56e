"""Small synthetic DICOM datasets for the unit tests, built with pydicom (no files from elsewhere)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

PYDICOM_TEST_FILES = Path(pydicom.data.__file__).resolve().parent / "test_files"


def pydicom_file(name: str) -> Path:
    """A file bundled inside the installed pydicom package (never downloaded)."""
    path = PYDICOM_TEST_FILES / name
    assert path.is_file(), f"pydicom no longer bundles {name}"
    return path


def base_dataset(
    sop_class: str = SecondaryCaptureImageStorage,
    *,
    modality: str = "OT",
    transfer_syntax: str = ExplicitVRLittleEndian,
    **attrs,
) -> Dataset:
    """A dataset with file meta and the identifying attributes every instance has."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = "Test^Animal"
    ds.PatientID = "T1"
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def image_dataset(
    pixels: np.ndarray,
    *,
    photometric: str | None = None,
    bits_stored: int | None = None,
    modality: str = "OT",
    sop_class: str | None = None,
    **attrs,
) -> Dataset:
    """An uncompressed image dataset holding `pixels` ((rows, cols), (frames, rows, cols) or [..., 3])."""
    pixels = np.asarray(pixels)
    if photometric is None:
        photometric = "RGB" if pixels.shape[-1] == 3 and pixels.ndim >= 3 and pixels.dtype == np.uint8 else "MONOCHROME2"
    if sop_class is None:
        sop_class = CTImageStorage if modality == "CT" else SecondaryCaptureImageStorage
    ds = base_dataset(sop_class, modality=modality)
    ds.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8)
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def ct_dataset(stored: np.ndarray | None = None, **attrs) -> Dataset:
    """A CT-like signed 16-bit image with rescale to Hounsfield units."""
    if stored is None:
        stored = np.arange(-1000, 3096, 16, dtype=np.int16)[: 16 * 16].reshape(16, 16)
    defaults = dict(RescaleSlope=1, RescaleIntercept=-1024)
    defaults.update(attrs)
    return image_dataset(stored.astype(np.int16), modality="CT", **defaults)


def to_bytes(ds: Dataset, **kwargs) -> bytes:
    """A Part 10 file in memory. Pass implicit_vr=False, little_endian=True for transfer syntaxes
    pydicom does not know (private ones, or newer than this pydicom)."""
    buf = io.BytesIO()
    kwargs.setdefault("enforce_file_format", True)
    ds.save_as(buf, **kwargs)
    return buf.getvalue()


def save(ds: Dataset, path: Path, **kwargs) -> Path:
    path = Path(path)
    path.write_bytes(to_bytes(ds, **kwargs))
    return path


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def lut_item(descriptor: list[int], data: list[int], **attrs) -> Dataset:
    """A LUT item (Modality or VOI LUT Sequence); LUT Data is written as US, the descriptor as US or SS."""
    item = Dataset()
    item.add_new("LUTDescriptor", "SS" if descriptor[1] < 0 else "US", list(descriptor))
    item.add_new("LUTData", "US", [int(v) for v in data])
    for keyword, value in attrs.items():
        setattr(item, keyword, value)
    return item


def sequence(*items: Dataset) -> Sequence:
    return Sequence(list(items))


def bare_bytes(ds: Dataset, *, implicit_vr: bool = True) -> bytes:
    """The dataset alone: no preamble, no 'DICM', no file meta (as some old systems store it)."""
    import copy

    bare = copy.deepcopy(ds)
    del bare.file_meta
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, bare, implicit_vr=implicit_vr, little_endian=True, enforce_file_format=False)
    data = buf.getvalue()
    assert not data.startswith(b"\x00" * 128) and b"DICM" not in data[:132]
    return data


# Things that arrive instead of DICOM: what a download link, a mail attachment or a share may give.
NOT_DICOM = {
    "text": b"Rex, 4 years, lame on the left hind leg since Tuesday.\nRadiographs to follow.\n",
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(range(256)) * 2,
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 300,
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" + b" " * 200,
    "html": (b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
             b"<body><h1>502 Bad Gateway</h1><p>The server returned an invalid response.</p></body></html>\n"),
    "s3-xml": (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
               b"<Message>Access Denied</Message><RequestId>4442587FB7D0A2F9</RequestId>"
               b"<HostId>9f3a0c1e2b</HostId></Error>"),
    "json": b'{"errors": [{"status": "404", "title": "Not Found"}]}' + b" " * 100,
    "zip": b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 200,
    "gzip": b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\x00" * 200,
}


def with_transfer_syntax(ds: Dataset, uid: str) -> bytes:
    """The file's bytes labelled with any transfer syntax UID, even one this pydicom cannot write
    (JPEG XL, or a private one): written with a same-length private stand-in, then relabelled.
    The data set itself stays Explicit VR Little Endian, as every encapsulated syntax is."""
    import copy

    stand_in = ("1.2.3." + "9" * 64)[: len(uid)]
    assert len(stand_in) == len(uid) and not stand_in.endswith(".")
    labelled = copy.deepcopy(ds)
    labelled.file_meta.TransferSyntaxUID = stand_in
    data = to_bytes(labelled, implicit_vr=False, little_endian=True)
    assert data.count(stand_in.encode()) == 1
    return data.replace(stand_in.encode(), uid.encode())
