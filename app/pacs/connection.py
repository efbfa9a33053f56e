"""Test a PACS configuration: classic DICOM associates and sends C-ECHO; DICOMweb asks QIDO-RS for one study.

The sessions and associations come from app.pacs.dicomweb and app.pacs.dimse, as for every other call.
Reasons name the real cause and never hold a password or token.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import requests

from app.errors import LightboxError
from app.pacs.config import DICOMWEB, PacsConfig
from app.pacs.dicomweb import dicomweb_session
from app.pacs.dimse import (
    AssociationFailed, address_text, network_reason, open_association, seconds_text, service_name, why_lost,
)

log = logging.getLogger(__name__)

ESTABLISHED = "Connection established"


@dataclass
class ConnectionResult:
    ok: bool
    reason: str = ""  # why it failed, in a user's words
    round_trip_ms: float | None = None  # the C-ECHO, or the QIDO-RS request
    accepted: list[str] = field(default_factory=list)  # abstract syntaxes the PACS accepted, by name
    details: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return ESTABLISHED if self.ok else f"Connection failed: {self.reason}"

    def as_dict(self) -> dict:
        return {**asdict(self), "message": self.message}



def test_connection(config: PacsConfig, secret: str | None = None) -> ConnectionResult:
    """Never raises for network or certificate problems: they are the result's reason."""
    result = _test_dicomweb(config, secret) if config.type == DICOMWEB else _test_dimse(config)
    where = _redact(config.address) if config.type == DICOMWEB else config.address
    log.info("connection test of %s (%s): %s", config.aet, where, result.message)
    return result


test_connection.__test__ = False  # a function of the app, not a pytest test


# -- DICOMweb ---------------------------------------------------------------------------------------

def _redact(url: str) -> str:
    from app.links.uri import redact_url

    return redact_url(url)


def _test_dicomweb(config: PacsConfig, secret: str | None) -> ConnectionResult:
    o = config.dicomweb
    parts = urlsplit(o.url)
    host = parts.hostname or "?"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return ConnectionResult(False, f"the address {_redact(o.url)} is not valid")
    url = f"{o.url.rstrip('/')}/studies"
    details = [f"QIDO-RS search at {_redact(url)}"]
    try:
        session = dicomweb_session(config, secret)
    except LightboxError as exc:
        return ConnectionResult(False, str(exc).rstrip("."), details=details)
    start = time.perf_counter()
    try:
        with session:
            resp = session.get(url, params={"limit": "1"}, headers={"Accept": "application/dicom+json"},
                               timeout=(o.timeout_s, o.timeout_s), allow_redirects=False)
            body = resp.content
    except requests.exceptions.ReadTimeout:
        return ConnectionResult(False, f"no answer from {address_text(host, port)} within {seconds_text(o.timeout_s)}",
                                details=details)
    except requests.exceptions.InvalidHeader:
        names = ", ".join(name for name, _ in o.headers) or "?"
        return ConnectionResult(False, f"a header of the configuration is not valid ({names})", details=details)
    except (requests.exceptions.RequestException, OSError, ValueError) as exc:
        tls = parts.scheme == "https"
        return ConnectionResult(False, network_reason(exc, host, port, o.timeout_s, tls), details=details)
    round_trip = (time.perf_counter() - start) * 1000
    details.append(f"HTTP {resp.status_code} in {round_trip:.0f} ms")
    status = resp.status_code
    if status == 204:
        return ConnectionResult(True, round_trip_ms=round_trip, details=details + ["the archive is empty"])
    if status == 200:
        try:
            found = resp.json() if body.strip() else []
        except ValueError:
            found = None
        if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
            return ConnectionResult(False, "the address answered, but not as a DICOMweb server",
                                    round_trip_ms=round_trip, details=details)
        details.append("the archive is empty" if not found else "the archive holds studies")
        return ConnectionResult(True, round_trip_ms=round_trip, details=details)
    return ConnectionResult(False, _http_reason(config, secret, resp), round_trip_ms=round_trip, details=details)


