"""The worklist in the window: the panel (a dock, today's orders, filters, refresh in a job), "Use for captures"
(photos imported go into the order's study without a question, the status bar shows the order, Clear) and the
procedure step started after the first import (MPPS, when configured; a refusal is a message, the images stay).

The worklist is Orthanc's worklist plugin with .wl files made here; MPPS is a pynetdicom SCP started by the test."""

from __future__ import annotations

import datetime as dt

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QMessageBox

from app.pacs.config import DIMSE, DimseOptions, PacsConfig, PacsConfigs
from app.ui.worklist_panel import NO_WORKLIST, time_text
from tests.integration.conftest import orthanc  # noqa: F401 - fixture
from tests.integration.orthanc import free_ports

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]

WAIT = 20000
TODAY = dt.date.today().strftime("%Y%m%d")
TOMORROW = (dt.date.today() + dt.timedelta(days=1)).strftime("%Y%m%d")
ORDERS = (  # name, ID, species, breed, owner, accession, procedure, modality, station, date, time
    ("Hendricks^Bailey", "VET-000123", "Canine", "Golden Retriever", "Müller^Jürgen", "A123", "Dental photos", "XC",
     "CAMERA1", TODAY, "093000"),
    ("Smith^Whiskers", "VET-000777", "Feline", "Maine Coon", "Smith^Joan", "A124", "Thorax lateral", "DX", "XRAY1",
     TODAY, "101500"),
    ("Novak^Rex", "VET-000888", "Canine", "Beagle", "Novak^Petr", "A130", "Skin lesion photos", "XC", "CAMERA1",
     TOMORROW, "083000"),
)


@pytest.fixture(autouse=True)
def secrets_in_a_file(monkeypatch):
    monkeypatch.setenv("LIGHTBOX_SECRETS", "file")


@pytest.fixture(autouse=True)
def no_questions(monkeypatch):
    """Message boxes answered without a person: questions say No, warnings are collected."""
    said = {"question": [], "warning": []}

    def question(parent, title, text, *args, **kwargs):
        said["question"].append(text)
        return QMessageBox.StandardButton.No

    def warning(parent, title, text, *args, **kwargs):
        said["warning"].append(text)
        return QMessageBox.StandardButton.Ok

    monkeypatch.setattr(QMessageBox, "question", question)
    monkeypatch.setattr(QMessageBox, "warning", warning)
    return said


def order_dataset(name, pid, species, breed, owner, accession, procedure, modality, station, date, time) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID = name, pid
    ds.PatientSpeciesDescription, ds.PatientBreedDescription = species, breed
    ds.ResponsiblePerson, ds.ResponsiblePersonRole = owner, "OWNER"
    ds.AccessionNumber, ds.StudyInstanceUID = accession, generate_uid()
    ds.RequestedProcedureID, ds.RequestedProcedureDescription = f"RP{accession}", procedure
    ds.ReferringPhysicianName = "Marsh^Olivia"
    step = Dataset()
    step.Modality, step.ScheduledStationAETitle = modality, station
    step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime = date, time
    step.ScheduledProcedureStepDescription, step.ScheduledProcedureStepID = procedure, f"SPS{accession}"
    ds.ScheduledProcedureStepSequence = [step]
    return ds


@pytest.fixture
def worklist(orthanc):
    """Orthanc serving ORDERS as its worklist; a configuration for it (worklist on, no MPPS)."""
    for old in orthanc.worklists.glob("*.wl"):
        old.unlink()
    datasets = []
    for n, order in enumerate(ORDERS):
        ds = order_dataset(*order)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.276.0.7230010.3.1.0.1"  # dcmtk's worklist file class
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(orthanc.worklists / f"order{n}.wl", enforce_file_format=True)
        datasets.append(ds)
    PacsConfigs.load().add(PacsConfig(DIMSE, "Clinic PACS", "ORTHANC", dimse=DimseOptions(
        "127.0.0.1", orthanc.dicom_port, mwl=True, timeout_s=10)))
    return datasets


@pytest.fixture
def window(qtbot):
    from app.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1300, 850)
    win.show()
    qtbot.waitExposed(win)
    return win


