"""``evaluate RUN --store OTHER.h5``: score every video of another feature store with a trained run.

A new test set is one more store, never a retraining: stage one extracts it with the run's settings
(``features DATA --store OTHER.h5`` with the same frames, crop, detector and weights), and this scores its
videos with the run's members and ensemble through ``Ensemble.predict`` (what ``predict`` and training
use), at the run's validation thresholds. The store must have been made like the run's store: any other
difference in identity (backbone, weights checksum, frames, crop, margin, detector, sampling) is refused
with the keys named. Only ``perturb`` may differ: a perturbed copy (``features --perturb jpeg:3``) is how
robustness is measured.

The scores go into RUN/evaluations/<name>/ through ``ensembles.run_folder`` (predictions.csv, frames.csv for
heads that score frames, evaluation.json with what was scored), where ``make report`` finds them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ensembles.ensemble import ENSEMBLE
from ensembles.run_folder import RunFolder, Row, evaluation_differences, load_run, trained_identity
from features.store import FeatureStore, VideoRecord
from pipeline.core.config import ConfigError, field
from pipeline.core.device import resolve_device
from pipeline.core.errors import PipelineError
from pipeline.core.progress import SILENT, Progress
from pipeline.core.versions import package_versions

log = logging.getLogger(__name__)
TASK = "evaluate"
SPLITS = ("auto", "all", "train", "val", "test")
SPLIT_ORDER = ("train", "val", "test")


class EvaluateError(PipelineError):
    """A store that cannot be evaluated with this run; the message says why and what to do."""


@dataclass(frozen=True)
class EvaluateConfig:
    run: str = field("runs/latest", "trained run folder", cli=False)
    store: str = field("", "feature store to score (made with the run's stage-one settings)", cli=False)
    split: str = field("auto", "videos to score: auto (test on the run's own dataset, else all) | all | "
                       "train | val | test", choices=SPLITS)
    name: str = field("", "name of the evaluation set under RUN/evaluations/ (default: the store's file name "
                      "without .h5)")
    batch_size: int = field(256, "videos per scoring batch", identity=False)
    device: str = field("cpu", "auto | cpu | cuda", identity=False)

    def validate(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be at least 1")


def set_name(cfg: EvaluateConfig) -> str:
    return cfg.name or Path(cfg.store).name.removesuffix(".h5")


def same_dataset(info: dict, store: FeatureStore) -> bool:
    """Whether the store holds the run's own dataset (same manifest, or the very file): its train split
    is then made of videos the run was trained on."""
    ours, theirs = info["store"].get("manifest_sha256"), store.provenance.get("manifest_sha256")
    same_file = Path(info["store"].get("path") or "").resolve() == store.path.resolve()
    return same_file or bool(ours and ours == theirs)


def check_identity(info: dict, store: FeatureStore, run: Path) -> None:
    diff = evaluation_differences(info, store.identity)
    if diff:
        raise EvaluateError(f"store {store.path} was not made like the store run {run} was trained on, so its "
                            f"features are not comparable ({'; '.join(diff[:4])}); only a perturbation may "
                            "differ: extract it again with the run's settings (see `inspect` of both stores)")


def choose_videos(store: FeatureStore, split: str, own: bool) -> tuple[list[VideoRecord], str, dict]:
    """The labelled videos to score, the split resolved, and counts of what was left out."""
    if split == "auto":
        split = "test" if own else "all"
    if split == "train" and own:
        raise EvaluateError(f"{store.path} holds the run's own dataset and the run was trained on its train "
                            "split: scores there say nothing; use --split test or val")
    done = store.videos(status=("ok", "no_face"))
    wanted = [r for r in done if split == "all" or r.split == split]
    left = {"train_split_of_own_dataset": 0, "unlabelled": 0,
            "failed_in_store": len(store.videos(status="failed"))}
    if own and split == "all":
        left["train_split_of_own_dataset"] = sum(r.split == "train" for r in wanted)
        wanted = [r for r in wanted if r.split != "train"]
    labelled = [r for r in wanted if r.label in (0, 1)]
    left["unlabelled"] = len(wanted) - len(labelled)
    if not labelled:
        raise EvaluateError(f"{store.path} has no labelled (real/fake) videos in split {split!r}: nothing to "
                            "measure; `predict` scores unlabelled videos")
    return sorted(labelled, key=lambda r: r.video_id), split, left


def score(ensemble, store: FeatureStore, records: list[VideoRecord], batch_size: int,
          progress: Progress = SILENT) -> tuple[list[Row], list[tuple]]:
    """Every model's prob_fake per video (predictions.csv rows) and per frame (frames.csv rows)."""
    rows, frames, seen = [], [], 0
    progress.start(TASK, total=len(records), frames=0)
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        features, mask = store.load([r.video_id for r in chunk])     # (b, T, D) float16, (b, T) bool
        probs = ensemble.predict(features, mask, batch_size)          # {model: (b,)}: what predict uses
        per_frame = ensemble.frames(features, mask, batch_size)       # {member: (b, T)}, NaN: no face
        for i, r in enumerate(chunk):
            group = r.group or r.video_id
            rows += [Row(r.video_id, r.split, r.label, group, model, float(p[i]), r.status == "no_face")
                     for model, p in probs.items()]
            frames += [(r.video_id, r.split, r.label, group, model, t, float(v))
                       for model, p in per_frame.items() for t, v in enumerate(p[i]) if not np.isnan(v)]
        seen += int(mask.sum())
        progress.update(TASK, advance=len(chunk), frames=seen)
    return rows, frames


def run(cfg: EvaluateConfig, command: str = "", progress: Progress = SILENT) -> dict:
    """Score the store with the run; writes RUN/evaluations/<name>/ and returns its evaluation.json."""
    name = set_name(cfg)
    folder = RunFolder(cfg.run)
    folder.evaluation_dir(name)                                       # a bad name fails before any work
    ensemble = load_run(cfg.run, device=resolve_device(cfg.device))
    info = ensemble.info
    with FeatureStore.open(cfg.store) as store:
        check_identity(info, store, folder.path)
        own = same_dataset(info, store)
        records, split, left = choose_videos(store, cfg.split, own)
        log.info("scoring %d videos of %s (split %s) with %d models", len(records), store.path, split,
                 len(ensemble.members) + 1)
        rows, frames = score(ensemble, store, records, cfg.batch_size, progress)
        provenance, identity = dict(store.provenance), dict(store.identity)
    labels = np.array([r.label for r in records])
    meta = {
        "name": name, "run": str(folder.path), "level": "video (predictions.csv), frame (frames.csv)",
        "store": provenance, "store_identity": identity, "perturb": identity.get("perturb", ""),
        "perturbation": provenance.get("perturbation"), "trained_on": info["store"].get("path"),
        "run_store_identity": trained_identity(info), "own_dataset": own, "split": split,
        "splits": sorted({r.split for r in records}, key=lambda x: (x not in SPLIT_ORDER, SPLIT_ORDER.index(x)
                                                                    if x in SPLIT_ORDER else 0, x)),
        "videos": {"scored": len(records), "fake": int(labels.sum()), "real": int((labels == 0).sum()),
                   "no_face": sum(r.status == "no_face" for r in records), **left},
        "models": [ENSEMBLE, *ensemble.members], "frame_models": sorted({f[4] for f in frames}),
        "thresholds": info.get("thresholds") or {ENSEMBLE: {"value": ensemble.threshold}},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
        "versions": package_versions("torch", "numpy", "h5py"),
    }
    folder.write_evaluation(name, meta, rows, frames)
    log.info("evaluation %r written to %s", name, folder.evaluation_dir(name))
    return meta
