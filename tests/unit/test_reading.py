"""Opening files and bytes: full and header-only reads, bare datasets, deflate, and clear refusals."""

from __future__ import annotations

import copy
import io

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from app.dicom import display
from app.dicom.pixels import Image, transfer_syntax_of
from app.dicom.reading import read
from app.errors import LightboxError, NoPixelDataError, NotDicomError, TruncatedFileError
from tests.unit.helpers import NOT_DICOM, bare_bytes, ct_dataset, image_dataset, pydicom_file, save, to_bytes


@pytest.fixture
def ct():
    return ct_dataset(WindowCenter=40, WindowWidth=400, PatientName="Müller^Bello", SpecificCharacterSet="ISO_IR 192")


def test_reads_a_path_and_a_pathlike(tmp_path, ct):
    path = save(ct, tmp_path / "ct.dcm")
    for source in (path, str(path)):
        ds = read(source)
        assert ds.SOPInstanceUID == ct.SOPInstanceUID
        assert str(ds.PatientName) == "Müller^Bello"
        assert ds.filename == str(path)
        assert np.array_equal(Image(ds).frame(0), ct.pixel_array)


def test_reads_bytes(ct):
    data = to_bytes(ct)
    for source in (data, bytearray(data), memoryview(data)):
        ds = read(source)
        assert ds.SOPInstanceUID == ct.SOPInstanceUID
        assert np.array_equal(Image(ds).frame(0), ct.pixel_array)


def test_header_only_stops_before_the_pixels(tmp_path, ct):
    path = save(ct, tmp_path / "ct.dcm")
    for source in (path, to_bytes(ct)):
        ds = read(source, header_only=True)
        assert "PixelData" not in ds
        assert (ds.Rows, ds.Columns, ds.Modality) == (16, 16, "CT")
        assert ds.WindowCenter == 40
        with pytest.raises(NoPixelDataError):
            Image(ds)


def test_header_only_of_a_file_cut_in_its_pixel_data_still_reads(ct):
    # Indexing needs the header only: a download cut short in the pixels is still identifiable.
    data = to_bytes(ct)
    ds = read(data[:-100], header_only=True)
    assert ds.SOPInstanceUID == ct.SOPInstanceUID
    with pytest.raises(TruncatedFileError):
        read(data[:-100])


@pytest.mark.parametrize("implicit_vr", [True, False], ids=["implicit", "explicit"])
def test_a_bare_dataset_without_preamble_reads_and_renders(implicit_vr, ct):
    data = bare_bytes(ct, implicit_vr=implicit_vr)
    ds = read(data)
    assert ds.SOPInstanceUID == ct.SOPInstanceUID
    assert transfer_syntax_of(ds) == (ImplicitVRLittleEndian if implicit_vr else pydicom.uid.ExplicitVRLittleEndian)
    image = Image(ds)
    assert np.array_equal(image.frame(0), ct.pixel_array)
    assert display.render(image, 0, display.default_voi(image)).shape == (16, 16)


def test_a_bare_dataset_header_reads(ct):
    ds = read(bare_bytes(ct), header_only=True)
    assert ds.SOPInstanceUID == ct.SOPInstanceUID and "PixelData" not in ds


def test_a_deflated_file_reads(tmp_path, ct):
    deflated = copy.deepcopy(ct)
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    data = to_bytes(deflated)
    assert len(data) < len(to_bytes(ct))  # really deflated
    path = tmp_path / "deflated.dcm"
    path.write_bytes(data)
    for source in (path, data):
        ds = read(source)
        assert transfer_syntax_of(ds) == DeflatedExplicitVRLittleEndian
        assert str(ds.PatientName) == "Müller^Bello"
        assert np.array_equal(Image(ds).frame(0), ct.pixel_array)
        assert read(source, header_only=True).Rows == 16


def test_pydicoms_deflated_example_reads():
    ds = read(pydicom_file("image_dfl.dcm"))
    assert transfer_syntax_of(ds) == DeflatedExplicitVRLittleEndian
    assert Image(ds).frame(0).shape == (512, 512)


