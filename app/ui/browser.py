"""The library browser: patients and studies in a searchable table, the chosen study's series with
thumbnails, and the same patient's other studies (priors).

The browser reads the library through its own connection on the GUI thread (queries are quick);
thumbnails are rendered off the GUI thread in a job and kept in memory and as PNG files in the cache.
What the user asks for (open, export, remove, send to a PACS) leaves the browser as signals: the main
window acts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import threading
from pathlib import Path

from PySide6.QtCore import (
    QAbstractTableModel, QEvent, QItemSelectionModel, QModelIndex, QPoint, QSize, Qt, QTimer, Signal, Slot,
)
from PySide6.QtGui import QColor, QDrag, QFont, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView, QApplication, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QListWidget, QListWidgetItem, QMenu,
    QSplitter, QStackedWidget, QTableView, QVBoxLayout, QWidget,
)

from app import paths
from app.dicom.patient import Patient
from app.dicom.series import Series, thumbnail
from app.dicom.summary import format_date
from app.errors import LightboxError
from app.jobs import Job
from app.library import Library, StudyRecord, fold
from app.ui.images import save_image, to_qimage
from app.ui.jobs import JobRelay
from app.ui.viewer.viewport import series_mime_data

log = logging.getLogger(__name__)

SEARCH_DELAY_MS = 150
THUMB = 160  # pixels, the longer side of a series thumbnail
UID_ROLE = Qt.ItemDataRole.UserRole
STUDY_UID_ROLE = Qt.ItemDataRole.UserRole + 1
THUMB_ROLE = Qt.ItemDataRole.UserRole + 2  # "ready" | "failed" | None (still rendering)
EMPTY_LIBRARY = "The library is empty — import files with File ▸ Import or drop them here"


# -- words for people -----------------------------------------------------------------------------

def person(name: str) -> str:
    """A DICOM person name as people write it: 'Hendricks^Anna' -> 'Hendricks, Anna'."""
    parts = [p.strip() for p in (name or "").split("^")]
    family = parts[0]
    given = parts[1] if len(parts) > 1 else ""
    if family and given:
        return f"{family}, {given}"
    return family or given


def sex_text(patient: Patient) -> str:
    """'Female, spayed', 'Male, intact', 'Male' ..."""
    sex = patient.sex.strip().upper()
    words = [{"M": "Male", "F": "Female", "O": "Other"}.get(sex, patient.sex.strip())]
    neutered = patient.neutered.strip().upper()
    if neutered == "ALTERED":
        words.append({"M": "neutered", "F": "spayed"}.get(sex, "neutered"))
    elif neutered == "UNALTERED":
        words.append("intact")
    return ", ".join(w for w in words if w)


def _date(value: str) -> dt.date | None:
    try:
        return dt.datetime.strptime((value or "").strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None


def age_text(birth_date: str, on: str = "") -> str:
    """The animal's age at a date (the study's), or today: '7 years', '5 months', '12 days'."""
    born, day = _date(birth_date), _date(on) or dt.date.today()
    if born is None or day < born:
        return ""
    months = (day.year - born.year) * 12 + day.month - born.month - (day.day < born.day)
    if months >= 24:
        return f"{months // 12} years"
    if months >= 1:
        return f"{months} month{'s' if months != 1 else ''}"
    days = (day - born).days
    return f"{days} day{'s' if days != 1 else ''}"


def study_line(study: StudyRecord) -> str:
    """One line about a study: '2026-11-02 · CT, DX · Thorax · 25 images'."""
    n = study.instance_count
    return " · ".join(x for x in (format_date(study.date) or "no date", modalities(study.modalities),
                                  study.description, f"{n} image{'s' if n != 1 else ''}") if x)


def modalities(value: str) -> str:
    return ", ".join(m for m in value.split("\\") if m)


def patient_tooltip(p: Patient) -> str:
    rows = [("Name", p.name.replace("^", " ")), ("ID", p.id), ("Species", p.species), ("Breed", p.breed),
            ("Sex", sex_text(p)), ("Born", format_date(p.birth_date)), ("Owner", person(p.owner)),
            ("Practice / farm", p.owner_organization), ("Microchip", p.microchip)]
    return "\n".join(f"{k}: {v}" for k, v in rows if v)


# -- thumbnails -----------------------------------------------------------------------------------

class ThumbnailCache:
    """Series thumbnails, kept in memory and as PNG files under the cache folder (thumbnails/<uid>.png).

    `get` may run on any thread: it loads the PNG, or renders the series and writes the PNG.
    """

    def __init__(self, size: int = THUMB):
        self.size = size
        self._memory: dict[str, QImage] = {}
        self._lock = threading.Lock()

    def folder(self) -> Path:
        return paths.cache_dir() / "thumbnails"

    def path(self, uid: str) -> Path:
        name = uid if re.fullmatch(r"[0-9.]{1,64}", uid) else hashlib.sha1(uid.encode()).hexdigest()
        return self.folder() / f"{name}.png"

    def cached(self, uid: str) -> QImage | None:
        with self._lock:
            return self._memory.get(uid)

    def get(self, series: Series) -> QImage:
        found = self.cached(series.uid)
        if found is not None:
            return found
        path = self.path(series.uid)
        image = QImage(str(path)) if path.is_file() else QImage()
        if image.isNull():
            pixels = thumbnail(series, self.size)  # LightboxError when the series cannot be shown
            image = to_qimage(pixels)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                save_image(pixels, path)
            except (LightboxError, OSError) as exc:
                log.info("thumbnail of %s not cached: %s", series.uid, exc)
        with self._lock:
            self._memory[series.uid] = image
        return image


def _placeholder(text: str = "", size: int = THUMB) -> QPixmap:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(22, 22, 24))
    if text:
        painter = QPainter(pixmap)
        painter.setPen(QColor(150, 150, 150))
        painter.drawText(pixmap.rect(), int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), text)
        painter.end()
    return pixmap


def _icon(pixmap: QPixmap) -> QIcon:
    icon = QIcon(pixmap)
    icon.addPixmap(pixmap, QIcon.Mode.Selected)  # no selection tint over the image
    return icon


# -- the studies table ----------------------------------------------------------------------------

class StudyTableModel(QAbstractTableModel):
    """Studies with their patients, one row each; sortable by any column."""

    COLUMNS = ("Patient", "ID", "Species", "Breed", "Owner", "Study date", "Modalities", "Description", "Accession",
               "Images")
    PATIENT, ID, SPECIES, BREED, OWNER, DATE, MODALITIES, DESCRIPTION, ACCESSION, IMAGES = range(10)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._studies: list[StudyRecord] = []
        self._sort = (self.DATE, Qt.SortOrder.DescendingOrder)
        self._bold = QFont()
        self._bold.setBold(True)

    # what the rows are
    def set_studies(self, studies: list[StudyRecord]) -> None:
        self.beginResetModel()
        self._studies = self._sorted(list(studies), *self._sort)
        self.endResetModel()

    def study(self, row: int) -> StudyRecord | None:
        return self._studies[row] if 0 <= row < len(self._studies) else None

    def row_of(self, uid: str) -> int | None:
        for row, study in enumerate(self._studies):
            if study.uid == uid:
                return row
        return None

    @property
    def studies(self) -> list[StudyRecord]:
        return list(self._studies)

    # Qt's questions
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._studies)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(self.COLUMNS):
            if role == Qt.ItemDataRole.DisplayRole:
                return self.COLUMNS[section]
            if role == Qt.ItemDataRole.TextAlignmentRole:
                right = section == self.IMAGES
                return int((Qt.AlignmentFlag.AlignRight if right else Qt.AlignmentFlag.AlignLeft)
                           | Qt.AlignmentFlag.AlignVCenter)
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        study = self.study(index.row()) if index.isValid() else None
        if study is None:
            return None
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(study, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            if column in (self.PATIENT, self.ID, self.SPECIES, self.BREED, self.OWNER):
                return patient_tooltip(study.patient)
            n, s = study.instance_count, study.series_count
            return f"{study_line(study)}\n{s} series, {n} image{'s' if n != 1 else ''}\nStudy UID {study.uid}"
        if role == Qt.ItemDataRole.TextAlignmentRole:
            h = Qt.AlignmentFlag.AlignRight if column == self.IMAGES else Qt.AlignmentFlag.AlignLeft
            return int(h | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.FontRole and column == self.PATIENT:
            return self._bold
        if role == UID_ROLE:
            return study.uid
        return None

    def flags(self, index: QModelIndex):
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled

    # a study dragged onto a viewport of the viewer
    def mimeTypes(self):  # noqa: N802
        from app.ui.viewer.viewport import SERIES_MIME

        return [SERIES_MIME]

    def mimeData(self, indexes):  # noqa: N802
        study = next((self.study(i.row()) for i in indexes if i.isValid()), None)
        return series_mime_data("", study.uid) if study is not None else None

    def supportedDragActions(self):  # noqa: N802
        return Qt.DropAction.CopyAction

    def text(self, study: StudyRecord, column: int) -> str:
        p = study.patient
        if column == self.PATIENT:
            return p.animal_name.strip() or "(no name)"
        if column == self.ID:
            return p.id
        if column == self.SPECIES:
            return p.species
        if column == self.BREED:
            return p.breed
        if column == self.OWNER:
            return person(p.owner)
        if column == self.DATE:
            return format_date(study.date)
        if column == self.MODALITIES:
            return modalities(study.modalities)
        if column == self.DESCRIPTION:
            return study.description
        if column == self.ACCESSION:
            return study.accession
        if column == self.IMAGES:
            return str(study.instance_count)
        return ""

    def _key(self, study: StudyRecord, column: int):
        if column == self.DATE:
            return study.date, study.time
        if column == self.IMAGES:
            return study.instance_count
        return fold(self.text(study, column))

    def _sorted(self, studies: list[StudyRecord], column: int, order) -> list[StudyRecord]:
        descending = order == Qt.SortOrder.DescendingOrder
        if column != self.DATE:  # newest first among equals
            studies.sort(key=lambda s: (s.date, s.time), reverse=not descending)
        return sorted(studies, key=lambda s: self._key(s, column), reverse=descending)

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(self.COLUMNS):
            return
        self._sort = (column, order)
        self.layoutAboutToBeChanged.emit()
        old = self.persistentIndexList()
        held = [(self._studies[i.row()].uid, i.column()) for i in old]
        self._studies = self._sorted(self._studies, column, order)
        rows = {s.uid: r for r, s in enumerate(self._studies)}
        self.changePersistentIndexList(old, [self.index(rows[uid], col) for uid, col in held])
        self.layoutChanged.emit()


class StudyTable(QTableView):
    def __init__(self, model: StudyTableModel, parent=None):
        super().__init__(parent)
        self.setModel(model)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 14)
        header = self.horizontalHeader()
        header.setHighlightSections(False)
        header.setSectionsMovable(True)
        header.setMinimumSectionSize(48)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(StudyTableModel.DESCRIPTION, QHeaderView.ResizeMode.Stretch)
        self.setSortingEnabled(True)
        self.sortByColumn(StudyTableModel.DATE, Qt.SortOrder.DescendingOrder)
        self.setDragEnabled(True)  # a study onto a viewport (over the Viewer button, the page turns)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)

    def fit_columns(self) -> None:
        """Widths from what the columns hold, within reason; Description takes what is left."""
        fm = self.fontMetrics()
        model: StudyTableModel = self.model()
        limits = {StudyTableModel.PATIENT: 200, StudyTableModel.ID: 160, StudyTableModel.SPECIES: 140,
                  StudyTableModel.BREED: 220, StudyTableModel.OWNER: 220, StudyTableModel.DATE: 120,
                  StudyTableModel.MODALITIES: 120, StudyTableModel.ACCESSION: 150, StudyTableModel.IMAGES: 80}
        bold = QFont(self.font())
        bold.setBold(True)
        bold_fm = type(fm)(bold)
        studies = model.studies[:500]
        for column, limit in limits.items():
            header = fm.horizontalAdvance(model.COLUMNS[column]) + 36  # room for the sort arrow
            metrics = bold_fm if column == StudyTableModel.PATIENT else fm
            widest = max((metrics.horizontalAdvance(model.text(s, column)) for s in studies), default=0) + 24
            self.setColumnWidth(column, max(header, min(widest, limit)))


# -- series and priors ----------------------------------------------------------------------------

class SeriesThumbnails(QListWidget):
    """The chosen study's series as thumbnails; a series can be dragged onto a viewport."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setMovement(QListWidget.Movement.Static)
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setFlow(QListWidget.Flow.LeftToRight)
        self.setWrapping(True)
        self.setWordWrap(True)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setGridSize(QSize(THUMB + 48, THUMB + 58))
        self.setSpacing(6)
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setAcceptDrops(False)

    def series_item(self, uid: str) -> QListWidgetItem | None:
        for row in range(self.count()):
            item = self.item(row)
            if item.data(UID_ROLE) == uid:
                return item
        return None

    def mimeTypes(self):  # noqa: N802
        from app.ui.viewer.viewport import SERIES_MIME

        return [SERIES_MIME]

    def mimeData(self, items):  # noqa: N802
        items = list(items)
        if not items:
            return None
        return series_mime_data(items[0].data(UID_ROLE), items[0].data(STUDY_UID_ROLE))

    def startDrag(self, actions) -> None:  # noqa: N802
        item = self.currentItem()
        if item is None or item.data(THUMB_ROLE) == "no-images":
            return
        drag = QDrag(self)
        drag.setMimeData(self.mimeData([item]))
        pixmap = item.icon().pixmap(QSize(72, 72))
        if not pixmap.isNull():
            drag.setPixmap(pixmap)
            drag.setHotSpot(QPoint(pixmap.width() // 2, pixmap.height() // 2))
        drag.exec(Qt.DropAction.CopyAction)  # a copy, never a move: the library keeps its series


# -- the browser ----------------------------------------------------------------------------------

class Browser(QWidget):
    open_requested = Signal(str, str)  # study UID, series UID ("" for the first series)
    export_requested = Signal(list)  # study UIDs
    remove_requested = Signal(list)  # study UIDs
    send_requested = Signal(object, list, str)  # PacsConfig, study UIDs, series UID ("" for whole studies)
    selection_changed = Signal()
    problem = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._library: Library | None = None
        self.thumbnails = ThumbnailCache()
        self._thumb_relay: JobRelay | None = None
        self._relays: set[JobRelay] = set()
        self._shown_uid: str | None = None
        self._refreshing = False
        self.total = 0  # studies in the library

        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search: animal, owner, ID, species, breed, accession, description…")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(360)
        self.search.setMinimumHeight(self.search.sizeHint().height() + 6)
        palette = self.search.palette()
        palette.setColor(palette.ColorRole.PlaceholderText, QColor(140, 140, 140))
        self.search.setPalette(palette)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.search.returnPressed.connect(self._search_now)
        self.search.installEventFilter(self)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(lambda: self.refresh(details=False))
        self.count_label = QLabel(self)
        self.count_label.setStyleSheet("color: #a0a0a0;")

        self.model = StudyTableModel(self)
        self.table = StudyTable(self.model, self)
        self.table.activated.connect(self._activated)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selection_changed())
        self.table.selectionModel().currentRowChanged.connect(lambda *_: self._selection_changed())
        self.table.customContextMenuRequested.connect(self._context_menu)

        self.placeholder = QLabel(EMPTY_LIBRARY, self)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setStyleSheet("color: #9a9a9a; font-size: 15pt; padding: 40px;")
        self.table_stack = QStackedWidget(self)
        self.table_stack.addWidget(self.table)
        self.table_stack.addWidget(self.placeholder)

        self.details = QLabel(self)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setStyleSheet("padding: 6px 4px;")

        self.series_list = SeriesThumbnails(self)
        self.series_list.itemActivated.connect(self._series_activated)
        self.series_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.series_list.customContextMenuRequested.connect(self._series_context_menu)
        series_label = QLabel("Series — double-click to view, or drag onto the viewer", self)
        series_label.setStyleSheet("color: #a0a0a0;")

        self.priors = QListWidget(self)
        self.priors.setWordWrap(True)
        self.priors.setSpacing(2)
        self.priors.itemClicked.connect(self._prior_clicked)
        self._prior_timer = QTimer(self)  # a click waits to be sure it is not the start of a double-click
        self._prior_timer.setSingleShot(True)
        self._prior_timer.timeout.connect(self._select_prior)
        self._prior_uid = ""
        self.priors.itemActivated.connect(self._prior_activated)
        self.priors_label = QLabel("Other studies of this patient", self)
        self.priors_label.setStyleSheet("color: #a0a0a0;")

        series_box = QWidget(self)
        layout = QVBoxLayout(series_box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(series_label)
        layout.addWidget(self.series_list)
        priors_box = QWidget(self)
        layout = QVBoxLayout(priors_box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.priors_label)
        layout.addWidget(self.priors)
        self.lower_split = QSplitter(Qt.Orientation.Horizontal, self)
        self.lower_split.addWidget(series_box)
        self.lower_split.addWidget(priors_box)
        self.lower_split.setStretchFactor(0, 3)
        self.lower_split.setStretchFactor(1, 1)
        self.lower_split.setChildrenCollapsible(False)

        self.lower = QWidget(self)
        layout = QVBoxLayout(self.lower)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.details)
        layout.addWidget(self.lower_split, 1)

        self.split = QSplitter(Qt.Orientation.Vertical, self)
        self.split.addWidget(self.table_stack)
        self.split.addWidget(self.lower)
        self.split.setChildrenCollapsible(False)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        self.split.setSizes([480, 320])

        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.count_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 4)
        layout.addLayout(top)
        layout.addWidget(self.split, 1)
        self._show_details(None)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802
        # Down from the search field goes to the table, as in a file dialog.
        if watched is self.search and event.type() == QEvent.Type.KeyPress and event.key() == Qt.Key.Key_Down:
            self.table.setFocus()
            return True
        return super().eventFilter(watched, event)

    def _search_now(self) -> None:
        self.refresh(details=False)
        if self.model.rowCount():
            self.table.setFocus()

    # -- the library --------------------------------------------------------------------------

    @property
    def library(self) -> Library:
        """This thread's (the GUI's) connection to the library, opened when first needed."""
        if self._library is None:
            self._library = Library()
        return self._library

    def close_library(self) -> None:
        if self._thumb_relay is not None:
            self._thumb_relay.job.cancel()
        if self._library is not None:
            self._library.close()
            self._library = None

    def has_studies(self) -> bool:
        try:
            return bool(self.library.studies(limit=1))
        except LightboxError as exc:
            self.problem.emit(str(exc))
            return False

    @Slot()
    def refresh(self, select: list[str] | None = None, details: bool = True) -> None:
        """Query the library again (the search text as it is now); keep the selection, or select `select`.

        With `details`, the chosen study's series and priors are read again even when it stays chosen
        (an import may have added to it)."""
        self._search_timer.stop()
        keep = list(select) if select else self.selected_uids()
        current = select[0] if select else self.current_uid()
        query = self.search.text().strip()
        try:
            studies = self.library.studies(query)
            self.total = self.library.counts()["studies"] if query else len(studies)
        except LightboxError as exc:
            self.model.set_studies([])
            self.placeholder.setText(f"The library cannot be read.\n\n{exc}")
            self.table_stack.setCurrentWidget(self.placeholder)
            self.count_label.setText("")
            self._show_details(None)
            self.problem.emit(str(exc))
            return
        self._refreshing = True  # one update of the series and priors at the end, not one per step
        try:
            self._show(studies, query, keep, current)
        finally:
            self._refreshing = False
        if details:
            self._shown_uid = None
        self._selection_changed()

    def _show(self, studies: list[StudyRecord], query: str, keep: list[str], current: str | None) -> None:
        self.model.set_studies(studies)
        self.table.fit_columns()
        if studies:
            self.table_stack.setCurrentWidget(self.table)
        else:
            self.placeholder.setText(f"No studies match “{query}”." if query and self.total else EMPTY_LIBRARY)
            self.table_stack.setCurrentWidget(self.placeholder)
        shown = len(studies)
        noun = "study" if self.total == 1 else "studies"
        self.count_label.setText(f"{shown} of {self.total} {noun}" if query else f"{self.total} {noun}")
        self.lower.setVisible(bool(studies))
        rows = [r for r in (self.model.row_of(uid) for uid in keep) if r is not None]
        if not rows and studies:
            rows = [0]
        self._select_rows(rows, self.model.row_of(current) if current else None)

    def _select_rows(self, rows: list[int], current: int | None = None) -> None:
        selection = self.table.selectionModel()
        flags = QItemSelectionModel.SelectionFlag
        selection.clearSelection()
        if current is None or current not in rows:
            current = rows[0] if rows else None
        if current is not None:
            selection.setCurrentIndex(self.model.index(current, 0), flags.NoUpdate)
        for row in rows:
            selection.select(self.model.index(row, 0), flags.Select | flags.Rows)
        if current is not None:
            self.table.scrollTo(self.model.index(current, 0))
        self._selection_changed()

    # -- selection ----------------------------------------------------------------------------

    def selected_uids(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.model.study(r).uid for r in rows if self.model.study(r) is not None]

    def current_uid(self) -> str | None:
        study = self.current_study()
        return study.uid if study else None

    def current_study(self) -> StudyRecord | None:
        """The study whose series are shown: the table's current row, if it is selected."""
        index = self.table.selectionModel().currentIndex()
        if index.isValid() and self.table.selectionModel().isRowSelected(index.row(), QModelIndex()):
            return self.model.study(index.row())
        uids = self.selected_uids()
        return self.model.study(self.model.row_of(uids[0])) if uids else None

    def select_study(self, uid: str) -> bool:
        """Select a study in the table, clearing the search when it hides the study."""
        row = self.model.row_of(uid)
        if row is None and self.search.text():
            self.search.blockSignals(True)
            self.search.clear()
            self.search.blockSignals(False)
            self.refresh(select=[uid])
            row = self.model.row_of(uid)
        if row is None:
            return False
        self._select_rows([row], row)
        return True

    def _selection_changed(self) -> None:
        if self._refreshing:
            return
        study = self.current_study()
        if (study.uid if study else None) != self._shown_uid:
            self._show_details(study)
        self.selection_changed.emit()

    @Slot(QModelIndex)
    def _activated(self, index: QModelIndex) -> None:
        study = self.model.study(index.row())
        if study is not None:
            self.open_requested.emit(study.uid, "")

    # -- the chosen study ---------------------------------------------------------------------

    def _show_details(self, study: StudyRecord | None) -> None:
        self._shown_uid = study.uid if study else None
        self.series_list.clear()
        self.priors.clear()
        if self._thumb_relay is not None:
            self._thumb_relay.job.cancel()
            self._thumb_relay = None
        if study is None:
            self.details.setText("")
            return
        self.details.setText(self._details_html(study))
        try:
            records = self.library.series(study.uid)
            viewable = {s.uid: s for s in self.library.viewer_series(study.uid)}
            priors = self.library.priors(study.uid)
        except LightboxError as exc:
            self.details.setText(f"<span style='color:#ffaa80'>{_html(str(exc))}</span>")
            return
        blank = _icon(_placeholder())
        for record in records:
            series = viewable.get(record.uid)
            title = " ".join(x for x in (record.modality or "?", f"#{record.number}" if record.number is not None
                                         else "", record.description) if x)
            frames = series.frame_count if series else 0
            item = QListWidgetItem(blank, f"{title}\n{frames} image{'s' if frames != 1 else ''}")
            item.setData(UID_ROLE, record.uid)
            item.setData(STUDY_UID_ROLE, study.uid)
            item.setToolTip(f"{title}\n{record.body_part}\n{record.uid}".replace("\n\n", "\n"))
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            if series is None:
                item.setIcon(_icon(_placeholder("No images")))
                item.setData(THUMB_ROLE, "no-images")
            else:
                cached = self.thumbnails.cached(record.uid)
                if cached is not None:
                    self._set_thumbnail(item, cached)
            self.series_list.addItem(item)
        todo = [s for s in viewable.values() if self.thumbnails.cached(s.uid) is None]
        if todo:
            self._render_thumbnails(todo)
        name = study.patient.animal_name or "this patient"
        self.priors_label.setText(f"Other studies of {name} ({len(priors)})" if priors
                                  else f"Other studies of {name}: none")
        for prior in priors:
            item = QListWidgetItem(study_line(prior))
            item.setData(UID_ROLE, prior.uid)
            item.setToolTip("Click to select it, double-click to open it")
            self.priors.addItem(item)

    def _details_html(self, study: StudyRecord) -> str:
        p = study.patient
        age = age_text(p.birth_date, study.date)
        facts = [x for x in (p.species, p.breed, sex_text(p), age and f"aged {age}") if x]
        owner = person(p.owner)
        lines = [
            f"<span style='font-size:15pt; font-weight:600'>{_html(p.animal_name or '(no name)')}</span>"
            f"&nbsp;&nbsp;<span style='font-size:11pt'>{_html(' · '.join(facts))}</span>",
            " · ".join(x for x in (owner and f"Owner <b>{_html(owner)}</b>",
                                   p.owner_organization and _html(p.owner_organization),
                                   p.id and f"ID <b>{_html(p.id)}</b>",
                                   p.microchip and f"Microchip {_html(p.microchip)}") if x),
            "<span style='color:#b8b8b8'>"
            + _html(" · ".join(x for x in (format_date(study.date), modalities(study.modalities), study.description,
                                           study.accession and f"Accession {study.accession}",
                                           study.referring_physician
                                           and f"Referred by {person(study.referring_physician)}") if x))
            + "</span>",
        ]
        return "<br>".join(line for line in lines if line)

    def _render_thumbnails(self, series: list[Series]) -> None:
        cache = self.thumbnails

        def work(reporter):
            for n, s in enumerate(series, 1):
                reporter.check()
                try:
                    image = cache.get(s)
                except LightboxError as exc:
                    log.info("no thumbnail for %s: %s", s.uid, exc)
                    image = None
                job.ready.append((s.uid, image))
                reporter.update(n, len(series))

        job = Job(work, "Thumbnails")
        job.ready = []
        job.taken = 0
        relay = JobRelay(job, self)
        relay.progress.connect(self._thumbnails_arrived)
        relay.finished.connect(self._thumbnails_arrived)
        relay.finished.connect(lambda _job, r=relay: self._relays.discard(r))
        self._relays.add(relay)
        self._thumb_relay = relay
        relay.start()

    @Slot(object)
    def _thumbnails_arrived(self, job: Job) -> None:
        ready = job.ready[job.taken:]
        job.taken += len(ready)
        for uid, image in ready:
            item = self.series_list.series_item(uid)
            if item is None:
                continue
            if image is None:
                item.setIcon(_icon(_placeholder("No preview")))
                item.setData(THUMB_ROLE, "failed")
            else:
                self._set_thumbnail(item, image)

    @staticmethod
    def _set_thumbnail(item: QListWidgetItem, image: QImage) -> None:
        tile = _placeholder()  # square tiles: the captions line up whatever the images' shapes
        picture = QPixmap.fromImage(image).scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                                  Qt.TransformationMode.SmoothTransformation)
        painter = QPainter(tile)
        painter.drawPixmap((THUMB - picture.width()) // 2, (THUMB - picture.height()) // 2, picture)
        painter.end()
        item.setIcon(_icon(tile))
        item.setData(THUMB_ROLE, "ready")

    @Slot(QListWidgetItem)
    def _series_activated(self, item: QListWidgetItem) -> None:
        if item.data(THUMB_ROLE) != "no-images":
            self.open_requested.emit(item.data(STUDY_UID_ROLE), item.data(UID_ROLE))

    @Slot(QListWidgetItem)
    def _prior_clicked(self, item: QListWidgetItem) -> None:
        # Selecting the prior replaces this list, so wait: the click may be half of a double-click.
        self._prior_uid = item.data(UID_ROLE)
        self._prior_timer.start(QApplication.doubleClickInterval() + 50)

    def _select_prior(self) -> None:
        if self._prior_uid:
            self.select_study(self._prior_uid)
        self._prior_uid = ""

    @Slot(QListWidgetItem)
    def _prior_activated(self, item: QListWidgetItem) -> None:
        self._prior_timer.stop()
        self._prior_uid = ""
        self.open_requested.emit(item.data(UID_ROLE), "")

    # -- the context menu ---------------------------------------------------------------------

    def study_menu(self) -> QMenu:
        uids = self.selected_uids()
        menu = QMenu(self)
        n = len(uids)
        act = menu.addAction("Open in the viewer", lambda: self.open_requested.emit(self.current_uid() or "", ""))
        act.setEnabled(n >= 1)
        menu.addSeparator()
        act = menu.addAction("Export…" if n <= 1 else f"Export {n} studies…", lambda: self.export_requested.emit(uids))
        act.setEnabled(n >= 1)
        send = self.send_menu(menu, "Send to PACS" if n <= 1 else f"Send {n} studies to PACS",
                              lambda config: self.send_requested.emit(config, uids, ""))
        send.setEnabled(n >= 1)
        menu.addSeparator()
        act = menu.addAction("Remove from library…" if n <= 1 else f"Remove {n} studies from the library…",
                             lambda: self.remove_requested.emit(uids))
        act.setEnabled(n >= 1)
        return menu

    def send_menu(self, parent: QMenu, title: str, chosen) -> QMenu:
        """A "Send to PACS" submenu of `parent`: the configurations that may receive."""
        from app.ui.outbox_panel import fill_send_menu

        menu = parent.addMenu(title)
        menu.setToolTipsVisible(True)
        fill_send_menu(menu, chosen)
        return menu

    def series_menu(self, item: QListWidgetItem) -> QMenu:
        series_uid, study_uid = item.data(UID_ROLE), item.data(STUDY_UID_ROLE)
        menu = QMenu(self)
        act = menu.addAction("Open in the viewer", lambda: self.open_requested.emit(study_uid, series_uid))
        act.setEnabled(item.data(THUMB_ROLE) != "no-images")
        menu.addSeparator()
        self.send_menu(menu, "Send series to PACS", lambda config: self.send_requested.emit(config, [study_uid],
                                                                                              series_uid))
        return menu

    @Slot(QPoint)
    def _series_context_menu(self, pos: QPoint) -> None:
        item = self.series_list.itemAt(pos)
        if item is None:
            return
        self.series_list.setCurrentItem(item)
        menu = self.series_menu(item)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.popup(self.series_list.viewport().mapToGlobal(pos))

    @Slot(QPoint)
    def _context_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if index.isValid() and not self.table.selectionModel().isRowSelected(index.row(), QModelIndex()):
            self._select_rows([index.row()], index.row())
        if not self.selected_uids():
            return
        menu = self.study_menu()
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.popup(self.table.viewport().mapToGlobal(pos))

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
