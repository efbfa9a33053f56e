"""Decode + first render of a 3000x3000 DX (uncompressed and JPEG 2000 lossless), against dcmtk's dcmj2pnm."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import common
from common import PYTHON, ProcessFailed, median_of, process_median, result

RUNS = 5
VIEWPORT = 1024
KINDS = {"explicit": "uncompressed", "j2k": "JPEG 2000 lossless"}


def first_render(path: Path) -> dict[str, float]:
    """Open a file and show it in a viewport as the viewer does (smooth shrink), from nothing cached; seconds per stage."""
    from app.dicom import display
    from app.dicom.pixels import Image
    from app.dicom.reading import read
    from app.ui.images import to_qimage

    t0 = time.perf_counter()
    ds = read(path)
    t1 = time.perf_counter()
    image = Image(ds, str(path))
    image.frame(0)
    t2 = time.perf_counter()
    voi = display.default_voi(image)
    renderer = display.Renderer(image)
    renderer.set_region((0, 0, image.columns, image.rows), VIEWPORT, VIEWPORT, smooth=True)
    to_qimage(renderer.render(voi))
    t3 = time.perf_counter()
    return {"read": t1 - t0, "decode": t2 - t1, "render": t3 - t2, "total": t3 - t0}


def first_preview(path: Path) -> float:
    """Seconds to the viewer's first picture of a JPEG 2000 file: a reduced-resolution decode."""
    from app.dicom import display
    from app.dicom.pixels import Image
    from app.dicom.reading import read
    from app.ui.images import to_qimage

    t0 = time.perf_counter()
    image = Image(read(path), str(path))
    pixels, factor = image.preview(0, VIEWPORT)
    voi = display.default_voi(image, pixels=pixels)
    renderer = display.Renderer(image, pixels=pixels, scale=factor)
    renderer.set_region((0, 0, image.columns, image.rows), VIEWPORT, VIEWPORT, smooth=True)
    to_qimage(renderer.render(voi))
    return time.perf_counter() - t0


def run() -> list[dict]:
    files = {kind: common.radiograph(kind) for kind in KINDS}
    first_render(files["explicit"])  # warm up imports and the page cache, as dcmj2pnm gets below
    out: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="lightbox-bench-") as tmp:
        tmp = Path(tmp)
        dcmtk = _dcmtk(files["explicit"], tmp, out)
        for kind, label in KINDS.items():
            stages = [first_render(files[kind]) for _ in range(RUNS)]
            total = median_of([s["total"] for s in stages]) * 1e3
            pgm = dcmtk.get("pgm")
            out.append(result(
                f"in-process decode + first render, {label} ({VIEWPORT}px viewport) "
                f"vs dcmj2pnm uncompressed -> PGM whole process", total, "ms",
                peer=pgm and "dcmj2pnm +Wi 1 (uncompressed) -> PGM, whole process", peer_value=pgm,
                ratio_at_most=1.0))
            for stage in ("read", "decode", "render"):
                value = median_of([s[stage] for s in stages]) * 1e3
                out.append(result(f"  first render, {label}: {stage} stage", value, "ms"))
        pgm = dcmtk.get("pgm")
        preview = median_of([first_preview(files["j2k"]) for _ in range(RUNS)]) * 1e3
        out.append(result(
            f"in-process first picture, JPEG 2000 lossless via reduced-resolution preview ({VIEWPORT}px viewport) "
            f"vs dcmj2pnm uncompressed -> PGM whole process", preview, "ms",
            peer=pgm and "dcmj2pnm +Wi 1 (uncompressed) -> PGM, whole process", peer_value=pgm, ratio_at_most=1.0))
        for kind, label in KINDS.items():
            png = dcmtk.get("png")
            cmd = [PYTHON, "-m", "app", "render", str(files[kind]), "-o", str(tmp / f"ours-{kind}.png")]
            name = f"whole process: lightbox render {label} -> PNG vs dcmj2pnm uncompressed -> PNG"
            peer = png and "dcmj2pnm +Wi 1 --write-png (uncompressed), whole process"
            try:
                ours = process_median(cmd, RUNS, env=common.app_env(tmp / "home")) * 1e3
                out.append(result(name, ours, "ms", peer=peer, peer_value=png, ratio_at_most=1.0))
            except ProcessFailed as exc:
                out.append(result(name, None, "ms", peer=peer, peer_value=png, ratio_at_most=1.0, error=str(exc)))
    return out


def _dcmtk(path: Path, tmp: Path, out: list[dict]) -> dict[str, float]:
    """dcmj2pnm's whole-process times (ms) to PGM and PNG; an error entry when it is missing or fails."""
    exe = shutil.which("dcmj2pnm")
    if exe is None:
        out.append(result("dcmj2pnm (peer)", None, "ms", error="dcmj2pnm not found (apt-get install dcmtk)"))
        return {}
    times = {}
    for fmt, extra in (("pgm", []), ("png", ["--write-png"])):
        try:
            cmd = [exe, "+Wi", "1", *extra, str(path), str(tmp / f"dcmtk.{fmt}")]
            times[fmt] = process_median(cmd, RUNS) * 1e3
        except ProcessFailed as exc:
            out.append(result(f"dcmj2pnm -> {fmt.upper()} (peer)", None, "ms", error=str(exc)))
    return times
