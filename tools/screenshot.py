"""Open Lightbox on files under a real X server (Xvfb) and save a PNG of the main window.

usage: screenshot.py PATH... -o OUT.png [--size 1400x900] [--state NAME]
Starts Xvfb itself when DISPLAY is not set. States: default, zoomed, lung (CT preset), inverted, ct,
library (PATHs, else the sample, imported into a fresh temporary library with a few made-up patients
beside it; the library page with the newest study chosen), pacs (no PATHs: the PACS configurations dialog
with one configuration of each type and a connection test against a local C-ECHO server, beside the
editor showing a validation message; both in one PNG), outbox (the library as for `library`, with the
Outbox panel below it: sends in every state, one under way, one waiting for an unreachable PACS; nothing
is really sent), layout (no PATHs: four studies of one patient in the 2x2 layout: today's radiograph, last year's,
a CT and an ultrasound clip, window/level synchronised), compare (no PATHs: Compare with prior on the sample's
radiograph and last year's, side by side), measure (no PATHs: 2x2 with measurements drawn by simulated clicks: a VHS
on the radiograph, a scanned film without pixel size calibrated on its 25 mm sphere with lengths and an angle, ROIs
in HU on the CT, a length in pixels on an uncalibrated ultrasound frame).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def start_xvfb() -> subprocess.Popen | None:
    if os.environ.get("DISPLAY"):
        return None
    if not shutil.which("Xvfb"):
        sys.exit("error: Xvfb is not installed (Debian package xvfb)")
    for n in range(99, 120):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            break
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1600x1200x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if Path(f"/tmp/.X11-unix/X{n}").exists():
            break
        time.sleep(0.05)
    os.environ["DISPLAY"] = f":{n}"
    return proc


# Made-up patients for the library screenshot: copies of the sample radiograph under other names.
DEMO_PATIENTS = [
    # name, id, species, breed, owner, sex, birth date, study date, accession, description
    ("Hendricks^Bailey", "VET-000123", "Canine", "Golden Retriever", "Hendricks^Anna", "F", "20190315", "20250610",
     "A2025-0311", "Thorax recheck"),
    ("Okafor^Luna", "VET-000871", "Feline", "Maine Coon", "Okafor^Chidi", "F", "20210702", "20261028",
     "A2026-0039", "Thorax"),
    ("Jansen^Max", "VET-000412", "Canine", "Labrador Retriever", "Jansen^Pieter", "M", "20160111", "20261015",
     "A2026-0035", "Thorax, cough"),
    ("García^Milo", "VET-000955", "Feline", "Domestic Shorthair", "García^Lucía", "M", "20200920", "20260930",
     "A2026-0031", "Thorax"),
    ("Novak^Biscuit", "VET-001002", "Canine", "Dachshund", "Novak^Eva", "M", "20220405", "20260912",
     "A2026-0027", "Thorax, pre-anaesthetic"),
]


def demo_library(paths: list[str], folder: Path) -> None:
    """Import `paths`, and copies of the sample radiograph as the made-up patients, into the library."""
    import pydicom
    from pydicom.uid import generate_uid

    from app.dicom.patient import Patient, write_patient
    from app.library import import_paths
    from app.paths import sample_study

    source = sample_study() / "dx" / "thorax_lateral.dcm"
    for n, (name, pid, species, breed, owner, sex, born, date, accession, description) in enumerate(DEMO_PATIENTS):
        ds = pydicom.dcmread(source)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
        ds.AccessionNumber, ds.StudyDescription = accession, description
        write_patient(ds, Patient(name=name, id=pid, species=species, breed=breed, owner=owner, sex=sex,
                                  birth_date=born, neutered="ALTERED" if n % 2 else "UNALTERED", owner_role="OWNER"))
        ds.save_as(folder / f"demo{n}.dcm")
    result = import_paths([*paths, str(folder)])
    print(f"library: {result.summary()}", file=sys.stderr)


def copy_as_study(source: Path, folder: Path, date: str, description: str, modalities=None) -> str:
    """The sample's files (of `modalities`) as another study of the same patient on `date`; its UID."""
    import pydicom
    from pydicom.uid import generate_uid

    study, series = generate_uid(), {}
    folder.mkdir(parents=True, exist_ok=True)
    for n, path in enumerate(sorted(source.rglob("*.dcm"))):
        ds = pydicom.dcmread(path)
        if modalities and ds.Modality not in modalities:
            continue
        ds.StudyInstanceUID, ds.StudyDate, ds.SeriesDate, ds.StudyDescription = study, date, date, description
        ds.SeriesInstanceUID = series.setdefault(ds.SeriesInstanceUID, generate_uid())
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.AccessionNumber = f"A{date[:4]}-{n:04d}"
        ds.save_as(folder / f"{n:04d}.dcm")
    return study


