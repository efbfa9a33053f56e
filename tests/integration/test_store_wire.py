"""The storage SCP's C-STOREs read on the wire (app.pacs.receiver._StoreWire): small PDUs, a large instance, a
C-ECHO and odd messages in between, aborts, a refusing sink and the "receive studies" service answering only
once committed. Each outcome is compared with pynetdicom's own way (the EVT_C_STORE handler), byte for byte."""

from __future__ import annotations

import io
import struct
import time

import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, generate_uid

from app.errors import LightboxError
from app.pacs import receiver
from app.pacs.receiver import Receiving, StorageServer
from tests.integration.orthanc import free_ports
from tests.unit.helpers import image_dataset, to_bytes

pytestmark = pytest.mark.timeout(120)

MR = "1.2.840.10008.5.1.4.1.1.4"


def instances(count: int, *, size: int = 32, rle_every: int = 0) -> list[pydicom.Dataset]:
    study, series = generate_uid(), generate_uid()
    rng = np.random.default_rng(count + size)
    found = []
    for n in range(count):
        ds = image_dataset(rng.integers(0, 4000, (size, size)).astype(np.uint16), modality=("CT", "MR")[n % 2],
                           sop_class=(CTImageStorage, MR)[n % 2])
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, series, n + 1
        if rle_every and n % rle_every == 0:
            ds.compress(RLELossless, generate_instance_uid=False)
        found.append(pydicom.dcmread(io.BytesIO(to_bytes(ds))))
    return found


@pytest.fixture
def calls(monkeypatch):
    """How many C-STOREs the wire answered, and how many pynetdicom's handler did."""
    counts = {"wire": 0, "pynetdicom": 0}
    store, on_store = receiver._StoreWire._store, StorageServer._on_store

    def wire_store(self, got):
        counts["wire"] += 1
        return store(self, got)

    def handler_store(self, event):
        counts["pynetdicom"] += 1
        return on_store(self, event)

    monkeypatch.setattr(receiver._StoreWire, "_store", wire_store)
    monkeypatch.setattr(StorageServer, "_on_store", handler_store)
    return counts


def small_pdus(monkeypatch, size: int = 256) -> None:
    from pynetdicom.dimse import DIMSEServiceProvider

    monkeypatch.setattr(DIMSEServiceProvider, "maximum_pdu_size", property(lambda self: size))


class Collect:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.callings: set[str] = set()

    def __call__(self, calling: str, label: str, data: bytes) -> None:
        self.callings.add(calling)
        self.files[label.split("/", 1)[1]] = data


def associate(port: int, datasets, *, echo: bool = False):
    from pynetdicom import AE

    from app.pacs.dimse import nodelay_handler

    ae = AE(ae_title="MODALITY")
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless):
            ae.add_requested_context(sop_class, syntax)
    if echo:
        ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="LIGHTBOX", evt_handlers=[nodelay_handler()])
    assert assoc.is_established
    return assoc


def send(port: int, datasets, *, between=None) -> list[int]:
    assoc = associate(port, datasets, echo=between is not None)
    statuses = []
    try:
        for n, ds in enumerate(datasets):
            if between is not None:
                between(n, assoc)
            statuses.append(int(assoc.send_c_store(ds).Status))
    finally:
        assoc.release()
    assert assoc.is_released
    return statuses


def received(datasets, monkeypatch, *, wire: bool, between=None) -> dict[str, bytes]:
    if not wire:
        monkeypatch.setattr(receiver._StoreWire, "install", classmethod(lambda cls, assoc, server: None))
    sink = Collect()
    port = free_ports(1)[0]
    with StorageServer("LIGHTBOX", port, sink, bind="127.0.0.1"):
        assert send(port, datasets, between=between) == [0] * len(datasets)
    assert sink.callings == {"MODALITY"}
    if not wire:
        monkeypatch.undo()
    return sink.files


def test_small_pdus_on_the_wire_and_pynetdicoms_own_way_agree(calls, monkeypatch):
    datasets = instances(12, rle_every=3)
    wired = received(datasets, monkeypatch, wire=True)
    assert calls == {"wire": 12, "pynetdicom": 0}
    small_pdus(monkeypatch)  # each instance in ten PDUs and more, the answers too
    wired_small = received(datasets, monkeypatch, wire=True)
    assert calls["wire"] >= 23 and calls["wire"] + calls["pynetdicom"] == 24
    own = received(datasets, monkeypatch, wire=False)
    assert own == wired == wired_small
    assert sorted(own) == sorted(str(ds.SOPInstanceUID) for ds in datasets)
    for ds in datasets:
        got = pydicom.dcmread(io.BytesIO(own[str(ds.SOPInstanceUID)]))
        assert got.PixelData == ds.PixelData and got.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID


