"""Downloads against a real HTTPS server on loopback (tests/integration/https_server.py): what is kept,
what is refused, retries, resume, limits, cancel, and that secrets never reach a message or the log."""

from __future__ import annotations

import gzip
import io
import itertools
import time
from pathlib import Path

import numpy as np
import pytest
import trustme
from PIL import Image

from app import log as app_log
from app import paths
from app.dicom.reading import read
from app.errors import Cancelled
from app.jobs import Job, State
from app.links.download import (DownloadError, Downloaded, LinkExpired, NotAnImage, download, download_many,
                                downloads_dir, fetch, make_session)
from app.settings import Settings
from tests.integration.https_server import TestServer, server_context
from tests.unit.helpers import bare_bytes, image_dataset, to_bytes

pytestmark = pytest.mark.timeout(60)

SIGNATURE = "ab%2Bcd%2Fef%3D%7E"  # %2B, %2F, %3D must arrive as sent; requests alone would turn %7E into ~
SIGNED_QUERY = f"X-Amz-Signature={SIGNATURE}&X-Amz-Expires=300&X-Amz-Credential=AKIA%2F2024%2Fs3&x=a~b+c"
SECRET = "TOPSECRET123"
S3_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
             b"<Message>Request has expired</Message><X-Amz-Expires>300</X-Amz-Expires>"
             b"<RequestId>4442587FB7D0A2F9</RequestId></Error>")
GCS_EXPIRED = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code>"
               b"<Message>Invalid argument.</Message><Details>The provided token has expired.</Details></Error>")
HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body><form>...</form></body></html>\n"
_unique = itertools.count()


def fast(**overrides) -> Settings:
    values = dict(connect_timeout_s=2.0, read_timeout_s=3.0)
    values.update(overrides)
    return Settings(**values)


def fresh(prefix: str) -> str:
    """A route path no other test uses (routes with state live for one test)."""
    return f"/t{next(_unique)}/{prefix}"


def leftovers() -> list:
    return sorted(p.name for p in downloads_dir().iterdir())


@pytest.fixture(scope="module")
def dicom_bytes() -> bytes:
    pixels = np.random.default_rng(7).integers(0, 4096, (512, 512), dtype=np.uint16)
    return to_bytes(image_dataset(pixels, bits_stored=12, PatientName="Download^Rex"))


@pytest.fixture(scope="module")
def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(8).integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def server(https_server, dicom_bytes, jpeg_bytes) -> TestServer:
    """The shared HTTPS server with the fixed routes every test may use."""
    s = https_server
    s.reply("/scan.dcm", dicom_bytes, content_type="application/dicom")
    s.reply("/photo.jpg", jpeg_bytes, content_type="image/jpeg")
    s.reply("/octet.bin", dicom_bytes, content_type="text/html")  # judged by bytes, not by type
    s.reply("/denied", S3_DENIED, status=403, content_type="application/xml")
    s.reply("/gcs-expired", GCS_EXPIRED, status=400, content_type="application/xml")
    s.reply("/missing", b"no such thing", status=404, content_type="text/plain")
    s.reply("/page.html", HTML, content_type="application/dicom")
    s.reply("/listing.xml", S3_DENIED, content_type="application/dicom")
    s.reply("/notes.txt", b"Rex, 4 years, lame on the left hind leg since Tuesday.\n" * 4)
    s.reply("/empty", b"")
    s.reply("/bare.dcm", bare_bytes(image_dataset(np.zeros((8, 8), np.uint16))))

    @s.route("/signed/scan.dcm")
    def signed(ex):
        if ex.target == "/signed/scan.dcm?" + SIGNED_QUERY:
            ex.send(200, dicom_bytes)
        else:
            ex.send(403, S3_DENIED.replace(b"Request has expired", b"SignatureDoesNotMatch"),
                    content_type="application/xml")

    @s.route("/stall")
    def stall(ex):
        ex.stopping.wait(5)
        ex.close_connection = True

    @s.route("/endless")
    def endless(ex):
        ex.send_response(200)
        ex.send_header("Connection", "close")
        ex.end_headers()
        ex.close_connection = True
        ex.wfile.write(b"\0" * 128 + b"DICM")
        block = b"\0" * 65536
        try:
            while not ex.stopping.is_set():
                ex.wfile.write(block)
        except OSError:
            pass

    @s.route("/huge")
    def huge(ex):
        ex.send_response(200)
        ex.send_header("Content-Length", str(50 * 1024**3))
        ex.end_headers()
        ex.close_connection = True
        try:
            ex.wfile.write(b"\0" * 128 + b"DICM" + b"\0" * 65536)
            ex.stopping.wait(5)
        except OSError:
            pass

    s.route("/redirect/same", lambda ex: ex.redirect("/scan.dcm"))
    s.route("/redirect/twice", lambda ex: ex.redirect(s.url("/redirect/same"), 307))
    s.route("/redirect/loop", lambda ex: ex.redirect("/redirect/loop"))
    s.route("/redirect/ftp", lambda ex: ex.redirect("ftp://127.0.0.1/scan.dcm"))
    return s


