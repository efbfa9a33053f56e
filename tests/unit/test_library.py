"""The local library: store, index, import, veterinary matching, search, removal, repair."""

import json
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from app.dicom.reading import read
from app.errors import UsageError
from app.library import Library, import_paths
from app.library import importer, schema
from app.library.store import StorageError
from tests.conftest import SAMPLE
from tests.unit.helpers import bare_bytes, ct_dataset, image_dataset, save, to_bytes


def animal(name="Hendricks^Bailey", pid="VET-1", owner="Hendricks^Anna", species="Canine",
           breed="Golden Retriever", study=None, series=None, **attrs) -> Dataset:
    ds = image_dataset(np.arange(64, dtype=np.uint16).reshape(8, 8), modality="DX")
    ds.PatientName, ds.PatientID, ds.ResponsiblePerson = name, pid, owner
    ds.PatientSpeciesDescription, ds.PatientBreedDescription = species, breed
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


@pytest.fixture
def library(tmp_path):
    with Library(tmp_path / "lib") as lib:
        yield lib


def statuses(result):
    return [e.status for e in result.entries]


# -- store and index ------------------------------------------------------------------------------

def test_the_sample_is_stored_under_its_uids_and_indexed(library):
    result = import_paths([SAMPLE], library=library)
    assert statuses(result) == ["imported"] * 25 and not result.failed and not result.conflicts
    (study,) = library.studies()
    assert (study.patient.name, study.patient.species, study.patient.breed, study.patient.owner) == (
        "Hendricks^Bailey", "Canine", "Golden Retriever", "Hendricks^Anna")
    assert study.modalities == "CT\\DX" and study.series_count == 2 and study.instance_count == 25
    assert study.accession == "A2026-0042" and study.referring_physician == "Marsh^Olivia"
    dx = next(i for i in library.instances(study_uid=study.uid) if i.rows == 1400)
    assert dx.path == library.root / "files" / study.uid / dx.series_uid / f"{dx.sop_uid}.dcm"
    assert dx.path.read_bytes() == (SAMPLE / "dx" / "thorax_lateral.dcm").read_bytes()
    assert (dx.columns, dx.frames, dx.source) == (1800, 1, "file")
    assert dx.transfer_syntax == pydicom.uid.RLELossless and dx.file_size == dx.path.stat().st_size
    series = {s.modality: s for s in library.series(study.uid)}
    assert series["CT"].instance_count == 24 and series["DX"].body_part == "CHEST"


def test_the_index_is_wal_and_versioned(library):
    assert library.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert library.db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION


def test_a_newer_index_is_refused_with_a_clear_message(tmp_path):
    Library(tmp_path / "lib").close()
    db = sqlite3.connect(tmp_path / "lib" / "index.sqlite")
    db.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    db.close()
    with pytest.raises(schema.IndexTooNew, match="newer Lightbox"):
        Library(tmp_path / "lib")


def test_migrations_run_in_order_from_any_older_version(tmp_path, monkeypatch):
    Library(tmp_path / "lib").close()
    extra = "ALTER TABLE studies ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0;"
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, extra])
    monkeypatch.setattr(schema, "VERSION", len(schema.MIGRATIONS))
    with Library(tmp_path / "lib") as lib:
        assert lib.db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION
        assert "flagged" in [r[1] for r in lib.db.execute("PRAGMA table_info(studies)")]


def test_a_uid_that_is_not_a_clean_uid_cannot_escape_the_store(library, tmp_path):
    ds = animal()
    ds.SOPInstanceUID = "../../../outside"
    path = save(ds, tmp_path / "odd.dcm")
    assert statuses(import_paths([path], library=library)) == ["imported"]
    stored = library.instance("../../../outside").path
    assert stored.resolve().is_relative_to((library.root / "files").resolve())
    assert not (tmp_path / "outside.dcm").exists()


