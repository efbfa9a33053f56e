"""Links arriving in the window: from another start of Lightbox, or as a macOS URL open event."""

from urllib.parse import quote

import numpy as np
import pytest
from PySide6.QtCore import QUrl
from PySide6.QtGui import QFileOpenEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from app.library import Library
from tests.unit.helpers import image_dataset, to_bytes


@pytest.fixture
def window(qtbot, monkeypatch):
    from app.ui.main_window import MainWindow

    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: warnings.append(args[2]))
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1000, 700)
    win.show()
    qtbot.waitExposed(win)
    QApplication.instance().installEventFilter(win)
    win.warnings = warnings
    yield win
    QApplication.instance().removeEventFilter(win)


def dx(**attrs) -> bytes:
    ds = image_dataset(np.arange(128 * 96, dtype=np.uint16).reshape(128, 96), modality="DX",
                       PatientName="Hendricks^Bailey", PatientSpeciesDescription="Canine", **attrs)
    return to_bytes(ds)


def link(url: str) -> str:
    return "lightbox://open-image-url/?location=" + quote(url, safe="")


def test_a_macos_url_open_event_opens_the_link(window, qtbot, https_server):
    data = dx()
    https_server.reply("/mac/dx.dcm", data)
    QApplication.sendEvent(QApplication.instance(), QFileOpenEvent(QUrl(link(https_server.url("/mac/dx.dcm")))))
    qtbot.waitUntil(lambda: window.last_link is not None and window.viewport.image is not None, timeout=15000)
    assert not window.on_library
    assert window.viewport.image.ds.PatientSpeciesDescription == "Canine"
    with Library() as library:
        (study,) = library.studies()
        assert study.uid == window.last_link.study_uids[0]


def test_links_handed_over_are_followed_in_order(window, qtbot, https_server):
    bodies = [dx(StudyDescription=f"Study {n}") for n in range(3)]
    for n, body in enumerate(bodies):
        https_server.reply(f"/order/{n}.dcm", body)
    shown = []
    window.viewport.changed.connect(lambda: window.viewport.image is not None and shown.append(
        str(window.viewport.image.ds.StudyDescription)))
    for n in range(3):
        window.handle_request(["open", link(https_server.url(f"/order/{n}.dcm"))], 0.0)
    qtbot.waitUntil(lambda: "Study 2" in shown, timeout=20000)
    firsts = list(dict.fromkeys(shown))
    assert firsts == ["Study 0", "Study 1", "Study 2"]


def test_an_expired_link_is_a_message_not_a_traceback(window, qtbot, https_server):
    https_server.reply("/expired.dcm", b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>',
                       status=403, content_type="application/xml")
    window.handle_request(["open", link(https_server.url("/expired.dcm") + "?X-Amz-Signature=SECRET")], 0.0)
    qtbot.waitUntil(lambda: bool(window.warnings), timeout=15000)
    assert window.warnings[0].startswith("This link has expired or you are not authorised to open it (HTTP 403)")
    assert "SECRET" not in window.warnings[0]
    with Library() as library:
        assert library.counts()["instances"] == 0


def test_a_warning_about_the_link_is_shown(window, qtbot, https_server):
    https_server.reply("/long.dcm", dx())
    long_link = link(https_server.url("/long.dcm") + "?pad=" + "x" * 2100)
    window.handle_request(["open", long_link], 0.0)
    qtbot.waitUntil(lambda: window.last_link is not None, timeout=15000)
    assert "Windows cuts links at 2,083" in window.statusBar().currentMessage()
