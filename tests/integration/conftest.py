"""Shared peers for the integration tests: an HTTPS server with its own test CA (and a plain HTTP one)."""

from __future__ import annotations

import pytest
import trustme

from tests.integration.https_server import TestServer, https_server as _https_server


@pytest.fixture(scope="session")
def test_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def _ca_file(test_ca, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("test-ca") / "ca.pem"
    test_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def _https_server_session(test_ca):
    server = _https_server(test_ca).start()
    yield server
    server.stop()


@pytest.fixture
def ca_bundle(_ca_file, monkeypatch) -> str:
    """The test CA's PEM file, trusted for this test through REQUESTS_CA_BUNDLE."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", _ca_file)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return _ca_file


@pytest.fixture
def https_server(_https_server_session, ca_bundle) -> TestServer:
    """The session's HTTPS server (127.0.0.1 and localhost), trusted by requests for this test.
    Register routes with .route(path, handler) or .reply(path, body); .requests logs what arrived."""
    return _https_server_session


@pytest.fixture(scope="session")
def http_server():
    """A plain HTTP server on 127.0.0.1, for what must be refused or allowed only on loopback."""
    server = TestServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """A real Orthanc for the whole session (tests/integration/orthanc.py): HTTP with a random password,
    DICOMweb, worklists, a LIGHTBOX modality. Fails, never skips, when Orthanc is not installed."""
    from tests.integration.orthanc import Orthanc, OrthancMissing

    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        server.start()
    except OrthancMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def empty_orthanc(orthanc):
    """The session's Orthanc with nothing stored."""
    orthanc.clear()
    return orthanc


def _orthanc_variant(tmp_path_factory, name: str, overrides: dict):
    from tests.integration.orthanc import Orthanc, OrthancMissing

    server = Orthanc(tmp_path_factory.mktemp(name), overrides=overrides)
    try:
        server.start()
    except OrthancMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    return server


@pytest.fixture(scope="session")
def orthanc_strict(tmp_path_factory):
    """A second Orthanc that checks the called AE title and answers C-ECHO only from the AE titles it
    knows (the LIGHTBOX modality); HTTP as in `orthanc`."""
    from tests.integration.orthanc import STRICT_DICOM

    server = _orthanc_variant(tmp_path_factory, "orthanc-strict", STRICT_DICOM)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def orthanc_open(tmp_path_factory):
    """An Orthanc whose HTTP side (REST and DICOMweb) asks for no password."""
    from tests.integration.orthanc import NO_AUTH

    server = _orthanc_variant(tmp_path_factory, "orthanc-open", NO_AUTH)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def orthanc_utf8(tmp_path_factory):
    """An Orthanc whose DICOM side answers in UTF-8 ("DefaultEncoding": "Utf8"; with the default Latin1, Orthanc 1.10
    turns non-Latin names into '^' in C-FIND, QIDO-RS and worklist answers). It also refuses C-GET to LIGHTBOX
    ("AllowGet": false: Orthanc aborts the association) while allowing C-FIND and C-MOVE, sent to `move_port`:
    one Orthanc for both, as each takes 3.5 s to stop."""
    from tests.integration.orthanc import free_ports

    (port,) = free_ports(1)
    modality = {"AET": "LIGHTBOX", "Host": "127.0.0.1", "Port": port, "AllowGet": False}
    server = _orthanc_variant(tmp_path_factory, "orthanc-utf8",
                              {"DefaultEncoding": "Utf8", "DicomModalities": {"lightbox": modality}})
    server.move_port = port
    yield server
    server.stop()
