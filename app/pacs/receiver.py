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
from app.pacs.wire import (
    AFFECTED_SOP_CLASS, AFFECTED_SOP_INSTANCE, COMMAND_FIELD, DATA_SET_TYPE, MESSAGE_ID, NO_DATA_SET, RESPONDED_TO,
    STATUS, Message, Reader, command, is_store_request, message, uid_value, us,
)

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


@functools.lru_cache(maxsize=4)
def storage_ae(aet: str):
    """The pynetdicom AE of a storage SCP, made once per AE title (its contexts take 40 ms to set)."""
    from pynetdicom import AE

    ae = AE(ae_title=aet)
    ae.require_called_aet = True
    ae.maximum_pdu_size = 0  # no limit: fewer, larger P-DATA PDUs
    ae.supported_contexts = list(storage_contexts())
    return ae


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
        from pynetdicom import evt

        quiet_pynetdicom()
        with self._lock:
            stopping = self._stopping.pop(self.port, None)
        if stopping is not None:  # the port is free once the last server on it has stopped
            stopping.join()
        ae = storage_ae(self.aet)
        handlers = [nodelay_handler(), (evt.EVT_CONN_OPEN, poll_faster), (evt.EVT_C_STORE, self._on_store),
                    (evt.EVT_C_ECHO, lambda event: SUCCESS), (evt.EVT_ESTABLISHED, self._on_established)]
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
        return self._keep(calling, str(getattr(event.request, "AffectedSOPInstanceUID", "") or "?"), data)

    def _keep(self, calling: str, sop_uid: str, data: bytes) -> int:
        """The sink takes an instance (and may block until it is committed): the C-STORE's status."""
        try:
            self._sinks[-1](calling, f"{calling}/{sop_uid}", data)
        except LightboxError as exc:
            log.warning("could not keep an instance from %s: %s", calling, exc)
            return OUT_OF_RESOURCES
        self.received += 1
        return SUCCESS

    def _on_established(self, event) -> None:
        """EVT_ESTABLISHED, on the association's reactor thread: from its next pass, the reactor reads the
        C-STOREs on the wire itself (_StoreWire)."""
        try:
            _StoreWire.install(event.assoc, self)
        except Exception:  # noqa: BLE001 - pynetdicom's own way then
            log.debug("no wire for this association", exc_info=True)

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


