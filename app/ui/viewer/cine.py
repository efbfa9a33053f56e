"""Cine: a viewport's frames played at the object's own rate (FrameTime, CineRate ...), with speed and loop.

The frame shown follows the clock (frames late are skipped, never slowed down), and a job decodes the
frames ahead of the one shown, so playback keeps its rate while the decoder works.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from app.dicom.cine import DEFAULT_FPS, FrameRate, frame_rate
from app.errors import LightboxError
from app.jobs import Job

if TYPE_CHECKING:
    from app.ui.viewer.viewport import Viewport

log = logging.getLogger(__name__)

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0)
AHEAD = 16  # frames decoded ahead of the one shown


class CinePlayer(QObject):
    changed = Signal()  # playing, speed, loop or rate changed

    def __init__(self, viewport: Viewport):
        super().__init__(viewport)
        self.viewport = viewport
        self.playing = False
        self.speed = 1.0
        self.loop = True
        self.frames_shown = 0  # since play, for the status line and tests
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._tick)
        self._span = (0, 0)
        self._start = (0.0, 0)  # clock and offset in the span when the rate last changed
        self._prefetch: Job | None = None

    # -- what plays, how fast ------------------------------------------------------------------

    @property
    def can_play(self) -> bool:
        v = self.viewport
        return v.series is not None and v.count > 1 and v.image is not None

    def span(self) -> tuple[int, int]:
        """First and last position played: the frames of a multi-frame instance, else the whole series."""
        v = self.viewport
        if v.series is None or not v.count:
            return 0, 0
        instance, frame = v.series.locate(v.position)
        if instance.frames > 1:
            first = v.position - frame
            return first, first + instance.frames - 1
        return 0, v.count - 1

    def rate(self) -> FrameRate:
        v = self.viewport
        if v.image is not None and v.image.frames > 1:
            return frame_rate(v.image.ds)
        return FrameRate(DEFAULT_FPS, "default")

    @property
    def fps(self) -> float:
        return self.rate().fps * self.speed

    # -- controls -----------------------------------------------------------------------------

    def toggle(self) -> None:
        self.pause() if self.playing else self.play()

    def play(self) -> None:
        if not self.can_play:
            return
        self._span = self.span()
        first, last = self._span
        if not self.loop and self.viewport.position >= last:
            self.viewport.show_position(first)  # played to the end: start again
        self.playing = True
        self.frames_shown = 0
        self._restart_clock()
        self._start_prefetch()
        self.changed.emit()

    def pause(self) -> None:
        if not self.playing:
            return
        self.playing = False
        self._timer.stop()
        if self._prefetch is not None:
            self._prefetch.cancel()
            self._prefetch = None
        self.changed.emit()

    def set_speed(self, speed: float) -> None:
        self.speed = max(0.05, float(speed))
        if self.playing:
            self._restart_clock()
        self.changed.emit()

    def faster(self) -> None:
        self.set_speed(next((s for s in SPEEDS if s > self.speed + 1e-9), SPEEDS[-1]))

    def slower(self) -> None:
        self.set_speed(next((s for s in reversed(SPEEDS) if s < self.speed - 1e-9), SPEEDS[0]))

    def set_loop(self, loop: bool) -> None:
        self.loop = bool(loop)
        self.changed.emit()

    def describe(self) -> str:
        rate = self.rate()
        speed = "" if self.speed == 1.0 else f" × {self.speed:g}"
        return f"{rate}{speed}"

    # -- the clock ----------------------------------------------------------------------------

    def _restart_clock(self) -> None:
        first, _ = self._span
        self._start = (time.perf_counter(), self.viewport.position - first)
        period_ms = 1000.0 / max(self.fps, 0.1)
        self._timer.start(max(4, min(20, int(period_ms / 3))))  # a few ticks per frame: steady, not late

    def _tick(self) -> None:
        v = self.viewport
        if not self.can_play:
            self.pause()
            return
        first, last = self._span
        length = last - first + 1
        t0, offset = self._start
        n = offset + int((time.perf_counter() - t0) * self.fps)
        if n >= length and not self.loop:
            self._show(last)
            self.pause()
            return
        position = first + n % length
        if position != v.position:
            self._show(position)

    def _show(self, position: int) -> None:
        self.viewport.show_position(position)
        self.frames_shown += 1

    # -- decoding ahead -------------------------------------------------------------------------

    def _start_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch.cancel()
        v = self.viewport
        series, (first, last) = v.series, self._span

        def work(reporter):
            while not reporter.cancelled and self.playing:
                todo = None
                here = v.position  # read from the GUI thread's viewport: an int, read whole
                for k in range(1, AHEAD + 1):
                    position = here + k
                    if position > last:
                        if not self.loop:
                            break
                        position = first + (position - first) % (last - first + 1)
                    instance, frame = series.locate(position)
                    image = instance.image()
                    if not image.has_frame(frame):
                        todo = (image, frame)
                        break
                if todo is None:
                    time.sleep(0.004)
                    continue
                try:
                    todo[0].frame(todo[1])
                except LightboxError:
                    return  # the viewport shows the problem when it reaches that frame

        self._prefetch = Job(work, "Decoding frames ahead").start()
