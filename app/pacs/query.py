"""Find studies and series on a PACS: one query model, QIDO-RS for DICOMweb, C-FIND for classic DICOM.

Names, owners, species and descriptions without a wildcard match anywhere in the value (`bailey` is sent
as `*bailey*`); `*` and `?` are passed on as typed. What comes back is filtered again here with the same rule,
case-insensitively, so a PACS that ignores a key (or matches case-sensitively) cannot widen the answer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from dataclasses import asdict, dataclass, field

from pydicom.dataset import Dataset

from app.dicom.patient import Patient, patient_of
from app.errors import Cancelled, LightboxError, UsageError
from app.pacs.config import DICOMWEB, PacsConfig
from app.pacs.dimse import AssociationFailed, open_association, why_lost

log = logging.getLogger(__name__)

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
MAX_RESULTS = 1000  # answers kept from one query (C-FIND is cancelled beyond)
UTF8 = "ISO_IR 192"

# Filled from the answers; empty in the request means "return it".
_STUDY_KEYS = ("StudyInstanceUID", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
               "PatientSpeciesDescription", "PatientBreedDescription", "ResponsiblePerson", "StudyDate",
               "StudyTime", "StudyDescription", "AccessionNumber", "ReferringPhysicianName", "StudyID",
               "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
_SERIES_KEYS = ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined",
                "SeriesDate", "NumberOfSeriesRelatedInstances")


class QueryError(LightboxError):
    """The PACS could not be asked or refused the question; the message says why."""


@dataclass
class StudyQuery:
    patient_name: str = ""
    patient_id: str = ""
    owner: str = ""
    species: str = ""
    accession: str = ""
    modality: str = ""
    date_from: str = ""  # YYYYMMDD, inclusive
    date_to: str = ""
    description: str = ""
    study_uid: str = ""

    @classmethod
    def with_dates(cls, dates: str = "", **keys) -> StudyQuery:
        """`dates` as YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD."""
        date_from, date_to = parse_dates(dates)
        return cls(date_from=date_from, date_to=date_to, **keys)

    def date_range(self) -> str:
        if not (self.date_from or self.date_to):
            return ""
        if self.date_from and self.date_from == self.date_to:
            return self.date_from
        return f"{self.date_from}-{self.date_to}"


def parse_dates(text: str) -> tuple[str, str]:
    """(from, to) of a DICOM-style date range; UsageError for anything else."""
    text = (text or "").strip().replace(" ", "")
    if not text:
        return "", ""
    first, dash, last = text.partition("-")
    if not dash:
        last = first
    for value in (first, last):
        if value:
            try:
                dt.datetime.strptime(value, "%Y%m%d")
            except ValueError:
                raise UsageError(f"'{text}' is not a date or range of dates (YYYYMMDD, YYYYMMDD-YYYYMMDD, "
                                 "YYYYMMDD- or -YYYYMMDD).") from None
    if first and last and first > last:
        raise UsageError(f"The date range {text} ends before it starts.")
    return first, last


@dataclass
class FoundSeries:
    uid: str
    study_uid: str
    modality: str = ""
    number: int | None = None
    description: str = ""
    body_part: str = ""
    instance_count: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FoundStudy:
    uid: str
    patient: Patient
    date: str = ""
    time: str = ""
    description: str = ""
    accession: str = ""
    referring_physician: str = ""
    study_id: str = ""
    modalities: str = ""  # "CT\\SR"
    series_count: int | None = None
    instance_count: int | None = None
    source: str = ""  # the PACS configuration's AE title
    series: list[FoundSeries] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["patient"] = self.patient.as_dict()
        d["series"] = [s.as_dict() for s in self.series]
        return d


# -- matching ---------------------------------------------------------------------------------------

def _pattern(value: str, anywhere: bool) -> str:
    value = value.strip()
    if not value:
        return ""
    if anywhere and "*" not in value and "?" not in value:
        return f"*{value}*"
    return value


def _fold(text: str) -> str:
    return " ".join(text.replace("^", " ").split()).casefold()


def _matches(pattern: str, value: str) -> bool:
    """DICOM wildcard matching, case- and caret-insensitive (PN components are compared as words)."""
    if not pattern or pattern == "*":
        return True
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in _fold(pattern))
    return re.fullmatch(regex, _fold(value), re.DOTALL) is not None


def _server_pattern(value: str) -> str:
    """A name pattern a PACS can match whatever its case folding and component handling: each non-ASCII letter,
    `^` and space becomes `*` (many compare only ASCII case-insensitively; Orthanc's QIDO-RS matches no `^`);
    the answers are then narrowed here with the exact rule."""
    pattern = re.sub(r"[^\x00-\x7f]+|[\^\s]+", "*", _pattern(value, True))
    return re.sub(r"\*+", "*", pattern)


def _request_keys(query: StudyQuery, dicomweb: bool = False) -> dict[str, str]:
    """Matching keys as sent to the PACS. Species and description (LO: matched case-sensitively by DICOM) are
    matched here only; QIDO-RS gets only the keys PS3.18 makes every server support."""
    keys = {
        "PatientName": _server_pattern(query.patient_name),
        "PatientID": query.patient_id.strip(),
        "ResponsiblePerson": "" if dicomweb else _server_pattern(query.owner),
        "AccessionNumber": query.accession.strip(),
        "ModalitiesInStudy": query.modality.strip().upper(),
        "StudyDate": query.date_range(),
        "StudyInstanceUID": query.study_uid.strip(),
    }
    return {k: v for k, v in keys.items() if v and v != "*"}


def _wanted(study: FoundStudy, query: StudyQuery) -> bool:
    """The answer checked against the query where the answer has the value (the PACS may ignore a key)."""
    p = study.patient
    checks = ((query.patient_name, p.name, True), (query.owner, p.owner, True), (query.species, p.species, True),
              (query.description, study.description, True), (query.patient_id, p.id, False),
              (query.accession, study.accession, False))
    for wanted, value, anywhere in checks:
        if wanted.strip() and value and not _matches(_pattern(wanted, anywhere), value):
            return False
    if query.modality.strip() and study.modalities:
        if query.modality.strip().upper() not in study.modalities.upper().split("\\"):
            return False
    if study.date:
        if query.date_from and study.date < query.date_from or query.date_to and study.date > query.date_to:
            return False
    if query.study_uid.strip() and study.uid != query.study_uid.strip():
        return False
    return True


# -- answers ----------------------------------------------------------------------------------------

def _value(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(str(ds.get(keyword, "")).strip())
    except ValueError:
        return None


def _study(ds: Dataset, source: str) -> FoundStudy:
    return FoundStudy(
        uid=_value(ds, "StudyInstanceUID"), patient=patient_of(ds), date=_value(ds, "StudyDate"),
        time=_value(ds, "StudyTime"), description=_value(ds, "StudyDescription"),
        accession=_value(ds, "AccessionNumber"), referring_physician=_value(ds, "ReferringPhysicianName"),
        study_id=_value(ds, "StudyID"), modalities=_value(ds, "ModalitiesInStudy"),
        series_count=_int(ds, "NumberOfStudyRelatedSeries"), instance_count=_int(ds, "NumberOfStudyRelatedInstances"),
        source=source)


def _series(ds: Dataset, study_uid: str) -> FoundSeries:
    return FoundSeries(uid=_value(ds, "SeriesInstanceUID"), study_uid=_value(ds, "StudyInstanceUID") or study_uid,
                       modality=_value(ds, "Modality"), number=_int(ds, "SeriesNumber"),
                       description=_value(ds, "SeriesDescription"), body_part=_value(ds, "BodyPartExamined"),
                       instance_count=_int(ds, "NumberOfSeriesRelatedInstances"))


def _newest_first(studies: list[FoundStudy]) -> list[FoundStudy]:
    return sorted(studies, key=lambda s: (s.date, s.time), reverse=True)


# -- the front door ---------------------------------------------------------------------------------

def find_studies(config: PacsConfig, query: StudyQuery, *, secret: str | None = None, settings=None,
                 reporter=None) -> list[FoundStudy]:
    """The studies on the PACS that match, newest first. QueryError says why there are none to show."""
    _check_imports(config)
    if config.type == DICOMWEB:
        found = _qido(config, secret, settings, "studies", _request_keys(query, True), _STUDY_KEYS)
        studies = [_study(ds, config.aet) for ds in found]
    else:
        studies = _find_studies_dimse(config, query, reporter)
    studies = [s for s in studies if s.uid and _wanted(s, query)]
    log.info("query of %s: %d studies", config.aet, len(studies))
    return _newest_first(list({s.uid: s for s in studies}.values()))


def find_series(config: PacsConfig, study_uid: str, *, secret: str | None = None, settings=None,
                reporter=None) -> list[FoundSeries]:
    """A study's series on the PACS, by number. A cancelled `reporter` stops a C-FIND (C-CANCEL) and raises Cancelled."""
    _check_imports(config)
    if config.type == DICOMWEB:
        found = _qido(config, secret, settings, "series", {}, _SERIES_KEYS, study_uid)
    else:
        found = _cfind(config, _identifier("SERIES", {"StudyInstanceUID": study_uid}, _SERIES_KEYS), reporter)
    series = [_series(ds, study_uid) for ds in found]
    return sorted((s for s in series if s.uid), key=lambda s: (s.number is None, s.number or 0, s.uid))


def find_instances(config: PacsConfig, study_uid: str, series_uid: str = "") -> list[tuple[str, str, str]]:
    """(series UID, SOP class UID, SOP instance UID) of each instance, by C-FIND at IMAGE level: for the whole
    study at once where the PACS allows it, else series by series. All on one association."""
    wanted = ("SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID")

    def rows(answers, series=""):
        return [(_value(ds, "SeriesInstanceUID") or series, _value(ds, "SOPClassUID"), _value(ds, "SOPInstanceUID"))
                for ds in answers]

    with _finding(config) as ask:
        keys = {"StudyInstanceUID": study_uid} | ({"SeriesInstanceUID": series_uid} if series_uid else {})
        try:
            found = rows(ask(_identifier("IMAGE", keys, wanted)), series_uid)
        except QueryError:
            found = []
        if found or series_uid:
            return found
        series = ask(_identifier("SERIES", {"StudyInstanceUID": study_uid}, ("SeriesInstanceUID",)))
        for uid in [_value(ds, "SeriesInstanceUID") for ds in series]:
            keys = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": uid}
            found += rows(ask(_identifier("IMAGE", keys, wanted)), uid)
        return found


def study_sop_classes(config: PacsConfig, study_uid: str) -> tuple[list[str], int | None]:
    """The study's SOP classes and instance count from one STUDY-level C-FIND (SOPClassesInStudy, optional for a
    PACS: empty when it does not say)."""
    keys = {"StudyInstanceUID": study_uid}
    answers = _cfind(config, _identifier("STUDY", keys, ("SOPClassesInStudy", "NumberOfStudyRelatedInstances")))
    if not answers:
        return [], None
    classes = [c for c in _value(answers[0], "SOPClassesInStudy").split("\\") if c]
    return sorted(set(classes)), _int(answers[0], "NumberOfStudyRelatedInstances")


def _check_imports(config: PacsConfig) -> None:
    if not config.imports:
        what = "QIDO-RS" if config.type == DICOMWEB else "query/retrieve"
        raise QueryError(f"{config.name} ({config.aet}) is not set up for {what}: turn it on in the configuration.")


# -- DICOMweb ---------------------------------------------------------------------------------------

def _qido(config: PacsConfig, secret, settings, level: str, keys: dict[str, str], wanted: tuple[str, ...],
          study_uid: str = "") -> list[Dataset]:
    from app.pacs.dicomweb import DicomWebError, dicomweb_session, qido

    o = config.dicomweb
    path = "studies" if level == "studies" else f"studies/{study_uid}/series"
    params = list(keys.items()) + [("includefield", k) for k in wanted if k not in keys]
    if level == "studies":
        params.append(("limit", str(MAX_RESULTS)))
    session = dicomweb_session(config, secret, settings)
    try:
        items = qido(session, f"{o.url.rstrip('/')}/{path}", params, label=f"{config.name} ({config.aet})",
                     timeout=(o.timeout_s, o.timeout_s))
    except DicomWebError as exc:
        raise QueryError(str(exc)) from None
    finally:
        session.close()
    found = []
    for item in items:
        try:
            found.append(Dataset.from_json(item))
        except (ValueError, TypeError, KeyError) as exc:
            log.info("QIDO-RS answer item unreadable: %s", exc)
    return found


# -- classic DICOM ------------------------------------------------------------------------------------

def _identifier(level: str, keys: dict[str, str], wanted: tuple[str, ...]) -> Dataset:
    ds = Dataset()
    if any(not v.isascii() for v in keys.values()):
        ds.SpecificCharacterSet = UTF8
    ds.QueryRetrieveLevel = level
    for keyword in wanted:
        setattr(ds, keyword, "")
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _find_studies_dimse(config: PacsConfig, query: StudyQuery, reporter) -> list[FoundStudy]:
    keys = _request_keys(query)
    try:
        return [_study(ds, config.aet) for ds in _cfind(config, _identifier("STUDY", keys, _STUDY_KEYS), reporter)]
    except _ModelRefused:
        pass
    # Patient Root: the PATIENT level first, then each patient's studies.
    patient_keys = {k: v for k, v in keys.items() if k in ("PatientName", "PatientID", "ResponsiblePerson",
                                                             "PatientSpeciesDescription")}
    patient_wanted = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientSpeciesDescription",
                      "PatientBreedDescription", "ResponsiblePerson")
    patients = _cfind(config, _identifier("PATIENT", patient_keys, patient_wanted), reporter, PATIENT_ROOT_FIND)
    studies = []
    for patient in patients:
        study_keys = {k: v for k, v in keys.items() if k not in patient_keys} | {"PatientID": _value(patient, "PatientID")}
        for ds in _cfind(config, _identifier("STUDY", study_keys, _STUDY_KEYS), reporter, PATIENT_ROOT_FIND):
            for keyword in patient_wanted:  # patient attributes come from the PATIENT level
                if keyword in patient and not _value(ds, keyword):
                    setattr(ds, keyword, patient[keyword].value)
            studies.append(_study(ds, config.aet))
    return studies