def test_a_large_instance_in_many_pdus(calls, monkeypatch):
    small_pdus(monkeypatch, 4096)
    datasets = instances(2, size=600)  # 720 KB each: ~180 PDUs
    assert received(datasets, monkeypatch, wire=True) == received(datasets, monkeypatch, wire=False)
    assert calls["wire"] >= 1


def test_a_c_echo_between_c_stores_goes_to_pynetdicom_and_the_wire_takes_over_again(calls, monkeypatch):
    echoes = []

    def between(n, assoc):
        if n in (2, 4):
            echoes.append(int(assoc.send_c_echo().Status))
            time.sleep(0.05)  # pynetdicom answers the echo; the wire takes over on a following pass

    datasets = instances(7)
    files = received(datasets, monkeypatch, wire=True, between=between)
    assert echoes == [0, 0] and len(files) == 7
    assert calls["wire"] + calls["pynetdicom"] == 7 and calls["wire"] >= 5


def test_the_sink_refusing_answers_out_of_resources_and_the_association_goes_on(calls):
    refused = []

    def sink(calling, label, data):
        if len(refused) < 2:
            refused.append(label)
            raise LightboxError("the disk is full")

    port = free_ports(1)[0]
    with StorageServer("LIGHTBOX", port, sink, bind="127.0.0.1"):
        assert send(port, instances(4)) == [0xA700, 0xA700, 0, 0]
    assert calls == {"wire": 4, "pynetdicom": 0}


def raw_pdata(context_id: int, header: int, data: bytes) -> bytes:
    return struct.pack(">BBLLBB", 4, 0, len(data) + 6, len(data) + 2, context_id, header) + data


@pytest.mark.parametrize("how", ["abort", "close"])
def test_an_association_ended_mid_transfer_keeps_what_came_and_the_server_goes_on(calls, how):
    from app.pacs import wire

    sink = Collect()
    port = free_ports(1)[0]
    datasets = instances(4)
    with StorageServer("LIGHTBOX", port, sink, bind="127.0.0.1") as server:
        assoc = associate(port, datasets)
        assert [int(assoc.send_c_store(ds).Status) for ds in datasets[:2]] == [0, 0]
        cx = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == datasets[2].SOPClassUID)
        begun = wire.command([(wire.AFFECTED_SOP_CLASS, str(datasets[2].SOPClassUID).encode()),
                              (wire.COMMAND_FIELD, wire.us(1)), (wire.MESSAGE_ID, wire.us(9)), (0x0700, wire.us(0)),
                              (wire.DATA_SET_TYPE, wire.us(1)),
                              (wire.AFFECTED_SOP_INSTANCE, str(datasets[2].SOPInstanceUID).encode())])
        sock = assoc.dul.socket.socket
        sock.sendall(raw_pdata(cx.context_id, 3, begun) + raw_pdata(cx.context_id, 0, b"\x08\x00" * 50)[:40])
        time.sleep(0.1)
        if how == "abort":
            assoc.abort()
            assert assoc.is_aborted
        else:
            sock.close()
        deadline = time.monotonic() + 10
        while server._server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server._server.active_associations
        assert sorted(sink.files) == sorted(str(ds.SOPInstanceUID) for ds in datasets[:2])
        assert send(port, datasets[2:]) == [0, 0]  # the server goes on
    assert len(sink.files) == 4 and calls["wire"] == 4


def test_receiving_answers_each_c_store_once_committed(tmp_path, calls):
    from app.library.library import Library

    datasets = instances(6)
    port = free_ports(1)[0]
    imported = []
    Library(tmp_path / "lib").close()  # made before two threads open it
    service = Receiving("LIGHTBOX", port, library_root=tmp_path / "lib", on_import=imported.append,
                        bind="127.0.0.1").start()
    seen_committed = []
    try:
        with Library(tmp_path / "lib") as library:
            assoc = associate(port, datasets)
            try:
                for ds in datasets:
                    assert int(assoc.send_c_store(ds).Status) == 0
                    uids = {i.sop_uid for i in library.instances(study_uid=str(ds.StudyInstanceUID))}
                    seen_committed.append(str(ds.SOPInstanceUID) in uids)
            finally:
                assoc.release()
    finally:
        service.stop()
    assert all(seen_committed) and len(imported) == 6
    assert calls == {"wire": 6, "pynetdicom": 0}


