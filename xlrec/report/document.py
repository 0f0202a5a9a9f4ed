"""The report as data (sections of paragraphs, tables and figures) and its two renderings:
Markdown (figures as files beside it) and one self-contained HTML page (figures embedded as
data URIs, no script, opens offline). Hand-written because the two formats are this small;
a Markdown-to-HTML library would be a dependency for three element types."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

BOLD = re.compile(r"\*\*(.+?)\*\*")


def file_name(name: str) -> str:
    """A report file's name as it is written and linked: a dataset label such as `ml-1m (10% of
    users)` would put spaces, parentheses and `%` into Markdown links, which break them."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9._-]+", "-", name.replace("%", "pct"))).strip("-")


@dataclass
class Table:
    df: pd.DataFrame  # cells as display strings; **x** marks a best value
    caption: str
    csv: str | None = None  # the file (under data/) holding the numbers behind it

    def __post_init__(self) -> None:
        self.csv = file_name(self.csv) if self.csv else None


@dataclass
class Figure:
    png: Path  # under figures/
    caption: str
    csv: str  # under data/

    def __post_init__(self) -> None:
        self.csv = file_name(self.csv)


@dataclass
class Section:
    title: str
    blocks: list[str | Table | Figure] = field(default_factory=list)


def _md_table(df: pd.DataFrame) -> str:
    cells = df.astype(str).map(lambda v: v.replace("|", "\\|"))
    lines = ["| " + " | ".join(map(str, cells.columns)) + " |", "| " + " | ".join("---" for _ in cells.columns) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False, name=None)]
    return "\n".join(lines)


def to_markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for b in s.blocks:
            if isinstance(b, str):
                out += [b, ""]
            elif isinstance(b, Table):
                src = f" (data: [{b.csv}](data/{b.csv}))" if b.csv else ""
                out += [f"*{b.caption}*{src}", "", _md_table(b.df), ""]
            else:
                out += [
                    f"![{b.caption}](figures/{b.png.name})",
                    "",
                    f"*{b.caption}* (data: [{b.csv}](data/{b.csv}))",
                    "",
                ]
    return "\n".join(out).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escaped text with **bold** and `code` kept (the only Markdown the sections use inline)."""
    t = html.escape(text)
    t = BOLD.sub(r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.df.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_inline(str(v))}</td>" for v in row) + "</tr>"
        for row in t.df.itertuples(index=False, name=None)
    )
    return (
        f'<figure class="table"><figcaption>{_inline(t.caption)}</figcaption>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></figure>"
    )


def _html_figure(f: Figure) -> str:
    data = base64.b64encode(f.png.read_bytes()).decode("ascii")
    return (
        f'<figure class="plot"><img alt="{html.escape(f.caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_inline(f.caption)}</figcaption></figure>"
    )


STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;font-size:.85em;margin:.4em 0}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}figure{margin:1em 0}
img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}code{background:#f5f5f5}
"""


def to_html(title: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        body.append(f"<section><h2>{html.escape(s.title)}</h2>")
        for b in s.blocks:
            if isinstance(b, str):
                body.append(f"<p>{_inline(b)}</p>")
            elif isinstance(b, Table):
                body.append(_html_table(b))
            else:
                body.append(_html_figure(b))
        body.append("</section>")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )
