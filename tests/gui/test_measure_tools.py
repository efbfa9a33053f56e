"""The measurement tools in the window: drawing with the mouse, calibration, editing, undo, persistence, exports."""

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from app.measure.tools import roi_mask
from tests.gui.conftest import drag
from tests.gui.test_viewer import pixels
from tests.unit.helpers import image_dataset, save

pytestmark = pytest.mark.gui


def send(widget, kind, pos: QPointF, button=Qt.MouseButton.LeftButton):
    buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else button
    event = QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def click(v, image_point, double=False):
    """A left click (or double-click) on an image point of viewport `v`."""
    pos = v.widget_point(QPointF(*image_point))
    send(v, QEvent.Type.MouseButtonPress, pos)
    send(v, QEvent.Type.MouseButtonRelease, pos)
    if double:
        send(v, QEvent.Type.MouseButtonDblClick, pos)
        send(v, QEvent.Type.MouseButtonRelease, pos)


def draw(v, a, b):
    """A press-drag-release from image point `a` to `b`."""
    drag(v, v.widget_point(QPointF(*a)), v.widget_point(QPointF(*b)))


def labels(v) -> list[str]:
    """The measurement labels drawn in `v` at a fresh paint."""
    v.grab()
    layer = next(layer for layer in v.layers if hasattr(layer, "drawn"))
    return [d.text for d in layer.drawn[id(v)]]


def marks(window, v=None):
    v = v or window.viewport
    return window.measurements.on(v.instance.sop_instance_uid, v.frame)


