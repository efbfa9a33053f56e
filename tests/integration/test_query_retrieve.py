"""Query and retrieve against a real Orthanc: QIDO-RS and C-FIND with each filter, character sets, WADO-RS, C-GET
and C-MOVE compared instance by instance with what was loaded, the C-GET -> C-MOVE fallback, cancel, the
permanent storage SCP fed by dcmtk, and the CLI. Loopback only."""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    CTImageStorage, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, JPEG2000Lossless, MRImageStorage,
    RLELossless, SecondaryCaptureImageStorage, generate_uid,
)

from app.dicom.patient import Patient
from app.errors import Cancelled
from app.jobs import Job, State
from app.library.library import Library
from app.pacs.config import DICOMWEB, DIMSE, DicomWebOptions, DimseOptions, PacsConfig, PacsConfigs
from app.pacs.query import QueryError, StudyQuery, find_priors, find_series, find_studies
from app.pacs.receiver import Receiving
from app.pacs.retrieve import RetrieveError, retrieve
from tests.integration.orthanc import free_ports
from tests.unit.helpers import image_dataset, to_bytes

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


# -- the studies loaded into Orthanc --------------------------------------------------------------------------

BAILEY = dict(PatientName="Hendricks^Bailey", PatientID="VET-1001", PatientSex="F", PatientBirthDate="20180405",
              PatientSpeciesDescription="Canine", PatientBreedDescription="Labrador Retriever",
              ResponsiblePerson="Hendricks^Anna", ResponsiblePersonRole="OWNER")
MULLER = dict(SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Felix", PatientID="VET-2002", PatientSex="M",
              PatientSpeciesDescription="Feline", PatientBreedDescription="European Shorthair",
              ResponsiblePerson="Müller^Hans", ResponsiblePersonRole="OWNER")
STORM = dict(PatientName="Okafor^Storm", PatientID="VET-3003", PatientSex="M", PatientSpeciesDescription="Equine",
             PatientBreedDescription="Thoroughbred", ResponsiblePerson="Okafor^Chidi", ResponsiblePersonRole="OWNER")
# Non-Latin characters: only an Orthanc whose DefaultEncoding is Utf8 keeps them. With its default (Latin1),
# Orthanc 1.10 answers C-FIND and QIDO-RS alike with '^' for these names: Orthanc's doing, not Lightbox's.
SAKURA = dict(SpecificCharacterSet="ISO_IR 192", PatientName="Иванова^Сакура", PatientID="VET-4004",
              PatientSpeciesDescription="Feline", PatientBreedDescription="Сибирская",
              ResponsiblePerson="山田^太郎", ResponsiblePersonRole="OWNER")


@dataclass
class Loaded:
    """What the test put into a PACS: study UIDs by name, Part 10 bytes by SOP Instance UID."""
    studies: dict[str, str] = field(default_factory=dict)
    series: dict[str, list[str]] = field(default_factory=dict)  # "study/label" -> SOP UIDs
    files: dict[str, bytes] = field(default_factory=dict)
    of_study: dict[str, list[str]] = field(default_factory=dict)

    def study(self, name: str, patient: dict, **attrs) -> StudyBuilder:
        uid = self.studies[name] = generate_uid()
        return StudyBuilder(self, name, uid, patient, attrs)

    def upload(self, orthanc, *names: str) -> None:
        for name in names:
            for sop in self.of_study[self.studies[name]]:
                orthanc.upload(self.files[sop])


