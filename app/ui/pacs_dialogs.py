"""PACS configurations: the list (type badges, new, edit, duplicate, delete, connection test, the global
"Allow transfer to PACS" switch), the type chooser and the editor with messages beside the field that is wrong.

The rules live in app.pacs.config: the editor builds a PacsConfig from its fields and calls `validate()` on it
(as the user types, and on OK); the store (`PacsConfigs`) saves and refuses duplicates. Nothing here
re-implements a rule. The connection test (app.pacs.connection) runs as a Job, never on the GUI thread.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable

from PySide6.QtCore import QCoreApplication, QRectF, QSize, Qt, QTimer, Slot
from PySide6.QtGui import QColor, QFont, QFontMetrics, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QCommandLinkButton, QDialog, QDialogButtonBox, QDoubleSpinBox,
    QFileDialog, QFormLayout, QFrame, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QMessageBox,
    QPlainTextEdit, QPushButton, QSpinBox, QStackedWidget, QStyle, QStyledItemDelegate, QStyleOptionViewItem,
    QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget,
)

from app.errors import LightboxError
from app.jobs import Job, State
from app.pacs.config import (
    AUTH, BADGES, CHARSETS, DICOMWEB, DIMSE, RETRIEVE_METHODS, TYPE_NAMES, ConfigError, DicomWebOptions,
    DimseOptions, PacsConfig, PacsConfigs, check_ae_title, check_header,
)
from app.ui.jobs import JobRelay

log = logging.getLogger(__name__)

VALIDATE_DELAY_MS = 300  # typing pauses this long before the fields are checked
BADGE_COLORS = {DICOMWEB: QColor(42, 110, 187), DIMSE: QColor(0, 133, 119)}
TYPE_EXPLANATIONS = {
    DICOMWEB: "A web address (https://…): modern and cloud PACS; passes firewalls and proxies like a web page.",
    DIMSE: "Host, port and AE titles: most PACS, modalities and archives in the practice's network.",
}
AUTH_LABELS = {"none": "None", "basic": "User name and password (HTTP basic)", "bearer": "Token (bearer)"}
RETRIEVE_LABELS = {"auto": "Automatic: C-GET, else C-MOVE", "get": "C-GET only", "move": "C-MOVE only"}
# check_ae_title names the AE title in its messages ("The source AE title ..."): which field each one is.
AE_TITLE_FIELDS = (("PACS AE title", "aet"), ("source AE title", "source_aet"), ("own AE title", "local_aets"),
                   ("AE title for the test", "test_aet"), ("AE title for queries", "query_aet"),
                   ("C-MOVE destination AE title", "move_aet"))
KIND_ROLE = Qt.ItemDataRole.UserRole + 1
KEY_ROLE = Qt.ItemDataRole.UserRole + 2


# -- colours and badges ---------------------------------------------------------------------------

def _dark(widget: QWidget) -> bool:
    return widget.palette().color(QPalette.ColorRole.Window).lightness() < 128


def tone(widget: QWidget, kind: str) -> str:
    """A colour for error / warning / ok / muted text that reads on the widget's background."""
    dark = _dark(widget)
    return {"error": "#ff6b6b" if dark else "#c62828", "warning": "#f0b429" if dark else "#9a6700",
            "ok": "#4cc38a" if dark else "#1b7f3b", "muted": "#9a9a9a" if dark else "#666666"}[kind]


def draw_badge(painter: QPainter, rect: QRectF, kind: str, font: QFont) -> float:
    """The type badge (DW / T) as a rounded label at the left of `rect`, centred vertically; its width."""
    font = QFont(font)
    font.setBold(True)
    font.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
    metrics = QFontMetrics(font)
    text = BADGES.get(kind, "?")
    width = max(metrics.horizontalAdvance("DW"), metrics.horizontalAdvance(text)) + 12
    height = min(rect.height() - 2, metrics.height() + 4)
    box = QRectF(rect.left(), rect.top() + (rect.height() - height) / 2, width, height)
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(BADGE_COLORS.get(kind, QColor(110, 110, 110)))
    painter.drawRoundedRect(box, 4, 4)
    painter.setPen(QColor(255, 255, 255))
    painter.setFont(font)
    painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
    painter.restore()
    return width


def badge_icon(kind: str, font: QFont, height: int = 22) -> QIcon:
    metrics = QFontMetrics(font)
    pixmap = QPixmap(QSize(metrics.horizontalAdvance("DW") * 2 + 16, height) * 2)
    pixmap.setDevicePixelRatio(2)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    big = QFont(font)
    big.setPointSizeF(font.pointSizeF() * 1.15)
    draw_badge(painter, QRectF(0, 0, pixmap.width() / 2, height), kind, big)
    painter.end()
    return QIcon(pixmap)


class BadgeDelegate(QStyledItemDelegate):
    """Paints the Type column's DW / T as a coloured badge (the item's text stays the badge's letters)."""

    def paint(self, painter, option, index) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        widget = opt.widget
        style = widget.style() if widget else QCoreApplication.instance().style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)
        rect = QRectF(opt.rect).adjusted(6, 3, -4, -3)
        draw_badge(painter, rect, index.data(KIND_ROLE), opt.font)

    def sizeHint(self, option, index) -> QSize:  # noqa: N802
        size = super().sizeHint(option, index)
        return QSize(max(size.width(), QFontMetrics(option.font).horizontalAdvance("DW") + 30),
                     max(size.height(), QFontMetrics(option.font).height() + 10))


