"""Stage two for a whole run: train every member of an ensemble, or add one head to a finished run.

``run`` makes (or, with ``resume``, continues) RUN from STORE: run.json first (the store's provenance, the
members, the config), then each member, then the run's predictions with the ensemble (mean of the members'
softmax outputs) and every model's decision threshold chosen on validation (``ensembles.run_folder``
owns those files). ``add_head`` trains one more member into a finished run on the same store, so a new head
joins the comparisons without re-extraction. Progress goes through callbacks; nothing is printed here.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ensembles.ensemble import DEFAULT_MEMBERS, ENSEMBLE, EnsembleConfig, MemberSpec, probabilities
from ensembles.run_folder import RunError, RunFolder, Row, check_store
from pipeline.core.config import ConfigError, build, differences, identity_of, to_dict
from pipeline.core.device import resolve_device
from pipeline.core.progress import SILENT, Progress
from pipeline.core.versions import package_versions
from stages.train import MemberResult, TrainConfig, fit_member, metrics, split_outputs
from stages.train_data import TrainingData

log = logging.getLogger(__name__)
EVAL_SPLITS = ("val", "test")


def resumed_config(saved: dict, overrides: dict) -> TrainConfig:
    """The run's own config, with only non-identity options (device, threads, ...) allowed to change."""
    cfg = build(TrainConfig, {**saved, **overrides})
    changed = differences(identity_of(build(TrainConfig, saved)), identity_of(cfg))
    if changed:
        raise ConfigError("--resume continues a run with its own config; these options differ from it (run != "
                          f"now): {'; '.join(changed)}")
    return cfg


def now() -> str:
    import datetime as _dt
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _member_outputs(result: MemberResult, data: TrainingData, cfg: TrainConfig, run: RunFolder) -> None:
    """members/<name>/predictions.csv (and attention.csv, frames.csv) on val and test, from the best weights."""
    device = resolve_device(cfg.device)
    name, rows, attention, frames = result.spec.name, [], [], []
    has_attention = hasattr(result.model.head, "attention")
    for split in EVAL_SPLITS:
        d = data.splits[split]
        probs = probabilities(split_outputs(result.model, d, device, cfg.eval_batch_size))
        for i, vid in enumerate(d.video_ids):
            no_face = not d.has_frames[i]
            rows.append(Row(vid, split, int(d.labels[i]), d.groups[i], name, 0.5 if no_face else float(probs[i]),
                            no_face))
        if has_attention:
            weights = split_outputs(result.model, d, device, cfg.eval_batch_size, attention=True).numpy()
            attention += [(vid, name, t, float(w)) for i, vid in enumerate(d.video_ids)
                          for t, w in enumerate(weights[i])]
        if result.model.scores_frames:           # frame-level scores: one row per frame with a face
            per_frame = probabilities(split_outputs(result.model, d, device, cfg.eval_batch_size, frames=True))
            frames += [(vid, split, int(d.labels[i]), d.groups[i], name, t, float(p))
                       for i, vid in enumerate(d.video_ids) for t, p in enumerate(per_frame[i]) if not np.isnan(p)]
    run.write_member_outputs(name, rows, frames=frames, attention=attention)


def _train(spec: MemberSpec, data: TrainingData, stats, cfg: TrainConfig, run: RunFolder, resume: bool,
           progress: Progress) -> dict:
    run.write_member_config(spec.name, {"member": spec.to_dict(), "train": to_dict(cfg), "feature_dim": data.dim,
                                        "frames": data.frames})
    result = fit_member(spec, data, stats, cfg, run, resume, progress)
    _member_outputs(result, data, cfg, run)
    best = result.history[result.best_epoch - 1] if result.history else {}
    return {**spec.to_dict(), "epochs": len(result.history), "best_epoch": result.best_epoch,
            "monitor": result.monitor, "params": result.params, "seconds": round(result.seconds, 2),
            "val_loss": best.get("val_loss"), "val_auc": best.get("val_auc"), "val_acc": best.get("val_acc")}


