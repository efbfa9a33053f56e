"""The library browser and its place in the main window: table, search, series, priors, import, export, remove."""

import sys

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QApplication, QMessageBox

from app.dicom.patient import Patient
from tests.conftest import SAMPLE
from tests.gui.conftest import copy_study

pytestmark = pytest.mark.gui

BAILEY = Patient(name="Hendricks^Bailey", id="VET-000123", species="Canine", breed="Golden Retriever",
                 owner="Hendricks^Anna", sex="F", birth_date="20190315", neutered="ALTERED")


def rows(browser) -> list[dict]:
    m = browser.model
    return [{m.COLUMNS[c]: m.index(r, c).data() for c in range(m.columnCount())} for r in range(m.rowCount())]


def drop(widget, mime, pos=QPointF(30, 30)):
    event = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    widget.dropEvent(event)
    return event


def double_click(qtbot, widget, pos):
    """As a mouse does it: press, release, then the second press arrives as a double-click, release."""
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseDClick(widget, Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseRelease(widget, Qt.MouseButton.LeftButton, pos=pos)


def row_center(table, row):
    return table.visualRect(table.model().index(row, 0)).center()


def thumbnails_ready(browser) -> bool:
    from app.ui.browser import THUMB_ROLE

    items = [browser.series_list.item(i) for i in range(browser.series_list.count())]
    return bool(items) and all(i.data(THUMB_ROLE) == "ready" for i in items)


def icon_pixels(item) -> np.ndarray:
    image = item.icon().pixmap(128, 128).toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    arr = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.sizeInBytes())
    return arr.reshape(image.height(), image.bytesPerLine())[:, : image.width()]


def import_and_wait(qtbot, window, paths):
    job = window.import_into_library([str(p) for p in paths])
    qtbot.waitUntil(lambda: job._finished.is_set() and not window.busy, timeout=20000)
    return job


# -- the table --------------------------------------------------------------------------------------

def test_the_table_lists_the_study_with_species_breed_and_owner(library_window):
    b = library_window.browser
    assert library_window.on_library and b.isVisible() and b.table.isVisible()
    assert rows(b) == [{
        "Patient": "Bailey", "ID": "VET-000123", "Species": "Canine", "Breed": "Golden Retriever",
        "Owner": "Hendricks, Anna", "Study date": "2026-11-02", "Modalities": "CT, DX", "Description": "Thorax",
        "Accession": "A2026-0042", "Images": "25"}]
    assert "Library (1 study)" in library_window.windowTitle()
    assert b.count_label.text() == "1 study"
    # the first study is chosen: its patient at a glance
    details = b.details.text()
    for words in ("Bailey", "Canine", "Golden Retriever", "Female, spayed", "Hendricks, Anna", "VET-000123"):
        assert words in details
    # viewer-only shortcuts are off on the library page
    assert not library_window.act_fit.isEnabled() and not library_window.act_tool["window"].isEnabled()
    assert library_window.act_export.isEnabled() and library_window.act_remove.isEnabled()


def test_typing_in_the_search_filters_after_a_short_pause(library_window, qtbot, tmp_path):
    copy_study(tmp_path / "cat", modalities={"DX"}, patient=Patient(
        name="Okafor^Luna", id="VET-000777", species="Feline", breed="Maine Coon", owner="Okafor^Chidi"))
    import_and_wait(qtbot, library_window, [tmp_path / "cat"])
    b = library_window.browser
    assert b.model.rowCount() == 2
    qtbot.keyClicks(b.search, "golden")
    assert b.model.rowCount() == 2  # debounced: not yet
    qtbot.waitUntil(lambda: b.model.rowCount() == 1, timeout=2000)
    assert rows(b)[0]["Patient"] == "Bailey"
    assert b.count_label.text() == "1 of 2 studies"
    b.search.clear()
    qtbot.keyClicks(b.search, "siamese")
    qtbot.waitUntil(lambda: b.model.rowCount() == 0, timeout=2000)
    assert b.table_stack.currentWidget() is b.placeholder and "No studies match" in b.placeholder.text()
    for query, animals in (("okafor", ["Luna"]), ("maine", ["Luna"]), ("hendricks anna", ["Bailey"]),
                           ("VET-000123", ["Bailey"]), ("feline luna", ["Luna"]), ("A2026-0042", ["Bailey", "Luna"]),
                           ("thorax", ["Bailey", "Luna"])):
        b.search.setText(query)
        qtbot.waitUntil(lambda: sorted(r["Patient"] for r in rows(b)) == animals, timeout=2000)


