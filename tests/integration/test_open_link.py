"""lightbox:// links end to end: a real HTTPS server (images, signed URLs, Weasis manifests) and a real
Orthanc ($dicom:rs), through open_link and through the command line. What arrives is checked in the library."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import subprocess
import sys
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import numpy as np
import pydicom
import pytest
import requests
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

from app import log as app_log
from app import paths
from app import settings as app_settings
from app.errors import LightboxError
from app.library import Library
from app.library.library import library_root
from app.links.download import DownloadError, LinkExpired, NotAnImage
from app.links.open import open_link
from app.links.uri import LinkError
from app.settings import Settings
from tests.conftest import ROOT
from tests.unit.helpers import image_dataset, to_bytes

pytestmark = pytest.mark.timeout(60)

S3_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code>'
             b"<Message>The request signature we calculated does not match the signature you provided.</Message>"
             b"</Error>")
HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body><form>...</form></body></html>\n"
TOKEN = "Bearer t0k"
_unique = itertools.count()


def fresh(name: str) -> str:
    """A route path no other test uses."""
    return f"/open{next(_unique)}/{name}"


def fast(**overrides) -> Settings:
    return Settings(**{"connect_timeout_s": 2.0, "read_timeout_s": 5.0, **overrides})


def image_link(url: str) -> str:
    return "lightbox://open-image-url/?location=" + quote(url, safe="")


def weasis_link(command: str, *, form: bool = False) -> str:
    """A Weasis-style link: the command percent-encoded, or form-encoded ('+' for spaces) as Weasis does."""
    return "lightbox://?" + (quote_plus(command, safe="") if form else quote(command, safe=""))


def dicom(study: str | None = None, series: str | None = None, seed: int = 0, **attrs) -> pydicom.Dataset:
    pixels = np.random.default_rng(seed).integers(0, 4096, (32, 48), dtype=np.uint16)
    ds = image_dataset(pixels, bits_stored=12, modality="CT", PatientName="Link^Rex", **attrs)
    ds.StudyInstanceUID = study or ds.StudyInstanceUID
    ds.SeriesInstanceUID = series or ds.SeriesInstanceUID
    return ds


def stored(sop_uid: str):
    with Library() as library:
        record = library.instance(sop_uid)
    return record, pydicom.dcmread(record.path)


def library_is_empty() -> None:
    with Library() as library:
        assert library.counts() == {"patients": 0, "studies": 0, "series": 0, "instances": 0}
    files = library_root() / "files"
    assert not files.exists() or not [p for p in files.rglob("*") if p.is_file()]
    downloads = paths.cache_dir() / "downloads"
    assert not downloads.exists() or not list(downloads.iterdir())


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def log_text():
    """The log file's text so far (logging set up for this test's LIGHTBOX_HOME)."""
    app_log.setup()
    return lambda: app_log.log_file().read_text(encoding="utf-8") if app_log.log_file().exists() else ""


# -- open-image-url ---------------------------------------------------------------------------------

def test_image_link_imports_a_dicom_file(https_server):
    ds = dicom()
    url = https_server.reply(fresh("scan.dcm"), to_bytes(ds), content_type="application/dicom")
    result = open_link(image_link(url + "?token=S3CRETVALUE&user=rex"), settings=fast())

    assert result.study_uids == [ds.StudyInstanceUID]
    [entry] = result.imported.entries
    assert (entry.status, entry.sop_instance_uid) == ("imported", ds.SOPInstanceUID)
    assert "S3CRETVALUE" not in entry.path and "rex" not in entry.path
    record, got = stored(ds.SOPInstanceUID)
    assert record.source == "link"
    assert got.PixelData == ds.PixelData
    assert "S3CRETVALUE" not in json.dumps(result.as_dict())
    assert [seen.target.split("?", 1)[1] for seen in https_server.requests_to(urlsplit(url).path)] == \
        ["token=S3CRETVALUE&user=rex"]


SIGNATURE = "Zm9v%2Bba%2Fr%3D%7E=="  # %2B, %2F, %3D, %7E and bare '=' must arrive exactly as signed
CREDENTIAL = "AKIAEXAMPLE%2F20240101%2Feu-west-1%2Fs3%2Faws4_request"


def signed_query(signature: str) -> str:
    return (f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={CREDENTIAL}&X-Amz-Date=20240101T000000Z"
            f"&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}")


@pytest.fixture
def signed_url(https_server):
    """A pre-signed-style address: the server compares the query byte for byte, as S3 does."""
    ds = dicom()
    path = fresh("bucket/scan.dcm")
    body = to_bytes(ds)

    def handler(ex):
        if ex.target == f"{path}?{signed_query(SIGNATURE)}":
            ex.send(200, body, content_type="application/dicom")
        else:
            ex.send(403, S3_DENIED, content_type="application/xml")

    https_server.route(path, handler)
    return https_server.url(path), ds


def test_presigned_link_arrives_byte_for_byte(signed_url, log_text):
    url, ds = signed_url
    result = open_link(image_link(f"{url}?{signed_query(SIGNATURE)}"), settings=fast())
    assert result.study_uids == [ds.StudyInstanceUID]
    assert stored(ds.SOPInstanceUID)[0].source == "link"
    assert "Zm9v" not in log_text() and "AKIAEXAMPLE" not in log_text()


def test_wrong_signature_is_an_expired_link_and_no_secret_leaks(signed_url, log_text):
    url, _ = signed_url
    wrong = "Zm9v%2Bba%2Fr%3D%7E=X"
    with pytest.raises(LinkExpired) as caught:
        open_link(image_link(f"{url}?{signed_query(wrong)}"), settings=fast())
    message = str(caught.value)
    assert "This link has expired or you are not authorised to open it (HTTP 403)" in message
    log = log_text()
    assert "downloading" in log  # the log was written: the check below means something
    for secret in ("Zm9v", "AKIAEXAMPLE", "eu-west-1", "20240101T000000Z"):
        assert secret not in message and secret not in log
    library_is_empty()


def test_jpeg_link_becomes_secondary_capture(https_server):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    url = https_server.reply(fresh("photo.jpg"), jpeg, content_type="image/jpeg")
    result = open_link(image_link(url), settings=fast())

    [entry] = result.imported.entries
    assert entry.status == "imported"
    record, got = stored(entry.sop_instance_uid)
    assert record.source == "link"
    assert record.sop_class == got.SOPClassUID == SecondaryCaptureImageStorage
    assert record.transfer_syntax == got.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert (got.Rows, got.Columns) == (40, 60)
    [frame] = list(generate_frames(got.PixelData, number_of_frames=1))
    assert frame[: len(jpeg)] == jpeg and len(frame) - len(jpeg) <= 1  # the bitstream itself, padded to even
    assert result.study_uids == [got.StudyInstanceUID]


def test_html_instead_of_an_image_stores_nothing(https_server):
    url = https_server.reply(fresh("scan.dcm"), HTML, content_type="text/html")
    with pytest.raises(NotAnImage) as caught:
        open_link(image_link(url), settings=fast())
    assert "did not send an image" in str(caught.value) and "HTML page" in str(caught.value)
    library_is_empty()


def test_cli_subprocess_opens_an_image_link(https_server, lightbox_home):
    ds = dicom()
    url = https_server.reply(fresh("scan.dcm"), to_bytes(ds), content_type="application/dicom")
    run = subprocess.run([sys.executable, "-m", "app", "open", image_link(url + "?sig=abc%2Bd"), "--no-gui",
                          "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "LIGHTBOX_HOME": str(lightbox_home)})
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["studies"] == [ds.StudyInstanceUID]
    assert [e["status"] for e in out["entries"]] == ["imported"]
    assert stored(ds.SOPInstanceUID)[0].source == "link"


# -- $dicom:get with a Weasis manifest -----------------------------------------------------------------

def manifest_xml(base_url: str, datasets: list, token: str = TOKEN) -> bytes:
    study, series = datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID
    instances = "\n".join(f'          <Instance SOPInstanceUID="{ds.SOPInstanceUID}" InstanceNumber="{n}"/>'
                          for n, ds in enumerate(datasets, 1))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<manifest xmlns="http://www.weasis.org/xsd/2.5" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <arcQuery arcId="1000" baseUrl="{base_url}" requireOnlySOPInstanceUID="false">
    <httpTag key="Authorization" value="{token}"/>
    <Patient PatientID="M1" PatientName="Link^Rex" PatientSex="M">
      <Study StudyInstanceUID="{study}" StudyDescription="Thorax">
        <Series SeriesInstanceUID="{series}" Modality="CT">
{instances}
        </Series>
      </Study>
    </Patient>
  </arcQuery>
</manifest>
""".encode()


