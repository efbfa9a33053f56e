"""Photos and screenshots as Secondary Capture: JPEG kept as it is where DICOM carries it, else decoded;
patient and study from the caller; clear refusals for what is not a usable image."""

from __future__ import annotations

import dataclasses
import datetime
import io
import logging
import struct
import warnings

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from PIL import ImageOps
from pydicom.encaps import generate_fragmented_frames
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    SecondaryCaptureImageStorage,
)

from app.dicom.capture import CaptureContext, capture_kind, read_jpeg_header, secondary_capture
from app.dicom.patient import Code, Patient, patient_of, write_patient
from app.dicom.pixels import Image
from app.dicom.reading import read
from app.errors import NotDicomError
from tests.unit.helpers import NOT_DICOM, base_dataset, code_item, pydicom_file, sequence, to_bytes

REX = Patient(
    name="Müller^Rex", id="VET-0042", species="Canine", breed="Border Collie", owner="Müller^Jürgen",
    sex="M", birth_date="20190301", neutered="ALTERED",
    species_code=Code("448771007", "SCT", "Canis lupus familiaris"),
    breed_code=Code("28964004", "SCT", "Labrador retriever dog breed"),
    owner_role="OWNER", owner_organization="Tierarztpraxis Süd", microchip="985112003456789",
)


# -- inputs, made here with Pillow ------------------------------------------------------------------

def gradient(rows: int = 48, columns: int = 64) -> np.ndarray:
    y, x = np.indices((rows, columns))
    return ((x * 255) // (columns - 1)).astype(np.uint8) // 2 + ((y * 127) // (rows - 1)).astype(np.uint8)


def colour(rows: int = 48, columns: int = 64) -> np.ndarray:
    g = gradient(rows, columns)
    return np.stack([g, g[::-1], np.full_like(g, 90)], axis=-1)


def encode(arr: np.ndarray | PILImage.Image, fmt: str, **options) -> bytes:
    picture = arr if isinstance(arr, PILImage.Image) else PILImage.fromarray(arr)
    buf = io.BytesIO()
    picture.save(buf, fmt, **options)
    return buf.getvalue()


def with_parity(jpeg: bytes, odd: bool) -> bytes:
    """The same image, with a comment segment after SOI sized so the file length is odd or even."""
    if len(jpeg) % 2 == int(odd):
        return jpeg
    comment = b"Lightbox test"
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + jpeg[2:]


def pillow_pixels(data: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(data)) as picture:
        return np.asarray(ImageOps.exif_transpose(picture))


def fragments(ds: pydicom.Dataset) -> list[bytes]:
    """The encapsulated fragments of a single-frame image (the offset table left out)."""
    return list(next(generate_fragmented_frames(ds.PixelData, number_of_frames=1)))


def fragment_of(pydicom_name: str) -> bytes:
    """The JPEG bitstream of a single-frame file pydicom bundles."""
    return b"".join(fragments(pydicom.dcmread(pydicom_file(pydicom_name))))


def through_a_file(ds: pydicom.Dataset) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing pydicom finds invalid on writing
        data = to_bytes(ds)
    return read(data, name="capture.dcm")


def pixels(ds: pydicom.Dataset) -> np.ndarray:
    return np.asarray(Image(ds, "capture.dcm").frame(0))


def capture(data: bytes, context: CaptureContext | None = None, **kwargs) -> pydicom.Dataset:
    return through_a_file(secondary_capture(data, context or CaptureContext(), **kwargs))


def assert_close(got: np.ndarray, want: np.ndarray, *, max_diff: int, mean_diff: float) -> None:
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert diff.max() <= max_diff, diff.max()
    assert diff.mean() <= mean_diff, diff.mean()


# -- what kind of file --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "head, kind",
    [
        (encode(gradient(), "JPEG")[:16], "jpeg"),
        (encode(gradient(), "PNG")[:16], "png"),
        (NOT_DICOM["html"][:16], None),
        (NOT_DICOM["pdf"][:16], None),
        (b"\xff\xd8", None),
        (b"", None),
    ],
)
def test_capture_kind(head, kind):
    assert capture_kind(head) == kind


