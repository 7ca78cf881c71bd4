"""``load_manifest``: a dataset root -> checked, fully split manifest entries."""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

from pipeline.datasets.config import DatasetConfig
from pipeline.datasets.detect import detect_layout
from pipeline.datasets.entry import SPLITS, DatasetError, VideoEntry
from pipeline.datasets.registry import get_adapter
from pipeline.datasets.split import assign_splits, check_no_group_leak

log = logging.getLogger(__name__)


def load_manifest(root: str | Path, cfg: DatasetConfig | None = None) -> list[VideoEntry]:
    """Detect (or take ``cfg.dataset``) the layout, scan it, split what the dataset leaves open, check.

    Every entry has a split; no group spans two splits (``DatasetError`` otherwise); entries are sorted by
    video id. Files listed by metadata but absent stay in (stage one records them as "missing file").
    """
    cfg = cfg or DatasetConfig()
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset root not found: {root}")
    layout = detect_layout(root) if cfg.dataset == "auto" else cfg.dataset
    scan = get_adapter(layout)(root, cfg)
    check_unique_ids(scan.entries)
    warn_missing(scan.entries)
    entries = assign_splits(scan.entries, cfg.split_ratios, cfg.split_seed, scan.links)
    check_manifest(entries)
    entries.sort(key=lambda e: e.video_id)
    log_summary(layout, root, entries)
    return entries


def check_unique_ids(entries: Sequence[VideoEntry]) -> None:
    dupes = sorted(v for v, n in Counter(e.video_id for e in entries).items() if n > 1)
    if dupes:
        raise DatasetError(f"{len(dupes)} duplicate video id(s): {', '.join(dupes[:5])}"
                           f"{' ...' if len(dupes) > 5 else ''}; every video id must be unique")


def check_manifest(entries: Sequence[VideoEntry]) -> None:
    """Unique ids, 0/1 labels, a split for every entry, and no group in two splits."""
    check_unique_ids(entries)
    bad = [e.video_id for e in entries if e.label not in (0, 1) or e.split not in SPLITS]
    if bad:
        raise DatasetError(f"{len(bad)} entr(y/ies) without a 0/1 label or a train/val/test split: "
                           f"{', '.join(bad[:5])}")
    check_no_group_leak(entries)


def warn_missing(entries: Sequence[VideoEntry]) -> int:
    missing = [e.video_id for e in entries if not os.path.isfile(e.path)]
    if missing:
        log.warning("%d listed video(s) are missing on disk (kept; stage one records them as failed), e.g. %s",
                    len(missing), ", ".join(missing[:3]))
    return len(missing)


def summarize(entries: Sequence[VideoEntry]) -> dict[str, dict]:
    """{split: {"real", "fake", "groups", "sources": {official|file|seeded: n}}} for logs and command output."""
    out = {}
    for s in SPLITS:
        part = [e for e in entries if e.split == s]
        out[s] = {"real": sum(e.label == 0 for e in part), "fake": sum(e.label == 1 for e in part),
                  "groups": len({e.group for e in part}),
                  "sources": dict(sorted(Counter(e.split_source or "unknown" for e in part).items()))}
    return out


def log_summary(layout: str, root: Path, entries: Sequence[VideoEntry]) -> None:
    log.info("dataset %s (%s): %d videos, %d groups", root, layout, len(entries), len({e.group for e in entries}))
    for split, c in summarize(entries).items():
        sources = ", ".join(f"{n} {src}" for src, n in c["sources"].items()) or "empty"
        log.info("  %-5s %5d real %5d fake %5d groups (split: %s)", split, c["real"], c["fake"], c["groups"],
                 sources)