def slow_route(server: TestServer, dicom_bytes: bytes, fast_bytes: int = 2 * 1024 * 1024) -> str:
    """A big DICOM that sends its first megabytes at once, then a trickle (for cancelling)."""
    path = fresh("slow.dcm")

    def handler(ex):
        ex.send_response(200)
        ex.send_header("Content-Length", str(200 * 1024**2))
        ex.end_headers()
        ex.close_connection = True
        try:
            ex.wfile.write(dicom_bytes[:132] + b"\0" * fast_bytes)
            while not ex.stopping.wait(0.05):
                ex.wfile.write(b"\0" * 16384)
        except OSError:
            pass

    server.route(path, handler)
    return server.url(path)


# -- what is kept -----------------------------------------------------------------------------------

def test_a_dicom_file_arrives_whole_in_a_temporary_file(server, dicom_bytes):
    seen = []
    got = download(server.url("/scan.dcm"), settings=fast(), progress=lambda done, total: seen.append((done, total)))
    assert isinstance(got, Downloaded)
    assert got.kind == "dicom" and got.size == len(dicom_bytes)
    assert got.path.parent == downloads_dir() and got.path.suffix == ".dcm"
    assert got.path.read_bytes() == dicom_bytes
    assert read(got.path).PatientName == "Download^Rex"
    assert seen[-1] == (len(dicom_bytes), len(dicom_bytes))
    assert got.seconds > 0
    assert leftovers() == [got.path.name]
    got.path.unlink()


def test_jpeg_and_bare_datasets_are_judged_by_their_bytes(server, jpeg_bytes):
    photo = download(server.url("/photo.jpg"), settings=fast())
    assert (photo.kind, photo.path.suffix, photo.path.read_bytes()) == ("jpeg", ".jpg", jpeg_bytes)
    bare = download(server.url("/bare.dcm"), settings=fast())
    assert bare.kind == "dicom"
    labelled_html = download(server.url("/octet.bin"), settings=fast())  # Content-Type says HTML: ignored
    assert labelled_html.kind == "dicom"


def test_the_query_of_a_presigned_url_reaches_the_server_byte_for_byte(server, dicom_bytes):
    url = server.url("/signed/scan.dcm") + "?" + SIGNED_QUERY
    got = download(url, settings=fast())
    assert got.path.read_bytes() == dicom_bytes
    assert server.requests_to("/signed/scan.dcm")[-1].target == "/signed/scan.dcm?" + SIGNED_QUERY
    assert SIGNATURE not in got.label and "X-Amz-Signature=***" in got.label


# -- what is refused --------------------------------------------------------------------------------

def test_a_403_with_an_s3_error_body_means_the_link_expired(server):
    with pytest.raises(LinkExpired) as caught:
        download(server.url("/denied") + "?X-Amz-Signature=" + SECRET, settings=fast())
    assert str(caught.value).startswith("This link has expired or you are not authorised to open it (HTTP 403).")
    assert caught.value.status == 403
    assert SECRET not in str(caught.value) and SECRET not in caught.value.label
    assert leftovers() == []


def test_a_wrong_signature_is_refused_like_an_expired_link(server):
    url = server.url("/signed/scan.dcm") + "?" + SIGNED_QUERY.replace("%2B", "+")
    with pytest.raises(LinkExpired):
        download(url, settings=fast())


def test_a_400_whose_body_says_expired_means_the_link_expired(server):
    with pytest.raises(LinkExpired, match=r"\(HTTP 400\)"):
        download(server.url("/gcs-expired"), settings=fast())


def test_a_404_says_not_found(server):
    with pytest.raises(DownloadError, match="not found") as caught:
        download(server.url("/missing"), settings=fast())
    assert not isinstance(caught.value, LinkExpired)


