"""How big a pixel is, and on what authority."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset


@dataclass(frozen=True)
class Spacing:
    row_mm: float  # distance between rows (vertical)
    column_mm: float  # distance between columns (horizontal)
    source: str  # the attribute it came from: "PixelSpacing" or "ImagerPixelSpacing"

    def as_list(self) -> list[float]:
        return [self.row_mm, self.column_mm]


def _pair(value) -> tuple[float, float] | None:
    try:
        row, col = float(value[0]), float(value[1])
    except (TypeError, ValueError, IndexError):
        return None
    if row > 0 and col > 0:
        return row, col
    return None


def _measures(ds: Dataset) -> Dataset | None:
    """The Pixel Measures item of an enhanced object's shared functional groups."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        measures = shared[0].get("PixelMeasuresSequence")
        if measures:
            return measures[0]
    return None


def pixel_spacing(ds: Dataset) -> Spacing | None:
    """PixelSpacing (in the patient) where present, else ImagerPixelSpacing (at the detector)."""
    for holder in (ds, _measures(ds)):
        if holder is not None and "PixelSpacing" in holder:
            pair = _pair(holder.PixelSpacing)
            if pair:
                return Spacing(pair[0], pair[1], "PixelSpacing")
    if "ImagerPixelSpacing" in ds:
        pair = _pair(ds.ImagerPixelSpacing)
        if pair:
            return Spacing(pair[0], pair[1], "ImagerPixelSpacing")
    return None
