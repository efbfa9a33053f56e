"""Dialogs around the library's import and export: what failed, patient conflicts, export options."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
    QHeaderView, QLabel, QLineEdit, QPushButton, QScrollArea, QStyle, QTableWidget, QTableWidgetItem, QVBoxLayout,
    QWidget,
)

from app.dicom.patient import Patient
from app.dicom.summary import format_date
from app.library import Conflict, StudyRecord
from app.library.importer import ImportEntry
from app.ui.browser import person

EXPORT_FORMATS = (  # (format, label, DICOM files?)
    ("dicom", "DICOM files in a folder", True),
    ("dicomdir", "DICOMDIR folder (for a CD or USB stick, other viewers)", True),
    ("zip", "ZIP archive of DICOM files", True),
    ("png", "PNG images", False),
    ("jpeg", "JPEG images", False),
)


def capture_context_for(study: StudyRecord):
    """Photos imported 'into' a study: its patient and study, a new series of their own."""
    from app.dicom.capture import CaptureContext

    return CaptureContext(patient=study.patient, study_uid=study.uid, study_date=study.date, study_time=study.time,
                          study_description=study.description, accession=study.accession,
                          referring_physician=study.referring_physician, series_description="Photos")


def study_name(study: StudyRecord) -> str:
    """'Bailey, 2026-11-02, Thorax' (for dialogs) ."""
    return ", ".join(x for x in (study.patient.animal_name or "(no name)", format_date(study.date),
                                 study.description) if x)


def file_stem(study: StudyRecord) -> str:
    """A file or folder name for a study: 'Bailey_2026-11-02_Thorax'."""
    raw = "_".join(x for x in (study.patient.animal_name or "study", format_date(study.date), study.description) if x)
    return re.sub(r"[^\w\-]+", "_", raw, flags=re.UNICODE).strip("_")[:80] or "study"


# -- import: what went wrong ----------------------------------------------------------------------

def _dialog_box(dialog: QDialog, icon: QStyle.StandardPixmap, heading: str, text: str) -> QVBoxLayout:
    layout = QVBoxLayout(dialog)
    top = QHBoxLayout()
    picture = QLabel(dialog)
    picture.setPixmap(dialog.style().standardIcon(icon).pixmap(40, 40))
    picture.setAlignment(Qt.AlignmentFlag.AlignTop)
    top.addWidget(picture)
    words = QLabel(f"<b>{_html(heading)}</b><br>{_html(text)}", dialog)
    words.setWordWrap(True)
    top.addWidget(words, 1)
    layout.addLayout(top)
    return layout


class FailedFilesDialog(QDialog):
    """The files an import could not take, with the reason for each."""

    def __init__(self, entries: list[ImportEntry], parent=None):
        super().__init__(parent)
        self.setWindowTitle("Files not imported")
        n = len(entries)
        layout = _dialog_box(self, QStyle.StandardPixmap.SP_MessageBoxWarning,
                             f"{n} file{'s were' if n != 1 else ' was'} not imported",
                             "The rest of the import went ahead. The reason is given for each file.")
        self.table = QTableWidget(n, 2, self)
        self.table.setHorizontalHeaderLabels(["File", "Reason"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        for row, entry in enumerate(entries):
            name = QTableWidgetItem(Path(entry.path).name or entry.path)
            name.setToolTip(entry.path)
            reason = QTableWidgetItem(entry.error)
            reason.setToolTip(entry.error)
            self.table.setItem(row, 0, name)
            self.table.setItem(row, 1, reason)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)
        self.resize(760, min(520, 180 + 30 * n))


CONFLICT_FIELDS = (("Name", lambda p: p.name.replace("^", " ")), ("ID", lambda p: p.id),
                   ("Species", lambda p: p.species), ("Breed", lambda p: p.breed),
                   ("Owner", lambda p: person(p.owner)))


class ConflictDialog(QDialog):
    """Patient conflicts of an import: for each, what the library has and what the file says, side by side."""

    def __init__(self, conflicts: list[Conflict], parent=None):
        super().__init__(parent)
        self.conflicts = list(conflicts)
        n = len(conflicts)
        self.setWindowTitle("Patient conflicts")
        layout = _dialog_box(
            self, QStyle.StandardPixmap.SP_MessageBoxWarning,
            f"{n} patient conflict{'s' if n != 1 else ''}: check which version is right",
            "These files describe a patient differently from the library. Lightbox did not merge them: "
            "differences are in bold.")
        inner = QWidget(self)
        column = QVBoxLayout(inner)
        column.setContentsMargins(0, 0, 0, 0)
        self.tables: list[QTableWidget] = []
        for conflict in conflicts:
            message = QLabel(conflict.message, inner)
            message.setWordWrap(True)
            message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            column.addWidget(message)
            table = self._table(conflict.existing, conflict.incoming, inner)
            column.addWidget(table)
            self.tables.append(table)
        column.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        layout.addWidget(scroll, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)
        self.resize(720, min(640, 200 + 230 * n))

    @staticmethod
    def _table(existing: Patient, incoming: Patient, parent) -> QTableWidget:
        table = QTableWidget(len(CONFLICT_FIELDS), 2, parent)
        table.setHorizontalHeaderLabels(["In the library", "In the imported file"])
        table.setVerticalHeaderLabels([label for label, _ in CONFLICT_FIELDS])
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        bold = QFont(table.font())
        bold.setBold(True)
        for row, (_label, get) in enumerate(CONFLICT_FIELDS):
            a, b = get(existing), get(incoming)
            differs = a.strip().casefold() != b.strip().casefold()
            for col, value in enumerate((a, b)):
                item = QTableWidgetItem(value or "—")
                if differs:
                    item.setFont(bold)
                    item.setForeground(QColor(255, 196, 120))
                table.setItem(row, col, item)
        height = table.horizontalHeader().sizeHint().height() + sum(table.rowHeight(r) for r in range(table.rowCount()))
        table.setFixedHeight(height + 2 * table.frameWidth())
        return table

    def versions(self, index: int = 0) -> list[tuple[str, str, str]]:
        """(field, in the library, in the file) rows of one conflict, as shown."""
        table = self.tables[index]
        return [(table.verticalHeaderItem(r).text(), table.item(r, 0).text(), table.item(r, 1).text())
                for r in range(table.rowCount())]


# -- export ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportOptions:
    format: str  # dicom | dicomdir | zip | png | jpeg
    destination: Path  # a folder; for one study as ZIP also a path ending in .zip
    anonymize: bool = False
    measurements: bool = False  # png/jpeg: the measurements drawn in, with their values

    def target(self, study: StudyRecord, index: int, count: int) -> Path:
        """Where one of `count` studies goes: the destination itself when it is the only one, else a
        folder (or archive) of its own inside it, named without the patient when anonymised."""
        if count == 1:
            return self.destination
        stem = f"study_{index + 1:02d}" if self.anonymize else f"{file_stem(study)}_{index + 1:02d}"
        return self.destination / (stem + ".zip" if self.format == "zip" else stem)


class ExportDialog(QDialog):
    """Format, destination and anonymisation of an export of one or more studies."""

    def __init__(self, studies: list[StudyRecord], parent=None):
        super().__init__(parent)
        self.studies = list(studies)
        self.setWindowTitle("Export")
        self._typed = False
        n = len(self.studies)
        what = study_name(self.studies[0]) if n == 1 else f"{n} studies"
        layout = QVBoxLayout(self)
        heading = QLabel(f"<b>Export {_html(what)}</b>", self)
        layout.addWidget(heading)
        form = QFormLayout()
        self.format = QComboBox(self)
        for key, label, _dicom in EXPORT_FORMATS:
            self.format.addItem(label, key)
        form.addRow("Format", self.format)
        self.destination = QLineEdit(self)
        self.destination.textEdited.connect(self._typed_destination)
        self.destination.textChanged.connect(self._update)
        browse = QPushButton("Choose…", self)
        browse.clicked.connect(self.choose_destination)
        row = QHBoxLayout()
        row.addWidget(self.destination, 1)
        row.addWidget(browse)
        form.addRow("Save in", row)
        self.anonymize = QCheckBox("Anonymise: new UIDs; names, IDs and owner left out (species and breed kept)",
                                   self)
        self.anonymize.toggled.connect(self._anonymize_toggled)
        form.addRow("", self.anonymize)
        self.measurements = QCheckBox("Draw the measurements on the images, with their values", self)
        self.measurements.setChecked(True)
        form.addRow("", self.measurements)
        self.hint = QLabel(self)
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #a0a0a0;")
        form.addRow("", self.hint)
        layout.addLayout(form)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel,
                                        self)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.format.currentIndexChanged.connect(self._format_changed)
        self._format_changed()
        self.resize(640, self.sizeHint().height())

    @property
    def _key(self) -> str:
        return self.format.currentData() or "dicom"

    @property
    def _dicom(self) -> bool:
        return dict((k, d) for k, _l, d in EXPORT_FORMATS)[self._key]

    def set_format(self, key: str) -> None:
        self.format.setCurrentIndex(self.format.findData(key))

    def _typed_destination(self, _text: str) -> None:
        self._typed = True

    def _default_destination(self) -> Path:
        base = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
                    or Path.home())
        if self.anonymize.isChecked():
            return base / "Lightbox export (anonymised)"
        if len(self.studies) == 1 and self._key != "zip":
            return base / file_stem(self.studies[0])
        return base / "Lightbox export"

    def _anonymize_toggled(self, _on: bool) -> None:
        if not self._typed:
            self.destination.setText(str(self._default_destination()))

    def _format_changed(self, *_args) -> None:
        key = self._key
        self.anonymize.setEnabled(self._dicom)
        if not self._dicom:
            self.anonymize.setChecked(False)
        self.measurements.setVisible(not self._dicom)
        current = self.destination.text().strip()
        if not self._typed or not current:
            self.destination.setText(str(self._default_destination()))
        elif key != "zip" and current.lower().endswith(".zip"):
            self.destination.setText(current[:-4])
        hints = {"dicom": "The DICOM files as they are, one folder per series: for another viewer or a colleague.",
                 "dicomdir": "A DICOMDIR file-set, as on a CD: other DICOM viewers open it directly.",
                 "zip": "The DICOMDIR file-set in one archive, easy to e-mail or upload; named after the patient "
                        "and date unless you end the path with .zip.",
                 "png": "Every image as shown with its own window: for reports and e-mails, not for diagnosis.",
                 "jpeg": "Every image as shown with its own window, small files: for e-mails, not for diagnosis."}
        hint = hints[key]
        if len(self.studies) > 1:
            hint += " Each study goes into " + ("an archive" if key == "zip" else "a folder") + \
                " of its own inside the folder chosen."
        self.hint.setText(hint + " Nothing already there is overwritten.")
        self._update()

    def _update(self, *_args) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(self.destination.text().strip()))

    def choose_destination(self) -> None:
        current = self.destination.text().strip()
        chosen = QFileDialog.getExistingDirectory(self, "Export into a folder", current)
        if chosen:
            self._typed = True
            self.destination.setText(chosen)

    def options(self) -> ExportOptions:
        return ExportOptions(self._key, Path(self.destination.text().strip()).expanduser(),
                             self._dicom and self.anonymize.isChecked(),
                             not self._dicom and self.measurements.isChecked())

    @classmethod
    def ask(cls, studies: list[StudyRecord], parent=None) -> ExportOptions | None:
        dialog = cls(studies, parent)
        return dialog.options() if dialog.exec() == QDialog.DialogCode.Accepted else None


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