@pytest.mark.parametrize("path, what", [("/page.html", "an HTML page"), ("/listing.xml", "an XML document"),
                                        ("/notes.txt", "neither DICOM, JPEG nor PNG"), ("/empty", "empty")])
def test_a_200_that_is_not_an_image_is_never_stored(server, path, what):
    with pytest.raises(NotAnImage, match=what):
        download(server.url(path), settings=fast())
    assert leftovers() == []


def test_a_stalled_server_times_out(server):
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"did not answer within 0.5 s"):
        download(server.url("/stall"), settings=fast(read_timeout_s=0.5))
    assert time.monotonic() - start < 3


def test_an_endless_body_stops_at_the_size_limit(server):
    with pytest.raises(DownloadError, match=r"download limit of 2.0 MB") as caught:
        download(server.url("/endless"), settings=fast(download_max_bytes=2_000_000))
    assert "download_max_bytes" in str(caught.value)
    assert leftovers() == []


def test_a_declared_length_over_the_limit_is_refused_before_reading(server):
    start = time.monotonic()
    with pytest.raises(DownloadError, match="download limit of 2.15 GB"):
        download(server.url("/huge"), settings=fast())
    assert time.monotonic() - start < 2
    assert leftovers() == []


# -- redirects --------------------------------------------------------------------------------------

def test_redirects_on_the_same_server_are_followed(server, dicom_bytes):
    got = download(server.url("/redirect/twice"), settings=fast())
    assert got.path.read_bytes() == dicom_bytes
    assert got.label == server.url("/redirect/twice")


def test_a_redirect_to_plain_http_is_refused_even_to_loopback(server, http_server, dicom_bytes):
    http_server.reply("/scan.dcm", dicom_bytes)
    target = http_server.url("/scan.dcm") + "?sig=" + SECRET
    server.route("/redirect/http", lambda ex: ex.redirect(target))
    for allowed in (False, True):
        with pytest.raises(DownloadError, match="plain http") as caught:
            download(server.url("/redirect/http"), settings=fast(allow_http_loopback=allowed))
        assert SECRET not in str(caught.value)
    assert http_server.requests_to("/scan.dcm") == []


def test_redirects_to_other_schemes_or_in_circles_are_refused(server):
    with pytest.raises(DownloadError, match="'ftp:'"):
        download(server.url("/redirect/ftp"), settings=fast())
    with pytest.raises(DownloadError, match="more than 10 times"):
        download(server.url("/redirect/loop"), settings=fast())


def test_headers_go_to_the_link_host_only(server, dicom_bytes):
    other_host = server.url("/scan.dcm", host="localhost")
    path = fresh("to-other-host")
    server.route(path, lambda ex: ex.redirect(other_host))
    got = download(server.url(path), headers=[("Authorization", f"Bearer {SECRET}")], settings=fast())
    assert got.path.read_bytes() == dicom_bytes
    assert server.requests_to(path)[-1].header("Authorization") == f"Bearer {SECRET}"
    assert server.requests_to("/scan.dcm")[-1].header("Authorization") is None


# -- retries and resume -----------------------------------------------------------------------------

def send_part_then_drop(ex, body: bytes, upto: int, etag: str | None = None) -> None:
    """Announce the whole body, send its first `upto` bytes, then drop the connection."""
    ex.send_response(200)
    ex.send_header("Content-Length", str(len(body)))
    if etag:
        ex.send_header("ETag", etag)
    ex.end_headers()
    ex.wfile.write(body[:upto])
    ex.drop()


def test_a_connection_dropped_halfway_resumes_with_range(server, dicom_bytes):
    path = fresh("dropped.dcm")
    half = len(dicom_bytes) // 2
    calls = []

    def handler(ex):
        calls.append(ex.headers.get("Range"))
        if len(calls) == 1:
            send_part_then_drop(ex, dicom_bytes, half, etag='"v1"')
        else:
            ex.send_bytes_ranged(dicom_bytes)

    server.route(path, handler)
    got = download(server.url(path), settings=fast())
    assert got.path.read_bytes() == dicom_bytes
    assert calls == [None, f"bytes={half}-"]
    assert server.requests_to(path)[-1].header("If-Range") == '"v1"'


