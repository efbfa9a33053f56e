"""Retrieve a study or series from a PACS into the library: WADO-RS (DICOMweb), C-GET or C-MOVE (classic).

The transfer runs on a thread of its own and hands each instance, as received, to the calling thread, which
imports it (app.library.importer.Intake, the PACS's name as source); a C-GET's messages the calling thread reads
itself, on the association's socket, between imports (_GetWire). Cancel stops the transfer (C-CANCEL, or the
HTTP response closed) and keeps what arrived.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from dataclasses import dataclass, field

import requests

from app.errors import Cancelled, LightboxError, UsageError
from app.library.importer import ImportResult, Intake
from app.library.library import Library
from app.pacs.config import DICOMWEB, PacsConfig
from app.pacs.receiver import poll_faster
from app.pacs.dimse import AssociationFailed, network_reason, open_association, why_lost
from app.pacs.wire import (
    AFFECTED_SOP_CLASS, AFFECTED_SOP_INSTANCE, COMMAND_FIELD, DATA_SET_TYPE, ERROR_COMMENT, MESSAGE_ID, NO_DATA_SET,
    RESPONDED_TO, STATUS, Message as _Message, Reader, command, is_store_request, message, text_value, uid_value, us,
    us_value,
)

log = logging.getLogger(__name__)

STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
# Offered for each SOP class a C-GET may bring, the stored syntax most likely among them.
COMPRESSED = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.70",
              "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
              "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99")
MAX_CONTEXTS = 128
_DONE, _DECLINED, _HANDED_OVER = object(), object(), object()


class RetrieveError(LightboxError):
    """Nothing (more) could be retrieved; the message says why in a user's words."""


@dataclass
class RetrieveResult:
    method: str  # "wado" | "get" | "move"
    imported: ImportResult = field(default_factory=ImportResult)
    completed: int = 0  # sub-operations as the PACS counted them (DIMSE), or parts received (WADO-RS)
    failed: int = 0
    warning: int = 0
    notes: list[str] = field(default_factory=list)  # e.g. why C-GET gave way to C-MOVE

    @property
    def ok(self) -> bool:
        return not self.failed and not self.imported.failed and not self.imported.stopped

    @property
    def study_uids(self) -> list[str]:
        return self.imported.studies

    def summary(self) -> str:
        text = f"{self.imported.summary()} ({_METHOD_NAMES[self.method]})"
        if self.failed:
            text += f"; the PACS could not send {self.failed}"
        return text

    def as_dict(self) -> dict:
        return {"method": self.method, "completed": self.completed, "failed": self.failed, "warning": self.warning,
                "notes": self.notes, "ok": self.ok, "summary": self.summary(), "import": self.imported.as_dict()}


_METHOD_NAMES = {"wado": "WADO-RS", "get": "C-GET", "move": "C-MOVE"}


def retrieve(config: PacsConfig, study_uid: str, *, series_uid: str = "", method: str = "auto",
             library: Library | None = None, reporter=None, secret: str | None = None,
             settings=None) -> RetrieveResult:
    """Bring a study (or one series of it) into the library. `method`: "auto" (the configuration's: WADO-RS for
    DICOMweb; C-GET, C-GET then C-MOVE, or C-MOVE for classic DICOM), "wado", "get" or "move".
    RetrieveError when nothing could be retrieved; Cancelled (what arrived is kept) when cancelled."""
    study_uid, series_uid = study_uid.strip(), series_uid.strip()
    if not study_uid:
        raise UsageError("Say which study to retrieve (its Study Instance UID).")
    if not config.imports:
        what = "QIDO-RS/WADO-RS" if config.type == DICOMWEB else "query/retrieve"
        raise RetrieveError(f"{config.name} ({config.aet}) is not set up for {what}: turn it on in the configuration.")
    methods = _methods(config, method)
    own = library is None
    library = library or Library()
    try:
        return _retrieve(config, study_uid, series_uid, methods, library, reporter, secret, settings)
    finally:
        if own:
            library.close()


def _methods(config: PacsConfig, method: str) -> list[str]:
    method = (method or "auto").lower()
    if config.type == DICOMWEB:
        if method not in ("auto", "wado"):
            raise UsageError(f"{config.aet} is a DICOMweb PACS: it retrieves with WADO-RS, not C-{method.upper()}.")
        return ["wado"]
    if method == "wado":
        raise UsageError(f"{config.aet} is a classic DICOM PACS: it retrieves with C-GET or C-MOVE, not WADO-RS.")
    if method not in ("auto", "get", "move"):
        raise UsageError(f"The retrieve method is auto, get, move or wado (not '{method}').")
    if method == "auto":
        return {"auto": ["get", "move"], "get": ["get"], "move": ["move"]}[config.dimse.retrieve_method]
    return [method]


