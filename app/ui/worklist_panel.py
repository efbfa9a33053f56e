"""The Modality Worklist in the window: a panel (a dock) listing the day's orders from a PACS, and the order
chosen for captures, so that photos imported while it stands arrive already named.

The query is the ground floor's (app.pacs.worklist.find_worklist), run as a job off the GUI thread.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton, QTreeWidget,
    QTreeWidgetItem, QVBoxLayout, QWidget,
)

from app.dicom.summary import format_date
from app.errors import LightboxError
from app.jobs import Job, State
from app.pacs.config import DIMSE, PacsConfig, PacsConfigs
from app.ui.browser import patient_tooltip, person
from app.ui.pacs_dialogs import tone
from app.ui.query_dialog import (
    MODALITIES, DateChoice, StatusLine, config_label, fill_config_combo, row_height, start_job,
)

log = logging.getLogger(__name__)

NO_WORKLIST = ("No worklist: turn on Modality Worklist in a classic DICOM PACS configuration "
               "(PACS ▸ PACS configurations…)")


class Order:
    """The worklist entry chosen for captures. Its capture context is resolved once, so every import while it
    stands lands in the same study (each import a series of its own)."""

    def __init__(self, entry, config: PacsConfig):
        self.entry = entry
        self.config = config
        self.context = replace(entry.capture_context().resolved(), series_uid="")
        self.started = False  # the procedure step was started (or none was needed)

    @property
    def study_uid(self) -> str:
        return self.context.study_uid

    @property
    def label(self) -> str:
        """'Bailey · A123'."""
        name = self.entry.patient.animal_name or "(no name)"
        return " · ".join(x for x in (name, self.entry.accession or self.entry.requested_procedure) if x)

    def describe(self) -> str:
        e = self.entry
        what = e.requested_procedure or e.step_description
        return f"{self.label}" + (f" ({what})" if what else "")


def mwl_configs() -> tuple[list[PacsConfig], str]:
    """The configurations with Modality Worklist on, and why there are none (or "")."""
    try:
        configs = PacsConfigs.load()
    except LightboxError as exc:
        return [], str(exc)
    offered = [c for c in configs.configs if c.type == DIMSE and c.dimse.mwl]
    return offered, "" if offered else NO_WORKLIST


def time_text(date: str, time: str, today: dt.date | None = None) -> str:
    """'09:30' today, '2026-11-23 09:30' another day."""
    t = (time or "").strip().split(".")[0]
    clock = f"{t[:2]}:{t[2:4]}" if len(t) >= 4 and t[:4].isdigit() else t
    if date and date != (today or dt.date.today()).strftime("%Y%m%d"):
        return " ".join(x for x in (format_date(date), clock) if x)
    return clock or "(any time)"


class WorklistPanel(QWidget):
    """Orders from a worklist: PACS, date, modality and station filters, Refresh; "Use for captures"."""

    order_chosen = Signal(object)  # an Order
    problem = Signal(str)

    COLUMNS = ("Scheduled", "Patient", "Species", "Breed", "Owner", "Accession", "Requested procedure", "Modality")
    TIME, PATIENT, SPECIES, BREED, OWNER, ACCESSION, PROCEDURE, MODALITY = range(8)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.job: Job | None = None
        self.entries: list = []
        self.entries_config: PacsConfig | None = None
        self.current_key: tuple | None = None  # the entry in use for captures
        self._asked = False

        self.pacs = QComboBox(self)
        self.pacs.setMinimumWidth(180)
        self.dates = DateChoice(DateChoice.AROUND_TODAY, self)
        self.modality = QComboBox(self)
        self.modality.setEditable(True)
        self.modality.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.modality.addItems(MODALITIES)
        self.modality.lineEdit().setPlaceholderText("any")
        self.modality.setMinimumContentsLength(4)
        self.modality.setToolTip("Only orders for this modality")
        self.station = QLineEdit(self)
        self.station.setPlaceholderText("any station")
        self.station.setToolTip("Only orders scheduled for this station (its AE title)")
        self.station.setClearButtonEnabled(True)
        self.station.setMaximumWidth(160)
        self.station.returnPressed.connect(self.refresh)
        self.modality.lineEdit().returnPressed.connect(self.refresh)
        self.refresh_button = QPushButton("Refresh", self)
        self.refresh_button.setToolTip("Ask the worklist again")
        self.refresh_button.clicked.connect(self.refresh)

        filters = QHBoxLayout()
        filters.setContentsMargins(0, 0, 0, 0)
        for label, widget in (("PACS", self.pacs), ("Date", self.dates), ("Modality", self.modality),
                              ("Station", self.station)):
            words = QLabel(label, self)
            words.setBuddy(widget)
            filters.addWidget(words)
            filters.addWidget(widget)
            filters.addSpacing(6)
        filters.addStretch(1)
        filters.addWidget(self.refresh_button)

        self.table = QTreeWidget(self)
        self.table.setColumnCount(len(self.COLUMNS))
        self.table.setHeaderLabels(list(self.COLUMNS))
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        self.table.setAlternatingRowColors(True)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.itemActivated.connect(lambda *_: self.use_for_captures())
        header = self.table.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(self.PROCEDURE, QHeaderView.ResizeMode.Stretch)
        self.fit_columns()

        self.status = StatusLine(self)
        self.use_button = QPushButton("Use for captures", self)
        self.use_button.setToolTip("Photos (JPEG, PNG) imported from now on go into this order's study, named as the "
                                   "order says; double-click an order does the same")
        self.use_button.clicked.connect(self.use_for_captures)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.use_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)
        layout.addLayout(bottom)
        self.reload_configs()
        self._update_buttons()

    # -- configurations --------------------------------------------------------------------------------

    def reload_configs(self) -> None:
        offered, why = mwl_configs()
        self._offered = {c.id: c for c in offered}
        fill_config_combo(self.pacs, offered, "(none)")
        self.pacs.setToolTip(why or "The PACS whose worklist is shown")
        for widget in (self.dates, self.modality, self.station, self.refresh_button):
            widget.setEnabled(bool(offered))
        if why:
            self.status.say(why, "warning")
        elif not self.entries and self.job is None and self.status.text.startswith("No worklist"):
            self.status.say("")

    def config(self) -> PacsConfig | None:
        return self._offered.get(self.pacs.currentData())

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._asked and self.config() is not None:
            self.refresh()  # the first time the panel is shown: today's orders

    # -- asking -----------------------------------------------------------------------------------------

    def query(self):
        from app.pacs.worklist import WorklistQuery

        date_from, date_to = self.dates.range()
        return WorklistQuery(date_from=date_from, date_to=date_to, modality=self.modality.currentText().strip(),
                             station_aet=self.station.text().strip())

    def refresh(self) -> Job | None:
        """Ask the chosen worklist (a job); the answer replaces the list."""
        from app.pacs.worklist import find_worklist

        self.reload_configs()  # as saved now (changed in another window, or by the CLI)
        config = self.config()
        if config is None:
            return None
        self._asked = True
        if self.job is not None:
            self.job.cancel()
        query = self.query()
        job = Job(lambda reporter: find_worklist(config, query, reporter=reporter), "Worklist")
        job.config = config
        self.job = job
        self.refresh_button.setEnabled(False)
        self.status.busy(job, f"Asking {config_label(config)} for its worklist…", "Stop waiting for the worklist")
        return start_job(job, self._answered)

    @Slot(object)
    def _answered(self, job: Job) -> None:
        if job is not self.job:
            return
        self.job = None
        self.refresh_button.setEnabled(self.config() is not None)
        if job.state == State.CANCELLED:
            self.status.say("Stopped.")
            return
        if job.state != State.DONE:
            self.status.say(str(job.error), "error")
            return
        self.show_entries(job.config, job.result)

    def show_entries(self, config: PacsConfig, entries: list) -> None:
        self.entries, self.entries_config = list(entries), config
        self.table.clear()
        for entry in entries:
            self.table.addTopLevelItem(self._item(entry))
        self._mark_current()
        self.fit_columns()
        n = len(entries)
        dates = self.dates.combo.currentText().lower()
        if n:
            self.status.say(f"{n} order{'s' if n != 1 else ''} on {config.name}. Choose one, then "
                            "“Use for captures”.")
            self.table.setCurrentItem(self.table.topLevelItem(0))
        else:
            self.status.say(f"No orders on {config.name} for {dates}" + (" with these filters" if
                            self.modality.currentText().strip() or self.station.text().strip() else "") + ".")
        self._update_buttons()

    def _item(self, entry) -> QTreeWidgetItem:
        p = entry.patient
        texts = [""] * len(self.COLUMNS)
        texts[self.TIME] = time_text(entry.scheduled_date, entry.scheduled_time)
        texts[self.PATIENT] = p.animal_name or "(no name)"
        texts[self.SPECIES] = p.species
        texts[self.BREED] = p.breed
        texts[self.OWNER] = person(p.owner)
        texts[self.ACCESSION] = entry.accession
        texts[self.PROCEDURE] = entry.requested_procedure or entry.step_description
        texts[self.MODALITY] = entry.modality
        item = QTreeWidgetItem(texts)
        item.setSizeHint(0, row_height(self.table))
        tip = "\n".join(x for x in (patient_tooltip(p), f"Station: {entry.station_aet}" if entry.station_aet else "",
                                    f"Referring: {person(entry.referring_physician)}" if entry.referring_physician
                                    else "", f"Step: {entry.step_description}" if entry.step_description else "")
                        if x)
        for column in range(len(self.COLUMNS)):
            item.setToolTip(column, tip)
        return item

    def fit_columns(self) -> None:
        """Widths from what the columns hold, within reason; the requested procedure takes what is left."""
        fm = self.table.fontMetrics()
        bold = QFont(self.table.font())
        bold.setBold(True)
        wide = type(fm)(bold)  # the order in use is bold
        limits = {self.TIME: 160, self.PATIENT: 180, self.SPECIES: 130, self.BREED: 200, self.OWNER: 200,
                  self.ACCESSION: 150, self.MODALITY: 90}
        samples = {self.TIME: "● 00:00", self.PATIENT: "Bailey", self.SPECIES: "Canine",
                   self.BREED: "Golden Retriever", self.OWNER: "Hendricks, Anna", self.ACCESSION: "A2026-0042",
                   self.MODALITY: "XC"}
        items = [self.table.topLevelItem(n) for n in range(min(300, self.table.topLevelItemCount()))]
        for column, limit in limits.items():
            header = fm.horizontalAdvance(self.COLUMNS[column]) + 24
            widest = max([wide.horizontalAdvance(samples[column])]
                         + [wide.horizontalAdvance(i.text(column)) for i in items]) + 20
            self.table.setColumnWidth(column, max(header, min(widest, limit)))

    # -- choosing ---------------------------------------------------------------------------------------

    def selected_entry(self):
        items = self.table.selectedItems()
        if not items:
            return None
        row = self.table.indexOfTopLevelItem(items[0])
        return self.entries[row] if 0 <= row < len(self.entries) else None

    def select(self, accession: str) -> bool:
        for row, entry in enumerate(self.entries):
            if entry.accession == accession:
                self.table.setCurrentItem(self.table.topLevelItem(row))
                return True
        return False

    def _update_buttons(self) -> None:
        self.use_button.setEnabled(self.selected_entry() is not None)

    def use_for_captures(self) -> Order | None:
        entry = self.selected_entry()
        if entry is None or self.entries_config is None:
            return None
        order = Order(entry, self.entries_config)
        self.set_current(order)
        self.order_chosen.emit(order)
        return order

    def set_current(self, order: Order | None) -> None:
        """Mark the order in use (bold), or none."""
        e = order.entry if order is not None else None
        self.current_key = (e.accession, e.step_id, e.study_uid) if e is not None else None
        self._mark_current()

    def _mark_current(self) -> None:
        for row, entry in enumerate(self.entries):
            item = self.table.topLevelItem(row)
            on = self.current_key == (entry.accession, entry.step_id, entry.study_uid)
            font = QFont(self.table.font())
            font.setBold(on)
            for column in range(len(self.COLUMNS)):
                item.setFont(column, font)
            item.setForeground(self.TIME, QBrush(QColor(tone(self, "ok"))) if on else self.table.palette().text())
            if on:
                item.setText(self.TIME, "● " + time_text(entry.scheduled_date, entry.scheduled_time))
            else:
                item.setText(self.TIME, time_text(entry.scheduled_date, entry.scheduled_time))

    def rows(self) -> list[dict[str, str]]:
        """The list as shown, column by column (for tests and screen readers)."""
        return [{name: self.table.topLevelItem(r).text(c) for c, name in enumerate(self.COLUMNS)}
                for r in range(self.table.topLevelItemCount())]

    def stop(self) -> None:
        if self.job is not None:
            self.job.cancel()
