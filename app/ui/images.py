"""numpy display arrays <-> QImage, and writing them as PNG/JPEG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtGui import QImage

from app.errors import LightboxError


def to_qimage(arr: np.ndarray) -> QImage:
    """A uint8 (h, w) grey or (h, w, 3) RGB array as a QImage that owns a copy of its pixels."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w = arr.shape[:2]
    if arr.ndim == 2:
        image = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_Grayscale8)
    else:
        image = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGB888)
    return image.copy()  # detach from the numpy buffer


def save_image(arr: np.ndarray, path: str | Path, quality: int = -1) -> None:
    """Write an array as PNG or JPEG (by the file's suffix), atomically."""
    path = Path(path)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower())
    if fmt is None:
        raise LightboxError(f"{path}: cannot write '{path.suffix or 'no suffix'}' files; use .png, .jpg or .jpeg")
    if not path.parent.is_dir():
        raise LightboxError(f"{path.parent}: folder does not exist")
    tmp = path.with_name(f".{path.name}.part")
    image = to_qimage(arr)
    if fmt == "PNG" and quality < 0:
        quality = 80  # zlib level 2: fast, still compact for radiographs
    try:
        if not image.save(str(tmp), fmt, quality):
            raise LightboxError(f"{path}: could not write the image (disk full or not writable?)")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
