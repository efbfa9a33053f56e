"""The connection test against real peers: Orthanc (lenient and strict), pynetdicom SCPs, HTTP(S) test servers
and small sockets that refuse, stall, hang up or speak something else. Loopback only."""

from __future__ import annotations

import logging
import socket
import ssl
import threading

import numpy as np
import pytest
import requests.certs
import trustme

from app.pacs.config import DICOMWEB, DIMSE, DicomWebOptions, DimseOptions, PacsConfig
from app.pacs.connection import requested_syntaxes, test_connection
from app.pacs.dimse import AssociationFailed, nodelay_handler, open_association
from tests.integration.orthanc import free_ports
from tests.unit.helpers import image_dataset, to_bytes

pytestmark = pytest.mark.timeout(60)

FIND = "Study Root Query/Retrieve Information Model - FIND"
GET = "Study Root Query/Retrieve Information Model - GET"
MOVE = "Study Root Query/Retrieve Information Model - MOVE"
WORKLIST = "Modality Worklist Information Model - FIND"
MPPS = "Modality Performed Procedure Step"


@pytest.fixture(autouse=True)
def _no_proxy_no_extra_trust(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                 "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def dimse(port: int, *, called: str = "ORTHANC", calling: str = "LIGHTBOX", host: str = "127.0.0.1",
          timeout: float = 5.0, **options) -> PacsConfig:
    return PacsConfig(DIMSE, "test", called, dimse=DimseOptions(host, port, local_aets=[calling], test_aet=calling,
                                                                query_aet=calling, timeout_s=timeout, **options))


def web(url: str, *, auth: str = "none", user: str = "", timeout: float = 5.0, **options) -> PacsConfig:
    return PacsConfig(DICOMWEB, "test", "ORTHANC",
                      dicomweb=DicomWebOptions(url, auth=auth, user=user, timeout_s=timeout, **options))


def failed(result, reason: str) -> None:
    assert not result.ok
    assert result.message == f"Connection failed: {reason}"


# -- small peers -------------------------------------------------------------------------------------------

