"""Faults in the middle of a 200-instance send to a real Orthanc: the PACS dies and comes back; the sending
`lightbox` process is killed. Every instance arrives, and nothing confirmed before the fault is sent again.

Counting stores: this module's Orthanc runs a Lua ReceivedInstanceFilter that appends the SOP Instance UID of
every instance it receives, new or already stored, to a file (Orthanc's /changes has a NewInstance for first
stores only). Orthanc 1.10 stopped with SIGTERM lets an open association finish before it exits, so a graceful
stop never cuts a send: the outage here is a SIGKILL (a crash or a power cut), the restart uses the same ports
and storage.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import threading
import time

import numpy as np
import pytest
from pydicom.uid import generate_uid

from app.library import Library, import_paths
from app.pacs.config import DIMSE, DimseOptions, PacsConfig, PacsConfigs
from app.pacs.outbox import Outbox, retry_delay
from app.pacs.send import send_instances
from tests.conftest import ROOT
from tests.integration.orthanc import Orthanc, OrthancMissing
from tests.unit.helpers import ct_dataset, save

pytestmark = pytest.mark.timeout(120)

COUNT = 200
HALF = COUNT // 2
LOST = "the PACS closed the connection in answer to the C-STORE"


@pytest.fixture
def pacs(tmp_path, monkeypatch):
    """An Orthanc of this test's own (own ports and storage) that writes down every instance it receives."""
    monkeypatch.setenv("LIGHTBOX_SECRETS", "file")  # no keyring
    folder = tmp_path / "orthanc"
    folder.mkdir()
    lua = folder / "count.lua"
    lua.write_text("function ReceivedInstanceFilter(dicom, origin, info)\n"
                   f"  local f = io.open({json.dumps(str(folder / 'received.txt'))}, 'a')\n"
                   "  f:write(dicom.SOPInstanceUID .. '\\n')\n"
                   "  f:close()\n"
                   "  return true\n"
                   "end\n")
    server = Orthanc(folder, overrides={"LuaScripts": [str(lua)]})
    try:
        server.start()
    except OrthancMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    PacsConfigs().add(PacsConfig(DIMSE, "Fault PACS", server.aet, dimse=DimseOptions(
        "127.0.0.1", server.dicom_port, local_aets=["LIGHTBOX"], test_aet="LIGHTBOX", query_aet="LIGHTBOX",
        timeout_s=10)))
    yield server
    server.stop()


@pytest.fixture
def study(tmp_path) -> tuple[str, list[str]]:
    """COUNT small CT slices of one study, imported into the test's library: (study UID, SOP Instance UIDs)."""
    rng = np.random.default_rng(7)
    study_uid, series_uid = generate_uid(), generate_uid()
    folder = tmp_path / "ct"
    folder.mkdir()
    sop_uids = []
    for n in range(COUNT):
        ds = ct_dataset(rng.integers(-1000, 2000, (128, 128)).astype(np.int16), StudyInstanceUID=study_uid,
                        SeriesInstanceUID=series_uid, InstanceNumber=n + 1)
        sop_uids.append(ds.SOPInstanceUID)
        save(ds, folder / f"ct{n:03d}.dcm")
    with Library() as library:
        result = import_paths([folder], library=library)
    assert result.count("imported") == COUNT, result.summary()
    return study_uid, sop_uids


def received(server: Orthanc) -> collections.Counter:
    """How many times Orthanc received each SOP Instance UID (first stores and stores again)."""
    path = server.folder / "received.txt"
    return collections.Counter(path.read_text().split() if path.exists() else [])


def wait_until_stored(server: Orthanc, count: int, sender_alive) -> None:
    """Poll Orthanc until it holds `count` instances, while the sender still runs."""
    deadline = time.monotonic() + 60
    while server.get("/statistics")["CountInstances"] < count:
        assert sender_alive(), "the send ended before Orthanc had half of the instances"
        assert time.monotonic() < deadline, "Orthanc did not get half of the instances within 60 s"
        time.sleep(0.01)


def confirmed(send_id: int) -> set[str]:
    with Library() as library:
        return {i.sop_uid for i in Outbox(library).items(send_id) if i.state == "sent"}


