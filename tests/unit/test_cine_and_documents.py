"""Frame rates of multi-frame objects, PDFs out of Encapsulated PDF instances, slices matched by position."""

import pytest
from pydicom.dataset import Dataset

from app.dicom.cine import DEFAULT_FPS, frame_rate
from app.dicom.document import PDF, document_type, pdf_bytes
from app.dicom.patient import Patient
from app.dicom.series import Instance, Series
from app.errors import FileProblem


def ds(**values) -> Dataset:
    d = Dataset()
    for k, v in values.items():
        setattr(d, k, v)
    return d


@pytest.mark.parametrize("values, fps, source", [
    ({"FrameTime": 40}, 25.0, "Frame Time"),
    ({"FrameTime": "33.3333"}, 30.0, "Frame Time"),
    ({"FrameTimeVector": [0, 50, 50, 50]}, 20.0, "Frame Time Vector"),
    ({"CineRate": 15}, 15.0, "Cine Rate"),
    ({"RecommendedDisplayFrameRate": 12}, 12.0, "Recommended Display Frame Rate"),
    ({"FrameTime": 0, "CineRate": 24, "RecommendedDisplayFrameRate": 12}, 24.0, "Cine Rate"),  # 0 is no rate
    ({"FrameTime": 20, "CineRate": 24}, 50.0, "Frame Time"),
    ({}, DEFAULT_FPS, "default"),
])
def test_frame_rate_from_the_file_in_order(values, fps, source):
    rate = frame_rate(ds(**values))
    assert rate.fps == pytest.approx(fps, rel=1e-4) and rate.source == source
    assert "fps" in str(rate)


def test_pdf_bytes_without_padding_and_clear_errors():
    data = b"%PDF-1.4\n...%%EOF\n"
    doc = ds(SOPClassUID="1.2.840.10008.5.1.4.1.1.104.1", MIMETypeOfEncapsulatedDocument="application/pdf",
             EncapsulatedDocument=data + b"\0", EncapsulatedDocumentLength=len(data))
    assert document_type(doc) == PDF and pdf_bytes(doc) == data
    del doc.EncapsulatedDocumentLength
    assert pdf_bytes(doc) == data
    assert document_type(ds(SOPClassUID="1.2.840.10008.5.1.4.1.1.2")) == ""
    with pytest.raises(FileProblem, match="not an Encapsulated PDF"):
        pdf_bytes(ds(SOPClassUID="1.2.840.10008.5.1.4.1.1.2"))
    doc.EncapsulatedDocument = b"GIF89a"
    with pytest.raises(FileProblem, match="not a PDF"):
        pdf_bytes(doc)


def test_nearest_slice_by_position():
    s = Series("1", "2", "CT", 1, "", Patient(), "", "",
               [Instance(f"{n}.dcm", str(n), n, 1, 10.0 - 2.5 * n) for n in range(5)])
    assert s.has_positions and s.slice_position(2) == 5.0
    assert s.nearest_position(4.0) == 2 and s.nearest_position(-100) == 4
    s.instances[1].position = None
    assert not s.has_positions
