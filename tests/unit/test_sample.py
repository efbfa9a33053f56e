"""The bundled sample study: reproducible, veterinary, and decodable."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

RESOURCES = Path(__file__).parents[2] / "resources"
SAMPLE = RESOURCES / "sample"
DX_FILE = SAMPLE / "dx" / "thorax_lateral.dcm"


def load_generator():
    spec = importlib.util.spec_from_file_location(
        "make_sample", RESOURCES / "make_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*.dcm"))}


def test_regenerating_gives_the_same_study(tmp_path):
    """Same attributes and same pixels; the compressed bytes may differ with encoder versions."""
    assert load_generator().main(["make_sample.py", str(tmp_path)]) == 0
    fresh, committed = sample_files(tmp_path), sample_files(SAMPLE)
    assert sorted(fresh) == sorted(committed)
    assert len(fresh) == 25
    for name in fresh:
        a, b = pydicom.dcmread(fresh[name]), pydicom.dcmread(committed[name])
        assert np.array_equal(a.pixel_array, b.pixel_array), f"regenerate resources/sample: {name} differs"
        for ds in (a, b):
            del ds.PixelData
        assert a == b, f"regenerate resources/sample: {name} differs"


def test_dx_has_veterinary_attributes():
    ds = pydicom.dcmread(DX_FILE)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.Modality == "DX"
    assert ds.PatientName == "Hendricks^Bailey"
    assert ds.PatientID == "VET-000123"
    assert ds.PatientSex == "F"
    assert ds.PatientSexNeutered == "ALTERED"
    assert ds.PatientSpeciesDescription == "Canine"
    species = ds.PatientSpeciesCodeSequence[0]
    assert (species.CodeValue, species.CodingSchemeDesignator) == ("448771007", "SCT")
    assert ds.PatientBreedDescription == "Golden Retriever"
    assert len(ds.PatientBreedCodeSequence) == 1
    assert ds.ResponsiblePerson == "Hendricks^Anna"
    assert ds.ResponsiblePersonRole == "OWNER"
    assert "ResponsibleOrganization" not in ds
    assert ds.InstitutionName == "Riverside Veterinary Clinic"
    assert [float(v) for v in ds.PixelSpacing] == [0.15, 0.15]
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.16, 0.16]
    assert ds.PixelSpacingCalibrationType == "GEOMETRY"


def test_all_files_share_one_study():
    datasets = [pydicom.dcmread(p, stop_before_pixels=True)
                for p in sorted(SAMPLE.rglob("*.dcm"))]
    assert {ds.StudyInstanceUID for ds in datasets} == {datasets[0].StudyInstanceUID}
    assert {ds.SeriesNumber for ds in datasets} == {1, 2}
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)


@pytest.mark.parametrize("path", sorted(SAMPLE.rglob("*.dcm")),
                         ids=lambda p: p.name)
def test_every_file_decodes(path):
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    assert pixels.shape == (ds.Rows, ds.Columns)
    assert pixels.max() > pixels.min()


def test_ct_hounsfield_units_cover_air_soft_tissue_and_bone():
    hu = np.concatenate([
        apply_modality_lut(ds.pixel_array, ds).ravel()
        for ds in map(pydicom.dcmread, sorted((SAMPLE / "ct").glob("*.dcm")))
    ])
    for target in (-1000, 40, 700):
        assert np.any(np.abs(hu - target) <= 5), f"no CT value near {target} HU"
