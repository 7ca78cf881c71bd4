"""Reading the HDF5 feature store: provenance, the list of videos, features and masks.

A reader never locks the file and only reads rows whose ``status`` says they are committed, so it can be
opened while extraction is still writing (see ``features.schema`` for why that is safe).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np

from features import schema
from features.errors import StoreError


@dataclass(frozen=True)
class VideoRecord:
    video_id: str
    path: str
    label: int          # 0 real, 1 fake, -1 unknown
    split: str
    group: str
    method: str
    status: str         # ok | no_face | failed
    reason: str
    n_valid: int        # frames with a face crop
    row: int


def open_h5(path: str | Path, mode: str = "r") -> h5py.File:
    """Open without HDF5's own file lock: the writer holds our lock file instead, and readers must be able
    to open the store while it writes."""
    path = Path(path)
    if mode == "r" and not path.is_file():
        raise StoreError(f"no feature store at {path} (run `make features` first)")
    try:
        f = h5py.File(path, mode, locking=False)
    except OSError as exc:
        raise StoreError(f"{path} is not a valid store: not a readable HDF5 file ({one_line(exc)})") from exc
    try:
        why = schema.problem(f)
    except (OSError, KeyError, ValueError, TypeError) as exc:   # a damaged file can fail inside h5py too
        why = f"unreadable ({one_line(exc)})"
    if why:
        f.close()
        raise StoreError(f"{path} is not a valid store: {why}")
    return f


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


class FeatureStore:
    """Read-only view of one store file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = open_h5(self.path, "r")
        self.provenance: dict = {**json.loads(self._f.attrs["provenance"]), "path": str(self.path.resolve()),
                                 "created": str(self._f.attrs["created"]),
                                 "updated": schema.decode(self._f["updated"][()])}
        manifest = schema.decode(self._f["manifest_sha256"][()])
        if manifest:
            self.provenance["manifest_sha256"] = manifest
        self.identity: dict = json.loads(self._f.attrs["identity"])
        self.capacity, self.frames, self.dim = self._f["features"].shape
        self._records: list[VideoRecord] | None = None
        self._row_by_id: dict[str, int] | None = None

    @classmethod
    def open(cls, path: str | Path) -> "FeatureStore":
        return cls(path)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the list of videos -------------------------------------------------------------------------------
    def records(self) -> list[VideoRecord]:
        """Every committed row (any status), in row order."""
        if self._records is None:
            f = self._f
            status = f["status"][:]
            rows = np.flatnonzero(status != schema.EMPTY)
            cols = {name: f[name][:] for name in schema.ROW_TEXT}
            label = f["label"][:]
            n_valid = f["mask"][:].sum(axis=1)   # (N,) small: T bools per row
            self._records = [
                VideoRecord(*(schema.decode(cols[c][r]) for c in ("video_id", "path")), int(label[r]),
                            *(schema.decode(cols[c][r]) for c in ("split", "group", "method")),
                            schema.STATUS_NAMES[int(status[r])], schema.decode(cols["reason"][r]),
                            int(n_valid[r]), int(r))
                for r in rows]
        return self._records

    def videos(self, split: str | Sequence[str] | None = None, label: int | None = None,
               status: str | Sequence[str] = ("ok", "no_face")) -> list[VideoRecord]:
        splits = {split} if isinstance(split, str) else set(split) if split is not None else None
        statuses = {status} if isinstance(status, str) else set(status)
        return [r for r in self.records()
                if r.status in statuses and (splits is None or r.split in splits)
                and (label is None or r.label == label)]

    # ---- arrays -------------------------------------------------------------------------------------------
    def _rows_of(self, video_ids: Iterable[str]) -> np.ndarray:
        if self._row_by_id is None:
            self._row_by_id = {r.video_id: r.row for r in self.records()}
        by_id = self._row_by_id
        missing = [v for v in video_ids if v not in by_id]
        if missing:
            raise StoreError(f"{len(missing)} video(s) not in {self.path}, e.g. {missing[0]!r}")
        return np.array([by_id[v] for v in video_ids], dtype=np.int64)

    def read_rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows of one dataset in the order given (h5py wants increasing unique indices: sort, read, undo)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.empty((0, *self._f[name].shape[1:]), dtype=self._f[name].dtype)
        uniq, inverse = np.unique(rows, return_inverse=True)
        ds = self._f[name]
        if uniq.size > 0.5 * (uniq[-1] - uniq[0] + 1):   # dense: one contiguous read is fastest
            block = ds[uniq[0]:uniq[-1] + 1]
            return block[uniq - uniq[0]][inverse]
        return ds[uniq][inverse]

    def load(self, video_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Features (N, T, D) float16 and masks (N, T) bool for the given videos, in that order."""
        rows = self._rows_of(video_ids)
        return self.read_rows("features", rows), self.read_rows("mask", rows)

    def frames_of(self, video_id: str) -> dict[str, np.ndarray]:
        """Per-frame detail of one video: boxes (T,4), probs, frame_index, timestamp, mask, source."""
        row = self._rows_of([video_id])
        out = {k: self.read_rows(k, row)[0] for k in ("boxes", "probs", "frame_index", "timestamp", "mask")}
        # a schema-1 store says only whether a frame has a box: every box came from the face search then
        out["source"] = (self.read_rows("source", row)[0] if "source" in self._f
                         else np.where(out["mask"], schema.SEARCH, schema.NOWHERE).astype(np.uint8))
        return out

    # ---- summary ------------------------------------------------------------------------------------------
    def summary(self) -> dict:
        recs = self.records()
        done = [r for r in recs if r.status in ("ok", "no_face")]
        sampled = self.read_rows("frame_index", np.array([r.row for r in done], dtype=np.int64)) >= 0
        valid = sum(r.n_valid for r in done)
        return {
            "path": str(self.path),
            "capacity": int(self.capacity),
            "videos": len(recs),
            "by_status": dict(Counter(r.status for r in recs)),
            "by_label": dict(Counter(("real", "fake", "unknown")[r.label if r.label >= 0 else 2] for r in done)),
            "by_split": dict(Counter(r.split or "-" for r in done)),
            "by_split_label": dict(Counter(f"{r.split or '-'}/{('real', 'fake', '?')[r.label]}" for r in done)),
            "failures": dict(Counter(r.reason for r in recs if r.status == "failed")),
            "frames_sampled": int(sampled.sum()),
            "frames_with_face": int(valid),
            "face_coverage": float(valid / sampled.sum()) if sampled.sum() else 0.0,
            "videos_without_face": sum(r.status == "no_face" for r in recs),
            "updated": schema.decode(self._f["updated"][()]),
            "bytes": self.path.stat().st_size,
        }