def assert_nothing_confirmed_came_twice(server: Orthanc, sop_uids: list[str], before: set[str]) -> None:
    assert server.instances() == sorted(sop_uids)
    assert server.get("/statistics")["CountInstances"] == COUNT
    changes = server.get("/changes?since=0&limit=10000")
    assert changes["Done"]
    assert sum(c["ChangeType"] == "NewInstance" for c in changes["Changes"]) == COUNT  # each stored anew once
    counts = received(server)
    assert set(counts) == set(sop_uids)
    assert all(counts[uid] == 1 for uid in before), {uid: counts[uid] for uid in before if counts[uid] != 1}
    # The one instance on the wire when the fault struck may have reached Orthanc without its confirmation
    # reaching the outbox (pynetdicom waits for each C-STORE answer before the next request): it was never
    # confirmed, so sending it again is right, and Orthanc keeps one copy. Nothing else is received twice.
    again = {uid: n for uid, n in counts.items() if n > 1}
    print(f"{len(before)} confirmed before the fault; Orthanc received {sum(counts.values())} C-STOREs for "
          f"{len(counts)} instances; received twice: {len(again)}")
    assert len(again) <= 1 and set(again.values()) <= {2}, again


def test_pacs_dies_halfway_and_comes_back(pacs, study, run_cli):
    study_uid, sop_uids = study
    with Library() as library:
        send_id = Outbox(library).queue(PacsConfigs.load().find(pacs.aet), study_uids=[study_uid])
    ended = {}

    def run():  # a library connection of its own: SQLite connections stay in their thread
        try:
            with Library() as library:
                ended["record"] = Outbox(library).run(send_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            ended["error"] = exc

    sender = threading.Thread(target=run)
    sender.start()
    wait_until_stored(pacs, HALF, sender.is_alive)
    pacs.kill()  # reaped: the PACS is gone
    sender.join(30)
    assert not sender.is_alive() and "error" not in ended, ended
    record = ended["record"]
    assert (record.state, record.attempts, record.last_error) == ("waiting", 1, LOST)
    assert time.time() + retry_delay(1) - 5 < record.next_attempt_at <= time.time() + retry_delay(1)
    before = confirmed(send_id)
    assert HALF - 1 <= len(before) < COUNT
    assert record.confirmed == len(before) and record.counts.get("pending") == COUNT - len(before)
    assert len(received(pacs)) - len(before) in (0, 1)  # at most the one on the wire went unconfirmed

    code, out, err = run_cli("outbox", "list", "--json")  # what a person sees meanwhile
    (listed,) = json.loads(out)
    assert code == 0, err
    assert (listed["id"], listed["state"], listed["attempts"], listed["last_error"]) == (send_id, "waiting", 1, LOST)
    assert "(attempt 2)" in record.describe()

    time.sleep(2)  # the PACS stays down a while
    pacs.restart()  # same ports and storage
    with Library() as library:
        box = Outbox(library)
        assert box.due() == []  # retried on the schedule, not at once: 10 s after the first failure
        library.db.execute("UPDATE sends SET next_attempt_at = 0 WHERE pk = ?", (send_id,))
        assert box.due() == [send_id]
        record = box.run(send_id)
    assert (record.state, record.attempts, record.confirmed, record.total) == ("done", 1, COUNT, COUNT)
    assert_nothing_confirmed_came_twice(pacs, sop_uids, before)

    # The count would show a second store: send one confirmed instance again, outside the outbox.
    again = sorted(before)[0]
    with Library() as library:
        path = library.instance(again).path
    outcomes = send_instances(PacsConfigs.load().find(pacs.aet), [(again, path)])
    assert [o.state for o in outcomes] == ["sent"]
    assert received(pacs)[again] == 2 and pacs.get("/statistics")["CountInstances"] == COUNT


def test_sender_killed_halfway_then_the_outbox_finishes(pacs, study, lightbox_home, lightbox_exe):
    study_uid, sop_uids = study
    env = dict(os.environ, LIGHTBOX_HOME=str(lightbox_home), LIGHTBOX_SECRETS="file")
    sender = subprocess.Popen([*lightbox_exe, "send", "--to", pacs.aet, study_uid], cwd=ROOT, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until_stored(pacs, HALF, lambda: sender.poll() is None)
    finally:
        sender.kill()
        out, err = sender.communicate(timeout=30)  # reaped: its pid is dead, so its send is free to resume
    assert sender.returncode == -9, (out + err).decode(errors="replace")

    with Library() as library:
        (record,) = Outbox(library).sends()
    assert record.state == "sending"  # as the killed process left it
    before = confirmed(record.id)
    assert HALF - 1 <= len(before) < COUNT
    assert len(received(pacs)) - len(before) in (0, 1)

    done = subprocess.run([*lightbox_exe, "outbox", "run", "--json"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    (ran,) = json.loads(done.stdout)
    assert (ran["id"], ran["state"], ran["confirmed"], ran["total"]) == (record.id, "done", COUNT, COUNT)
    with Library() as library:
        (record,) = Outbox(library).sends()
    assert (record.state, record.attempts, record.confirmed) == ("done", 0, COUNT)
    assert_nothing_confirmed_came_twice(pacs, sop_uids, before)
