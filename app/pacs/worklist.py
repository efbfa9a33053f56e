"""Modality Worklist: the day's orders from the PACS (C-FIND on the MWL information model), so that the images
taken for an order arrive named: patient (species, breed, owner), accession number and the order's study UID.

An entry gives the capture context for photo imports and the Procedure for MPPS; `start_procedure` records which
study belongs to which performed procedure step, so that the send that completes the study can complete it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass

from pydicom.dataset import Dataset

from app.dicom.capture import CaptureContext
from app.dicom.patient import Patient, patient_of
from app.errors import Cancelled, UsageError
from app.pacs.config import DICOMWEB, PacsConfig
from app.pacs.dimse import AssociationFailed, open_association, why_lost
from app.pacs.query import QueryError, parse_dates

log = logging.getLogger(__name__)

MWL_FIND = "1.2.840.10008.5.1.4.31"
MAX_ENTRIES = 1000


@dataclass
class WorklistQuery:
    date_from: str = ""  # YYYYMMDD; both empty: any date
    date_to: str = ""
    modality: str = ""
    station_aet: str = ""
    patient_name: str = ""

    @classmethod
    def with_dates(cls, dates: str = "", **keys) -> WorklistQuery:
        """`dates`: YYYYMMDD, a range (YYYYMMDD-YYYYMMDD, open at either end), "today", or "" (any)."""
        if (dates or "").strip().lower() == "today":
            dates = dt.date.today().strftime("%Y%m%d")
        date_from, date_to = parse_dates(dates)
        return cls(date_from=date_from, date_to=date_to, **keys)

    def date_range(self) -> str:
        if not (self.date_from or self.date_to):
            return ""
        return self.date_from if self.date_from == self.date_to else f"{self.date_from}-{self.date_to}"


@dataclass
class WorklistEntry:
    patient: Patient
    accession: str = ""
    study_uid: str = ""
    requested_procedure_id: str = ""
    requested_procedure: str = ""  # RequestedProcedureDescription
    step_id: str = ""  # ScheduledProcedureStepID
    step_description: str = ""
    modality: str = ""
    station_aet: str = ""
    scheduled_date: str = ""
    scheduled_time: str = ""
    referring_physician: str = ""
    performing_physician: str = ""
    source: str = ""  # the configuration's AE title

    def as_dict(self) -> dict:
        d = asdict(self)
        d["patient"] = self.patient.as_dict()
        return d

    def capture_context(self) -> CaptureContext:
        """Patient and study for images taken for this order (photos imported as Secondary Capture)."""
        return CaptureContext(patient=self.patient, study_uid=self.study_uid, accession=self.accession,
                              study_description=self.requested_procedure or self.step_description,
                              series_description=self.step_description or "Photos",
                              referring_physician=self.referring_physician,
                              modality=self.modality if self.modality in ("XC", "OT", "DOC") else "OT")

    def procedure(self):
        from app.pacs.mpps import Procedure

        p = self.patient
        return Procedure(patient_name=p.name, patient_id=p.id, patient_birth_date=p.birth_date, patient_sex=p.sex,
                         study_uid=self.study_uid, accession=self.accession,
                         requested_procedure_id=self.requested_procedure_id, scheduled_step_id=self.step_id,
                         scheduled_step_description=self.step_description,
                         study_description=self.requested_procedure, modality=self.modality or "OT")


def _identifier(query: WorklistQuery, charset: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientSpeciesDescription",
                    "PatientBreedDescription", "ResponsiblePerson", "ResponsiblePersonRole",
                    "ResponsibleOrganization", "AccessionNumber", "StudyInstanceUID", "RequestedProcedureID",
                    "RequestedProcedureDescription", "ReferringPhysicianName"):
        setattr(ds, keyword, "")
    if query.patient_name.strip():
        name = query.patient_name.strip()
        ds.PatientName = name if "*" in name or "?" in name else f"*{name}*"
    step = Dataset()
    step.ScheduledStationAETitle = query.station_aet.strip()
    step.ScheduledProcedureStepStartDate = query.date_range()
    step.ScheduledProcedureStepStartTime = ""
    step.Modality = query.modality.strip().upper()
    step.ScheduledPerformingPhysicianName = ""
    step.ScheduledProcedureStepDescription = ""
    step.ScheduledProcedureStepID = ""
    step.ScheduledStationName = ""
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def _entry(ds: Dataset, charset: str, source: str) -> WorklistEntry:
    if "SpecificCharacterSet" not in ds:  # text not yet decoded is read in the configured character set
        from pydicom.charset import convert_encodings

        ds.SpecificCharacterSet = charset
        ds.set_original_encoding(ds.original_encoding[0], ds.original_encoding[1], convert_encodings(charset))
    steps = ds.get("ScheduledProcedureStepSequence") or [Dataset()]
    step = steps[0]

    def text(item, keyword) -> str:
        value = item.get(keyword)
        return "" if value is None else str(value).strip()

    return WorklistEntry(
        patient=patient_of(ds), accession=text(ds, "AccessionNumber"), study_uid=text(ds, "StudyInstanceUID"),
        requested_procedure_id=text(ds, "RequestedProcedureID"),
        requested_procedure=text(ds, "RequestedProcedureDescription"), step_id=text(step, "ScheduledProcedureStepID"),
        step_description=text(step, "ScheduledProcedureStepDescription"), modality=text(step, "Modality"),
        station_aet=text(step, "ScheduledStationAETitle"), scheduled_date=text(step, "ScheduledProcedureStepStartDate"),
        scheduled_time=text(step, "ScheduledProcedureStepStartTime"),
        referring_physician=text(ds, "ReferringPhysicianName"),
        performing_physician=text(step, "ScheduledPerformingPhysicianName"), source=source)


def find_worklist(config: PacsConfig, query: WorklistQuery, *, reporter=None) -> list[WorklistEntry]:
    """The worklist entries that match, by scheduled date and time. QueryError says why there are none to show;
    a cancelled `reporter` stops the C-FIND (C-CANCEL) and raises Cancelled."""
    from pydicom.uid import UID
    from pynetdicom.presentation import build_context

    if config.type == DICOMWEB or not config.dimse.mwl:
        raise QueryError(f"{config.name} ({config.aet}) is not set up as a worklist: turn on Modality Worklist "
                         "in its configuration.")
    o = config.dimse
    calling = o.query_aet
    try:
        assoc = open_association(config, calling, [build_context(UID(MWL_FIND))])
    except AssociationFailed as exc:
        raise QueryError(str(exc)) from None
    entries: list[WorklistEntry] = []
    cancelling = False
    try:
        if not any(str(cx.abstract_syntax) == MWL_FIND for cx in assoc.accepted_contexts):
            raise QueryError(f"{config.aet} does not offer a Modality Worklist to {calling}")
        for status, answer in assoc.send_c_find(_identifier(query, o.mwl_charset), UID(MWL_FIND)):
            code = status.get("Status") if status else None
            if code is None:
                raise QueryError(why_lost(assoc, "worklist query", calling))
            code = int(code)
            if code in (0xFF00, 0xFF01):
                if answer is not None and len(entries) < MAX_ENTRIES:
                    entries.append(_entry(answer, o.mwl_charset, config.aet))
                if reporter is not None and reporter.cancelled and not cancelling:
                    cancelling = True
                    context = next(cx for cx in assoc.accepted_contexts if str(cx.abstract_syntax) == MWL_FIND)
                    assoc.send_c_cancel(1, context.context_id)
                continue
            if code in (0x0000, 0xFE00):
                break
            comment = str(status.get("ErrorComment") or "").strip()
            raise QueryError(f"{config.aet} refused the worklist query (status 0x{code:04X})"
                             + (f": {comment}" if comment else ""))
    finally:
        if assoc.is_established:
            assoc.release()
    if reporter is not None and reporter.cancelled:
        raise Cancelled()
    log.info("worklist of %s: %d entries", config.aet, len(entries))
    return sorted(entries, key=lambda e: (e.scheduled_date, e.scheduled_time, e.accession))


def choose(entries: list[WorklistEntry], key: str) -> WorklistEntry:
    """The entry named by accession number, scheduled step ID or Study Instance UID."""
    key = (key or "").strip()
    found = [e for e in entries if key and key in (e.accession, e.step_id, e.study_uid)]
    if not found:
        raise UsageError(f"No worklist entry has the accession number, step ID or study UID '{key}'.")
    if len(found) > 1:
        raise UsageError(f"Several worklist entries match '{key}'; use the scheduled step ID or the study UID.")
    return found[0]


# -- performed procedure steps ------------------------------------------------------------------------

def start_procedure(library, config: PacsConfig, entry: WorklistEntry, study_uid: str = "") -> str:
    """N-CREATE the entry's MPPS "IN PROGRESS" (when the configuration does MPPS) and remember it for the study
    (`study_uid`: the one the images went to, when the order named none); the SOP Instance UID of the step, or ""
    when MPPS is off. LightboxError (from app.pacs.send.SendError) when the PACS refuses it."""
    from dataclasses import replace

    from app.pacs import mpps

    study_uid = entry.study_uid or study_uid
    if config.type == DICOMWEB or not config.dimse.mpps or not study_uid:
        return ""
    known = library.procedure(study_uid)
    if known is not None:
        return known[1]
    uid = mpps.start(config, replace(entry.procedure(), study_uid=study_uid))
    library.add_procedure(study_uid, config.id, uid)
    return uid

