"""The Orthanc peer itself: it starts, demands its password, stores and lists what is uploaded."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from tests.unit.helpers import image_dataset, to_bytes

pytestmark = pytest.mark.timeout(60)


def test_starts_with_dicomweb_and_worklists(orthanc):
    system = orthanc.get("/system")
    assert system["DicomAet"] == orthanc.aet == "ORTHANC"
    assert system["DicomPort"] == orthanc.dicom_port
    assert system["HttpPort"] == orthanc.http_port
    plugins = orthanc.get("/plugins")
    assert "dicom-web" in plugins and "worklists" in plugins
    assert orthanc.get("/modalities?expand")["lightbox"]["AET"] == "LIGHTBOX"
    assert orthanc.get("/modalities?expand")["lightbox"]["Port"] == orthanc.lightbox_port
    assert len({orthanc.http_port, orthanc.dicom_port, orthanc.lightbox_port}) == 3


def test_authentication_is_required(orthanc):
    with requests.Session() as s:
        s.trust_env = False
        assert s.get(f"{orthanc.http_url}/system", timeout=5).status_code == 401
        assert s.get(f"{orthanc.dicomweb_url}/studies", timeout=5).status_code == 401
        assert s.get(f"{orthanc.http_url}/system", auth=(orthanc.user, "wrong"), timeout=5).status_code == 401
        ok = s.get(f"{orthanc.dicomweb_url}/studies", headers={"Authorization": orthanc.auth_header}, timeout=5)
    assert ok.status_code == 200


def test_upload_list_clear(empty_orthanc, tmp_path):
    orthanc = empty_orthanc
    assert orthanc.instances() == []
    first = image_dataset(np.zeros((8, 8), np.uint16), PatientID="PEER1")
    second = image_dataset(np.ones((8, 8), np.uint16), PatientID="PEER1")
    path = tmp_path / "second.dcm"
    path.write_bytes(to_bytes(second))
    assert orthanc.upload(to_bytes(first))["Status"] == "Success"
    assert orthanc.upload(path)["Status"] == "Success"
    assert orthanc.instances() == sorted([first.SOPInstanceUID, second.SOPInstanceUID])
    orthanc.clear()
    assert orthanc.instances() == []
