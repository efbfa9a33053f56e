"""`lightbox pacs test` against a real Orthanc: the message, and the exit code scripts rely on."""

import json

from tests.integration.orthanc import free_ports


def test_pacs_test_over_dimse_and_dicomweb(run_cli, orthanc, monkeypatch):
    monkeypatch.setenv("LIGHTBOX_SECRETS", "file")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(orthanc.password + "\n"))
    assert run_cli("pacs", "add", "--type", "dimse", "--aet", orthanc.aet, "--name", "Clinic PACS", "--host",
                   "127.0.0.1", "--port", orthanc.dicom_port, "--calling-aet", "LIGHTBOX")[0] == 0
    assert run_cli("pacs", "add", "--type", "dicomweb", "--aet", "ORTHANCWEB", "--name", "Clinic web",
                   "--url", orthanc.dicomweb_url, "--auth", "basic", "--user", orthanc.user, "--secret-stdin")[0] == 0
    code, out, err = run_cli("pacs", "test", orthanc.aet)
    assert code == 0 and out.splitlines()[0] == "Connection established", out + err
    code, out, err = run_cli("pacs", "test", "Clinic web", "--json")
    result = json.loads(out)
    assert code == 0 and result["ok"] and result["message"] == "Connection established", out + err
    assert orthanc.password not in out


def test_pacs_test_failure_exits_1_with_the_reason(run_cli):
    (port,) = free_ports(1)
    assert run_cli("pacs", "add", "--type", "dimse", "--aet", "NOBODY", "--name", "Gone", "--host", "127.0.0.1",
                   "--port", port)[0] == 0
    code, out, err = run_cli("pacs", "test", "NOBODY")
    assert code == 1
    assert out.splitlines()[0].startswith("Connection failed: ") and "refused" in out.splitlines()[0]
