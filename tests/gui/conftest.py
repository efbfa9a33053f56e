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
