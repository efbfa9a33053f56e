"""Talking DIMSE on an association's socket directly, while pynetdicom's DUL thread waits at a gate.

pynetdicom passes every PDU through its DUL thread and two queues and decodes each message with pydicom: about
a millisecond a message, as much as a PACS takes to store or send a small instance. For the bulk messages of a
C-STORE send (app.pacs.send), a C-GET or C-MOVE (app.pacs.retrieve) and the storage SCP (app.pacs.receiver), the
thread doing the work writes and reads the PDUs itself. Anything unusual goes back to pynetdicom as its DUL thread would have read it, and it takes over.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
import time

# Element numbers of a command set (group 0000).
AFFECTED_SOP_CLASS, COMMAND_FIELD, MESSAGE_ID, RESPONDED_TO = 0x0002, 0x0100, 0x0110, 0x0120
DATA_SET_TYPE, STATUS, ERROR_COMMENT, AFFECTED_SOP_INSTANCE = 0x0800, 0x0900, 0x0902, 0x1000
NO_DATA_SET = 0x0101

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


class Gate(threading.Event):
    """Stands in for the association's `_dul_ready` event, which pynetdicom's DUL thread checks at the top of
    its loop: while closed, that thread waits there and leaves the socket to us."""

    def __init__(self, thread: threading.Thread):
        super().__init__()
        super().set()
        self.thread = thread
        self.opened, self.parked = threading.Event(), threading.Event()
        self.opened.set()
        self.stepping = False
        self.unless = None  # a test that opens the gate (checked while closed)

    def is_set(self) -> bool:
        if threading.current_thread() is self.thread and not self.opened.is_set():
            self.parked.set()
            while not self.opened.wait(None if self.unless is None else 0.05):
                if self.unless():
                    self.parked.clear()
                    self.opened.set()
            if self.stepping:  # one pass, then back here
                self.stepping = False
                self.opened.clear()
        return super().is_set()

    def step(self, timeout: float) -> bool:
        """Let the parked thread make one pass of its loop; whether it is parked again within `timeout`."""
        self.parked.clear()
        self.stepping = True
        self.opened.set()
        return self.parked.wait(timeout)


class Wire:
    """An established association's socket, taken from pynetdicom's DUL thread while it is parked."""

    def __init__(self, assoc, dul, sock: socket.socket, max_pdu: int):
        self.assoc, self.dul, self.sock, self.max_pdu = assoc, dul, sock, max_pdu  # max_pdu 0: no limit
        self.gate = Gate(dul)
        self.is_parked, self.lost = False, False
        self.saved_timeout = sock.gettimeout()

    @classmethod
    def fits(cls, assoc) -> bool:
        """Whatever else a kind of wire needs of this pynetdicom."""
        return True

    @classmethod
    def made(cls, assoc):
        """The wire of an association (its gate not yet in place), or None when this pynetdicom's internals
        differ."""
        dul = getattr(assoc, "dul", None)
        sock = getattr(getattr(dul, "socket", None), "socket", None)
        parts = ("_decode_pdu", "event_queue", "_recv_pdu", "to_provider_queue", "state_machine", "_idle_timer")
        max_pdu = getattr(getattr(assoc, "dimse", None), "maximum_pdu_size", None)
        if (not isinstance(getattr(assoc, "_dul_ready", None), threading.Event) or not isinstance(sock, socket.socket)
                or not isinstance(dul, threading.Thread) or not all(hasattr(dul, name) for name in parts)
                or not hasattr(assoc, "_handle_no_response") or not hasattr(assoc.dimse, "msg_queue")
                or not isinstance(max_pdu, int) or 0 < max_pdu < 256 or not cls.fits(assoc)):
            return None
        return cls(assoc, dul, sock, max_pdu)

    @classmethod
    @contextlib.contextmanager
    def taken(cls, assoc):
        """The wire of an established association, or None when this pynetdicom's internals differ."""
        wire = cls.made(assoc)
        if wire is None:
            yield None  # an odd peer or another pynetdicom: pynetdicom's own way
            return
        ready, assoc._dul_ready = assoc._dul_ready, wire.gate
        try:
            yield wire
        finally:
            wire.unpark()
            assoc._dul_ready = ready

    def park(self) -> bool:
        """Stop the DUL thread at its gate; False (and it runs on) unless it then has nothing left to do."""
        if self.is_parked:
            return True
        if self.lost:
            return False
        self.gate.opened.clear()
        while not self.gate.parked.wait(0.05):
            if not self.dul.is_alive():
                self.unpark()
                return False
        dul = self.dul
        if not (dul.state_machine.current_state == "Sta6" and dul.event_queue.empty() and dul._recv_pdu.empty()
                and dul.to_provider_queue.empty() and self.assoc.dimse.msg_queue.empty()):
            self.unpark()
            return False
        self.is_parked = True
        self.sock.settimeout(self.assoc.dimse_timeout)
        return True

    def unpark(self) -> None:
        if self.is_parked:
            with contextlib.suppress(OSError):
                self.sock.settimeout(self.saved_timeout)
        self.is_parked = False
        self.gate.parked.clear()
        self.gate.opened.set()

    def _recv(self, count: int, first: bool = False) -> bytes:
        data = bytearray()
        while len(data) < count:
            try:
                got = self.sock.recv(count - len(data))
            except TimeoutError:
                if first and not data:
                    raise
                raise OSError("timed out within a PDU") from None
            if not got:
                raise OSError("connection closed")
            data += got
        return bytes(data)

    def _hand_over(self, pdu: bytes) -> None:
        """A PDU read here goes to pynetdicom as if its DUL thread had read it (an A-ABORT, a release ...)."""
        try:
            decoded, event = self.dul._decode_pdu(bytearray(pdu))
        except Exception:  # noqa: BLE001 - pynetdicom's DUL treats it the same way
            self.dul.event_queue.put("Evt19")
            return
        self.dul.event_queue.put(event)
        self.dul._recv_pdu.put(decoded)