# -- JPEG kept as it is ---------------------------------------------------------------------------------

def test_baseline_colour_jpeg_is_kept_byte_for_byte():
    data = with_parity(encode(colour(), "JPEG", quality=92), odd=False)
    ds = capture(data, name="rex.jpg")
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert ds.file_meta.MediaStorageSOPClassUID == SecondaryCaptureImageStorage
    assert ds.SOPClassUID == SecondaryCaptureImageStorage
    assert fragments(ds) == [data]
    assert ds.PhotometricInterpretation == "YBR_FULL_422"  # Pillow subsamples chroma 4:2:0 by default
    assert (ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PlanarConfiguration) == (48, 64, 3, 0)
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (8, 8, 7, 0)
    assert (ds.LossyImageCompression, ds.LossyImageCompressionMethod) == ("01", "ISO_10918_1")
    assert float(ds.LossyImageCompressionRatio) == pytest.approx(48 * 64 * 3 / len(data), rel=0.01)
    assert_close(pixels(ds), pillow_pixels(data), max_diff=12, mean_diff=1.5)


def test_baseline_without_subsampling_is_ybr_full():
    data = encode(colour(), "JPEG", quality=95, subsampling=0)
    ds = capture(data)
    assert ds.PhotometricInterpretation == "YBR_FULL"
    assert_close(pixels(ds), pillow_pixels(data), max_diff=4, mean_diff=1.0)


def test_baseline_grey_jpeg():
    data = with_parity(encode(gradient(), "JPEG", quality=90), odd=False)
    ds = capture(data)
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert (ds.PhotometricInterpretation, ds.SamplesPerPixel) == ("MONOCHROME2", 1)
    assert "PlanarConfiguration" not in ds
    assert fragments(ds) == [data]
    assert_close(pixels(ds), pillow_pixels(data), max_diff=2, mean_diff=0.5)


def test_odd_length_jpeg_is_padded_to_even_with_one_null():
    data = with_parity(encode(gradient(), "JPEG"), odd=True)
    assert len(data) % 2 == 1
    ds = capture(data)
    assert fragments(ds) == [data + b"\x00"]
    assert_close(pixels(ds), pillow_pixels(data), max_diff=2, mean_diff=0.5)


def test_bytes_after_the_end_of_image_are_not_kept():
    data = with_parity(encode(gradient(), "JPEG"), odd=False)
    ds = capture(data + b"\x00\x00trailing junk from a camera")
    assert fragments(ds) == [data]


def test_stray_bytes_between_segments_are_tolerated_and_kept():
    data = with_parity(encode(gradient(), "JPEG"), odd=False)
    app0_end = 4 + struct.unpack(">H", data[4:6])[0]
    stray = data[:app0_end] + b"\x00\x00" + data[app0_end:]
    ds = capture(stray)
    assert fragments(ds) == [stray]
    assert_close(pixels(ds), pillow_pixels(data), max_diff=2, mean_diff=0.5)


def test_jpeg_header_is_read_from_the_segments():
    data = encode(colour(40, 30), "JPEG", quality=80)
    header = read_jpeg_header(data)
    assert (header.marker, header.precision, header.rows, header.columns) == (0xC0, 8, 40, 30)
    assert [c[1:] for c in header.components] == [(2, 2), (1, 1), (1, 1)]
    assert header.jfif and header.end == len(data)


def test_extended_12_bit_jpeg_is_kept():
    source = pydicom.dcmread(pydicom_file("JPGExtended.dcm"))
    data = fragment_of("JPGExtended.dcm")
    ds = capture(data)
    assert ds.file_meta.TransferSyntaxUID == JPEGExtended12Bit
    assert (ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored, ds.HighBit) == ("MONOCHROME2", 16, 12, 11)
    assert ds.LossyImageCompression == "01"
    assert np.array_equal(pixels(ds), Image(source).frame(0))


