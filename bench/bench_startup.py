"""Cold start to a visible window showing the sample image (offscreen), against importing QtWidgets alone."""

from __future__ import annotations

import tempfile
from pathlib import Path

import common
from common import PYTHON, ProcessFailed, median_of, process_median, result, run_process

RUNS = 7
TIMEOUT = 20.0  # seconds; the app quits by itself after the first paint when LIGHTBOX_QUIT_AFTER_SHOWN=1
PEER = "import PySide6.QtWidgets"
SAMPLE = "resources/sample"


def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="lightbox-bench-") as tmp:
        env = common.app_env(Path(tmp) / "home", QT_QPA_PLATFORM="offscreen", LIGHTBOX_QUIT_AFTER_SHOWN="1")
        peer = process_median([PYTHON, "-c", PEER], RUNS, env=env)
        times, error = [], None
        if not (common.ROOT / SAMPLE).is_dir():
            error = f"{SAMPLE} is missing (make sample)"
        while not error and len(times) < RUNS:
            try:
                times.append(run_process([PYTHON, "-m", "app", SAMPLE], env=env, timeout=TIMEOUT))
            except ProcessFailed as exc:  # stop at the first failure: a hang would cost TIMEOUT each time
                error = str(exc)
    return [result(f"cold start to shown window with {SAMPLE} (offscreen), whole process",
                   None if error else median_of(times), "s", at_most=1.0, peer=PEER, peer_value=peer, error=error)]
