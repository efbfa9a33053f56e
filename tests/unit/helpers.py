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


def testfile(name: str) -> Path:
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


def to_bytes(ds: Dataset, *, enforce_file_format: bool = True) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=enforce_file_format)
    return buf.getvalue()


def save(ds: Dataset, path: Path, *, enforce_file_format: bool = True) -> Path:
    path = Path(path)
    path.write_bytes(to_bytes(ds, enforce_file_format=enforce_file_format))
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
