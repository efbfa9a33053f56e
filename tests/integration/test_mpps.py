"""MPPS against a pynetdicom MPPS SCP started by the test: what N-CREATE and N-SET carry."""

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from app.pacs import mpps
from app.pacs.config import DimseOptions, PacsConfig
from app.pacs.dimse import nodelay_handler
from app.pacs.send import SendError
from tests.integration.orthanc import free_ports


@pytest.fixture
def mpps_scp():
    yield from _scp(storage=False)


@pytest.fixture
def pacs_with_mpps():
    yield from _scp(storage=True)


def _scp(storage: bool):
    received = {"create": [], "set": []}
    store = {}

    def on_create(event):
        uid = event.request.AffectedSOPInstanceUID
        received["create"].append((uid, event.attribute_list))
        store[uid] = event.attribute_list
        return 0x0000, event.attribute_list

    def on_set(event):
        uid = event.request.RequestedSOPInstanceUID
        if uid not in store:
            return 0x0112, None  # no such SOP instance
        received["set"].append((uid, event.modification_list))
        store[uid].update(event.modification_list)
        return 0x0000, store[uid]

    def on_store(event):
        received.setdefault("store", []).append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    (port,) = free_ports(1)
    ae = AE(ae_title="MPPSSCP")
    ae.add_supported_context(ModalityPerformedProcedureStep)
    if storage:
        from pynetdicom import AllStoragePresentationContexts
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless])
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[
        (evt.EVT_N_CREATE, on_create), (evt.EVT_N_SET, on_set), (evt.EVT_C_STORE, on_store), nodelay_handler()])
    config = PacsConfig("dimse", "Worklist server", "MPPSSCP", dimse=DimseOptions(
        host="127.0.0.1", port=port, mpps=True, timeout_s=5))
    config.validate()
    yield config, received
    server.shutdown()


def test_n_create_and_n_set_carry_the_procedure_and_what_it_produced(mpps_scp):
    config, received = mpps_scp
    procedure = mpps.Procedure(patient_name="Hendricks^Bailey", patient_id="VET-1", patient_sex="F",
                               study_uid="1.2.3.4", accession="A-77", requested_procedure_id="RP1",
                               scheduled_step_id="SPS1", scheduled_step_description="Thorax lateral", modality="DX")
    uid = mpps.start(config, procedure)
    ((created_uid, created),) = received["create"]
    assert created_uid == uid
    assert created.PerformedProcedureStepStatus == "IN PROGRESS"
    assert created.PatientName == "Hendricks^Bailey" and created.PatientID == "VET-1" and created.Modality == "DX"
    step = created.ScheduledStepAttributesSequence[0]
    assert (step.StudyInstanceUID, step.AccessionNumber, step.ScheduledProcedureStepID) == ("1.2.3.4", "A-77", "SPS1")
    assert created.PerformedStationAETitle == "LIGHTBOX" and created.PerformedProcedureStepStartDate
    assert created.PerformedSeriesSequence == [] and created.PerformedProcedureStepEndDate == ""

    series = [mpps.PerformedSeries("1.2.3.4.1", "Thorax lateral", [("1.2.840.10008.5.1.4.1.1.1.1", "1.2.3.4.1.1"),
                                                                   ("1.2.840.10008.5.1.4.1.1.1.1", "1.2.3.4.1.2")])]
    mpps.complete(config, uid, series)
    ((set_uid, modified),) = received["set"]
    assert set_uid == uid and modified.PerformedProcedureStepStatus == "COMPLETED"
    assert modified.PerformedProcedureStepEndDate and modified.PerformedProcedureStepEndTime
    (performed,) = modified.PerformedSeriesSequence
    assert performed.SeriesInstanceUID == "1.2.3.4.1" and performed.RetrieveAETitle == "MPPSSCP"
    assert [r.ReferencedSOPInstanceUID for r in performed.ReferencedImageSequence] == ["1.2.3.4.1.1", "1.2.3.4.1.2"]


def test_a_refused_n_set_is_a_send_error_with_the_status(mpps_scp):
    config, _ = mpps_scp
    with pytest.raises(SendError, match="MPPS N-SET was refused with status 0x0112"):
        mpps.complete(config, "1.2.999", [])


def test_a_pacs_without_mpps_says_so():
    (port,) = free_ports(1)
    ae = AE(ae_title="NOMPPS")
    ae.add_supported_context("1.2.840.10008.1.1")
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[nodelay_handler()])
    try:
        config = PacsConfig("dimse", "x", "NOMPPS", dimse=DimseOptions(host="127.0.0.1", port=port, timeout_s=5))
        with pytest.raises(SendError, match="accept"):
            mpps.start(config, mpps.Procedure(patient_id="1", study_uid="1.2"))
    finally:
        server.shutdown()


def test_a_send_with_an_mpps_completes_it_when_every_instance_is_confirmed(pacs_with_mpps, lightbox_home):
    from app.library import Library, import_paths
    from app.pacs.config import PacsConfigs
    from app.pacs.outbox import Outbox
    from tests.conftest import SAMPLE

    config, received = pacs_with_mpps
    configs = PacsConfigs()
    configs.add(config)
    with Library() as library:
        import_paths([SAMPLE / "dx"], library=library)
        study = library.studies()[0]
        uid = mpps.start(config, mpps.Procedure(patient_id=study.patient.id, study_uid=study.uid, modality="DX"))
        box = Outbox(library)
        send_id = box.queue(config, study_uids=[study.uid], mpps_uid=uid)
        record = box.run(send_id, configs=configs)
        assert record.state == "done" and record.last_error == ""
        sop = library.instances(study_uid=study.uid)[0].sop_uid
    assert received["store"] == [sop]
    ((set_uid, modified),) = received["set"]
    assert set_uid == uid and modified.PerformedProcedureStepStatus == "COMPLETED"
    (performed,) = modified.PerformedSeriesSequence
    assert performed.SeriesDescription == "Thorax lateral"
    assert [r.ReferencedSOPInstanceUID for r in performed.ReferencedImageSequence] == [sop]
