"""Send stored instances to a PACS: C-STORE (pynetdicom) or STOW-RS (HTTP), one Outcome per instance.

`on_outcome` hears of each instance as soon as the PACS has confirmed or refused it, so the caller can record
it at once; SendError means the rest could not be sent now (retry them later). C-STORE sends a stored file's
bytes as they are when the PACS accepts its transfer syntax, else the dataset decompressed or re-encoded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from app.dicom import reading
from app.errors import FileProblem, LightboxError
from app.pacs.config import DICOMWEB, PacsConfig
from app.pacs.dicomweb import dicomweb_session
from app.pacs.dimse import (
    AssociationFailed, address_text, network_reason, open_association, seconds_text, service_name, why_lost,
)
from app.pacs.wire import (
    AFFECTED_SOP_CLASS, AFFECTED_SOP_INSTANCE, COMMAND_FIELD, DATA_SET_TYPE, ERROR_COMMENT, MESSAGE_ID, RESPONDED_TO,
    STATUS, Wire, command, command_elements, file_meta, pdus, text_value, us, us_value,
)

log = logging.getLogger(__name__)

SENT, WARNING, FAILED = "sent", "warning", "failed"
EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
MAX_CONTEXTS = 128  # presentation contexts one association can propose (odd IDs 1-255)


@dataclass
class Outcome:
    sop_uid: str
    state: str  # "sent" | "warning" | "failed"
    status: int | None = None  # the DIMSE status, or STOW-RS WarningReason / FailureReason
    message: str = ""  # for warnings and failures, in plain words


# pynetdicom's DUL thread sleeps 1 ms between idle polls, which adds up to a millisecond to every
# request and answer; while a send is under way it polls 5x as often (measured: +20% instances/s).
DUL_POLL_S = 0.0002


class SendError(LightboxError):
    """The send could not go on (PACS unreachable, association refused or lost, access refused): the instances
    without an Outcome were not sent; try them again later. The message is the reason."""


@dataclass
class _Item:
    sop_uid: str  # as the caller named it
    path: Path
    size: int = 0
    study_uid: str = ""
    sop_class: str = ""
    syntax: str = ""
    file_sop_uid: str = ""  # as the file says (STOW-RS answers name this one)
    meta_ok: bool = False  # the file meta names this SOP class and instance: the file can be sent as it is


def send_instances(config: PacsConfig, files: list[tuple[str, Path]], *, secret: str | None = None,
                   on_outcome: Callable[[Outcome], None] | None = None, reporter=None,
                   batch_bytes: int = 32 * 1024 * 1024, studies: dict[str, str] | None = None) -> list[Outcome]:
    """Send stored Part 10 files (sop_uid, path); the outcome of each one that got one, in order of confirmation.
    `studies` (sop_uid -> study UID, as the library knows it) spares reading each file's header to group them.
    Raises SendError (the rest unsent), or Cancelled from the reporter (checked between instances)."""
    tally = _Tally(len(files), on_outcome, reporter)
    items = []
    grouped = config.type == DICOMWEB or studies is not None  # the file meta alone is then enough
    for sop_uid, path in files:
        item = (_read_meta(sop_uid, Path(path), (studies or {}).get(sop_uid, "")) if grouped else None) \
            or _read_header(sop_uid, Path(path))
        if isinstance(item, Outcome):
            tally.report(None, item)
        else:
            items.append(item)
    tally.bytes_total += sum(i.size for i in items)
    tally.progress()
    items = [i for group in _by_study(items) for i in group]
    start = time.perf_counter()
    try:
        if config.type == DICOMWEB:
            _send_stow(config, secret, items, tally, batch_bytes)
        else:
            _send_dimse(config, items, tally)
    finally:
        counts = {s: sum(o.state == s for o in tally.outcomes) for s in (SENT, WARNING, FAILED)}
        log.info("send to %s: %d of %d instances answered (%d sent, %d warnings, %d failed) in %.2f s", config.aet,
                 len(tally.outcomes), len(files), counts[SENT], counts[WARNING], counts[FAILED],
                 time.perf_counter() - start)
    return tally.outcomes


class _Tally:
    def __init__(self, total: int, on_outcome, reporter):
        self.total, self.on_outcome, self.reporter = total, on_outcome, reporter
        self.outcomes: list[Outcome] = []
        self.bytes_done = self.bytes_total = 0

    def report(self, item: _Item | None, outcome: Outcome) -> None:
        self.record(item, outcome)
        self.progress()

    def record(self, item: _Item | None, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if item is not None:
            self.bytes_done += item.size
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def progress(self) -> None:  # raises Cancelled when the job was cancelled
        if self.reporter is not None:
            done = len(self.outcomes)
            self.reporter.update(done, self.total, f"{done} of {self.total} instances "
                                 f"({_mb(self.bytes_done)} of {_mb(self.bytes_total)} MB)")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def _read_header(sop_uid: str, path: Path) -> _Item | Outcome:
    try:
        size = path.stat().st_size
        ds = reading.read(path, header_only=True)
    except FileProblem as exc:
        return Outcome(sop_uid, FAILED, message=f"the stored file cannot be read ({exc.reason})")
    except OSError as exc:
        return Outcome(sop_uid, FAILED, message=f"the stored file cannot be read ({exc.strerror or exc})")
    meta = getattr(ds, "file_meta", None) or {}
    sop_class = str(ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID") or "")
    syntax = str(meta.get("TransferSyntaxUID") or "")
    if not sop_class or not syntax:
        return Outcome(sop_uid, FAILED, message="the stored file names no SOP class or transfer syntax")
    file_sop = str(ds.get("SOPInstanceUID") or sop_uid)
    meta_ok = meta.get("MediaStorageSOPClassUID") == sop_class and meta.get("MediaStorageSOPInstanceUID") == file_sop
    return _Item(sop_uid, path, size, str(ds.get("StudyInstanceUID") or ""), sop_class, syntax, file_sop, meta_ok)


def _read_meta(sop_uid: str, path: Path, study_uid: str = "") -> _Item | None:
    """The item from the file meta alone (a fraction of a header read); None when the meta does not say enough."""
    from pydicom.filereader import read_file_meta_info

    try:
        with open(path, "rb") as f:
            found = file_meta(f.read(_META_BYTES))
            size = os.fstat(f.fileno()).st_size
        if found is not None:  # read here: a tenth of pydicom's time
            values = {number: value.decode("latin-1").strip("\0 ") for number, value in found[0].items()}
            sop_class, file_sop, syntax = (values.get(n, "") for n in (0x0002, 0x0003, 0x0010))
        else:
            meta = read_file_meta_info(path)
            sop_class = str(meta.get("MediaStorageSOPClassUID") or "")
            file_sop = str(meta.get("MediaStorageSOPInstanceUID") or "")
            syntax = str(meta.get("TransferSyntaxUID") or "")
    except Exception:  # noqa: BLE001 - no usable file meta: the full header read decides
        return None
    if not (sop_class and file_sop and syntax):
        return None
    return _Item(sop_uid, path, size, study_uid, sop_class, syntax, file_sop, True)


def _by_study(items: list[_Item]) -> list[list[_Item]]:
    groups: dict[str, list[_Item]] = {}
    for item in items:
        groups.setdefault(item.study_uid, []).append(item)
    return list(groups.values())


def _status_text(code: int, comment: str = "") -> tuple[str, str]:
    """(state, message) for a C-STORE status or a STOW-RS reason code, meanings from pynetdicom's tables."""
    from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, STORAGE_SERVICE_CLASS_STATUS, code_to_category

    category = code_to_category(code)
    if category == STATUS_SUCCESS:
        return SENT, ""
    meaning = STORAGE_SERVICE_CLASS_STATUS.get(code, (None, ""))[1].removeprefix("Refused: ")
    meaning = meaning.lower().replace("sop ", "SOP ")
    detail = f"{meaning or 'an unknown status'} (status 0x{code:04X})"
    if comment:
        detail += f": {comment}"
    if category == STATUS_WARNING:
        return WARNING, f"stored with a warning: {detail}"
    return FAILED, f"the PACS refused it: {detail}"


