"""Download images over HTTPS: one file, or many in parallel, into temporary files under the cache folder.

Each hop of a redirect is checked with `uri.check_url`; https never leads to plain http. The query string
goes to the server as given (requests would re-quote it and break pre-signed signatures). Transient
failures are retried with backoff; a connection lost mid-body resumes with Range. What arrives is judged
by its first bytes: DICOM, JPEG or PNG is kept, anything else (an S3 error page ...) never is.
Messages and log lines show addresses only through `redact_url`.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import logging
import os
import re
import socket
import ssl
import struct
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import requests.adapters
import requests.certs
import urllib3.exceptions

from app import __version__, paths
from app import settings as app_settings
from app.dicom import reading
from app.errors import Cancelled, LightboxError
from app.links.uri import LinkError, check_url, redact_url

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
MAX_REDIRECTS = 10
RETRIES = 3
BACKOFF_S = 0.2
RETRY_AFTER_MAX_S = 5.0
TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
ERROR_BODY_MAX = 64 * 1024
SNIFF_BYTES = 132  # the DICM marker ends here
REPORT_EVERY_S = 0.1
KINDS = {"dicom": ".dcm", "jpeg": ".jpg", "png": ".png", "data": ".bin"}  # "data": fetch()'s documents
DOCUMENT_MAX_BYTES = 64 * 1024**2

# Characters a request target may carry as they are; anything else is left to requests to quote.
_SENDABLE = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")
# Error bodies that mean "this signed link is no longer (or never was) valid": S3, GCS, Azure.
_EXPIRED_MARKERS = (b"expired", b"accessdenied", b"authenticationfailed", b"authorizationfailure",
                    b"signaturedoesnotmatch", b"invalidaccesskeyid", b"authorizationqueryparameterserror",
                    b"authorizationpermissionmismatch", b"invalidtoken", b"requesttimetooskewed")

Progress = Callable[[int, "int | None"], None]


class DownloadError(LinkError):
    """A download that failed; `label` is the redacted address, `status` the HTTP status if any."""

    def __init__(self, message: str, *, label: str = "", status: int | None = None):
        super().__init__(message)
        self.label = label
        self.status = status


class LinkExpired(DownloadError):
    """401/403, or a storage service's 'expired'/'access denied' answer."""


class NotAnImage(DownloadError):
    """The server answered, but not with DICOM, JPEG or PNG."""


@dataclass
class Downloaded:
    path: Path  # a temporary file: the caller imports it, then deletes it
    kind: str  # "dicom", "jpeg" or "png"
    size: int
    label: str  # the redacted address
    seconds: float


# -- sessions ---------------------------------------------------------------------------------------

def make_session(settings: app_settings.Settings | None = None) -> requests.Session:
    """A session that verifies TLS against requests' bundle (or REQUESTS_CA_BUNDLE) plus the settings'
    extra CA file, takes proxies from the environment and follows no redirects by itself."""
    settings = settings or app_settings.load()
    session = requests.Session()
    session.trust_env = True
    session.verify = _trust_store(settings)
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(10, settings.download_parallel),
                                            max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update({"User-Agent": f"Lightbox/{__version__}", "Accept": "*/*",
                            "Accept-Encoding": "identity"})
    return session


def _trust_store(settings: app_settings.Settings) -> str:
    base = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or requests.certs.where()
    extra = (settings.extra_ca_file or "").strip()
    if not extra:
        return base
    return trust_with(base, extra, f"The extra certificate file in the settings ({extra})", DownloadError)


