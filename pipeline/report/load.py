"""Read and check a training run folder (layout pinned in notes/interfaces.md, "Training run folder").

``predictions.csv`` is long format, one row per (video, model); here it becomes one wide table per split:
every model's ``prob_fake`` aligned on the same videos, which is what every paired test needs.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError

PREDICTION_COLUMNS = ("video_id", "split", "label", "group", "model", "prob_fake", "no_face")
HISTORY_COLUMNS = ("epoch", "train_loss", "train_auc", "train_acc", "val_loss", "val_auc", "val_acc", "lr")


class ReportError(PipelineError):
    """A run folder the report cannot use; the message says what is missing or wrong."""


@dataclass(frozen=True)
class SplitPredictions:
    """Every model's scores on one split, aligned on videos (sorted by video id)."""
    split: str
    video_ids: np.ndarray     # (N,) str
    labels: np.ndarray        # (N,) int8, 0 real 1 fake
    groups: np.ndarray        # (N,) str; the video id where the group is empty
    no_face: np.ndarray       # (N,) bool: no valid frame, scored 0.5
    models: tuple[str, ...]
    probs: np.ndarray         # (K, N) float64, row k is models[k]

    def prob(self, model: str) -> np.ndarray:
        return self.probs[self.models.index(model)]


@dataclass(frozen=True)
class RunData:
    run_dir: Path
    info: dict                              # run.json
    predictions_path: Path
    splits: dict[str, SplitPredictions]     # "val", "test" (whichever are present)
    histories: dict[str, dict[str, np.ndarray]]   # member -> column -> (epochs,)
    notes: tuple[str, ...]                  # things the reader should know (missing histories, ...)

    @property
    def members(self) -> list[dict]:
        return list(self.info.get("members") or [])


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ReportError(f"{path.parent} is not a training run folder: no {path.name} "
                          f"(train one with `make train-ensemble RUN={path.parent}`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not valid JSON: {exc}") from exc


def _float(value: str, where: str) -> float:
    try:
        out = float(value)
    except ValueError as exc:
        raise ReportError(f"{where}: not a number: {value!r}") from exc
    if not math.isfinite(out):
        raise ReportError(f"{where}: not a finite number: {value!r}")
    return out


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise ReportError(f"no predictions.csv in {path.parent}: training writes it after its last epoch")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in PREDICTION_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ReportError(f"{path}: missing column(s) {', '.join(missing)}; "
                              f"expected {','.join(PREDICTION_COLUMNS)}")
        return list(reader)


def _check_row(row: dict[str, str], where: str) -> tuple[int, float, bool]:
    if row["label"] not in ("0", "1"):
        raise ReportError(f"{where}: label must be 0 or 1, got {row['label']!r}")
    prob = _float(row["prob_fake"], where)
    if not 0.0 <= prob <= 1.0:
        raise ReportError(f"{where}: prob_fake {prob} is outside [0, 1]")
    if row["no_face"] not in ("0", "1"):
        raise ReportError(f"{where}: no_face must be 0 or 1, got {row['no_face']!r}")
    return int(row["label"]), prob, row["no_face"] == "1"


def read_predictions(path: Path, model_order: list[str]) -> dict[str, SplitPredictions]:
    """Long predictions.csv -> one aligned wide table per split; refuses gaps, duplicates, conflicts."""
    by_split: dict[str, dict[str, dict[str, float]]] = {}
    videos: dict[tuple[str, str], tuple[int, str, bool]] = {}
    for line, row in enumerate(_read_rows(path), start=2):
        where = f"{path.name} line {line}"
        label, prob, no_face = _check_row(row, where)
        split, vid, model = row["split"], row["video_id"], row["model"]
        scores = by_split.setdefault(split, {}).setdefault(model, {})
        if vid in scores:
            raise ReportError(f"{where}: video {vid!r} has two rows for model {model!r} in split {split!r}")
        scores[vid] = prob
        key = (split, vid)
        seen = videos.setdefault(key, (label, row["group"] or vid, no_face))
        if seen[:2] != (label, row["group"] or vid):
            raise ReportError(f"{where}: video {vid!r} has a different label or group than in an earlier row")
        videos[key] = (label, seen[1], seen[2] or no_face)
    if not by_split:
        raise ReportError(f"{path} has no rows")
    return {split: _align(split, models, videos, model_order, path) for split, models in by_split.items()}


def _align(split, models, videos, model_order, path) -> SplitPredictions:
    ids = sorted({vid for scores in models.values() for vid in scores})
    for model, scores in models.items():
        if len(scores) != len(ids):
            gap = sorted(set(ids) - set(scores))
            raise ReportError(f"{path}: model {model!r} has no prediction for {len(gap)} of the {len(ids)} "
                              f"{split} videos (e.g. {gap[0]!r}); paired comparisons need every video")
    names = sorted(models, key=lambda m: (model_order.index(m) if m in model_order else len(model_order), m))
    meta = [videos[(split, vid)] for vid in ids]
    return SplitPredictions(
        split=split, video_ids=np.array(ids), models=tuple(names),
        labels=np.array([m[0] for m in meta], dtype=np.int8),
        groups=np.array([m[1] for m in meta]),
        no_face=np.array([m[2] for m in meta], dtype=bool),
        probs=np.array([[models[name][vid] for vid in ids] for name in names], dtype=np.float64))


def read_history(path: Path) -> dict[str, np.ndarray]:
    """members/<name>/history.csv as column -> array; empty cells become NaN (e.g. no val split)."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    cols = [c for c in rows[0] if c is not None]
    return {c: np.array([float(r[c]) if r.get(c) not in ("", None) else np.nan for r in rows]) for c in cols}


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run folder not found: {run_dir}")
    info = _read_json(run_dir / "run.json")
    if not isinstance(info.get("store"), dict):
        raise ReportError(f"{run_dir / 'run.json'} has no 'store' provenance: was it written by training?")
    members = [m.get("name") for m in info.get("members") or [] if isinstance(m, dict)]
    order = ["ensemble", *members]
    splits = read_predictions(run_dir / "predictions.csv", order)
    notes, histories = [], {}
    for name in members:
        path = run_dir / "members" / name / "history.csv"
        if not path.is_file():
            notes.append(f"member {name}: no history.csv, so no training curves")
            continue
        try:
            histories[name] = read_history(path)
        except (ValueError, KeyError) as exc:
            notes.append(f"member {name}: history.csv unreadable ({exc})")
    return RunData(run_dir, info, run_dir / "predictions.csv", splits, histories, tuple(notes))
