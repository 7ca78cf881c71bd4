"""Finding video files under a folder, and describing a folder in error messages."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable


def is_video(name: str, exts: Iterable[str]) -> bool:
    # Hidden files include macOS "._x.mp4" resource forks, which carry a video extension but no video.
    return not name.startswith(".") and name.lower().endswith(tuple(e.lower() for e in exts))


def find_videos(folder: Path, exts: Iterable[str], recursive: bool = True) -> list[Path]:
    """Video files under ``folder`` (any depth when ``recursive``), sorted; hidden files and folders skipped."""
    exts = tuple(exts)
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and is_video(p.name, exts))
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):  # datasets are often symlinked
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath) / f for f in filenames if is_video(f, exts))
    return sorted(found)


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
