"""The DIMSE pieces Lightbox writes and reads on the wire itself (app.pacs.wire, the C-GET reader in
app.pacs.retrieve): byte for byte what pynetdicom would write, and messages cut into fragments every way the
standard allows (or not) read as pynetdicom would, or left to it."""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pynetdicom.dimse_messages import C_CANCEL_RQ, C_GET_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_CANCEL, C_GET, C_STORE
from pynetdicom.dsutils import encode

from app.pacs import wire
from app.pacs.retrieve import STUDY_ROOT_GET, _GetWire, _Message

CT = "1.2.840.10008.5.1.4.1.1.2"
SOP = "1.2.826.0.1.3680043.8.498.1234567890123456789012345678901234567"  # odd length: padded


def pynetdicom_command(message_class, primitive) -> bytes:
    message = message_class()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)


def test_commands_are_what_pynetdicom_writes():
    store = C_STORE()
    store.MessageIDBeingRespondedTo, store.AffectedSOPClassUID, store.AffectedSOPInstanceUID = 7, CT, SOP
    store.Status = 0xA700
    assert wire.command([(wire.AFFECTED_SOP_CLASS, CT.encode()), (wire.COMMAND_FIELD, wire.us(0x8001)),
                         (wire.RESPONDED_TO, wire.us(7)), (wire.DATA_SET_TYPE, wire.us(wire.NO_DATA_SET)),
                         (wire.STATUS, wire.us(0xA700)), (wire.AFFECTED_SOP_INSTANCE, SOP.encode())]) \
        == pynetdicom_command(C_STORE_RSP, store)

    get = C_GET()
    get.MessageID, get.AffectedSOPClassUID, get.Priority = 1, STUDY_ROOT_GET, 2
    get.Identifier = BytesIO(b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY ")
    assert wire.command([(wire.AFFECTED_SOP_CLASS, STUDY_ROOT_GET.encode()), (wire.COMMAND_FIELD, wire.us(0x0010)),
                         (wire.MESSAGE_ID, wire.us(1)), (0x0700, wire.us(2)), (wire.DATA_SET_TYPE, wire.us(1))]) \
        == pynetdicom_command(C_GET_RQ, get)

    cancel = C_CANCEL()
    cancel.MessageIDBeingRespondedTo = 1
    assert wire.command([(wire.COMMAND_FIELD, wire.us(0x0FFF)), (wire.RESPONDED_TO, wire.us(1)),
                         (wire.DATA_SET_TYPE, wire.us(wire.NO_DATA_SET))]) == pynetdicom_command(C_CANCEL_RQ, cancel)


def test_command_elements_read_back_and_refuse_what_is_not_one():
    data = wire.command([(wire.COMMAND_FIELD, wire.us(0x8010)), (wire.STATUS, wire.us(0xFF00)),
                         (wire.ERROR_COMMENT, b"busy ")])
    elements = wire.command_elements(data)
    assert wire.us_value(elements, wire.COMMAND_FIELD) == 0x8010 and wire.text_value(elements, wire.ERROR_COMMENT) \
        == "busy"
    assert wire.command_elements(data[:-1]) is None  # cut short
    assert wire.command_elements(b"\x08\x00\x10\x00\x00\x00\x00\x00") is None  # not group 0000


# -- reading a C-GET's messages ------------------------------------------------------------------------------

def reader() -> _GetWire:
    """A _GetWire that only reads PDVs (no association): one storage context for CT, id 3."""
    found = object.__new__(_GetWire)
    found.storage = {3: (CT, "1.2.840.10008.1.2.1")}
    return found


def store_command(msg_id: int = 5) -> bytes:
    return wire.command([(wire.AFFECTED_SOP_CLASS, CT.encode()), (wire.COMMAND_FIELD, wire.us(0x0001)),
                         (wire.MESSAGE_ID, wire.us(msg_id)), (0x0700, wire.us(2)), (wire.DATA_SET_TYPE, wire.us(1)),
                         (wire.AFFECTED_SOP_INSTANCE, SOP.encode())])


def pdu(*pdvs: tuple[int, int, bytes]) -> bytearray:
    """A P-DATA-TF PDU of (context, header, data) PDVs."""
    body = b"".join(struct.pack(">LBB", len(data) + 2, cx, header) + data for cx, header, data in pdvs)
    return bytearray(struct.pack(">BBL", 4, 0, len(body)) + body)


def read(pdus: list[bytearray]) -> tuple[list, _Message]:
    got, outcomes = _Message(), []
    for each in pdus:
        outcomes.append(reader()._pdvs(each, got))
    return outcomes, got


def test_a_c_store_in_fragments_across_pdus_and_within_one():
    command, data = store_command(), bytes(range(256)) * 40
    outcomes, got = read([pdu((3, 1, command[:30])), pdu((3, 1, command[30:100])), pdu((3, 3, command[100:])),
                          pdu((3, 0, data[:4000])), pdu((3, 0, data[4000:9000]), (3, 2, data[9000:]))])
    assert outcomes == [False, False, False, False, True]
    assert wire.us_value(got.elements, wire.MESSAGE_ID) == 5 and b"".join(got.data) == data

    outcomes, got = read([pdu((3, 3, command), (3, 0, data[:10]), (3, 2, data[10:]))])  # the whole message in one
    assert outcomes == [True] and b"".join(got.data) == data


def test_a_pending_answer_without_data_set_is_complete_at_once():
    answer = wire.command([(wire.COMMAND_FIELD, wire.us(0x8010)), (wire.RESPONDED_TO, wire.us(1)),
                           (wire.DATA_SET_TYPE, wire.us(wire.NO_DATA_SET)), (wire.STATUS, wire.us(0xFF00)),
                           (0x1020, wire.us(3))])
    assert read([pdu((1, 3, answer))])[0] == [True]


@pytest.mark.parametrize("pdus", [
    [pdu((3, 3, store_command()), (3, 2, b"xx"), (3, 3, store_command()))],  # complete before the PDU's end
    [pdu((5, 3, store_command()))],  # a context that is not a storage one
    [pdu((3, 1, store_command()[:20])), pdu((1, 3, store_command()[20:]))],  # the context changes
    [pdu((3, 0, b"data before its command"))],
    [pdu((3, 3, store_command())), pdu((3, 1, b"a second command"))],
    [pdu((3, 3, wire.command([(wire.COMMAND_FIELD, wire.us(0x8010)), (wire.RESPONDED_TO, wire.us(2)),
                              (wire.DATA_SET_TYPE, wire.us(wire.NO_DATA_SET)), (wire.STATUS, wire.us(0))])))],
    [pdu((3, 3, wire.command([(wire.COMMAND_FIELD, wire.us(0x0030))])))],  # a C-ECHO-RQ
    [bytearray(b"\x04\x00\x00\x00\x00\x04\x00\x00\x00\x01")],  # a PDV shorter than its header
])
def test_what_the_reader_does_not_expect_goes_to_pynetdicom(pdus):
    outcomes, _ = read(pdus)
    assert outcomes[-1] is None and None not in outcomes[:-1]
