"""Modality Worklist against Orthanc's worklist plugin (`.wl` files made here), capture imports named by an order,
and MPPS: N-CREATE when the procedure starts, N-SET COMPLETED when the outbox has sent the study. Loopback only."""

from __future__ import annotations

import datetime as dt
import json
import threading

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from app.errors import UsageError
from app.library import Library, import_paths
from app.pacs.config import DIMSE, DimseOptions, PacsConfig, PacsConfigs
from app.pacs.dimse import nodelay_handler
from app.pacs.outbox import Outbox
from app.pacs.query import QueryError
from app.pacs.worklist import WorklistQuery, choose, find_worklist, start_procedure
from tests.integration.orthanc import free_ports

pytestmark = pytest.mark.timeout(60)

MWL_FIND = "1.2.840.10008.5.1.4.31"
TODAY = dt.date.today().strftime("%Y%m%d")


def order(accession: str, *, name: str, patient_id: str, species: str, breed: str, owner: str, date: str, time: str,
          modality: str, station: str, procedure: str, step_id: str) -> Dataset:
    """A worklist item as a PACS keeps it: patient, order, one scheduled procedure step (UTF-8 throughout)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID, ds.PatientSex, ds.PatientBirthDate = name, patient_id, "F", "20180405"
    ds.PatientSpeciesDescription, ds.PatientBreedDescription = species, breed
    ds.ResponsiblePerson, ds.ResponsiblePersonRole = owner, "OWNER"
    ds.AccessionNumber, ds.StudyInstanceUID = accession, generate_uid()
    ds.RequestedProcedureID, ds.RequestedProcedureDescription = f"RP-{accession}", procedure
    ds.ReferringPhysicianName = "Vet^Ann"
    step = Dataset()
    step.ScheduledStationAETitle, step.ScheduledStationName = station, station.lower()
    step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime = date, time
    step.Modality, step.ScheduledPerformingPhysicianName = modality, "Tech^Tom"
    step.ScheduledProcedureStepDescription, step.ScheduledProcedureStepID = procedure, step_id
    ds.ScheduledProcedureStepSequence = [step]
    return ds


ORDERS = {
    "ACC-W1": order("ACC-W1", name="Hendricks^Bailey", patient_id="VET-1001", species="Canine",
                    breed="Labrador Retriever", owner="Hendricks^Anna", date="20240115", time="090000", modality="DX",
                    station="DX_ROOM1", procedure="Thorax 2 views", step_id="SPS-1"),
    "ACC-W2": order("ACC-W2", name="Okafor^Storm", patient_id="VET-3003", species="Equine", breed="Thoroughbred",
                    owner="Okafor^Chidi", date="20240115", time="140000", modality="CR", station="CR_ROOM2",
                    procedure="Carpus right", step_id="SPS-2"),
    "ACC-W3": order("ACC-W3", name="Иванова^Сакура", patient_id="VET-4004", species="Feline", breed="Сибирская",
                    owner="山田^太郎", date="20240116", time="100000", modality="XC", station="CAMERA1",
                    procedure="Skin lesion photo", step_id="SPS-3"),
    "ACC-W4": order("ACC-W4", name="Müller^Felix", patient_id="VET-2002", species="Feline",
                    breed="European Shorthair", owner="Müller^Hans", date=TODAY, time="113000", modality="XC",
                    station="CAMERA1", procedure="Wound photo", step_id="SPS-4"),
}


def write_wl(ds: Dataset, path) -> None:
    """A `.wl` file as Orthanc's plugin reads it: a Part 10 file holding the item."""
    ds = ds.copy()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MWL_FIND
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def worklist(orthanc_utf8):
    """An Orthanc serving ORDERS from its worklist folder (removed again afterwards). The one whose DICOM side
    answers in UTF-8: with its default (Latin1), Orthanc 1.10 answers '^' for the non-Latin names of ACC-W3."""
    written = []
    for accession, ds in ORDERS.items():
        path = orthanc_utf8.worklists / f"{accession}.wl"
        write_wl(ds, path)
        written.append(path)
    yield orthanc_utf8
    for path in written:
        path.unlink(missing_ok=True)