def test_columns_sort(library_window, qtbot, tmp_path):
    copy_study(tmp_path / "cat", modalities={"DX"}, study_date="20240101", patient=Patient(
        name="Okafor^Luna", id="VET-000777", species="Feline", breed="Maine Coon", owner="Okafor^Chidi"))
    import_and_wait(qtbot, library_window, [tmp_path / "cat"])
    b = library_window.browser
    assert [r["Patient"] for r in rows(b)] == ["Bailey", "Luna"]  # newest first
    assert b.current_study().patient.animal_name == "Luna"  # the import's study is chosen
    b.table.sortByColumn(b.model.SPECIES, Qt.SortOrder.DescendingOrder)
    assert [r["Species"] for r in rows(b)] == ["Feline", "Canine"]
    b.table.sortByColumn(b.model.IMAGES, Qt.SortOrder.AscendingOrder)
    assert [r["Images"] for r in rows(b)] == ["1", "25"]
    assert b.current_study().patient.animal_name == "Luna"  # the selection follows its row
    assert b.selected_uids() == [b.model.study(0).uid]


def test_an_empty_library_says_how_to_import(qtbot):
    from app.ui.browser import EMPTY_LIBRARY
    from app.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    win.show_library()
    b = win.browser
    assert b.model.rowCount() == 0
    assert b.table_stack.currentWidget() is b.placeholder and b.placeholder.text() == EMPTY_LIBRARY
    assert not b.lower.isVisible()
    assert not win.act_export.isEnabled()


# -- series, thumbnails, priors ------------------------------------------------------------------------

def test_the_chosen_study_shows_its_series_with_thumbnails(library_window, qtbot):
    from app import paths
    from app.ui.browser import STUDY_UID_ROLE, UID_ROLE

    b = library_window.browser
    assert b.series_list.count() == 2
    qtbot.waitUntil(lambda: thumbnails_ready(b), timeout=15000)
    texts = [b.series_list.item(i).text() for i in range(2)]
    assert texts[0].startswith("DX #1") and "1 image" in texts[0]
    assert texts[1].startswith("CT") and "24 images" in texts[1]
    for i in range(2):
        item = b.series_list.item(i)
        assert item.data(STUDY_UID_ROLE) == b.current_uid()
        assert icon_pixels(item).std() > 10  # a picture, not the blank placeholder
        assert (paths.cache_dir() / "thumbnails" / f"{item.data(UID_ROLE)}.png").is_file()
    # a second browser (the next start) takes them from the PNG cache without rendering
    from app.ui.browser import ThumbnailCache

    import app.ui.browser as browser_module
    cache = ThumbnailCache()
    rendered = []
    real = browser_module.thumbnail
    browser_module.thumbnail = lambda *a, **k: rendered.append(a) or real(*a, **k)
    try:
        series = b.library.viewer_series(b.current_uid())
        assert not cache.get(series[1]).isNull()
    finally:
        browser_module.thumbnail = real
    assert rendered == []