class Reader(Wire):
    """A wire that reads whole messages of PDUs itself (a C-GET's answers, a storage SCP's requests): what
    `_expected` does not take goes back to pynetdicom from that message's start."""

    SLICE_S = 0.1  # while the peer is silent, the reader looks around this often

    def __init__(self, assoc, dul, sock, max_pdu: int):
        super().__init__(assoc, dul, sock, max_pdu)
        self.read: list[bytearray] = []  # the PDUs of the message being read, for a hand-over
        self.buffer = bytearray()  # what arrived and is not yet read as PDUs
        self.area = bytearray(1 << 18)
        self.area_view = memoryview(self.area)
        self.heard = time.monotonic()

    def _expected(self, got: Message) -> bool:
        raise NotImplementedError

    def _pdvs(self, pdu: bytearray, got: Message) -> bool | None:
        """The PDVs of a P-DATA-TF PDU added to the message being read: True when it is complete (which must be at
        the PDU's end), False when more is to come, None when it is not a message `_expected` takes."""
        view, pos, end = memoryview(pdu), 6, len(pdu)
        while pos < end:
            if pos + 6 > end:
                return None
            length, context_id, header = struct.unpack_from(">LBB", pdu, pos)
            start, pos = pos + 6, pos + 4 + length
            if length < 2 or pos > end or context_id != (got.context_id or context_id):
                return None
            got.context_id = context_id
            if header & 1:  # a command fragment
                if got.elements is not None:
                    return None
                got.command.append(view[start:pos])
                if header & 2:
                    got.elements = command_elements(b"".join(got.command))
                    if not self._expected(got):
                        return None
                    if us_value(got.elements, DATA_SET_TYPE) == NO_DATA_SET:
                        return True if pos == end else None
            else:
                if got.elements is None or us_value(got.elements, DATA_SET_TYPE) == NO_DATA_SET:
                    return None
                got.data.append(view[start:pos])
                if header & 2:
                    return True if pos == end else None
        return False


    def _write(self, data: bytes) -> bool:
        view, since = memoryview(data), time.monotonic()
        try:
            while view:
                try:
                    view = view[self.sock.send(view):]
                    continue
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                patience = self.assoc.dimse_timeout
                if not select.select([], [self.sock], [], self.SLICE_S)[1] and patience is not None \
                        and time.monotonic() - since > patience:
                    return False
            return True
        except OSError:
            return False

    def _pdu(self) -> bytearray:
        """The next PDU; TimeoutError when none has begun to arrive within SLICE_S, OSError when the connection
        failed (or fell silent within a PDU for the DIMSE timeout)."""
        buffer = self.buffer
        while True:
            if len(buffer) >= 6:
                size = 6 + struct.unpack_from(">L", buffer, 2)[0]
                if len(buffer) >= size:
                    pdu = buffer[:size]
                    del buffer[:size]
                    return pdu
            self._receive()

    def _whole(self) -> bool:
        """Whether the buffer begins with a whole PDU."""
        buffer = self.buffer
        return len(buffer) >= 6 and len(buffer) >= 6 + struct.unpack_from(">L", buffer, 2)[0]

    def _receive(self) -> None:
        """What has arrived, added to the buffer (as much as there is, in one read)."""
        while True:
            try:
                count = self.sock.recv_into(self.area)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                count = None
            if count == 0:
                raise OSError("connection closed")
            if count:
                self.buffer += self.area_view[:count]
                self.heard = time.monotonic()
                return
            if getattr(self.sock, "pending", None) and self.sock.pending():
                continue
            if not select.select([self.sock], [], [], self.SLICE_S)[0]:
                if not self.buffer:
                    raise TimeoutError
                patience = self.assoc.dimse_timeout
                if patience is not None and time.monotonic() - self.heard > patience:
                    raise OSError("timed out within a PDU")

    def _hand_back(self) -> None:
        """The PDUs of the message being read, and whatever followed them, to pynetdicom as its DUL thread would
        have read them (a PDU begun is read to its end first, unless the connection is lost)."""
        pdus, self.read = self.read, []
        try:
            while self.buffer and not (self.lost and not self._whole()):
                pdus.append(self._pdu())
        except OSError:
            self.lost = True
        for pdu in pdus:
            self._hand_over(pdu)
        if self.lost:
            self.dul.event_queue.put("Evt17")


