"""VOI (window/level, VOI LUTs), presets, invert, the lookup table and the viewport region."""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import RLELossless

from app.dicom import display
from app.dicom.display import FUNCTIONS, Renderer, VoiLut, Window, apply_window, resample
from app.dicom.pixels import Image
from app.dicom.reading import read
from app.errors import PixelDataError, UsageError
from tests.unit.helpers import ct_dataset, image_dataset, lut_item, sequence, to_bytes

FAST = settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def image_of(ds) -> Image:
    """Through the real reader, as a file would come in."""
    return Image(read(to_bytes(ds), name="test.dcm"), "test.dcm")


def ct_of_hu(hu, **attrs) -> Image:
    """A CT image whose pixels are exactly the Hounsfield values `hu` (stored = HU + 1024)."""
    hu = np.atleast_2d(np.asarray(hu, dtype=np.int64))
    return image_of(ct_dataset((hu + 1024).astype(np.int16), **attrs))


def as_list(arr) -> list[int]:
    return [int(v) for v in np.ravel(arr)]


# -- the window functions, PS3.3 C.11.2.1.2 and C.11.2.1.3 --------------------------------------

@pytest.mark.parametrize(
    "center, width, x, expected",
    [
        # The worked examples in C.11.2.1.2.1, output range 0..255.
        (2048, 4096, 0, 0.0),
        (2048, 4096, -10, 0.0),
        (2048, 4096, 4095, ((4095 - 2047.5) / 4095 + 0.5) * 255),
        (2048, 4096, 4096, 255.0),
        (2048, 4096, 2047.5, 127.5),
        (2048, 4096, 1000, ((1000 - 2047.5) / 4095 + 0.5) * 255),
        (0, 100, -50, 0.0),
        (0, 100, -49, ((-49 + 0.5) / 99 + 0.5) * 255),
        (0, 100, 49, 255.0),
        (0, 100, 50, 255.0),
        (0, 100, 10, ((10 + 0.5) / 99 + 0.5) * 255),
        (2048, 1, 2047.5, 0.0),
        (2048, 1, 2047.6, 255.0),
        (0, 1, -0.5, 0.0),
        (0, 1, -0.4, 255.0),
        # A CT soft-tissue window, c=40, w=400: x <= -160 -> 0, x > 239 -> 255.
        (40, 400, -1000, 0.0),
        (40, 400, -160, 0.0),
        (40, 400, -159, (-198.5 / 399 + 0.5) * 255),
        (40, 400, 39.5, 127.5),
        (40, 400, 40, (0.5 / 399 + 0.5) * 255),
        (40, 400, 140, (100.5 / 399 + 0.5) * 255),
        (40, 400, 239, 255.0),
        (40, 400, 3000, 255.0),
    ],
)
def test_linear_window_matches_the_standard(center, width, x, expected):
    got = apply_window(np.array([x], dtype=np.float64), Window(center, width))[0] * 255
    assert got == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    "x, expected",
    [(-160, 0.0), (-161, 0.0), (-159, 1 / 400), (40, 0.5), (140, 0.75), (240, 1.0), (241, 1.0), (239, 399 / 400)],
)
def test_linear_exact_window_matches_the_standard(x, expected):
    # C.11.2.1.3.2: x <= c - w/2 -> ymin; x > c + w/2 -> ymax; else (x - c)/w + 0.5
    got = apply_window(np.array([x], dtype=np.float64), Window(40, 400, "LINEAR_EXACT"))[0]
    assert got == pytest.approx(expected, abs=1e-12)


def test_linear_exact_allows_widths_below_one():
    w = Window(10, 0.5, "LINEAR_EXACT")
    assert w.width == 0.5
    got = apply_window(np.array([9.74, 9.76, 10.0, 10.24, 10.26]), w)
    assert got == pytest.approx([0.0, 0.02, 0.5, 0.98, 1.0], abs=1e-9)