def _retrieve(config, study_uid, series_uid, methods, library, reporter, secret, settings) -> RetrieveResult:
    notes: list[str] = []
    get_failed = None
    for n, method in enumerate(methods):
        result = RetrieveResult(method, notes=notes)
        transfer = _Transfer(config, study_uid, series_uid, method, secret, settings)
        try:
            _run(transfer, library, reporter, result)
        except RetrieveError as exc:
            if n + 1 < len(methods) and not transfer.cancelled:
                get_failed = exc
                notes.append(f"C-GET did not work ({exc}); retrieved with C-MOVE instead")
                log.info("C-GET from %s failed (%s); trying C-MOVE", config.aet, exc)
                continue
            if get_failed is not None:
                raise RetrieveError(f"C-GET did not work ({get_failed}), and C-MOVE did not work either ({exc})") \
                    from None
            raise
        log.info("retrieve of %s from %s: %s", study_uid, config.aet, result.summary())
        return result
    raise AssertionError("unreachable")


def _run(transfer: _Transfer, library: Library, reporter, result: RetrieveResult) -> None:
    """The transfer on its thread; this one imports what it hands over, reports progress and passes on a cancel.
    A C-GET's messages are read on this thread too (the transfer hands it the association): see _GetWire."""
    thread = threading.Thread(target=transfer.run, name=f"retrieve-{transfer.method}", daemon=True)
    with Intake(library, source=transfer.config.name) as intake:
        arrivals = _Arrivals(transfer, intake, reporter)
        thread.start()
        try:
            while True:
                try:
                    item = transfer.items.get(timeout=0.1)
                except queue.Empty:
                    item = None
                if item is _DONE:
                    break
                if isinstance(item, _OnCaller):
                    item.run(arrivals)
                elif item is not None:
                    arrivals.take(*item)
                if arrivals.stopped is not None:  # the library can take no more (a full disk)
                    transfer.cancel()
                    result.imported = intake.result
                    _drain(transfer, thread)
                    raise RetrieveError(str(arrivals.stopped)) from None
                arrivals.poll()
        finally:
            _drain(transfer, thread, intake)  # what arrived before the end is kept
        result.imported = intake.result
    result.completed, result.failed, result.warning = transfer.completed, transfer.failed, transfer.warning
    if arrivals.cancelled:
        kept = result.imported.count("imported")
        raise Cancelled(f"Retrieve cancelled; the {kept} instance{'s' if kept != 1 else ''} that arrived "
                        f"{'are' if kept != 1 else 'is'} in the library")
    if transfer.error is not None:
        if result.imported.entries:  # part of it arrived: say what failed, keep what came
            result.notes.append(str(transfer.error))
            result.failed = max(result.failed, 1)
            return
        raise transfer.error


def _drain(transfer: _Transfer, thread: threading.Thread, intake: Intake | None = None) -> None:
    """Wait for the transfer's end; import what is left (or drop it without `intake`). What the transfer would
    hand this thread goes its own way instead."""
    while thread.is_alive() or not transfer.items.empty():
        try:
            item = transfer.items.get(timeout=0.05)
        except queue.Empty:
            continue
        if isinstance(item, _OnCaller):
            item.decline()
        elif item is not _DONE and intake is not None:
            intake.add(*item)
    thread.join()


class _Arrivals:
    """The importing thread's side: imports what arrives, reports progress, notices a cancel."""

    def __init__(self, transfer: _Transfer, intake: Intake, reporter):
        self.transfer, self.intake, self.reporter = transfer, intake, reporter
        self.label = f"Retrieving with {_METHOD_NAMES[transfer.method]}"
        self.cancelled = False
        self.stopped: LightboxError | None = None  # why the library could take no more

    def take(self, label: str, data: bytes) -> None:
        try:
            self.intake.add(label, data)
        except LightboxError as exc:
            self.stopped = exc

    def poll(self) -> None:
        reporter = self.reporter
        if reporter is None:
            return
        if reporter.cancelled and not self.cancelled:
            self._cancel()
        if not self.cancelled:
            done, total = self.transfer.progress()
            failed = self.transfer.failed
            try:
                reporter.update(done, total, f"{self.label}: {done} of {total or '?'} instances"
                                + (f" ({failed} failed)" if failed else ""))
            except Cancelled:  # cancelled just now
                self._cancel()

    def _cancel(self) -> None:
        self.cancelled = True
        self.transfer.cancel()


