"""Help ▸ Keyboard shortcuts: every action's shortcut, read from the window's menus and actions (so the list
stays true), and the keys and mouse gestures a viewport handles itself."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QHeaderView, QLineEdit, QMainWindow, QMenu, QTableWidget, QTableWidgetItem, QVBoxLayout,
)

Row = tuple[str, str, str, str]  # section, action, keys, what it does


def _label(action: QAction) -> str:
    text = action.text().replace("&&", "\0").replace("&", "").replace("\0", "&").split("\t")[0]
    return text.rstrip("…").rstrip(".").strip()


def _tip(action: QAction) -> str:
    """The action's tooltip without the shortcut the window appends, where it says more than the label."""
    tip, suffix = action.toolTip().strip(), f" ({action.shortcut().toString()})"
    tip = tip[: -len(suffix)] if tip.endswith(suffix) else tip
    return "" if tip.casefold() == _label(action).casefold() else tip


def _keys(action: QAction) -> str:
    native = QKeySequence.SequenceFormat.NativeText
    return " or ".join(s.toString(native) for s in action.shortcuts() if not s.isEmpty())


def action_rows(window: QMainWindow) -> list[Row]:
    """(menu path, action, keys, tooltip) of every action with a shortcut: those in the menus first, in menu order,
    then those only on the window (presets ...)."""
    rows: list[Row] = []
    seen: set[int] = set()

    def walk(menu: QMenu, path: str) -> None:
        for action in menu.actions():
            sub = action.menu()
            if sub is not None:
                walk(sub, f"{path} ▸ {_label(action)}")
                continue
            if action.isSeparator():
                continue
            seen.add(id(action))
            keys = _keys(action)
            if keys:
                rows.append((path, _label(action), keys, _tip(action)))

    for top in window.menuBar().actions():
        if top.menu() is not None:
            walk(top.menu(), _label(top))
    for action in window.actions():
        if id(action) not in seen and _keys(action):
            rows.append(("Not in a menu", _label(action), _keys(action), _tip(action)))
    return rows


class ShortcutsDialog(QDialog):
    def __init__(self, rows: list[Row], parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(860, 680)
        self._rows = list(rows)
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Find a shortcut or an action")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._filter)
        self.table = QTableWidget(0, 3, self)
        self.table.setHorizontalHeaderLabels(["Action", "Keys", "What it does"])
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.table.setWordWrap(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.table.setShowGrid(False)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(0, 300)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.search)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self._filter("")

    def rows(self) -> list[tuple[str, str, str]]:
        """(section, action, keys) of every line."""
        return [r[:3] for r in self._rows]

    def _filter(self, text: str) -> None:
        words = text.casefold().split()
        shown = [r for r in self._rows if all(w in " ".join(r).casefold() for w in words)]
        self.table.setRowCount(0)
        section = None
        bold = self.font()
        bold.setBold(True)
        for sec, what, keys, tip in shown:
            if sec != section:
                section = sec
                row = self.table.rowCount()
                self.table.insertRow(row)
                item = QTableWidgetItem(sec)
                item.setFont(bold)
                self.table.setItem(row, 0, item)
                self.table.setSpan(row, 0, 1, 3)
            row = self.table.rowCount()
            self.table.insertRow(row)
            item = QTableWidgetItem("    " + what)
            item.setToolTip(what)
            self.table.setItem(row, 0, item)
            self.table.setItem(row, 1, QTableWidgetItem(keys))
            item = QTableWidgetItem(tip)
            item.setToolTip(tip)
            self.table.setItem(row, 2, item)
