"""De-identification by the DICOM PS3.15 Basic Application Level Confidentiality Profile.

Options applied (and recorded in DeidentificationMethodCodeSequence):
- 113100 Basic Application Confidentiality Profile;
- 113108 Retain Patient Characteristics Option: sex, neutered status, age, size, weight are kept;
- 113106 Retain Longitudinal Temporal Information with Full Dates Option: study, series, acquisition
  and content dates and times are kept; the date of birth is emptied.
Species and breed (descriptions and codes) are kept: for an animal they are clinical, not identifying.

Actions, wherever the attribute occurs (nested sequences included):
- names, IDs, accession, the owner (ResponsiblePerson/Organization), the date of birth: emptied, as they
  are type 2 (or 2C for animals); PatientName and PatientID become one pseudonym (ANON-xxxxxxxx) for
  the whole export, so the result still files under one patient, and StudyID becomes "ANON";
- addresses, institution, physicians, operators, stations, device serials, descriptions and free-text
  comments, other IDs (OtherPatientIDsSequence holds the microchip), breed registrations: deleted
  (the breed registration sequence, type 2C, is emptied instead);
- every UID that is not a well-known one from the standard (SOP classes, transfer syntaxes, coding
  schemes...) is replaced by a new 2.25 UID, the same old UID always giving the same new one;
- private attributes, overlays' data and comments, curves: deleted.
Pixel data is not touched: burned-in text stays (see `burned_in`).
"""

from __future__ import annotations

import secrets

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import UID_dictionary, generate_uid

from app import __version__

# Emptied (type 2 or 2C attributes: present, without a value).
EMPTIED = frozenset({
    "PatientName", "PatientID", "PatientBirthDate", "ReferringPhysicianName", "AccessionNumber", "StudyID",
    "ResponsiblePerson", "ResponsibleOrganization", "BreedRegistrationSequence", "ContentCreatorName",
    "VerifyingObserverName", "PersonName",
})

# Deleted (type 3, or identifying in any case).
DELETED = frozenset({
    # patient
    "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "OtherPatientIDs", "OtherPatientIDsSequence",
    "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "PatientBirthTime", "PatientAddress",
    "PatientTelephoneNumbers", "PatientTelecomInformation", "MilitaryRank", "BranchOfService",
    "MedicalRecordLocator", "PatientReligiousPreference", "Occupation", "PatientComments", "PatientState",
    "AdditionalPatientHistory", "PatientInsurancePlanCodeSequence", "PatientPrimaryLanguageCodeSequence",
    "CountryOfResidence", "RegionOfResidence", "MedicalAlerts", "Allergies", "LastMenstrualDate",
    "SpecialNeeds", "PatientTransportArrangements", "ResponsiblePersonRole", "BreedRegistrationNumber",
    "ReferencedPatientSequence", "ReferencedPatientPhotoSequence", "CurrentPatientLocation",
    "PatientInstitutionResidence", "AdmissionID", "IssuerOfAdmissionIDSequence", "ServiceEpisodeID",
    "ServiceEpisodeDescription", "IssuerOfServiceEpisodeIDSequence", "VisitComments",
    "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence",
    # institution, equipment, people
    "InstitutionName", "InstitutionAddress", "InstitutionCodeSequence", "InstitutionalDepartmentName",
    "InstitutionalDepartmentTypeCodeSequence", "StationName", "DeviceSerialNumber", "DetectorID", "PlateID",
    "GantryID", "CassetteID", "GeneratorID", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName",
    "ConsultingPhysicianIdentificationSequence", "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence",
    "PerformingPhysicianName", "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "OperatorsName", "OperatorIdentificationSequence",
    "RequestingPhysician", "RequestingService", "ScheduledPerformingPhysicianName",
    "ScheduledPerformingPhysicianIdentificationSequence", "PerformedStationName", "PerformedStationAETitle",
    "PerformedLocation", "ScheduledStationName", "ScheduledStationAETitle", "ScheduledProcedureStepLocation",
    "ScheduledStudyLocation", "ScheduledStudyLocationAETitle", "OrderEnteredBy", "OrderEntererLocation",
    "OrderCallbackPhoneNumber", "OrderCallbackTelecomInformation", "AuthorObserverSequence",
    "ParticipantSequence", "ContentCreatorIdentificationCodeSequence", "ContributionDescription",
    "TimezoneOffsetFromUTC",
    # orders, procedures and free text
    "PlacerOrderNumberImagingServiceRequest", "FillerOrderNumberImagingServiceRequest", "RequestedProcedureID",
    "ScheduledProcedureStepID", "PerformedProcedureStepID", "PerformedProcedureStepDescription",
    "RequestedProcedureDescription", "RequestAttributesSequence", "ReasonForStudy",
    "ReasonForTheRequestedProcedure", "RequestedContrastAgent", "StudyComments", "StudyDescription",
    "SeriesDescription", "ProtocolName", "ImageComments", "AcquisitionComments", "DerivationDescription",
    "FrameComments", "IdentifyingComments", "TextComments", "InterpretationText", "TextValue",
    "StorageMediaFileSetID",
    # whole structures that may copy any of the above
    "IconImageSequence", "OriginalAttributesSequence", "ModifiedAttributesSequence", "DigitalSignaturesSequence",
    "MACParametersSequence",
})