def test_lossless_selection_value_1_jpeg_is_kept():
    source = pydicom.dcmread(pydicom_file("SC_rgb_jpeg_gdcm.dcm"))
    data = fragment_of("SC_rgb_jpeg_gdcm.dcm")
    ds = capture(data)
    assert ds.file_meta.TransferSyntaxUID == JPEGLosslessSV1
    assert (ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.BitsStored) == ("RGB", 3, 8)
    assert "LossyImageCompression" not in ds
    assert np.array_equal(pixels(ds), Image(source).frame(0))


def test_lossless_with_another_predictor_is_jpeg_lossless():
    data = bytearray(fragment_of("SC_rgb_jpeg_gdcm.dcm"))
    sos = data.index(b"\xff\xda")
    components = data[sos + 4]
    predictor = sos + 5 + 2 * components
    assert data[predictor] == 1
    data[predictor] = 2  # the first scan's selection value
    ds = capture(bytes(data))
    assert ds.file_meta.TransferSyntaxUID == JPEGLossless


# -- JPEG decoded and stored uncompressed -----------------------------------------------------------

def test_progressive_jpeg_is_decoded(caplog):
    data = encode(colour(), "JPEG", quality=90, progressive=True)
    assert read_jpeg_header(data).marker == 0xC2
    with caplog.at_level(logging.INFO, logger="app.dicom.capture"):
        ds = capture(data, name="progressive.jpg")
    assert "progressive" in caplog.text and "uncompressed" in caplog.text
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (ds.PhotometricInterpretation, ds.PlanarConfiguration, ds.BitsStored) == ("RGB", 0, 8)
    assert ds.LossyImageCompression == "01"  # it was a lossy JPEG before
    assert np.array_equal(pixels(ds), pillow_pixels(data))


def test_exif_orientation_6_is_turned_upright():
    exif = PILImage.Exif()
    exif[0x0112] = 6
    data = encode(colour(48, 64), "JPEG", quality=90, exif=exif.tobytes())
    ds = capture(data)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (ds.Rows, ds.Columns) == (64, 48)
    upright = pillow_pixels(data)
    assert upright.shape[:2] == (64, 48)
    assert np.array_equal(pixels(ds), upright)
    # turned clockwise: the photo's bottom-left corner is now top-left
    with PILImage.open(io.BytesIO(data)) as picture:
        as_stored = np.asarray(picture)
    assert np.array_equal(pixels(ds)[0, 0], as_stored[-1, 0])


def test_exif_orientation_1_keeps_the_bitstream():
    exif = PILImage.Exif()
    exif[0x0112] = 1
    data = with_parity(encode(colour(), "JPEG", exif=exif.tobytes()), odd=False)
    ds = capture(data)
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert fragments(ds) == [data]


def test_rotated_12_bit_jpeg_is_decoded_with_libjpeg_and_turned():
    source = pydicom.dcmread(pydicom_file("JPGExtended.dcm"))
    exif = PILImage.Exif()
    exif[0x0112] = 8
    app1 = b"Exif\x00\x00" + exif.tobytes()
    fragment = fragment_of("JPGExtended.dcm")
    data = fragment[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + fragment[2:]
    ds = capture(data)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (ds.Rows, ds.Columns, ds.BitsStored, ds.BitsAllocated) == (source.Columns, source.Rows, 12, 16)
    assert np.array_equal(pixels(ds), np.rot90(Image(source).frame(0), 1))


def test_cmyk_jpeg_becomes_rgb():
    cmyk = PILImage.fromarray(colour()).convert("CMYK")
    data = encode(cmyk, "JPEG", quality=95)
    assert len(read_jpeg_header(data).components) == 4
    ds = capture(data)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (ds.PhotometricInterpretation, ds.SamplesPerPixel) == ("RGB", 3)
    with PILImage.open(io.BytesIO(data)) as picture:
        want = np.asarray(picture.convert("RGB"))
    assert np.array_equal(pixels(ds), want)


# -- PNG --------------------------------------------------------------------------------------------

def test_16_bit_grey_png():
    grey = (gradient().astype(np.uint16) * 257 + 3)
    data = encode(PILImage.fromarray(grey), "PNG")
    ds = capture(data)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored) == ("MONOCHROME2", 16, 16)
    assert "LossyImageCompression" not in ds
    assert np.array_equal(pixels(ds), grey)


