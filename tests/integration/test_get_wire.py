"""C-GET read on the wire (app.pacs.retrieve._GetWire): many small PDUs, a large instance, cancel, an abort, a
full library, and hand-overs to pynetdicom, against a pynetdicom C-GET SCP on loopback (and Orthanc for the
large instance). Each outcome is compared with what was served, byte for byte."""

from __future__ import annotations

import io
import time

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, generate_uid

from app.errors import Cancelled, LightboxError
from app.jobs import Job, State
from app.library.importer import Intake
from app.library.library import Library
from app.pacs import retrieve as retrieve_module
from app.pacs.config import DIMSE, DimseOptions, PacsConfig
from app.pacs.retrieve import RetrieveError, retrieve
from tests.integration.orthanc import free_ports
from tests.unit.helpers import image_dataset, to_bytes

pytestmark = pytest.mark.timeout(120)

MR = "1.2.840.10008.5.1.4.1.1.4"


def study(count: int, *, size: int = 48, rle_every: int = 0) -> tuple[str, list[bytes]]:
    """(study UID, Part 10 bytes of `count` instances): CT and MR in two series, some RLE Lossless."""
    study_uid, series = generate_uid(), [generate_uid(), generate_uid()]
    rng = np.random.default_rng(count)
    files = []
    for n in range(count):
        ds = image_dataset(rng.integers(0, 4000, (size, size)).astype(np.uint16), modality=("CT", "MR")[n % 2],
                           sop_class=(CTImageStorage, MR)[n % 2])
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study_uid, series[n % 2], n + 1
        ds.PatientName, ds.PatientID, ds.PatientSpeciesDescription = "Wire^Rex", "W-1", "Canine"
        if rle_every and n % rle_every == 0:
            ds.compress(RLELossless, generate_instance_uid=False)
        files.append(to_bytes(ds))
    return study_uid, files


class GetSCP:
    """pynetdicom answering C-FIND (SOPClassesInStudy) and C-GET for one study. `before(n, event)` runs before the
    n-th sub-operation (0-based): it may sleep, or abort the association."""

    def __init__(self, study_uid: str, files: list[bytes], before=None):
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import (
            StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelGet,
        )

        from app.pacs.dimse import nodelay_handler

        self.study_uid, self.before = study_uid, before
        self.datasets = [pydicom.dcmread(io.BytesIO(f)) for f in files]
        self.statuses: list[int] = []  # the C-STORE answers the SCP received
        self.port = free_ports(1)[0]
        ae = AE(ae_title="GETSCP")
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
        for sop_class in (CTImageStorage, MR):
            ae.add_supported_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless],
                                     scu_role=True, scp_role=True)
        handlers = [(evt.EVT_C_FIND, self._find), (evt.EVT_C_GET, self._get), nodelay_handler()]
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)

    def config(self) -> PacsConfig:
        config = PacsConfig(DIMSE, "Wire PACS", "GETSCP", dimse=DimseOptions(
            "127.0.0.1", self.port, query_aet="LIGHTBOX", retrieve_method="get", timeout_s=10))
        config.validate()
        return config

    def _find(self, event):
        answer = Dataset()
        answer.QueryRetrieveLevel = "STUDY"
        answer.StudyInstanceUID = self.study_uid
        answer.SOPClassesInStudy = sorted({str(ds.SOPClassUID) for ds in self.datasets})
        answer.NumberOfStudyRelatedInstances = len(self.datasets)
        yield 0xFF00, answer

    def _get(self, event):
        yield len(self.datasets)
        for n, ds in enumerate(self.datasets):
            if self.before is not None:
                self.before(n, event)
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, ds

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def serve():
    servers = []

    def start(study_uid, files, before=None) -> GetSCP:
        servers.append(GetSCP(study_uid, files, before))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def wire_calls(monkeypatch):
    """How many C-STOREs the wire answered, and how many pynetdicom did."""
    counts = {"wire": 0, "pynetdicom": 0}
    store, on_store = retrieve_module._GetWire._store, retrieve_module._Transfer._on_store

    def wire_store(self, *args):
        counts["wire"] += 1
        return store(self, *args)

    def pynetdicom_store(self, event):
        counts["pynetdicom"] += 1
        return on_store(self, event)

    monkeypatch.setattr(retrieve_module._GetWire, "_store", wire_store)
    monkeypatch.setattr(retrieve_module._Transfer, "_on_store", pynetdicom_store)
    return counts


