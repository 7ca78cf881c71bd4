"""DFDC layout (https://ai.meta.com/datasets/dfdc/, Dolhansky et al. 2020): parts with a metadata.json.

    ROOT/dfdc_train_part_0/metadata.json   {"aaqaifqrwn.mp4": {"label": "FAKE", "original": "vpmyeepbep.mp4"}}
    ROOT/dfdc_train_part_0/aaqaifqrwn.mp4
    (or ROOT/metadata.json beside the videos, as in the Kaggle sample)

A fake belongs to its original's group and a real video is its own group, so a fake and the video it was
made from always share a split (the DFDC winner's rule). DFDC publishes no train/val/test split of the
training parts, so the seeded group-aware split applies.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from pipeline.datasets.config import DatasetConfig
from pipeline.datasets.entry import DatasetError, VideoEntry, absolute, parse_label, relative_id
from pipeline.core.videos import find_video_files
from pipeline.datasets.files import describe
from pipeline.datasets.registry import Scan, register_adapter

log = logging.getLogger(__name__)


def metadata_files(root: Path) -> list[Path]:
    """``ROOT/metadata.json`` and ``ROOT/*/metadata.json`` (one per part)."""
    if not root.is_dir():
        return []
    found = [root / "metadata.json"] if (root / "metadata.json").is_file() else []
    return found + sorted(p / "metadata.json" for p in root.iterdir()
                          if p.is_dir() and (p / "metadata.json").is_file())


def _read(meta: Path) -> dict:
    try:
        data = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{meta}: cannot read DFDC metadata ({exc})") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{meta}: expected a JSON object of file name -> {{label, original}}")
    return data


def _part(root: Path, meta: Path, exts) -> tuple[list[VideoEntry], int, int]:
    """Entries of one part, plus counts of videos on disk without metadata and fakes without an original."""
    data = _read(meta)
    entries, orphans = [], 0
    for name, info in sorted(data.items()):
        if not isinstance(info, dict) or "label" not in info:
            raise DatasetError(f"{meta}: entry {name!r} has no label")
        label = parse_label(info["label"], f"{meta}, entry {name!r}")
        path = meta.parent / name
        original = info.get("original") if label == 1 else None
        if label == 1 and not original:
            orphans += 1
        # Group by the original's file stem: names are unique across DFDC parts, and an original may sit in
        # another part than its fakes.
        group = Path(original).stem if original else Path(name).stem
        entries.append(VideoEntry(relative_id(path, root), absolute(path), label, "", group))
    unlisted = sum(1 for p in find_video_files(meta.parent, exts, recursive=False) if p.name not in data)
    return entries, unlisted, orphans


@register_adapter("dfdc")
def scan_dfdc(root: Path, cfg: DatasetConfig) -> Scan:
    metas = metadata_files(root)
    if not metas:
        raise DatasetError(f"not a DFDC root: expected metadata.json in {root} or in its part folders "
                           f"(dfdc_train_part_N/metadata.json); found {describe(root)}")
    entries: list[VideoEntry] = []
    unlisted = orphans = 0
    for meta in metas:
        part, n_unlisted, n_orphans = _part(root, meta, cfg.video_exts)
        entries += part
        unlisted += n_unlisted
        orphans += n_orphans
    if unlisted:
        log.warning("DFDC: %d video(s) on disk are not in any metadata.json and are skipped (no label)", unlisted)
    if orphans:
        log.warning("DFDC: %d fake(s) name no original; each is its own group", orphans)
    if not entries:
        raise DatasetError(f"DFDC metadata in {root} lists no videos ({', '.join(str(m) for m in metas)})")
    return Scan(entries)
