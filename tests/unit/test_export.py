"""`export_study` and `lightbox export`: DICOM folders, DICOMDIR file-sets, zips, rendered images, anonymisation."""

from __future__ import annotations

import errno
import json
import os
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import UID_dictionary

from app.dicom.display import Window
from app.errors import Cancelled, UsageError
from app.library import Library, import_paths
from app.library.anonymize import DELETED, EMPTIED, Anonymizer
from app.library.export import STAGING_PREFIX, export_study
from app.library.store import StorageError
from tests.conftest import SAMPLE
from tests.unit.helpers import base_dataset, code_item, image_dataset, save, sequence

SAMPLE_STUDY = "1.2.826.0.1.3680043.8.498.12260200752144704420035143382027889823"
DICOM_FORMATS = ("dicom", "dicomdir", "zip")


# -- fixtures and helpers ------------------------------------------------------------------------

@pytest.fixture
def library(tmp_path):
    """A library holding the bundled sample (1 DX + 24 CT)."""
    lib = Library(root=tmp_path / "source-library", microchip_issuers=())
    result = import_paths([SAMPLE], library=lib)
    assert result.count("imported") == 25 and not result.failed
    yield lib
    lib.close()


def reimport(path: Path, root: Path) -> Library:
    """The export imported into a new, empty library."""
    lib = Library(root=root, microchip_issuers=())
    assert lib.counts()["instances"] == 0
    result = import_paths([path], library=lib)
    assert not result.failed, [e.as_dict() for e in result.failed]
    assert result.count("imported") == 25
    return lib


def datasets(lib: Library) -> dict[str, pydicom.Dataset]:
    out = {}
    for study in lib.studies():
        for record in lib.instances(study_uid=study.uid):
            out[record.sop_uid] = pydicom.dcmread(record.path)
    return out


def assert_same_dataset(a: Dataset, b: Dataset, where: str) -> None:
    """Every element equal, nested sequences included; of the file meta, what describes the instance."""
    tags_a = [e.tag for e in a]
    assert tags_a == [e.tag for e in b], f"{where}: other elements"
    for elem in a:
        other = b[elem.tag]
        assert elem.VR == other.VR, f"{where}: {elem.tag} VR"
        if elem.VR == "SQ":
            assert len(elem.value) == len(other.value), f"{where}: {elem.tag} items"
            for i, (x, y) in enumerate(zip(elem.value, other.value)):
                assert_same_dataset(x, y, f"{where} {elem.tag}[{i}]")
        else:
            assert elem.value == other.value, f"{where}: {elem.tag} {elem.keyword}"
    if hasattr(a, "file_meta"):
        for keyword in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID"):
            assert a.file_meta[keyword].value == b.file_meta[keyword].value, f"{where}: {keyword}"


def no_leftovers(folder: Path) -> None:
    if folder.exists():
        left = [p for p in folder.rglob("*") if p.name.startswith(STAGING_PREFIX) or p.name.endswith(".partial")]
        assert not left, left


def read_fileset(dicomdir: Path) -> FileSet:
    fileset = FileSet(pydicom.dcmread(dicomdir))
    fileset._stage["t"].cleanup()  # its empty staging folder, which pydicom removes only at garbage collection
    return fileset


class StopAfter:
    """A reporter that cancels after `n` updates."""

    def __init__(self, n: int):
        self.n = n
        self.calls = 0

    def update(self, done=None, total=None, message=None):
        self.calls += 1
        if self.calls > self.n:
            raise Cancelled()

    def check(self):
        if self.calls > self.n:
            raise Cancelled()