class _OnCaller:
    """Work the transfer hands to the importing thread, waiting until it is done (or declined)."""

    def __init__(self, work):
        self.work = work
        self.done = threading.Event()
        self.result = None
        self.error: BaseException | None = None

    def run(self, arrivals: _Arrivals) -> None:
        try:
            self.result = self.work(arrivals)
        except Exception as exc:  # noqa: BLE001 - raised again on the transfer's thread
            self.error = exc
        except BaseException:  # an interrupt stays on this thread; the transfer ends
            self.error = RetrieveError("the retrieve was interrupted")
            raise
        finally:
            self.done.set()

    def decline(self) -> None:
        self.result = _DECLINED
        self.done.set()


class _Transfer:
    """One retrieve's network side: puts (label, bytes) in `items`, then _DONE; `error` says why it ended early."""

    def __init__(self, config: PacsConfig, study_uid: str, series_uid: str, method: str, secret, settings):
        self.config, self.study_uid, self.series_uid, self.method = config, study_uid, series_uid, method
        self.secret, self.settings = secret, settings
        self.items: queue.Queue = queue.Queue()
        self.error: RetrieveError | None = None
        self.completed = self.failed = self.warning = 0
        self.remaining: int | None = None
        self.received = 0
        self.expected: int | None = None
        self.cancelled = False
        self.cancel_sent = False  # the C-CANCEL went out
        self._cancel_hook = None

    def progress(self) -> tuple[int, int | None]:
        if self.remaining is not None:
            done = self.completed + self.failed + self.warning
            return max(done, self.received), done + self.remaining
        return self.received, self.expected

    def cancel(self) -> None:
        self.cancelled = True
        hook = self._cancel_hook
        if hook is not None:
            try:
                hook()
            except Exception:  # noqa: BLE001 - the transfer may be ending anyway
                log.debug("cancel hook failed", exc_info=True)

    def put(self, label: str, data: bytes) -> None:
        self.received += 1
        self.items.put((label, data))

    def run(self) -> None:
        try:
            {"wado": self._wado, "get": self._get, "move": self._move}[self.method]()
        except RetrieveError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 - reported, never a traceback for the user
            log.exception("retrieve failed")
            self.error = RetrieveError(f"the retrieve failed unexpectedly ({type(exc).__name__})")
        finally:
            self.items.put(_DONE)

    # -- WADO-RS --

    def _wado(self) -> None:
        from app.pacs.dicomweb import dicomweb_session
        from app.pacs.query import QueryError, find_series, find_studies, StudyQuery

        config, o = self.config, self.config.dicomweb
        try:
            if self.series_uid:
                counts = [s.instance_count for s in find_series(config, self.study_uid, secret=self.secret,
                                                                settings=self.settings) if s.uid == self.series_uid]
            else:
                counts = [s.instance_count for s in find_studies(config, StudyQuery(study_uid=self.study_uid),
                                                                 secret=self.secret, settings=self.settings)]
            self.expected = counts[0] if counts else None
        except QueryError as exc:
            log.info("instance count unknown: %s", exc)
        url = f"{o.url.rstrip('/')}/studies/{self.study_uid}" + (f"/series/{self.series_uid}" if self.series_uid else "")
        try:
            session = dicomweb_session(config, self.secret, self.settings)
        except LightboxError as exc:
            raise RetrieveError(str(exc).rstrip(".")) from None
        with session:
            resp = self._wado_get(session, url, 'multipart/related; type="application/dicom"; transfer-syntax=*')
            if resp.status_code in (400, 406):  # a server that does not take transfer-syntax=*
                resp.close()
                resp = self._wado_get(session, url, 'multipart/related; type="application/dicom"')
            self._check_wado(resp)
            self._cancel_hook = resp.close
            try:
                for number, part in enumerate(multipart_parts(resp), 1):
                    if self.cancelled:
                        return
                    self.completed += 1
                    self.put(f"{self.study_uid}/{number}", part)
            except (requests.RequestException, OSError, ValueError, AttributeError) as exc:
                if self.cancelled:
                    return
                raise RetrieveError(f"the PACS's answer broke off after {self.completed} instances "
                                    f"({type(exc).__name__})") from None
            finally:
                resp.close()

    def _wado_get(self, session, url: str, accept: str) -> requests.Response:
        o = self.config.dicomweb
        where = requests.utils.urlparse(o.url)
        try:
            return session.get(url, headers={"Accept": accept}, stream=True, timeout=(o.timeout_s, o.timeout_s),
                               allow_redirects=False)
        except (requests.RequestException, OSError, ValueError) as exc:
            port = where.port or (443 if where.scheme == "https" else 80)
            raise RetrieveError(network_reason(exc, where.hostname or "?", port, o.timeout_s,
                                               where.scheme == "https")) from None

    def _check_wado(self, resp: requests.Response) -> None:
        status = resp.status_code
        what = f"series {self.series_uid}" if self.series_uid else f"study {self.study_uid}"
        if status == 200:
            return
        resp.close()
        if status in (401, 403):
            raise RetrieveError(f"the PACS refused access (HTTP {status}): " + (
                "the user name, password or token was not accepted" if status == 401 else
                "this account may not retrieve from it"))
        if status == 404:
            raise RetrieveError(f"the PACS does not have {what} (HTTP 404)")
        if status == 204:
            raise RetrieveError(f"the PACS has no instances of {what}")
        if 300 <= status < 400:
            raise RetrieveError(f"the WADO-RS address redirects (HTTP {status}); use the final address as the base URL")
        raise RetrieveError(f"the PACS could not send {what} (HTTP {status})")

    # -- C-GET --

    def _get(self) -> None:
        from pydicom.uid import UID
        from pynetdicom import build_role, evt
        from pynetdicom.presentation import build_context

        config = self.config
        calling = config.dimse.query_aet
        sop_classes = self._sop_classes()
        contexts = [build_context(UID(STUDY_ROOT_GET))] + _storage_contexts(sop_classes, MAX_CONTEXTS - 1)
        roles = [build_role(UID(uid), scp_role=True) for uid in sop_classes]
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_OPEN, poll_faster)]
        try:
            assoc = open_association(config, calling, contexts, evt_handlers=handlers, ext_neg=roles, max_pdu=0)
        except AssociationFailed as exc:
            raise RetrieveError(str(exc)) from None
        try:
            if not any(str(cx.abstract_syntax) == STUDY_ROOT_GET for cx in assoc.accepted_contexts):
                raise RetrieveError(f"{config.aet} does not offer C-GET to {calling}")
            self._requests(assoc, "C-GET", UID(STUDY_ROOT_GET), lambda ds: self._get_answers(assoc, ds))
        finally:
            _release(assoc)

    def _get_answers(self, assoc, identifier):
        """The C-GET's answers: read by the importing thread on the wire, or pynetdicom's (from where the wire
        left off, if it did)."""
        from pydicom.uid import UID

        model = UID(STUDY_ROOT_GET)
        got = self._on_caller(lambda arrivals: _GetWire.follow(assoc, identifier, self, arrivals))
        if got is _DECLINED:
            yield from assoc.send_c_get(identifier, model)
        elif got is _HANDED_OVER:
            cx = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == model)
            yield from assoc._wrap_get_move_responses(cx.transfer_syntax[0])
        else:
            yield got, None

    def _on_caller(self, work):
        """work(arrivals) run on the importing thread; its result, or _DECLINED when that thread is past taking
        work (the retrieve is ending)."""
        call = _OnCaller(work)
        self.items.put(call)
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def _sop_classes(self) -> list[str]:
        """The SOP classes of the instances to bring, from an IMAGE-level C-FIND; the common ones if the PACS
        does not answer that."""
        from app.pacs.query import QueryError, find_instances, study_sop_classes

        if not self.series_uid:
            try:
                found, self.expected = study_sop_classes(self.config, self.study_uid)
                if found:
                    return found
            except QueryError as exc:
                log.info("SOPClassesInStudy not answered: %s", exc)
        try:
            instances = find_instances(self.config, self.study_uid, self.series_uid)
            self.expected = len(instances) or None
            found = sorted({sop_class for _, sop_class, _ in instances if sop_class})
        except QueryError as exc:
            log.info("SOP classes of %s unknown (%s): offering the common ones", self.study_uid, exc)
            found = []
        if not found:
            from pynetdicom import StoragePresentationContexts

            found = [str(cx.abstract_syntax) for cx in StoragePresentationContexts][:(MAX_CONTEXTS - 1) // 2]
        return found

    def _on_store(self, event) -> int:
        from app.pacs.receiver import received_file

        try:
            data = received_file(event)
        except Exception:  # noqa: BLE001
            log.info("a C-STORE of the retrieve could not be read", exc_info=True)
            return 0xC000
        self.put(f"{self.config.aet}/{getattr(event.request, 'AffectedSOPInstanceUID', '?')}", data)
        return 0x0000

    def _identifier(self):
        from pydicom.dataset import Dataset

        ds = Dataset()
        ds.QueryRetrieveLevel = "SERIES" if self.series_uid else "STUDY"
        ds.StudyInstanceUID = self.study_uid
        if self.series_uid:
            ds.SeriesInstanceUID = self.series_uid
        return ds

    def _requests(self, assoc, doing: str, model, send) -> None:
        """Follow the pending answers of a C-GET or C-MOVE to the final one; C-CANCEL when cancelled."""
        calling = self.config.dimse.query_aet
        context_id = next((cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax == model), None)

        def cancel():
            if not self.cancel_sent and context_id is not None and assoc.is_established:
                self.cancel_sent = True
                assoc.send_c_cancel(1, context_id)

        self._cancel_hook = cancel
        final = None
        for status, _ in send(self._identifier()):
            code = status.get("Status") if status else None
            if code is None:
                raise RetrieveError(why_lost(assoc, doing, calling))
            self._count(status)
            code = int(code)
            if code in (0xFF00, 0xFF01):
                if self.cancelled:
                    cancel()
                continue
            final = code
            break
        if final is None:
            raise RetrieveError(why_lost(assoc, doing, calling))
        if final == 0xFE00 or self.cancelled:
            return
        if final in (0x0000,):
            return
        if final == 0xB000:  # some sub-operations failed: what came is kept, the count says how many did not
            if not self.failed:
                self.failed = 1
            return
        raise RetrieveError(self._failure(doing, final, status))

    def _count(self, status) -> None:
        for attr, keyword in (("remaining", "NumberOfRemainingSuboperations"),
                              ("completed", "NumberOfCompletedSuboperations"),
                              ("failed", "NumberOfFailedSuboperations"), ("warning", "NumberOfWarningSuboperations")):
            value = status.get(keyword)
            if value is not None:
                setattr(self, attr, int(value))

    def _failure(self, doing: str, code: int, status) -> str:
        o = self.config.dimse
        comment = str(status.get("ErrorComment") or "").strip()
        if code == 0xA801:
            return (f"the PACS does not know Lightbox's AE title {o.move_aet} at {self.local_host}:{o.move_port}: "
                    "add it to the PACS's list of destinations")
        meanings = {0xA701: "it is out of resources to find the instances",
                    0xA702: "it is out of resources to send the instances",
                    0xA900: "the request does not match what it supports",
                    0xAA00: "none of the storage services Lightbox offered fits the instances",
                    0x0122: f"it does not support {doing}", 0x0124: f"it does not allow {doing} from this computer"}
        what = meanings.get(code) or ("it could not process the request" if 0xC000 <= code <= 0xCFFF else "failure")
        text = f"the PACS refused the {doing}: {what} (status 0x{code:04X})"
        text = f"{text}: {comment}" if comment else text
        if doing == "C-MOVE" and 0xC000 <= code <= 0xCFFF and not (self.completed or self.failed or self.received):
            # Some PACS (Orthanc) answer an unknown destination with a plain failure instead of 0xA801.
            text += (f"; perhaps it does not know Lightbox's AE title {o.move_aet} at {self.local_host}:{o.move_port} "
                     f"(add it to the PACS's list of destinations), or it does not have this "
                     f"{'series' if self.series_uid else 'study'}")
        return text

    local_host = "this computer"

    # -- C-MOVE --

    def _move(self) -> None:
        from pydicom.uid import UID
        from pynetdicom import evt
        from pynetdicom.presentation import build_context

        from app.pacs.receiver import ReceiverError, StorageServer

        config, o = self.config, self.config.dimse
        calling = o.query_aet
        server = StorageServer.running(o.move_port)
        own = None
        if server is None or server.aet != o.move_aet:
            if server is not None:
                raise RetrieveError(f"port {o.move_port} already receives as {server.aet}, not {o.move_aet}")
            try:
                own = server = StorageServer(o.move_aet, o.move_port, self._sink).start()
            except ReceiverError as exc:
                raise RetrieveError(str(exc).rstrip(".")) from None
        try:
            with server.diverted(self._sink):
                try:
                    assoc = open_association(config, calling, [build_context(UID(STUDY_ROOT_MOVE))],
                                             evt_handlers=[(evt.EVT_CONN_OPEN, poll_faster)])
                except AssociationFailed as exc:
                    raise RetrieveError(str(exc)) from None
                try:
                    sock = getattr(assoc.dul.socket, "socket", None)
                    if sock is not None:
                        self.local_host = sock.getsockname()[0]
                    if not any(str(cx.abstract_syntax) == STUDY_ROOT_MOVE for cx in assoc.accepted_contexts):
                        raise RetrieveError(f"{config.aet} does not offer C-MOVE to {calling}")
                    self._requests(assoc, "C-MOVE", UID(STUDY_ROOT_MOVE),
                                   lambda ds: self._move_answers(assoc, ds, o.move_aet))
                finally:
                    _release(assoc)
        finally:
            if own is not None:
                own.stop(wait=False)

    def _move_answers(self, assoc, identifier, destination: str):
        """The C-MOVE's answers: read on the wire by this thread, or pynetdicom's (as for a C-GET)."""
        from pydicom.uid import UID

        model = UID(STUDY_ROOT_MOVE)
        got = _MoveWire.follow(assoc, identifier, self, _Quiet(), destination)
        if got is _DECLINED:
            yield from assoc.send_c_move(identifier, destination, model)
        elif got is _HANDED_OVER:
            cx = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == model)
            yield from assoc._wrap_get_move_responses(cx.transfer_syntax[0])
        else:
            yield got, None

    def _sink(self, calling: str, label: str, data: bytes) -> None:
        self.put(label, data)


