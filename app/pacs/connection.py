"""Test a PACS configuration: classic DICOM associates and sends C-ECHO; DICOMweb asks QIDO-RS for one study.

Also what later DICOM and DICOMweb calls reuse: `dicomweb_session` (authentication, headers, TLS trust),
`open_association` (TCP_NODELAY, TLS, timeouts, failures told in plain words) and `nodelay_handler`.
Reasons name the real cause and never hold a password or token.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import ssl
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
import requests.certs
import requests.utils

from app import paths
from app.errors import LightboxError
from app.pacs.config import DICOMWEB, PacsConfig

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


class AssociationFailed(LightboxError):
    """No association: str() is the reason ("the PACS rejected the association: ...")."""


def test_connection(config: PacsConfig, secret: str | None = None) -> ConnectionResult:
    """Never raises for network or certificate problems: they are the result's reason."""
    result = _test_dicomweb(config, secret) if config.type == DICOMWEB else _test_dimse(config)
    where = _redact(config.address) if config.type == DICOMWEB else config.address
    log.info("connection test of %s (%s): %s", config.aet, where, result.message)
    return result


test_connection.__test__ = False  # a function of the app, not a pytest test


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _causes(exc: BaseException):
    """The exception and those it wraps (requests and urllib3 nest them deeply)."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        more = [getattr(e, "reason", None), e.__cause__, e.__context__, *getattr(e, "args", ())]
        todo += [m for m in more if isinstance(m, BaseException)]


def _network_reason(exc: BaseException, host: str, port: int, timeout: float, tls: bool = False) -> str:
    """The reason for a failed connection, TLS handshake included."""
    where = _where(host, port)
    for e in _causes(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            detail = f" ({e.verify_message})" if getattr(e, "verify_message", "") else ""
            return f"the PACS's TLS certificate is not trusted{detail}"
    for e in _causes(exc):
        if isinstance(e, socket.gaierror):
            return f"the name {host} could not be resolved"
        if isinstance(e, ConnectionRefusedError):
            return f"nothing is listening at {where} (connection refused)"
        if isinstance(e, (TimeoutError, socket.timeout)):
            return f"no answer from {where} within {_seconds(timeout)}"
        if isinstance(e, ssl.SSLError) or tls and isinstance(e, (ConnectionResetError, BrokenPipeError)):
            detail = getattr(e, "reason", None) or "the connection was closed"
            detail = detail.lower().replace("_", " ") if detail.isupper() else detail
            return f"the TLS handshake with {where} failed ({detail}); is TLS turned on at that port?"
        if isinstance(e, ConnectionResetError):
            return f"{where} closed the connection (reset)"
        if isinstance(e, OSError) and e.strerror:
            return f"{where} cannot be reached ({e.strerror.lower()})"
    return f"{where} cannot be reached ({type(exc).__name__})"


# -- DICOMweb ---------------------------------------------------------------------------------------

def _redact(url: str) -> str:
    from app.links.uri import redact_url

    return redact_url(url)


def dicomweb_session(config: PacsConfig, secret: str | None, settings=None) -> requests.Session:
    """A session for this PACS: its authentication, extra headers, AE title headers and TLS trust (requests'
    bundle or REQUESTS_CA_BUNDLE, the settings' extra CA file, the configuration's CA file). Whether to
    follow redirects is the caller's choice per request. LightboxError when a CA file cannot be used."""
    from app.links.download import make_session

    o = config.dicomweb
    session = make_session(settings)
    if o.ca_file.strip():
        session.verify = _trust_with(session.verify, o.ca_file.strip())
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