# -- round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", DICOM_FORMATS)
def test_export_reimported_gives_back_the_same_instances(library, tmp_path, fmt):
    result = export_study(SAMPLE_STUDY, tmp_path / "out", format=fmt, library=library)
    assert result.instances == 25 and not result.warnings and not result.anonymized
    assert all(p.is_file() for p in result.paths)
    back = reimport(result.destination, tmp_path / "empty-library")
    try:
        original, returned = datasets(library), datasets(back)
        assert sorted(returned) == sorted(original)
        for sop, ds in original.items():
            assert returned[sop].PixelData == ds.PixelData, sop
            assert_same_dataset(ds, returned[sop], sop)
            # the promise is stronger: the files are the library's own bytes
            assert Path(back.instance(sop).path).read_bytes() == Path(library.instance(sop).path).read_bytes()
        assert back.study(SAMPLE_STUDY).patient == library.study(SAMPLE_STUDY).patient
    finally:
        back.close()
    no_leftovers(tmp_path / "out")


@pytest.mark.parametrize("fmt", DICOM_FORMATS)
def test_anonymised_export_maps_uids_consistently_and_keeps_the_clinical_part(library, tmp_path, fmt):
    result = export_study(SAMPLE_STUDY, tmp_path / "out", format=fmt, anonymize=True, library=library)
    assert result.anonymized and result.uid_map_size == 1 + 2 + 25 + 1  # study, series, instances, frame of ref
    back = reimport(result.destination, tmp_path / "empty-library")
    try:
        original, returned = datasets(library), datasets(back)
        assert not set(original) & set(returned), "SOP Instance UIDs must all be new"
        assert [s.uid for s in back.studies()] == [result.exported_study_uid] != [SAMPLE_STUDY]
        by_position = {(str(ds.SeriesNumber), int(ds.InstanceNumber)): ds for ds in returned.values()}
        series_map, for_map = defaultdict(set), defaultdict(set)
        for ds in original.values():
            anon = by_position[(str(ds.SeriesNumber), int(ds.InstanceNumber))]
            assert anon.PixelData == ds.PixelData
            assert anon.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
            assert anon.file_meta.MediaStorageSOPInstanceUID == anon.SOPInstanceUID != ds.SOPInstanceUID
            assert anon.SOPClassUID == ds.SOPClassUID
            assert anon.StudyInstanceUID == result.exported_study_uid
            series_map[ds.SeriesInstanceUID].add(anon.SeriesInstanceUID)
            if "FrameOfReferenceUID" in ds:
                for_map[ds.FrameOfReferenceUID].add(anon.FrameOfReferenceUID)
            # identity gone
            assert str(anon.PatientName).startswith("ANON-") and anon.PatientID == str(anon.PatientName)
            assert "Hendricks" not in str(anon.PatientName) + anon.PatientID
            assert anon.PatientBirthDate in ("", None) and anon.ResponsiblePerson in ("", None)
            assert anon.AccessionNumber in ("", None) and anon.ReferringPhysicianName in ("", None)
            for gone in ("InstitutionName", "StationName", "StudyDescription", "SeriesDescription",
                         "ResponsiblePersonRole", "OtherPatientIDsSequence"):
                assert gone not in anon, gone
            assert anon.PatientIdentityRemoved == "YES"
            assert "113100" in [c.CodeValue for c in anon.DeidentificationMethodCodeSequence]
            assert anon.DeidentificationMethod
            # clinical and veterinary attributes kept, unchanged
            for kept in ("PatientSpeciesDescription", "PatientSpeciesCodeSequence", "PatientBreedDescription",
                         "PatientBreedCodeSequence", "PatientSex", "PatientSexNeutered", "Modality",
                         "BodyPartExamined", "PixelSpacing", "WindowCenter", "WindowWidth", "StudyDate",
                         "Rows", "Columns", "RescaleIntercept", "RescaleSlope"):
                if kept in ds:
                    assert anon[kept].value == ds[kept].value, kept
            # every attribute the profile does not touch is equal
            touched = DELETED | EMPTIED | {"PatientIdentityRemoved", "DeidentificationMethod",
                                           "DeidentificationMethodCodeSequence",
                                           "LongitudinalTemporalInformationModified"}
            for elem in ds:
                instance_uid = elem.VR == "UI" and elem.value not in UID_dictionary
                if elem.tag.is_private or elem.keyword in touched or instance_uid:
                    continue
                assert elem.tag in anon and anon[elem.tag].value == elem.value, elem.keyword
        assert all(len(v) == 1 for v in series_map.values()) and len(series_map) == 2
        assert len({next(iter(v)) for v in series_map.values()}) == 2
        assert all(len(v) == 1 for v in for_map.values()) and for_map
        patient = back.studies()[0].patient
        assert (patient.species, patient.breed, patient.owner, patient.birth_date) == \
            ("Canine", "Golden Retriever", "", "")
    finally:
        back.close()