def mwl_config(orthanc, **options) -> PacsConfig:
    config = PacsConfig(DIMSE, "Clinic PACS", orthanc.aet, dimse=DimseOptions(
        "127.0.0.1", orthanc.dicom_port, mwl=True, timeout_s=10, **options))
    config.validate()
    return config


def accessions(entries) -> list[str]:
    return [e.accession for e in entries]


def jpeg(path, seed: int = 0):
    rng = np.random.default_rng(seed)
    PILImage.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path, "JPEG", quality=90)
    return path


# -- the worklist ---------------------------------------------------------------------------------------------

def test_veterinary_attributes_and_a_utf8_owner_come_back(worklist):
    entries = find_worklist(mwl_config(worklist), WorklistQuery())
    assert accessions(entries) == ["ACC-W1", "ACC-W2", "ACC-W3", "ACC-W4"]  # by scheduled date and time
    by = {e.accession: e for e in entries}
    bailey = by["ACC-W1"]
    p = bailey.patient
    assert (p.name, p.id, p.sex, p.birth_date) == ("Hendricks^Bailey", "VET-1001", "F", "20180405")
    assert (p.species, p.breed, p.owner) == ("Canine", "Labrador Retriever", "Hendricks^Anna")
    assert (bailey.study_uid, bailey.requested_procedure_id, bailey.requested_procedure) == (
        ORDERS["ACC-W1"].StudyInstanceUID, "RP-ACC-W1", "Thorax 2 views")
    assert (bailey.step_id, bailey.step_description, bailey.modality, bailey.station_aet) == (
        "SPS-1", "Thorax 2 views", "DX", "DX_ROOM1")
    assert (bailey.scheduled_date, bailey.scheduled_time, bailey.referring_physician, bailey.performing_physician) == (
        "20240115", "090000", "Vet^Ann", "Tech^Tom")
    assert bailey.source == worklist.aet
    sakura = by["ACC-W3"].patient
    assert (sakura.name, sakura.owner, sakura.breed) == ("Иванова^Сакура", "山田^太郎", "Сибирская")
    assert by["ACC-W4"].patient.owner == "Müller^Hans"


@pytest.mark.parametrize("query, expected", [
    (WorklistQuery.with_dates("20240115"), ["ACC-W1", "ACC-W2"]),
    (WorklistQuery.with_dates("20240116-"), ["ACC-W3", "ACC-W4"]),
    (WorklistQuery.with_dates("-20240115"), ["ACC-W1", "ACC-W2"]),
    (WorklistQuery.with_dates("20240110-20240116"), ["ACC-W1", "ACC-W2", "ACC-W3"]),
    (WorklistQuery.with_dates("today"), ["ACC-W4"]),
    (WorklistQuery.with_dates("20240101", modality="XC"), []),
    (WorklistQuery(modality="XC"), ["ACC-W3", "ACC-W4"]),
    (WorklistQuery(modality="dx"), ["ACC-W1"]),
    (WorklistQuery.with_dates("20240115", modality="CR"), ["ACC-W2"]),
    (WorklistQuery(station_aet="CAMERA1"), ["ACC-W3", "ACC-W4"]),
    (WorklistQuery(station_aet="DX_ROOM1", modality="DX"), ["ACC-W1"]),
    (WorklistQuery(station_aet="NOWHERE"), []),
    (WorklistQuery(patient_name="storm"), ["ACC-W2"]),
], ids=lambda v: str(v) if isinstance(v, WorklistQuery) else None)
def test_filters(worklist, query, expected):
    assert accessions(find_worklist(mwl_config(worklist), query)) == expected


def test_a_configuration_without_mwl_says_so(worklist):
    config = mwl_config(worklist)
    config.dimse.mwl = False
    with pytest.raises(QueryError, match="not set up as a worklist"):
        find_worklist(config, WorklistQuery())


def test_a_cancelled_worklist_query_stops_and_says_so(worklist):
    from app.errors import Cancelled

    class Stopped:
        cancelled = True

    with pytest.raises(Cancelled):
        find_worklist(mwl_config(worklist), WorklistQuery(), reporter=Stopped())
    assert len(find_worklist(mwl_config(worklist), WorklistQuery())) > 1  # the association was left clean


