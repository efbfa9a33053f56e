"""The index's tables, and the migrations that bring any older index up to date.

`PRAGMA user_version` holds the schema version. MIGRATIONS[n] takes version n to n + 1; a new release
appends to the list and never edits an entry already shipped.
"""

from __future__ import annotations

import sqlite3

from app.errors import LightboxError

_V1 = """
CREATE TABLE patients (
    pk INTEGER PRIMARY KEY,
    match_key TEXT NOT NULL UNIQUE,
    patient_id TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    species TEXT NOT NULL DEFAULT '',
    breed TEXT NOT NULL DEFAULT '',
    sex TEXT NOT NULL DEFAULT '',
    birth_date TEXT NOT NULL DEFAULT '',
    neutered TEXT NOT NULL DEFAULT '',
    microchip TEXT NOT NULL DEFAULT '',
    owner_role TEXT NOT NULL DEFAULT '',
    owner_organization TEXT NOT NULL DEFAULT '',
    search TEXT NOT NULL DEFAULT ''
);
CREATE INDEX patients_by_id ON patients (patient_id);

CREATE TABLE studies (
    pk INTEGER PRIMARY KEY,
    patient_pk INTEGER NOT NULL REFERENCES patients (pk),
    study_uid TEXT NOT NULL UNIQUE,
    study_date TEXT NOT NULL DEFAULT '',
    study_time TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    accession TEXT NOT NULL DEFAULT '',
    referring_physician TEXT NOT NULL DEFAULT '',
    study_id TEXT NOT NULL DEFAULT '',
    modalities TEXT NOT NULL DEFAULT '',
    series_count INTEGER NOT NULL DEFAULT 0,
    instance_count INTEGER NOT NULL DEFAULT 0,
    search TEXT NOT NULL DEFAULT '',
    added_at TEXT NOT NULL
);
CREATE INDEX studies_by_patient ON studies (patient_pk);
CREATE INDEX studies_by_date ON studies (study_date, study_time);

CREATE TABLE series (
    pk INTEGER PRIMARY KEY,
    study_pk INTEGER NOT NULL REFERENCES studies (pk),
    series_uid TEXT NOT NULL UNIQUE,
    modality TEXT NOT NULL DEFAULT '',
    body_part TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    number INTEGER
);
CREATE INDEX series_by_study ON series (study_pk);

CREATE TABLE instances (
    pk INTEGER PRIMARY KEY,
    series_pk INTEGER NOT NULL REFERENCES series (pk),
    sop_uid TEXT NOT NULL UNIQUE,
    sop_class TEXT NOT NULL DEFAULT '',
    transfer_syntax TEXT NOT NULL DEFAULT '',
    rows INTEGER,
    columns INTEGER,
    frames INTEGER NOT NULL DEFAULT 1,
    number INTEGER,
    position REAL,
    file_size INTEGER NOT NULL,
    path TEXT NOT NULL UNIQUE,
    imported_at TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT ''
);
CREATE INDEX instances_by_series ON instances (series_pk);

-- files whose rows are gone but which may still be on disk: deleted (again) by the next check
CREATE TABLE pending_deletes (path TEXT PRIMARY KEY);
"""

# 2: the outbox. A send and each of its instances are recorded before the first byte goes out.
_V2 = """
CREATE TABLE sends (
    pk INTEGER PRIMARY KEY,
    destination_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    owner_pid INTEGER,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    finished_at TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sends_by_state ON sends (state, next_attempt_at);

CREATE TABLE send_items (
    pk INTEGER PRIMARY KEY,
    send_pk INTEGER NOT NULL REFERENCES sends (pk),
    sop_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    state TEXT NOT NULL,
    status INTEGER,
    message TEXT NOT NULL DEFAULT '',
    UNIQUE (send_pk, sop_uid)
);
CREATE INDEX send_items_by_send ON send_items (send_pk, state);
"""

# 3: a send may complete a Modality Performed Procedure Step once every instance is confirmed.
_V3 = """
ALTER TABLE sends ADD COLUMN mpps_uid TEXT NOT NULL DEFAULT '';
ALTER TABLE sends ADD COLUMN mpps_state TEXT NOT NULL DEFAULT '';
"""

# 4: studies begun from a worklist entry, and the performed procedure step (MPPS) each one reports to.
_V4 = """
CREATE TABLE procedures (
    study_uid TEXT PRIMARY KEY,
    config_id TEXT NOT NULL,
    mpps_uid TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL
);
"""

# 5: measurements drawn on an instance's frame (the Measurement as JSON; results are always computed),
# and manual calibrations of an image, a series or a study.
_V5 = """
CREATE TABLE measurements (
    id TEXT PRIMARY KEY,
    sop_uid TEXT NOT NULL,
    frame INTEGER NOT NULL DEFAULT 0,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX measurements_by_instance ON measurements (sop_uid, frame);

CREATE TABLE manual_calibrations (
    scope TEXT NOT NULL,
    uid TEXT NOT NULL,
    row_mm REAL NOT NULL,
    column_mm REAL NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (scope, uid)
);
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3, _V4, _V5]
VERSION = len(MIGRATIONS)


class IndexTooNew(LightboxError):
    pass


def migrate(db: sqlite3.Connection) -> int:
    """Bring the index to VERSION, one migration per transaction; returns the version found."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > VERSION:
        raise IndexTooNew(
            f"The library was written by a newer Lightbox (index version {found}; this one knows {VERSION}). "
            "Update Lightbox to open it.")
    for version in range(found, VERSION):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {version + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return found


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit on its own)."""
    out, current = [], []
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";") and sqlite3.complete_statement("\n".join(current)):
            out.append("\n".join(current))
            current = []
    if "".join(current).strip():
        out.append("\n".join(current))
    return out
