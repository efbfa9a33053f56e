"""A lightbox:// link to a 10 MB uncompressed DX, over loopback HTTPS, until the image is on screen (offscreen).

Running: Lightbox is started once; each link is opened with `lightbox open URI` (a process of its own, as
the operating system does), which hands it to the running window. Cold: `lightbox open URI` with no
Lightbox running (it starts, downloads, shows, quits). Every link serves a different instance, so each is
really downloaded and imported. The window writes a timing line per link shown (LIGHTBOX_TIMINGS):
hand-over, download, import, decode + render; the rest of the total is the opening process starting up.
Peer in the same run: `curl` fetching the same file (whole process).
Goals: running <= 300 ms median, cold <= 1.5 s.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import common
from common import PYTHON, ROOT, result

RUNNING_LINKS = 9
COLD_RUNS = 5
SIZE = (2560, 2048)  # 10 MB of 16-bit pixels


def _instances(count: int) -> list[bytes]:
    import numpy as np
    from pydicom.uid import generate_uid

    from app.dicom.reading import part10_bytes, read

    pixels = common.radiograph_pixels(SIZE[0])[:, : SIZE[1]]
    base = common._radiograph_dataset(np.ascontiguousarray(pixels))
    base.PatientSpeciesDescription, base.ResponsiblePerson = "Canine", "Bench^Owner"
    out = []
    template = part10_bytes(base)
    for _ in range(count):
        ds = read(template)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        out.append(part10_bytes(ds))
    return out


def _link(url: str) -> str:
    return "lightbox://open-image-url/?location=" + quote(url, safe="")


def _wait_lines(path: Path, count: int, timeout: float) -> list[dict]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            lines = path.read_text().splitlines()
            if len(lines) >= count:
                return [json.loads(line) for line in lines]
        time.sleep(0.005)
    raise TimeoutError(f"no image shown within {timeout:g} s")


def _split(records: list[dict], totals: list[float]) -> dict:
    med = {k: statistics.median(r[k] or 0.0 for r in records)
           for k in ("handover_ms", "download_ms", "import_ms", "decode_render_ms", "arrived_to_shown_ms")}
    med["process_start_ms"] = statistics.median(
        t - (r["handover_ms"] or 0.0) - r["arrived_to_shown_ms"] for r, t in zip(records, totals))
    return {k: round(v, 1) for k, v in med.items()}


def run() -> list[dict]:
    import trustme

    from tests.integration.https_server import https_server

    ca = trustme.CA()
    with tempfile.TemporaryDirectory(prefix="lightbox-bench-links-") as tmp, https_server(ca) as server:
        tmp = Path(tmp)
        ca_file = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        files = _instances(RUNNING_LINKS + COLD_RUNS + 1)
        for n, data in enumerate(files):
            server.reply(f"/dx/{n}.dcm", data, content_type="application/dicom")
        curl = []
        for n in range(5):
            start = time.perf_counter()
            subprocess.run(["curl", "-sSf", "--cacert", str(ca_file), "-o", str(tmp / "curl.dcm"),
                            server.url(f"/dx/{n}.dcm")], check=True, timeout=60)
            curl.append((time.perf_counter() - start) * 1000)
        peer = statistics.median(curl)

        # Lightbox running: hand-over to the window.
        timings = tmp / "running.jsonl"
        env = common.app_env(tmp / "home-running", QT_QPA_PLATFORM="offscreen", REQUESTS_CA_BUNDLE=str(ca_file),
                             LIGHTBOX_TIMINGS=str(timings))
        window = subprocess.Popen([PYTHON, "-m", "app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        totals, error = [], None
        try:
            _ready(env, window)
            for n in range(RUNNING_LINKS):
                start = time.time()
                subprocess.run([PYTHON, "-m", "app", "open", _link(server.url(f"/dx/{n}.dcm"))], cwd=ROOT, env=env,
                               check=True, timeout=60, capture_output=True)
                record = _wait_lines(timings, n + 1, 60)[n]
                totals.append((record["shown_wall"] - start) * 1000)
            records = _wait_lines(timings, RUNNING_LINKS, 1)
        except (subprocess.SubprocessError, TimeoutError, OSError) as exc:
            error, records = f"{type(exc).__name__}: {exc}", []
        finally:
            window.terminate()
            window.wait(15)
        running = result("link to image on screen, Lightbox running (10 MB DX, loopback HTTPS), median",
                         None if error else statistics.median(totals), "ms", at_most=300,
                         peer="curl of the same file (whole process)", peer_value=peer, error=error)
        if records:
            running["split_ms"] = _split(records, totals)

        # Lightbox closed: the link starts it.
        cold_totals, cold_records, error = [], [], None
        for n in range(COLD_RUNS):
            timings = tmp / f"cold-{n}.jsonl"
            env = common.app_env(tmp / f"home-cold-{n}", QT_QPA_PLATFORM="offscreen", LIGHTBOX_QUIT_AFTER_SHOWN="1",
                                 REQUESTS_CA_BUNDLE=str(ca_file), LIGHTBOX_TIMINGS=str(timings))
            start = time.time()
            try:
                subprocess.run([PYTHON, "-m", "app", "open", _link(server.url(f"/dx/{RUNNING_LINKS + n}.dcm"))],
                               cwd=ROOT, env=env, check=True, timeout=60, capture_output=True)
                record = _wait_lines(timings, 1, 5)[0]
            except (subprocess.SubprocessError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                break
            cold_records.append(record)
            cold_totals.append((record["shown_wall"] - start) * 1000)
        cold = result("link to image on screen, Lightbox closed (cold start, 10 MB DX), median",
                      None if error else statistics.median(cold_totals), "ms", at_most=1500,
                      peer="curl of the same file (whole process)", peer_value=peer, error=error)
        if cold_records:
            cold["split_ms"] = _split(cold_records, cold_totals)
    for entry in (running, cold):
        if "split_ms" in entry:
            print(f"  {entry['name']}: {entry['split_ms']}", file=os.sys.stderr)
    return [running, cold]


def _ready(env: dict, window: subprocess.Popen) -> None:
    """Until the window listens for links (its socket exists)."""
    probe = ("import sys; from app.desktop.single_instance import server_name; print(server_name())")
    name = subprocess.run([PYTHON, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    end = time.monotonic() + 30
    while not os.path.exists(name):
        if window.poll() is not None or time.monotonic() > end:
            raise TimeoutError("Lightbox did not start")
        time.sleep(0.02)
