"""Lightbox's own storage SCP: where a PACS sends the instances of a C-MOVE, and, when "receive studies" is on,
whatever a modality or PACS pushes to this computer.

A StorageServer hands each instance (Part 10 bytes, as received) to its sink; C-MOVE retrieves divert the sink
of a running server to themselves for the duration of the move. `Receiving` is the permanent service: a thread
that imports what arrives into the library.
"""

from __future__ import annotations

import contextlib
import functools
import errno
import logging
import queue
import threading
from collections.abc import Callable

from app.errors import LightboxError
from app.pacs.config import check_ae_title, check_port
from app.pacs.dimse import nodelay_handler, quiet_pynetdicom

log = logging.getLogger(__name__)

SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000

# sink(calling AE title, label, Part 10 bytes) -> None; raising LightboxError answers "out of resources".
Sink = Callable[[str, str, bytes], None]


class ReceiverError(LightboxError):
    pass


def received_file(event) -> bytes:
    """The Part 10 file of the instance a C-STORE event brought, its data set as received."""
    from app.dicom.reading import part10_from_network

    request = event.request
    return part10_from_network(str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID),
                               str(event.context.transfer_syntax), request.DataSet.getvalue(),
                               event.assoc.requestor.ae_title)


@functools.lru_cache(maxsize=1)
def storage_contexts() -> tuple:
    """Every storage SOP class pynetdicom knows (and Verification), in every transfer syntax it can take."""
    from pydicom.uid import AllTransferSyntaxes
    from pynetdicom import StoragePresentationContexts, VerificationPresentationContexts
    from pynetdicom.presentation import build_context

    return tuple(build_context(cx.abstract_syntax, AllTransferSyntaxes)
                 for cx in list(StoragePresentationContexts) + list(VerificationPresentationContexts))


class StorageServer:
    """C-STORE and C-ECHO on `bind`:`port` (every interface by default: the PACS must reach it) as `aet`."""

    _running: dict[int, StorageServer] = {}  # port -> the server of this process listening there
    _stopping: dict[int, threading.Thread] = {}  # port -> a server's shutdown under way
    _lock = threading.Lock()

    def __init__(self, aet: str, port: int, sink: Sink, *, bind: str = ""):
        self.aet, _ = check_ae_title(aet, "own AE title")
        self.port = check_port(port, "local storage port")
        self.bind = bind
        self._sinks = [sink]
        self._server = None
        self.received = 0

    @classmethod
    def running(cls, port: int) -> StorageServer | None:
        with cls._lock:
            return cls._running.get(port)

    def start(self) -> StorageServer:
        from pynetdicom import AE, evt

        quiet_pynetdicom()
        with self._lock:
            stopping = self._stopping.pop(self.port, None)
        if stopping is not None:  # the port is free once the last server on it has stopped
            stopping.join()
        ae = AE(ae_title=self.aet)
        ae.require_called_aet = True
        ae.maximum_pdu_size = 0  # no limit: fewer, larger P-DATA PDUs
        ae.supported_contexts = list(storage_contexts())
        handlers = [nodelay_handler(), (evt.EVT_CONN_OPEN, poll_faster), (evt.EVT_C_STORE, self._on_store),
                    (evt.EVT_C_ECHO, lambda event: SUCCESS)]
        try:
            self._server = ae.start_server((self.bind or "", self.port), block=False, evt_handlers=handlers)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ReceiverError(f"Lightbox cannot receive on port {self.port}: another program uses it. Choose "
                                    "another local storage port in the PACS configuration.") from None
            if exc.errno == errno.EACCES:
                raise ReceiverError(f"Lightbox may not listen on port {self.port} (ports below 1024 need "
                                    "administrator rights): choose a port above 1024.") from None
            raise ReceiverError(f"Lightbox cannot listen on port {self.port} ({exc.strerror or exc}).") from None
        with self._lock:
            self._running[self.port] = self
        log.info("receiving as %s on port %d", self.aet, self.port)
        return self

    def stop(self, *, wait: bool = True) -> None:
        """Stop listening. pynetdicom's server notices within half a second; `wait=False` lets that happen on a
        thread of its own (a next start on the port waits for it)."""
        server, self._server = self._server, None
        if server is None:
            return

        def shut() -> None:
            server.shutdown()
            server.server_close()
            log.info("stopped receiving on port %d (%d instances received)", self.port, self.received)

        with self._lock:
            if self._running.get(self.port) is self:
                del self._running[self.port]
            if not wait:
                thread = self._stopping[self.port] = threading.Thread(target=shut, name="storage-stop", daemon=True)
                thread.start()
        if wait:
            shut()

    @property
    def listening(self) -> bool:
        return self._server is not None

    @contextlib.contextmanager
    def diverted(self, sink: Sink):
        """What arrives meanwhile goes to `sink` (a C-MOVE's retrieve) instead of the usual one."""
        self._sinks.append(sink)
        try:
            yield self
        finally:
            self._sinks.remove(sink)

    def _on_store(self, event) -> int:
        calling = event.assoc.requestor.ae_title
        try:
            data = received_file(event)
        except Exception:  # noqa: BLE001 - what pynetdicom could not give, we cannot store
            log.info("a C-STORE from %s could not be read", calling, exc_info=True)
            return CANNOT_UNDERSTAND
        sop_uid = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "?")
        try:
            self._sinks[-1](calling, f"{calling}/{sop_uid}", data)
        except LightboxError as exc:
            log.warning("could not keep an instance from %s: %s", calling, exc)
            return OUT_OF_RESOURCES
        self.received += 1
        return SUCCESS

    def __enter__(self) -> StorageServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def poll_faster(event) -> None:
    """EVT_CONN_OPEN: the association's DUL polls every DUL_POLL_S from its first PDU on."""
    from app.pacs.send import DUL_POLL_S

    dul = getattr(event.assoc, "dul", None)
    if dul is not None and hasattr(dul, "_run_loop_delay"):  # pynetdicom's idle poll: 1 ms per message otherwise
        dul._run_loop_delay = DUL_POLL_S


