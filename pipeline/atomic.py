"""Files that appear whole or not at all: write under a temporary name, fsync, rename, fsync the folder."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


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
