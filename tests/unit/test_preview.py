"""Reduced-resolution JPEG 2000 previews, and that nothing asked of a preview decodes the full frame."""

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

from app.dicom import display
from app.dicom.pixels import Image
from app.dicom.series import open_paths, thumbnail
from tests.conftest import SAMPLE


@pytest.fixture(scope="module")
def j2k_file(tmp_path_factory):
    ds = pydicom.dcmread(SAMPLE / "dx" / "thorax_lateral.dcm")
    arr = ds.pixel_array[:512, :640].copy()
    ds.Rows, ds.Columns = arr.shape
    ds.compress(JPEG2000Lossless, arr, generate_instance_uid=False)
    path = tmp_path_factory.mktemp("j2k") / "dx.dcm"
    ds.save_as(path)
    return path, arr


def test_the_preview_is_the_image_at_a_lower_resolution(j2k_file):
    path, arr = j2k_file
    image = Image(pydicom.dcmread(path))
    pixels, factor = image.preview(0, 150)
    assert factor == 4 and pixels.shape == (128, 160) and pixels.dtype == np.uint16
    blocks = arr.reshape(128, 4, 160, 4).mean(axis=(1, 3))
    assert np.abs(pixels - blocks).mean() < 0.02 * (arr.max() - arr.min())  # same values, not scaled
    assert not image.has_frame(0)


def test_presets_windows_and_renders_of_a_preview_leave_the_frame_undecoded(j2k_file):
    path, _ = j2k_file
    ds = pydicom.dcmread(path)
    for kw in ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation"):
        delattr(ds, kw)  # no file window: the automatic window needs pixels
    image = Image(ds)
    pixels, factor = image.preview(0, 150)
    voi = display.default_voi(image, pixels=pixels)
    assert isinstance(voi, display.Window) and voi.function == "LINEAR_EXACT"
    names = [p.name for p in display.presets(image, 0, pixels)]
    assert names == ["Auto", "Full range"]
    renderer = display.Renderer(image, 0, pixels=pixels, scale=factor)
    renderer.set_region((0, 0, 640, 512), 320, 256)
    assert renderer.render(voi).shape == (256, 320)
    assert not image.has_frame(0)


def test_no_preview_where_the_codec_has_none():
    ds = pydicom.dcmread(SAMPLE / "dx" / "thorax_lateral.dcm")
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    assert Image(ds).preview(0, 100) is None


def test_a_thumbnail_of_a_jpeg2000_series_comes_from_the_preview(j2k_file):
    path, _ = j2k_file
    series = open_paths([path]).series[0]
    thumb = thumbnail(series, 96)
    assert thumb.shape == (77, 96) and thumb.std() > 5
    assert not series.instances[0].image().has_frame(0)
