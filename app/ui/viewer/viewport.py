"""One viewport: a series shown frame by frame with window/level, zoom, pan, rotate, flip, invert.

Geometry is a QTransform from image pixels to widget pixels. Each paint asks the ground floor for
only the visible region of the image, at (at most) the screen's resolution, and lets Qt place it.
"""

from __future__ import annotations

import json
import logging
import math

from PySide6.QtCore import QMimeData, QPointF, QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QFont, QPainter, QTransform
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.dicom import display
from app.dicom.display import Preset, Renderer, Voi, Window
from app.dicom.pixels import Image
from app.dicom.series import Series
from app.dicom.summary import format_date
from app.errors import LightboxError
from app.jobs import Job
from app.measure.calibration import pixel_spacing
from app.ui.images import to_qimage
from app.ui.jobs import JobRelay

log = logging.getLogger(__name__)

MIN_ZOOM, MAX_ZOOM = 0.02, 40.0
SERIES_MIME = "application/x-lightbox-series"  # a series dragged from the library: its series and study UIDs


def series_mime_data(series_uid: str, study_uid: str) -> QMimeData:
    mime = QMimeData()
    mime.setData(SERIES_MIME, json.dumps({"series_uid": series_uid, "study_uid": study_uid}).encode("utf-8"))
    return mime


def dropped_series(mime: QMimeData) -> tuple[str, str] | None:
    """(series UID, study UID) of a dragged series, or None when the drag carries something else."""
    if mime is None or not mime.hasFormat(SERIES_MIME):
        return None
    try:
        payload = json.loads(bytes(mime.data(SERIES_MIME)).decode("utf-8"))
        return str(payload["series_uid"]), str(payload.get("study_uid", ""))
    except (ValueError, KeyError, TypeError):
        return None


