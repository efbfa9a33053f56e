"""The importer's own header reader (app.library.importer._header): for every file pydicom bundles, what it
reads gives the library the same fields as pydicom's full read, and whatever it does not expect (big endian,
deflate, truncation, implicit VR under an explicit syntax ...) is left to pydicom, whose errors the import
reports as before."""

from __future__ import annotations

import io
import warnings

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from app.dicom.reading import read
from app.library.importer import _header, _Item, _load
from app.library.library import instance_fields
from tests.unit.helpers import PYDICOM_TEST_FILES, code_item, ct_dataset, to_bytes

FILES = sorted(p for p in PYDICOM_TEST_FILES.rglob("*") if p.is_file())


def full_fields(data: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return instance_fields(read(data), ("ISSUER",))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PYDICOM_TEST_FILES)))
def test_the_header_gives_what_a_full_read_gives(path):
    data = path.read_bytes()
    found = _header(data)
    if found is None:
        return  # pydicom reads it, as before
    ds, syntax = found
    try:
        expected = full_fields(data)
    except Exception as exc:  # noqa: BLE001 - then the header must fail the same way
        with pytest.raises(type(exc)):
            instance_fields(ds, ("ISSUER",), syntax)
        return
    assert instance_fields(ds, ("ISSUER",), syntax) == expected
    assert ("DirectoryRecordSequence" in ds) == ("DirectoryRecordSequence" in read(data))


def test_most_of_them_are_read_here():
    assert sum(_header(p.read_bytes()) is not None for p in FILES) >= 140  # 149 of 176 with pydicom 3.0


def animal_ct(**attrs) -> Dataset:
    ds = ct_dataset(PatientSpeciesDescription="Canine", ResponsiblePerson="Owner^Olga", **attrs)
    ds.PatientBreedCodeSequence = Sequence([code_item("L-1", "SCT", "Beagle")])
    item = Dataset()
    item.PatientID, item.TypeOfPatientID = "985112000000001", "RFID"
    ds.OtherPatientIDsSequence = Sequence([item])
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [1.5, -2, 30], [1, 0, 0, 0, 1, 0]
    return ds


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless])
@pytest.mark.parametrize("undefined_lengths", [False, True])
def test_sequences_of_both_lengths_and_encapsulated_pixels(syntax, undefined_lengths):
    ds = animal_ct()
    if syntax == RLELossless:
        ds.compress(RLELossless, generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    for keyword in ("PatientBreedCodeSequence", "OtherPatientIDsSequence"):
        ds[keyword].is_undefined_length = undefined_lengths
        for item in ds[keyword].value:
            item.is_undefined_length_sequence_item = undefined_lengths
    ds.DataSetTrailingPadding = b"\0" * 6  # after the pixel data
    data = to_bytes(ds, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True)
    header, found_syntax = _header(data)
    assert found_syntax == syntax and "PixelData" not in header
    fields = instance_fields(header, ("ISSUER",), found_syntax)
    assert fields == full_fields(data)
    assert (fields.patient.breed, fields.patient.microchip, fields.position) == ("Beagle", "985112000000001", 30.0)


@pytest.mark.parametrize("cut", [1, 7, 200, 1000])
def test_a_truncated_file_is_left_to_pydicom_and_reported_as_before(cut):
    data = to_bytes(animal_ct())[:-cut]
    assert _header(data) is None
    with pytest.raises(Exception) as caught:
        _load(_Item("cut.dcm", data=data, size=len(data)))
    assert "truncated" in str(caught.value)


def test_a_dicomdir_is_still_refused():
    data = (PYDICOM_TEST_FILES / "dicomdirtests" / "DICOMDIR").read_bytes()
    assert _header(data) is not None
    with pytest.raises(Exception, match="a DICOMDIR index, not an image"):
        _load(_Item("DICOMDIR", data=data, size=len(data)))


def test_odd_explicit_vr_goes_to_pydicom():
    data = bytearray(to_bytes(animal_ct()))
    at = data.index(b"\x10\x00\x10\x00PN")  # PatientName's VR: not a VR any more
    data[at + 4:at + 6] = b"P\x01"
    assert _header(bytes(data)) is None
    assert isinstance(pydicom.dcmread(io.BytesIO(bytes(data)), force=True), Dataset)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PYDICOM_TEST_FILES)))
def test_rows_columns_and_position_from_raw_elements_are_pydicoms(path):
    from app.dicom.series import slice_position
    from app.library.library import _int, _position, _us

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fresh = [read(path.read_bytes()) for _ in range(2)]  # pydicom converts each element once, in place
    except Exception:  # noqa: BLE001 - not for this test
        return
    fast, slow = fresh
    assert (_us(fast, 0x00280010, "Rows"), _us(fast, 0x00280011, "Columns")) == \
        (_int(slow.get("Rows")), _int(slow.get("Columns")))
    try:
        expected = slice_position(slow)
    except Exception as exc:  # noqa: BLE001 - then the same failure
        with pytest.raises(type(exc)):
            _position(fast)
        return
    assert _position(fast) == expected
