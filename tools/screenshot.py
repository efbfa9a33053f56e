"""Open Lightbox on files under a real X server (Xvfb) and save a PNG of the main window.

usage: screenshot.py PATH... -o OUT.png [--size 1400x900] [--state NAME]
Starts Xvfb itself when DISPLAY is not set. States: default, zoomed, lung (CT preset), inverted, ct,
library (PATHs, else the sample, imported into a fresh temporary library with a few made-up patients
beside it; the library page with the newest study chosen), pacs (no PATHs: the PACS configurations dialog
with one configuration of each type and a connection test against a local C-ECHO server, beside the
editor showing a validation message; both in one PNG), outbox (the library as for `library`, with the
Outbox panel below it: sends in every state, one under way, one waiting for an unreachable PACS; nothing
is really sent).
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
                        choices=["default", "zoomed", "lung", "inverted", "ct", "library", "pacs", "outbox"])
    args = parser.parse_args()
    if not args.paths and args.state not in ("library", "pacs", "outbox"):
        parser.error("name the files to open")
    xvfb = start_xvfb()
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    if args.state in ("library", "pacs", "outbox"):  # never into a real library or real PACS configurations
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

        if args.state not in ("library", "pacs", "outbox"):
            QTimer.singleShot(100, ready)
        app.exec()
    finally:
        if xvfb:
            xvfb.terminate()
            xvfb.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