def _message_label(parent: QWidget) -> QLabel:
    label = QLabel(parent)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.hide()
    return label


def _show(label: QLabel, text: str, color: str) -> None:
    label.setText(text)
    label.setStyleSheet(f"color: {color};")
    label.setVisible(bool(text))


# -- the type, chosen once -------------------------------------------------------------------------

class TypeChooser(QDialog):
    """Step one of a new configuration: DICOMweb or classic DICOM (TCP), two big choices."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("New PACS configuration")
        self.chosen: str | None = None
        layout = QVBoxLayout(self)
        heading = QLabel("<b>How does Lightbox talk to this PACS?</b>", self)
        layout.addWidget(heading)
        note = QLabel("The type is chosen once: it cannot be changed later (make a new configuration instead).",
                      self)
        note.setWordWrap(True)
        note.setStyleSheet(f"color: {tone(self, 'muted')};")
        layout.addWidget(note)
        self.buttons: dict[str, QCommandLinkButton] = {}
        for kind in (DICOMWEB, DIMSE):
            button = QCommandLinkButton(TYPE_NAMES[kind], TYPE_EXPLANATIONS[kind], self)
            button.setIcon(badge_icon(kind, self.font()))
            button.setIconSize(QSize(56, 22))
            button.setMinimumHeight(64)
            button.clicked.connect(lambda _=False, k=kind: self.choose(k))
            layout.addWidget(button)
            self.buttons[kind] = button
        layout.addStretch(1)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel, self)
        box.rejected.connect(self.reject)
        layout.addWidget(box)
        self.resize(560, self.sizeHint().height())

    def choose(self, kind: str) -> None:
        self.chosen = kind
        self.accept()

    @classmethod
    def ask(cls, parent=None) -> str | None:
        chooser = cls(parent)
        try:
            return chooser.chosen if chooser.exec() == QDialog.DialogCode.Accepted else None
        finally:
            chooser.deleteLater()


# -- the editor ------------------------------------------------------------------------------------

SaveFunction = Callable[[PacsConfig, "str | None"], list]


class PacsEditor(QDialog):
    """The fields of one configuration, grouped; each rule broken is shown in red beside its field, each
    warning in amber; OK stays off while an error stands. On OK `save(config, secret)` (when given) stores
    the configuration: a ConfigError it raises is shown beside its field, any other problem in a message box.
    `secret` is None when the password/token field was left empty (keep the stored one)."""

    def __init__(self, kind: str, config: PacsConfig | None = None, save: SaveFunction | None = None,
                 parent=None):
        super().__init__(parent)
        if config is not None and config.type != kind:
            raise ValueError("the editor's type is the configuration's type")
        self.kind = kind
        self.original = config
        self._save = save
        self.saved: PacsConfig | None = None  # what OK stored
        self.warnings: list[str] = []
        self.error: ConfigError | None = None
        self.fields: dict[str, QWidget] = {}
        self.messages: dict[str, QLabel] = {}
        self._rows: dict[str, QWidget] = {}
        self._forms: dict[int, list[QFormLayout]] = {}  # per column
        self._edited = config is not None  # a new, untouched form does not shout about empty fields
        self._store_error: tuple[ConfigError, dict] | None = None  # refused by the store, until changed
        self.setWindowTitle(f"{'Edit' if config else 'New'} PACS configuration — {TYPE_NAMES[kind]}")

        layout = QVBoxLayout(self)
        layout.addLayout(self._type_line())
        columns = QHBoxLayout()
        left, right = QVBoxLayout(), QVBoxLayout()
        columns.addLayout(left, 1)
        columns.addLayout(right, 1)
        layout.addLayout(columns, 1)
        if kind == DICOMWEB:
            self._build_dicomweb(left, right)
        else:
            self._build_dimse(left, right)
        left.addStretch(1)
        right.addStretch(1)
        self._align_labels()
        self.general = _message_label(self)
        layout.addWidget(self.general)
        self.button_box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel,
                                           self)
        self.ok_button = self.button_box.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Save")
        self.button_box.accepted.connect(self.accept)
        self.button_box.rejected.connect(self.reject)
        layout.addWidget(self.button_box)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(VALIDATE_DELAY_MS)
        self._timer.timeout.connect(self.validate_now)
        self._load(config)
        self._connect_changes()
        self._update_enabled()
        self.validate_now()
        self.resize(980, self.sizeHint().height())

    # -- building --------------------------------------------------------------------------------

    def _type_line(self) -> QHBoxLayout:
        row = QHBoxLayout()
        badge = QLabel(self)
        badge.setPixmap(badge_icon(self.kind, self.font()).pixmap(QSize(56, 22)))
        row.addWidget(badge)
        self.type_label = QLabel(f"<b>{TYPE_NAMES[self.kind]}</b>", self)
        row.addWidget(self.type_label)
        note = QLabel("— the type is fixed once created; for another type, make a new configuration.", self)
        note.setStyleSheet(f"color: {tone(self, 'muted')};")
        row.addWidget(note, 1)
        return row

    def _align_labels(self) -> None:
        """The fields of the groups in one column start at the same place."""
        for forms in self._forms.values():
            labels = [form.itemAt(row, QFormLayout.ItemRole.LabelRole).widget()
                      for form in forms for row in range(form.rowCount())
                      if form.itemAt(row, QFormLayout.ItemRole.LabelRole) is not None]
            width = max((label.sizeHint().width() for label in labels if label is not None), default=0)
            for label in labels:
                if label is not None:
                    label.setMinimumWidth(width)

    def _group(self, column: QVBoxLayout, title: str) -> QFormLayout:
        box = QGroupBox(title, self)
        form = QFormLayout(box)
        self._forms.setdefault(id(column), []).append(form)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        column.addWidget(box)
        return form

    def _row(self, form: QFormLayout, key: str, label: str, widget: QWidget, tip: str = "",
             field: QWidget | None = None) -> QWidget:
        """A form row: the widget, and under it the message for that field (hidden while there is none)."""
        cell = QWidget(self)
        column = QVBoxLayout(cell)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(widget)
        message = _message_label(cell)
        column.addWidget(message)
        field = field or widget
        if tip:
            field.setToolTip(tip)
        form.addRow(label, cell)
        self.fields[key] = field
        self.messages[key] = message
        self._rows[key] = cell
        return field

    def _line(self, form, key, label, placeholder="", tip="") -> QLineEdit:
        edit = QLineEdit(self)
        edit.setPlaceholderText(placeholder)
        return self._row(form, key, label, edit, tip)

    def _check(self, form, key, text, tip="") -> QCheckBox:
        box = QCheckBox(text, self)
        return self._row(form, key, "", box, tip)

    def _file(self, form, key, label, what: str, tip="") -> QLineEdit:
        holder = QWidget(self)
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        edit = QLineEdit(holder)
        edit.setPlaceholderText("(none)")
        row.addWidget(edit, 1)
        browse = QPushButton("Browse…", holder)
        browse.clicked.connect(lambda: self._browse(edit, what))
        row.addWidget(browse)
        edit.browse_button = browse
        return self._row(form, key, label, holder, tip, field=edit)

    def _browse(self, edit: QLineEdit, what: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"Choose the {what}", edit.text(),
                                              "Certificates and keys (*.pem *.crt *.cer *.key);;All files (*)")
        if path:
            edit.setText(path)

    def _combo(self, form, key, label, items: dict[str, str], tip="") -> QComboBox:
        combo = QComboBox(self)
        for value, text in items.items():
            combo.addItem(text, value)
        return self._row(form, key, label, combo, tip)

    def _common(self, form: QFormLayout) -> None:
        self._line(form, "name", "Display name", "e.g. Clinic PACS", "How Lightbox names this PACS in menus and lists")
        self._line(form, "aet", "PACS AE title", "e.g. ORTHANC",
                   "The PACS's own Application Entity title: up to 16 characters, usually uppercase; "
                   "each configuration needs its own")

    def _timeout(self, form: QFormLayout) -> None:
        spin = QDoubleSpinBox(self)
        spin.setRange(1, 600)
        spin.setDecimals(0)
        spin.setSuffix(" s")
        self._row(form, "timeout_s", "Timeout", spin, "How long to wait for the PACS to answer")

    def _build_dicomweb(self, left: QVBoxLayout, right: QVBoxLayout) -> None:
        form = self._group(left, "Connection")
        self._common(form)
        self._line(form, "url", "Base URL", "https://pacs.example.com/dicom-web",
                   "The DICOMweb root: QIDO-RS, WADO-RS and STOW-RS paths are added to it")
        self._timeout(form)

        form = self._group(left, "Authentication")
        self._combo(form, "auth", "Method", {a: AUTH_LABELS[a] for a in AUTH})
        self._line(form, "user", "User name")
        secret = self._line(form, "secret", "Password", "",
                            "Kept in the system keyring, never in the configuration file")
        secret.setEchoMode(QLineEdit.EchoMode.Password)
        headers = QPlainTextEdit(self)
        headers.setPlaceholderText("One per line, Name: value")
        headers.setTabChangesFocus(True)
        headers.setFixedHeight(QFontMetrics(headers.font()).lineSpacing() * 3 + 14)
        self._row(form, "headers", "Extra headers", headers, "Sent with every request, e.g. X-Api-Key: 1234")

        form = self._group(right, "Functions")
        self._check(form, "qido", "Import: search (QIDO-RS) and retrieve (WADO-RS)")
        self._check(form, "stow", "Export: send studies (STOW-RS)")
        self._check(form, "multipart_stow", "Send several images per request (multipart)",
                    "Off: one image per request, for servers that only take single application/dicom bodies")
        self._check(form, "send_aet_headers", "Send the AE titles as HTTP headers",
                    "For gateways that route by AE title")
        self._line(form, "source_aet", "Our AE title", "LIGHTBOX", "This computer's AE title, sent in a header")
        self._line(form, "source_aet_header", "Header for ours", "X-Source-AET")
        self._line(form, "pacs_aet_header", "Header for the PACS's", "X-Destination-AET")

        form = self._group(right, "Security")
        self._file(form, "ca_file", "Extra CA file", "CA file",
                   "A PEM file of certificate authorities to trust besides the system's (an in-house CA)")

    def _build_dimse(self, left: QVBoxLayout, right: QVBoxLayout) -> None:
        form = self._group(left, "Connection")
        self._common(form)
        self._line(form, "host", "Host", "pacs.clinic.local or 192.168.1.20", "The PACS's host name or IP address")
        port = QSpinBox(self)
        port.setRange(1, 65535)
        self._row(form, "port", "Port", port, "The PACS's DICOM port (often 104, 4242 or 11112)")
        self._timeout(form)

        form = self._group(left, "Our AE titles")
        self._line(form, "local_aets", "This computer's", "LIGHTBOX",
                   "This computer's AE titles, as the PACS knows them; separate several with commas")
        for key, label, tip in (("test_aet", "For the test", "The calling AE title of the connection test"),
                                ("query_aet", "For queries", "The calling AE title of searches and retrieves")):
            combo = QComboBox(self)
            combo.setEditable(True)
            self._row(form, key, label, combo, tip)

        form = self._group(right, "Functions")
        self._check(form, "store", "Export: send studies (C-STORE)")
        self._check(form, "query_retrieve", "Import: search and retrieve (C-FIND, C-GET/C-MOVE)")
        self._combo(form, "retrieve_method", "Retrieve with", {m: RETRIEVE_LABELS[m] for m in RETRIEVE_METHODS})
        holder = QWidget(self)
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        move_aet = QLineEdit(holder)
        move_aet.setPlaceholderText("LIGHTBOX")
        row.addWidget(move_aet, 1)
        row.addWidget(QLabel("port", holder))
        move_port = QSpinBox(holder)
        move_port.setRange(1, 65535)
        row.addWidget(move_port)
        self._row(form, "move_aet", "C-MOVE to", holder,
                  "This computer's storage AE title and port, where C-MOVE sends (the PACS must know them)",
                  field=move_aet)
        self.fields["move_port"] = move_port  # its messages appear beside the C-MOVE row
        self._check(form, "mwl", "Modality worklist")
        self._combo(form, "mwl_charset", "Worklist characters", {c: c for c in CHARSETS},
                    "The worklist's character set (ISO_IR 192 is UTF-8)")
        self._check(form, "mpps", "MPPS (performed procedure steps)")

        form = self._group(right, "Security")
        self._check(form, "tls", "DICOM over TLS")
        self._file(form, "ca_file", "CA file", "CA file",
                   "The certificate authority that signed the PACS's certificate")
        self._file(form, "client_cert", "Client certificate", "client certificate")
        self._file(form, "client_key", "Client key", "client key")

    # -- fields <-> configuration -------------------------------------------------------------------

    def _options(self):
        if self.original is not None:
            return self.original.dicomweb if self.kind == DICOMWEB else self.original.dimse
        return DicomWebOptions(url="") if self.kind == DICOMWEB else DimseOptions(host="")

    def _load(self, config: PacsConfig | None) -> None:
        f = self.fields
        options = self._options()
        if config is not None:
            f["name"].setText(config.name)
            f["aet"].setText(config.aet)
            if "secret" in f:
                f["secret"].setPlaceholderText("Stored — leave empty to keep it")
        for key, widget in f.items():
            if not hasattr(options, key):
                continue
            value = getattr(options, key)
            if key == "headers":
                widget.setPlainText("\n".join(f"{n}: {v}" for n, v in value))
            elif key == "local_aets":
                widget.setText(", ".join(value))
            elif key in ("test_aet", "query_aet"):
                widget.addItems(options.local_aets)
                widget.setCurrentText(value)
            elif isinstance(widget, QCheckBox):
                widget.setChecked(bool(value))
            elif isinstance(widget, QComboBox):
                widget.setCurrentIndex(max(0, widget.findData(value)))
            elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
                widget.setValue(value)
            else:
                widget.setText(str(value))

    def config(self) -> PacsConfig:
        """A new PacsConfig from the fields, not yet validated (raises ConfigError for a malformed header line)."""
        f = self.fields
        values = {}
        for key, widget in f.items():
            if key in ("name", "aet", "secret"):
                continue
            if key == "headers":
                value = [check_header(line) for line in widget.toPlainText().splitlines() if line.strip()]
            elif key == "local_aets":
                value = [a for a in (p.strip() for p in widget.text().split(",")) if a]
            elif isinstance(widget, QCheckBox):
                value = widget.isChecked()
            elif key in ("test_aet", "query_aet"):
                value = widget.currentText()
            elif isinstance(widget, QComboBox):
                value = widget.currentData()
            elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
                value = widget.value()
            elif key == "user":
                value = widget.text().strip()
            else:
                value = widget.text()
            values[key] = value
        options = replace(self._options(), **values)  # fields this editor does not show are kept
        extra = {"id": self.original.id} if self.original is not None else {}
        return PacsConfig(type=self.kind, name=f["name"].text(), aet=f["aet"].text(),
                          dicomweb=options if self.kind == DICOMWEB else None,
                          dimse=options if self.kind == DIMSE else None, **extra)

    def secret(self) -> str | None:
        """The password or token typed; None when left empty (keep the stored one) or not used."""
        if self.kind != DICOMWEB or self.fields["auth"].currentData() == "none":
            return None
        return self.fields["secret"].text() or None

    def _snapshot(self) -> dict:
        out = {}
        for key, widget in self.fields.items():
            for getter in ("text", "toPlainText", "currentText", "isChecked", "value"):
                if hasattr(widget, getter):
                    out[key] = getattr(widget, getter)()
                    break
        return out

    # -- checking --------------------------------------------------------------------------------

    def _connect_changes(self) -> None:
        """Any change (typed or set by a program) checks the fields again after a pause."""
        for widget in self.fields.values():
            if isinstance(widget, QCheckBox):
                widget.toggled.connect(self._changed)
            elif isinstance(widget, QComboBox):
                widget.currentIndexChanged.connect(self._changed)
                if widget.isEditable():
                    widget.editTextChanged.connect(self._changed)
            elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
                widget.valueChanged.connect(self._changed)
            else:  # QLineEdit, QPlainTextEdit
                widget.textChanged.connect(self._changed)
        if self.kind == DIMSE:
            self.fields["local_aets"].textChanged.connect(self._local_aets_changed)

    @Slot()
    def _changed(self, *_args) -> None:
        self._edited = True
        self._update_enabled()
        self._timer.start()

    @Slot()
    def _local_aets_changed(self, text: str) -> None:
        """Keep the choices of 'for the test' / 'for queries' in step with this computer's AE titles."""
        titles = [a for a in (p.strip() for p in text.split(",")) if a]
        for key in ("test_aet", "query_aet"):
            combo = self.fields[key]
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(titles)
            combo.setCurrentText(current if current in titles or not titles else titles[0])
            combo.blockSignals(False)

    def _update_enabled(self) -> None:
        f = self.fields
        if self.kind == DICOMWEB:
            auth = f["auth"].currentData()
            f["user"].setEnabled(auth == "basic")
            f["secret"].setEnabled(auth != "none")
            label = self._label("secret")
            if label is not None:
                label.setText("Token" if auth == "bearer" else "Password")
            on = f["send_aet_headers"].isChecked()
            for key in ("source_aet", "source_aet_header", "pacs_aet_header"):
                f[key].setEnabled(on)
            f["multipart_stow"].setEnabled(f["stow"].isChecked())
        else:
            qr = f["query_retrieve"].isChecked()
            f["retrieve_method"].setEnabled(qr)
            move = qr and f["retrieve_method"].currentData() != "get"
            f["move_aet"].setEnabled(move)
            f["move_port"].setEnabled(move)
            f["mwl_charset"].setEnabled(f["mwl"].isChecked())
            tls = f["tls"].isChecked()
            for key in ("ca_file", "client_cert", "client_key"):
                f[key].setEnabled(tls)
                f[key].browse_button.setEnabled(tls)

    def _label(self, key: str) -> QLabel | None:
        cell = self._rows.get(key)
        form = cell.parentWidget().layout() if cell is not None else None
        if isinstance(form, QFormLayout):
            label = form.labelForField(cell)
            return label if isinstance(label, QLabel) else None
        return None

    def field_for(self, error: ConfigError) -> str:
        """The field an error belongs to."""
        if error.field == "headers" and self.kind == DICOMWEB:
            try:
                self.config()
            except ConfigError:
                return "headers"  # an extra header line
            for key in ("source_aet_header", "pacs_aet_header"):
                try:
                    check_header(f"{self.fields[key].text()}: x")
                except ConfigError:
                    return key
            return "headers"
        if error.field == "move_port" and "move_port" not in self.messages:
            return "move_aet"  # one row holds the C-MOVE destination's AE title and port
        return error.field if error.field in self.messages else ""

    def _warning_field(self, warning: str) -> str:
        for what, key in AE_TITLE_FIELDS:
            if warning.startswith(f"The {what} "):
                return key
        return "url" if self.kind == DICOMWEB and "http" in warning else ""

    def check(self) -> tuple[PacsConfig | None, ConfigError | None, list[str]]:
        """Build and validate a configuration from the fields (a fresh copy): (config or None, error, warnings)."""
        try:
            config = self.config()
            warnings = config.validate()
        except ConfigError as exc:
            return None, exc, []
        return config, None, warnings

    @Slot()
    def validate_now(self) -> PacsConfig | None:
        """Check the fields now and show the result beside them; the configuration when no error stands."""
        self._timer.stop()
        config, error, warnings = self.check()
        if error is None and self._store_error is not None:
            refused, snapshot = self._store_error
            key = self.field_for(refused) or "aet"
            if self._snapshot().get(key) == snapshot.get(key):
                error, config = refused, None
            else:
                self._store_error = None
        self.error, self.warnings = error, warnings
        self._show_messages(error, warnings)
        self.ok_button.setEnabled(error is None)
        return config

    def _show_messages(self, error: ConfigError | None, warnings: list[str]) -> None:
        texts: dict[str, tuple[list[str], list[str]]] = {key: ([], []) for key in self.messages}
        general_errors, general_warnings = [], []
        if error is not None:
            key = self.field_for(error)
            if key and self._edited:
                texts[key][0].append(str(error))
            else:
                general_errors.append(str(error))
        for warning in warnings:
            key = self._warning_field(warning)
            (texts[key][1] if key else general_warnings).append(warning)
        for key, label in self.messages.items():
            errors, warns = texts[key]
            _show(label, "\n".join(errors or warns), tone(self, "error" if errors else "warning"))
        if general_errors and not self._edited:  # a fresh form: what is still missing, said calmly
            _show(self.general, general_errors[0], tone(self, "muted"))
        else:
            _show(self.general, "\n".join(general_errors or general_warnings),
                  tone(self, "error" if general_errors else "warning"))

    def message_for(self, key: str) -> str:
        """The message shown beside a field ('' when none)."""
        label = self.messages[key]
        return label.text() if label.isVisibleTo(self) else ""

    # -- OK ----------------------------------------------------------------------------------------

    def accept(self) -> None:
        self._edited = True
        config = self.validate_now()
        if config is None:
            return
        if self._save is not None:
            try:
                self.warnings = self._save(config, self.secret()) or self.warnings
            except ConfigError as exc:
                self._store_error = (exc, self._snapshot())
                self.validate_now()
                return
            except LightboxError as exc:
                QMessageBox.warning(self, "PACS configuration", str(exc))
                return
        self.saved = config
        super().accept()