def _syntax_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name != uid else f"transfer syntax {uid}"


# -- C-STORE ----------------------------------------------------------------------------------------------

def _send_dimse(config: PacsConfig, items: list[_Item], tally: _Tally) -> None:
    from pynetdicom import _config as pynetdicom_config

    # Sending by path streams the file's encoded dataset without decoding it. Process-wide, and only this
    # module passes paths to send_c_store.
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    calling = config.dimse.query_aet
    for study in _by_study(items):
        for chunk in _context_chunks(study):
            _store_chunk(config, calling, chunk, tally)


def _proposals(items: list[_Item]) -> dict[str, list[str]]:
    """SOP class -> the transfer syntaxes to propose, each in a context of its own: those of the files, then
    explicit and implicit little endian."""
    found: dict[str, list[str]] = {}
    for item in items:
        for syntax in (item.syntax, EXPLICIT_LE, IMPLICIT_LE):
            if syntax not in found.setdefault(item.sop_class, []):
                found[item.sop_class].append(syntax)
    return found


def _context_chunks(items: list[_Item]) -> list[list[_Item]]:
    """The items split by SOP class so that each part's contexts fit in one association."""
    parts: list[set[str]] = []
    count = MAX_CONTEXTS
    for sop_class, syntaxes in _proposals(items).items():
        if count + len(syntaxes) > MAX_CONTEXTS:
            parts.append(set())
            count = 0
        parts[-1].add(sop_class)
        count += len(syntaxes)
    return [[i for i in items if i.sop_class in part] for part in parts]


