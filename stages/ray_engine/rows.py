"""What travels between the Ray Data stages: one row per video, in fixed-shape numpy columns.

    entry rows     driver -> CPU tasks    the manifest fields and ``seq`` (position in this run's to-do list)
    prepared rows  tasks -> actors        + the VideoResult arrays and ``crops`` (T, C, C, 3) uint8
    result rows    actors -> driver       ``crops`` replaced by ``features`` (T, D) float16
    trace columns  with each of them      seq, task_node, task_seconds, actor_node, actor_seconds

Crops sit in their frame slots (zeros where ``mask`` is False) so every column has one shape and Ray stores
it as a tensor column. Full frames never travel: decoding, detection and cropping run in one process.
Missing arrays (a failed video has none) become the blank rows the store itself writes for them, so a store
written from these rows is byte-identical to one written from the VideoResults directly.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from features.writer import VideoResult, blank_arrays
from pipeline.core.videos import VideoEntry
from stages.preprocess import Prepared

ENTRY = ("video_id", "path", "label", "split", "group", "method")
FRAME = ("mask", "boxes", "probs", "source", "frame_index", "timestamp")   # per-frame arrays of a VideoResult
INFO = {"video_frames": np.int32, "fps": np.float32, "width": np.int32, "height": np.int32}


def entry_rows(entries: Sequence) -> list[dict]:
    """The driver's input rows; ``seq`` also names "the N-th video" for the test-only fault injection."""
    return [{**{c: getattr(e, c) for c in ENTRY}, "seq": i} for i, e in enumerate(entries)]


def entries_of(batch: dict) -> list[VideoEntry]:
    n = len(batch["video_id"])
    return [VideoEntry(str(batch["video_id"][i]), str(batch["path"][i]), int(batch["label"][i]),
                       str(batch["split"][i]), str(batch["group"][i]), str(batch["method"][i]))
            for i in range(n)]


def _columns(results: Sequence[VideoResult], frames: int, dim: int, with_features: bool) -> dict:
    """Row columns of VideoResults; absent arrays filled as the store fills them."""
    blank = blank_arrays(frames, dim)
    names = FRAME + (("features",) if with_features else ())
    out = {c: np.array([getattr(r, c) for r in results], dtype=object) for c in ENTRY + ("reason",)}
    out["label"] = np.array([r.label for r in results], np.int64)
    out["status"] = np.array([r.status for r in results], np.uint8)
    for name in names:
        out[name] = np.stack([blank[name] if getattr(r, name) is None
                              else np.asarray(getattr(r, name), blank[name].dtype) for r in results])
    for key, dtype in INFO.items():
        out[key] = np.array([r.info.get(key, 0) for r in results], dtype)
    return out


def prepared_batch(prepared: Sequence[Prepared], frames: int, crop: int, dim: int, trace: dict) -> dict:
    """Prepared videos -> a batch for the actors: result columns plus crops in their frame slots."""
    out = _columns([p.result for p in prepared], frames, dim, with_features=False)
    crops = np.zeros((len(prepared), frames, crop, crop, 3), np.uint8)   # (n, T, C, C, 3)
    for i, p in enumerate(prepared):
        if p.crops is not None and len(p.crops):
            crops[i, out["mask"][i]] = p.crops                            # (K, C, C, 3) into valid slots
    out["crops"] = crops
    return {**out, **trace}


def prepared_of(batch: dict) -> list[Prepared]:
    """The actors' side of ``prepared_batch``: Prepared videos whose crops are the valid frames only."""
    results = results_of(batch, with_features=False)
    return [Prepared(r, batch["crops"][i][r.mask]) for i, r in enumerate(results)]


def result_batch(results: Sequence[VideoResult], frames: int, dim: int, trace: dict) -> dict:
    return {**_columns(results, frames, dim, with_features=True), **trace}


def results_of(batch: dict, with_features: bool = True) -> list[VideoResult]:
    """Rows -> VideoResults as the local engine would have made them."""
    out = []
    for i in range(len(batch["video_id"])):
        arrays = {c: np.asarray(batch[c][i]) for c in FRAME + (("features",) if with_features else ())}
        res = VideoResult(*(str(batch[c][i]) for c in ("video_id", "path")), int(batch["label"][i]),
                          *(str(batch[c][i]) for c in ("split", "group", "method")), int(batch["status"][i]),
                          str(batch["reason"][i]), **arrays)
        res.info = {k: batch[k][i].item() for k in INFO}   # 0 where absent, as the store writes it
        out.append(res)
    return out
