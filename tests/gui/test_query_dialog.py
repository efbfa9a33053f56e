"""Import from a PACS in the window: the Query / Retrieve dialog (search form, studies and their series,
retrieve with progress and cancel, the report, open) and "Compare with prior" (library first, then the PACS,
side by side). The PACS is a real Orthanc (tests/integration) or, to hold a retrieve half-way, a pynetdicom
Q/R SCP started by the test; the ground floor runs unmocked."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pydicom
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.dicom.patient import Patient
from app.pacs.config import DICOMWEB, DIMSE, DicomWebOptions, DimseOptions, PacsConfig, PacsConfigs
from app.ui.query_dialog import NO_IMPORTS, DateChoice, QueryDialog
from tests.conftest import SAMPLE
from tests.gui.conftest import copy_study
from tests.integration.conftest import empty_orthanc, orthanc  # noqa: F401 - fixtures
from tests.integration.orthanc import free_ports

pytestmark = [pytest.mark.gui, pytest.mark.timeout(120)]

CAT = Patient(name="Smith^Whiskers", id="VET-000777", species="Feline", breed="Maine Coon", owner="Smith^Joan")
WAIT = 20000


@pytest.fixture(autouse=True)
def secrets_in_a_file(monkeypatch):
    monkeypatch.setenv("LIGHTBOX_SECRETS", "file")


@pytest.fixture
def studies(tmp_path):
    """The sample study (Bailey, 2026-11-02, CT and DX), Bailey's prior (2025-06-01, DX) and a cat's study."""
    prior = copy_study(tmp_path / "prior", study_date="20250601", modalities=["DX"], accession="A2025-0107")
    cat = copy_study(tmp_path / "cat", study_date="20261001", modalities=["DX"], patient=CAT, accession="A2026-0031")
    current = pydicom.dcmread(next(SAMPLE.rglob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
    return {"current": current, "prior": prior, "cat": cat, "folders": [SAMPLE, tmp_path / "prior", tmp_path / "cat"]}


@pytest.fixture
def pacs(empty_orthanc, studies):
    """Orthanc holding the three studies; configurations for its classic DICOM and DICOMweb sides, and one
    that only receives (not offered for query)."""
    for folder in studies["folders"]:
        for path in sorted(Path(folder).rglob("*.dcm")):
            empty_orthanc.upload(path)
    configs = PacsConfigs.load()
    configs.add(PacsConfig(DIMSE, "Clinic PACS", "ORTHANC",
                           dimse=DimseOptions("127.0.0.1", empty_orthanc.dicom_port, timeout_s=10)))
    configs.add(PacsConfig(DICOMWEB, "Clinic web", "ORTHANCWEB", dicomweb=DicomWebOptions(
        empty_orthanc.dicomweb_url, auth="basic", user=empty_orthanc.user, timeout_s=10)),
        secret=empty_orthanc.password)
    configs.add(PacsConfig(DIMSE, "Send only", "SENDONLY",
                           dimse=DimseOptions("127.0.0.1", 11112, query_retrieve=False)))
    return empty_orthanc


@pytest.fixture
def dialog(qtbot):
    def make(**kwargs):
        dlg = QueryDialog(**kwargs)
        qtbot.addWidget(dlg)
        dlg.show()
        qtbot.waitExposed(dlg)
        return dlg
    return make


def search(qtbot, dlg, aet="ORTHANC", **fields):
    dlg.choose_config(aet)
    dlg.set_fields(**fields)
    qtbot.keyClick(dlg.fields["patient_name"], Qt.Key.Key_Return)  # Enter in the form searches
    assert dlg.search_job is not None
    qtbot.waitUntil(lambda: dlg.search_job is None, timeout=WAIT)


def rows(dlg) -> list[dict[str, str]]:
    return [{name: dlg.tree.topLevelItem(r).text(c) for c, name in enumerate(dlg.COLUMNS)}
            for r in range(dlg.tree.topLevelItemCount())]


def library_instances(study_uid: str) -> list[str]:
    from app.library import Library

    with Library() as library:
        return [i.sop_uid for i in library.instances(study_uid=study_uid)]


# -- searching ------------------------------------------------------------------------------------------

def test_only_configurations_that_allow_query_are_offered(pacs, dialog):
    dlg = dialog()
    assert [dlg.pacs.itemText(n) for n in range(dlg.pacs.count())] == ["Clinic PACS (ORTHANC)",
                                                                       "Clinic web (ORTHANCWEB)"]
    assert dlg.form.isEnabled() and not dlg.retrieve_button.isEnabled()
    assert "press Enter" in dlg.placeholder.text()


def test_without_a_configuration_that_allows_query_the_dialog_says_where_to_turn_it_on(dialog):
    dlg = dialog()
    assert not dlg.pacs.isEnabled() and dlg.pacs.currentText() == NO_IMPORTS
    assert not dlg.form.isEnabled()
    assert "PACS configurations" in dlg.status.text
    assert dlg.search() is None


@pytest.mark.parametrize("aet", ["ORTHANC", "ORTHANCWEB"])
def test_enter_searches_and_shows_one_row_per_study(qtbot, pacs, dialog, aet):
    dlg = dialog()
    search(qtbot, dlg, aet, patient_name="bailey")
    assert rows(dlg) == [
        {"Patient": "Bailey", "ID": "VET-000123", "Species": "Canine", "Breed": "Golden Retriever",
         "Owner": "Hendricks, Anna", "Date": "2026-11-02", "Modalities": "CT, DX", "Description": "Thorax",
         "Accession": "A2026-0042", "Series": "2", "Images": "25", "In library": ""},
        {"Patient": "Bailey", "ID": "VET-000123", "Species": "Canine", "Breed": "Golden Retriever",
         "Owner": "Hendricks, Anna", "Date": "2025-06-01", "Modalities": "DX", "Description": "Thorax",
         "Accession": "A2025-0107", "Series": "1", "Images": "1", "In library": ""}]
    assert dlg.status.text.startswith("2 studies on ")
    assert dlg.results.currentWidget() is dlg.tree
    assert dlg.retrieve_button.isEnabled()  # the first study is chosen


def test_the_filters_narrow_the_search(qtbot, pacs, dialog):
    dlg = dialog()
    search(qtbot, dlg, species="feline")
    assert [r["Patient"] for r in rows(dlg)] == ["Whiskers"]
    dlg.clear_form()
    dlg.dates.set_range(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    search(qtbot, dlg)
    assert [(r["Patient"], r["Date"]) for r in rows(dlg)] == [("Bailey", "2025-06-01")]
    dlg.clear_form()
    search(qtbot, dlg, modality="CT", owner="hendricks")
    assert [r["Date"] for r in rows(dlg)] == ["2026-11-02"]
    search(qtbot, dlg, patient_name="nobody-at-all")
    assert dlg.results.currentWidget() is dlg.placeholder
    assert dlg.placeholder.text() == "No studies on Clinic PACS match."


def test_quick_date_choices(qtbot):
    choice = DateChoice()
    today = dt.date(2026, 11, 22)
    assert choice.range(today) == ("", "")
    choice.set_choice("today")
    assert choice.range(today) == ("20261122", "20261122") and not choice.first.isVisibleTo(choice)
    choice.set_choice("7")
    assert choice.range(today) == ("20261116", "20261122")
    choice.set_choice(DateChoice.BETWEEN)
    assert choice.first.isVisibleTo(choice)


def test_a_pacs_that_cannot_be_reached_is_a_readable_line(qtbot, dialog):
    (port,) = free_ports(1)
    PacsConfigs.load().add(PacsConfig(DIMSE, "Gone", "GONE", dimse=DimseOptions("127.0.0.1", port, timeout_s=3)))
    dlg = dialog()
    search(qtbot, dlg, "GONE", patient_name="bailey")
    text = dlg.status.text
    assert text.startswith("✖") and f"127.0.0.1:{port}" in text
    assert "Traceback" not in text and "Error(" not in text
    assert dlg.status.cancel_button.isHidden()


def test_expanding_a_study_lists_its_series(qtbot, pacs, dialog):
    dlg = dialog()
    search(qtbot, dlg, patient_name="bailey")
    study = dlg.tree.topLevelItem(0)
    study.setExpanded(True)
    qtbot.waitUntil(lambda: not dlg.busy, timeout=WAIT)
    texts = [study.child(n).text(0) for n in range(study.childCount())]
    assert texts == ["Series 1 · DX · Thorax lateral · Chest · 1 image",
                     "Series 2 · CT · Thorax CT · Chest · 24 images"]


# -- retrieving -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("aet, method", [("ORTHANC", "C-GET"), ("ORTHANCWEB", "WADO-RS")])
def test_retrieve_a_study_then_open_it_from_the_window(qtbot, pacs, studies, aet, method):
    from app.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    dlg = win.show_query_retrieve()
    assert dlg.isVisible() and win.act_query.shortcut().toString() == "Ctrl+Shift+Q"
    search(qtbot, dlg, aet, patient_name="bailey")
    seen = []
    job = dlg.retrieve()
    job.on_progress(lambda j: seen.append(j.progress.message))
    qtbot.waitUntil(lambda: dlg.retrieve_job is None, timeout=WAIT)
    assert dlg.report.text.startswith("✔  Retrieved Bailey · 2026-11-02 · Thorax from Clinic")
    assert f"25 imported ({method})" in dlg.report.text
    assert any("instances" in m for m in seen)  # progress in instances
    assert sorted(library_instances(studies["current"])) == sorted(
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in SAMPLE.rglob("*.dcm"))
    assert rows(dlg)[0]["In library"] == "✓"
    assert win.browser.current_uid() == studies["current"]  # the library shows what arrived
    assert dlg.report.open_button.isVisible()
    dlg.report.open_button.click()
    qtbot.waitUntil(lambda: win.viewport.image is not None, timeout=WAIT)
    assert win.viewport.series.study_uid == studies["current"]


def test_retrieve_one_series(qtbot, pacs, studies, dialog):
    dlg = dialog()
    search(qtbot, dlg, patient_name="bailey")
    study = dlg.tree.topLevelItem(0)
    study.setExpanded(True)
    qtbot.waitUntil(lambda: not dlg.busy and study.child(0).data(0, Qt.ItemDataRole.UserRole) == "series",
                    timeout=WAIT)
    dlg.tree.clearSelection()
    study.child(0).setSelected(True)
    assert dlg.retrieve_button.text() == "Retrieve series"
    retrieved = []
    dlg.retrieved.connect(retrieved.append)
    dlg.retrieve_button.click()
    qtbot.waitUntil(lambda: dlg.retrieve_job is None, timeout=WAIT)
    assert "Bailey · 2026-11-02 · Thorax · Thorax lateral" in dlg.report.text and "1 imported" in dlg.report.text
    assert len(library_instances(studies["current"])) == 1
    assert [r.study_uids for r in retrieved[0]] == [[studies["current"]]]


def test_several_studies_are_retrieved_one_after_the_other(qtbot, pacs, studies, dialog):
    dlg = dialog()
    search(qtbot, dlg, modality="DX")
    dlg.tree.selectAll()
    assert dlg.retrieve_button.text() == "Retrieve 3 studies"
    dlg.retrieve_button.click()
    qtbot.waitUntil(lambda: dlg.retrieve_job is None, timeout=WAIT)
    assert dlg.report.text.startswith("✔  Retrieved 3 of 3 from Clinic PACS: 27 imported")
    assert len(library_instances(studies["cat"])) == 1 and len(library_instances(studies["prior"])) == 1


# -- a retrieve held half-way: cancel -------------------------------------------------------------------

@pytest.fixture
def slow_pacs():
    """A pynetdicom Q/R SCP with the sample study: C-FIND at any level; C-GET sends three instances, then
    waits for `gate` before the rest."""
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (
        CTImageStorage, DigitalXRayImageStorageForPresentation, PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelGet,
    )

    from app.pacs.dimse import nodelay_handler

    datasets = [pydicom.dcmread(p) for p in sorted(SAMPLE.rglob("*.dcm"))]
    gate, reached = threading.Event(), threading.Event()

    def on_find(event):
        request = event.identifier
        level = request.QueryRetrieveLevel
        if level == "IMAGE":
            found = datasets
        elif level == "SERIES":
            found = list({ds.SeriesInstanceUID: ds for ds in datasets}.values())
        else:
            found = datasets[:1]
        for src in found:
            out = Dataset()
            out.QueryRetrieveLevel = level
            for element in request:
                if element.keyword and element.keyword in src:
                    setattr(out, element.keyword, src[element.keyword].value)
                elif element.keyword:
                    setattr(out, element.keyword, element.value)
            if level == "STUDY":
                out.ModalitiesInStudy = sorted({ds.Modality for ds in datasets})
                out.NumberOfStudyRelatedInstances = len(datasets)
                out.SOPClassesInStudy = sorted({ds.SOPClassUID for ds in datasets})
            yield 0xFF00, out

    def on_get(event):
        yield len(datasets)
        for n, ds in enumerate(datasets):
            if n == 3:
                reached.set()
                gate.wait(20)
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, ds

    ae = AE(ae_title="SLOWPACS")
    for model in (StudyRootQueryRetrieveInformationModelFind, PatientRootQueryRetrieveInformationModelFind,
                  StudyRootQueryRetrieveInformationModelGet):
        ae.add_supported_context(model)
    for sop in (CTImageStorage, DigitalXRayImageStorageForPresentation):
        ae.add_supported_context(sop, [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless],
                                 scu_role=True, scp_role=True)
    (port,) = free_ports(1)
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[
        (evt.EVT_C_FIND, on_find), (evt.EVT_C_GET, on_get), nodelay_handler()])
    PacsConfigs.load().add(PacsConfig(DIMSE, "Slow PACS", "SLOWPACS", dimse=DimseOptions(
        "127.0.0.1", port, retrieve_method="get", timeout_s=10)))
    yield gate, reached
    gate.set()
    server.shutdown()


def test_cancel_a_retrieve_keeps_what_arrived(qtbot, slow_pacs, dialog, monkeypatch):
    gate, reached = slow_pacs
    dlg = dialog()
    search(qtbot, dlg, "SLOWPACS", patient_name="bailey")
    study_uid = dlg.studies[0].uid
    dlg.retrieve()
    assert dlg.status.cancel_button.isVisible() and not dlg.retrieve_button.isEnabled()
    qtbot.waitUntil(reached.is_set, timeout=WAIT)
    qtbot.waitUntil(lambda: "3 of 25 instances" in dlg.status.text, timeout=WAIT)
    assert dlg.status.bar.maximum() == 25 and dlg.status.bar.value() == 3

    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.No)
    dlg.reject()  # closing asks first; No keeps the retrieve going
    assert asked and dlg.isVisible() and dlg.retrieve_job is not None

    dlg.status.cancel_button.click()
    gate.set()
    qtbot.waitUntil(lambda: dlg.retrieve_job is None, timeout=WAIT)
    assert dlg.report.text.startswith("⚠  Retrieve cancelled; what arrived before stays in the library")
    assert not dlg.report.open_button.isVisible()
    assert 3 <= len(library_instances(study_uid)) < 25  # the PACS stops once it reads the C-CANCEL


# -- compare with prior ---------------------------------------------------------------------------------

@pytest.fixture
def viewer_on_current(qtbot, pacs, studies, tmp_path):
    """The window showing the sample study from the library, which also holds an older prior (2024-01-10)."""
    from app.library import import_paths
    from app.ui.main_window import MainWindow

    studies["old"] = copy_study(tmp_path / "old", study_date="20240110", modalities=["DX"], accession="A2024-0005")
    assert not import_paths([str(SAMPLE), str(tmp_path / "old")]).failed
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1400, 800)
    win.show()
    qtbot.waitExposed(win)
    assert win.open_study(studies["current"])
    qtbot.waitUntil(lambda: win.viewport.image is not None, timeout=WAIT)
    return win


def test_compare_with_a_prior_from_the_pacs_side_by_side(qtbot, viewer_on_current, studies):
    win = viewer_on_current
    assert win.act_compare.isEnabled() and not win.act_single.isEnabled()
    dlg = win.compare_with_prior()
    qtbot.waitUntil(lambda: dlg.search_job is None, timeout=WAIT)
    # Library first; on each PACS only what the library lacks (the open study and the 2024 one are left out).
    assert dlg.rows() == [("In the library", "2024-01-10", "Thorax"),
                          ("On Clinic PACS (ORTHANC)", "2025-06-01", "Thorax")]
    assert dlg.select(studies["prior"])
    assert dlg.compare_button.text() == "Retrieve and compare"
    dlg.compare_button.click()
    qtbot.waitUntil(lambda: win.comparing and win.grid.visible[1].image is not None, timeout=WAIT)
    left, right = win.grid.visible
    assert win.grid.layout_name == "1x2" and win.viewport is left
    assert left.series.study_uid == studies["current"] and right.series.study_uid == studies["prior"]
    assert right.series.modality == left.series.modality == "DX"
    assert right.caption == "Prior · 2025-06-01 · Thorax" and left.caption.startswith("Current · 2026-11-02")
    assert len(library_instances(studies["prior"])) == 1  # retrieved into the library first
    assert abs(left.width() - right.width()) < 40  # two halves

    # The same modality: synchronised, the prior takes the current one's window/level.
    assert win.grid.synchronised and win.act_sync.isChecked()
    assert right.current_window() == left.current_window()
    left.set_window(100, 50)
    assert right.current_window().width == 50
    win.act_sync.trigger()  # off: each side has its own window/level
    assert not win.grid.synchronised
    before = left.current_window()
    right.set_window(300, 80)
    assert left.current_window() == before and right.current_window().width == 80

    assert win.act_single.isEnabled()
    win.act_single.trigger()
    assert not win.comparing and win.grid.layout_name == "1x1" and not win.act_single.isEnabled()
    assert win.viewport.series.study_uid == studies["current"] and not win.viewport.caption
    assert {s.study_uid for s in win.series} == {studies["current"]}  # the prior left the series strip


def test_compare_with_a_prior_already_in_the_library(qtbot, viewer_on_current, studies):
    win = viewer_on_current
    dlg = win.compare_with_prior()
    assert dlg.compare_button.text() == "Compare"  # the library's newest is chosen at once
    dlg.compare_button.click()
    assert win.comparing and win.prior_uid == studies["old"]
    qtbot.waitUntil(lambda: win.grid.visible[1].image is not None, timeout=WAIT)
    assert win.grid.visible[1].series.study_uid == studies["old"]
    assert len(win.strip.series) == 3 and win.strip.count() == 5  # both studies' series, under two headings
    win.open_study(studies["old"])  # another study in the viewer: back to one viewport
    assert not win.comparing
