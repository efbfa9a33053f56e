"""Open Lightbox on files under a real X server (Xvfb) and save a PNG of the main window.

usage: screenshot.py PATH... -o OUT.png [--size 1400x900] [--state NAME]
Starts Xvfb itself when DISPLAY is not set. States: default, zoomed, lung (CT preset), inverted.
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="+")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--size", default="1400x900")
    parser.add_argument("--state", default="default", choices=["default", "zoomed", "lung", "inverted", "ct"])
    args = parser.parse_args()
    xvfb = start_xvfb()
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    os.environ.setdefault("LIGHTBOX_HOME", tempfile.mkdtemp(prefix="lightbox-shot-"))
    try:
        from PySide6.QtCore import QTimer

        from app.ui.main_window import MainWindow, create_app

        app = create_app()
        window = MainWindow()
        w, h = (int(x) for x in args.size.split("x"))
        window.resize(w, h)
        window.show()
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

        QTimer.singleShot(100, ready)
        app.exec()
    finally:
        if xvfb:
            xvfb.terminate()
            xvfb.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
