"""Measurements on screen: what each image has (`Measurements`: read from the library, saved back as they
change, kept in memory for files outside it) and the layer that draws them over every viewport
(`MeasurementLayer`): the shapes app.measure.tools.shapes gives, yellow over a dark outline as in exports,
each with its values, units and the calibration they were measured with, in outlined text."""

from __future__ import annotations

import logging
import math
import sqlite3
import textwrap
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen, QPolygonF, QTransform

from app.errors import LightboxError
from app.measure.calibration import Calibration, ManualCalibration, apply_manual, calibration_of
from app.measure.tools import ROI_KINDS, Measurement, Result, Shape, label_anchor, measure, measure_image, shapes, \
    value_unit
from app.ui.viewer.tools import Layer

log = logging.getLogger(__name__)

COLOUR = QColor(255, 214, 0)  # as app.measure.drawing draws into exports
SELECTED = QColor(90, 200, 255)
OUTLINE = QColor(0, 0, 0, 220)
NOTE = QColor(225, 225, 225)  # reference ranges
WARNING = QColor(255, 165, 90)
HANDLE_PX = 4.0  # half a handle's side
HIT_PX = 7.0  # how near a click must be to a point or a line


def sop_of(viewport) -> str | None:
    """The SOP Instance UID of the image a viewport shows, or None (nothing, a document, still loading)."""
    if viewport.image is None or viewport.document is not None:
        return None
    instance = viewport.instance
    return instance.sop_instance_uid if instance is not None else None