class _ModelRefused(Exception):
    pass


def _cfind(config: PacsConfig, identifier: Dataset, reporter=None, model: str = STUDY_ROOT_FIND) -> list[Dataset]:
    """Every pending answer of one C-FIND; _ModelRefused when the PACS does not offer the Study Root model."""
    with _finding(config, model, reporter) as ask:
        return ask(identifier)


@contextlib.contextmanager
def _finding(config: PacsConfig, model: str = STUDY_ROOT_FIND, reporter=None):
    """ask(identifier) -> answers, for as many C-FINDs as wanted on one association."""
    from pydicom.uid import UID
    from pynetdicom.presentation import build_context

    calling = config.dimse.query_aet
    contexts = [build_context(UID(model))]
    if model == STUDY_ROOT_FIND:
        contexts.append(build_context(UID(PATIENT_ROOT_FIND)))
    try:
        assoc = open_association(config, calling, contexts)
    except AssociationFailed as exc:
        raise QueryError(str(exc)) from None
    try:
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        if model not in accepted:
            if model == STUDY_ROOT_FIND and PATIENT_ROOT_FIND in accepted:
                raise _ModelRefused()
            raise QueryError(f"{config.aet} does not answer queries (C-FIND) from {calling}")
        yield lambda identifier: _answers(assoc, identifier, UID(model), config, reporter)
    finally:
        if assoc.is_established:
            assoc.release()


