"""The library: import rate of small CT files (stored and indexed) against dcmtk's dcmqridx, and study
queries over an index of 100,000 instances.

Import: 2,000 CT files, 128x128 int16 with a full CT header and a veterinary patient (species, breed, owner),
20 studies x 100 slices, cached in bench/data/. Each run imports them into a fresh library with
`import_paths` (read, parse, copy to the store, flush to disk, rename, index in batches; its worker
processes included), and once more as `lightbox import FOLDER` (whole process). Goal: >= 1,000
instances/s. A second import of the same files into that library is the duplicates path (read, parse,
look up; nothing is written). The peer is `dcmqridx`, which registers the same files in a fresh dcmqrscp
index.dat, whole process, without copying them.

Query: a library of 100,000 synthetic instance rows (2,000 patients, 5,000 studies of 20 instances) is
written straight into the index, its search columns filled by library.py's own rules (cached in
bench/data/, remade when those rules change), then `Library.studies(query)` is timed for kinds of query a
practice types. Goal: median <= 50 ms. The peer is the very SELECT each call runs, executed with sqlite3
alone (rows fetched, no records built).
"""

from __future__ import annotations

import math
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import common
from common import DATA, result

IMPORT_RUNS = 3
STUDIES, SLICES, MATRIX = 20, 100, 128
IMPORT_GOAL = 1000.0  # instances/s

QUERY_PATIENTS, QUERY_STUDIES, QUERY_PER_STUDY = 2_000, 5_000, 20
QUERY_GOAL_MS = 50.0
QUERIES_PER_KIND = 12  # distinct values per kind of query
REPEATS = 3  # each value timed this many times

_CT_VERSION = "v2"  # change when a generator changes, so the cache is remade
_QUERY_VERSION = "v1"

SURNAMES = ["Hendricks", "Okafor", "Lindqvist", "Dupré", "Nakamura", "O'Brien", "Schmidt", "García", "Kowalski",
            "Rossi", "Müller", "Jensen", "Novak", "Fernandes", "Dubois", "Andersson", "MacLeod", "Van der Berg",
            "Papadopoulos", "Ivanova", "Nguyen", "Kaur", "Moreau", "Brennan", "Søndergaard", "Haddad", "Kelly",
            "Weber", "Costa", "Horváth", "Petrov", "Fischer", "Laurent", "Murphy", "Svensson", "Öztürk", "Bianchi",
            "Walsh", "Kim", "Nowak"]
GIVEN = ["Anna", "Chidi", "Maja", "Léa", "Kenji", "Siobhan", "Jonas", "Lucía", "Piotr", "Giulia", "Lena", "Mads",
         "Tomas", "Inês", "Claire", "Erik", "Fiona", "Daan", "Eleni", "Olga", "Linh", "Harpreet", "Chloé", "Sean"]
ANIMALS = ["Bailey", "Mittens", "Storm", "Noisette", "Mochi", "Biscuit", "Rex", "Luna", "Max", "Bella", "Oscar",
           "Pepper", "Nala", "Simba", "Ziggy", "Tilly", "Milo", "Rosie", "Shadow", "Coco", "Bruno", "Daisy",
           "Jasper", "Willow", "Thor", "Freya", "Loki", "Maple", "Pippin", "Hazel"]
SPECIES_BREEDS = {
    "Canine": ["Labrador Retriever", "German Shepherd", "Border Collie", "Dachshund", "Golden Retriever",
               "French Bulldog", "Épagneul Breton", "Staffordshire Bull Terrier", "Beagle", "Cavalier King Charles"],
    "Feline": ["Domestic Shorthair", "Maine Coon", "Siamese", "British Shorthair", "Persian", "Bengal"],
    "Equine": ["Icelandic Horse", "Thoroughbred", "Welsh Pony", "Friesian", "Haflinger"],
    "Lapine": ["Netherland Dwarf", "Holland Lop", "Rex"],
    "Avian": ["African Grey", "Cockatiel", "Budgerigar"],
}
SPECIES_WEIGHTS = {"Canine": 55, "Feline": 30, "Equine": 8, "Lapine": 5, "Avian": 2}
DESCRIPTIONS = [("CT", "CT thorax"), ("CT", "CT abdomen"), ("CT", "CT skull"), ("CT", "CT elbows"),
                ("DX", "Thorax 2 views"), ("DX", "Hips VD"), ("DX", "Stifle left"), ("DX", "Abdomen lateral"),
                ("US", "Abdominal ultrasound"), ("MR", "MRI brain"), ("MR", "MRI lumbar spine")]
