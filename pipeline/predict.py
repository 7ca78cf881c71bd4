"""Judge videos with a trained run: the store's exact preprocessing, then the run's ensemble.

The run records the identity of the store it was trained on. ``pipeline_for_run`` rebuilds stage one from
that record (frames, crop, sampling, detector, weights, numeric engine) and refuses to go on if what it can
load now differs (for instance other backbone weights), so a prediction sees what training saw. Videos go
through the local engine, the same batched, overlapped path as ``make features``; ``evaluate`` and the web
service score through ``judge`` too.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ensembles.decision import verdict
from features import schema
from features.writer import StoreWriter, VideoResult
from pipeline.core.config import build, differences
from pipeline.core.errors import PipelineError
from pipeline.core.progress import SILENT, Progress
from pipeline.core.videos import VideoEntry, find_video_files
from stages.decode import SCHEMES
from stages.faces import FaceConfig
from stages.local_engine import LocalEngine
from stages.preprocess import FeatureConfig, FramePipeline

log = logging.getLogger(__name__)
NO_FACE_LABEL = "no face found"
TASK = "predict"


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


def find_videos(paths: Sequence[str | Path]) -> list[VideoEntry]:
    """Files as given; folders searched recursively for video names (ids relative to the folder). A FIFO or
    a dangling link with a video name is kept, so that it is reported with its reason, not left out."""
    targets: list[VideoEntry] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = find_video_files(p)
            if not found:
                log.warning("%s: no video files in this folder", p)
            targets += [VideoEntry(f.relative_to(p).as_posix(), str(f.absolute())) for f in found]
        else:
            targets.append(VideoEntry(p.name, str(p.absolute())))
    ids = [t.video_id for t in targets]
    if len(set(ids)) != len(ids):   # same file name from two places: fall back to full paths
        targets = [VideoEntry(t.path, t.path) for t in targets]
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


def stage_one_configs(store_prov: dict, identity: dict, device: str = "auto") -> tuple[FeatureConfig, FaceConfig]:
    """The stage-one options the run's store was made with (frames, crop, sampling, detector, weights)."""
    if store_prov.get("synthetic"):
        raise PipelineError("this run was trained on a synthetic store (no video preprocessing to repeat)")
    feats = store_prov.get("config", {}).get("features", {})
    numerics = identity.get("backbone_numerics") or {"precision": store_prov.get("backbone_engine", {}).get(
        "precision", "fp32")}
    scheme = next((k for k, v in SCHEMES.items() if v == identity.get("sampling")), None)
    if scheme is None:
        raise PipelineError(f"the run's store sampled frames as {identity.get('sampling')!r}, which this version "
                            f"cannot repeat ({', '.join(SCHEMES.values())}); extract the store again")
    cfg = build(FeatureConfig, {**{k: v for k, v in feats.items() if k in FeatureConfig.__dataclass_fields__},
                                **{k: identity[k] for k in ("frames", "crop") if k in identity},
                                "sampling": scheme, "weights": _weights_arg(store_prov), "device": device,
                                "precision": numerics["precision"]})
    faces = build(FaceConfig, {**{k: v for k, v in (store_prov.get("config", {}).get("faces") or {}).items()
                                  if k in FaceConfig.__dataclass_fields__},
                               **{k: v for k, v in identity["detector"].items() if k in FaceConfig.__dataclass_fields__}})
    return cfg, faces


def check_identity(identity: dict, pipe: FramePipeline, keys=None) -> FramePipeline:
    """``pipe`` if its identity is the run's store's (on ``keys``, default all), else a one-line error."""
    diff = differences(identity, pipe.identity(), keys)
    if diff:
        raise PipelineError(f"preprocessing available now differs from the run's store (run != now: "
                            f"{'; '.join(diff[:3])}); predictions would not be comparable")
    return pipe


def pipeline_for_run(store_prov: dict, identity: dict, device: str = "auto") -> FramePipeline:
    """Stage one configured exactly as the run's store was; a changed identity is an error."""
    cfg, faces = stage_one_configs(store_prov, identity, device)
    return check_identity(identity, FramePipeline(cfg, faces))


def judge(res: VideoResult, ensemble, seconds: float = 0.0) -> Prediction:
    """A stage-one result scored by the run's members and ensemble, at the run's threshold."""
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
    return Prediction(res.video_id, res.path, "ok", p, verdict(p, ensemble.threshold), members, coverage, seconds)


def predict(targets: Sequence[VideoEntry], engine: LocalEngine, ensemble, cache: StoreWriter | None = None,
            keep: list | None = None, progress: Progress = SILENT) -> Iterable[Prediction]:
    """Yield one Prediction per target, in order; ``keep`` collects VideoResults (for explanations);
    ``progress`` also hears each video's stage (``stages.local_engine.STAGE`` events).

    With ``cache``, videos new to that store are appended to it; one it already holds is never written
    again (its committed row stays as it is, as ``features`` does on a rerun)."""
    known = {t.video_id for t in targets if cache is not None and cache.status_of(t.video_id) in ("ok", "no_face")}
    progress.start(TASK, total=len(targets), frames=0)
    t0 = time.perf_counter()
    for batch in engine.results(targets, keep_crops=keep is not None, progress=progress):
        seconds = (time.perf_counter() - t0) / len(batch)
        t0 = time.perf_counter()
        if cache is not None:
            cache.commit([r for r in batch if r.video_id not in known])
        for res in batch:
            if keep is not None:
                keep.append(res)
            progress.update(TASK, advance=1)
            yield judge(res, ensemble, seconds)
