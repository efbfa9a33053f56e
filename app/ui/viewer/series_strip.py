"""The series of what is open, with thumbnails; choosing one shows it in the viewport."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem

from app.dicom.series import Series
from app.ui.images import to_qimage

THUMB = 96


class SeriesStrip(QListWidget):
    chosen = Signal(object)  # a Series

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setSpacing(2)
        self.setWordWrap(True)
        self.setMinimumWidth(THUMB + 40)
        self.itemSelectionChanged.connect(self._selected)
        self._series: list[Series] = []

    def set_series(self, series: list[Series]) -> None:
        self.blockSignals(True)
        self.clear()
        self._series = list(series)
        blank = QPixmap(THUMB, THUMB)
        blank.fill(QColor(20, 20, 20))
        for s in self._series:
            n = s.frame_count
            item = QListWidgetItem(QIcon(blank), f"{s.title}\n{n} image{'s' if n != 1 else ''}")
            item.setToolTip(f"{s.patient.name.replace('^', ' ')}\n{s.title}\n{s.uid}")
            item.setData(Qt.ItemDataRole.UserRole, s.uid)
            self.addItem(item)
        self.blockSignals(False)

    def set_thumbnail(self, uid: str, pixels) -> None:
        for row in range(self.count()):
            item = self.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == uid:
                pixmap = QPixmap.fromImage(to_qimage(pixels))
                icon = QIcon(pixmap)
                icon.addPixmap(pixmap, QIcon.Mode.Selected)  # no selection tint over the image
                item.setIcon(icon)

    def select(self, series: Series) -> None:
        for row, s in enumerate(self._series):
            if s.uid == series.uid:
                self.blockSignals(True)
                self.setCurrentRow(row)
                self.blockSignals(False)

    def _selected(self) -> None:
        row = self.currentRow()
        if 0 <= row < len(self._series):
            self.chosen.emit(self._series[row])