class RawServer:
    """A TCP server on 127.0.0.1 that does `behave(connection)` with each connection on its own thread."""

    def __init__(self, behave, *, accept: bool = True):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.behave = behave
        self.connections: list[socket.socket] = []
        if accept:
            threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            self.behave(conn)
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def raw_server():
    servers = []

    def start(behave=None, **kwargs):
        servers.append(RawServer(behave or (lambda conn: None), **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _read_pdu(conn: socket.socket) -> bytes:
    head = conn.recv(6, socket.MSG_WAITALL)
    return head + conn.recv(int.from_bytes(head[2:6], "big"), socket.MSG_WAITALL)


@pytest.fixture
def scp():
    """pynetdicom SCPs on loopback: scp(title=..., contexts=[...], handlers=[...], **server_options) -> port."""
    from pynetdicom import AE

    servers = []

    def start(*, title: str = "ORTHANC", contexts=("1.2.840.10008.1.1",), handlers=(), require_calling=(),
              ssl_context=None):
        ae = AE(ae_title=title)
        for uid in contexts:
            ae.add_supported_context(uid)
        ae.require_calling_aet = list(require_calling)
        server = ae.start_server(("127.0.0.1", 0), block=False, ssl_context=ssl_context,
                                 evt_handlers=[nodelay_handler(), *handlers])
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()


def _refused_port() -> int:
    return free_ports(1)[0]


# -- classic DICOM against Orthanc ------------------------------------------------------------------------

def test_echo_accepted_with_the_enabled_functions(orthanc_strict):
    config = dimse(orthanc_strict.dicom_port, mwl=True, mpps=True)
    result = test_connection(config)
    assert result.ok, result.message
    assert result.message == "Connection established"
    assert result.round_trip_ms is not None and 0 < result.round_trip_ms < 5000
    assert result.accepted[0] == "Verification"
    for name in ("CT Image Storage", "MR Image Storage", "Computed Radiography Image Storage",
                 "Digital X-Ray Image Storage - For Presentation", "Ultrasound Image Storage",
                 "Secondary Capture Image Storage", FIND, GET, MOVE, WORKLIST):
        assert name in result.accepted
    assert MPPS not in result.accepted  # Orthanc has no MPPS: said in the details, not a failure
    assert any(MPPS in line and "not accepted" in line for line in result.details)
    assert any("C-ECHO answered in" in line for line in result.details)
    assert result.as_dict()["message"] == "Connection established"


def test_only_the_enabled_functions_are_asked_for(orthanc_strict):
    only_echo = dimse(orthanc_strict.dicom_port, store=False, query_retrieve=False)
    assert test_connection(only_echo).accepted == ["Verification"]
    move_only = dimse(orthanc_strict.dicom_port, store=False, retrieve_method="move")
    assert test_connection(move_only).accepted == ["Verification", FIND, MOVE]
    assert len(requested_syntaxes(dimse(1))) == len(set(requested_syntaxes(dimse(1))))


def test_wrong_called_ae_title_is_rejected(orthanc_strict):
    result = test_connection(dimse(orthanc_strict.dicom_port, called="NOTORTHANC"))
    failed(result, "the PACS rejected the association: called AE title not recognised (NOTORTHANC)")


def test_unknown_calling_ae_title(orthanc_strict, orthanc_open):
    # Orthanc 1.10 accepts the association, then answers the C-ECHO of an AE title it does not know
    # (DicomAlwaysAllowEcho false, not in DicomModalities) with an A-ABORT (source: service user).
    result = test_connection(dimse(orthanc_strict.dicom_port, calling="STRANGER"))
    failed(result, "the PACS aborted the association in answer to the C-ECHO; it may not accept C-ECHO from "
                   "the calling AE title STRANGER")
    assert "Verification" in result.accepted
    # The lenient Orthanc answers anyone, whatever called AE title they use.
    assert test_connection(dimse(orthanc_open.dicom_port, calling="STRANGER", called="ANYTHING")).ok


def test_tls_asked_of_a_plain_dicom_port(orthanc_strict):
    result = test_connection(dimse(orthanc_strict.dicom_port, tls=True, timeout=2))
    assert result.reason.startswith(f"the TLS handshake with 127.0.0.1:{orthanc_strict.dicom_port} failed ("), \
        result.reason
    assert result.reason.endswith("); is TLS turned on at that port?")


# -- classic DICOM against pynetdicom SCPs ----------------------------------------------------------------

def test_calling_ae_title_not_recognised(scp):
    port = scp(require_calling=["KNOWN"])
    failed(test_connection(dimse(port, calling="LIGHTBOX")),
           "the PACS rejected the association: calling AE title not recognised (LIGHTBOX)")
    assert test_connection(dimse(port, calling="KNOWN")).ok


def test_echo_status_other_than_success(scp):
    from pynetdicom import evt

    port = scp(handlers=[(evt.EVT_C_ECHO, lambda event: 0x0110)])
    result = test_connection(dimse(port, store=False, query_retrieve=False))
    failed(result, "C-ECHO failed with status 0x0110")
    assert result.round_trip_ms is not None


def test_echo_without_answer(scp):
    from pynetdicom import evt

    port = scp(handlers=[(evt.EVT_C_ECHO, lambda event: threading.Event().wait(2) or 0)])
    failed(test_connection(dimse(port, store=False, query_retrieve=False, timeout=1)),
           "no answer to the C-ECHO within 1 s")


def test_no_requested_service_accepted(scp):
    port = scp(contexts=["1.2.840.10008.5.1.4.1.1.481.5"])  # RT Plan only
    failed(test_connection(dimse(port, store=False, query_retrieve=False)),
           "the PACS accepted none of the services asked for (Verification)")


def test_verification_not_accepted(scp):
    port = scp(contexts=["1.2.840.10008.5.1.4.1.1.2"])  # CT storage only
    result = test_connection(dimse(port, query_retrieve=False))
    failed(result, "the PACS does not accept C-ECHO (Verification) from LIGHTBOX")
    assert result.accepted == ["CT Image Storage"]


def test_tcp_nodelay_on_both_ends(scp):
    from pynetdicom import evt
    from pynetdicom.presentation import build_context

    seen = []

    def server_side(event):
        sock = event.assoc.dul.socket.socket
        seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    port = scp(handlers=[(evt.EVT_CONN_OPEN, server_side)])
    assoc = open_association(dimse(port), "LIGHTBOX", [build_context("1.2.840.10008.1.1")])
    try:
        assert assoc.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert assoc.send_c_echo().Status == 0
    finally:
        assoc.release()
    assert seen and seen[0]


def test_open_association_raises_with_the_reason():
    from pynetdicom.presentation import build_context

    port = _refused_port()
    with pytest.raises(AssociationFailed, match=f"nothing is listening at 127.0.0.1:{port}"):
        open_association(dimse(port), "LIGHTBOX", [build_context("1.2.840.10008.1.1")])


def test_tls_with_a_trusted_certificate_and_a_client_certificate(scp, tmp_path):
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    server.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server)
    port = scp(ssl_context=server)
    ca_file, cert, key = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key"
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("lightbox.example")
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    config = dimse(port, tls=True, ca_file=str(ca_file), client_cert=str(cert), client_key=str(key))
    result = test_connection(config)
    assert result.ok, result.message
    assert "over TLS" in result.details[0]
    without_client_cert = test_connection(dimse(port, tls=True, ca_file=str(ca_file), timeout=2))
    failed(without_client_cert, f"127.0.0.1:{port} closed the connection without answering the association "
                                "request (does it ask for a client certificate?)")
    missing = test_connection(dimse(port, tls=True, ca_file=str(tmp_path / "nope.pem")))
    assert not missing.ok and "The CA file" in missing.reason and "nope.pem" in missing.reason


# -- classic DICOM: the network's own failures -----------------------------------------------------------

def test_nothing_listening():
    port = _refused_port()
    failed(test_connection(dimse(port)), f"nothing is listening at 127.0.0.1:{port} (connection refused)")


def test_name_not_resolved():
    failed(test_connection(dimse(104, host="pacs.invalid")), "the name pacs.invalid could not be resolved")


def test_no_answer_within_the_timeout(raw_server):
    server = raw_server(accept=False)  # the kernel completes the handshake; nobody ever reads
    result = test_connection(dimse(server.port, timeout=1))
    failed(result, f"no answer from 127.0.0.1:{server.port} within 1 s")


def test_hang_up_without_answer(raw_server):
    server = raw_server(lambda conn: (_read_pdu(conn), conn.close()))
    failed(test_connection(dimse(server.port)),
           f"127.0.0.1:{server.port} closed the connection without answering the association request "
           "(does it expect TLS?)")


def test_answer_that_is_not_dicom(raw_server):
    server = raw_server(lambda conn: (conn.recv(4096), conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
                                      conn.close()))
    failed(test_connection(dimse(server.port)), f"127.0.0.1:{server.port} answered, but not as a DICOM PACS")


def test_abort_instead_of_an_answer(raw_server):
    abort = bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 1])  # A-ABORT, service provider, unrecognised PDU
    server = raw_server(lambda conn: (_read_pdu(conn), conn.sendall(abort), conn.recv(1)))
    failed(test_connection(dimse(server.port)),
           "the PACS aborted the association (its DICOM layer reported: unrecognised PDU)")


