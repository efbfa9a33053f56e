"""The right half of a comparison: another study of the same patient in a viewport of its own (its own
window/level, zoom, position), with a choice of its series and a way back to a single viewport."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.dicom.series import Series
from app.ui.viewer.viewport import Viewport


class PriorPane(QWidget):
    closed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.study_uid = ""
        self.series: list[Series] = []
        self.title = QLabel(self)
        self.title.setStyleSheet("font-weight: bold;")
        self.series_choice = QComboBox(self)
        self.series_choice.setToolTip("The prior study's series shown here")
        self.series_choice.currentIndexChanged.connect(self._series_chosen)
        self.close_button = QPushButton("Close comparison", self)
        self.close_button.setToolTip("Back to a single viewport")
        self.close_button.clicked.connect(self.closed)
        self.viewport = Viewport(self)
        bar = QHBoxLayout()
        bar.setContentsMargins(6, 2, 2, 2)
        bar.addWidget(self.title)
        bar.addWidget(self.series_choice, 1)
        bar.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addWidget(self.viewport, 1)

    def show_study(self, study_uid: str, title: str, series: list[Series], like: Series | None = None) -> None:
        """Show a study's series: the first of the same modality as `like` (what the left side shows), else
        the first."""
        self.study_uid = study_uid
        self.series = list(series)
        self.title.setText(title)
        self.title.setToolTip(title)
        chosen = next((s for s in series if like is not None and s.modality == like.modality), series[0] if series
                      else None)
        self.series_choice.blockSignals(True)
        self.series_choice.clear()
        for s in self.series:
            n = s.frame_count
            self.series_choice.addItem(f"{s.title} ({n} image{'s' if n != 1 else ''})", s.uid)
        self.series_choice.setCurrentIndex(self.series.index(chosen) if chosen is not None else -1)
        self.series_choice.blockSignals(False)
        self.viewport.set_series(chosen)

    def show_series(self, series: Series) -> None:
        if series.uid not in [s.uid for s in self.series]:
            self.series.append(series)
            self.series_choice.addItem(series.title, series.uid)
        self.series_choice.setCurrentIndex([s.uid for s in self.series].index(series.uid))

    def _series_chosen(self, index: int) -> None:
        if 0 <= index < len(self.series):
            self.viewport.set_series(self.series[index])

    def clear(self) -> None:
        self.study_uid = ""
        self.series = []
        self.series_choice.clear()
        self.viewport.set_series(None)