# -- DICOMDIR ------------------------------------------------------------------------------------

def test_dicomdir_reads_back_with_pydicom_fileset(library, tmp_path):
    result = export_study(SAMPLE_STUDY, tmp_path / "usb", format="dicomdir", library=library)
    root = tmp_path / "usb"
    assert sorted(p.name for p in root.iterdir()) == ["DICOMDIR", "PT000000"]
    assert result.paths[0] == root / "DICOMDIR" and len(result.paths) == 26
    fileset = read_fileset(root / "DICOMDIR")
    assert len(fileset) == 25
    sops = {r.sop_uid: r for r in library.instances(study_uid=SAMPLE_STUDY)}
    for instance in fileset:
        assert Path(instance.path).read_bytes() == sops[instance.SOPInstanceUID].path.read_bytes()
        assert instance.ReferencedTransferSyntaxUIDInFile == sops[instance.SOPInstanceUID].transfer_syntax
    assert {i.SOPInstanceUID for i in fileset} == set(sops)
    patient = fileset.find(PatientID="VET-000123")[0]
    assert patient.PatientSpeciesDescription == "Canine" and patient.PatientBreedDescription == "Golden Retriever"
    assert patient.ResponsiblePerson == "Hendricks^Anna"
    assert {i.Modality for i in fileset} == {"DX", "CT"}


def test_dicomdir_stands_in_for_record_keys_a_file_lacks(tmp_path):
    """No StudyID, StudyDate, SeriesNumber or InstanceNumber: the records get stand-ins, the files stay as they are."""
    src = tmp_path / "src"
    src.mkdir()
    frames = np.arange(3 * 8 * 10, dtype=np.uint16).reshape(3, 8, 10)
    ds = image_dataset(frames, PatientSpeciesDescription="Feline")
    save(ds, src / "multi.dcm")
    lib = Library(root=tmp_path / "lib", microchip_issuers=())
    try:
        import_paths([src], library=lib)
        result = export_study(ds.StudyInstanceUID, tmp_path / "out", format="dicomdir", library=lib)
        fileset = read_fileset(tmp_path / "out" / "DICOMDIR")
        (instance,) = list(fileset)
        assert Path(instance.path).read_bytes() == (src / "multi.dcm").read_bytes()
        assert instance.InstanceNumber == 1 and instance.StudyID == "1"
        assert result.instances == 1
    finally:
        lib.close()


# -- zip -----------------------------------------------------------------------------------------

def test_zip_into_a_folder_is_named_after_patient_and_date(library, tmp_path):
    result = export_study(SAMPLE_STUDY, tmp_path / "exports", format="zip", library=library)
    assert result.destination == tmp_path / "exports" / "Hendricks_Bailey_20261102.zip"
    assert result.paths == [result.destination]
    with zipfile.ZipFile(result.destination) as archive:
        names = archive.namelist()
        assert "DICOMDIR" in names and len(names) == 26
        assert all(n == "DICOMDIR" or n.startswith("PT000000/") for n in names)
        assert archive.testzip() is None
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["Hendricks_Bailey_20261102.zip"]


