"""The outbox in the window: "Send to PACS" in the library's menus (exporting configurations only), the panel
(progress, state, error, countdown, Retry, Cancel) and the runner (sends what is due, resumes a killed
Lightbox's send). The network is a fake `send_instances`; the outbox and the library are real."""

import subprocess
import sys
import threading

import pytest
from PySide6.QtWidgets import QApplication, QMenu

from app.pacs.config import DICOMWEB, DIMSE, DicomWebOptions, DimseOptions, PacsConfig, PacsConfigs
from app.pacs.send import Outcome, SendError
from app.ui.outbox_panel import NO_PACS, TRANSFER_OFF, size_text, wait_text

pytestmark = pytest.mark.gui

DOWN = "nothing is listening at 127.0.0.1:4242"


@pytest.fixture(autouse=True)
def secrets_in_a_file(monkeypatch):
    monkeypatch.setenv("LIGHTBOX_SECRETS", "file")


@pytest.fixture
def configs():
    """Two configurations that may receive, one that may not (query/retrieve only)."""
    configs = PacsConfigs.load()
    configs.add(PacsConfig(DIMSE, "Clinic PACS", "CLINICPACS", dimse=DimseOptions(host="127.0.0.1", port=4242)))
    configs.add(PacsConfig(DICOMWEB, "Referral centre", "REFCLOUD",
                           dicomweb=DicomWebOptions(url="https://pacs.example.com/dicom-web")))
    configs.add(PacsConfig(DIMSE, "Old archive", "OLDARCHIVE",
                           dimse=DimseOptions(host="127.0.0.1", port=11112, store=False)))
    return configs


class FakeSender:
    """Stands in for app.pacs.send.send_instances: 'ok' confirms every file, 'down' raises SendError;
    with `gate` set, it stops after `gate_after` files until the gate opens."""

    def __init__(self):
        self.mode = "ok"
        self.calls: list[list[str]] = []
        self.gate: threading.Event | None = None
        self.gate_after = 0
        self.waiting = threading.Event()

    def __call__(self, config, files, *, secret=None, on_outcome=None, reporter=None, **kwargs):
        self.calls.append([sop for sop, _ in files])
        if self.mode == "down":
            raise SendError(DOWN)
        out = []
        for n, (sop, path) in enumerate(files):
            assert path.is_file()
            if self.gate is not None and n == self.gate_after:
                self.waiting.set()
                self.gate.wait(10)
            outcome = Outcome(sop, "sent")
            on_outcome(outcome)
            out.append(outcome)
        return out


@pytest.fixture
def sender(monkeypatch):
    fake = FakeSender()
    monkeypatch.setattr("app.pacs.send.send_instances", fake)
    return fake


def submenu(menu: QMenu, starts: str) -> QMenu:
    found = [a.menu() for a in menu.actions() if a.menu() is not None and a.text().startswith(starts)]
    assert found, [a.text() for a in menu.actions()]
    return found[0]


def entries(menu: QMenu) -> list[tuple[str, bool]]:
    return [(a.text(), a.isEnabled()) for a in menu.actions() if not a.isSeparator()]


def send_entry(menu: QMenu, aet: str):
    return next(a for a in menu.actions() if f"({aet})" in a.text())


def series_item(browser, n=0):
    return browser.series_list.item(n)


def row(win, send_id) -> dict:
    return win.outbox_panel.row_texts(send_id)


def wait_state(qtbot, win, send_id, state, timeout=10000):
    """Until the panel shows the send in `state` and the runner has finished with it (its message shown)."""
    def ended():
        record = win.outbox_panel.record(send_id)
        return record is not None and record.state == state and win.outbox_runner.job is None

    qtbot.waitUntil(ended, timeout=timeout)


def only_send(win) -> int:
    records = win.outbox_panel.model.records
    assert len(records) == 1
    return records[0].id


# -- the menus --------------------------------------------------------------------------------------

def test_send_menu_offers_only_exporting_configurations(library_window, configs):
    browser = library_window.browser
    send = submenu(browser.study_menu(), "Send to PACS")
    assert entries(send) == [("[T] Clinic PACS (CLINICPACS)", True), ("[DW] Referral centre (REFCLOUD)", True)]
    qtbot_wait_series(browser)
    send = submenu(browser.series_menu(series_item(browser)), "Send series to PACS")
    assert [t for t, _ in entries(send)] == ["[T] Clinic PACS (CLINICPACS)", "[DW] Referral centre (REFCLOUD)"]

    configs.allow_transfer = False
    configs.save()
    assert entries(submenu(browser.study_menu(), "Send to PACS")) == [(TRANSFER_OFF, False)]
    assert entries(submenu(browser.series_menu(series_item(browser)), "Send series")) == [(TRANSFER_OFF, False)]


