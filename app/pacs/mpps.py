"""Modality Performed Procedure Step: tell the PACS a procedure started (N-CREATE "IN PROGRESS") and what
it produced once the images are there (N-SET "COMPLETED", with every series and instance)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

from app.pacs.config import PacsConfig
from app.pacs.dimse import AssociationFailed, open_association, why_lost
from app.pacs.send import SendError

log = logging.getLogger(__name__)

MPPS_CLASS = UID("1.2.840.10008.3.1.2.3.3")


@dataclass
class Procedure:
    """What the worklist entry scheduled, and the patient: the step's identity."""
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_uid: str = ""
    accession: str = ""
    requested_procedure_id: str = ""
    scheduled_step_id: str = ""
    scheduled_step_description: str = ""
    study_description: str = ""
    modality: str = "OT"
    step_id: str = field(default_factory=lambda: dt.datetime.now().strftime("LB%Y%m%d%H%M%S"))


@dataclass
class PerformedSeries:
    series_uid: str
    description: str = ""
    instances: list[tuple[str, str]] = field(default_factory=list)  # (SOP class UID, SOP instance UID)


def _now() -> tuple[str, str]:
    now = dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def _calling(config: PacsConfig) -> str:
    return config.dimse.query_aet


def _request(config: PacsConfig, what: str, send):
    """Run one N-CREATE or N-SET; SendError says why it did not succeed."""
    from pynetdicom.presentation import build_context

    try:
        assoc = open_association(config, _calling(config), [build_context(MPPS_CLASS)])
    except AssociationFailed as exc:
        raise SendError(str(exc)) from None
    try:
        if not any(str(cx.abstract_syntax) == MPPS_CLASS for cx in assoc.accepted_contexts):
            raise SendError(f"{config.aet} does not accept MPPS")
        status, attributes = send(assoc)
        code = status.get("Status") if status else None
        if code is None:
            raise SendError(why_lost(assoc, what, _calling(config)))
        if code != 0:
            comment = f": {status.ErrorComment}" if "ErrorComment" in status else ""
            raise SendError(f"{what} was refused with status 0x{int(code):04X}{comment}")
        return attributes
    finally:
        if assoc.is_established:
            assoc.release()


def start(config: PacsConfig, procedure: Procedure, *, station: str = "Lightbox") -> str:
    """N-CREATE an MPPS "IN PROGRESS"; returns its SOP instance UID (keep it for `complete`)."""
    date, time = _now()
    ds = Dataset()
    step = Dataset()
    step.StudyInstanceUID = procedure.study_uid
    step.AccessionNumber = procedure.accession
    step.RequestedProcedureID = procedure.requested_procedure_id
    step.ScheduledProcedureStepID = procedure.scheduled_step_id
    step.ScheduledProcedureStepDescription = procedure.scheduled_step_description
    step.RequestedProcedureDescription = procedure.study_description
    step.ReferencedStudySequence = []
    step.ScheduledProtocolCodeSequence = []
    ds.ScheduledStepAttributesSequence = [step]
    ds.PatientName = procedure.patient_name
    ds.PatientID = procedure.patient_id
    ds.PatientBirthDate = procedure.patient_birth_date
    ds.PatientSex = procedure.patient_sex
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = procedure.step_id
    ds.PerformedStationAETitle = _calling(config)
    ds.PerformedStationName = station
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = date
    ds.PerformedProcedureStepStartTime = time
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = procedure.scheduled_step_description or procedure.study_description
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = procedure.modality
    ds.StudyID = ""
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    uid = generate_uid()
    _request(config, "MPPS N-CREATE", lambda assoc: assoc.send_n_create(ds, MPPS_CLASS, uid))
    log.info("MPPS %s in progress at %s", procedure.step_id, config.aet)
    return uid


def complete(config: PacsConfig, mpps_uid: str, series: list[PerformedSeries], *,
             status: str = "COMPLETED") -> None:
    """N-SET the MPPS to COMPLETED (or DISCONTINUED) with the series and instances it produced."""
    date, time = _now()
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = date
    ds.PerformedProcedureStepEndTime = time
    items = []
    for performed in series:
        item = Dataset()
        item.SeriesInstanceUID = performed.series_uid
        item.SeriesDescription = performed.description
        item.PerformingPhysicianName = ""
        item.OperatorsName = ""
        item.ProtocolName = performed.description or "Lightbox"
        item.RetrieveAETitle = config.aet
        refs = []
        for sop_class, sop_uid in performed.instances:
            ref = Dataset()
            ref.ReferencedSOPClassUID = sop_class
            ref.ReferencedSOPInstanceUID = sop_uid
            refs.append(ref)
        item.ReferencedImageSequence = refs
        item.ReferencedNonImageCompositeSOPInstanceSequence = []
        items.append(item)
    ds.PerformedSeriesSequence = items
    _request(config, "MPPS N-SET", lambda assoc: assoc.send_n_set(ds, MPPS_CLASS, mpps_uid))
    log.info("MPPS %s %s at %s", mpps_uid, status.lower(), config.aet)
