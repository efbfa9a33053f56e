"""The viewer's grid: layouts, the active viewport, drops into any viewport, synchronisation, cine, documents,
and the shortcuts dialog."""

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QDropEvent

from app.dicom.display import Window
from app.ui.viewer.viewport import series_mime_data
from tests.gui.conftest import copy_study, wheel

pytestmark = pytest.mark.gui
WAIT = 10000


def pixels(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(widget.grab().toImage().Format.Format_RGB888)
    arr = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.sizeInBytes())
    return arr.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 3].copy()


def drop(widget, mime):
    event = QDropEvent(QPointF(widget.rect().center()), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    event.mime = mime  # kept alive with the event
    widget.dropEvent(event)
    return event


def open_and_wait(qtbot, window, paths):
    job = window.open_paths([str(p) for p in paths])
    qtbot.waitUntil(lambda: job._finished.is_set() and job not in window._shown_jobs, timeout=WAIT)  # shown too
    return job


def us_clip(path, frames: int = 30, frame_time: float | None = 40.0, **rate):
    """A small multi-frame RGB ultrasound clip: each frame a bar in another place."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    arr = np.zeros((frames, 48, 64, 3), dtype=np.uint8)
    for n in range(frames):
        arr[n, :, (2 * n) % 64, :] = 255
        arr[n, 10:20, 10:20, 1] = (8 * n) % 256
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality, ds.StudyDate = "Cine^Bella", "US1", "US", "20261103"
    ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = "Heart loop", 1, 1
    ds.Rows, ds.Columns, ds.NumberOfFrames = 48, 64, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if frame_time is not None:
        ds.FrameTime = frame_time
        ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    for keyword, value in rate.items():
        setattr(ds, keyword, value)
    ds.PixelData = arr.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def tiny_pdf() -> bytes:
    """A one-page PDF with a line of text, written by hand (objects, cross-reference table, trailer)."""
    stream = b"BT /F1 18 Tf 20 100 Td (Lightbox report) Tj ET"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def pdf_instance(path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import EncapsulatedPDFStorage, ExplicitVRLittleEndian, generate_uid

    data = tiny_pdf()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality, ds.StudyDate = "Hendricks^Bailey", "PDF1", "DOC", "20261102"
    ds.SeriesDescription, ds.DocumentTitle, ds.InstanceNumber = "Referral letter", "Referral letter", 1
    ds.BurnedInAnnotation = "YES"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(data)
    ds.EncapsulatedDocument = data + (b"\0" if len(data) % 2 else b"")
    ds.save_as(path, enforce_file_format=True)
    return data


# -- layouts and the active viewport ----------------------------------------------------------------------

def test_2x2_with_four_dropped_series_shows_four_images(window, qtbot, tmp_path):
    copy_study(tmp_path / "second", study_date="20250601")
    open_and_wait(qtbot, window, [tmp_path / "second"])
    assert len(window.series) == 4 and len({s.study_uid for s in window.series}) == 2
    window.act_layout["2x2"].trigger()
    grid = window.grid
    assert grid.layout_name == "2x2" and len(grid.visible) == 4
    assert all(v.isVisible() for v in grid.visible)
    for v, series in zip(grid.visible, window.series):
        event = drop(v, series_mime_data(series.uid, series.study_uid))
        assert event.isAccepted()
        assert window.viewport is v  # the drop made it the active one
    for v, series in zip(grid.visible, window.series):
        qtbot.waitUntil(lambda v=v: v.image is not None, timeout=WAIT)
        assert v.series.uid == series.uid
        assert pixels(v).std() > 10  # an image in each
    # Two studies open: the series strip groups them under a heading each.
    assert window.strip.count() == 6 and len(window.strip.series) == 4
    rects = [v.geometry() for v in grid.visible]
    assert len({(r.x(), r.y()) for r in rects}) == 4  # four places, not stacked


def test_the_series_strip_drags_into_a_viewport_and_shows_in_the_active_one(window, qtbot):
    window.act_layout["1x2"].trigger()
    left, right = window.grid.visible
    ct = window.series[1]
    item = window.strip.item_of(ct.uid)
    drop(right, window.strip.mimeData([item]))
    qtbot.waitUntil(lambda: right.image is not None, timeout=WAIT)
    assert right.series.uid == ct.uid and left.series.modality == "DX"
    assert window.viewport is right and right.marked and not left.marked
    # a click in the strip shows the series in the active viewport
    window.grid.set_active(left)
    window.strip.setCurrentItem(window.strip.item_of(ct.uid))
    assert left.series.uid == ct.uid


def test_the_active_viewport_follows_clicks_and_the_toolbar_acts_on_it(window, qtbot):
    window.act_layout["1x2"].trigger()
    left, right = window.grid.visible
    window.show_series(window.series[1], right)
    qtbot.waitUntil(lambda: right.image is not None, timeout=WAIT)
    qtbot.mouseClick(left, Qt.MouseButton.LeftButton, pos=left.rect().center())
    assert window.viewport is left and left.marked and not right.marked
    window.act_rot_r.trigger()
    assert left.rotation == 90 and right.rotation == 0
    qtbot.mouseClick(right, Qt.MouseButton.LeftButton, pos=right.rect().center())
    assert window.viewport is right and right.marked and not left.marked
    window.act_invert.trigger()
    window.apply_preset([p.name for p in right.presets()].index("Bone"))
    assert right.invert and not left.invert and right.voi == Window(400, 1800)
    assert left.voi != Window(400, 1800)
    qtbot.keyClick(right, Qt.Key.Key_Down)
    assert right.position == 1 and left.position == 0
    assert window.strip.currentItem().data(Qt.ItemDataRole.UserRole) == right.series.uid  # the strip follows
    window.act_next_viewport.trigger()
    assert window.viewport is left


def test_switching_layouts_keeps_what_each_viewport_shows(window, qtbot):
    window.act_layout["2x2"].trigger()
    a, b, c, d = window.grid.visible
    window.show_series(window.series[1], b)
    qtbot.waitUntil(lambda: b.image is not None, timeout=WAIT)
    b.step(5)
    b.set_window(50, 350)
    b.set_zoom(b.zoom * 2)
    state = (b.series.uid, b.position, b.voi, b.zoom)
    window.act_layout["1x1"].trigger()
    assert window.grid.visible == [b] and window.viewport is b  # the active one stays in view
    assert not b.marked  # one viewport: nothing to tell apart
    window.act_layout["2x2"].trigger()
    assert b in window.grid.visible and a in window.grid.visible and a.series.modality == "DX"
    assert (b.series.uid, b.position, b.voi, b.zoom) == state


def test_a_study_dragged_from_the_library_fills_a_viewport(library_window, qtbot, sample_in_library):
    win = library_window
    win.set_layout("1x2")
    right = win.grid.visible[1]
    model = win.browser.model
    mime = model.mimeData([model.index(0, 0)])
    assert mime is not None
    assert drop(right, mime).isAccepted()
    qtbot.waitUntil(lambda: right.image is not None, timeout=WAIT)
    assert right.series.study_uid == sample_in_library and right.series.modality == "DX"
    assert len(win.series) == 2 and win.viewport is right


# -- synchronisation ------------------------------------------------------------------------------------

def test_synchronised_window_level_paging_and_zoom(window, qtbot, tmp_path):
    copy_study(tmp_path / "prior", study_date="20250601", modalities={"CT"})
    open_and_wait(qtbot, window, [tmp_path / "prior"])
    current_ct, prior_ct = window.series[1], window.series[2]
    window.set_layout("1x2")
    left, right = window.grid.visible
    window.show_series(current_ct, left)
    window.show_series(prior_ct, right)
    qtbot.waitUntil(lambda: left.image is not None and right.image is not None, timeout=WAIT)
    window.grid.set_active(left)

    # Off: each its own.
    left.set_window(45, 410)
    assert right.voi != Window(45, 410)
    wheel(left, QPointF(50, 50), -1)
    assert (left.position, right.position) == (1, 0)

    window.act_sync.trigger()
    assert window.grid.synchronised
    assert right.voi == Window(45, 410)  # took the active viewport's window at once
    assert right.position == 1  # and its slice: the same frame of reference
    left.set_window(-600, 1500)
    assert right.voi == Window(-600, 1500)
    qtbot.keyClick(left, Qt.Key.Key_Down)
    qtbot.keyClick(left, Qt.Key.Key_Down)
    wheel(left, QPointF(50, 50), -1)
    assert left.position == 4 and right.position == 4
    assert right.series.slice_position(right.position) == left.series.slice_position(left.position)
    left.set_zoom(left.fit_zoom() * 2)
    assert right.view_state()[1] == pytest.approx(2.0, rel=1e-6)
    # the other way round too
    qtbot.keyClick(right, Qt.Key.Key_Up)
    assert left.position == 3

    # Without slice positions in common: by index, keeping the distance between them.
    window.act_sync.trigger()
    right.show_position(10)
    window.grid.set_active(left)
    for inst in prior_ct.instances:
        inst.position = None
    window.act_sync_kind["window"].setChecked(False)
    window.act_sync.trigger()
    left.set_window(10, 100)
    assert right.voi == Window(-600, 1500)  # window/level no longer follows
    qtbot.keyClick(left, Qt.Key.Key_Down)
    assert (left.position, right.position) == (4, 11)


def test_window_level_sync_leaves_other_modalities_alone(window, qtbot):
    window.set_layout("1x2")
    left, right = window.grid.visible
    window.show_series(window.series[1], right)  # CT beside the DX
    qtbot.waitUntil(lambda: right.image is not None, timeout=WAIT)
    window.grid.set_active(left)
    window.act_sync.trigger()
    before = right.voi
    left.set_window(1000, 500)
    assert right.voi == before


# -- cine -------------------------------------------------------------------------------------------------

def test_cine_plays_a_multiframe_clip_at_its_frame_time(window, qtbot, tmp_path):
    us_clip(tmp_path / "us.dcm", frames=40, frame_time=40.0)  # 25 frames per second
    open_and_wait(qtbot, window, [tmp_path / "us.dcm"])
    v = window.viewport
    qtbot.waitUntil(lambda: v.series.modality == "US" and v.image is not None, timeout=WAIT)
    assert v.count == 40 and window.act_play.isEnabled()
    player = v.cine
    assert player.rate().fps == pytest.approx(25.0) and player.rate().source == "Frame Time"
    window.act_play.trigger()
    assert player.playing and window.act_play.text() == "Pause"
    qtbot.wait(800)
    shown = v.position
    window.act_play.trigger()
    assert not player.playing
    assert 12 <= shown <= 26, shown  # 0.8 s at 25 fps: 20 frames (with room for a slow machine)
    assert any("fps" in line or "Frame" in line for lines in v.overlay_text().values() for line in lines)

    # double speed, no loop: runs to the last frame and stops there
    v.show_position(30)
    window.act_faster.trigger()
    assert player.speed == 2.0 and window.speed_button.text() == "2×"
    window.act_loop.trigger()
    assert not player.loop
    window.act_play.trigger()
    qtbot.waitUntil(lambda: not player.playing, timeout=3000)
    assert v.position == 39
    # paging by hand stops it
    window.act_loop.trigger()
    window.act_play.trigger()
    qtbot.keyClick(v, Qt.Key.Key_Home)
    assert not player.playing and v.position == 0


def test_cine_rate_comes_from_cine_rate_or_defaults_to_ten(window, qtbot, tmp_path):
    us_clip(tmp_path / "a.dcm", frames=5, frame_time=None, CineRate=30)
    open_and_wait(qtbot, window, [tmp_path / "a.dcm"])
    qtbot.waitUntil(lambda: window.viewport.series.modality == "US" and window.viewport.image is not None,
                    timeout=WAIT)
    assert window.viewport.cine.rate().fps == 30
    window.show_series(window.series[1])  # the CT stack: 10 images a second
    assert window.viewport.cine.rate().fps == 10 and window.act_play.isEnabled()
    window.show_series(window.series[0])  # one radiograph: nothing to play
    assert not window.act_play.isEnabled()


# -- documents --------------------------------------------------------------------------------------------

def test_an_encapsulated_pdf_opens_in_a_viewport(window, qtbot, tmp_path):
    from app.ui.viewer.document import NO_QTPDF, pdf_available

    data = pdf_instance(tmp_path / "letter.dcm")
    open_and_wait(qtbot, window, [tmp_path / "letter.dcm"])
    v = window.viewport
    qtbot.waitUntil(lambda: v.document is not None, timeout=WAIT)
    assert v.series.is_document and v.image is None and v.error is None
    view = v.document_view
    assert view.isVisible() and view.data == data
    assert "Referral letter" in view.title.text()
    if pdf_available():
        assert view.page_count == 1 and not view.message
    else:
        assert view.message == NO_QTPDF and view.notice.isVisible() and view.open_button.isEnabled()
    assert not window.act_fit.isEnabled()  # image tools do nothing to a document
    # in a grid, a click on the document makes its viewport the active one
    window.set_layout("1x2")
    left, right = window.grid.visible
    window.show_series(window.series[0], right)
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=view.rect().center())
    assert window.viewport is v
    assert window.strip.item_of(v.series.uid).text().endswith("1 document")


def test_a_damaged_pdf_is_a_message(window, qtbot, tmp_path):
    import pydicom

    pdf_instance(tmp_path / "bad.dcm")
    ds = pydicom.dcmread(tmp_path / "bad.dcm")
    ds.EncapsulatedDocument = b"not a pdf "
    ds.EncapsulatedDocumentLength = 10
    ds.save_as(tmp_path / "bad.dcm")
    open_and_wait(qtbot, window, [tmp_path / "bad.dcm"])
    v = window.viewport
    qtbot.waitUntil(lambda: v.document is not None, timeout=WAIT)
    assert "cannot be shown" in v.document_view.message and not v.document_view.open_button.isEnabled()


# -- shortcuts --------------------------------------------------------------------------------------------

def test_the_shortcuts_dialog_lists_every_action_with_its_keys(window, qtbot):
    dialog = window.shortcuts_dialog()
    qtbot.addWidget(dialog)
    rows = dialog.rows()
    by_name = {what: keys for _section, what, keys in rows}
    assert by_name["1 × 1"] == "Alt+1" and by_name["1 × 2"] == "Alt+2"
    assert by_name["2 × 1"] == "Alt+3" and by_name["2 × 2"] == "Alt+4"
    assert ("View ▸ Layout", "2 × 2", "Alt+4") in rows
    assert by_name["Sync"] == "Y" and by_name["Play"] == "Space" and by_name["Next viewport"] == "Ctrl+Tab"
    assert by_name["Fit"] == "F" and by_name["Import files"] == "Ctrl+I"
    assert any(section.startswith("In a viewport") and "Page" in keys for section, _w, keys in rows)
    # every action with a shortcut is there, and each shortcut belongs to one action only
    actions = [a for a in window.actions() if not a.shortcut().isEmpty()]
    assert len([r for r in rows if not r[0].startswith("In a viewport")]) == len(actions)
    keys = [r[2] for r in rows if not r[0].startswith("In a viewport")]
    assert len(keys) == len(set(keys))
    dialog.search.setText("layout")
    assert dialog.table.rowCount() >= 5  # the heading and the four layouts
    window.act_shortcuts.trigger()


def test_a_pdf_in_the_library_opens_with_its_study(library_window, qtbot, tmp_path):
    import pydicom

    from app.library import import_paths

    pdf_instance(tmp_path / "letter.dcm")
    study = str(pydicom.dcmread(tmp_path / "letter.dcm").StudyInstanceUID)
    assert not import_paths([str(tmp_path / "letter.dcm")]).failed
    assert library_window.open_study(study)
    v = library_window.viewport
    assert v.document is not None and v.series.is_document and v.document_view.data.startswith(b"%PDF")