def test_a_bare_dataset_is_stored_as_a_part_10_file(library, tmp_path):
    ds = animal()
    path = tmp_path / "bare"
    path.write_bytes(bare_bytes(ds))
    assert statuses(import_paths([path], library=library)) == ["imported"]
    data = library.instance(ds.SOPInstanceUID).path.read_bytes()
    assert data[128:132] == b"DICM"
    assert read(data).PatientSpeciesDescription == "Canine"


# -- import ---------------------------------------------------------------------------------------

def test_duplicates_are_reported_and_stored_once(library):
    import_paths([SAMPLE / "dx"], library=library)
    result = import_paths([SAMPLE / "dx", SAMPLE / "dx" / "thorax_lateral.dcm"], library=library)
    assert statuses(result) == ["duplicate", "duplicate"]
    assert result.entries[0].sop_instance_uid == read(SAMPLE / "dx" / "thorax_lateral.dcm").SOPInstanceUID
    assert library.counts()["instances"] == 1 and len(list(library.store.files())) == 1


def test_bad_files_are_reported_and_the_rest_goes_on(library, tmp_path):
    (tmp_path / "a").mkdir()
    good = save(animal(), tmp_path / "a" / "good.dcm")
    (tmp_path / "a" / "notes.txt").write_text("Bailey, lame left hind")
    whole = to_bytes(ct_dataset())
    (tmp_path / "a" / "short.dcm").write_bytes(whole[: len(whole) - 100])
    (tmp_path / "a" / "empty.dcm").write_bytes(b"")
    result = import_paths([tmp_path / "a", tmp_path / "gone.dcm"], library=library)
    by_name = {Path(e.path).name: e for e in result.entries}
    assert by_name["good.dcm"].status == "imported"
    assert by_name["notes.txt"].error == "not a DICOM file"
    assert "truncated" in by_name["short.dcm"].error
    assert by_name["empty.dcm"].error == "the file is empty"
    assert by_name["gone.dcm"].error == "file not found"
    assert library.counts()["instances"] == 1 and good.exists()
    assert not list(library.store.partial_files())


def test_zip_archives_are_imported_member_by_member(library, tmp_path):
    a, b = animal(), animal()
    archive = tmp_path / "studies.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("case/IM1", to_bytes(a))
        zf.writestr("case/sub/IM2", to_bytes(b))
        zf.writestr("__MACOSX/case/._IM1", b"junk")
        zf.writestr("case/readme.txt", "scan notes")
    result = import_paths([archive], library=library)
    by_name = {e.path.rsplit("/", 1)[-1]: e for e in result.entries}
    assert set(by_name) == {"IM1", "IM2", "readme.txt"}
    assert by_name["IM1"].status == by_name["IM2"].status == "imported"
    assert by_name["IM1"].path == f"{archive}/case/IM1" and by_name["readme.txt"].status == "failed"
    assert library.instance(b.SOPInstanceUID).path.read_bytes() == to_bytes(b)


def test_a_dicomdir_imports_the_files_it_lists(library, tmp_path):
    from pydicom.fileset import FileSet

    fs = FileSet()
    for ds in (animal(StudyDate="20260101", StudyTime="1000", StudyID="1", SeriesNumber=1, InstanceNumber=1),
               animal(StudyDate="20260101", StudyTime="1000", StudyID="1", SeriesNumber=1, InstanceNumber=2)):
        fs.add(ds)
    fs.write(tmp_path / "cd")
    (tmp_path / "cd" / "unlisted.txt").write_text("not listed in the DICOMDIR")
    result = import_paths([tmp_path / "cd" / "DICOMDIR"], library=library)
    assert statuses(result) == ["imported", "imported"]
    # The folder imports the same files (the DICOMDIR itself is not an image).
    result = import_paths([tmp_path / "cd"], library=library)
    assert sorted(statuses(result)) == ["duplicate", "duplicate", "failed"]


def test_photos_need_a_patient_to_be_imported(library, tmp_path):
    from PIL import Image as PILImage

    PILImage.fromarray(np.full((20, 30, 3), 120, np.uint8)).save(tmp_path / "paw.jpg")
    (entry,) = import_paths([tmp_path / "paw.jpg"], library=library).entries
    assert entry.status == "failed" and "JPEG" in entry.error and "patient" in entry.error


