"""The headless command line: `lightbox info` and `lightbox render`, and how they refuse bad input."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import RLELossless

from tests.unit.helpers import (
    NOT_DICOM,
    base_dataset,
    code_item,
    ct_dataset,
    image_dataset,
    lut_item,
    pydicom_file,
    save,
    sequence,
    to_bytes,
    with_transfer_syntax,
)

ROOT = Path(__file__).resolve().parents[2]


# -- helpers -------------------------------------------------------------------------------------

def png_pixels(path: Path) -> tuple[np.ndarray, bool]:
    """(pixels, is_grey) of an image file as Qt reads it: (h, w) for grey, (h, w, 3) for colour."""
    from PySide6.QtGui import QImage

    image = QImage(str(path))
    assert not image.isNull(), f"{path} is not a readable image"
    grey = image.format() == QImage.Format.Format_Grayscale8
    if not grey:
        image = image.convertToFormat(QImage.Format.Format_RGB888)
    h, w, bpl = image.height(), image.width(), image.bytesPerLine()
    raw = np.frombuffer(image.constBits(), dtype=np.uint8, count=h * bpl).reshape(h, bpl)
    channels = 1 if grey else 3
    arr = raw[:, : w * channels].reshape(h, w) if grey else raw[:, : w * 3].reshape(h, w, 3)
    return arr.copy(), grey


def linear(values, center, width) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 to 0..255, computed here by hand."""
    v = np.asarray(values, dtype=np.float64)
    return np.rint(np.clip((v - (center - 0.5)) / (width - 1) + 0.5, 0, 1) * 255).astype(np.uint8)


def assert_one_error_line(code, out, err):
    assert code == 1, f"exit {code}; stderr: {err!r}"
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("error: ")
    assert len(lines[0]) > len("error: ") + 10
    assert out == ""
    return lines[0]


HU = np.array([[-1000, -600, -160, 0, 40, 239, 400, 1000]] * 4)


@pytest.fixture
def ct_file(tmp_path):
    """A small CT (4 x 8) with a file window 40/400 named MEDIASTINUM and a second one."""
    ds = ct_dataset((HU + 1024).astype(np.int16), WindowCenter=[40, 300], WindowWidth=[400, 1500],
                    WindowCenterWidthExplanation=["MEDIASTINUM", "Bone (scanner)"])
    return save(ds, tmp_path / "ct.dcm")


# -- info ------------------------------------------------------------------------------------------

REQUIRED = {
    "patient": {"name", "id", "species", "breed", "owner", "sex", "birth_date"},
    "study": {"instance_uid", "date", "description", "accession"},
    "series": {"instance_uid", "modality", "number", "description"},
    "instance": {"sop_class_uid", "sop_instance_uid", "transfer_syntax_uid", "rows", "columns", "frames",
                 "photometric_interpretation", "bits_stored", "pixel_spacing_mm", "spacing_source"},
}


def test_info_json_has_the_required_keys_and_values(run_cli, tmp_path):
    ds = ct_dataset(PatientName="Smith^Rex", PatientID="VET-0042", PatientSex="M", PatientBirthDate="20190301",
                    PatientSpeciesDescription="Canine",
                    PatientBreedCodeSequence=sequence(code_item("28964004", "SCT", "Labrador retriever")),
                    ResponsiblePerson="Smith^Jane", StudyDate="20240506", StudyDescription="Thorax",
                    AccessionNumber="A-77", SeriesNumber=3, SeriesDescription="Lateral",
                    PixelSpacing=[0.5, 0.25])
    path = save(ds, tmp_path / "rex.dcm")
    code, out, err = run_cli("info", "--json", path)
    assert (code, err) == (0, "")
    info = json.loads(out)
    for section, keys in REQUIRED.items():
        assert keys <= set(info[section]), f"{section} lacks {keys - set(info[section])}"
    assert info["patient"] == {**info["patient"], "name": "Smith^Rex", "id": "VET-0042", "species": "Canine",
                               "breed": "Labrador retriever", "owner": "Smith^Jane", "sex": "M",
                               "birth_date": "20190301"}
    assert info["study"] == {**info["study"], "instance_uid": ds.StudyInstanceUID, "date": "20240506",
                             "description": "Thorax", "accession": "A-77"}
    assert info["series"] == {**info["series"], "instance_uid": ds.SeriesInstanceUID, "modality": "CT",
                              "number": 3, "description": "Lateral"}
    assert info["instance"] == {**info["instance"], "sop_class_uid": ds.SOPClassUID,
                                "sop_instance_uid": ds.SOPInstanceUID,
                                "transfer_syntax_uid": "1.2.840.10008.1.2.1", "rows": 16, "columns": 16,
                                "frames": 1, "photometric_interpretation": "MONOCHROME2", "bits_stored": 16,
                                "pixel_spacing_mm": [0.5, 0.25], "spacing_source": "PixelSpacing"}


