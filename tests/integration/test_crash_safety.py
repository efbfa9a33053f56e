"""Crash safety of the library: an import killed (SIGKILL) at random points, many times over, never leaves
the index pointing at a missing, partial or wrong file, and never counts what it does not hold.

The index is inspected read-only with sqlite3 itself after every kill: opening a `Library` could repair.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.dicom.reading import read
from tests.unit.helpers import ct_dataset, save

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="kills with SIGKILL, which Windows lacks")

ITERATIONS = 30
SEED = 20240611
PATIENTS = [  # (name, id, species, breed, owner)
    ("Hendricks^Bailey", "V1001", "Canine", "Labrador Retriever", "Hendricks^Anna"),
    ("Okafor^Mittens", "V1002", "Feline", "Domestic Shorthair", "Okafor^Chidi"),
    ("Lindqvist^Storm", "V1003", "Equine", "Icelandic Horse", "Lindqvist^Maja"),
    ("Dupré^Noisette", "V1004", "Canine", "Épagneul Breton", "Dupré^Léa"),
]
STUDIES = 8  # two per patient
SERIES_PER_STUDY = 2
SLICES = 20  # 8 x 2 x 20 = 320 files


# -- helpers -------------------------------------------------------------------------------------

def _env(home: Path) -> dict:
    return dict(os.environ, LIGHTBOX_HOME=str(home), QT_QPA_PLATFORM="offscreen")


def _cli(home: Path, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], env=_env(home), capture_output=True,
                          text=True, timeout=timeout)


def _library(home: Path) -> Path:
    return home / "data" / "library"


def _connect_read_only(index: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{index}?mode=ro", uri=True, isolation_level=None)


def _tables(db: sqlite3.Connection) -> set[str]:
    return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def assert_consistent(home: Path, when: str) -> dict[str, int]:
    """What the issue asks after every kill; returns the row counts."""
    root = _library(home)
    index = root / "index.sqlite"
    if not index.exists():
        return {"instances": 0, "series": 0, "studies": 0}  # killed before the library was created
    files = root / "files"
    db = _connect_read_only(index)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)], when
        if "instances" not in _tables(db):  # killed inside the first migration: it rolled back whole
            assert db.execute("PRAGMA user_version").fetchone()[0] == 0, when
            return {"instances": 0, "series": 0, "studies": 0}
        assert db.execute("PRAGMA foreign_key_check").fetchall() == [], when
        rows = db.execute(
            "SELECT i.sop_uid, i.path, i.file_size, se.series_uid, st.study_uid "
            "FROM instances i JOIN series se ON se.pk = i.series_pk JOIN studies st ON st.pk = se.study_pk").fetchall()
        assert len(rows) == db.execute("SELECT COUNT(*) FROM instances").fetchone()[0], \
            f"{when}: instance rows whose series or study is missing"
        for sop_uid, relative, size, series_uid, study_uid in rows:
            assert not relative.endswith(".partial"), f"{when}: a partial file is indexed: {relative}"
            assert relative.endswith(".dcm"), f"{when}: {relative}"
            path = files.joinpath(*relative.split("/"))
            assert path.is_file(), f"{when}: row {sop_uid} points at a missing file {relative}"
            assert path.stat().st_size == size, f"{when}: {relative} is not the size its row says"
            ds = read(path)  # raises on a truncated or damaged file
            assert ds.SOPInstanceUID == sop_uid, f"{when}: {relative} holds {ds.SOPInstanceUID}, row says {sop_uid}"
            assert ds.SeriesInstanceUID == series_uid and ds.StudyInstanceUID == study_uid, \
                f"{when}: {relative} is filed under the wrong series or study"
        drift = db.execute(
            "SELECT st.study_uid, st.instance_count, "
            "(SELECT COUNT(*) FROM instances i JOIN series se ON se.pk = i.series_pk WHERE se.study_pk = st.pk), "
            "st.series_count, (SELECT COUNT(*) FROM series se WHERE se.study_pk = st.pk) "
            "FROM studies st").fetchall()
        for study_uid, instance_count, real_instances, series_count, real_series in drift:
            assert instance_count == real_instances, \
                f"{when}: study {study_uid} says {instance_count} instances, holds {real_instances}"
            assert series_count == real_series, \
                f"{when}: study {study_uid} says {series_count} series, holds {real_series}"
        orphans = db.execute("SELECT COUNT(*) FROM studies st WHERE NOT EXISTS "
                             "(SELECT 1 FROM patients p WHERE p.pk = st.patient_pk)").fetchone()[0]
        assert orphans == 0, f"{when}: studies without a patient"
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("instances", "series", "studies")}
    finally:
        db.close()


def _start_import(home: Path, paths: list[Path], stderr: Path) -> subprocess.Popen:
    """`lightbox import` in a process group of its own, so that workers it leaves behind can be found.
    Its stderr goes to a file: workers outliving it would hold a pipe open."""
    with open(stderr, "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "app", "import", *map(str, paths), "--json"],
                                env=_env(home), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def _group_alive(proc: subprocess.Popen) -> bool:
    """Whether a process of the import's group still runs (zombies, awaiting their reaper, do not count)."""
    proc_fs = Path("/proc")
    if not (proc_fs / "self" / "stat").exists():
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc_fs.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == proc.pid:  # state, ppid, pgrp
            return True
    return False


