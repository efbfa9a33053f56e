"""The Qt interface: the only package that imports QtWidgets and QtGui."""

import sys


def _keep_singletons_alive() -> None:
    """PySide6 6.12 on CPython 3.11 returns None from void calls (painter calls, signal emits ...) without
    taking a reference, so a long session (cine, scrolling) would free None and crash. From Python 3.12
    None, True and False are immortal; here they get a reference count no session can use up."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython" or hasattr(sys, "gettotalrefcount"):
        return
    import ctypes

    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40  # ob_refcnt: the first field of a PyObject


_keep_singletons_alive()
