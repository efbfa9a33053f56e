"""Import from a PACS: the query/retrieve dialog (search form, studies expandable to series, retrieve with
progress) and the "Compare with prior" chooser.

The work is the ground floor's (app.pacs.query, app.pacs.retrieve); every search, series listing and retrieve
runs as a Job off the GUI thread, relayed here by a JobRelay that outlives the dialog (Qt drops the connection
to a deleted dialog). Errors arrive as their messages, shown in the dialog, never as tracebacks.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QCoreApplication, QDate, QSize, Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QDateEdit, QDialog, QFrame, QGridLayout, QGroupBox, QHBoxLayout, QHeaderView,
    QLabel, QLineEdit, QMessageBox, QProgressBar, QPushButton, QStackedWidget, QTreeWidget, QTreeWidgetItem,
    QVBoxLayout, QWidget,
)

from app.dicom.patient import Patient
from app.dicom.summary import format_date
from app.errors import Cancelled, LightboxError
from app.jobs import Job, State
from app.pacs.config import PacsConfig, PacsConfigs
from app.ui.browser import modalities, patient_tooltip, person
from app.ui.jobs import JobRelay
from app.ui.pacs_dialogs import badge_icon, tone

log = logging.getLogger(__name__)

MODALITIES = ("", "CR", "DX", "CT", "MR", "US", "XA", "RF", "NM", "PT", "MG", "IO", "ES", "XC", "OT", "SR")
KIND_ROLE = Qt.ItemDataRole.UserRole  # "study" | "series" | "info"
UID_ROLE = Qt.ItemDataRole.UserRole + 1
STUDY_ROLE = Qt.ItemDataRole.UserRole + 2  # the study's UID on series rows
NO_IMPORTS = "No PACS allows query/retrieve: turn it on in PACS ▸ PACS configurations…"


# -- shared pieces ------------------------------------------------------------------------------------

def importing_configs() -> tuple[PacsConfigs, list[PacsConfig], str]:
    """The store, the configurations that allow query/retrieve, and why there are none (or "")."""
    try:
        configs = PacsConfigs.load()
    except LightboxError as exc:
        return PacsConfigs(), [], str(exc)
    offered = [c for c in configs.configs if c.imports]
    return configs, offered, "" if offered else NO_IMPORTS


def start_job(job: Job, done: Callable[[Job], None], progress: Callable[[Job], None] | None = None) -> Job:
    """Run a job off the GUI thread; `done(job)` (and `progress(job)`) arrive on the GUI thread."""
    relay = JobRelay(job, QCoreApplication.instance())
    if progress is not None:
        relay.progress.connect(progress)
    relay.finished.connect(done)
    relay.finished.connect(relay.deleteLater)
    relay.start()
    return job


def _brush(color: str) -> QBrush:
    return QBrush(QColor(color))


def add_item(parent, item: QTreeWidgetItem, spanned: bool = False) -> QTreeWidgetItem:
    """Add to a tree (top level) or under an item; a spanned row's first column takes the whole width (Qt
    spans only items already in a tree)."""
    if isinstance(parent, QTreeWidgetItem):
        parent.addChild(item)
    else:
        parent.addTopLevelItem(item)
    item.setFirstColumnSpanned(spanned)
    return item


def row_height(widget: QWidget) -> QSize:
    """Rows with room to breathe (the trees have uniform row heights: the first row's counts)."""
    return QSize(0, widget.fontMetrics().height() + 10)


def config_label(config: PacsConfig) -> str:
    return f"{config.name} ({config.aet})"


def fill_config_combo(combo: QComboBox, configs: list[PacsConfig], empty: str) -> None:
    """The configurations with their type badges; one disabled line saying why when there are none."""
    keep = combo.currentData()
    combo.clear()
    for config in configs:
        combo.addItem(badge_icon(config.type, combo.font()), config_label(config), config.id)
    if not configs:
        combo.addItem(empty, None)
    index = combo.findData(keep) if keep else -1
    combo.setCurrentIndex(max(0, index))
    combo.setEnabled(bool(configs))


class DateChoice(QWidget):
    """A date range as quick choices (today, last 7 days, any date ...) or two dates ("Between…")."""

    changed = Signal()
    BETWEEN = "between"
    PAST = (("any", "Any date"), ("today", "Today"), ("yesterday", "Yesterday"), ("7", "Last 7 days"),
            ("30", "Last 30 days"), ("365", "Last 12 months"), (BETWEEN, "Between…"))
    AROUND_TODAY = (("today", "Today"), ("tomorrow", "Tomorrow"), ("yesterday", "Yesterday"),
                    ("next7", "Next 7 days"), ("any", "Any date"), (BETWEEN, "Between…"))

    def __init__(self, choices=PAST, parent=None):
        super().__init__(parent)
        self.combo = QComboBox(self)
        for key, text in choices:
            self.combo.addItem(text, key)
        today = QDate.currentDate()
        self.first = QDateEdit(today.addDays(-7), self)
        self.last = QDateEdit(today, self)
        for edit in (self.first, self.last):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.dateChanged.connect(lambda _d: self.changed.emit())
        self.dash = QLabel("–", self)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo)
        row.addWidget(self.first)
        row.addWidget(self.dash)
        row.addWidget(self.last)
        row.addStretch(1)
        self.combo.currentIndexChanged.connect(self._choice_changed)
        self._choice_changed()

    @property
    def choice(self) -> str:
        return self.combo.currentData()

    def set_choice(self, key: str) -> None:
        self.combo.setCurrentIndex(max(0, self.combo.findData(key)))

    def set_range(self, first: dt.date, last: dt.date) -> None:
        self.set_choice(self.BETWEEN)
        self.first.setDate(QDate(first.year, first.month, first.day))
        self.last.setDate(QDate(last.year, last.month, last.day))

    def _choice_changed(self, *_args) -> None:
        between = self.choice == self.BETWEEN
        for widget in (self.first, self.dash, self.last):
            widget.setVisible(between)
        self.changed.emit()

    def range(self, today: dt.date | None = None) -> tuple[str, str]:
        """(from, to) as YYYYMMDD, inclusive; ("", "") for any date."""
        today = today or dt.date.today()
        key = self.choice
        day = dt.timedelta(days=1)
        if key == self.BETWEEN:
            a, b = (d.toPython() for d in (self.first.date(), self.last.date()))
            a, b = min(a, b), max(a, b)
        elif key == "any":
            return "", ""
        elif key == "today":
            a = b = today
        elif key == "yesterday":
            a = b = today - day
        elif key == "tomorrow":
            a = b = today + day
        elif key == "next7":
            a, b = today, today + 6 * day
        else:  # the last N days, today included
            a, b = today - (int(key) - 1) * day, today
        return a.strftime("%Y%m%d"), b.strftime("%Y%m%d")


