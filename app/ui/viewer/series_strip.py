"""The series of what is open, with thumbnails, grouped by study when several are open. Choosing one shows it
in the active viewport; dragging one drops it into any viewport."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QDrag, QFont, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem

from app.dicom.series import Series
from app.dicom.summary import format_date
from app.ui.images import to_qimage
from app.ui.viewer.viewport import SERIES_MIME, series_mime_data

THUMB = 96
UID_ROLE = Qt.ItemDataRole.UserRole
STUDY_ROLE = Qt.ItemDataRole.UserRole + 1


def study_heading(series: Series) -> str:
    return " · ".join(x for x in (format_date(series.study_date), series.study_description) if x) or "Study"


def _document_icon() -> QPixmap:
    pixmap = QPixmap(THUMB, THUMB)
    pixmap.fill(QColor(20, 20, 20))
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor(235, 235, 235))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawRect(26, 14, 44, 60)
    p.setPen(QColor(190, 40, 40))
    font = QFont()
    font.setBold(True)
    font.setPixelSize(15)
    p.setFont(font)
    p.drawText(26, 44, 44, 24, Qt.AlignmentFlag.AlignCenter, "PDF")
    p.end()
    return pixmap


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
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.itemSelectionChanged.connect(self._selected)
        self.itemClicked.connect(lambda _item: self._selected())  # again into another viewport
        self._series: dict[str, Series] = {}
        self._shown: set[str] = set()

    @property
    def series(self) -> list[Series]:
        return list(self._series.values())

    def set_series(self, series: list[Series]) -> None:
        self.blockSignals(True)
        self.clear()
        self._series = {s.uid: s for s in series}
        blank = QPixmap(THUMB, THUMB)
        blank.fill(QColor(20, 20, 20))
        document = None
        studies: dict[str, list[Series]] = {}
        for s in series:
            studies.setdefault(s.study_uid, []).append(s)
        for study_uid, members in studies.items():
            if len(studies) > 1:
                heading = QListWidgetItem(study_heading(members[0]))
                heading.setFlags(Qt.ItemFlag.NoItemFlags)
                heading.setData(STUDY_ROLE, study_uid)
                font = QFont(self.font())
                font.setBold(True)
                heading.setFont(font)
                heading.setForeground(QBrush(QColor(255, 214, 120)))
                heading.setToolTip(f"{members[0].patient.name.replace('^', ' ')}\n{study_heading(members[0])}")
                self.addItem(heading)
            for s in members:
                n = s.frame_count
                if s.is_document:
                    document = document or _document_icon()
                    icon, what = QIcon(document), f"{len(s.instances)} document{'s' if len(s.instances) != 1 else ''}"
                elif len(s.instances) == 1 and n > 1:
                    icon, what = QIcon(blank), f"{n} frames"
                else:
                    icon, what = QIcon(blank), f"{n} image{'s' if n != 1 else ''}"
                item = QListWidgetItem(icon, f"{s.title}\n{what}")
                item.setToolTip(f"{s.patient.name.replace('^', ' ')}\n{study_heading(s)}\n{s.title}\n"
                                "Click to show it in the active viewport, or drag it into any viewport")
                item.setData(UID_ROLE, s.uid)
                item.setData(STUDY_ROLE, s.study_uid)
                self.addItem(item)
        self.blockSignals(False)
        self.set_shown(self._shown)

    def item_of(self, uid: str) -> QListWidgetItem | None:
        for row in range(self.count()):
            item = self.item(row)
            if item.data(UID_ROLE) == uid:
                return item
        return None

    def set_thumbnail(self, uid: str, pixels) -> None:
        item = self.item_of(uid)
        if item is not None:
            pixmap = QPixmap.fromImage(to_qimage(pixels))
            icon = QIcon(pixmap)
            icon.addPixmap(pixmap, QIcon.Mode.Selected)  # no selection tint over the image
            item.setIcon(icon)

    def set_shown(self, uids) -> None:
        """Series shown in a viewport are in bold."""
        self._shown = set(uids)
        for row in range(self.count()):
            item = self.item(row)
            uid = item.data(UID_ROLE)
            if uid:
                font = QFont(self.font())
                font.setBold(uid in self._shown)
                item.setFont(font)

    def select(self, series: Series | None) -> None:
        self.blockSignals(True)
        item = self.item_of(series.uid) if series is not None else None
        if item is None:
            self.clearSelection()
        else:
            self.setCurrentItem(item)
        self.blockSignals(False)

    def _selected(self) -> None:
        item = self.currentItem()
        series = self._series.get(item.data(UID_ROLE)) if item is not None else None
        if series is not None:
            self.chosen.emit(series)

    # -- dragging into a viewport ------------------------------------------------------------------

    def mimeTypes(self):  # noqa: N802
        return [SERIES_MIME]

    def mimeData(self, items):  # noqa: N802
        items = [i for i in items if i.data(UID_ROLE)]
        if not items:
            return None
        return series_mime_data(items[0].data(UID_ROLE), items[0].data(STUDY_ROLE))

    def startDrag(self, actions) -> None:  # noqa: N802
        item = self.currentItem()
        if item is None or not item.data(UID_ROLE):
            return
        drag = QDrag(self)
        drag.setMimeData(self.mimeData([item]))
        pixmap = item.icon().pixmap(QSize(72, 72))
        if not pixmap.isNull():
            drag.setPixmap(pixmap)
            drag.setHotSpot(QPoint(pixmap.width() // 2, pixmap.height() // 2))
        drag.exec(Qt.DropAction.CopyAction)
