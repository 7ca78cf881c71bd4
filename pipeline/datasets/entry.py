"""One video of a dataset manifest, and the small parsers every adapter shares (labels, split names, ids).

Labels, groups and splits are data read from a layout's own files or folders, never guessed from arbitrary
folder names: DeepfakeBench-style id parsing out of paths merged different fakes that shared a folder name.
"""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.core.errors import PipelineError
from pipeline.core.videos import VideoEntry  # noqa: F401  (the manifest's row type)

SPLITS = ("train", "val", "test")

# Where a video's split came from, recorded per video in the manifest (a Celeb-DF manifest mixes them: the
# test split is official, train/val are seeded).
OFFICIAL = "official"   # the dataset's published split files (FF++ splits/*.json, Celeb-DF test list)
FILE = "file"           # a split column of a user's CSV
SEEDED = "seeded"       # assigned by the seeded group-aware split (pipeline.datasets.split)

_LABELS = {"real": 0, "fake": 1, "0": 0, "1": 1}
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "dev": "val", "test": "test", "testing": "test"}


class DatasetError(PipelineError):
    """A dataset root, CSV or metadata file that cannot be read as a manifest; the message says why."""


def parse_label(value: object, where: str) -> int:
    """``real``/``fake`` in any case or ``0``/``1`` (1 = fake) -> 0/1; anything else names ``where``."""
    key = str(value).strip().lower()
    if key not in _LABELS:
        raise DatasetError(f"{where}: unknown label {value!r} (expected real/fake or 0/1, 1 = fake)")
    return _LABELS[key]


def parse_split(value: object, where: str) -> str:
    """A split name (train/val/test and common spellings) -> canonical name; "" stays "" (to assign)."""
    key = str(value or "").strip().lower()
    if not key:
        return ""
    if key not in _SPLIT_NAMES:
        raise DatasetError(f"{where}: unknown split {value!r} (expected train, val or test)")
    return _SPLIT_NAMES[key]


def relative_id(path: Path, root: Path) -> str:
    """The stable video id: ``path`` relative to ``root`` as a posix string (extension kept)."""
    return Path(os.path.relpath(path, root)).as_posix()


def absolute(path: Path) -> str:
    """An absolute, normalised path string without resolving symlinks (a linked dataset keeps its names)."""
    return os.path.abspath(path)
