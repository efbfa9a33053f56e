"""The outbox: recorded before sending, every outcome kept at once, retried on a schedule, resumed after a crash."""

import json
import time

import pytest

from app.errors import Cancelled, UsageError
from app.library import Library, import_paths
from app.pacs import send as send_mod
from app.pacs.config import DimseOptions, PacsConfig, PacsConfigs
from app.pacs.outbox import Outbox, retry_delay
from app.pacs.send import Outcome, SendError
from tests.conftest import SAMPLE


@pytest.fixture
def setup(lightbox_home):
    configs = PacsConfigs()
    configs.add(PacsConfig("dimse", "Clinic PACS", "CLINIC", dimse=DimseOptions(host="127.0.0.1", port=11112)))
    library = Library()
    import_paths([SAMPLE], library=library)
    yield library, configs, library.studies()[0].uid
    library.close()


class FakePacs:
    """Stands in for send_instances: confirms, refuses, or is unreachable after a number of instances."""

    def __init__(self):
        self.received = []
        self.down_after = None
        self.refuse = set()

    def __call__(self, config, files, *, secret=None, on_outcome=None, reporter=None, batch_bytes=0, studies=None):
        for sop, path in files:
            if self.down_after is not None and len(self.received) >= self.down_after:
                raise SendError("nothing is listening at 127.0.0.1:11112 (connection refused)")
            assert path.is_file()
            self.received.append(sop)
            on_outcome(Outcome(sop, "failed", 0xA700, "out of resources") if sop in self.refuse
                       else Outcome(sop, "sent", 0))


@pytest.fixture
def pacs(monkeypatch):
    fake = FakePacs()
    monkeypatch.setattr(send_mod, "send_instances", fake)
    return fake


def test_a_send_is_recorded_before_anything_goes_out(setup, pacs):
    library, configs, study = setup
    box = Outbox(library)
    send_id = box.queue(configs.find("CLINIC"), study_uids=[study])
    record = box.send(send_id)
    assert (record.state, record.counts, record.destination) == ("queued", {"pending": 25}, "Clinic PACS (CLINIC)")
    assert record.title == "Bailey: Thorax" and record.bytes_total > 0 and pacs.received == []
    assert box.due() == [send_id]


def test_a_send_confirms_every_instance_once(setup, pacs):
    library, configs, study = setup
    box = Outbox(library)
    send_id = box.queue(configs.find("CLINIC"), study_uids=[study])
    record = box.run(send_id, configs=configs)
    assert record.state == "done" and record.confirmed == 25 and record.bytes_done == record.bytes_total
    assert sorted(pacs.received) == sorted(i.sop_uid for i in library.instances(study_uid=study))
    assert box.due() == []
    with pytest.raises(UsageError, match="complete"):
        box.retry(send_id)


def test_an_unreachable_pacs_is_retried_on_the_schedule_and_nothing_is_sent_twice(setup, pacs):
    library, configs, study = setup
    box = Outbox(library)
    send_id = box.queue(configs.find("CLINIC"), study_uids=[study])
    pacs.down_after = 10
    before = time.time()
    record = box.run(send_id, configs=configs)
    assert record.state == "waiting" and record.attempts == 1 and record.confirmed == 10
    assert "connection refused" in record.last_error
    assert before + retry_delay(1) <= record.next_attempt_at <= time.time() + retry_delay(1)
    assert "next attempt in" in record.describe()
    assert box.due() == []  # not yet
    pacs.down_after = None
    library.db.execute("UPDATE sends SET next_attempt_at = 0")  # the time has come
    assert box.due() == [send_id]
    record = box.run(send_id, configs=configs)
    assert record.state == "done" and record.confirmed == 25
    assert len(pacs.received) == len(set(pacs.received)) == 25


def test_the_retry_schedule_grows_and_caps():
    assert [retry_delay(n) for n in (1, 2, 3, 8, 9, 50)] == [10, 30, 60, 3600, 3600, 3600]