@pytest.mark.parametrize("x", [-500, -160, 0, 40, 100, 240, 1000])
def test_sigmoid_window_matches_the_standard(x):
    # C.11.2.1.3.1: y = (ymax - ymin) / (1 + exp(-4 (x - c) / w)) + ymin
    got = apply_window(np.array([x], dtype=np.float64), Window(40, 400, "SIGMOID"))[0]
    assert got == pytest.approx(1 / (1 + math.exp(-4 * (x - 40) / 400)), rel=1e-12)
    if x == 40:
        assert got == pytest.approx(0.5)


def test_unknown_voi_function_is_linear():
    assert Window(40, 400, "CUBIC").function == "LINEAR"


def test_window_needs_numbers():
    with pytest.raises(UsageError):
        Window(float("nan"), 400)
    with pytest.raises(UsageError):
        Window(40, float("inf"))


@FAST
@given(
    center=st.floats(-5000, 5000),
    width=st.floats(0.01, 10000),
    function=st.sampled_from(FUNCTIONS),
    xs=st.lists(st.floats(-20000, 20000), min_size=2, max_size=40),
)
def test_window_output_is_monotone_and_in_range(center, width, function, xs):
    xs = np.sort(np.array(xs, dtype=np.float64))
    unit = apply_window(xs, Window(center, width, function))
    assert np.all(np.isfinite(unit))
    assert np.all((unit >= 0) & (unit <= 1))
    assert np.all(np.diff(unit) >= 0)


@FAST
@given(
    center=st.integers(-1500, 2500),
    width=st.integers(1, 4000),
    hu=st.lists(st.integers(-1024, 3071), min_size=1, max_size=64),
)
def test_rendered_window_is_monotone_in_the_input(center, width, hu):
    hu = np.sort(np.array(hu))
    out = display.render(ct_of_hu(hu), 0, Window(center, width))
    assert out.dtype == np.uint8
    assert np.all(np.diff(out.astype(int)) >= 0)


def test_soft_tissue_window_through_the_pipeline():
    hu = [-1000, -160, -159, 39, 40, 239, 240, 1000]
    out = display.render(ct_of_hu(hu), 0, Window(40, 400))
    assert as_list(out) == [0, 0, 1, 127, 128, 255, 255, 255]


# -- presets -------------------------------------------------------------------------------------

def test_ct_presets_put_the_files_own_windows_first():
    image = ct_of_hu(np.linspace(-1000, 2000, 64).reshape(8, 8).astype(int),
                     WindowCenter=[50, -500], WindowWidth=[350, 1400],
                     WindowCenterWidthExplanation=["SOFT TISSUE", "Lung (scanner)"])
    presets = display.presets(image)
    names = [p.name for p in presets]
    assert names == ["Soft Tissue", "Lung (scanner)", "Soft tissue", "Lung", "Bone", "Brain", "Auto", "Full range"]
    assert [p.source for p in presets] == ["file"] * 2 + ["modality"] * 4 + ["auto"] * 2
    assert presets[0].voi == Window(50, 350)
    assert presets[1].voi == Window(-500, 1400)
    ct = {p.name: p.voi for p in presets if p.source == "modality"}
    assert ct == {"Soft tissue": Window(40, 400), "Lung": Window(-600, 1500),
                  "Bone": Window(400, 1800), "Brain": Window(40, 80)}
    # A name matches without regard to case, dashes or underscores; the file's window wins a tie.
    assert display.find_preset(image, "soft-tissue").voi == Window(50, 350)
    assert display.find_preset(image, "LUNG").voi == Window(-600, 1500)
    assert display.find_preset(image, "full_range").name == "Full range"


def test_unknown_preset_names_the_choices():
    image = ct_of_hu([[0, 100]])
    with pytest.raises(UsageError) as info:
        display.find_preset(image, "Liver")
    assert "Liver" in str(info.value) and "Lung" in str(info.value) and "Full range" in str(info.value)


def test_non_ct_has_no_ct_presets():
    image = image_of(image_dataset(np.arange(64, dtype=np.uint16).reshape(8, 8), modality="MR",
                                   WindowCenter=30, WindowWidth=20))
    assert [p.name for p in display.presets(image)] == ["File window 1", "Auto", "Full range"]


def test_colour_images_offer_only_the_full_range():
    image = image_of(image_dataset(np.zeros((4, 4, 3), np.uint8)))
    assert [p.name for p in display.presets(image)] == ["Full range"]