def _http_reason(config: PacsConfig, secret: str | None, resp: requests.Response) -> str:
    o = config.dicomweb
    status = resp.status_code
    if status == 401:
        if o.auth == "none":
            return "HTTP 401: the PACS asks for a user name and password (or a token), and none is configured"
        if o.auth == "basic":
            if not secret:
                return "HTTP 401: the PACS asks for a password, and none is stored for this configuration"
            return "HTTP 401: the user name or password was not accepted"
        if not secret:
            return "HTTP 401: the PACS asks for a token, and none is stored for this configuration"
        return "HTTP 401: the token was not accepted"
    if status == 403:
        who = f"the user {o.user}" if o.auth == "basic" else "this token" if o.auth == "bearer" else "Lightbox"
        return f"HTTP 403: {who} may not search this PACS"
    if status == 404:
        return f"HTTP 404: there is no DICOMweb service at {_redact(o.url)} (check the base URL)"
    if 300 <= status < 400:
        target = resp.headers.get("Location", "")
        where = f" to {_redact(target)}" if target else ""
        return f"HTTP {status}: the address redirects{where}; use the final address as the base URL"
    if status >= 500:
        return f"HTTP {status}: the PACS failed to answer the search"
    return f"HTTP {status}: the PACS refused the search"


# -- classic DICOM: the test -------------------------------------------------------------------------------

# Storage classes a veterinary practice sends most: CT, MR, CR, DX, US (single and multi-frame), SC.
_STORAGE = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.1",
            "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1",
            "1.2.840.10008.5.1.4.1.1.7")
_VERIFICATION = "1.2.840.10008.1.1"
_FIND, _MOVE, _GET = "1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.1.2.2.2", "1.2.840.10008.5.1.4.1.2.2.3"
_WORKLIST = "1.2.840.10008.5.1.4.31"
_MPPS = "1.2.840.10008.3.1.2.3.3"


def requested_syntaxes(config: PacsConfig) -> list[str]:
    """Verification and the abstract syntaxes of the enabled functions, as UIDs."""
    o = config.dimse
    uids = [_VERIFICATION]
    if o.store:
        uids += _STORAGE
    if o.query_retrieve:
        uids.append(_FIND)
        uids += {"auto": [_GET, _MOVE], "get": [_GET], "move": [_MOVE]}[o.retrieve_method]
    if o.mwl:
        uids.append(_WORKLIST)
    if o.mpps:
        uids.append(_MPPS)
    return uids


def _test_dimse(config: PacsConfig) -> ConnectionResult:
    from pydicom.uid import UID
    from pynetdicom.presentation import build_context

    o = config.dimse
    calling = o.test_aet
    tls = " over TLS" if o.tls else ""
    details = [f"{calling} -> {config.aet} at {address_text(o.host, o.port)}{tls}"]
    contexts = [build_context(UID(uid)) for uid in requested_syntaxes(config)]
    try:
        assoc = open_association(config, calling, contexts)
    except AssociationFailed as exc:
        return ConnectionResult(False, str(exc), details=details)
    except LightboxError as exc:  # a TLS file that cannot be used
        return ConnectionResult(False, str(exc).rstrip("."), details=details)
    try:
        accepted_uids = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        accepted = [service_name(UID(uid)) for uid in requested_syntaxes(config) if uid in accepted_uids]
        refused = [service_name(UID(uid)) for uid in requested_syntaxes(config) if uid not in accepted_uids]
        if refused:
            details.append("not accepted: " + ", ".join(refused))
        if _VERIFICATION not in accepted_uids:
            return ConnectionResult(False, "the PACS does not accept C-ECHO (Verification) from "
                                    f"{calling}", accepted=accepted, details=details)
        start = time.perf_counter()
        status = assoc.send_c_echo()
        round_trip = (time.perf_counter() - start) * 1000
        code = status.get("Status") if status else None
        if code is None:
            return ConnectionResult(False, why_lost(assoc, "C-ECHO", calling), accepted=accepted,
                                    details=details)
        if code != 0:
            return ConnectionResult(False, f"C-ECHO failed with status 0x{int(code):04X}", round_trip_ms=round_trip,
                                    accepted=accepted, details=details)
        details.append(f"C-ECHO answered in {round_trip:.1f} ms")
        return ConnectionResult(True, round_trip_ms=round_trip, accepted=accepted, details=details)
    finally:
        watch = assoc.lightbox_watch
        if assoc.is_established and watch.abort is None and watch.ended_by is None:
            assoc.release()  # after an abort or a hang-up pynetdicom's own thread winds down