def test_refused_instances_fail_the_send_and_retry_tries_them_again(setup, pacs):
    library, configs, study = setup
    box = Outbox(library)
    send_id = box.queue(configs.find("CLINIC"), study_uids=[study])
    refused = library.instances(study_uid=study)[0].sop_uid
    pacs.refuse = {refused}
    record = box.run(send_id, configs=configs)
    assert record.state == "failed" and record.counts == {"sent": 24, "failed": 1}
    (item,) = [i for i in box.items(send_id) if i.state == "failed"]
    assert (item.sop_uid, item.status, item.message) == (refused, 0xA700, "out of resources")
    pacs.refuse = set()
    box.retry(send_id)
    assert box.run(send_id, configs=configs).state == "done"
    assert pacs.received.count(refused) == 2 and len(pacs.received) == 26


def test_a_send_left_by_a_killed_process_resumes_without_resending(setup, pacs):
    import subprocess
    import sys

    library, configs, study = setup
    box = Outbox(library)
    send_id = box.queue(configs.find("CLINIC"), study_uids=[study])
    pacs.down_after = 7
    box.run(send_id, configs=configs)
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    library.db.execute("UPDATE sends SET state = 'sending', owner_pid = ?", (gone,))  # as a killed Lightbox leaves it
    pacs.down_after = None
    assert box.due() == [send_id]
    record = box.run(send_id, configs=configs)
    assert record.state == "done" and len(pacs.received) == 25 == len(set(pacs.received))


def test_a_send_under_way_in_another_process_is_not_taken(setup, pacs):
    library, configs, study = setup
    box = Outbox(library)
    send_id = box.queue(configs.find("CLINIC"), study_uids=[study])
    library.db.execute("UPDATE sends SET state = 'sending', owner_pid = ?", (__import__("os").getppid(),))
    assert box.due() == []
    with pytest.raises(UsageError, match="cannot run now"):
        box.run(send_id, configs=configs)


def test_cancel_stops_a_send_and_keeps_what_was_confirmed(setup, pacs, monkeypatch):
    library, configs, study = setup
    box = Outbox(library)
    send_id = box.queue(configs.find("CLINIC"), study_uids=[study])
    real = pacs.__call__

    def cancel_midway(config, files, **kw):
        outcome = kw["on_outcome"]

        def counting(o):
            outcome(o)
            if len(pacs.received) == 5:
                Outbox(library).cancel(send_id)

        return real(config, files, **{**kw, "on_outcome": counting})

    monkeypatch.setattr(send_mod, "send_instances", cancel_midway)
    with pytest.raises(Cancelled):
        box.run(send_id, configs=configs)
    record = box.send(send_id)
    # the instance in flight when the cancel came is confirmed and recorded; no other goes out
    assert record.state == "cancelled" and record.confirmed == len(pacs.received) == 6 and box.due() == []


def test_nothing_goes_out_when_transfer_is_switched_off(setup, pacs):
    library, configs, study = setup
    box = Outbox(library)
    send_id = box.queue(configs.find("CLINIC"), study_uids=[study])
    configs.allow_transfer = False
    record = box.run(send_id, configs=configs)
    assert record.state == "failed" and "switched off" in record.last_error and pacs.received == []


def test_cli_send_and_outbox(run_cli, setup, pacs):
    library, configs, study = setup
    code, out, err = run_cli("send", "--to", "CLINIC", study, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["state"] == "done" and result["confirmed"] == 25 and len(result["instances"]) == 25
    pacs.down_after = len(pacs.received)  # the PACS goes away
    code, out, err = run_cli("send", "--to", "CLINIC", study, "--wait", "0")
    assert code == 1 and "connection refused" in err and "stays in the outbox" in err
    listed = json.loads(run_cli("outbox", "list", "--json")[1])
    assert [s["state"] for s in listed] == ["waiting"]
    pacs.down_after = None
    code, out, _ = run_cli("outbox", "retry", str(listed[0]["id"]))
    assert code == 0 and "done, 25/25 confirmed" in out
    assert run_cli("outbox", "list")[1].strip() == "The outbox is empty."
    code, _, err = run_cli("send", "--to", "NOPE", study)
    assert code == 1 and "no PACS configuration" in err
    code, _, err = run_cli("send", "--to", "CLINIC", "1.2.3.4")
    assert code == 1 and "no study 1.2.3.4" in err

