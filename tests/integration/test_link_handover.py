"""Two real Lightbox processes: a link opened while one runs reaches its window and its library;
opened while none runs, it starts one."""

import json
import os
import subprocess
import sys
import time
from urllib.parse import quote

import numpy as np
import pytest

from app.desktop.single_instance import server_name
from app.library import Library
from tests.conftest import ROOT
from tests.unit.helpers import image_dataset, to_bytes


def radiograph() -> bytes:
    ds = image_dataset(np.arange(256 * 256, dtype=np.uint16).reshape(256, 256) % 4096, modality="DX",
                       PatientName="Hendricks^Bailey", PatientID="VET-1", PatientSpeciesDescription="Canine",
                       ResponsiblePerson="Hendricks^Anna")
    return to_bytes(ds)


def link_to(url: str) -> str:
    return "lightbox://open-image-url/?location=" + quote(url, safe="")


def wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def env(ca_bundle, tmp_path):
    timings = tmp_path / "timings.jsonl"
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen", "LIGHTBOX_TIMINGS": str(timings)}, timings


def lightbox(*args, env):
    return subprocess.Popen([sys.executable, "-m", "app", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_link_opened_while_lightbox_runs_goes_to_the_running_window(https_server, env):
    env, timings = env
    first = lightbox(env=env)
    try:
        wait_for(lambda: os.path.exists(server_name()) or first.poll() is not None, 30, "the first Lightbox")
        assert first.poll() is None, first.stderr.read()
        data = radiograph()
        https_server.reply("/handover/dx.dcm", data, content_type="application/dicom")
        second = lightbox("open", link_to(https_server.url("/handover/dx.dcm")), env=env)
        out, err = second.communicate(timeout=30)
        assert second.returncode == 0 and err == "", err  # handed over: no window of its own
        sop = pydicom_uid(data)

        def arrived():
            with Library() as library:
                return library.counts()["instances"] and library.instance(sop)

        instance = wait_for(arrived, 30, "the instance in the first Lightbox's library")
        assert instance.source == "link" and instance.path.read_bytes() == data
        record = json.loads(wait_for(lambda: timings.exists() and timings.read_text(), 30, "the image on screen"))
        assert record["handover_ms"] is not None and record["decode_render_ms"] >= 0
    finally:
        first.terminate()
        first.wait(15)


def test_a_link_opened_while_lightbox_is_closed_starts_it(https_server, env):
    env, timings = env
    data = radiograph()
    https_server.reply("/cold/dx.dcm", data, content_type="application/dicom")
    started = lightbox("open", link_to(https_server.url("/cold/dx.dcm")),
                       env={**env, "LIGHTBOX_QUIT_AFTER_SHOWN": "1"})
    out, err = started.communicate(timeout=60)
    assert started.returncode == 0, err
    with Library() as library:
        assert library.instance(pydicom_uid(data)).source == "link"
    assert json.loads(timings.read_text())["handover_ms"] is None  # it was not handed over


def pydicom_uid(data: bytes) -> str:
    from app.dicom.reading import read

    return str(read(data, header_only=True).SOPInstanceUID)
