"""The local archive: file store + SQLite index, import, export."""

from app.library.export import ExportResult, export_study
from app.library.importer import ImportEntry, ImportResult, import_datasets, import_paths
from app.library.library import (
    CheckReport, Conflict, InstanceRecord, Library, SeriesRecord, StudyRecord, fold, library_root,
)

__all__ = [
    "CheckReport", "Conflict", "ExportResult", "export_study", "ImportEntry", "ImportResult", "InstanceRecord", "Library", "SeriesRecord",
    "StudyRecord", "fold", "import_datasets", "import_paths", "library_root",
]