def test_photos_with_a_patient_become_one_secondary_capture_series(library, tmp_path):
    from PIL import Image as PILImage

    from app.dicom.capture import CaptureContext
    from app.dicom.patient import Patient

    for n in range(3):
        PILImage.fromarray(np.full((20, 30, 3), 40 * n, np.uint8)).save(tmp_path / f"paw{n}.jpg")
    context = CaptureContext(patient=Patient(name="Hendricks^Bailey", id="VET-1", species="Canine",
                                             owner="Hendricks^Anna"), study_description="Paw photos")
    result = import_paths([tmp_path], library=library, context=context)
    assert statuses(result) == ["imported"] * 3
    (study,) = library.studies()
    assert study.description == "Paw photos" and study.series_count == 1 and study.instance_count == 3
    assert study.patient.species == "Canine"
    sc = library.instances(study_uid=study.uid)
    assert {i.sop_class for i in sc} == {pydicom.uid.SecondaryCaptureImageStorage}
    assert {i.transfer_syntax for i in sc} == {pydicom.uid.JPEGBaseline8Bit}


def test_import_reports_progress_and_can_be_cancelled(tmp_path):
    from app.jobs import Job, State

    (tmp_path / "in").mkdir()
    for n in range(30):
        save(animal(), tmp_path / "in" / f"{n}.dcm")
    seen = []

    def work(reporter):
        with Library(tmp_path / "lib") as lib:
            return import_paths([tmp_path / "in"], library=lib, reporter=reporter)

    job = Job(work, "import")
    job.on_progress(lambda j: seen.append(j.progress.done) or (j.progress.done >= 10 and j.cancel()))
    job.run()
    assert job.state is State.CANCELLED
    with Library(tmp_path / "lib") as lib:
        kept = lib.counts()["instances"]
        assert 10 <= kept < 30  # what was imported before the cancel stays, consistent
        assert lib.check(repair=False).clean


def test_a_full_disk_stops_the_import_with_a_clear_message_and_no_partial_file(library, tmp_path, monkeypatch):
    import errno

    from app.library import store

    for n in range(3):
        save(animal(), tmp_path / f"{n}.dcm")
    opened = []

    def open_(path, mode="r", *args, **kwargs):
        if "w" in mode:
            opened.append(path)
            if len(opened) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(store, "open", open_, raising=False)
    result = import_paths(sorted(tmp_path.glob("*.dcm")), library=library)
    assert statuses(result) == ["imported", "failed"]
    assert result.stopped.startswith("The disk is full") and result.entries[1].error == result.stopped
    assert library.counts()["instances"] == 1 and not list(library.store.partial_files())
    assert library.check(repair=False).clean


def test_a_batch_that_cannot_be_flushed_is_not_indexed(library, tmp_path, monkeypatch):
    import errno

    for n in range(3):
        save(animal(), tmp_path / f"{n}.dcm")

    def flush(paths):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(library.store, "_flush", flush)
    result = import_paths(sorted(tmp_path.glob("*.dcm")), library=library)
    assert statuses(result) == ["failed"] * 3 and "could not be saved (Input/output error)" in result.stopped
    assert library.counts()["instances"] == 0
    assert not list(library.store.partial_files()) and not list(library.store.files())


def test_storage_errors_are_user_messages(tmp_path):
    from app.library.store import FileStore

    store = FileStore(tmp_path / "files")
    (tmp_path / "files" / "1").write_text("a file where a folder should be")
    with pytest.raises(StorageError, match="could not be saved"):
        store.write("1/2/3.dcm", b"data")


# -- veterinary identity --------------------------------------------------------------------------