def test_tls_certificate_not_trusted(raw_server):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)

    def tls(conn):
        with context.wrap_socket(conn, server_side=True) as wrapped:
            wrapped.recv(1)

    server = raw_server(lambda conn: tls(conn))
    result = test_connection(dimse(server.port, tls=True))
    assert result.reason.startswith("the PACS's TLS certificate is not trusted"), result.reason


# -- DICOMweb ---------------------------------------------------------------------------------------------

def test_dicomweb_credentials(orthanc_strict):
    url = orthanc_strict.dicomweb_url
    right = test_connection(web(url, auth="basic", user=orthanc_strict.user), orthanc_strict.password)
    assert right.ok, right.message
    assert right.round_trip_ms is not None and right.round_trip_ms > 0
    failed(test_connection(web(url, auth="basic", user=orthanc_strict.user), "wrong"),
           "HTTP 401: the user name or password was not accepted")
    failed(test_connection(web(url, auth="basic", user="nobody"), orthanc_strict.password),
           "HTTP 401: the user name or password was not accepted")
    failed(test_connection(web(url, auth="basic", user=orthanc_strict.user), None),
           "HTTP 401: the PACS asks for a password, and none is stored for this configuration")
    failed(test_connection(web(url)),
           "HTTP 401: the PACS asks for a user name and password (or a token), and none is configured")
    failed(test_connection(web(url, auth="bearer"), "not-a-token"), "HTTP 401: the token was not accepted")