def trust_with(base, ca_file: str, described: str, error=LightboxError) -> str:
    """One PEM bundle (cached by content): what `base` trusts plus `ca_file`. `described` names the
    file in the messages of `error`, raised when it cannot be used."""
    try:
        extra_pem = Path(ca_file).expanduser().read_bytes()
    except OSError as exc:
        raise error(f"{described} cannot be read ({exc.strerror or type(exc).__name__}).") from None
    if b"-----BEGIN CERTIFICATE-----" not in extra_pem:
        raise error(f"{described} holds no PEM certificate.")
    if not isinstance(base, str) or Path(base).is_dir():  # a c_rehash folder cannot be joined to a file
        log.info("combining %s with requests' own bundle", ca_file)
        base = requests.certs.where()
    combined = Path(base).read_bytes().rstrip(b"\n") + b"\n" + extra_pem
    target = paths.cache_dir() / f"ca-bundle-{hashlib.sha256(combined).hexdigest()[:16]}.pem"
    if not target.exists():
        paths.write_atomically(target, combined)
    return str(target)


def downloads_dir() -> Path:
    path = paths.cache_dir() / "downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- the public calls -------------------------------------------------------------------------------

def download(url: str, *, headers: Iterable[tuple[str, str]] = (), session: requests.Session | None = None,
             settings: app_settings.Settings | None = None, reporter=None,
             progress: Progress | None = None) -> Downloaded:
    """Download one DICOM, JPEG or PNG file. `progress(done_bytes, total_bytes_or_None)` is called as it
    arrives; a job's `reporter` gets bytes, percent and a message, and its cancel stops the download."""
    return _run([(url, tuple(headers))], session, settings, reporter, progress, single=True)[0]


def download_many(requests: list[tuple[str, tuple[tuple[str, str], ...]]], *,  # noqa: A002 - the agreed name
                  session: requests.Session | None = None, settings: app_settings.Settings | None = None,
                  reporter=None) -> list[Downloaded | DownloadError]:
    """Download (url, headers) pairs, settings.download_parallel at a time. The results keep the order;
    a failed file is its DownloadError. Cancel stops all of them and removes every temporary file."""
    return _run([(url, tuple(h)) for url, h in requests], session, settings, reporter, None, single=False)


def fetch(url: str, *, headers: Iterable[tuple[str, str]] = (), session: requests.Session | None = None,
          settings: app_settings.Settings | None = None, reporter=None, limit: int = DOCUMENT_MAX_BYTES) -> bytes:
    """A small document (a manifest) in memory: the same checks, retries and messages as download(),
    but any content is accepted and at most `limit` bytes."""
    got = _run([(url, tuple(headers))], session, settings, reporter, None, single=True,
               document_limit=limit)[0]
    try:
        return got.path.read_bytes()
    finally:
        got.path.unlink(missing_ok=True)


def _run(items, session, settings, reporter, progress, *, single: bool, document_limit: int | None = None) -> list:
    settings = settings or app_settings.load()
    own_session = session is None
    session = session or make_session(settings)
    batch = _Batch(reporter)
    try:
        if single and reporter is None:  # nothing to watch for: work on the caller's thread
            return [_Transfer(items[0][0], items[0][1], session, settings, batch, progress,
                              document_limit=document_limit).run()]
        return _coordinate(items, session, settings, batch, reporter, progress, single, document_limit)
    finally:
        if own_session:
            session.close()


