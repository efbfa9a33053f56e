"""One viewport: a series shown frame by frame with window/level, zoom, pan, rotate, flip, invert; or an
encapsulated PDF document.

Geometry is a QTransform from image pixels to widget pixels. Each paint asks the ground floor for
only the visible region of the image, at (at most) the screen's resolution, and lets Qt place it.

Extending it (see app/ui/viewer/tools.py): `set_tool(ViewportTool)` gives a tool the left button and keys;
`layers` paint over the image; `image_point` / `widget_point` convert coordinates; `image`, `frame`,
`instance` and `transform()` say what is shown and where.
"""

from __future__ import annotations

import json
import logging
import math

from PySide6.QtCore import QEvent, QMimeData, QPointF, QRect, QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPixmap, QTransform
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.dicom import display
from app.dicom.display import Preset, Renderer, Voi, Window
from app.dicom.pixels import Image
from app.dicom.series import Instance, Series
from app.dicom.summary import format_date
from app.errors import LightboxError
from app.jobs import Job
from app.measure.calibration import Calibration, calibration_of
from app.ui.images import to_qimage
from app.ui.jobs import JobRelay
from app.ui.viewer.cine import CinePlayer
from app.ui.viewer.tools import Layer, ViewportTool

log = logging.getLogger(__name__)

MIN_ZOOM, MAX_ZOOM = 0.02, 40.0
SERIES_MIME = "application/x-lightbox-series"  # a series (or, without series UID, a whole study) being dragged
ACTIVE_COLOR = QColor(64, 156, 255)
PLACEHOLDER = ["Drop DICOM files or folders here", "or use File ▸ Open"]

# Keys a viewport handles itself (the window's actions list theirs): for Help ▸ Keyboard shortcuts.
KEYS = [
    ("Left drag", "The left-button tool (window/level: right = wider, down = higher level)"),
    ("Ctrl + left drag, middle drag", "Pan"),
    ("Right drag", "Zoom"),
    ("Wheel", "Next/previous image or frame; zoom on a single image"),
    ("Ctrl + wheel", "Zoom at the pointer"),
    ("Arrow keys", "Previous/next image or frame"),
    ("Page Up / Page Down", "10 images back/forward"),
    ("Home / End", "First/last image"),
    ("Double-click", "Fit to window"),
    ("Click", "Make this viewport the active one"),
]