@pytest.fixture
def wado(https_server):
    """A WADO-URI route serving the given datasets by objectUID, only with the right Authorization;
    returns (base URL, datasets by SOP UID, the route's path)."""
    study, series = generate_uid(), generate_uid()
    datasets = [dicom(study, series, seed=n) for n in range(3)]
    bodies = {ds.SOPInstanceUID: to_bytes(ds) for ds in datasets}
    path = fresh("wado")

    def handler(ex):
        if ex.headers.get("Authorization") != TOKEN:
            ex.send(401, b"unauthorised", content_type="text/plain")
            return
        query = parse_qs(urlsplit(ex.target).query)
        body = bodies.get(query.get("objectUID", [""])[0])
        if body is None or query.get("studyUID") != [study] or query.get("requestType") != ["WADO"]:
            ex.send(404, b"no such object", content_type="text/plain")
        else:
            ex.send(200, body, content_type="application/dicom")

    https_server.route(path, handler)
    return https_server.url(path), datasets, path


def serve_manifest(https_server, xml: bytes) -> str:
    return https_server.reply(fresh("manifest.xml.gz"), gzip.compress(xml), content_type="application/x-gzip")


def test_manifest_with_archive_header_imports_every_instance(https_server, wado):
    base, datasets, path = wado
    url = serve_manifest(https_server, manifest_xml(base, datasets))
    result = open_link(weasis_link(f'$dicom:get -w "{url}"', form=True), settings=fast())

    assert sorted(e.sop_instance_uid for e in result.imported.entries if e.status == "imported") == \
        sorted(ds.SOPInstanceUID for ds in datasets)
    assert result.study_uids == [datasets[0].StudyInstanceUID]
    for ds in datasets:
        record, got = stored(ds.SOPInstanceUID)
        assert record.source == "link" and got.PixelData == ds.PixelData
    assert {seen.header("Authorization") for seen in https_server.requests_to(path)} == {TOKEN}


