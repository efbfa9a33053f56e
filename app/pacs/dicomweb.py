"""DICOMweb through dicomweb-client: QIDO-RS to find studies, WADO-RS to fetch their instances."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import parse_qsl

import requests

from app.dicom.reading import part10_bytes
from app.errors import Cancelled, LightboxError

log = logging.getLogger(__name__)

# QIDO-RS attribute for each request key a link or a user may give.
QUERY_KEYS = {"studyuid": "StudyInstanceUID", "patientid": "PatientID", "accessionnumber": "AccessionNumber"}
_INSTANCES_IN_STUDY = "00201208"


class DicomWebError(LightboxError):
    pass


def _describe(exc: Exception, where: str) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403):
            return f"{where} refused access (HTTP {status}): the link's credentials are missing, wrong or expired."
        if status == 404:
            return f"{where} does not have what was asked for (HTTP 404)."
        return f"{where} answered with an error (HTTP {status})."
    if isinstance(exc, requests.exceptions.SSLError):
        return f"{where} could not be verified as secure (certificate problem)."
    if isinstance(exc, requests.Timeout):
        return f"{where} did not answer in time."
    if isinstance(exc, requests.ConnectionError):
        return f"{where} could not be reached."
    return f"{where} sent something Lightbox could not read ({type(exc).__name__})."


class DicomWeb:
    def __init__(self, url: str, *, headers: tuple[tuple[str, str], ...] = (), session: requests.Session | None = None,
                 label: str = "The DICOMweb server"):
        from dicomweb_client.api import DICOMwebClient

        self.label = label
        self.client = DICOMwebClient(url.rstrip("/"), session=session, headers=dict(headers))

    def find_studies(self, requests_: list[tuple[str, str]], query_ext: str = "") -> list[tuple[str, int | None]]:
        """(study UID, instance count if the server says) for every study matching any of the requests."""
        extra = dict(parse_qsl(query_ext, keep_blank_values=True)) if query_ext else None
        found: dict[str, int | None] = {}
        for key, value in requests_:
            attribute = QUERY_KEYS.get(key.lower())
            if attribute is None:
                raise DicomWebError(f"Lightbox cannot search DICOMweb by '{key}'.")
            try:
                matches = self.client.search_for_studies(search_filters={attribute: value}, get_remaining=True,
                                                         additional_params=extra)
            except Exception as exc:  # noqa: BLE001 - dicomweb-client and requests raise many kinds
                log.info("QIDO-RS failed: %s", type(exc).__name__)
                raise DicomWebError(_describe(exc, self.label)) from None
            for study in matches:
                uid = (study.get("0020000D", {}).get("Value") or [""])[0]
                if uid:
                    count = (study.get(_INSTANCES_IN_STUDY, {}).get("Value") or [None])[0]
                    found[uid] = int(count) if count is not None else None
        return list(found.items())

    def iter_study(self, study_uid: str, reporter=None) -> Iterator[tuple[str, bytes]]:
        """(label, Part 10 bytes) of each instance of the study, as the server sends them (any transfer syntax)."""
        try:
            for ds in self.client.iter_study(study_uid, media_types=(("application/dicom", "*"),)):
                if reporter:
                    reporter.check()
                yield f"{study_uid}/{ds.get('SOPInstanceUID', '?')}", part10_bytes(ds)
        except (Cancelled, LightboxError):
            raise
        except Exception as exc:  # noqa: BLE001
            log.info("WADO-RS failed: %s", type(exc).__name__)
            raise DicomWebError(_describe(exc, self.label)) from None