def test_8_bit_grey_and_rgb_png_are_exact():
    grey = capture(encode(gradient(), "PNG"))
    assert (grey.PhotometricInterpretation, grey.BitsStored) == ("MONOCHROME2", 8)
    assert np.array_equal(pixels(grey), gradient())
    rgb = capture(encode(colour(), "PNG"))
    assert rgb.PhotometricInterpretation == "RGB"
    assert np.array_equal(pixels(rgb), colour())


def test_rgba_png_is_laid_over_black():
    rgb = colour(8, 10)
    alpha = np.linspace(0, 255, 80).astype(np.uint8).reshape(8, 10)
    data = encode(PILImage.fromarray(np.dstack([rgb, alpha])), "PNG")
    ds = capture(data)
    assert (ds.PhotometricInterpretation, ds.SamplesPerPixel) == ("RGB", 3)
    want = np.rint(rgb * (alpha[..., None] / 255.0)).astype(np.uint8)
    assert_close(pixels(ds), want, max_diff=1, mean_diff=0.5)
    assert pixels(ds)[0, 0].tolist() == [0, 0, 0]  # fully transparent
    assert pixels(ds)[-1, -1].tolist() == rgb[-1, -1].tolist()  # opaque


def test_palette_png_becomes_rgb():
    picture = PILImage.fromarray(colour()).quantize(16)
    data = encode(picture, "PNG")
    ds = capture(data)
    assert ds.PhotometricInterpretation == "RGB"
    assert np.array_equal(pixels(ds), np.asarray(picture.convert("RGB")))


def test_grey_png_with_alpha_stays_grey():
    grey = gradient(8, 10)
    alpha = np.full_like(grey, 128)
    data = encode(PILImage.fromarray(np.dstack([grey, alpha]), "LA"), "PNG")
    ds = capture(data)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert_close(pixels(ds), np.rint(grey * (128 / 255)), max_diff=1, mean_diff=0.5)


# -- study, series, patient -------------------------------------------------------------------------

def test_one_resolved_context_is_one_study_and_one_series():
    context = CaptureContext(patient=REX, study_description="Lameness", series_description="Photos").resolved()
    assert context.study_uid and context.series_uid and len(context.study_date) == 8 and len(context.study_time) == 6
    assert context.resolved() == context
    first = capture(encode(colour(), "JPEG"), context, instance_number=1)
    second = capture(encode(gradient(), "PNG"), context, instance_number=2)
    assert first.StudyInstanceUID == second.StudyInstanceUID == context.study_uid
    assert first.SeriesInstanceUID == second.SeriesInstanceUID == context.series_uid
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert (first.InstanceNumber, second.InstanceNumber) == (1, 2)
    assert first.StudyDate == second.StudyDate == context.study_date


def test_an_unresolved_context_makes_a_new_study_each_time():
    context = CaptureContext(patient=REX)
    first = secondary_capture(encode(gradient(), "PNG"), context)
    second = secondary_capture(encode(gradient(), "PNG"), context)
    assert first.StudyInstanceUID != second.StudyInstanceUID
    assert first.SeriesInstanceUID != second.SeriesInstanceUID


