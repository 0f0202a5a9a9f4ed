"""Regenerate, or check, every results table that `xlrec report` produces.

The tables live in the results pages, docs/results/*.md (BENCHMARKS.md is their index and holds
none, but is read too). Such a table sits between two markers that hold the report's arguments:

    <!-- report: --from-csv docs/results/exports/NAME.csv --table grouped --group-by model ... -->
    | model | ... |
    <!-- /report -->

The export (`xlrec report --experiment NAME --export docs/results/exports/NAME.csv`, written by
benchmarks/device/run_spec.sh after the spec's sweep) holds the runs; the table is what the command
prints from it, offline, run from the repository root.

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
RESULTS = REPO / "docs" / "results"
BLOCK = re.compile(r"^(<!-- report: (?P<args>[^\n]*?) -->\n)(?P<table>.*?)^(<!-- /report -->)", re.S | re.M)


def pages() -> list[Path]:
    """Every file that may hold report blocks: the results pages, then the index."""
    return sorted(RESULTS.glob("*.md")) + [REPO / "BENCHMARKS.md"]


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
    ap.add_argument("--file", action="append", help="one page (repeatable); default: every page")
    opts = ap.parse_args()
    paths = [Path(f).resolve() for f in opts.file] if opts.file else pages()
    stale, total = 0, 0
    for path in paths:
        text = path.read_text()
        found = blocks(text)
        total += len(found)
        if opts.check:
            for args, table in found:
                if render(args) != table:
                    stale += 1
                    print(f"{path.relative_to(REPO)}: differs: xlrec report {args}", file=sys.stderr)
        elif found:
            path.write_text(regenerate(text))
    verb = "checked" if opts.check else "regenerated"
    print(f"{total} tables {verb} in {len(paths)} files", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
