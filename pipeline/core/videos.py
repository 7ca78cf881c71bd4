"""A video to process, and finding video files: what stage one, the datasets and predict all take.

``VideoEntry`` is one row of a dataset manifest (``pipeline.datasets`` makes them from published layouts) or
a video given to ``predict`` (label -1, no split). ``find_video_files`` is the one folder scan: every file
whose name says video, at any depth, hidden ones left out. It lists FIFOs and dangling links too, so that
stage one records each with the reason it cannot be read instead of dropping it silently.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@dataclass(frozen=True)
class VideoEntry:
    video_id: str      # unique, stable: posix path relative to the dataset root (or the CSV's id column)
    path: str          # absolute path to the video file (may not exist: stage one records "no such file")
    label: int = -1    # 0 real, 1 fake, -1 unknown (predict)
    split: str = ""    # "train" | "val" | "test" ("" for predict, and inside adapters before the split)
    group: str = ""    # identity / source group: a fake and its original share one; never spans splits
    method: str = ""   # manipulation method ("" for real or unknown)
    split_source: str = ""  # official | file | seeded: whether the split is the dataset's own


def is_video_name(name: str, exts: Iterable[str] = VIDEO_EXTS) -> bool:
    # Hidden files include macOS "._x.mp4" resource forks, which carry a video extension but no video.
    return not name.startswith(".") and name.lower().endswith(tuple(e.lower() for e in exts))


def find_video_files(folder: Path, exts: Iterable[str] = VIDEO_EXTS, recursive: bool = True) -> list[Path]:
    """Paths under ``folder`` whose names are video names, sorted; hidden files and folders skipped.

    Symlinked folders are followed (datasets are often linked in). Entries that are not regular files (a
    FIFO, a dangling link) are listed as well: reading them fails later with a reason a user can act on.
    """
    exts = tuple(exts)
    if not recursive:
        return sorted(p for p in folder.iterdir() if not p.is_dir() and is_video_name(p.name, exts))
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if is_video_name(f, exts))
    return sorted(found)