def _store_chunk(config: PacsConfig, calling: str, items: list[_Item], tally: _Tally) -> None:
    from pydicom.uid import UID
    from pynetdicom.presentation import build_context

    contexts = [build_context(UID(sop), UID(syntax)) for sop, syntaxes in _proposals(items).items()
                for syntax in syntaxes]
    try:
        assoc = open_association(config, calling, contexts)
        assoc.dul._run_loop_delay = DUL_POLL_S
    except AssociationFailed as exc:
        if str(exc).startswith("the PACS accepted none of"):  # nothing of this study can go there
            for item in items:
                tally.report(item, Outcome(item.sop_uid, FAILED, message=_not_accepted(item)))
            return
        raise SendError(str(exc)) from None
    except LightboxError as exc:  # a TLS file that cannot be used
        raise SendError(str(exc).rstrip(".")) from None
    try:
        accepted: dict[str, set[str]] = {}
        for cx in assoc.accepted_contexts:
            accepted.setdefault(str(cx.abstract_syntax), set()).add(str(cx.transfer_syntax[0]))
        with _reactor_held(assoc), _Wire.taken(assoc) as wire:
            _store_items(assoc, wire, items, accepted, calling, tally)
    finally:
        watch = assoc.lightbox_watch
        if assoc.is_established and watch.abort is None and watch.ended_by is None:
            assoc.release()


class _HeldCheckpoint(threading.Event):
    """pynetdicom pauses its association reactor for every request and lets it run between them; each pause
    waits for the reactor's next 1 ms poll. While held, the reactor stays paused from one request to the
    next (it has nothing to do while we are the only ones speaking on this association)."""

    held = False

    def set(self) -> None:
        if not self.held:
            super().set()


@contextlib.contextmanager
def _reactor_held(assoc):
    checkpoint = getattr(assoc, "_reactor_checkpoint", None)
    if not isinstance(checkpoint, threading.Event) or not hasattr(assoc, "_is_paused"):
        yield  # another pynetdicom: no shortcut
        return
    held = _HeldCheckpoint()
    held.held = True
    assoc._reactor_checkpoint = held
    checkpoint.set()  # wake the reactor if it waits on the old checkpoint; it then waits on ours
    try:
        yield
    finally:
        held.held = False
        held.set()


def _not_accepted(item: _Item) -> str:
    from pydicom.uid import UID

    return f"the PACS does not accept {service_name(UID(item.sop_class))}"


def _store_one(assoc, item: _Item, syntaxes: set[str], calling: str, number: int) -> Outcome:
    from pydicom.uid import UID

    if not syntaxes:
        return Outcome(item.sop_uid, FAILED, message=_not_accepted(item))
    if item.syntax in syntaxes and item.meta_ok:
        what = item.path
    else:
        plain = syntaxes & {EXPLICIT_LE, IMPLICIT_LE}
        name = service_name(UID(item.sop_class))
        if item.syntax not in syntaxes and not plain:
            return Outcome(item.sop_uid, FAILED, message=f"the PACS accepts {name} only as "
                           f"{', '.join(sorted(_syntax_name(s) for s in syntaxes))}, not as "
                           f"{_syntax_name(item.syntax)}")
        try:
            what = reading.read(item.path)
            if item.syntax not in syntaxes and UID(item.syntax).is_compressed:
                what.decompress(generate_instance_uid=False)  # the same instance, in another transfer syntax
        except FileProblem as exc:
            return Outcome(item.sop_uid, FAILED, message=f"the stored file cannot be read ({exc.reason})")
        except Exception as exc:  # noqa: BLE001 - pydicom's decoders raise many kinds
            log.info("decompressing %s failed", item.path, exc_info=True)
            return Outcome(item.sop_uid, FAILED, message=f"the PACS does not accept {name} as "
                           f"{_syntax_name(item.syntax)}, and the image could not be decompressed "
                           f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})")
    if not assoc.is_established:
        raise SendError(why_lost(assoc, "C-STORE", calling))
    try:
        status = assoc.send_c_store(what, msg_id=_msg_id(number))
    except (ValueError, AttributeError) as exc:  # no usable context, or the dataset cannot be encoded
        return Outcome(item.sop_uid, FAILED, message=f"it cannot be sent to this PACS ({exc})")
    return _answered(assoc, item, status, calling)


