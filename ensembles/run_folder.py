"""The training run folder: the one module that names every file in a run, and their only reader and writer.

    RUN/run.json                         store provenance and identity, members, train config, thresholds,
                                         versions, command, status
    RUN/members/<name>/best.pt           best epoch (weights + standardisation, config, provenance)
    RUN/members/<name>/last.pt           last saved epoch (+ optimiser, schedule, early stopping: --resume)
    RUN/members/<name>/history.csv       epoch,train_loss,train_auc,train_acc,val_loss,val_auc,val_acc,lr
    RUN/members/<name>/config.json       the member's resolved config
    RUN/members/<name>/predictions.csv   this member's rows of RUN/predictions.csv
    RUN/members/<name>/frames.csv        its per-frame scores (heads that score frames), val and test
    RUN/members/<name>/attention.csv     its attention weights (attention heads), val and test
    RUN/predictions.csv                  video_id,split,label,group,model,prob_fake,no_face (val and test,
                                         every member and "ensemble")
    RUN/frames.csv                       video_id,split,label,group,model,frame,prob_fake
    RUN/attention.csv                    video_id,model,frame,weight
    RUN/evaluations/<set>/               evaluation.json (what was scored: store provenance, videos,
                                         perturbation), predictions.csv and frames.csv (same columns as
                                         the run's; split is the store's) of another store (`evaluate`)
    RUN/report.md report.html metrics.json comparisons.csv report_config.json report_files/   (the report)

Every file is written atomically (``pipeline.core.atomic``). Probabilities are written with 17 significant
digits, so a float64 read back is the float64 written: the ensemble mean of the files equals the mean
``Ensemble.predict`` computes (one ``ensemble_mean`` for both).
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ensembles.decision import choose_threshold
from ensembles.ensemble import ENSEMBLE, ensemble_mean
from pipeline.core.atomic import write_json, write_text
from pipeline.core.config import differences
from pipeline.core.errors import PipelineError

HISTORY_COLUMNS = ("epoch", "train_loss", "train_auc", "train_acc", "val_loss", "val_auc", "val_acc", "lr")
PREDICTION_COLUMNS = ("video_id", "split", "label", "group", "model", "prob_fake", "no_face")
FRAME_COLUMNS = ("video_id", "split", "label", "group", "model", "frame", "prob_fake")
ATTENTION_COLUMNS = ("video_id", "model", "frame", "weight")
EVAL_SPLITS = ("val", "test")
REPORT_FILES = ("report.md", "report.html", "metrics.json", "comparisons.csv", "report_config.json")
FIGURES = "report_files"
EVALUATIONS = "evaluations"
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RunError(PipelineError):
    """A run folder that cannot be used; the message says what is missing or wrong."""


@dataclass(frozen=True)
class Row:
    """One model's score for one video (a row of predictions.csv)."""
    video_id: str
    split: str
    label: int
    group: str
    model: str
    prob_fake: float
    no_face: bool


@dataclass(frozen=True)
class SplitPredictions:
    """Every model's scores on one split, aligned on videos (sorted by video id): what paired tests need."""
    split: str
    video_ids: np.ndarray     # (N,) str
    labels: np.ndarray        # (N,) int8, 0 real 1 fake
    groups: np.ndarray        # (N,) str; the video id where the group is empty
    no_face: np.ndarray       # (N,) bool: no valid frame, scored 0.5
    models: tuple[str, ...]
    probs: np.ndarray         # (K, N) float64, row k is models[k]

    def prob(self, model: str) -> np.ndarray:
        return self.probs[self.models.index(model)]


# ---- CSV --------------------------------------------------------------------------------------------------
def _num(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""                                 # e.g. no validation split: empty cells, read back as NaN
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.17g}"
    return str(value)


def _csv_text(columns: Sequence[str], rows: Iterable[Sequence]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_num(v) for v in row] for row in rows)
    return buf.getvalue()


def _read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise RunError(f"no {path.name} in {path.parent}")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise RunError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(columns)}")
        return list(reader)


def _float(value: str, where: str) -> float:
    try:
        out = float(value)
    except ValueError as exc:
        raise RunError(f"{where}: not a number: {value!r}") from exc
    if not math.isfinite(out):
        raise RunError(f"{where}: not a finite number: {value!r}")
    return out


def _row(raw: dict[str, str], where: str) -> Row:
    if raw["label"] not in ("0", "1"):
        raise RunError(f"{where}: label must be 0 or 1, got {raw['label']!r}")
    prob = _float(raw["prob_fake"], where)
    if not 0.0 <= prob <= 1.0:
        raise RunError(f"{where}: prob_fake {prob} is outside [0, 1]")
    if raw["no_face"] not in ("0", "1"):
        raise RunError(f"{where}: no_face must be 0 or 1, got {raw['no_face']!r}")
    return Row(raw["video_id"], raw["split"], int(raw["label"]), raw["group"] or raw["video_id"], raw["model"],
               prob, raw["no_face"] == "1")


