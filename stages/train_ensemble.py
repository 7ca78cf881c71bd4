"""Stage two for a whole run: train every member of an ensemble, or add one head to a finished run.

``run`` makes (or, with ``resume``, continues) RUN from STORE: run.json first (the store's provenance, the
members, the config), then each member, then predictions.csv with the ensemble (mean of the members'
softmax outputs) and the decision threshold chosen on validation. ``add_head`` trains one more member into
a finished run on the same store, so a new head joins the comparisons without re-extraction.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich import box
from rich.table import Table

from ensembles.ensemble import DEFAULT_MEMBERS, EnsembleConfig, MemberSpec
from pipeline.config import ConfigError, build, to_dict
from pipeline.errors import PipelineError
from pipeline.ui import console
from stages.train import MemberResult, TrainConfig, fit_member, pick_device, split_outputs
from stages.train_data import TrainingData
from stages.train_run import (assemble_predictions, attention_rows, check_store, choose_threshold, csv_text,
                              member_prediction_rows, metrics, now, read_run, versions, write_atomic, write_run)
from stages.train_run import ATTENTION_COLUMNS, PREDICTION_COLUMNS

log = logging.getLogger(__name__)
# Options that may change when a run is resumed: they change where and how fast, not what is learned.
FREE_ON_RESUME = ("device", "max_memory_gb", "checkpoint_interval", "eval_batch_size", "threads")


def resumed_config(saved: dict, overrides: dict) -> TrainConfig:
    cfg = build(TrainConfig, {**saved, **overrides})
    changed = [k for k, v in to_dict(cfg).items() if k not in FREE_ON_RESUME and saved.get(k) != v]
    if changed:
        raise ConfigError(f"--resume continues a run with its own config; these options differ from it: "
                          f"{', '.join(f'{k}={to_dict(cfg)[k]!r} (run: {saved.get(k)!r})' for k in changed)}")
    return cfg


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("epochs {task.fields[status]}"), TimeElapsedColumn(), console=console)


def _member_outputs(result: MemberResult, data: TrainingData, cfg: TrainConfig, member_dir: Path) -> None:
    """members/<name>/predictions.csv (and attention.csv) on val and test, from the best weights."""
    device = pick_device(cfg.device)
    name, splits = result.spec.name, data.splits
    probs = {s: split_outputs(result.model, splits[s], device, cfg.eval_batch_size).double().softmax(-1)[:, 1].numpy()
             for s in ("val", "test")}
    write_atomic(member_dir / "predictions.csv",
                 csv_text(PREDICTION_COLUMNS, member_prediction_rows(name, splits, probs)))
    if hasattr(result.model.head, "attention"):
        weights = {s: split_outputs(result.model, splits[s], device, cfg.eval_batch_size, attention=True).numpy()
                   for s in ("val", "test")}
        write_atomic(member_dir / "attention.csv", csv_text(ATTENTION_COLUMNS, attention_rows(name, splits, weights)))


def _train(spec: MemberSpec, data: TrainingData, stats, cfg: TrainConfig, run_dir: Path, resume: bool,
           progress: Progress) -> dict:
    member_dir = run_dir / "members" / spec.name
    member_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(member_dir / "config.json", json.dumps(
        {"member": spec.to_dict(), "train": to_dict(cfg), "feature_dim": data.dim, "frames": data.frames},
        indent=2) + "\n")
    result = fit_member(spec, data, stats, cfg, member_dir, resume, progress)
    _member_outputs(result, data, cfg, member_dir)
    best = result.history[result.best_epoch - 1] if result.history else {}
    return {**spec.to_dict(), "epochs": len(result.history), "best_epoch": result.best_epoch,
            "monitor": result.monitor, "params": result.params, "seconds": round(result.seconds, 2),
            "val_loss": best.get("val_loss"), "val_auc": best.get("val_auc"), "val_acc": best.get("val_acc")}


def _finish(run_dir: Path, info: dict) -> dict:
    """predictions.csv, attention.csv, the threshold; run.json marked complete; the final table."""
    val = assemble_predictions(run_dir, info["members"])
    scored = [v for v in val.values() if not v[2]]            # videos with a face
    labels = np.array([v[0] for v in scored], dtype=np.int64)
    probs = np.array([v[1] for v in scored])
    threshold, how = choose_threshold(labels, probs)
    info.update(threshold=threshold, threshold_method=how, status="complete", finished=now(),
                ensemble_val={**metrics(labels, probs), "acc_at_threshold": metrics(labels, probs, threshold)["acc"],
                              "videos": len(scored)})
    write_run(run_dir, info)
    console.print(_table(run_dir, info))
    return info


def _fmt(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _table(run_dir: Path, info: dict) -> Table:
    table = Table(title=f"stage two: {run_dir}\nvalidation loss, AUC and accuracy at each member's best epoch",
                  title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("member", no_wrap=True)
    for col in ("params", "epochs", "best", "loss", "AUC", "acc", "s"):
        table.add_column(col, justify="right", no_wrap=True)
    for m in info["members"]:
        label = m["name"] if m["name"].startswith(m["head"]) else f"{m['name']} ({m['head']})"
        table.add_row(label + ("" if m.get("in_ensemble", True) else "*"),
                      f"{m.get('params', 0) / 1e6:.2f}M", str(m.get("epochs", "-")), str(m.get("best_epoch", "-")),
                      _fmt(m.get("val_loss")), _fmt(m.get("val_auc")), _fmt(m.get("val_acc")),
                      f"{m.get('seconds', 0):.1f}")
    ev = info["ensemble_val"]
    table.add_row("[bold]ensemble[/] (mean)", "", "", "", "", _fmt(ev["auc"]), _fmt(ev["acc"]),
                  f"{sum(m.get('seconds', 0) for m in info['members']):.1f}")
    table.caption = (f"threshold {info['threshold']:.3f} ({info['threshold_method']}): val acc "
                     f"{_fmt(ev['acc_at_threshold'])} on {ev['videos']} videos with a face"
                     + ("; * compared, not averaged" if not all(m.get("in_ensemble", True) for m in info["members"])
                        else ""))
    return table


def run(store: str | Path, run_dir: str | Path, overrides: dict, ensemble: EnsembleConfig | None = None,
        resume: bool = False, command: str = "") -> Path:
    """Train every member of ``ensemble`` (default: DEFAULT_MEMBERS) on STORE into RUN."""
    run_dir = Path(run_dir)
    exists = (run_dir / "run.json").is_file()
    if exists and not resume:
        raise PipelineError(f"{run_dir} already holds a training run: pass --resume to continue it, "
                            f"or choose another RUN")
    if exists:
        info = read_run(run_dir)
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
            check_store(info, data.provenance, data.fingerprint, run_dir)
        else:
            info = {"store": data.provenance, "members": [m.to_dict() for m in ensemble.members],
                    "train_config": to_dict(cfg), "threshold": 0.5, "created": now(), "versions": versions(),
                    "command": command, "status": "training",
                    "data": {"sha256": data.fingerprint, "videos": data.counts, "in_memory": data.in_memory}}
            write_run(run_dir, info)
        stats = data.standardisation() if cfg.standardize else (np.zeros(data.dim), np.ones(data.dim))
        entries = []
        with _progress() as progress:
            for spec in ensemble.members:
                entries.append(_train(spec, data, stats, cfg, run_dir, resume, progress))
        info["members"] = entries
        _finish(run_dir, info)
    return run_dir


def add_head(store: str | Path, run_dir: str | Path, spec: MemberSpec, overrides: dict, resume: bool = False,
             command: str = "") -> Path:
    """Train one more member into a finished run on the same store; it joins predictions.csv."""
    run_dir = Path(run_dir)
    info = read_run(run_dir)
    if info.get("status") != "complete":
        raise PipelineError(f"{run_dir}: the ensemble has not finished training; finish it first with "
                            f"`train-ensemble --resume --store STORE --run {run_dir}`")
    if spec.name in {m["name"] for m in info["members"]}:
        raise PipelineError(f"{run_dir} already has a member named {spec.name!r}; choose another with --name")
    cfg = build(TrainConfig, {**info["train_config"], **overrides})
    with TrainingData(store, cfg.max_memory_gb) as data:
        check_store(info, data.provenance, data.fingerprint, run_dir)
        stats = data.standardisation() if cfg.standardize else (np.zeros(data.dim), np.ones(data.dim))
        with _progress() as progress:
            entry = _train(spec, data, stats, cfg, run_dir, resume, progress)
    info["members"].append({**entry, "command": command})
    _finish(run_dir, info)
    return run_dir