def _trust_with(base, ca_file: str) -> str:
    """One PEM bundle: what `base` trusts plus the configuration's CA file (cached by content)."""
    try:
        extra = Path(ca_file).expanduser().read_bytes()
    except OSError as exc:
        raise LightboxError(f"The CA file {ca_file} cannot be read ({exc.strerror or type(exc).__name__}).") \
            from None
    if b"-----BEGIN CERTIFICATE-----" not in extra:
        raise LightboxError(f"The CA file {ca_file} holds no PEM certificate.")
    if not isinstance(base, str) or Path(base).is_dir():
        base = requests.certs.where()
    combined = Path(base).read_bytes().rstrip(b"\n") + b"\n" + extra
    target = paths.cache_dir() / f"ca-bundle-{hashlib.sha256(combined).hexdigest()[:16]}.pem"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".ca-bundle-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fp:
                fp.write(combined)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return str(target)


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
        return ConnectionResult(False, f"no answer from {_where(host, port)} within {_seconds(o.timeout_s)}",
                                details=details)
    except requests.exceptions.InvalidHeader:
        names = ", ".join(name for name, _ in o.headers) or "?"
        return ConnectionResult(False, f"a header of the configuration is not valid ({names})", details=details)
    except (requests.exceptions.RequestException, OSError, ValueError) as exc:
        tls = parts.scheme == "https"
        return ConnectionResult(False, _network_reason(exc, host, port, o.timeout_s, tls), details=details)
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


# -- classic DICOM: pieces every association uses ----------------------------------------------------------
#
# TCP_NODELAY: pynetdicom never sets it, so every small PDU waits for Nagle (peers.md). The hook is
# pynetdicom's public EVT_CONN_OPEN event: it fires for a requested connection once connected and for an
# accepted one before its association starts, in both cases before any PDU is sent. `open_association`
# binds it; a storage SCP passes `[nodelay_handler()]` to `ae.start_server(..., evt_handlers=...)`.
#
# The cause of a failed connect (refused, timed out, certificate) is only logged by pynetdicom; an AE
# subclass overriding its `_create_socket` hook gives it our own socket, which keeps that cause.

def set_nodelay(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError) as exc:  # not TCP (a test double), or already closed
        log.debug("TCP_NODELAY not set: %s", exc)


def _nodelay_on_open(event) -> None:
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None:
        set_nodelay(sock)


def nodelay_handler():
    """(EVT_CONN_OPEN, handler) for pynetdicom's evt_handlers: TCP_NODELAY on the association's socket."""
    from pynetdicom import evt

    return (evt.EVT_CONN_OPEN, _nodelay_on_open)


def quiet_pynetdicom() -> None:
    """pynetdicom logs every PDU at INFO; keep it to warnings unless its logger or ours is set to DEBUG."""
    ours, theirs = logging.getLogger("app"), logging.getLogger("pynetdicom")
    if theirs.level == logging.NOTSET and not ours.isEnabledFor(logging.DEBUG):
        theirs.setLevel(logging.WARNING)


class _Connecting(socket.socket):
    failure: OSError | None = None

    def connect(self, address):
        try:
            super().connect(address)
        except OSError as exc:
            self.failure = exc
            raise


class _ConnectingTls(ssl.SSLSocket):
    failure: OSError | None = None

    def connect(self, address):  # TCP connect and TLS handshake
        try:
            super().connect(address)
        except OSError as exc:
            self.failure = exc
            raise


def dimse_tls_context(config: PacsConfig) -> ssl.SSLContext:
    """Verifies the PACS against the system's authorities plus the configuration's CA file, and shows the
    client certificate when one is configured. LightboxError when a file cannot be used."""
    o = config.dimse
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        if o.ca_file.strip():
            context.load_verify_locations(cafile=o.ca_file.strip())
    except (OSError, ssl.SSLError) as exc:
        raise LightboxError(f"The CA file {o.ca_file} cannot be used ({_ssl_text(exc)}).") from None
    try:
        if o.client_cert.strip():
            context.load_cert_chain(o.client_cert.strip(), o.client_key.strip() or None)
    except (OSError, ssl.SSLError) as exc:
        raise LightboxError(f"The client certificate {o.client_cert} or its key cannot be used "
                            f"({_ssl_text(exc)}).") from None
    context.sslsocket_class = _ConnectingTls
    return context