def _coordinate(items, session, settings, batch: _Batch, reporter, progress, single: bool,
                document_limit: int | None = None) -> list:
    """Run the transfers on a pool while this thread reports progress and watches for cancel."""
    transfers = [_Transfer(url, headers, session, settings, batch, document_limit=document_limit)
                 for url, headers in items]
    workers = 1 if single else max(1, min(settings.download_parallel, len(items)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download")
    futures = [pool.submit(t.run if single else t.run_or_error) for t in transfers]
    last = 0.0
    try:
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=REPORT_EVERY_S, return_when=FIRST_COMPLETED)
            if finished or time.monotonic() - last >= REPORT_EVERY_S:
                last = time.monotonic()
                _report(transfers, reporter, progress, single)
            if reporter is not None:
                reporter.check()
        _report(transfers, reporter, progress, single)
    except BaseException:
        _cancel(batch, transfers)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [f.result() for f in futures]


def _report(transfers: list[_Transfer], reporter, progress, single: bool) -> None:
    count = len(transfers)
    finished = sum(t.finished.is_set() for t in transfers)
    got = sum(t.have for t in transfers)
    totals = [t.size if t.finished.is_set() else t.total for t in transfers]
    known = all(total is not None for total in totals)
    if known:
        total = sum(totals)
        done = sum(t.size if t.finished.is_set() else t.have for t in transfers)
        pct = f" ({100 * done / total:.0f}%)" if total else ""
        amount = f"{_size(done)} of {_size(total)}{pct}"
    else:
        total = None if single else count
        done = got if single else finished + sum(t.have / t.total for t in transfers
                                                 if t.total and not t.finished.is_set())
        amount = _size(got)
    what = f"Downloading from {transfers[0].host}" if single else f"Downloaded {finished} of {count} files"
    if progress is not None:
        progress(done, total)
    if reporter is not None:
        reporter.update(done, total, f"{what}: {amount}")


def _cancel(batch: _Batch, transfers: list[_Transfer]) -> None:
    """Stop every transfer and remove what they wrote, including files already complete."""
    with batch.lock:
        batch.cancelled.set()
        holding = list(batch.holding)
        kept, batch.kept = batch.kept, []
    for transfer in holding:
        transfer.abort()
    deadline = time.monotonic() + 2.0
    for transfer in holding:  # they delete their own files once their socket is gone
        transfer.finished.wait(max(0.0, deadline - time.monotonic()))
    with batch.lock:
        leftovers = [t.part for t in batch.holding if t.part is not None]
    for path in kept + leftovers:
        try:
            path.unlink(missing_ok=True)
        except OSError:  # still open on Windows: the transfer removes it when it ends
            pass
    log.info("downloads cancelled; %d temporary file(s) removed", len(kept) + len(holding))


# -- one transfer -----------------------------------------------------------------------------------

class _Batch:
    """What the transfers of one call share: cancel, and which temporary files exist."""

    def __init__(self, reporter=None):
        self.reporter = reporter
        self.cancelled = threading.Event()
        self.lock = threading.Lock()
        self.holding: set[_Transfer] = set()  # writing a .part file
        self.kept: list[Path] = []  # finished files, removed again if the batch is cancelled

    def check(self) -> None:
        if self.cancelled.is_set() or (self.reporter is not None and self.reporter.cancelled):
            self.cancelled.set()
            raise Cancelled()

    def sleep(self, seconds: float) -> None:
        if self.cancelled.wait(seconds):
            raise Cancelled()
        self.check()


class _Transient(Exception):
    """Worth another try; `error` is what the user sees if the tries run out."""

    def __init__(self, error: DownloadError, retry_after: float | None = None):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class _Transfer:
    def __init__(self, url: str, headers: tuple[tuple[str, str], ...], session: requests.Session,
                 settings: app_settings.Settings, batch: _Batch, progress: Progress | None = None, *,
                 document_limit: int | None = None):
        self.url = url.strip()
        self.headers = headers
        self.session = session
        self.settings = settings
        self.batch = batch
        self.progress = progress
        self.label = redact_url(self.url)
        try:
            self.host = urlsplit(self.url).hostname or "the server"
        except ValueError:
            self.host = "the server"
        self.timeout = (settings.connect_timeout_s, settings.read_timeout_s)
        self.document = document_limit is not None  # any content, kept as "data"
        self.limit = settings.download_max_bytes if document_limit is None else min(settings.download_max_bytes,
                                                                                      document_limit)
        self.have = 0
        self.total: int | None = None
        self.size = 0
        self.kind: str | None = None
        self.bare = False
        self.validator: str | None = None
        self.part: Path | None = None
        self.file = None
        self.response: requests.Response | None = None
        self.finished = threading.Event()

    # -- outcome --

    def run_or_error(self) -> Downloaded | DownloadError:
        try:
            return self.run()
        except DownloadError as exc:
            return exc

    def run(self) -> Downloaded:
        start = time.monotonic()
        log.info("downloading %s", self.label)
        try:
            check_url(self.url, allow_http_loopback=self.settings.allow_http_loopback, what="The address")
            self._with_retries()
            result = self._keep(time.monotonic() - start)
        except LinkError as exc:
            self._discard()
            error = exc if isinstance(exc, DownloadError) else DownloadError(str(exc), label=self.label)
            error.label = self.label
            log.warning("download of %s failed: %s", self.label, error)
            raise error from None
        except Cancelled:
            self._discard()
            log.info("download of %s cancelled", self.label)
            raise
        except LightboxError:
            self._discard()
            raise
        except Exception as exc:
            self._discard()
            # The frames, not the message: a library's message may quote the address with its secrets.
            log.error("download of %s failed unexpectedly (%s):\n%s", self.label, type(exc).__name__,
                      "".join(traceback.format_tb(exc.__traceback__)))
            raise DownloadError(f"The download from {self.host} failed unexpectedly; details are in the log file.",
                                label=self.label) from None
        except BaseException:
            self._discard()
            raise
        finally:
            self.finished.set()
        log.info("downloaded %s: %s %s in %.2f s", self.label, _size(result.size), result.kind, result.seconds)
        return result

    def _keep(self, seconds: float) -> Downloaded:
        self.file.close()
        self.file = None
        if self.bare:
            try:
                reading.read(self.part, header_only=True, name="the download")
            except LightboxError:
                raise NotAnImage(f"The server at {self.host} did not send an image: the data is neither DICOM, "
                                 "JPEG nor PNG.", label=self.label) from None
        final = self.part.with_suffix(KINDS[self.kind])
        with self.batch.lock:
            self.batch.check()
            os.replace(self.part, final)
            self.part = None
            self.batch.holding.discard(self)
            self.batch.kept.append(final)
        self.size = self.have
        return Downloaded(final, self.kind, self.have, self.label, seconds)

    def _discard(self) -> None:
        with self.batch.lock:
            self.batch.holding.discard(self)
            part, self.part = self.part, None
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
            self.file = None
        if part is not None:
            try:
                part.unlink(missing_ok=True)
            except OSError:
                log.warning("could not remove the temporary file %s", part)
        self.have = 0

    def abort(self) -> None:
        """Called from another thread on cancel: end a blocked read at once."""
        try:
            sock = self.response.raw.connection.sock
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except (AttributeError, OSError, TypeError):
            pass

    # -- attempts --

    def _with_retries(self) -> None:
        failures = 0
        while True:
            self.batch.check()
            before = self.have
            try:
                return self._attempt()
            except _Transient as exc:
                failures = 1 if self.have > before else failures + 1  # progress earns a fresh budget
                if failures > RETRIES:
                    raise exc.error from None
                delay = exc.retry_after if exc.retry_after is not None else BACKOFF_S * 2 ** (failures - 1)
                log.info("%s: %s Retrying in %.1f s (%d of %d).", self.label, exc.error, delay, failures, RETRIES)
                self.batch.sleep(delay)

    def _attempt(self) -> None:
        resp = self._request()
        self.response = resp
        try:
            status = resp.status_code
            encoded = resp.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
            if status == 206 and self.have and not encoded:
                if not self._range_fits(resp):
                    log.info("%s: the server resumed at the wrong place; starting again", self.label)
                    self._restart()
                    raise _Transient(DownloadError(f"The server at {self.host} could not resume the download.",
                                                   label=self.label))
            elif status == 200:
                if self.have:
                    log.info("%s: the server cannot resume; starting again from the beginning", self.label)
                    self._restart()
                length = resp.headers.get("Content-Length", "")
                self.total = int(length) if length.isdigit() and not encoded else None
                self.validator = _validator(resp)
            else:
                self._http_error(resp)
            if self.total is not None and self.total > self.limit:
                raise self._too_large()
            self._receive(resp, encoded=encoded)
        finally:
            self.response = None
            resp.close()

    def _request(self) -> requests.Response:
        """GET with redirects followed by hand, each hop checked; the answer's body still unread."""
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            headers = dict(self.headers) if _origin(url) == _origin(self.url) else {}
            if self.have:
                headers["Range"] = f"bytes={self.have}-"
                if self.validator:
                    headers["If-Range"] = self.validator
            host = urlsplit(url).hostname or self.host
            self.batch.check()
            try:  # requests' own messages quote the whole address (and bad header values): never shown
                request = self.session.prepare_request(requests.Request("GET", url, headers=headers))
                request.url = _exact_url(request.url, url)
                env = self.session.merge_environment_settings(request.url, {}, True, self.session.verify, None)
                resp = self.session.send(request, allow_redirects=False, timeout=self.timeout, **env)
            except requests.exceptions.SSLError as exc:
                raise DownloadError(f"The secure connection to {host} failed: {_ssl_reason(exc)}.",
                                    label=self.label) from None
            except requests.exceptions.ConnectTimeout:
                raise _Transient(DownloadError(f"Could not connect to {host} within {self.timeout[0]:g} s.",
                                               label=self.label)) from None
            except requests.exceptions.ReadTimeout:
                raise DownloadError(f"{host} did not answer within {self.timeout[1]:g} s.", label=self.label) from None
            except requests.exceptions.ProxyError as exc:
                raise _Transient(DownloadError(f"Could not reach {host} through the proxy "
                                               f"({_connection_reason(exc)}).", label=self.label)) from None
            except requests.exceptions.ConnectionError as exc:
                self.batch.check()
                raise _Transient(DownloadError(f"Could not connect to {host} ({_connection_reason(exc)}).",
                                               label=self.label)) from None
            except requests.exceptions.InvalidHeader:
                names = ", ".join(name for name, _ in self.headers) or "?"
                raise DownloadError(f"A header given with the link is not valid ({names}); nothing was downloaded.",
                                    label=self.label) from None
            except (requests.exceptions.RequestException, ValueError, UnicodeError) as exc:
                raise DownloadError(f"The download from {host} could not be started ({type(exc).__name__}).",
                                    label=self.label) from None
            if resp.status_code not in REDIRECT_STATUS or not resp.headers.get("Location"):
                return resp
            target = urljoin(url, resp.headers["Location"].strip())
            resp.close()
            self._check_hop(url, target)
            log.info("%s: redirected to %s", self.label, redact_url(target))
            url = target
        raise DownloadError(f"The server at {self.host} redirected the download more than {MAX_REDIRECTS} times.",
                            label=self.label)

    def _check_hop(self, current: str, target: str) -> None:
        try:
            check_url(target, allow_http_loopback=self.settings.allow_http_loopback, what="The server's redirect")
        except LinkError as exc:
            raise DownloadError(str(exc), label=self.label) from None
        if urlsplit(current).scheme.lower() == "https" and urlsplit(target).scheme.lower() != "https":
            raise DownloadError(f"The server redirected the download from https to plain http "
                                f"({redact_url(target)}); Lightbox does not follow that, so nothing was downloaded.",
                                label=self.label)

    def _range_fits(self, resp: requests.Response) -> bool:
        match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", resp.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != self.have:
            return False
        whole = None if match.group(3) == "*" else int(match.group(3))
        if self.total is None:
            self.total = whole
            return True
        return whole == self.total

    def _http_error(self, resp: requests.Response):
        status = resp.status_code
        body = _read_some(resp, ERROR_BODY_MAX)
        if status in TRANSIENT_STATUS:
            raise _Transient(DownloadError(f"The server at {self.host} is busy or unavailable (HTTP {status}); "
                                           "try again later.", label=self.label, status=status),
                             _retry_after(resp.headers.get("Retry-After")))
        lowered = body.lower()
        if status in (401, 403) or (status in (400, 404) and any(m in lowered for m in _EXPIRED_MARKERS)
                                     and reading.describe_content(body) in ("an XML document", "a JSON document")):
            raise LinkExpired(f"This link has expired or you are not authorised to open it (HTTP {status}).",
                              label=self.label, status=status)
        if status == 404:
            message = f"The file was not found on the server {self.host} (HTTP 404)."
        elif status == 410:
            message = f"The file is no longer available on the server {self.host} (HTTP 410)."
        elif status == 416 or status == 206:
            message = f"The server at {self.host} sent part of the file when the whole was asked for (HTTP {status})."
        elif status in REDIRECT_STATUS:
            message = f"The server at {self.host} redirected the download without saying where (HTTP {status})."
        elif status >= 500:
            message = f"The server at {self.host} failed (HTTP {status}); try again later."
        else:
            message = f"The server at {self.host} refused the download (HTTP {status})."
        raise DownloadError(message, label=self.label, status=status)

    def _too_large(self) -> DownloadError:
        setting = " (setting 'download_max_bytes')" if self.limit == self.settings.download_max_bytes else ""
        return DownloadError(f"The file from {self.host} is larger than the download limit of {_size(self.limit)}"
                             f"{setting}; nothing was kept.", label=self.label)

    # -- the body --

    def _receive(self, resp: requests.Response, *, encoded: bool) -> None:
        raw = resp.raw
        # Unencoded bodies are read straight from http.client's response into one reused buffer: what
        # urllib3's read() allocates per chunk costs more CPU than decrypting it. Its decoding reads would
        # also lose what arrived before a drop (a compressed body cannot be resumed by offset anyway).
        fp = None if encoded else getattr(raw, "_fp", None)
        if not hasattr(fp, "readinto"):
            fp = None
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        head = b""
        while True:
            try:
                if fp is not None:
                    data = view[:fp.readinto(buffer)]
                else:
                    data = raw.read(CHUNK, decode_content=encoded)
            except urllib3.exceptions.DecodeError:
                raise DownloadError(f"The server at {self.host} sent damaged compressed data.",
                                    label=self.label) from None
            except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError,
                    requests.exceptions.RequestException):
                self.batch.check()
                if encoded:
                    self._restart()
                raise _Transient(DownloadError(f"The connection to {self.host} was lost after {_size(self.have)}.",
                                               label=self.label)) from None
            if not data:
                break
            if self.file is None:  # nothing kept yet: judge the first bytes before storing any
                head += data
                if len(head) < SNIFF_BYTES:
                    continue
                self._sniff(head)
                data, head = head, b""
            if self.have + len(data) > self.limit:
                raise self._too_large()
            try:
                self.file.write(data)
            except OSError as exc:
                raise DownloadError(f"The download could not be written to {self.part.parent} "
                                    f"({exc.strerror or type(exc).__name__}).", label=self.label) from None
            self.have += len(data)
            self.batch.check()
            if self.progress is not None:
                self.progress(self.have, self.total)
        if self.file is None:
            if not head:
                error = DownloadError if self.document else NotAnImage
                raise error(f"The server at {self.host} sent an empty file.", label=self.label)
            self._sniff(head)
            self.file.write(head)
            self.have = len(head)
        if self.total is not None and self.have != self.total:
            raise _Transient(DownloadError(f"The connection to {self.host} was lost after {_size(self.have)} "
                                           f"of {_size(self.total)}.", label=self.label))
        if fp is not None and fp.isclosed():
            raw.release_conn()  # all read: the connection may serve the next file

    def _sniff(self, head: bytes) -> None:
        if self.document:
            kind = "data"
        elif len(head) >= SNIFF_BYTES and head[128:132] == b"DICM":
            kind = "dicom"
        elif head.startswith(b"\xff\xd8\xff"):
            kind = "jpeg"
        elif head.startswith(b"\x89PNG\r\n\x1a\n"):
            kind = "png"
        elif _bare_dataset(head):
            kind, self.bare = "dicom", True
        else:
            what = reading.describe_content(head)
            if what is None:
                what = "data that is neither DICOM, JPEG nor PNG"
            elif what == "an HTML page":
                what += " (perhaps a sign-in or error page)"
            raise NotAnImage(f"The server at {self.host} did not send an image: it sent {what}.", label=self.label)
        if self.kind is not None and kind != self.kind:
            raise DownloadError(f"The file at {self.host} changed while it was downloaded; try again.",
                                label=self.label)
        self.kind = kind
        with self.batch.lock:
            self.batch.check()
            fd, name = tempfile.mkstemp(prefix="download-", suffix=".part", dir=downloads_dir())
            self.part = Path(name)
            self.file = os.fdopen(fd, "wb", buffering=0)
            self.batch.holding.add(self)

    def _restart(self) -> None:
        """Throw away what arrived: the next answer starts from the first byte."""
        self._discard()
        self.total = None
        self.validator = None