class Receiving:
    """The "receive studies" service: a StorageServer whose instances a thread imports into the library (its own
    connection). A C-STORE is answered only once its instance is committed (file flushed, row written): the
    sender may then forget it. What arrives while a batch is committed goes into the next one.
    `on_import(ImportEntry)` hears of each instance on that thread."""

    ANSWER_WITHIN_S = 60.0

    def __init__(self, aet: str, port: int, *, library_root=None, on_import=None, bind: str = ""):
        self._queue: queue.Queue = queue.Queue()
        self._root = library_root
        self._on_import = on_import
        self.server = StorageServer(aet, port, self._put, bind=bind)
        self._thread: threading.Thread | None = None

    def _put(self, calling: str, label: str, data: bytes) -> None:
        done = _Pending(calling, label, data)
        self._queue.put(done)
        if not done.event.wait(self.ANSWER_WITHIN_S):
            raise LightboxError("the library did not take the instance in time")
        if done.error:
            raise LightboxError(done.error)

    def start(self) -> Receiving:
        self._thread = threading.Thread(target=self._import, name="receiving", daemon=True)
        self._thread.start()
        try:
            self.server.start()
        except BaseException:
            self._queue.put(None)
            raise
        return self

    def stop(self) -> None:
        self.server.stop()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(30)
            self._thread = None

    def _import(self) -> None:
        from app.library.importer import Intake
        from app.library.library import Library

        with Library(self._root) as library:
            while True:
                batch = [self._queue.get()]
                while not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                stopping = None in batch
                batch = [b for b in batch if b is not None]
                for calling in dict.fromkeys(b.calling for b in batch):
                    group = [b for b in batch if b.calling == calling]
                    try:
                        with Intake(library, source=f"received from {calling}") as intake:
                            for item in group:
                                entry = intake.add(item.label, item.data)
                                if entry.status == "failed":
                                    item.error = entry.error
                                if self._on_import is not None:
                                    self._on_import(entry)
                    except LightboxError as exc:  # a full disk: nothing of the group is kept
                        log.error("received instances not imported: %s", exc)
                        for item in group:
                            item.error = item.error or str(exc)
                    for item in group:
                        item.event.set()
                if stopping:
                    return


class _Pending:
    __slots__ = ("calling", "label", "data", "event", "error")

    def __init__(self, calling: str, label: str, data: bytes):
        self.calling, self.label, self.data = calling, label, data
        self.event = threading.Event()
        self.error = ""