def test_patient_and_study_come_through():
    context = CaptureContext(
        patient=REX, study_uid="1.2.826.0.1.3680043.8.498.1", study_date="20240517", study_time="101500",
        study_description="Lahmheit hinten links", accession="ACC-7", referring_physician="Weber^Anna",
        series_uid="1.2.826.0.1.3680043.8.498.2", series_description="Fotos", series_number=5, modality="XC",
    )
    ds = capture(encode(colour(), "JPEG"), context, name="C:\\Users\\vet\\Pictures\\rex paw.jpg", instance_number=3)
    assert patient_of(ds) == dataclasses.replace(REX, extra_ids=(REX.microchip,))
    assert str(ds.PatientName) == "Müller^Rex" and ds.SpecificCharacterSet == "ISO_IR 192"
    assert (ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime) == ("1.2.826.0.1.3680043.8.498.1", "20240517", "101500")
    assert (ds.StudyDescription, ds.AccessionNumber, str(ds.ReferringPhysicianName)) == (
        "Lahmheit hinten links", "ACC-7", "Weber^Anna")
    assert (ds.SeriesInstanceUID, ds.SeriesDescription, ds.SeriesNumber) == (
        "1.2.826.0.1.3680043.8.498.2", "Fotos", 5)
    assert (ds.Modality, ds.InstanceNumber, ds.ConversionType) == ("XC", 3, "DI")
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.DerivationDescription == "Imported from rex paw.jpg"  # the base name, never the path
    assert len(ds.ContentDate) == 8 and len(ds.InstanceCreationTime) == 6
    for type_2 in ("StudyID", "PatientOrientation"):
        assert type_2 in ds and not ds[type_2].value


def test_an_unknown_patient_has_empty_type_2_attributes():
    ds = capture(encode(gradient(), "PNG"), CaptureContext())
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "SeriesNumber", "InstanceNumber",
                    "AccessionNumber", "ReferringPhysicianName"):
        assert keyword in ds and not ds[keyword].value, keyword
    for keyword in ("PatientSpeciesDescription", "ResponsiblePerson", "OtherPatientIDsSequence", "StudyDescription"):
        assert keyword not in ds, keyword
    assert ds.Modality == "OT"
    assert patient_of(ds) == Patient()


# -- refusals ---------------------------------------------------------------------------------------

def refusal(data: bytes, name: str = "upload.jpg") -> str:
    with pytest.raises(NotDicomError) as caught:
        secondary_capture(data, CaptureContext(), name=name)
    assert caught.value.source == name
    return caught.value.reason


def test_empty_input():
    assert refusal(b"") == "the file is empty"


def test_html_page():
    assert refusal(NOT_DICOM["html"]) == "not a JPEG or PNG image (it is an HTML page)"


def test_random_bytes():
    noise = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert refusal(b"\x00" + noise) == "not a JPEG or PNG image"


