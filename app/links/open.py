"""Follow a lightbox:// link: download what it names and import it into the library."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from app import settings as settings_mod
from app.library import ImportEntry, ImportResult, Library, import_datasets, import_paths
from app.links.uri import DicomGet, DicomRs, LinkError, OpenImageUrl, parse

log = logging.getLogger(__name__)


@dataclass
class LinkResult:
    imported: ImportResult
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: download, import

    @property
    def study_uids(self) -> list[str]:
        return self.imported.studies

    def as_dict(self) -> dict:
        return {"studies": self.study_uids, "warnings": self.warnings,
                "timings_ms": {k: round(v * 1000, 1) for k, v in self.timings.items()}, **self.imported.as_dict()}


def open_link(uri: str, *, library: Library | None = None, reporter=None, settings=None) -> LinkResult:
    """Download and import everything a link names. Raises LinkError (or another LightboxError) when
    nothing could be had; partial failures (one instance of a manifest) are listed in the result."""
    from app.links.download import make_session

    settings = settings or settings_mod.load()
    link = parse(uri, allow_http_loopback=settings.allow_http_loopback)
    for warning in link.warnings:
        log.warning("link: %s", warning)
    own = library is None
    library = library or Library()
    result = LinkResult(ImportResult(), list(link.warnings), {"download": 0.0, "import": 0.0})
    session = make_session(settings)
    try:
        for command in link.commands:
            if isinstance(command, OpenImageUrl):
                _open_image(command, session, settings, library, reporter, result)
            elif isinstance(command, DicomGet):
                _dicom_get(command, session, settings, library, reporter, result)
            elif isinstance(command, DicomRs):
                _dicom_rs(command, settings, library, reporter, result)
    finally:
        session.close()
        if own:
            library.close()
    log.info("link opened: %s", result.imported.summary())
    if not result.imported.entries:
        raise LinkError("The link named no images.")
    if not result.study_uids:
        first = result.imported.failed[0]
        raise LinkError(f"Nothing from the link could be opened: {first.error}")
    return result


def _merge(result: LinkResult, imported: ImportResult) -> None:
    result.imported.entries += imported.entries
    result.imported.conflicts += imported.conflicts
    result.imported.stopped = result.imported.stopped or imported.stopped


def _import_downloads(downloads, library, reporter, result: LinkResult, context=None) -> None:
    started = time.perf_counter()
    try:
        imported = import_paths([d.path for d in downloads], library=library, source="link", context=context,
                                reporter=reporter, labels={str(d.path): d.label for d in downloads})
    finally:
        for d in downloads:
            d.path.unlink(missing_ok=True)
    result.timings["import"] += time.perf_counter() - started
    _merge(result, imported)


def _photo_context(url: str):
    from app.dicom.capture import CaptureContext

    host = urlsplit(url).hostname or "a link"
    return CaptureContext(study_description=f"Image from {host}", series_description="Downloaded image")


def _open_image(command: OpenImageUrl, session, settings, library, reporter, result: LinkResult) -> None:
    from app.links.download import download

    started = time.perf_counter()
    downloaded = download(command.location, session=session, settings=settings, reporter=reporter)
    result.timings["download"] += time.perf_counter() - started
    context = _photo_context(command.location) if downloaded.kind in ("jpeg", "png") else None
    _import_downloads([downloaded], library, reporter, result, context)


def _dicom_get(command: DicomGet, session, settings, library, reporter, result: LinkResult) -> None:
    from app.links.download import DownloadError, download_many, fetch
    from app.links.manifest import parse_manifest

    for url in command.manifests:
        started = time.perf_counter()
        data = fetch(url, session=session, settings=settings, reporter=reporter)
        manifest = parse_manifest(data, source_url=url, allow_http_loopback=settings.allow_http_loopback)
        result.warnings += list(manifest.warnings)
        outcomes = download_many([(item.url, item.headers) for item in manifest.items], session=session,
                                 settings=settings, reporter=reporter)
        result.timings["download"] += time.perf_counter() - started
        done = []
        for item, outcome in zip(manifest.items, outcomes):
            if isinstance(outcome, DownloadError):
                result.imported.entries.append(ImportEntry(item.label, "failed", item.sop_uid, item.study_uid,
                                                           str(outcome)))
            else:
                done.append(outcome)
        if done:
            _import_downloads(done, library, reporter, result)


def _dicom_rs(command: DicomRs, settings, library, reporter, result: LinkResult) -> None:
    from app.links.download import make_session
    from app.pacs.dicomweb import DicomWeb, guard_redirects

    host = urlsplit(command.url).hostname or "the server"
    session = guard_redirects(make_session(settings), allow_http_loopback=settings.allow_http_loopback)
    started = time.perf_counter()
    try:
        server = DicomWeb(command.url, headers=command.headers, session=session,
                          label=f"The DICOMweb server {host}",
                          timeout=(settings.connect_timeout_s, settings.read_timeout_s))
        targets = server.find(list(command.requests), command.query_ext)
        if not targets:
            wanted = ", ".join(f"{k}={v}" for k, v in command.requests)
            raise LinkError(f"The DICOMweb server {host} has nothing for {wanted}.")
        total = sum(t.count for t in targets if t.count) or None
        received = []
        for target in targets:
            for label, data in server.iter_target(target, reporter):
                received.append((label, data))
                if reporter:
                    reporter.update(len(received), total, f"Receiving from {host}")
    finally:
        session.close()
    result.timings["download"] += time.perf_counter() - started
    started = time.perf_counter()
    _merge(result, import_datasets(received, library=library, source="link", reporter=reporter))
    result.timings["import"] += time.perf_counter() - started