def test_double_click_opens_the_study_in_the_viewer(library_window, qtbot, sample_in_library):
    b = library_window.browser
    double_click(qtbot, b.table.viewport(), row_center(b.table, 0))
    qtbot.waitUntil(lambda: library_window.viewport.image is not None, timeout=10000)
    assert not library_window.on_library
    assert library_window.pages.currentWidget() is library_window.viewer_page
    assert [s.modality for s in library_window.series] == ["DX", "CT"]
    assert library_window.viewport.series.study_uid == sample_in_library
    assert library_window.viewport.series.modality == "DX"
    assert "Bailey" in library_window.windowTitle()
    assert library_window.act_fit.isEnabled()
    # and back: Ctrl+L
    qtbot.keyClick(library_window, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    assert library_window.on_library


def test_enter_opens_the_study_and_double_clicking_a_series_opens_it_there(library_window, qtbot):
    b = library_window.browser
    b.table.setFocus()
    qtbot.keyClick(b.table, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: library_window.viewport.image is not None, timeout=10000)
    assert library_window.viewport.series.modality == "DX"
    library_window.show_library()
    ct = b.series_list.item(1)
    rect = b.series_list.visualItemRect(ct)
    double_click(qtbot, b.series_list.viewport(), rect.center())
    qtbot.waitUntil(lambda: not library_window.on_library and library_window.viewport.series.modality == "CT",
                    timeout=10000)
    assert library_window.viewport.count == 24


def test_the_same_patients_other_studies_are_listed_as_priors(library_window, qtbot, tmp_path, sample_in_library):
    prior = copy_study(tmp_path / "prior", modalities={"DX"}, study_date="20250610", patient=BAILEY,
                       accession="A2025-0007")
    import_and_wait(qtbot, library_window, [tmp_path / "prior"])
    b = library_window.browser
    assert b.model.rowCount() == 2
    assert b.select_study(sample_in_library)
    assert b.priors.count() == 1
    item = b.priors.item(0)
    assert item.text().startswith("2025-06-10 · DX")
    assert "Other studies of Bailey (1)" == b.priors_label.text()
    # click: the prior becomes the chosen study (even when the search hid it)
    b.search.setText("A2026")
    qtbot.waitUntil(lambda: b.model.rowCount() == 1, timeout=2000)
    assert b.current_uid() == sample_in_library
    qtbot.mouseClick(b.priors.viewport(), Qt.MouseButton.LeftButton, pos=b.priors.visualItemRect(item).center())
    qtbot.waitUntil(lambda: b.current_uid() == prior, timeout=3000)
    assert b.selected_uids() == [prior]
    assert b.search.text() == ""
    assert b.priors.item(0).data(Qt.ItemDataRole.UserRole) == sample_in_library  # and the other way round
    # double-click: opens it (the click that starts it does not choose it first)
    item = b.priors.item(0)
    double_click(qtbot, b.priors.viewport(), b.priors.visualItemRect(item).center())
    qtbot.waitUntil(lambda: library_window.viewport.image is not None, timeout=10000)
    assert library_window.viewport.series.study_uid == sample_in_library
    qtbot.wait(QApplication.doubleClickInterval() + 200)
    assert b.current_uid() == prior


# -- drag and drop ------------------------------------------------------------------------------------

def test_a_series_dragged_onto_the_viewport_is_shown_there(library_window, qtbot, tmp_path, sample_in_library):
    from app.ui.viewer.viewport import SERIES_MIME, dropped_series

    prior = copy_study(tmp_path / "prior", modalities={"DX"}, study_date="20250610", patient=BAILEY)
    import_and_wait(qtbot, library_window, [tmp_path / "prior"])
    b = library_window.browser
    b.select_study(sample_in_library)
    assert library_window.open_study(sample_in_library)
    v = library_window.viewport
    assert v.series.modality == "DX"

    # a series of the open study
    library_window.show_library()
    ct_item = b.series_list.item(1)
    mime = b.series_list.mimeData([ct_item])
    assert mime.hasFormat(SERIES_MIME) and b.series_list.mimeTypes() == [SERIES_MIME]
    assert dropped_series(mime) == (ct_item.data(Qt.ItemDataRole.UserRole), sample_in_library)
    # over the Viewer button the page turns, then it is dropped on the image
    enter = QDragEnterEvent(QPointF(library_window._viewer_button.rect().center()), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(library_window._viewer_button, enter)
    assert enter.isAccepted() and not library_window.on_library
    enter = QDragEnterEvent(QPointF(v.rect().center()), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(v, enter)
    assert enter.isAccepted()
    event = drop(v, mime)
    assert event.isAccepted() and event.dropAction() == Qt.DropAction.CopyAction
    assert v.series.modality == "CT" and v.image is not None
    assert b.series_list.count() == 2  # copied, not moved

    # a series of the prior: added to what is open
    b.select_study(prior)
    prior_dx = b.series_list.item(0)
    drop(v, b.series_list.mimeData([prior_dx]))
    assert v.series.study_uid == prior and v.series.modality == "DX"
    assert len(library_window.series) == 3 and len(library_window.strip.series) == 3
    assert library_window.strip.count() == 5  # grouped by study: a heading over each study's series


def test_files_dragged_onto_the_viewport_are_left_to_the_window(library_window):
    from pydicom.data import get_testdata_file

    from PySide6.QtCore import QMimeData

    library_window.show_viewer()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(get_testdata_file("MR_small.dcm"))])
    v = library_window.viewport
    enter = QDragEnterEvent(QPointF(v.rect().center()), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    enter.ignore()
    QApplication.sendEvent(v, enter)
    assert enter.isAccepted()  # by the window, which opens them


def test_files_dropped_on_the_library_are_imported_and_on_the_viewer_opened(library_window, qtbot, tmp_path):
    from PySide6.QtCore import QMimeData

    from app.library import Library

    uid = copy_study(tmp_path / "cat", modalities={"DX"}, patient=Patient(name="Okafor^Luna", species="Feline"))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "cat"))])
    drop(library_window, mime)
    qtbot.waitUntil(lambda: library_window.browser.model.rowCount() == 2, timeout=20000)
    assert library_window.browser.current_uid() == uid  # the import's study is chosen

    other = copy_study(tmp_path / "dog", modalities={"DX"})
    library_window.show_viewer()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "dog"))])
    drop(library_window, mime)
    qtbot.waitUntil(lambda: library_window.viewport.series is not None
                    and library_window.viewport.series.study_uid == other, timeout=10000)
    with Library() as library:
        assert library.counts()["studies"] == 2  # opened, not imported


