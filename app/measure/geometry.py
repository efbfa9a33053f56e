"""Plane geometry on image coordinates, in physical units.

Coordinates are continuous image pixels: x = column, y = row (downwards); pixel (c, r) covers
[c, c+1) x [r, r+1), its centre at (c + 0.5, r + 0.5), as a QImage drawn at the origin. Every
function takes the size of one pixel step (sx along x, sy along y), so anisotropic pixels give true
lengths and angles; with sx = sy = 1 the results are in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Point = tuple[float, float]


def distance(a: Point, b: Point, sx: float = 1.0, sy: float = 1.0) -> float:
    return math.hypot((b[0] - a[0]) * sx, (b[1] - a[1]) * sy)


def path_length(points: Sequence[Point], sx: float = 1.0, sy: float = 1.0) -> float:
    return sum(distance(a, b, sx, sy) for a, b in zip(points, points[1:]))


def _vector(a: Point, b: Point, sx: float, sy: float) -> tuple[float, float]:
    return (b[0] - a[0]) * sx, (b[1] - a[1]) * sy


def vector_angle(u: tuple[float, float], v: tuple[float, float]) -> float:
    """The angle between two vectors, 0-180 degrees (nan when one is zero)."""
    nu, nv = math.hypot(*u), math.hypot(*v)
    if nu == 0 or nv == 0:
        return math.nan
    cos = (u[0] * v[0] + u[1] * v[1]) / (nu * nv)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def angle_at(a: Point, vertex: Point, b: Point, sx: float = 1.0, sy: float = 1.0) -> float:
    """The angle a-vertex-b in degrees, 0-180."""
    return vector_angle(_vector(vertex, a, sx, sy), _vector(vertex, b, sx, sy))


def line_angle(p0: Point, p1: Point, q0: Point, q1: Point, sx: float = 1.0, sy: float = 1.0) -> float:
    """The acute angle between the lines p0-p1 and q0-q1, 0-90 degrees."""
    angle = vector_angle(_vector(p0, p1, sx, sy), _vector(q0, q1, sx, sy))
    return min(angle, 180.0 - angle)


def cobb_angle(p0: Point, p1: Point, q0: Point, q1: Point, sx: float = 1.0, sy: float = 1.0) -> float:
    """The angle between two endplate lines, 0-180 degrees.

    Each line is turned to point to the same side of the axis joining their midpoints, so curves
    beyond 90 degrees read correctly whichever way each line was drawn."""
    u, v = _vector(p0, p1, sx, sy), _vector(q0, q1, sx, sy)
    m0 = ((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2)
    m1 = ((q0[0] + q1[0]) / 2, (q0[1] + q1[1]) / 2)
    axis = _vector(m0, m1, sx, sy)
    if math.hypot(*axis) == 0:
        return line_angle(p0, p1, q0, q1, sx, sy)

    def side(w):
        return axis[0] * w[1] - axis[1] * w[0]

    if side(u) < 0:
        u = (-u[0], -u[1])
    if side(v) < 0:
        v = (-v[0], -v[1])
    if side(u) == 0 or side(v) == 0:  # a line along the axis: no side to choose
        return line_angle(p0, p1, q0, q1, sx, sy)
    return vector_angle(u, v)


def signed_angle_to_perpendicular(line: tuple[Point, Point], axis: tuple[Point, Point],
                                  sx: float = 1.0, sy: float = 1.0) -> float:
    """90 minus the angle between `line` (from its first point to its second) and `axis` (likewise):
    0 when they are perpendicular, positive when the line's second point lies towards the axis's end."""
    return 90.0 - vector_angle(_vector(*line, sx, sy), _vector(*axis, sx, sy))


def box(p0: Point, p1: Point) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the rectangle with opposite corners p0 and p1."""
    return min(p0[0], p1[0]), min(p0[1], p1[1]), max(p0[0], p1[0]), max(p0[1], p1[1])


def ellipse_area(p0: Point, p1: Point, sx: float = 1.0, sy: float = 1.0) -> float:
    left, top, right, bottom = box(p0, p1)
    return math.pi * (right - left) / 2 * sx * (bottom - top) / 2 * sy


def rectangle_area(p0: Point, p1: Point, sx: float = 1.0, sy: float = 1.0) -> float:
    left, top, right, bottom = box(p0, p1)
    return (right - left) * sx * (bottom - top) * sy


def _window(shape: tuple[int, int], p0: Point, p1: Point):
    """The rows and columns whose centres may lie in the box, clipped to the image."""
    rows, cols = shape[:2]
    left, top, right, bottom = box(p0, p1)
    c0, c1 = max(0, math.floor(left - 0.5)), min(cols, math.ceil(right + 0.5))
    r0, r1 = max(0, math.floor(top - 0.5)), min(rows, math.ceil(bottom + 0.5))
    return r0, max(r0, r1), c0, max(c0, c1), (left, top, right, bottom)


Region = tuple[slice, slice, np.ndarray]  # rows, columns, and the mask within them


def ellipse_region(shape: tuple[int, int], p0: Point, p1: Point) -> Region:
    """Pixels whose centres lie inside the ellipse inscribed in the box p0-p1 (boundary included),
    as a mask over the image's rows and columns that hold them (cheap on large images)."""
    r0, r1, c0, c1, (left, top, right, bottom) = _window(shape, p0, p1)
    a, b = (right - left) / 2, (bottom - top) / 2
    if a <= 0 or b <= 0:
        return slice(r0, r0), slice(c0, c0), np.zeros((0, 0), bool)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    ys = (np.arange(r0, r1) + 0.5 - cy) / b
    xs = (np.arange(c0, c1) + 0.5 - cx) / a
    return slice(r0, r1), slice(c0, c1), xs[None, :] ** 2 + ys[:, None] ** 2 <= 1.0


def rectangle_region(shape: tuple[int, int], p0: Point, p1: Point) -> Region:
    """Pixels whose centres lie inside the box p0-p1 (boundary included); see ellipse_region."""
    r0, r1, c0, c1, (left, top, right, bottom) = _window(shape, p0, p1)
    ys = np.arange(r0, r1) + 0.5
    xs = np.arange(c0, c1) + 0.5
    inside = ((xs >= left) & (xs <= right))[None, :] & ((ys >= top) & (ys <= bottom))[:, None]
    return slice(r0, r1), slice(c0, c1), inside


def full_mask(shape: tuple[int, int], region: Region) -> np.ndarray:
    rows, cols, inside = region
    mask = np.zeros(shape[:2], bool)
    mask[rows, cols] = inside
    return mask


def ellipse_mask(shape: tuple[int, int], p0: Point, p1: Point) -> np.ndarray:
    return full_mask(shape, ellipse_region(shape, p0, p1))


def rectangle_mask(shape: tuple[int, int], p0: Point, p1: Point) -> np.ndarray:
    return full_mask(shape, rectangle_region(shape, p0, p1))


def transform(points: Sequence[Point], rows: int, columns: int, *, rotation: int = 0, flip_h: bool = False,
              flip_v: bool = False) -> list[Point]:
    """Points of an image as they lie on the same image rotated clockwise by `rotation` (a multiple of
    90) and then flipped. The pixel size follows: after 90 or 270 degrees, x steps are the old row spacing."""
    out = []
    turns = (rotation // 90) % 4
    for x, y in points:
        h, w = rows, columns
        for _ in range(turns):
            x, y = h - y, x
            h, w = w, h
        if flip_h:
            x = w - x
        if flip_v:
            y = h - y
        out.append((x, y))
    return out