def test_full_range_maps_the_smallest_value_to_black_and_the_largest_to_white():
    hu = np.array([[-700, -100, 0, 250, 800]])
    image = ct_of_hu(hu)
    voi = display.find_preset(image, "Full range").voi
    out = display.render(image, 0, voi)
    expected = np.rint((hu - hu.min()) / (hu.max() - hu.min()) * 255)
    assert as_list(out) == as_list(expected)
    assert display.frame_range(image) == (-700.0, 800.0)


def test_full_range_of_a_flat_image_does_not_divide_by_zero():
    image = ct_of_hu(np.full((4, 4), 30))
    out = display.render(image, 0, display.full_range_window(image))
    assert out.shape == (4, 4) and len(np.unique(out)) == 1


def test_auto_window_ignores_outliers():
    rng = np.random.default_rng(1)
    hu = rng.integers(100, 201, size=(64, 64))
    hu[0, :5] = -1000  # a few extreme pixels (markers, air) must not stretch the window
    hu[1, :5] = 3000
    image = ct_of_hu(hu)
    auto = display.find_preset(image, "auto").voi
    lo, hi = np.percentile(hu, [1, 99.5])
    assert auto.center == pytest.approx((lo + hi) / 2)
    assert auto.width == pytest.approx(hi - lo)
    assert 95 <= auto.center - auto.width / 2 and auto.center + auto.width / 2 <= 205


def test_default_window_is_the_files_first_then_voi_lut_then_full_range():
    pixels = np.arange(256, dtype=np.uint16).reshape(16, 16)
    windows = image_of(image_dataset(pixels, modality="DX", WindowCenter=[100, 50], WindowWidth=[40, 20]))
    assert display.default_voi(windows) == Window(100, 40)
    lut = image_of(image_dataset(pixels, modality="DX",
                                 VOILUTSequence=sequence(lut_item([256, 0, 8], list(range(256))))))
    assert display.default_voi(lut) == VoiLut(0)
    bare = image_of(image_dataset(pixels, modality="DX"))
    # A radiograph without a window: automatic by default, the full range when asked not to guess.
    assert display.default_voi(bare) == display.auto_window(bare)
    assert display.default_voi(bare, auto_for_projection=False) == display.full_range_window(bare)
    mr = image_of(image_dataset(pixels, modality="MR"))
    assert display.default_voi(mr) == display.full_range_window(mr)


# -- photometric interpretation and invert -------------------------------------------------------

def ramp_image(photometric: str) -> Image:
    return image_of(image_dataset(np.array([[0, 64, 128, 255]], dtype=np.uint8), photometric=photometric))


def test_monochrome1_is_shown_inverted():
    image = ramp_image("MONOCHROME1")
    voi = display.full_range_window(image)
    assert as_list(display.render(image, 0, voi)) == [255, 191, 127, 0]
    assert as_list(display.render(image, 0, voi, invert=True)) == [0, 64, 128, 255]
    assert display.shows_inverted(image, False) and not display.shows_inverted(image, True)


def test_monochrome2_invert_flips():
    image = ramp_image("MONOCHROME2")
    voi = display.full_range_window(image)
    assert as_list(display.render(image, 0, voi)) == [0, 64, 128, 255]
    assert as_list(display.render(image, 0, voi, invert=True)) == [255, 191, 127, 0]


def test_monochrome1_window_from_the_file_is_inverted_after_windowing():
    image = image_of(image_dataset(np.array([[0, 100, 150, 200, 400]], dtype=np.uint16), photometric="MONOCHROME1",
                                   bits_stored=12, WindowCenter=150, WindowWidth=101))
    out = display.render(image, 0, display.default_voi(image))
    unit = np.clip((np.array([0, 100, 150, 200, 400]) - 149.5) / 100 + 0.5, 0, 1)
    assert as_list(out) == as_list(np.rint((1 - unit) * 255))


def test_rgb_is_shown_as_stored():
    rgb = np.random.default_rng(2).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    image = image_of(image_dataset(rgb, photometric="RGB"))
    out = display.render(image, 0, display.default_voi(image))
    assert out.shape == (5, 7, 3)
    assert np.array_equal(out, rgb)


