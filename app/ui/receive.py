""""Receive studies": the window's switch for Lightbox's storage SCP (app.pacs.receiver.Receiving)."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer, Signal

from app import settings as app_settings
from app.errors import LightboxError

log = logging.getLogger(__name__)


class ReceiveService(QObject):
    """Runs the storage SCP while on; reports what arrived (gathered over a second) on the GUI thread."""

    arrived = Signal(object)  # ImportEntry, from the receiving thread (queued to the GUI thread)
    received = Signal(str)  # "Received 12 instances from ORTHANC", at most once a second
    problem = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._service = None
        self._counts: dict[str, int] = {}
        self.studies: list[str] = []  # studies that received instances since the last report
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self._report)
        self.arrived.connect(self._count)

    @property
    def running(self) -> bool:
        return self._service is not None

    def describe(self) -> str:
        s = app_settings.load()
        return f"as {s.receive_aet} on port {s.receive_port}"

    def start(self) -> bool:
        """Start with the settings' AE title and port; False (and `problem`) when that cannot be done."""
        from app.pacs.receiver import Receiving

        if self._service is not None:
            return True
        s = app_settings.load()
        try:
            self._service = Receiving(s.receive_aet, s.receive_port, on_import=self.arrived.emit).start()
        except LightboxError as exc:
            self.problem.emit(f"Lightbox cannot receive studies: {exc}")
            return False
        return True

    def stop(self) -> None:
        service, self._service = self._service, None
        if service is not None:
            service.stop()  # what arrived is committed first

    def set_enabled(self, on: bool) -> bool:
        """Switch on or off and remember it in the settings; whether it now runs."""
        s = app_settings.load()
        if s.receive_studies != on:
            s.receive_studies = on
            app_settings.save(s)
        if on:
            return self.start()
        self.stop()
        return False

    def _count(self, entry) -> None:
        source = entry.path.split("/", 1)[0] if entry.path else "?"
        self._counts[source] = self._counts.get(source, 0) + 1
        if entry.study_instance_uid and entry.study_instance_uid not in self.studies:
            self.studies.append(entry.study_instance_uid)
        if not self._timer.isActive():
            self._timer.start()

    def _report(self) -> None:
        counts, self._counts = self._counts, {}
        parts = [f"{n} instance{'s' if n != 1 else ''} from {source}" for source, n in counts.items()]
        if parts:
            self.received.emit("Received " + ", ".join(parts))
        self.studies = []