def test_info_json_spacing_at_the_detector_and_none(run_cli, tmp_path):
    dx = image_dataset(np.zeros((4, 6), np.uint16), modality="DX", bits_stored=12, ImagerPixelSpacing=[0.1, 0.2])
    code, out, _ = run_cli("info", "--json", save(dx, tmp_path / "dx.dcm"))
    instance = json.loads(out)["instance"]
    assert code == 0
    assert (instance["pixel_spacing_mm"], instance["spacing_source"]) == ([0.1, 0.2], "ImagerPixelSpacing")
    assert (instance["rows"], instance["columns"], instance["bits_stored"]) == (4, 6, 12)
    sc = image_dataset(np.zeros((2, 3, 3), np.uint8))
    code, out, _ = run_cli("info", "--json", save(sc, tmp_path / "sc.dcm"))
    instance = json.loads(out)["instance"]
    assert (instance["pixel_spacing_mm"], instance["spacing_source"]) == (None, None)
    assert instance["photometric_interpretation"] == "RGB"


def test_info_json_of_a_multi_frame_and_of_an_sr(run_cli):
    code, out, _ = run_cli("info", "--json", pydicom_file("examples_ybr_color.dcm"))
    assert code == 0 and json.loads(out)["instance"]["frames"] == 30
    code, out, _ = run_cli("info", "--json", pydicom_file("test-SR.dcm"))
    instance = json.loads(out)["instance"]
    assert code == 0
    assert instance["rows"] is None and instance["pixel_spacing_mm"] is None and instance["frames"] == 0


@pytest.mark.parametrize(
    "charset, name, owner, encoded",
    [
        ("ISO_IR 192", "Müller^Bello", "Παπαδόπουλος^Ζωή", "Müller^Bello".encode("utf-8")),
        ("ISO_IR 192", "山田^ポチ", "Иванов^Пётр", "山田^ポチ".encode("utf-8")),
        ("ISO_IR 100", "Gonçalves^Médor", "Ødegård^Åse", "Gonçalves^Médor".encode("latin-1")),
        ("ISO_IR 144", "Иванов^Шарик", "Петрова^Анна", "Иванов^Шарик".encode("iso8859_5")),
    ],
)
def test_info_decodes_names_by_the_character_set(run_cli, tmp_path, charset, name, owner, encoded):
    ds = ct_dataset(SpecificCharacterSet=charset, PatientName=name, ResponsiblePerson=owner)
    path = save(ds, tmp_path / "names.dcm")
    assert encoded in path.read_bytes()  # the file really holds the name in that character set
    code, out, err = run_cli("info", "--json", path)
    assert (code, err) == (0, "")
    patient = json.loads(out)["patient"]
    assert patient["name"] == name
    assert patient["owner"] == owner
    family, given = name.split("^")
    assert patient["name"].split("^") == [family, given]
    code, out, _ = run_cli("info", path)
    assert code == 0 and name in out and owner in out


def test_info_text(run_cli, ct_file):
    code, out, err = run_cli("info", ct_file)
    assert (code, err) == (0, "")
    assert "8 x 4 · 1 frame · MONOCHROME2" in out  # columns x rows
    assert "CT Image Storage" in out and "Explicit VR Little Endian" in out


# -- render ----------------------------------------------------------------------------------------

def test_render_default_is_the_files_first_window(run_cli, ct_file, tmp_path):
    out_png = tmp_path / "ct.png"
    code, out, err = run_cli("render", ct_file, "-o", out_png)
    assert (code, out, err) == (0, "", "")
    pixels, grey = png_pixels(out_png)
    assert grey and pixels.shape == (4, 8)
    assert np.array_equal(pixels, linear(HU, 40, 400))


def test_render_json_reports_what_was_written(run_cli, ct_file, tmp_path):
    out_png = tmp_path / "ct.png"
    code, out, err = run_cli("render", ct_file, "-o", out_png, "--json", "--size", "16")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report == {**report, "output": str(out_png), "width": 16, "height": 8, "color": False, "frame": 1}
    assert png_pixels(out_png)[0].shape == (8, 16)


