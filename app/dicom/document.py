"""Encapsulated documents (PS3.3 A.45): a PDF stored in a DICOM instance, taken out for display."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from app.dicom.reading import read
from app.errors import FileProblem

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
PDF = "application/pdf"


def document_type(ds: Dataset) -> str:
    """The MIME type of an encapsulated document ("application/pdf"), or "" for anything else."""
    mime = str(ds.get("MIMETypeOfEncapsulatedDocument", "") or "").strip().lower()
    if mime:
        return mime if "EncapsulatedDocument" in ds or str(ds.get("SOPClassUID", "")) == ENCAPSULATED_PDF else ""
    return PDF if str(ds.get("SOPClassUID", "")) == ENCAPSULATED_PDF else ""


def pdf_bytes(source: Dataset | str | Path) -> bytes:
    """The PDF inside an Encapsulated PDF instance (without the padding byte DICOM adds)."""
    ds = source if isinstance(source, Dataset) else read(source)
    label = "the document" if isinstance(source, Dataset) else str(source)
    if document_type(ds) != PDF:
        raise FileProblem(label, "is not an Encapsulated PDF document")
    data = bytes(ds.get("EncapsulatedDocument") or b"")
    length = ds.get("EncapsulatedDocumentLength")
    if length is not None and 0 < int(length) <= len(data):
        data = data[: int(length)]
    elif data.endswith(b"\0"):
        data = data[:-1]
    if not data.startswith(b"%PDF"):
        raise FileProblem(label, "the encapsulated document is empty or not a PDF")
    return data