def test_send_menu_without_configurations_says_where_to_add_one(library_window):
    send = submenu(library_window.browser.study_menu(), "Send to PACS")
    assert entries(send) == [(NO_PACS, False)]
    assert "PACS configurations" in NO_PACS


def qtbot_wait_series(browser):
    for _ in range(200):
        if browser.series_list.count():
            return
        QApplication.processEvents()
    assert browser.series_list.count()


# -- sending --------------------------------------------------------------------------------------

def test_send_a_study_from_the_menu(qtbot, library_window, configs, sender):
    win = library_window
    assert not win.outbox_dock.isVisible()
    send_entry(submenu(win.browser.study_menu(), "Send to PACS"), "CLINICPACS").trigger()
    assert win.outbox_dock.isVisible()
    send_id = only_send(win)
    wait_state(qtbot, win, send_id, "done")
    texts = row(win, send_id)
    assert texts["State"] == "Sent"
    assert texts["Instances"] == "25 / 25"
    assert texts["To"] == "Clinic PACS (CLINICPACS)"
    record = win.outbox_panel.record(send_id)
    assert texts["Size"] == size_text(record.bytes_total, record.bytes_total, finished=True)
    assert record.bytes_done == record.bytes_total > 0
    assert len(sender.calls) == 1 and len(sender.calls[0]) == 25
    assert win.statusBar().currentMessage() == "Sent 25 instances to Clinic PACS"
    assert not win.outbox_panel.timer.isActive()  # nothing active: no more refreshing
    win.outbox_panel.grab()  # the progress bar delegate paints


def test_send_a_series_from_its_tile(qtbot, library_window, configs, sender):
    from app.library import Library
    from app.ui.browser import UID_ROLE

    browser = library_window.browser
    qtbot_wait_series(browser)
    item = series_item(browser)
    with Library() as library:
        expected = [i.sop_uid for i in library.instances(series_uid=item.data(UID_ROLE))]
    send_entry(submenu(browser.series_menu(item), "Send series"), "REFCLOUD").trigger()
    send_id = only_send(library_window)
    wait_state(qtbot, library_window, send_id, "done")
    assert sender.calls == [expected]
    assert row(library_window, send_id)["Instances"] == f"{len(expected)} / {len(expected)}"
    assert "·" in row(library_window, send_id)["Send"]  # the title names the series


def test_several_studies_make_one_send_each(qtbot, library_window, configs, sender, tmp_path):
    from app.library import import_paths
    from tests.gui.conftest import copy_study

    copy_study(tmp_path / "copy", modalities=["DX"])
    import_paths([str(tmp_path / "copy")])
    win = library_window
    win.browser.refresh()
    win.browser.table.selectAll()
    menu = win.browser.study_menu()
    send_entry(submenu(menu, "Send 2 studies to PACS"), "CLINICPACS").trigger()
    records = win.outbox_panel.model.records
    assert len(records) == 2
    qtbot.waitUntil(lambda: all(r.state == "done" for r in win.outbox_panel.model.records), timeout=15000)
    assert sorted(len(c) for c in sender.calls) == sorted(r.total for r in win.outbox_panel.model.records)


def test_unreachable_pacs_waits_with_a_countdown_then_retry(qtbot, library_window, configs, sender):
    win = library_window
    sender.mode = "down"
    send_entry(submenu(win.browser.study_menu(), "Send to PACS"), "CLINICPACS").trigger()
    send_id = only_send(win)
    wait_state(qtbot, win, send_id, "waiting")
    texts = row(win, send_id)
    assert texts["State"].startswith("Waiting · next attempt in ")
    assert texts["Last error"] == DOWN
    assert texts["Instances"] == "0 / 25"
    assert win.statusBar().currentMessage().startswith(f"Cannot send to Clinic PACS now: {DOWN}; retry in ")
    assert win.outbox_panel.timer.isActive()
    first = texts["State"]
    qtbot.waitUntil(lambda: row(win, send_id)["State"] != first, timeout=3000)  # the countdown runs
    assert len(sender.calls) == 1  # not before its time

    sender.mode = "ok"
    win.outbox_panel.select(send_id)
    assert win.outbox_panel.retry_button.isEnabled() and win.outbox_panel.retry_button.text() == "Retry now"
    win.outbox_panel.retry_button.click()
    wait_state(qtbot, win, send_id, "done")
    assert row(win, send_id)["Instances"] == "25 / 25"
    assert row(win, send_id)["Last error"] == ""
    assert len(sender.calls) == 2


