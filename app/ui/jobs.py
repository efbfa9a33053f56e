"""Runs ground-floor jobs off the GUI thread and relays their progress and end as Qt signals."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app.jobs import Job


class JobRelay(QObject):
    """Start a job on its worker thread; `progress` and `finished` arrive on the GUI thread."""

    progress = Signal(object)
    finished = Signal(object)

    def __init__(self, job: Job, parent: QObject | None = None):
        super().__init__(parent)
        self.job = job
        job.on_progress(self.progress.emit)
        job.on_finished(self.finished.emit)

    def start(self) -> JobRelay:
        self.job.start()
        return self
