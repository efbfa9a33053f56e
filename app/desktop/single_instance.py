"""One Lightbox per user: a second start hands its request (a link, files) to the running one.

The running instance listens on a QLocalServer whose socket lives in a folder only this user can
enter (XDG_RUNTIME_DIR, or a private folder in the temp dir); on Windows the pipe is restricted to
the user. A request is one JSON line {"argv": [...]}, answered "ok" once queued, so the sender knows
it was taken. A stale socket left by a crash is removed when nothing answers on it.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import stat
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, QThread, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from app import paths

log = logging.getLogger(__name__)

CONNECT_MS = 1000
REPLY_MS = 5000
MAX_REQUEST = 64 * 1024


def _private_dir() -> Path:
    """A folder only this user can use, for the socket (Unix)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.stat(runtime).st_uid == os.getuid():
        return Path(runtime)
    folder = Path(tempfile.gettempdir()) / f"lightbox-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{folder} is not a private folder of this user")
    return folder


def server_name() -> str:
    """Per user and per data folder (a portable copy, a test's LIGHTBOX_HOME, is its own instance)."""
    key = hashlib.sha1(f"{getpass.getuser()}|{paths.data_dir()}".encode("utf-8", "surrogatepass")).hexdigest()[:16]
    name = f"lightbox-{key}"
    if sys.platform == "win32":
        return name
    return str(_private_dir() / f"{name}.sock")


def hand_over(argv: list[str], *, name: str | None = None, timeout_ms: int = REPLY_MS) -> bool:
    """Give the request to the running instance; False when none is running (or it did not answer).
    Needs no QCoreApplication, so the caller may still create a QApplication afterwards."""
    socket = QLocalSocket()
    socket.connectToServer(name or server_name())
    if not socket.waitForConnected(CONNECT_MS):
        return False
    socket.write(json.dumps({"argv": argv, "sent": time.time()}).encode("utf-8") + b"\n")
    socket.flush()
    reply = b""
    while b"\n" not in reply:
        if not socket.waitForReadyRead(timeout_ms):
            log.warning("the running Lightbox did not confirm the request")
            socket.abort()
            return False
        reply += bytes(socket.readAll())
    socket.disconnectFromServer()
    return reply.strip() == b"ok"


class Instance(QObject):
    """The running instance's end: emits `received(argv, sent)` for every request, in arrival order
    (`sent`: the sender's time.time(), for measuring the hand-over)."""

    received = Signal(list, float)

    def __init__(self, name: str | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.name = name or server_name()
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.newConnection.connect(self._accept)
        self.lock: QLockFile | None = None

    def listen(self) -> bool:
        """Become the running instance; False if another one is (or is starting).

        A lock file decides who it is: Qt installs a user-only socket by renaming it into place, which
        would silently replace a live instance's socket. QLockFile frees a dead process's lock.
        """
        self.lock = QLockFile(self._lock_path())
        self.lock.setStaleLockTime(0)
        if not self.lock.tryLock(100):
            return False
        QLocalServer.removeServer(self.name)  # what a crashed instance left, if anything
        if self.server.listen(self.name):
            return True
        log.warning("cannot listen for links: %s", self.server.errorString())
        self.lock.unlock()
        return False

    def _lock_path(self) -> str:
        if sys.platform == "win32":
            return str(Path(tempfile.gettempdir()) / f"{self.name}.lock")
        return f"{self.name}.lock"

    def close(self) -> None:
        self.server.close()
        if self.lock is not None:
            self.lock.unlock()

    def _accept(self) -> None:
        while self.server.hasPendingConnections():
            socket = self.server.nextPendingConnection()
            socket.setProperty("request", b"")
            socket.readyRead.connect(self._ready)
            socket.disconnected.connect(socket.deleteLater)
            if socket.bytesAvailable():
                self._read(socket)

    @Slot()
    def _ready(self) -> None:
        socket = self.sender()
        if isinstance(socket, QLocalSocket):
            self._read(socket)

    def _read(self, socket: QLocalSocket) -> None:
        data = bytes(socket.property("request") or b"") + bytes(socket.readAll())
        if len(data) > MAX_REQUEST:
            log.warning("a request to the running Lightbox was too large; ignored")
            socket.abort()
            return
        line, newline, rest = data.partition(b"\n")
        socket.setProperty("request", rest if newline else data)
        if not newline:
            return
        try:
            request = json.loads(line.decode("utf-8"))
            argv = [str(a) for a in request["argv"]]
            sent = float(request.get("sent") or time.time())
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("an unreadable request to the running Lightbox was ignored")
            socket.abort()
            return
        socket.write(b"ok\n")
        socket.flush()
        self.received.emit(argv, sent)


def start_or_hand_over(argv: list[str]) -> Instance | None:
    """The Instance to run with (this process shows the window), or None once a running one took `argv`."""
    for attempt in range(12):
        if hand_over(argv):
            return None
        instance = Instance()
        if instance.listen():
            return instance
        instance.deleteLater()  # another process is the instance, or is becoming it: hand over to it
        QThread.msleep(50 * (attempt + 1))
    log.warning("could not reach or become the running Lightbox; opening a separate window")
    return Instance()