def _end_group(proc: subprocess.Popen) -> None:
    """Kill what is left of an import's process group (its worker processes), and wait until it is gone."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while _group_alive(proc) and time.monotonic() < deadline:
        time.sleep(0.01)


def _partial_files(home: Path) -> list[Path]:
    return sorted((_library(home) / "files").rglob("*.partial"))


def _remove_studies(home: Path, rng: random.Random) -> None:
    """Take some studies out again (to completion), so that later imports have real work to be killed in."""
    from app.library import Library

    with Library(_library(home), microchip_issuers=()) as library:
        uids = [s.uid for s in library.studies()]
        for uid in rng.sample(uids, k=rng.randint(0, len(uids))):
            library.remove_study(uid)


# -- data ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """A few hundred small CT files: 8 studies of 4 patients, 2 series each. Returns (folder, {sop uid: file})."""
    from pydicom.uid import generate_uid

    folder = tmp_path_factory.mktemp("crash-source")
    pixels = np.random.default_rng(7).integers(-1024, 2000, size=(32, 32), dtype=np.int16)
    files = {}
    for s in range(STUDIES):
        name, pid, species, breed, owner = PATIENTS[s % len(PATIENTS)]
        study_uid = generate_uid()
        for k in range(SERIES_PER_STUDY):
            series_uid = generate_uid()
            for n in range(SLICES):
                ds = ct_dataset(
                    pixels, StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid, PatientName=name, PatientID=pid,
                    PatientSpeciesDescription=species, PatientBreedDescription=breed, ResponsiblePerson=owner,
                    StudyDate=f"2024{1 + s:02d}15", StudyTime="101500", AccessionNumber=f"A{5000 + s}",
                    StudyDescription="CT thorax" if k == 0 else "CT abdomen", SeriesNumber=k + 1,
                    InstanceNumber=n + 1, ImagePositionPatient=[0.0, 0.0, 2.5 * n],
                    ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PixelSpacing=[0.5, 0.5], SliceThickness=2.5)
                path = folder / f"study{s}" / f"series{k}" / f"{n:03d}.dcm"
                path.parent.mkdir(parents=True, exist_ok=True)
                save(ds, path)
                files[str(ds.SOPInstanceUID)] = path
    return folder, files


# -- the test ------------------------------------------------------------------------------------

def test_import_killed_at_random_points_leaves_a_consistent_library(source, tmp_path):
    folder, files = source
    rng = random.Random(SEED)

    studies = sorted(p for p in folder.iterdir() if p.is_dir())
    # How long a whole import takes (start-up included) into an empty library: of the folder (worker
    # processes store the files), and of three studies (fewer files: stored in the one process).
    durations = {}
    for kind, paths in (("folder", [folder]), ("studies", studies[:3])):
        start = time.perf_counter()
        done = _cli(tmp_path / f"timing-{kind}", "import", *paths, "--json")
        durations[kind] = time.perf_counter() - start
        assert done.returncode == 0, done.stderr
        assert "failed" not in json.loads(done.stdout)["summary"]

    home = tmp_path / "home"
    killed_mid_import = 0
    left_uncommitted = 0  # kills after which the store held complete files the index did not (yet) list
    left_partial = 0  # kills that left partial files behind
    for iteration in range(ITERATIONS):
        # The whole folder (worker processes store the files), or a few studies (stored in the one process).
        kind = "folder" if iteration % 2 == 0 else "studies"
        paths = [folder] if kind == "folder" else rng.sample(studies, k=rng.randint(1, 3))
        proc = _start_import(home, paths, tmp_path / "stderr.txt")
        try:
            time.sleep(rng.uniform(0.0, durations[kind]))
            proc.send_signal(signal.SIGKILL)  # the importing process only: its workers are left to notice
            proc.wait(timeout=60)
            assert proc.returncode in (0, -signal.SIGKILL), \
                f"iteration {iteration}: import failed: {(tmp_path / 'stderr.txt').read_text()}"
            killed_mid_import += proc.returncode == -signal.SIGKILL
            counts = assert_consistent(home, f"after kill {iteration}")
            assert counts["instances"] <= len(files)
            left_partial += bool(_partial_files(home))
            left_uncommitted += len(list((_library(home) / "files").rglob("*.dcm"))) > counts["instances"]
        finally:
            _end_group(proc)
        if (_library(home) / "index.sqlite").exists():
            _remove_studies(home, rng)
            assert_consistent(home, f"after removals {iteration}")
    print(f"{ITERATIONS} imports (whole: {durations['folder']:.2f} s, three studies: {durations['studies']:.2f} s): "
          f"{killed_mid_import} killed, {left_uncommitted} with files stored but not indexed, "
          f"{left_partial} with partial files")
    assert killed_mid_import >= ITERATIONS // 4, "most imports ended before the kill: the kills tested little"
    assert left_uncommitted + left_partial >= 1, "no kill caught a file in flight: the kills tested little"

    checked = _cli(home, "library", "check", "--json")
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["unreadable_files"] == [], report
    assert _partial_files(home) == []
    assert_consistent(home, "after check")

    final = _cli(home, "import", folder, "--json")
    assert final.returncode == 0, final.stderr
    assert {e["status"] for e in json.loads(final.stdout)["entries"]} <= {"imported", "duplicate"}
    assert_consistent(home, "after the final import")

    db = _connect_read_only(_library(home) / "index.sqlite")
    try:
        indexed = dict(db.execute("SELECT sop_uid, COUNT(*) FROM instances GROUP BY sop_uid").fetchall())
        total = db.execute("SELECT SUM(instance_count) FROM studies").fetchone()[0]
    finally:
        db.close()
    assert set(indexed) == set(files), "the index holds other instances than the source files"
    assert set(indexed.values()) == {1}
    assert total == len(files), "studies count other instances than they hold"
    assert _partial_files(home) == []
    stored = sorted((_library(home) / "files").rglob("*.dcm"))
    assert len(stored) == len(files), "the store holds files the index does not know"

    dry = _cli(home, "library", "check", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["clean"] is True, dry.stdout

    listed = _cli(home, "library", "list", "--json")
    assert sum(s["instance_count"] for s in json.loads(listed.stdout)) == len(files)


def test_removal_killed_before_its_files_are_deleted_does_not_take_a_later_import(source, tmp_path):
    """`remove_study` commits, then deletes files (pending_deletes). Killed in between, then the same study
    imported again: the next check (or the next removal) must not delete the files the new rows point at."""
    folder, files = source
    home = tmp_path / "home"
    study_folder = folder / "study0"
    done = _cli(home, "import", study_folder)
    assert done.returncode == 0, done.stderr
    db = _connect_read_only(_library(home) / "index.sqlite")
    study_uid = db.execute("SELECT study_uid FROM studies").fetchone()[0]
    db.close()
    # The process dies right after the removal's commit, before a single file is deleted.
    script = ("import os, sys\n"
              "from app.library import Library\n"
              "Library._finish_deletes = lambda self: os.kill(os.getpid(), 9)\n"
              "with Library() as library:\n"
              "    library.remove_study(sys.argv[1])\n")
    proc = subprocess.run([sys.executable, "-c", script, study_uid], env=_env(home), capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert_consistent(home, "after the killed removal")

    again = _cli(home, "import", study_folder, "--json")
    assert again.returncode == 0, again.stderr
    assert_consistent(home, "after importing the study again")

    checked = _cli(home, "library", "check", "--json")
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["missing_files"] == [], "check deleted files that the index holds"
    counts = assert_consistent(home, "after check")
    assert counts["instances"] == SERIES_PER_STUDY * SLICES


def test_workers_of_a_killed_import_stop_by_themselves(source, tmp_path):
    """Worker processes storing files for an import that is killed must not live on (holding memory, the
    index open and, on Windows, the files)."""
    folder, _ = source
    home = tmp_path / "home"
    proc = _start_import(home, [folder], tmp_path / "stderr.txt")
    try:
        deadline = time.monotonic() + 60
        while not _partial_files(home) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)  # until the workers are storing files
        assert proc.poll() is None, "the import ended before its workers were seen storing files"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 10
        while _group_alive(proc) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group_alive(proc), "worker processes outlived the killed import by 10 s"
    finally:
        _end_group(proc)
    assert_consistent(home, "after the workers stopped")
