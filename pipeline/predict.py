"""Judge videos with a trained run: the store's exact preprocessing, then the run's ensemble.

The run records the provenance of the store it was trained on. ``pipeline_for_run`` rebuilds stage one
from that record (frames, crop, margin, detector, weights, precision) and refuses to go on if what it can
load now differs (for instance other backbone weights), so a prediction sees what training saw.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from features import schema
from features.writer import StoreWriter, VideoResult
from pipeline.config import build
from pipeline.datasets.config import VIDEO_EXTS
from pipeline.errors import PipelineError
from stages.extract import results
from stages.faces import FaceConfig
from stages.preprocess import FeatureConfig, FramePipeline

log = logging.getLogger(__name__)
NO_FACE_LABEL = "no face found"


@dataclass(frozen=True)
class Target:
    """A video to judge; shaped like a manifest entry so stage one can take it."""
    video_id: str
    path: str
    label: int = -1
    split: str = ""
    group: str = ""
    method: str = ""


@dataclass
class Prediction:
    video_id: str
    path: str
    status: str                      # ok | no_face | failed
    prob_fake: float | None          # ensemble probability (0.5 when no face; None when failed)
    label: str                       # fake | real | no face found | error
    members: dict[str, float] = field(default_factory=dict)
    face_coverage: float = 0.0       # valid frames / sampled frames
    seconds: float = 0.0
    error: str = ""

    def as_dict(self) -> dict:
        return {"video_id": self.video_id, "path": self.path, "status": self.status, "prob_fake": self.prob_fake,
                "label": self.label, "members": self.members, "face_coverage": round(self.face_coverage, 4),
                "seconds": round(self.seconds, 3), "error": self.error}


def find_videos(paths: Sequence[str | Path]) -> list[Target]:
    """Files as given; folders searched recursively for video files (ids relative to the folder)."""
    targets: list[Target] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTS
                           and not f.name.startswith("."))
            if not found:
                log.warning("%s: no video files (%s) in this folder", p, ", ".join(VIDEO_EXTS))
            targets += [Target(f.relative_to(p).as_posix(), str(f.resolve())) for f in found]
        else:
            targets.append(Target(p.name, str(p.resolve()) if p.exists() else str(p)))
    ids = [t.video_id for t in targets]
    if len(set(ids)) != len(ids):   # same file name from two places: fall back to full paths
        targets = [Target(t.path, t.path) for t in targets]
    return targets


def _weights_arg(prov: dict) -> str:
    name = prov.get("weights", "")
    if name.startswith("imagenet"):
        return "imagenet"
    if name.startswith("random"):
        return "random"
    if name.startswith("file:"):
        return prov.get("weights_source", name[5:])
    raise PipelineError(f"the run's store used weights {name!r}, which predict cannot rebuild")


def pipeline_for_run(store_prov: dict, device: str = "auto") -> FramePipeline:
    """Stage one configured exactly as the run's store was; a changed identity is an error."""
    if store_prov.get("synthetic"):
        raise PipelineError("this run was trained on a synthetic store (no video preprocessing to repeat)")
    feats = store_prov.get("config", {}).get("features", {})
    engine = store_prov.get("backbone_engine", {})
    cfg = build(FeatureConfig, {**{k: v for k, v in feats.items() if k in FeatureConfig.__dataclass_fields__},
                                "frames": store_prov["frames"], "crop": store_prov["crop"],
                                "weights": _weights_arg(store_prov), "device": device,
                                "precision": engine.get("precision", "fp32")})
    faces = build(FaceConfig, {k: v for k, v in store_prov["detector"].items()
                               if k in FaceConfig.__dataclass_fields__})
    pipe = FramePipeline(cfg, faces)
    now, then = pipe.identity(), {k: store_prov.get(k) for k in pipe.identity()}
    if now != then:
        diff = [k for k in now if now[k] != then.get(k)]
        detail = "; ".join(f"{k}: run={then.get(k)!r} now={now[k]!r}" for k in diff[:3])
        raise PipelineError(f"preprocessing available now differs from the run's store ({detail}); "
                            "predictions would not be comparable")
    return pipe


def judge(res: VideoResult, ensemble, threshold: float, seconds: float) -> Prediction:
    sampled = int((res.frame_index >= 0).sum()) if res.frame_index is not None else 0
    coverage = float(res.mask.sum() / sampled) if sampled else 0.0
    if res.status == schema.FAILED:
        return Prediction(res.video_id, res.path, "failed", None, "error", seconds=seconds, error=res.reason)
    if res.status == schema.NO_FACE:
        probs = {name: 0.5 for name in ensemble.members}
        return Prediction(res.video_id, res.path, "no_face", 0.5, NO_FACE_LABEL, probs, coverage, seconds)
    out = ensemble.predict(res.features[None].astype(np.float32), res.mask[None])
    members = {k: float(v[0]) for k, v in out.items() if k != "ensemble"}
    p = float(out["ensemble"][0])
    return Prediction(res.video_id, res.path, "ok", p, "fake" if p >= threshold else "real", members,
                      coverage, seconds)


def predict(targets: Sequence[Target], pipe: FramePipeline, ensemble, threshold: float,
            cache: StoreWriter | None = None, keep: list | None = None, progress=None,
            task=None) -> Iterable[Prediction]:
    """Yield one Prediction per target, in order; ``keep`` collects VideoResults (for explanations)."""
    t0 = time.perf_counter()
    for batch in results(pipe, targets, pipe.cfg.prefetch, keep_crops=keep is not None):
        seconds = (time.perf_counter() - t0) / len(batch)
        t0 = time.perf_counter()
        if cache is not None:
            cache.commit(batch)
        for res in batch:
            if keep is not None:
                keep.append(res)
            if progress is not None:
                progress.update(task, advance=1)
            yield judge(res, ensemble, threshold, seconds)