def _answers(assoc, identifier: Dataset, model, config: PacsConfig, reporter) -> list[Dataset]:
    calling = config.dimse.query_aet
    if getattr(assoc, "lightbox_lost", False) or not assoc.is_established:
        # lost in an earlier request (pynetdicom may not say so yet): asking again would wait for the timeout
        raise QueryError(why_lost(assoc, "C-FIND", calling))
    found: list[Dataset] = []
    cancelled = False
    for status, answer in assoc.send_c_find(identifier, model):
        code = status.get("Status") if status else None
        if code is None:
            assoc.lightbox_lost = True
            raise QueryError(why_lost(assoc, "C-FIND", calling))
        code = int(code)
        if code in (0xFF00, 0xFF01):
            if answer is not None and not cancelled:
                found.append(answer)
            if len(found) >= MAX_RESULTS or (reporter is not None and reporter.cancelled and not cancelled):
                cancelled = True
                _cancel(assoc, model)
            continue
        if code == 0x0000 or code == 0xFE00:
            break
        raise QueryError(_find_failure(code, status, config))
    if reporter is not None and reporter.cancelled:
        raise Cancelled()
    return found


def _cancel(assoc, model) -> None:
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == model:
            assoc.send_c_cancel(1, cx.context_id)
            return


def _find_failure(code: int, status: Dataset, config: PacsConfig) -> str:
    comment = str(status.get("ErrorComment") or "").strip()
    what = {0xA700: "it is out of resources", 0xA900: "the query does not match what it supports",
            0x0122: "it does not support this kind of query", 0x0124: "this computer may not query it"}.get(code)
    if what is None and 0xC000 <= code <= 0xCFFF:
        what = "it could not process the query"
    text = f"{config.aet} refused the query: {what or 'failure'} (status 0x{code:04X})"
    return f"{text}: {comment}" if comment else text