class Message:
    """A DIMSE message as its fragments arrive."""

    __slots__ = ("context_id", "command", "elements", "data")

    def __init__(self):
        self.context_id: int | None = None
        self.command: list[memoryview] = []
        self.elements: dict[int, bytes] | None = None  # the command set, once whole
        self.data: list[memoryview] = []


def command(elements: list[tuple[int, bytes]]) -> bytes:
    """A command set (group 0000, implicit VR little endian, as pynetdicom encodes it) of (element, value)
    pairs in element order; odd-length values (UIDs) padded with NUL."""
    body = b"".join(struct.pack("<HHL", 0, number, len(value) + len(value) % 2) + value + b"\0" * (len(value) % 2)
                    for number, value in elements)
    return struct.pack("<HHLL", 0, 0x0000, 4, len(body)) + body


def us(value: int) -> bytes:
    return struct.pack("<H", value)


def command_elements(data, pos: int = 0) -> dict[int, bytes] | None:
    """The elements of a command set from `pos` to the end of `data` by element number; None unless it is one."""
    elements: dict[int, bytes] = {}
    end = len(data)
    while pos + 8 <= end:
        group, number, length = struct.unpack_from("<HHL", data, pos)
        pos += 8
        if group != 0 or pos + length > end:
            return None
        elements[number] = bytes(data[pos:pos + length])
        pos += length
    return elements if pos == end else None


def uid_value(raw: bytes) -> str:
    """A UI value as text (its padding dropped); UnicodeDecodeError when it is not ASCII."""
    return raw.decode("ascii").rstrip("\0 ")


def is_store_request(got: Message, storage: dict) -> bool:
    """A C-STORE request with a data set, on a storage context (id -> (SOP class, syntax)) of its SOP class."""
    elements = got.elements
    if elements is None or us_value(elements, COMMAND_FIELD) != 0x0001 \
            or us_value(elements, DATA_SET_TYPE) in (None, NO_DATA_SET) \
            or us_value(elements, MESSAGE_ID) is None or AFFECTED_SOP_INSTANCE not in elements:
        return False
    context = storage.get(got.context_id)
    try:
        return context is not None and context[0] == uid_value(elements.get(AFFECTED_SOP_CLASS, b""))
    except UnicodeDecodeError:
        return False


def us_value(elements: dict[int, bytes], number: int) -> int | None:
    value = elements.get(number, b"")
    return struct.unpack("<H", value)[0] if len(value) == 2 else None


def text_value(elements: dict[int, bytes], number: int) -> str:
    return elements.get(number, b"").decode("latin-1").strip(" \0")


def pdus(context_id: int, data, last: int, more: int, max_pdu: int):
    """P-DATA-TF PDUs of one PDV each, fragments of at most max_pdu - 6 bytes (0: one), header `last` on the
    final fragment and `more` on the others."""
    step = max_pdu - 6 if max_pdu else max(len(data), 1)
    for start in range(0, len(data), step):
        chunk = data[start:start + step]
        flag = last if start + step >= len(data) else more
        yield struct.pack(">BBLLBB", 4, 0, len(chunk) + 6, len(chunk) + 2, context_id, flag)
        yield chunk


def message(context_id: int, command_set: bytes, data_set: bytes | None, max_pdu: int) -> bytes:
    """A whole DIMSE message (command set, then the data set if any) as P-DATA-TF PDUs."""
    out = b"".join(pdus(context_id, command_set, 0x03, 0x01, max_pdu))
    if data_set:
        out += b"".join(pdus(context_id, data_set, 0x02, 0x00, max_pdu))
    return out


def file_meta(head: bytes) -> tuple[dict[int, bytes], int] | None:
    """The group 0002 values of a Part 10 file by element number, and where its data set starts; None when
    `head` (the file's first bytes) does not hold them all."""
    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    values: dict[int, bytes] = {}
    pos = 132
    while pos + 8 <= len(head):
        group, number = struct.unpack_from("<HH", head, pos)
        vr = head[pos + 4:pos + 6]
        if group != 2:
            return values, pos
        if not (vr.isalpha() and vr.isupper()):  # not explicit VR: pydicom decides
            return None
        if vr in _LONG_VRS:
            if pos + 12 > len(head):
                return None
            length = struct.unpack_from("<L", head, pos + 8)[0]
            pos += 12
        else:
            length = struct.unpack_from("<H", head, pos + 6)[0]
            pos += 8
        if length == 0xFFFFFFFF or pos + length > len(head):
            return None
        values[number] = head[pos:pos + length]
        pos += length
    return (values, pos) if pos == len(head) else None