# UI attributes naming a kind of thing, never an instance: kept even when the value is not well known.
_CLASS_UIDS_SUFFIXES = ("ClassUID", "SyntaxUID")
_KEPT_UID_KEYWORDS = frozenset({"CodingSchemeUID", "ContextUID", "MappingResourceUID"})

# File meta elements that name the sending side.
_META_DELETED = ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                 "ReceivingApplicationEntityTitle", "PrivateInformationCreatorUID", "PrivateInformation")

METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)


def _tag(keyword: str) -> int:
    return int(Tag(keyword))


_EMPTIED_TAGS = frozenset(_tag(k) for k in EMPTIED)
_DELETED_TAGS = frozenset(_tag(k) for k in DELETED)
STUDY_ID = "ANON"  # StudyID is type 1 in DICOMDIR records: a dummy, not nothing


def burned_in(ds: Dataset) -> bool:
    """The image says it carries burned-in text, which this profile does not remove from the pixels."""
    return str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES"


class Anonymizer:
    """Anonymise the instances of one export: one pseudonym and one UID map for all of them."""

    def __init__(self, pseudonym: str | None = None):
        self.pseudonym = pseudonym or f"ANON-{secrets.token_hex(4).upper()}"
        self.uid_map: dict[str, str] = {}
        self._top: Dataset | None = None
        self._dummies = {_tag("PatientName"): self.pseudonym, _tag("PatientID"): self.pseudonym,
                         _tag("StudyID"): STUDY_ID}

    def new_uid(self, old: str) -> str:
        old = str(old).strip().rstrip("\0")
        if not old:
            return old
        new = self.uid_map.get(old)
        if new is None:
            new = self.uid_map[old] = generate_uid(prefix=None)
        return new

    def anonymize(self, ds: Dataset) -> Dataset:
        """Change `ds` in place (file meta included) and return it."""
        ds.remove_private_tags()
        self._top = ds  # the pseudonym goes only into the top level, not into referenced patients
        try:
            ds.walk(self._element)
        finally:
            self._top = None
        self._mark(ds)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            for keyword in _META_DELETED:
                if keyword in meta:
                    del meta[keyword]
            if meta.get("MediaStorageSOPInstanceUID"):
                meta.MediaStorageSOPInstanceUID = self.new_uid(meta.MediaStorageSOPInstanceUID)
        return ds

    def _element(self, ds: Dataset, elem: DataElement) -> None:
        tag = int(elem.tag)
        group = tag >> 16
        if (0x6000 <= group <= 0x601E and (tag & 0xFFFF) in (0x3000, 0x4000)) or 0x5000 <= group <= 0x501E:
            del ds[elem.tag]  # overlay data and comments, curves
        elif tag in _DELETED_TAGS:
            del ds[elem.tag]
        elif tag in _EMPTIED_TAGS:
            if ds is self._top and tag in self._dummies:
                elem.value = self._dummies[tag]
            elif elem.VR == "SQ":
                elem.value = Sequence()
            else:
                elem.value = None
        elif elem.VR == "UI" and not elem.tag.is_private:
            self._uid(elem)

    def _uid(self, elem: DataElement) -> None:
        keyword = elem.keyword or ""
        if keyword.endswith(_CLASS_UIDS_SUFFIXES) or keyword in _KEPT_UID_KEYWORDS or elem.value in (None, ""):
            return
        values = list(elem.value) if elem.VM > 1 else [elem.value]
        mapped = [v if str(v) in UID_dictionary else self.new_uid(v) for v in values]
        elem.value = mapped if elem.VM > 1 else mapped[0]

    def _mark(self, ds: Dataset) -> None:
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = ["DICOM PS3.15 Basic Profile", "Retain Patient Characteristics",
                                     "Retain Full Dates", f"Lightbox {__version__}"]
        codes = Sequence()
        for value, meaning in METHOD_CODES:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            codes.append(item)
        ds.DeidentificationMethodCodeSequence = codes
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
