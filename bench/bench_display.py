"""Window/level changes in a 1024x1024 viewport, and a full-resolution render, of a 3000x3000 DX."""

from __future__ import annotations

import common
from common import median_of, result, timed

VIEWPORT = 1024
CHANGES = 50  # window changes per measurement, each a new window (so the lookup table is rebuilt)


def _windows(count: int, offset: float = 0.0):
    """Windows as a drag would make them: centre and width moving together, never the same twice."""
    from app.dicom.display import Window

    return [Window(1200.0 + 30.0 * i + offset, 1500.0 + 40.0 * i + offset) for i in range(count)]


def run() -> list[dict]:
    from app.dicom import display
    from app.dicom.pixels import Image
    from app.dicom.reading import read
    from app.ui.images import to_qimage

    image = Image(read(common.radiograph("explicit")))
    size = (image.columns, image.rows)
    renderer = display.Renderer(image)
    renderer.set_region((0, 0, *size), VIEWPORT, VIEWPORT, smooth=True)
    to_qimage(renderer.render(display.Window(100, 100)))  # warm up: first calls, caches of index arrays

    with_qimage = median_of([timed(lambda w=w: to_qimage(renderer.render(w))) for w in _windows(CHANGES)])
    without = median_of([timed(renderer.render, w) for w in _windows(CHANGES, offset=0.5)])
    full = median_of([timed(display.render, image, 0, w) for w in _windows(10, offset=0.25)])

    where = f"{size[0]}x{size[1]} DX in a {VIEWPORT}x{VIEWPORT} viewport"
    return [
        result(f"W/L change + QImage ({where}), median of {CHANGES}", with_qimage * 1e3, "ms", at_most=5),
        result(f"W/L change without QImage ({where}), median of {CHANGES}", without * 1e3, "ms"),
        result(f"full-resolution render {size[0]}x{size[1]} (table + lookup), median of 10", full * 1e3, "ms",
               at_most=30),
    ]