def test_manifest_missing_instance_is_listed_as_failed(https_server, wado):
    base, datasets, _ = wado
    ghost = dicom(datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID)  # listed, never served
    url = serve_manifest(https_server, manifest_xml(base, [*datasets, ghost]))
    result = open_link(weasis_link(f'$dicom:get -w "{url}"'), settings=fast())

    [failed] = result.imported.failed
    assert failed.sop_instance_uid == ghost.SOPInstanceUID
    assert "HTTP 404" in failed.error
    assert result.imported.count("imported") == 3
    with Library() as library:
        assert library.counts()["instances"] == 3


def test_link_whose_every_download_fails(https_server, wado):
    base, datasets, _ = wado
    url = serve_manifest(https_server, manifest_xml(base, datasets, token="Bearer wrong"))
    with pytest.raises(LightboxError) as caught:
        open_link(weasis_link(f'$dicom:get -w "{url}"'), settings=fast())
    assert "Nothing from the link could be opened" in str(caught.value)
    assert "expired or you are not authorised" in str(caught.value)
    library_is_empty()


def test_cli_failure_is_one_error_line(https_server, wado, lightbox_home):
    base, datasets, _ = wado
    url = serve_manifest(https_server, manifest_xml(base, datasets, token="Bearer wrong"))
    run = subprocess.run([sys.executable, "-m", "app", "open", weasis_link(f'$dicom:get -w "{url}"'), "--no-gui",
                          "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "LIGHTBOX_HOME": str(lightbox_home)})
    assert run.returncode == 1
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Nothing from the link could be opened"), run.stderr
    assert "Traceback" not in run.stderr and "wrong" not in run.stderr


# -- $dicom:rs against Orthanc -----------------------------------------------------------------------

@pytest.fixture
def rs_study(empty_orthanc):
    """Three instances of one study uploaded to Orthanc; returns them."""
    study, series = generate_uid(), generate_uid()
    patient = f"RS{next(_unique)}"
    datasets = [dicom(study, series, seed=10 + n, PatientID=patient, InstanceNumber=n + 1) for n in range(3)]
    for ds in datasets:
        assert empty_orthanc.upload(to_bytes(ds))["Status"] == "Success"
    return datasets


def rs_link(orthanc, request: str, header: bool = True) -> str:
    command = f'$dicom:rs --url "{orthanc.dicomweb_url}" -r "{request}"'
    if header:
        command += f' -H "Authorization: {orthanc.auth_header}"'
    return weasis_link(command)


def assert_retrieved(result, datasets) -> None:
    assert result.study_uids == [datasets[0].StudyInstanceUID]
    assert sorted(e.sop_instance_uid for e in result.imported.entries if e.status == "imported") == \
        sorted(ds.SOPInstanceUID for ds in datasets)
    for ds in datasets:
        record, got = stored(ds.SOPInstanceUID)
        assert record.source == "link"
        assert got.PixelData == ds.PixelData


@pytest.mark.parametrize("key", ["studyUID", "patientID"])
def test_dicomweb_link_retrieves_from_orthanc(orthanc, rs_study, key, log_text):
    value = rs_study[0].StudyInstanceUID if key == "studyUID" else rs_study[0].PatientID
    result = open_link(rs_link(orthanc, f"{key}={value}"), settings=fast(allow_http_loopback=True))
    assert_retrieved(result, rs_study)
    assert orthanc.auth_header.split()[1] not in log_text()


def test_dicomweb_link_through_the_cli(orthanc, rs_study, run_cli):
    app_settings.save(Settings(allow_http_loopback=True))
    code, out, err = run_cli("open", rs_link(orthanc, f"studyUID={rs_study[0].StudyInstanceUID}"), "--no-gui",
                             "--json")
    assert code == 0, err
    assert json.loads(out)["studies"] == [rs_study[0].StudyInstanceUID]
    for ds in rs_study:
        assert stored(ds.SOPInstanceUID)[1].PixelData == ds.PixelData


def test_dicomweb_link_without_credentials_is_refused(orthanc, rs_study, log_text):
    with pytest.raises(LightboxError) as caught:
        open_link(rs_link(orthanc, f"studyUID={rs_study[0].StudyInstanceUID}", header=False),
                  settings=fast(allow_http_loopback=True))
    assert "refused access (HTTP 401)" in str(caught.value)
    assert orthanc.password not in log_text()
    library_is_empty()


def test_dicomweb_link_over_http_needs_the_loopback_setting(orthanc, rs_study, monkeypatch):
    def no_connection(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(requests.Session, "send", no_connection)
    with pytest.raises(LinkError) as caught:
        open_link(rs_link(orthanc, f"studyUID={rs_study[0].StudyInstanceUID}"), settings=fast())
    assert "allow_http_loopback" in str(caught.value)
    assert not isinstance(caught.value, DownloadError)
    library_is_empty()


def test_dicomweb_link_for_one_series_or_one_instance(orthanc, rs_study):
    study = rs_study[0].StudyInstanceUID
    result = open_link(rs_link(orthanc, f"seriesUID={rs_study[0].SeriesInstanceUID}"),
                       settings=fast(allow_http_loopback=True))
    assert_retrieved(result, rs_study)
    with Library() as library:
        library.remove_study(study)
    result = open_link(rs_link(orthanc, f"objectUID={rs_study[1].SOPInstanceUID}"),
                       settings=fast(allow_http_loopback=True))
    assert [e.sop_instance_uid for e in result.imported.entries] == [rs_study[1].SOPInstanceUID]
    assert stored(rs_study[1].SOPInstanceUID)[1].PixelData == rs_study[1].PixelData


def test_dicomweb_redirect_to_plain_http_is_refused(https_server, http_server):
    reached = []
    http_server.route("/dicom-web/studies", lambda ex: reached.append(ex.target) or ex.send(200, b"[]"))
    https_server.route("/rs/dicom-web/studies",
                       lambda ex: ex.redirect(http_server.url("/dicom-web/studies") + "?" + ex.target.split("?", 1)[-1]))
    link = weasis_link(f'$dicom:rs --url "{https_server.url("/rs/dicom-web")}" -r "studyUID=1.2.3"')
    with pytest.raises(LinkError, match="not https"):
        open_link(link, settings=fast(allow_http_loopback=True))
    assert reached == []
