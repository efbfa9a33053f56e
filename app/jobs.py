"""Long work with progress, cancel and a result.

A job wraps a function `work(progress)`. It runs on a worker thread (`start`) or on the caller's
(`run`). The function reports with `progress.update(...)`, which also raises `Cancelled` once
someone has called `cancel()`. Listeners are called on the worker thread: a GUI relays them to its
own thread (see app.ui.jobs).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

from app.errors import Cancelled, LightboxError

log = logging.getLogger(__name__)
T = TypeVar("T")


class State(Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class Progress:
    done: float = 0
    total: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))


class Reporter:
    """What the work function sees: update progress, check for cancel."""

    def __init__(self, job: Job):
        self._job = job

    def update(self, done: float | None = None, total: float | None = None, message: str | None = None):
        self.check()
        p = self._job.progress
        if done is not None:
            p.done = done
        if total is not None:
            p.total = total
        if message is not None:
            p.message = message
        self._job._notify(self._job._on_progress)

    def check(self) -> None:
        if self._job.cancel_requested:
            raise Cancelled()

    @property
    def cancelled(self) -> bool:
        return self._job.cancel_requested


class Job(Generic[T]):
    def __init__(self, work: Callable[[Reporter], T], title: str = ""):
        self.title = title
        self._work = work
        self.progress = Progress()
        self.state = State.PENDING
        self.result: T | None = None
        self.error: LightboxError | None = None
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_progress: list[Callable[[Job], Any]] = []
        self._on_finished: list[Callable[[Job], Any]] = []

    def on_progress(self, callback: Callable[[Job], Any]) -> None:
        self._on_progress.append(callback)

    def on_finished(self, callback: Callable[[Job], Any]) -> None:
        self._on_finished.append(callback)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def start(self) -> Job[T]:
        self._thread = threading.Thread(target=self.run, name=f"job:{self.title}", daemon=True)
        self._thread.start()
        return self

    def run(self) -> Job[T]:
        self.state = State.RUNNING
        try:
            self.result = self._work(Reporter(self))
            self.state = State.DONE
        except Cancelled as exc:
            self.error = exc
            self.state = State.CANCELLED
        except LightboxError as exc:
            self.error = exc
            self.state = State.FAILED
        except Exception as exc:  # noqa: BLE001 - turned into a user message, traceback to the log
            log.exception("job %r failed", self.title)
            self.error = LightboxError(f"{self.title or 'The task'} failed unexpectedly ({type(exc).__name__}); "
                                       "details are in the log file")
            self.state = State.FAILED
        finally:
            self._finished.set()
            self._notify(self._on_finished)
        return self

    def wait(self, timeout: float | None = None) -> T:
        """Block until finished; return the result or raise the job's error."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"{self.title} did not finish in {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]

    def _notify(self, callbacks):
        for cb in list(callbacks):
            try:
                cb(self)
            except Exception:  # noqa: BLE001 - a listener must not break the job
                log.exception("job listener failed")
