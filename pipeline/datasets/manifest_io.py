"""The manifest CSV saved beside a feature store, and its hash kept in the store's attributes.

Canonical form: UTF-8, ``\\n`` line ends, rows sorted by video id, label as 0/1. The same videos, labels,
splits and groups always give the same bytes, hence the same ``manifest_sha256``.
"""
from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Iterable, Sequence

from pipeline.core.atomic import write_bytes
from pipeline.datasets.entry import SPLITS, DatasetError, VideoEntry, parse_split

COLUMNS = ("video_id", "path", "label", "split", "group", "method", "split_source")
REQUIRED = COLUMNS[:6]  # split_source is optional when reading (older or hand-written manifests)


def canonical_bytes(entries: Iterable[VideoEntry]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for e in sorted(entries, key=lambda e: e.video_id):
        writer.writerow((e.video_id, e.path, int(e.label), e.split, e.group, e.method, e.split_source))
    return buf.getvalue().encode("utf-8")


def write_manifest(entries: Iterable[VideoEntry], path: str | Path) -> Path:
    """Write the canonical manifest CSV (atomically: a reader never sees half a file)."""
    return write_bytes(path, canonical_bytes(entries))


def manifest_sha256(manifest: Sequence[VideoEntry] | str | Path) -> str:
    """sha256 of the canonical CSV bytes: of entries, or of a manifest file written by ``write_manifest``."""
    data = Path(manifest).read_bytes() if isinstance(manifest, (str, Path)) else canonical_bytes(manifest)
    return hashlib.sha256(data).hexdigest()


def read_manifest(path: str | Path) -> list[VideoEntry]:
    """Read a manifest CSV back into entries (exactly what ``write_manifest`` wrote)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"manifest not found: {path}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path} is not a manifest: missing column(s) {', '.join(missing)}; "
                               f"found {', '.join(reader.fieldnames or []) or 'no header'}")
        entries = [_row(row, f"{path}, line {n}") for n, row in enumerate(reader, start=2)]
    return entries


def _row(row: dict[str, str], where: str) -> VideoEntry:
    if row["label"] not in ("0", "1"):
        raise DatasetError(f"{where}: label {row['label']!r} is not 0 or 1")
    split = parse_split(row["split"], where)
    if split not in SPLITS:
        raise DatasetError(f"{where}: no split given")
    return VideoEntry(video_id=row["video_id"], path=row["path"], label=int(row["label"]), split=split,
                      group=row["group"], method=row["method"], split_source=row.get("split_source") or "")