class StatusLine(QWidget):
    """What the dialog is doing: a busy or progress bar, one line of words, a Cancel button for the job."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.job: Job | None = None
        self.bar = QProgressBar(self)
        self.bar.setFixedWidth(160)
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(self.fontMetrics().height())
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setAutoDefault(False)
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bar)
        row.addWidget(self.label, 1)
        row.addWidget(self.cancel_button)
        self.say("")

    @property
    def text(self) -> str:
        return self.label.text()

    def busy(self, job: Job, text: str, cancel_tip: str = "") -> None:
        self.job = job
        self.bar.setRange(0, 0)
        self.bar.show()
        self.cancel_button.setToolTip(cancel_tip)
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()
        self._set(text, "muted")

    def progress(self, job: Job) -> None:
        if job is not self.job:
            return
        p = job.progress
        if p.total:
            self.bar.setRange(0, int(p.total))
            self.bar.setValue(int(p.done))
        if p.message:
            self._set(p.message, "muted")

    def say(self, text: str, kind: str = "muted") -> None:
        """Idle, with a message (kind: muted, ok, warning, error)."""
        self.job = None
        self.bar.hide()
        self.cancel_button.hide()
        self._set(text, kind)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.cancel_button.setEnabled(False)
            self._set("Stopping…", "muted")

    def _set(self, text: str, kind: str) -> None:
        mark = {"error": "✖  ", "warning": "⚠  "}.get(kind, "")
        self.label.setText(mark + text if text else "")
        self.label.setStyleSheet(f"color: {tone(self, kind)};" if kind != "muted" or text else "")


class ReportPanel(QFrame):
    """The outcome of a retrieve: a bold headline and the details, framed in the outcome's colour."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("report")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.headline = QLabel(self)
        self.headline.setWordWrap(True)
        self.headline.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bold = QFont(self.headline.font())
        bold.setBold(True)
        self.headline.setFont(bold)
        self.details = QLabel(self)
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_button = QPushButton("Open in viewer", self)
        self.open_button.setAutoDefault(False)
        words = QVBoxLayout()
        words.addWidget(self.headline)
        words.addWidget(self.details)
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 6, 10, 6)
        row.addLayout(words, 1)
        row.addWidget(self.open_button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.hide()

    def show_report(self, kind: str, headline: str, details: list[str], can_open: bool) -> None:
        color = tone(self, kind)
        mark = {"ok": "✔", "warning": "⚠", "error": "✖"}[kind]
        self.headline.setText(f"{mark}  {headline}")
        self.headline.setStyleSheet(f"color: {color};")
        self.details.setText("\n".join(details))
        self.details.setVisible(bool(details))
        self.open_button.setVisible(can_open)
        self.setStyleSheet(f"QFrame#report {{ border: 1px solid {color}; border-left: 4px solid {color}; "
                           "border-radius: 3px; }")
        self.show()

    @property
    def text(self) -> str:
        if not self.isVisibleTo(self.parentWidget()):
            return ""
        return "\n".join([self.headline.text()] + ([self.details.text()] if self.details.isVisibleTo(self) else []))


# -- retrieving -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One thing to retrieve: a study, or one series of it."""
    study_uid: str
    series_uid: str = ""
    label: str = ""  # "Bailey · 2026-11-02 · Thorax" (a series adds its own words)


class _Scoped:
    """A reporter for one of several retrieves: its messages say which one."""

    def __init__(self, reporter, prefix: str):
        self._reporter, self._prefix = reporter, prefix

    def update(self, done=None, total=None, message=None):
        self._reporter.update(done, total, self._prefix + message if message else None)

    def check(self) -> None:
        self._reporter.check()

    @property
    def cancelled(self) -> bool:
        return self._reporter.cancelled


def retrieve_job(configs: PacsConfigs, config: PacsConfig, targets: list[Target]) -> Job:
    """Retrieve each target in turn; job.result (and job.outcomes, filled as they end, so a cancelled job still
    says what arrived) is [(Target, RetrieveResult or the LightboxError that stopped that one)]."""
    from app.pacs.retrieve import retrieve

    outcomes: list[tuple[Target, object]] = []

    def work(reporter):
        secret = configs.secret(config)
        for n, target in enumerate(targets):
            prefix = f"{target.label} ({n + 1} of {len(targets)}): " if len(targets) > 1 else ""
            reporter.update(0, None, f"{prefix}asking {config.name} …")
            try:
                result = retrieve(config, target.study_uid, series_uid=target.series_uid,
                                  reporter=_Scoped(reporter, prefix), secret=secret)
            except Cancelled:
                raise
            except LightboxError as exc:
                outcomes.append((target, exc))
                continue
            outcomes.append((target, result))
        return outcomes

    job = Job(work, "Retrieving")
    job.outcomes = outcomes
    job.config = config
    return job


def retrieve_report(job: Job) -> tuple[str, str, list[str], list]:
    """(kind, headline, details, results) of a finished retrieve job, in words for the dialog."""
    outcomes = job.result if job.state == State.DONE else getattr(job, "outcomes", [])
    results = [r for _t, r in outcomes if not isinstance(r, LightboxError)]
    errors = [(t, e) for t, e in outcomes if isinstance(e, LightboxError)]
    name = job.config.name
    details: list[str] = []
    several = len(outcomes) > 1 or job.state == State.CANCELLED
    for target, outcome in outcomes:
        if isinstance(outcome, LightboxError):
            details.append(f"{target.label}: {_sentence(str(outcome))}")
            continue
        if several:
            details.append(f"{target.label}: {outcome.summary()}")
        details += [f"• {_sentence(note)}" for note in outcome.notes]
        if outcome.failed and not outcome.notes:
            details.append(f"• {name} could not send {outcome.failed} instance{'s' if outcome.failed != 1 else ''}.")
        for entry in outcome.imported.failed[:5]:
            details.append(f"• Not imported: {entry.error}")
        if outcome.imported.stopped:
            details.append(f"• {_sentence(outcome.imported.stopped)}")
    if job.state == State.CANCELLED:
        return "warning", "Retrieve cancelled; what arrived before stays in the library", details, results
    if job.state != State.DONE:
        return "error", f"The retrieve did not finish: {job.error}", details, results
    if not results:
        if len(errors) == 1:
            return "error", f"Nothing was retrieved from {name}: {_sentence(str(errors[0][1]))}", [], results
        return "error", f"Nothing was retrieved from {name}", details, results
    if len(outcomes) == 1:
        headline = f"Retrieved {outcomes[0][0].label} from {name}: {results[0].summary()}"
    else:
        imported = sum(r.imported.count("imported") for r in results)
        headline = f"Retrieved {len(results)} of {len(outcomes)} from {name}: {imported} imported"
    ok = not errors and all(r.ok for r in results)
    return ("ok" if ok else "warning"), headline, details, results


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] if text else text