# -- duplicate -------------------------------------------------------------------------------------

class DuplicateDialog(QDialog):
    """A copy of a configuration (its password too) under a new AE title and name."""

    def __init__(self, configs: PacsConfigs, source: PacsConfig, parent=None):
        super().__init__(parent)
        self.configs = configs
        self.source = source
        self.copy: PacsConfig | None = None
        self.setWindowTitle("Duplicate PACS configuration")
        layout = QVBoxLayout(self)
        intro = QLabel(f"A copy of <b>{_html(source.name)}</b> ({_html(source.aet)}). Each configuration needs "
                       "its own PACS AE title.", self)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.aet = QLineEdit(self)
        self.aet.setPlaceholderText("a new AE title")
        self.name = QLineEdit(f"{source.name} (copy)", self)
        self.messages = {}
        for key, label, widget in (("aet", "PACS AE title", self.aet), ("name", "Display name", self.name)):
            cell = QWidget(self)
            column = QVBoxLayout(cell)
            column.setContentsMargins(0, 0, 0, 0)
            column.setSpacing(2)
            column.addWidget(widget)
            self.messages[key] = _message_label(cell)
            column.addWidget(self.messages[key])
            form.addRow(label, cell)
            widget.textEdited.connect(self._changed)
        layout.addLayout(form)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        self.ok_button = box.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Duplicate")
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        layout.addWidget(box)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(VALIDATE_DELAY_MS)
        self._timer.timeout.connect(self.validate_now)
        self._refused: tuple[str, str, str] | None = None  # (field, message, AE title) the store refused
        self.ok_button.setEnabled(False)
        self.resize(480, self.sizeHint().height())

    def _changed(self, *_args) -> None:
        self._timer.start()

    def validate_now(self) -> bool:
        self._timer.stop()
        error, warnings = "", []
        try:
            _, warnings = check_ae_title(self.aet.text(), "PACS AE title")
        except ConfigError as exc:
            error = str(exc)
        if not error and self._refused and self._refused[2] == self.aet.text():
            error = self._refused[1]
        _show(self.messages["aet"], error or "\n".join(warnings), tone(self, "error" if error else "warning"))
        name_error = "" if self.name.text().strip() else "The display name is required."
        _show(self.messages["name"], name_error, tone(self, "error"))
        ok = not error and not name_error
        self.ok_button.setEnabled(ok)
        return ok

    def message_for(self, key: str) -> str:
        label = self.messages[key]
        return label.text() if label.isVisibleTo(self) else ""

    def accept(self) -> None:
        if not self.validate_now():
            return
        try:
            self.copy = self.configs.duplicate(self.source.aet, self.aet.text(), self.name.text().strip())
        except ConfigError as exc:  # e.g. the AE title is taken
            self._refused = ("aet", str(exc), self.aet.text())
            self.validate_now()
            return
        except LightboxError as exc:
            QMessageBox.warning(self, "PACS configuration", str(exc))
            return
        super().accept()


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- the list --------------------------------------------------------------------------------------