# -- import ------------------------------------------------------------------------------------------

def test_importing_runs_a_job_and_refreshes_the_library(qtbot):
    from app.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    win.show_library()
    assert win.browser.model.rowCount() == 0
    progress = []
    job = win.import_into_library([str(SAMPLE)])
    job.on_progress(lambda j: progress.append(j.progress.total))
    assert win.progress.isVisible() and win.cancel_button.isVisible()
    qtbot.waitUntil(lambda: job._finished.is_set() and not win.busy, timeout=20000)
    assert not win.progress.isVisible() and not win.cancel_button.isVisible()
    assert rows(win.browser)[0]["Patient"] == "Bailey"
    assert "25 imported" in win.statusBar().currentMessage()
    assert win.dialogs == []  # nothing failed, no conflict
    # again: all already there
    import_and_wait(qtbot, win, [SAMPLE])
    assert "25 already in the library" in win.statusBar().currentMessage()
    assert win.browser.model.rowCount() == 1


def test_an_import_can_be_cancelled(qtbot, tmp_path):
    from app.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    job = win.import_into_library([str(SAMPLE)])
    win.cancel_button.click()
    qtbot.waitUntil(lambda: job._finished.is_set() and not win.busy, timeout=20000)
    assert job.state.value in ("cancelled", "done")  # it may have finished first
    if job.state.value == "cancelled":
        assert "cancelled" in win.statusBar().currentMessage()


def test_a_conflict_shows_both_versions(library_window, qtbot, tmp_path):
    from app.ui.import_export import ConflictDialog

    copy_study(tmp_path / "other", modalities={"DX"}, patient=Patient(
        name="Smith^Whiskers", id="VET-000123", species="Feline", breed="Siamese", owner="Smith^John"))
    import_and_wait(qtbot, library_window, [tmp_path / "other"])
    qtbot.waitUntil(lambda: any(isinstance(d, ConflictDialog) for d in library_window.dialogs), timeout=5000)
    dialog = next(d for d in library_window.dialogs if isinstance(d, ConflictDialog))
    assert dialog.isVisible()
    assert "VET-000123" in dialog.conflicts[0].message
    assert dialog.versions(0) == [("Name", "Hendricks Bailey", "Smith Whiskers"), ("ID", "VET-000123", "VET-000123"),
                                  ("Species", "Canine", "Feline"), ("Breed", "Golden Retriever", "Siamese"),
                                  ("Owner", "Hendricks, Anna", "Smith, John")]
    table = dialog.tables[0]
    assert table.item(2, 0).font().bold() and not table.item(1, 0).font().bold()  # differences stand out
    assert "1 patient conflict" in library_window.statusBar().currentMessage()
    assert library_window.browser.model.rowCount() == 2  # both kept, apart
    dialog.accept()
    assert library_window.dialogs == []


