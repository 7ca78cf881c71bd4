"""Writing the feature store: one writer at a time, crash-safe commits, resumable runs.

Commit protocol for a batch of finished videos: write every dataset's row(s) into *free* rows, flush and
fsync, then write the rows' ``status`` bytes, flush and fsync. A row whose status is still ``empty`` is free,
whatever bytes it holds, so a kill at any instant loses at most the batch being written (see
``features.schema``). A committed row is never written again: a video retried after a failure gets a new row,
and its old row is freed only after the new one is committed (if a kill comes in between, the next writer
finds two rows for the video and keeps the better one).
"""
from __future__ import annotations

import datetime as _dt
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
from features.errors import StoreError
from features.lock import WriterLock, real_path
from features.store import open_h5
from pipeline.core.atomic import fsync_path
from pipeline.core.config import differences

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
    source: np.ndarray | None = None      # (T,) uint8: schema.SEARCH, SECOND_LOOK or NOWHERE per frame
    frame_index: np.ndarray | None = None  # (T,) int32
    timestamp: np.ndarray | None = None   # (T,) float64
    info: dict = field(default_factory=dict)   # video_frames, fps, width, height
    crops: np.ndarray | None = None       # (K, C, C, 3) uint8 face crops of the valid frames; never stored


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _create_file(path: Path, capacity: int, frames: int, dim: int, widths: dict[str, int],
                 attrs: dict) -> None:
    with open_h5_new(path) as f:
        schema.create_layout(f, capacity, frames, dim, widths)
        for k, v in attrs.items():
            f.attrs[k] = v


def open_h5_new(path: Path):
    import h5py
    return h5py.File(path, "w", locking=False, libver=("earliest", "v110"))


def _rebuild(path: Path, capacity: int, widths: dict[str, int], lock: WriterLock) -> None:
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
    lock.hold(tmp)               # the new file is locked before it takes the store's name
    if os.stat(path).st_nlink > 1:
        log.warning("%s has other hard links; they keep the store as it was before it grew", path)
    os.replace(tmp, path)
    fsync_path(path.parent)
    log.info("store %s grown to %d rows", path, capacity)


class StoreWriter:
    """The single writer of a store. Use as a context manager; ``commit`` a batch of VideoResults."""

    def __init__(self, path: str | Path, provenance: dict, identity: dict, entries: Sequence,
                 new: bool = False, lock: WriterLock | None = None):
        self.path = real_path(path)          # a symlinked store is written (and grown) where it really is
        self._own_lock = lock is None
        self.lock = lock or WriterLock(self.path).acquire()
        if self.lock.store != self.path:
            raise ValueError(f"lock for {self.lock.store} given for store {self.path}")
        self.commits = 0
        try:
            self._prepare(provenance, identity, entries, new)
        except BaseException:
            if self._own_lock:
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
            self.lock.hold(tmp)
            os.replace(tmp, self.path)   # a kill during creation leaves no half-made store
            fsync_path(self.path.parent)
        self.f = open_h5(self.path, "r+")
        stored = json.loads(self.f.attrs["identity"])
        diff = differences(stored, identity)
        if diff:
            self.f.close()
            raise StoreError(f"{self.path} was made with a different config (store != now: {'; '.join(diff[:4])}); "
                             "use another --store, or --new to start a new one")
        self._load_index()
        self._ensure_room(entries, texts)

    def _load_index(self) -> None:
        f = self.f
        self.status = f["status"][:]
        ids = f["video_id"][:]
        self.row_of: dict[str, int] = {}
        self.stale: list[int] = []       # rows of a video committed twice (a kill between the two steps of a retry)
        for r in np.flatnonzero(self.status != schema.EMPTY):
            vid, row = schema.decode(ids[r]), int(r)
            other = self.row_of.get(vid)
            if other is not None and schema.RANK[int(self.status[other])] >= schema.RANK[int(self.status[row])]:
                self.stale.append(row)
                continue
            if other is not None:
                self.stale.append(other)
            self.row_of[vid] = row
        self.free = list(np.flatnonzero(self.status == schema.EMPTY))

    def _ensure_room(self, entries: Sequence, texts: dict[str, list[str]]) -> None:
        # A new video takes a row, and so does a failed one when it is retried (rows are never rewritten).
        need_rows = sum(1 for e in entries if self.status_of(e.video_id) in ("new", "failed"))
        widths = {c: self.f[c].dtype.itemsize for c in texts}
        wanted = {c: max(widths[c], schema.text_width(v)) for c, v in texts.items()}
        if need_rows <= len(self.free) and wanted == widths:
            return
        capacity = self.f["status"].shape[0]
        grown = max(capacity + need_rows - len(self.free), int(capacity * 1.25)) if need_rows > len(self.free) \
            else capacity
        self.f.close()
        _rebuild(self.path, grown, wanted, self.lock)
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
        """Write a batch of finished videos into free rows; they count only after this returns.

        A video already complete in the store is refused (committed rows are never rewritten); a failed one
        is replaced: its new row is committed first, then the old row is freed.
        """
        if not results:
            return
        done = [r.video_id for r in results if self.status_of(r.video_id) in ("ok", "no_face")]
        if done or len({r.video_id for r in results}) != len(results):
            raise StoreError(f"refusing to rewrite videos already committed to {self.path}: {done[:3] or 'a duplicate'}")
        if len(results) > len(self.free):
            raise StoreError(f"{self.path}: {len(results)} videos to commit but {len(self.free)} free rows")
        f = self.f
        self.commits += 1
        frames = f["features"].shape[1]
        rows = []
        for i, res in enumerate(results):
            if i == len(results) // 2:
                _maybe_kill("data", self.commits)
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
        replaced = list(self.stale)
        self.stale = []
        for res, row in zip(results, rows):
            f["status"][row] = res.status   # ... then the commit marker
            self.status[row] = res.status
            old = self.row_of.get(res.video_id)
            if old is not None:
                replaced.append(old)
            self.row_of[res.video_id] = row
        self._flush()
        if replaced:                        # retried failures: free their old rows, now that the new are in
            for row in replaced:
                f["status"][row] = schema.EMPTY
                self.status[row] = schema.EMPTY
            self.free.extend(sorted(replaced))
            self._flush()
        _maybe_kill("end", self.commits)

    def close(self) -> None:
        try:
            self.f.close()
        finally:
            if self._own_lock:
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