def _ssl_text(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__


def _ae_class():
    """pynetdicom's ApplicationEntity whose requested associations use our sockets (imported late: 0.5 s)."""
    global _AE
    if _AE is None:
        from pynetdicom import AE
        from pynetdicom.transport import AssociationSocket

        class Socket(AssociationSocket):
            """Creates its socket itself (TLS-wrapped when asked) so that a failed connect keeps its cause."""

            def __init__(self, assoc, address, tls_args):
                self.tls, self.raw = tls_args, None
                super().__init__(assoc, address=address)

            def _create_socket(self, address):
                family = getattr(address, "address_family", socket.AF_INET)
                sock = _Connecting(family, socket.SOCK_STREAM)
                if self.assoc.network_timeout is not None:
                    sock.settimeout(self.assoc.network_timeout)
                sock.bind(getattr(address, "as_tuple", address))
                if self.tls:
                    context, hostname = self.tls
                    sock = context.wrap_socket(sock, server_side=False, server_hostname=hostname)
                self.raw = sock
                return sock

            @property
            def failure(self) -> OSError | None:
                return getattr(self.raw, "failure", None)

        class LightboxAE(AE):
            def _create_socket(self, assoc, address, tls_args):
                return Socket(assoc, address, tls_args)  # tls_args stays None: pynetdicom must not wrap again

        _AE = LightboxAE
    return _AE


_AE = None


class _Watch:
    """What happened on one association, to say why it ended: an A-ABORT received, whether something that
    is not DICOM arrived (state machine event 19), and who ended it first (17: the peer closed the
    connection; 15: we aborted, e.g. after a timeout)."""

    def __init__(self):
        self.abort = None  # the peer's A-ABORT PDU
        self.not_dicom = False
        self.ended_by: str | None = None

    def handlers(self) -> list:
        from pynetdicom import evt

        return [nodelay_handler(), (evt.EVT_PDU_RECV, self._on_pdu), (evt.EVT_FSM_TRANSITION, self._on_fsm)]

    def _on_pdu(self, event) -> None:
        from pynetdicom.pdu import A_ABORT_RQ

        if isinstance(event.pdu, A_ABORT_RQ) and self.abort is None:
            self.abort = event.pdu

    def _on_fsm(self, event) -> None:
        if event.fsm_event == "Evt19":
            self.not_dicom = True
        elif event.fsm_event in ("Evt15", "Evt17") and self.ended_by is None:
            self.ended_by = "us" if event.fsm_event == "Evt15" else "peer"


_ABORT_REASONS = {1: "unrecognised PDU", 2: "unexpected PDU", 4: "unrecognised PDU parameter",
                  5: "unexpected PDU parameter", 6: "invalid PDU parameter value"}


def _abort_text(pdu) -> str:
    if pdu.source == 2:
        return f" (its DICOM layer reported: {_ABORT_REASONS.get(pdu.reason_diagnostic, 'no reason given')})"
    return ""


def _reject_text(primitive, called: str, calling: str) -> str:
    source, diagnostic = primitive.result_source, primitive.diagnostic
    if source == 1:
        why = {1: "no reason given", 2: "application context name not supported",
               3: f"calling AE title not recognised ({calling})",
               7: f"called AE title not recognised ({called})"}.get(diagnostic, f"reason {diagnostic}")
    elif source == 2:
        why = {1: "no reason given", 2: "protocol version not supported"}.get(diagnostic, f"reason {diagnostic}")
    elif source == 3:
        why = {1: "temporary congestion", 2: "local limit exceeded"}.get(diagnostic, f"reason {diagnostic}")
    else:
        why = "no reason given"
    transient = " (for now: try again later)" if primitive.result == 2 else ""
    return f"the PACS rejected the association: {why}{transient}"


def open_association(config: PacsConfig, calling_aet: str, contexts: list, *, evt_handlers: list = ()):
    """An established pynetdicom association with the configured PACS: called AE title, host and port,
    TLS, timeouts (config.dimse.timeout_s), TCP_NODELAY. AssociationFailed says why there is none."""
    quiet_pynetdicom()
    o = config.dimse
    where = _where(o.host, o.port)
    tls_args = None
    if o.tls:
        tls_args = (dimse_tls_context(config), o.host)
    try:
        ae = _ae_class()(ae_title=calling_aet)
    except ValueError as exc:
        raise AssociationFailed(f"the AE title {calling_aet} cannot be used ({exc})") from None
    for name in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
        setattr(ae, name, o.timeout_s)
    watch = _Watch()
    try:
        assoc = ae.associate(o.host, o.port, contexts=contexts, ae_title=config.aet, tls_args=tls_args,
                             evt_handlers=watch.handlers() + list(evt_handlers))
    except OSError as exc:  # the name did not resolve (pynetdicom resolves before connecting)
        raise AssociationFailed(_network_reason(exc, o.host, o.port, o.timeout_s)) from None
    assoc.lightbox_watch = watch
    if assoc.is_established:
        return assoc
    sock = assoc.dul.socket
    failure = getattr(sock, "failure", None)
    if failure is not None:
        raise AssociationFailed(_network_reason(failure, o.host, o.port, o.timeout_s, o.tls))
    if assoc.is_rejected and assoc.acceptor.primitive is not None:
        raise AssociationFailed(_reject_text(assoc.acceptor.primitive, config.aet, calling_aet))
    if watch.abort is not None:
        raise AssociationFailed(f"the PACS aborted the association{_abort_text(watch.abort)}")
    primitive = assoc.acceptor.primitive
    if primitive is not None and primitive.result == 0:
        names = ", ".join(_name(cx.abstract_syntax) for cx in contexts)
        raise AssociationFailed(f"the PACS accepted none of the services asked for ({names})")
    if watch.not_dicom:
        raise AssociationFailed(f"{where} answered, but not as a DICOM PACS")
    if watch.ended_by != "peer":
        raise AssociationFailed(f"no answer from {where} within {_seconds(o.timeout_s)}")
    hint = " (does it expect TLS?)"
    if o.tls:
        hint = " (perhaps it did not accept the client certificate)" if o.client_cert.strip() else \
            " (does it ask for a client certificate?)"
    raise AssociationFailed(f"{where} closed the connection without answering the association request{hint}")


def why_lost(assoc, doing: str, calling_aet: str = "") -> str:
    """Why a DIMSE request (`doing`, e.g. "C-ECHO") on an association from `open_association` got no answer."""
    watch = getattr(assoc, "lightbox_watch", None) or _Watch()
    abort = watch.abort
    if abort is not None:
        hint = ""
        if abort.source == 0 and calling_aet:
            hint = f"; it may not accept {doing} from the calling AE title {calling_aet}"
        return f"the PACS aborted the association in answer to the {doing}{_abort_text(abort)}{hint}"
    if watch.not_dicom:
        return f"the PACS answered the {doing} with something that is not DICOM"
    if watch.ended_by == "peer":
        return f"the PACS closed the connection in answer to the {doing}"
    return f"no answer to the {doing} within {_seconds(assoc.dimse_timeout)}"


def _name(uid) -> str:
    name = getattr(uid, "name", "") or str(uid)
    return name.removesuffix(" SOP Class")


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
    details = [f"{calling} -> {config.aet} at {_where(o.host, o.port)}{tls}"]
    contexts = [build_context(UID(uid)) for uid in requested_syntaxes(config)]
    try:
        assoc = open_association(config, calling, contexts)
    except AssociationFailed as exc:
        return ConnectionResult(False, str(exc), details=details)
    except LightboxError as exc:  # a TLS file that cannot be used
        return ConnectionResult(False, str(exc).rstrip("."), details=details)
    try:
        accepted_uids = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        accepted = [_name(UID(uid)) for uid in requested_syntaxes(config) if uid in accepted_uids]
        refused = [_name(UID(uid)) for uid in requested_syntaxes(config) if uid not in accepted_uids]
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