def test_failed_files_are_listed_with_their_reasons(library_window, qtbot, tmp_path):
    from app.ui.import_export import FailedFilesDialog

    folder = tmp_path / "mixed"
    copy_study(folder, modalities={"DX"})
    (folder / "notes.txt").write_text("not an image")
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    library_window.browser.table.selectionModel().clearSelection()  # no study chosen: photos cannot go anywhere
    import_and_wait(qtbot, library_window, [folder])
    qtbot.waitUntil(lambda: bool(library_window.dialogs), timeout=5000)
    dialog = library_window.dialogs[0]
    assert isinstance(dialog, FailedFilesDialog)
    files = {dialog.table.item(r, 0).text(): dialog.table.item(r, 1).text() for r in range(dialog.table.rowCount())}
    assert set(files) == {"notes.txt", "photo.png"}
    assert "PNG" in files["photo.png"] and "study" in files["photo.png"]
    assert files["notes.txt"]
    assert "1 imported" in library_window.statusBar().currentMessage()


def test_photos_go_into_the_chosen_study_when_the_user_agrees(library_window, qtbot, tmp_path, monkeypatch,
                                                             sample_in_library):
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes)
    picture = QImage(80, 60, QImage.Format.Format_RGB888)
    picture.fill(Qt.GlobalColor.darkCyan)
    assert picture.save(str(tmp_path / "wound.png"))
    assert library_window.browser.current_uid() == sample_in_library
    import_and_wait(qtbot, library_window, [tmp_path / "wound.png"])
    assert asked and "Bailey" in asked[0] and "1 photo" in asked[0]
    qtbot.waitUntil(lambda: not library_window.busy and library_window.browser.series_list.count() == 3,
                    timeout=20000)
    assert library_window.dialogs == []
    study = library_window.browser.library.study(sample_in_library)
    assert study.series_count == 3 and study.instance_count == 26


# -- export and remove ---------------------------------------------------------------------------------

def test_export_runs_the_library_export_as_a_job(library_window, qtbot, tmp_path, sample_in_library):
    import zipfile

    from app.ui.import_export import ExportOptions

    job = library_window.export_studies([sample_in_library], ExportOptions("zip", tmp_path / "bailey.zip", True))
    assert library_window.cancel_button.isVisible()
    qtbot.waitUntil(lambda: job._finished.is_set() and not library_window.busy, timeout=30000)
    assert job.error is None
    names = zipfile.ZipFile(tmp_path / "bailey.zip").namelist()
    assert "DICOMDIR" in names and len(names) == 26
    assert "anonymised" in library_window.statusBar().currentMessage()

    # several studies: one folder each, inside the folder chosen
    prior = copy_study(tmp_path / "prior", modalities={"DX"}, study_date="20250610", patient=BAILEY)
    import_and_wait(qtbot, library_window, [tmp_path / "prior"])
    job = library_window.export_studies([sample_in_library, prior], ExportOptions("png", tmp_path / "pictures"))
    qtbot.waitUntil(lambda: job._finished.is_set() and not library_window.busy, timeout=30000)
    assert job.error is None
    folders = sorted(p.name for p in (tmp_path / "pictures").iterdir())
    assert folders == ["Bailey_2025-06-10_Thorax_02", "Bailey_2026-11-02_Thorax_01"]
    assert sum(1 for _ in (tmp_path / "pictures").rglob("*.png")) == 26
    assert "Exported 2 studies" in library_window.statusBar().currentMessage()


