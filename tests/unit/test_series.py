from pathlib import Path

import pytest

from app.dicom import series as series_mod
from app.dicom.series import open_paths
from app.errors import UsageError
from tests.conftest import SAMPLE


def test_the_sample_opens_as_two_series_in_order():
    opened = open_paths([SAMPLE])
    assert [s.modality for s in opened.series] == ["DX", "CT"]
    ct = opened.series[1]
    assert [i.instance_number for i in ct.instances] == list(range(1, 25))
    assert ct.frame_count == 24 and opened.count == 25 and not opened.problems
    assert ct.patient.species == "Canine" and ct.patient.owner == "Hendricks^Anna"


def test_problems_are_listed_and_the_rest_opens(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    opened = open_paths([SAMPLE / "dx", tmp_path / "notes.txt", tmp_path / "missing.dcm"])
    assert opened.count == 1
    reasons = dict((Path(p).name, r) for p, r in opened.problems)
    assert reasons == {"notes.txt": "not a DICOM file", "missing.dcm": "file not found"}


def test_the_same_instance_twice_is_listed_once():
    dx = SAMPLE / "dx" / "thorax_lateral.dcm"
    assert open_paths([dx, dx, SAMPLE / "dx"]).count == 1


def test_locate_walks_frames_across_instances():
    ct = open_paths([SAMPLE / "ct"]).series[0]
    instance, frame = ct.locate(23)
    assert instance.instance_number == 24 and frame == 0
    with pytest.raises(UsageError):
        ct.locate(24)


def test_the_image_cache_keeps_within_its_byte_budget(monkeypatch):
    monkeypatch.setattr(series_mod, "_images", type(series_mod._images)())
    monkeypatch.setattr(series_mod, "_IMAGE_CACHE_BYTES", 300_000)
    ct = open_paths([SAMPLE / "ct"]).series[0]
    for inst in ct.instances[:6]:
        inst.image().frame(0)  # 128 KB decoded + ~24 KB encoded each
    # checked as each image is added: the oldest go, the newest stay
    assert 1 <= len(series_mod._images) <= 3
    assert str(ct.instances[0].path) not in series_mod._images
    assert str(ct.instances[5].path) in series_mod._images
