"""What people see: rich progress bars (a ``Progress`` listener for the stages) and tables.

Every string that comes from data (paths, video ids, failure reasons, labels, config values) is shown as
text, never parsed as rich markup: a file named ``[bold red]x.mp4`` is shown as that name, and one whose
name holds ``[/`` cannot crash a table. Build cells with ``cell`` (or ``kv_table``) rather than f-strings.
When output is not a terminal (CI logs, ``| tee``), tables are laid out for a wide page instead of being
cut at 80 columns.
"""
from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.progress import Progress as RichBars
from rich.table import Table
from rich.text import Text

from pipeline.core.progress import Progress

WIDE = 200     # columns for tables written to a file or a pipe


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else WIDE)


console = _console(stderr=True)   # progress and logs
out = _console(stderr=False)      # a command's result for people (tables); machines use --json instead


def cell(value: object, style: str = "") -> Text:
    """A table cell (or a line) holding ``value`` as plain text, optionally styled."""
    return Text(str(value), style=style)


def prose(console: Console, text: object, style: str = "") -> None:
    """A sentence for people: wrapped at words on a terminal; one unbroken line in a file or a pipe, where
    the viewer (a CI log, an editor) does its own wrapping and a hard break would split a number from its
    interval."""
    console.print(text if isinstance(text, Text) else cell(text, style), highlight=False,
                  soft_wrap=not console.is_terminal)


def line(*parts: object) -> Text:
    """A line made of plain-text parts and ``(text, style)`` pairs: data is never read as markup."""
    text = Text()
    for part in parts:
        if isinstance(part, tuple):
            text.append(str(part[0]), style=part[1])
        else:
            text.append(str(part))
    return text


class RateColumn(ProgressColumn):
    """videos/s and frames/s from the task's fields."""

    def render(self, task) -> Text:
        secs = task.fields.get("seconds") or task.elapsed or 0.0
        if not secs:
            return Text("-- videos/s", style="progress.data.speed")
        vps = task.completed / secs
        fps = task.fields.get("frames", 0) / secs
        return Text(f"{vps:.2f} videos/s {fps:.1f} frames/s", style="progress.data.speed")


class RichProgress(Progress):
    """Draws one rich bar per task key; ``with RichProgress(kind) as progress: stage(..., progress)``."""

    COLUMNS = {
        "videos": lambda: (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                           TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()),
        "epochs": lambda: (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("epochs {task.fields[status]}"), TimeElapsedColumn()),
        "files": lambda: (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), TextColumn("{task.fields[status]}")),
    }

    def __init__(self, kind: str = "videos", disable: bool = False):
        self.bars = RichBars(*self.COLUMNS[kind](), console=console, disable=disable, transient=False)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> "RichProgress":
        self.bars.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.__exit__(*exc)

    def start(self, key: str, total: int | None = None, completed: int = 0, **fields) -> None:
        fields.setdefault("status", "")
        self.tasks[key] = self.bars.add_task(Text(key).markup, total=total, completed=completed, **fields)

    def update(self, key: str, advance: int = 0, completed: int | None = None, **fields) -> None:
        if key in self.tasks:
            self.bars.update(self.tasks[key], advance=advance, completed=completed, **fields)


def kv_table(title: str, rows: list[tuple[object, object]]) -> Table:
    """A two-column table of plain-text keys and values."""
    table = Table(title=cell(title), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(cell(key), value if isinstance(value, Text) else cell(value))
    return table