def test_three_golden_retrievers_named_bailey_under_one_owner_stay_three_patients(library, tmp_path):
    for n, pid in enumerate(("VET-1", "VET-2", "VET-3")):
        save(animal(pid=pid), tmp_path / f"{n}.dcm")
    result = import_paths([tmp_path], library=library)
    assert statuses(result) == ["imported"] * 3 and not result.conflicts
    assert library.counts()["patients"] == 3
    assert sorted(s.patient.id for s in library.studies("bailey golden")) == ["VET-1", "VET-2", "VET-3"]


def test_the_same_animal_in_two_studies_is_one_patient_with_priors(library, tmp_path):
    save(animal(StudyDate="20250101"), tmp_path / "old.dcm")
    save(animal(name="HENDRICKS^BAILEY ", StudyDate="20260101"), tmp_path / "new.dcm")  # case and spaces
    import_paths([tmp_path], library=library)
    assert library.counts()["patients"] == 1
    new, old = library.studies()
    assert (new.date, old.date) == ("20260101", "20250101")
    assert [s.uid for s in library.priors(new.uid)] == [old.uid]


def test_one_id_with_another_name_or_species_is_a_reported_conflict(library, tmp_path):
    save(animal(), tmp_path / "a.dcm")
    import_paths([tmp_path / "a.dcm"], library=library)
    save(animal(name="Hendricks^Max"), tmp_path / "b.dcm")
    save(animal(species="Feline", breed="Maine Coon"), tmp_path / "c.dcm")
    save(animal(species="Feline", breed="Maine Coon"), tmp_path / "d.dcm")  # the same conflict once
    result = import_paths([tmp_path / "b.dcm", tmp_path / "c.dcm", tmp_path / "d.dcm"], library=library)
    assert statuses(result) == ["imported"] * 3
    assert [c.kind for c in result.conflicts] == ["patient-id", "patient-id", "patient-id"][:len(result.conflicts)]
    kinds = {(c.incoming.name, c.incoming.species) for c in result.conflicts}
    assert ("Hendricks^Max", "Canine") in kinds and ("Hendricks^Bailey", "Feline") in kinds
    assert all(c.existing.name == "Hendricks^Bailey" and c.existing.species == "Canine"
               for c in result.conflicts if c.incoming.name == "Hendricks^Max")
    assert "VET-1" in result.conflicts[0].message
    assert library.counts()["patients"] == 3  # never merged


def test_a_study_arriving_under_another_patient_is_a_conflict(library, tmp_path):
    study = generate_uid()
    save(animal(study=study), tmp_path / "a.dcm")
    save(animal(study=study, name="Hendricks^Max", pid="VET-9"), tmp_path / "b.dcm")
    result = import_paths([tmp_path / "a.dcm", tmp_path / "b.dcm"], library=library)
    (conflict,) = result.conflicts
    assert conflict.kind == "study" and conflict.study_uid == study
    assert conflict.existing.name == "Hendricks^Bailey" and conflict.incoming.name == "Hendricks^Max"
    assert library.study(study).instance_count == 2


def test_later_files_fill_in_missing_details_without_overwriting(library, tmp_path):
    save(animal(breed=""), tmp_path / "a.dcm")
    save(animal(breed="Golden Retriever", PatientSex="F"), tmp_path / "b.dcm")
    save(animal(breed="Labrador"), tmp_path / "c.dcm")
    import_paths([tmp_path / "a.dcm", tmp_path / "b.dcm", tmp_path / "c.dcm"], library=library)
    assert library.counts()["patients"] == 1
    patient = library.studies()[0].patient
    assert (patient.breed, patient.sex) == ("Golden Retriever", "F")