def small_pdus(monkeypatch, size: int = 256) -> None:
    """Every pynetdicom association in this process (the SCP's and ours) limits PDUs to `size` bytes: each
    instance comes in a hundred PDUs or more, and what the wire writes is cut to that size too."""
    from pynetdicom.dimse import DIMSEServiceProvider

    monkeypatch.setattr(DIMSEServiceProvider, "maximum_pdu_size", property(lambda self: size))


def check_library(library: Library, files: list[bytes], source: str) -> None:
    """The library holds exactly these instances, each with its SOP class, transfer syntax and pixel bytes."""
    served = {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(io.BytesIO(f)) for f in files)}
    records = {r.sop_uid: r for r in library.instances(study_uid=str(next(iter(served.values())).StudyInstanceUID))}
    assert sorted(records) == sorted(served)
    for sop, original in served.items():
        got = pydicom.dcmread(records[sop].path)
        assert got.SOPClassUID == original.SOPClassUID == records[sop].sop_class
        assert got.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID == records[sop].transfer_syntax
        assert got.PixelData == original.PixelData
        assert records[sop].source == source
    assert library.check(repair=False).clean


def test_many_small_pdus_on_the_wire_and_pynetdicoms_own_way_agree(serve, wire_calls, monkeypatch, tmp_path):
    small_pdus(monkeypatch)
    study_uid, files = study(12, rle_every=5)
    scp = serve(study_uid, files)
    stored = {}
    with Library(tmp_path / "wire", microchip_issuers=()) as library:
        result = retrieve(scp.config(), study_uid, library=library)
        assert result.ok and result.method == "get" and result.imported.count("imported") == 12
        assert (result.completed, result.failed, result.warning) == (12, 0, 0)
        check_library(library, files, "Wire PACS")
        stored["wire"] = {r.sop_uid: r.path.read_bytes() for r in library.instances(study_uid=study_uid)}
    assert wire_calls == {"wire": 12, "pynetdicom": 0}

    monkeypatch.setattr(retrieve_module._GetWire, "fits", classmethod(lambda cls, assoc: False))  # another pynetdicom
    with Library(tmp_path / "own-way", microchip_issuers=()) as library:
        result = retrieve(scp.config(), study_uid, library=library)
        assert result.ok and result.imported.count("imported") == 12 and result.completed == 12
        check_library(library, files, "Wire PACS")
        stored["pynetdicom"] = {r.sop_uid: r.path.read_bytes() for r in library.instances(study_uid=study_uid)}
    assert wire_calls == {"wire": 12, "pynetdicom": 12}
    assert stored["wire"] == stored["pynetdicom"]  # the same files, byte for byte


def test_an_odd_message_goes_to_pynetdicom_which_carries_on(serve, wire_calls, monkeypatch, tmp_path):
    study_uid, files = study(9)
    scp = serve(study_uid, files)
    expected = retrieve_module._GetWire._expected
    seen = []

    def fourth_is_odd(self, got):
        seen.append(got)
        return expected(self, got) and len(seen) != 7  # the 4th C-STORE (after 3 stores and 3 pending answers)

    monkeypatch.setattr(retrieve_module._GetWire, "_expected", fourth_is_odd)
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        result = retrieve(scp.config(), study_uid, library=library)
        assert result.ok and result.imported.count("imported") == 9 and result.completed == 9
        check_library(library, files, "Wire PACS")
    assert wire_calls == {"wire": 3, "pynetdicom": 6}


