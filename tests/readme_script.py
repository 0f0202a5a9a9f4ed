"""The README as the script of the user-journey tests.

A journey is a fenced ```bash block in README.md preceded by an HTML comment
`<!-- journey: NAME -->` (invisible on GitHub). `journey(NAME)` returns its commands as a
user would type them: comments dropped, backslash continuations joined. The journey tests
run exactly these lines (with only the documented parameters appended, e.g. a smaller
`-P trials=`), so a README edit that breaks a journey fails the suite.
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"<!--\s*journey:\s*(?P<name>[\w-]+)\s*-->\s*\n```(?:bash|sh|console)?\n(?P<body>.*?)\n```", re.S)


def journeys(text: str | None = None) -> dict[str, list[str]]:
    text = README.read_text() if text is None else text
    found: dict[str, list[str]] = {}
    for m in _BLOCK.finditer(text):
        lines, pending = [], ""
        for raw in m["body"].splitlines():
            line = raw.rstrip()
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                pending += line[:-1].rstrip() + " "
                continue
            lines.append((pending + line.strip()).strip())
            pending = ""
        if m["name"] in found:
            raise ValueError(f"README.md has two journeys named {m['name']!r}")
        found[m["name"]] = lines
    return found


def journey(name: str) -> list[str]:
    """The commands of journey `name` in README.md (KeyError when the README lost it)."""
    return journeys()[name]
