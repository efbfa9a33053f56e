import os
import subprocess
import sys

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, QRectF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from app.dicom.display import Window
from tests.conftest import ROOT, SAMPLE
from tests.gui.conftest import drag, wheel

pytestmark = pytest.mark.gui


def pixels(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(widget.grab().toImage().Format.Format_RGB888)
    ptr = image.constBits()
    arr = np.frombuffer(ptr, dtype=np.uint8, count=image.sizeInBytes())
    return arr.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 3].copy()


def test_opens_on_the_sample_with_the_veterinary_patient(window):
    v = window.viewport
    assert [s.modality for s in window.series] == ["DX", "CT"]
    assert v.series.modality == "DX"
    corners = [line for lines in v.overlay_text().values() for line in lines]
    assert "Hendricks Bailey" in corners
    assert any("Canine" in c and "Golden Retriever" in c for c in corners)
    assert any("Hendricks Anna" in c for c in corners)
    assert any(c.startswith("W ") and " L " in c for c in corners)
    assert "Bailey" in window.windowTitle()
    assert pixels(v).std() > 10  # an image, not a blank viewport


def test_dragging_changes_window_level_and_the_image(window, qtbot):
    v = window.viewport
    before_voi = v.current_window()
    before = pixels(v)
    centre = QPointF(v.width() / 2, v.height() / 2)
    drag(v, centre, centre + QPointF(120, 0))  # right: wider
    wider = v.current_window()
    assert wider.width > before_voi.width
    assert wider.center == pytest.approx(before_voi.center)
    drag(v, centre, centre + QPointF(0, 80))  # down: higher level
    assert v.current_window().center > wider.center
    assert not np.array_equal(before, pixels(v))


def test_wheel_zooms_a_single_image_around_the_pointer(window):
    v = window.viewport
    zoom = v.zoom
    before = pixels(v)
    wheel(v, QPointF(v.width() / 3, v.height() / 3), 3)
    assert v.zoom == pytest.approx(zoom * 1.15 ** 3)
    assert not np.array_equal(before, pixels(v))
    wheel(v, QPointF(v.width() / 3, v.height() / 3), -3)
    assert v.zoom == pytest.approx(zoom)


def test_wheel_and_arrows_page_through_a_series(window, qtbot):
    ct = window.series[1]
    window.show_series(ct)
    v = window.viewport
    assert v.count == 24 and v.position == 0
    first = pixels(v)
    wheel(v, QPointF(50, 50), -1)
    assert v.position == 1
    qtbot.keyClick(v, Qt.Key.Key_Down)
    assert v.position == 2
    qtbot.keyClick(v, Qt.Key.Key_End)
    assert v.position == 23
    assert any("Image 24 / 24" in line for lines in v.overlay_text().values() for line in lines)
    assert not np.array_equal(first, pixels(v))
    qtbot.keyClick(v, Qt.Key.Key_Home)
    assert v.position == 0
    # Ctrl+wheel zooms a stack instead of paging it
    zoom = v.zoom
    wheel(v, QPointF(50, 50), 1, Qt.KeyboardModifier.ControlModifier)
    assert v.position == 0 and v.zoom > zoom


def test_ct_presets_and_paging_keep_the_window(window):
    window.show_series(window.series[1])
    v = window.viewport
    names = [p.name for p in v.presets()]
    assert names[:2] == ["Soft Tissue", "Lung"]
    assert {"Soft tissue", "Lung", "Bone", "Brain", "Auto", "Full range"} <= set(names)
    window.apply_preset(names.index("Bone"))
    assert v.voi == Window(400, 1800)
    v.step(5)
    assert v.voi == Window(400, 1800)


def test_rotate_flip_invert_fit_reset(window):
    v = window.viewport
    w, h = v.image_size()
    before = pixels(v)
    window.act_rot_r.trigger()
    assert v.rotation == 90
    r = v.transform().mapRect(QRectF(0, 0, w, h))
    assert r.width() == pytest.approx(h * v.zoom, rel=1e-6)  # the image now lies on its side
    window.act_flip_h.trigger()
    window.act_invert.trigger()
    assert v.flip_h and v.invert
    assert not np.array_equal(before, pixels(v))
    window.act_one.trigger()
    assert v.zoom == pytest.approx(1.0 / v.devicePixelRatioF())
    window.act_reset.trigger()
    assert (v.rotation, v.flip_h, v.invert, v.fit_mode) == (0, False, False, True)
    assert np.array_equal(before, pixels(v))


def test_pan_moves_the_image(window):
    v = window.viewport
    wheel(v, QPointF(v.width() / 2, v.height() / 2), 4)
    centre = QPointF(v.width() / 2, v.height() / 2)
    before = v.center
    drag(v, centre, centre + QPointF(100, 50), Qt.MouseButton.MiddleButton)
    moved = v.transform().map(before)
    assert moved.x() == pytest.approx(centre.x() + 100, abs=1)
    assert moved.y() == pytest.approx(centre.y() + 50, abs=1)


def test_dropping_files_opens_them(window, qtbot):
    from pydicom.data import get_testdata_file

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(get_testdata_file("MR_small.dcm"))])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    qtbot.waitUntil(lambda: window.viewport.series is not None and window.viewport.series.modality == "MR", timeout=5000)
    assert len(window.series) == 3


def test_a_broken_file_is_a_message_not_a_crash(window, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[2]))
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"<Error><Code>AccessDenied</Code></Error>")
    job = window.open_paths([str(bad)])
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    assert "broken.dcm" in shown[0] and "XML" in shown[0]
    assert window.viewport.series.modality == "DX"  # what was open stays open


