"""The outbox in the window: a panel with every send (progress in instances and bytes, state, last error,
the countdown to the next attempt, Retry and Cancel) and the runner that sends what is due, one send at a
time, off the GUI thread.

The outbox itself (app.pacs.outbox) is the single source of truth: the panel reads it from the GUI
thread's own library connection (quick queries); each send runs as a job that opens its own connection.
Because every outcome is recorded the moment the PACS confirms it, the runner starting with the window
is all it takes for a send left by a killed Lightbox to resume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPoint, QRectF, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView, QApplication, QHBoxLayout, QHeaderView, QLabel, QMenu, QPushButton, QStyle,
    QStyledItemDelegate, QStyleOptionViewItem, QTableView, QVBoxLayout, QWidget,
)

from app.errors import LightboxError
from app.jobs import Job, State
from app.library import Library
from app.pacs.config import PacsConfig
from app.pacs.outbox import Outbox, SendRecord, retry_delay
from app.ui.jobs import JobRelay

log = logging.getLogger(__name__)

ACTIVE = ("queued", "sending", "waiting")
RECENT_FINISHED = 20  # finished sends shown below the active ones
REFRESH_MS = 1000  # the panel, while anything is active
RUN_EVERY_MS = 2000  # the runner looks for due sends
STATE_WORDS = {"queued": "Queued", "sending": "Sending", "waiting": "Waiting", "done": "Sent", "failed": "Failed",
               "cancelled": "Cancelled"}
STATE_COLORS = {"queued": "#b0b0b0", "sending": "#5aa9ff", "waiting": "#f0b429", "done": "#4cc38a",
                "failed": "#ff6b6b", "cancelled": "#8a8a8a"}
BAR_COLORS = {"sending": "#2a6ebb", "queued": "#2a6ebb", "waiting": "#9a6f0c", "done": "#2e8b57", "failed": "#2a6ebb",
              "cancelled": "#5a5a5a", "refused": "#a33a3a"}
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 1
SEND_ID_ROLE = Qt.ItemDataRole.UserRole + 2
STATE_ROLE = Qt.ItemDataRole.UserRole + 3
NO_PACS = "No PACS to send to (PACS ▸ PACS configurations…)"
TRANSFER_OFF = "No PACS to send to: transfer to PACS is switched off (PACS ▸ PACS configurations…)"


# -- words ----------------------------------------------------------------------------------------

def wait_text(seconds: float) -> str:
    """'25 s', '4 min', '1 h 5 min'."""
    s = max(0, round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 3600:
        return f"{round(s / 60)} min"
    h, m = divmod(round(s / 60), 60)
    return f"{h} h {m} min" if m else f"{h} h"


def size_text(done: int, total: int, finished: bool = False) -> str:
    """'12.3 of 40.1 MB' (both in the unit of the total); '40.1 MB' when `finished`."""
    unit, scale = ("GB", 1e9) if total >= 1e9 else ("MB", 1e6) if total >= 1e5 else ("kB", 1e3)
    digits = 0 if unit == "kB" else 1
    whole = f"{total / scale:.{digits}f} {unit}"
    return whole if finished else f"{done / scale:.{digits}f} of {whole}"


def state_text(record: SendRecord, now: float | None = None) -> str:
    """The state in words; a waiting send says when it is tried again."""
    if record.state == "waiting":
        left = record.next_attempt_at - (time.time() if now is None else now)
        return f"Waiting · next attempt in {wait_text(left)}" if left > 0.5 else "Waiting · next attempt now"
    if record.state == "done" and record.counts.get("warning"):
        return f"Sent ({record.counts['warning']} with warnings)"
    return STATE_WORDS.get(record.state, record.state)


def instances_text(record: SendRecord) -> str:
    text = f"{record.confirmed} / {record.total}"
    refused = record.counts.get("failed", 0)
    return text + (f" · {refused} refused" if refused else "")


def destination_name(record: SendRecord) -> str:
    """'Clinic PACS' of 'Clinic PACS (CLINICPACS)'."""
    name, sep, _aet = record.destination.rpartition(" (")
    return name if sep else record.destination


def finished_message(record: SendRecord, now: float | None = None) -> str:
    """The status line when a send run ends."""
    n = record.confirmed
    to = destination_name(record)
    if record.state == "done":
        warned = record.counts.get("warning", 0)
        return (f"Sent {n} instance{'s' if n != 1 else ''} to {to}"
                + (f" ({warned} accepted with warnings)" if warned else ""))
    if record.state == "waiting":
        left = record.next_attempt_at - (time.time() if now is None else now)
        return f"Cannot send to {to} now: {record.last_error}; retry in {wait_text(left)}"
    if record.state == "failed":
        return f"Sending to {to} failed: {record.last_error} ({n} of {record.total} sent)"
    if record.state == "cancelled":
        return f"Send to {to} cancelled; the {n} instance{'s' if n != 1 else ''} it confirmed stay there"
    return f"Send to {to}: {state_text(record, now)}"


# -- queueing ---------------------------------------------------------------------------------------

def queue_sends(library: Library, destination: PacsConfig, study_uids: list[str] = (),
                series_uid: str = "") -> list[int]:
    """Record sends in the outbox (nothing goes out yet): one per study, or one of a series. Their ids."""
    outbox = Outbox(library)
    if series_uid:
        instances = library.instances(series_uid=series_uid)
        if not instances:
            raise LightboxError("That series is no longer in the library.")
        study = library.study(instances[0].study_uid)
        record = next((s for s in library.series(study.uid) if s.uid == series_uid), None)
        what = " ".join(x for x in (record.modality, f"#{record.number}" if record.number is not None else "",
                                    record.description) if x) if record else "series"
        name = study.patient.animal_name or study.patient.name or "(no name)"
        title = f"{name}: {study.description or 'study'} · {what or 'series'}"
        return [outbox.queue(destination, sop_uids=[i.sop_uid for i in instances], title=title)]
    return [outbox.queue(destination, study_uids=[uid]) for uid in study_uids]


def send_menu_entries(configs_loader=None) -> tuple[list[PacsConfig], str]:
    """The configurations a "Send to PACS" menu offers, and what to say when there are none."""
    from app.pacs.config import PacsConfigs

    try:
        configs = (configs_loader or PacsConfigs.load)()
    except LightboxError as exc:
        return [], f"No PACS to send to: {exc}"
    offered = configs.exporting()
    if offered:
        return offered, ""
    if not configs.allow_transfer and any(c.exports for c in configs.configs):
        return [], TRANSFER_OFF
    return [], NO_PACS


def send_menu_label(config: PacsConfig) -> str:
    return f"[{config.badge}] {config.name} ({config.aet})"


def fill_send_menu(menu: QMenu, chosen: Callable[[PacsConfig], None]) -> None:
    """The exporting configurations as actions of `menu` (or one disabled line saying why there are none)."""
    menu.clear()
    offered, why = send_menu_entries()
    if not offered:
        menu.addAction(why).setEnabled(False)
    for config in offered:
        action = menu.addAction(send_menu_label(config), lambda c=config: chosen(c))
        action.setToolTip(f"{config.address}")
        action.setData(config.id)


# -- the table ------------------------------------------------------------------------------------

class SendsModel(QAbstractTableModel):
    COLUMNS = ("Send", "To", "State", "Instances", "Size", "Last error")
    TITLE, DESTINATION, STATE, INSTANCES, SIZE, ERROR = range(6)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.records: list[SendRecord] = []
        self.now = time.time()

    def set_records(self, records: list[SendRecord]) -> bool:
        """Show these sends; True when the rows are the same sends as before (only their data changed)."""
        self.now = time.time()
        same = [r.id for r in records] == [r.id for r in self.records]
        if same:
            self.records = records
            if records:
                self.dataChanged.emit(self.index(0, 0), self.index(len(records) - 1, len(self.COLUMNS) - 1))
        else:
            self.beginResetModel()
            self.records = records
            self.endResetModel()
        return same

    def record(self, row: int) -> SendRecord | None:
        return self.records[row] if 0 <= row < len(self.records) else None

    def row_of(self, send_id: int) -> int | None:
        return next((n for n, r in enumerate(self.records) if r.id == send_id), None)

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.records)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int((Qt.AlignmentFlag.AlignHCenter if section == self.INSTANCES else Qt.AlignmentFlag.AlignLeft)
                       | Qt.AlignmentFlag.AlignVCenter)
        return None

    def text(self, record: SendRecord, column: int) -> str:
        if column == self.TITLE:
            return record.title
        if column == self.DESTINATION:
            return record.destination
        if column == self.STATE:
            return state_text(record, self.now)
        if column == self.INSTANCES:
            return instances_text(record)
        if column == self.SIZE:
            return size_text(record.bytes_done, record.bytes_total, finished=record.state == "done")
        if column == self.ERROR:
            return record.last_error if record.state in ("waiting", "failed", "queued") else ""
        return ""

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        record = self.record(index.row()) if index.isValid() else None
        if record is None:
            return None
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(record, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = record.describe()
            if record.created_at:
                tip += f"\nQueued {record.created_at.replace('T', ' ')[:16]}"
            if record.finished_at:
                tip += f"\nFinished {record.finished_at.replace('T', ' ')[:16]}"
            return tip
        if role == Qt.ItemDataRole.ForegroundRole and column == self.STATE:
            return QColor(STATE_COLORS.get(record.state, "#b0b0b0"))
        if role == Qt.ItemDataRole.ForegroundRole and column == self.ERROR:
            return QColor(STATE_COLORS["failed"] if record.state == "failed" else STATE_COLORS["waiting"])
        if role == PROGRESS_ROLE and column == self.INSTANCES:
            return record.confirmed, record.counts.get("failed", 0), record.total, record.state
        if role == SEND_ID_ROLE:
            return record.id
        if role == STATE_ROLE:
            return record.state
        return None

    def flags(self, index: QModelIndex):
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable


class ProgressDelegate(QStyledItemDelegate):
    """Paints the Instances column as a progress bar (confirmed of all), coloured by the send's state."""

    def paint(self, painter, option, index) -> None:
        value = index.data(PROGRESS_ROLE)
        if value is None:
            super().paint(painter, option, index)
            return
        done, refused, total, state = value
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        widget = opt.widget
        style = widget.style() if widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)
        # Drawn here rather than by the style: an empty bar stays empty, and the text reads the same on both parts.
        rect = QRectF(option.rect).adjusted(5, 5, -5, -5)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(128, 128, 128, 55))
        painter.drawRoundedRect(rect, 3, 3)
        if total > 0 and done + refused > 0:  # confirmed, then refused (red) behind it
            if refused:
                chunk = QRectF(rect)
                chunk.setWidth(max(6.0, rect.width() * min(done + refused, total) / total))
                painter.setBrush(QColor(BAR_COLORS["refused"]))
                painter.drawRoundedRect(chunk, 3, 3)
            if done:
                chunk = QRectF(rect)
                chunk.setWidth(max(6.0, rect.width() * min(done, total) / total))
                painter.setBrush(QColor(BAR_COLORS.get(state, BAR_COLORS["sending"])))
                painter.drawRoundedRect(chunk, 3, 3)
        painter.setPen(option.palette.color(QPalette.ColorRole.Text))
        painter.setFont(opt.font)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, index.data(Qt.ItemDataRole.DisplayRole) or "")
        painter.restore()

    def sizeHint(self, option, index) -> QSize:  # noqa: N802
        size = super().sizeHint(option, index)
        return QSize(max(size.width(), 150), size.height())