def test_an_export_error_is_shown_in_a_dialog(library_window, qtbot, tmp_path, monkeypatch, sample_in_library):
    from app.ui.import_export import ExportOptions

    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[2]))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "DICOMDIR").write_text("someone else's")
    job = library_window.export_studies([sample_in_library], ExportOptions("dicomdir", tmp_path / "out"))
    qtbot.waitUntil(lambda: bool(shown), timeout=10000)
    assert "did not finish" in shown[0] and "already exists" in shown[0]
    assert job.error is not None

    # the export module missing (an older build): a message, no crash
    monkeypatch.setitem(sys.modules, "app.library.export", None)
    assert library_window.export_studies([sample_in_library], ExportOptions("dicom", tmp_path / "x")) is None
    assert "not available" in shown[-1]


def test_the_export_dialog(library_window, sample_in_library, tmp_path):
    from app.ui.import_export import ExportDialog

    study = library_window.browser.library.study(sample_in_library)
    dialog = ExportDialog([study], library_window)
    assert dialog.anonymize.isEnabled()
    assert dialog.destination.text().endswith("Bailey_2026-11-02_Thorax")
    dialog.set_format("zip")
    dialog.anonymize.setChecked(True)
    assert "Bailey" not in dialog.destination.text()  # an anonymised export is not named after the patient
    options = dialog.options()
    assert (options.format, options.anonymize) == ("zip", True)
    dialog.set_format("png")
    assert not dialog.anonymize.isEnabled() and not dialog.options().anonymize
    dialog.destination.clear()
    assert not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
    dialog.destination.setText(str(tmp_path))
    assert dialog.options().destination == tmp_path
    several = ExportDialog([study, study], library_window)
    several.set_format("zip")
    several.anonymize.setChecked(True)
    options = several.options()
    assert options.target(study, 1, 2) == options.destination / "study_02.zip"
    assert options.target(study, 0, 1) == options.destination


def test_removing_a_study_after_confirming_empties_the_table(library_window, qtbot, monkeypatch, sample_in_library):
    from app.library import Library
    from app.ui.browser import EMPTY_LIBRARY

    library_window.open_study(sample_in_library)
    library_window.show_library()
    answers = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Yes]
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or answers.pop(0))
    menu = library_window.browser.study_menu()
    remove = next(a for a in menu.actions() if a.text().startswith("Remove"))
    remove.trigger()  # cancelled
    assert "Bailey" in asked[0]
    assert library_window.browser.model.rowCount() == 1
    remove.trigger()
    qtbot.waitUntil(lambda: library_window.browser.model.rowCount() == 0 and not library_window.busy, timeout=10000)
    b = library_window.browser
    assert b.table_stack.currentWidget() is b.placeholder and b.placeholder.text() == EMPTY_LIBRARY
    with Library() as library:
        assert library.counts()["instances"] == 0
        assert not any(library.store.files())
    assert library_window.series == [] and library_window.viewport.series is None  # no longer shown


# -- the window ----------------------------------------------------------------------------------------

def test_startup_shows_the_library_when_it_holds_studies(qtbot, sample_in_library, lightbox_home):
    from app.ui.main_window import MainWindow, start

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    start(win, [])
    assert win.on_library and win.browser.model.rowCount() == 1
    assert not (lightbox_home / "config" / "first-run-done").exists()  # the sample was not opened
    start(win, [str(SAMPLE / "dx")])  # paths: shown in the viewer, not imported
    qtbot.waitUntil(lambda: not win.on_library and win.viewport.image is not None, timeout=10000)


def test_startup_on_an_empty_library_opens_the_sample_the_first_time(qtbot, lightbox_home):
    from app.ui.main_window import MainWindow, start

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    start(win, [])
    qtbot.waitUntil(lambda: win.viewport.image is not None, timeout=10000)
    assert not win.on_library
    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    start(second, [])
    assert second.on_library  # later: the empty library, which says how to import


def test_no_two_actions_share_a_shortcut(library_window):
    keys = [a.shortcut().toString() for a in library_window.actions() if not a.shortcut().isEmpty()]
    assert len(keys) == len(set(keys)), sorted(keys)
    assert {"Ctrl+L", "Ctrl+Shift+V", "Ctrl+I", "Ctrl+Shift+I", "Ctrl+E"} <= set(keys)
