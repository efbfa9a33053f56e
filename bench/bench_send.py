"""Sending to a PACS: 200 small CT instances (one study, ~39 KB each, cached in bench/data/) to a local Orthanc
(tests/integration/orthanc.py: TCP_NODELAY=1 in its environment), emptied through REST before every run.

C-STORE: `send_instances` in-process against dcmtk's `storescu` (whole process) with TCP_NODELAY=1 (goal:
>= 0.6x its instances/s) and with the default environment (Nagle on). STOW-RS: `send_instances`, all 200 in
one multipart POST, against one `curl --data-binary @BODY` of the same files (body prebuilt, not timed;
`Expect:` off so curl does not wait for a 100 Continue), whole process (goal: >= 0.9x). Medians of 5 runs
(3 for the slow default storescu) after an untimed round (none for that one), rounds alternating in order;
every run is checked: Orthanc holds the 200 instances.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import rate_floor, result, small_ct_study, tool_version

COUNT = 200
MATRIX = 140  # 140 x 140 x 2 bytes: ~39 KB files
RUNS = 5
SLOW_RUNS = 3  # storescu with Nagle on: ~9 s a run
CSTORE_GOAL, STOW_GOAL = 0.6, 0.9
BOUNDARY = "lightbox-bench-boundary-7f3a9c"
_VERSION = "v1"


def ct_files() -> list[Path]:
    """The cached study: COUNT CT slices, one series."""
    return small_ct_study(f"send-ct-{_VERSION}-{COUNT}x{MATRIX}", COUNT, MATRIX, seed=5, patient="Bench^Send",
                          patient_id="BENCH3", description="CT thorax")


def multipart_body(files: list[Path], target: Path) -> None:
    with open(target, "wb") as out:
        for path in files:
            out.write(f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            out.write(path.read_bytes())
            out.write(b"\r\n")
        out.write(f"--{BOUNDARY}--\r\n".encode())


def run() -> list[dict]:
    from tests.integration.orthanc import Orthanc

    storescu, curl = shutil.which("storescu"), shutil.which("curl")
    if storescu is None or curl is None:
        raise RuntimeError("storescu (apt install dcmtk) and curl are the peers of this benchmark")
    files = ct_files()
    uids = _uids(files)
    size_kb = statistics.mean(p.stat().st_size for p in files) / 1024
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        work = Path(tmp)
        body = work / "body.multipart"
        multipart_body(files, body)
        saved = {name: os.environ.get(name) for name in ("LIGHTBOX_HOME", "LIGHTBOX_SECRETS")}
        os.environ["LIGHTBOX_HOME"] = str(work / "home")
        os.environ["LIGHTBOX_SECRETS"] = "file"
        orthanc = Orthanc(work / "orthanc").start()  # TCP_NODELAY=1 in its environment
        try:
            times = _rounds(orthanc, files, uids, body, storescu, curl)
        finally:
            orthanc.stop()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    rate = {kind: COUNT / statistics.median(seconds) for kind, seconds in times.items()}
    what = f"{COUNT} CT instances ({size_kb:.0f} KB each, one study) to Orthanc 1.10 (TCP_NODELAY=1)"
    entries = [
        (rate_floor(f"send {what} by C-STORE: send_instances, in-process (TCP_NODELAY on our socket)",
                rate["ours_cstore"], f"storescu {tool_version(storescu)} with TCP_NODELAY=1, whole process",
                rate["storescu_nodelay"], CSTORE_GOAL), "ours_cstore", "storescu_nodelay"),
        (result("  the same C-STORE send, against storescu with the default environment (Nagle on)",
                rate["ours_cstore"], "instances/s", peer=f"storescu {tool_version(storescu)}, default environment, "
                "whole process", peer_value=rate["storescu_default"]), "ours_cstore", "storescu_default"),
        (rate_floor(f"send {what} by STOW-RS: send_instances, in-process, one multipart POST",
                rate["ours_stow"], f"curl {tool_version(curl)}, one multipart POST of the same files (body prebuilt), "
                "whole process", rate["curl"], STOW_GOAL), "ours_stow", "curl"),
    ]
    for entry, ours, peer in entries:  # the seconds of every timed run, both sides
        entry["seconds"] = [round(t, 3) for t in times[ours]]
        entry["peer_seconds"] = [round(t, 3) for t in times[peer]]
    return [entry for entry, _, _ in entries]


def _rounds(orthanc, files, uids, body: Path, storescu: str, curl: str) -> dict[str, list[float]]:
    from app.pacs.config import DICOMWEB, DIMSE, DicomWebOptions, DimseOptions, PacsConfig
    from app.pacs.send import send_instances

    dimse = PacsConfig(DIMSE, "Bench", orthanc.aet, dimse=DimseOptions(
        "127.0.0.1", orthanc.dicom_port, local_aets=["LIGHTBOX"], test_aet="LIGHTBOX", query_aet="LIGHTBOX"))
    web = PacsConfig(DICOMWEB, "Bench web", "ORTHANCWEB", dicomweb=DicomWebOptions(
        orthanc.dicomweb_url, auth="basic", user=orthanc.user, multipart_stow=True))
    pairs = list(zip(uids, files))
    from app.dicom.reading import read

    study = str(read(files[0], header_only=True).StudyInstanceUID)
    studies = {uid: study for uid in uids}  # what the outbox passes: the library knows each instance's study
    storescu_cmd = [storescu, "-aet", "LIGHTBOX", "-aec", orthanc.aet, "127.0.0.1", str(orthanc.dicom_port),
                    *map(str, files)]
    plain_env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}
    curl_cmd = [curl, "-sSf", "--noproxy", "*", "-o", os.devnull, "-u", f"{orthanc.user}:{orthanc.password}",
                "-H", f'Content-Type: multipart/related; type="application/dicom"; boundary={BOUNDARY}',
                "-H", "Accept: application/dicom+json", "-H", "Expect:", "--data-binary", f"@{body}",
                f"{orthanc.dicomweb_url}/studies"]

    def ours(config, secret=None):
        def go() -> float:
            start = time.perf_counter()
            outcomes = send_instances(config, pairs, secret=secret, studies=studies)
            seconds = time.perf_counter() - start
            if len(outcomes) != COUNT or {o.state for o in outcomes} != {"sent"}:
                raise RuntimeError(f"send_instances: {len(outcomes)} outcomes, states {({o.state for o in outcomes})}")
            return seconds
        return go

    def process(cmd, env=None):
        def go() -> float:
            start = time.perf_counter()
            done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"{Path(cmd[0]).name} exit {done.returncode}: "
                                   f"{(done.stderr + done.stdout).decode(errors='replace').strip()[-300:]}")
            return seconds
        return go

    def checked(go) -> float:
        orthanc.clear()
        seconds = go()
        stored = orthanc.get("/statistics")["CountInstances"]
        if stored != COUNT:
            raise RuntimeError(f"Orthanc holds {stored} instances after a run, not {COUNT}")
        return seconds

    contenders = {
        "ours_cstore": ours(dimse),
        "storescu_nodelay": process(storescu_cmd, dict(os.environ, TCP_NODELAY="1")),
        "ours_stow": ours(web, orthanc.password),
        "curl": process(curl_cmd),
        "storescu_default": process(storescu_cmd, plain_env),  # slow: no warm-up
    }
    for kind, go in contenders.items():  # warm-up: imports, first connections, page cache
        if kind != "storescu_default":
            checked(go)
    times: dict[str, list[float]] = {kind: [] for kind in contenders}
    order = list(contenders)
    for n in range(RUNS):
        for kind in (order if n % 2 == 0 else order[::-1]):
            if kind != "storescu_default" or n < SLOW_RUNS:
                times[kind].append(checked(contenders[kind]))
    orthanc.clear()
    return times


def _uids(files: list[Path]) -> list[str]:
    import pydicom

    return [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files]




if __name__ == "__main__":
    for e in run():
        print(e)