class _StoreWire(Reader):
    """An accepted association's C-STOREs read on its socket by its reactor thread, from within the reactor's
    checkpoint (_Checkpoint), while pynetdicom's DUL thread is parked: each request is answered once the
    server's sink has taken it. Anything else goes back to pynetdicom as its DUL thread would have read it; the
    wire takes over again when pynetdicom is done with it."""

    RETRIES = 50  # reactor passes to find pynetdicom idle again after a hand-back

    @classmethod
    def fits(cls, assoc) -> bool:
        dul = getattr(assoc, "dul", None)
        return (getattr(assoc, "is_acceptor", False) is True and assoc.is_established
                and type(getattr(assoc, "_reactor_checkpoint", None)) is threading.Event
                and hasattr(assoc, "_is_paused") and hasattr(assoc, "_kill")
                and hasattr(getattr(assoc, "dimse", None), "message")
                and hasattr(dul, "to_user_queue") and hasattr(getattr(dul, "_idle_timer", None), "restart")
                and hasattr(getattr(assoc, "acse", None), "is_release_requested")
                and hasattr(getattr(assoc, "requestor", None), "ae_title"))

    @classmethod
    def install(cls, assoc, server: StorageServer) -> None:
        wire = cls.made(assoc)
        if wire is None:
            return
        wire.server = server
        wire.gate.unless = lambda: assoc._kill and not wire.is_parked  # ended before the wire took it
        assoc._dul_ready = wire.gate  # for the association's life: open but while the wire reads
        wire.gate.opened.clear()  # the DUL thread stops at its next pass, before it reads a request
        checkpoint = _Checkpoint(wire)
        checkpoint.set()
        assoc._reactor_checkpoint = checkpoint

    def __init__(self, assoc, dul, sock, max_pdu: int):
        super().__init__(assoc, dul, sock, max_pdu)
        self.storage = {cx.context_id: (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                        for cx in assoc.accepted_contexts}
        self.calling = str(assoc.requestor.ae_title or "")
        self.server: StorageServer | None = None
        self.done = False  # pynetdicom carries on alone
        self.tries = 0

    def turn(self) -> None:
        """One pass of the reactor: read requests until one is not ours (or the association ends)."""
        if self.done:
            return
        if self.assoc._kill or not self.assoc.is_established or not self.dul.is_alive():
            self.stop()
            return
        if not self._take():
            self.tries += 1
            if self.tries > self.RETRIES:
                self.stop()
            return
        self.tries = 0
        try:
            self._serve()
        finally:
            self.unpark()

    def stop(self) -> None:
        self.done = True
        self.unpark()

    def _take(self) -> bool:
        """The DUL thread parked with nothing left to do (what it had to send, sent)."""
        gate, dul = self.gate, self.dul
        gate.opened.clear()
        while not gate.parked.wait(0.05):
            if not dul.is_alive() or self.assoc._kill:
                self.unpark()
                return False
        for _ in range(8):
            if dul.to_provider_queue.empty() and dul.event_queue.empty():
                break
            if not gate.step(1.0):
                self.unpark()
                return False
        if not (dul.state_machine.current_state == "Sta6" and dul.event_queue.empty() and dul._recv_pdu.empty()
                and dul.to_provider_queue.empty() and dul.to_user_queue.empty() and self.assoc.dimse.message is None
                and self.assoc.dimse.msg_queue.empty()):
            self.unpark()
            return False
        self.is_parked = True
        self.sock.settimeout(0)  # one system call a read
        return True

    def _serve(self) -> None:
        got = Message()
        while True:
            try:
                pdu = self._pdu()
            except TimeoutError:  # nothing yet: anything for the DUL thread to do (an abort from here)?
                if self.assoc._kill or not self.dul.to_provider_queue.empty() or self.dul.idle_timer_expired():
                    self._hand_back()  # a message begun, pynetdicom's to finish
                    return
                continue
            except OSError:
                self.lost = self.done = True
                self._hand_back()
                return
            self.dul._idle_timer.restart()
            self.read.append(pdu)
            complete = self._pdvs(pdu, got) if pdu[0] == 0x04 else None
            if complete is None:  # pynetdicom's: a release, an abort, a C-ECHO ...
                self.done = pdu[0] != 0x04
                self._hand_back()
                return
            if complete:
                self.read, request, got = [], got, Message()
                if not self._store(request):
                    self.lost = self.done = True
                    self._hand_back()
                    return

    def _store(self, got: Message) -> bool:
        """Answer a C-STORE request once the sink has taken its instance; False when the answer could not go."""
        from app.dicom.reading import part10_from_network

        elements = got.elements
        sop_class, sop_uid = elements[AFFECTED_SOP_CLASS], elements[AFFECTED_SOP_INSTANCE]
        try:
            uid = uid_value(sop_uid)
            data = part10_from_network(uid_value(sop_class), uid, self.storage[got.context_id][1],
                                       b"".join(got.data), self.calling)
        except Exception:  # noqa: BLE001 - as _on_store answers what it cannot read
            log.info("a C-STORE from %s could not be read", self.calling, exc_info=True)
            status = CANNOT_UNDERSTAND
        else:
            got.data = []
            status = self.server._keep(self.calling, uid, data)
        answer = command([(AFFECTED_SOP_CLASS, sop_class), (COMMAND_FIELD, us(0x8001)),
                          (RESPONDED_TO, elements[MESSAGE_ID]), (DATA_SET_TYPE, us(NO_DATA_SET)), (STATUS, us(status)),
                          (AFFECTED_SOP_INSTANCE, sop_uid)])
        return self._write(message(got.context_id, answer, None, self.max_pdu))

    def _expected(self, got: Message) -> bool:
        return is_store_request(got, self.storage)


class _Checkpoint(threading.Event):
    """Stands in for the association's `_reactor_checkpoint`, which its reactor waits on at every pass: there,
    the reactor's thread reads on the wire first."""

    def __init__(self, wire: _StoreWire):
        super().__init__()
        self.wire = wire

    def wait(self, timeout=None) -> bool:
        wire = self.wire
        if not wire.done and threading.current_thread() is wire.assoc and super().is_set():
            try:
                wire.turn()
            except Exception:  # noqa: BLE001 - pynetdicom's own way from here
                log.warning("reading C-STOREs on the wire failed", exc_info=True)
                wire.stop()
        return super().wait(timeout)
