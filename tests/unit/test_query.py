"""The query model's pure parts: date ranges, wildcard matching, the keys sent to a PACS, the client-side filter,
the animal match for priors; the multipart splitter and C-GET's storage contexts of the retrieve."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.dicom.patient import Patient
from app.errors import UsageError
from app.pacs.query import (
    FoundStudy, StudyQuery, _matches, _request_keys, _server_pattern, _wanted, parse_dates, same_animal,
)
from app.pacs.retrieve import COMPRESSED, MAX_CONTEXTS, _storage_contexts, multipart_parts


@pytest.mark.parametrize("text, expected", [
    ("", ("", "")), ("20260101", ("20260101", "20260101")), ("20260101-20260131", ("20260101", "20260131")),
    ("20260101-", ("20260101", "")), ("-20260131", ("", "20260131")), (" 20260101 - 20260102 ", ("20260101", "20260102")),
])
def test_dates(text, expected):
    assert parse_dates(text) == expected


@pytest.mark.parametrize("text", ["2026-01-01", "20261301", "yesterday", "20260201-20260101"])
def test_bad_dates(text):
    with pytest.raises(UsageError):
        parse_dates(text)


@pytest.mark.parametrize("pattern, value, expected", [
    ("*bailey*", "HENDRICKS^Bailey", True), ("bail*", "Bailey", True), ("bail*", "HENDRICKS^Bailey", False),
    ("*müller*", "MÜLLER^Rex", True), ("b?iley", "Bailey", True), ("b?iley", "Baailey", False),
    ("*", "", True), ("*a.b*", "xa.bx", True), ("*a.b*", "xacbx", False), ("hendricks bailey", "Hendricks^Bailey", True),
])
def test_matching(pattern, value, expected):
    assert _matches(pattern, value) is expected


def test_keys_sent():
    keys = _request_keys(StudyQuery(patient_name="Müller", owner="smith", species="canine", description="thorax",
                                    modality="dx", date_from="20260101", date_to="20260131", patient_id=" 42 "))
    assert keys == {"PatientName": "*M*ller*", "ResponsiblePerson": "*smith*", "ModalitiesInStudy": "DX",
                    "StudyDate": "20260101-20260131", "PatientID": "42"}
    # QIDO-RS: only the keys every server supports; species, owner, description are matched here.
    web = _request_keys(StudyQuery(owner="smith", species="canine"), dicomweb=True)
    assert web == {}
    assert _server_pattern("  ") == "" and _server_pattern("a*b") == "a*b"


def _study(**patient) -> FoundStudy:
    return FoundStudy("1.2.3", Patient(**patient), date="20260115", modalities="CR\\DX", description="Thorax VD")


def test_answers_filtered_again():
    study = _study(name="HENDRICKS^Bailey", owner="Hendricks^Ann", species="Canine", id="42")
    assert _wanted(study, StudyQuery(patient_name="bailey", species="CANINE", owner="ann", modality="dx"))
    assert not _wanted(study, StudyQuery(species="feline"))
    assert not _wanted(study, StudyQuery(modality="CT"))
    assert not _wanted(study, StudyQuery(date_from="20260116"))
    assert _wanted(study, StudyQuery(date_to="20260115"))
    assert not _wanted(study, StudyQuery(patient_id="4"))  # IDs match exactly
    assert _wanted(study, StudyQuery(description="vd"))
    # A value the PACS did not return cannot be checked: the answer stays.
    assert _wanted(_study(name="X"), StudyQuery(owner="ann"))


def test_same_animal():
    bailey = Patient(name="Hendricks^Bailey", id="42", owner="Hendricks^Ann", species="Canine")
    assert same_animal(bailey, Patient(name="HENDRICKS^BAILEY", id="42", species="canine"))
    assert not same_animal(bailey, Patient(name="Hendricks^Bailey", id="43"))
    assert not same_animal(bailey, Patient(name="Hendricks^Max", id="42"))  # another animal under one ID
    assert not same_animal(bailey, Patient(name="Hendricks^Bailey", id="42", species="Feline"))
    assert same_animal(Patient(name="Bailey", owner="Ann"), Patient(name="bailey", owner="ANN"))
    assert not same_animal(Patient(), Patient())


def _response(body: bytes, boundary: str = "b0undary", chunk: int = 7):
    import requests

    resp = requests.Response()
    resp.status_code = 200
    resp.headers["Content-Type"] = f'multipart/related; type="application/dicom"; boundary="{boundary}"'
    resp.raw = io.BytesIO(body)
    return resp


def _multipart(parts: list[bytes], boundary: str = "b0undary") -> bytes:
    out = b""
    for part in parts:
        out += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=6), st.integers(1, 64))
def test_multipart_parts(parts, chunk):
    resp = _response(_multipart(parts))
    assert list(multipart_parts(resp, chunk_size=chunk)) == parts


def test_multipart_parts_with_crlf_inside():
    parts = [b"\r\n--b0und\r\n", b"DICM\r\n\r\n--"]
    assert list(multipart_parts(_response(_multipart(parts)), chunk_size=3)) == parts


def test_storage_contexts_fit():
    one = _storage_contexts(["1.2.840.10008.5.1.4.1.1.2"], MAX_CONTEXTS - 1)
    assert len(one) == 2 + len(COMPRESSED)  # every syntax in a context of its own
    many = [f"1.2.3.{n}" for n in range(40)]
    grouped = _storage_contexts(many, MAX_CONTEXTS - 1)
    assert len(grouped) == 80 and len(grouped[1].transfer_syntax) == len(COMPRESSED)
    crowded = _storage_contexts([f"1.2.3.{n}" for n in range(200)], MAX_CONTEXTS - 1)
    assert len(crowded) == MAX_CONTEXTS - 1


def test_worklist_answer_without_character_set_read_in_the_configured_one():
    from pydicom.dataset import Dataset
    from pynetdicom.dsutils import decode, encode

    from app.pacs.worklist import _entry

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Zoë^Max"
    ds.ResponsiblePerson = "张^伟"
    step = Dataset()
    step.Modality = "XC"
    ds.ScheduledProcedureStepSequence = [step]
    data = encode(ds, True, True)
    data = data[data.index(b"\x10\x00"):]  # the PACS left out (0008,0005)
    entry = _entry(decode(io.BytesIO(data), True, True), "ISO_IR 192", "MWL")
    assert (entry.patient.name, entry.patient.owner, entry.modality) == ("Zoë^Max", "张^伟", "XC")
    assert entry.capture_context().modality == "XC" and entry.capture_context().patient.owner == "张^伟"
