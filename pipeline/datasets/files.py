"""Describing a folder in error messages (finding video files is ``pipeline.core.videos``)."""
from __future__ import annotations

from pathlib import Path


def describe(folder: Path, limit: int = 12) -> str:
    """``a/, b/, x.mp4 (+3 more)`` for error messages that say what was found instead."""
    if not folder.exists():
        return "nothing (the path does not exist)"
    if not folder.is_dir():
        return f"a file, not a folder ({folder.name})"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not p.name.startswith("."))
    if not names:
        return "an empty folder"
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