@dataclass
class StudyBuilder:
    loaded: Loaded
    name: str
    uid: str
    patient: dict
    attrs: dict
    series_number: int = 0

    def series(self, label: str, modality: str, sop_class: str, count: int, *, syntax: str = ExplicitVRLittleEndian,
               rgb: bool = False, size: int = 24, description: str = "") -> StudyBuilder:
        self.series_number += 1
        series_uid = generate_uid()
        rng = np.random.default_rng(len(self.loaded.files))
        sops = self.loaded.series.setdefault(f"{self.name}/{label}", [])
        for n in range(count):
            if rgb:
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            else:
                pixels = rng.integers(0, 4000, (size, size)).astype(np.uint16)
            ds = image_dataset(pixels, modality=modality, sop_class=sop_class)
            for keyword, value in (self.patient | self.attrs).items():
                setattr(ds, keyword, value)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = self.uid, series_uid
            ds.SeriesNumber, ds.InstanceNumber = self.series_number, n + 1
            ds.SeriesDescription = description or label
            if syntax != ExplicitVRLittleEndian:
                ds.compress(syntax, generate_instance_uid=False)
            self.loaded.files[ds.SOPInstanceUID] = to_bytes(ds)
            self.loaded.of_study.setdefault(self.uid, []).append(ds.SOPInstanceUID)
            sops.append(ds.SOPInstanceUID)
        return self


def study_set() -> Loaded:
    loaded = Loaded()
    # Bailey today: 4 series, 3 SOP classes, JPEG 2000 and RLE among them.
    (loaded.study("bailey", BAILEY, StudyDate="20240115", StudyTime="101500", AccessionNumber="ACC-1001",
                  StudyDescription="Thorax and abdomen", StudyID="1", ReferringPhysicianName="Vet^Ann")
     .series("ct", "CT", CTImageStorage, 3, description="Thorax CT")
     .series("ct-j2k", "CT", CTImageStorage, 2, syntax=JPEG2000Lossless, size=64,
             description="Thorax CT bone")
     .series("photo", "OT", SecondaryCaptureImageStorage, 1, syntax=RLELossless, rgb=True, description="Photo")
     .series("dx", "DX", DigitalXRayImageStorageForPresentation, 1, description="Abdomen lateral"))
    loaded.study("bailey-prior", BAILEY, StudyDate="20230302", StudyTime="090000", AccessionNumber="ACC-0907",
                 StudyDescription="Left hind limb").series("dx", "DX", DigitalXRayImageStorageForPresentation, 2)
    loaded.study("muller", MULLER, StudyDate="20240220", StudyTime="160000", AccessionNumber="ACC-2002",
                 StudyDescription="Brain MRI").series("mr", "MR", MRImageStorage, 2)
    loaded.study("storm", STORM, StudyDate="20221120", StudyTime="120000", AccessionNumber="ACC-3003",
                 StudyDescription="Carpus right").series("dx", "DX", DigitalXRayImageStorageForPresentation, 1)
    loaded.study("sakura", SAKURA, StudyDate="20240301", StudyTime="080000", AccessionNumber="ACC-4004",
                 StudyDescription="Абдомен").series("ct", "CT", CTImageStorage, 1)
    loaded.study("many", STORM, StudyDate="20240401", StudyTime="080000", AccessionNumber="ACC-5005",
                 StudyDescription="Many images").series("ct", "CT", CTImageStorage, 120, size=64)
    return loaded


@pytest.fixture(scope="module")
def data() -> Loaded:
    return study_set()


@pytest.fixture(scope="module")
def pacs(orthanc, data):
    """The session's Orthanc holding the study set (without the UTF-8 study: its default Latin1 would lose it)."""
    orthanc.clear()
    data.upload(orthanc, "bailey", "bailey-prior", "muller", "storm", "many")
    return orthanc


@pytest.fixture(scope="module")
def other_pacs(orthanc_utf8, data):
    """The second Orthanc (conftest: answers in UTF-8, refuses C-GET to LIGHTBOX) with a few studies."""
    orthanc_utf8.clear()
    data.upload(orthanc_utf8, "sakura", "muller", "bailey")
    return orthanc_utf8


@pytest.fixture
def pacs_utf8(other_pacs):
    return other_pacs


@pytest.fixture
def pacs_no_get(other_pacs):
    return other_pacs


def dimse(orthanc, *, move_port: int | None = None, move_aet: str = "LIGHTBOX", method: str = "auto",
          name: str = "Clinic PACS") -> PacsConfig:
    config = PacsConfig(DIMSE, name, orthanc.aet, dimse=DimseOptions(
        "127.0.0.1", orthanc.dicom_port, query_aet="LIGHTBOX", retrieve_method=method, move_aet=move_aet,
        move_port=move_port or getattr(orthanc, "move_port", orthanc.lightbox_port), timeout_s=10))
    config.validate()
    return config