def test_choose_an_entry(worklist):
    entries = find_worklist(mwl_config(worklist), WorklistQuery())
    assert choose(entries, "ACC-W2").patient.name == "Okafor^Storm"
    assert choose(entries, "SPS-3").accession == "ACC-W3"
    assert choose(entries, ORDERS["ACC-W4"].StudyInstanceUID).accession == "ACC-W4"
    with pytest.raises(UsageError, match="No worklist entry"):
        choose(entries, "ACC-NONE")


def test_cli_worklist_json(run_cli, worklist):
    PacsConfigs().add(mwl_config(worklist))
    code, out, err = run_cli("worklist", worklist.aet, "--json")  # today by default
    assert code == 0, err
    (entry,) = json.loads(out)
    assert entry["accession"] == "ACC-W4" and entry["patient"]["name"] == "Müller^Felix"
    code, out, err = run_cli("worklist", worklist.aet, "--date", "any", "--station", "CAMERA1", "--json")
    assert code == 0 and [e["patient"]["owner"] for e in json.loads(out)] == ["山田^太郎", "Müller^Hans"]
    code, out, err = run_cli("worklist", worklist.aet, "--date", "20240115", "--modality", "CR")
    assert code == 0 and "Okafor^Storm · ID VET-3003 · Equine · Thoroughbred · owner Okafor^Chidi" in out
    assert out.rstrip().endswith("1 worklist entry on ORTHANC")


# -- capture for an order -------------------------------------------------------------------------------------

def check_captured(library: Library, accession: str, photos: int) -> None:
    wanted = ORDERS[accession]
    study = library.study(wanted.StudyInstanceUID)
    p = study.patient
    assert (p.name, p.id, p.species, p.breed, p.owner) == (
        str(wanted.PatientName), wanted.PatientID, wanted.PatientSpeciesDescription, wanted.PatientBreedDescription,
        str(wanted.ResponsiblePerson))
    assert (study.accession, study.instance_count) == (accession, photos)
    (instance, *_) = library.instances(study_uid=study.uid)
    ds = pydicom.dcmread(instance.path)
    assert ds.AccessionNumber == accession and ds.StudyInstanceUID == wanted.StudyInstanceUID
    assert ds.Modality == "XC" and ds.PatientSpeciesDescription == wanted.PatientSpeciesDescription


def test_cli_import_of_a_photo_for_an_order(run_cli, worklist, tmp_path):
    PacsConfigs().add(mwl_config(worklist))
    photo = jpeg(tmp_path / "wound.jpg")
    code, out, err = run_cli("import", photo, "--worklist", worklist.aet, "--order", "ACC-W4", "--json")
    assert code == 0, err
    assert json.loads(out)["summary"] == "1 imported"
    with Library() as library:
        check_captured(library, "ACC-W4", 1)
        assert library.procedure(ORDERS["ACC-W4"].StudyInstanceUID) is None  # MPPS is off
    code, out, err = run_cli("import", photo, "--worklist", worklist.aet, "--order", "ACC-NONE")
    assert code == 1 and "No worklist entry" in err


def test_capture_context_of_a_utf8_entry(worklist, tmp_path):
    entry = choose(find_worklist(mwl_config(worklist), WorklistQuery(station_aet="CAMERA1")), "ACC-W3")
    photos = [jpeg(tmp_path / f"lesion{n}.jpg", seed=n) for n in range(2)]
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        result = import_paths(photos, library=library, context=entry.capture_context())
        assert result.studies == [entry.study_uid] and result.count("imported") == 2
        check_captured(library, "ACC-W3", 2)
        (series,) = library.series(entry.study_uid)  # both photos in one series
        assert series.instance_count == 2


# -- MPPS: the worklist's own PACS --------------------------------------------------------------------------