class OutboxPanel(QWidget):
    """Every send: active ones first (in the order they go out), then the most recent finished ones.

    `library` returns the GUI thread's library connection, or None while there is no library yet."""

    retried = Signal(int)  # send id, now queued again
    cancelled = Signal(int)  # send id, now cancelled (a send under way stops at its next instance)
    problem = Signal(str)
    changed = Signal()  # the rows were read again

    def __init__(self, library: Callable[[], Library | None], parent=None):
        super().__init__(parent)
        self._library = library
        self.model = SendsModel(self)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(SendsModel.INSTANCES, ProgressDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 12)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        fm = self.fontMetrics()
        for column, sample in ((SendsModel.TITLE, "Hendricks Bailey: Thorax recheck"),
                               (SendsModel.DESTINATION, "Referral centre (REFCLOUD)"),
                               (SendsModel.STATE, "Waiting · next attempt in 25 min"),
                               (SendsModel.INSTANCES, "125 / 125 · 12 refused"),
                               (SendsModel.SIZE, "123.4 of 456.7 MB")):
            self.table.setColumnWidth(column, fm.horizontalAdvance(sample) + 24)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())

        self.summary = QLabel(self)
        self.summary.setStyleSheet("color: #a0a0a0;")
        self.retry_button = QPushButton("Retry", self)
        self.retry_button.setToolTip("Send the chosen send again now (instances the PACS refused are tried again)")
        self.retry_button.clicked.connect(lambda: self.retry(self.selected_id()))
        self.cancel_button = QPushButton("Cancel send", self)
        self.cancel_button.setToolTip("Stop the chosen send; what the PACS confirmed stays there")
        self.cancel_button.clicked.connect(lambda: self.cancel(self.selected_id()))

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.summary, 1)
        top.addWidget(self.retry_button)
        top.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self._update_buttons()

    # -- reading ------------------------------------------------------------------------------

    def outbox(self) -> Outbox | None:
        library = self._library()
        return Outbox(library) if library is not None else None

    @Slot()
    def refresh(self) -> None:
        """Read the sends again; keep refreshing every second while any is active."""
        try:
            outbox = self.outbox()
            records = self._read(outbox) if outbox is not None else []
        except LightboxError as exc:
            self.timer.stop()
            self.problem.emit(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a locked or busy index: try again at the next tick
            log.warning("the outbox cannot be read now: %s", exc)
            return
        chosen = self.selected_id()
        if not self.model.set_records(records) and chosen is not None:
            self.select(chosen)
        active = [r for r in records if r.state in ACTIVE]
        if active and not self.timer.isActive():
            self.timer.start()
        elif not active:
            self.timer.stop()
        self._update_summary(records, active)
        self._update_buttons()
        self.changed.emit()

    def _read(self, outbox: Outbox) -> list[SendRecord]:
        active = sorted(outbox.sends(active_only=True), key=lambda r: (r.state != "sending", r.id))
        if self.model.records and [r.id for r in active] == [r.id for r in self.model.records if r.state in ACTIVE]:
            finished = [r for r in self.model.records if r.state not in ACTIVE]  # unchanged: not read again
        else:
            finished = [r for r in outbox.sends() if r.state not in ACTIVE][:RECENT_FINISHED]
        return active + finished

    def _update_summary(self, records: list[SendRecord], active: list[SendRecord]) -> None:
        if not records:
            self.summary.setText("Nothing sent yet. Send studies with “Send to PACS” in the library's menu "
                                 "(right-click a study or a series).")
            return
        waiting = sum(r.state == "waiting" for r in active)
        parts = []
        if active:
            parts.append(f"{len(active)} send{'s' if len(active) != 1 else ''} to go")
        if waiting:
            parts.append(f"{waiting} waiting for the PACS")
        if not active:
            parts.append("Everything was sent or stopped")
        self.summary.setText(" · ".join(parts))

    @property
    def active(self) -> bool:
        return any(r.state in ACTIVE for r in self.model.records)

    def record(self, send_id: int) -> SendRecord | None:
        row = self.model.row_of(send_id)
        return self.model.record(row) if row is not None else None

    def row_texts(self, send_id: int) -> dict[str, str]:
        """What the row of a send shows, column by column (for tests and screen readers)."""
        row = self.model.row_of(send_id)
        if row is None:
            return {}
        return {name: self.model.index(row, c).data() for c, name in enumerate(SendsModel.COLUMNS)}

    # -- choosing -----------------------------------------------------------------------------

    def selected_id(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        record = self.model.record(rows[0].row()) if rows else None
        return record.id if record else None

    def select(self, send_id: int) -> bool:
        row = self.model.row_of(send_id)
        if row is None:
            return False
        self.table.selectRow(row)
        return True

    def _update_buttons(self) -> None:
        record = self.record(self.selected_id()) if self.selected_id() is not None else None
        state = record.state if record else None
        self.retry_button.setEnabled(state in ("waiting", "failed", "cancelled"))
        self.retry_button.setText("Retry now" if state == "waiting" else "Retry")
        self.cancel_button.setEnabled(state in ACTIVE)

    @Slot(QPoint)
    def _context_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        self.table.selectRow(index.row())
        menu = self.send_menu(self.model.record(index.row()))
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.popup(self.table.viewport().mapToGlobal(pos))

    def send_menu(self, record: SendRecord) -> QMenu:
        menu = QMenu(self)
        act = menu.addAction("Retry now" if record.state == "waiting" else "Retry", lambda: self.retry(record.id))
        act.setEnabled(record.state in ("waiting", "failed", "cancelled"))
        act = menu.addAction("Cancel send", lambda: self.cancel(record.id))
        act.setEnabled(record.state in ACTIVE)
        return menu

    # -- changing -----------------------------------------------------------------------------

    def retry(self, send_id: int | None) -> bool:
        """Queue a send again at once (refused instances too); the runner picks it up."""
        return self._change(send_id, "retry", self.retried)

    def cancel(self, send_id: int | None) -> bool:
        """Stop a send; what the PACS confirmed stays there."""
        return self._change(send_id, "cancel", self.cancelled)

    def _change(self, send_id: int | None, how: str, signal) -> bool:
        outbox = self.outbox()
        if send_id is None or outbox is None:
            return False
        try:
            getattr(outbox, how)(send_id)
        except LightboxError as exc:
            self.problem.emit(str(exc))
            self.refresh()
            return False
        signal.emit(send_id)
        self.refresh()
        return True

    def stop(self) -> None:
        self.timer.stop()


# -- the runner -----------------------------------------------------------------------------------

class OutboxRunner(QObject):
    """Sends what is due, one send at a time, each as a job off the GUI thread.

    Every RUN_EVERY_MS it asks the outbox for due sends (queued ones; waiting ones whose time has come;
    sends of a Lightbox that died) when none is running in this window. A send that ends in an
    unexpected error is held back here on the retry schedule, so a fault never turns into a busy loop."""

    started = Signal(int)  # send id
    finished = Signal(object)  # the Job; job.send_id, job.result the SendRecord (when it ended normally)
    message = Signal(str)  # for the status line

    def __init__(self, library: Callable[[], Library | None], parent=None, *, interval_ms: int = RUN_EVERY_MS):
        super().__init__(parent)
        self._library = library
        self.job: Job | None = None
        self._relay: JobRelay | None = None
        self._held: dict[int, tuple[int, float]] = {}  # send id -> (failures, not before)
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)

    @property
    def running_id(self) -> int | None:
        return self.job.send_id if self.job is not None else None

    def start(self) -> None:
        self.timer.start()
        QTimer.singleShot(0, self.tick)

    def stop(self) -> None:
        """No new sends; the one under way stops at its next instance and is resumed on the next start."""
        self.timer.stop()
        if self.job is not None:
            self.job.cancel()

    def poke(self) -> None:
        """Look for due sends now (something was queued or retried)."""
        if self.timer.isActive():
            QTimer.singleShot(0, self.tick)

    def cancel(self, send_id: int) -> None:
        """The send was cancelled in the outbox: stop it now if it is the one under way."""
        if self.job is not None and self.job.send_id == send_id:
            self.job.cancel()

    def forget(self, send_id: int) -> None:
        self._held.pop(send_id, None)

    @Slot()
    def tick(self) -> int | None:
        """Start the first due send, unless one is running; its id."""
        if self.job is not None or not self.timer.isActive():
            return None
        try:
            library = self._library()
            due = Outbox(library).due() if library is not None else []
        except Exception as exc:  # noqa: BLE001 - a busy or unreadable index: the next tick tries again
            log.warning("the outbox cannot be read now: %s", exc)
            return None
        now = time.time()
        send_id = next((pk for pk in due if self._held.get(pk, (0, 0.0))[1] <= now), None)
        if send_id is None:
            return None
        self._start(send_id)
        return send_id

    def _start(self, send_id: int) -> None:
        def work(reporter):
            from app.library import Library as OwnLibrary

            with OwnLibrary() as library:
                return Outbox(library).run(send_id, reporter=reporter)

        job = Job(work, "Sending")
        job.send_id = send_id
        relay = JobRelay(job, self)
        relay.finished.connect(self._ended)
        self.job, self._relay = job, relay
        log.info("outbox: running send #%s", send_id)
        relay.start()
        self.started.emit(send_id)

    @Slot(object)
    def _ended(self, job: Job) -> None:
        if job is not self.job:
            return
        self.job, self._relay = None, None
        record: SendRecord | None = job.result if job.state == State.DONE else None
        if record is not None:
            self._held.pop(job.send_id, None)
            self.message.emit(finished_message(record))
        elif job.state == State.FAILED:
            self._failed(job)
        elif job.state == State.CANCELLED and self.timer.isActive():
            record = self._record(job.send_id)
            if record is not None and record.state == "cancelled":
                self.message.emit(finished_message(record))
        self.finished.emit(job)
        self.poke()  # the next send without waiting for the timer (nothing when stopped)

    def _record(self, send_id: int) -> SendRecord | None:
        try:
            library = self._library()
            return Outbox(library).send(send_id) if library is not None else None
        except LightboxError:
            return None

    def _failed(self, job: Job) -> None:
        """The send stopped with an error of its own (not an unreachable PACS, which the outbox schedules)."""
        record = self._record(job.send_id)
        if record is None or record.state != "queued":
            return  # cancelled, claimed by another Lightbox meanwhile, or gone: nothing to hold back
        failures = self._held.get(job.send_id, (0, 0.0))[0] + 1
        delay = retry_delay(failures)
        self._held[job.send_id] = (failures, time.time() + delay)
        self.message.emit(f"Sending to {destination_name(record)} stopped: {job.error}; "
                          f"it is tried again in {wait_text(delay)}")
