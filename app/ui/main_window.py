"""The main window: two pages, the library browser and the viewer (series strip, a grid of up to four
viewports, one active, tools and cine acting on it, a prior side by side), menus, import/export/remove jobs
with progress in the status bar, drag and drop; the PACS: query/retrieve, the worklist and the order photos are taken for."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QSettings, Qt, QTimer, QUrl, Slot
from PySide6.QtGui import QAction, QActionGroup, QColor, QImage, QKeySequence, QPalette, QUndoStack
from PySide6.QtWidgets import (
    QApplication, QDialog, QDockWidget, QFileDialog, QHBoxLayout, QLabel, QMainWindow, QMenu, QMessageBox,
    QProgressBar, QStackedWidget, QToolButton, QWidget,
)

from app import __version__, paths
from app.dicom.series import Opened, Series, open_paths, thumbnail
from app.dicom.summary import format_date
from app.errors import LightboxError
from app.jobs import Job, State
from app.ui.browser import Browser, person, study_line
from app.ui.import_export import (
    ConflictDialog, ExportDialog, ExportOptions, FailedFilesDialog, capture_context_for, file_stem, study_name,
)
from app.ui.jobs import JobRelay
from app.ui.outbox_panel import OutboxPanel, OutboxRunner, queue_sends
from app.ui.receive import ReceiveService
from app.ui.viewer.cine import SPEEDS
from app.ui.viewer.layout import LAYOUTS, ViewerGrid, layout_icon
from app.ui.viewer.measure_layer import Measurements
from app.ui.viewer.measure_tool import KEYS as MEASURE_KEYS
from app.ui.viewer.measure_tool import BUTTON_TEXT, TOOL_ACTIONS, MeasureTool, tool_icon
from app.ui.viewer.series_strip import SeriesStrip
from app.ui.viewer.tools import BUILT_IN
from app.ui.viewer.viewport import KEYS, Viewport, dropped_series
from app.ui.worklist_panel import Order, WorklistPanel

log = logging.getLogger(__name__)

class MainWindow(QMainWindow):
    def __init__(self):
        super().__init__()
        self.setWindowTitle("Lightbox")
        self.setAcceptDrops(True)
        self.series: list[Series] = []
        self._relays: set[JobRelay] = set()
        self._shown_jobs: list[Job] = []  # jobs whose progress the status bar shows
        self._dialogs: list[QDialog] = []  # reports waiting to be shown, one after the other
        self._links: deque[tuple[str, dict]] = deque()  # links waiting, followed one after the other
        self._link_job: Job | None = None
        self.last_link = None  # the LinkResult last shown (for tests and the timing log)
        self.order: Order | None = None  # the worklist order photos are imported for
        self.query_dialog = None  # the Query / Retrieve dialog, made when first asked for

        self.prior_uid = ""  # the prior study shown beside the current one ("Compare with prior")

        # The viewer page: up to four viewports; toolbar, presets, keys and the series strip act on the active one.
        self.grid = ViewerGrid(self)
        self.grid.changed.connect(self._refresh)
        self.grid.problem.connect(self._show_problem)
        self.grid.series_dropped.connect(lambda v, series, study: self.show_dropped_series(series, study, v))
        self.grid.active_changed.connect(self._active_changed)
        self.grid.shown_changed.connect(lambda: self.strip.set_shown(s.uid for s in self.grid.shown_series()))
        self.viewer_page = self.grid

        self.browser = Browser(self)
        self.browser.open_requested.connect(self.open_study)
        self.browser.export_requested.connect(self.export_studies)
        self.browser.remove_requested.connect(self.remove_studies)
        self.browser.send_requested.connect(self.send_to_pacs)
        self.browser.selection_changed.connect(self._refresh)
        self.browser.problem.connect(self._show_problem)

        # Measurements: drawn over every viewport, kept in the library, every change undoable.
        self.undo_stack = QUndoStack(self)
        self.measurements = Measurements(self._outbox_library, self)
        self.measurements.changed.connect(self._measurements_changed)
        self.measurements.message.connect(lambda text, ms: self.statusBar().showMessage(text, ms))
        self.measure_tool = MeasureTool(self.measurements, self.undo_stack)
        for v in self.grid.viewports:
            v.layers.append(self.measurements.layer)
            v.calibration_of = self.measurements.calibration

        self.pages = QStackedWidget(self)
        self.pages.addWidget(self.browser)
        self.pages.addWidget(self.viewer_page)
        self.pages.setCurrentWidget(self.viewer_page)
        self.setCentralWidget(self.pages)

        self.strip = SeriesStrip(self)
        self.strip.chosen.connect(self.show_series)
        dock = QDockWidget("Series", self)
        dock.setObjectName("series")
        dock.setWidget(self.strip)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.series_dock = dock

        # The outbox: sends to PACS, shown once there is something; the runner sends what is due.
        self.outbox_panel = OutboxPanel(self._outbox_library, self)
        self.outbox_runner = OutboxRunner(self._outbox_library, self)
        dock = QDockWidget("Outbox", self)
        dock.setObjectName("outbox")
        dock.setWidget(self.outbox_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        dock.hide()
        self.outbox_dock = dock
        self.outbox_panel.problem.connect(self._show_problem)
        self.outbox_panel.retried.connect(self.outbox_runner.forget)
        self.outbox_panel.retried.connect(lambda _id: self.outbox_runner.poke())
        self.outbox_panel.cancelled.connect(self.outbox_runner.cancel)
        self.outbox_runner.started.connect(lambda _id: self.outbox_panel.refresh())
        self.outbox_runner.finished.connect(lambda _job: self.outbox_panel.refresh())
        self.outbox_runner.message.connect(lambda text: self.statusBar().showMessage(text, 15000))
        QTimer.singleShot(0, self._start_outbox)

        # "Receive studies": Lightbox's storage SCP, while the window is open and the setting is on.
        self.receiving = ReceiveService(self)
        self.receiving.received.connect(self._received)
        self.receiving.problem.connect(lambda text: self._show_problem(text))
        QTimer.singleShot(0, self.start_receiving)

        # The worklist: shown when asked for; an order chosen there names the photos imported next.
        self.worklist_panel = WorklistPanel(self)
        self.worklist_panel.order_chosen.connect(self.set_order)
        dock = QDockWidget("Worklist", self)
        dock.setObjectName("worklist")
        dock.setWidget(self.worklist_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        dock.hide()
        self.worklist_dock = dock

        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.cancel_button = QToolButton(self)
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Stop the import or export under way (what is done stays done)")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_jobs)
        self.order_box = QWidget(self)
        row = QHBoxLayout(self.order_box)
        row.setContentsMargins(0, 0, 0, 0)
        self.order_label = QLabel(self.order_box)
        self.order_clear = QToolButton(self.order_box)
        self.order_clear.setText("Clear")
        self.order_clear.setToolTip("Stop using this worklist order for photos")
        self.order_clear.clicked.connect(self.clear_order)
        row.addWidget(self.order_label)
        row.addWidget(self.order_clear)
        self.order_box.hide()
        self.statusBar().addPermanentWidget(self.order_box)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)
        self._build_actions()
        self._refresh()

    @property
    def viewport(self) -> Viewport:
        """The active viewport: what the toolbar, presets, keys and the series strip act on."""
        return self.grid.active

    # -- actions ------------------------------------------------------------------------------

    def _action(self, text, slot, shortcut=None, tip=None, checkable=False) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(f"{tip or text}" + (f" ({QKeySequence(shortcut).toString()})" if shortcut else ""))
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        def on_active(name, *args):
            return lambda _=False: getattr(self.viewport, name)(*args)

        self.act_library = self._action("Library", self.show_library, "Ctrl+L",
                                        "Patients and studies in the library", checkable=True)
        self.act_viewer = self._action("Viewer", self.show_viewer, "Ctrl+Shift+V", "The images", checkable=True)
        self.pages_group = QActionGroup(self)
        self.pages_group.addAction(self.act_library)
        self.pages_group.addAction(self.act_viewer)
        self.act_viewer.setChecked(True)
        self.act_import = self._action("Import files…", self.choose_import_files, "Ctrl+I",
                                       "Import files, zip archives or photos into the library")
        self.act_import_dir = self._action("Import folder…", self.choose_import_folder, "Ctrl+Shift+I",
                                           "Import a folder (a CD, a USB stick …) into the library")
        self.act_export = self._action("Export…", lambda: self.export_studies(), "Ctrl+E",
                                       "Export the studies chosen in the library")
        self.act_remove = self._action("Remove from library…", lambda: self.remove_studies(), "Del",
                                       "Remove the studies chosen in the library")
        self.act_search = self._action("Search the library", self.search_library, "Ctrl+F")
        self.act_open = self._action("Open…", self.choose_files, "Ctrl+O", "Open DICOM files without importing them")
        self.act_open_dir = self._action("Open folder…", self.choose_folder, "Ctrl+Shift+O",
                                         "Open a folder without importing it")
        self.act_quit = self._action("Quit", self.close, "Ctrl+Q")
        self.tools = QActionGroup(self)
        self.act_tool = {}
        for name, label, key in (("window", "W/L", "W"), ("pan", "Pan", "P"), ("zoom", "Zoom", "Z")):
            act = self._action(label, lambda _=False, n=name: self.set_tool(n), key,
                               {"window": "Window/level with the left button"}.get(name, f"{label} with the left button"),
                               checkable=True)
            self.tools.addAction(act)
            self.act_tool[name] = act
        for kind, label, key, tip in TOOL_ACTIONS:
            act = self._action(label, lambda _=False, k=kind: self.set_tool(k), key, tip, checkable=True)
            icon = tool_icon(kind)
            if icon is not None:
                act.setIcon(icon)
            act.setIconText(BUTTON_TEXT.get(kind, label))
            self.tools.addAction(act)
            self.act_tool[kind] = act
        self.act_tool["window"].setChecked(True)
        self.act_undo = self.undo_stack.createUndoAction(self, "Undo")
        self.act_undo.setShortcut(QKeySequence("Ctrl+Z"))
        self.act_redo = self.undo_stack.createRedoAction(self, "Redo")
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.addActions([self.act_undo, self.act_redo])
        self.act_delete_measurement = self._action("Delete measurement", self.delete_measurement,
                                                   tip="Delete the selected measurement (or press Delete)")
        self.act_remove_calibration = self._action(
            "Remove manual calibration", lambda: self.measure_tool.remove_calibration(self.viewport),
            tip="Measure the image shown with its file's pixel size again (or in pixels)")
        self.act_export_measurements = self._action(
            "Export measurements…", lambda: self.export_measurements(),
            tip="The open study's measurements as CSV or JSON, for a spreadsheet or a report")
        self.act_fit = self._action("Fit", on_active("fit"), "F", "Fit to window")
        self.act_one = self._action("1:1", on_active("actual_size"), "1", "Actual size")
        self.act_rot_l = self._action("⟲ 90°", on_active("rotate", -90), "Ctrl+Shift+R", "Rotate left")
        self.act_rot_r = self._action("⟳ 90°", on_active("rotate", 90), "Ctrl+R", "Rotate right")
        self.act_flip_h = self._action("Flip H", on_active("flip", True), "H", "Flip horizontally")
        self.act_flip_v = self._action("Flip V", on_active("flip", False), "V", "Flip vertically")
        self.act_invert = self._action("Invert", on_active("toggle_invert"), "I", "Invert grey scale", checkable=True)
        self.act_reset = self._action("Reset", on_active("reset"), "Esc", "Reset the view")
        # Layouts, the active viewport, synchronisation.
        self.layouts = QActionGroup(self)
        self.act_layout = {}
        for n, (name, (rows, columns)) in enumerate(LAYOUTS.items(), 1):
            what = "One viewport" if rows * columns == 1 else f"{rows * columns} viewports, {rows} × {columns}"
            act = self._action(name.replace("x", " × "), lambda _=False, n=name: self.set_layout(n), f"Alt+{n}",
                               f"Layout: {what}", checkable=True)
            act.setIcon(layout_icon(name))
            self.layouts.addAction(act)
            self.act_layout[name] = act
        self.act_layout["1x1"].setChecked(True)
        self.act_next_viewport = self._action("Next viewport", self.grid.activate_next, "Ctrl+Tab",
                                              "Make the next viewport the active one")
        self.act_sync = self._action("Sync", self.set_synchronised, "Y", "Synchronise the viewports: paging, "
                                     "zoom/pan and window/level follow the active one", checkable=True)
        self.act_sync_kind = {}
        for kind, label in (("scroll", "Paging (slice position, else image number)"), ("zoom", "Zoom and pan"),
                            ("window", "Window/level (same modality)")):
            act = QAction(label, self)
            act.setCheckable(True)
            act.setChecked(True)
            act.toggled.connect(lambda _on, _k=kind: self._sync_kinds_changed())
            self.act_sync_kind[kind] = act
        # Cine, on the active viewport.
        self.act_play = self._action("Play", lambda: self.viewport.cine.toggle(), "Space",
                                     "Play or pause the frames (cine), at the rate the file gives")
        self.act_faster = self._action("Faster", lambda: self.viewport.cine.faster(), "]", "Play faster")
        self.act_slower = self._action("Slower", lambda: self.viewport.cine.slower(), "[", "Play slower")
        self.act_loop = self._action("Loop", lambda on: self.viewport.cine.set_loop(on), tip=(
            "Start again at the first frame after the last"), checkable=True)
        self.act_loop.setChecked(True)
        self.speed_menu = QMenu("Speed", self)
        self.speed_group = QActionGroup(self)
        self.act_speed = {}
        for speed in SPEEDS:
            act = self.speed_menu.addAction(f"{speed:g} ×", lambda sp=speed: self.viewport.cine.set_speed(sp))
            act.setCheckable(True)
            self.speed_group.addAction(act)
            self.act_speed[speed] = act
        self.act_shortcuts = self._action("Keyboard shortcuts…", self.show_shortcuts, "F1",
                                          "Every shortcut, and what the mouse does in a viewport")
        self.act_about = self._action("About Lightbox", self.show_about)
        self.act_pacs = self._action("PACS configurations…", self.show_pacs_configurations,
                                     tip="The PACS this computer works with: add, change, test")
        self.act_query = self._action("Query / Retrieve…", self.show_query_retrieve, "Ctrl+Shift+Q",
                                      "Search a PACS and bring studies into the library")
        self.act_compare = self._action("Compare with prior…", self.compare_with_prior, tip=(
            "Show another study of this patient beside this one (from the library or a PACS)"))
        self.act_compare.setIconText("Compare")  # the toolbar's label; menus say it in full
        self.act_single = self._action("Single viewport", self.single_viewport, tip=(
            "Back to one viewport (closes the comparison)"))
        self.preset_menu = QMenu("Presets", self)
        self.preset_menu.aboutToShow.connect(self._fill_presets)
        self.act_presets = [self._action(f"Preset {n}", lambda _=False, i=n - 1: self.apply_preset(i), f"Ctrl+{n}")
                            for n in range(1, 10)]

        bar = self.menuBar()
        m = bar.addMenu("&File")
        m.addActions([self.act_import, self.act_import_dir])
        m.addSeparator()
        m.addActions([self.act_export, self.act_export_measurements, self.act_remove])
        m.addSeparator()
        m.addActions([self.act_open, self.act_open_dir])
        m.addSeparator()
        m.addAction(self.act_quit)
        m = bar.addMenu("&Edit")
        m.addActions([self.act_undo, self.act_redo])
        m.addSeparator()
        m.addAction(self.act_delete_measurement)
        m = bar.addMenu("&View")
        m.addActions([self.act_library, self.act_viewer, self.act_search])
        m.addSeparator()
        m.addActions([self.act_tool[name] for name in BUILT_IN])
        m.addSeparator()
        m.addActions([self.act_fit, self.act_one, self.act_rot_l, self.act_rot_r, self.act_flip_h,
                      self.act_flip_v, self.act_invert, self.act_reset])
        m.addSeparator()
        m.addMenu(self.preset_menu)
        m.addSeparator()
        layout_menu = m.addMenu("Layout")
        layout_menu.addActions(list(self.act_layout.values()))
        layout_menu.addSeparator()
        layout_menu.addAction(self.act_next_viewport)
        layout_menu.addSeparator()
        layout_menu.addAction(self.act_sync)
        self.sync_menu = layout_menu.addMenu("Synchronise")
        self.sync_menu.addActions(list(self.act_sync_kind.values()))
        cine_menu = m.addMenu("Cine")
        cine_menu.addActions([self.act_play, self.act_faster, self.act_slower, self.act_loop])
        cine_menu.addMenu(self.speed_menu)
        m.addSeparator()
        m.addActions([self.act_compare, self.act_single])
        m.addSeparator()
        self.act_outbox = self.outbox_dock.toggleViewAction()
        self.act_outbox.setText("Outbox")
        self.act_outbox.setToolTip("Sends to PACS: progress, errors, retry, cancel")
        m.addAction(self.act_outbox)
        m = bar.addMenu("&Measure")
        for group in (("select",), ("length", "polyline", "angle", "cobb", "ellipse", "rectangle", "arrow", "text"),
                      ("vhs", "norberg", "tpa"), ("calibrate", "calibrate_line")):
            m.addActions([self.act_tool[kind] for kind in group])
            m.addSeparator()
        m.addAction(self.act_remove_calibration)
        m = bar.addMenu("&PACS")
        self.act_worklist = self.worklist_dock.toggleViewAction()
        self.act_worklist.setText("Worklist")
        self.act_worklist.setToolTip("Today's orders: choose one for the photos you take")
        m.addActions([self.act_query, self.act_worklist])
        m.addSeparator()
        self.act_receive = self._action("Receive studies", self.toggle_receiving, checkable=True,
                                        tip="Let PACS and modalities send studies to this computer")
        m.addAction(self.act_receive)
        m.aboutToShow.connect(lambda: self.act_receive.setText(f"Receive studies ({self.receiving.describe()})"))
        m.addSeparator()
        m.addAction(self.act_pacs)
        m = bar.addMenu("&Help")
        m.addActions([self.act_shortcuts, self.act_about])

        pages = self.addToolBar("Pages")
        pages.setObjectName("pages")
        pages.setMovable(False)
        pages.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        pages.addActions([self.act_library, self.act_viewer])
        pages.addSeparator()
        self.act_import_button = QAction("Import…", self)
        self.act_import_button.setToolTip("Import files, a folder, a zip archive or photos into the library")
        import_menu = QMenu(self)
        import_menu.addActions([self.act_import, self.act_import_dir])
        self.act_import_button.setMenu(import_menu)
        self.act_import_button.triggered.connect(self.choose_import_files)
        pages.addAction(self.act_import_button)
        button = pages.widgetForAction(self.act_import_button)
        if isinstance(button, QToolButton):
            button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        pages.addAction(self.act_open)
        # A series dragged from the library over the Viewer button turns the page, to be dropped on the image.
        self._viewer_button = pages.widgetForAction(self.act_viewer)
        self._viewer_button.setAcceptDrops(True)
        self._viewer_button.installEventFilter(self)
        self.pages_bar = pages

        tb = self.addToolBar("Tools")
        tb.setObjectName("tools")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        tb.addActions([self.act_tool[name] for name in BUILT_IN])
        tb.addSeparator()
        presets = QToolButton(self)
        presets.setText("Presets")
        presets.setToolTip("Window presets (Ctrl+1 … Ctrl+9)")
        presets.setMenu(self.preset_menu)
        presets.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        tb.addWidget(presets)
        tb.addSeparator()
        tb.addActions([self.act_fit, self.act_one, self.act_rot_l, self.act_rot_r, self.act_flip_h,
                       self.act_flip_v, self.act_invert, self.act_reset])
        tb.addSeparator()
        tb.addAction(self.act_compare)
        self.tools_bar = tb

        lb = self.addToolBar("Layout")
        lb.setObjectName("layout")
        lb.setMovable(False)
        lb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        lb.addActions(list(self.act_layout.values()))
        lb.addSeparator()
        lb.addAction(self.act_sync)
        sync_button = lb.widgetForAction(self.act_sync)
        if isinstance(sync_button, QToolButton):
            sync_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            sync_button.setMenu(self.sync_menu)
            sync_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        lb.addSeparator()
        for act in (self.act_play, self.act_loop):
            lb.addAction(act)
            button = lb.widgetForAction(act)
            if isinstance(button, QToolButton):
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.speed_button = QToolButton(self)
        self.speed_button.setToolTip("Cine speed ([ slower, ] faster)")
        self.speed_button.setMenu(self.speed_menu)
        self.speed_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.act_speed_button = lb.insertWidget(self.act_loop, self.speed_button)
        self.layout_bar = lb

        self.addToolBarBreak()
        mb = self.addToolBar("Measure")
        mb.setObjectName("measure")
        mb.setMovable(False)
        mb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        for kind, *_rest in TOOL_ACTIONS:
            if kind in ("select", "vhs", "calibrate"):
                mb.addSeparator()
            act = self.act_tool[kind]
            mb.addAction(act)
            button = mb.widgetForAction(act)
            if act.icon().isNull() and isinstance(button, QToolButton):
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.measure_bar = mb

    def eventFilter(self, watched, event) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.FileOpen and watched is QApplication.instance():
            return self.file_open_event(event)
        if watched is self._viewer_button and event.type() == QEvent.Type.DragEnter:
            if dropped_series(event.mimeData()) is not None:
                event.acceptProposedAction()
                self.show_viewer()
                return True
        return super().eventFilter(watched, event)

    def file_open_event(self, event) -> bool:
        """macOS hands clicked lightbox:// links (and files opened from Finder) to the app as QFileOpenEvent."""
        url = event.url()
        if url.scheme().lower() == "lightbox":
            self.bring_forward()
            self.open_link(url.toString(QUrl.ComponentFormattingOption.FullyEncoded))
            return True
        if event.file():
            self.bring_forward()
            self.open_paths([event.file()])
            return True
        return False

    def set_tool(self, name: str) -> None:
        """The left button's tool: "window", "pan", "zoom", or a measurement tool (see TOOL_ACTIONS)."""
        if name in BUILT_IN:
            self.grid.set_tool(name)
            self.statusBar().clearMessage()
        else:
            self.measure_tool.set_kind(name)
            self.grid.set_tool(self.measure_tool)
        self.act_tool[name].setChecked(True)

    # -- measurements ---------------------------------------------------------------------------

    @Slot()
    def _measurements_changed(self) -> None:
        for v in self.grid.viewports:
            v.update()

    def forget_measurements(self) -> None:
        """Studies open or close: measurements are read afresh from the library, and undo starts over."""
        self.measure_tool.cancel()
        self.measurements.forget()
        self.undo_stack.clear()

    def delete_measurement(self) -> None:
        if not self.measure_tool.delete_selected():
            self.statusBar().showMessage("Select a measurement first (click it with a measurement tool)", 5000)

    def export_measurements(self, path=None, format: str | None = None) -> Job | None:
        """File ▸ Export measurements: the open study's measurements as CSV or JSON (asks where without `path`)."""
        from app.measure.export import export_measurements

        s = self.viewport.series
        library = self._outbox_library()
        study = None
        if s is not None and library is not None:
            try:
                study = library.study(s.study_uid)
            except LightboxError:
                study = None
        if study is None:
            self._show_problem("Measurements are exported from the library: import this study first "
                               "(File ▸ Import), then measure it there." if s is not None else
                               "Open a study of the library to export its measurements.", dialog=path is None)
            return None
        if path is None:
            from PySide6.QtCore import QStandardPaths

            folder = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
                          or Path.home())
            chosen, kind = QFileDialog.getSaveFileName(self, "Export measurements",
                                                       str(folder / f"{file_stem(study)}_measurements.csv"),
                                                       "CSV for spreadsheets (*.csv);;JSON (*.json)")
            if not chosen:
                return None
            path = Path(chosen)
            if not path.suffix:
                path = path.with_suffix(".json" if "json" in kind.lower() else ".csv")
        path = Path(path)
        format = format or ("json" if path.suffix.lower() == ".json" else "csv")
        job = Job(lambda reporter: export_measurements(study.uid, format=format, to=path), "Exporting measurements")
        self._run(job, self._measurements_exported, cancellable=False)
        return job

    @Slot(object)
    def _measurements_exported(self, job: Job) -> None:
        if job.state != State.DONE:
            self._show_problem(f"The measurements were not exported.\n\n{job.error}", dialog=True)
            return
        done = job.result
        self.statusBar().showMessage(f"Exported {done.count} measurement{'s' if done.count != 1 else ''} "
                                     f"to {done.path}", 15000)

    # -- layouts, the active viewport, synchronisation ---------------------------------------------

    def set_layout(self, name: str) -> None:
        self.grid.set_layout(name)
        self.act_layout[name].setChecked(True)
        if len(self.grid.visible) == 1 and self.prior_uid and self.viewport.series is not None \
                and self.viewport.series.study_uid != self.prior_uid:
            self.close_comparison()
        self.show_viewer()

    def single_viewport(self) -> None:
        if self.prior_uid:
            self.close_comparison()
        else:
            self.set_layout("1x1")

    def set_synchronised(self, on: bool) -> None:
        self.grid.set_synchronised(on, [k for k, a in self.act_sync_kind.items() if a.isChecked()])
        self.act_sync.setChecked(self.grid.synchronised)

    def _sync_kinds_changed(self) -> None:
        self.grid.set_synchronised(self.grid.synchronised, [k for k, a in self.act_sync_kind.items() if a.isChecked()])

    @Slot(object)
    def _active_changed(self, viewport: Viewport) -> None:
        self.strip.select(viewport.series)

    def _fill_presets(self) -> None:
        self.preset_menu.clear()
        presets = self.viewport.presets()
        if not presets:
            self.preset_menu.addAction("(no image)").setEnabled(False)
        headings = {"file": "From the image", "modality": "For this modality", "auto": "Automatic"}
        source = None
        for i, preset in enumerate(presets):
            if preset.source != source:
                source = preset.source
                self.preset_menu.addSection(headings.get(source, source))
            label = f"{preset.name}\t{preset.voi}"
            act = self.preset_menu.addAction(label, lambda p=preset: self.viewport.set_voi(p.voi))
            if i < 9:
                act.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))

    def apply_preset(self, index: int) -> None:
        presets = self.viewport.presets()
        if 0 <= index < len(presets):
            self.viewport.set_voi(presets[index].voi)
            self.statusBar().showMessage(f"{presets[index].name}: {presets[index].voi}", 3000)

    # -- pages --------------------------------------------------------------------------------

    @property
    def on_library(self) -> bool:
        return self.pages.currentWidget() is self.browser

    def show_library(self) -> None:
        first = self.pages.currentWidget() is not self.browser
        self.pages.setCurrentWidget(self.browser)
        self.series_dock.hide()
        self.tools_bar.hide()
        self.measure_bar.hide()
        self.act_library.setChecked(True)
        if first:
            self.browser.refresh()
            self.browser.table.setFocus()
        self._refresh()

    def show_viewer(self) -> None:
        self.pages.setCurrentWidget(self.viewer_page)
        self.series_dock.show()
        self.tools_bar.show()
        self.measure_bar.show()
        self.act_viewer.setChecked(True)
        self.viewport.setFocus()
        self._refresh()

    def search_library(self) -> None:
        self.show_library()
        self.browser.focus_search()

    # -- opening ------------------------------------------------------------------------------

    def _choose(self, title: str, then, file_filter: str | None = None) -> None:
        """Ask for files (with a filter) or a folder (without), then pass the chosen paths on."""
        if file_filter is not None:
            chosen, _ = QFileDialog.getOpenFileNames(self, title, "", file_filter)
        else:
            folder = QFileDialog.getExistingDirectory(self, title)
            chosen = [folder] if folder else []
        if chosen:
            then(chosen)

    def choose_files(self) -> None:
        self._choose("Open DICOM files", self.open_paths, "DICOM files (*.dcm *.DCM *);;All files (*)")

    def choose_folder(self) -> None:
        self._choose("Open a folder of DICOM files", self.open_paths)

    def open_paths(self, names: list[str]) -> Job:
        """Show files in the viewer without importing them."""
        job = Job(lambda reporter: open_paths(names, reporter), "Opening files")
        self._run(job, self._opened)
        return job

    def _run(self, job: Job, done, *, cancellable: bool = True) -> JobRelay:
        """Start a job off the GUI thread, its progress (and a Cancel button) in the status bar;
        `done(job)` runs on the GUI thread when it ends."""
        relay = JobRelay(job, self)
        relay.progress.connect(self._job_progress)
        relay.finished.connect(self._job_ended)  # one slot: bookkeeping and `done` in one go
        self._relays.add(relay)
        job.done_slot = done
        job.relay = relay
        job.cancellable = cancellable
        self._shown_jobs.append(job)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.cancel_button.setVisible(any(getattr(j, "cancellable", False) for j in self._shown_jobs))
        relay.start()
        return relay

    @Slot(object)
    def _job_progress(self, job: Job) -> None:
        if job not in self._shown_jobs:
            return  # a late report of a job already ended
        p = job.progress
        if p.total:
            self.progress.setRange(0, int(p.total))
            self.progress.setValue(int(p.done))
        if p.message:
            self.statusBar().showMessage(p.message)

    @Slot(object)
    def _job_ended(self, job: Job) -> None:
        if job in self._shown_jobs:
            self._shown_jobs.remove(job)
        self.progress.setVisible(bool(self._shown_jobs))
        self.cancel_button.setVisible(any(getattr(j, "cancellable", False) for j in self._shown_jobs))
        if not self._shown_jobs:
            self.statusBar().clearMessage()
        try:
            job.done_slot(job)
        finally:
            self._relays.discard(job.relay)

    def cancel_jobs(self) -> None:
        for job in self._shown_jobs:
            if getattr(job, "cancellable", False):
                job.cancel()
        self.statusBar().showMessage("Stopping…")

    @property
    def busy(self) -> bool:
        return bool(self._shown_jobs)

    @Slot(object)
    def _opened(self, job: Job) -> None:
        if job.state == State.CANCELLED:
            self.statusBar().showMessage("Opening cancelled", 5000)
            return
        if job.state != State.DONE:
            self._show_problem(str(job.error), dialog=True)
            self.opened_problem()
            return
        opened: Opened = job.result
        known = {s.uid for s in self.series}
        new = [s for s in opened.series if s.uid not in known]
        self.series += new
        self.strip.set_series(self.series)
        if new:
            self.show_viewer()
            self.show_series(new[0])
            self._make_thumbnails(new)
        message = f"Opened {opened.count} image{'s' if opened.count != 1 else ''} in {len(opened.series)} series"
        if opened.problems:
            message += f"; {len(opened.problems)} file{'s' if len(opened.problems) != 1 else ''} skipped"
            for path, reason in opened.problems:
                log.info("skipped %s: %s", path, reason)
        self.statusBar().showMessage(message, 8000)
        if not opened.series:
            lines = [f"{Path(p).name}: {r}" for p, r in opened.problems[:8]]
            more = len(opened.problems) - len(lines)
            if more > 0:
                lines.append(f"… and {more} more")
            self._show_problem("No image could be opened.\n\n" + "\n".join(lines), dialog=True)
            self.opened_problem()

    def opened_problem(self) -> None:
        """Hook for automation: opening ended with nothing to show."""
        if os.environ.get("LIGHTBOX_QUIT_AFTER_SHOWN"):
            QApplication.exit(1)

    def open_study(self, study_uid: str, series_uid: str = "") -> bool:
        """Show a study of the library in the viewer (at one of its series), instead of what was open."""
        if not study_uid:
            return False
        try:
            series = self.browser.library.viewer_series(study_uid)
            study = self.browser.library.study(study_uid)
        except LightboxError as exc:
            self._show_problem(str(exc), dialog=True)
            return False
        if not series:
            self._show_problem("This study has no images to show.", dialog=True)
            return False
        self.close_comparison()
        self.forget_measurements()
        self.series = series
        self.strip.set_series(series)
        target = next((s for s in series if s.uid == series_uid), series[0])
        # The chosen series in the first viewport, the study's next ones in the others the layout shows.
        self.grid.clear()
        self.grid.set_active(self.grid.visible[0])
        self.show_viewer()
        self.show_series(target)
        for v, other in zip(self.grid.visible[1:], [s for s in series if s is not target]):
            v.set_series(other)
        self._make_thumbnails(series, from_library=True)
        self.statusBar().showMessage(f"{study.patient.animal_name or '(no name)'}: {study_line(study)}", 8000)
        return True

    def show_dropped_series(self, series_uid: str, study_uid: str, viewport: Viewport | None = None) -> None:
        """A series (or, without `series_uid`, a whole study) dragged from the library or the series strip
        onto a viewport: shown there (a study: its first series), added to the open series."""
        viewport = viewport or self.viewport
        series = next((s for s in self.series if s.uid == series_uid), None) if series_uid else None
        if series is None and study_uid:
            try:
                found = self.browser.library.viewer_series(study_uid)
            except LightboxError as exc:
                self._show_problem(str(exc), dialog=True)
                return
            known = {s.uid for s in self.series}
            new = [s for s in found if s.uid not in known] if not series_uid else \
                [s for s in found if s.uid == series_uid]
            if new:
                self.series += new
                self.strip.set_series(self.series)
                self._make_thumbnails(new, from_library=True)
            series = next((s for s in self.series if s.uid == series_uid), None) if series_uid else \
                next((s for s in self.series if s.study_uid == study_uid), None)
        if series is None:
            self._show_problem("That series is no longer in the library." if series_uid else
                               "That study has no images to show.")
            return
        self.show_viewer()
        self.show_series(series, viewport)

    def _make_thumbnails(self, series: list[Series], from_library: bool = False) -> None:
        cache = self.browser.thumbnails if from_library else None
        series = [s for s in series if not s.is_document]  # the strip draws those itself

        def work(reporter):
            out = {}
            for s in series:
                reporter.check()
                try:
                    out[s.uid] = _pixels(cache.get(s)) if cache is not None else thumbnail(s)
                except LightboxError:
                    continue
            return out

        job = Job(work, "Thumbnails")
        relay = JobRelay(job, self)
        relay.finished.connect(self._thumbnails_done)
        relay.finished.connect(lambda _job, r=relay: self._relays.discard(r))
        self._relays.add(relay)
        relay.start()

    @Slot(object)
    def _thumbnails_done(self, job: Job) -> None:
        for uid, pixels in (job.result or {}).items():
            self.strip.set_thumbnail(uid, pixels)

    @Slot(object)
    def show_series(self, series: Series, viewport: Viewport | None = None) -> None:
        """Show a series in a viewport (the active one by default), which becomes the active one; a viewport
        already showing it keeps its frame, window and zoom."""
        v = viewport or self.viewport
        if v.series is None or v.series.uid != series.uid:
            v.set_series(series)
        self.grid.set_active(v)
        self.strip.select(series)
        v.setFocus()

    # -- the library: import, export, remove ---------------------------------------------------

    def choose_import_files(self) -> None:
        self._choose("Import into the library", self.import_into_library,
                     "DICOM files, zip archives and photos (*);;Zip archives (*.zip);;Photos (*.jpg *.jpeg *.png)")

    def choose_import_folder(self) -> None:
        self._choose("Import a folder into the library", self.import_into_library)

    # -- links and requests from other starts ---------------------------------------------------

    @Slot(list, float)
    def handle_request(self, argv: list[str], sent: float = 0.0) -> None:
        """What a second start of Lightbox asked for: ["open", URI], ["view", PATH...], or [] to come forward."""
        self.bring_forward()
        if len(argv) >= 2 and argv[0] == "open":
            self.open_link(argv[1], handover_s=max(0.0, time.time() - sent) if sent else None)
        elif argv and argv[0] == "view" and argv[1:]:
            self.open_paths(argv[1:])

    def bring_forward(self) -> None:
        if self.isMinimized():
            self.showNormal()
        self.show()
        self.raise_()
        self.activateWindow()

    def open_link(self, uri: str, handover_s: float | None = None) -> None:
        """Download what a lightbox:// link names into the library and show it; links queue up in order."""
        self._links.append((uri, {"handover": handover_s, "arrived": time.perf_counter()}))
        if self._link_job is None:
            self._next_link()

    def _next_link(self) -> None:
        if not self._links:
            return
        from app.links.open import open_link

        uri, timing = self._links.popleft()
        job = Job(lambda reporter: open_link(uri, reporter=reporter), "Opening the link")
        self._link_job = job
        self.statusBar().showMessage("Downloading from the link…")
        self._run(job, lambda j, t=timing: self._link_done(j, t))

    def _link_done(self, job: Job, timing: dict) -> None:
        self._link_job = None
        try:
            if job.state == State.CANCELLED:
                self.statusBar().showMessage("Link cancelled", 8000)
            elif job.state != State.DONE:
                self._show_problem(str(job.error), dialog=True)
                self.opened_problem()
            else:
                self._show_link_result(job.result, timing)
        finally:
            self._next_link()

    def _show_link_result(self, result, timing: dict) -> None:
        self.last_link = result
        self.browser.refresh(select=result.study_uids[:1])
        shown_at = time.perf_counter()
        if os.environ.get("LIGHTBOX_TIMINGS"):
            self.grid.painted.connect(self._log_link_timing)
            self._timing = {**timing, **result.timings, "import_done": shown_at}
        if self.open_study(result.study_uids[0]):
            message = f"From the link: {result.imported.summary()}"
            if result.warnings:  # e.g. a link too long for the Windows shell
                message += " · " + " · ".join(result.warnings)
            self.statusBar().showMessage(message, 20000)
        if result.imported.conflicts:
            self._queue_dialog(ConflictDialog(result.imported.conflicts, self))
        if result.imported.failed:
            self._queue_dialog(FailedFilesDialog(result.imported.failed, self))

    @Slot()
    def _log_link_timing(self) -> None:
        """One JSON line per link shown, to the file LIGHTBOX_TIMINGS names (for bench/)."""
        self.grid.painted.disconnect(self._log_link_timing)
        t = self._timing
        now = time.perf_counter()
        record = {"handover_ms": None if t["handover"] is None else round(t["handover"] * 1000, 1),
                  "download_ms": round(t["download"] * 1000, 1), "import_ms": round(t["import"] * 1000, 1),
                  "decode_render_ms": round((now - t["import_done"]) * 1000, 1),
                  "arrived_to_shown_ms": round((now - t["arrived"]) * 1000, 1), "shown_wall": time.time()}
        with open(os.environ["LIGHTBOX_TIMINGS"], "a", encoding="utf-8") as fp:
            fp.write(json.dumps(record) + "\n")

    def import_into_library(self, names: list[str], context=None) -> Job:
        """Import files, folders, archives into the library in a job; the browser shows the result.

        Photos (JPEG, PNG) need a study: with `context` they go into it; else into the worklist order in use;
        else the user is asked whether they belong to the study chosen in the library.
        """
        from app.library import import_paths

        names = [str(n) for n in names]
        order = self.order if context is None else None
        if order is not None:
            context = order.context

        def work(reporter):
            result = import_paths(names, context=context, reporter=reporter)
            photos = [] if context is not None else _photos(result.failed)
            return result, photos

        job = Job(work, "Importing")
        job.context = context
        job.order = order
        self.statusBar().showMessage("Importing…")
        self._run(job, self._imported)
        return job

    @Slot(object)
    def _imported(self, job: Job) -> None:
        if job.state == State.CANCELLED:
            self.statusBar().showMessage("Import cancelled; what was imported before stays in the library", 10000)
            self.browser.refresh()
            return
        if job.state != State.DONE:
            self.browser.refresh()
            self._show_problem(str(job.error), dialog=True)
            return
        result, photos = job.result
        self.last_import = result
        failed = result.failed
        order = getattr(job, "order", None)
        if order is not None and not order.started and order.study_uid in result.studies:
            self.start_procedure(order)
        if photos:
            study = self.browser.current_study()
            if study is not None and self._ask(
                    "Import photos",
                    f"{len(photos)} photo{'s' if len(photos) != 1 else ''} (JPEG or PNG) "
                    f"{'were' if len(photos) != 1 else 'was'} found.\n\nAdd {'them' if len(photos) != 1 else 'it'} "
                    f"to {study_name(study)} ({study.patient.species or 'patient'}, "
                    f"owner {person(study.patient.owner) or 'unknown'})?"):
                chosen = set(photos)
                failed = [e for e in failed if e.path not in chosen]
                self.import_into_library(photos, context=capture_context_for(study))
        summary = result.summary()
        if photos and len(failed) < len(result.failed):
            summary += f"; adding {len(photos)} photo{'s' if len(photos) != 1 else ''}"
        self.statusBar().showMessage(f"Import: {summary}", 15000)
        self.show_library()
        self.browser.refresh(select=result.studies[:1] or None)
        if result.stopped:
            self._show_problem(f"The import stopped early.\n\n{result.stopped}", dialog=True)
        if result.conflicts:
            self._queue_dialog(ConflictDialog(result.conflicts, self))
        if failed:
            self._queue_dialog(FailedFilesDialog(failed, self))

    def _ask(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(self, title, text,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.Yes)
        return answer == QMessageBox.StandardButton.Yes

    def _queue_dialog(self, dialog: QDialog) -> None:
        """Reports are shown one after the other, without blocking what runs meanwhile."""
        if os.environ.get("LIGHTBOX_QUIT_AFTER_SHOWN"):
            dialog.deleteLater()
            return
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.finished.connect(lambda _result, d=dialog: self._dialog_closed(d))
        self._dialogs.append(dialog)
        if len(self._dialogs) == 1:
            dialog.open()

    def _dialog_closed(self, dialog: QDialog) -> None:
        if dialog in self._dialogs:
            self._dialogs.remove(dialog)
        if self._dialogs:
            self._dialogs[0].open()

    @property
    def dialogs(self) -> list[QDialog]:
        """The import reports shown or waiting (the first is shown)."""
        return list(self._dialogs)

    def export_studies(self, uids: list[str] | None = None, options: ExportOptions | None = None) -> Job | None:
        """Export studies of the library in a job; without `options`, the user chooses in a dialog."""
        uids = list(uids) if uids else self.browser.selected_uids()
        if not uids:
            self.statusBar().showMessage("Choose one or more studies in the library to export", 5000)
            return None
        try:
            from app.library.export import export_study
        except ImportError:
            self._show_problem("Export is not available in this version of Lightbox.", dialog=True)
            return None
        try:
            studies = [self.browser.library.study(uid) for uid in uids]
        except LightboxError as exc:
            self._show_problem(str(exc), dialog=True)
            return None
        if options is None:
            options = ExportDialog.ask(studies, self)
            if options is None:
                return None

        def work(reporter):
            results = []
            for n, study in enumerate(studies):
                reporter.update(0, None, f"Exporting {study_name(study)} ({n + 1} of {len(studies)})")
                results.append(export_study(study.uid, options.target(study, n, len(studies)),
                                            format=options.format, anonymize=options.anonymize, reporter=reporter,
                                            measurements=options.measurements))
            return results

        job = Job(work, "Exporting")
        job.options = options
        self._run(job, self._exported)
        return job

    @Slot(object)
    def _exported(self, job: Job) -> None:
        if job.state == State.CANCELLED:
            self.statusBar().showMessage("Export cancelled; nothing was left half-written", 8000)
            return
        if job.state != State.DONE:
            self._show_problem(f"The export did not finish.\n\n{job.error}", dialog=True)
            return
        results = job.result or []
        if len(results) == 1 and hasattr(results[0], "summary"):
            message = results[0].summary()
        else:
            message = f"Exported {len(results)} studies to {job.options.destination}"
        self.statusBar().showMessage(message, 15000)
        warnings = [w for r in results for w in getattr(r, "warnings", [])]
        if warnings:
            self._show_problem(message + "\n\n" + "\n".join(warnings[:12]), dialog=True)

    def remove_studies(self, uids: list[str] | None = None) -> Job | None:
        """Remove studies (their files too) from the library, once the user has confirmed."""
        uids = list(uids) if uids else self.browser.selected_uids()
        if not uids:
            return None
        try:
            studies = [self.browser.library.study(uid) for uid in uids]
        except LightboxError as exc:
            self._show_problem(str(exc), dialog=True)
            return None
        what = study_name(studies[0]) if len(studies) == 1 else f"these {len(studies)} studies"
        answer = QMessageBox.question(
            self, "Remove from the library",
            f"Remove {what} from the library?\n\nIts images are deleted from this computer. "
            "Copies elsewhere (a PACS, a CD) are not touched.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Cancel)
        if answer != QMessageBox.StandardButton.Yes:
            return None
        self._close_studies(set(uids))

        def work(reporter):
            from app.library import Library

            removed = 0
            with Library() as library:
                for n, uid in enumerate(uids):
                    reporter.update(n, len(uids), f"Removing study {n + 1} of {len(uids)}")
                    removed += library.remove_study(uid)
            return removed

        job = Job(work, "Removing")
        self._run(job, self._removed, cancellable=False)
        return job

    def _close_studies(self, uids: set[str]) -> None:
        """Take series of these studies out of the viewer (their files are about to go)."""
        keep = [s for s in self.series if s.study_uid not in uids]
        if len(keep) == len(self.series):
            return
        if self.prior_uid in uids:
            self.close_comparison()
        self.forget_measurements()
        self.series = keep
        self.strip.set_series(keep)
        for v in self.grid.viewports:
            if v.series is not None and v.series.study_uid in uids:
                v.caption = ""
                v.set_series(None)
        if self.viewport.series is None and keep:
            self.show_series(keep[0])

    @Slot(object)
    def _removed(self, job: Job) -> None:
        self.browser.refresh()
        if job.state != State.DONE:
            self._show_problem(str(job.error), dialog=True)
        else:
            self.statusBar().showMessage(f"Removed from the library ({job.result} images deleted)", 8000)

    # -- state shown around the viewport -------------------------------------------------------

    @Slot()
    def _refresh(self) -> None:
        v = self.viewport
        s = v.series
        viewer = not self.on_library
        if not viewer:
            n = self.browser.total
            title = f"Library ({n} stud{'y' if n == 1 else 'ies'}) — Lightbox"
        elif s is not None:
            name = s.patient.name.replace("^", " ") or "(no name)"
            title = f"{name} — {s.title} — Lightbox"
        else:
            title = "Lightbox"
        self.setWindowTitle(title)
        has = viewer and v.image is not None
        for act in (self.act_fit, self.act_one, self.act_rot_l, self.act_rot_r, self.act_flip_h,
                    self.act_flip_v, self.act_invert, self.act_reset):
            act.setEnabled(has)
        for act in (*self.act_tool.values(), *self.act_presets):
            act.setEnabled(viewer)
        self.act_invert.setChecked(v.invert)
        self.act_export_measurements.setEnabled(s is not None and not s.is_document)
        self.act_remove_calibration.setEnabled(has)
        self.act_delete_measurement.setEnabled(viewer)
        chosen = not viewer and bool(self.browser.selected_uids())
        self.act_export.setEnabled(chosen)
        self.act_remove.setEnabled(chosen)
        self.act_compare.setEnabled(s is not None and not s.is_document)
        several = len(self.grid.visible) > 1
        self.act_single.setEnabled(several or bool(self.prior_uid))
        self.act_layout[self.grid.layout_name].setChecked(True)
        for act in (*self.act_layout.values(), self.act_sync):
            act.setEnabled(viewer)
        self.act_next_viewport.setEnabled(viewer and several)
        self.act_sync.setChecked(self.grid.synchronised)
        cine = v.cine
        playable = viewer and (cine.can_play or cine.playing)
        for act in (self.act_play, self.act_faster, self.act_slower, self.act_loop):
            act.setEnabled(playable)
        self.speed_button.setEnabled(playable)
        self.act_play.setText("Pause" if cine.playing else "Play")
        self.act_play.setToolTip(("Pause" if cine.playing else "Play") + " the frames (Space)" +
                                 (f": {cine.describe()}" if playable else ""))
        self.act_loop.setChecked(cine.loop)
        self.speed_button.setText(f"{cine.speed:g}×")
        if cine.speed in self.act_speed:
            self.act_speed[cine.speed].setChecked(True)

    @Slot(str)
    def _show_problem(self, message: str, dialog: bool = False) -> None:
        self.statusBar().showMessage(message.splitlines()[0], 10000)
        if dialog and not os.environ.get("LIGHTBOX_QUIT_AFTER_SHOWN"):
            QMessageBox.warning(self, "Lightbox", message)

    # -- the outbox ---------------------------------------------------------------------------

    def _outbox_library(self):
        """The GUI thread's library connection for the outbox; None while there is no library at all."""
        from app.library import library_root

        if not (library_root() / "index.sqlite").exists():
            return None
        return self.browser.library

    def _start_outbox(self) -> None:
        """Show sends left to do (a killed Lightbox's too) and start sending what is due."""
        self.outbox_panel.refresh()
        if self.outbox_panel.active:
            self.outbox_dock.show()
        self.outbox_runner.start()

    @Slot(object, list, str)
    def send_to_pacs(self, destination, study_uids: list[str], series_uid: str = "") -> list[int]:
        """Queue studies (one send each) or a series for a PACS; the runner sends them, the outbox shows them."""
        ids: list[int] = []
        try:
            if series_uid:
                ids += queue_sends(self.browser.library, destination, series_uid=series_uid)
            for uid in [] if series_uid else study_uids:
                ids += queue_sends(self.browser.library, destination, [uid])
        except LightboxError as exc:
            self._show_problem(str(exc), dialog=True)
        if not ids:
            return []
        self.outbox_dock.show()
        self.outbox_panel.refresh()
        self.outbox_panel.select(ids[0])
        self.outbox_runner.poke()
        what = "the series" if series_uid else "the study" if len(ids) == 1 else f"{len(ids)} studies"
        self.statusBar().showMessage(f"Sending {what} to {destination.name} ({destination.aet})", 8000)
        return ids

    def show_pacs_configurations(self) -> None:
        from app.ui.pacs_dialogs import PacsConfigurationsDialog

        dialog = PacsConfigurationsDialog(self)
        try:
            dialog.exec()
        finally:
            dialog.deleteLater()
        self.worklist_panel.reload_configs()
        if self.query_dialog is not None:
            self.query_dialog.reload_configs()

    # -- import from a PACS -------------------------------------------------------------------

    def show_query_retrieve(self):
        """The Query / Retrieve dialog (one, kept while the window lives), brought forward."""
        from app.ui.query_dialog import QueryDialog

        if self.query_dialog is None:
            self.query_dialog = QueryDialog(self, library=self._outbox_library)
            self.query_dialog.retrieved.connect(self._retrieved)
            self.query_dialog.open_requested.connect(self.open_study)
        elif not self.query_dialog.isVisible():
            self.query_dialog.reload_configs()
        self.query_dialog.show()
        self.query_dialog.raise_()
        self.query_dialog.activateWindow()
        return self.query_dialog

    @Slot(object)
    def _retrieved(self, results: list) -> None:
        """A retrieve ended: the library shows what arrived; patient conflicts are reported."""
        uids = [uid for r in results for uid in r.study_uids]
        self.browser.refresh(select=uids[:1] or None)
        if results:
            self.statusBar().showMessage("Retrieved: " + "; ".join(r.summary() for r in results[:3]), 15000)
        conflicts = [c for r in results for c in r.imported.conflicts]
        if conflicts:
            self._queue_dialog(ConflictDialog(conflicts, self))

    # -- the worklist order -------------------------------------------------------------------

    @Slot(object)
    def set_order(self, order: Order) -> None:
        """Photos imported from now on go into this order's study, named as the order says."""
        self.order = order
        self.order_label.setText(f"Order: {order.label} —")
        self.order_label.setToolTip(f"Photos you import go into this order: {order.describe()}")
        self.order_box.show()
        self.worklist_panel.set_current(order)
        self.statusBar().showMessage(f"Photos you import now go to {order.describe()}", 10000)

    def clear_order(self) -> None:
        self.order = None
        self.order_box.hide()
        self.worklist_panel.set_current(None)
        self.statusBar().showMessage("No worklist order: photos you import are asked about again", 6000)

    def start_procedure(self, order: Order) -> Job:
        """Tell the PACS the order's procedure step has started (MPPS, when its configuration does it)."""
        from app.pacs.worklist import start_procedure

        def work(reporter):
            from app.library import Library

            with Library() as library:
                return start_procedure(library, order.config, order.entry, order.study_uid)

        order.started = True  # not twice for imports in quick succession; a refusal allows another try
        job = Job(work, "Starting the procedure step")
        self._run(job, lambda j: self._procedure_started(j, order), cancellable=False)
        return job

    def _procedure_started(self, job: Job, order: Order) -> None:
        if job.state == State.DONE:
            if job.result:
                self.statusBar().showMessage(f"{order.config.name} was told the procedure for {order.label} "
                                             "has started", 8000)
            return
        order.started = False
        self._show_problem(f"{order.config.name} did not take the start of the procedure for {order.label} "
                           f"(MPPS): {job.error}\n\nThe images are in the library.", dialog=True)

    # -- compare with a prior -----------------------------------------------------------------

    @property
    def comparing(self) -> bool:
        """A prior is shown beside the current study."""
        return bool(self.prior_uid) and len(self.grid.visible) > 1

    def compare_with_prior(self):
        """Choose another study of the open patient (library, then PACS) to show beside the open one."""
        from app.ui.query_dialog import PriorDialog

        shown = self.viewport.series
        if shown is None:
            return None
        library = self._outbox_library()
        try:
            priors = library.priors(shown.study_uid) if library is not None else []
        except LightboxError:  # opened without importing: not in the library
            priors = []
        dialog = PriorDialog(shown.patient, shown.study_uid, shown.study_date, priors, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.chosen.connect(self.show_prior)
        dialog.retrieved.connect(self._retrieved)
        dialog.open()
        dialog.search_pacs()
        return dialog

    @Slot(str)
    def show_prior(self, study_uid: str) -> bool:
        """The current study (the active viewport's) on the left, a prior of the library on the right (its series
        of the same modality), side by side in 1 × 2, synchronised when the modalities match."""
        try:
            series = self.browser.library.viewer_series(study_uid)
            study = self.browser.library.study(study_uid)
        except LightboxError as exc:
            self._show_problem(str(exc), dialog=True)
            return False
        series = [s for s in series if not s.is_document] or series
        if not series:
            self._show_problem("That study has no images to show.", dialog=True)
            return False
        if self.prior_uid and self.prior_uid != study_uid:
            self.close_comparison()
        left = self.viewport
        current = left.series
        self.set_layout("1x2")
        self.grid.move_to(left, 0)
        right = self.grid.visible[1]
        known = {s.uid for s in self.series}
        self.series += [s for s in series if s.uid not in known]
        self.strip.set_series(self.series)
        self._make_thumbnails(series, from_library=True)
        like = current.modality if current is not None else ""
        chosen = next((s for s in series if s.modality == like), series[0])
        self.prior_uid = study_uid
        right.set_series(chosen)
        right.caption = " · ".join(x for x in ("Prior", format_date(study.date), study.description) if x)
        if current is not None:
            left.caption = " · ".join(x for x in ("Current", format_date(current.study_date),
                                                  current.study_description) if x)
            left.update()
        self.grid.set_active(left)
        self.set_synchronised(current is not None and chosen.modality == current.modality)
        self.show_viewer()
        self._refresh()
        return True

    def close_comparison(self) -> None:
        """Take the prior away: back to one viewport, on the current study."""
        if not self.prior_uid:
            return
        prior, self.prior_uid = self.prior_uid, ""
        for v in self.grid.viewports:
            v.caption = ""
            if v.series is not None and v.series.study_uid == prior:
                v.set_series(None)
            v.update()
        self.series = [s for s in self.series if s.study_uid != prior]
        self.strip.set_series(self.series)
        self.set_synchronised(False)
        showing = next((v for v in self.grid.visible if v.series is not None), self.grid.visible[0])
        self.grid.set_active(showing)
        self.grid.set_layout("1x1")
        self.act_layout["1x1"].setChecked(True)
        self._refresh()

    def shortcuts_dialog(self):
        from app.ui.shortcuts import ShortcutsDialog, action_rows

        rows = action_rows(self) + [("In a viewport (mouse and keys)", what, keys, "") for keys, what in KEYS] + \
            [("In a viewport, measuring", what, keys, "") for keys, what in MEASURE_KEYS]
        return ShortcutsDialog(rows, self)

    def show_shortcuts(self) -> None:
        dialog = self.shortcuts_dialog()
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()

    def show_about(self) -> None:
        QMessageBox.about(self, "About Lightbox",
                          f"<b>Lightbox {__version__}</b><br>DICOM viewer for veterinary practices.<br>"
                          f"Log file: {paths.log_dir() / 'lightbox.log'}")

    # -- drag and drop ------------------------------------------------------------------------

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        """Files dropped on the library are imported; on the viewer, they are opened."""
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            if self.on_library:
                self.import_into_library(files)
            else:
                self.open_paths(files)

    # -- receive studies ------------------------------------------------------------------------

    def start_receiving(self) -> None:
        """At start: the storage SCP runs when the settings say so."""
        from app import settings as app_settings

        if app_settings.load().receive_studies:
            self.act_receive.setChecked(self.receiving.start())

    def toggle_receiving(self, on: bool) -> None:
        running = self.receiving.set_enabled(on)
        self.act_receive.setChecked(running)
        if running:
            self.statusBar().showMessage(f"Receiving studies {self.receiving.describe()}", 8000)
        elif not on:
            self.statusBar().showMessage("No longer receiving studies", 6000)

    def _received(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)
        self.browser.refresh()

    def closeEvent(self, event) -> None:  # noqa: N802
        for v in self.grid.viewports:
            v.cine.pause()
        self.receiving.stop()
        for relay in list(self._relays):
            relay.job.cancel()
        self.outbox_runner.stop()  # the send under way resumes on the next start
        self.outbox_panel.stop()
        self.worklist_panel.stop()
        self.browser.close_library()
        _settings().setValue("window/geometry", self.saveGeometry())
        super().closeEvent(event)


def _pixels(image: QImage) -> np.ndarray:
    """A thumbnail QImage as the uint8 RGB array the series strip takes."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.sizeInBytes())
    return arr.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 3].reshape(
        image.height(), image.width(), 3).copy()


def _photos(entries) -> list[str]:
    """Files among failed import entries that are photos (JPEG, PNG) waiting for a study."""
    try:
        from app.dicom.capture import capture_kind
    except ImportError:
        return []
    out = []
    for entry in entries:
        path = Path(entry.path)
        try:
            if path.is_file():
                with open(path, "rb") as fp:
                    if capture_kind(fp.read(16)):
                        out.append(entry.path)
        except OSError:
            continue
    return out


def _dark_palette(app: QApplication) -> None:
    app.setStyle("Fusion")
    p = QPalette()
    base, window, text = QColor(30, 30, 32), QColor(45, 45, 48), QColor(225, 225, 225)
    for role, color in ((QPalette.ColorRole.Window, window), (QPalette.ColorRole.Base, base),
                        (QPalette.ColorRole.AlternateBase, window), (QPalette.ColorRole.Button, window),
                        (QPalette.ColorRole.Text, text), (QPalette.ColorRole.WindowText, text),
                        (QPalette.ColorRole.ButtonText, text), (QPalette.ColorRole.ToolTipBase, base),
                        (QPalette.ColorRole.ToolTipText, text),
                        (QPalette.ColorRole.Highlight, QColor(42, 110, 187)),
                        (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))):
        p.setColor(role, color)
    p.setColor(QPalette.ColorRole.PlaceholderText, QColor(140, 140, 140))  # hints in fields, readable
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(110, 110, 110))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(110, 110, 110))
    app.setPalette(p)


def _settings() -> QSettings:
    return QSettings(str(paths.config_dir() / "window.ini"), QSettings.Format.IniFormat)


def _first_run() -> bool:
    marker = paths.config_dir() / "first-run-done"
    if marker.exists():
        return False
    try:
        marker.write_text("1\n")
    except OSError:
        pass
    return True


def create_app() -> QApplication:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Lightbox")
    app.setOrganizationName("Lightbox")
    app.setApplicationVersion(__version__)
    _dark_palette(app)
    return app


def start(window: MainWindow, names: list[str], links: list[str] = ()) -> None:
    """What the window shows first: a link's study; `names` in the viewer (not imported); else the library
    when it holds studies; else, the first time, the sample study in the viewer; else the (empty) library."""
    if links:
        window.show_library()
        for link in links:
            window.open_link(link)
    elif names:
        window.open_paths(names)
    elif window.browser.has_studies():
        window.show_library()
    elif _first_run() and paths.sample_study().is_dir():
        window.open_paths([str(paths.sample_study())])
    else:
        window.show_library()  # empty: it says how to import


def run(names: list[str], links: list[str] = ()) -> int:
    """Hand the request to the Lightbox already running for this user, or open the main window
    (see `start`) and run until closed, taking the requests of later starts."""
    from app.desktop.single_instance import hand_over, start_or_hand_over

    request = ["open", *links] if links else ["view", *[str(Path(n).absolute()) for n in names]]
    if hand_over(request):
        return 0
    app = create_app()
    instance = start_or_hand_over(request)
    if instance is None:
        return 0
    window = MainWindow()
    instance.setParent(window)
    instance.received.connect(window.handle_request)
    app.installEventFilter(window)  # macOS delivers clicked links as QFileOpenEvent
    geometry = _settings().value("window/geometry")
    if geometry is None or not window.restoreGeometry(geometry):
        window.resize(1280, 860)
    window.show()
    start(window, names, links)
    if os.environ.get("LIGHTBOX_QUIT_AFTER_SHOWN"):
        if window.on_library and not links:
            QTimer.singleShot(0, app.quit)
        else:
            window.grid.painted.connect(lambda: QTimer.singleShot(0, app.quit))
    code = app.exec()
    instance.close()
    return code