def _finish(run: RunFolder, info: dict) -> dict:
    """predictions.csv, attention.csv, every threshold; run.json marked complete."""
    splits = run.assemble(info)
    val = splits.get("val")
    if val is not None and ENSEMBLE in val.models:
        keep = ~val.no_face                                    # videos with a face
        labels, probs = val.labels[keep].astype(np.int64), val.prob(ENSEMBLE)[keep]
    else:
        labels, probs = np.zeros(0, np.int64), np.zeros(0)
    info.update(status="complete", finished=now(),
                ensemble_val={**metrics(labels, probs), "acc_at_threshold": metrics(labels, probs, info["threshold"])["acc"],
                              "videos": int(len(labels))})
    run.write(info)
    return info


def _standardisation(data: TrainingData, cfg: TrainConfig):
    return data.standardisation() if cfg.standardize else (np.zeros(data.dim), np.ones(data.dim))


def run(store: str | Path, run_dir: str | Path, overrides: dict, ensemble: EnsembleConfig | None = None,
        resume: bool = False, command: str = "", progress: Progress = SILENT) -> dict:
    """Train every member of ``ensemble`` (default: DEFAULT_MEMBERS) on STORE into RUN; returns run.json."""
    folder = RunFolder(run_dir)
    exists = folder.exists()
    if exists and not resume:
        raise RunError(f"{run_dir} already holds a training run: pass --resume to continue it, or choose another RUN")
    if exists:
        info = folder.read()
        cfg = resumed_config(info["train_config"], overrides)
        saved = EnsembleConfig(tuple(MemberSpec.from_dict(m) for m in info["members"]))
        if ensemble is not None and ensemble != saved:
            raise ConfigError(f"--resume continues {run_dir} with its own members; the --config members differ")
        ensemble = saved
    else:
        if resume:
            log.info("%s holds no run yet: starting one", run_dir)
        cfg = build(TrainConfig, overrides)
        ensemble = (ensemble or EnsembleConfig(DEFAULT_MEMBERS)).validate()
    with TrainingData(store, cfg.max_memory_gb) as data:
        data.training_rows()                     # a training split that cannot be used: say so now
        if exists:
            check_store(info, data.identity, data.fingerprint, folder.path, str(store))
        else:
            info = {"store": data.provenance, "store_identity": data.identity,
                    "members": [m.to_dict() for m in ensemble.members], "train_config": to_dict(cfg),
                    "threshold": 0.5, "created": now(), "versions": package_versions("torch", "numpy", "h5py"),
                    "command": command, "status": "training",
                    "data": {"sha256": data.fingerprint, "videos": data.counts, "in_memory": data.in_memory}}
            folder.write(info)
        stats = _standardisation(data, cfg)
        info["members"] = [_train(spec, data, stats, cfg, folder, resume, progress) for spec in ensemble.members]
        return _finish(folder, info)


def add_head(store: str | Path, run_dir: str | Path, spec: MemberSpec, overrides: dict, resume: bool = False,
             command: str = "", progress: Progress = SILENT) -> dict:
    """Train one more member into a finished run on the same store; it joins predictions.csv."""
    folder = RunFolder(run_dir)
    info = folder.read()
    if info.get("status") != "complete":
        raise RunError(f"{run_dir}: the ensemble has not finished training; finish it first with "
                       f"`train-ensemble --resume --store STORE --run {run_dir}`")
    if spec.name in {m["name"] for m in info["members"]}:
        raise RunError(f"{run_dir} already has a member named {spec.name!r}; choose another with --name")
    cfg = build(TrainConfig, {**info["train_config"], **overrides})
    with TrainingData(store, cfg.max_memory_gb) as data:
        check_store(info, data.identity, data.fingerprint, folder.path, str(store))
        entry = _train(spec, data, _standardisation(data, cfg), cfg, folder, resume, progress)
    info["members"].append({**entry, "command": command})
    return _finish(folder, info)
