"""Measurements drawn into a rendered frame (for PNG/JPEG exports), with Pillow.

Lines are yellow over a dark outline and labels are outlined text, so both read on any background.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from app.measure.tools import Result, label_anchor, shapes

COLOUR = (255, 214, 0)
OUTLINE = (0, 0, 0)


# Fonts with the minus, ² and × signs, found by Pillow in the system's font folders.
_FONTS = ("DejaVuSans.ttf", "arial.ttf", "Arial.ttf", "LiberationSans-Regular.ttf", "segoeui.ttf", "Helvetica.ttc")
# Pillow's own font lacks some signs: plain stand-ins
_ASCII = str.maketrans({"−": "-", "–": "-", "×": "x", "÷": "/", "²": "2", "µ": "u"})


@functools.lru_cache(maxsize=16)
def _font(size: int):
    """(font, whether it has every sign the labels use)."""
    from PIL import ImageFont

    for name in _FONTS:
        try:
            return ImageFont.truetype(name, size), True
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size), False
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default(), False


def result_text(result: Result) -> str:
    """The label drawn beside a measurement: its lines, and the calibration for sizes."""
    lines = list(result.lines)
    if lines and not result.scale_free:
        lines.append(f"[{result.calibration_label}]")
    return "\n".join(lines)


def draw_measurements(pixels: np.ndarray, results: Sequence[Result]) -> np.ndarray:
    """An RGB copy of a full-resolution rendered frame (uint8, grey or RGB) with `results` drawn in."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("RGB")
    if not results:
        return np.asarray(picture)
    w, h = picture.size
    width = max(2, round(max(w, h) / 500))
    font_size = max(12, round(max(w, h) / 55))
    font, complete = _font(font_size)
    draw = ImageDraw.Draw(picture)
    for result in results:
        for shape in shapes(result.measurement, result.calibration):
            for colour, extra in ((OUTLINE, 2), (COLOUR, 0)):
                _draw_shape(draw, shape, colour, width + extra)
    for result in results:
        text = result_text(result)
        if not text:
            continue
        if not complete:
            text = text.translate(_ASCII)
        x, y = label_anchor(result.measurement)
        x, y = x + 3 * width, y + 3 * width
        left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, stroke_width=_stroke(font_size))
        x = min(max(0, x), max(0, w - (right - left) - 2))
        y = min(max(0, y), max(0, h - (bottom - top) - 2))
        draw.multiline_text((x, y), text, font=font, fill=COLOUR, stroke_width=_stroke(font_size), stroke_fill=OUTLINE)
    return np.asarray(picture)


def _stroke(font_size: int) -> int:
    return max(1, font_size // 8)


def _draw_shape(draw, shape, colour, width: int) -> None:
    p = [(float(x), float(y)) for x, y in shape.points]
    if shape.kind in ("line", "polyline"):
        if len(p) >= 2:
            draw.line(p, fill=colour, width=width, joint="curve")
    elif shape.kind in ("ellipse", "rectangle"):
        (x0, y0), (x1, y1) = p
        bbox = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
        if shape.kind == "ellipse":
            draw.ellipse(bbox, outline=colour, width=width)
        else:
            draw.rectangle(bbox, outline=colour, width=width)
    elif shape.kind == "arrow":
        (tx, ty), (hx, hy) = p
        draw.line(p, fill=colour, width=width)
        length = math.hypot(hx - tx, hy - ty)
        if length > 0:
            size = 4 * width + 6
            ux, uy = (hx - tx) / length, (hy - ty) / length
            left = (hx - size * (ux * 0.87 - uy * 0.5), hy - size * (uy * 0.87 + ux * 0.5))
            right = (hx - size * (ux * 0.87 + uy * 0.5), hy - size * (uy * 0.87 - ux * 0.5))
            draw.polygon([(hx, hy), left, right], fill=colour)
    elif shape.kind == "point":
        (x, y), r = p[0], width + 2
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