@pytest.fixture
def worklist_with_mpps():
    """A pynetdicom SCP serving a Modality Worklist (ORDERS, unfiltered) and MPPS on one port, as one PACS
    configuration needs them (Orthanc 1.10 has no MPPS). Yields (configuration, what it received)."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ModalityPerformedProcedureStep, ModalityWorklistInformationFind

    received = {"create": [], "set": []}
    steps = {}
    lock = threading.Lock()

    def on_find(event):
        for ds in ORDERS.values():
            yield 0xFF00, ds

    def on_create(event):
        with lock:
            uid = event.request.AffectedSOPInstanceUID
            received["create"].append((uid, event.attribute_list))
            steps[uid] = event.attribute_list
        return 0x0000, event.attribute_list

    def on_set(event):
        with lock:
            uid = event.request.RequestedSOPInstanceUID
            if uid not in steps:
                return 0x0112, None
            received["set"].append((uid, event.modification_list))
            steps[uid].update(event.modification_list)
            return 0x0000, steps[uid]

    (port,) = free_ports(1)
    ae = AE(ae_title="WLSCP")
    ae.add_supported_context(ModalityWorklistInformationFind)
    ae.add_supported_context(ModalityPerformedProcedureStep)
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[
        (evt.EVT_C_FIND, on_find), (evt.EVT_N_CREATE, on_create), (evt.EVT_N_SET, on_set), nodelay_handler()])
    config = PacsConfig(DIMSE, "Reception", "WLSCP", dimse=DimseOptions(
        "127.0.0.1", port, store=False, query_retrieve=False, mwl=True, mpps=True, timeout_s=5))
    config.validate()
    yield config, received
    server.shutdown()


def test_procedure_started_from_the_worklist_completes_when_the_study_is_sent(
        run_cli, worklist_with_mpps, worklist, tmp_path):
    config, received = worklist_with_mpps
    orthanc = worklist
    destination = PacsConfig(DIMSE, "Archive", orthanc.aet, dimse=DimseOptions(
        "127.0.0.1", orthanc.dicom_port, timeout_s=10))
    configs = PacsConfigs()
    configs.add(config)
    configs.add(destination)
    wanted = ORDERS["ACC-W1"]

    code, out, err = run_cli("import", jpeg(tmp_path / "thorax.jpg"), "--worklist", "WLSCP", "--order", "ACC-W1")
    assert code == 0, err
    ((mpps_uid, created),) = received["create"]
    assert f"procedure step {mpps_uid} in progress at WLSCP" in out
    assert created.PerformedProcedureStepStatus == "IN PROGRESS"
    assert (created.PatientName, created.PatientID, created.Modality) == ("Hendricks^Bailey", "VET-1001", "DX")
    (step,) = created.ScheduledStepAttributesSequence
    assert (step.StudyInstanceUID, step.AccessionNumber, step.RequestedProcedureID, step.ScheduledProcedureStepID) == (
        wanted.StudyInstanceUID, "ACC-W1", "RP-ACC-W1", "SPS-1")
    assert received["set"] == []

    with Library() as library:
        assert library.procedure(wanted.StudyInstanceUID) == (config.id, mpps_uid, "in progress")
        entry = choose(find_worklist(config, WorklistQuery()), "ACC-W1")
        assert start_procedure(library, config, entry) == mpps_uid  # started once per study
        assert len(received["create"]) == 1
        (photo,) = library.instances(study_uid=wanted.StudyInstanceUID)
        box = Outbox(library)
        send_id = box.queue(destination, study_uids=[wanted.StudyInstanceUID])
        record = box.run(send_id, configs=PacsConfigs.load())
        assert record.state == "done" and record.last_error == "", record.describe()
        assert library.procedure(wanted.StudyInstanceUID) == (config.id, mpps_uid, "completed")

    assert photo.sop_uid in orthanc.instances()  # the images went to the archive ...
    ((set_uid, modified),) = received["set"]  # ... and COMPLETED to the worklist's PACS
    assert set_uid == mpps_uid and modified.PerformedProcedureStepStatus == "COMPLETED"
    assert modified.PerformedProcedureStepEndDate and modified.PerformedProcedureStepEndTime
    (performed,) = modified.PerformedSeriesSequence
    assert performed.SeriesInstanceUID == photo.series_uid
    assert [(r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID) for r in performed.ReferencedImageSequence] == [
        (photo.sop_class, photo.sop_uid)]