def read_rows(path: Path) -> list[Row]:
    return [_row(r, f"{path.name} line {i}") for i, r in enumerate(_read_csv(path, PREDICTION_COLUMNS), start=2)]


def write_rows(path: Path, rows: Iterable[Row]) -> Path:
    return write_text(path, _csv_text(PREDICTION_COLUMNS, (
        (r.video_id, r.split, r.label, r.group, r.model, float(r.prob_fake), int(r.no_face)) for r in rows)))


def align(rows: Sequence[Row], model_order: Sequence[str], where: Path) -> dict[str, SplitPredictions]:
    """Long rows -> one aligned wide table per split; refuses gaps, duplicates and conflicting labels."""
    by_split: dict[str, dict[str, dict[str, float]]] = {}
    videos: dict[tuple[str, str], tuple[int, str, bool]] = {}
    for r in rows:
        scores = by_split.setdefault(r.split, {}).setdefault(r.model, {})
        if r.video_id in scores:
            raise RunError(f"{where}: video {r.video_id!r} has two rows for model {r.model!r} in split {r.split!r}")
        scores[r.video_id] = r.prob_fake
        seen = videos.setdefault((r.split, r.video_id), (r.label, r.group, r.no_face))
        if seen[:2] != (r.label, r.group):
            raise RunError(f"{where}: video {r.video_id!r} has a different label or group than in an earlier row")
        videos[(r.split, r.video_id)] = (r.label, r.group, seen[2] or r.no_face)
    if not by_split:
        raise RunError(f"{where} has no rows")
    out = {}
    for split, models in by_split.items():
        ids = sorted({vid for scores in models.values() for vid in scores})
        for model, scores in models.items():
            if len(scores) != len(ids):
                gap = sorted(set(ids) - set(scores))
                raise RunError(f"{where}: model {model!r} has no prediction for {len(gap)} of the {len(ids)} "
                               f"{split} videos (e.g. {gap[0]!r}); paired comparisons need every video")
        order = list(model_order)
        names = sorted(models, key=lambda m: (order.index(m) if m in order else len(order), m))
        meta = [videos[(split, vid)] for vid in ids]
        out[split] = SplitPredictions(
            split=split, video_ids=np.array(ids), models=tuple(names),
            labels=np.array([m[0] for m in meta], dtype=np.int8), groups=np.array([m[1] for m in meta]),
            no_face=np.array([m[2] for m in meta], dtype=bool),
            probs=np.array([[models[name][vid] for vid in ids] for name in names], dtype=np.float64))
    return out


def with_ensemble(rows: Sequence[Row], members: Sequence[str]) -> list[Row]:
    """``rows`` of the members plus the ensemble's: per video, ``ensemble_mean`` of the members' scores."""
    per_video: dict[tuple[str, str], dict[str, Row]] = {}
    for r in rows:
        per_video.setdefault((r.split, r.video_id), {})[r.model] = r
    out = []
    for scored in per_video.values():
        first = next(iter(scored.values()))
        p = float(ensemble_mean({m: np.array([r.prob_fake]) for m, r in scored.items()}, members)[0])
        out.append(Row(first.video_id, first.split, first.label, first.group, ENSEMBLE, p, first.no_face))
    return out + list(rows)


def combined(splits: dict[str, SplitPredictions], name: str) -> SplitPredictions:
    """The splits of one evaluation set as one aligned table (``split`` becomes ``name``)."""
    parts = list(splits.values())
    models = parts[0].models
    if any(p.models != models for p in parts):
        raise RunError(f"evaluation {name!r}: the splits were scored by different models")
    order = np.argsort(np.concatenate([p.video_ids for p in parts]), kind="stable")
    cat = lambda attr: np.concatenate([getattr(p, attr) for p in parts])[order]   # noqa: E731
    return SplitPredictions(name, cat("video_ids"), cat("labels"), cat("groups"), cat("no_face"), models,
                            np.concatenate([p.probs for p in parts], axis=1)[:, order])


def thresholds_from(split: SplitPredictions | None) -> dict[str, dict]:
    """Every model's threshold on validation predictions, by the one rule of ``ensembles.decision``."""
    if split is None:
        return {}
    out = {}
    for model in split.models:
        value, how = choose_threshold(split.labels, split.prob(model), split.no_face)
        out[model] = {"value": value, "method": how}
    return out