def test_microchip_neutered_and_owner_details_are_kept(tmp_path):
    chip = Dataset()
    chip.PatientID, chip.TypeOfPatientID = "985112345678901", "RFID"
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID = "A-77", "PetRegistry"
    ds = animal(PatientSexNeutered="ALTERED", ResponsiblePersonRole="OWNER",
                ResponsibleOrganization="Riverside Kennels")
    ds.OtherPatientIDsSequence = [other, chip]
    save(ds, tmp_path / "a.dcm")
    with Library(tmp_path / "lib") as lib:
        import_paths([tmp_path / "a.dcm"], library=lib)
        p = lib.studies("985112345678901")[0].patient
        assert (p.microchip, p.neutered, p.owner_role, p.owner_organization) == (
            "985112345678901", "ALTERED", "OWNER", "Riverside Kennels")
    ds.OtherPatientIDsSequence = [other]
    ds.SOPInstanceUID = generate_uid()
    save(ds, tmp_path / "b.dcm")
    with Library(tmp_path / "lib2", microchip_issuers=["petregistry"]) as lib:
        import_paths([tmp_path / "b.dcm"], library=lib)
        assert lib.studies()[0].patient.microchip == "A-77"


# -- search ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("query, hits", [
    ("", 3), ("bailey", 2), ("BAILEY golden", 1), ("anna", 2), ("hendricks", 2), ("feline", 1),
    ("siamese", 1), ("VET-2", 1), ("acc-77", 1), ("lameness", 1), ("chloé", 1), ("chloe", 1),
    ("%", 0), ("_", 0), ("bailey feline", 0), ("nobody", 0),
])
def test_search_matches_name_id_owner_species_breed_accession_and_description(library, tmp_path, query, hits):
    save(animal(pid="VET-1", AccessionNumber="ACC-77"), tmp_path / "a.dcm")
    save(animal(pid="VET-2", breed="Labrador", StudyDescription="Lameness left hind"), tmp_path / "b.dcm")
    save(animal(name="Dupont^Chloé", pid="VET-3", owner="Dupont^Marc", species="Feline", breed="Siamese"),
         tmp_path / "c.dcm")
    import_paths([tmp_path], library=library)
    assert len(library.studies(query)) == hits


# -- removal and repair ---------------------------------------------------------------------------

def test_remove_study_deletes_rows_files_and_an_orphaned_patient(library):
    import_paths([SAMPLE], library=library)
    (study,) = library.studies()
    assert library.remove_study(study.uid) == 25
    assert library.counts() == {"patients": 0, "studies": 0, "series": 0, "instances": 0}
    assert not list(library.store.files()) and not any((library.root / "files").iterdir())
    with pytest.raises(UsageError, match="no study"):
        library.remove_study(study.uid)


def test_check_repairs_what_a_crash_leaves(library, tmp_path):
    import_paths([SAMPLE / "ct"], library=library)
    lost, orphan = library.instances(study_uid=library.studies()[0].uid)[:2]
    lost.path.unlink()  # a row without its file
    library.db.execute("DELETE FROM instances WHERE sop_uid = ?", (orphan.sop_uid,))  # a file without its row
    library.db.execute("UPDATE studies SET instance_count = instance_count - 1")
    partial = orphan.path.with_name("x.dcm.partial")
    partial.write_bytes(b"half")
    report = library.check(repair=False)
    assert (report.missing_files, report.adopted_files) == ([str(lost.path)], [str(orphan.path)])
    assert report.partial_files_removed == [str(partial)] and partial.exists()
    library.check()
    assert not partial.exists() and library.check(repair=False).clean
    assert library.instance(orphan.sop_uid).source == "recovered"
    assert library.studies()[0].instance_count == 23 == library.counts()["instances"]


# -- command line ---------------------------------------------------------------------------------

def test_cli_import_prints_one_entry_per_file_and_the_conflicts(run_cli, tmp_path):
    save(animal(), tmp_path / "a.dcm")
    save(animal(name="Hendricks^Max"), tmp_path / "b.dcm")
    (tmp_path / "c.txt").write_text("hello")
    code, out, err = run_cli("import", tmp_path, "--json")
    assert code == 1 and err == ""  # a file failed
    data = json.loads(out)
    assert [(Path(e["path"]).name, e["status"]) for e in data["entries"]] == [
        ("a.dcm", "imported"), ("b.dcm", "imported"), ("c.txt", "failed")]
    assert set(data["entries"][0]) == {"path", "status", "sop_instance_uid", "study_instance_uid", "error"}
    (conflict,) = data["conflicts"]
    assert conflict["existing"]["name"] == "Hendricks^Bailey" and conflict["incoming"]["name"] == "Hendricks^Max"
    code, out, _ = run_cli("import", tmp_path / "a.dcm")
    assert code == 0 and out.strip() == "0 imported, 1 already in the library"


