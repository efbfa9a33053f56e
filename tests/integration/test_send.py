"""Sending stored instances: C-STORE and STOW-RS to a real Orthanc, C-STORE to pynetdicom storage SCPs that accept
little, warn or fail, STOW-RS answers from a test HTTPS server. Loopback only."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, MRImageStorage, generate_uid,
)

from app.errors import Cancelled
from app.jobs import Job, State
from app.pacs.config import DICOMWEB, DIMSE, DicomWebOptions, DimseOptions, PacsConfig
from app.pacs.dimse import nodelay_handler
from app.pacs.send import Outcome, SendError, send_instances
from tests.integration.https_server import Exchange
from tests.integration.orthanc import free_ports
from tests.unit.helpers import ct_dataset, save

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def dimse(port: int, *, timeout: float = 5.0) -> PacsConfig:
    return PacsConfig(DIMSE, "test", "ORTHANC", dimse=DimseOptions(
        "127.0.0.1", port, local_aets=["LIGHTBOX"], test_aet="LIGHTBOX", query_aet="LIGHTBOX", timeout_s=timeout))


def web(url: str, *, user: str = "", multipart: bool = True, timeout: float = 10.0) -> PacsConfig:
    return PacsConfig(DICOMWEB, "test", "ORTHANC", dicomweb=DicomWebOptions(
        url, auth="basic" if user else "none", user=user, multipart_stow=multipart, timeout_s=timeout))


def ct_files(folder, count: int, *, studies: int = 1, size: int = 128, seed: int = 0) -> list[tuple[str, object]]:
    """Small CT files (size x size, 16-bit) spread over `studies` studies: [(SOP Instance UID, path)]."""
    rng = np.random.default_rng(seed)
    study_uids = [generate_uid() for _ in range(studies)]
    files = []
    for n in range(count):
        ds = ct_dataset(rng.integers(-1000, 2000, (size, size)).astype(np.int16))
        ds.StudyInstanceUID = study_uids[n % studies]
        ds.InstanceNumber = n + 1
        files.append((ds.SOPInstanceUID, save(ds, folder / f"ct{n:03d}.dcm")))
    return files


def orthanc_pixels(orthanc) -> dict[str, bytes]:
    """PixelData of every instance Orthanc holds, by SOP Instance UID, from the stored files."""
    found = {}
    for entry in orthanc.get("/instances?expand"):
        data = orthanc.request("GET", f"/instances/{entry['ID']}/file").content
        found[entry["MainDicomTags"]["SOPInstanceUID"]] = pydicom.dcmread(io.BytesIO(data)).PixelData
    return found


def original_pixels(files) -> dict[str, bytes]:
    return {uid: pydicom.dcmread(path).PixelData for uid, path in files}


def send(config, files, **kwargs):
    heard: list[Outcome] = []
    outcomes = send_instances(config, files, on_outcome=heard.append, **kwargs)
    assert outcomes == heard
    return outcomes


def all_sent(outcomes, files) -> None:
    assert [o.sop_uid for o in outcomes] == [uid for uid, _ in files]  # grouped by study, in order
    assert {(o.state, o.status, o.message) for o in outcomes} in ({("sent", 0, "")}, {("sent", None, "")})


# -- Orthanc --------------------------------------------------------------------------------------------------

def test_c_store_to_orthanc(empty_orthanc, tmp_path):
    files = ct_files(tmp_path, 50, studies=2)
    start = time.perf_counter()
    outcomes = send(dimse(empty_orthanc.dicom_port), files)
    elapsed = time.perf_counter() - start
    print(f"C-STORE: {len(files)} CT instances to Orthanc (TCP_NODELAY on both ends) in {elapsed:.2f} s, "
          f"{len(files) / elapsed:.0f}/s")
    all_sent(outcomes, files[0::2] + files[1::2])  # grouped by study
    assert empty_orthanc.instances() == sorted(uid for uid, _ in files)
    assert orthanc_pixels(empty_orthanc) == original_pixels(files)


@pytest.mark.parametrize("batch_bytes", [32 * 1024 * 1024, 100_000], ids=["one-batch", "batches"])
def test_stow_rs_multipart_to_orthanc(empty_orthanc, tmp_path, batch_bytes):
    files = ct_files(tmp_path, 50)
    config = web(empty_orthanc.dicomweb_url, user=empty_orthanc.user)
    start = time.perf_counter()
    outcomes = send(config, files, secret=empty_orthanc.password, batch_bytes=batch_bytes)
    elapsed = time.perf_counter() - start
    print(f"STOW-RS ({batch_bytes} B batches): {len(files)} CT instances to Orthanc in {elapsed:.2f} s, "
          f"{len(files) / elapsed:.0f}/s")
    all_sent(outcomes, files)
    assert empty_orthanc.instances() == sorted(uid for uid, _ in files)
    assert orthanc_pixels(empty_orthanc) == original_pixels(files)


def test_orthanc_refuses_single_part_stow(empty_orthanc, tmp_path):
    files = ct_files(tmp_path, 2)
    with pytest.raises(SendError) as caught:
        send(web(empty_orthanc.dicomweb_url, user=empty_orthanc.user, multipart=False), files,
             secret=empty_orthanc.password)
    assert str(caught.value) == ("the PACS does not accept single-part application/dicom bodies (HTTP 415); turn on "
                                 "multipart STOW-RS in the configuration")
    assert empty_orthanc.instances() == []


def test_stow_rs_access_refused(orthanc, tmp_path):
    files = ct_files(tmp_path, 2)
    heard = []
    with pytest.raises(SendError) as caught:
        send_instances(web(orthanc.dicomweb_url, user=orthanc.user), files, secret="wrong-password-123",
                       on_outcome=heard.append)
    assert str(caught.value).startswith("the PACS refused access (HTTP 401)")
    assert "wrong-password-123" not in str(caught.value)
    assert heard == []


@pytest.mark.parametrize("kind", ["C-STORE", "STOW-RS"])
def test_cancel_midway(empty_orthanc, tmp_path, kind):
    files = ct_files(tmp_path, 10)
    heard = []

    def on_outcome(outcome):
        heard.append(outcome)
        if len(heard) == 2:
            job.cancel()

    if kind == "C-STORE":
        config, options = dimse(empty_orthanc.dicom_port), {}
    else:  # batches of three: the whole first answer is reported, then the cancel stops the send
        config = web(empty_orthanc.dicomweb_url, user=empty_orthanc.user)
        options = {"secret": empty_orthanc.password, "batch_bytes": sum(p.stat().st_size for _, p in files[:3])}
    job = Job(lambda reporter: send_instances(config, files, on_outcome=on_outcome, reporter=reporter, **options),
              "send")
    job.run()
    assert job.state is State.CANCELLED and isinstance(job.error, Cancelled)
    assert [o.state for o in heard] == ["sent"] * (2 if kind == "C-STORE" else 3)
    assert empty_orthanc.instances() == sorted(o.sop_uid for o in heard)
    assert job.progress.total == 10


# -- STOW-RS answers from a test server ----------------------------------------------------------------------

@pytest.fixture
def stow_server(https_server):
    """The HTTPS test server answering POSTs too; routes read the whole body first (keep-alive stays sound)."""
    return https_server


def read_body(ex: Exchange) -> bytes:
    return ex.rfile.read(int(ex.headers.get("Content-Length", "0")))


def test_single_part_stow(stow_server, empty_orthanc, tmp_path):
    """Each instance in its own application/dicom body; the route hands it on to Orthanc as multipart."""
    files = ct_files(tmp_path, 5)
    seen = []

    def relay(ex: Exchange):
        body = read_body(ex)
        seen.append(ex.headers["Content-Type"])
        boundary = "relay-boundary"
        multipart = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + body
                     + f"\r\n--{boundary}--\r\n".encode())
        resp = empty_orthanc.session.post(
            f"{empty_orthanc.dicomweb_url}/studies", data=multipart, timeout=10,
            headers={"Content-Type": f"multipart/related; type=\"application/dicom\"; boundary={boundary}",
                     "Accept": "application/dicom+json"})
        ex.send(resp.status_code, resp.content, content_type="application/dicom+json")

    stow_server.route("/single/studies", relay)
    outcomes = send(web(stow_server.url("/single"), multipart=False), files)
    all_sent(outcomes, files)
    assert seen == ["application/dicom"] * 5
    assert orthanc_pixels(empty_orthanc) == original_pixels(files)


def _uid_item(uid: str, **more) -> dict:
    item = {"00081150": {"vr": "UI", "Value": [CTImageStorage]}, "00081155": {"vr": "UI", "Value": [uid]}}
    for tag, value in more.items():
        item[tag] = {"vr": "US", "Value": [value]}
    return item


def test_stow_answer_with_warning_and_failure(stow_server, tmp_path):
    files = ct_files(tmp_path, 4)
    (ok, _), (coerced, _), (refused, _), (silent, _) = files
    answer = {"00081199": {"vr": "SQ", "Value": [_uid_item(ok), _uid_item(coerced, **{"00081196": 0xB000})]},
              "00081198": {"vr": "SQ", "Value": [_uid_item(refused, **{"00081197": 0xA700})]}}
    bodies = []

    def reply(ex: Exchange):
        bodies.append((ex.headers["Content-Type"], read_body(ex)))
        ex.send(202, json.dumps(answer).encode(), content_type="application/dicom+json")

    stow_server.route("/partial/studies", reply)
    outcomes = send(web(stow_server.url("/partial")), files)
    assert [(o.sop_uid, o.state, o.status) for o in outcomes] == [
        (ok, "sent", None), (coerced, "warning", 0xB000), (refused, "failed", 0xA700), (silent, "failed", None)]
    assert outcomes[1].message == "stored with a warning: coercion of data elements (status 0xB000)"
    assert outcomes[2].message == "the PACS refused it: out of resources (status 0xA700)"
    assert outcomes[3].message == "the PACS did not say whether it stored it (HTTP 202)"
    (content_type, body), = bodies
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
    assert body.count(b"Content-Type: application/dicom\r\n\r\n") == 4


def test_stow_conflict_fails_every_instance(stow_server, tmp_path):
    files = ct_files(tmp_path, 2)
    answer = {"00081198": {"vr": "SQ", "Value": [_uid_item(uid, **{"00081197": 0xC000}) for uid, _ in files]}}
    stow_server.route("/conflict/studies", lambda ex: (read_body(ex), ex.send(409, json.dumps(answer).encode())))
    outcomes = send(web(stow_server.url("/conflict")), files)
    assert [(o.state, o.status, o.message) for o in outcomes] == [
        ("failed", 0xC000, "the PACS refused it: cannot understand (status 0xC000)")] * 2


def test_stow_nothing_listening(tmp_path):
    port = free_ports(1)[0]
    with pytest.raises(SendError, match=rf"^nothing is listening at 127\.0\.0\.1:{port} \(connection refused\)$"):
        send(web(f"http://127.0.0.1:{port}/dicom-web"), ct_files(tmp_path, 1))


# -- C-STORE to pynetdicom storage SCPs ----------------------------------------------------------------------

class StorageSCP:
    """A pynetdicom storage SCP on 127.0.0.1 (TCP_NODELAY) accepting `contexts` {SOP class: [syntaxes]};
    `status(dataset)` is the C-STORE answer (default success)."""

    def __init__(self, contexts: dict, status=None):
        from pynetdicom import AE, evt

        ae = AE(ae_title="STORESCP")
        for sop_class, syntaxes in contexts.items():
            ae.add_supported_context(sop_class, syntaxes)
        self.status = status or (lambda ds: 0x0000)
        self.received: list[tuple[str, str, pydicom.Dataset]] = []  # (SOP instance, transfer syntax, dataset)
        self.associations = 0
        handlers = [nodelay_handler(), (evt.EVT_C_STORE, self._store), (evt.EVT_ACCEPTED, self._accepted)]
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self.port = self.server.server_address[1]

    def _accepted(self, event):
        self.associations += 1

    def _store(self, event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append((ds.SOPInstanceUID, str(event.context.transfer_syntax), ds))
        return self.status(event)


@pytest.fixture
def storage_scp():
    servers = []

    def start(contexts, status=None) -> StorageSCP:
        scp = StorageSCP(contexts, status)
        servers.append(scp.server)
        return scp

    yield start
    for server in servers:
        server.shutdown()


PLAIN = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def test_jpeg2000_decompressed_for_an_scp_that_takes_only_implicit_little_endian(storage_scp, tmp_path):
    scp = storage_scp({CTImageStorage: [ImplicitVRLittleEndian]})
    ds = ct_dataset(np.random.default_rng(3).integers(-1000, 2000, (64, 64)).astype(np.int16))
    values = ds.pixel_array.copy()
    ds.compress(JPEG2000Lossless, generate_instance_uid=False)
    path = save(ds, tmp_path / "j2k.dcm")
    outcomes = send(dimse(scp.port), [(ds.SOPInstanceUID, path)])
    assert [(o.state, o.status) for o in outcomes] == [("sent", 0)]
    (uid, syntax, got), = scp.received
    assert uid == ds.SOPInstanceUID and syntax == ImplicitVRLittleEndian
    assert not got.file_meta.TransferSyntaxUID.is_compressed
    assert np.array_equal(got.pixel_array, values)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == JPEG2000Lossless  # the stored file is untouched


def test_jpeg2000_sent_as_it_is_when_accepted(storage_scp, tmp_path):
    scp = storage_scp({CTImageStorage: [JPEG2000Lossless, *PLAIN]})
    ds = ct_dataset(np.arange(64 * 64, dtype=np.int16).reshape(64, 64))
    ds.compress(JPEG2000Lossless, generate_instance_uid=False)
    path = save(ds, tmp_path / "j2k.dcm")
    assert [o.state for o in send(dimse(scp.port), [(ds.SOPInstanceUID, path)])] == ["sent"]
    (_, syntax, got), = scp.received
    assert syntax == JPEG2000Lossless and got.PixelData == ds.PixelData


def test_a_sop_class_the_pacs_does_not_accept(storage_scp, tmp_path):
    ct = ct_files(tmp_path, 1)
    mr = ct_dataset(SOPClassUID=MRImageStorage, Modality="MR")
    mr.file_meta.MediaStorageSOPClassUID = MRImageStorage
    mr.StudyInstanceUID = pydicom.dcmread(ct[0][1]).StudyInstanceUID
    files = [(mr.SOPInstanceUID, save(mr, tmp_path / "mr.dcm")), *ct]
    scp = storage_scp({CTImageStorage: PLAIN})
    outcomes = send(dimse(scp.port), files)
    assert [(o.sop_uid, o.state, o.message) for o in outcomes] == [
        (mr.SOPInstanceUID, "failed", "the PACS does not accept MR Image Storage"), (ct[0][0], "sent", "")]
    assert [uid for uid, _, _ in scp.received] == [ct[0][0]]

    only_mr = storage_scp({MRImageStorage: PLAIN})  # accepts nothing of a CT-only study: no association
    outcomes = send(dimse(only_mr.port), ct)
    assert [(o.state, o.message) for o in outcomes] == [("failed", "the PACS does not accept CT Image Storage")]


def test_warning_and_failure_statuses(storage_scp, tmp_path):
    files = ct_files(tmp_path, 3)
    answers = {files[1][0]: 0xB000, files[2][0]: 0xA700}
    scp = storage_scp({CTImageStorage: PLAIN}, lambda event: answers.get(event.request.AffectedSOPInstanceUID, 0))
    outcomes = send(dimse(scp.port), files)
    assert [(o.state, o.status, o.message) for o in outcomes] == [
        ("sent", 0x0000, ""),
        ("warning", 0xB000, "stored with a warning: coercion of data elements (status 0xB000)"),
        ("failed", 0xA700, "the PACS refused it: out of resources (status 0xA700)")]


def test_unreadable_file_fails_alone(storage_scp, tmp_path):
    files = ct_files(tmp_path, 2)
    (tmp_path / "broken.dcm").write_bytes(b"not DICOM at all" * 10)
    scp = storage_scp({CTImageStorage: PLAIN})
    outcomes = send(dimse(scp.port), [("1.2.3.4", tmp_path / "broken.dcm"), *files])
    assert [o.state for o in outcomes] == ["failed", "sent", "sent"]
    assert outcomes[0].sop_uid == "1.2.3.4" and outcomes[0].message.startswith("the stored file cannot be read (")


def test_one_association_per_study_and_more_when_contexts_run_out(storage_scp, tmp_path):
    scp = storage_scp({CTImageStorage: PLAIN})
    send(dimse(scp.port), ct_files(tmp_path, 9, studies=3))
    assert scp.associations == 3

    # 70 SOP classes x 2 contexts (explicit, implicit little endian) > 128: two associations for one study
    from pynetdicom import AllStoragePresentationContexts

    classes = [cx.abstract_syntax for cx in AllStoragePresentationContexts[:70]]
    many = storage_scp({uid: PLAIN for uid in classes})
    study = generate_uid()
    files = []
    for n, sop_class in enumerate(classes):
        ds = ct_dataset(SOPClassUID=sop_class, StudyInstanceUID=study)
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        files.append((ds.SOPInstanceUID, save(ds, tmp_path / f"c{n}.dcm")))
    outcomes = send(dimse(many.port), files)
    assert [o.state for o in outcomes] == ["sent"] * 70 and many.associations == 2


def test_lost_association_midway(storage_scp, tmp_path):
    files = ct_files(tmp_path, 4)

    def status(event):
        if event.request.AffectedSOPInstanceUID == files[2][0]:
            threading.Thread(target=event.assoc.abort).start()
            time.sleep(0.5)
        return 0

    scp = storage_scp({CTImageStorage: PLAIN}, status)
    heard = []
    with pytest.raises(SendError, match="^the PACS aborted the association in answer to the C-STORE"):
        send_instances(dimse(scp.port), files, on_outcome=heard.append)
    assert [(o.sop_uid, o.state) for o in heard] == [(files[0][0], "sent"), (files[1][0], "sent")]


def test_nothing_listening(tmp_path):
    port = free_ports(1)[0]
    with pytest.raises(SendError, match=rf"^nothing is listening at 127\.0\.0\.1:{port} \(connection refused\)$"):
        send(dimse(port), ct_files(tmp_path, 1))
