"""Classic DICOM associations as every Lightbox service opens them: TCP_NODELAY on the socket (pynetdicom
leaves Nagle on: 20x slower DIMSE), TLS when configured, the configuration's timeouts, and a failure
told in plain words (rejected with its reason, aborted, refused, not trusted ...).
"""

from __future__ import annotations

import logging
import socket
import ssl

from app.errors import LightboxError
from app.pacs.config import PacsConfig

log = logging.getLogger(__name__)


def address_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def seconds_text(value: float) -> str:
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


def network_reason(exc: BaseException, host: str, port: int, timeout: float, tls: bool = False) -> str:
    """The reason for a failed connection, TLS handshake included."""
    where = address_text(host, port)
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
            return f"no answer from {where} within {seconds_text(timeout)}"
        if isinstance(e, ssl.SSLError) or tls and isinstance(e, (ConnectionResetError, BrokenPipeError)):
            detail = getattr(e, "reason", None) or "the connection was closed"
            detail = detail.lower().replace("_", " ") if detail.isupper() else detail
            return f"the TLS handshake with {where} failed ({detail}); is TLS turned on at that port?"
        if isinstance(e, ConnectionResetError):
            return f"{where} closed the connection (reset)"
        if isinstance(e, OSError) and e.strerror:
            return f"{where} cannot be reached ({e.strerror.lower()})"
    return f"{where} cannot be reached ({type(exc).__name__})"

class AssociationFailed(LightboxError):
    """No association: str() is the reason ("the PACS rejected the association: ...")."""


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


def open_association(config: PacsConfig, calling_aet: str, contexts: list, *, evt_handlers: list = (),
                     ext_neg: list = (), max_pdu: int | None = None):
    """An established pynetdicom association with the configured PACS: called AE title, host and port,
    TLS, timeouts (config.dimse.timeout_s), TCP_NODELAY; `ext_neg` carries e.g. SCP/SCU role selection.
    `max_pdu` is the largest PDU we accept (0: no limit). AssociationFailed says why there is none."""
    quiet_pynetdicom()
    o = config.dimse
    where = address_text(o.host, o.port)
    tls_args = None
    if o.tls:
        tls_args = (dimse_tls_context(config), o.host)
    try:
        ae = _ae_class()(ae_title=calling_aet)
    except ValueError as exc:
        raise AssociationFailed(f"the AE title {calling_aet} cannot be used ({exc})") from None
    for name in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
        setattr(ae, name, o.timeout_s)
    if max_pdu is not None:  # the largest PDU we accept (0: any): fewer P-DATA PDUs for what the PACS sends us
        ae.maximum_pdu_size = max_pdu
    watch = _Watch()
    try:
        assoc = ae.associate(o.host, o.port, contexts=contexts, ae_title=config.aet, tls_args=tls_args,
                             evt_handlers=watch.handlers() + list(evt_handlers), ext_neg=list(ext_neg) or None)
    except OSError as exc:  # the name did not resolve (pynetdicom resolves before connecting)
        raise AssociationFailed(network_reason(exc, o.host, o.port, o.timeout_s)) from None
    assoc.lightbox_watch = watch
    if assoc.is_established:
        return assoc
    sock = assoc.dul.socket
    failure = getattr(sock, "failure", None)
    if failure is not None:
        raise AssociationFailed(network_reason(failure, o.host, o.port, o.timeout_s, o.tls))
    if assoc.is_rejected and assoc.acceptor.primitive is not None:
        raise AssociationFailed(_reject_text(assoc.acceptor.primitive, config.aet, calling_aet))
    if watch.abort is not None:
        raise AssociationFailed(f"the PACS aborted the association{_abort_text(watch.abort)}")
    primitive = assoc.acceptor.primitive
    if primitive is not None and primitive.result == 0:
        names = ", ".join(service_name(cx.abstract_syntax) for cx in contexts)
        raise AssociationFailed(f"the PACS accepted none of the services asked for ({names})")
    if watch.not_dicom:
        raise AssociationFailed(f"{where} answered, but not as a DICOM PACS")
    if watch.ended_by != "peer":
        raise AssociationFailed(f"no answer from {where} within {seconds_text(o.timeout_s)}")
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
    return f"no answer to the {doing} within {seconds_text(assoc.dimse_timeout)}"


def service_name(uid) -> str:
    """A SOP class by name, without the trailing 'SOP Class'."""
    name = getattr(uid, "name", "") or str(uid)
    return name.removesuffix(" SOP Class")