class PacsConfigurationsDialog(QDialog):
    """The PACS configurations: a list with type badges; new, edit, duplicate, delete, test; the global
    'Allow transfer to PACS' switch. Every change is saved at once (PacsConfigs saves on each change)."""

    COLUMNS = ("Type", "Name", "AE title", "Address", "Functions")

    def __init__(self, parent=None, configs: PacsConfigs | None = None):
        super().__init__(parent)
        self.setWindowTitle("PACS configurations")
        self.test_job: Job | None = None
        self.last_result = None  # the ConnectionResult shown
        self.editor: QDialog | None = None  # the editor or duplicate dialog last opened
        self.readonly = False
        if configs is None:
            try:
                configs = PacsConfigs.load()
            except LightboxError as exc:  # an unreadable file must not be overwritten by an empty list
                self.readonly = True
                configs = PacsConfigs()
                QTimer.singleShot(0, lambda m=str(exc): self._problem(m))
        self.configs = configs

        layout = QVBoxLayout(self)
        intro = QLabel("The PACS this computer works with. Double-click one to change it; "
                       "<b>Test</b> checks the connection.", self)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        middle = QHBoxLayout()
        layout.addLayout(middle, 1)

        self.table = QTreeWidget(self)
        self.table.setColumnCount(len(self.COLUMNS))
        self.table.setHeaderLabels(list(self.COLUMNS))
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        self.table.setAlternatingRowColors(True)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setItemDelegateForColumn(0, BadgeDelegate(self.table))
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.itemDoubleClicked.connect(lambda *_: self.edit_configuration())
        header = self.table.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.empty_label = QLabel("No PACS yet.\n\nNew… adds one: DICOMweb (a web address) or classic DICOM "
                                  "(host, port and AE titles).", self)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setStyleSheet(f"color: {tone(self, 'muted')};")
        self.list_pages = QStackedWidget(self)
        self.list_pages.addWidget(self.table)
        self.list_pages.addWidget(self.empty_label)
        middle.addWidget(self.list_pages, 1)

        side = QVBoxLayout()
        self.new_button = QPushButton("New…", self)
        self.new_button.setToolTip("Add a PACS: first its type (DICOMweb or classic DICOM), then its settings")
        self.edit_button = QPushButton("Edit…", self)
        self.duplicate_button = QPushButton("Duplicate…", self)
        self.duplicate_button.setToolTip("A copy under a new AE title, e.g. for a second gateway of the same PACS")
        self.delete_button = QPushButton("Delete…", self)
        self.test_button = QPushButton("Test", self)
        self.test_button.setToolTip("Connect to the chosen PACS and report what it accepts")
        self.new_button.clicked.connect(lambda: self.new_configuration())
        self.edit_button.clicked.connect(lambda: self.edit_configuration())
        self.duplicate_button.clicked.connect(lambda: self.duplicate_configuration())
        self.delete_button.clicked.connect(lambda: self.delete_configuration())
        self.test_button.clicked.connect(lambda: self.test_configuration())
        for button in (self.new_button, self.edit_button, self.duplicate_button, self.delete_button):
            side.addWidget(button)
        side.addSpacing(16)
        side.addWidget(self.test_button)
        side.addStretch(1)
        middle.addLayout(side)

        self.result_panel = QFrame(self)
        self.result_panel.setObjectName("result")
        self.result_panel.setFrameShape(QFrame.Shape.StyledPanel)
        panel = QVBoxLayout(self.result_panel)
        panel.setContentsMargins(10, 6, 10, 6)
        self.result_label = QLabel(self.result_panel)
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bold = QFont(self.result_label.font())
        bold.setBold(True)
        self.result_label.setFont(bold)
        self.details_label = QLabel(self.result_panel)
        self.details_label.setWordWrap(True)
        self.details_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        panel.addWidget(self.result_label)
        panel.addWidget(self.details_label)
        self.result_panel.hide()
        layout.addWidget(self.result_panel)

        self.allow_transfer = QCheckBox("Allow transfer to PACS", self)
        self.allow_transfer.setToolTip("Off: no PACS is offered for sending studies (import still works)")
        self.allow_transfer.setChecked(self.configs.allow_transfer)
        self.allow_transfer.toggled.connect(self.set_allow_transfer)
        self.transfer_note = QLabel(self)
        self.transfer_note.setWordWrap(True)
        bottom = QHBoxLayout()
        bottom.addWidget(self.allow_transfer)
        bottom.addWidget(self.transfer_note, 1)
        layout.addLayout(bottom)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        box.rejected.connect(self.reject)
        layout.addWidget(box)

        self.refresh()
        self._transfer_note()
        self.resize(900, 520)

    # -- the list --------------------------------------------------------------------------------

    def refresh(self, select: str | None = None) -> None:
        """Fill the list from the store; keep (or move to) the chosen configuration."""
        current = select or (self.selected().id if self.selected() is not None else None)
        self.table.blockSignals(True)
        self.table.clear()
        chosen = None
        for config in self.configs.configs:
            item = QTreeWidgetItem([config.badge, config.name, config.aet, config.address,
                                    " · ".join(config.functions)])
            item.setData(0, KIND_ROLE, config.type)
            item.setData(0, KEY_ROLE, config.id)
            item.setToolTip(0, TYPE_NAMES[config.type])
            item.setToolTip(3, config.address)
            self.table.addTopLevelItem(item)
            if config.id == current:
                chosen = item
        if chosen is None and self.table.topLevelItemCount():
            chosen = self.table.topLevelItem(0)
        if chosen is not None:
            self.table.setCurrentItem(chosen)
        self.table.blockSignals(False)
        self.list_pages.setCurrentWidget(self.table if self.configs.configs else self.empty_label)
        self._selection_changed()

    def rows(self) -> list[tuple[str, ...]]:
        """The list as shown: (badge, name, AE title, address, functions) per configuration."""
        return [tuple(self.table.topLevelItem(r).text(c) for c in range(len(self.COLUMNS)))
                for r in range(self.table.topLevelItemCount())]

    def selected(self) -> PacsConfig | None:
        item = self.table.currentItem()
        if item is None:
            return None
        key = item.data(0, KEY_ROLE)
        return next((c for c in self.configs.configs if c.id == key), None)

    def select(self, aet: str) -> None:
        for row in range(self.table.topLevelItemCount()):
            item = self.table.topLevelItem(row)
            if item.text(2) == aet:
                self.table.setCurrentItem(item)
                return

    @Slot()
    def _selection_changed(self) -> None:
        has = self.selected() is not None and not self.readonly
        for button in (self.edit_button, self.duplicate_button, self.delete_button):
            button.setEnabled(has)
        self.test_button.setEnabled(self.selected() is not None and self.test_job is None)
        self.new_button.setEnabled(not self.readonly)
        self.allow_transfer.setEnabled(not self.readonly)

    # -- changes ---------------------------------------------------------------------------------

    def new_configuration(self, kind: str | None = None) -> PacsEditor | None:
        """Ask the type (unless given), then open the editor for it; it saves on OK."""
        if self.readonly:
            return None
        kind = kind or TypeChooser.ask(self)
        if kind is None:
            return None
        editor = PacsEditor(kind, save=self._add, parent=self)
        editor.accepted.connect(lambda: self._saved(editor))
        self._open(editor)
        return editor

    def edit_configuration(self) -> PacsEditor | None:
        config = self.selected()
        if config is None or self.readonly:
            return None
        editor = PacsEditor(config.type, config, save=lambda c, s, key=config.aet: self.configs.update(key, c, s),
                            parent=self)
        editor.accepted.connect(lambda: self._saved(editor))
        self._open(editor)
        return editor

    def _add(self, config: PacsConfig, secret: str | None) -> list[str]:
        return self.configs.add(config, secret)

    def _saved(self, editor: PacsEditor) -> None:
        self.refresh(select=editor.saved.id)

    def duplicate_configuration(self) -> DuplicateDialog | None:
        config = self.selected()
        if config is None or self.readonly:
            return None
        dialog = DuplicateDialog(self.configs, config, self)
        dialog.accepted.connect(lambda: self.refresh(select=dialog.copy.id))
        self._open(dialog)
        return dialog

    def _open(self, dialog: QDialog) -> None:
        if self.editor is not None and self.editor is not dialog and not self.editor.isVisible():
            self.editor.deleteLater()
        self.editor = dialog
        dialog.open()

    def delete_configuration(self) -> bool:
        config = self.selected()
        if config is None or self.readonly:
            return False
        answer = QMessageBox.question(
            self, "Delete PACS configuration",
            f"Delete the configuration “{config.name}” ({config.aet}, {TYPE_NAMES[config.type]})?\n\n"
            "Its stored password is deleted too. Nothing on the PACS is touched.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Cancel)
        if answer != QMessageBox.StandardButton.Yes:
            return False
        try:
            self.configs.remove(config.aet)
        except LightboxError as exc:
            self._problem(str(exc))
            return False
        self.refresh()
        return True

    @Slot(bool)
    def set_allow_transfer(self, on: bool) -> None:
        if on == self.configs.allow_transfer:
            return
        previous = self.configs.allow_transfer
        self.configs.allow_transfer = on
        try:
            self.configs.save()
        except (LightboxError, OSError) as exc:
            self.configs.allow_transfer = previous
            self.allow_transfer.blockSignals(True)
            self.allow_transfer.setChecked(previous)
            self.allow_transfer.blockSignals(False)
            self._problem(f"The setting could not be saved ({exc}).")
        self._transfer_note()

    def _transfer_note(self) -> None:
        if self.configs.allow_transfer:
            text, color = "Studies can be sent to the PACS that accept them.", tone(self, "muted")
        else:
            text, color = "Off: no PACS is offered for sending studies.", tone(self, "warning")
        _show(self.transfer_note, text, color)

    def _problem(self, message: str) -> None:
        QMessageBox.warning(self, "PACS configurations", message)

    # -- the connection test -----------------------------------------------------------------------

    def test_configuration(self) -> Job | None:
        """Test the chosen configuration in a job; the result appears below the list. One test at a time."""
        config = self.selected()
        if config is None:
            return None
        if self.test_job is not None:
            return None  # refused: the button is off meanwhile
        try:
            from app.pacs.connection import test_connection
        except ImportError:
            self._show_result(config.name, False, "The connection test is not available in this version of "
                                                  "Lightbox.", [])
            return None
        copy = PacsConfig.from_dict(config.as_dict())
        configs = self.configs

        def work(reporter):
            reporter.update(message=f"Testing {copy.name}…")
            return test_connection(copy, configs.secret(copy))

        job = Job(work, "Connection test")
        job.config_name = config.name
        self.test_job = job
        self.test_button.setEnabled(False)
        self.test_button.setText("Testing…")
        _show(self.result_label, f"{config.name}: connecting to {config.address}…", tone(self, "muted"))
        self.details_label.hide()
        self.result_panel.setStyleSheet("")
        self.result_panel.show()
        # The relay outlives the dialog (closed mid-test): Qt drops the connection to a deleted dialog.
        relay = JobRelay(job, QCoreApplication.instance())
        relay.finished.connect(self._tested)
        relay.finished.connect(relay.deleteLater)
        relay.start()
        return job

    @Slot(object)
    def _tested(self, job: Job) -> None:
        self.test_job = None
        self.test_button.setText("Test")
        self._selection_changed()
        if job.state == State.DONE and job.result is not None:
            result = job.result
            self.last_result = result
            message = result.message
            if result.ok and getattr(result, "round_trip_ms", None) is not None:
                message += f" · {result.round_trip_ms:.0f} ms"
            details = []
            if getattr(result, "accepted", None):
                details.append("Accepted: " + ", ".join(result.accepted))
            details += list(getattr(result, "details", []) or [])
            self._show_result(job.config_name, result.ok, message, details)
        elif job.state == State.CANCELLED:
            self._show_result(job.config_name, False, "Test cancelled", [])
        else:
            self._show_result(job.config_name, False, f"Connection failed: {job.error}", [])

    def _show_result(self, name: str, ok: bool, message: str, details: list[str]) -> None:
        color = tone(self, "ok" if ok else "error")
        _show(self.result_label, f"{'✔' if ok else '✖'}  {name}: {message}", color)
        _show(self.details_label, "\n".join(details), self.palette().color(QPalette.ColorRole.WindowText).name())
        self.result_panel.setStyleSheet(f"QFrame#result {{ border: 1px solid {color}; border-left: 4px solid {color};"
                                        " border-radius: 3px; }")
        self.result_panel.show()

    @property
    def result_text(self) -> str:
        """The test result as shown (first line, details after)."""
        if not self.result_panel.isVisibleTo(self):
            return ""
        parts = [self.result_label.text()]
        if self.details_label.isVisibleTo(self):
            parts.append(self.details_label.text())
        return "\n".join(parts)

    def done(self, code: int) -> None:
        if self.test_job is not None:
            self.test_job.cancel()
        super().done(code)