def test_a_server_that_ignores_range_is_read_again_from_the_start(server, dicom_bytes):
    path = fresh("no-range.dcm")
    calls = []

    def handler(ex):
        calls.append(ex.headers.get("Range"))
        if len(calls) == 1:
            send_part_then_drop(ex, dicom_bytes, 1000)
        else:
            ex.send(200, dicom_bytes)

    server.route(path, handler)
    got = download(server.url(path), settings=fast())
    assert got.path.read_bytes() == dicom_bytes
    assert calls == [None, "bytes=1000-"]
    assert leftovers() == [got.path.name]


def test_a_503_is_retried_after_its_retry_after(server, dicom_bytes):
    path = fresh("busy.dcm")
    calls = []

    def handler(ex):
        calls.append(time.monotonic())
        if len(calls) == 1:
            ex.send(503, b"busy", content_type="text/plain", headers=[("Retry-After", "1")])
        else:
            ex.send(200, dicom_bytes)

    server.route(path, handler)
    got = download(server.url(path), settings=fast())
    assert got.path.read_bytes() == dicom_bytes
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.9


def test_a_server_that_stays_unavailable_fails_after_three_retries(server):
    path = fresh("down")
    server.reply(path, b"<html>502</html>", status=502, content_type="text/html")
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"HTTP 502") as caught:
        download(server.url(path), settings=fast())
    assert caught.value.status == 502
    assert len(server.requests_to(path)) == 4
    assert 1.2 < time.monotonic() - start < 5  # 0.2 + 0.4 + 0.8 s of backoff


def test_a_refused_connection_is_retried_then_reported(server):
    with TestServer() as gone:
        url = gone.url("/x").replace("http:", "https:")
    with pytest.raises(DownloadError, match="Could not connect to 127.0.0.1 .connection refused"):
        download(url, settings=fast())


# -- security ---------------------------------------------------------------------------------------

def test_plain_http_to_loopback_only_when_the_setting_allows(http_server, dicom_bytes, ca_bundle):
    http_server.reply("/plain.dcm", dicom_bytes)
    url = http_server.url("/plain.dcm")
    with pytest.raises(DownloadError, match="allow_http_loopback"):
        download(url, settings=fast())
    assert http_server.requests_to("/plain.dcm") == []
    got = download(url, settings=fast(allow_http_loopback=True))
    assert got.path.read_bytes() == dicom_bytes


def test_an_untrusted_certificate_is_refused_and_the_extra_ca_setting_trusts_it(server, ca_bundle, dicom_bytes,
                                                                                   tmp_path):
    other_ca = trustme.CA()
    with TestServer(server_context(other_ca)) as other:
        other.reply("/scan.dcm", dicom_bytes)
        with pytest.raises(DownloadError, match="certificate is not trusted") as caught:
            download(other.url("/scan.dcm"), settings=fast())
        assert "extra_ca_file" in str(caught.value)
        pem = tmp_path / "clinic-ca.pem"
        other_ca.cert_pem.write_to_path(str(pem))
        settings = fast(extra_ca_file=str(pem))
        assert download(other.url("/scan.dcm"), settings=settings).path.read_bytes() == dicom_bytes
    # REQUESTS_CA_BUNDLE (the first test CA) stays trusted beside the extra one
    assert download(server.url("/scan.dcm"), settings=settings).path.read_bytes() == dicom_bytes
    bundle = Path(make_session(settings).verify)
    assert bundle.parent == paths.cache_dir()
    assert pem.read_text().strip() in bundle.read_text() and Path(ca_bundle).read_text().strip() in bundle.read_text()
    with pytest.raises(DownloadError, match="extra certificate file"):
        download(server.url("/scan.dcm"), settings=fast(extra_ca_file=str(tmp_path / "missing.pem")))


def test_secrets_never_reach_messages_or_the_log_file(server, lightbox_home):
    app_log.setup()
    secret_query = f"?X-Amz-Signature={SECRET}&X-Amz-Credential={SECRET}x&token={SECRET}y"
    headers = [("Authorization", f"Bearer {SECRET}"), ("X-Api-Key", SECRET)]
    messages = []
    for path in ("/denied", "/page.html", "/missing", "/redirect/ftp", "/stall", "/scan.dcm"):
        try:
            download(server.url(path) + secret_query, headers=headers, settings=fast(read_timeout_s=0.3))
        except DownloadError as exc:
            messages.append(str(exc))
            assert SECRET not in exc.label
    try:  # requests' own message would quote the bad header value
        download(server.url("/scan.dcm"), headers=[("X-Token", f"{SECRET}\r\nX-Injected: 1")], settings=fast())
    except DownloadError as exc:
        messages.append(str(exc))
    assert len(messages) == 6 and "X-Token" in messages[-1]
    assert all(SECRET not in m for m in messages)
    text = app_log.log_file().read_text()
    assert "X-Amz-Signature=***" in text and "download" in text
    assert SECRET not in text