def test_zip_to_a_path_and_anonymised_name(library, tmp_path):
    named = export_study(SAMPLE_STUDY, tmp_path / "case.zip", format="zip", library=library)
    assert named.destination == tmp_path / "case.zip" and named.destination.is_file()
    anon = export_study(SAMPLE_STUDY, tmp_path / "anon", format="zip", anonymize=True, library=library)
    assert anon.destination.name.startswith("ANON-") and "Hendricks" not in anon.destination.name
    with zipfile.ZipFile(anon.destination) as archive:
        for name in archive.namelist():
            assert b"Hendricks" not in archive.read(name), name
    no_leftovers(tmp_path)


# -- rendered images -----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, suffix", [("png", ".png"), ("jpeg", ".jpg")])
def test_images_one_per_frame_in_series_order(library, tmp_path, fmt, suffix):
    result = export_study(SAMPLE_STUDY, tmp_path / "img", format=fmt, library=library)
    files = sorted((tmp_path / "img").iterdir())
    assert result.frames == len(files) == 25 and result.paths == files
    assert files[0].name == f"SE001_DX_IM00001{suffix}" and files[1].name == f"SE002_CT_IM00001{suffix}"
    assert files[-1].name == f"SE002_CT_IM00024{suffix}"
    with PILImage.open(files[0]) as dx, PILImage.open(files[1]) as ct:
        assert dx.size == (1800, 1400) and ct.size == (256, 256)
        assert dx.format == ("PNG" if fmt == "png" else "JPEG") and dx.mode == "L"


def test_window_and_preset_change_the_images(library, tmp_path):
    default = export_study(SAMPLE_STUDY, tmp_path / "default", format="png", library=library)
    narrow = export_study(SAMPLE_STUDY, tmp_path / "narrow", format="png", voi=Window(40, 80), library=library)
    lung = export_study(SAMPLE_STUDY, tmp_path / "lung", format="png", preset="Lung", library=library)

    def pixels(result, i):
        with PILImage.open(result.paths[i]) as image:
            return np.asarray(image)

    for i in (0, 5):
        assert not np.array_equal(pixels(default, i), pixels(narrow, i))
    assert not np.array_equal(pixels(default, 5), pixels(lung, 5))
    assert np.array_equal(pixels(default, 0), pixels(lung, 0))  # the radiograph has no lung preset
    assert any("Lung" in w for w in lung.warnings)
    with pytest.raises(UsageError, match="Nonsense"):
        export_study(SAMPLE_STUDY, tmp_path / "none", format="png", preset="Nonsense", library=library)
    assert not (tmp_path / "none").exists()