CLINICS = ["Riverside Veterinary Hospital", "Northgate Animal Clinic", "Equine Referral Centre"]


# -- import ---------------------------------------------------------------------------------------

def _ct_dataset(rng, pixels, patient: dict, study: dict, series_uid: str, frame_uid: str, n: int):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study["date"]
    ds.StudyTime = ds.SeriesTime = study["time"]
    ds.AcquisitionTime = ds.ContentTime = f"{study['time'][:4]}{(n // 10) % 60:02d}.{n:03d}"
    ds.AccessionNumber = study["accession"]
    ds.Modality = "CT"
    ds.Manufacturer, ds.ManufacturerModelName = "Bench Medical", "Vet CT 16"
    ds.InstitutionName = study["clinic"]
    ds.ReferringPhysicianName = "Vet^Alex"
    ds.StationName = "CT01"
    ds.StudyDescription, ds.SeriesDescription = study["description"], "Axial 1.0 soft tissue"
    ds.PatientName = f"{patient['owner_surname']}^{patient['animal']}"
    ds.PatientID = patient["id"]
    ds.PatientBirthDate, ds.PatientSex = patient["birth"], patient["sex"]
    ds.PatientSexNeutered = "ALTERED"
    ds.PatientSpeciesDescription, ds.PatientBreedDescription = patient["species"], patient["breed"]
    if patient["species"] == "Canine":
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "448771007", "SCT", "Canis lupus familiaris"
        ds.PatientSpeciesCodeSequence = Sequence([code])
    ds.ResponsiblePerson = f"{patient['owner_surname']}^{patient['owner_given']}"
    ds.ResponsiblePersonRole = "OWNER"
    ds.PatientWeight = patient["weight"]
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness, ds.KVP = 1.0, 120
    ds.DataCollectionDiameter = ds.ReconstructionDiameter = 250.0
    ds.GantryDetectorTilt, ds.TableHeight = 0, 140.0
    ds.RotationDirection, ds.ExposureTime, ds.XRayTubeCurrent, ds.Exposure = "CW", 1000, 200, 200
    ds.ConvolutionKernel, ds.PatientPosition = "SOFT", "FFS"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study["uid"], series_uid
    ds.StudyID, ds.SeriesNumber, ds.AcquisitionNumber, ds.InstanceNumber = study["id"], 2, 1, n + 1
    ds.ImagePositionPatient = [-125.0, -125.0, -1.0 * n]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
    ds.SliceLocation = -1.0 * n
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = MATRIX
    ds.PixelSpacing = [250.0 / MATRIX, 250.0 / MATRIX]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.WindowCenter, ds.WindowWidth = [40, 400], [400, 1500]
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.PixelData = (pixels + rng.integers(-20, 20, pixels.shape, dtype="int16")).tobytes()
    return ds