def test_cli_library_list_query_and_remove(run_cli):
    assert run_cli("import", SAMPLE)[0] == 0
    code, out, _ = run_cli("library", "list", "--json", "--query", "golden anna")
    (study,) = json.loads(out)
    assert study["patient"]["breed"] == "Golden Retriever" and study["instance_count"] == 25
    code, out, _ = run_cli("library", "list")
    assert "Hendricks^Bailey · ID VET-000123 · Canine · Golden Retriever · owner Hendricks^Anna" in out
    assert run_cli("library", "list", "--query", "feline")[1].strip() == "No studies match."
    code, out, _ = run_cli("library", "remove", study["uid"], "--json")
    assert code == 0 and json.loads(out)["instances_removed"] == 25
    code, out, err = run_cli("library", "remove", study["uid"])
    assert code == 1 and err.strip() == f"error: There is no study {study['uid']} in the library."
    assert run_cli("library", "check")[1].strip() == "The library is consistent."


def test_cli_import_of_photos_with_a_patient(run_cli, tmp_path):
    from PIL import Image as PILImage

    PILImage.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "x.png")
    code, out, _ = run_cli("import", tmp_path / "x.png", "--patient-name", "Hendricks^Bailey",
                           "--species", "Canine", "--owner", "Hendricks^Anna", "--json")
    assert code == 0 and json.loads(out)["entries"][0]["status"] == "imported"
    study = json.loads(run_cli("library", "list", "--json")[1])[0]
    PILImage.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "y.png")
    code, out, _ = run_cli("import", tmp_path / "y.png", "--study", study["uid"])
    assert code == 0
    assert json.loads(run_cli("library", "list", "--json")[1])[0]["instance_count"] == 2


def test_worker_processes_import_in_order_with_the_same_outcomes(library, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "PARALLEL_FROM", 8)
    monkeypatch.setattr(importer, "CHUNK", 3)
    study, series = generate_uid(), generate_uid()
    files = [save(animal(study=study, series=series, InstanceNumber=n), tmp_path / f"{n:02}.dcm") for n in range(20)]
    (tmp_path / "20.txt").write_text("not an image")
    twin = tmp_path / "21.dcm"
    twin.write_bytes(files[0].read_bytes())  # the same instance twice in one import
    result = import_paths([tmp_path], library=library)
    assert [Path(e.path).name for e in result.entries] == sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert statuses(result) == ["imported"] * 20 + ["failed", "duplicate"]
    assert library.study(study).instance_count == 20 == len(list(library.store.files()))
    assert library.check(repair=False).clean


def test_an_import_killed_midway_is_repaired_by_the_next_one(library, tmp_path):
    import subprocess
    import sys

    import_paths([SAMPLE / "dx"], library=library)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (library.root / "imports").mkdir(exist_ok=True)
    (library.root / "imports" / str(pid)).touch()  # what a killed import leaves
    (ct,) = library.instances(study_uid=library.studies()[0].uid)
    stray = ct.path.with_name(f"{ct.path.name}.{pid}-0badf00d.partial")
    stray.write_bytes(b"half a file")
    live = ct.path.with_name(f"{ct.path.name}.{__import__('os').getpid()}-0badf00d.partial")
    live.write_bytes(b"being written by a running import")
    result = import_paths([SAMPLE / "ct" / "CT0001.dcm"], library=library)
    assert statuses(result) == ["imported"]
    assert not stray.exists() and live.exists()  # only the dead import's leftovers go
    assert not (library.root / "imports" / str(pid)).exists()
    assert not any((library.root / "imports").iterdir())