def study_label(patient: Patient, date: str, description: str) -> str:
    """'Bailey · 2026-11-02 · Thorax'."""
    return " · ".join(x for x in (patient.animal_name or "(no name)", format_date(date), description) if x)


# -- the query/retrieve dialog --------------------------------------------------------------------------

class QueryDialog(QDialog):
    """Search a PACS (any of name, ID, owner, species, accession, modality, dates, description), see the
    studies (expand one for its series), retrieve the chosen ones into the library."""

    retrieved = Signal(object)  # [RetrieveResult] of a retrieve that ended (the library may have changed)
    open_requested = Signal(str)  # a study UID to show in the viewer

    COLUMNS = ("Patient", "ID", "Species", "Breed", "Owner", "Date", "Modalities", "Description", "Accession",
               "Series", "Images", "In library")
    (PATIENT, ID, SPECIES, BREED, OWNER, DATE, MODALITIES, DESCRIPTION, ACCESSION, SERIES, IMAGES,
     HERE) = range(12)

    def __init__(self, parent=None, library: Callable[[], object] | None = None):
        super().__init__(parent)
        self.setWindowTitle("Query / Retrieve")
        self._library = library or (lambda: None)
        self.search_job: Job | None = None
        self.retrieve_job: Job | None = None
        self._series_jobs: dict[str, Job] = {}
        self.results_config: PacsConfig | None = None  # the PACS the results come from
        self.studies: list = []  # FoundStudy, as shown
        self._open_uid = ""
        self._results_message = ""  # what the status line says about the results shown

        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(QLabel("PACS", self))
        self.pacs = QComboBox(self)
        self.pacs.setMinimumWidth(320)
        top.addWidget(self.pacs)
        top.addStretch(1)
        layout.addLayout(top)

        self.form = QGroupBox("Search", self)
        grid = QGridLayout(self.form)
        grid.setHorizontalSpacing(10)
        self.fields: dict[str, QWidget] = {}
        for row, col, key, label, hint in (
                (0, 0, "patient_name", "Patient name", "animal or owner^animal; * and ? allowed"),
                (0, 1, "patient_id", "Patient ID", ""), (0, 2, "owner", "Owner", ""),
                (1, 0, "species", "Species", "e.g. canine"), (1, 1, "accession", "Accession", ""),
                (2, 2, "description", "Description", "e.g. thorax")):
            edit = QLineEdit(self.form)
            edit.setPlaceholderText(hint)
            edit.setClearButtonEnabled(True)
            edit.returnPressed.connect(self.search)
            self._place(grid, row, col, label, edit)
            self.fields[key] = edit
        self.modality = QComboBox(self.form)
        self.modality.setEditable(True)
        self.modality.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.modality.addItems(MODALITIES)
        self.modality.lineEdit().setPlaceholderText("any")
        self.modality.lineEdit().returnPressed.connect(self.search)
        self._place(grid, 1, 2, "Modality", self.modality)
        self.dates = DateChoice(DateChoice.PAST, self.form)
        self._place(grid, 2, 0, "Study date", self.dates, span=3)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.clear_button = QPushButton("Clear", self.form)
        self.clear_button.clicked.connect(self.clear_form)
        self.search_button = QPushButton("Search", self.form)
        self.search_button.setToolTip("Ask the PACS (Enter in any field)")
        self.search_button.clicked.connect(self.search)
        buttons.addWidget(self.clear_button)
        buttons.addWidget(self.search_button)
        grid.addLayout(buttons, 3, 0, 1, 6)
        for column in (1, 3, 5):
            grid.setColumnStretch(column, 1)
        layout.addWidget(self.form)

        self.status = StatusLine(self)
        layout.addWidget(self.status)

        self.tree = QTreeWidget(self)
        self.tree.setColumnCount(len(self.COLUMNS))
        self.tree.setHeaderLabels(list(self.COLUMNS))
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.tree.itemExpanded.connect(self._expanded)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(self.DESCRIPTION, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(40)
        for column in (self.SERIES, self.IMAGES):
            self.tree.headerItem().setTextAlignment(column, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.tree.headerItem().setTextAlignment(self.HERE, Qt.AlignmentFlag.AlignCenter)
        self.placeholder = QLabel(self)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setStyleSheet(f"color: {tone(self, 'muted')}; font-size: 13pt; padding: 30px;")
        self.results = QStackedWidget(self)
        self.results.addWidget(self.tree)
        self.results.addWidget(self.placeholder)
        layout.addWidget(self.results, 1)

        self.report = ReportPanel(self)
        self.report.open_button.clicked.connect(self._open_retrieved)
        layout.addWidget(self.report)

        bottom = QHBoxLayout()
        self.retrieve_button = QPushButton("Retrieve", self)
        self.retrieve_button.setToolTip("Bring the chosen studies or series into the library")
        self.retrieve_button.clicked.connect(self.retrieve)
        self.close_button = QPushButton("Close", self)
        self.close_button.clicked.connect(self.reject)
        bottom.addWidget(self.retrieve_button)
        bottom.addStretch(1)
        bottom.addWidget(self.close_button)
        layout.addLayout(bottom)
        for button in self.findChildren(QPushButton):
            button.setAutoDefault(False)  # Enter searches (keyPressEvent), it never presses a button

        self.reload_configs()
        self._show_placeholder("Fill in any of the fields and press Enter to search the PACS.")
        self._update_buttons()
        self.resize(1240, 720)

    @staticmethod
    def _place(grid: QGridLayout, row: int, col: int, label: str, widget: QWidget, span: int = 1) -> None:
        words = QLabel(label, widget.parentWidget())
        words.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        words.setBuddy(widget)
        grid.addWidget(words, row, col * 2)
        grid.addWidget(widget, row, col * 2 + 1, 1, span * 2 - 1)

    # -- configurations and the form -----------------------------------------------------------------

    def reload_configs(self) -> None:
        self.configs, offered, why = importing_configs()
        self._offered = {c.id: c for c in offered}
        fill_config_combo(self.pacs, offered, why)
        self.form.setEnabled(bool(offered))
        if why:
            self.status.say(why, "warning")

    def config(self) -> PacsConfig | None:
        return self._offered.get(self.pacs.currentData())

    def choose_config(self, aet: str) -> None:
        for n in range(self.pacs.count()):
            config = self._offered.get(self.pacs.itemData(n))
            if config is not None and config.aet == aet:
                self.pacs.setCurrentIndex(n)

    def query(self):
        """The form as a StudyQuery."""
        from app.pacs.query import StudyQuery

        date_from, date_to = self.dates.range()
        values = {key: edit.text().strip() for key, edit in self.fields.items()}
        return StudyQuery(modality=self.modality.currentText().strip().upper(), date_from=date_from,
                          date_to=date_to, **values)

    def set_fields(self, **values) -> None:
        for key, value in values.items():
            if key == "modality":
                self.modality.setCurrentText(value)
            else:
                self.fields[key].setText(value)

    def clear_form(self) -> None:
        for edit in self.fields.values():
            edit.clear()
        self.modality.setCurrentIndex(0)
        self.dates.set_choice("any")
        self.fields["patient_name"].setFocus()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            focus = self.focusWidget()
            typed = [*self.fields.values(), self.modality.lineEdit()]  # these search on returnPressed
            if focus is not None and self.form.isAncestorOf(focus) and focus not in typed:
                self.search()  # the date choice
            return  # Enter never closes the dialog
        super().keyPressEvent(event)

    # -- searching --------------------------------------------------------------------------------------

    def search(self) -> Job | None:
        """Ask the chosen PACS in a job; a search under way is replaced."""
        from app.pacs.query import find_studies

        config = self.config()
        if config is None:
            return None
        if self.search_job is not None:
            self.search_job.cancel()
        query, configs = self.query(), self.configs

        def work(reporter):
            reporter.update(message=f"Searching {config.name} …")
            return find_studies(config, query, secret=configs.secret(config), reporter=reporter)

        job = Job(work, "Searching")
        job.config = config
        self.search_job = job
        self.status.busy(job, f"Searching {config_label(config)} …", "Stop the search")
        self.search_button.setEnabled(False)
        return start_job(job, self._searched)

    @Slot(object)
    def _searched(self, job: Job) -> None:
        if job is not self.search_job:
            return  # replaced by a newer search
        self.search_job = None
        self.search_button.setEnabled(True)
        config = job.config
        if job.state == State.CANCELLED:
            self.status.say("Search stopped.")
            return
        if job.state != State.DONE:
            self.status.say(str(job.error), "error")
            return
        self.show_studies(config, job.result)

    def show_studies(self, config: PacsConfig, studies: list) -> None:
        self.results_config = config
        self.studies = list(studies)
        for uid, series_job in list(self._series_jobs.items()):
            series_job.cancel()
        self._series_jobs.clear()
        here = self._in_library([s.uid for s in studies])
        self.tree.clear()
        for study in studies:
            add_item(self.tree, self._study_item(study, study.uid in here))
        n = len(studies)
        from app.pacs.query import MAX_RESULTS

        if not studies:
            self._show_placeholder(f"No studies on {config.name} match.")
            self.status.say(f"No studies found on {config_label(config)}.")
        else:
            self.results.setCurrentWidget(self.tree)
            more = " (the first ones: narrow the search to see others)" if n >= MAX_RESULTS else ""
            self._results_message = (f"{n} stud{'y' if n == 1 else 'ies'} on {config_label(config)}{more}. "
                                     "Expand one for its series; choose studies or series, then Retrieve.")
            self.status.say(self._results_message)
            self.tree.setCurrentItem(self.tree.topLevelItem(0))
            self.fit_columns()
        self._update_buttons()

    def _in_library(self, uids: list[str]) -> set[str]:
        library = self._library()
        if library is None:
            return set()
        found = set()
        for uid in uids:
            try:
                library.study(uid)
                found.add(uid)
            except LightboxError:
                continue
        return found

    def _study_item(self, study, here: bool) -> QTreeWidgetItem:
        p = study.patient
        texts = [""] * len(self.COLUMNS)
        texts[self.PATIENT] = p.animal_name or "(no name)"
        texts[self.ID] = p.id
        texts[self.SPECIES] = p.species
        texts[self.BREED] = p.breed
        texts[self.OWNER] = person(p.owner)
        texts[self.DATE] = format_date(study.date)
        texts[self.MODALITIES] = modalities(study.modalities)
        texts[self.DESCRIPTION] = study.description
        texts[self.ACCESSION] = study.accession
        texts[self.SERIES] = "" if study.series_count is None else str(study.series_count)
        texts[self.IMAGES] = "" if study.instance_count is None else str(study.instance_count)
        texts[self.HERE] = "✓" if here else ""
        item = QTreeWidgetItem(texts)
        item.setData(0, KIND_ROLE, "study")
        item.setData(0, UID_ROLE, study.uid)
        item.setData(0, STUDY_ROLE, study.uid)
        item.label = study_label(p, study.date, study.description)
        bold = QFont(self.tree.font())
        bold.setBold(True)
        item.setFont(self.PATIENT, bold)
        tip = patient_tooltip(p)
        for column in range(self.DATE):
            item.setToolTip(column, tip)
        item.setToolTip(self.DESCRIPTION, study.description)
        item.setToolTip(self.HERE, "Already in the library" if here else "")
        for column in (self.SERIES, self.IMAGES):
            item.setTextAlignment(column, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        item.setTextAlignment(self.HERE, Qt.AlignmentFlag.AlignCenter)
        item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
        item.setSizeHint(0, row_height(self.tree))
        return item

    def fit_columns(self) -> None:
        """Widths from what the columns hold, within reason; Description takes what is left."""
        fm = self.tree.fontMetrics()
        limits = {self.PATIENT: 200, self.ID: 150, self.SPECIES: 130, self.BREED: 200, self.OWNER: 200,
                  self.DATE: 110, self.MODALITIES: 110, self.ACCESSION: 140, self.SERIES: 70, self.IMAGES: 70,
                  self.HERE: 100}
        items = [self.tree.topLevelItem(n) for n in range(min(300, self.tree.topLevelItemCount()))]
        for column, limit in limits.items():
            header = fm.horizontalAdvance(self.COLUMNS[column]) + (40 if column == self.HERE else 28)
            extra = 44 if column == self.PATIENT else 20  # the branch indicator
            widest = max((fm.horizontalAdvance(i.text(column)) * (1.1 if column == self.PATIENT else 1)
                          for i in items), default=0) + extra
            self.tree.setColumnWidth(column, int(max(header, min(widest, limit))))

    def _show_placeholder(self, text: str) -> None:
        self.placeholder.setText(text)
        self.results.setCurrentWidget(self.placeholder)

    # -- series -----------------------------------------------------------------------------------------

    def study_item(self, uid: str) -> QTreeWidgetItem | None:
        for n in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(n)
            if item.data(0, UID_ROLE) == uid:
                return item
        return None

    @Slot(QTreeWidgetItem)
    def _expanded(self, item: QTreeWidgetItem) -> None:
        if item.data(0, KIND_ROLE) == "study" and not getattr(item, "loaded", False):
            self.load_series(item.data(0, UID_ROLE))

    def load_series(self, study_uid: str) -> Job | None:
        """List a study's series (a job) as its child rows."""
        from app.pacs.query import find_series

        item = self.study_item(study_uid)
        config = self.results_config
        if item is None or config is None or study_uid in self._series_jobs:
            return self._series_jobs.get(study_uid)
        item.loaded = True
        item.takeChildren()
        add_item(item, self._info_item("Asking for the series…"), True)
        item.setExpanded(True)
        configs = self.configs

        def work(reporter):
            return find_series(config, study_uid, secret=configs.secret(config), reporter=reporter)

        job = Job(work, "Listing series")
        job.study_uid = study_uid
        self._series_jobs[study_uid] = job
        return start_job(job, self._series_listed)

    @Slot(object)
    def _series_listed(self, job: Job) -> None:
        if self._series_jobs.get(job.study_uid) is not job:
            return
        del self._series_jobs[job.study_uid]
        item = self.study_item(job.study_uid)
        if item is None:
            return
        item.takeChildren()
        if job.state != State.DONE:
            item.loaded = False  # collapse and expand again to retry
            add_item(item, self._info_item(str(job.error) if job.state == State.FAILED else "Stopped.", "error"),
                     True)
            return
        if not job.result:
            add_item(item, self._info_item("The PACS lists no series for this study."), True)
        for series in job.result:
            add_item(item, self._series_item(item, series), True)
        self._update_buttons()

    def _info_item(self, text: str, kind: str = "muted") -> QTreeWidgetItem:
        item = QTreeWidgetItem([text])
        item.setData(0, KIND_ROLE, "info")
        item.setFlags(Qt.ItemFlag.ItemIsEnabled)
        item.setForeground(0, _brush(tone(self, kind)))
        return item

    def _series_item(self, parent: QTreeWidgetItem, series) -> QTreeWidgetItem:
        n = series.instance_count
        words = [f"Series {series.number}" if series.number is not None else "Series", series.modality,
                 series.description or "(no description)", series.body_part.title() if series.body_part else "",
                 "" if n is None else f"{n} image{'s' if n != 1 else ''}"]
        item = QTreeWidgetItem([" · ".join(w for w in words if w)])
        item.setData(0, KIND_ROLE, "series")
        item.setData(0, UID_ROLE, series.uid)
        item.setData(0, STUDY_ROLE, parent.data(0, UID_ROLE))
        item.setToolTip(0, f"Series UID {series.uid}")
        item.label = f"{parent.label} · {series.description or series.modality or 'series'}"
        return item

    # -- retrieving -------------------------------------------------------------------------------------

    def targets(self) -> list[Target]:
        """The chosen studies, and the chosen series of studies not chosen whole."""
        chosen = self.tree.selectedItems()
        studies = {i.data(0, UID_ROLE) for i in chosen if i.data(0, KIND_ROLE) == "study"}
        out = []
        for item in chosen:
            kind = item.data(0, KIND_ROLE)
            if kind == "study":
                out.append(Target(item.data(0, UID_ROLE), "", item.label))
            elif kind == "series" and item.data(0, STUDY_ROLE) not in studies:
                out.append(Target(item.data(0, STUDY_ROLE), item.data(0, UID_ROLE), item.label))
        return out

    def _update_buttons(self) -> None:
        targets = self.targets() if self.results_config is not None else []
        busy = self.retrieve_job is not None
        self.retrieve_button.setEnabled(bool(targets) and not busy)
        series = [t for t in targets if t.series_uid]
        if len(targets) > 1:
            self.retrieve_button.setText(f"Retrieve {len(targets)} " + ("studies" if not series else "items"))
        else:
            self.retrieve_button.setText("Retrieve series" if series else "Retrieve")

    def retrieve(self) -> Job | None:
        """Bring the chosen studies or series into the library (a job, progress in instances, cancel)."""
        targets = self.targets()
        config = self.results_config
        if not targets or config is None or self.retrieve_job is not None:
            return None
        job = retrieve_job(self.configs, config, targets)
        self.retrieve_job = job
        what = targets[0].label if len(targets) == 1 else f"{len(targets)} items"
        self.status.busy(job, f"Retrieving {what} from {config.name} …",
                         "Stop the retrieve: what arrived stays in the library")
        self.report.hide()
        self._update_buttons()
        return start_job(job, self._retrieved, self.status.progress)

    @Slot(object)
    def _retrieved(self, job: Job) -> None:
        self.retrieve_job = None
        kind, headline, details, results = retrieve_report(job)
        uids = [uid for r in results for uid in r.study_uids]
        self._open_uid = uids[0] if uids else ""
        self.status.say(self._results_message)
        self.report.show_report(kind, headline, details, bool(self._open_uid) and job.state == State.DONE)
        here = set(uids)
        for n in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(n)
            if item.data(0, UID_ROLE) in here:
                item.setText(self.HERE, "✓")
        self.retrieved.emit(results)
        self._update_buttons()

    def _open_retrieved(self) -> None:
        if self._open_uid:
            self.open_requested.emit(self._open_uid)

    @property
    def busy(self) -> bool:
        return self.search_job is not None or self.retrieve_job is not None or bool(self._series_jobs)

    def done(self, code: int) -> None:
        """Closing stops the search; a retrieve under way is stopped only once the user agrees."""
        if self.retrieve_job is not None:
            answer = QMessageBox.question(
                self, "Stop the retrieve?", "A retrieve is under way. Stop it? What arrived stays in the library.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return
            self.retrieve_job.cancel()
        for job in [self.search_job, *self._series_jobs.values()]:
            if job is not None:
                job.cancel()
        super().done(code)


# -- compare with prior ---------------------------------------------------------------------------------

class PriorDialog(QDialog):
    """The same patient's other studies: the library's first, then those the PACS configurations that allow
    query know of (searched in a job). Choosing one on a PACS retrieves it first."""

    chosen = Signal(str)  # the prior's study UID, in the library
    retrieved = Signal(object)  # [RetrieveResult]

    COLUMNS = ("Date", "Modalities", "Description", "Images", "Accession")
    DATE, MODALITIES, DESCRIPTION, IMAGES, ACCESSION = range(5)

    def __init__(self, patient: Patient, study_uid: str, study_date: str, library_priors: list,
                 parent=None):
        super().__init__(parent)
        self.patient, self.study_uid, self.study_date = patient, study_uid, study_date
        self.setWindowTitle("Compare with prior")
        self.search_job: Job | None = None
        self.retrieve_job: Job | None = None
        self.configs, self.offered, self.why = importing_configs()
        self._pacs_groups: dict[str, QTreeWidgetItem] = {}

        layout = QVBoxLayout(self)
        who = ", ".join(x for x in (patient.species_breed, f"owner {person(patient.owner)}" if patient.owner else "",
                                    f"ID {patient.id}" if patient.id else "") if x)
        heading = QLabel(f"<b>Other studies of {_html(patient.animal_name or '(no name)')}</b>"
                         + (f" <span style='color:{tone(self, 'muted')}'>({_html(who)})</span>" if who else ""), self)
        heading.setWordWrap(True)
        layout.addWidget(heading)
        hint = QLabel("Choose one to show beside the open study, each with its own window/level.", self)
        hint.setStyleSheet(f"color: {tone(self, 'muted')};")
        layout.addWidget(hint)

        self.tree = QTreeWidget(self)
        self.tree.setColumnCount(len(self.COLUMNS))
        self.tree.setHeaderLabels(list(self.COLUMNS))
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        self.tree.itemActivated.connect(lambda item, _col: self.choose() if _study(item) else None)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(self.DESCRIPTION, QHeaderView.ResizeMode.Stretch)
        fm = self.fontMetrics()
        for column, sample in ((self.DATE, "2026-11-02  "), (self.MODALITIES, "CT, DX, SR"),
                               (self.IMAGES, "1234 images"), (self.ACCESSION, "A2026-00042")):
            self.tree.setColumnWidth(column, fm.horizontalAdvance(sample) + 40)
        layout.addWidget(self.tree, 1)

        self.library_group = self._group("In the library")
        for study in library_priors:
            add_item(self.library_group, self._study_item(study, "library", study.instance_count))
        if not library_priors:
            add_item(self.library_group, self._note("No other study of this patient in the library."), True)
        self.library_group.setExpanded(True)

        self.status = StatusLine(self)
        layout.addWidget(self.status)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.compare_button = QPushButton("Compare", self)
        self.compare_button.setToolTip("Show the chosen study beside the open one (retrieved first if on a PACS)")
        self.compare_button.clicked.connect(self.choose)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.reject)
        buttons.addWidget(self.compare_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        for button in self.findChildren(QPushButton):
            button.setAutoDefault(False)
        self.compare_button.setDefault(True)

        first = self.library_group.child(0)
        if _study(first):
            self.tree.setCurrentItem(first)
        self._update_buttons()
        self.resize(820, 480)

    def _group(self, title: str) -> QTreeWidgetItem:
        item = QTreeWidgetItem([title])
        bold = QFont(self.tree.font())
        bold.setBold(True)
        item.setFont(0, bold)
        item.setFlags(Qt.ItemFlag.ItemIsEnabled)
        item.setSizeHint(0, row_height(self.tree))
        return add_item(self.tree, item, True)

    def _note(self, text: str, kind: str = "muted") -> QTreeWidgetItem:
        item = QTreeWidgetItem([text])
        item.setFlags(Qt.ItemFlag.ItemIsEnabled)
        item.setForeground(0, _brush(tone(self, kind)))
        return item

    def _study_item(self, study, where: str, images) -> QTreeWidgetItem:
        n = images
        item = QTreeWidgetItem([format_date(study.date) or "(no date)", modalities(study.modalities),
                                study.description, "" if n is None else f"{n} image{'s' if n != 1 else ''}",
                                study.accession])
        item.setData(0, KIND_ROLE, where)  # "library" or a configuration's id
        item.setData(0, UID_ROLE, study.uid)
        item.setTextAlignment(self.IMAGES, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        item.label = study_label(study.patient, study.date, study.description)
        return item

    def rows(self) -> list[tuple[str, str, str]]:
        """(group, date, description) of every study listed, in order."""
        out = []
        for g in range(self.tree.topLevelItemCount()):
            group = self.tree.topLevelItem(g)
            for c in range(group.childCount()):
                child = group.child(c)
                if _study(child):
                    out.append((group.text(0), child.text(self.DATE), child.text(self.DESCRIPTION)))
        return out

    def select(self, uid: str) -> bool:
        for g in range(self.tree.topLevelItemCount()):
            group = self.tree.topLevelItem(g)
            for c in range(group.childCount()):
                if group.child(c).data(0, UID_ROLE) == uid:
                    self.tree.setCurrentItem(group.child(c))
                    return True
        return False

    # -- the PACS --------------------------------------------------------------------------------------

    def search_pacs(self) -> Job | None:
        """Ask every configuration that allows query for this animal's earlier studies (one job)."""
        from app.pacs.query import find_priors

        if not self.offered:
            self.status.say(self.why)
            return None
        known = {self.study_uid} | {self.library_group.child(c).data(0, UID_ROLE)
                                    for c in range(self.library_group.childCount())}
        known.discard(None)
        for config in self.offered:
            group = self._group(f"On {config_label(config)}")
            add_item(group, self._note("Searching…"), True)
            group.setExpanded(True)
            self._pacs_groups[config.id] = group
        configs, offered, patient, before = self.configs, list(self.offered), self.patient, self.study_date

        def work(reporter):
            found: dict[str, object] = {}
            seen = set(known)
            for n, config in enumerate(offered):
                reporter.update(n, len(offered), f"Asking {config.name} …")
                try:
                    studies = find_priors(config, patient, before=before, exclude=seen,
                                          secret=configs.secret(config), reporter=reporter)
                except Cancelled:
                    raise
                except LightboxError as exc:
                    found[config.id] = exc
                    continue
                found[config.id] = studies
                seen |= {s.uid for s in studies}
            return found

        job = Job(work, "Finding priors")
        self.search_job = job
        self.status.busy(job, "Asking the PACS for earlier studies…", "Stop asking the PACS")
        return start_job(job, self._searched, self.status.progress)

    @Slot(object)
    def _searched(self, job: Job) -> None:
        self.search_job = None
        found = job.result if job.state == State.DONE else {}
        total = 0
        for config in self.offered:
            group = self._pacs_groups[config.id]
            group.takeChildren()
            answer = found.get(config.id)
            if isinstance(answer, LightboxError):
                add_item(group, self._note(_sentence(str(answer)), "error"), True)
            elif answer is None:
                add_item(group, self._note("Not asked (stopped)." if job.state == State.CANCELLED else
                                           f"Not asked: {job.error}", "warning"), True)
            elif not answer:
                add_item(group, self._note("No earlier study there that is not in the library already."), True)
            else:
                for study in answer:
                    add_item(group, self._study_item(study, config.id, study.instance_count))
                total += len(answer)
        self.status.say(f"{total} more on the PACS." if total else "")
        if self.tree.currentItem() is None or not _study(self.tree.currentItem()):
            for config in self.offered:
                child = self._pacs_groups[config.id].child(0)
                if _study(child):
                    self.tree.setCurrentItem(child)
                    break
        self._update_buttons()

    # -- choosing --------------------------------------------------------------------------------------

    def _update_buttons(self) -> None:
        item = self.tree.currentItem()
        ok = _study(item) and item.isSelected() and self.retrieve_job is None
        self.compare_button.setEnabled(bool(ok))
        on_pacs = ok and item.data(0, KIND_ROLE) != "library"
        self.compare_button.setText("Retrieve and compare" if on_pacs else "Compare")

    def choose(self) -> Job | None:
        """Compare with the chosen study: at once from the library; from a PACS after retrieving it."""
        item = self.tree.currentItem()
        if not _study(item) or self.retrieve_job is not None:
            return None
        uid, where = item.data(0, UID_ROLE), item.data(0, KIND_ROLE)
        if where == "library":
            self.chosen.emit(uid)
            self.accept()
            return None
        config = next(c for c in self.offered if c.id == where)
        job = retrieve_job(self.configs, config, [Target(uid, "", item.label)])
        job.study_uid = uid
        self.retrieve_job = job
        self.status.busy(job, f"Retrieving {item.label} from {config.name} …",
                         "Stop the retrieve: what arrived stays in the library")
        self._update_buttons()
        return start_job(job, self._retrieved, self.status.progress)

    @Slot(object)
    def _retrieved(self, job: Job) -> None:
        self.retrieve_job = None
        kind, headline, details, results = retrieve_report(job)
        self.retrieved.emit(results)
        got = job.state == State.DONE and any(job.study_uid in r.study_uids for r in results)
        if got:
            self.chosen.emit(job.study_uid)
            self.accept()
            return
        self.status.say(" ".join([headline, *details[:2]]), "error" if kind == "error" else "warning")
        self._update_buttons()

    def done(self, code: int) -> None:
        for job in (self.search_job, self.retrieve_job):
            if job is not None:
                job.cancel()
        super().done(code)


def _study(item: QTreeWidgetItem | None) -> bool:
    return item is not None and item.data(0, UID_ROLE) is not None


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