def ct_files() -> list[Path]:
    """The cached CT series: STUDIES folders of SLICES files."""
    import numpy as np
    from pydicom.uid import generate_uid

    folder = DATA / f"library-ct-{_CT_VERSION}-{STUDIES}x{SLICES}-{MATRIX}"
    done = folder / ".complete"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        rng = np.random.default_rng(99)
        pick = random.Random(99)
        y, x = np.mgrid[-1:1:MATRIX * 1j, -1:1:MATRIX * 1j]
        pixels = np.where(np.hypot(x, y) < 0.8, 1064, 24).astype("int16")
        patients = []
        for k in range(STUDIES // 2):  # two studies per patient
            species = pick.choice(list(SPECIES_BREEDS))
            patients.append({"owner_surname": SURNAMES[k], "owner_given": pick.choice(GIVEN),
                             "animal": pick.choice(ANIMALS), "id": f"P{10000 + k}", "species": species,
                             "breed": pick.choice(SPECIES_BREEDS[species]), "birth": "20170304", "sex": "F",
                             "weight": 28.5})
        for s in range(STUDIES):
            patient = patients[s // 2]
            study = {"uid": generate_uid(), "date": f"2024{1 + s % 12:02d}{10 + s:02d}", "time": "093000",
                     "accession": f"CT{24000 + s}", "clinic": CLINICS[0], "description": "CT thorax",
                     "id": str(s + 1)}
            series_uid, frame_uid = generate_uid(), generate_uid()
            target = folder / f"study{s:02d}"
            target.mkdir(parents=True, exist_ok=True)
            for n in range(SLICES):
                ds = _ct_dataset(rng, pixels, patient, study, series_uid, frame_uid, n)
                ds.save_as(target / f"ct{n:03d}.dcm", enforce_file_format=True)
        done.write_text("ok\n")
    return sorted(folder.rglob("*.dcm"))


def _import_once(folder: Path, files: int) -> dict:
    from app.library import Library, import_paths

    with tempfile.TemporaryDirectory(prefix="lightbox-bench-", dir=DATA) as tmp:
        with Library(Path(tmp) / "library", microchip_issuers=()) as library:
            start = time.perf_counter()
            first = import_paths([folder], library=library)
            fresh = time.perf_counter() - start
            start = time.perf_counter()
            second = import_paths([folder], library=library)
            again = time.perf_counter() - start
    if first.count("imported") != files or second.count("duplicate") != files:
        raise RuntimeError(f"import went wrong: {first.summary()}; then {second.summary()}")
    return {"fresh": files / fresh, "duplicates": files / again}


def _dcmqridx(files: list[Path]) -> tuple[float | None, str | None]:
    exe = shutil.which("dcmqridx")
    if exe is None:
        return None, "dcmqridx not found (apt install dcmtk)"
    rates = []
    for _ in range(IMPORT_RUNS):
        with tempfile.TemporaryDirectory(prefix="lightbox-bench-", dir=DATA) as tmp:
            start = time.perf_counter()
            done = subprocess.run([exe, tmp, *map(str, files)], capture_output=True, timeout=600)
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                return None, f"dcmqridx exit {done.returncode}: {done.stderr.decode(errors='replace').strip()[-200:]}"
            listed = subprocess.run([exe, "-p", tmp], capture_output=True, text=True, timeout=600).stdout
            if f"RECORDS IN THIS INDEXFILE: {len(files)}" not in listed:
                return None, "dcmqridx did not register every file"
            rates.append(len(files) / elapsed)
    return statistics.median(rates), None


def _rate(name: str, value: float, *, goal: bool, peer: str | None, peer_value: float | None,
          error: str | None = None) -> dict:
    """A rate (higher is better): the goal is a floor, and ratio = ours / peer (above 1 is faster)."""
    entry = result(name, value, "instances/s", peer=peer, peer_value=peer_value, error=error)
    if goal:
        entry["goal"] = f">= {IMPORT_GOAL:g} instances/s"
        entry["ok"] = value is not None and value >= IMPORT_GOAL and not error
    return entry


def _cli_import(folder: Path, files: int) -> float:
    """instances/s of `lightbox import FOLDER` as a user runs it: the whole process, start-up included."""
    with tempfile.TemporaryDirectory(prefix="lightbox-bench-", dir=DATA) as tmp:
        elapsed = common.run_process([common.PYTHON, "-m", "app", "import", str(folder)],
                                     env=common.app_env(Path(tmp) / "home"), timeout=300)
    return files / elapsed


def import_results() -> list[dict]:
    files = ct_files()
    folder = files[0].parent.parent
    for path in files:  # page cache warm for both sides
        path.read_bytes()
    _import_once(folder, len(files))  # warm-up: imports, first-use costs
    runs = [_import_once(folder, len(files)) for _ in range(IMPORT_RUNS)]
    cli = statistics.median(_cli_import(folder, len(files)) for _ in range(IMPORT_RUNS))
    peer_value, error = _dcmqridx(files)
    peer = ("dcmqridx (dcmtk): register the files in a fresh dcmqrscp index.dat, whole process, files not copied "
            "(its flat index is scanned for each file: slower as it grows)")
    size_kb = sum(p.stat().st_size for p in files) / len(files) / 1024
    what = f"{len(files)} CT files of {MATRIX}x{MATRIX} ({size_kb:.0f} KB each)"
    return [
        _rate(f"library import, {what}, into a fresh library: copied (flushed to disk) + indexed; "
              "import_paths, worker start-up included", statistics.median(r["fresh"] for r in runs), goal=True,
              peer=peer, peer_value=peer_value, error=error),
        _rate("  the same as `lightbox import FOLDER`, whole process (Python start-up included)", cli, goal=False,
              peer=peer, peer_value=peer_value),
        _rate(f"  library import again, same {len(files)} files (duplicates: read, parse, look up; nothing written)",
              statistics.median(r["duplicates"] for r in runs), goal=False, peer=peer, peer_value=peer_value),
    ]


# -- query ----------------------------------------------------------------------------------------

def _weighted_species(pick: random.Random) -> str:
    return pick.choices(list(SPECIES_WEIGHTS), weights=list(SPECIES_WEIGHTS.values()))[0]


def query_library() -> Path:
    """The cached library root with QUERY_STUDIES x QUERY_PER_STUDY synthetic instance rows."""
    from app.dicom.patient import Patient
    from app.library import Library
    from app.library.library import _patient_search, fold, patient_key  # the rules the index is filled by

    root = DATA / f"library-query-{_QUERY_VERSION}-{QUERY_STUDIES * QUERY_PER_STUDY}"
    done = root / ".complete"
    if done.exists() and done.read_text() == _search_rules():
        return root
    shutil.rmtree(root, ignore_errors=True)
    pick = random.Random(2024)
    now = "2025-01-01T12:00:00+00:00"
    library = Library(root, microchip_issuers=())
    db = library.db
    try:
        db.execute("BEGIN")
        patients = []
        for p in range(QUERY_PATIENTS):
            species = _weighted_species(pick)
            surname = pick.choice(SURNAMES)
            patient = Patient(
                name=f"{surname}^{pick.choice(ANIMALS)}", id=f"VP{100000 + p}", species=species,
                breed=pick.choice(SPECIES_BREEDS[species]), owner=f"{surname}^{pick.choice(GIVEN)}",
                sex=pick.choice("MF"), birth_date=f"{pick.randint(2008, 2023)}{pick.randint(1, 12):02d}15",
                neutered=pick.choice(["ALTERED", "UNALTERED", ""]),
                microchip=f"9851{pick.randint(10**10, 10**11 - 1)}" if pick.random() < 0.7 else "",
                owner_role="OWNER", owner_organization="")
            pk = db.execute(
                "INSERT INTO patients (match_key, patient_id, name, owner, species, breed, sex, birth_date, neutered, "
                "microchip, owner_role, owner_organization, search) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (patient_key(patient), patient.id, patient.name, patient.owner, patient.species, patient.breed,
                 patient.sex, patient.birth_date, patient.neutered, patient.microchip, patient.owner_role,
                 patient.owner_organization, _patient_search(patient))).lastrowid
            patients.append(pk)
        instance_rows = []
        for s in range(QUERY_STUDIES):
            patient_pk = patients[s % QUERY_PATIENTS] if s < QUERY_PATIENTS else pick.choice(patients)
            modality, description = pick.choice(DESCRIPTIONS)
            accession = f"A{pick.choice('CDMU')}{300000 + s}"
            date = f"{pick.randint(2012, 2025)}{pick.randint(1, 12):02d}{pick.randint(1, 28):02d}"
            study_uid = f"1.2.826.0.1.3680043.10.1234.{s + 1}"
            series_count = 2
            study_pk = db.execute(
                "INSERT INTO studies (patient_pk, study_uid, study_date, study_time, description, accession, "
                "referring_physician, study_id, modalities, series_count, instance_count, search, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (patient_pk, study_uid, date, f"{pick.randint(8, 18):02d}{pick.randint(0, 59):02d}00", description,
                 accession, "Vet^Alex", str(s + 1), modality, series_count, QUERY_PER_STUDY,
                 fold(f"{accession} {description}"), now)).lastrowid
            per_series = QUERY_PER_STUDY // series_count
            for k in range(series_count):
                series_uid = f"{study_uid}.{k + 1}"
                series_pk = db.execute(
                    "INSERT INTO series (study_pk, series_uid, modality, body_part, description, number) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (study_pk, series_uid, modality, "", description, k + 1)).lastrowid
                for n in range(per_series):
                    sop_uid = f"{series_uid}.{n + 1}"
                    instance_rows.append((series_pk, sop_uid, "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1",
                                          512, 512, 1, n + 1, -1.0 * n, 526_000,
                                          f"{study_uid}/{series_uid}/{sop_uid}.dcm", now, "file"))
        db.executemany(
            "INSERT INTO instances (series_pk, sop_uid, sop_class, transfer_syntax, rows, columns, frames, number, "
            "position, file_size, path, imported_at, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            instance_rows)
        db.execute("COMMIT")
        db.execute("ANALYZE")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        library.close()
        shutil.rmtree(root, ignore_errors=True)
        raise
    library.close()
    done.write_text(_search_rules())
    return root


def _search_rules() -> str:
    """A fingerprint of how library.py fills the search columns, and of the schema: the cache is remade
    when either changes."""
    import hashlib
    import inspect

    from app.library import library, schema

    text = "".join(inspect.getsource(f) for f in (library.fold, library._patient_search, library.patient_key))
    return f"{schema.VERSION} {hashlib.sha1(text.encode()).hexdigest()}\n"


def _query_kinds(library) -> dict[str, list[str]]:
    """Kinds of query a practice types, each with QUERIES_PER_KIND values drawn from what the index holds."""
    pick = random.Random(7)
    rows = library.db.execute(
        "SELECT p.owner, p.name, p.species, p.breed, p.patient_id, p.microchip, s.accession "
        "FROM studies s JOIN patients p ON p.pk = s.patient_pk").fetchall()
    sample = pick.sample(rows, QUERIES_PER_KIND)
    n = QUERIES_PER_KIND
    return {
        "owner surname": [r[0].split("^")[0] for r in sample],
        "animal name": [r[1].split("^")[-1] for r in sample],
        "species": [pick.choice(list(SPECIES_BREEDS)).lower() for _ in range(n)],
        "breed": [r[3] for r in sample],
        "accession": [r[6] for r in sample],
        "patient ID": [r[4] for r in sample],
        "partial word (3 letters)": [r[0].split("^")[0][:3].lower() for r in sample],
        "two words (owner + animal)": [f"{r[0].split('^')[0]} {r[1].split('^')[-1]}" for r in sample],
        "no match": [f"zz{pick.randint(1000, 9999)}" for _ in range(n)],
        "empty (every study)": [""] * n,
    }


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def query_results() -> list[dict]:
    from app.library import Library

    root = query_library()
    out = []
    with Library(root, microchip_issuers=()) as library:
        counts = library.counts()
        if counts["instances"] != QUERY_STUDIES * QUERY_PER_STUDY:
            raise RuntimeError(f"the cached query library holds {counts}; delete {root}")
        kinds = _query_kinds(library)
        library.studies("")  # warm: page cache, statement cache
        ours_all, peer_all = [], []
        for kind, queries in kinds.items():
            ours, peer, found = [], [], []
            for query in queries:
                statements = []
                library.db.set_trace_callback(statements.append)
                library.studies(query)
                library.db.set_trace_callback(None)
                sql = statements[-1]  # the SELECT with its values bound, as sqlite ran it
                for _ in range(REPEATS):
                    start = time.perf_counter()
                    found.append(len(library.studies(query)))
                    ours.append((time.perf_counter() - start) * 1e3)
                    start = time.perf_counter()
                    library.db.execute(sql).fetchall()
                    peer.append((time.perf_counter() - start) * 1e3)
            ours_all += ours
            peer_all += peer
            rows = statistics.mean(found)
            label = f"{rows:.0f} studies" if kind.startswith("empty") else f"{rows:.1f} studies found on average"
            out.append(result(f"  library query '{kind}': median ({label})", statistics.median(ours), "ms",
                              at_most=QUERY_GOAL_MS, peer="the same SELECT, sqlite3 alone",
                              peer_value=statistics.median(peer)))
            out.append(result(f"  library query '{kind}': p95", _p95(ours), "ms") | {"peer_p95": _p95(peer)})
    scale = f"{counts['instances']:,} instances, {counts['studies']:,} studies, {counts['patients']:,} patients"
    head = [
        result(f"library query over {scale}: median of every kind ({len(ours_all)} queries)",
               statistics.median(ours_all), "ms", at_most=QUERY_GOAL_MS,
               peer="the same SELECT, sqlite3 alone (no records built)", peer_value=statistics.median(peer_all)),
        result("  library query, every kind: p95", _p95(ours_all), "ms") | {"peer_p95": _p95(peer_all)},
    ]
    return head + out


def run() -> list[dict]:
    DATA.mkdir(parents=True, exist_ok=True)
    return import_results() + query_results()


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import table

    print(table([{key: e.get(key) for key in ("name", "value", "unit", "goal", "peer", "peer_value", "ratio")} | e
                 for e in run()]))