def web(orthanc, name: str = "Clinic web") -> PacsConfig:
    config = PacsConfig(DICOMWEB, name, "ORTHANCWEB", dicomweb=DicomWebOptions(
        orthanc.dicomweb_url, auth="basic", user=orthanc.user, timeout_s=10))
    config.validate()
    return config


def ask(orthanc, kind: str):
    """(find_studies with this PACS's configuration of that kind, the configuration)."""
    config = web(orthanc) if kind == "qido" else dimse(orthanc)

    def find(query: StudyQuery | None = None, **keys):
        return find_studies(config, query or StudyQuery(**keys), secret=orthanc.password)

    return find, config


def names(studies, data: Loaded) -> list[str]:
    by_uid = {uid: name for name, uid in data.studies.items()}
    return [by_uid.get(s.uid, s.uid) for s in studies]


# -- query ----------------------------------------------------------------------------------------------------

KINDS = ["qido", "cfind"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("keys, expected", [
    ({"patient_name": "bailey"}, ["bailey", "bailey-prior"]),
    ({"patient_name": "HENDRICKS"}, ["bailey", "bailey-prior"]),
    ({"patient_name": "hendricks^b*"}, ["bailey", "bailey-prior"]),
    ({"patient_name": "*B?ILEY"}, ["bailey", "bailey-prior"]),
    ({"patient_name": "hendricks bailey"}, ["bailey", "bailey-prior"]),
    ({"patient_name": "Hendricks^Bailey"}, ["bailey", "bailey-prior"]),
    ({"patient_name": "Bailey^Hendricks"}, []),
    ({"patient_name": "Okafor^Storm"}, ["many", "storm"]),
    ({"patient_name": "nobody"}, []),
    ({"patient_id": "VET-3003"}, ["many", "storm"]),
    ({"patient_id": "VET-300"}, []),  # an ID matches whole, not anywhere
    ({"owner": "chidi"}, ["many", "storm"]),
    ({"owner": "HENDRICKS^ANNA"}, ["bailey", "bailey-prior"]),
    ({"species": "feline"}, ["muller"]),
    ({"species": "canine", "patient_name": "bailey"}, ["bailey", "bailey-prior"]),
    ({"accession": "ACC-0907"}, ["bailey-prior"]),
    ({"modality": "MR"}, ["muller"]),
    ({"modality": "ct"}, ["many", "bailey"]),
    ({"modality": "DX", "patient_name": "bailey"}, ["bailey", "bailey-prior"]),
    ({"dates": "20240115"}, ["bailey"]),
    ({"dates": "20240101-20240301"}, ["muller", "bailey"]),
    ({"dates": "20240201-"}, ["many", "muller"]),
    ({"dates": "-20230302"}, ["bailey-prior", "storm"]),
    ({"dates": "-20231231", "patient_name": "bailey"}, ["bailey-prior"]),
    ({"description": "limb"}, ["bailey-prior"]),
    ({"description": "THORAX"}, ["bailey"]),
], ids=lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else None)
def test_each_filter(pacs, data, kind, keys, expected):
    find, _ = ask(pacs, kind)
    keys = dict(keys)
    found = find(StudyQuery.with_dates(keys.pop("dates", ""), **keys))
    assert names(found, data) == expected  # newest first


@pytest.mark.parametrize("kind", KINDS)
def test_studies_carry_patient_counts_and_expand_to_series(pacs, data, kind):
    find, config = ask(pacs, kind)
    (study,) = find(accession="ACC-1001")
    p = study.patient
    assert (p.name, p.id, p.sex, p.birth_date) == ("Hendricks^Bailey", "VET-1001", "F", "20180405")
    assert (p.species, p.breed, p.owner) == ("Canine", "Labrador Retriever", "Hendricks^Anna")
    assert (study.date, study.time, study.description, study.referring_physician) == (
        "20240115", "101500", "Thorax and abdomen", "Vet^Ann")
    assert sorted(study.modalities.split("\\")) == ["CT", "DX", "OT"]
    assert (study.series_count, study.instance_count) == (4, 7)
    assert study.source == config.aet
    series = find_series(config, study.uid, secret=pacs.password)
    assert [(s.number, s.modality, s.description, s.instance_count) for s in series] == [
        (1, "CT", "Thorax CT", 3), (2, "CT", "Thorax CT bone", 2), (3, "OT", "Photo", 1),
        (4, "DX", "Abdomen lateral", 1)]
    assert all(s.study_uid == study.uid and s.uid for s in series)


@pytest.mark.parametrize("kind", KINDS)
def test_iso_ir_100_name_is_readable(pacs, data, kind):
    find, _ = ask(pacs, kind)
    (study,) = find(patient_name="müller")
    assert (study.patient.name, study.patient.owner) == ("Müller^Felix", "Müller^Hans")
    assert names(find(owner="MÜLLER"), data) == ["muller"]


@pytest.mark.parametrize("kind", KINDS)
def test_utf8_names_are_readable(pacs_utf8, data, kind):
    find, _ = ask(pacs_utf8, kind)
    (study,) = find(owner="山田")
    assert (study.patient.name, study.patient.owner, study.patient.breed) == ("Иванова^Сакура", "山田^太郎", "Сибирская")
    assert study.description == "Абдомен"
    assert names(find(patient_name="сакура"), data) == ["sakura"]  # case-folded outside ASCII too
    assert names(find(patient_name="müller"), data) == ["muller"]  # Latin-1 stored, UTF-8 answered


@pytest.mark.parametrize("kind", KINDS)
def test_priors_of_the_same_animal(pacs, data, kind):
    _, config = ask(pacs, kind)
    bailey = Patient(name="Hendricks^Bailey", id="VET-1001", species="Canine", owner="Hendricks^Anna")
    found = find_priors(config, bailey, before="20240114", secret=pacs.password)
    assert names(found, data) == ["bailey-prior"]
    no_id = Patient(name="hendricks^bailey", owner="Hendricks^Anna")  # by name and owner
    found = find_priors(config, no_id, exclude=[data.studies["bailey"]], secret=pacs.password)
    assert names(found, data) == ["bailey-prior"]


def test_a_query_the_pacs_refuses_says_why(pacs):
    config = dimse(pacs)
    config.dimse.query_aet = config.dimse.local_aets[0] = "STRANGER"  # not in Orthanc's DicomModalities
    with pytest.raises(QueryError) as caught:
        find_studies(config, StudyQuery(patient_name="bailey"))
    assert str(caught.value) == ("the PACS aborted the association in answer to the C-FIND; it may not accept "
                                 "C-FIND from the calling AE title STRANGER")


# -- retrieve -------------------------------------------------------------------------------------------------

def config_for(orthanc, method: str):
    return (web(orthanc), orthanc.password) if method == "wado" else (dimse(orthanc), None)


def check_instances(library: Library, data: Loaded, sops: list[str], source: str | None, *,
                    exact_syntax: bool = True) -> None:
    """The library holds exactly `sops` of their study, each with the SOP class, transfer syntax and pixel bytes it
    was loaded with, and `source` (the PACS configuration's name) as its source. Without `exact_syntax`, an
    uncompressed instance may have come in another uncompressed syntax."""
    records = {r.sop_uid: r for r in library.instances(study_uid=library.instance(sops[0]).study_uid)}
    assert sorted(records) == sorted(sops)
    for sop in sops:
        original, record = pydicom.dcmread(io.BytesIO(data.files[sop])), records[sop]
        got = pydicom.dcmread(record.path)
        assert got.SOPInstanceUID == sop and got.SeriesInstanceUID == original.SeriesInstanceUID
        assert got.SOPClassUID == original.SOPClassUID == record.sop_class
        assert got.file_meta.TransferSyntaxUID == record.transfer_syntax
        if exact_syntax or original.file_meta.TransferSyntaxUID.is_compressed:
            assert got.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        else:
            assert not got.file_meta.TransferSyntaxUID.is_compressed
        assert got.PixelData == original.PixelData
        assert source is None or record.source == source


@pytest.mark.parametrize("method", ["wado", "get", "move"])
def test_retrieve_a_study_instance_by_instance(pacs, data, method, tmp_path):
    config, secret = config_for(pacs, method)
    uid = data.studies["bailey"]
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        result = retrieve(config, uid, method=method, library=library, secret=secret)
        assert (result.method, result.ok, result.notes, result.failed) == (method, True, [], 0)
        assert result.imported.count("imported") == 7 and result.study_uids == [uid]
        assert result.completed == 7
        check_instances(library, data, data.of_study[uid], config.name)
        study = library.study(uid)
        p = study.patient
        assert (p.name, p.species, p.breed, p.owner) == ("Hendricks^Bailey", "Canine", "Labrador Retriever",
                                                         "Hendricks^Anna")
        assert (study.accession, study.series_count, study.instance_count) == ("ACC-1001", 4, 7)
        again = retrieve(config, uid, method=method, library=library, secret=secret)
        assert again.imported.count("duplicate") == 7 and again.ok


@pytest.mark.parametrize("method", ["wado", "get", "move"])
def test_retrieve_one_series(pacs, data, method, tmp_path):
    config, secret = config_for(pacs, method)
    uid = data.studies["bailey"]
    series_uid = pydicom.dcmread(io.BytesIO(data.files[data.series["bailey/ct-j2k"][0]])).SeriesInstanceUID
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        result = retrieve(config, uid, series_uid=series_uid, method=method, library=library, secret=secret)
        assert result.ok and result.imported.count("imported") == 2
        check_instances(library, data, data.series["bailey/ct-j2k"], config.name)


def test_c_move_to_an_ae_title_the_pacs_does_not_know(pacs, data, tmp_path):
    (port,) = free_ports(1)
    config = dimse(pacs, move_aet="NOTLIGHTBOX", move_port=port)
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        with pytest.raises(RetrieveError) as caught:
            retrieve(config, data.studies["bailey"], method="move", library=library)
        assert library.counts()["instances"] == 0
    message = str(caught.value)
    # Orthanc answers 0xC000 (not 0xA801) with no sub-operation: the likely cause is named all the same.
    assert "does not know Lightbox's AE title NOTLIGHTBOX at 127.0.0.1:" + str(port) in message
    assert "add it to the PACS's list of destinations" in message


def test_c_move_while_receiving_studies_goes_to_the_retrieve(pacs, data, tmp_path):
    """The permanent storage SCP on the C-MOVE port hands that move's instances to the retrieve (its source)."""
    heard = []
    service = Receiving("LIGHTBOX", pacs.lightbox_port, library_root=tmp_path / "received",
                        on_import=heard.append).start()
    try:
        with Library(tmp_path / "library", microchip_issuers=()) as library:
            result = retrieve(dimse(pacs), data.studies["storm"], method="move", library=library)
            assert result.ok and result.imported.count("imported") == 1
            check_instances(library, data, data.of_study[data.studies["storm"]], "Clinic PACS")
            assert service.server.listening
            with pytest.raises(RetrieveError) as caught:
                retrieve(dimse(pacs, move_aet="ELSEWHERE"), data.studies["storm"], method="move", library=library)
            assert str(caught.value) == f"port {pacs.lightbox_port} already receives as LIGHTBOX, not ELSEWHERE"
    finally:
        service.stop()
    assert heard == [] and service.server.received == 1


def test_neither_c_get_nor_c_move_says_why_each_failed(pacs, data, tmp_path):
    config = dimse(pacs)
    config.dimse.query_aet = config.dimse.local_aets[0] = "STRANGER"  # not in Orthanc's DicomModalities
    start = time.monotonic()
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        with pytest.raises(RetrieveError) as caught:
            retrieve(config, data.studies["storm"], library=library)
    assert time.monotonic() - start < config.dimse.timeout_s / 2  # no request waits on an aborted association
    assert str(caught.value) == (
        "C-GET did not work (the PACS aborted the association in answer to the C-GET; it may not accept C-GET from "
        "the calling AE title STRANGER), and C-MOVE did not work either (the PACS aborted the association in answer "
        "to the C-MOVE; it may not accept C-MOVE from the calling AE title STRANGER)")


def test_dicomweb_with_a_wrong_password(pacs, data, tmp_path):
    config = web(pacs)
    with pytest.raises(QueryError, match=r"refused access \(HTTP 401\)"):
        find_studies(config, StudyQuery(patient_name="bailey"), secret="wrong")
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        with pytest.raises(RetrieveError) as caught:
            retrieve(config, data.studies["bailey"], library=library, secret="wrong")
    assert str(caught.value) == ("the PACS refused access (HTTP 401): the user name, password or token was not "
                                 "accepted")


def test_move_destination_unknown_0xa801_is_explained(tmp_path):
    """Orthanc never answers 0xA801; pynetdicom's C-MOVE SCP does when its handler knows no such destination."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

    from app.pacs.dimse import nodelay_handler

    def on_move(event):
        yield None, None  # the destination AE title is unknown

    scp_port, move_port = free_ports(2)
    ae = AE(ae_title="MOVESCP")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
    server = ae.start_server(("127.0.0.1", scp_port), block=False,
                             evt_handlers=[(evt.EVT_C_MOVE, on_move), nodelay_handler()])
    try:
        config = PacsConfig(DIMSE, "Move only", "MOVESCP", dimse=DimseOptions(
            "127.0.0.1", scp_port, retrieve_method="move", move_port=move_port, timeout_s=5))
        config.validate()
        with Library(tmp_path / "library", microchip_issuers=()) as library:
            with pytest.raises(RetrieveError) as caught:
                retrieve(config, "1.2.3.4", library=library)
    finally:
        server.shutdown()
    assert str(caught.value) == (f"the PACS does not know Lightbox's AE title LIGHTBOX at 127.0.0.1:{move_port}: "
                                 "add it to the PACS's list of destinations")


def test_a_pacs_refusing_c_get_falls_back_to_c_move(pacs_no_get, data, tmp_path):
    uid = data.studies["bailey"]
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        result = retrieve(dimse(pacs_no_get), uid, library=library)
        assert result.method == "move" and result.ok and result.imported.count("imported") == 7
        (note,) = result.notes
        assert note == ("C-GET did not work (the PACS aborted the association in answer to the C-GET; it may not "
                        "accept C-GET from the calling AE title LIGHTBOX); retrieved with C-MOVE instead")
        check_instances(library, data, data.of_study[uid], "Clinic PACS")


def test_a_pacs_refusing_c_get_fails_clearly_under_get(pacs_no_get, data, tmp_path):
    refused = ("the PACS aborted the association in answer to the C-GET; it may not accept C-GET from the calling AE "
               "title LIGHTBOX")
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        with pytest.raises(RetrieveError) as caught:
            retrieve(dimse(pacs_no_get, method="get"), data.studies["bailey"], library=library)
        assert str(caught.value) == refused
        with pytest.raises(RetrieveError) as caught:  # the method asked for wins over the configuration's
            retrieve(dimse(pacs_no_get, method="auto"), data.studies["bailey"], method="get", library=library)
        assert str(caught.value) == refused
        assert library.counts()["instances"] == 0


@pytest.mark.parametrize("method", ["wado", "get", "move"])
def test_cancel_keeps_what_arrived(pacs, data, method, tmp_path):
    config, secret = config_for(pacs, method)
    uid = data.studies["many"]
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        job = Job(lambda reporter: retrieve(config, uid, method=method, library=library, reporter=reporter,
                                            secret=secret), "Retrieving")
        job.on_progress(lambda j: j.cancel() if j.progress.done >= 10 else None)
        job.run()
        assert job.state == State.CANCELLED and isinstance(job.error, Cancelled)
        kept = library.instances(study_uid=uid)
        assert len(kept) >= 10
        if method != "wado":  # Orthanc sends a WADO-RS answer whole at once; a C-CANCEL stops its sub-operations
            assert len(kept) < 120
        for record in kept:
            assert pydicom.dcmread(record.path).PixelData == pydicom.dcmread(
                io.BytesIO(data.files[record.sop_uid])).PixelData
        assert library.check(repair=False).clean


# -- the permanent storage SCP --------------------------------------------------------------------------------

def test_receiving_imports_what_storescu_pushes_and_answers_echo(data, tmp_path):
    (port,) = free_ports(1)
    sops = data.of_study[data.studies["bailey"]]
    # storescu proposes one compressed syntax per run (and cannot decode RLE itself): RLE goes on its own.
    rle = set(data.series["bailey/photo"])
    folders = {"-xv": tmp_path / "j2k", "-xr": tmp_path / "rle"}
    for n, sop in enumerate(sops):
        folder = folders["-xr" if sop in rle else "-xv"]
        folder.mkdir(exist_ok=True)
        (folder / f"{n}.dcm").write_bytes(data.files[sop])
    arrived = threading.Event()
    imported = []

    def on_import(entry):
        imported.append(entry)
        if len(imported) == len(sops):
            arrived.set()

    env = dict(os.environ, TCP_NODELAY="1")
    service = Receiving("LIGHTBOX", port, library_root=tmp_path / "library", on_import=on_import,
                        bind="127.0.0.1").start()
    try:
        echo = subprocess.run(["echoscu", "-aet", "MODALITY", "-aec", "LIGHTBOX", "127.0.0.1", str(port)],
                              capture_output=True, text=True, env=env, timeout=30)
        assert echo.returncode == 0, echo.stderr
        wrong = subprocess.run(["echoscu", "-aet", "MODALITY", "-aec", "SOMEONE", "127.0.0.1", str(port)],
                               capture_output=True, text=True, env=env, timeout=30)
        assert wrong.returncode != 0 and "Called AE Title Not Recognized" in wrong.stderr + wrong.stdout
        for option, folder in folders.items():
            push = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "LIGHTBOX", option, "+sd", "+r",
                                   "127.0.0.1", str(port), str(folder)], capture_output=True, text=True, env=env,
                                  timeout=60)
            assert push.returncode == 0, push.stderr
        assert arrived.wait(30), f"{len(imported)} of {len(sops)} imported"
    finally:
        service.stop()
    assert sorted(e.sop_instance_uid for e in imported) == sorted(sops)
    assert {e.status for e in imported} == {"imported"}
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        # storescu chose Implicit VR Little Endian for the uncompressed ones: its choice among those accepted.
        check_instances(library, data, sops, "received from MODALITY", exact_syntax=False)


# -- the command line -----------------------------------------------------------------------------------------

@pytest.fixture
def configured(pacs, monkeypatch):
    """Both kinds of configuration of `pacs` saved in this test's LIGHTBOX_HOME."""
    monkeypatch.setenv("LIGHTBOX_SECRETS", "file")
    configs = PacsConfigs()
    configs.add(dimse(pacs))
    configs.add(web(pacs), secret=pacs.password)
    return pacs


def test_cli_query_json(run_cli, configured, data):
    for aet in ("ORTHANC", "ORTHANCWEB"):
        code, out, err = run_cli("query", aet, "--patient-name", "bailey", "--date", "-20231231", "--json")
        assert code == 0, err
        (study,) = json.loads(out)
        assert study["uid"] == data.studies["bailey-prior"] and study["accession"] == "ACC-0907"
        assert study["patient"]["species"] == "Canine" and study["patient"]["owner"] == "Hendricks^Anna"
        code, out, err = run_cli("query", aet, "--accession", "ACC-1001", "--series", "--json")
        (study,) = json.loads(out)
        assert code == 0 and [s["instance_count"] for s in study["series"]] == [3, 2, 1, 1]
    code, out, err = run_cli("query", "ORTHANC", "--modality", "MR")
    assert code == 0 and "Müller^Felix" in out and out.rstrip().endswith("1 study on ORTHANC")
    code, out, err = run_cli("query", "ORTHANC", "--date", "2024-13-01")
    assert code == 1 and "is not a date" in err


def test_cli_retrieve_json(run_cli, configured, data):
    uid = data.studies["bailey"]
    series_uid = pydicom.dcmread(io.BytesIO(data.files[data.series["bailey/dx"][0]])).SeriesInstanceUID
    code, out, err = run_cli("retrieve", "ORTHANC", uid, "--series", series_uid, "--method", "move", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["method"] == "move" and result["ok"] and result["import"]["summary"] == "1 imported"
    code, out, err = run_cli("retrieve", "ORTHANCWEB", uid, "--json")
    result = json.loads(out)
    assert code == 0 and result["method"] == "wado" and result["completed"] == 7
    assert result["import"]["summary"] == "6 imported, 1 already in the library"
    with Library() as library:
        check_instances(library, data, data.of_study[uid], None)
        sources = {r.sop_uid: r.source for r in library.instances(study_uid=uid)}
    dx = data.series["bailey/dx"][0]
    assert sources.pop(dx) == "Clinic PACS" and set(sources.values()) == {"Clinic web"}  # the DX came first
    code, out, err = run_cli("retrieve", "ORTHANCWEB", uid, "--method", "get")
    assert code == 1 and "WADO-RS" in err


def test_cli_in_a_separate_process(lightbox_exe, configured, data, lightbox_home):
    env = dict(os.environ, LIGHTBOX_HOME=str(lightbox_home), LIGHTBOX_SECRETS="file")
    done = subprocess.run([*lightbox_exe, "query", "ORTHANC", "--owner", "okafor", "--json"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(s["accession"] for s in json.loads(done.stdout)) == ["ACC-3003", "ACC-5005"]
    done = subprocess.run([*lightbox_exe, "retrieve", "ORTHANC", data.studies["storm"], "--method", "get", "--json"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["import"]["summary"] == "1 imported"


def test_a_pacs_with_only_patient_root_is_asked_patient_by_patient():
    """A C-FIND SCP (pynetdicom) that offers only the Patient Root model: the query asks at PATIENT level, then
    for each patient's studies, and the studies carry the patient's species and owner."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind

    from app.pacs.dimse import nodelay_handler

    patients = {"P1": ("HENDRICKS^Bailey", "Canine", "Hendricks^Anna"), "P2": ("SMITH^Whiskers", "Feline", "Smith^Joan")}
    studies = {"P1": [("1.2.3.1", "20260101"), ("1.2.3.2", "20250101")], "P2": [("1.2.3.3", "20240101")]}
    asked = []

    def on_find(event):
        request = event.identifier
        level = request.QueryRetrieveLevel
        asked.append((level, str(request.get("PatientID", "")), str(request.get("PatientName", ""))))
        if level == "PATIENT":
            for pid, (name, species, owner) in patients.items():
                pattern = str(request.get("PatientName", "") or "*").replace("*", "").upper()
                if pattern in name.upper():
                    ds = Dataset()
                    ds.QueryRetrieveLevel = "PATIENT"
                    ds.PatientID, ds.PatientName = pid, name
                    ds.PatientSpeciesDescription, ds.ResponsiblePerson = species, owner
                    yield 0xFF00, ds
        elif level == "STUDY":
            for uid, date in studies.get(str(request.PatientID), []):
                ds = Dataset()
                ds.QueryRetrieveLevel = "STUDY"
                ds.PatientID, ds.StudyInstanceUID, ds.StudyDate = request.PatientID, uid, date
                yield 0xFF00, ds

    port = free_ports(1)[0]
    ae = AE(ae_title="PATROOT")
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_FIND, on_find), nodelay_handler()])
    try:
        config = PacsConfig(DIMSE, "Patient root", "PATROOT", dimse=DimseOptions("127.0.0.1", port, timeout_s=5))
        config.validate()
        found = find_studies(config, StudyQuery(patient_name="bailey"))
    finally:
        server.shutdown()
    assert [(s.uid, s.date) for s in found] == [("1.2.3.1", "20260101"), ("1.2.3.2", "20250101")]
    assert {(s.patient.species, s.patient.owner) for s in found} == {("Canine", "Hendricks^Anna")}
    assert [a[0] for a in asked] == ["PATIENT", "STUDY"] and asked[1][1] == "P1"
