"""Run every benchmark module bench/bench_*.py, print a table, write bench/results.json.

Each module exposes run() -> list[dict] (see common.result). Usage: python bench/run.py [NAME ...]
where NAME picks modules by name (display, decode, ...); none runs them all.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import result  # noqa: E402

KEYS = ("name", "value", "unit", "goal", "peer", "peer_value", "ratio")


def modules(wanted: list[str]) -> list[str]:
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if wanted:
        names = [n for n in names if n.removeprefix("bench_") in wanted or n in wanted]
    return names


def run_module(name: str) -> list[dict]:
    try:
        entries = importlib.import_module(name).run()
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
        traceback.print_exc()
        return [result(name, None, "", error=f"{type(exc).__name__}: {exc}")]
    return [{key: entry.get(key) for key in KEYS} | entry | {"module": name} for entry in entries]


def _num(x) -> str:
    return "-" if x is None else f"{x:g}"


def table(entries: list[dict]) -> str:
    rows = [("benchmark", "value", "goal", "ok", "peer value", "ours/peer")]
    for e in entries:
        unit = e["unit"] or ""
        value = f"{_num(e['value'])} {unit}".strip() if e["value"] is not None else "FAILED"
        peer = f"{_num(e['peer_value'])} {unit}".strip() if e["peer"] else ""
        ok = {True: "ok", False: "MISSED"}.get(e.get("ok"), "")
        rows.append((e["name"], value, e["goal"] or "", ok, peer, _num(e["ratio"]) if e["ratio"] else ""))
        for label in ("peer", "error"):
            if e.get(label):
                rows.append((f"    {label}: {e[label]}", "", "", "", "", ""))
    main_rows = [r for r in rows if r[1] or r is rows[0]]  # the indented peer/error lines may overflow
    widths = [max(len(r[i]) for r in main_rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def merged(out: Path, entries: list[dict], names: list[str]) -> list[dict]:
    """The new entries, plus the earlier ones of modules not run this time (each entry says its module)."""
    try:
        earlier = json.loads(out.read_text())
    except (OSError, ValueError):
        earlier = []
    kept = [e for e in earlier if e.get("module") and e.get("module") not in names]
    return kept + entries


def main(argv: list[str]) -> int:
    names = modules(argv)
    if not names:
        print(f"no benchmark module matches {' '.join(argv)}", file=sys.stderr)
        return 2
    entries = []
    for name in names:
        start = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        entries += run_module(name)
        print(f"  {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    print(table(entries))
    out = HERE / "results.json"
    out.write_text(json.dumps(merged(out, entries, names), indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