# -- signed data, rescale and the lookup table --------------------------------------------------

def direct_linear(hu: np.ndarray, window: Window) -> np.ndarray:
    """The linear window computed in floats on the modality values themselves."""
    c, w = window.center, window.width
    unit = np.clip((hu.astype(np.float64) - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0)
    return np.rint(unit * 255.0).astype(np.uint8)


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    slope=st.sampled_from([1.0, 0.5, 2.0, 0.25]),
    intercept=st.integers(-2048, 1024),
    center=st.integers(-1000, 2000).map(lambda v: v / 2),
    width=st.integers(2, 3000),
)
def test_signed_rescaled_table_matches_direct_float_computation(seed, slope, intercept, center, width):
    stored = np.random.default_rng(seed).integers(-32768, 32768, size=(12, 12)).astype(np.int16)
    stored[0, :4] = [-32768, -1, 0, 32767]  # both ends and the sign boundary of the table
    image = image_of(ct_dataset(stored, RescaleSlope=slope, RescaleIntercept=intercept))
    window = Window(center, width)
    assert display.display_table(image, 0, window) is not None  # really the table path
    got = display.render(image, 0, window)
    hu = stored.astype(np.float64) * slope + intercept
    assert np.array_equal(got, direct_linear(hu, window))


def test_table_and_direct_paths_agree(monkeypatch):
    stored = np.arange(-2000, 2000, 31, dtype=np.int16)[:120].reshape(10, 12)
    image = image_of(ct_dataset(stored, RescaleSlope=0.7, RescaleIntercept=-10.3))
    rendered = {}
    for voi in (Window(40, 400), Window(-600, 1500, "SIGMOID"), Window(3, 17, "LINEAR_EXACT"),
                display.full_range_window(image)):
        rendered[voi] = display.render(image, 0, voi)
    monkeypatch.setattr(display, "_domain", lambda *args: None)  # force the direct path
    image = image_of(ct_dataset(stored, RescaleSlope=0.7, RescaleIntercept=-10.3))
    for voi, via_table in rendered.items():
        direct = display.render(image, 0, voi)
        assert np.abs(direct.astype(int) - via_table.astype(int)).max() <= 1, voi


def test_bits_stored_below_bits_allocated_ignores_the_high_bits():
    # 12 of 16 bits; the high nibble holds garbage (an old overlay) that must not reach the screen.
    clean = np.array([[0, 4095, 5, 2048]], dtype=np.uint16)
    ds = image_dataset(clean, bits_stored=12, modality="MR", WindowCenter=2048, WindowWidth=4096)
    ds.PixelData = (clean | np.array([[0xF000, 0x0000, 0xF000, 0x8000]], dtype=np.uint16)).tobytes()
    image = image_of(ds)
    assert image.stored_range == (0, 4095)
    assert as_list(image.frame(0)) == [0, 4095, 5, 2048]
    out = display.render(image, 0, display.default_voi(image))
    assert as_list(out) == as_list(direct_linear(clean, Window(2048, 4096)))


def test_signed_12_bit_values_are_sign_extended():
    raw = np.array([[0x0000, 0x0FFF, 0x0800, 0x07FF]], dtype=np.uint16)  # 0, -1, -2048, 2047 in 12 bits
    ds = image_dataset(np.zeros((1, 4), np.int16), bits_stored=12, modality="CT",
                       RescaleSlope=1, RescaleIntercept=-1000)
    ds.PixelData = raw.tobytes()
    image = image_of(ds)
    assert image.signed and image.stored_range == (-2048, 2047)
    assert as_list(image.modality(image.frame(0))) == [-1000, -1001, -3048, 1047]
    out = display.render(image, 0, Window(-1000, 100))
    assert as_list(out) == as_list(direct_linear(np.array([-1000, -1001, -3048, 1047]), Window(-1000, 100)))


# -- Modality LUT Sequence and VOI LUT Sequence -------------------------------------------------

