"""The frozen app (make package -> dist/lightbox/) runs on its own: version, info and render on the sample,
JPEG 2000 decoding (pylibjpeg plugins found through their entry points), the import's worker processes,
and a deep link fetched over HTTPS. Skipped when the bundle has not been built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless, generate_uid

from app import __version__
from tests.conftest import ROOT
from tests.unit.helpers import image_dataset, to_bytes

BUNDLE = ROOT / "dist" / "lightbox"
EXE = BUNDLE / ("lightbox.exe" if sys.platform == "win32" else "lightbox")
BUNDLED_SAMPLE = BUNDLE / "_internal" / "resources" / "sample"

# The suite skips these until `make package` has built the bundle; `make package-test` (CI's step after the build)
# sets LIGHTBOX_REQUIRE_BUNDLE, and a missing bundle then fails.
if os.environ.get("LIGHTBOX_REQUIRE_BUNDLE") and not EXE.is_file():
    raise RuntimeError(f"the frozen app {EXE} is missing: `make package` did not build it")
pytestmark = [pytest.mark.skipif(not EXE.is_file(), reason="no frozen app: run `make package` first"),
              pytest.mark.timeout(120)]


def frozen(*args, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """The frozen binary, in a neutral folder (nothing from the source tree on its path)."""
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or BUNDLE.parent, env=dict(os.environ))


def source(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=dict(os.environ))


def j2k_file(path: Path, seed: int = 7) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 4096, (96, 128), dtype=np.uint16)
    ds = image_dataset(pixels, bits_stored=12, modality="DX", PatientName="Frozen^Rex")
    ds.compress(JPEG2000Lossless)
    path.write_bytes(to_bytes(ds))
    return path


def test_version():
    run = frozen("--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"Lightbox {__version__}"


def test_the_sample_study_is_in_the_bundle_and_info_reads_it():
    run = frozen("info", BUNDLED_SAMPLE / "dx" / "thorax_lateral.dcm", "--json")
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert "Golden Retriever" in text and "Hendricks" in text
    assert len(list((BUNDLED_SAMPLE / "ct").glob("*.dcm"))) == len(list((ROOT / "resources/sample/ct").glob("*.dcm")))


def test_render_of_the_sample_matches_the_source_app(tmp_path):
    sample = BUNDLED_SAMPLE / "dx" / "thorax_lateral.dcm"  # RLE Lossless
    assert frozen("render", sample, "-o", tmp_path / "frozen.png").returncode == 0
    assert source("render", sample, "-o", tmp_path / "source.png").returncode == 0
    ours, theirs = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in ("frozen", "source"))
    assert ours.shape == theirs.shape and ours.std() > 0
    assert np.array_equal(ours, theirs)


def test_the_frozen_app_decodes_jpeg_2000(tmp_path):
    path = j2k_file(tmp_path / "j2k.dcm")
    info = frozen("info", path)
    assert info.returncode == 0 and "JPEG 2000" in info.stdout, info.stderr
    run = frozen("render", path, "-o", tmp_path / "frozen.png", "--preset", "Full range")
    assert run.returncode == 0, run.stderr
    assert source("render", path, "-o", tmp_path / "source.png", "--preset", "Full range").returncode == 0
    ours = np.asarray(Image.open(tmp_path / "frozen.png"))
    assert ours.std() > 0 and np.array_equal(ours, np.asarray(Image.open(tmp_path / "source.png")))


def test_a_large_import_runs_its_worker_processes(tmp_path, lightbox_home):
    folder = tmp_path / "many"
    folder.mkdir()
    pixels = np.zeros((8, 8), dtype=np.uint16)
    study, series = generate_uid(), generate_uid()
    for n in range(210):  # above the importer's PARALLEL_FROM: spawned workers re-run the frozen binary
        ds = image_dataset(pixels + n, modality="CT", InstanceNumber=n + 1)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        (folder / f"{n:03d}.dcm").write_bytes(to_bytes(ds))
    run = frozen("import", folder, "--json")
    assert run.returncode == 0, run.stderr
    statuses = [e["status"] for e in json.loads(run.stdout)["entries"]]
    assert statuses == ["imported"] * 210


def test_open_a_deep_link_over_https(https_server, lightbox_home, tmp_path):
    path = j2k_file(tmp_path / "link.dcm", seed=11)
    url = https_server.reply("/frozen/scan.dcm", path.read_bytes(), content_type="application/dicom")
    link = "lightbox://open-image-url/?location=" + quote(url + "?sig=a%2Bb", safe="")
    run = frozen("open", link, "--no-gui", "--json")  # REQUESTS_CA_BUNDLE: the test CA (ca_bundle)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert [e["status"] for e in out["entries"]] == ["imported"]
    assert "/frozen/scan.dcm?sig=a%2Bb" in [seen.target for seen in https_server.requests]  # decoded once

    from app.library import Library

    with Library() as library:
        assert library.counts()["instances"] == 1