def _release(assoc) -> None:
    """Release the association on a thread of its own: the retrieve's outcome is known by then, and pynetdicom
    waits for the PACS's answer and then polls its threads' end every 10 ms. (Not a daemon: an exiting process
    still releases.)"""
    if assoc.is_established:
        threading.Thread(target=assoc.release, name="retrieve-release").start()


def _storage_contexts(sop_classes: list[str], room: int) -> list:
    """Contexts for the storage sub-operations: one per (SOP class, transfer syntax) while they fit, so that each
    instance can come as stored; else one uncompressed and one compressed context per SOP class."""
    from pydicom.uid import UID
    from pynetdicom.presentation import build_context

    syntaxes = (EXPLICIT_LE, IMPLICIT_LE) + COMPRESSED
    if len(sop_classes) * len(syntaxes) <= room:
        return [build_context(UID(c), UID(s)) for c in sop_classes for s in syntaxes]
    if len(sop_classes) * 2 <= room:
        return [cx for c in sop_classes for cx in (build_context(UID(c), [UID(EXPLICIT_LE), UID(IMPLICIT_LE)]),
                                                   build_context(UID(c), [UID(s) for s in COMPRESSED]))]
    return [build_context(UID(c), [UID(EXPLICIT_LE), UID(IMPLICIT_LE)]) for c in sop_classes[:room]]


