"""An Encapsulated PDF shown in a viewport: with Qt's PDF module where this Qt has it, else a message and a
button that opens the PDF in the computer's own reader."""

from __future__ import annotations

import logging

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app import paths
from app.dicom.document import pdf_bytes
from app.errors import LightboxError

try:  # QtPdf comes with some Qt builds only (not with PySide6-Essentials)
    from PySide6.QtPdf import QPdfDocument
    from PySide6.QtPdfWidgets import QPdfView
except ImportError:  # pragma: no cover - depends on the Qt installed
    QPdfDocument = QPdfView = None

log = logging.getLogger(__name__)

NO_QTPDF = ("This copy of Lightbox cannot show PDF documents itself (Qt's PDF module is not installed). "
            "Open it in your PDF reader instead.")


def pdf_available() -> bool:
    return QPdfView is not None


class DocumentView(QWidget):
    """One document. `message` says why it is not shown here, if it is not."""

    pressed = Signal()  # a click anywhere on it (the viewport holding it becomes the active one)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAutoFillBackground(True)
        self.title = QLabel(self)
        self.title.setStyleSheet("font-weight: bold; padding: 4px 8px;")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        self.pages = QLabel(self)
        self.open_button = QPushButton("Open in PDF reader", self)
        self.open_button.setToolTip("Open this document in the computer's own PDF reader")
        self.open_button.clicked.connect(self.open_externally)
        self.notice = QLabel(self)
        self.notice.setWordWrap(True)
        self.notice.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.notice.setStyleSheet("color: #ffb380; padding: 24px;")
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 4, 0)
        bar.addWidget(self.title, 1)
        bar.addWidget(self.pages)
        bar.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        self.view = None
        self.document = None
        self._buffer = None
        if pdf_available():
            self.document = QPdfDocument(self)
            self.view = QPdfView(self)
            self.view.setDocument(self.document)
            self.view.setPageMode(QPdfView.PageMode.MultiPage)
            self.view.setZoomMode(QPdfView.ZoomMode.FitToWidth)
            self.view.viewport().installEventFilter(self)
            layout.addWidget(self.view, 1)
        layout.addWidget(self.notice, 1)
        self.data = b""
        self.name = "document"
        self.message = ""

    def show_pdf(self, path, title: str, name: str = "document") -> None:
        self.title.setText(title)
        self.name = name
        self.data, self.message = b"", ""
        try:
            self.data = pdf_bytes(path)
        except LightboxError as exc:
            self._say(f"This document cannot be shown: {getattr(exc, 'reason', exc)}", can_open=False)
            return
        if self.view is None:
            self._say(NO_QTPDF)
            return
        self._buffer = QBuffer(self)
        self._buffer.setData(QByteArray(self.data))
        self._buffer.open(QIODevice.OpenModeFlag.ReadOnly)
        self.document.load(self._buffer)
        if self.document.status() == QPdfDocument.Status.Error or self.document.pageCount() < 1:
            self._say("This PDF could not be read (it may be damaged).")
            return
        n = self.document.pageCount()
        self.pages.setText(f"{n} page{'s' if n != 1 else ''}")
        self.notice.hide()
        self.view.show()

    def _say(self, text: str, can_open: bool = True) -> None:
        self.message = text
        self.notice.setText(text)
        self.notice.show()
        self.pages.clear()
        self.open_button.setEnabled(can_open and bool(self.data))
        if self.view is not None:
            self.view.hide()

    @property
    def page_count(self) -> int:
        return self.document.pageCount() if self.document is not None and not self.message else 0

    def open_externally(self) -> bool:
        """Write the PDF to Lightbox's cache folder and hand it to the system's PDF reader."""
        if not self.data:
            return False
        folder = paths.cache_dir() / "documents"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)[:80] or "document"
        target = folder / f"{safe}.pdf"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            paths.write_atomically(target, self.data)
        except OSError as exc:
            log.warning("could not write %s: %s", target, exc)
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(target)))

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self.pressed.emit()
        super().mousePressEvent(event)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802
        if event.type() == event.Type.MouseButtonPress:
            self.pressed.emit()
        return False
