import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from tests.conftest import SAMPLE


@pytest.fixture
def window(qtbot):
    """The main window, shown, on the bundled sample study."""
    from app.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    job = win.open_paths([str(SAMPLE)])
    qtbot.waitUntil(lambda: job._finished.is_set() and win.viewport.image is not None, timeout=10000)
    return win


def drag(widget, start: QPointF, end: QPointF, button=Qt.MouseButton.LeftButton, steps: int = 5, modifiers=Qt.KeyboardModifier.NoModifier):
    """A real press-move-release sequence with the button held during the moves."""
    def send(kind, pos, buttons):
        event = QMouseEvent(kind, pos, widget.mapToGlobal(pos), button if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton,
                            buttons, modifiers)
        QApplication.sendEvent(widget, event)

    send(QEvent.Type.MouseButtonPress, start, button)
    for i in range(1, steps + 1):
        send(QEvent.Type.MouseMove, start + (end - start) * (i / steps), button)
    send(QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)


def wheel(widget, pos: QPointF, clicks: int, modifiers=Qt.KeyboardModifier.NoModifier):
    event = QWheelEvent(pos, widget.mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * clicks),
                        Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def copy_study(dest, *, source=SAMPLE, study_date=None, patient=None, modalities=None, accession=None):
    """Copies of a study's files under `dest` as a new study: new study, series and instance UIDs;
    optionally another date, patient (an app.dicom.patient.Patient), accession; only some modalities."""
    from pathlib import Path

    import pydicom
    from pydicom.uid import generate_uid

    from app.dicom.patient import write_patient

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid()
    series_uids: dict[str, str] = {}
    for n, path in enumerate(sorted(Path(source).rglob("*.dcm"))):
        ds = pydicom.dcmread(path)
        if modalities and ds.Modality not in modalities:
            continue
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uids.setdefault(ds.SeriesInstanceUID, generate_uid())
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if study_date:
            ds.StudyDate = ds.SeriesDate = study_date
        if accession is not None:
            ds.AccessionNumber = accession
        if patient is not None:
            write_patient(ds, patient)
        ds.save_as(dest / f"{n:04d}.dcm")
    return study_uid


@pytest.fixture
def sample_in_library():
    """The sample study imported into this test's library; its Study Instance UID."""
    from app.library import import_paths

    result = import_paths([str(SAMPLE)])
    assert result.count("imported") == 25 and not result.failed
    return result.studies[0]


@pytest.fixture
def library_window(qtbot, sample_in_library):
    """The main window on its library page, the sample study in the library."""
    from app.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    win.show_library()
    return win
