"""The viewer's grid: up to four viewports (1x1, 1x2, 2x1, 2x2), one of them active, optionally synchronised.

Each viewport keeps its own series, frame, window/level and zoom; switching layouts hides viewports but keeps
what they show (the active one always stays in view). With synchronisation on, what the user does in one
viewport is done in the others: paging (by slice position where both series have positions, else by
index), zoom/pan (relative to each image's fit), and window/level (between images of the same modality).
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QGridLayout, QWidget

from app.dicom.display import Window
from app.ui.viewer.tools import ViewportTool
from app.ui.viewer.viewport import PLACEHOLDER, Viewport

LAYOUTS = {"1x1": (1, 1), "1x2": (1, 2), "2x1": (2, 1), "2x2": (2, 2)}
SYNC_KINDS = ("scroll", "zoom", "window")
GRID_PLACEHOLDER = ["Drag a series here", "from the Series strip or the library"]


class ViewerGrid(QWidget):
    active_changed = Signal(object)  # the Viewport now active
    changed = Signal()  # the active viewport's `changed`, and changes of layout or active viewport
    problem = Signal(str)
    painted = Signal()  # an image reached the screen in some viewport
    series_dropped = Signal(object, str, str)  # viewport, series UID ("" for a whole study), study UID
    shown_changed = Signal()  # what the visible viewports show (series) changed

    def __init__(self, parent=None, count: int = 4):
        super().__init__(parent)
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Window, QColor(28, 28, 30))
        self.setPalette(palette)
        self.viewports: list[Viewport] = []  # in grid order: the first rows x columns are shown
        for _ in range(count):
            self.viewports.append(self._make_viewport())
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(3)
        self.shape = (1, 1)
        self.active = self.viewports[0]
        self.synchronised = False
        self.sync_kinds = set(SYNC_KINDS)
        self._syncing = False
        self._offsets: dict = {}  # (source, target, series UIDs) -> offset in mm or images, for paging
        self._arrange()

    def _make_viewport(self) -> Viewport:
        v = Viewport(self)
        v.activated.connect(lambda v=v: self.set_active(v))
        v.changed.connect(lambda v=v: self.changed.emit() if v is self.active else None)
        v.cine.changed.connect(lambda v=v: self.changed.emit() if v is self.active else None)
        v.problem.connect(self.problem)
        v.painted.connect(self.painted)
        v.series_dropped.connect(lambda series, study, v=v: self.series_dropped.emit(v, series, study))
        v.series_changed.connect(self._series_changed)
        v.paged.connect(lambda old, new, v=v: self._paged(v, old, new))
        v.window_changed.connect(lambda v=v: self._window_changed(v))
        v.view_changed.connect(lambda v=v: self._view_changed(v))
        return v

    # -- layout -------------------------------------------------------------------------------

    @property
    def layout_name(self) -> str:
        return f"{self.shape[0]}x{self.shape[1]}"

    @property
    def visible(self) -> list[Viewport]:
        return self.viewports[: self.shape[0] * self.shape[1]]

    def set_layout(self, name_or_shape) -> None:
        rows, columns = LAYOUTS[name_or_shape] if isinstance(name_or_shape, str) else name_or_shape
        n = rows * columns
        i = self.viewports.index(self.active)
        if i >= n:  # keep the active viewport in view, in the last cell shown
            self.viewports[n - 1], self.viewports[i] = self.viewports[i], self.viewports[n - 1]
        self.shape = (rows, columns)
        self._arrange()
        self.shown_changed.emit()
        self.changed.emit()

    def _arrange(self) -> None:
        while self._grid.count():
            self._grid.takeAt(0)
        rows, columns = self.shape
        shown = self.visible
        for n, v in enumerate(self.viewports):
            if n < len(shown):
                self._grid.addWidget(v, n // columns, n % columns)
                v.placeholder = PLACEHOLDER if len(shown) == 1 else GRID_PLACEHOLDER
                v.show()
            else:
                v.hide()
        for r in range(2):
            self._grid.setRowStretch(r, 1 if r < rows else 0)
        for c in range(2):
            self._grid.setColumnStretch(c, 1 if c < columns else 0)
        self._grid.activate()  # sizes now, not at the next event: fits and synchronised zooms use them
        self._mark()

    def move_to(self, viewport: Viewport, cell: int) -> None:
        """Put `viewport` in grid cell `cell` (0 = top left), swapping with the one there."""
        i = self.viewports.index(viewport)
        self.viewports[cell], self.viewports[i] = self.viewports[i], self.viewports[cell]
        self._arrange()

    # -- the active viewport --------------------------------------------------------------------

    def set_active(self, viewport: Viewport) -> None:
        if viewport not in self.visible:
            return
        if viewport is not self.active:
            self.active = viewport
            self._mark()
            self.active_changed.emit(viewport)
            self.changed.emit()

    def _mark(self) -> None:
        several = len(self.visible) > 1
        for v in self.viewports:
            v.set_marked(several and v is self.active)

    def activate_next(self) -> None:
        shown = self.visible
        self.set_active(shown[(shown.index(self.active) + 1) % len(shown)])
        self.active.setFocus()

    def first_empty(self) -> Viewport | None:
        return next((v for v in self.visible if v.series is None), None)

    def shown_series(self) -> list:
        return [v.series for v in self.visible if v.series is not None]

    def set_tool(self, tool: str | ViewportTool) -> None:
        for v in self.viewports:
            v.set_tool(tool)

    def clear(self, keep: Viewport | None = None) -> None:
        """Empty every viewport (but `keep`)."""
        for v in self.viewports:
            if v is not keep and v.series is not None:
                v.caption = ""
                v.set_series(None)

    # -- synchronisation ------------------------------------------------------------------------

    def set_synchronised(self, on: bool, kinds=None) -> None:
        """Turn synchronisation on or off; on, the others take the active viewport's window and view at once."""
        self.synchronised = bool(on)
        if kinds is not None:
            self.sync_kinds = set(kinds)
        self._offsets.clear()
        if self.synchronised and self.active.image is not None:
            self._window_changed(self.active)
            self._view_changed(self.active)
            self._align_slices(self.active)

    def _others(self, source: Viewport, kind: str):
        if not self.synchronised or self._syncing or kind not in self.sync_kinds or source not in self.visible:
            return []
        return [v for v in self.visible if v is not source and v.series is not None and v.document is None]

    def _window_changed(self, source: Viewport) -> None:
        targets = self._others(source, "window")
        if not targets or not isinstance(source.voi, Window) or source.image is None or not source.image.is_grey:
            return
        self._syncing = True
        try:
            for v in targets:
                if v.image is not None and v.image.is_grey and v.series.modality == source.series.modality:
                    v.set_voi(source.voi)
        finally:
            self._syncing = False

    def _view_changed(self, source: Viewport) -> None:
        targets = self._others(source, "zoom")
        if not targets or source.image is None:
            return
        state = source.view_state()
        self._syncing = True
        try:
            for v in targets:
                if v.image is not None:
                    v.set_view_state(state)
        finally:
            self._syncing = False

    def _paged(self, source: Viewport, old: int, new: int) -> None:
        targets = [v for v in self._others(source, "scroll") if v.count > 1]
        if not targets:
            return
        self._syncing = True
        try:
            for v in targets:
                v.show_position(self.matching_position(source, v, old, new))
        finally:
            self._syncing = False

    def matching_position(self, source: Viewport, target: Viewport, old: int, new: int) -> int:
        """Where `target` goes when `source` pages from `old` to `new`: the nearest slice where both series
        have slice positions (same frame of reference: the same place; else the same distance moved),
        else the same number of images on."""
        a, b = source.series, target.series
        key = (id(source), id(target), a.uid, b.uid)
        if a.has_positions and b.has_positions:
            if _frame_of_reference(source) and _frame_of_reference(source) == _frame_of_reference(target):
                offset = 0.0
            else:
                offset = self._offsets.setdefault(key, b.slice_position(target.position) - a.slice_position(old))
            return b.nearest_position(a.slice_position(new) + offset)
        offset = self._offsets.setdefault(key, target.position - old)
        return max(0, min(target.count - 1, new + offset))

    def _align_slices(self, source: Viewport) -> None:
        """On turning sync on: series sharing a frame of reference go to the same slice."""
        if source.series is None or not source.series.has_positions:
            return
        for v in self._others(source, "scroll"):
            if v.series.has_positions and _frame_of_reference(v) and \
                    _frame_of_reference(v) == _frame_of_reference(source):
                v.show_position(v.series.nearest_position(source.series.slice_position(source.position)))

    def _series_changed(self) -> None:
        self._offsets.clear()
        self.shown_changed.emit()


def _frame_of_reference(v: Viewport) -> str:
    return str(v.image.ds.get("FrameOfReferenceUID", "") or "") if v.image is not None else ""


def layout_icon(name: str, size: int = 22):
    """A small picture of a layout: its cells as boxes."""
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QIcon, QPainter, QPen, QPixmap

    rows, columns = LAYOUTS[name]
    icon = QIcon()
    for mode, color in ((QIcon.Mode.Normal, QColor(215, 215, 215)), (QIcon.Mode.Disabled, QColor(110, 110, 110))):
        pixmap = QPixmap(size * 2, size * 2)
        pixmap.setDevicePixelRatio(2.0)
        pixmap.fill(QColor(0, 0, 0, 0))
        p = QPainter(pixmap)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(color, 1.4))
        w, h = (size - 4) / columns, (size - 6) / rows
        for r in range(rows):
            for c in range(columns):
                p.drawRect(QRectF(2 + c * w + 1, 3 + r * h + 1, w - 2, h - 2))
        p.end()
        icon.addPixmap(pixmap, mode)
    return icon