def test_multi_frame_images_get_one_file_per_frame(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    ds = image_dataset(np.arange(4 * 6 * 5, dtype=np.uint16).reshape(4, 6, 5))
    save(ds, src / "multi.dcm")
    lib = Library(root=tmp_path / "lib", microchip_issuers=())
    try:
        import_paths([src], library=lib)
        result = export_study(ds.StudyInstanceUID, tmp_path / "img", format="png", library=lib)
    finally:
        lib.close()
    assert [p.name for p in result.paths] == [f"SE001_OT_IM00001_F00{i}.png" for i in range(1, 5)]
    with PILImage.open(result.paths[0]) as image:
        assert image.size == (5, 6)


# -- the anonymiser alone ------------------------------------------------------------------------

def test_anonymiser_follows_references_and_removes_identity():
    first = base_dataset(PatientName="Hendricks^Bailey", PatientID="VET-1", PatientBirthDate="20190315",
                         PatientSex="F", PatientAge="006Y", PatientSexNeutered="ALTERED",
                         PatientSpeciesDescription="Canine", PatientBreedDescription="Beagle",
                         ResponsiblePerson="Hendricks^Anna", ResponsiblePersonRole="OWNER",
                         ResponsibleOrganization="Hendricks Farm", InstitutionName="Riverside",
                         InstitutionAddress="1 River Rd", ReferringPhysicianName="Marsh^Olivia",
                         OperatorsName="Smith", AccessionNumber="A1", StudyID="42", StudyDate="20261102",
                         ImageComments="Bailey, owner called", FrameOfReferenceUID=pydicom.uid.generate_uid())
    first.PatientSpeciesCodeSequence = sequence(code_item("448771007", "SCT", "Canis lupus familiaris"))
    chip = Dataset()
    chip.PatientID = "981000012345678"
    chip.TypeOfPatientID = "RFID"
    first.OtherPatientIDsSequence = sequence(chip)
    registration = Dataset()
    registration.BreedRegistrationNumber = "KC-1234"
    first.BreedRegistrationSequence = sequence(registration)
    first.add_new(0x00091010, "LO", "private note")
    first.file_meta.SourceApplicationEntityTitle = "CLINIC_DX"
    second = base_dataset(StudyInstanceUID=first.StudyInstanceUID, SeriesInstanceUID=first.SeriesInstanceUID)
    ref = Dataset()
    ref.ReferencedSOPClassUID = first.SOPClassUID
    ref.ReferencedSOPInstanceUID = first.SOPInstanceUID
    person = Dataset()
    person.ReferringPhysicianName = "Marsh^Olivia"
    ref.PersonIdentificationCodeSequence = sequence()
    second.ReferencedImageSequence = sequence(ref)
    second.RequestAttributesSequence = sequence(person)
    old = {k: str(first[k].value) for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")}

    anonymizer = Anonymizer()
    a, b = anonymizer.anonymize(first), anonymizer.anonymize(second)
    assert a.SOPInstanceUID != old["SOPInstanceUID"] and a.SOPInstanceUID.startswith("2.25.")
    assert b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert b.ReferencedImageSequence[0].ReferencedSOPClassUID == a.SOPClassUID  # classes are kept
    assert a.StudyInstanceUID == b.StudyInstanceUID != old["StudyInstanceUID"]
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert a.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert "SourceApplicationEntityTitle" not in a.file_meta
    assert len(anonymizer.uid_map) == 5  # study, series, frame of reference, two instances
    assert a.PatientName == a.PatientID == anonymizer.pseudonym == b.PatientID
    for emptied in ("PatientBirthDate", "ResponsiblePerson", "ResponsibleOrganization", "ReferringPhysicianName",
                    "AccessionNumber"):
        assert emptied in a and a[emptied].value in ("", None), emptied
    assert a.StudyID == "ANON"
    assert len(a.BreedRegistrationSequence) == 0
    for deleted in ("OtherPatientIDsSequence", "ResponsiblePersonRole", "InstitutionName", "InstitutionAddress",
                    "OperatorsName", "ImageComments"):
        assert deleted not in a, deleted
    assert "RequestAttributesSequence" not in b
    assert not any(e.tag.is_private for e in a)
    for kept, value in (("PatientSex", "F"), ("PatientAge", "006Y"), ("PatientSexNeutered", "ALTERED"),
                        ("PatientSpeciesDescription", "Canine"), ("PatientBreedDescription", "Beagle"),
                        ("StudyDate", "20261102")):
        assert a[kept].value == value, kept
    assert a.PatientSpeciesCodeSequence[0].CodeValue == "448771007"
    assert a.PatientIdentityRemoved == "YES"
    assert [c.CodeValue for c in a.DeidentificationMethodCodeSequence] == ["113100", "113106", "113108"]
    assert all(c.CodingSchemeDesignator == "DCM" for c in a.DeidentificationMethodCodeSequence)


# -- refusing, failing, cancelling ---------------------------------------------------------------

def test_existing_files_are_never_overwritten(library, tmp_path):
    out = tmp_path / "out"
    export_study(SAMPLE_STUDY, out, format="dicomdir", library=library)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(UsageError, match="already exists"):
        export_study(SAMPLE_STUDY, out, format="dicomdir", library=library)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    images = tmp_path / "images"
    export_study(SAMPLE_STUDY, images, format="png", library=library)
    (images / "SE002_CT_IM00024.png").unlink()
    with pytest.raises(UsageError, match="SE001_DX_IM00001.png already exists"):
        export_study(SAMPLE_STUDY, images, format="png", library=library)
    assert len(list(images.iterdir())) == 24
    no_leftovers(images)
    no_leftovers(out)
    # other files in the folder are no obstacle
    export_study(SAMPLE_STUDY, out, format="dicom", library=library)
    assert (out / "SE001_DX" / "IM00001.dcm").is_file() and (out / "DICOMDIR").is_file()


@pytest.mark.parametrize("fmt", ("dicom", "dicomdir", "zip", "png"))
def test_full_disk_leaves_nothing_behind(library, tmp_path, monkeypatch, fmt):
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "stick" / "export"
    with pytest.raises(StorageError, match="disk is full"):
        export_study(SAMPLE_STUDY, out, format=fmt, library=library)
    assert not out.exists()
    no_leftovers(tmp_path)


def test_cancel_leaves_nothing_behind(library, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("kept")
    with pytest.raises(Cancelled):
        export_study(SAMPLE_STUDY, tmp_path / "out", format="dicomdir", library=library, reporter=StopAfter(5))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]


def test_refuses_what_makes_no_sense(library, tmp_path):
    with pytest.raises(UsageError, match="no study"):
        export_study("1.2.3.4", tmp_path / "x", library=library)
    with pytest.raises(UsageError, match="tiff"):
        export_study(SAMPLE_STUDY, tmp_path / "x", format="tiff", library=library)
    with pytest.raises(UsageError, match="DICOM exports"):
        export_study(SAMPLE_STUDY, tmp_path / "x", format="png", anonymize=True, library=library)
    with pytest.raises(UsageError, match="png and jpeg"):
        export_study(SAMPLE_STUDY, tmp_path / "x", format="dicom", preset="Lung", library=library)
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="not a folder"):
        export_study(SAMPLE_STUDY, tmp_path / "file", library=library)
    assert not (tmp_path / "x").exists()


def test_progress_is_reported(library, tmp_path):
    seen = []

    class Recorder:
        def update(self, done=None, total=None, message=None):
            seen.append((done, total, message))

        def check(self):
            pass

    result = export_study(SAMPLE_STUDY, tmp_path / "out", format="zip", library=library, reporter=Recorder())
    assert seen[-1] == (50, 50, result.summary())
    assert any(m and "DICOMDIR" in m for _, _, m in seen)


# -- the command line ----------------------------------------------------------------------------

def test_cli_export(run_cli, tmp_path):
    code, out, err = run_cli("import", SAMPLE)
    assert code == 0, err
    code, out, err = run_cli("export", SAMPLE_STUDY, "--to", tmp_path / "usb", "--format", "dicomdir", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["format"] == "dicomdir" and data["instances"] == 25 and data["count"] == 26
    assert (tmp_path / "usb" / "DICOMDIR").is_file()

    code, out, err = run_cli("export", SAMPLE_STUDY, "--to", tmp_path / "img", "--format", "png",
                             "--window", "-600,1500")
    assert code == 0, err
    assert out.strip().startswith("Exported 25 images (png)")

    code, out, err = run_cli("export", SAMPLE_STUDY, "--to", tmp_path / "anon", "--anonymize", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["anonymized"] and data["uid_map_size"] == 29 and data["exported_study_uid"] != SAMPLE_STUDY


def test_cli_export_errors(run_cli, tmp_path):
    code, out, err = run_cli("export", "1.2.3.4", "--to", tmp_path / "x")
    assert code == 1 and "Traceback" not in out + err
    assert err.splitlines() == ["error: There is no study 1.2.3.4 in the library."]
    code, out, err = run_cli("export", SAMPLE_STUDY, "--to", tmp_path / "x", "--format", "tiff")
    assert code == 2 and "invalid choice" in err
    code, out, err = run_cli("export", SAMPLE_STUDY, "--to", tmp_path / "x", "--window", "1,2", "--preset", "Lung")
    assert code == 2
    code, out, err = run_cli("export", SAMPLE_STUDY)
    assert code == 2 and "--to" in err
    assert not (tmp_path / "x").exists()
