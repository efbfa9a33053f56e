"""A threaded HTTP(S) server for tests and benchmarks, on loopback only.

Routes are Python functions that get the request handler (`Exchange`) and answer however they like:
whole bodies, partial bodies, stalls, dropped connections. Every request is logged with its raw request
target and headers, so a test can check exactly what a client sent.

Run as a program it serves one file (for benchmarks in another process):
    python -m tests.integration.https_server FILE --route /big.dcm --ca-out ca.pem
prints "URL <address>" once ready and serves until stdin closes or SIGTERM.
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme

SEND_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Seen:
    """One request as it arrived."""
    method: str
    target: str  # the raw request target, byte for byte (decoded as latin-1)
    headers: tuple[tuple[str, str], ...]
    client_port: int = 0  # one port per connection: tells whether a client kept its connection alive

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class Exchange(BaseHTTPRequestHandler):
    """The request handler a route receives, with helpers for common answers."""

    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection frees its thread after this long
    server: _Server

    def do_GET(self):
        self.server.owner._dispatch(self)

    do_HEAD = do_POST = do_GET  # a route reads the method from ex.command

    def log_message(self, format, *args):  # noqa: A002 - quiet: the tests read .requests instead
        pass

    @property
    def target(self) -> str:
        return self.path

    @property
    def stopping(self) -> threading.Event:
        return self.server.owner.stopping

    def send(self, status: int, body: bytes = b"", *, content_type: str = "application/octet-stream",
             headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def redirect(self, location: str, status: int = 302) -> None:
        self.send(status, b"", headers=[("Location", location)])

    def send_bytes_ranged(self, body: bytes, *, content_type: str = "application/octet-stream") -> None:
        """The body, or the part a 'Range: bytes=N-' asks for (206)."""
        start = self.range_start()
        if start is None or start >= len(body):
            self.send(200, body, content_type=content_type, headers=[("Accept-Ranges", "bytes")])
        else:
            span = f"bytes {start}-{len(body) - 1}/{len(body)}"
            self.send(206, body[start:], content_type=content_type,
                      headers=[("Accept-Ranges", "bytes"), ("Content-Range", span)])

    def send_file(self, path: Path, *, content_type: str = "application/octet-stream") -> None:
        """A file from disk, streamed in large writes, honouring 'Range: bytes=N-'."""
        size = path.stat().st_size
        start = self.range_start()
        if start is not None and start < size:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            start = 0
            self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        if self.command == "HEAD":
            return
        buf = bytearray(SEND_CHUNK)
        view = memoryview(buf)
        with open(path, "rb", buffering=0) as fp:
            fp.seek(start)
            while n := fp.readinto(buf):
                self.wfile.write(view[:n])

    def range_start(self) -> int | None:
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "").strip())
        return int(match.group(1)) if match else None

    def drop(self) -> None:
        """Close the connection now, without a proper end."""
        self.close_connection = True
        try:
            self.wfile.flush()
            socket.socket.shutdown(self.connection, socket.SHUT_RDWR)
        except OSError:
            pass


Route = Callable[[Exchange], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    owner: TestServer

    def get_request(self):
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address

    def finish_request(self, request, client_address):
        tls = self.owner.tls
        if tls is None:
            return super().finish_request(request, client_address)
        try:  # the handshake happens here, on the request's thread, so a slow client blocks no one
            request = tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # e.g. the client did not trust our certificate
        try:
            super().finish_request(request, client_address)
        finally:
            request.close()

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError, BrokenPipeError)):
            return  # clients hang up on purpose in these tests
        super().handle_error(request, client_address)


class TestServer:
    """A server on 127.0.0.1 with a free port: `tls` makes it HTTPS."""

    __test__ = False  # not a pytest test class

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
        self.tls = tls
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server((host, 0), Exchange)
        self._server.owner = self
        self._thread: threading.Thread | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def route(self, path: str, handler: Route | None = None):
        """Answer requests for `path` (without query) with handler; usable as a decorator."""
        if handler is None:
            return lambda fn: self.route(path, fn)
        self.routes[path] = handler
        return handler

    def reply(self, path: str, body: bytes, *, status: int = 200, content_type: str = "application/octet-stream",
              headers: Iterable[tuple[str, str]] = ()) -> str:
        """A fixed answer; returns the route's URL."""
        headers = tuple(headers)
        self.route(path, lambda ex: ex.send(status, body, content_type=content_type, headers=headers))
        return self.url(path)

    def requests_to(self, path: str) -> list[Seen]:
        with self._lock:
            return [seen for seen in self.requests if seen.path == path]

    def _dispatch(self, ex: Exchange) -> None:
        seen = Seen(ex.command, ex.path, tuple(ex.headers.items()), ex.client_address[1])
        with self._lock:
            self.requests.append(seen)
        handler = self.routes.get(seen.path)
        if handler is None:
            ex.send(404, b"not found", content_type="text/plain")
        else:
            handler(ex)

    def start(self) -> TestServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.scheme}-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> TestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    """A server-side TLS context with a certificate from `ca` for `names` (default: 127.0.0.1, localhost)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*(names or ("127.0.0.1", "localhost"))).configure_cert(context)
    return context


def https_server(ca: trustme.CA) -> TestServer:
    return TestServer(server_context(ca))


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--route", default="/file")
    parser.add_argument("--ca-out", type=Path, required=True, help="where to write the CA certificate (PEM)")
    args = parser.parse_args(argv)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(args.ca_out))
    server = https_server(ca)
    server.route(args.route, lambda ex: ex.send_file(args.file))
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print("URL", server.url(args.route), flush=True)
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