def _uid(ds, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


_DB_ERRORS = (LightboxError, sqlite3.Error)


class Measurements(QObject):
    """The measurements and manual calibrations of the images shown, with their results.

    Images in the library keep theirs there (every change is saved at once); an image opened from disk
    outside the library keeps them in memory until Lightbox closes, and the status line says so once.
    Results are computed from the points and the calibration in force, so a new calibration shows at once.
    """

    changed = Signal()  # something to repaint
    message = Signal(str, int)  # a status line, and for how long (ms)

    def __init__(self, library, parent=None):
        super().__init__(parent)
        self._library = library  # () -> the GUI thread's Library, or None while there is none
        self._marks: dict[str, dict[str, Measurement]] = {}  # SOP UID -> id -> measurement
        self._stored: dict[str, bool] = {}  # SOP UID -> in the library
        self._manual: dict[tuple[str, str], ManualCalibration] = {}  # (scope, uid) for images outside it
        self._calibrations: dict[tuple[str, int], Calibration] = {}
        self._results: OrderedDict = OrderedDict()
        self._values = None  # (image, frame, modality values) of the last ROI measured
        self._noted = False
        self._note = ""  # said once, not yet shown beside a result
        self.selected: tuple[str, str] | None = None  # (SOP UID, measurement id)
        self.live: tuple[str, Measurement] | None = None  # drawn instead of the stored one while dragged
        self.layer = MeasurementLayer(self)

    # -- where they are kept --------------------------------------------------------------------

    def library(self):
        try:
            return self._library()
        except LightboxError:
            return None

    def stored(self, sop: str) -> bool:
        """Whether the image is in the library (its measurements are saved there)."""
        if sop not in self._stored:
            library, found = self.library(), False
            if library is not None and sop:
                try:
                    found = library.has_instance(sop)
                except _DB_ERRORS:
                    found = False
            self._stored[sop] = found
        return self._stored[sop]

    def _load(self, sop: str) -> dict[str, Measurement]:
        marks = self._marks.get(sop)
        if marks is None:
            marks = {}
            if self.stored(sop):
                try:
                    marks = {m.id: m for m in self.library().measurements(sop)}
                except _DB_ERRORS as exc:
                    log.warning("measurements of %s could not be read: %s", sop, exc)
            self._marks[sop] = marks
        return marks

    def forget(self) -> None:
        """Read the library afresh next time (a study was opened or removed). Measurements kept in memory for an
        image that has since been imported are saved into the library."""
        memory = {sop: marks for sop, marks in self._marks.items() if marks and not self._stored.get(sop, False)}
        for cache in (self._marks, self._stored, self._calibrations, self._results):
            cache.clear()
        self._values = None
        self.selected = self.live = None
        for sop, marks in memory.items():
            if self.stored(sop):
                for m in marks.values():
                    self._save(sop, None, m)
            else:
                self._marks[sop] = marks

    # -- the measurements -----------------------------------------------------------------------

    def on(self, sop: str, frame: int) -> list[Measurement]:
        """The measurements of a frame, oldest first (one being dragged as it is now)."""
        out = [m for m in self._load(sop).values() if m.frame == frame]
        if self.live is not None and self.live[0] == sop:
            live = self.live[1]
            out = [live if m.id == live.id else m for m in out]
        return out

    def find(self, sop: str, measurement_id: str) -> Measurement | None:
        return self._load(sop).get(measurement_id)

    def replace(self, sop: str, old: Measurement | None, new: Measurement | None) -> None:
        """Put `new` where `old` was: an addition (no `old`), a change, or a deletion (no `new`); saved at once."""
        marks = self._load(sop)
        if old is not None and (new is None or new.id != old.id):
            marks.pop(old.id, None)
            if self.selected == (sop, old.id):
                self.selected = None
        if new is not None:
            marks[new.id] = new
        self.live = None
        self._save(sop, old, new)
        self.changed.emit()

    def _save(self, sop: str, old: Measurement | None, new: Measurement | None) -> None:
        if not self.stored(sop):
            if new is not None and not self._noted:
                self._noted = True
                self._note = ("this image is not in the library: its measurements are kept until Lightbox closes "
                              "(import it to keep them)")
                self.message.emit(self._note[:1].upper() + self._note[1:], 15000)
            return
        try:
            library = self.library()
            if old is not None and (new is None or new.id != old.id):
                library.delete_measurement(old.id)
            if new is not None:
                library.save_measurement(sop, new)
        except _DB_ERRORS as exc:
            log.warning("measurement not saved: %s", exc)
            self.message.emit(f"The measurement could not be saved in the library ({exc}); it is kept until "
                              "Lightbox closes", 15000)

    def take_note(self) -> str:
        """The once-only note about where measurements are kept, if it was just made (then forgotten)."""
        note, self._note = self._note, ""
        return note

    def set_live(self, sop: str, m: Measurement | None) -> None:
        self.live = (sop, m) if m is not None else None
        self.changed.emit()

    def select(self, sop: str | None, measurement_id: str | None = None) -> None:
        chosen = (sop, measurement_id) if sop and measurement_id else None
        if chosen != self.selected:
            self.selected = chosen
            self.changed.emit()

    # -- calibration ----------------------------------------------------------------------------

    def calibration(self, ds, frame: int = 0) -> Calibration:
        """What sizes on a frame are measured with: a manual calibration of the image, its series or its study,
        else what the file says (the library decides for its images)."""
        sop = _uid(ds, "SOPInstanceUID")
        key = (sop, frame)
        found = self._calibrations.get(key) if sop else None
        if found is None:
            found = None
            if self.stored(sop):
                try:
                    found = self.library().calibration(ds, frame)
                except _DB_ERRORS as exc:
                    log.warning("calibration of %s: %s", sop, exc)
            if found is None:
                found = apply_manual(calibration_of(ds, frame), self._memory_manual(ds))
            if sop:
                self._calibrations[key] = found
        return found

    def _memory_manual(self, ds) -> ManualCalibration | None:
        for scope, keyword in (("image", "SOPInstanceUID"), ("series", "SeriesInstanceUID"),
                               ("study", "StudyInstanceUID")):
            found = self._manual.get((scope, _uid(ds, keyword)))
            if found is not None:
                return found
        return None

    def manual_for(self, ds) -> ManualCalibration | None:
        """The manual calibration an image is measured with, if any."""
        sop = _uid(ds, "SOPInstanceUID")
        if self.stored(sop):
            try:
                return self.library().manual_calibration_for(sop, _uid(ds, "SeriesInstanceUID"),
                                                             _uid(ds, "StudyInstanceUID"))
            except _DB_ERRORS:
                return None
        return self._memory_manual(ds)

    def manual(self, sop: str, scope: str, uid: str) -> ManualCalibration | None:
        """The manual calibration set for exactly this scope and UID (drawn on image `sop`)."""
        if self.stored(sop):
            try:
                return self.library().manual_calibration(scope, uid)
            except _DB_ERRORS:
                return None
        return self._manual.get((scope, uid))

    def set_manual(self, sop: str, scope: str, uid: str, manual: ManualCalibration | None) -> None:
        """Calibrate (or, with None, stop calibrating) an image, series or study by hand; measurements follow."""
        if self.stored(sop):
            try:
                library = self.library()
                if manual is None:
                    library.remove_manual_calibration(scope, uid)
                else:
                    library.set_manual_calibration(manual)
            except _DB_ERRORS as exc:
                self.message.emit(f"The calibration could not be saved in the library ({exc})", 15000)
                return
        elif manual is None:
            self._manual.pop((scope, uid), None)
        else:
            self._manual[(scope, uid)] = manual
        self._calibrations.clear()
        self.changed.emit()

    # -- results --------------------------------------------------------------------------------

    def result(self, image, m: Measurement, species: str = "", breed: str = "") -> Result:
        """What `m` measures on `image` (an app.dicom.pixels.Image), with the calibration in force."""
        calibration = self.calibration(image.ds, m.frame)
        key = (m, calibration, (image.label or id(image)) if m.kind in ROI_KINDS else None, species, breed)
        found = self._results.get(key)
        if found is not None:
            self._results.move_to_end(key)
            return found
        found = None
        if m.kind in ROI_KINDS and image.is_grey:
            try:
                values = self._frame_values(image, m.frame)
                found = measure(m, calibration, values=values, unit=value_unit(image.ds), species=species, breed=breed)
            except LightboxError as exc:
                found = measure(m, calibration, species=species, breed=breed)
                found = Result(found.measurement, found.values, found.lines, found.calibration, found.references,
                               (*found.warnings, f"pixel values unavailable ({exc})"))
        if found is None:
            found = measure_image(m, image, calibration, species=species, breed=breed)
        self._results[key] = found
        while len(self._results) > 400:
            self._results.popitem(last=False)
        return found

    def _frame_values(self, image, frame: int):
        """A frame's modality values, kept while ROIs on it are drawn and dragged."""
        if self._values is None or self._values[0] is not image or self._values[1] != frame:
            self._values = (image, frame, image.modality(image.frame(frame), frame))
        return self._values[2]

    def result_in(self, viewport, m: Measurement) -> Result:
        patient = viewport.series.patient
        return self.result(viewport.image, m, patient.species, patient.breed)


# -- drawing --------------------------------------------------------------------------------------

def label_lines(result: Result, selected: bool = False) -> list[tuple[str, str]]:
    """(text, style) lines of a measurement's label: its values, the calibration next to sizes, the reference
    ranges it is read against ("note") and warnings ("warning"; the calibration's own only when selected)."""
    m = result.measurement
    lines = [(text, "value") for text in result.lines]
    if lines and not result.scale_free:
        i = 1 if m.text and len(lines) > 1 else 0  # the note comes first, then the size
        lines[i] = (f"{lines[i][0]}  [{result.calibration_label}]", "value")
    for ref in result.references:
        lines += [(("" if n == 0 else "   ") + part, "note") for n, part in enumerate(textwrap.wrap(ref, 60))]
    for warning in result.warnings:
        if selected or warning != result.calibration.warning:
            lines += [(("⚠ " if n == 0 else "   ") + part, "warning")
                      for n, part in enumerate(textwrap.wrap(warning, 72))]
    return lines


def result_summary(result: Result) -> str:
    """One line for the status bar: the values, the calibration, the references."""
    return " · ".join(text for text, style in label_lines(result, True) if style != "warning")


@dataclass
class Fonts:
    value: QFont
    note: QFont


def fonts_for(viewport) -> Fonts:
    value = QFont(viewport.font())
    value.setPixelSize(round(max(12.0, min(15.0, viewport.height() / 48))))
    value.setBold(True)
    note = QFont(viewport.font())
    note.setPixelSize(max(11, value.pixelSize() - 2))
    return Fonts(value, note)


def _pens(colour: QColor, width: float) -> list[QPen]:
    pens = []
    for c, w in ((OUTLINE, width + 2.5), (colour, width)):
        pen = QPen(c, w)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        pens.append(pen)
    return pens


def paint_shapes(painter: QPainter, t: QTransform, items: list[Shape], colour: QColor = COLOUR,
                 width: float = 2.0) -> None:
    """Shapes in image coordinates, drawn through `t` with lines of constant width on screen."""
    for pen in _pens(colour, width):
        painter.setPen(pen)
        for shape in items:
            paint_shape(painter, t, shape, pen)


def paint_shape(painter: QPainter, t: QTransform, shape: Shape, pen: QPen, head_px: float = 13.0) -> None:
    pts = [t.map(QPointF(x, y)) for x, y in shape.points]
    painter.setBrush(Qt.BrushStyle.NoBrush)
    if shape.kind in ("line", "polyline") and len(pts) >= 2:
        painter.drawPolyline(QPolygonF(pts))
    elif shape.kind in ("ellipse", "rectangle") and len(pts) == 2:
        painter.drawPath(t.map(_box_path(shape)))
    elif shape.kind == "arrow" and len(pts) == 2:
        tail, head = pts
        painter.drawLine(tail, head)
        length = math.hypot(head.x() - tail.x(), head.y() - tail.y())
        if length > 0:
            size = head_px
            ux, uy = (head.x() - tail.x()) / length, (head.y() - tail.y()) / length
            left = QPointF(head.x() - size * (ux * 0.87 - uy * 0.5), head.y() - size * (uy * 0.87 + ux * 0.5))
            right = QPointF(head.x() - size * (ux * 0.87 + uy * 0.5), head.y() - size * (uy * 0.87 - ux * 0.5))
            painter.setBrush(QBrush(pen.color()))
            painter.drawPolygon(QPolygonF([head, left, right]))
    elif shape.kind == "point" and pts:
        painter.setBrush(QBrush(pen.color()))
        painter.drawEllipse(pts[0], 2.5, 2.5)


def _box_path(shape: Shape) -> QPainterPath:
    (x0, y0), (x1, y1) = shape.points
    rect = QRectF(QPointF(x0, y0), QPointF(x1, y1)).normalized()
    path = QPainterPath()
    if shape.kind == "ellipse":
        path.addEllipse(rect)
    else:
        path.addRect(rect)
    return path


def paint_handles(painter: QPainter, t: QTransform, points) -> None:
    painter.setPen(QPen(OUTLINE, 1.5))
    painter.setBrush(QBrush(QColor(255, 255, 255)))
    for x, y in points:
        q = t.map(QPointF(x, y))
        painter.drawRect(QRectF(q.x() - HANDLE_PX, q.y() - HANDLE_PX, 2 * HANDLE_PX, 2 * HANDLE_PX))


def text_size(lines: list[tuple[str, str]], fonts: Fonts) -> tuple[float, float]:
    width = height = 0.0
    for text, style in lines:
        metrics = QFontMetricsF(fonts.value if style == "value" else fonts.note)
        width = max(width, metrics.horizontalAdvance(text))
        height += metrics.height()
    return width, height


def paint_text(painter: QPainter, origin: QPointF, lines: list[tuple[str, str]], fonts: Fonts,
               colour: QColor = COLOUR) -> QRectF:
    """Lines of text with a dark outline (readable over bone and air alike), top left at `origin`."""
    y = origin.y()
    width = 0.0
    for text, style in lines:
        font = fonts.value if style == "value" else fonts.note
        metrics = QFontMetricsF(font)
        path = QPainterPath()
        path.addText(origin.x(), y + metrics.ascent(), font, text)
        outline = QPen(OUTLINE, 3.5 if style == "value" else 3.0)
        outline.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        painter.strokePath(path, outline)
        painter.fillPath(path, {"value": colour, "note": NOTE, "warning": WARNING}[style])
        width = max(width, metrics.horizontalAdvance(text))
        y += metrics.height()
    return QRectF(origin.x(), origin.y(), width, y - origin.y())


def shape_samples(t: QTransform, items: list[Shape], step: float = 6.0) -> np.ndarray:
    """Points every `step` widget pixels along shapes: what labels should not cover. (n, 2) array."""
    out = []
    for shape in items:
        for run in _runs(t, shape):
            out.append((run[0].x(), run[0].y()))
            for a, b in zip(run, run[1:]):
                n = max(1, int(math.hypot(b.x() - a.x(), b.y() - a.y()) / step))
                out += [(a.x() + (b.x() - a.x()) * k / n, a.y() + (b.y() - a.y()) * k / n) for k in range(1, n + 1)]
    return np.array(out, dtype=float).reshape(-1, 2)


def paint_leader(painter: QPainter, t: QTransform, m: Measurement, rect: QRectF, colour: QColor) -> None:
    """A thin line from a label placed away from its measurement back to the nearest of its points."""
    best = None
    for x, y in m.points:
        q = t.map(QPointF(x, y))
        near = QPointF(min(max(q.x(), rect.left()), rect.right()), min(max(q.y(), rect.top()), rect.bottom()))
        distance = math.hypot(near.x() - q.x(), near.y() - q.y())
        if best is None or distance < best[0]:
            best = (distance, q, near)
    if best is None or best[0] < 24:
        return
    for c, w in ((OUTLINE, 3.0), (colour, 1.0)):
        pen = QPen(c, w)
        pen.setStyle(Qt.PenStyle.DotLine if c is colour else Qt.PenStyle.SolidLine)
        painter.setPen(pen)
        painter.drawLine(best[1], best[2])


def label_origin(viewport, m: Measurement, size: tuple[float, float], taken=(), avoid: np.ndarray | None = None) \
        -> QPointF:
    """Where a label's top left goes: inside the viewport, beside its anchor (else beside another of its points),
    the place that covers least of the labels and boxes in `taken` and of the lines sampled in `avoid`."""
    t = viewport.transform()
    w, h = size
    if m.kind == "text":
        q = t.map(QPointF(*m.points[0]))
        return QPointF(min(max(4.0, q.x() + 2), max(4.0, viewport.width() - w - 4)),
                       min(max(4.0, q.y() - h / 2), max(4.0, viewport.height() - h - 4)))
    step = max(12.0, h / 2)
    offsets = [(dx, dy) for n in range(6) for dx in (12.0, -w - 12) for dy in (6.0 + n * step, -h - 6 - n * step)]
    offsets += [(-w / 2, 14.0), (-w / 2, -h - 14)]  # below, above
    anchors = [label_anchor(m), *[p for p in m.points if p != label_anchor(m)]]
    best, best_cost = None, math.inf
    for n_anchor, point in enumerate(anchors):
        q = t.map(QPointF(*point))
        for order, (dx, dy) in enumerate(offsets):
            x = min(max(4.0, q.x() + dx), max(4.0, viewport.width() - w - 4))
            y = min(max(4.0, q.y() + dy), max(4.0, viewport.height() - h - 4))
            cost = order * 0.5 + (n_anchor > 0) * 15 + math.hypot(max(x - q.x(), 0, q.x() - x - w),
                                                                   max(y - q.y(), 0, q.y() - y - h)) / 5
            if cost >= best_cost:
                continue
            rect = QRectF(x, y, w, h)
            for other in taken:
                overlap = rect.intersected(other)
                if not overlap.isEmpty():
                    cost += 200 + overlap.width() * overlap.height() / 4
            if avoid is not None and len(avoid):
                inside = (avoid[:, 0] >= x - 3) & (avoid[:, 0] <= x + w + 3) & (avoid[:, 1] >= y - 3) & \
                         (avoid[:, 1] <= y + h + 3)
                cost += 5 * int(inside.sum())
            if cost < best_cost:
                best, best_cost = QPointF(x, y), cost
    return best


def partial_shapes(kind: str, points) -> list[Shape]:
    """What to draw of a measurement still short of points: the pairs and paths placed so far."""
    pts = tuple(points)
    if len(pts) < 2:
        return [Shape("point", (p,)) for p in pts]
    if kind in ("polyline", "angle"):
        return [Shape("polyline", pts)]
    out = [Shape("line", pts[i:i + 2]) for i in range(0, min(len(pts), 4 if kind == "vhs" else len(pts)) - 1, 2)]
    if kind == "vhs" and len(pts) > 4:
        out.append(Shape("polyline", pts[4:]))
    if len(pts) % 2 and kind != "vhs":
        out.append(Shape("point", (pts[-1],)))
    return out


NOT_CALIBRATED_TEXT = "NOT CALIBRATED · sizes in pixels"


@dataclass
class Drawn:
    """A measurement as last painted in a viewport: for hit tests (its label) and tests (its text)."""
    measurement: Measurement
    label: QRectF
    lines: list[tuple[str, str]]

    @property
    def text(self) -> str:
        return "\n".join(text for text, _style in self.lines)


class MeasurementLayer(Layer):
    """Draws the measurements of the frame a viewport shows, and a mark on images without a calibration."""

    def __init__(self, book: Measurements):
        self.book = book
        self.drawn: dict[int, list[Drawn]] = {}  # id(viewport) -> what was drawn at its last paint
        self.uncalibrated: dict[int, bool] = {}  # id(viewport) -> the mark was drawn

    def paint(self, viewport, painter: QPainter) -> None:
        drawn = self.drawn[id(viewport)] = []
        self.uncalibrated[id(viewport)] = False
        sop = sop_of(viewport)
        if sop is None:
            return
        t = viewport.transform()
        fonts = fonts_for(viewport)
        taken: list[QRectF] = list(getattr(viewport, "overlay_boxes", []))  # the corner text
        if not self.book.calibration(viewport.image.ds, viewport.frame).calibrated:
            self.uncalibrated[id(viewport)] = True
            taken.append(self._paint_uncalibrated(viewport, painter, fonts))
        marks = self.book.on(sop, viewport.frame)
        results = [self.book.result_in(viewport, m) for m in marks]
        drawn_shapes = [shapes(m, r.calibration) for m, r in zip(marks, results)]
        avoid = shape_samples(t, [s for items in drawn_shapes for s in items])
        for m, result, items in zip(marks, results, drawn_shapes):
            selected = self.book.selected == (sop, m.id)
            colour = SELECTED if selected else COLOUR
            paint_shapes(painter, t, items, colour)
            lines = label_lines(result, selected)
            rect = QRectF()
            if lines:
                origin = label_origin(viewport, m, text_size(lines, fonts), taken, avoid)
                rect = paint_text(painter, origin, lines, fonts, colour)
                taken.append(rect)
                paint_leader(painter, t, m, rect, colour)
            if selected:
                if m.kind in ROI_KINDS:  # the box its corner handles belong to
                    pen = QPen(colour, 1.0, Qt.PenStyle.DashLine)
                    painter.setPen(pen)
                    painter.setBrush(Qt.BrushStyle.NoBrush)
                    painter.drawPath(t.map(_box_path(Shape("rectangle", m.points))))
                paint_handles(painter, t, m.points)
            drawn.append(Drawn(m, rect, lines))

    def _paint_uncalibrated(self, viewport, painter: QPainter, fonts: Fonts) -> QRectF:
        """The mark on an image without calibration, top centre; where it is."""
        font = QFont(fonts.value)
        metrics = QFontMetricsF(font)
        width = metrics.horizontalAdvance(NOT_CALIBRATED_TEXT)
        top = 8.0 + (viewport.height() > 300) * 2
        origin = QPointF((viewport.width() - width) / 2, top + 3)
        box = QRectF(origin.x() - 8, top, width + 16, metrics.height() + 6)
        painter.setPen(QPen(WARNING, 1.5))
        painter.setBrush(QBrush(QColor(0, 0, 0, 150)))
        painter.drawRoundedRect(box, 4, 4)
        paint_text(painter, origin, [(NOT_CALIBRATED_TEXT, "value")], Fonts(font, font), WARNING)
        return box


# -- hit tests ------------------------------------------------------------------------------------

def _segment_distance(p: QPointF, a: QPointF, b: QPointF) -> float:
    dx, dy = b.x() - a.x(), b.y() - a.y()
    length2 = dx * dx + dy * dy
    s = 0.0 if length2 == 0 else max(0.0, min(1.0, ((p.x() - a.x()) * dx + (p.y() - a.y()) * dy) / length2))
    return math.hypot(p.x() - (a.x() + s * dx), p.y() - (a.y() + s * dy))


def _runs(t: QTransform, shape: Shape) -> list[list[QPointF]]:
    """A shape as runs of connected points in widget coordinates."""
    if shape.kind in ("ellipse", "rectangle"):
        polygons = t.map(_box_path(shape)).toSubpathPolygons()
        return [[polygon[i] for i in range(polygon.size())] for polygon in polygons]
    return [[t.map(QPointF(x, y)) for x, y in shape.points]]


def _shape_distance(t: QTransform, shape: Shape, pos: QPointF) -> float:
    best = math.inf
    for run in _runs(t, shape):
        if len(run) == 1:
            best = min(best, math.hypot(pos.x() - run[0].x(), pos.y() - run[0].y()))
        for a, b in zip(run, run[1:]):
            best = min(best, _segment_distance(pos, a, b))
    return best


def hit(book: Measurements, viewport, pos: QPointF) -> tuple[Measurement, int | None] | None:
    """The measurement under `pos` (widget coordinates) and the point whose handle is there (None: the
    measurement itself): handles of the selected one first, then the newest measurement's points, lines, label."""
    sop = sop_of(viewport)
    if sop is None:
        return None
    marks = book.on(sop, viewport.frame)
    if not marks:
        return None
    t = viewport.transform()
    order = sorted(reversed(marks), key=lambda m: book.selected != (sop, m.id))
    for m in order:
        for i, (x, y) in enumerate(m.points):
            q = t.map(QPointF(x, y))
            if abs(q.x() - pos.x()) <= HIT_PX and abs(q.y() - pos.y()) <= HIT_PX:
                return m, i
    labels = {d.measurement.id: d.label for d in book.layer.drawn.get(id(viewport), [])}
    calibration = book.calibration(viewport.image.ds, viewport.frame)
    for m in order:
        if any(_shape_distance(t, s, pos) <= HIT_PX - 1 for s in shapes(m, calibration)):
            return m, None
        label = labels.get(m.id)
        if label is not None and label.adjusted(-3, -3, 3, 3).contains(pos):
            return m, None
    return None
