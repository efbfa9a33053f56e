"""How fast a multi-frame object (ultrasound, fluoroscopy) plays: its frame rate and where it comes from."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydicom.dataset import Dataset

DEFAULT_FPS = 10.0
MAX_FPS = 240.0


@dataclass(frozen=True)
class FrameRate:
    fps: float
    source: str  # the attribute it came from, or "default"

    def __str__(self) -> str:
        where = "default" if self.source == "default" else f"from {self.source}"
        return f"{self.fps:g} fps ({where})"


def _positive(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x > 0 else None


def frame_rate(ds: Dataset) -> FrameRate:
    """FrameTime (ms per frame), else FrameTimeVector's mean, else CineRate, else RecommendedDisplayFrameRate,
    else 10 fps."""
    ft = _positive(ds.get("FrameTime"))
    if ft is not None:
        return FrameRate(min(MAX_FPS, 1000.0 / ft), "Frame Time")
    vector = ds.get("FrameTimeVector")
    if vector:
        # The first entry is 0 (the first frame's offset); the others are times between frames.
        gaps = [g for g in (_positive(v) for v in list(vector)[1:]) if g is not None]
        if gaps:
            return FrameRate(min(MAX_FPS, 1000.0 * len(gaps) / sum(gaps)), "Frame Time Vector")
    for keyword, label in (("CineRate", "Cine Rate"),
                           ("RecommendedDisplayFrameRate", "Recommended Display Frame Rate")):
        fps = _positive(ds.get(keyword))
        if fps is not None:
            return FrameRate(min(MAX_FPS, fps), label)
    return FrameRate(DEFAULT_FPS, "default")