def open_worklist(qtbot, win):
    assert not win.worklist_dock.isVisible()
    win.act_worklist.trigger()
    assert win.worklist_dock.isVisible()
    panel = win.worklist_panel
    qtbot.waitUntil(lambda: panel.job is None and panel.entries_config is not None, timeout=WAIT)
    return panel


def refresh(qtbot, panel):
    assert panel.refresh() is not None
    qtbot.waitUntil(lambda: panel.job is None, timeout=WAIT)


def photo(path, color=(200, 120, 40)) -> str:
    image = QImage(64, 48, QImage.Format.Format_RGB32)
    image.fill(QColor(*color))
    assert image.save(str(path))
    return str(path)


def import_and_wait(qtbot, win, paths):
    job = win.import_into_library(paths)
    qtbot.waitUntil(lambda: job._finished.is_set() and not win.busy, timeout=WAIT)
    return win.last_import


# -- the panel --------------------------------------------------------------------------------------------

def test_opening_the_panel_shows_todays_orders(qtbot, worklist, window):
    panel = open_worklist(qtbot, window)
    assert panel.dates.choice == "today"
    assert panel.rows() == [
        {"Scheduled": "09:30", "Patient": "Bailey", "Species": "Canine", "Breed": "Golden Retriever",
         "Owner": "Müller, Jürgen", "Accession": "A123", "Requested procedure": "Dental photos", "Modality": "XC"},
        {"Scheduled": "10:15", "Patient": "Whiskers", "Species": "Feline", "Breed": "Maine Coon",
         "Owner": "Smith, Joan", "Accession": "A124", "Requested procedure": "Thorax lateral", "Modality": "DX"}]
    assert panel.status.text.startswith("2 orders on Clinic PACS")
    assert panel.use_button.isEnabled()  # the first is chosen


def test_filters_by_date_modality_and_station(qtbot, worklist, window):
    panel = open_worklist(qtbot, window)
    panel.modality.setCurrentText("DX")
    refresh(qtbot, panel)
    assert [r["Patient"] for r in panel.rows()] == ["Whiskers"]
    panel.modality.setCurrentText("")
    panel.station.setText("CAMERA1")
    refresh(qtbot, panel)
    assert [r["Patient"] for r in panel.rows()] == ["Bailey"]
    panel.dates.set_choice("tomorrow")
    refresh(qtbot, panel)
    assert [(r["Patient"], r["Scheduled"]) for r in panel.rows()] == [
        ("Rex", time_text(TOMORROW, "083000"))]
    assert " " in panel.rows()[0]["Scheduled"]  # another day: the date too
    panel.dates.set_choice("yesterday")
    refresh(qtbot, panel)
    assert panel.rows() == [] and panel.status.text == "No orders on Clinic PACS for yesterday with these filters."
    assert not panel.use_button.isEnabled()


def test_without_a_worklist_configuration_the_panel_says_how_to_get_one(qtbot, window):
    panel = window.worklist_panel
    window.act_worklist.trigger()
    assert not panel.refresh_button.isEnabled() and panel.refresh() is None
    assert panel.status.text.endswith(NO_WORKLIST)


def test_an_unreachable_worklist_is_a_readable_line(qtbot, window):
    (port,) = free_ports(1)
    PacsConfigs.load().add(PacsConfig(DIMSE, "Gone", "GONE", dimse=DimseOptions("127.0.0.1", port, mwl=True,
                                                                                  timeout_s=3)))
    panel = window.worklist_panel
    panel.reload_configs()
    window.act_worklist.trigger()
    qtbot.waitUntil(lambda: panel.job is None and panel.status.text.startswith("✖"), timeout=WAIT)
    assert f"127.0.0.1:{port}" in panel.status.text and "Traceback" not in panel.status.text


# -- the order for captures -----------------------------------------------------------------------------