@pytest.mark.parametrize(
    "preset, center, width",
    [("Lung", -600, 1500), ("bone", 400, 1800), ("Soft tissue", 40, 400), ("Brain", 40, 80),
     ("Mediastinum", 40, 400), ("Bone (scanner)", 300, 1500)],
)
def test_render_preset(run_cli, ct_file, tmp_path, preset, center, width):
    out_png = tmp_path / "p.png"
    code, _, err = run_cli("render", ct_file, "-o", out_png, "--preset", preset)
    assert (code, err) == (0, "")
    assert np.array_equal(png_pixels(out_png)[0], linear(HU, center, width))


def test_render_full_range_and_auto_presets(run_cli, ct_file, tmp_path):
    out_png = tmp_path / "p.png"
    assert run_cli("render", ct_file, "-o", out_png, "--preset", "Full range")[0] == 0
    expected = np.rint((HU - HU.min()) / (HU.max() - HU.min()) * 255)
    assert np.array_equal(png_pixels(out_png)[0], expected.astype(np.uint8))
    assert run_cli("render", ct_file, "-o", out_png, "--preset", "auto")[0] == 0


def test_render_unknown_preset(run_cli, ct_file, tmp_path):
    line = assert_one_error_line(*run_cli("render", ct_file, "-o", tmp_path / "p.png", "--preset", "Liver"))
    assert "Liver" in line and "Lung" in line and "Mediastinum" in line
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("form", ["separate", "joined"])
@pytest.mark.parametrize("center, width", [(-600, 1500), (-100, 700), (50, 350)])
def test_render_window(run_cli, ct_file, tmp_path, form, center, width):
    # A lung window starts with a minus sign: `--window -600,1500` must work as typed.
    out_png = tmp_path / "w.png"
    window = ["--window", f"{center},{width}"] if form == "separate" else [f"--window={center},{width}"]
    code, _, err = run_cli("render", ct_file, "-o", out_png, *window)
    assert (code, err) == (0, "")
    assert np.array_equal(png_pixels(out_png)[0], linear(HU, center, width))


@pytest.mark.parametrize("bad", ["40", "a,b", "40,0", "40,-5", "1,2,3"])
def test_render_bad_window(run_cli, ct_file, tmp_path, bad):
    line = assert_one_error_line(*run_cli("render", ct_file, "-o", tmp_path / "w.png", f"--window={bad}"))
    assert "--window" in line


def test_render_invert(run_cli, ct_file, tmp_path):
    out_png = tmp_path / "i.png"
    assert run_cli("render", ct_file, "-o", out_png, "--invert")[0] == 0
    assert np.array_equal(png_pixels(out_png)[0], 255 - linear(HU, 40, 400))


def test_render_monochrome1_is_inverted_and_invert_restores(run_cli, tmp_path):
    stored = np.array([[0, 100, 200, 255]], dtype=np.uint8)
    path = save(image_dataset(stored, photometric="MONOCHROME1", modality="CR"), tmp_path / "m1.dcm")
    out_png = tmp_path / "m1.png"
    assert run_cli("render", path, "-o", out_png)[0] == 0
    assert png_pixels(out_png)[0].tolist() == [[255, 155, 55, 0]]
    assert run_cli("render", path, "-o", out_png, "--invert")[0] == 0
    assert png_pixels(out_png)[0].tolist() == [[0, 100, 200, 255]]


def test_render_default_without_window_is_the_full_range(run_cli, tmp_path):
    # A radiograph without a window: the CLI shows every value, min black and max white (no
    # automatic window that would clip the marker and the collimator edge).
    stored = np.full((10, 20), 1000, dtype=np.uint16) + np.arange(20, dtype=np.uint16) * 10
    stored[0, 0], stored[9, 19] = 0, 4000
    path = save(image_dataset(stored, modality="DX", bits_stored=12, RescaleSlope=2, RescaleIntercept=-50),
                tmp_path / "dx.dcm")
    out_png = tmp_path / "dx.png"
    assert run_cli("render", path, "-o", out_png)[0] == 0
    modality = stored * 2.0 - 50
    expected = np.rint((modality - modality.min()) / (modality.max() - modality.min()) * 255)
    assert np.array_equal(png_pixels(out_png)[0], expected.astype(np.uint8))