def _msg_id(number: int) -> int:
    return number % 65536 or 1


def _answered(assoc, item: _Item, status, calling: str) -> Outcome:
    """The outcome of a C-STORE answer (a mapping with Status and ErrorComment); SendError when there is none."""
    code = status.get("Status") if status else None
    if code is None:
        raise SendError(why_lost(assoc, "C-STORE", calling))
    state, message = _status_text(int(code), str(status.get("ErrorComment") or "").strip())
    return Outcome(item.sop_uid, state, int(code), message)


def _store_items(assoc, wire: _Wire | None, items: list[_Item], accepted: dict[str, set[str]], calling: str,
                 tally: _Tally) -> None:
    """One request at a time, each answered before the next; on the wire, the next request is read from its
    file while the PACS stores the one before."""
    pending = wire.request(items[0], 1) if wire is not None and items else None
    for index, item in enumerate(items):
        number = index + 1
        after = items[index + 1] if index + 1 < len(items) else None
        if pending is not None and wire.park():
            if not assoc.is_established:
                raise SendError(why_lost(assoc, "C-STORE", calling))
            wire.send(pending)
            pending = wire.request(after, number + 1) if after is not None else None
            outcome = _answered(assoc, item, wire.answer(_msg_id(number)), calling)
        else:
            if wire is not None:
                wire.unpark()
            outcome = _store_one(assoc, item, accepted.get(item.sop_class, set()), calling, number)
            pending = wire.request(after, number + 1) if wire is not None and after is not None else None
        tally.report(item, outcome)


# pynetdicom passes every PDU through its DUL thread and two queues and decodes each answer with pydicom:
# ~1 ms an instance, as much as the PACS takes to store a small one. While the DUL thread waits at a gate
# (and the association reactor is held), the sending thread writes the requests and reads the answers itself.
_META_BYTES = 4096  # enough for the file meta of nearly every file
_BLOCK = 1 << 20  # files up to this size are read and framed ahead; larger ones stream in blocks this size


@dataclass
class _Request:
    context_id: int
    command: bytes  # the command set in its P-DATA-TF PDU
    body: bytes | None  # the data set in P-DATA-TF PDUs, or None: stream it from the file
    path: Path
    offset: int  # where the data set starts in the file
    size: int  # data set bytes