def dx_file(path, spacing=None, sphere=None, size=500):
    """A radiograph: a gradient with, optionally, a bright disc (a calibration sphere: centre x, y and diameter)."""
    y, x = np.mgrid[0:size, 0:size]
    arr = (x + y).astype(np.uint16) * 2
    if sphere:
        cx, cy, d = sphere
        arr[(x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= (d / 2) ** 2] = 4000
    attrs = {"PixelSpacing": [spacing, spacing]} if spacing else {}
    ds = image_dataset(arr, modality="DX", PatientSpeciesDescription="Canine", **attrs)
    save(ds, path)
    return path


@pytest.fixture
def open_window(qtbot):
    """A main window showing files opened from disk (not imported)."""
    from app.ui.main_window import MainWindow

    def make(*paths):
        win = MainWindow()
        qtbot.addWidget(win)
        win.resize(1200, 800)
        win.show()
        qtbot.waitExposed(win)
        job = win.open_paths([str(p) for p in paths])
        qtbot.waitUntil(lambda: job._finished.is_set() and win.viewport.image is not None, timeout=10000)
        return win

    return make


@pytest.fixture
def opened_in_library(qtbot, library_window, sample_in_library):
    """The library's sample study open in the viewer, on its radiograph."""
    assert library_window.open_study(sample_in_library)
    qtbot.waitUntil(lambda: library_window.viewport.image is not None)
    assert library_window.viewport.series.modality == "DX"
    return library_window


def test_a_line_over_a_calibrated_radiograph_reads_millimetres(open_window, tmp_path):
    window = open_window(dx_file(tmp_path / "dx.dcm", spacing=0.2))
    v = window.viewport
    window.set_tool("length")
    assert "Length: click the start" in window.statusBar().currentMessage()
    draw(v, (100, 250), (200, 250))  # 100 pixels of 0.2 mm
    [m] = marks(window)
    assert m.kind == "length" and m.points[0] == pytest.approx((100, 250), abs=0.01)
    assert labels(v) == ["20.0 mm  [PixelSpacing]"]
    assert "20.0 mm" in window.statusBar().currentMessage()
    assert not window.measurements.layer.uncalibrated[id(v)]
    corners = [line for lines in v.overlay_text().values() for line in lines]
    assert "Pixel 0.2 mm · PixelSpacing" in corners
    # points can also be placed by clicking, one after the other
    click(v, (100, 100))
    assert len(marks(window)) == 1 and "click the end" in window.statusBar().currentMessage()
    click(v, (100, 200))
    assert labels(v)[1] == "20.0 mm  [PixelSpacing]"


def test_over_an_uncalibrated_image_values_are_in_pixels_and_marked(open_window, tmp_path):
    window = open_window(dx_file(tmp_path / "dx.dcm"))
    v = window.viewport
    window.set_tool("length")
    draw(v, (100, 250), (200, 250))
    assert labels(v) == ["100.0 px  [not calibrated (pixels)]"]
    assert window.measurements.layer.uncalibrated[id(v)]
    corners = [line for lines in v.overlay_text().values() for line in lines]
    assert "Not calibrated (pixels)" in corners
    # the image is not in the library: said once, the measurement kept in memory
    window.set_tool("length")
    draw(v, (100, 300), (200, 300))
    assert len(marks(window)) == 2


def test_a_circle_across_a_known_sphere_calibrates_and_measurements_follow(open_window, tmp_path, monkeypatch):
    # a 25 mm sphere 125 pixels across: 0.2 mm per pixel; the file says nothing
    window = open_window(dx_file(tmp_path / "dx.dcm", sphere=(300.0, 300.0, 125)))
    v = window.viewport
    window.set_tool("length")
    draw(v, (50, 100), (150, 100))
    assert labels(v) == ["100.0 px  [not calibrated (pixels)]"]
    asked = []

    def ask(viewport, shape, file, current):
        asked.append((shape, file.calibrated))
        return 25.0, "series"

    monkeypatch.setattr(window.measure_tool, "ask_calibration", ask)
    window.set_tool("calibrate")
    assert "25 mm" in window.statusBar().currentMessage()
    draw(v, (237.5, 237.5), (362.5, 362.5))  # the sphere's bounding box, corner to corner
    assert asked == [("circle", False)]
    assert labels(v) == ["20.0 mm  [manual: 25 mm sphere]"]  # recomputed with the new calibration
    assert not window.measurements.layer.uncalibrated[id(v)]
    corners = [line for lines in v.overlay_text().values() for line in lines]
    assert "Pixel 0.2 mm · manual: 25 mm sphere" in corners
    window.act_undo.trigger()
    assert labels(v) == ["100.0 px  [not calibrated (pixels)]"]
    window.act_redo.trigger()
    assert labels(v) == ["20.0 mm  [manual: 25 mm sphere]"]
    window.act_remove_calibration.trigger()
    assert labels(v) == ["100.0 px  [not calibrated (pixels)]"]


def test_a_line_of_known_length_overrides_the_files_spacing_with_a_warning(opened_in_library, monkeypatch):
    window = opened_in_library
    v = window.viewport
    window.set_tool("length")
    draw(v, (300, 900), (900, 900))
    assert labels(v) == ["90.0 mm  [PixelSpacing, geometry]"]  # 0.15 mm per pixel
    monkeypatch.setattr(window.measure_tool, "ask_calibration", lambda *args: (60.0, "study"))
    window.set_tool("calibrate_line")
    click(v, (100, 100))
    click(v, (400, 100))  # 300 pixels are 60 mm: 0.2 mm per pixel
    assert labels(v) == ["120.0 mm  [manual: 60 mm line]"]
    message = window.statusBar().currentMessage()
    assert "overrides the file's spacing" in message and "0.15 mm" in message
    library = window.browser.library
    assert library.manual_calibration("study", v.series.study_uid).column_mm == pytest.approx(0.2)
    window.set_tool("select")
    click(v, (600, 900))  # selected: the override is said beside it
    assert any("overrides" in text for text in labels(v))


def test_measurements_are_kept_in_the_library_and_come_back(qtbot, opened_in_library, sample_in_library):
    from app.ui.main_window import MainWindow

    window = opened_in_library
    v = window.viewport
    sop = v.instance.sop_instance_uid
    window.set_tool("length")
    draw(v, (300, 900), (900, 900))
    window.set_tool("angle")
    for point in ((1000, 300), (1200, 600), (1500, 400)):
        click(v, point)
    library = window.browser.library
    assert [m.kind for m in library.measurements(sop)] == ["length", "angle"]
    # closing and reopening the study
    window.grid.clear()
    assert window.viewport.image is None
    assert window.open_study(sample_in_library)
    qtbot.waitUntil(lambda: window.viewport.image is not None)
    texts = labels(window.viewport)
    assert texts[0] == "90.0 mm  [PixelSpacing, geometry]" and texts[1].endswith("°")
    # and in a new window
    window.close()
    other = MainWindow()
    qtbot.addWidget(other)
    other.resize(1000, 700)
    other.show()
    qtbot.waitExposed(other)
    assert other.open_study(sample_in_library)
    qtbot.waitUntil(lambda: other.viewport.image is not None)
    assert labels(other.viewport) == texts


def test_select_drag_delete_and_undo_redo(qtbot, opened_in_library):
    window = opened_in_library
    v = window.viewport
    library = window.browser.library
    sop = v.instance.sop_instance_uid
    window.set_tool("length")
    draw(v, (300, 900), (900, 900))
    [m] = library.measurements(sop)
    # a handle: drag the end point
    window.set_tool("select")
    draw(v, (900, 900), (900, 1100))
    [moved] = library.measurements(sop)
    assert moved.id == m.id and moved.points[1] == pytest.approx((900, 1100), abs=0.01)
    # the line itself: drag the whole
    draw(v, (600, 1000), (600, 800))
    [whole] = library.measurements(sop)
    assert whole.points == (pytest.approx((300, 700), abs=0.01), pytest.approx((900, 900), abs=0.01))
    assert window.measurements.selected == (sop, m.id)
    v.setFocus()
    qtbot.keyClick(v, Qt.Key.Key_Delete)
    assert library.measurements(sop) == [] and labels(v) == []
    qtbot.keyClick(v, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the deletion
    assert library.measurements(sop) == [whole]
    window.act_undo.trigger()  # the move
    window.act_undo.trigger()  # the handle
    assert library.measurements(sop) == [m]
    window.act_undo.trigger()  # the addition
    assert library.measurements(sop) == [] and not window.act_undo.isEnabled()
    for _ in range(3):
        qtbot.keyClick(v, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert library.measurements(sop) == [whole]
    # Esc cancels what is being drawn; a click on nothing deselects
    window.set_tool("length")
    click(v, (100, 100))
    assert window.measure_tool.drawing is not None
    qtbot.keyClick(v, Qt.Key.Key_Escape)
    assert window.measure_tool.drawing is None and v.fit_mode
    assert len(library.measurements(sop)) == 1


def test_an_roi_on_ct_shows_hounsfield_units(window):
    window.show_series(window.series[1])
    v = window.viewport
    assert v.series.modality == "CT"
    window.set_tool("ellipse")
    draw(v, (100, 60), (160, 110))
    [m] = marks(window)
    text = labels(v)[0]
    assert "HU" in text and "Mean" in text and "cm²" in text and "[PixelSpacing]" in text
    values = v.image.modality(v.image.frame(v.frame), v.frame)
    mean = values[roi_mask(m, values.shape)].mean()
    assert window.measurements.result_in(v, m).value("mean") == pytest.approx(mean)
    assert f"Mean {mean:.1f} HU".replace("-", "−") in text
    window.set_tool("rectangle")
    draw(v, (40, 140), (90, 180))
    assert "HU" in labels(v)[1]


def test_the_veterinary_tools_are_placed_and_show_their_reference_ranges(window, qtbot):
    v = window.viewport
    window.set_tool("vhs")
    assert window.statusBar().currentMessage().startswith("VHS: click the long axis: carina")
    for point in ((820, 610), (1060, 1000), (800, 850), (1100, 700)):  # long axis, short axis
        click(v, point)
    assert window.statusBar().currentMessage().startswith("VHS: click the cranial edge of T4")
    for x in (700, 790, 880, 970, 1060, 1150, 1240):
        click(v, (x, 430))
    assert "double-click / Enter to finish" in window.statusBar().currentMessage()
    v.setFocus()
    qtbot.keyClick(v, Qt.Key.Key_Return)
    [vhs] = marks(window)
    assert vhs.kind == "vhs" and len(vhs.points) == 11
    text = labels(v)[0]
    assert text.startswith("VHS ") and " v" in text and "8.5–10.6" in text and "Buchanan" in text

    window.set_tool("norberg")
    for point in ((500, 1000), (560, 900), (800, 1000), (740, 900)):
        click(v, point)
    text = labels(v)[1]
    assert "Left" in text and "Right" in text and "105°" in text and "FCI" in text

    window.set_tool("tpa")
    for point in ((300, 300), (400, 330), (350, 320), (360, 700)):
        click(v, point)
    text = labels(v)[2]
    assert text.startswith("TPA ") and "21.49" in text and "VCOT Open 2025" in text
    assert [m.kind for m in marks(window)] == ["vhs", "norberg", "tpa"]


def test_a_polyline_finishes_with_a_double_click_and_text_asks_for_its_words(window, monkeypatch):
    v = window.viewport
    window.set_tool("polyline")
    click(v, (100, 100))
    click(v, (200, 100))
    click(v, (200, 200), double=True)
    [line] = marks(window)
    assert line.kind == "polyline" and len(line.points) == 3
    assert labels(v)[0].startswith("Length 30.0 mm")  # 200 px of 0.15 mm
    monkeypatch.setattr(window.measure_tool, "ask_text", lambda viewport, title, text="": "Left kidney")
    window.set_tool("text")
    click(v, (600, 600))
    assert labels(v)[1] == "Left kidney"
    monkeypatch.setattr(window.measure_tool, "ask_text", lambda viewport, title, text="": "Right kidney")
    click(v, (150, 100), double=True)  # on the polyline: its note
    assert labels(v)[0].startswith("Right kidney\nLength 30.0 mm")


def test_rotating_and_flipping_do_not_change_a_length(window):
    v = window.viewport
    window.set_tool("length")
    draw(v, (300, 900), (900, 900))
    before = labels(v)
    window.act_rot_r.trigger()
    window.act_flip_h.trigger()
    assert labels(v) == before
    mid = v.widget_point(QPointF(600, 900))
    assert list(pixels(v)[int(mid.y()), 3 * int(mid.x()): 3 * int(mid.x()) + 3]) == [255, 214, 0]
    draw(v, (300, 1000), (900, 1000))  # drawn on the turned image: the same 600 pixels
    assert labels(v)[1] == before[0]
    window.act_flip_v.trigger()
    v.set_zoom(v.zoom * 3)
    assert labels(v)[:2] == before * 2


def test_the_tools_have_shortcuts_in_the_menus(window, qtbot):
    dialog = window.shortcuts_dialog()
    qtbot.addWidget(dialog)
    rows = dialog.rows()
    for name, keys in (("Length", "L"), ("Angle", "A"), ("Ellipse ROI", "E"), ("Rectangle ROI", "R"), ("Text", "T"),
                       ("VHS", "Shift+V"), ("Undo", "Ctrl+Z"), ("Redo", "Ctrl+Shift+Z or Ctrl+Y")):
        assert ("Measure" if name not in ("Undo", "Redo") else "Edit", name, keys) in rows
    assert any(section.startswith("In a viewport") and "Enter" in keys for section, _w, keys in rows)
    v = window.viewport
    v.setFocus()
    qtbot.keyClick(v, Qt.Key.Key_E)
    assert window.act_tool["ellipse"].isChecked() and v.tool is window.measure_tool
    qtbot.keyClick(v, Qt.Key.Key_W)
    assert v.tool == "window"


def test_export_measurements_as_csv_and_drawn_into_png(qtbot, opened_in_library, tmp_path):
    import csv

    from PIL import Image as PILImage

    from app.ui.import_export import ExportDialog, ExportOptions

    window = opened_in_library
    v = window.viewport
    window.set_tool("length")
    draw(v, (300, 900), (900, 900))
    job = window.export_measurements(tmp_path / "m.csv")
    qtbot.waitUntil(lambda: job._finished.is_set() and not window.busy, timeout=10000)
    rows = list(csv.DictReader((tmp_path / "m.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert [(r["kind"], r["value"], r["unit"]) for r in rows] == [("length", "90.0", "mm")]
    assert "Exported 1 measurement" in window.statusBar().currentMessage()

    dialog = ExportDialog([window.browser.library.study(v.series.study_uid)], window)
    qtbot.addWidget(dialog)
    dialog.set_format("png")
    assert dialog.measurements.isVisibleTo(dialog) and dialog.options().measurements
    dialog.set_format("dicom")
    assert not dialog.measurements.isVisibleTo(dialog) and not dialog.options().measurements
    job = window.export_studies([v.series.study_uid], ExportOptions("png", tmp_path / "png", measurements=True))
    qtbot.waitUntil(lambda: job._finished.is_set() and not window.busy, timeout=20000)
    [picture] = [p for p in (tmp_path / "png").rglob("*.png") if "DX" in str(p) or "dx" in str(p).lower()] or \
        sorted((tmp_path / "png").rglob("*.png"))[:1]
    arr = np.asarray(PILImage.open(picture).convert("RGB"))
    assert tuple(arr[900, 600]) == (255, 214, 0)


def test_an_image_outside_the_library_keeps_its_measurements_in_memory(open_window, tmp_path, qtbot):
    window = open_window(dx_file(tmp_path / "dx.dcm", spacing=0.2))
    v = window.viewport
    window.set_tool("length")
    draw(v, (100, 250), (200, 250))
    assert "not in the library" in window.statusBar().currentMessage()
    window.set_tool("length")
    draw(v, (100, 300), (200, 300))
    assert "not in the library" not in window.statusBar().currentMessage()  # said once
    window.act_undo.trigger()
    assert len(marks(window)) == 1
    # imported later: what was drawn goes into the library with it
    from app.library import Library, import_paths

    assert not import_paths([str(tmp_path / "dx.dcm")]).failed
    window.forget_measurements()
    with Library() as library:
        assert [m.kind for m in library.measurements(v.instance.sop_instance_uid)] == ["length"]


def test_the_calibration_dialog_asks_size_and_scope_and_warns_before_overriding(qtbot):
    from app.measure.calibration import NOT_CALIBRATED, Calibration
    from app.ui.viewer.measure_tool import CalibrationDialog

    file = Calibration(0.15, 0.15, "PixelSpacing", "PixelSpacing")
    dialog = CalibrationDialog("circle", file, file)
    qtbot.addWidget(dialog)
    assert dialog.answer() == (25.0, "image")
    assert not dialog.warning.isHidden() and "overrides" in dialog.warning.text()
    dialog.scopes.button(2).setChecked(True)
    dialog.size.setValue(30.0)
    assert dialog.answer() == (30.0, "study")
    plain = CalibrationDialog("line", NOT_CALIBRATED, NOT_CALIBRATED)
    qtbot.addWidget(plain)
    assert plain.warning.isHidden() and plain.answer()[1] == "image"