# -- priors -------------------------------------------------------------------------------------------

def same_animal(a: Patient, b: Patient) -> bool:
    """Whether two patient records may be the same animal: the ID agrees (when both have one) and the name, owner
    and species agree where both say (case, accents-as-typed and ^ ignored)."""
    if a.id.strip() and b.id.strip() and a.id.strip() != b.id.strip():
        return False
    for x, y in ((a.name, b.name), (a.owner, b.owner), (a.species, b.species)):
        if x.strip() and y.strip() and _fold(x) != _fold(y):
            return False
    return bool(a.id.strip() and b.id.strip()) or bool(_fold(a.name) and _fold(a.name) == _fold(b.name))


def find_priors(config: PacsConfig, patient: Patient, *, before: str = "", exclude=(), secret: str | None = None,
                settings=None, reporter=None) -> list[FoundStudy]:
    """The same animal's studies on the PACS (by patient ID, else name and owner), dated before `before` (YYYYMMDD)
    when given, without the study UIDs in `exclude`; newest first."""
    if patient.id.strip():
        query = StudyQuery(patient_id=patient.id.strip())
    elif patient.name.strip():
        query = StudyQuery(patient_name=patient.name.strip(), owner=patient.owner.strip())
    else:
        return []
    if before:
        query.date_to = before
    excluded = set(exclude)
    return [s for s in find_studies(config, query, secret=secret, settings=settings, reporter=reporter)
            if s.uid not in excluded and same_animal(patient, s.patient)]