# ---- the folder -------------------------------------------------------------------------------------------
class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # names
    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def predictions(self) -> Path:
        return self.path / "predictions.csv"

    @property
    def frames(self) -> Path:
        return self.path / "frames.csv"

    @property
    def attention(self) -> Path:
        return self.path / "attention.csv"

    def member_dir(self, name: str) -> Path:
        return self.path / "members" / name

    def checkpoint(self, name: str, which: str = "best") -> Path:
        return self.member_dir(name) / f"{which}.pt"

    def evaluation_dir(self, name: str) -> Path:
        if not _SET_NAME.match(name):
            raise RunError(f"evaluation set name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
        return self.path / EVALUATIONS / name

    def report_file(self, name: str) -> Path:
        if name not in REPORT_FILES and not name.startswith(FIGURES + "/"):
            raise ValueError(f"{name!r} is not a report file of a run folder")
        return self.path / name

    # run.json
    def exists(self) -> bool:
        return self.run_json.is_file()

    def read(self, complete: bool = False) -> dict:
        """run.json; with ``complete`` only a finished training's (else a one-line error says what to do)."""
        if not self.exists():
            raise RunError(f"{self.path} holds no training run (no run.json); train one first with "
                           f"`make train-ensemble RUN={self.path}`")
        try:
            info = json.loads(self.run_json.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunError(f"{self.run_json} is not valid JSON: {exc}") from exc
        if not isinstance(info, dict) or not isinstance(info.get("store"), dict):
            raise RunError(f"{self.run_json} has no 'store' provenance: was it written by training?")
        if complete and info.get("status") != "complete":
            raise RunError(f"{self.path}: training has not finished (status {info.get('status')!r}); continue "
                           f"it with `train-ensemble --resume --store STORE --run {self.path}`")
        return info

    def write(self, info: dict) -> Path:
        return write_json(self.run_json, info)

    # members
    def write_member_config(self, name: str, payload: dict) -> Path:
        return write_json(self.member_dir(name) / "config.json", payload)

    def write_history(self, name: str, rows: Sequence[dict]) -> Path:
        return write_text(self.member_dir(name) / "history.csv",
                          _csv_text(HISTORY_COLUMNS, ([r.get(c) for c in HISTORY_COLUMNS] for r in rows)))

    def read_history(self, name: str) -> dict[str, np.ndarray]:
        """history.csv as column -> (epochs,) array; empty cells are NaN (e.g. no validation split)."""
        rows = _read_csv(self.member_dir(name) / "history.csv", ("epoch",))
        if not rows:
            return {}
        cols = [c for c in rows[0] if c is not None]
        return {c: np.array([float(r[c]) if r.get(c) not in ("", None) else np.nan for r in rows]) for c in cols}

    def write_member_outputs(self, name: str, rows: Sequence[Row], frames: Sequence[tuple] = (),
                             attention: Sequence[tuple] = ()) -> None:
        """This member's val/test scores; ``frames`` rows are FRAME_COLUMNS, ``attention`` ATTENTION_COLUMNS."""
        folder = self.member_dir(name)
        write_rows(folder / "predictions.csv", rows)
        for fname, columns, data in (("frames.csv", FRAME_COLUMNS, frames),
                                     ("attention.csv", ATTENTION_COLUMNS, attention)):
            if data:
                write_text(folder / fname, _csv_text(columns, data))
            else:
                (folder / fname).unlink(missing_ok=True)

    # the run's predictions
    def assemble(self, info: dict) -> dict:
        """predictions.csv (members + ensemble), frames.csv and attention.csv from the members' own files,
        and every model's threshold from validation; ``info`` gains them (the caller writes run.json)."""
        members = [m["name"] for m in info["members"]]
        averaged = [m["name"] for m in info["members"] if m.get("in_ensemble", True)]
        rows = [r for name in members for r in read_rows(self.member_dir(name) / "predictions.csv")]
        rows = with_ensemble(rows, averaged)
        write_rows(self.predictions, rows)
        for fname, columns in (("frames.csv", FRAME_COLUMNS), ("attention.csv", ATTENTION_COLUMNS)):
            parts = [self.member_dir(n) / fname for n in members if (self.member_dir(n) / fname).is_file()]
            target = self.path / fname
            if parts:
                write_text(target, _csv_text(columns, ([r[c] for c in columns]
                                                       for p in parts for r in _read_csv(p, columns))))
            else:
                target.unlink(missing_ok=True)
        splits = align(rows, [ENSEMBLE, *members], self.predictions)
        info["thresholds"] = thresholds_from(splits.get("val"))
        ens = info["thresholds"].get(ENSEMBLE, {"value": 0.5, "method": "0.5 (no validation split)"})
        info["threshold"], info["threshold_method"] = ens["value"], ens["method"]
        return splits

    def read_predictions(self, model_order: Sequence[str] = ()) -> dict[str, SplitPredictions]:
        return align(read_rows(self.predictions), model_order, self.predictions)

    def read_frames(self, folder: Path | None = None) -> list[dict[str, str]]:
        path = (folder or self.path) / "frames.csv"
        return _read_csv(path, FRAME_COLUMNS) if path.is_file() else []

    # evaluations of other stores
    def evaluations(self) -> list[str]:
        """Names of the finished evaluation sets (evaluation.json is written last)."""
        root = self.path / EVALUATIONS
        return sorted(p.name for p in root.iterdir() if (p / "evaluation.json").is_file()) if root.is_dir() else []

    def write_evaluation(self, name: str, meta: dict, rows: Sequence[Row], frames: Sequence[tuple] = ()) -> Path:
        folder = self.evaluation_dir(name)
        write_rows(folder / "predictions.csv", rows)
        if frames:
            write_text(folder / "frames.csv", _csv_text(FRAME_COLUMNS, frames))
        else:
            (folder / "frames.csv").unlink(missing_ok=True)
        return write_json(folder / "evaluation.json", meta)   # last: it marks the evaluation complete

    def read_evaluation(self, name: str, model_order: Sequence[str] = ()) -> tuple[dict, dict[str, SplitPredictions]]:
        folder = self.evaluation_dir(name)
        try:
            meta = json.loads((folder / "evaluation.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RunError(f"evaluation {name!r} of {self.path} is unreadable: {exc}") from exc
        return meta, align(read_rows(folder / "predictions.csv"), model_order, folder / "predictions.csv")

    def evaluation_frames(self, name: str) -> list[dict[str, str]]:
        return self.read_frames(self.evaluation_dir(name))

    # report files
    def write_report_text(self, name: str, text: str) -> Path:
        return write_text(self.report_file(name), text)


# Runs and checkpoints written before identities were recorded whole carry only the provenance; these were
# its identity fields then.
_V1_IDENTITY = ("schema_version", "backbone", "weights_sha256", "frames", "crop", "feature_dim", "detector",
                "margin", "sampling")


def trained_identity(record: dict) -> dict:
    """The store identity a run.json or a member checkpoint records."""
    return record.get("store_identity") or {k: record["store"].get(k) for k in _V1_IDENTITY}


def store_differences(info: dict, identity: dict) -> list[str]:
    """How a store's identity differs from the one the run was trained on (``differences``' lines)."""
    return differences(trained_identity(info), identity)


def evaluation_differences(info: dict, identity: dict) -> list[str]:
    """``store_differences`` except the perturbation: a degraded copy of a comparable store is what a
    robustness test scores, so only its ``perturb`` may differ from the run's store."""
    keep = lambda ident: {k: v for k, v in ident.items() if k != "perturb"}   # noqa: E731
    return differences(keep(trained_identity(info)), keep(identity))


def check_store(info: dict, identity: dict, fingerprint: str | None, run: Path, store: str = "") -> None:
    """Refuse a store other than the run's: another identity, or (with ``fingerprint``) other videos."""
    diff = store_differences(info, identity)
    if diff:
        raise RunError(f"store {store} differs from the one run {run} was trained on ({info['store'].get('path')}): "
                       + "; ".join(diff[:4]) + ". Use that store, or train a new run on this one")
    if fingerprint is not None and info.get("data", {}).get("sha256") not in (None, fingerprint):
        raise RunError(f"the videos, labels or splits in {store} changed since run {run} was trained (was "
                       f"{info['data'].get('videos')}); its members would not be compared on the same videos. "
                       "Train a new run on this store")


def load_run(run_dir: str | Path, device="cpu"):
    """The trained ensemble in ``run_dir`` (every member's best.pt), ready for ``predict``."""
    from ensembles.checkpoint import CheckpointError
    from ensembles.ensemble import Ensemble, load_member
    folder = RunFolder(run_dir)
    info = folder.read(complete=True)
    members, in_ensemble = {}, []
    for entry in info["members"]:
        spec, member, ckpt = load_member(folder.checkpoint(entry["name"]), device)
        diff = differences(trained_identity(info), trained_identity(ckpt))
        if diff:
            raise CheckpointError(f"member {spec.name} was trained on another store than {run_dir}: {'; '.join(diff)}")
        members[spec.name] = member
        if entry.get("in_ensemble", True):
            in_ensemble.append(spec.name)
    return Ensemble(members, in_ensemble, info, device)