def test_render_default_uses_the_voi_lut(run_cli, tmp_path):
    stored = np.array([[0, 10, 20, 200]], dtype=np.uint16)
    ds = image_dataset(stored, modality="CR", bits_stored=10)
    ds.VOILUTSequence = sequence(lut_item([256, 0, 8], [255 - i for i in range(256)]))
    out_png = tmp_path / "voi.png"
    assert run_cli("render", save(ds, tmp_path / "voi.dcm"), "-o", out_png)[0] == 0
    assert png_pixels(out_png)[0].tolist() == [[255, 245, 235, 55]]


@pytest.mark.parametrize("size, shape", [(64, (32, 64)), (4, (2, 4)), (8, (4, 8)), (1, (1, 1))])
def test_render_size_is_the_longest_side(run_cli, ct_file, tmp_path, size, shape):
    out_png = tmp_path / "s.png"
    assert run_cli("render", ct_file, "-o", out_png, "--size", size)[0] == 0
    pixels, _ = png_pixels(out_png)
    assert pixels.shape == shape
    if size == 64:  # magnified 8x: every source pixel becomes an 8 x 8 block
        assert np.array_equal(pixels, np.kron(linear(HU, 40, 400), np.ones((8, 8), np.uint8)))


@pytest.mark.parametrize("bad", ["0", "-3"])
def test_render_bad_size(run_cli, ct_file, tmp_path, bad):
    assert_one_error_line(*run_cli("render", ct_file, "-o", tmp_path / "s.png", f"--size={bad}"))


def test_render_colour_is_rgb(run_cli, tmp_path):
    rgb = np.zeros((6, 10, 3), np.uint8)
    rgb[..., 0] = np.arange(10) * 25
    rgb[..., 1] = np.arange(6)[:, None] * 40
    rgb[..., 2] = 200
    path = save(image_dataset(rgb, photometric="RGB"), tmp_path / "rgb.dcm")
    out_png = tmp_path / "rgb.png"
    code, _, err = run_cli("render", path, "-o", out_png)
    assert (code, err) == (0, "")
    pixels, grey = png_pixels(out_png)
    assert not grey and np.array_equal(pixels, rgb)


def test_render_ybr_colour_from_pydicom(run_cli, tmp_path):
    import pydicom

    path = pydicom_file("SC_rgb_dcmtk_+eb+cy+s2.dcm")  # YBR_FULL_422
    out_png = tmp_path / "ybr.png"
    assert run_cli("render", path, "-o", out_png)[0] == 0
    pixels, grey = png_pixels(out_png)
    assert not grey
    assert np.abs(pixels.astype(int) - pydicom.dcmread(path).pixel_array.astype(int)).max() <= 1


def test_render_jpeg(run_cli, ct_file, tmp_path):
    out_jpg = tmp_path / "ct.jpg"
    assert run_cli("render", ct_file, "-o", out_jpg, "--size", "80")[0] == 0
    assert out_jpg.read_bytes()[:3] == b"\xff\xd8\xff"
    assert png_pixels(out_jpg)[0].shape[:2] == (40, 80)


def multi_frame(tmp_path, compressed: bool) -> Path:
    frames = np.stack([np.full((4, 5), 100 * k, np.uint16) + np.arange(5, dtype=np.uint16) for k in range(6)])
    ds = image_dataset(frames, modality="XA", bits_stored=12)
    if compressed:
        ds.compress(RLELossless, frames)
    return save(ds, tmp_path / ("rle.dcm" if compressed else "mf.dcm"))


