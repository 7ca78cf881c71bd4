"""Frame-level metrics: ROC AUC, average precision and EER over every scored frame, for heads that score
frames (``meanpool``, ``framelinear``), as DeepfakeBench reports beside video-level ones.

A frame's label is its video's. The intervals resample whole videos (or their groups) with the very
resamples of the video-level bootstrap (same groups, same seed), every frame of a drawn video coming along:
frames of one video are strongly correlated, so resampling frames would give intervals far too narrow.
Frame-level AUC usually runs several points below video-level AUC for the same model (a video's mean
averages its frames' noise away), so the two are never mixed in one column.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensembles import compare
from ensembles.run_folder import SplitPredictions

STATS = ("roc_auc", "average_precision", "eer")


@dataclass(frozen=True)
class FrameLevel:
    models: tuple[str, ...]
    n_frames: dict[str, int]
    n_videos: dict[str, int]
    point: dict[str, dict[str, float]]               # model -> stat -> value
    ci: dict[str, dict[str, tuple[float, float]]]    # model -> stat -> (low, high)

    def record(self, model: str) -> dict:
        return {"level": "frame", "n_frames": self.n_frames[model], "n_videos": self.n_videos[model],
                "metrics": {s: {"value": self.point[model][s], "ci": list(self.ci[model][s])} for s in STATS}}


def _stats(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    if len(y) == 0 or y.min() == y.max():
        return np.full(len(STATS), np.nan)
    return np.array([compare.auc(y, p), compare.average_precision(y, p), compare.eer(y, p)[0]])


def frame_level(rows, data: SplitPredictions, n_boot: int, seed: int, alpha: float) -> FrameLevel | None:
    """Frame metrics of the models that have frame rows for the videos of ``data``; None when none has."""
    index = {vid: i for i, vid in enumerate(data.video_ids)}
    by_model: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        i = index.get(r["video_id"])
        if i is not None:
            by_model.setdefault(r["model"], []).append((i, float(r["prob_fake"])))
    if not by_model:
        return None
    models = tuple(m for m in data.models if m in by_model) + tuple(sorted(set(by_model) - set(data.models)))
    point, ci, n_frames, n_videos = {}, {}, {}, {}
    for model in models:
        video = np.array([v for v, _ in by_model[model]])                # (F,) video index of each frame
        prob = np.array([p for _, p in by_model[model]])                 # (F,)
        y = data.labels[video].astype(np.int8)
        order = np.argsort(video, kind="stable")
        starts = np.searchsorted(video[order], np.arange(len(data.video_ids) + 1))

        def resampled(idx: np.ndarray) -> np.ndarray:                    # video indices -> frame statistics
            frames = np.concatenate([order[starts[v]:starts[v + 1]] for v in idx])
            return _stats(y[frames], prob[frames])

        with np.errstate(invalid="ignore", divide="ignore"):
            boot = compare.bootstrap(resampled, data.groups, n_boot=n_boot, seed=seed)
        values, bounds = _stats(y, prob), boot.ci(alpha)
        point[model] = {s: float(values[k]) for k, s in enumerate(STATS)}
        ci[model] = {s: (float(bounds[k, 0]), float(bounds[k, 1])) for k, s in enumerate(STATS)}
        n_frames[model], n_videos[model] = len(prob), len(np.unique(video))
    return FrameLevel(models, n_frames, n_videos, point, ci)
