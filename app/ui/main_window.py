"""The main window: series strip, one viewport, tools, menus, drag and drop."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QActionGroup, QColor, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QApplication, QDockWidget, QFileDialog, QMainWindow, QMenu, QMessageBox, QProgressBar, QToolButton,
)

from app import __version__, paths
from app.dicom.series import Opened, Series, open_paths, thumbnail
from app.errors import LightboxError
from app.jobs import Job, State
from app.ui.jobs import JobRelay
from app.ui.viewer.series_strip import SeriesStrip
from app.ui.viewer.viewport import Viewport

log = logging.getLogger(__name__)

SHORTCUTS = [
    ("Left drag", "Window/level: right = wider, down = higher level"),
    ("Ctrl + left drag, middle drag", "Pan"),
    ("Right drag", "Zoom"),
    ("Wheel", "Next/previous image in a stack; zoom on a single image"),
    ("Ctrl + wheel", "Zoom at the pointer"),
    ("Arrow keys, Page Up/Down, Home/End", "Page through images and frames"),
    ("F / double-click", "Fit to window"),
    ("1", "Actual size (1:1)"),
    ("R / Shift+R", "Rotate 90° right / left"),
    ("H / V", "Flip horizontally / vertically"),
    ("I", "Invert"),
    ("Ctrl+1 … Ctrl+9", "Window presets"),
    ("Esc", "Reset the view"),
    ("W / P / Z", "Left button tool: window/level, pan, zoom"),
    ("Ctrl+O / Ctrl+Shift+O", "Open files / a folder"),
]


class MainWindow(QMainWindow):
    def __init__(self):
        super().__init__()
        self.setWindowTitle("Lightbox")
        self.setAcceptDrops(True)
        self.series: list[Series] = []
        self._relays: set[JobRelay] = set()

        self.viewport = Viewport(self)
        self.setCentralWidget(self.viewport)
        self.viewport.changed.connect(self._refresh)
        self.viewport.problem.connect(self._show_problem)

        self.strip = SeriesStrip(self)
        self.strip.chosen.connect(self.show_series)
        dock = QDockWidget("Series", self)
        dock.setObjectName("series")
        dock.setWidget(self.strip)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)

        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.statusBar().addPermanentWidget(self.progress)
        self._build_actions()
        self._refresh()

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
        v = self.viewport
        self.act_open = self._action("Open…", self.choose_files, "Ctrl+O", "Open DICOM files")
        self.act_open_dir = self._action("Open folder…", self.choose_folder, "Ctrl+Shift+O", "Open a folder")
        self.act_quit = self._action("Quit", self.close, "Ctrl+Q")
        self.tools = QActionGroup(self)
        self.act_tool = {}
        for name, label, key in (("window", "W/L", "W"), ("pan", "Pan", "P"), ("zoom", "Zoom", "Z")):
            act = self._action(label, lambda _=False, n=name: self.set_tool(n), key,
                               {"window": "Window/level with the left button"}.get(name, f"{label} with the left button"),
                               checkable=True)
            self.tools.addAction(act)
            self.act_tool[name] = act
        self.act_tool["window"].setChecked(True)
        self.act_fit = self._action("Fit", v.fit, "F", "Fit to window")
        self.act_one = self._action("1:1", v.actual_size, "1", "Actual size")
        self.act_rot_l = self._action("⟲ 90°", lambda: v.rotate(-90), "Shift+R", "Rotate left")
        self.act_rot_r = self._action("⟳ 90°", lambda: v.rotate(90), "R", "Rotate right")
        self.act_flip_h = self._action("Flip H", lambda: v.flip(True), "H", "Flip horizontally")
        self.act_flip_v = self._action("Flip V", lambda: v.flip(False), "V", "Flip vertically")
        self.act_invert = self._action("Invert", v.toggle_invert, "I", "Invert grey scale", checkable=True)
        self.act_reset = self._action("Reset", v.reset, "Esc", "Reset the view")
        self.act_shortcuts = self._action("Keyboard and mouse…", self.show_shortcuts, "F1")
        self.act_about = self._action("About Lightbox", self.show_about)
        self.preset_menu = QMenu("Presets", self)
        self.preset_menu.aboutToShow.connect(self._fill_presets)
        for n in range(1, 10):
            self._action(f"Preset {n}", lambda _=False, i=n - 1: self.apply_preset(i), f"Ctrl+{n}")

        bar = self.menuBar()
        m = bar.addMenu("&File")
        m.addActions([self.act_open, self.act_open_dir])
        m.addSeparator()
        m.addAction(self.act_quit)
        m = bar.addMenu("&View")
        m.addActions(list(self.act_tool.values()))
        m.addSeparator()
        m.addActions([self.act_fit, self.act_one, self.act_rot_l, self.act_rot_r, self.act_flip_h,
                      self.act_flip_v, self.act_invert, self.act_reset])
        m.addSeparator()
        m.addMenu(self.preset_menu)
        m = bar.addMenu("&Help")
        m.addActions([self.act_shortcuts, self.act_about])

        tb = self.addToolBar("Tools")
        tb.setObjectName("tools")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        tb.addAction(self.act_open)
        tb.addSeparator()
        tb.addActions(list(self.act_tool.values()))
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

    def set_tool(self, name: str) -> None:
        self.viewport.tool = name
        self.act_tool[name].setChecked(True)

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

    # -- opening ------------------------------------------------------------------------------

    def choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open DICOM files", "", "DICOM files (*.dcm *.DCM *);;All files (*)")
        if files:
            self.open_paths(files)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of DICOM files")
        if folder:
            self.open_paths([folder])

    def open_paths(self, names: list[str]) -> Job:
        job = Job(lambda reporter: open_paths(names, reporter), "Opening files")
        self._run(job, self._opened)
        return job

    def _run(self, job: Job, done) -> None:
        relay = JobRelay(job, self)
        relay.progress.connect(self._job_progress)
        relay.finished.connect(done)
        relay.finished.connect(lambda _job, r=relay: self._relays.discard(r))
        self._relays.add(relay)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        relay.start()

    @Slot(object)
    def _job_progress(self, job: Job) -> None:
        p = job.progress
        if p.total:
            self.progress.setRange(0, int(p.total))
            self.progress.setValue(int(p.done))
        if p.message:
            self.statusBar().showMessage(p.message)

    @Slot(object)
    def _opened(self, job: Job) -> None:
        self.progress.setVisible(False)
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

    def _make_thumbnails(self, series: list[Series]) -> None:
        def work(reporter):
            out = {}
            for s in series:
                reporter.check()
                try:
                    out[s.uid] = thumbnail(s)
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
    def show_series(self, series: Series) -> None:
        self.viewport.set_series(series)
        self.strip.select(series)
        self.viewport.setFocus()

    # -- state shown around the viewport -------------------------------------------------------

    @Slot()
    def _refresh(self) -> None:
        v = self.viewport
        s = v.series
        title = "Lightbox"
        if s is not None:
            name = s.patient.name.replace("^", " ") or "(no name)"
            title = f"{name} — {s.title} — Lightbox"
        self.setWindowTitle(title)
        has = v.image is not None
        for act in (self.act_fit, self.act_one, self.act_rot_l, self.act_rot_r, self.act_flip_h,
                    self.act_flip_v, self.act_invert, self.act_reset):
            act.setEnabled(has)
        self.act_invert.setChecked(v.invert)

    @Slot(str)
    def _show_problem(self, message: str, dialog: bool = False) -> None:
        self.statusBar().showMessage(message.splitlines()[0], 10000)
        if dialog and not os.environ.get("LIGHTBOX_QUIT_AFTER_SHOWN"):
            QMessageBox.warning(self, "Lightbox", message)

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{t}</td></tr>" for k, t in SHORTCUTS)
        QMessageBox.information(self, "Keyboard and mouse", f"<table>{rows}</table>")

    def show_about(self) -> None:
        QMessageBox.about(self, "About Lightbox",
                          f"<b>Lightbox {__version__}</b><br>DICOM viewer for veterinary practices.<br>"
                          f"Log file: {paths.log_dir() / 'lightbox.log'}")

    # -- drag and drop ------------------------------------------------------------------------

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_paths(files)

    def closeEvent(self, event) -> None:  # noqa: N802
        for relay in list(self._relays):
            relay.job.cancel()
        _settings().setValue("window/geometry", self.saveGeometry())
        super().closeEvent(event)


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


def run(names: list[str]) -> int:
    """Open the main window on `names` (or the sample study the first time) and run until closed."""
    app = create_app()
    window = MainWindow()
    geometry = _settings().value("window/geometry")
    if geometry is None or not window.restoreGeometry(geometry):
        window.resize(1280, 860)
    window.show()
    if os.environ.get("LIGHTBOX_QUIT_AFTER_SHOWN"):
        window.viewport.painted.connect(lambda: QTimer.singleShot(0, app.quit))
    if names:
        window.open_paths(names)
    elif _first_run() and paths.sample_study().is_dir():
        window.open_paths([str(paths.sample_study())])
    return app.exec()
