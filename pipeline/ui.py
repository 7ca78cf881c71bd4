"""Rich progress bars and tables shared by the commands (people get these; machines get --json)."""
from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

console = Console(stderr=True)   # progress and logs
out = Console()                  # a command's result for people (tables); machines use --json instead


class RateColumn(ProgressColumn):
    """videos/s and frames/s from the task's fields."""

    def render(self, task) -> Text:
        secs = task.fields.get("seconds") or task.elapsed or 0.0
        if not secs:
            return Text("-- videos/s", style="progress.data.speed")
        vps = task.completed / secs
        fps = task.fields.get("frames", 0) / secs
        return Text(f"{vps:.2f} videos/s {fps:.1f} frames/s", style="progress.data.speed")


def video_progress(disable: bool = False) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                    disable=disable, transient=False)


def kv_table(title: str, rows: list[tuple[str, object]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, str(value))
    return table
