"""The veterinary patient: who the animal is, what it is, and who it belongs to."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pydicom.dataset import Dataset


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


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None or value == "":
        return ""
    if isinstance(value, (list, tuple)) or getattr(value, "VM", 1) > 1 and not isinstance(value, str):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _code(ds: Dataset, keyword: str) -> Code | None:
    seq = ds.get(keyword)
    if not seq:
        return None
    item = seq[0]
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue") or ""
    if not value and not item.get("CodeMeaning"):
        return None
    return Code(str(value), str(item.get("CodingSchemeDesignator", "")), str(item.get("CodeMeaning", "")))


def patient_of(ds: Dataset) -> Patient:
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
        extra_ids=extra,
    )