def test_receiving_refuses_what_the_library_does_not_take_in_time(tmp_path, calls, monkeypatch):
    monkeypatch.setattr(Receiving, "ANSWER_WITHIN_S", 0.3)
    port = free_ports(1)[0]
    service = Receiving("LIGHTBOX", port, library_root=tmp_path / "lib", bind="127.0.0.1").start()
    try:
        service._queue.put(None)  # the import thread ends: nothing is committed any more
        service._thread.join(10)
        assert send(port, instances(2)) == [0xA700, 0xA700]
    finally:
        service.stop()
    assert calls == {"wire": 2, "pynetdicom": 0}


def test_a_c_move_from_orthanc_both_ends_on_the_wire(orthanc, calls, monkeypatch, tmp_path):
    """The C-MOVE's answers are read on the wire of its association, its C-STOREs on the storage SCP's."""
    from pynetdicom.dimse_messages import C_MOVE_RQ
    from pynetdicom.dimse_primitives import C_MOVE
    from pynetdicom.dsutils import encode

    from app.library.library import Library
    from app.pacs import retrieve as retrieve_module
    from app.pacs import wire
    from app.pacs.config import DIMSE, DimseOptions, PacsConfig

    move = C_MOVE()
    move.MessageID, move.AffectedSOPClassUID, move.Priority = 1, retrieve_module.STUDY_ROOT_MOVE, 2
    move.MoveDestination = "LIGHTBOX"
    move.Identifier = io.BytesIO(b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY ")
    rq = C_MOVE_RQ()
    rq.primitive_to_message(move)
    assert wire.command([(wire.AFFECTED_SOP_CLASS, retrieve_module.STUDY_ROOT_MOVE.encode()),
                         (wire.COMMAND_FIELD, wire.us(0x0021)), (wire.MESSAGE_ID, wire.us(1)),
                         (0x0600, b"LIGHTBOX"), (0x0700, wire.us(2)), (wire.DATA_SET_TYPE, wire.us(1))]) \
        == encode(rq.command_set, True, True)

    answers = []
    follow = retrieve_module._MoveWire.follow.__func__

    def counted(cls, *args):
        answers.append(follow(cls, *args))
        return answers[-1]

    monkeypatch.setattr(retrieve_module._MoveWire, "follow", classmethod(counted))
    datasets = instances(9, size=64, rle_every=4)
    for ds in datasets:
        ds.PatientName, ds.PatientID, ds.PatientSpeciesDescription = "Move^Rex", "M-1", "Canine"
        orthanc.upload(to_bytes(ds))
    config = PacsConfig(DIMSE, "Orthanc", orthanc.aet, dimse=DimseOptions(
        "127.0.0.1", orthanc.dicom_port, query_aet="LIGHTBOX", retrieve_method="move", move_aet="LIGHTBOX",
        move_port=orthanc.lightbox_port, timeout_s=10))
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        result = retrieve_module.retrieve(config, str(datasets[0].StudyInstanceUID), library=library)
        assert result.ok and result.imported.count("imported") == 9 and result.completed == 9
        for record in library.instances(study_uid=str(datasets[0].StudyInstanceUID)):
            original = next(ds for ds in datasets if str(ds.SOPInstanceUID) == record.sop_uid)
            got = pydicom.dcmread(record.path)
            assert got.PixelData == original.PixelData
            assert got.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert len(answers) == 1 and isinstance(answers[0], dict) and answers[0]["Status"] == 0
    assert calls == {"wire": 9, "pynetdicom": 0}


def test_an_association_killed_before_the_wire_took_it_ends(calls, monkeypatch):
    """The DUL thread stopped at the wire's gate goes on when the association ends before the reactor's first
    pass (here: the reactor never gets there)."""
    from pynetdicom.association import Association

    from pynetdicom import AE

    monkeypatch.setattr(Association, "_run_reactor", lambda self: self.abort())
    port = free_ports(1)[0]
    with StorageServer("LIGHTBOX", port, Collect(), bind="127.0.0.1") as server:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate("127.0.0.1", port, ae_title="LIGHTBOX")
        assert not assoc.is_established or assoc.is_aborted or not assoc.send_c_echo()
        deadline = time.monotonic() + 10
        while server._server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server._server.active_associations