@pytest.mark.parametrize("compressed", [False, True], ids=["native", "rle"])
@pytest.mark.parametrize("frame", [1, 4, 6])
def test_render_frame(run_cli, tmp_path, compressed, frame):
    path = multi_frame(tmp_path, compressed)
    out_png = tmp_path / "f.png"
    code, out, err = run_cli("render", path, "-o", out_png, "--frame", frame, "--window", "300,601", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["frame"] == frame
    expected = linear(100 * (frame - 1) + np.arange(5), 300, 601)
    assert np.array_equal(png_pixels(out_png)[0], np.tile(expected, (4, 1)))


# -- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["text", "jpeg", "html", "s3-xml", "png", "pdf", "json", "zip", "gzip"])
@pytest.mark.parametrize("command", ["render", "info"])
def test_not_dicom(run_cli, tmp_path, kind, command):
    path = tmp_path / f"download-{kind}.dcm"
    path.write_bytes(NOT_DICOM[kind])
    extra = ["-o", tmp_path / "x.png"] if command == "render" else []
    line = assert_one_error_line(*run_cli(command, path, *extra))
    assert str(path) in line and "not a DICOM file" in line
    assert not (tmp_path / "x.png").exists()


def test_a_real_jpeg_is_not_dicom(run_cli, tmp_path):
    from app.ui.images import save_image

    photo = tmp_path / "photo.jpg"
    save_image(np.zeros((8, 8, 3), np.uint8), photo)
    line = assert_one_error_line(*run_cli("render", photo, "-o", tmp_path / "x.png"))
    assert "JPEG image" in line


def test_missing_file(run_cli, tmp_path):
    missing = tmp_path / "nope.dcm"
    for args in (("info", missing), ("render", missing, "-o", tmp_path / "x.png")):
        line = assert_one_error_line(*run_cli(*args))
        assert str(missing) in line and "not found" in line


def test_truncated_inside_the_header(run_cli, tmp_path, ct_file):
    data = ct_file.read_bytes()
    cut = tmp_path / "cut-header.dcm"
    cut.write_bytes(data[:400])
    for args in (("info", cut), ("render", cut, "-o", tmp_path / "x.png")):
        line = assert_one_error_line(*run_cli(*args))
        assert "truncated" in line


@pytest.mark.parametrize("compressed", [False, True], ids=["native", "rle"])
def test_truncated_inside_the_pixel_data(run_cli, tmp_path, compressed):
    data = multi_frame(tmp_path, compressed).read_bytes()
    cut = tmp_path / "cut-pixels.dcm"
    cut.write_bytes(data[:-40])
    line = assert_one_error_line(*run_cli("render", cut, "-o", tmp_path / "x.png"))
    assert "truncated" in line
    assert run_cli("info", cut)[0] == 0  # the header is intact: info still answers


@pytest.mark.parametrize("name", ["rtplan.dcm", "test-SR.dcm", "waveform_ecg.dcm"])
def test_no_pixel_data(run_cli, tmp_path, name):
    line = assert_one_error_line(*run_cli("render", pydicom_file(name), "-o", tmp_path / "x.png"))
    assert "no image" in line or "no pixel data" in line


def test_no_pixel_data_built_here(run_cli, tmp_path):
    plan = base_dataset("1.2.840.10008.5.1.4.1.1.481.5", modality="RTPLAN")  # RT Plan Storage
    line = assert_one_error_line(*run_cli("render", save(plan, tmp_path / "plan.dcm"), "-o", tmp_path / "x.png"))
    assert "RT Plan" in line


@pytest.mark.parametrize(
    "uid",
    ["1.2.840.10008.1.2.4.110",  # JPEG XL Lossless
     "1.2.840.10008.1.2.4.112",  # JPEG XL
     "1.2.840.10008.1.2.4.100",  # MPEG2
     "1.3.6.1.4.1.99999.7.1"],  # a vendor's private syntax
)
@pytest.mark.parametrize("compressed", [False, True], ids=["native", "rle"])
def test_transfer_syntax_without_a_decoder_is_named(run_cli, tmp_path, uid, compressed):
    ds = ct_dataset()
    if compressed:
        ds.compress(RLELossless, ds.pixel_array)
    path = tmp_path / "exotic.dcm"
    path.write_bytes(with_transfer_syntax(ds, uid))
    line = assert_one_error_line(*run_cli("render", path, "-o", tmp_path / "x.png"))
    assert uid in line and "transfer syntax" in line
    code, out, _ = run_cli("info", "--json", path)  # the header is still readable
    assert code == 0 and json.loads(out)["instance"]["transfer_syntax_uid"] == uid


def test_transfer_syntax_whose_decoder_is_not_installed(run_cli, tmp_path, monkeypatch):
    # As on a computer where the JPEG 2000 plugin (pylibjpeg-openjpeg) is missing.
    from types import SimpleNamespace

    from app.dicom import pixels

    monkeypatch.setattr(pixels, "get_decoder", lambda uid: SimpleNamespace(is_available=False))
    path = pydicom_file("MR_small_jp2klossless.dcm")
    line = assert_one_error_line(*run_cli("render", path, "-o", tmp_path / "x.png"))
    assert "1.2.840.10008.1.2.4.90" in line and "JPEG 2000" in line and "decoder" in line


@pytest.mark.parametrize(
    "change",
    [{"Rows": 32}, {"Columns": 17}, {"NumberOfFrames": 3}, {"BitsAllocated": 32, "BitsStored": 32}],
    ids=["rows", "columns", "frames", "bits"],
)
def test_pixel_data_shorter_than_the_header_says(run_cli, tmp_path, change):
    ds = ct_dataset()
    for keyword, value in change.items():
        setattr(ds, keyword, value)
    path = save(ds, tmp_path / "short.dcm")
    line = assert_one_error_line(*run_cli("render", path, "-o", tmp_path / "x.png"))
    assert "shorter" in line


@pytest.mark.parametrize("frame", ["0", "7", "-1", "100000"])
def test_bad_frame_number(run_cli, tmp_path, frame):
    path = multi_frame(tmp_path, compressed=False)
    line = assert_one_error_line(*run_cli("render", path, "-o", tmp_path / "x.png", f"--frame={frame}"))
    assert "frame" in line and "6" in line


def test_bad_output(run_cli, ct_file, tmp_path):
    assert_one_error_line(*run_cli("render", ct_file, "-o", tmp_path / "x.bmp"))
    assert_one_error_line(*run_cli("render", ct_file, "-o", tmp_path / "no-such-folder" / "x.png"))


@pytest.mark.parametrize(
    "args",
    [
        ["render"],
        ["render", "x.dcm"],  # no -o
        ["render", "x.dcm", "-o", "x.png", "--frame", "two"],
        ["render", "x.dcm", "-o", "x.png", "--size", "big"],
        ["render", "x.dcm", "-o", "x.png", "--window", "40,400", "--preset", "Lung"],
        ["render", "x.dcm", "-o", "x.png", "--no-such-option"],
        ["info"],
        ["info", "a.dcm", "b.dcm"],
        ["--no-such-option"],
    ],
)
def test_usage_errors_exit_2(run_cli, args):
    code, out, err = run_cli(*args)
    assert code == 2
    assert "Traceback" not in out + err
    assert err.splitlines()[-1].startswith("error: ")


def test_version_and_help(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and out.startswith("Lightbox ")
    code, out, _ = run_cli("render", "--help")
    assert code == 0 and "--preset" in out and "--window" in out


# -- as a user runs it: a separate process ---------------------------------------------------------

def run_exe(lightbox_exe, *args, env=None):
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([*lightbox_exe, *map(str, args)], capture_output=True, cwd=ROOT, env=full_env,
                          timeout=60)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def test_exe_html_error_page(lightbox_exe, tmp_path):
    page = tmp_path / "study.dcm"
    page.write_bytes(NOT_DICOM["html"])
    line = assert_one_error_line(*run_exe(lightbox_exe, "render", page, "-o", tmp_path / "x.png"))
    assert "HTML page" in line


def test_exe_damaged_header_prints_one_line_only(lightbox_exe, tmp_path):
    # pydicom warns about this file's invalid Number of Frames ('1A'); the user must still see
    # a single error line, not the library's warning as well.
    path = pydicom_file("badVR.dcm")
    assert_one_error_line(*run_exe(lightbox_exe, "render", path, "-o", tmp_path / "x.png"))


def test_exe_success_is_quiet(lightbox_exe, tmp_path):
    # pydicom warns about the padding of this file; a successful render prints nothing on stderr.
    out_png = tmp_path / "mr.png"
    code, out, err = run_exe(lightbox_exe, "render", pydicom_file("MR_small_padded.dcm"), "-o", out_png)
    assert (code, out, err) == (0, "", "")
    assert png_pixels(out_png)[0].shape == (64, 64)


def test_exe_info_json_survives_a_narrow_console_encoding(lightbox_exe, tmp_path):
    # Redirected output on Windows is encoded in the ANSI code page (cp1252): a Greek or Japanese
    # name must not turn `lightbox info --json > out.json` into an "unexpected failure".
    ds = ct_dataset(SpecificCharacterSet="ISO_IR 192", PatientName="Παπαδόπουλος^Ζεύς", PatientID="G-1")
    path = save(ds, tmp_path / "greek.dcm")
    code, out, err = run_exe(lightbox_exe, "info", "--json", path, env={"PYTHONIOENCODING": "cp1252"})
    assert code == 0, err
    assert "Traceback" not in out + err
    assert json.loads(out)["patient"]["id"] == "G-1"
