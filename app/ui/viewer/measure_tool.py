"""The measurement tools on the left button: drawing (points placed in order, the status line naming the next),
editing (select, drag a handle or the whole, delete, edit the text) and calibrating by hand. Every change is
an undoable command on `Measurements`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap, QPolygonF, QTransform, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QButtonGroup, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QInputDialog, QLabel, QRadioButton,
    QVBoxLayout, QWidget,
)

from app.errors import UsageError
from app.measure.calibration import DEFAULT_MARKER_MM, Calibration, ManualCalibration, calibration_of, \
    manual_calibration
from app.measure.tools import TOOLS, Measurement, point_hint, shapes
from app.ui.viewer.measure_layer import (
    COLOUR, Measurements, fonts_for, hit, label_lines, label_origin, paint_shape, paint_shapes, paint_text,
    partial_shapes, result_summary, shape_samples, sop_of, text_size,
)
from app.ui.viewer.tools import ViewportTool

SELECT = "select"
CALIBRATE = {"calibrate": "ellipse", "calibrate_line": "length"}  # drawn as
DRAG_PX = 4.0  # a press moved further than this before its release places a point where it ends

# (tool, menu text, shortcut, what it does): the window makes one action of each.
TOOL_ACTIONS = (
    (SELECT, "Select", "S", "Select measurements: drag their handles or the whole; Delete removes"),
    ("length", "Length", "L", "Measure a distance"),
    ("polyline", "Polyline", "Shift+L", "Measure along a path (double-click or Enter to finish)"),
    ("angle", "Angle", "A", "An angle: arm end, vertex, arm end"),
    ("cobb", "Cobb angle", "Shift+A", "The angle between two endplate lines"),
    ("ellipse", "Ellipse ROI", "E", "Mean, SD, min, max and area in an ellipse (HU on CT)"),
    ("rectangle", "Rectangle ROI", "R", "Mean, SD, min, max and area in a rectangle (HU on CT)"),
    ("arrow", "Arrow", "Shift+T", "Point at a finding"),
    ("text", "Text", "T", "A note on the image"),
    ("vhs", "VHS", "Shift+V", "Vertebral heart score: long and short cardiac axes counted in vertebrae from T4"),
    ("norberg", "Norberg angle", "Shift+N", "Both femoral head centres and cranial acetabular rims"),
    ("tpa", "TPA", "Shift+P", "Tibial plateau angle for TPLO planning"),
    ("calibrate", "Calibrate with a circle", "Shift+C",
     f"Draw a circle across a marker of known size (a {DEFAULT_MARKER_MM:g} mm sphere by default)"),
    ("calibrate_line", "Calibrate with a line", None, "Draw a line of known length"),
)
BUTTON_TEXT = {"norberg": "Norberg", "calibrate": "Calibrate", "calibrate_line": "Calibrate (line)"}  # toolbar
NAMES = {"select": "Select", "vhs": "VHS", "norberg": "Norberg angle", "tpa": "TPA",
         "calibrate": "Calibrate", "calibrate_line": "Calibrate"}

# Keys and clicks of the measurement tools, for Help ▸ Keyboard shortcuts.
KEYS = [
    ("Click, click …", "A measurement tool: place its points in order (the status bar names the next); "
                       "a drag places two"),
    ("Double-click or Enter", "Finish a polyline, or a VHS once its vertebrae are marked"),
    ("Esc", "Cancel the measurement being drawn; then deselect"),
    ("Click a measurement", "Select it: drag a handle to move a point, the line or label to move it all"),
    ("Delete", "Delete the selected measurement"),
    ("Double-click a measurement", "Edit its text"),
]


def tool_name(kind: str) -> str:
    return NAMES.get(kind) or TOOLS[kind].name


# -- undoable changes -----------------------------------------------------------------------------

class Change(QUndoCommand):
    """A measurement added (no `before`), changed, or deleted (no `after`) on image `sop`."""

    def __init__(self, book: Measurements, sop: str, before: Measurement | None, after: Measurement | None,
                 text: str):
        super().__init__(text)
        self.book, self.sop, self.before, self.after = book, sop, before, after

    def redo(self) -> None:
        self.book.replace(self.sop, self.before, self.after)

    def undo(self) -> None:
        self.book.replace(self.sop, self.after, self.before)


class Calibrate(QUndoCommand):
    """A manual calibration set (or removed, `after` None) for an image, series or study."""

    def __init__(self, book: Measurements, sop: str, scope: str, uid: str, before: ManualCalibration | None,
                 after: ManualCalibration | None):
        super().__init__("calibrate" if after is not None else "remove the calibration")
        self.book, self.sop, self.scope, self.uid, self.before, self.after = book, sop, scope, uid, before, after

    def redo(self) -> None:
        self.book.set_manual(self.sop, self.scope, self.uid, self.after)

    def undo(self) -> None:
        self.book.set_manual(self.sop, self.scope, self.uid, self.before)


# -- the tool -------------------------------------------------------------------------------------

@dataclass
class Drawing:
    viewport: object
    sop: str
    frame: int
    kind: str
    points: list = field(default_factory=list)
    hover: tuple | None = None
    pressed_at: QPointF | None = None  # widget position of the press not yet released

    @property
    def shape(self) -> str:
        return CALIBRATE.get(self.kind, self.kind)


@dataclass
class Edit:
    viewport: object
    sop: str
    original: Measurement
    handle: int | None  # the point dragged, or None: the whole measurement
    start: tuple  # image point pressed
    pressed_at: QPointF
    moved: bool = False


def _point(viewport, pos: QPointF) -> tuple[float, float]:
    p = viewport.image_point(pos)
    return p.x(), p.y()


def _distance(a: QPointF, b: QPointF) -> float:
    return math.hypot(a.x() - b.x(), a.y() - b.y())


class MeasureTool(ViewportTool):
    """One tool object for every viewport and every kind (`set_kind`); a press on a measurement edits it,
    elsewhere it starts a new one (the Select kind only edits)."""

    name = "measure"

    def __init__(self, book: Measurements, undo: QUndoStack):
        self.book = book
        self.undo = undo
        self.kind = "length"
        self.drawing: Drawing | None = None
        self.edit: Edit | None = None

    # hooks the window's dialogs answer (tests replace them)
    def ask_text(self, viewport, title: str, text: str = "") -> str | None:
        value, ok = QInputDialog.getText(viewport.window(), title, "Text shown on the image:", text=text)
        return value.strip() if ok else None

    def ask_calibration(self, viewport, shape: str, file: Calibration, current: Calibration):
        """(known size in mm, scope) or None."""
        return CalibrationDialog.ask(shape, file, current, viewport.window())

    # -- state ----------------------------------------------------------------------------------

    def set_kind(self, kind: str) -> None:
        if kind != SELECT and kind not in TOOLS and kind not in CALIBRATE:
            raise UsageError(f"there is no measurement tool '{kind}'")
        self.cancel()
        self.kind = kind
        self.book.select(None)
        self._hint()

    def cancel(self) -> None:
        """Drop the measurement being drawn (and any drag under way)."""
        drawing, self.drawing = self.drawing, None
        if self.edit is not None:
            self.edit = None
            self.book.set_live(None, None)
        if drawing is not None:
            drawing.viewport.update()

    def activate(self, viewport) -> None:
        self._hint()

    def deactivate(self, viewport) -> None:
        self.cancel()
        self.book.select(None)

    def _message(self, text: str, ms: int = 0) -> None:
        self.book.message.emit(text, ms)

    def _hint(self) -> None:
        kind, d = self.kind, self.drawing
        if kind == SELECT:
            self._message("Select: click a measurement, drag its handles or the whole; Delete removes it")
            return
        n = len(d.points) if d is not None else 0
        if kind == "calibrate":
            text = (f"Calibrate: drag a circle across the calibration sphere ({DEFAULT_MARKER_MM:g} mm unless you say "
                    "otherwise), from one side to the other" if n == 0 else "Calibrate: click the opposite side")
        elif kind == "calibrate_line":
            text = "Calibrate: click one end of a line of known length" if n == 0 else \
                "Calibrate: click the other end"
        else:
            tool = TOOLS[kind]
            text = f"{tool_name(kind)}: click the {point_hint(kind, n)}"
            if tool.open_ended and n >= tool.points:
                text += ", or double-click / Enter to finish"
        self._message(text + (" (Esc cancels)" if n else ""))

    def _current(self, viewport) -> Drawing | None:
        d = self.drawing
        if d is not None and (d.viewport is not viewport or d.sop != sop_of(viewport) or d.frame != viewport.frame):
            return None
        return d

    # -- mouse ----------------------------------------------------------------------------------

    def press(self, viewport, event) -> bool:
        if event.button() != Qt.MouseButton.LeftButton:
            return False
        sop = sop_of(viewport)
        if sop is None:
            return False
        pos = event.position()
        d = self._current(viewport)
        if d is None and self.drawing is not None:
            self.cancel()  # another viewport or frame: start afresh
        if d is None:
            found = hit(self.book, viewport, pos)
            if found is not None:
                m, handle = found
                self.book.select(sop, m.id)
                self.edit = Edit(viewport, sop, m, handle, _point(viewport, pos), pos)
                self._message(result_summary(self.book.result_in(viewport, m)) or tool_name(m.kind))
                return True
            self.book.select(None)
            if self.kind == SELECT:
                return True
            self.drawing = Drawing(viewport, sop, viewport.frame, self.kind, [_point(viewport, pos)],
                                   _point(viewport, pos), pos)
        else:
            if self._far_from_last(viewport, pos):
                d.points.append(_point(viewport, pos))
            d.hover, d.pressed_at = _point(viewport, pos), pos
        self._hint()
        viewport.update()
        return True

    def move(self, viewport, event) -> bool:
        pos = event.position()
        if self.edit is not None:
            e = self.edit
            if not e.moved and _distance(pos, e.pressed_at) < 2:
                return True
            e.moved = True
            x, y = _point(e.viewport, pos)
            m = e.original.with_point(e.handle, (x, y)) if e.handle is not None else \
                e.original.translated(x - e.start[0], y - e.start[1])
            self.book.set_live(e.sop, m)
            return True
        d = self._current(viewport)
        if d is not None:
            d.hover = _point(viewport, pos)
            viewport.update()
            return True
        if sop_of(viewport) is not None and not event.buttons():
            found = hit(self.book, viewport, pos)
            viewport.setCursor(self.cursor if found is None else Qt.CursorShape.SizeAllCursor if found[1] is None
                               else Qt.CursorShape.PointingHandCursor)
        return False

    def release(self, viewport, event) -> bool:
        if self.edit is not None:
            self._end_edit()
            return True
        d = self._current(viewport)
        if d is None:
            return True
        pos = event.position()
        if d.pressed_at is not None and _distance(pos, d.pressed_at) > DRAG_PX and self._far_from_last(viewport, pos):
            d.points.append(_point(viewport, pos))  # a drag: its end is the next point
        d.pressed_at = None
        tool = TOOLS[d.shape]
        if not tool.open_ended and len(d.points) >= tool.points:
            self._finish()
        else:
            self._hint()
            viewport.update()
        return True

    def double_click(self, viewport, event) -> bool:
        d = self._current(viewport)
        if d is not None:
            if TOOLS[d.shape].open_ended:
                self._finish()
            return True
        found = hit(self.book, viewport, event.position())
        if found is None:
            return False
        self.edit = None
        self.edit_text(viewport, found[0])
        return True

    def _far_from_last(self, viewport, pos: QPointF) -> bool:
        d = self.drawing
        if d is None or not d.points:
            return True
        return _distance(viewport.widget_point(QPointF(*d.points[-1])), pos) > 2

    # -- keys -----------------------------------------------------------------------------------

    def wants_key(self, viewport, event) -> bool:
        k = event.key()
        if k == Qt.Key.Key_Escape:
            return self.drawing is not None or self.book.selected is not None
        if k in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            return self.book.selected is not None
        if k in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            return self.drawing is not None
        return False

    def key(self, viewport, event) -> bool:
        k = event.key()
        if k == Qt.Key.Key_Escape:
            if self.drawing is not None:
                self.cancel()
                self._message("Cancelled", 3000)
                return True
            if self.book.selected is not None:
                self.book.select(None)
                return True
        elif k in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self.book.selected is not None:
            return self.delete_selected()
        elif k in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.drawing is not None:
            self._finish()
            return True
        return False

    # -- results of the gestures ----------------------------------------------------------------

    def _finish(self) -> None:
        d = self.drawing
        need = TOOLS[d.shape].points
        if len(d.points) < need:
            self._message(f"{tool_name(d.kind)} needs {need} points: click the {point_hint(d.shape, len(d.points))}",
                          8000)
            return
        self.drawing = None
        d.viewport.update()
        if d.kind in CALIBRATE:
            self._calibrate(d)
            return
        text = ""
        if d.kind == "text":
            text = self.ask_text(d.viewport, "Text")
            if not text:
                self._hint()
                return
        try:
            m = Measurement(d.kind, d.points, frame=d.frame, text=text)
        except UsageError as exc:
            self._message(str(exc), 8000)
            return
        self.undo.push(Change(self.book, d.sop, None, m, f"add {tool_name(d.kind).lower()}"))
        summary = result_summary(self.book.result_in(d.viewport, m))
        text = f"{tool_name(d.kind)}: {summary}" if summary else f"{tool_name(d.kind)} added"
        note = self.book.take_note()
        self._message(f"{text} — {note}" if note else text, 20000)

    def _end_edit(self) -> None:
        e, self.edit = self.edit, None
        live = self.book.live[1] if self.book.live is not None else None
        if e.moved and live is not None and live != e.original:
            self.undo.push(Change(self.book, e.sop, e.original, live, f"move {tool_name(live.kind).lower()}"))
            self._message(result_summary(self.book.result_in(e.viewport, live)) or f"{tool_name(live.kind)} moved",
                          20000)
        else:
            self.book.set_live(None, None)

    def delete_selected(self) -> bool:
        if self.book.selected is None:
            return False
        sop, measurement_id = self.book.selected
        m = self.book.find(sop, measurement_id)
        self.book.select(None)
        if m is None:
            return False
        self.undo.push(Change(self.book, sop, m, None, f"delete {tool_name(m.kind).lower()}"))
        self._message(f"{tool_name(m.kind)} deleted (Ctrl+Z brings it back)", 6000)
        return True

    def edit_text(self, viewport, m: Measurement) -> None:
        sop = sop_of(viewport)
        text = self.ask_text(viewport, f"{tool_name(m.kind)}: text", m.text)
        if text is None or text == m.text or (m.kind == "text" and not text):
            return
        self.book.select(sop, m.id)
        self.undo.push(Change(self.book, sop, m, m.with_text(text), f"edit {tool_name(m.kind).lower()} text"))

    def _calibrate(self, d: Drawing) -> None:
        v = d.viewport
        ds = v.image.ds
        shape = "circle" if d.kind == "calibrate" else "line"
        file = calibration_of(ds, d.frame)
        answer = self.ask_calibration(v, shape, file, self.book.calibration(ds, d.frame))
        if answer is None:
            self._message("Calibration cancelled", 5000)
            return
        known_mm, scope = answer
        uid = {"image": d.sop, "series": str(ds.get("SeriesInstanceUID", "") or v.series.uid),
               "study": str(ds.get("StudyInstanceUID", "") or v.series.study_uid)}[scope]
        try:
            manual = manual_calibration(shape, d.points, known_mm, scope=scope, uid=uid, file=file)
        except UsageError as exc:
            self._message(str(exc), 10000)
            return
        before = self.book.manual(d.sop, scope, uid)
        self.undo.push(Calibrate(self.book, d.sop, scope, uid, before, manual))
        now = self.book.calibration(ds, d.frame)
        text = f"Calibrated the {scope}: {now.pixel_size_text()} per pixel ({now.label})"
        first = self.book.manual_for(ds)
        if first is not None and (first.scope, first.uid) != (scope, uid):
            text += f"; this image keeps the calibration of its {first.scope}, which comes first"
        self._message(text + (f" — {now.warning}" if now.warning else ""), 20000)

    def remove_calibration(self, viewport) -> bool:
        """Stop using the manual calibration the image shown is measured with (undoable)."""
        sop = sop_of(viewport)
        manual = self.book.manual_for(viewport.image.ds) if sop else None
        if manual is None:
            self._message("This image has no manual calibration", 5000)
            return False
        self.undo.push(Calibrate(self.book, sop, manual.scope, manual.uid, manual, None))
        now = self.book.calibration(viewport.image.ds, viewport.frame)
        self._message(f"The {manual.scope}'s manual calibration is removed: sizes now use "
                      f"{now.label if now.calibrated else 'pixels (not calibrated)'}", 10000)
        return True

    # -- drawing in progress --------------------------------------------------------------------

    def paint(self, viewport, painter: QPainter) -> None:
        d = self._current(viewport)
        if d is None:
            return
        pts = list(d.points)
        if d.hover is not None and (not pts or self._far_from_last(viewport, viewport.widget_point(QPointF(*d.hover)))):
            pts.append(d.hover)  # where the next point would go
        tool = TOOLS[d.shape]
        t = viewport.transform()
        if len(pts) >= tool.points:
            m = Measurement(d.shape, pts if tool.open_ended else pts[:tool.points], frame=d.frame)
            items = shapes(m, self.book.calibration(viewport.image.ds, d.frame))
            paint_shapes(painter, t, items, COLOUR)
            if d.kind not in CALIBRATE:
                lines = label_lines(self.book.result_in(viewport, m))
                fonts = fonts_for(viewport)
                taken = [drawn.label for drawn in self.book.layer.drawn.get(id(viewport), [])]
                origin = label_origin(viewport, m, text_size(lines, fonts), taken, shape_samples(t, items))
                paint_text(painter, origin, lines, fonts)
        else:
            paint_shapes(painter, t, partial_shapes(d.shape, pts), COLOUR)


# -- the calibration dialog -----------------------------------------------------------------------

class CalibrationDialog(QDialog):
    """The size of what was drawn across, and what the calibration applies to."""

    last_line_mm = 10.0

    def __init__(self, shape: str, file: Calibration, current: Calibration, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Calibrate")
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.size = QDoubleSpinBox(self)
        self.size.setRange(0.1, 10000.0)
        self.size.setDecimals(1)
        self.size.setSuffix(" mm")
        self.size.setValue(DEFAULT_MARKER_MM if shape == "circle" else self.last_line_mm)
        form.addRow("Diameter of the marker" if shape == "circle" else "Length of the line", self.size)
        scopes = QWidget(self)
        row = QVBoxLayout(scopes)
        row.setContentsMargins(0, 0, 0, 0)
        self.scopes = QButtonGroup(self)
        for n, (key, label) in enumerate((("image", "This image"), ("series", "Every image of this series"),
                                          ("study", "Every image of this study"))):
            button = QRadioButton(label, scopes)
            button.setProperty("scope", key)
            button.setChecked(n == 0)
            self.scopes.addButton(button, n)
            row.addWidget(button)
        form.addRow("Applies to", scopes)
        layout.addLayout(form)
        notes = []
        if file.calibrated:
            notes.append(f"The file gives the pixel size ({file.pixel_size_text()}, {file.label}): "
                         "this calibration overrides it.")
        if current.source == "manual":
            notes.append(f"Replaces the calibration in use ({current.label}, {current.pixel_size_text()}) "
                         "where it applies.")
        self.warning = QLabel(" ".join(notes), self)
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #ffa55a;")
        self.warning.setVisible(bool(notes))
        layout.addWidget(self.warning)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Calibrate")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.shape = shape
        self.resize(460, self.sizeHint().height())

    def answer(self) -> tuple[float, str]:
        return float(self.size.value()), self.scopes.checkedButton().property("scope")

    @classmethod
    def ask(cls, shape: str, file: Calibration, current: Calibration, parent=None):
        dialog = cls(shape, file, current, parent)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        if shape == "line":
            cls.last_line_mm = dialog.size.value()
        return dialog.answer()


# -- toolbar icons --------------------------------------------------------------------------------

_ICON_POINTS = {
    "length": [(3, 18), (19, 4)], "polyline": [(2, 17), (8, 6), (14, 14), (20, 4)],
    "angle": [(19, 4), (4, 18), (20, 18)], "cobb": [(3, 5), (18, 9), (3, 18), (18, 13)],
    "ellipse": [(2, 5), (20, 17)], "rectangle": [(3, 5), (19, 17)], "arrow": [(3, 19), (18, 4)],
}


def tool_icon(kind: str, size: int = 22) -> QIcon | None:
    """A small picture of a tool, drawn with the shapes its measurements are drawn with."""
    if kind not in _ICON_POINTS and kind not in ("text", SELECT):
        return None
    icon = QIcon()
    for mode, colour in ((QIcon.Mode.Normal, QColor(225, 225, 225)), (QIcon.Mode.Disabled, QColor(110, 110, 110))):
        pixmap = QPixmap(size * 2, size * 2)
        pixmap.setDevicePixelRatio(2.0)
        pixmap.fill(QColor(0, 0, 0, 0))
        p = QPainter(pixmap)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pen = QPen(colour, 1.6)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        p.setPen(pen)
        if kind == "text":
            font = p.font()
            font.setPixelSize(17)
            font.setBold(True)
            p.setFont(font)
            p.drawText(QRectF(0, 0, size, size), Qt.AlignmentFlag.AlignCenter, "T")
        elif kind == SELECT:
            p.setBrush(colour)
            p.drawPolygon(QPolygonF([QPointF(x, y) for x, y in
                                     ((6, 3), (6, 18), (10, 14.5), (13, 20), (15.5, 19), (12.5, 13), (17.5, 13))]))
        else:
            m = Measurement(kind, _ICON_POINTS[kind])
            for shape in shapes(m):
                paint_shape(p, QTransform(), shape, pen, head_px=7.0)
        p.end()
        icon.addPixmap(pixmap, mode)
    return icon