def series_mime_data(series_uid: str, study_uid: str) -> QMimeData:
    """A drag of a series; with an empty `series_uid`, of the whole study."""
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
    series_dropped = Signal(str, str)  # series UID ("" for a whole study), study UID: dropped here
    activated = Signal()  # clicked or focused: the window makes it the active viewport
    paged = Signal(int, int)  # old and new position, when the user pages (wheel, keys, step)
    window_changed = Signal()  # the user's window/level (or VOI) changed
    view_changed = Signal()  # zoom or pan changed (or fit)
    series_changed = Signal()  # another series (or none) is shown

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
        self.tool: str | ViewportTool = "window"  # the left button: "window", "pan", "zoom" or a ViewportTool
        self.layers: list[Layer] = []  # painted over the image, in order
        self.calibration_of = calibration_of  # (ds, frame) -> Calibration; the window asks its library
        self.marked = False  # drawn as the active viewport (when there are several)
        self.caption = ""  # "Prior · 2025-06-01 · Thorax", top right instead of the study's date; "" for none
        self.placeholder = PLACEHOLDER  # what an empty viewport says
        self.document_view = None  # made when a document is first shown
        self.cine = CinePlayer(self)
        self._tool_busy = False  # the tool took the press: it gets the moves and the release
        self._text_cache: dict = {}  # overlay text blocks drawn once, outline and all
        self.overlay_boxes: list[QRectF] = []  # where the corner text went at the last paint (labels keep clear)
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
        self.cine.pause()
        self.series = series
        self.position = 0
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
        self._hide_document()
        if series is not None and series.frame_count:
            self.show_position(position)
        else:
            self.changed.emit()
            self.update()
        self.series_changed.emit()

    def show_position(self, position: int) -> None:
        if self.series is None or not self.series.frame_count:
            return
        position = max(0, min(position, self.series.frame_count - 1))
        self.position = position
        self._pending = None
        instance, frame = self.series.locate(position)
        if instance.document:
            self._show_document(instance)
            return
        self._hide_document()
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
        """Page by `delta` images or frames, as the user does (synchronised viewports follow)."""
        if self.series is not None:
            self.go_to(self.position + delta)

    def go_to(self, position: int) -> None:
        """Show `position`, as the user asks for it (paging stops cine)."""
        if self.series is None or not self.count:
            return
        self.cine.pause()
        old = self.position
        self.show_position(position)
        if self.position != old:
            self.paged.emit(old, self.position)

    @property
    def count(self) -> int:
        return self.series.frame_count if self.series else 0

    @property
    def instance(self) -> Instance | None:
        """The instance shown (its path, SOP Instance UID), or None."""
        if self.series is None or not self.count:
            return None
        return self.series.locate(self.position)[0]

    # -- documents ----------------------------------------------------------------------------

    @property
    def document(self) -> Instance | None:
        """The encapsulated document shown instead of an image, or None."""
        view = self.document_view
        return getattr(view, "instance", None) if view is not None and view.isVisibleTo(self) else None

    def _show_document(self, instance: Instance) -> None:
        from app.ui.viewer.document import DocumentView

        if self.document_view is None:
            self.document_view = DocumentView(self)
            self.document_view.pressed.connect(self.activated)
        view = self.document_view
        self.image, self.renderer, self.error, self.loading = None, None, None, False
        self._shown_size = None
        if getattr(view, "instance", None) is not instance:
            s = self.series
            title = " · ".join(x for x in ("PDF", s.description or s.title, format_date(s.study_date)) if x)
            view.instance = instance
            view.show_pdf(instance.path, title, instance.sop_instance_uid)
        self._place_document()
        view.show()
        self.changed.emit()
        self.update()

    def _hide_document(self) -> None:
        if self.document_view is not None and not self.document_view.isHidden():
            self.document_view.hide()
            self.document_view.instance = None

    def _place_document(self) -> None:
        if self.document_view is not None:
            m = 3 if self.marked else 0
            self.document_view.setGeometry(self.rect().adjusted(m, m, -m, -m))

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
        self.window_changed.emit()
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

    def calibration(self) -> Calibration | None:
        """What sizes on the frame shown are measured with (a manual calibration, else the file's)."""
        return self.calibration_of(self.image.ds, self.frame) if self.image is not None else None

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
        self.zoom = self.fit_zoom()
        iw, ih = self.image_size()
        self.center = QPointF(iw / 2, ih / 2)

    def fit_zoom(self) -> float:
        """The zoom at which the whole image fits the viewport."""
        w, h = self.image_size()
        if self.rotation % 180:
            w, h = h, w
        return max(MIN_ZOOM, min(self.width() / w, self.height() / h))

    def fit(self) -> None:
        self.fit_mode = True
        self.changed.emit()
        self.view_changed.emit()
        self.update()

    def view_state(self) -> tuple[bool, float, float, float]:
        """(fitted, zoom relative to fit, centre as fractions of the image's width and height): the
        view in terms that carry over to an image of another size."""
        if self.fit_mode:
            return True, 1.0, 0.5, 0.5
        w, h = self.image_size()
        return False, self.zoom / self.fit_zoom(), self.center.x() / w, self.center.y() / h

    def set_view_state(self, state: tuple[bool, float, float, float]) -> None:
        fitted, relative, fx, fy = state
        if fitted:
            self.fit_mode = True
        else:
            w, h = self.image_size()
            self.fit_mode = False
            self.zoom = max(MIN_ZOOM, min(MAX_ZOOM, relative * self.fit_zoom()))
            self.center = QPointF(fx * w, fy * h)
            self._settle.start()
        self.changed.emit()
        self.view_changed.emit()
        self.update()

    def image_point(self, widget_pos: QPointF) -> QPointF:
        """Widget coordinates -> image pixel coordinates (x = column, y = row; pixel centres at +0.5)."""
        inverse, _ = self.transform().inverted()
        return inverse.map(QPointF(widget_pos))

    def widget_point(self, image_pos: QPointF) -> QPointF:
        return self.transform().map(QPointF(image_pos))

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
        self.view_changed.emit()
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
        self._settle.stop()  # one jump to a still view: drawn smoothly at once
        self.rotation = 0
        self.flip_h = self.flip_v = False
        self.invert = False
        self.fit_mode = True
        if self.image is not None:
            self.voi = display.default_voi(self.image, self.frame, pixels=self._preview_pixels())
        self.changed.emit()
        self.window_changed.emit()
        self.view_changed.emit()
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
        if self.image is not None:
            self.paint_layers(painter)
        if self.show_overlays:
            self._paint_overlays(painter)
        else:
            self.overlay_boxes = []
        if self.marked:
            painter.setPen(QPen(ACTIVE_COLOR, 3))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(QRectF(self.rect()).adjusted(1.5, 1.5, -1.5, -1.5))
        painter.end()
        if self.image is not None:
            self.painted.emit()

    def paint_layers(self, painter: QPainter) -> None:
        """The layers, then the tool's drawing in progress; each with a fresh painter state."""
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        for layer in self.layers:
            painter.save()
            try:
                layer.paint(self, painter)
            except Exception:  # noqa: BLE001 - a broken layer must not take the image with it
                log.exception("layer %r failed to paint", layer)
            painter.restore()
        if isinstance(self.tool, ViewportTool):
            painter.save()
            self.tool.paint(self, painter)
            painter.restore()

    def _paint_overlays(self, painter: QPainter) -> None:
        font = QFont(self.font())
        font.setPointSizeF(max(8.0, min(11.0, self.height() / 70)))
        painter.setFont(font)
        self.overlay_boxes = []
        margin = 8
        box = QRectF(margin, margin, self.width() - 2 * margin, self.height() - 2 * margin)
        if self.series is None:
            self._text(painter, box, Qt.AlignmentFlag.AlignCenter, self.placeholder, QColor(150, 150, 150))
            return
        if self.document is not None:
            return  # the document view says what it is
        for align, lines in self.overlay_text().items():
            self._text(painter, box, align, lines)
        if self.caption:  # in place of the study's date and description, top right
            bold = QFont(font)
            bold.setBold(True)
            painter.setFont(bold)
            self._text(painter, box, Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignRight, [self.caption],
                       QColor(255, 214, 120))
            painter.setFont(font)
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
        if self.caption:  # "Prior · date · description", painted above the series title
            top_right = ["", s.title]
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
                label = f"Frame {frame + 1} / {instance.frames}" if len(s.instances) == 1 else \
                    f"{label}  (frame {frame + 1} / {instance.frames})"
            if self.cine.playing:
                label += f"  ▶ {self.cine.fps:.3g} fps"
            bottom_left.append(label)
        bottom_right = []
        if self.image is not None:
            bottom_right.append(f"{self.image.columns} × {self.image.rows}")
            c = self.calibration()
            bottom_right.append(f"Pixel {c.pixel_size_text()} · {c.label}" if c.calibrated
                                else c.label[:1].upper() + c.label[1:])
            if self.loading:
                bottom_right.append("Loading full resolution…")
            marks = [m for m, on in (("Inverted", self.invert), (f"Rotated {self.rotation}°", self.rotation),
                                     ("Flipped H", self.flip_h), ("Flipped V", self.flip_v)) if on]
            if marks:
                bottom_right.append(" · ".join(marks))
        A = Qt.AlignmentFlag
        return {A.AlignTop | A.AlignLeft: top_left, A.AlignTop | A.AlignRight: top_right,
                A.AlignBottom | A.AlignLeft: bottom_left, A.AlignBottom | A.AlignRight: bottom_right}

    def _text(self, painter: QPainter, box: QRectF, align, lines, color=QColor(235, 235, 235)) -> None:
        """Outlined text in `box`; each block is drawn once into a small cached pixmap (nine drawText calls
        per block would otherwise be a good part of a repaint)."""
        text = "\n".join(lines)
        if not text:
            return
        dpr = self.devicePixelRatioF()
        key = (text, int(align), color.rgba(), painter.font().key(), dpr)
        cached = self._text_cache.get(key)
        if cached is None:
            flags = int(align) & ~int(Qt.AlignmentFlag.AlignVertical_Mask)  # lines within the block
            size = painter.fontMetrics().boundingRect(QRect(0, 0, 100000, 100000), flags, text).size()
            pixmap = QPixmap(math.ceil((size.width() + 4) * dpr), math.ceil((size.height() + 4) * dpr))
            pixmap.setDevicePixelRatio(dpr)
            pixmap.fill(Qt.GlobalColor.transparent)
            p = QPainter(pixmap)
            p.setFont(painter.font())
            inner = QRectF(2, 2, size.width(), size.height())
            p.setPen(QColor(0, 0, 0, 220))  # a dark outline keeps text readable over bone
            for dx, dy in ((1, 1), (-1, -1), (1, -1), (-1, 1), (1, 0), (-1, 0), (0, 1), (0, -1)):
                p.drawText(inner.translated(dx, dy), flags, text)
            p.setPen(color)
            p.drawText(inner, flags, text)
            p.end()
            cached = (pixmap, size)
            if len(self._text_cache) > 48:
                self._text_cache.clear()
            self._text_cache[key] = cached
        pixmap, size = cached
        A = Qt.AlignmentFlag
        x = box.left() if align & A.AlignLeft else box.right() - size.width() if align & A.AlignRight else \
            box.center().x() - size.width() / 2
        y = box.top() if align & A.AlignTop else box.bottom() - size.height() if align & A.AlignBottom else \
            box.center().y() - size.height() / 2
        painter.drawPixmap(QPointF(round(x) - 2, round(y) - 2), pixmap)
        self.overlay_boxes.append(QRectF(round(x), round(y), size.width(), size.height()))

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.fit_mode:
            self._fit()  # `zoom` stays true between a resize and the next paint
        self._place_document()
        self.changed.emit()

    def set_marked(self, marked: bool) -> None:
        if marked != self.marked:
            self.marked = marked
            self._place_document()
            self.update()

    # -- a series dragged from the library or the series strip ---------------------------------

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
        self.activated.emit()
        self.series_dropped.emit(*found)

    # -- tools --------------------------------------------------------------------------------

    def set_tool(self, tool: str | ViewportTool) -> None:
        """The left button's tool: a built-in drag ("window", "pan", "zoom") or a ViewportTool."""
        if tool is self.tool:
            return
        if isinstance(self.tool, ViewportTool):
            self.tool.deactivate(self)
        self.tool = tool
        self._drag = None
        self._tool_busy = False
        if isinstance(tool, ViewportTool):
            self.setMouseTracking(True)
            self.setCursor(tool.cursor)
            tool.activate(self)
        else:
            self.setMouseTracking(False)
            self.unsetCursor()
        self.update()

    def _tool_takes(self, event) -> bool:
        return (isinstance(self.tool, ViewportTool) and self.image is not None
                and not event.modifiers() & Qt.KeyboardModifier.ControlModifier)

    # -- mouse and keys -----------------------------------------------------------------------

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(self.tool, ViewportTool) \
                and self.tool.wants_key(self, event):
            event.accept()  # the key goes to keyPressEvent (and the tool), not to the window's shortcut
            return True
        return super().event(event)

    def hideEvent(self, event) -> None:  # noqa: N802
        self.cine.pause()  # out of the layout (or the window minimised): nothing to play to
        super().hideEvent(event)

    def focusInEvent(self, event) -> None:  # noqa: N802
        super().focusInEvent(event)
        self.activated.emit()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self.activated.emit()
        button = event.button()
        if button == Qt.MouseButton.LeftButton and self._tool_takes(event) and self.tool.press(self, event):
            self._tool_busy = True
            event.accept()
            return
        mode = None
        if button == Qt.MouseButton.LeftButton:
            builtin = self.tool if isinstance(self.tool, str) else "window"
            mode = "pan" if event.modifiers() & Qt.KeyboardModifier.ControlModifier else builtin
        elif button == Qt.MouseButton.MiddleButton:
            mode = "pan"
        elif button == Qt.MouseButton.RightButton:
            mode = "zoom"
        if isinstance(self.tool, ViewportTool) and mode == "window" and button == Qt.MouseButton.LeftButton:
            mode = None  # a tool is chosen: its clicks outside anything it draws do not window
        if mode and self.image is not None:
            self._drag = (mode, event.position(), self.current_window(), self.zoom, event.position())
            event.accept()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._tool_busy or (self._drag is None and self._tool_takes(event)):
            if self.tool.move(self, event):
                event.accept()
                return
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
        if self._tool_busy:
            self._tool_busy = False
            if self.tool.release(self, event):
                event.accept()
                return
        self._drag = None

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        if self._tool_takes(event) and self.tool.double_click(self, event):
            event.accept()
            return
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
        if isinstance(self.tool, ViewportTool) and self.tool.key(self, event):
            event.accept()
            return
        key = event.key()
        k = Qt.Key
        if key in (k.Key_Down, k.Key_Right, k.Key_PageDown):
            self.step(10 if key == k.Key_PageDown else 1)
        elif key in (k.Key_Up, k.Key_Left, k.Key_PageUp):
            self.step(-10 if key == k.Key_PageUp else -1)
        elif key == k.Key_Home:
            self.go_to(0)
        elif key == k.Key_End:
            self.go_to(self.count - 1)
        else:
            super().keyPressEvent(event)


def _voi_fits(voi: Voi, image: Image) -> bool:
    """Whether a window kept while paging still applies to the next image."""
    if isinstance(voi, Window):
        return True
    return voi.index < len(image.frame_attributes(0).get("VOILUTSequence") or [])

