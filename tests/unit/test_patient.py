"""The veterinary patient: species, breed, owner, and the key that says two files are one animal."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from app.dicom.patient import Code, Patient, patient_of
from app.dicom.reading import read
from tests.unit.helpers import base_dataset, code_item, sequence, to_bytes


def animal(**attrs) -> Dataset:
    ds = base_dataset(modality="DX")
    ds.PatientName = "Smith^Rex"
    ds.PatientID = "VET-0042"
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def test_species_breed_and_owner_from_descriptions():
    p = patient_of(animal(PatientSpeciesDescription="Canine", PatientBreedDescription="Border Collie",
                          ResponsiblePerson="Smith^Jane", ResponsiblePersonRole="OWNER",
                          PatientSex="M", PatientSexNeutered="ALTERED", PatientBirthDate="20190301"))
    assert (p.name, p.id) == ("Smith^Rex", "VET-0042")
    assert (p.species, p.breed, p.owner, p.owner_role) == ("Canine", "Border Collie", "Smith^Jane", "OWNER")
    assert (p.sex, p.neutered, p.birth_date) == ("M", "ALTERED", "20190301")
    assert p.species_code is None and p.breed_code is None
    assert p.species_breed == "Canine · Border Collie"


def test_species_and_breed_from_code_sequences():
    ds = animal(PatientSpeciesCodeSequence=sequence(code_item("448771007", "SCT", "Canis lupus familiaris")),
                PatientBreedCodeSequence=sequence(code_item("28964004", "SCT", "Labrador retriever dog breed")))
    p = patient_of(read(to_bytes(ds)))  # through a file, as it arrives
    assert p.species == "Canis lupus familiaris"
    assert p.breed == "Labrador retriever dog breed"
    assert p.species_code == Code("448771007", "SCT", "Canis lupus familiaris")
    assert p.breed_code == Code("28964004", "SCT", "Labrador retriever dog breed")


def test_description_wins_over_the_code_meaning():
    ds = animal(PatientSpeciesDescription="Feline",
                PatientSpeciesCodeSequence=sequence(code_item("448169003", "SCT", "Felis catus")))
    p = patient_of(ds)
    assert p.species == "Feline"
    assert p.species_code.meaning == "Felis catus"


def test_empty_code_item_is_no_code():
    ds = animal(PatientSpeciesCodeSequence=sequence(Dataset()))
    p = patient_of(ds)
    assert p.species_code is None and p.species == ""


def test_a_human_style_file_has_empty_veterinary_fields():
    p = patient_of(base_dataset())
    assert (p.species, p.breed, p.owner, p.species_breed) == ("", "", "", "")


def test_other_patient_ids():
    other = [Dataset(), Dataset(), Dataset()]
    other[0].PatientID = "CHIP-985112"
    other[1].PatientID = ""
    other[2].PatientID = "OLD-7"
    p = patient_of(animal(OtherPatientIDsSequence=sequence(*other)))
    assert p.extra_ids == ("CHIP-985112", "OLD-7")
    assert p.as_dict()["extra_ids"] == ["CHIP-985112", "OLD-7"]


def test_animal_name():
    assert Patient(name="Smith^Rex").animal_name == "Rex"
    assert Patient(name="Rex").animal_name == "Rex"
    assert Patient(name="Smith^").animal_name == "Smith"


# -- the matching key -----------------------------------------------------------------------------

def key_of(**attrs):
    base = dict(PatientSpeciesDescription="Canine", ResponsiblePerson="Smith^Jane")
    base.update(attrs)
    return patient_of(animal(**base)).key


def test_key_ignores_case_spacing_and_carets():
    assert key_of() == key_of(PatientName="SMITH^REX", ResponsiblePerson="smith  jane",
                              PatientSpeciesDescription="CANINE", PatientID=" VET-0042 ")
    assert key_of() == ("VET-0042", "smith rex", "smith jane", "canine")


@pytest.mark.parametrize(
    "change",
    [
        {"PatientID": "VET-0043"},
        {"PatientName": "Smith^Max"},
        {"ResponsiblePerson": "Jones^Jane"},
        {"PatientSpeciesDescription": "Feline"},
    ],
)
def test_key_tells_different_animals_apart(change):
    # Practices reuse IDs and names: the same ID with another name, owner or species is another animal.
    assert key_of() != key_of(**change)


def test_key_does_not_depend_on_breed_sex_or_birth_date():
    assert key_of() == key_of(PatientBreedDescription="Beagle", PatientSex="F", PatientBirthDate="20200101")
