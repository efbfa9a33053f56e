"""app.measure: calibration, geometry against hand-worked values, veterinary tools, persistence, exports."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from app.dicom.pixels import Image
from app.dicom.reading import read
from app.errors import UsageError
from app.library import Library, export_study, import_paths, schema
from app.measure import geometry as g
from app.measure.calibration import (
    CALIBRATION_TYPE, DETECTOR, MAGNIFICATION, MANUAL, NONE, PIXEL_SPACING, ULTRASOUND, Calibration,
    ManualCalibration, apply_manual, calibration_of, manual_calibration, pixel_spacing,
)
from app.measure.export import COLUMNS, export_measurements
from app.measure.tools import (
    TOOLS, VHS_CANINE, VHS_FELINE, Measurement, measure, measure_image, point_hint, roi_mask, shapes,
    species_of, tpa_references, vhs_references,
)
from tests.conftest import SAMPLE
from tests.unit.helpers import ct_dataset, image_dataset, save, sequence

DX_SAMPLE = SAMPLE / "dx" / "thorax_lateral.dcm"


def cal(row_mm, column_mm) -> Calibration:
    return Calibration(row_mm, column_mm, PIXEL_SPACING, "PixelSpacing")


def dx(**attrs) -> Dataset:
    return image_dataset(np.zeros((8, 10), np.uint16), modality="DX", **attrs)


# -- calibration_of -------------------------------------------------------------------------------

def test_pixel_spacing_is_in_the_patient():
    c = calibration_of(dx(PixelSpacing=[0.2, 0.1]))
    assert (c.row_mm, c.column_mm, c.source, c.label) == (0.2, 0.1, PIXEL_SPACING, "PixelSpacing")
    assert c.calibrated and c.unit == "mm" and c.scale == (0.1, 0.2) and not c.warning


def test_imager_pixel_spacing_alone_is_labelled_at_detector():
    c = calibration_of(dx(ImagerPixelSpacing=[0.16, 0.16]))
    assert (c.row_mm, c.column_mm, c.source) == (0.16, 0.16, DETECTOR)
    assert c.label == "at detector (ImagerPixelSpacing)" and c.at_detector and "detector" in c.warning


def test_imager_pixel_spacing_is_corrected_by_the_magnification_factor():
    c = calibration_of(dx(ImagerPixelSpacing=[0.165, 0.11], EstimatedRadiographicMagnificationFactor=1.1))
    assert c.row_mm == pytest.approx(0.15) and c.column_mm == pytest.approx(0.1)
    assert c.source == MAGNIFICATION and c.label == "ImagerPixelSpacing ÷ magnification 1.1" and not c.at_detector


def test_pixel_spacing_that_repeats_imager_pixel_spacing_is_not_taken_for_the_patient():
    c = calibration_of(dx(PixelSpacing=[0.16, 0.16], ImagerPixelSpacing=[0.16, 0.16]))
    assert c.source == DETECTOR and c.label.startswith("at detector")
    c = calibration_of(dx(PixelSpacing=[0.16, 0.16], ImagerPixelSpacing=[0.16, 0.16],
                          EstimatedRadiographicMagnificationFactor=1.6))
    assert c.source == MAGNIFICATION and c.column_mm == pytest.approx(0.1)
    # a different PixelSpacing was calibrated by someone: it is used as it is
    c = calibration_of(dx(PixelSpacing=[0.15, 0.15], ImagerPixelSpacing=[0.16, 0.16]))
    assert (c.source, c.column_mm) == (PIXEL_SPACING, 0.15)


@pytest.mark.parametrize("kind", ["GEOMETRY", "FIDUCIAL"])
def test_pixel_spacing_calibration_type_is_shown(kind):
    c = calibration_of(dx(PixelSpacing=[0.15, 0.15], ImagerPixelSpacing=[0.16, 0.16],
                          EstimatedRadiographicMagnificationFactor=1.0667, PixelSpacingCalibrationType=kind))
    assert (c.row_mm, c.source, c.label) == (0.15, CALIBRATION_TYPE, f"PixelSpacing, {kind.lower()}")
    described = calibration_of(dx(PixelSpacing=[0.15, 0.15], PixelSpacingCalibrationType=kind,
                                  PixelSpacingCalibrationDescription="ball bearing"))
    assert described.label == f"PixelSpacing, {kind.lower()}: ball bearing"


def test_the_sample_radiograph():
    ds = read(DX_SAMPLE, header_only=True)
    c = calibration_of(ds)
    assert (c.row_mm, c.column_mm, c.label) == (0.15, 0.15, "PixelSpacing, geometry")
    assert pixel_spacing(ds).as_list() == [0.15, 0.15]  # the raw attribute, for info and the viewport


def _measures(row, col) -> Dataset:
    item = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [row, col]
    item.PixelMeasuresSequence = sequence(measures)
    return item


def test_enhanced_objects_per_frame_then_shared_pixel_measures():
    ds = image_dataset(np.zeros((2, 4, 4), np.uint16), modality="CT", NumberOfFrames=2)
    ds.SharedFunctionalGroupsSequence = sequence(_measures(0.5, 0.5))
    ds.PerFrameFunctionalGroupsSequence = sequence(_measures(0.3, 0.2), Dataset())
    assert (calibration_of(ds, 0).row_mm, calibration_of(ds, 0).column_mm) == (0.3, 0.2)
    assert (calibration_of(ds, 1).row_mm, calibration_of(ds, 1).source) == (0.5, PIXEL_SPACING)
    assert pixel_spacing(ds).as_list() == [0.3, 0.2]


def test_no_spacing_means_pixels_and_says_so():
    c = calibration_of(dx())
    assert (c.calibrated, c.unit, c.source, c.label) == (False, "px", NONE, "not calibrated (pixels)")
    r = measure(Measurement("length", [(0, 0), (30, 40)]), c)
    assert r.value("length") == 50 and r.lines == ("50.0 px",) and r.calibration_label == "not calibrated (pixels)"
    assert pixel_spacing(dx()) is None
    tall = calibration_of(dx(PixelAspectRatio=[2, 1]))  # rows twice as far apart as columns
    assert tall.scale == (1.0, 2.0)
    assert measure(Measurement("length", [(0, 0), (0, 10)]), tall).value("length") == 20


def test_ultrasound_regions_in_cm():
    region = Dataset()
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX, region.PhysicalDeltaY = 0.02, 0.03
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 9, 7
    c = calibration_of(image_dataset(np.zeros((8, 10), np.uint8), modality="US",
                                     SequenceOfUltrasoundRegions=sequence(region)))
    assert c.source == ULTRASOUND and c.row_mm == pytest.approx(0.3) and c.column_mm == pytest.approx(0.2)


# -- manual calibration ---------------------------------------------------------------------------

def test_a_25_mm_sphere_drawn_as_a_circle():
    m = manual_calibration("circle", [(10, 10), (110, 110)], scope="series", uid="1.2.3")
    assert (m.row_mm, m.column_mm) == (0.25, 0.25) and m.source == "manual: 25 mm sphere"
    c = apply_manual(calibration_of(dx()), m)
    assert (c.source, c.label, c.warning) == (MANUAL, "manual: 25 mm sphere", "")  # nothing overridden
    assert measure(Measurement("length", [(0, 0), (0, 100)]), c).lines == ("25.0 mm",)


def test_the_sample_sphere_gives_the_files_spacing():
    """The sample radiograph holds a 25 mm sphere: a circle drawn around it calibrates to 0.15 mm."""
    image = Image(read(DX_SAMPLE))
    values = image.modality(image.frame(0), 0).astype(float)
    corner = values[1100:1400, 1500:1800]  # the sphere, bottom right
    rows, cols = np.nonzero(corner > corner.max() * 0.5)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    m = manual_calibration("circle", [(1500 + left, 1100 + top), (1500 + right, 1100 + bottom)],
                           scope="image", uid=str(image.ds.SOPInstanceUID), file=calibration_of(image.ds))
    assert m.column_mm == pytest.approx(0.15, rel=0.03) and m.row_mm == m.column_mm


def test_manual_calibration_keeps_the_files_aspect_ratio():
    file = cal(0.2, 0.1)  # rows 0.2 mm apart, columns 0.1 mm
    m = manual_calibration("circle", [(0, 0), (500, 250)], 50.0, scope="image", uid="1", file=file, marker="coin")
    assert (m.column_mm, m.row_mm, m.source) == (pytest.approx(0.1), pytest.approx(0.2), "manual: 50 mm coin")
    # a line of known length: 3-4-5 in millimetres is (30, 20) pixels here
    m = manual_calibration("line", [(0, 0), (30, 20)], 5.0, scope="image", uid="1", file=file)
    assert (m.column_mm, m.row_mm) == (pytest.approx(0.1), pytest.approx(0.2))
    m = manual_calibration("line", [(0, 0), (30, 20)], 10.0, scope="image", uid="1", file=file)
    assert (m.column_mm, m.row_mm, m.source) == (pytest.approx(0.2), pytest.approx(0.4), "manual: 10 mm line")


def test_manual_calibration_overriding_the_file_warns():
    manual = ManualCalibration("image", "1", 0.2, 0.2, "manual: 25 mm sphere")
    c = apply_manual(calibration_of(dx(PixelSpacing=[0.15, 0.15])), manual)
    assert c.column_mm == 0.2 and c.warning == ("the manual calibration overrides the file's spacing "
                                               "(PixelSpacing, 0.15 mm) with 0.2 mm per pixel")
    r = measure(Measurement("length", [(0, 0), (100, 0)]), c)
    assert r.lines == ("20.0 mm",) and c.warning in r.warnings


@pytest.mark.parametrize("args", [("circle", [(0, 0), (0.2, 0.3)], 25.0), ("circle", [(0, 0), (10, 10)], 0),
                                  ("square", [(0, 0), (10, 10)], 25.0), ("line", [(0, 0)], 25.0)])
def test_manual_calibration_refuses_nonsense(args):
    with pytest.raises(UsageError):
        manual_calibration(*args, scope="image", uid="1")
    with pytest.raises(UsageError):
        ManualCalibration("patient", "1", 0.1, 0.1, "manual")


# -- geometry against hand-worked values ----------------------------------------------------------

def test_a_3_4_5_triangle_with_anisotropic_pixels():
    c = cal(0.5, 1.0)  # rows 0.5 mm apart: 8 rows are 4 mm
    r = measure(Measurement("length", [(10, 10), (13, 18)]), c)
    assert r.value("length") == pytest.approx(5.0) and r.lines == ("5.00 mm",) and r.calibration_label == "PixelSpacing"
    poly = measure(Measurement("polyline", [(10, 10), (13, 10), (13, 18), (10, 10)]), c)
    assert poly.value("length") == pytest.approx(3 + 4 + 5)
    # the angle at (13, 10) is right in millimetres; the angle at (10, 10) is atan(4/3)
    assert measure(Measurement("angle", [(10, 10), (13, 10), (13, 18)]), c).value("angle") == pytest.approx(90)
    a = measure(Measurement("angle", [(13, 10), (10, 10), (13, 18)]), c)
    assert a.value("angle") == pytest.approx(math.degrees(math.atan2(4, 3))) and a.lines == ("53.1°",)


def test_cobb_angle_whichever_way_the_lines_are_drawn():
    assert g.cobb_angle((0, 0), (0, 10), (95, 0), (105, 10)) == pytest.approx(45)
    assert g.cobb_angle((0, 0), (0, 10), (105, 10), (95, 0)) == pytest.approx(45)
    assert g.cobb_angle((0, 10), (0, 0), (95, 0), (105, 10)) == pytest.approx(45)
    s = 10 * math.sqrt(3) / 2  # endplates each 60° from the perpendicular: a 120° curve
    r = measure(Measurement("cobb", [(s, -5), (-s, 5), (100 - s, -5), (100 + s, 5)]))
    assert r.value("angle") == pytest.approx(120) and r.lines == ("Cobb 120.0°",)
    assert g.line_angle((s, -5), (-s, 5), (100 - s, -5), (100 + s, 5)) == pytest.approx(60)


def test_roi_area_and_statistics_in_hounsfield_units():
    stored = np.arange(100, dtype=np.int16).reshape(10, 10) + 1024
    image = Image(ct_dataset(stored, PixelSpacing=[0.5, 0.25]))
    c = calibration_of(image.ds)
    rect = measure_image(Measurement("rectangle", [(2, 3), (6, 5)]), image, c)
    inside = np.arange(100).reshape(10, 10)[3:5, 2:6].astype(float)  # centres 2.5..5.5, 3.5..4.5
    assert rect.value("mean") == pytest.approx(inside.mean()) and rect.value("sd") == pytest.approx(inside.std())
    assert (rect.value("min"), rect.value("max"), rect.value("pixels")) == (32, 45, 8)
    assert rect.value("area") == pytest.approx(4 * 0.25 * 2 * 0.5)
    assert [v.unit for v in rect.values[:4]] == ["HU"] * 4 and "HU" in rect.lines[1]
    ell = measure_image(Measurement("ellipse", [(0, 0), (10, 10)]), image, c)
    assert ell.value("area") == pytest.approx(math.pi * 5 * 0.25 * 5 * 0.5) and ell.value("pixels") == 80
    nothing = measure_image(Measurement("ellipse", [(3.1, 3.1), (3.3, 3.3)]), image, c)
    assert nothing.value("mean") is None and "no pixel centre" in nothing.warnings[0]
    colour = measure(Measurement("rectangle", [(0, 0), (2, 2)]), c, values=np.zeros((4, 4, 3)))
    assert colour.value("area") == pytest.approx(4 * 0.125) and "colour" in colour.warnings[0]
    rgb = Image(image_dataset(np.zeros((4, 4, 3), np.uint8), PixelSpacing=[0.5, 0.25]))
    colour = measure_image(Measurement("rectangle", [(0, 0), (2, 2)]), rgb, calibration_of(rgb.ds))
    assert [v.name for v in colour.values] == ["area"] and "colour" in colour.warnings[0]


# -- veterinary tools -----------------------------------------------------------------------------

def _vhs_points(long_end, short, marks):
    return [(50, 100), long_end, *short, *marks]


def test_vertebral_heart_score_hand_worked():
    marks = [(x, 0) for x in range(0, 201, 20)]  # T4 to T13, 10 vertebrae of 20 px
    m = Measurement("vhs", _vhs_points((50 + 63, 100 + 84), [(0, 200), (90, 200)], marks))
    r = measure(m, cal(0.1, 0.1))
    # long axis 105 px = 5.25 vertebrae, short axis 90 px = 4.5
    assert (r.value("long"), r.value("short"), r.value("vhs")) == (pytest.approx(5.25), pytest.approx(4.5),
                                                                    pytest.approx(9.75))
    assert r.lines == ("VHS 9.8 v", "L 5.3 v + S 4.5 v") and r.value("long_length") == pytest.approx(10.5)
    assert r.references == (VHS_CANINE.text(),) and "8.5–10.6" in r.references[0] and "Buchanan" in r.references[0]
    assert r.scale_free


def test_vhs_counts_fractions_in_the_vertebra_the_axis_ends_in():
    marks = [(0, 0), (20, 0), (42, 0)]  # T4 20 px, T5 22 px
    r = measure(Measurement("vhs", [(0, 50), (31, 50), (0, 60), (0, 80), *marks]))
    assert r.value("long") == pytest.approx(1 + 11 / 22) and r.value("short") == pytest.approx(1.0)
    assert not r.warnings or all("perpendicular" in w for w in r.warnings)
    beyond = measure(Measurement("vhs", [(0, 50), (63, 50), (0, 60), (0, 80), *marks]))
    assert beyond.value("long") == pytest.approx(2 + 21 / 21) and any("beyond" in w for w in beyond.warnings)


def test_vhs_uses_millimetres_on_anisotropic_pixels():
    marks = [(0, y) for y in range(0, 101, 10)]  # vertical spine, rows 0.2 mm apart: 2 mm vertebrae
    m = Measurement("vhs", [(100, 0), (120, 0), (100, 10), (100, 20), *marks])
    r = measure(m, cal(0.2, 0.1))
    assert r.value("long") == pytest.approx(1.0) and r.value("short") == pytest.approx(1.0)  # 2 mm each


def test_vhs_reference_ranges_by_species_and_breed():
    refs = vhs_references("Canine", "Cavalier King Charles Spaniel")
    assert [r.what for r in refs] == ["Cavalier King Charles spaniel", "canine (general)"]
    assert (refs[0].mean, refs[0].sd) == (10.6, 0.5)
    assert vhs_references("Feline", "Maine Coon") == [VHS_FELINE] and (VHS_FELINE.mean, VHS_FELINE.sd) == (7.5, 0.3)
    assert [r.what for r in vhs_references("dog", "Pug")] == ["Pug", "canine (general)"]
    assert vhs_references("", "Puggle") == [VHS_CANINE]
    assert vhs_references("Equine") == []
    assert (species_of("Felis catus"), species_of("CANINE"), species_of("")) == ("feline", "canine", "")
    marks = [(x, 0) for x in range(0, 201, 20)]
    big = measure(Measurement("vhs", _vhs_points((50 + 132, 100 + 176), [(0, 200), (100, 200)], marks)),
                  species="Feline")
    assert big.value("vhs") == pytest.approx(16) and big.references[0].endswith("above the range")


def test_norberg_angle_hand_worked():
    # heads at (0, 0) and (100, 0); left rim up and out at 45°, right rim straight up
    m = Measurement("norberg", [(0, 0), (-10, -10), (100, 0), (100, -20)])
    r = measure(m)
    assert (r.value("left"), r.value("right")) == (pytest.approx(135), pytest.approx(90))
    assert r.lines == ("Left 135.0°", "Right 90.0° (below 105°)")
    assert r.references == ("Norberg angle: normal ≥ 105° (FCI scheme, Flückiger 2007)",)
    # the same hips on pixels twice as tall as wide: (-10, -20) pixels is (-10, -10) mm
    squashed = Measurement("norberg", [(0, 0), (-10, -20), (100, 0), (100, -40)])
    assert measure(squashed, cal(0.5, 1.0)).value("left") == pytest.approx(135)
    assert measure(squashed).value("left") == pytest.approx(180 - math.degrees(math.atan2(20, 10)))


def test_tibial_plateau_angle_hand_worked():
    axis = [(50, 0), (50, 300)]  # eminences, talus: a vertical functional axis
    r = measure(Measurement("tpa", [(50, 30), (10, 60), *axis]), species="Canine", breed="Labrador Retriever")
    assert r.value("tpa") == pytest.approx(math.degrees(math.atan2(3, 4)))  # 3-4-5: 36.87°
    assert r.lines == ("TPA 36.9°",)
    assert r.references[0].startswith("Labrador retriever: 25 ± 3°") and "21.49 ± 4.15°" in r.references[1]
    mirrored = measure(Measurement("tpa", [(50, 30), (90, 60), *axis]))  # cranial to the right
    assert mirrored.value("tpa") == pytest.approx(36.87, abs=0.01)
    reversed_slope = measure(Measurement("tpa", [(50, 60), (10, 30), *axis]))
    assert reversed_slope.value("tpa") == pytest.approx(-36.87, abs=0.01)
    squashed = measure(Measurement("tpa", [(50, 0), (10, 60), (50, 0), (50, 600)]), cal(0.5, 1.0))
    assert squashed.value("tpa") == pytest.approx(36.87, abs=0.01)
    assert tpa_references("Feline") == []


def test_text_and_arrow_carry_their_text_only():
    assert measure(Measurement("arrow", [(0, 0), (5, 5)], text="fracture")).lines == ("fracture",)
    assert measure(Measurement("text", [(3, 3)], text="L")).values == ()


# -- the model ------------------------------------------------------------------------------------

def test_measurement_round_trip_and_editing():
    m = Measurement("angle", [(1, 2), (3, 4), (5.5, 6)], frame=2, text="elbow")
    assert Measurement.from_json(m.to_json()) == m
    moved = m.with_point(1, (10, 10)).translated(1, -1)
    assert moved.points == ((2, 1), (11, 9), (6.5, 5)) and moved.id == m.id and m.points[1] == (3, 4)
    assert point_hint("vhs", 4) == "cranial edge of T4" and point_hint("vhs", 9) == point_hint("vhs", 6)
    assert set(TOOLS) == {"length", "polyline", "angle", "cobb", "ellipse", "rectangle", "arrow", "text", "vhs",
                          "norberg", "tpa"}
    for bad in (dict(kind="length", points=[(0, 0)]), dict(kind="vhs", points=[(0, 0)] * 5),
                dict(kind="circle", points=[(0, 0), (1, 1)]), dict(kind="text", points=[(math.nan, 0)]),
                dict(kind="text", points=[(0, 0)], frame=-1)):
        with pytest.raises(UsageError):
            Measurement(**bad)
    assert [s.kind for s in shapes(Measurement("tpa", [(50, 30), (10, 60), (50, 0), (50, 300)]))] == ["line"] * 3


# -- properties -----------------------------------------------------------------------------------

quarter = st.integers(-400, 800).map(lambda n: n / 4)  # exact in binary: no rounding at mask boundaries
spacing = st.sampled_from([0.1, 0.15, 0.2, 0.5, 1.0, 0.139])


@settings(max_examples=200, deadline=None)
@given(points=st.lists(st.tuples(quarter, quarter), min_size=3, max_size=3), rows=st.integers(1, 300),
       cols=st.integers(1, 300), row_mm=spacing, col_mm=spacing, turns=st.integers(0, 3), flip_h=st.booleans(),
       flip_v=st.booleans())
def test_lengths_and_angles_survive_rotating_and_flipping_the_image(points, rows, cols, row_mm, col_mm, turns,
                                                                   flip_h, flip_v):
    moved = g.transform(points, rows, cols, rotation=90 * turns, flip_h=flip_h, flip_v=flip_v)
    c = cal(row_mm, col_mm)
    c2 = cal(col_mm, row_mm) if turns % 2 else c  # a quarter turn swaps the spacings
    length = measure(Measurement("polyline", points), c).value("length")
    assert measure(Measurement("polyline", moved), c2).value("length") == pytest.approx(length, rel=1e-9, abs=1e-9)
    a = measure(Measurement("angle", points), c).value("angle")
    b = measure(Measurement("angle", moved), c2).value("angle")
    assert (math.isnan(a) and math.isnan(b)) or b == pytest.approx(a, abs=1e-7)


def _orient(img: np.ndarray, turns: int, flip_h: bool, flip_v: bool) -> np.ndarray:
    out = np.rot90(img, -turns)  # clockwise
    if flip_h:
        out = out[:, ::-1]
    if flip_v:
        out = out[::-1, :]
    return out


@settings(max_examples=200, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       corners=st.tuples(quarter, quarter, quarter, quarter), kind=st.sampled_from(["ellipse", "rectangle"]),
       turns=st.integers(0, 3), flip_h=st.booleans(), flip_v=st.booleans())
def test_roi_statistics_equal_numpy_on_the_same_mask_and_follow_the_image(rows, cols, seed, corners, kind, turns,
                                                                          flip_h, flip_v):
    values = np.random.default_rng(seed).normal(40, 300, (rows, cols))
    points = [(corners[0] / 8, corners[1] / 8), (corners[2] / 8, corners[3] / 8)]
    m = Measurement(kind, points)
    r = measure(m, cal(0.5, 0.25), values=values, unit="HU")
    # the mask, independently: pixel centres inside the shape
    yy, xx = np.indices((rows, cols)) + 0.5
    (x0, y0), (x1, y1) = points
    left, right, top, bottom = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    if kind == "rectangle":
        mask = (xx >= left) & (xx <= right) & (yy >= top) & (yy <= bottom)
    else:
        a, b = (right - left) / 2, (bottom - top) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            mask = ((xx - (left + right) / 2) / a) ** 2 + ((yy - (top + bottom) / 2) / b) ** 2 <= 1 \
                if a > 0 and b > 0 else np.zeros_like(xx, bool)
    assert np.array_equal(roi_mask(m, values.shape), mask)
    if mask.any():
        inside = values[mask]
        assert r.value("mean") == pytest.approx(np.mean(inside)) and r.value("sd") == pytest.approx(np.std(inside))
        assert (r.value("min"), r.value("max"), r.value("pixels")) == (np.min(inside), np.max(inside), mask.sum())
    else:
        assert r.value("mean") is None
    # the same region on the rotated/flipped image gives the same numbers
    moved = Measurement(kind, g.transform(points, rows, cols, rotation=90 * turns, flip_h=flip_h, flip_v=flip_v))
    c2 = cal(0.25, 0.5) if turns % 2 else cal(0.5, 0.25)
    r2 = measure(moved, c2, values=_orient(values, turns, flip_h, flip_v), unit="HU")
    assert r2.value("area") == pytest.approx(r.value("area"))
    assert r2.value("pixels") == r.value("pixels") and r2.value("mean") == pytest.approx(r.value("mean"))


def test_transform_moves_pixel_centres_with_the_pixels():
    img = np.arange(12).reshape(3, 4)
    for turns in range(4):
        for flip_h in (False, True):
            moved = _orient(img, turns, flip_h, False)
            for r in range(3):
                for c in range(4):
                    ((x, y),) = g.transform([(c + 0.5, r + 0.5)], 3, 4, rotation=90 * turns, flip_h=flip_h)
                    assert moved[int(y), int(x)] == img[r, c]


# -- persistence ----------------------------------------------------------------------------------

@pytest.fixture
def two_dx(tmp_path):
    """A library with one study, one series of two radiographs (PixelSpacing 0.1 mm), and a second series."""
    study, series = generate_uid(), generate_uid()
    files = []
    for n in range(2):
        ds = image_dataset(np.full((40, 60), 100 * n, np.uint16), modality="DX", PixelSpacing=[0.1, 0.1],
                           InstanceNumber=n + 1, SeriesNumber=1, PatientSpeciesDescription="Canine",
                           PatientBreedDescription="Whippet", PatientName="Dash^Whippet")
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        files.append(save(ds, tmp_path / f"dx{n}.dcm"))
    other = image_dataset(np.zeros((40, 60), np.uint16), modality="DX", PixelSpacing=[0.1, 0.1], SeriesNumber=2,
                          PatientSpeciesDescription="Canine", PatientBreedDescription="Whippet",
                          PatientName="Dash^Whippet")
    other.StudyInstanceUID = study
    files.append(save(other, tmp_path / "other.dcm"))
    root = tmp_path / "lib"
    with Library(root, microchip_issuers=()) as lib:
        assert not import_paths(files, library=lib).failed
    return root, study, series


def test_a_version_4_index_gains_the_measurement_tables(tmp_path):
    import sqlite3

    (tmp_path / "lib").mkdir()
    db = sqlite3.connect(tmp_path / "lib" / "index.sqlite", isolation_level=None)
    for script in schema.MIGRATIONS[:4]:
        for statement in schema._statements(script):
            db.execute(statement)
    db.execute("PRAGMA user_version = 4")
    db.close()
    with Library(tmp_path / "lib", microchip_issuers=()) as lib:
        assert lib.db.execute("PRAGMA user_version").fetchone()[0] == 5
        assert lib.measurements("1.2.3") == [] and lib.manual_calibration("study", "1.2.3") is None


def test_measurements_survive_reopening_the_library(two_dx):
    root, study, _ = two_dx
    with Library(root, microchip_issuers=()) as lib:
        assert lib.db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION == 5
        first, second, _ = lib.instances(study_uid=study)
        length = Measurement("length", [(0, 0), (30, 40)])
        angle = Measurement("angle", [(1, 0), (0, 0), (0, 1)], frame=0, text="hock")
        lib.save_measurement(first.sop_uid, length)
        lib.save_measurement(first.sop_uid, angle)
        lib.save_measurement(second.sop_uid, Measurement("text", [(5, 5)], text="R"))
        lib.save_measurement(first.sop_uid, length.with_point(1, (60, 80)))  # edited: replaced, not added
        with pytest.raises(UsageError):
            lib.save_measurement(generate_uid(), length)
    with Library(root, microchip_issuers=()) as lib:
        assert lib.measurements(first.sop_uid) == [length.with_point(1, (60, 80)), angle]
        assert [m.kind for _, m in lib.study_measurements(study)] == ["length", "angle", "text"]
        assert lib.measurements(first.sop_uid, frame=1) == []
        assert lib.delete_measurement(angle.id) and not lib.delete_measurement(angle.id)
        assert lib.measurements(first.sop_uid) == [length.with_point(1, (60, 80))]


def test_a_series_calibration_changes_every_image_of_the_series(two_dx):
    root, study, series = two_dx
    with Library(root, microchip_issuers=()) as lib:
        first, second, other = lib.instances(study_uid=study)
        for record in (first, second, other):
            lib.save_measurement(record.sop_uid, Measurement("length", [(0, 0), (0, 100)]))

        def lengths():
            out = []
            for record in (first, second, other):
                ds = read(record.path, header_only=True)
                (m,) = lib.measurements(record.sop_uid)
                out.append(measure(m, lib.calibration(ds)).value("length"))
            return out

        assert lengths() == [pytest.approx(10)] * 3
        ds = read(first.path, header_only=True)
        manual = manual_calibration("circle", [(0, 0), (100, 100)], 25.0, scope="series", uid=series,
                                    file=calibration_of(ds))
        lib.set_manual_calibration(manual)
    with Library(root, microchip_issuers=()) as lib:
        assert lengths() == [pytest.approx(25), pytest.approx(25), pytest.approx(10)]
        c = lib.calibration(read(second.path, header_only=True))
        assert c.label == "manual: 25 mm sphere" and "overrides the file's spacing (PixelSpacing" in c.warning
        lib.set_manual_calibration(ManualCalibration("image", second.sop_uid, 0.5, 0.5, "manual: 10 mm line"))
        lib.set_manual_calibration(ManualCalibration("study", study, 0.2, 0.2, "manual: 25 mm sphere"))
        assert lengths() == [pytest.approx(25), pytest.approx(50), pytest.approx(20)]  # image > series > study
        assert lib.remove_manual_calibration("series", series)
        assert lengths() == [pytest.approx(20), pytest.approx(50), pytest.approx(20)]
        lib.remove_study(study)
        assert lib.db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 0
        assert lib.db.execute("SELECT COUNT(*) FROM manual_calibrations").fetchone()[0] == 0


# -- exports --------------------------------------------------------------------------------------

@pytest.fixture
def measured_sample(tmp_path):
    """The bundled sample with a length on the radiograph and an ellipse ROI on a CT slice."""
    lib = Library(tmp_path / "lib", microchip_issuers=())
    assert not import_paths([SAMPLE], library=lib).failed
    (study,) = lib.studies()
    records = lib.instances(study_uid=study.uid)
    dx_record = next(r for r in records if r.rows == 1400)
    ct_record = next(r for r in records if r.rows == 256)
    lib.save_measurement(dx_record.sop_uid, Measurement("length", [(200, 1000), (1000, 1000)], text="sternum"))
    lib.save_measurement(ct_record.sop_uid, Measurement("ellipse", [(118, 118), (138, 138)]))
    yield lib, study, dx_record, ct_record
    lib.close()


def test_measurements_as_csv_and_json(measured_sample, tmp_path):
    lib, study, dx_record, ct_record = measured_sample
    text = export_measurements(study.uid, format="csv", library=lib).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(COLUMNS) and len(rows) == 2
    length, roi = rows
    assert (length["patient_name"], length["species"], length["breed"]) == ("Hendricks^Bailey", "Canine",
                                                                           "Golden Retriever")
    assert (length["study_uid"], length["series_uid"], length["sop_uid"]) == (study.uid, dx_record.series_uid,
                                                                              dx_record.sop_uid)
    assert (length["modality"], length["frame"], length["kind"], length["text"]) == ("DX", "1", "length", "sternum")
    assert (float(length["value"]), length["unit"]) == (pytest.approx(120.0), "mm")
    assert length["calibration"] == "PixelSpacing, geometry" and length["calibrated"] == "True"
    ds = read(ct_record.path)
    image = Image(ds)
    expected = measure_image(Measurement("ellipse", [(118, 118), (138, 138)]), image, calibration_of(ds))
    assert (roi["kind"], roi["unit"], roi["sop_uid"]) == ("ellipse", "HU", ct_record.sop_uid)
    assert float(roi["value"]) == pytest.approx(expected.value("mean"), abs=1e-4)
    assert "Area" in roi["values"] and "mm²" in roi["values"] and roi["calibration"] == "PixelSpacing"

    out = tmp_path / "m.json"
    result = export_measurements(study.uid, format="json", to=out, library=lib)
    data = json.loads(out.read_text("utf-8"))
    assert result.count == 2 and data["study_uid"] == study.uid
    first = data["measurements"][0]
    assert (first["kind"], first["value"], first["unit"], first["frame"]) == ("length", 120.0, "mm", 1)
    assert first["values"] == [{"name": "length", "value": 120.0, "unit": "mm", "label": "Length"}]
    assert first["points"] == [[200.0, 1000.0], [1000.0, 1000.0]]
    names = [v["name"] for v in data["measurements"][1]["values"]]
    assert names == ["mean", "sd", "min", "max", "area", "pixels"]

    lib.set_manual_calibration(ManualCalibration("study", study.uid, 0.3, 0.3, "manual: 25 mm sphere"))
    again = list(csv.DictReader(io.StringIO(export_measurements(study.uid, library=lib).text)))
    assert float(again[0]["value"]) == pytest.approx(240.0) and again[0]["calibration"] == "manual: 25 mm sphere"
    assert "overrides" in again[0]["warnings"]


def test_the_measurements_command(measured_sample, run_cli, tmp_path, monkeypatch):
    lib, study, *_ = measured_sample
    monkeypatch.setattr("app.library.library.library_root", lambda: lib.root)
    code, out, err = run_cli("measurements", study.uid)
    assert (code, err) == (0, "") and out.splitlines()[0] == ",".join(COLUMNS) and len(out.splitlines()) == 3
    target = tmp_path / "m.csv"
    code, out, _ = run_cli("measurements", study.uid, "-o", target)
    assert code == 0 and "2 measurements" in out
    assert target.read_bytes().startswith(b"\xef\xbb\xbf")  # spreadsheets read the ° and ² as UTF-8
    code, out, _ = run_cli("measurements", study.uid, "--format", "json")
    assert code == 0 and len(json.loads(out)["measurements"]) == 2
    code, _, err = run_cli("measurements", "1.2.3.4")
    assert code == 1 and "no study 1.2.3.4" in err


def test_png_export_draws_the_measurements_where_they_are(measured_sample, tmp_path):
    lib, study, dx_record, _ = measured_sample
    plain = export_study(study.uid, tmp_path / "plain", format="png", library=lib)
    drawn = export_study(study.uid, tmp_path / "drawn", format="png", library=lib, measurements=True)
    names = [p.name for p in plain.paths]
    assert names == [p.name for p in drawn.paths]
    a = np.asarray(PILImage.open(tmp_path / "plain" / names[0]).convert("RGB")).astype(int)
    b = np.asarray(PILImage.open(tmp_path / "drawn" / names[0]).convert("RGB")).astype(int)
    assert a.shape == b.shape == (1400, 1800, 3)
    assert (b[1000, 300:900] != a[1000, 300:900]).any(axis=-1).all()  # along the line
    assert (b[1000, 300:900] == (255, 214, 0)).all()
    assert np.array_equal(a[:800, 1200:], b[:800, 1200:])  # far from the line and its label
    # the CT slice without measurements is the same picture in both
    untouched = next(n for n in names if n.startswith("SE002") and not n.endswith("00001.png"))
    assert np.array_equal(np.asarray(PILImage.open(tmp_path / "plain" / untouched)),
                          np.asarray(PILImage.open(tmp_path / "drawn" / untouched)))
    jpeg = export_study(study.uid, tmp_path / "jpeg", format="jpeg", library=lib, measurements=True)
    assert jpeg.frames == 25
    with pytest.raises(UsageError):
        export_study(study.uid, tmp_path / "dicom", format="dicom", library=lib, measurements=True)


def test_export_command_with_measurements(measured_sample, run_cli, tmp_path, monkeypatch):
    lib, study, *_ = measured_sample
    monkeypatch.setattr("app.library.library.library_root", lambda: lib.root)
    code, out, err = run_cli("export", study.uid, "--to", tmp_path / "out", "--format", "png", "--measurements")
    assert code == 0 and "Exported 25 images" in out
    code, _, err = run_cli("export", study.uid, "--to", tmp_path / "d", "--measurements")
    assert code == 1 and "png and jpeg" in err
