"""The "Receive studies" switch: Lightbox's storage SCP runs while it is on (and from the start when the setting
says so), dcmtk's storescu pushes a study, the library browser and the status bar show what arrived."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from pydicom.uid import generate_uid

from app import settings as app_settings
from tests.integration.orthanc import free_ports
from tests.unit.helpers import ct_dataset, save

pytestmark = [pytest.mark.gui, pytest.mark.timeout(60)]


def _store(folder, port: int, count: int = 5) -> str:
    study = generate_uid()
    for n in range(count):
        ds = ct_dataset(np.full((16, 16), n, np.int16))
        ds.StudyInstanceUID = study
        save(ds, folder / f"{n}.dcm")
    run = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "LBRECV", "127.0.0.1", str(port),
                          *sorted(str(p) for p in folder.glob("*.dcm"))],
                         env=dict(os.environ, TCP_NODELAY="1"), capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return study


def test_receive_switch(window, qtbot, tmp_path):
    port = free_ports(1)[0]
    s = app_settings.load()
    s.receive_aet, s.receive_port = "LBRECV", port
    app_settings.save(s)
    assert not window.act_receive.isChecked() and not window.receiving.running

    window.act_receive.trigger()
    assert window.act_receive.isChecked() and window.receiving.running
    assert app_settings.load().receive_studies  # remembered for the next start
    study = _store(tmp_path, port)
    qtbot.waitUntil(lambda: "Received 5 instances from MODALITY" in window.statusBar().currentMessage(), timeout=10000)
    assert study in {r.uid for r in window.browser.library.studies()}

    window.act_receive.trigger()
    assert not window.act_receive.isChecked() and not window.receiving.running
    assert not app_settings.load().receive_studies
    refused = subprocess.run(["echoscu", "-aec", "LBRECV", "127.0.0.1", str(port)], capture_output=True, timeout=30)
    assert refused.returncode != 0  # nobody listens any more


def test_receiving_from_the_start_and_a_port_in_use(qtbot, tmp_path):
    import socket

    from app.ui.main_window import MainWindow

    taken = socket.socket()
    taken.bind(("", 0))
    taken.listen()
    s = app_settings.load()
    s.receive_studies, s.receive_aet, s.receive_port = True, "LBRECV", taken.getsockname()[1]
    app_settings.save(s)
    try:
        win = MainWindow()
        qtbot.addWidget(win)
        qtbot.waitUntil(lambda: "another program uses it" in win.statusBar().currentMessage()
                        or any("another program uses it" in getattr(d, "text", lambda: "")() for d in win.dialogs),
                        timeout=5000)
        assert not win.act_receive.isChecked()
    finally:
        taken.close()
    s.receive_port = free_ports(1)[0]
    app_settings.save(s)
    win2 = MainWindow()
    qtbot.addWidget(win2)
    qtbot.waitUntil(lambda: win2.act_receive.isChecked(), timeout=5000)
    assert win2.receiving.running
    win2.close()
    assert not win2.receiving.running
