"""What a viewport's left button does, and what is drawn over its image: the hooks tools build on.

A `ViewportTool` is given the viewport's mouse and key events before the built-in window/pan/zoom drags
(one tool object may serve every viewport of the grid: each call names its viewport). A `Layer` paints
over the image, under the corner text. Coordinates: events and painters are in widget pixels;
`viewport.image_point(pos)` and `viewport.widget_point(point)` convert to and from image pixels
(column x, row y, as `app.measure` counts them), through `viewport.transform()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QMouseEvent, QPainter

if TYPE_CHECKING:
    from app.ui.viewer.viewport import Viewport

BUILT_IN = ("window", "pan", "zoom")  # drags a viewport does itself; `Viewport.tool` names one of them


class ViewportTool:
    """Base of tools for the left button. Each handler returns True when it used the event; the viewport
    then leaves it alone. Ctrl + left drag, the middle and right buttons and the wheel stay the viewport's
    (pan, zoom, paging), so every tool can still move the image."""

    name = "tool"
    cursor = Qt.CursorShape.CrossCursor

    def activate(self, viewport: Viewport) -> None:
        """The tool was chosen while this viewport exists (it may set a cursor, show handles ...)."""

    def deactivate(self, viewport: Viewport) -> None:
        """Another tool was chosen: drop any half-drawn state."""

    def press(self, viewport: Viewport, event: QMouseEvent) -> bool:
        return False

    def move(self, viewport: Viewport, event: QMouseEvent) -> bool:
        """Moves with a button held, and hover moves (the viewport tracks the mouse while a tool is set)."""
        return False

    def release(self, viewport: Viewport, event: QMouseEvent) -> bool:
        return False

    def double_click(self, viewport: Viewport, event: QMouseEvent) -> bool:
        return False

    def wants_key(self, viewport: Viewport, event) -> bool:
        """Whether `key` should get this key even though a window shortcut uses it (Esc is Reset, Delete is
        Remove from library): return True for Escape while something is half drawn, for instance."""
        return False

    def key(self, viewport: Viewport, event) -> bool:
        """Keys pressed in the viewport (Delete, Escape, Enter ...), before paging."""
        return False

    def paint(self, viewport: Viewport, painter: QPainter) -> None:
        """Draw what is being drawn (rubber band, handles); called after the layers."""


class Layer:
    """Something drawn over the image of every frame (measurements, annotations). `paint` gets a painter in
    widget coordinates, already clipped to the viewport; `viewport.transform()` maps image pixels there."""

    def paint(self, viewport: Viewport, painter: QPainter) -> None:
        raise NotImplementedError
