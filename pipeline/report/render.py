"""One list of blocks, two renderings: Markdown (images as relative links) and a self-contained HTML page
(images embedded as base64 data URIs, CSS inline, no script, nothing fetched from the network).

``Details`` is a collapsible section in HTML (``<details>``, closed until clicked) and a plain section
under a heading in Markdown; ``Figures`` puts images side by side in HTML and one after another in
Markdown. An ``id`` on a paragraph, table or image becomes the HTML element's id (tests find them).
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    text: str
    bold: bool = False
    id: str = ""
    small: bool = False


@dataclass(frozen=True)
class Banner:
    """A boxed message; ``kind`` "danger" is for results that must not be read as real (random weights)."""
    text: str
    kind: str = "warning"     # "danger" | "warning" | "note"


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    id: str = ""
    compact: bool = False


@dataclass(frozen=True)
class Image:
    path: str                 # relative to the report's folder
    alt: str
    caption: str = ""
    id: str = ""


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Figures:
    """Images side by side (HTML), in order (Markdown)."""
    images: tuple[Image, ...]


@dataclass(frozen=True)
class Details:
    """A collapsible section: ``summary`` is what shows; ``blocks`` open on a click (HTML)."""
    summary: str
    blocks: tuple
    level: int = 2            # the Markdown heading level of ``summary``


Block = Heading | Para | Banner | Bullets | Table | Image | Code | Figures | Details
_BANNER_WORD = {"danger": "DANGER", "warning": "WARNING", "note": "NOTE"}


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Details):
            out.append(f"{'#' * b.level} {b.summary}")
            out.append(markdown(list(b.blocks)).rstrip("\n"))
        elif isinstance(b, Figures):
            out.append(markdown(list(b.images)).rstrip("\n"))
        elif isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(f"**{b.text}**" if b.bold else b.text)
        elif isinstance(b, Banner):
            out.append(f"> **{_BANNER_WORD[b.kind]}:** " + b.text.replace("\n", "\n> "))
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {i}" for i in b.items))
        elif isinstance(b, Table):
            lines = ["| " + " | ".join(map(_md_cell, b.header)) + " |",
                     "|" + "|".join("---" for _ in b.header) + "|"]
            lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in b.rows]
            out.append("\n".join(lines))
        elif isinstance(b, Image):
            out.append(f"![{b.alt}]({b.path})" + (f"\n\n*{b.caption}*" if b.caption else ""))
        elif isinstance(b, Code):
            out.append("```\n" + b.text + "\n```")
        else:  # pragma: no cover - a new block type without a renderer is a programming error
            raise TypeError(f"no markdown for {type(b).__name__}")
    return "\n\n".join(out) + "\n"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; max-width: 1180px;
       margin: 1em auto; padding: 0 1em; color: #1b1b1b; line-height: 1.4; }
h1 { border-bottom: 2px solid #333; padding-bottom: .2em; margin: 0 0 .3em; font-size: 1.7em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .8em 0; font-size: 0.92em; }
th, td { border: 1px solid #bbb; padding: .25em .55em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
table.compact { font-size: 0.9em; margin: .4em 0; } table.compact td, table.compact th { padding: .15em .5em; }
table.compact td:not(:first-child) { white-space: nowrap; font-variant-numeric: tabular-nums; }
p.small { font-size: .88em; color: #333; margin: .3em 0; }
.figures { display: flex; gap: 1em; align-items: flex-start; }
.figures figure { flex: 1 1 0; min-width: 0; margin: .4em 0; }
details { margin: .6em 0; border: 1px solid #ddd; border-radius: 4px; padding: .2em .8em; }
details > summary { cursor: pointer; font-weight: 600; font-size: 1.1em; padding: .3em 0; }
details[open] > summary { border-bottom: 1px solid #eee; margin-bottom: .4em; }
.banner { padding: .5em 1em; margin: .6em 0; border-radius: 4px; font-weight: 600; }
.danger { background: #ffdddd; border: 3px solid #c00000; color: #7a0000; font-size: 1.05em; }
.warning { background: #fff4cc; border: 2px solid #d4a000; }
.note { background: #e8f1ff; border: 1px solid #6b9bd8; font-weight: normal; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-style: italic; color: #444; }
pre { background: #f4f4f4; padding: .7em; overflow-x: auto; white-space: pre-wrap; }
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _id(value: str) -> str:
    return f' id="{html.escape(value)}"' if value else ""


def _html_blocks(blocks, folder: Path) -> list[str]:
    e = html.escape
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Details):
            body.append(f"<details><summary>{e(b.summary)}</summary>\n" + "\n".join(_html_blocks(b.blocks, folder))
                        + "\n</details>")
        elif isinstance(b, Figures):
            body.append('<div class="figures">' + "".join(_html_blocks(b.images, folder)) + "</div>")
        elif isinstance(b, Heading):
            body.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            text = f"<strong>{e(b.text)}</strong>" if b.bold else e(b.text)
            cls = ' class="small"' if b.small else ""
            body.append(f"<p{_id(b.id)}{cls}>{text}</p>")
        elif isinstance(b, Banner):
            text = e(b.text).replace("\n", "<br>")
            body.append(f'<div class="banner {b.kind}">{_BANNER_WORD[b.kind]}: {text}</div>')
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{e(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b.rows)
            cls = ' class="compact"' if b.compact else ""
            body.append(f"<table{_id(b.id)}{cls}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Image):
            cap = f"<figcaption>{e(b.caption)}</figcaption>" if b.caption else ""
            body.append(f'<figure><img src="{_data_uri(folder / b.path)}" alt="{e(b.alt)}"{_id(b.id)}>{cap}</figure>')
        elif isinstance(b, Code):
            body.append(f"<pre>{e(b.text)}</pre>")
        else:  # pragma: no cover
            raise TypeError(f"no html for {type(b).__name__}")
    return body


def html_page(blocks: list[Block], title: str, folder: Path) -> str:
    """The whole report as one HTML file; image files are read from ``folder`` and embedded."""
    e = html.escape
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(_html_blocks(blocks, folder)) + "\n</body></html>\n")