def test_an_instance_whose_file_vanished_is_stored_again_on_reimport(library):
    import_paths([SAMPLE / "ct"], library=library)
    lost = library.instances(study_uid=library.studies()[0].uid)[3]
    lost.path.unlink()
    result = import_paths([SAMPLE / "ct"], library=library)
    assert statuses(result).count("imported") == 1 and statuses(result).count("duplicate") == 23
    assert library.instance(lost.sop_uid).path.is_file()
    assert library.studies()[0].instance_count == 24 == library.counts()["instances"]
    assert library.check(repair=False).clean


def test_cancelling_an_import_with_workers_leaves_a_consistent_library(tmp_path, monkeypatch):
    from app.jobs import Job, State

    monkeypatch.setattr(importer, "PARALLEL_FROM", 8)
    monkeypatch.setattr(importer, "CHUNK", 4)
    (tmp_path / "in").mkdir()
    for n in range(60):
        save(animal(), tmp_path / "in" / f"{n:02}.dcm")

    def work(reporter):
        with Library(tmp_path / "lib") as lib:
            return import_paths([tmp_path / "in"], library=lib, reporter=reporter)

    job = Job(work, "import")
    job.on_progress(lambda j: j.progress.done >= 12 and j.cancel())
    job.run()
    assert job.state is State.CANCELLED
    with Library(tmp_path / "lib") as lib:
        assert 12 <= lib.counts()["instances"] <= 60
        assert lib.check(repair=False).clean  # no partial file left, no row without its file


def test_a_full_disk_with_workers_stops_cleanly(library, tmp_path, monkeypatch):
    from app.library.store import FileStore

    monkeypatch.setattr(importer, "PARALLEL_FROM", 8)
    monkeypatch.setattr(importer, "CHUNK", 4)
    for n in range(40):
        save(animal(), tmp_path / f"{n:02}.dcm")
    publish = FileStore.publish
    calls = []

    def full_after_first_batch(self, written):
        calls.append(len(written))
        if len(calls) > 1 and written:
            for partial, _ in written:  # as publish does when the disk is full
                self.discard(partial)
            raise StorageError("The disk is full: 4 file(s) was not saved. Free some space and try again.")
        return publish(self, written)

    monkeypatch.setattr(importer, "COMMIT_EVERY", 8)
    monkeypatch.setattr(FileStore, "publish", full_after_first_batch)
    result = import_paths(sorted(tmp_path.glob("*.dcm")), library=library)
    assert result.stopped.startswith("The disk is full")
    assert statuses(result)[:8] == ["imported"] * 8 and library.counts()["instances"] == 8
    assert not list(library.store.partial_files()) and library.check(repair=False).clean


def test_viewer_series_holds_images_and_encapsulated_pdfs(library, tmp_path):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import EncapsulatedPDFStorage, ExplicitVRLittleEndian

    image = ct_dataset(np.zeros((8, 8), np.int16))
    pdf = Dataset()
    pdf.file_meta = FileMetaDataset()
    pdf.file_meta.MediaStorageSOPClassUID = pdf.SOPClassUID = EncapsulatedPDFStorage
    pdf.file_meta.MediaStorageSOPInstanceUID = pdf.SOPInstanceUID = generate_uid()
    pdf.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    pdf.PatientName, pdf.PatientID, pdf.PatientSpeciesDescription = image.PatientName, image.PatientID, \
        image.get("PatientSpeciesDescription", "")
    pdf.StudyInstanceUID, pdf.SeriesInstanceUID, pdf.Modality = image.StudyInstanceUID, generate_uid(), "DOC"
    pdf.MIMETypeOfEncapsulatedDocument = "application/pdf"
    pdf.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    paths = [save(image, tmp_path / "ct.dcm"), save(pdf, tmp_path / "letter.dcm")]
    import_paths(paths, library=library)
    series = library.viewer_series(str(image.StudyInstanceUID))
    assert sorted((s.modality, s.is_document) for s in series) == [("CT", False), ("DOC", True)]
    document = next(s for s in series if s.is_document)
    assert document.instances[0].document == "application/pdf" and document.instances[0].frames == 1