def test_truncated_jpeg():
    data = encode(colour(), "JPEG")
    for cut in (len(data) - 2, len(data) // 2, 200, 4):
        assert "cut off" in refusal(data[:cut]), cut


def test_truncated_progressive_jpeg():
    data = encode(colour(), "JPEG", progressive=True)
    assert "cut off" in refusal(data[: len(data) * 2 // 3])


def test_jpeg_header_with_garbage_after_it():
    assert "damaged" in refusal(NOT_DICOM["jpeg"]) or "cut off" in refusal(NOT_DICOM["jpeg"])


def test_damaged_jpeg_scan():
    source = fragment_of("JPEG-lossy.dcm")  # pydicom bundles it as a JPEG whose scan header is wrong
    assert "damaged" in refusal(source)


def test_truncated_png():
    data = encode(colour(), "PNG")
    reason = refusal(data[: len(data) - 20], name="shot.png")
    assert "PNG" in reason and ("cut off" in reason or "damaged" in reason)


def test_png_with_a_wrong_checksum():
    data = bytearray(encode(colour(), "PNG"))
    data[data.index(b"IDAT") + 10] ^= 0xFF
    assert "PNG image is damaged" in refusal(bytes(data), name="shot.png")


def test_png_signature_without_an_image():
    assert "PNG" in refusal(NOT_DICOM["png"], name="shot.png")


def test_too_wide_for_dicom():
    data = encode(PILImage.new("L", (65536, 1)), "PNG")
    assert "too large for DICOM" in refusal(data, name="panorama.png")


# -- write_patient ----------------------------------------------------------------------------------

def test_write_patient_replaces_what_was_there():
    ds = base_dataset(PatientSpeciesDescription="Feline", ResponsiblePerson="Old^Owner", PatientSexNeutered="ALTERED",
                      PatientBreedCodeSequence=sequence(code_item("1", "SCT", "Siamese")))
    ds.OtherPatientIDsSequence = [item_with(PatientID="OLD-1")]
    write_patient(ds, Patient(name="Rex", id="7"))
    assert patient_of(ds) == Patient(name="Rex", id="7")
    for keyword in ("PatientSpeciesDescription", "ResponsiblePerson", "PatientSexNeutered",
                    "PatientBreedCodeSequence", "OtherPatientIDsSequence"):
        assert keyword not in ds, keyword


def test_write_patient_marks_the_microchip_rfid_and_other_ids_text():
    ds = base_dataset()
    write_patient(ds, Patient(name="Rex", microchip="985112003456789", extra_ids=("OLD-7", "985112003456789")))
    items = [(i.PatientID, i.TypeOfPatientID) for i in ds.OtherPatientIDsSequence]
    assert items == [("OLD-7", "TEXT"), ("985112003456789", "RFID")]


def test_write_patient_for_an_animal_writes_the_type_2c_attributes_empty():
    ds = base_dataset()
    write_patient(ds, Patient(name="Rex", species="Canine"))
    for keyword in ("PatientBreedDescription", "PatientBreedCodeSequence", "ResponsiblePerson",
                    "ResponsibleOrganization"):
        assert keyword in ds and not ds[keyword].value, keyword
    assert patient_of(ds) == Patient(name="Rex", species="Canine")


def item_with(**attrs) -> pydicom.Dataset:
    item = pydicom.Dataset()
    for keyword, value in attrs.items():
        setattr(item, keyword, value)
    return item


_TEXT_CHARS = st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters="\\")


def _text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(_TEXT_CHARS, max_size=max_size).map(str.strip)


_codes = st.none() | st.builds(
    Code, value=st.one_of(_text(16), _text(64)), scheme=st.sampled_from(["SCT", "DCM", "99VET"]), meaning=_text(64)
)
_dates = st.just("") | st.dates(min_value=datetime.date(1950, 1, 1)).map(lambda d: d.strftime("%Y%m%d"))
_patients = st.builds(
    Patient,
    name=_text(64).filter(lambda s: "=" not in s),
    id=_text(64),
    species=_text(64),
    breed=_text(64),
    owner=_text(64).filter(lambda s: "=" not in s),
    sex=st.sampled_from(["", "M", "F", "O"]),
    birth_date=_dates,
    neutered=st.sampled_from(["", "ALTERED", "UNALTERED"]),
    species_code=_codes,
    breed_code=_codes,
    owner_role=st.sampled_from(["", "OWNER", "PARENT", "FAMILY_MEMBER"]),
    owner_organization=_text(64),
    microchip=_text(32),
    extra_ids=st.lists(_text(32), max_size=3).map(tuple),
)


def expected_back(p: Patient) -> Patient:
    """What patient_of reads after write_patient: codes without value or meaning are no code, species and
    breed fall back on the code meaning, and the microchip is one of the other IDs."""
    species_code = p.species_code if p.species_code and (p.species_code.value or p.species_code.meaning) else None
    breed_code = p.breed_code if p.breed_code and (p.breed_code.value or p.breed_code.meaning) else None
    ids = [i for i in dict.fromkeys(p.extra_ids) if i]
    if p.microchip and p.microchip not in ids:
        ids.append(p.microchip)
    return dataclasses.replace(
        p,
        species_code=species_code,
        breed_code=breed_code,
        species=p.species or (species_code.meaning if species_code else ""),
        breed=p.breed or (breed_code.meaning if breed_code else ""),
        extra_ids=tuple(ids),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patient=_patients)
def test_write_patient_round_trips(patient):
    # Written over another animal, in memory and through a file.
    ds = base_dataset(PatientSpeciesDescription="Feline", ResponsibleOrganization="Elsewhere",
                      PatientSpeciesCodeSequence=sequence(code_item("448169003", "SCT", "Felis catus")))
    write_patient(ds, patient)
    want = expected_back(patient)
    assert patient_of(ds) == want
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # values longer than their VR allows are kept, with a warning
        back = read(to_bytes(ds))
    assert patient_of(back) == want