def demo_ultrasound(path: Path, like: Path, date: str, frames: int = 48) -> str:
    """A made-up echocardiogram clip (a speckled sector with a beating wall, 30 fps) for `like`'s patient."""
    import numpy as np
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    from app.dicom.patient import patient_of, write_patient

    rows, cols = 480, 640
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    r, angle = np.hypot(x - cols / 2, y - 20), np.arctan2(x - cols / 2, y - 20)
    sector = (r < 440) & (np.abs(angle) < 0.75)
    speckle = rng.rayleigh(1.0, (rows, cols)).astype(np.float32)
    speckle = sum(np.roll(np.roll(speckle, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-2, -1, 0, 1, 2)) / 15
    arr = np.zeros((frames, rows, cols, 3), dtype=np.uint8)
    for n in range(frames):
        beat = 0.5 + 0.5 * np.cos(2 * np.pi * n / frames)
        cavity = np.hypot((x - cols / 2) / (70 + 25 * beat), (y - 250) / (120 + 20 * beat))
        tissue = np.clip(1.2 - np.abs(cavity - 1.3) * 2.0, 0.15, 1.0) * (cavity > 0.95) * (1.1 - r / 900)
        grey = np.clip(tissue * speckle * 150 * sector, 0, 255).astype(np.uint8)
        arr[n] = grey[..., None]
    src = pydicom.dcmread(like, stop_before_pixels=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    write_patient(ds, patient_of(src))
    ds.Modality, ds.StudyDate, ds.SeriesDate = "US", date, date
    ds.StudyDescription, ds.SeriesDescription = "Echocardiogram", "Right parasternal long axis"
    ds.SeriesNumber = ds.InstanceNumber = 1
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime, ds.FrameIncrementPointer = 33.3, pydicom.tag.Tag("FrameTime")
    ds.PixelData = arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds.StudyInstanceUID


def layout_shot(window, done) -> None:
    """Four studies of the sample's patient in 2x2, the radiographs side by side with window/level in sync."""
    from PySide6.QtCore import QTimer

    from app.library import import_paths
    from app.paths import sample_study

    sample = sample_study()
    demo = Path(os.environ["LIGHTBOX_HOME"]) / "demo"
    prior = copy_as_study(sample, demo / "prior", "20250610", "Thorax recheck", {"DX"})
    older = copy_as_study(sample, demo / "ct", "20240118", "Thorax CT", {"CT"})
    echo = demo_ultrasound(demo / "us" / "echo.dcm", sample / "dx" / "thorax_lateral.dcm", "20261103")
    result = import_paths([str(sample), str(demo)])
    current = next(uid for uid in result.studies if uid not in (prior, older, echo))
    window.open_study(current)
    window.set_layout("2x2")
    cells = window.grid.visible
    window.show_dropped_series("", prior, cells[1])
    window.show_dropped_series("", older, cells[2])
    window.show_dropped_series("", echo, cells[3])
    cells[2].show_position(cells[2].count // 2)
    cells[3].show_position(12)
    window.grid.set_active(cells[0])
    window.set_synchronised(True)
    cells[0].set_window(2300, 3200)
    cells[3].cine.play()  # the echo loops on its own while the radiographs are read

    def ready():
        if any(v.image is None for v in cells):
            QTimer.singleShot(100, ready)
            return
        QTimer.singleShot(1500, done)

    QTimer.singleShot(100, ready)


def _click(viewport, points, double=False) -> None:
    """Left-button presses and releases at image points, as a person clicks (a drag when two points are given
    as a tuple of tuples inside the list)."""
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    def send(kind, pos):
        buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else Qt.MouseButton.LeftButton
        QApplication.sendEvent(viewport, QMouseEvent(kind, pos, viewport.mapToGlobal(pos), Qt.MouseButton.LeftButton,
                                                     buttons, Qt.KeyboardModifier.NoModifier))

    for item in points:
        start, end = (item, item) if not isinstance(item[0], tuple) else item
        a, b = viewport.widget_point(QPointF(*start)), viewport.widget_point(QPointF(*end))
        send(QEvent.Type.MouseButtonPress, a)
        if b != a:
            for i in range(1, 6):
                QApplication.sendEvent(viewport, QMouseEvent(QEvent.Type.MouseMove, a + (b - a) * (i / 5),
                                                             viewport.mapToGlobal(a + (b - a) * (i / 5)),
                                                             Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton,
                                                             Qt.KeyboardModifier.NoModifier))
        send(QEvent.Type.MouseButtonRelease, b)
    if double:
        send(QEvent.Type.MouseButtonDblClick, b)
        send(QEvent.Type.MouseButtonRelease, b)


def without_pixel_size(folder: Path) -> None:
    """The radiographs under `folder` as a scanned film would be: no pixel size at all."""
    import pydicom

    for path in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        for keyword in ("PixelSpacing", "ImagerPixelSpacing", "PixelSpacingCalibrationType",
                        "PixelSpacingCalibrationDescription", "EstimatedRadiographicMagnificationFactor"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.SeriesDescription = "Thorax lateral (scanned film)"
        ds.save_as(path)


def measure_shot(window, done) -> None:
    """2 x 2 with measurements, placed with simulated clicks through the tools."""
    from PySide6.QtCore import QTimer

    from app.library import import_paths
    from app.paths import sample_study

    sample = sample_study()
    demo = Path(os.environ["LIGHTBOX_HOME"]) / "demo"
    film = copy_as_study(sample, demo / "film", "20250610", "Thorax recheck", {"DX"})
    without_pixel_size(demo / "film")
    ct = copy_as_study(sample, demo / "ct", "20240118", "Thorax CT", {"CT"})
    echo = demo_ultrasound(demo / "us" / "echo.dcm", sample / "dx" / "thorax_lateral.dcm", "20261103")
    result = import_paths([str(sample), str(demo)])
    current = next(uid for uid in result.studies if uid not in (film, ct, echo))
    window.open_study(current)
    window.set_layout("2x2")
    cells = window.grid.visible
    window.show_dropped_series("", film, cells[1])
    window.show_dropped_series("", ct, cells[2])
    window.show_dropped_series("", echo, cells[3])
    cells[2].show_position(cells[2].count // 2)
    cells[3].show_position(12)
    window.measure_tool.ask_calibration = lambda *args: (25.0, "study")

    def measure():
        if any(v.image is None for v in cells):
            QTimer.singleShot(100, measure)
            return
        dx, scanned, ct_view, us = cells
        for v in cells:
            window.grid.set_active(v)
        window.grid.set_active(dx)
        window.set_tool("vhs")
        _click(dx, [(795, 595), (985, 1095), (660, 930), (1010, 797),
                    *[(x, 460) for x in range(714, 1434, 80)]], double=True)
        window.grid.set_active(scanned)
        window.set_tool("calibrate")
        _click(scanned, [((1561, 1161), (1727, 1327))])
        window.set_tool("length")
        _click(scanned, [((720, 470), (800, 470)), ((1561, 1244), (1727, 1244))])  # T4, the sphere
        window.set_tool("angle")
        _click(scanned, [(560, 455), (795, 590), (985, 1095)])  # the heart's axis against the spine
        window.grid.set_active(ct_view)
        window.set_tool("ellipse")
        _click(ct_view, [((100, 62), (160, 108))])
        window.set_tool("rectangle")
        _click(ct_view, [((84, 128), (110, 156))])  # lung
        window.grid.set_active(us)
        window.set_tool("length")
        _click(us, [((255, 250), (385, 250))])
        window.set_tool("select")
        _click(ct_view, [(160, 85)])  # the ellipse chosen: its handles show
        QTimer.singleShot(1500, done)

    QTimer.singleShot(100, measure)


def compare_shot(window, done) -> None:
    """View > Compare with prior, the prior already in the library: 1 x 2, synchronised."""
    from PySide6.QtCore import QTimer

    from app.library import import_paths
    from app.paths import sample_study

    demo = Path(os.environ["LIGHTBOX_HOME"]) / "demo"
    prior = copy_as_study(sample_study(), demo / "prior", "20250610", "Thorax recheck", {"DX"})
    result = import_paths([str(sample_study()), str(demo)])
    window.open_study(next(uid for uid in result.studies if uid != prior))
    window.show_prior(prior)

    def ready():
        if any(v.image is None for v in window.grid.visible):
            QTimer.singleShot(100, ready)
            return
        QTimer.singleShot(1500, done)

    QTimer.singleShot(100, ready)


def pacs_shot(window, out: Path, done) -> None:
    """The PACS configurations dialog (two configurations, a test result) and the editor with a message."""
    from PySide6.QtCore import QPoint, QTimer
    from PySide6.QtGui import QColor, QImage, QPainter

    from app.pacs.config import DICOMWEB, DIMSE, DicomWebOptions, DimseOptions, PacsConfig, PacsConfigs
    from app.ui.pacs_dialogs import PacsConfigurationsDialog

    port = echo_server()
    configs = PacsConfigs.load()
    configs.add(PacsConfig(DICOMWEB, "Referral centre (cloud)", "REFCLOUD",
                           dicomweb=DicomWebOptions(url="https://pacs.referral-vets.example/dicom-web",
                                                    auth="bearer")), secret="demo-token")
    configs.add(PacsConfig(DIMSE, "Clinic PACS", "CLINICPACS",
                           dimse=DimseOptions(host="127.0.0.1", port=port, mwl=True)))
    dialog = PacsConfigurationsDialog(window)
    dialog.resize(900, 440)
    dialog.move(window.pos() + QPoint(40, 60))
    dialog.show()
    dialog.select("CLINICPACS")
    job = dialog.test_configuration()

    def editor_open():
        if job is not None and dialog.test_job is not None:
            QTimer.singleShot(100, editor_open)
            return
        editor = dialog.new_configuration(DIMSE)
        editor.fields["name"].setText("Imaging centre")
        editor.fields["aet"].setText("IMAGING_CENTRE_MAIN")  # 19 characters: the rule shows beside the field
        editor.fields["host"].setText("imaging.local")
        editor.fields["port"].setValue(11112)
        QTimer.singleShot(800, lambda: shoot(editor))

    def shoot(editor):
        left, right = dialog.grab().toImage(), editor.grab().toImage()
        gap = 24
        image = QImage(left.width() + right.width() + 3 * gap, max(left.height(), right.height()) + 2 * gap,
                       QImage.Format.Format_RGB32)
        image.fill(QColor(24, 24, 26))
        painter = QPainter(image)
        painter.drawImage(gap, gap, left)
        painter.drawImage(2 * gap + left.width(), gap, right)
        painter.end()
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(str(out))
        done()

    QTimer.singleShot(300, editor_open)


def demo_outbox(window) -> None:
    """Two PACS configurations and sends in every state, written as the outbox records them; the runner is
    kept from sending (the screenshot shows the records, nothing goes out)."""
    import time

    from app.library import Library
    from app.pacs.config import DICOMWEB, DIMSE, DicomWebOptions, DimseOptions, PacsConfig, PacsConfigs
    from app.pacs.outbox import Outbox

    window.outbox_runner.start = lambda: None
    configs = PacsConfigs.load()
    clinic = PacsConfig(DIMSE, "Clinic PACS", "CLINICPACS", dimse=DimseOptions(host="192.168.1.20", port=104))
    cloud = PacsConfig(DICOMWEB, "Referral centre", "REFCLOUD",
                       dicomweb=DicomWebOptions(url="https://pacs.referral-vets.example/dicom-web", auth="bearer"))
    configs.add(clinic)
    configs.add(cloud, secret="demo-token")
    with Library() as library:
        outbox = Outbox(library)
        db = library.db
        studies = {s.patient.animal_name: s for s in library.studies()}
        sample = next(s for s in library.studies() if s.instance_count > 1)

        def send(config, study, state, confirmed=0, refused=0, **row):
            pk = outbox.queue(config, study_uids=[study.uid])
            items = [i.sop_uid for i in outbox.items(pk)]
            db.executemany("UPDATE send_items SET state = 'sent', status = 0 WHERE send_pk = ? AND sop_uid = ?",
                           [(pk, sop) for sop in items[:confirmed]])
            db.executemany("UPDATE send_items SET state = 'failed', status = 42752, message = ? "
                           "WHERE send_pk = ? AND sop_uid = ?",
                           [("the PACS refused it: out of resources (status 0xA700)", pk, sop)
                            for sop in items[confirmed:confirmed + refused]])
            row = {"state": state, **row}
            db.execute(f"UPDATE sends SET {', '.join(f'{k} = ?' for k in row)} WHERE pk = ?", (*row.values(), pk))

        now = time.time()
        send(clinic, studies["Bailey"], "done", 1, finished_at="2026-11-02T09:12:40+01:00")
        send(clinic, studies["Milo"], "failed", 0, 1, last_error="the PACS refused 1 instance(s)",
             finished_at="2026-11-02T09:40:03+01:00")
        send(cloud, studies["Biscuit"], "cancelled", 0, finished_at="2026-11-02T10:02:11+01:00")
        send(clinic, sample, "sending", 12, owner_pid=os.getpid())
        send(cloud, sample, "waiting", 0, attempts=2, next_attempt_at=now + 26,
             last_error="nothing is listening at pacs.referral-vets.example:443 (connection refused)")
        send(clinic, studies["Luna"], "queued")


def echo_server() -> int:
    """A C-ECHO (Verification) server on a free local port, for the connection test to reach; its port."""
    import socket

    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ae = AE(ae_title="CLINICPACS")
    ae.add_supported_context(Verification)
    ae.start_server(("127.0.0.1", port), block=False)
    return port


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="*")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--size", default="1400x900")
    parser.add_argument("--state", default="default",
                        choices=["default", "zoomed", "lung", "inverted", "ct", "library", "pacs", "outbox", "layout",
                                 "compare", "measure"])
    args = parser.parse_args()
    made = ("library", "pacs", "outbox", "layout", "compare", "measure")  # states that make their own studies
    if not args.paths and args.state not in made:
        parser.error("name the files to open")
    xvfb = start_xvfb()
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    if args.state in made:  # never into a real library or real PACS configurations
        os.environ["LIGHTBOX_HOME"] = tempfile.mkdtemp(prefix="lightbox-shot-")
        os.environ["LIGHTBOX_SECRETS"] = "file"
    os.environ.setdefault("LIGHTBOX_HOME", tempfile.mkdtemp(prefix="lightbox-shot-"))
    try:
        from PySide6.QtCore import QTimer

        from app.ui.main_window import MainWindow, create_app

        app = create_app()
        window = MainWindow()
        w, h = (int(x) for x in args.size.split("x"))
        window.resize(w, h)
        window.show()
        if args.state in ("library", "outbox"):
            from app.paths import sample_study

            demo = Path(os.environ["LIGHTBOX_HOME"]) / "demo"
            demo.mkdir(parents=True, exist_ok=True)
            demo_library(args.paths or [str(sample_study())], demo)
            if args.state == "outbox":
                demo_outbox(window)
            window.show_library()

            def library_ready():
                from app.ui.browser import THUMB_ROLE

                items = [window.browser.series_list.item(i) for i in range(window.browser.series_list.count())]
                if not items or any(i.data(THUMB_ROLE) is None for i in items):
                    QTimer.singleShot(100, library_ready)
                    return
                if args.state == "outbox":  # the waiting send chosen: Retry now and Cancel are offered
                    panel = window.outbox_panel
                    panel.refresh()
                    panel.select(next(r.id for r in panel.model.records if r.state == "waiting"))
                QTimer.singleShot(800, shoot)

            QTimer.singleShot(100, library_ready)
        elif args.state == "pacs":
            window.show_library()
            pacs_shot(window, Path(args.output), lambda: (print(args.output), app.quit()))
        elif args.state == "layout":
            layout_shot(window, lambda: shoot())
        elif args.state == "compare":
            compare_shot(window, lambda: shoot())
        elif args.state == "measure":
            measure_shot(window, lambda: shoot())
        else:
            job = window.open_paths(args.paths)

        def ready():
            if not job._finished.is_set() or window.viewport.image is None:
                QTimer.singleShot(100, ready)
                return
            v = window.viewport
            if args.state in ("ct", "lung") and len(window.series) > 1:
                window.show_series(window.series[1])
                v.show_position(v.count // 2)
            if args.state == "zoomed":
                v.set_zoom(v.zoom * 2.5)
            if args.state == "lung":
                window.apply_preset(1)
            if args.state == "inverted":
                v.toggle_invert()
            QTimer.singleShot(1500, shoot)

        def shoot():
            out = Path(args.output)
            out.parent.mkdir(parents=True, exist_ok=True)
            window.grab().save(str(out))
            print(out)
            app.quit()

        if args.state not in made:
            QTimer.singleShot(100, ready)
        app.exec()
    finally:
        if xvfb:
            xvfb.terminate()
            xvfb.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
