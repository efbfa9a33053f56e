"""Open Lightbox on files under a real X server (Xvfb) and save a PNG of the main window.

usage: screenshot.py PATH... -o OUT.png [--size 1400x900] [--state NAME]
Starts Xvfb itself when DISPLAY is not set. States: default, zoomed, lung (CT preset), inverted, ct,
library (PATHs, else the sample, imported into a fresh temporary library with a few made-up patients
beside it; the library page with the newest study chosen).
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="*")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--size", default="1400x900")
    parser.add_argument("--state", default="default",
                        choices=["default", "zoomed", "lung", "inverted", "ct", "library"])
    args = parser.parse_args()
    if not args.paths and args.state != "library":
        parser.error("name the files to open")
    xvfb = start_xvfb()
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    if args.state == "library":  # never into a real library
        os.environ["LIGHTBOX_HOME"] = tempfile.mkdtemp(prefix="lightbox-shot-")
    os.environ.setdefault("LIGHTBOX_HOME", tempfile.mkdtemp(prefix="lightbox-shot-"))
    try:
        from PySide6.QtCore import QTimer

        from app.ui.main_window import MainWindow, create_app

        app = create_app()
        window = MainWindow()
        w, h = (int(x) for x in args.size.split("x"))
        window.resize(w, h)
        window.show()
        if args.state == "library":
            from app.paths import sample_study

            demo = Path(os.environ["LIGHTBOX_HOME"]) / "demo"
            demo.mkdir(parents=True, exist_ok=True)
            demo_library(args.paths or [str(sample_study())], demo)
            window.show_library()

            def library_ready():
                from app.ui.browser import THUMB_ROLE

                items = [window.browser.series_list.item(i) for i in range(window.browser.series_list.count())]
                if not items or any(i.data(THUMB_ROLE) is None for i in items):
                    QTimer.singleShot(100, library_ready)
                    return
                QTimer.singleShot(800, shoot)

            QTimer.singleShot(100, library_ready)
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

        if args.state != "library":
            QTimer.singleShot(100, ready)
        app.exec()
    finally:
        if xvfb:
            xvfb.terminate()
            xvfb.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