def test_fetch_returns_a_document_in_memory_with_the_same_checks(server):
    manifest = gzip.compress(b'<?xml version="1.0"?><manifest xmlns="http://www.weasis.org/xsd/2.5"/>')
    server.reply("/manifest.xml.gz", manifest, content_type="application/x-gzip")
    assert fetch(server.url("/manifest.xml.gz"), settings=fast()) == manifest
    assert fetch(server.url("/page.html"), settings=fast()) == HTML  # judging it is the caller's business
    with pytest.raises(LinkExpired):
        fetch(server.url("/denied"), settings=fast())
    with pytest.raises(DownloadError, match="download limit of 100 bytes"):
        fetch(server.url("/scan.dcm"), settings=fast(), limit=100)
    assert leftovers() == []


# -- many at once, progress, cancel -----------------------------------------------------------------

def test_download_many_keeps_order_and_survives_a_failure(server, dicom_bytes, jpeg_bytes):
    wanted = [(server.url("/scan.dcm"), ()), (server.url("/denied"), ()), (server.url("/photo.jpg"), ()),
              (server.url("/page.html"), ()), (server.url("/scan.dcm"), ())]
    updates = []
    job = Job(lambda r: download_many(wanted, settings=fast(download_parallel=2), reporter=r), "manifest")
    job.on_progress(lambda j: updates.append((j.progress.done, j.progress.total, j.progress.message)))
    results = job.start().wait(30)
    assert [type(r) for r in results] == [Downloaded, LinkExpired, Downloaded, NotAnImage, Downloaded]
    assert results[0].path.read_bytes() == dicom_bytes and results[2].path.read_bytes() == jpeg_bytes
    assert results[0].path != results[4].path
    done, total, message = updates[-1]
    assert done == total and "5 of 5 files" in message
    assert sorted(leftovers()) == sorted(r.path.name for r in results if isinstance(r, Downloaded))


def test_files_from_one_server_share_a_connection(server, dicom_bytes):
    path = fresh("kept-alive.dcm")
    server.reply(path, dicom_bytes)
    results = download_many([(server.url(path), ())] * 3, settings=fast(download_parallel=1))
    assert all(isinstance(r, Downloaded) for r in results)
    assert len({seen.client_port for seen in server.requests_to(path)}) == 1


def test_progress_is_reported_in_bytes_and_percent(server, dicom_bytes):
    updates = []
    job = Job(lambda r: download(server.url("/scan.dcm"), settings=fast(), reporter=r), "one")
    job.on_progress(lambda j: updates.append((j.progress.done, j.progress.total, j.progress.message)))
    got = job.start().wait(30)
    assert updates[-1][:2] == (got.size, len(dicom_bytes))
    assert "(100%)" in updates[-1][2] and "127.0.0.1" in updates[-1][2]


def test_cancel_stops_a_download_and_removes_its_temporary_file(server, dicom_bytes):
    url = slow_route(server, dicom_bytes)
    job = Job(lambda r: download(url, settings=fast(), reporter=r), "slow").start()
    _wait_for(lambda: any(n.endswith(".part") for n in leftovers()))
    start = time.monotonic()
    job.cancel()
    with pytest.raises(Cancelled):
        job.wait(10)
    assert job.state == State.CANCELLED
    assert time.monotonic() - start < 1.5
    assert leftovers() == []


def test_cancel_stops_all_downloads_and_removes_finished_files_too(server, dicom_bytes):
    wanted = [(server.url("/scan.dcm"), ()), (slow_route(server, dicom_bytes), ()),
              (slow_route(server, dicom_bytes), ()), (server.url("/stall"), ())]
    job = Job(lambda r: download_many(wanted, settings=fast(download_parallel=4), reporter=r), "many").start()
    _wait_for(lambda: sum(n.endswith(".part") for n in leftovers()) == 2 and any(n.endswith(".dcm")
                                                                                 for n in leftovers()))
    job.cancel()
    with pytest.raises(Cancelled):
        job.wait(10)
    assert leftovers() == []


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
