"""Shrinking averages blocks first, so fine detail does not alias into false patterns."""

import numpy as np
import pytest

from app.dicom import display
from app.dicom.display import resample, resample_smooth


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32])
def test_an_integer_shrink_is_the_mean_of_each_block(dtype):
    rng = np.random.default_rng(1)
    arr = rng.integers(-100 if np.dtype(dtype).kind in "if" else 0, 200, size=(60, 90)).astype(dtype)
    out = resample_smooth(arr, (0, 0, 90, 60), 30, 20)
    expected = arr.astype(np.float64).reshape(20, 3, 30, 3).mean(axis=(1, 3))
    assert out.dtype == arr.dtype and out.shape == (20, 30)
    assert np.abs(out.astype(np.float64) - expected).max() <= 0.5 + 1e-6


def test_a_fine_checkerboard_shrinks_to_grey_not_to_a_pattern():
    board = (np.indices((400, 400)).sum(axis=0) % 2 * 1000).astype(np.uint16)
    nearest = resample(board, (0, 0, 400, 400), 100, 100)
    smooth = resample_smooth(board, (0, 0, 400, 400), 100, 100)
    assert np.unique(nearest).tolist() in ([0], [1000])  # aliasing: a flat extreme, not the mean
    assert np.all(smooth == 500)


def test_colour_is_averaged_per_channel_and_regions_keep_their_place():
    arr = np.zeros((40, 40, 3), dtype=np.uint8)
    arr[:, 20:, 0] = 200  # right half red
    out = resample_smooth(arr, (10, 0, 40, 40), 10, 13)
    assert out.shape == (13, 10, 3)
    assert out[:, :3, 0].max() == 0 and out[:, 4:, 0].min() == 200


def test_a_rendered_thumbnail_of_a_fine_pattern_is_smooth():
    import pydicom
    from pydicom.dataset import FileMetaDataset

    from app.dicom.pixels import Image

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    board = (np.indices((256, 256)).sum(axis=0) % 2 * 4095).astype(np.uint16)
    ds.Rows = ds.Columns = 256
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = board.tobytes()
    image = Image(ds, "board")
    out = display.render(image, 0, display.Window(2048, 4096), longest_side=64)
    assert out.shape == (64, 64) and out.std() < 1