class _Wire(Wire):
    """The C-STORE requests of one association, sent and answered by the sending thread. Anything but a plain
    C-STORE answer is handed back to pynetdicom as its DUL thread would have read it, and it takes over."""

    def __init__(self, assoc, dul, sock: socket.socket, max_pdu: int):
        super().__init__(assoc, dul, sock, max_pdu)
        self.contexts: dict[tuple[str, str], int] = {}
        for cx in assoc.accepted_contexts:
            if getattr(cx, "as_scu", True) is not False:
                self.contexts.setdefault((str(cx.abstract_syntax), str(cx.transfer_syntax[0])), cx.context_id)

    def request(self, item: _Item, number: int) -> _Request | None:
        """The item's C-STORE request ready to go, or None when pynetdicom must send it (no context for its own
        transfer syntax, a file meta it must check or an odd file)."""
        cx = self.contexts.get((item.sop_class, item.syntax)) if item.meta_ok else None
        if cx is None:
            return None
        try:
            with open(item.path, "rb") as f:
                head = f.read(_BLOCK)
                offset = (file_meta(head) or (None, None))[1]
                size = (f.seek(0, 2) if len(head) == _BLOCK else len(head)) - (offset or 0)
        except OSError:
            return None
        if offset is None or size <= 0:
            return None
        framed = b"".join(pdus(cx, _command(item.sop_class, item.file_sop_uid, _msg_id(number)), 0x03, 0x01,
                               self.max_pdu))
        body = b"".join(pdus(cx, memoryview(head)[offset:], 0x02, 0x00, self.max_pdu)) if len(head) < _BLOCK \
            else None
        return _Request(cx, framed, body, item.path, offset, size)

    def send(self, request: _Request) -> None:
        try:
            if request.body is not None:
                self.sock.sendall(request.command + request.body)
                return
            self.sock.sendall(request.command)
            step = self.max_pdu - 6 if self.max_pdu else _BLOCK
            block = max(1, _BLOCK // step) * step
            with open(request.path, "rb") as f:
                f.seek(request.offset)
                for start in range(0, request.size, block):
                    data = f.read(min(block, request.size - start))
                    if len(data) != min(block, request.size - start):
                        raise OSError("the file changed while it was sent")
                    last = start + block >= request.size
                    self.sock.sendall(b"".join(pdus(request.context_id, data, 0x02 if last else 0x00, 0x00,
                                                    self.max_pdu)))
        except OSError:
            self.lost = True

    def answer(self, msg_id: int):
        """The answer's Status and ErrorComment, or None when the association is lost or timed out."""
        if not self.lost:
            try:
                head = self._recv(6, first=True)
                pdu = head + self._recv(struct.unpack_from(">L", head, 2)[0])
            except TimeoutError:  # nothing within the DIMSE timeout: pynetdicom aborts
                self.unpark()
                self.assoc._handle_no_response()
                return None
            except OSError:
                self.lost = True
            else:
                answer = _store_answer(pdu, msg_id)
                if answer is not None:
                    self.dul._idle_timer.restart()
                    return answer
                self._hand_over(pdu)
        if self.lost:
            self.dul.event_queue.put("Evt17")  # the connection failed, as pynetdicom's socket reports it
        self.unpark()
        _, rsp = self.assoc.dimse.get_msg(block=True)
        if rsp is None:
            self.assoc._handle_no_response()
            return None
        return {"Status": getattr(rsp, "Status", None), "ErrorComment": getattr(rsp, "ErrorComment", None)}


def _command(sop_class: str, sop_uid: str, msg_id: int) -> bytes:
    """A C-STORE-RQ command set as pynetdicom encodes it (implicit VR little endian, priority low)."""
    return command([(AFFECTED_SOP_CLASS, sop_class.encode("ascii")), (COMMAND_FIELD, us(0x0001)),
                    (MESSAGE_ID, us(msg_id)), (0x0700, us(0x0002)), (DATA_SET_TYPE, us(0x0001)),
                    (AFFECTED_SOP_INSTANCE, sop_uid.encode("ascii"))])


def _store_answer(pdu: bytes, msg_id: int) -> dict | None:
    """Status and ErrorComment of a C-STORE-RSP to msg_id that is one whole command in one P-DATA-TF PDU."""
    if len(pdu) < 12 or pdu[0] != 0x04 or struct.unpack_from(">L", pdu, 6)[0] != len(pdu) - 10 or pdu[11] != 0x03:
        return None
    elements = command_elements(pdu, 12)
    if elements is None or us_value(elements, COMMAND_FIELD) != 0x8001 or us_value(elements, RESPONDED_TO) != msg_id \
            or us_value(elements, STATUS) is None:
        return None
    return {"Status": us_value(elements, STATUS), "ErrorComment": text_value(elements, ERROR_COMMENT)}


# -- STOW-RS ----------------------------------------------------------------------------------------------

_REFERENCED, _FAILED_SEQ = "00081199", "00081198"
_REF_SOP_UID, _WARNING_REASON, _FAILURE_REASON = "00081155", "00081196", "00081197"


def _send_stow(config: PacsConfig, secret: str | None, items: list[_Item], tally: _Tally, batch_bytes: int) -> None:
    o = config.dicomweb
    try:
        session = dicomweb_session(config, secret)
    except LightboxError as exc:
        raise SendError(str(exc).rstrip(".")) from None
    url = f"{o.url.rstrip('/')}/studies"
    batches = _batches(items, batch_bytes) if o.multipart_stow else [[i] for i in items]
    with session:
        for batch in batches:
            _post(config, session, url, batch, tally)


def _batches(items: list[_Item], limit: int) -> list[list[_Item]]:
    batches: list[list[_Item]] = []
    size = 0
    for item in items:
        if not batches or size + item.size > limit:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += item.size
    return batches


def _multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    while any(boundary.encode() in p for p in parts):
        boundary = uuid.uuid4().hex
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    chunks = []
    for part in parts:
        chunks += [head, part, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


def _post(config: PacsConfig, session: requests.Session, url: str, batch: list[_Item], tally: _Tally) -> None:
    from app.links.uri import redact_url

    o = config.dicomweb
    parts, ready = [], []
    for item in batch:
        try:
            parts.append(item.path.read_bytes())
            ready.append(item)
        except OSError as exc:
            tally.record(item, Outcome(item.sop_uid, FAILED,
                                       message=f"the stored file cannot be read ({exc.strerror or exc})"))
    if not ready:
        tally.progress()
        return
    if o.multipart_stow:
        body, content_type = _multipart(parts)
    else:
        body, content_type = parts[0], "application/dicom"
    where = urlsplit(o.url)
    host = where.hostname or "?"
    port = where.port or (443 if where.scheme == "https" else 80)
    read_timeout = o.timeout_s + len(body) / 2**20  # the PACS stores the whole body before it answers
    try:
        resp = session.post(url, data=body, headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
                            timeout=(o.timeout_s, read_timeout), allow_redirects=False)
    except requests.exceptions.ReadTimeout:
        raise SendError(f"no answer from {address_text(host, port)} within {seconds_text(read_timeout)} "
                        "after sending") from None
    except (requests.exceptions.RequestException, OSError, ValueError) as exc:
        raise SendError(network_reason(exc, host, port, o.timeout_s, where.scheme == "https")) from None
    status = resp.status_code
    if status == 413 and len(ready) > 1:  # too big for the PACS: halves
        half = len(ready) // 2
        _post(config, session, url, ready[:half], tally)
        _post(config, session, url, ready[half:], tally)
        return
    answers = _parse_stow(resp)
    if status in (401, 403):
        raise SendError(f"the PACS refused access (HTTP {status}): " + (
            "the user name, password or token was not accepted" if status == 401 else
            "this account may not store instances there"))
    if status == 404:
        raise SendError(f"there is no STOW-RS service at {redact_url(url)} (HTTP 404)")
    if status == 415 and not o.multipart_stow:
        raise SendError("the PACS does not accept single-part application/dicom bodies (HTTP 415); turn on "
                        "multipart STOW-RS in the configuration")
    if 300 <= status < 400:
        target = resp.headers.get("Location", "")
        raise SendError(f"the STOW-RS address redirects{' to ' + redact_url(target) if target else ''} "
                        f"(HTTP {status}); use the final address as the base URL")
    if not answers and status not in (200, 202, 400, 409, 413):
        raise SendError(f"the PACS failed to store the instances (HTTP {status})" if status >= 500 else
                        f"the PACS refused the request (HTTP {status})")
    for item in ready:
        outcome = answers.get(item.file_sop_uid)
        if outcome is None:
            if status == 200:
                outcome = Outcome(item.sop_uid, SENT)
            elif status == 202:
                outcome = Outcome(item.sop_uid, FAILED, message="the PACS did not say whether it stored it (HTTP 202)")
            elif status == 413:
                outcome = Outcome(item.sop_uid, FAILED, message="it is too large for the PACS (HTTP 413)")
            else:
                outcome = Outcome(item.sop_uid, FAILED, message=f"the PACS refused it (HTTP {status})")
        else:
            outcome.sop_uid = item.sop_uid
        tally.record(item, outcome)  # the whole answer first: a cancel must not hide confirmed instances
    tally.progress()


def _parse_stow(resp: requests.Response) -> dict[str, Outcome]:
    """Outcomes by SOP Instance UID from a DICOM JSON STOW-RS answer (whatever its Content-Type says)."""
    try:
        data = resp.json() if resp.content.strip() else {}
    except ValueError:
        return {}
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        return {}
    found: dict[str, Outcome] = {}
    for item in _values(data, _REFERENCED):
        uid = _first(item, _REF_SOP_UID)
        if uid:
            code = _first(item, _WARNING_REASON)
            if isinstance(code, int) and code:
                _, message = _status_text(code)
                found[str(uid)] = Outcome(str(uid), WARNING, code, message)
            else:
                found[str(uid)] = Outcome(str(uid), SENT)
    for item in _values(data, _FAILED_SEQ):
        uid = _first(item, _REF_SOP_UID)
        if uid:
            code = _first(item, _FAILURE_REASON)
            if isinstance(code, int):
                state, message = _status_text(code)
                if state != FAILED:
                    message = f"the PACS refused it (reason 0x{code:04X})"
            else:
                code, message = None, "the PACS refused it and gave no reason"
            found[str(uid)] = Outcome(str(uid), FAILED, code, message)
    return found


def _values(data: dict, tag: str) -> list:
    element = data.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []


def _first(data: dict, tag: str):
    element = data.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return values[0] if isinstance(values, list) and values else None
