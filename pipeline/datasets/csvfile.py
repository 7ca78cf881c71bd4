"""CSV layout: one row per video, columns found by name (the seeds' shapes work without options).

Accepted without options: ``filename,label`` (REAL/FAKE), ``video_id,filepath,label`` (real/fake or 0/1),
the generated sample's ``manifest.csv`` (``video_id,path,label,group,identity,sha256``) and a manifest
written by ``write_manifest``. Relative paths start at the CSV's folder (or ``--csv-video-dir``).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path, PurePosixPath

from pipeline.datasets.config import DatasetConfig
from pipeline.datasets.entry import FILE, DatasetError, VideoEntry, absolute, parse_label, parse_split
from pipeline.datasets.files import describe
from pipeline.datasets.registry import Scan, register_adapter

# Column names tried in order when no --csv-* option names one (matched case-insensitively).
CANDIDATES = {
    "id": ("video_id", "id"),
    "path": ("path", "filepath", "file_path", "filename", "file", "video", "video_path"),
    "label": ("label", "class", "target"),
    "split": ("split", "set", "subset"),
    "group": ("group", "identity"),
    "method": ("method", "manipulation"),
}
REQUIRED = ("path", "label")


def find_csv(root: Path) -> Path:
    """ROOT itself when it is a .csv file, else ROOT/manifest.csv, else the only .csv in ROOT."""
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DatasetError(f"expected a .csv file or a folder holding one; got the file {root}")
        return root
    if (root / "manifest.csv").is_file():
        return root / "manifest.csv"
    found = sorted(p for p in root.glob("*.csv") if p.is_file()) if root.is_dir() else []
    if len(found) == 1:
        return found[0]
    what = f"{len(found)} CSV files ({', '.join(p.name for p in found)})" if found else describe(root)
    raise DatasetError(f"no CSV manifest: expected ROOT to be a .csv file or a folder with manifest.csv "
                       f"(or exactly one .csv); found {what}")


def resolve_columns(header: list[str], cfg: DatasetConfig, source: Path) -> dict[str, str]:
    """Role -> column name in the file, from --csv-<role> options or the candidate names."""
    by_lower = {h.strip().lower(): h for h in header}
    columns = {}
    for role, names in CANDIDATES.items():
        chosen = getattr(cfg, f"csv_{role}")
        if chosen:
            if chosen.strip().lower() not in by_lower:
                raise DatasetError(f"{source}: no column {chosen!r} (from --csv-{role}); "
                                   f"columns are {', '.join(header)}")
            columns[role] = by_lower[chosen.strip().lower()]
            continue
        for name in names:
            if name in by_lower:
                columns[role] = by_lower[name]
                break
    for role in REQUIRED:
        if role not in columns:
            raise DatasetError(f"{source}: no {role} column; expected one of {', '.join(CANDIDATES[role])} "
                               f"(or name it with --csv-{role}); columns are {', '.join(header) or 'none'}")
    return columns


def _video_id(raw_path: str) -> str:
    """The path as written, normalised to posix (``./a\\b.mp4`` -> ``a/b.mp4``): stable across machines."""
    return PurePosixPath(os.path.normpath(raw_path.replace("\\", "/"))).as_posix()


@register_adapter("csv")
def scan_csv(root: Path, cfg: DatasetConfig) -> Scan:
    source = find_csv(root)
    base = Path(cfg.csv_video_dir).expanduser() if cfg.csv_video_dir else source.parent
    with source.open(newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheet exports start with a BOM
        reader = csv.DictReader(f)
        header = [h for h in (reader.fieldnames or []) if h is not None]
        cols = resolve_columns(header, cfg, source)
        entries = [_row(row, cols, base, f"{source}, line {n}") for n, row in enumerate(reader, start=2)]
    if not entries:
        raise DatasetError(f"{source} has a header but no rows")
    return Scan(entries)


def _row(row: dict[str, str], cols: dict[str, str], base: Path, where: str) -> VideoEntry:
    def get(role: str) -> str:
        return (row.get(cols[role]) or "").strip() if role in cols else ""

    raw_path = get("path")
    if not raw_path:
        raise DatasetError(f"{where}: empty {cols['path']!r}")
    path = Path(raw_path.replace("\\", "/")).expanduser()  # a CSV written on Windows still reads
    video_id = get("id") or _video_id(raw_path)
    split = parse_split(get("split"), where)
    return VideoEntry(video_id=video_id, path=absolute(path if path.is_absolute() else base / path),
                      label=parse_label(get("label"), where), split=split, group=get("group") or video_id,
                      method=get("method"), split_source=FILE if split else "")
