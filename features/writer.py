"""Writing the feature store: one writer at a time, crash-safe commits, resumable runs.

Commit protocol for a batch of finished videos: write every dataset's row(s), flush and fsync, then write
the rows' ``status`` bytes, flush and fsync. A row whose status is still ``empty`` is free, whatever bytes
it holds, so a kill at any instant loses at most the batch being written (see ``features.schema``).
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import json
import logging
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from features import schema
from features.store import StoreError, open_h5
from pipeline.atomic import fsync_path

log = logging.getLogger(__name__)
# Test-only fault injection: "PHASE:N" kills this process with SIGKILL inside the N-th commit, PHASE being
# "data" (while data rows are half written), "mid" (data flushed, status not yet) or "end" (after the commit).
_KILL_ENV = "PIPELINE_TEST_KILL"


def _maybe_kill(phase: str, commit_no: int) -> None:
    spec = os.environ.get(_KILL_ENV)
    if spec and spec == f"{phase}:{commit_no}":
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class VideoResult:
    """What stage one produced for one video (arrays have T rows; missing frames masked out)."""
    video_id: str
    path: str
    label: int
    split: str
    group: str
    method: str
    status: int                           # schema.OK | NO_FACE | FAILED
    reason: str = ""
    features: np.ndarray | None = None    # (T, D) float16
    mask: np.ndarray | None = None        # (T,) bool
    boxes: np.ndarray | None = None       # (T, 4) float32
    probs: np.ndarray | None = None       # (T,) float32
    frame_index: np.ndarray | None = None  # (T,) int32
    timestamp: np.ndarray | None = None   # (T,) float64
    info: dict = field(default_factory=dict)   # video_frames, fps, width, height
    crops: np.ndarray | None = None       # (K, C, C, 3) uint8 face crops of the valid frames; never stored


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class WriterLock:
    """An exclusive advisory lock beside the store (released by the OS even when the writer is killed)."""

    def __init__(self, store: Path):
        self.path = store.with_name(store.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(f"another process (pid {holder}) is writing {self.path.with_suffix('')}; "
                             "wait for it to finish or stop it (readers may open the store meanwhile)") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _create_file(path: Path, capacity: int, frames: int, dim: int, widths: dict[str, int],
                 attrs: dict) -> None:
    with open_h5_new(path) as f:
        schema.create_layout(f, capacity, frames, dim, widths)
        for k, v in attrs.items():
            f.attrs[k] = v


def open_h5_new(path: Path):
    import h5py
    return h5py.File(path, "w", locking=False, libver=("earliest", "v110"))


def _rebuild(path: Path, capacity: int, widths: dict[str, int]) -> None:
    """Copy the store into a new file with more rows / wider text columns and swap it in atomically."""
    tmp = path.with_name(f"{path.name}.grow-{os.getpid()}")
    with open_h5(path, "r") as old:
        n_old, frames, dim = old["features"].shape
        _create_file(tmp, capacity, frames, dim, widths, dict(old.attrs))
        with open_h5(tmp, "r+") as new:
            step = 512
            for name in old:
                if old[name].shape == ():
                    new[name][()] = old[name][()]
                    continue
                for start in range(0, n_old, step):
                    end = min(start + step, n_old)
                    new[name][start:end] = old[name][start:end].astype(new[name].dtype)
    fsync_path(tmp)
    os.replace(tmp, path)
    log.info("store %s grown to %d rows", path, capacity)


class StoreWriter:
    """The single writer of a store. Use as a context manager; ``commit`` a batch of VideoResults."""

    def __init__(self, path: str | Path, provenance: dict, identity: dict, entries: Sequence,
                 new: bool = False):
        self.path = Path(path)
        self.lock = WriterLock(self.path)
        self.commits = 0
        self.lock.acquire()
        try:
            self._prepare(provenance, identity, entries, new)
        except BaseException:
            self.lock.release()
            raise

    # ---- opening ------------------------------------------------------------------------------------------
    def _prepare(self, provenance: dict, identity: dict, entries: Sequence, new: bool) -> None:
        for stale in self.path.parent.glob(self.path.name + ".grow-*"):
            stale.unlink()   # a growth interrupted before its atomic swap: the original is intact
        if self.path.exists() and new:
            backup = self.path.with_name(f"{self.path.name}.{_dt.datetime.now():%Y%m%d-%H%M%S}.bak")
            shutil.move(self.path, backup)
            log.warning("--new: previous store moved to %s", backup)
        texts = {c: [getattr(e, c) for e in entries] for c in schema.ROW_TEXT if c != "reason"}
        if not self.path.exists():
            widths = {c: schema.text_width(v) for c, v in texts.items()}
            attrs = {"schema_version": schema.SCHEMA_VERSION, "created": now(),
                     "provenance": json.dumps(provenance, sort_keys=True),
                     "identity": json.dumps(identity, sort_keys=True)}
            tmp = self.path.with_name(f"{self.path.name}.grow-{os.getpid()}")
            _create_file(tmp, max(len(entries), 1), identity["frames"], identity["feature_dim"], widths, attrs)
            fsync_path(tmp)
            os.replace(tmp, self.path)   # a kill during creation leaves no half-made store
        self.f = open_h5(self.path, "r+")
        stored = json.loads(self.f.attrs["identity"])
        if stored != identity:
            diff = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
            self.f.close()
            detail = "; ".join(f"{k}: store={stored.get(k)!r} now={identity.get(k)!r}" for k in diff[:4])
            raise StoreError(f"{self.path} was made with a different config ({detail}); use another --store "
                             "or --new to start a new one")
        self._load_index()
        self._ensure_room(entries, texts)

    def _load_index(self) -> None:
        f = self.f
        self.status = f["status"][:]
        ids = f["video_id"][:]
        self.row_of = {schema.decode(ids[r]): int(r) for r in np.flatnonzero(self.status != schema.EMPTY)}
        self.free = list(np.flatnonzero(self.status == schema.EMPTY))

    def _ensure_room(self, entries: Sequence, texts: dict[str, list[str]]) -> None:
        need_rows = sum(1 for e in entries if e.video_id not in self.row_of)
        widths = {c: self.f[c].dtype.itemsize for c in texts}
        wanted = {c: max(widths[c], schema.text_width(v)) for c, v in texts.items()}
        if need_rows <= len(self.free) and wanted == widths:
            return
        capacity = self.f["status"].shape[0]
        grown = max(capacity + need_rows - len(self.free), int(capacity * 1.25)) if need_rows > len(self.free) \
            else capacity
        self.f.close()
        _rebuild(self.path, grown, wanted)
        self.f = open_h5(self.path, "r+")
        self._load_index()

    # ---- queries ------------------------------------------------------------------------------------------
    def status_of(self, video_id: str) -> str:
        row = self.row_of.get(video_id)
        return "new" if row is None else schema.STATUS_NAMES[int(self.status[row])]

    def todo(self, entries: Sequence, retry_failed: bool = False) -> list:
        """Entries still to extract: not stored, or failed when ``retry_failed``."""
        wanted = {"new", "failed"} if retry_failed else {"new"}
        return [e for e in entries if self.status_of(e.video_id) in wanted]

    def sync_metadata(self, entries: Sequence) -> int:
        """Update label/split/group/method of stored videos from the current manifest (no re-extraction)."""
        changed = 0
        for e in entries:
            row = self.row_of.get(e.video_id)
            if row is None:
                continue
            current = (int(self.f["label"][row]), *(schema.decode(self.f[c][row]) for c in ("split", "group",
                                                                                              "method")))
            if current != (e.label, e.split, e.group, e.method):
                self._write_meta(row, e.label, e.split, e.group, e.method)
                changed += 1
        if changed:
            self._flush()
        return changed

    def set_manifest_sha256(self, digest: str) -> None:
        self.f["manifest_sha256"][()] = digest.encode()
        self._flush()

    # ---- writing ------------------------------------------------------------------------------------------
    def _write_meta(self, row: int, label: int, split: str, group: str, method: str) -> None:
        f = self.f
        f["label"][row] = label
        for name, value in (("split", split), ("group", group), ("method", method)):
            f[name][row] = schema.encode(value, f[name].dtype.itemsize)

    def _flush(self) -> None:
        self.f["updated"][()] = now().encode()
        self.f.flush()
        fsync_path(self.path)

    def commit(self, results: Sequence[VideoResult]) -> None:
        """Write a batch of finished videos; they count only after this returns."""
        if not results:
            return
        f = self.f
        self.commits += 1
        frames = f["features"].shape[1]
        rows = []
        for i, res in enumerate(results):
            if i == len(results) // 2:
                _maybe_kill("data", self.commits)
            row = self.row_of.get(res.video_id)
            if row is None:
                row = int(self.free.pop(0))
            rows.append(row)
            arrays = blank_arrays(frames, f["features"].shape[2])
            for name in arrays:
                value = getattr(res, name)
                if value is not None:
                    arrays[name] = np.asarray(value, dtype=f[name].dtype)
            for name, value in arrays.items():
                f[name][row] = value
            f["video_id"][row] = schema.encode(res.video_id, f["video_id"].dtype.itemsize)
            f["path"][row] = schema.encode(res.path, f["path"].dtype.itemsize)
            f["reason"][row] = schema.encode(res.reason, schema.REASON_WIDTH)
            self._write_meta(row, res.label, res.split, res.group, res.method)
            for key in ("video_frames", "fps", "width", "height"):
                f[key][row] = res.info.get(key, 0)
        self._flush()                       # data first ...
        _maybe_kill("mid", self.commits)
        for res, row in zip(results, rows):
            f["status"][row] = res.status   # ... then the commit marker
            self.status[row] = res.status
            self.row_of[res.video_id] = row
        self._flush()
        _maybe_kill("end", self.commits)

    def close(self) -> None:
        try:
            self.f.close()
        finally:
            self.lock.release()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def blank_arrays(frames: int, dim: int) -> dict[str, np.ndarray]:
    """Per-frame arrays of one row with every frame missing (what a failed video stores)."""
    out = {}
    for name, (shape, dtype, fill) in schema.frame_arrays(frames, dim).items():
        out[name] = np.full(shape, 0 if fill is None else fill, dtype=dtype)
    return out
