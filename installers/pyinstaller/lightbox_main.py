"""Entry point of the frozen app: the `lightbox` console script, plus freeze_support for the
import's worker processes (spawned as this executable)."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from app.cli import main

    sys.exit(main())
