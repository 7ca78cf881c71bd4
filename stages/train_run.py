"""The training run folder (layout pinned in notes/interfaces.md, "Training run folder").

    RUN/run.json                      store provenance, members, train config, threshold, versions, command
    RUN/members/<name>/best.pt        best epoch (weights + standardisation, config, provenance)
    RUN/members/<name>/last.pt        last saved epoch (+ optimiser, schedule, early stopping: for --resume)
    RUN/members/<name>/history.csv    epoch,train_loss,train_auc,train_acc,val_loss,val_auc,val_acc,lr
    RUN/members/<name>/config.json    the member's resolved config
    RUN/members/<name>/predictions.csv  this member's rows of RUN/predictions.csv
    RUN/predictions.csv               video_id,split,label,group,model,prob_fake,no_face (val and test)
    RUN/attention.csv                 video_id,model,frame,weight (attention heads, val and test)

Every file is written to a temporary name and renamed, so a reader never sees half of one.
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from ensembles.compare import StatsError, auc, roc_points
from ensembles.ensemble import identity_differences
from pipeline.atomic import atomic_file
from pipeline.errors import PipelineError

HISTORY_COLUMNS = ("epoch", "train_loss", "train_auc", "train_acc", "val_loss", "val_auc", "val_acc", "lr")
PREDICTION_COLUMNS = ("video_id", "split", "label", "group", "model", "prob_fake", "no_face")
ATTENTION_COLUMNS = ("video_id", "model", "frame", "weight")
EVAL_SPLITS = ("val", "test")


def write_atomic(path: Path, text: str) -> Path:
    with atomic_file(path, "x", newline="") as fh:
        fh.write(text)
    return path


def csv_text(columns: tuple[str, ...], rows) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "numpy", "h5py", "deepfake-ensemble"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ---- run.json -------------------------------------------------------------------------------------------
def read_run(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    if not path.is_file():
        raise PipelineError(f"{run_dir} holds no training run (no run.json); "
                            f"train one first with `make train-ensemble RUN={run_dir}`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path} is not valid JSON: {exc}") from exc


def _json_safe(value):
    """NaN (an undefined metric) becomes null: run.json stays strict JSON for any reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_run(run_dir: Path, info: dict) -> Path:
    return write_atomic(run_dir / "run.json", json.dumps(_json_safe(info), indent=2, allow_nan=False) + "\n")


def check_store(info: dict, provenance: dict, fingerprint: str, run_dir: Path) -> None:
    """Refuse a store other than the run's: another identity, or other videos/labels/splits in it."""
    diff = identity_differences(info["store"], provenance)
    if diff:
        raise PipelineError(f"store {provenance.get('path')} differs from the one run {run_dir} was trained on "
                            f"({info['store'].get('path')}): " + "; ".join(diff)
                            + ". Use that store, or train a new run on this one")
    if info.get("data", {}).get("sha256") not in (None, fingerprint):
        raise PipelineError(f"the videos, labels or splits in {provenance.get('path')} changed since run {run_dir} "
                            f"was trained (was {info['data'].get('videos')}); its members would not be compared "
                            f"on the same videos. Train a new run on this store")


# ---- history and predictions --------------------------------------------------------------------------
def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""                                 # no validation split: empty cells (the report reads NaN)
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_history(path: Path, rows: list[dict]) -> Path:
    return write_atomic(path, csv_text(HISTORY_COLUMNS, ([_cell(r.get(c)) for c in HISTORY_COLUMNS] for r in rows)))


def member_prediction_rows(name: str, split_data: dict, probs: dict[str, np.ndarray]) -> list[tuple]:
    """Rows of predictions.csv for one model: every val and test video (no-face videos scored 0.5)."""
    rows = []
    for split in EVAL_SPLITS:
        d = split_data[split]
        for i, vid in enumerate(d.video_ids):
            no_face = not d.has_frames[i]
            p = 0.5 if no_face else float(probs[split][i])
            rows.append((vid, split, int(d.labels[i]), d.groups[i], name, f"{p:.8g}", int(no_face)))
    return rows


def attention_rows(name: str, split_data: dict, weights: dict[str, np.ndarray]) -> list[tuple]:
    rows = []
    for split in EVAL_SPLITS:
        for i, vid in enumerate(split_data[split].video_ids):
            rows.extend((vid, name, t, f"{w:.6g}") for t, w in enumerate(weights[split][i]))
    return rows


def assemble_predictions(run_dir: Path, members: list[dict]) -> dict[str, dict[str, float]]:
    """RUN/predictions.csv (every member + "ensemble") and RUN/attention.csv from the members' own files.

    Returns the ensemble's val probabilities {video_id: prob} with the labels, for the threshold.
    """
    rows, attention = [], []
    ens: dict[tuple[str, str], list] = {}
    for entry in members:
        mdir = run_dir / "members" / entry["name"]
        member_rows = read_csv(mdir / "predictions.csv")
        rows.extend(member_rows)
        if entry.get("in_ensemble", True):
            for r in member_rows:
                ens.setdefault((r["split"], r["video_id"]), [r, []])[1].append(float(r["prob_fake"]))
        if (mdir / "attention.csv").is_file():
            attention.extend(read_csv(mdir / "attention.csv"))
    ensemble_rows = [{**first, "model": "ensemble", "prob_fake": f"{np.mean(ps):.8g}"}
                     for first, ps in ens.values()]
    out = ensemble_rows + rows
    write_atomic(run_dir / "predictions.csv",
                 csv_text(PREDICTION_COLUMNS, ([r[c] for c in PREDICTION_COLUMNS] for r in out)))
    if attention:
        write_atomic(run_dir / "attention.csv",
                     csv_text(ATTENTION_COLUMNS, ([r[c] for c in ATTENTION_COLUMNS] for r in attention)))
    return {r["video_id"]: (int(r["label"]), float(r["prob_fake"]), r["no_face"] == "1")
            for r in ensemble_rows if r["split"] == "val"}


def choose_threshold(labels: np.ndarray, probs: np.ndarray) -> tuple[float, str]:
    """The decision threshold maximising Youden's J (TPR - FPR) on validation; 0.5 when that is undefined.

    The threshold sits halfway between the lowest score called fake and the next lower score, so the
    validation decisions are those of the best ROC point and new scores near it are split evenly.
    """
    try:
        fpr, tpr, thr = roc_points(labels, probs)
    except StatsError:
        return 0.5, "0.5 (validation lacks one class or is empty)"
    k = int(np.argmax(tpr - fpr))
    if k == 0 or not np.isfinite(thr[k]):
        return 0.5, "0.5 (no validation threshold beats chance)"
    lower = thr[k + 1] if k + 1 < len(thr) else 0.0
    return float((thr[k] + lower) / 2), "Youden's J on the validation ensemble"


def metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC (NaN when one class is missing) and accuracy at ``threshold``; NaN for no videos."""
    if len(labels) == 0:
        return {"auc": math.nan, "acc": math.nan}
    try:
        a = auc(labels, probs)
    except StatsError:
        a = math.nan
    return {"auc": a, "acc": float(np.mean((probs >= threshold) == (labels == 1)))}
