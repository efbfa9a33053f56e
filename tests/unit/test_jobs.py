import threading

import pytest

from app.errors import Cancelled, LightboxError
from app.jobs import Job, State


def test_a_job_reports_progress_and_returns_its_result():
    seen = []

    def work(reporter):
        for i in range(1, 4):
            reporter.update(i, 3, f"step {i}")
        return "done"

    job = Job(work, "counting")
    job.on_progress(lambda j: seen.append((j.progress.done, j.progress.total, j.progress.message)))
    assert job.start().wait(5) == "done"
    assert job.state == State.DONE
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    assert job.progress.fraction == 1.0


def test_cancel_stops_the_work_at_its_next_report():
    started, release = threading.Event(), threading.Event()
    steps = []

    def work(reporter):
        started.set()
        release.wait(5)
        for i in range(100):
            reporter.update(i)
            steps.append(i)

    job = Job(work, "long").start()
    started.wait(5)
    job.cancel()
    release.set()
    with pytest.raises(Cancelled):
        job.wait(5)
    assert job.state == State.CANCELLED and steps == []


def test_user_errors_pass_through_and_bugs_become_a_message(caplog):
    def fails(reporter):
        raise LightboxError("the PACS refused")

    job = Job(fails, "send").run()
    assert job.state == State.FAILED and str(job.error) == "the PACS refused"

    def crashes(reporter):
        return {}["missing"]

    job = Job(crashes, "import").run()
    assert job.state == State.FAILED
    assert "import failed unexpectedly (KeyError)" in str(job.error)
    assert "Traceback" in caplog.text or any(r.exc_info for r in caplog.records)


def test_finished_listeners_run_once_even_on_failure():
    calls = []
    job = Job(lambda r: 1 / 0, "x")
    job.on_finished(lambda j: calls.append(j.state))
    job.run()
    assert calls == [State.FAILED]