def test_cancel_on_the_wire_keeps_what_arrived(serve, wire_calls, tmp_path):
    study_uid, files = study(40)
    scp = serve(study_uid, files, before=lambda n, event: time.sleep(0.02))
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        job = Job(lambda reporter: retrieve(scp.config(), study_uid, library=library, reporter=reporter),
                  "Retrieving")
        job.on_progress(lambda j: j.cancel() if j.progress.done >= 5 else None)
        job.run()
        assert job.state == State.CANCELLED and isinstance(job.error, Cancelled)
        kept = library.instances(study_uid=study_uid)
        assert 5 <= len(kept) < 40
        check_library(library, [f for f in files if pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID
                                in {r.sop_uid for r in kept}], "Wire PACS")
    assert wire_calls["pynetdicom"] == 0 and wire_calls["wire"] == len(kept)


def test_an_abort_mid_transfer_keeps_what_came_and_says_why(serve, wire_calls, tmp_path):
    study_uid, files = study(10)

    def abort_at_six(n, event):
        if n == 6:
            event.assoc.abort()

    scp = serve(study_uid, files, before=abort_at_six)
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        start = time.monotonic()
        result = retrieve(scp.config(), study_uid, library=library)
        assert time.monotonic() - start < 5  # not the DIMSE timeout
        assert not result.ok and result.imported.count("imported") == 6 and result.failed >= 1
        assert result.notes == ["the PACS aborted the association in answer to the C-GET; it may not accept C-GET "
                                "from the calling AE title LIGHTBOX"]
        check_library(library, files[:6], "Wire PACS")
    assert wire_calls == {"wire": 6, "pynetdicom": 0}


def test_a_full_library_refuses_the_rest_and_keeps_what_it_took(serve, wire_calls, monkeypatch, tmp_path):
    study_uid, files = study(10)
    scp = serve(study_uid, files)
    add = Intake.add
    taken = []

    def full_after_four(self, label, data):
        if len(taken) == 4:
            raise LightboxError("The disk is full: the instance was not saved. Free some space and try again.")
        taken.append(label)
        return add(self, label, data)

    monkeypatch.setattr(Intake, "add", full_after_four)
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        with pytest.raises(RetrieveError, match="^The disk is full"):
            retrieve(scp.config(), study_uid, library=library)
        assert len(library.instances(study_uid=study_uid)) == 4
        assert library.check(repair=False).clean
    assert wire_calls["pynetdicom"] == 0 and 5 <= wire_calls["wire"] < 10  # the C-CANCEL stopped the rest


def test_a_large_instance_in_many_pdus_from_orthanc(orthanc, wire_calls, tmp_path):
    """dcmtk cuts what Orthanc sends into 16 KB PDUs: an 8 MB image comes in about 500 of them."""
    study_uid, files = study(3, size=64)
    big = image_dataset(np.random.default_rng(1).integers(0, 60000, (2048, 2048)).astype(np.uint16), modality="DX",
                        sop_class="1.2.840.10008.5.1.4.1.1.1.1")
    big.StudyInstanceUID, big.SeriesInstanceUID = study_uid, generate_uid()
    big.PatientName, big.PatientID, big.PatientSpeciesDescription = "Wire^Rex", "W-1", "Canine"
    files.append(to_bytes(big))
    for data in files:
        orthanc.upload(data)
    config = PacsConfig(DIMSE, "Orthanc", orthanc.aet, dimse=DimseOptions(
        "127.0.0.1", orthanc.dicom_port, query_aet="LIGHTBOX", retrieve_method="get", timeout_s=10))
    with Library(tmp_path / "library", microchip_issuers=()) as library:
        result = retrieve(config, study_uid, library=library)
        assert result.ok and result.imported.count("imported") == 4
        check_library(library, files, "Orthanc")
    assert wire_calls == {"wire": 4, "pynetdicom": 0}