def test_cancel_a_queued_send(qtbot, library_window, configs, sender):
    win = library_window
    win.outbox_runner.stop()  # nothing is picked up while the send is cancelled
    send_entry(submenu(win.browser.study_menu(), "Send to PACS"), "CLINICPACS").trigger()
    send_id = only_send(win)
    assert row(win, send_id)["State"] == "Queued"
    win.outbox_panel.select(send_id)
    assert win.outbox_panel.cancel_button.isEnabled()
    win.outbox_panel.cancel_button.click()
    assert row(win, send_id)["State"] == "Cancelled"
    assert not win.outbox_panel.cancel_button.isEnabled()
    assert win.outbox_panel.retry_button.isEnabled()
    win.outbox_runner.start()
    qtbot.wait(300)
    assert win.outbox_runner.tick() is None
    assert sender.calls == []
    assert win.outbox_panel.record(send_id).state == "cancelled"


def test_cancel_a_send_under_way(qtbot, library_window, configs, sender):
    win = library_window
    sender.gate, sender.gate_after = threading.Event(), 5
    send_entry(submenu(win.browser.study_menu(), "Send to PACS"), "CLINICPACS").trigger()
    send_id = only_send(win)
    qtbot.waitUntil(sender.waiting.is_set, timeout=10000)
    win.outbox_panel.refresh()
    assert win.outbox_panel.record(send_id).state == "sending"
    assert row(win, send_id)["Instances"] == "5 / 25"
    assert win.outbox_panel.cancel_button.text() == "Cancel send"
    assert win.outbox_panel.select(send_id)
    assert not win.outbox_panel.retry_button.isEnabled()
    assert win.outbox_runner.running_id == send_id
    assert win.outbox_panel.cancel(send_id)
    sender.gate.set()
    qtbot.waitUntil(lambda: win.outbox_runner.job is None, timeout=10000)
    win.outbox_panel.refresh()
    record = win.outbox_panel.record(send_id)
    assert record.state == "cancelled"
    assert 5 <= record.confirmed < 25  # what the PACS confirmed stays confirmed
    assert "cancelled" in win.statusBar().currentMessage()


def test_a_killed_lightbox_send_resumes_on_start(qtbot, sample_in_library, configs, sender):
    from app.library import Library
    from app.pacs.outbox import Outbox
    from app.ui.main_window import MainWindow

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Library() as library:
        outbox = Outbox(library)
        send_id = outbox.queue(configs.find("CLINICPACS"), study_uids=[sample_in_library])
        items = outbox.items(send_id)
        sent = [i.sop_uid for i in items[:10]]
        library.db.executemany("UPDATE send_items SET state = 'sent', status = 0 WHERE send_pk = ? AND sop_uid = ?",
                               [(send_id, sop) for sop in sent])
        library.db.execute("UPDATE sends SET state = 'sending', owner_pid = ? WHERE pk = ?", (dead.pid, send_id))

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    wait_state(qtbot, win, send_id, "done")
    assert win.outbox_dock.isVisible()  # something was left to do: the outbox shows itself
    assert len(sender.calls) == 1 and len(sender.calls[0]) == 15  # the confirmed ten were not sent again
    assert not set(sent) & set(sender.calls[0])
    assert row(win, send_id)["Instances"] == "25 / 25"


def test_a_window_without_a_library_does_not_create_one(qtbot, sender):
    from app.library import library_root
    from app.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.wait(100)
    assert win.outbox_runner.tick() is None
    assert not (library_root() / "index.sqlite").exists()
    assert not win.outbox_dock.isVisible()
    assert win.act_outbox.text() == "Outbox"


def test_words():
    assert wait_text(25.2) == "25 s"
    assert wait_text(600) == "10 min"
    assert wait_text(3900) == "1 h 5 min"
    assert size_text(12_300_000, 40_100_000) == "12.3 of 40.1 MB"
    assert size_text(40_100_000, 40_100_000, finished=True) == "40.1 MB"
    assert size_text(5_000, 20_000) == "5 of 20 kB"