def test_dicomweb_secret_never_in_reason_or_log(orthanc_strict, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-Pa55word"
    result = test_connection(web(orthanc_strict.dicomweb_url, auth="basic", user="lightbox"), secret)
    assert not result.ok
    assert secret not in repr(result.as_dict())
    assert secret not in caplog.text


def test_dicomweb_without_authentication_and_an_empty_archive(orthanc_open):
    orthanc_open.clear()
    result = test_connection(web(orthanc_open.dicomweb_url))
    assert result.ok, result.message
    assert "the archive is empty" in result.details
    orthanc_open.upload(to_bytes(image_dataset(np.zeros((4, 4), np.uint16), PatientID="CONN1")))
    try:
        full = test_connection(web(orthanc_open.dicomweb_url))
        assert full.ok and "the archive holds studies" in full.details
    finally:
        orthanc_open.clear()


def test_dicomweb_request_headers(http_server):
    http_server.reply("/pacs/dicom-web/studies", b"[]", content_type="application/dicom+json")
    config = web(http_server.url("/pacs/dicom-web"), auth="bearer", headers=[("X-Practice", "north")],
                 source_aet="VETBOX", source_aet_header="X-Calling", pacs_aet_header="X-Called")
    result = test_connection(config, "tok123")
    assert result.ok, result.message
    seen = http_server.requests_to("/pacs/dicom-web/studies")[-1]
    assert seen.target == "/pacs/dicom-web/studies?limit=1"
    assert seen.header("Accept") == "application/dicom+json"
    assert seen.header("Authorization") == "Bearer tok123"
    assert seen.header("X-Practice") == "north"
    assert (seen.header("X-Calling"), seen.header("X-Called")) == ("VETBOX", "ORTHANC")
    config.dicomweb.send_aet_headers = False
    test_connection(config, "tok123")
    assert http_server.requests_to("/pacs/dicom-web/studies")[-1].header("X-Calling") is None


def test_dicomweb_204_is_an_empty_archive(http_server):
    http_server.reply("/empty/studies", b"", status=204)
    result = test_connection(web(http_server.url("/empty")))
    assert result.ok and "the archive is empty" in result.details


def test_dicomweb_wrong_address(http_server):
    http_server.reply("/page/studies", b"<html><body>Welcome</body></html>", content_type="text/html")
    failed(test_connection(web(http_server.url("/page"))), "the address answered, but not as a DICOMweb server")
    failed(test_connection(web(http_server.url("/nothing-here"))),
           f"HTTP 404: there is no DICOMweb service at {http_server.url('/nothing-here')} (check the base URL)")
    http_server.reply("/forbidden/studies", b"", status=403)
    failed(test_connection(web(http_server.url("/forbidden"), auth="basic", user="vet"), "pw"),
           "HTTP 403: the user vet may not search this PACS")


def test_dicomweb_nothing_listening_and_no_such_name():
    port = _refused_port()
    failed(test_connection(web(f"http://127.0.0.1:{port}/dicom-web")),
           f"nothing is listening at 127.0.0.1:{port} (connection refused)")
    failed(test_connection(web("https://pacs.invalid/dicom-web")), "the name pacs.invalid could not be resolved")


def test_dicomweb_no_answer_within_the_timeout(raw_server):
    server = raw_server(lambda conn: conn.recv(65536) and threading.Event().wait(5))
    failed(test_connection(web(f"http://127.0.0.1:{server.port}/dicom-web", timeout=1)),
           f"no answer from 127.0.0.1:{server.port} within 1 s")


def test_dicomweb_tls_not_trusted_then_trusted_by_the_configuration(_https_server_session, _ca_file, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())  # must not push the CA file aside
    server = _https_server_session
    server.reply("/tls/dicom-web/studies", b"[]", content_type="application/dicom+json")
    url = server.url("/tls/dicom-web")
    result = test_connection(web(url))
    assert result.reason.startswith("the PACS's TLS certificate is not trusted"), result.message
    trusted = test_connection(web(url, ca_file=_ca_file))
    assert trusted.ok, trusted.message


def test_dicomweb_https_to_a_plain_http_port(http_server):
    result = test_connection(web(http_server.url("/dicom-web").replace("http://", "https://")))
    assert result.reason.startswith(f"the TLS handshake with 127.0.0.1:{http_server.port} failed ("), result.reason
    assert result.reason.endswith("); is TLS turned on at that port?")