# -- C-GET on the wire ----------------------------------------------------------------------------------

class _GetWire(Reader):
    """A C-GET followed by the importing thread on the association's socket (app.pacs.wire): it writes the
    request, answers each C-STORE of the PACS at once and imports the instance while the PACS reads the answer
    and sends the next. Anything unusual goes back to pynetdicom, which carries on from there."""

    MSG_ID = 1
    SLICE_S = 0.1  # while the PACS is silent, progress and cancel are looked at this often
    MODEL, REQUEST, ANSWER = STUDY_ROOT_GET, 0x0010, 0x8010
    destination = b""  # a C-MOVE's

    @classmethod
    def fits(cls, assoc) -> bool:
        return (isinstance(getattr(assoc, "_reactor_checkpoint", None), threading.Event)
                and hasattr(assoc, "_is_paused") and hasattr(assoc, "_wrap_get_move_responses"))

    @classmethod
    def follow(cls, assoc, identifier, transfer: _Transfer, arrivals: _Arrivals, destination: str = ""):
        """The C-GET's (or C-MOVE's) final answer (a dict; empty when none came in time), _HANDED_OVER
        (pynetdicom's answers follow) or _DECLINED (nothing sent: pynetdicom's own way)."""
        from pydicom.uid import UID
        from pynetdicom.dsutils import encode

        cx = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == UID(cls.MODEL))
        syntax = str(cx.transfer_syntax[0])
        if syntax not in (IMPLICIT_LE, EXPLICIT_LE):
            return _DECLINED
        data_set = encode(identifier, syntax == IMPLICIT_LE, True)
        with cls.taken(assoc) as wire:
            if wire is None or not data_set or not assoc.is_established:
                return _DECLINED
            wire.destination = (destination + " " * (len(destination) % 2)).encode("ascii")
            # pynetdicom pauses the association's reactor for a request: it would take the answers otherwise
            assoc._reactor_checkpoint.clear()
            while not assoc._is_paused:
                time.sleep(0.0001)
            outcome = _DECLINED
            hook, transfer._cancel_hook = transfer._cancel_hook, None  # the C-CANCEL goes on the wire too
            try:
                if wire.park():
                    outcome = wire._follow(cx.context_id, data_set, transfer, arrivals)
            finally:
                transfer._cancel_hook = hook
                if outcome is not _HANDED_OVER:  # else pynetdicom's answers end the pause
                    assoc._reactor_checkpoint.set()
            return outcome

    def __init__(self, assoc, dul, sock, max_pdu: int):
        super().__init__(assoc, dul, sock, max_pdu)
        self.storage = {cx.context_id: (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                        for cx in assoc.accepted_contexts if getattr(cx, "as_scp", False) is True}
        self.source_aet = str(getattr(assoc.requestor, "ae_title", "") or "")  # as received_file names it

    def _follow(self, context_id: int, data_set: bytes, transfer: _Transfer, arrivals: _Arrivals):
        self.sock.settimeout(0)  # one system call a read: with a timeout, Python polls before each
        destination = [(0x0600, self.destination)] if self.destination else []  # Move Destination
        request = command([(AFFECTED_SOP_CLASS, self.MODEL.encode()), (COMMAND_FIELD, us(self.REQUEST)),
                           (MESSAGE_ID, us(self.MSG_ID)), *destination, (0x0700, us(0x0002)),
                           (DATA_SET_TYPE, us(0x0001))])
        if not self._write(message(context_id, request, data_set, self.max_pdu)):
            return self._lost()
        got = _Message()
        while True:
            if transfer.cancelled and not transfer.cancel_sent:
                transfer.cancel_sent = True
                cancel = command([(COMMAND_FIELD, us(0x0FFF)), (RESPONDED_TO, us(self.MSG_ID)),
                                  (DATA_SET_TYPE, us(NO_DATA_SET))])
                if not self._write(message(context_id, cancel, None, self.max_pdu)):
                    return self._lost()
            try:
                pdu = self._pdu()
            except TimeoutError:  # nothing yet
                patience = self.assoc.dimse_timeout
                if patience is not None and time.monotonic() - self.heard > patience:
                    self.unpark()
                    self.assoc._handle_no_response()  # pynetdicom's way: abort
                    return {}
                arrivals.poll()
                continue
            except OSError:
                return self._lost()
            self.dul._idle_timer.restart()
            self.read.append(pdu)
            complete = self._pdvs(pdu, got) if pdu[0] == 0x04 else None
            if complete is None:  # not what this loop reads: pynetdicom reads on from this message's start
                self._hand_back()
                return _HANDED_OVER
            if not complete:
                continue
            self.read, done, got = [], got, _Message()
            if us_value(done.elements, COMMAND_FIELD) == 0x0001:
                if not self._store(done, transfer, arrivals):
                    return self._lost()
                continue
            status = {"Status": us_value(done.elements, STATUS)}
            for number, keyword in _SUBOPERATIONS.items():
                if us_value(done.elements, number) is not None:
                    status[keyword] = us_value(done.elements, number)
            if ERROR_COMMENT in done.elements:
                status["ErrorComment"] = text_value(done.elements, ERROR_COMMENT)
            if status["Status"] not in (0xFF00, 0xFF01):
                self._hand_back()  # anything after the final answer (nothing, normally) is pynetdicom's
                return status
            transfer._count(status)
            arrivals.poll()

    def _store(self, got: _Message, transfer: _Transfer, arrivals: _Arrivals) -> bool:
        """Answer a C-STORE request, then import its instance; False when the answer could not be sent."""
        from app.dicom.reading import part10_from_network
        from app.pacs.receiver import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS

        elements = got.elements
        sop_class, sop_uid = elements[AFFECTED_SOP_CLASS], elements[AFFECTED_SOP_INSTANCE]
        status, data, label = SUCCESS, None, ""
        if arrivals.stopped is not None:
            status = OUT_OF_RESOURCES
        else:
            try:
                uid = uid_value(sop_uid)
                head = part10_from_network(uid_value(sop_class), uid, self.storage[got.context_id][1], b"",
                                           self.source_aet)
                data, label = b"".join([head, *got.data]), f"{transfer.config.aet}/{uid}"
            except Exception:  # noqa: BLE001 - as _on_store answers what it cannot read
                log.info("a C-STORE of the retrieve could not be read", exc_info=True)
                status = CANNOT_UNDERSTAND
        answer = command([(AFFECTED_SOP_CLASS, sop_class), (COMMAND_FIELD, us(0x8001)),
                          (RESPONDED_TO, elements[MESSAGE_ID]), (DATA_SET_TYPE, us(NO_DATA_SET)), (STATUS, us(status)),
                          (AFFECTED_SOP_INSTANCE, sop_uid)])
        if not self._write(message(got.context_id, answer, None, self.max_pdu)):
            return False
        if data is not None:
            transfer.received += 1
            arrivals.take(label, data)
            if arrivals.stopped is not None:  # the library is full: the rest is cancelled (and refused)
                transfer.cancel()
        arrivals.poll()
        return True

    def _expected(self, got: _Message) -> bool:
        """A C-STORE request with a data set on a storage context of its SOP class, or an answer to the C-GET."""
        elements = got.elements
        if elements is None:
            return False
        field = us_value(elements, COMMAND_FIELD)
        if field == self.ANSWER:
            return us_value(elements, RESPONDED_TO) == self.MSG_ID and us_value(elements, STATUS) is not None
        return is_store_request(got, self.storage)

    def _lost(self):
        """The connection failed: pynetdicom hears of what came before and of that, as from its own socket."""
        self.lost = True
        self._hand_back()
        return _HANDED_OVER


class _MoveWire(_GetWire):
    """A C-MOVE followed on the wire by the transfer's thread: only its answers come on this association (the
    instances come to the storage SCP)."""

    MODEL, REQUEST, ANSWER = STUDY_ROOT_MOVE, 0x0021, 0x8021

    def __init__(self, assoc, dul, sock, max_pdu: int):
        super().__init__(assoc, dul, sock, max_pdu)
        self.storage = {}


class _Quiet:
    """The arrivals of a C-MOVE's wire: none on its association."""

    stopped = None

    def poll(self) -> None:
        pass


_SUBOPERATIONS = {0x1020: "NumberOfRemainingSuboperations", 0x1021: "NumberOfCompletedSuboperations",
                  0x1022: "NumberOfFailedSuboperations", 0x1023: "NumberOfWarningSuboperations"}


# -- multipart/related ------------------------------------------------------------------------------

def multipart_parts(resp: requests.Response, chunk_size: int = 1 << 20):
    """The bodies of a streamed multipart/related response, each as bytes, as they complete.
    (dicomweb-client parses each part into a dataset; the library wants the bytes as sent.)"""
    content_type = resp.headers.get("Content-Type", "")
    match = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    if not content_type.lower().startswith("multipart/related") or not match:
        body = resp.content
        if body:
            yield body
        return
    delimiter = b"\r\n--" + match.group(1).encode("latin-1")
    buffer = bytearray(b"\r\n")  # the first delimiter may start the body
    start = None  # where the current part's headers begin
    searched = 0
    for chunk in resp.iter_content(chunk_size):
        buffer += chunk
        while True:
            found = buffer.find(delimiter, searched)
            if found < 0:
                searched = max(0, len(buffer) - len(delimiter))
                break
            after = found + len(delimiter)
            if len(buffer) < after + 2:  # is it the closing delimiter? the next chunk will tell
                searched = found
                break
            if start is not None:
                yield _part_body(bytes(buffer[start:found]))
            if buffer[after:after + 2] == b"--":
                return
            del buffer[:after]
            start, searched = 0, 0


def _part_body(part: bytes) -> bytes:
    head_end = part.find(b"\r\n\r\n")
    if head_end < 0:
        raise ValueError("a part without headers")
    return part[head_end + 4:]