def modality_lut_image(lut_values, first=0, stored=None, **attrs) -> Image:
    if stored is None:
        stored = np.arange(0, 300, dtype=np.uint16).reshape(15, 20)
    ds = image_dataset(stored.astype(np.uint16), bits_stored=12, modality="XA", **attrs)
    ds.ModalityLUTSequence = sequence(lut_item([len(lut_values), first, 16], lut_values, ModalityLUTType="US"))
    return image_of(ds)


def test_modality_lut_sequence_maps_stored_values():
    lut = [10 * i + 7 for i in range(256)]
    image = modality_lut_image(lut, first=20)
    stored = image.frame(0)
    expected = np.array(lut)[np.clip(stored.astype(int) - 20, 0, 255)]  # clamp below and above the table
    assert np.array_equal(image.modality(stored), expected)
    assert display.frame_range(image) == (7.0, 2557.0)
    out = display.render(image, 0, display.full_range_window(image))
    assert as_list(out) == as_list(np.rint((expected - 7) / 2550 * 255))
    window = Window(1000, 501)
    assert np.array_equal(display.render(image, 0, window), direct_linear(expected, window))


def test_full_range_of_a_non_monotonic_modality_lut_covers_every_value():
    # A LUT that rises then falls: the full range must come from the values, not from the table's ends.
    lut = [min(i, 255 - i) * 100 for i in range(256)]
    image = modality_lut_image(lut, stored=np.arange(256, dtype=np.uint16).reshape(16, 16))
    assert display.frame_range(image) == (0.0, 12700.0)
    out = display.render(image, 0, display.full_range_window(image))
    assert out.max() == 255 and out.min() == 0


def voi_lut_image(stored, items, **attrs) -> Image:
    ds = image_dataset(np.asarray(stored, dtype=np.uint16), bits_stored=12, modality="CR", **attrs)
    ds.VOILUTSequence = sequence(*items)
    return image_of(ds)


def test_voi_lut_sequence_8_bit():
    stored = np.arange(0, 360, 5, dtype=np.uint16).reshape(8, 9)  # 0..355: below and inside the table
    data = [255 - i for i in range(256)]
    image = voi_lut_image(stored, [lut_item([256, 100, 8], data, LUTExplanation="REVERSED")])
    voi = display.default_voi(image)
    assert voi == VoiLut(0, "REVERSED")
    assert [p.name for p in display.file_presets(image)] == ["REVERSED"]
    expected = np.array(data)[np.clip(stored.astype(int) - 100, 0, 255)]  # first mapped value 100
    assert np.array_equal(display.render(image, 0, voi), expected.astype(np.uint8))


def test_voi_lut_input_beyond_the_table_takes_the_last_entry():
    # PS3.3 C.11.2.1.1: values above the last mapped value get the last entry. With an 8-bit LUT,
    # stored 356..4095 must all show as the table's last entry (0 here), not wrap around to the start.
    stored = np.array([[355, 356, 360, 1000, 4095]], dtype=np.uint16)
    image = voi_lut_image(stored, [lut_item([256, 100, 8], [255 - i for i in range(256)])])
    assert as_list(display.render(image, 0, VoiLut(0))) == [0, 0, 0, 0, 0]


