"""Files that appear whole or not at all: write under a temporary name, fsync, rename, fsync the folder.

Every file the project writes goes through here (stores are the one exception: ``features.writer`` owns
their crash-safety protocol). JSON is written strict: NaN and infinities become null.
"""
from __future__ import annotations

import json
import math
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by path (an O_RDONLY descriptor is enough on Linux)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """A fresh name beside ``path`` (same filesystem, so the rename is atomic); unlike mkstemp, a file
    opened under it gets the usual permissions of the user's umask."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic_file(path: str | Path, mode: str = "xb", **open_kw) -> Iterator[IO]:
    """``with atomic_file(p, "x") as fh: fh.write(...)``: readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, mode, **open_kw) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """``with replacing(out) as tmp: program_writes(tmp)``: for files another program writes (ffmpeg, a
    PNG encoder): ``path`` gets the whole file at the end, or nothing if the block fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path).with_suffix(path.suffix)          # keep the extension: ffmpeg picks the format by it
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, line ends as given) atomically."""
    with atomic_file(path, "x", encoding="utf-8", newline="") as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_file(path, "xb") as fh:
        fh.write(data)
    return Path(path)


def json_safe(value: Any) -> Any:
    """Plain JSON values: NaN and infinities become null, tuples lists, numpy scalars and arrays Python."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):      # numpy scalars and arrays
        return json_safe(value.tolist())
    return value


def write_json(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    """Strict JSON (no NaN), atomically, with a final newline."""
    return write_text(path, json.dumps(json_safe(value), indent=indent, allow_nan=False) + "\n")