def test_the_app_starts_and_shows_the_sample(tmp_path):
    """The real start-up path, as the OS runs it: a process that shows the image and quits."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", LIGHTBOX_QUIT_AFTER_SHOWN="1", LIGHTBOX_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "config" / "first-run-done").exists()  # the first start opened the sample


def test_a_large_jpeg2000_decodes_off_the_gui_thread_with_a_preview_first(window, qtbot, tmp_path):
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    from app.dicom.display import render
    from app.dicom.pixels import Image

    ds = pydicom.dcmread(SAMPLE / "dx" / "thorax_lateral.dcm")
    arr = ds.pixel_array
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.compress(JPEG2000Lossless, arr, generate_instance_uid=False)
    path = tmp_path / "j2k.dcm"
    ds.save_as(path)

    window.resize(700, 500)  # a small viewport: a reduced-resolution preview is enough to fill it
    previews = []
    v = window.viewport
    v.changed.connect(lambda: previews.append(v.renderer.is_preview) if v.renderer else None)
    job = window.open_paths([str(path)])
    qtbot.waitUntil(lambda: job._finished.is_set() and v.series is not None and v.series.uid == ds.SeriesInstanceUID,
                    timeout=10000)
    qtbot.waitUntil(lambda: v.renderer is not None and not v.renderer.is_preview, timeout=20000)
    assert True in previews  # the preview came first
    assert not v.loading
    full = render(Image(pydicom.dcmread(path)), 0, v.voi)
    v.renderer.set_region((0, 0, v.image.columns, v.image.rows), v.image.columns, v.image.rows)
    assert np.array_equal(v.renderer.render(v.voi), full)


def test_the_presets_menu_groups_presets_by_where_they_come_from(window):
    window.show_series(window.series[1])
    window._fill_presets()
    actions = window.preset_menu.actions()
    sections = [a.text() for a in actions if a.isSeparator()]
    assert sections == ["From the image", "For this modality", "Automatic"]
    entries = [a.text().split("\t")[0] for a in actions if not a.isSeparator()]
    assert entries == [p.name for p in window.viewport.presets()]
    bone = next(a for a in actions if a.text().startswith("Bone"))
    bone.trigger()
    assert window.viewport.voi == Window(400, 1800)


def test_zooming_samples_fast_then_smoothly_once_still(window, qtbot):
    v = window.viewport
    v.resize(600, 450)  # fit shrinks the 1800-pixel radiograph by more than 2
    qtbot.waitUntil(lambda: v._qimage_key is not None and v._qimage_key[4] is True, timeout=3000)
    wheel(v, QPointF(300, 200), -2)  # zoom out a little more
    v.repaint()
    assert v._qimage_key[4] is False  # while the user moves: nearest samples
    qtbot.waitUntil(lambda: v._qimage_key[4] is True, timeout=3000)  # then averaged


def test_paging_keeps_the_zoom_pan_and_window_of_the_stack(window):
    window.show_series(window.series[1])
    v = window.viewport
    v.set_zoom(v.zoom * 2, QPointF(40, 40))
    v.set_window(100, 300)
    zoom, center = v.zoom, v.center
    for _ in range(3):
        v.step(1)
    assert (v.position, v.zoom, v.center, v.voi) == (3, zoom, center, Window(100, 300))
    assert not v.fit_mode


def test_a_tool_gets_the_left_button_and_a_layer_paints_over_the_image(window, qtbot):
    """The hooks measurement tools build on: events in widget coordinates, mapped to image pixels, keys the
    window's shortcuts would take, and layers drawn over the image."""
    from PySide6.QtGui import QColor

    from app.ui.viewer.tools import Layer, ViewportTool

    class Line(ViewportTool):
        def __init__(self):
            self.points, self.keys = [], []

        def press(self, viewport, event):
            self.points = [viewport.image_point(event.position())]
            return True

        def move(self, viewport, event):
            if self.points:
                self.points[1:] = [viewport.image_point(event.position())]
            return bool(self.points)

        def release(self, viewport, event):
            return True

        def wants_key(self, viewport, event):
            return event.key() == Qt.Key.Key_Escape

        def key(self, viewport, event):
            self.keys.append(event.key())
            return True

    class Mark(Layer):
        def paint(self, viewport, painter):
            painter.fillRect(QRectF(viewport.widget_point(QPointF(100, 100)), viewport.widget_point(QPointF(300, 300))),
                             QColor(255, 0, 0))

    v = window.viewport
    tool = Line()
    v.set_tool(tool)
    before = v.current_window()
    a, b = v.widget_point(QPointF(200, 300)), v.widget_point(QPointF(800, 700))
    drag(v, a, b)
    assert v.current_window() == before  # the tool had the drag, not window/level
    assert tool.points[0].x() == pytest.approx(200, abs=0.5) and tool.points[1].y() == pytest.approx(700, abs=0.5)
    drag(v, a, b, Qt.MouseButton.MiddleButton)  # the other buttons still pan
    assert not v.fit_mode
    v.setFocus()
    qtbot.keyClick(v, Qt.Key.Key_Escape)  # Esc is Reset for the window, but the tool asked for it
    assert tool.keys == [Qt.Key.Key_Escape] and not v.fit_mode
    v.layers.append(Mark())
    v.repaint()
    centre = v.widget_point(QPointF(200, 200))
    x, y = int(centre.x()), int(centre.y())
    assert list(pixels(v)[y, 3 * x: 3 * x + 3]) == [255, 0, 0]
    window.set_tool("window")
    assert v.tool == "window"