def test_voi_lut_8_bit_entries_with_4096_entries():
    # The usual radiograph VOI LUT: 4096 entries (12-bit input), 8 bits per entry.
    stored = np.array([[0, 255, 256, 1000, 2048, 4095]], dtype=np.uint16)
    image = voi_lut_image(stored, [lut_item([4096, 0, 8], [i // 16 for i in range(4096)])])
    assert as_list(display.render(image, 0, display.default_voi(image))) == [0, 15, 16, 62, 128, 255]


def test_voi_lut_sequence_16_bit_and_second_item():
    stored = np.array([[0, 1024, 2048, 4095]], dtype=np.uint16)
    items = [lut_item([4096, 0, 16], [16 * i for i in range(4096)], LUTExplanation="Linear"),
             lut_item([4096, 0, 12], [4095 - i for i in range(4096)])]
    image = voi_lut_image(stored, items)
    assert [p.name for p in display.file_presets(image)] == ["Linear", "File VOI LUT 2"]
    first = display.render(image, 0, VoiLut(0))
    assert as_list(first) == as_list(np.rint(16 * stored / 65535 * 255))
    second = display.render(image, 0, VoiLut(1))
    assert as_list(second) == as_list(np.rint((4095 - stored) / 4095 * 255))
    with pytest.raises(UsageError):
        display.render(image, 0, VoiLut(5))


def test_voi_lut_applies_to_modality_values():
    stored = np.array([[0, 10, 20, 30]], dtype=np.uint16)
    # Rescale doubles and adds 5: the VOI LUT's input is 5, 25, 45, 65.
    image = voi_lut_image(stored, [lut_item([128, 0, 8], [2 * i for i in range(128)])],
                          RescaleSlope=2, RescaleIntercept=5)
    assert as_list(display.render(image, 0, VoiLut(0))) == [10, 50, 90, 130]


def test_window_wins_over_voi_lut_as_the_default():
    image = voi_lut_image(np.array([[0, 10]]), [lut_item([256, 0, 8], list(range(256)))],
                          WindowCenter=5, WindowWidth=10)
    assert display.default_voi(image) == Window(5, 10)
    assert [type(p.voi) for p in display.file_presets(image)] == [Window, VoiLut]


def test_multi_valued_windows_with_explanations():
    image = voi_lut_image(np.array([[0, 4095]]), [],
                          WindowCenter=[2048, 1000, 300, 7], WindowWidth=[4096, 500, 0, 20],
                          WindowCenterWidthExplanation=["NORMAL", "Harder", "BROKEN"],
                          VOILUTFunction="LINEAR_EXACT")
    presets = display.file_presets(image)
    # The zero-width window is skipped; a window without an explanation gets a numbered name.
    assert [p.name for p in presets] == ["Normal", "Harder", "File window 4"]
    assert [p.voi for p in presets] == [Window(2048, 4096, "LINEAR_EXACT"), Window(1000, 500, "LINEAR_EXACT"),
                                       Window(7, 20, "LINEAR_EXACT")]
    assert display.default_voi(image) == Window(2048, 4096, "LINEAR_EXACT")


def test_a_window_without_width_is_not_a_preset():
    image = voi_lut_image(np.array([[0, 4095]]), [], WindowCenter=[100, 200], WindowWidth=[50])
    assert [p.voi for p in display.file_presets(image)] == [Window(100, 50)]


# -- the viewport region ----------------------------------------------------------------------

def nearest(full: np.ndarray, region, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour sampling at pixel centres, clamped to the image's edge pixels."""
    x0, y0, x1, y1 = region
    rows = [min(max(math.floor(y0 + (i + 0.5) * (y1 - y0) / height), 0), full.shape[0] - 1) for i in range(height)]
    cols = [min(max(math.floor(x0 + (j + 0.5) * (x1 - x0) / width), 0), full.shape[1] - 1) for j in range(width)]
    return full[np.ix_(rows, cols)]


@pytest.fixture(scope="module")
def ct_for_regions():
    stored = np.random.default_rng(3).integers(-1024, 3000, size=(48, 64)).astype(np.int16)
    return image_of(ct_dataset(stored))


@FAST
@given(data=st.data())
def test_region_rendered_smaller_equals_nearest_neighbour_of_the_full_render(ct_for_regions, data):
    image = ct_for_regions
    x0 = data.draw(st.integers(0, 60), "x0")
    y0 = data.draw(st.integers(0, 44), "y0")
    x1 = data.draw(st.integers(x0 + 1, 64), "x1")
    y1 = data.draw(st.integers(y0 + 1, 48), "y1")
    width = data.draw(st.integers(1, x1 - x0), "width")
    height = data.draw(st.integers(1, y1 - y0), "height")
    voi = Window(40, 400)
    full = display.render(image, 0, voi)
    renderer = Renderer(image)
    renderer.set_region((x0, y0, x1, y1), width, height)
    got = renderer.render(voi)
    assert got.shape == (height, width)
    assert np.array_equal(got, nearest(full, (x0, y0, x1, y1), width, height))


@pytest.mark.parametrize(
    "region, width, height",
    [
        ((0, 0, 64, 48), 32, 24),  # an exact halving (a strided view)
        ((2.5, 1.25, 34.5, 41.25), 16, 20),  # fractional origin, integer steps
        ((10, 10, 20, 20), 40, 40),  # magnified
        ((0, -8, 64, 56), 32, 32),  # panned: the region starts above the image
        ((-16, 0, 80, 48), 48, 24),  # zoomed out beyond both sides
        ((0, 0, 64, 60), 32, 30),  # ends below the image
    ],
)
def test_region_cases(ct_for_regions, region, width, height):
    image = ct_for_regions
    voi = Window(40, 400)
    full = display.render(image, 0, voi)
    renderer = Renderer(image)
    renderer.set_region(region, width, height)
    got = renderer.render(voi)
    assert got.shape == (height, width)
    assert np.array_equal(got, nearest(full, region, width, height))


def test_renderer_keeps_its_region_across_window_changes(ct_for_regions):
    image = ct_for_regions
    renderer = Renderer(image)
    renderer.set_region((8, 8, 40, 40), 16, 16)
    a = renderer.render(Window(40, 400))
    b = renderer.render(Window(-600, 1500))
    full = display.render(image, 0, Window(-600, 1500))
    assert a.shape == b.shape == (16, 16)
    assert np.array_equal(b, nearest(full, (8, 8, 40, 40), 16, 16))


def test_resample_rgb_keeps_the_channels():
    rgb = np.random.default_rng(4).integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    out = resample(rgb, (0, 0, 12, 10), 5, 4)
    assert out.shape == (4, 5, 3)
    assert np.array_equal(out, nearest(rgb, (0, 0, 12, 10), 5, 4))


def test_render_longest_side():
    image = image_of(image_dataset(np.zeros((40, 100), np.uint8)))
    assert display.render(image, 0, Window(128, 256), longest_side=50).shape == (20, 50)
    assert display.render(image, 0, Window(128, 256), longest_side=300).shape == (120, 300)
    assert display.render(image, 0, Window(128, 256)).shape == (40, 100)


# -- lazy multi-frame ------------------------------------------------------------------------------

FRAMES = 50


@pytest.fixture(scope="module")
def rle_frames():
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 4096, size=(FRAMES, 24, 20), dtype=np.uint16)
    ds = image_dataset(arr, bits_stored=12, modality="XA")
    ds.compress(RLELossless, arr)
    assert ds.file_meta.TransferSyntaxUID == RLELossless and int(ds.NumberOfFrames) == FRAMES
    return ds, arr


def test_multi_frame_rle_decodes_every_frame_right(rle_frames):
    ds, arr = rle_frames
    image = image_of(ds)
    for i in (0, 1, 24, FRAMES - 1):
        assert np.array_equal(image.frame(i), arr[i])
    with pytest.raises(UsageError):
        image.frame(FRAMES)
    with pytest.raises(UsageError):
        image.frame(-1)


def test_first_frame_decodes_only_the_first_frame(rle_frames, monkeypatch):
    ds, arr = rle_frames
    image = image_of(ds)
    calls = []
    real = pydicom.pixels.pixel_array

    def spy(src, *args, **kwargs):
        out = real(src, *args, **kwargs)
        calls.append((kwargs.get("index"), out.shape))
        return out

    monkeypatch.setattr(pydicom.pixels, "pixel_array", spy)
    first = image.frame(0)
    assert np.array_equal(first, arr[0])
    assert calls == [(0, (24, 20))]  # one call, one frame decoded
    image.frame(0)
    assert len(calls) == 1  # the second look comes from the cache
    image.frame(7)
    assert calls[-1] == (7, (24, 20))


def test_first_frame_does_not_touch_the_other_frames(rle_frames):
    # Break every frame but the first: if showing frame 1 decoded the others, it would fail.
    ds, arr = rle_frames
    frames = list(generate_frames(ds.PixelData, number_of_frames=FRAMES))
    broken = b"\x05\x00\x00\x00" + b"\xff" * 60  # an RLE header claiming 5 segments at nonsense offsets
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(to_bytes(ds)))
    ds.PixelData = encapsulate([frames[0]] + [broken] * (FRAMES - 1))
    image = image_of(ds)
    assert np.array_equal(image.frame(0), arr[0])
    with pytest.raises(PixelDataError):
        image.frame(1)
