"""Every file bundled with pydicom either renders through Lightbox exactly as pydicom's own functions
say it should (to within one grey level), or fails with a LightboxError.

The reference is computed only with pydicom (pixel_array, apply_modality_lut, apply_windowing,
apply_voi, apply_color_lut) and numpy, never with app.dicom.display.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, apply_windowing

from app.dicom import display
from app.dicom.pixels import Image
from app.dicom.reading import read
from app.errors import LightboxError
from tests.unit.helpers import PYDICOM_TEST_FILES

FILES = sorted(p.relative_to(PYDICOM_TEST_FILES).as_posix() for p in PYDICOM_TEST_FILES.rglob("*") if p.is_file())
SMALL_MULTIFRAME = 1_000_000  # samples; larger multi-frame files are checked at first, middle and last frame


def test_the_bundled_files_are_there():
    # The parametrised tests below would silently shrink if pydicom stopped bundling its files.
    assert len(FILES) > 100
    assert "CT_small.dcm" in FILES and "examples_palette.dcm" in FILES and "rtdose.dcm" in FILES


# -- the reference, from pydicom alone ----------------------------------------------------------

def reference_decode(path: Path):
    """(dataset, all frames as pydicom decodes them), or None when pydicom cannot decode the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
            arr = ds.pixel_array  # colour comes back as RGB (YBR converted), palette as indices
        except Exception:  # noqa: BLE001 - any failure means "pydicom cannot decode it"
            return None
    frames = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel") or 1)
    if frames == 1:
        arr = arr[np.newaxis]
    assert arr.ndim == (4 if samples > 1 else 3)
    return ds, arr


def frames_to_check(ds, arr) -> list[int]:
    n = arr.shape[0]
    if arr.size <= SMALL_MULTIFRAME:
        return list(range(n))
    return sorted({0, n // 2, n - 1})


def _first(value):
    return value[0] if isinstance(value, pydicom.multival.MultiValue) else value


def _window_output_range(ds) -> tuple[float, float]:
    """ymin..ymax of the window function's output as PS3.3 C.11.2.1.2 and pydicom define it."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    if int(ds.PixelRepresentation) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = lo * slope + intercept, hi * slope + intercept
    return lo, hi


def reference_grey(ds, stored: np.ndarray) -> np.ndarray:
    modality = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        out = apply_windowing(modality.copy(), ds, index=0)
        ymin, ymax = _window_output_range(ds)
        unit = (out - ymin) / (ymax - ymin)
    elif ds.get("VOILUTSequence"):
        out = apply_voi(modality.copy(), ds, index=0)
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        unit = np.asarray(out, dtype=np.float64) / (2**bits - 1)
    else:
        lo, hi = modality.min(), modality.max()
        unit = (modality - lo) / (hi - lo) if hi > lo else np.zeros_like(modality)
    unit = np.clip(unit, 0.0, 1.0)
    if str(ds.PhotometricInterpretation).strip() == "MONOCHROME1":
        unit = 1.0 - unit
    return np.rint(unit * 255.0)


def reference_colour(ds, stored: np.ndarray) -> np.ndarray:
    top = 2 ** int(ds.BitsStored) - 1
    return np.rint(stored.astype(np.float64) / top * 255.0)


def reference_palette(ds, stored: np.ndarray) -> np.ndarray:
    rgb = apply_color_lut(stored, ds)
    bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    return np.rint(rgb.astype(np.float64) / (2**bits - 1) * 255.0)


def reference_display(ds, stored: np.ndarray) -> np.ndarray:
    photometric = str(ds.PhotometricInterpretation).strip()
    if photometric == "PALETTE COLOR":
        return reference_palette(ds, stored)
    if int(ds.get("SamplesPerPixel") or 1) == 3:
        return reference_colour(ds, stored)
    return reference_grey(ds, stored)


# -- our pipeline -------------------------------------------------------------------------------

def ours(path: Path, frame: int) -> np.ndarray:
    image = Image(read(path), path.name)
    voi = display.default_voi(image, frame, auto_for_projection=False)
    return display.render(image, frame, voi)


def render_all_frames(path: Path) -> None:
    image = Image(read(path), path.name)
    for frame in range(image.frames):
        voi = display.default_voi(image, frame, auto_for_projection=False)
        display.render(image, frame, voi)


@pytest.mark.parametrize("name", FILES)
def test_bundled_file_matches_pydicom_or_fails_cleanly(name):
    path = PYDICOM_TEST_FILES / name
    decoded = reference_decode(path)
    if decoded is None:
        # pydicom cannot decode it (not DICOM, no pixel data, damaged, no decoder): neither can we,
        # and we must say so with one of our own errors.
        with pytest.raises(LightboxError) as info:
            render_all_frames(path)
        assert str(info.value).strip()
        return
    ds, arr = decoded
    for frame in frames_to_check(ds, arr):
        got = ours(path, frame)
        want = reference_display(ds, arr[frame])
        assert got.dtype == np.uint8
        assert got.shape == want.shape, f"{name} frame {frame + 1}: shape {got.shape}, expected {want.shape}"
        diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
        worst = np.unravel_index(np.argmax(diff), diff.shape)
        assert diff.max() <= 1, (
            f"{name} frame {frame + 1}: display value {got[worst]} at {worst}, pydicom says {want[worst]}"
        )
