"""Retrieving from a PACS: a 200-instance CT study (4 series of 50, ~39 KB each, cached in bench/data/) loaded
into a local Orthanc (tests/integration/orthanc.py: TCP_NODELAY=1 in its environment), retrieved into a fresh
Lightbox library each run (opened before the clock starts, removed after the check).

C-GET: `retrieve(method="get")` in-process against dcmtk's `getscu -S ... -od DIR` (whole process).
C-MOVE: `retrieve(method="move")` against `movescu -aem STORESCP` (whole process) with `storescp` already
listening (started before the clock, stopped after), both AE titles in Orthanc's DicomModalities; ours twice:
its storage SCP started and stopped inside the call (as when "receive studies" is off), and already listening.
dcmtk peers run with TCP_NODELAY=1. Goal for both: peer seconds / our seconds >= 0.5 (the instances/s ratio).
WADO-RS: `retrieve(method="wado")` (it also asks QIDO-RS for the count, parses, stores and indexes) against one
`curl -o FILE` of the same multipart URL, whole process. Goal: ours <= 0.5 s.
Medians of 5 runs after an untimed round, rounds alternating in order; every run is checked: the library
(or the peer's folder or multipart body) holds the 200 instances of the study.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import rate_floor, result, small_ct_study, tool_version

COUNT, SERIES = 200, 4
MATRIX = 140  # 140 x 140 x 2 bytes: ~39 KB files
RUNS = 5
DIMSE_GOAL, WADO_GOAL_S = 0.5, 0.5
PEER_AET = "STORESCP"
_VERSION = "v1"


def ct_study() -> list[Path]:
    """The cached study: COUNT CT slices in SERIES series."""
    return small_ct_study(f"retrieve-ct-{_VERSION}-{COUNT}x{MATRIX}", COUNT, MATRIX, series=SERIES, seed=7,
                          patient="Bench^Retrieve", patient_id="BENCH4", date="20250102", description="CT abdomen")


def run() -> list[dict]:
    import pydicom

    from tests.integration.orthanc import Orthanc, free_ports

    tools = {name: shutil.which(name) for name in ("getscu", "movescu", "storescp", "curl")}
    if None in tools.values():
        raise RuntimeError("getscu, movescu, storescp (apt install dcmtk) and curl are the peers of this benchmark")
    files = ct_study()
    heads = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    study_uid = str(heads[0].StudyInstanceUID)
    uids = {str(h.SOPInstanceUID) for h in heads}
    size_kb = statistics.mean(p.stat().st_size for p in files) / 1024
    with tempfile.TemporaryDirectory(prefix="bench-retrieve-") as tmp:
        work = Path(tmp)
        saved = {name: os.environ.get(name) for name in ("LIGHTBOX_HOME", "LIGHTBOX_SECRETS")}
        os.environ["LIGHTBOX_HOME"] = str(work / "home")
        os.environ["LIGHTBOX_SECRETS"] = "file"
        move_port, peer_port = free_ports(2)
        modalities = {"lightbox": {"AET": "LIGHTBOX", "Host": "127.0.0.1", "Port": move_port},
                      "storescp": {"AET": PEER_AET, "Host": "127.0.0.1", "Port": peer_port}}
        orthanc = Orthanc(work / "orthanc", overrides={"DicomModalities": modalities}).start()  # TCP_NODELAY=1
        try:
            for path in files:
                orthanc.upload(path)
            if orthanc.get("/statistics")["CountInstances"] != COUNT:
                raise RuntimeError(f"Orthanc did not take the {COUNT} instances")
            times = _rounds(work, orthanc, study_uid, uids, move_port, peer_port, tools)
        finally:
            orthanc.stop()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    sec = {kind: statistics.median(seconds) for kind, seconds in times.items()}
    what = f"{COUNT} CT instances ({size_kb:.0f} KB each, {SERIES} series, one study) from Orthanc 1.10 (TCP_NODELAY=1)"
    v = {name: tool_version(exe) for name, exe in tools.items()}
    entries = [
        (rate_floor(f"retrieve {what} by C-GET: retrieve(method='get') into a fresh library, in-process",
                COUNT / sec["ours_get"], f"getscu {v['getscu']} -S -od DIR, TCP_NODELAY=1, whole process",
                COUNT / sec["getscu"], DIMSE_GOAL), "ours_get", "getscu"),
        (rate_floor(f"retrieve {what} by C-MOVE: retrieve(method='move'), our storage SCP, into a fresh library",
                COUNT / sec["ours_move"], f"movescu {v['movescu']} -aem {PEER_AET} to a running storescp -od DIR, "
                "both TCP_NODELAY=1, movescu whole process", COUNT / sec["movescu"], DIMSE_GOAL),
         "ours_move", "movescu"),
        (rate_floor("  the same C-MOVE, our storage SCP already listening (as with \"receive studies\" on)",
                COUNT / sec["ours_move_running"], "movescu, as above", COUNT / sec["movescu"], DIMSE_GOAL),
         "ours_move_running", "movescu"),
        (result(f"retrieve {what} by WADO-RS: retrieve(method='wado') into a fresh library (QIDO count, parse, "
                "store, index)", sec["ours_wado"], "s", at_most=WADO_GOAL_S,
                peer=f"curl {v['curl']} -o FILE of the same multipart URL, whole process", peer_value=sec["curl"]),
         "ours_wado", "curl"),
    ]
    entries.append((result("  the same WADO-RS retrieve, in instances/s", COUNT / sec["ours_wado"], "instances/s",
                           peer="curl, as above", peer_value=COUNT / sec["curl"]), "ours_wado", "curl"))
    for entry, ours, peer in entries:
        entry["seconds"], entry["peer_seconds"] = round(sec[ours], 4), round(sec[peer], 4)
        entry["speed_ratio"] = round(sec[peer] / sec[ours], 4)  # peer seconds / our seconds
        entry["runs"] = [round(t, 3) for t in times[ours]]
        entry["peer_runs"] = [round(t, 3) for t in times[peer]]
    return [entry for entry, _, _ in entries]


def _rounds(work: Path, orthanc, study_uid: str, uids: set[str], move_port: int, peer_port: int,
            tools: dict[str, str]) -> dict[str, list[float]]:
    from app.library.library import Library
    from app.pacs.config import DICOMWEB, DIMSE, DicomWebOptions, DimseOptions, PacsConfig
    from app.pacs.receiver import StorageServer
    from app.pacs.retrieve import retrieve

    dimse = PacsConfig(DIMSE, "Bench", orthanc.aet, dimse=DimseOptions(
        "127.0.0.1", orthanc.dicom_port, local_aets=["LIGHTBOX"], test_aet="LIGHTBOX", query_aet="LIGHTBOX",
        move_aet="LIGHTBOX", move_port=move_port))
    web = PacsConfig(DICOMWEB, "Bench web", "ORTHANCWEB", dicomweb=DicomWebOptions(
        orthanc.dicomweb_url, auth="basic", user=orthanc.user))
    nodelay = dict(os.environ, TCP_NODELAY="1")
    keys = ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}"]
    host = ["127.0.0.1", str(orthanc.dicom_port)]
    serial = iter(range(1_000_000))

    def fresh(kind: str) -> Path:
        folder = work / f"{kind}-{next(serial)}"
        folder.mkdir()
        return folder

    def ours(config, method, secret=None, server=False):
        def go() -> float:
            root = fresh(f"library-{method}")
            library = Library(root)
            scp = StorageServer("LIGHTBOX", move_port, lambda *item: None).start() if server else None
            try:
                start = time.perf_counter()
                outcome = retrieve(config, study_uid, method=method, library=library, secret=secret)
                seconds = time.perf_counter() - start
                got = {i.sop_uid for i in library.instances(study_uid=study_uid)}
            finally:
                if scp is not None:
                    scp.stop()
                library.close()
                shutil.rmtree(root)
            imported = outcome.imported.count("imported")
            if not outcome.ok or imported != COUNT or got != uids:
                raise RuntimeError(f"retrieve({method}): {outcome.summary()}; the library holds {len(got)} of "
                                   f"the study's {COUNT} instances")
            return seconds
        return go

    def folder_check(name: str, out: Path) -> None:
        got = {p.name.split(".", 1)[1] for p in out.iterdir() if "." in p.name}  # files are named CT.<SOP UID>
        shutil.rmtree(out)
        if got != uids:
            raise RuntimeError(f"{name}: {len(got & uids)} of the study's {COUNT} instances in its folder")

    def getscu():
        out = fresh("getscu")
        seconds = _process([tools["getscu"], "-aet", "LIGHTBOX", "-aec", orthanc.aet, *keys, "-od", str(out), *host],
                           nodelay)
        folder_check("getscu", out)
        return seconds

    def movescu():
        out = fresh("storescp")
        scp = subprocess.Popen([tools["storescp"], "-aet", PEER_AET, "-od", str(out), str(peer_port)],
                               env=nodelay, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            _wait_listening(peer_port, scp)
            seconds = _process([tools["movescu"], "-aet", "LIGHTBOX", "-aec", orthanc.aet, "-aem", PEER_AET,
                                *keys, *host], nodelay)
        finally:
            scp.terminate()
            scp.wait(10)
        folder_check("movescu + storescp", out)
        return seconds

    def curl():
        out = fresh("curl") / "study.multipart"
        seconds = _process([tools["curl"], "-sSf", "--noproxy", "*", "-o", str(out),
                            "-u", f"{orthanc.user}:{orthanc.password}",
                            "-H", 'Accept: multipart/related; type="application/dicom"',
                            f"{orthanc.dicomweb_url}/studies/{study_uid}"])
        body = out.read_bytes()
        shutil.rmtree(out.parent)
        boundary = body.split(b"\r\n", 1)[0]  # "--BOUNDARY"
        parts = body.count(boundary + b"\r\n")
        if parts != COUNT or not all(uid.encode() in body for uid in uids):
            raise RuntimeError(f"curl: {parts} parts in the answer, not the study's {COUNT} instances")
        return seconds

    contenders = {"ours_get": ours(dimse, "get"), "getscu": getscu,
                  "ours_move": ours(dimse, "move"), "movescu": movescu,
                  "ours_move_running": ours(dimse, "move", server=True),
                  "ours_wado": ours(web, "wado", orthanc.password), "curl": curl}
    for go in contenders.values():  # warm-up: imports, first connections, page cache
        go()
    times: dict[str, list[float]] = {kind: [] for kind in contenders}
    order = list(contenders)
    for n in range(RUNS):
        for kind in (order if n % 2 == 0 else order[::-1]):
            times[kind].append(contenders[kind]())
    return times


def _process(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    seconds = time.perf_counter() - start
    text = (done.stderr + done.stdout).decode(errors="replace")
    if done.returncode != 0 or any(line.startswith("E: ") for line in text.splitlines()):  # dcmtk may exit 0
        raise RuntimeError(f"{Path(cmd[0]).name} exit {done.returncode}: {text.strip()[-300:]}")
    return seconds


def _wait_listening(port: int, process: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"storescp exited at start (code {process.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"storescp does not listen on port {port}") from None
            time.sleep(0.01)




if __name__ == "__main__":
    for e in run():
        print(f"{e['name']}\n  ours {e['seconds']:.3f} s, peer {e['peer_seconds']:.3f} s; "
              f"{COUNT / e['seconds']:.0f} vs {COUNT / e['peer_seconds']:.0f} instances/s; "
              f"peer/ours {e['speed_ratio']:.3g}" + (f"; goal {e['goal']}: {'met' if e['ok'] else 'MISSED'}"
                                                      if e["goal"] else ""))
