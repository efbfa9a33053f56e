"""Download throughput: a 200 MB DICOM file over loopback HTTPS, `links.download.download` against `curl`.

The file (a 10240x10240 16-bit image of noise, cached in bench/data/) is served by the tests' HTTPS server
(tests/integration/https_server.py) running in a process of its own, with a throwaway CA. Each round
downloads it once with curl (`curl -sSf --cacert CA -o FILE`, the whole process) and once with
`download()` (a fresh session, so both do a TLS handshake), both writing into the same temporary folder;
after one untimed round, rounds alternate who goes first. Goal: our throughput >= 0.8 x curl's.
On a loaded 2-core machine single runs vary by 2x either way (first touches of page-cache memory cost
0.3 s of system time in this VM, landing on either side): the figures are medians.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import common
from common import DATA, PYTHON, ROOT, result

ROUNDS = 9
SIDE = 10240  # 10240 x 10240 x 2 bytes = 200 MiB of pixel data
GOAL_RATIO = 0.8
_VERSION = "v1"


def big_dicom() -> Path:
    path = DATA / f"download-{SIDE}-{_VERSION}.dcm"
    if path.exists():
        return path
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    DATA.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Bench^Download", "BENCH2", "OT"
    ds.Rows = ds.Columns = SIDE
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.random.default_rng(99).integers(0, 65535, (SIDE, SIDE), dtype=np.uint16).tobytes()
    tmp = path.with_name(path.name + ".part")
    ds.save_as(tmp, enforce_file_format=True)
    tmp.replace(path)
    return path


class _Server:
    """The tests' HTTPS server serving one file, in a process of its own."""

    def __init__(self, file: Path, workdir: Path):
        self.ca = workdir / "ca.pem"
        self.process = subprocess.Popen(
            [PYTHON, "-m", "tests.integration.https_server", str(file), "--route", "/big.dcm",
             "--ca-out", str(self.ca)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().split()
        if len(line) != 2 or line[0] != "URL":
            self.stop()
            raise RuntimeError(f"the HTTPS server did not start (said {line!r})")
        self.url = line[1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run() -> list[dict]:
    curl = shutil.which("curl")
    if curl is None:
        raise RuntimeError("curl is not installed: it is the peer of this benchmark "
                           "(installers/linux/debian-test.txt lists it; make system-test installs it)")
    source = big_dicom()
    size = source.stat().st_size
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        work = Path(tmp)
        home = work / "home"
        server = _Server(source, work)
        saved = {name: os.environ.get(name) for name in ("LIGHTBOX_HOME", "REQUESTS_CA_BUNDLE")}
        os.environ["LIGHTBOX_HOME"] = str(home)  # download() writes under its cache folder
        os.environ["REQUESTS_CA_BUNDLE"] = str(server.ca)
        try:
            from app.links.download import download, make_session
            from app.settings import Settings

            settings = Settings()
            ours: list[float] = []
            theirs: list[float] = []
            target = home / "cache" / "downloads" / "curl.dcm"
            target.parent.mkdir(parents=True, exist_ok=True)

            def with_curl() -> float:
                seconds = common.run_process([curl, "-sSf", "--cacert", str(server.ca), "-o", str(target),
                                              server.url], timeout=120)
                if target.stat().st_size != size:
                    raise RuntimeError(f"curl fetched {target.stat().st_size} bytes, not {size}")
                target.unlink()
                return seconds

            def with_download() -> float:
                start = time.perf_counter()
                with make_session(settings) as session:
                    got = download(server.url, session=session, settings=settings)
                seconds = time.perf_counter() - start
                if got.size != size or got.kind != "dicom":
                    raise RuntimeError(f"download() fetched {got.size} bytes of {got.kind}, not {size} of dicom")
                got.path.unlink()
                return seconds

            with_curl(), with_download()  # warm-up, not counted: first-use costs on both sides
            for n in range(ROUNDS):  # alternate who goes first
                if n % 2:
                    ours.append(with_download())
                    theirs.append(with_curl())
                else:
                    theirs.append(with_curl())
                    ours.append(with_download())
        finally:
            server.stop()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    mb = size / 1e6
    ours_mbs, curl_mbs = mb / common.median_of(ours), mb / common.median_of(theirs)
    entry = result(f"download {mb:.0f} MB over loopback HTTPS", ours_mbs, "MB/s",
                   peer=f"curl {_curl_version(curl)}, same server, same run (median of {ROUNDS})",
                   peer_value=curl_mbs)
    entry["goal"] = f"ratio >= {GOAL_RATIO:g}"  # a throughput: higher is better
    entry["ok"] = entry["ratio"] is not None and entry["ratio"] >= GOAL_RATIO
    return [entry]


def _curl_version(curl: str) -> str:
    out = subprocess.run([curl, "--version"], capture_output=True, text=True).stdout.split()
    return out[1] if len(out) > 1 else "?"


if __name__ == "__main__":
    for e in run():
        print(e)
