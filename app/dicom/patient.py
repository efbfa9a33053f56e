"""The veterinary patient: who the animal is, what it is, and who it belongs to."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pydicom.dataset import Dataset

from app.dicom.reading import text as _text


@dataclass(frozen=True)
class Code:
    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class Patient:
    name: str = ""
    id: str = ""
    species: str = ""
    breed: str = ""
    owner: str = ""
    sex: str = ""
    birth_date: str = ""
    neutered: str = ""
    species_code: Code | None = None
    breed_code: Code | None = None
    owner_role: str = ""
    owner_organization: str = ""
    microchip: str = ""
    extra_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The matching key: one animal is the same ID, name, owner and species."""
        return (self.id.strip(), _fold(self.name), _fold(self.owner), _fold(self.species))

    @property
    def animal_name(self) -> str:
        """The animal's own name: the given-name part of 'Owner^Animal', else the whole name."""
        parts = self.name.split("^")
        return parts[1] if len(parts) > 1 and parts[1] else parts[0]

    @property
    def species_breed(self) -> str:
        return " · ".join(p for p in (self.species, self.breed) if p)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["extra_ids"] = list(self.extra_ids)
        return d


def _fold(text: str) -> str:
    return " ".join(text.replace("^", " ").split()).casefold()


def _code(ds: Dataset, keyword: str) -> Code | None:
    seq = ds.get(keyword)
    if not seq:
        return None
    item = seq[0]
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue") or ""
    if not value and not item.get("CodeMeaning"):
        return None
    return Code(str(value), str(item.get("CodingSchemeDesignator", "")), str(item.get("CodeMeaning", "")))


def microchip_of(ds: Dataset, issuers: tuple[str, ...] | list[str] = ()) -> str:
    """The microchip number: an OtherPatientIDsSequence item of type RFID, or one whose issuer is named."""
    wanted = {_fold(i) for i in issuers if i}
    for item in ds.get("OtherPatientIDsSequence", []):
        number = str(item.get("PatientID", "") or "").strip()
        if not number:
            continue
        if str(item.get("TypeOfPatientID", "")).strip().upper() == "RFID":
            return number
        if wanted and _fold(str(item.get("IssuerOfPatientID", "") or "")) in wanted:
            return number
    return ""


def patient_of(ds: Dataset, microchip_issuers: tuple[str, ...] | list[str] = ()) -> Patient:
    species_code = _code(ds, "PatientSpeciesCodeSequence")
    breed_code = _code(ds, "PatientBreedCodeSequence")
    species = _text(ds, "PatientSpeciesDescription") or (species_code.meaning if species_code else "")
    breed = _text(ds, "PatientBreedDescription") or (breed_code.meaning if breed_code else "")
    extra = tuple(
        str(item.get("PatientID", "")) for item in ds.get("OtherPatientIDsSequence", []) if item.get("PatientID")
    )
    return Patient(
        name=_text(ds, "PatientName"),
        id=_text(ds, "PatientID"),
        species=species,
        breed=breed,
        owner=_text(ds, "ResponsiblePerson"),
        sex=_text(ds, "PatientSex"),
        birth_date=_text(ds, "PatientBirthDate"),
        neutered=_text(ds, "PatientSexNeutered"),
        species_code=species_code,
        breed_code=breed_code,
        owner_role=_text(ds, "ResponsiblePersonRole"),
        owner_organization=_text(ds, "ResponsibleOrganization"),
        microchip=microchip_of(ds, microchip_issuers),
        extra_ids=extra,
    )


# Written only when the patient is an animal (species known): DICOM's type 2C veterinary attributes.
_ANIMAL_2C = ("PatientBreedDescription", "ResponsiblePerson", "ResponsibleOrganization")


def write_patient(ds: Dataset, patient: Patient) -> None:
    """Make `patient` the patient of `ds`, replacing what was there.

    Type 2 attributes (name, ID, birth date, sex) are always written, empty when unknown; for an animal
    the type 2C breed and owner attributes too; the rest only when known. Extra IDs become
    OtherPatientIDsSequence items of type TEXT, the microchip one of type RFID (added when it is not
    among them). patient_of(ds) gives the patient back, with the microchip among its extra IDs and
    species and breed taken from the code meanings when there is no description.
    """
    texts = {
        "PatientName": patient.name,
        "PatientID": patient.id,
        "PatientBirthDate": patient.birth_date,
        "PatientSex": patient.sex,
        "PatientSpeciesDescription": patient.species,
        "PatientBreedDescription": patient.breed,
        "ResponsiblePerson": patient.owner,
        "ResponsiblePersonRole": patient.owner_role,
        "ResponsibleOrganization": patient.owner_organization,
        "PatientSexNeutered": patient.neutered,
    }
    codes = {"PatientSpeciesCodeSequence": patient.species_code, "PatientBreedCodeSequence": patient.breed_code}
    ids = [i for i in dict.fromkeys(patient.extra_ids) if i]
    if patient.microchip and patient.microchip not in ids:
        ids.append(patient.microchip)

    values = [*texts.values(), *ids, *(v for c in codes.values() if c for v in (c.value, c.scheme, c.meaning))]
    if any(not v.isascii() for v in values) and ds.get("SpecificCharacterSet") != "ISO_IR 192":
        ds.decode()  # what is stored decodes with the old character set before it changes
        ds.SpecificCharacterSet = "ISO_IR 192"

    animal = bool(patient.species or patient.species_code)
    always = {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", *(_ANIMAL_2C if animal else ())}
    for keyword, value in texts.items():
        if value or keyword in always:
            setattr(ds, keyword, value)
        elif keyword in ds:
            del ds[keyword]
    for keyword, code in codes.items():
        if code and (code.value or code.meaning):
            setattr(ds, keyword, [_code_item(code)])
        elif animal and keyword == "PatientBreedCodeSequence":
            setattr(ds, keyword, [])
        elif keyword in ds:
            del ds[keyword]
    if ids:
        items = []
        for number in ids:
            item = Dataset()
            item.PatientID = number
            item.TypeOfPatientID = "RFID" if number == patient.microchip else "TEXT"
            items.append(item)
        ds.OtherPatientIDsSequence = items
    elif "OtherPatientIDsSequence" in ds:
        del ds.OtherPatientIDsSequence


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    if len(code.value.encode("utf-8")) > 16:  # longer than SH allows
        item.LongCodeValue = code.value
    else:
        item.CodeValue = code.value
    if code.scheme:
        item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    return item
