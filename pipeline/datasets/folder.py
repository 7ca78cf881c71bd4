"""Folder layout: ``ROOT/real/**`` and ``ROOT/fake/**`` (any depth), split by the seeded group-aware split;
or already split as ``ROOT/{train,val,test}/{real,fake}/**``. Each video is its own group.

Nothing else is read from folder names (no method, no identity): use the CSV layout to declare groups.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.datasets.config import DatasetConfig
from pipeline.datasets.entry import FILE, DatasetError, VideoEntry, absolute, parse_split, relative_id
from pipeline.core.videos import find_video_files
from pipeline.datasets.files import describe
from pipeline.datasets.registry import Scan, register_adapter

LABELS = {"real": 0, "fake": 1}
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")


def _named_dirs(root: Path, names) -> dict[str, Path]:
    """Subfolders of ``root`` whose lower-cased name is in ``names`` (``Real/`` works too)."""
    found: dict[str, list[Path]] = {}
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and p.name.lower() in names:
                found.setdefault(p.name.lower(), []).append(p)
    for name, paths in found.items():
        if len(paths) > 1:
            raise DatasetError(f"{root} has {len(paths)} folders named {name!r} in different cases "
                               f"({', '.join(p.name for p in paths)}); keep one")
    return {name: paths[0] for name, paths in found.items()}


def label_dirs(root: Path) -> dict[str, Path]:
    return _named_dirs(root, LABELS)


def split_dirs(root: Path) -> dict[str, Path]:
    """``{"train": ROOT/train, ...}`` for split folders that hold real/ or fake/."""
    return {parse_split(name, str(root)): p for name, p in _named_dirs(root, SPLIT_NAMES).items() if label_dirs(p)}


def is_folder(root: Path) -> bool:
    return set(label_dirs(root)) == set(LABELS) or bool(split_dirs(root))


def _scan_labels(root: Path, base: Path, split: str, exts) -> list[VideoEntry]:
    entries = []
    for name, folder in sorted(label_dirs(base).items()):
        for path in find_video_files(folder, exts):
            vid = relative_id(path, root)
            entries.append(VideoEntry(vid, absolute(path), LABELS[name], split, group=vid,
                                      split_source=FILE if split else ""))
    return entries


@register_adapter("folder")
def scan_folder(root: Path, cfg: DatasetConfig) -> Scan:
    if set(label_dirs(root)) == set(LABELS):
        entries = _scan_labels(root, root, "", cfg.video_exts)
    elif split_dirs(root):
        entries = [e for split, base in sorted(split_dirs(root).items())
                   for e in _scan_labels(root, base, split, cfg.video_exts)]
    else:
        raise DatasetError(f"not a folder dataset: expected real/ and fake/ (or train/, val/, test/ each holding "
                           f"real/ and fake/) in {root}; found {describe(root)}")
    if not entries:
        raise DatasetError(f"no videos ({', '.join(cfg.video_exts)}) under the real/ and fake/ folders of {root}")
    return Scan(entries)