# -- small pieces -----------------------------------------------------------------------------------

def _exact_url(prepared: str, original: str) -> str:
    """The prepared URL with the original path and query put back: requests turns %7E into ~ and the
    like, which changes what a signature covers. Anything not sendable as is stays as requests made it."""
    parts = urlsplit(original.strip())
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    if not _SENDABLE.fullmatch(target):
        return prepared
    ours = urlsplit(prepared)
    return urlunsplit((ours.scheme, ours.netloc, parts.path or "/", parts.query, ""))


def _origin(url: str) -> tuple:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _validator(resp: requests.Response) -> str | None:
    """What makes a later Range request safe: a strong ETag, else Last-Modified."""
    etag = resp.headers.get("ETag", "").strip()
    if etag and not etag.startswith("W/"):
        return etag
    return resp.headers.get("Last-Modified") or None


def _bare_dataset(head: bytes) -> bool:
    """A DICOM data set without preamble: little-endian, starting in group 0002 or 0008."""
    if len(head) < 8:
        return False
    group, _ = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008):
        return False
    vr = head[4:6]
    if vr.isalpha() and vr.isupper():
        return True  # explicit VR
    return struct.unpack("<I", head[4:8])[0] < 1024  # implicit VR: a short first element


def _read_some(resp: requests.Response, limit: int) -> bytes:
    try:
        return resp.raw.read(limit, decode_content=True) or b""
    except Exception:  # noqa: BLE001 - an error page that cannot be read says nothing more
        return b""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, min(RETRY_AFTER_MAX_S, seconds))


def _causes(exc: BaseException):
    """The exception, the exceptions it wraps, and theirs (requests and urllib3 nest them deeply)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "reason", None), e.__cause__, e.__context__]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]


def _ssl_reason(exc: BaseException) -> str:
    for e in _causes(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return (f"its certificate is not trusted ({e.verify_message}); if it comes from your own "
                    "certificate authority, add that to the setting 'extra_ca_file'")
    for e in _causes(exc):
        if isinstance(e, ssl.SSLError) and e.reason:
            return f"TLS error {e.reason}"
    return "TLS error"


def _connection_reason(exc: BaseException) -> str:
    for e in _causes(exc):
        if isinstance(e, socket.gaierror):
            return "the name was not found"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ConnectionResetError):
            return "the connection was reset"
        if isinstance(e, OSError) and e.strerror:
            return e.strerror.lower()
    return "the connection failed"


def _size(n: float) -> str:
    if n < 1000:
        return f"{int(n)} bytes"
    if n < 1000**2:
        return f"{n / 1000:.0f} kB"
    if n < 1000**3:
        return f"{n / 1000**2:.1f} MB"
    return f"{n / 1000**3:.2f} GB"
