"""The frozen app (make package -> dist/lightbox): its size, and its cold start to a visible window with the
sample study (offscreen) against `python -m app` in the same run. Nothing is measured without the bundle."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import common
from common import PYTHON, ProcessFailed, median_of, result, run_process

from bench_startup import RUNS, SAMPLE, TIMEOUT

BUNDLE = common.ROOT / "dist" / "lightbox"
EXE = BUNDLE / ("lightbox.exe" if sys.platform == "win32" else "lightbox")
SIZE_GOAL_MB = 300.0


def run() -> list[dict]:
    if not EXE.is_file():
        print("  bench_package: no bundle in dist/lightbox (make package); skipped", file=sys.stderr)
        return []
    files = [p for p in BUNDLE.rglob("*") if p.is_file() and not p.is_symlink()]
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    with tempfile.TemporaryDirectory(prefix="lightbox-bench-") as tmp:
        env = common.app_env(Path(tmp) / "home", QT_QPA_PLATFORM="offscreen", LIGHTBOX_QUIT_AFTER_SHOWN="1")
        run_process([str(EXE), "--version"], env=env)  # page the bundle in once, as for python below
        run_process([PYTHON, "-m", "app", "--version"], env=env)
        # alternate, so both see the same machine load
        frozen, source, errors = [], [], []
        for _ in range(RUNS):
            for cmd, into in (([str(EXE)], frozen), ([PYTHON, "-m", "app"], source)):
                try:
                    into.append(run_process(cmd + [SAMPLE], env=env, timeout=TIMEOUT))
                except ProcessFailed as exc:
                    errors.append(f"{cmd[0]}: {exc}")
            if errors:
                break
    error = errors[0] if errors else None
    frozen_s = None if error else median_of(frozen)
    source_s = None if error else median_of(source)
    return [
        result("frozen bundle size (dist/lightbox)", size_mb, "MB", at_most=SIZE_GOAL_MB),
        result("frozen bundle files", len(files), "files"),
        result(f"frozen app cold start to shown window with {SAMPLE} (offscreen)", frozen_s, "s",
               peer="python -m app", peer_value=source_s, ratio_at_most=1.0, error=error),
    ]
