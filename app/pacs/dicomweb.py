"""DICOMweb through dicomweb-client: QIDO-RS to find what was asked for, WADO-RS to fetch it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urljoin, urlsplit

import requests
import requests.certs
import requests.utils

from app.dicom.reading import part10_bytes
from app.errors import Cancelled, LightboxError
from app.pacs.config import PacsConfig

log = logging.getLogger(__name__)

# QIDO-RS level and attribute for each request key a link or a user may give.
QUERY_KEYS = {
    "studyuid": ("study", "StudyInstanceUID"),
    "patientid": ("study", "PatientID"),
    "accessionnumber": ("study", "AccessionNumber"),
    "seriesuid": ("series", "SeriesInstanceUID"),
    "objectuid": ("instance", "SOPInstanceUID"),
}
_STUDY_UID, _SERIES_UID, _SOP_UID, _INSTANCES_IN_STUDY = "0020000D", "0020000E", "00080018", "00201208"


class DicomWebError(LightboxError):
    pass


@dataclass(frozen=True)
class Target:
    """What to fetch: a whole study, one series of it, or one instance."""
    study_uid: str
    series_uid: str = ""
    sop_uid: str = ""
    count: int | None = None  # instances, when the server says


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


def guard_redirects(session: requests.Session, *, allow_http_loopback: bool) -> requests.Session:
    """Make the session refuse a redirect that a link could not name itself (http, other schemes)."""
    from app.links.uri import LinkError, check_url

    def check(response, *args, **kwargs):
        if response.is_redirect:
            target = urljoin(response.url, response.headers.get("location", ""))
            if urlsplit(response.url).scheme == "https" and urlsplit(target).scheme != "https":
                raise LinkError("The DICOMweb server redirected to an address that is not https; refused.")
            check_url(target, allow_http_loopback=allow_http_loopback, what="A redirect of the DICOMweb server")
        return response

    session.hooks["response"].append(check)
    return session


def _first(item: dict, tag: str) -> str:
    return str((item.get(tag, {}).get("Value") or [""])[0] or "")


class DicomWeb:
    def __init__(self, url: str, *, headers: tuple[tuple[str, str], ...] = (), session: requests.Session | None = None,
                 label: str = "The DICOMweb server", timeout: tuple[float, float] = (10.0, 30.0)):
        from dicomweb_client.api import DICOMwebClient

        self.label = label
        self.client = DICOMwebClient(url.rstrip("/"), session=session, headers=dict(headers), timeout=timeout)
        # The default waits up to 30 s over five attempts: a person is waiting, so three, quickly.
        self.client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=200)

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (Cancelled, LightboxError):
            raise
        except Exception as exc:  # noqa: BLE001 - dicomweb-client and requests raise many kinds
            log.info("%s failed: %s", what, type(exc).__name__)
            raise DicomWebError(_describe(exc, self.label)) from None

    def find(self, requests_: list[tuple[str, str]], query_ext: str = "") -> list[Target]:
        """What matches each request ("studyUID"/"patientID"/"accessionNumber"/"seriesUID"/"objectUID", value)."""
        extra = dict(parse_qsl(query_ext, keep_blank_values=True)) if query_ext else None
        found: dict[tuple[str, str, str], Target] = {}
        for key, value in requests_:
            level, attribute = QUERY_KEYS.get(key.lower(), (None, None))
            if level is None:
                raise DicomWebError(f"Lightbox cannot search DICOMweb by '{key}'.")
            search = {"study": self.client.search_for_studies, "series": self.client.search_for_series,
                      "instance": self.client.search_for_instances}[level]
            matches = self._call("QIDO-RS", search, search_filters={attribute: value}, get_remaining=True,
                                 additional_params=extra)
            for item in matches:
                study = _first(item, _STUDY_UID)
                if not study:
                    continue
                series = _first(item, _SERIES_UID) if level != "study" else ""
                sop = _first(item, _SOP_UID) if level == "instance" else ""
                count = _first(item, _INSTANCES_IN_STUDY) if level == "study" else ""
                found[(study, series, sop)] = Target(study, series, sop, int(count) if count.isdigit() else None)
        return list(found.values())

    def iter_target(self, target: Target, reporter=None) -> Iterator[tuple[str, bytes]]:
        """(label, Part 10 bytes) of each instance of the target, in whatever transfer syntax the server has."""
        media = (("application/dicom", "*"),)
        if target.sop_uid:
            datasets = iter([self._call("WADO-RS", self.client.retrieve_instance, target.study_uid, target.series_uid,
                                        target.sop_uid, media_types=media)])
        elif target.series_uid:
            datasets = self._call("WADO-RS", self.client.iter_series, target.study_uid, target.series_uid,
                                  media_types=media)
        else:
            datasets = self._call("WADO-RS", self.client.iter_study, target.study_uid, media_types=media)
        while True:
            ds = self._call("WADO-RS", next, datasets, None)
            if ds is None:
                return
            if reporter:
                reporter.check()
            yield f"{target.study_uid}/{ds.get('SOPInstanceUID', '?')}", part10_bytes(ds)


def qido(session: requests.Session, url: str, params: list[tuple[str, str]], *, label: str,
         timeout: tuple[float, float]) -> list[dict]:
    """A QIDO-RS search (GET url?params) answered in DICOM JSON. The query is built here rather than by
    dicomweb-client, which percent-encodes the wildcards `*` and `?`: Orthanc, for one, does not decode them."""
    from urllib.parse import urlencode

    target = f"{url}?{urlencode(params, safe='*?,', quote_via=quote)}" if params else url
    try:
        resp = session.get(target, headers={"Accept": "application/dicom+json"}, timeout=timeout,
                           allow_redirects=False)
        resp.raise_for_status()
        if resp.status_code == 204 or not resp.content.strip():
            return []
        data = resp.json()
    except (Cancelled, LightboxError):
        raise
    except Exception as exc:  # noqa: BLE001 - requests raises many kinds; a non-JSON body too
        log.info("QIDO-RS failed: %s", type(exc).__name__)
        raise DicomWebError(_describe(exc, label)) from None
    if isinstance(data, dict):
        data = [data]
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


# -- a configured PACS -------------------------------------------------------------------------------

def dicomweb_session(config: PacsConfig, secret: str | None, settings=None) -> requests.Session:
    """A session for this PACS: its authentication, extra headers, AE title headers and TLS trust (requests'
    bundle or REQUESTS_CA_BUNDLE, the settings' extra CA file, the configuration's CA file). Whether to
    follow redirects is the caller's choice per request. LightboxError when a CA file cannot be used."""
    from app.links.download import make_session, trust_with

    o = config.dicomweb
    session = make_session(settings)
    if o.ca_file.strip():
        session.verify = trust_with(session.verify, o.ca_file.strip(), f"The CA file {o.ca_file.strip()}")
    # requests would let REQUESTS_CA_BUNDLE override session.verify (and so the CA file) and read ~/.netrc:
    # make_session's trust store already holds that bundle, and the proxy comes from the environment here.
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(o.url))
    if o.auth == "basic" and secret is not None:
        session.auth = (o.user, secret)
    elif o.auth == "bearer" and secret:
        session.headers["Authorization"] = f"Bearer {secret}"
    for name, value in o.headers:
        session.headers[name] = value
    if o.send_aet_headers:
        session.headers[o.source_aet_header] = o.source_aet
        session.headers[o.pacs_aet_header] = config.aet
    return session