# -- refusals --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kind, says",
    [("text", None), ("jpeg", "JPEG image"), ("png", "PNG image"), ("pdf", "PDF document"),
     ("html", "HTML page"), ("s3-xml", "XML document"), ("json", "JSON document"),
     ("zip", "ZIP archive"), ("gzip", "gzip archive")],
)
def test_not_dicom_is_named(tmp_path, kind, says):
    path = tmp_path / f"{kind}.dcm"
    path.write_bytes(NOT_DICOM[kind])
    for source, label in ((path, str(path)), (NOT_DICOM[kind], "the data")):
        with pytest.raises(NotDicomError) as info:
            read(source)
        message = str(info.value)
        assert message.startswith(f"{label}: not a DICOM file")
        if says:
            assert says in message
    with pytest.raises(NotDicomError) as info:
        read(NOT_DICOM[kind], name="download.dcm")
    assert str(info.value).startswith("download.dcm: ")


def test_missing_empty_and_folder(tmp_path):
    with pytest.raises(NotDicomError, match="file not found"):
        read(tmp_path / "nothing-here.dcm")
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(NotDicomError, match="empty"):
        read(tmp_path / "empty.dcm")
    with pytest.raises(NotDicomError, match="empty"):
        read(b"")
    with pytest.raises(NotDicomError, match="folder"):
        read(tmp_path)


def test_unreadable_file(tmp_path, ct, monkeypatch):
    from app.dicom import reading

    path = save(ct, tmp_path / "locked.dcm")

    def locked(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(reading, "open", locked, raising=False)  # chmod does not stop root
    with pytest.raises(NotDicomError, match="permission denied"):
        read(path)


def pixel_data_offset(data: bytes) -> int:
    """Where the Pixel Data value starts in a file's bytes."""
    return pydicom.dcmread(io.BytesIO(data)).get_item(0x7FE00010).value_tell


def test_every_cut_of_a_file_is_refused_clearly(ct):
    """A file cut anywhere (a failed download, a full disk) is refused with our error, never a crash:
    inside the header as truncated (or as no image, at an element boundary), inside the pixels as truncated."""
    data = to_bytes(ct)
    pixels_at = pixel_data_offset(data)
    for cut in range(1, len(data)):
        try:
            Image(read(data[:cut])).frame(0)
        except TruncatedFileError:
            continue
        except (NotDicomError, NoPixelDataError) as exc:
            assert cut < pixels_at, f"cut at {cut} inside the pixel data: {type(exc).__name__}"
            if isinstance(exc, NotDicomError):
                assert cut <= 132 + 12, f"cut at {cut} in the header called not DICOM: {exc}"
            continue
        except LightboxError as exc:
            pytest.fail(f"cut at {cut}: unexpected {type(exc).__name__}: {exc}")
        pytest.fail(f"a file cut at {cut} of {len(data)} bytes was read as complete")


def test_every_cut_inside_compressed_pixel_data_is_truncated():
    arr = (np.arange(4 * 16 * 16) % 4096).astype(np.uint16).reshape(4, 16, 16)
    ds = image_dataset(arr, bits_stored=12)
    ds.compress(RLELossless, arr)
    data = to_bytes(ds)
    pixels_at = pixel_data_offset(data)
    for cut in range(pixels_at, len(data) - 8):  # the last 8 bytes are the sequence delimiter
        with pytest.raises(TruncatedFileError):
            image = Image(read(data[:cut]))
            for i in range(image.frames):
                image.frame(i)


@settings(max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=600))
def test_any_bytes_give_a_dataset_or_our_error(blob):
    try:
        ds = read(blob)
    except LightboxError:
        return
    try:
        image = Image(ds)
        image.frame(0)
    except LightboxError:
        pass


@settings(max_examples=100, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(offset=st.integers(132, 1200), junk=st.binary(min_size=1, max_size=16))
def test_damaged_bytes_in_a_real_file_give_our_error_or_an_image(offset, junk):
    data = bytearray(to_bytes(ct_dataset(WindowCenter=40, WindowWidth=400)))
    offset = min(offset, len(data) - 1)
    data[offset:offset + len(junk)] = junk
    try:
        image = Image(read(bytes(data)))
        image.frame(0)
        display.render(image, 0, display.default_voi(image))
    except LightboxError:
        pass
