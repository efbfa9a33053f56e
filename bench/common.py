"""Shared helpers for the benchmarks: timing, result entries, test data in bench/data/ (git-ignored)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
PYTHON = sys.executable  # run.py is started with the project's venv python

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# -- timing -----------------------------------------------------------------------------------------

def timed(fn, *args, **kwargs) -> float:
    """Seconds one call of fn takes."""
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def median_of(times: list[float]) -> float:
    return statistics.median(times)


def median_time(fn, runs: int) -> float:
    """Median seconds of `runs` calls of fn()."""
    return median_of([timed(fn) for _ in range(runs)])


class ProcessFailed(Exception):
    """A timed subprocess exited with an error or ran past its timeout."""


def run_process(cmd: list[str], *, env: dict | None = None, timeout: float = 60.0) -> float:
    """Seconds from spawn to exit of one command; raises ProcessFailed on timeout or a non-zero exit."""
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ProcessFailed(f"no exit within {timeout:g} s") from None
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        lines = (done.stderr + done.stdout).decode(errors="replace").strip().splitlines()
        errors = [line for line in lines if "error" in line.lower()] or lines or ["no output"]
        raise ProcessFailed(f"exit {done.returncode}: {errors[-1].strip()}")
    return elapsed


def process_median(cmd: list[str], runs: int, *, env: dict | None = None, timeout: float = 60.0) -> float:
    return median_of([run_process(cmd, env=env, timeout=timeout) for _ in range(runs)])


def app_env(home: str | os.PathLike, **extra: str) -> dict:
    """The environment for running Lightbox as a subprocess, with its files moved to `home`."""
    return dict(os.environ, LIGHTBOX_HOME=str(home), **extra)


# -- result entries ---------------------------------------------------------------------------------

def result(name: str, value: float | None, unit: str, *, at_most: float | None = None,
           peer: str | None = None, peer_value: float | None = None, ratio_at_most: float | None = None,
           error: str | None = None) -> dict:
    """One figure. `at_most` is a goal on the value, `ratio_at_most` a goal on value / peer_value."""
    ratio = value / peer_value if value is not None and peer_value else None
    entry = {"name": name, "value": _round(value), "unit": unit, "goal": None,
             "peer": peer, "peer_value": _round(peer_value), "ratio": _round(ratio)}
    if at_most is not None:
        entry["goal"] = f"<= {at_most:g} {unit}"
        entry["ok"] = value is not None and value <= at_most
    elif ratio_at_most is not None:
        entry["goal"] = f"ratio <= {ratio_at_most:g}"
        entry["ok"] = ratio is not None and ratio <= ratio_at_most
    if error:
        entry["error"] = error
        entry["ok"] = False
    return entry


def _round(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.4g}")


# -- test data --------------------------------------------------------------------------------------

RADIOGRAPH_SIZE = 3000
_VERSION = "v1"  # change when the generator changes, so cached files are remade


def radiograph_pixels(size: int = RADIOGRAPH_SIZE):
    """A 12-bit DX-like image: a soft-edged body, two long bones with cortex, soft tissue texture,
    a collimated border, and quantum noise, so lossless compression behaves as on real radiographs."""
    import numpy as np

    rng = np.random.default_rng(1234)
    t = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    y, x = t[:, None], t[None, :]
    body = 1.0 / (1.0 + np.exp((np.hypot(x / 0.75, y / 0.95) - 1.0) * 25.0))
    texture = 0.15 * np.sin(7.0 * x + 3.0 * y) * np.cos(5.0 * y - 2.0 * x) + 0.1 * np.sin(13.0 * y)
    bones = np.zeros_like(body)
    for cx, angle in ((-0.3, 0.15), (0.3, -0.1)):
        u = (x - cx) * np.cos(angle) - y * np.sin(angle)  # distance across the shaft
        v = (x - cx) * np.sin(angle) + y * np.cos(angle)  # along it
        r = np.abs(u) / (0.09 + 0.04 * v * v)
        shaft = np.clip(1.0 - r * r, 0.0, None)
        cortex = np.exp(-((r - 0.9) ** 2) / 0.01)
        bones += (0.5 * shaft + 0.6 * cortex) * (np.abs(v) < 0.85)
    signal = 250.0 + 1800.0 * body * (1.0 + texture) + 1200.0 * bones * body
    signal += rng.normal(0.0, 1.0, signal.shape).astype(np.float32) * np.sqrt(signal) * 0.8
    collimated = (np.abs(x) > 0.93) | (np.abs(y) > 0.96)
    signal[collimated] = 3900.0 + rng.normal(0.0, 20.0, int(collimated.sum()))
    return np.clip(np.rint(signal), 0, 4095).astype(np.uint16)


def _radiograph_dataset(arr):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Bench^Radiograph", "BENCH1", "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImagerPixelSpacing = [0.139, 0.139]
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    ds.PixelData = arr.tobytes()
    return ds


def radiograph(kind: str = "explicit") -> Path:
    """The cached 3000x3000 DX file: kind "explicit" (Explicit VR Little Endian) or "j2k" (JPEG 2000 lossless)."""
    path = DATA / f"dx{RADIOGRAPH_SIZE}-{_VERSION}-{kind}.dcm"
    if path.exists():
        return path
    from pydicom.uid import JPEG2000Lossless

    DATA.mkdir(parents=True, exist_ok=True)
    arr = radiograph_pixels()
    ds = _radiograph_dataset(arr)
    if kind == "j2k":
        ds.compress(JPEG2000Lossless, arr)
    elif kind != "explicit":
        raise ValueError(f"unknown radiograph kind {kind!r}")
    tmp = path.with_name(path.name + ".part")
    ds.save_as(tmp, enforce_file_format=True)
    tmp.replace(path)
    return path


# -- test data --------------------------------------------------------------------------------------

def small_ct_study(name: str, count: int, matrix: int, *, series: int = 1, seed: int = 0, patient: str = "Bench^CT",
                   patient_id: str = "BENCH", date: str = "20250101", description: str = "CT") -> list[Path]:
    """A cached CT study in bench/data/<name>: `count` 16-bit slices of matrix x matrix random values, in `series`
    series of equal size; made once (a `.complete` mark), then reused."""
    import shutil

    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder = DATA / name
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        study, frame = generate_uid(), generate_uid()
        series_uids = [generate_uid() for _ in range(series)]
        per_series = count // series
        for n in range(count):
            s, k = divmod(n, per_series)
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.PatientName, ds.PatientID, ds.PatientSpeciesDescription = patient, patient_id, "Canine"
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uids[s], frame
            ds.StudyDate, ds.StudyTime, ds.Modality, ds.StudyDescription = date, "090000", "CT", description
            ds.SeriesNumber, ds.InstanceNumber = s + 1, k + 1
            ds.ImagePositionPatient, ds.ImageOrientationPatient = [-125.0, -125.0, -1.0 * k], [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 1.0
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.Rows = ds.Columns = matrix
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
            ds.PixelData = rng.integers(-1000, 2000, (matrix, matrix)).astype("int16").tobytes()
            ds.save_as(folder / f"ct{n:03d}.dcm", enforce_file_format=True)
        (folder / ".complete").write_text("ok\n")
    return sorted(folder.glob("*.dcm"))


def rate_floor(name: str, value: float, peer: str, peer_value: float, goal: float) -> dict:
    """A rate in instances/s (higher is better) whose goal is a floor on ours / peer."""
    entry = result(name, value, "instances/s", peer=peer, peer_value=peer_value)
    entry["goal"] = f"ratio >= {goal:g}"
    entry["ok"] = entry["ratio"] is not None and entry["ratio"] >= goal
    return entry


def tool_version(exe: str) -> str:
    """A peer tool's version: dcmtk's "$dcmtk: getscu v3.6.7 2022-04-22 $", or curl's "curl 7.88.1 ..."."""
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.split()
    if Path(exe).name != "curl":
        return next((w for w in out if w.startswith("v")), "?")
    return out[1] if len(out) > 1 else "?"
