"""The models the service holds, and scoring a batch of uploads with them: exactly ``predict``'s path.

``Scorer`` loads the run once (``ensembles.run_folder.load_run``), rebuilds the store's stage one
(``pipeline.predict.pipeline_for_run``, which refuses other preprocessing) and scores through
``pipeline.predict.predict`` on a ``LocalEngine``, then draws the picture with
``pipeline.explain.explain_video``: the numbers are the ones ``predict --json`` gives for the same file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from ensembles.run_folder import load_run, trained_identity
from pipeline.core.device import resolve_device
from pipeline.core.progress import SILENT, Progress
from pipeline.core.videos import VideoEntry
from pipeline.explain import explain_video
from pipeline.predict import Prediction, pipeline_for_run, predict
from stages.local_engine import LocalEngine

PICTURE = "explanation.png"


@dataclass
class Scored:
    video_id: str
    prediction: Prediction
    picture: Path | None          # the Grad-CAM + attention PNG (None: no face, a failure, or explain off)


class Scorer:
    def __init__(self, run_dir: str | Path, device: str = "auto", explain: bool = True):
        self.run_dir = Path(run_dir)
        self.ensemble = load_run(self.run_dir, device=resolve_device(device))
        self.pipe = pipeline_for_run(self.ensemble.store, trained_identity(self.ensemble.info), device)
        self.engine = LocalEngine(self.pipe.cfg, self.pipe.faces, pipe=self.pipe)
        self.explain = explain

    @property
    def threshold(self) -> float:
        return self.ensemble.threshold

    @property
    def random_weights(self) -> bool:
        return bool(self.pipe.embedder.weights.random)

    def model_info(self) -> dict:
        """The run's provenance for ``GET /v1/model``: weights and checksum, members, threshold, warning."""
        info, store = self.ensemble.info, self.ensemble.store
        w = self.pipe.embedder.weights
        identity = trained_identity(info)
        out = {
            "run": self.run_dir.name, "created": info.get("created"),
            "backbone": identity.get("backbone"), "weights": w.name, "weights_sha256": w.sha256,
            "random_weights": w.random,
            "threshold": self.threshold, "threshold_method": info.get("threshold_method"),
            "members": [{"name": m["name"], "head": m.get("head"), "options": m.get("options", {}),
                         "in_ensemble": m["name"] in self.ensemble.in_ensemble, "params": m.get("params"),
                         "val_auc": m.get("val_auc")} for m in info["members"]],
            "frames": identity.get("frames"), "crop": identity.get("crop"), "sampling": identity.get("sampling"),
            "margin": identity.get("margin"), "detector": identity.get("detector"),
            "backbone_numerics": identity.get("backbone_numerics"), "device": str(self.pipe.embedder.device),
            "data": info.get("data"), "versions": store.get("versions"),
            "explanations": self.explain,
        }
        if w.random:
            out["warning"] = ("RANDOM BACKBONE WEIGHTS: this run's features come from a randomly initialised "
                              "ResNet50, not ImageNet; its verdicts are for testing the pipeline only")
        return out

    def score(self, videos: Sequence[tuple[str, Path]], folders: dict[str, Path],
              progress: Progress = SILENT) -> Iterator[Scored]:
        """Score ``(video_id, path)`` pairs in one batched pass, in order; pictures go to ``folders[id]``."""
        targets = [VideoEntry(vid, str(path)) for vid, path in videos]
        keep: list = [] if self.explain else None
        for pred in predict(targets, self.engine, self.ensemble, keep=keep, progress=progress):
            picture = None
            if keep:
                res = keep.pop()                 # predict keeps each result just before it yields its verdict
                if pred.status == "ok":
                    png, _, _ = explain_video(res, pred, self.pipe, self.ensemble, folders[pred.video_id])
                    picture = png.replace(png.with_name(PICTURE))
            yield Scored(pred.video_id, pred, picture)