class Viewport(QWidget):
    changed = Signal()  # what is shown, or how, has changed (overlays, toolbars follow)
    problem = Signal(str)  # a user-facing message: this image cannot be shown
    painted = Signal()  # an image reached the screen
    series_dropped = Signal(str, str)  # series UID, study UID: a series from the library was dropped here

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 200)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(False)
        self.setAcceptDrops(True)  # series from the library; files are left to the window
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.series: Series | None = None
        self.position = 0
        self.image: Image | None = None
        self.frame = 0
        self.renderer: Renderer | None = None
        self.voi: Voi | None = None
        self.invert = False
        self.zoom = 1.0
        self.center = QPointF(0, 0)
        self.rotation = 0  # degrees clockwise, multiple of 90
        self.flip_h = False
        self.flip_v = False
        self.fit_mode = True  # follow the widget's size until the user zooms or pans
        self.tool = "window"  # what the left button does: window, pan, zoom
        self.error: str | None = None
        self._drag = None
        self._qimage_key = None
        self._qimage = None
        self.show_overlays = True
        self.loading = False  # the frame is being decoded; a preview may be shown meanwhile
        self._shown_size = None  # rows, columns of the last image shown (a new shape is fitted)
        self._pending = None
        self._relays: set[JobRelay] = set()
        # While the user zooms or pans, regions are sampled fast; once still, smoothly.
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(150)
        self._settle.timeout.connect(self.update)

    # -- what is shown ------------------------------------------------------------------------

    def set_series(self, series: Series | None, position: int = 0) -> None:
        self.series = series
        self.voi = None
        self.invert = False
        self.rotation = 0
        self.flip_h = self.flip_v = False
        self.fit_mode = True
        self.image = None
        self.renderer = None
        self.error = None
        self._pending = None
        self._shown_size = None
        self.loading = False
        if series is not None and series.frame_count:
            self.show_position(position)
        else:
            self.changed.emit()
            self.update()

    def show_position(self, position: int) -> None:
        if self.series is None or not self.series.frame_count:
            return
        position = max(0, min(position, self.series.frame_count - 1))
        self.position = position
        self._pending = None
        instance, frame = self.series.locate(position)
        try:
            image = instance.image()
            if not image.has_frame(frame) and image.slow_to_decode:
                self._decode_in_background(image, frame)
                return
            image.frame(frame)  # decode now, so a failure shows here, not in paintEvent
        except LightboxError as exc:
            self._fail(str(exc))
            return
        self._show(image, frame, Renderer(image, frame))

    def _show(self, image: Image, frame: int, renderer: Renderer) -> None:
        first = self._shown_size != (image.rows, image.columns)  # a new shape: fit it
        self._shown_size = (image.rows, image.columns)
        self.image, self.frame, self.renderer, self.error = image, frame, renderer, None
        self.loading = renderer.is_preview
        if self.voi is None or not image.is_grey or not _voi_fits(self.voi, image):
            try:
                self.voi = display.default_voi(image, frame, pixels=renderer.pixels)
            except LightboxError as exc:
                self._fail(str(exc))
                return
        if first:
            self.fit_mode = True
        self.changed.emit()
        self.update()

    def _fail(self, message: str) -> None:
        self.image, self.renderer, self.error, self.loading = None, None, message, False
        self.problem.emit(message)
        self.changed.emit()
        self.update()

    def _decode_in_background(self, image: Image, frame: int) -> None:
        """Slow decodes (large JPEG 2000 ...) run off the GUI thread; a reduced-resolution preview
        is shown first where the codec allows one."""
        self._pending = (image, frame)
        self.loading = True
        self.image, self.renderer = None, None
        self.changed.emit()
        self.update()
        longest = int(max(self.width(), self.height()) * self.devicePixelRatioF())

        def work(reporter):
            preview = image.preview(frame, longest)
            if preview is not None:
                job.preview = preview
                reporter.update(message="preview")
            image.frame(frame)

        job = Job(work, "Decoding the image")
        job.preview = None
        job.target = (image, frame)
        relay = JobRelay(job, self)
        relay.progress.connect(self._decode_progress)
        relay.finished.connect(self._decoded)
        self._relays.add(relay)
        relay.finished.connect(lambda _job, r=relay: self._relays.discard(r))
        relay.start()

    @Slot(object)
    def _decode_progress(self, job: Job) -> None:
        if job.target == self._pending and job.preview is not None and self.image is None:
            pixels, factor = job.preview
            self._show(*job.target, Renderer(*job.target, pixels=pixels, scale=factor))

    @Slot(object)
    def _decoded(self, job: Job) -> None:
        if job.target != self._pending:
            return  # the user has moved on
        self._pending = None
        if job.error is not None:
            self._fail(str(job.error))
        else:
            self._show(*job.target, Renderer(*job.target))

    def step(self, delta: int) -> None:
        if self.series is not None:
            self.show_position(self.position + delta)

    @property
    def count(self) -> int:
        return self.series.frame_count if self.series else 0

    # -- window/level -------------------------------------------------------------------------

    def _preview_pixels(self):
        """What stands in for the frame while it decodes (so nothing here waits for the decoder)."""
        return self.renderer.pixels if self.renderer is not None else None

    def presets(self) -> list[Preset]:
        if self.image is None:
            return []
        return display.presets(self.image, self.frame, self._preview_pixels())

    def set_voi(self, voi: Voi) -> None:
        self.voi = voi
        self.changed.emit()
        self.update()

    def set_window(self, center: float, width: float) -> None:
        self.set_voi(Window(center, max(width, 1e-3)))

    def current_window(self) -> Window | None:
        """The window in force; a VOI LUT is described by the window that spans its input range."""
        if isinstance(self.voi, Window):
            return self.voi
        if self.image is None:
            return None
        return display.full_range_window(self.image, self.frame, self._preview_pixels())

    def toggle_invert(self) -> None:
        self.invert = not self.invert
        self.changed.emit()
        self.update()

    # -- geometry -----------------------------------------------------------------------------

    def image_size(self) -> tuple[int, int]:
        return (self.image.columns, self.image.rows) if self.image else (1, 1)

    def transform(self) -> QTransform:
        """Image pixel coordinates -> widget coordinates."""
        if self.fit_mode:
            self._fit()
        t = QTransform()
        t.translate(self.width() / 2, self.height() / 2)
        t.scale(-self.zoom if self.flip_h else self.zoom, -self.zoom if self.flip_v else self.zoom)
        t.rotate(self.rotation)
        t.translate(-self.center.x(), -self.center.y())
        return t

    def _fit(self) -> None:
        w, h = self.image_size()
        if self.rotation % 180:
            w, h = h, w
        self.zoom = max(MIN_ZOOM, min(self.width() / w, self.height() / h))
        iw, ih = self.image_size()
        self.center = QPointF(iw / 2, ih / 2)

    def fit(self) -> None:
        self.fit_mode = True
        self.changed.emit()
        self.update()

    def actual_size(self) -> None:
        self.set_zoom(1.0 / self.devicePixelRatioF())

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        t = self.transform()
        self.fit_mode = False
        anchor = anchor if anchor is not None else QPointF(self.width() / 2, self.height() / 2)
        fixed, _ = t.inverted()
        image_point = fixed.map(anchor)
        self.zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        moved = self.transform().map(image_point)
        self._shift(anchor - moved)

    def _shift(self, delta: QPointF) -> None:
        """Move what is shown by `delta` widget pixels."""
        self._settle.start()
        self.fit_mode = False
        inverse, _ = self.transform().inverted()
        self.center = inverse.map(QPointF(self.width() / 2, self.height() / 2) - delta)
        self.changed.emit()
        self.update()

    def rotate(self, degrees: int) -> None:
        # Rotation is in screen space after any flip, so a flipped image turns the way the user sees.
        if self.flip_h != self.flip_v:
            degrees = -degrees
        self.rotation = (self.rotation + degrees) % 360
        if self.fit_mode:
            self._fit()
        self.changed.emit()
        self.update()

    def flip(self, horizontal: bool = True) -> None:
        if horizontal:
            self.flip_h = not self.flip_h
        else:
            self.flip_v = not self.flip_v
        self.changed.emit()
        self.update()

    def reset(self) -> None:
        self.rotation = 0
        self.flip_h = self.flip_v = False
        self.invert = False
        self.fit_mode = True
        if self.image is not None:
            self.voi = display.default_voi(self.image, self.frame, pixels=self._preview_pixels())
        self.changed.emit()
        self.update()

    # -- painting -----------------------------------------------------------------------------

    def visible_region(self, t: QTransform) -> tuple[int, int, int, int] | None:
        inverse, ok = t.inverted()
        if not ok:
            return None
        r = inverse.mapRect(QRectF(0, 0, self.width(), self.height()))
        w, h = self.image_size()
        x0, y0 = max(0, math.floor(r.left())), max(0, math.floor(r.top()))
        x1, y1 = min(w, math.ceil(r.right())), min(h, math.ceil(r.bottom()))
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1, y1

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(0, 0, 0))
        if self.image is not None and self.renderer is not None and self.voi is not None:
            t = self.transform()
            region = self.visible_region(t)
            if region is not None:
                x0, y0, x1, y1 = region
                scale = min(self.zoom * self.devicePixelRatioF(), 1.0)
                out_w = max(1, round((x1 - x0) * scale))
                out_h = max(1, round((y1 - y0) * scale))
                smooth = not self._settle.isActive()
                key = (id(self.renderer), region, out_w, out_h, smooth, self.voi, self.invert)
                if key != self._qimage_key:
                    try:
                        self.renderer.set_region(region, out_w, out_h, smooth)
                        self._qimage = to_qimage(self.renderer.render(self.voi, self.invert))
                        self._qimage_key = key
                    except LightboxError as exc:
                        self.error, self.image = str(exc), None
                        self.problem.emit(str(exc))
                if self.image is not None:
                    painter.setTransform(t)
                    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom > 1.0)
                    painter.drawImage(QRectF(x0, y0, x1 - x0, y1 - y0), self._qimage)
                    painter.resetTransform()
        if self.show_overlays:
            self._paint_overlays(painter)
        painter.end()
        if self.image is not None:
            self.painted.emit()

    def _paint_overlays(self, painter: QPainter) -> None:
        font = QFont(self.font())
        font.setPointSizeF(max(8.0, min(11.0, self.height() / 70)))
        painter.setFont(font)
        margin = 8
        box = QRectF(margin, margin, self.width() - 2 * margin, self.height() - 2 * margin)
        if self.series is None:
            self._text(painter, box, Qt.AlignmentFlag.AlignCenter,
                       ["Drop DICOM files or folders here", "or use File ▸ Open"], QColor(150, 150, 150))
            return
        for align, lines in self.overlay_text().items():
            self._text(painter, box, align, lines)
        if self.loading and self.image is None:
            self._text(painter, box, Qt.AlignmentFlag.AlignCenter, ["Loading…"], QColor(170, 170, 170))
        if self.error:
            self._text(painter, box, Qt.AlignmentFlag.AlignCenter,
                       ["This image cannot be shown", *self.error.split(": ", 1)[-1:]], QColor(255, 170, 120))

    def overlay_text(self) -> dict:
        """The four corners' lines of text."""
        s = self.series
        p = s.patient
        top_left = [p.name.replace("^", " ") or "(no name)"]
        if p.id:
            top_left.append(f"ID {p.id}")
        if p.species_breed:
            top_left.append(p.species_breed)
        if p.owner:
            top_left.append(f"Owner: {p.owner.replace('^', ' ')}")
        sex_age = ", ".join(x for x in (p.sex and f"Sex {p.sex}", p.birth_date and f"born {format_date(p.birth_date)}") if x)
        if sex_age:
            top_left.append(sex_age)
        top_right = [x for x in (format_date(s.study_date), s.study_description, s.title) if x]
        bottom_left = []
        if self.image is not None:
            win = self.current_window()
            if isinstance(self.voi, Window):
                bottom_left.append(f"W {win.width:.0f}  L {win.center:.0f}")
            elif self.voi is not None:
                bottom_left.append(str(self.voi))
            bottom_left.append(f"Zoom {self.zoom * 100:.0f}%")
        if self.count > 1:
            instance, frame = s.locate(self.position)
            label = f"Image {self.position + 1} / {self.count}"
            if instance.frames > 1:
                label += f"  (frame {frame + 1} / {instance.frames})"
            bottom_left.append(label)
        bottom_right = []
        if self.image is not None:
            spacing = pixel_spacing(self.image.ds)
            bottom_right.append(f"{self.image.columns} × {self.image.rows}")
            if spacing:
                where = "" if spacing.source == "PixelSpacing" else " at detector"
                size = f"{spacing.column_mm:.3g}" if spacing.column_mm == spacing.row_mm else \
                    f"{spacing.column_mm:.3g} × {spacing.row_mm:.3g}"
                bottom_right.append(f"Pixel {size} mm{where}")
            else:
                bottom_right.append("Not calibrated")
            if self.loading:
                bottom_right.append("Loading full resolution…")
            marks = [m for m, on in (("Inverted", self.invert), (f"Rotated {self.rotation}°", self.rotation),
                                     ("Flipped H", self.flip_h), ("Flipped V", self.flip_v)) if on]
            if marks:
                bottom_right.append(" · ".join(marks))
        A = Qt.AlignmentFlag
        return {A.AlignTop | A.AlignLeft: top_left, A.AlignTop | A.AlignRight: top_right,
                A.AlignBottom | A.AlignLeft: bottom_left, A.AlignBottom | A.AlignRight: bottom_right}

    @staticmethod
    def _text(painter: QPainter, box: QRectF, align, lines, color=QColor(235, 235, 235)) -> None:
        text = "\n".join(lines)
        painter.setPen(QColor(0, 0, 0, 220))  # a dark outline keeps text readable over bone
        for dx, dy in ((1, 1), (-1, -1), (1, -1), (-1, 1), (1, 0), (-1, 0), (0, 1), (0, -1)):
            painter.drawText(box.translated(dx, dy), int(align), text)
        painter.setPen(color)
        painter.drawText(box, int(align), text)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.changed.emit()

    # -- a series dragged from the library ----------------------------------------------------

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if dropped_series(event.mimeData()) is not None:
            event.setDropAction(Qt.DropAction.CopyAction)  # never a move: the library keeps its series
            event.accept()
        else:
            event.ignore()  # files: the window opens them

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        found = dropped_series(event.mimeData())
        if found is None:
            event.ignore()
            return
        event.setDropAction(Qt.DropAction.CopyAction)
        event.accept()
        self.series_dropped.emit(*found)

    # -- mouse and keys -----------------------------------------------------------------------

    def mousePressEvent(self, event) -> None:  # noqa: N802
        button = event.button()
        mode = None
        if button == Qt.MouseButton.LeftButton:
            mode = "pan" if event.modifiers() & Qt.KeyboardModifier.ControlModifier else self.tool
        elif button == Qt.MouseButton.MiddleButton:
            mode = "pan"
        elif button == Qt.MouseButton.RightButton:
            mode = "zoom"
        if mode and self.image is not None:
            self._drag = (mode, event.position(), self.current_window(), self.zoom, event.position())
            event.accept()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._drag is None:
            return
        mode, start, window, zoom, last = self._drag
        pos = event.position()
        d = pos - start
        if mode == "window" and window is not None:
            step = self._window_step()
            self.set_window(window.center + d.y() * step, max(1.0 if not self.image.is_float else 1e-6,
                                                              window.width + d.x() * step))
        elif mode == "pan":
            self._shift(pos - last)
        elif mode == "zoom":
            self.set_zoom(zoom * math.exp(-d.y() / 200.0), start)
        self._drag = (mode, start, window, zoom, pos)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        self._drag = None

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self.fit()

    def _window_step(self) -> float:
        """Modality units per mouse pixel: a drag across the viewport spans the image's range."""
        if self.image.is_grey:
            lo, hi = display.frame_range(self.image, self.frame, self._preview_pixels())
        else:
            lo, hi = 0, 255
        return max(hi - lo, 1e-6) / max(300.0, float(self.width()))

    def wheelEvent(self, event) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if not steps or self.image is None:
            return
        ctrl = event.modifiers() & Qt.KeyboardModifier.ControlModifier
        if self.count > 1 and not ctrl:
            self.step(-1 if steps > 0 else 1)
        else:
            self.set_zoom(self.zoom * (1.15 ** steps), event.position())
        event.accept()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        key = event.key()
        k = Qt.Key
        if key in (k.Key_Down, k.Key_Right, k.Key_PageDown):
            self.step(10 if key == k.Key_PageDown else 1)
        elif key in (k.Key_Up, k.Key_Left, k.Key_PageUp):
            self.step(-10 if key == k.Key_PageUp else -1)
        elif key == k.Key_Home:
            self.show_position(0)
        elif key == k.Key_End:
            self.show_position(self.count - 1)
        else:
            super().keyPressEvent(event)


def _voi_fits(voi: Voi, image: Image) -> bool:
    """Whether a window kept while paging still applies to the next image."""
    if isinstance(voi, Window):
        return True
    return voi.index < len(image.frame_attributes(0).get("VOILUTSequence") or [])