def test_photos_go_into_the_chosen_order_without_a_question(qtbot, worklist, window, no_questions, tmp_path):
    from app.library import Library

    panel = open_worklist(qtbot, window)
    assert panel.select("A123")
    panel.use_button.click()
    order = window.order
    assert order is not None and order.entry.accession == "A123"
    assert order.study_uid == worklist[0].StudyInstanceUID
    assert window.order_box.isVisible()
    assert window.order_label.text() == "Order: Bailey · A123 —" and window.order_clear.text() == "Clear"
    assert panel.rows()[0]["Scheduled"].startswith("● ")  # the order in use is marked

    result = import_and_wait(qtbot, window, [photo(tmp_path / "a.png"), photo(tmp_path / "b.jpg")])
    assert no_questions["question"] == [] and no_questions["warning"] == []
    assert result.count("imported") == 2 and result.studies == [order.study_uid]
    with Library() as library:
        study = library.study(order.study_uid)
    p = study.patient
    assert (p.name, p.id, p.species, p.breed, p.owner) == ("Hendricks^Bailey", "VET-000123", "Canine",
                                                           "Golden Retriever", "Müller^Jürgen")
    assert study.accession == "A123" and study.description == "Dental photos"
    assert window.browser.current_uid() == order.study_uid

    import_and_wait(qtbot, window, [photo(tmp_path / "c.png", (10, 200, 10))])
    with Library() as library:
        assert library.study(order.study_uid).instance_count == 3  # the same study, each import a series

    window.order_clear.click()
    assert window.order is None and not window.order_box.isVisible()
    assert not panel.rows()[0]["Scheduled"].startswith("●")
    import_and_wait(qtbot, window, [photo(tmp_path / "d.png")])
    assert len(no_questions["question"]) == 1  # without an order, photos are asked about again


@pytest.fixture
def worklist_with_mpps():
    """A pynetdicom SCP with a one-order worklist (C-FIND) and MPPS (N-CREATE); what N-CREATE received."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ModalityPerformedProcedureStep, ModalityWorklistInformationFind

    from app.pacs.dimse import nodelay_handler

    order = order_dataset(*ORDERS[0])
    created = []

    def on_find(event):
        yield 0xFF00, order

    def on_create(event):
        created.append((event.request.AffectedSOPInstanceUID, event.attribute_list))
        return 0x0000, event.attribute_list

    ae = AE(ae_title="MWLSCP")
    ae.add_supported_context(ModalityWorklistInformationFind)
    ae.add_supported_context(ModalityPerformedProcedureStep)
    (port,) = free_ports(1)
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[
        (evt.EVT_C_FIND, on_find), (evt.EVT_N_CREATE, on_create), nodelay_handler()])
    PacsConfigs.load().add(PacsConfig(DIMSE, "Practice server", "MWLSCP", dimse=DimseOptions(
        "127.0.0.1", port, mwl=True, mpps=True, timeout_s=10)))
    yield order, created
    server.shutdown()


def test_the_procedure_step_starts_after_the_first_import(qtbot, worklist_with_mpps, window, tmp_path):
    order_ds, created = worklist_with_mpps
    panel = open_worklist(qtbot, window)
    panel.use_for_captures()
    import_and_wait(qtbot, window, [photo(tmp_path / "a.png")])
    qtbot.waitUntil(lambda: not window.busy and window.order.started, timeout=WAIT)
    ((mpps_uid, attributes),) = created
    assert attributes.PerformedProcedureStepStatus == "IN PROGRESS"
    step = attributes.ScheduledStepAttributesSequence[0]
    assert step.StudyInstanceUID == order_ds.StudyInstanceUID and step.AccessionNumber == "A123"
    assert "procedure for Bailey · A123 has started" in window.statusBar().currentMessage()
    import_and_wait(qtbot, window, [photo(tmp_path / "b.png")])
    qtbot.wait(200)
    assert len(created) == 1  # once per order


def test_a_refused_procedure_step_is_a_message_and_the_images_stay(qtbot, worklist, window, no_questions, tmp_path):
    from app.library import Library

    configs = PacsConfigs.load()
    config = configs.find("ORTHANC")
    config.dimse.mpps = True  # Orthanc has no MPPS: the N-CREATE is refused
    configs.update("ORTHANC", config)
    panel = open_worklist(qtbot, window)
    panel.use_for_captures()
    import_and_wait(qtbot, window, [photo(tmp_path / "a.png")])
    qtbot.waitUntil(lambda: bool(no_questions["warning"]), timeout=WAIT)
    (message,) = no_questions["warning"]
    assert message.startswith("Clinic PACS did not take the start of the procedure for Bailey · A123 (MPPS): ")
    assert message.endswith("The images are in the library.")
    assert not window.order.started  # the next import tries again
    with Library() as library:
        assert library.study(window.order.study_uid).instance_count == 1
