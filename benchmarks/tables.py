"""Regenerate, or check, every table of BENCHMARKS.md that `xlrec report` produces.

Such a table sits between two markers that hold the report's arguments:

    <!-- report: --from-csv benchmarks/exports/NAME.csv --table grouped --group-by model ... -->
    | model | ... |
    <!-- /report -->

The export (`xlrec report --experiment NAME --export FILE`, written by benchmarks/device/run_spec.sh
after the spec's sweep) holds the runs; the table is what the command prints from it, offline.

    python benchmarks/tables.py           # rewrite the tables in place
    python benchmarks/tables.py --check   # exit 1 naming every table that differs
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^(<!-- report: (?P<args>[^\n]*?) -->\n)(?P<table>.*?)^(<!-- /report -->)", re.S | re.M)


def render(args: str) -> str:
    """What `xlrec report ARGS --out ''` prints, run from the repository root."""
    from xlrec.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.chdir(REPO):
        code = main(["report", *shlex.split(args), "--out", ""])
    if code != 0:
        raise SystemExit(f"xlrec report {args} failed with exit code {code}")
    return out.getvalue()


def blocks(text: str) -> list[tuple[str, str]]:
    """(arguments, the table as written) of every report block."""
    return [(m["args"], m["table"]) for m in BLOCK.finditer(text)]


def regenerate(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render(m["args"]) + m.group(4), text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare instead of rewriting")
    ap.add_argument("--file", default=str(REPO / "BENCHMARKS.md"))
    opts = ap.parse_args()
    path = Path(opts.file)
    text = path.read_text()
    if opts.check:
        stale = [args for args, table in blocks(text) if render(args) != table]
        for args in stale:
            print(f"differs: xlrec report {args}", file=sys.stderr)
        return 1 if stale else 0
    path.write_text(regenerate(text))
    print(f"{len(blocks(text))} tables regenerated in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
