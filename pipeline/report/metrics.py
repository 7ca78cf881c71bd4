"""Per-model metrics on one split, with group-bootstrap confidence intervals.

All metrics here are **video-level**: one score per video (``pipeline.report.frames`` has the frame-level
ones, for heads that score frames). A video
is called fake when ``prob_fake >= threshold``; two thresholds are reported: 0.5, and one chosen on the
validation split by the one rule of ``ensembles.decision`` (Youden's J on validation videos with a face),
the threshold training stored in run.json for every model, which is what ``predict`` uses).

Written in numpy rather than scikit-learn because the bootstrap evaluates them thousands of times;
tests/test_report.py checks them against scikit-learn.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensembles import compare
from ensembles.ensemble import ENSEMBLE
from ensembles.run_folder import SplitPredictions, thresholds_from
from pipeline.report.load import RunData

THRESHOLD_FREE = ("roc_auc", "average_precision", "eer", "log_loss", "brier")
AT_THRESHOLD = ("accuracy", "balanced_accuracy", "precision_fake", "recall_fake", "f1_fake",
                "precision_real", "recall_real", "f1_real", "kappa")
THRESHOLDS = ("0.5", "val")
STATS = THRESHOLD_FREE + tuple(f"{m}@{t}" for t in THRESHOLDS for m in AT_THRESHOLD)
LABELS = {
    "roc_auc": "ROC AUC", "average_precision": "average precision", "eer": "EER", "log_loss": "log loss",
    "brier": "Brier score", "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
    "precision_fake": "precision (fake)", "recall_fake": "recall (fake)", "f1_fake": "F1 (fake)",
    "precision_real": "precision (real)", "recall_real": "recall (real)", "f1_real": "F1 (real)",
    "kappa": "Cohen's kappa",
}
LOWER_IS_BETTER = {"eer", "log_loss", "brier"}
# Probabilities are float32 softmax outputs: clip at float32's resolution so a saturated wrong answer
# costs ~16 nats instead of infinity.
EPS = 1e-7


def per_video_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(N,) cross-entropy of each video's prob_fake against its label."""
    p = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def ranking_metrics(y: np.ndarray, p: np.ndarray) -> list[float]:
    """THRESHOLD_FREE in order; AUC, AP and EER are NaN when only one class is present."""
    loss = float(per_video_log_loss(y, p).mean())
    brier = float(np.mean((p - y) ** 2))
    if y.min() == y.max():
        return [np.nan, np.nan, np.nan, loss, brier]
    return [compare.auc(y, p), compare.average_precision(y, p), compare.eer(y, p)[0], loss, brier]


def confusion(y: np.ndarray, p: np.ndarray, threshold: float) -> np.ndarray:
    """(2, 2) counts, rows true real/fake, columns predicted real/fake."""
    pred = (p >= threshold).astype(int)
    return np.array([[np.sum((y == t) & (pred == q)) for q in (0, 1)] for t in (0, 1)])


def _ratio(num: float, den: float) -> float:
    return num / den if den else np.nan


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> list[float]:
    """AT_THRESHOLD in order. Undefined ratios (e.g. recall of a class absent from the split) are NaN."""
    (tn, fp), (fn, tp) = confusion(y, p, threshold)
    n = tn + fp + fn + tp
    recall_fake, recall_real = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    balanced = float(np.nanmean([recall_fake, recall_real]))
    pe = ((tp + fn) * (tp + fp) + (tn + fp) * (tn + fn)) / n ** 2     # chance agreement
    kappa = _ratio((tp + tn) / n - pe, 1 - pe) if pe < 1 else np.nan
    return [(tp + tn) / n, balanced,
            _ratio(tp, tp + fp), recall_fake, _ratio(2 * tp, 2 * tp + fp + fn),
            _ratio(tn, tn + fn), recall_real, _ratio(2 * tn, 2 * tn + fn + fp), kappa]


def stat_vector(y: np.ndarray, p: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    """(len(STATS),) every metric of one model."""
    out = ranking_metrics(y, p)
    for t in THRESHOLDS:
        out += threshold_metrics(y, p, thresholds[t])
    return np.array(out, dtype=np.float64)


def choose_thresholds(run: RunData, models: tuple[str, ...]) -> tuple[dict, dict, list[str]]:
    """Per model {"0.5": 0.5, "val": t}, where t came from, and notes for the reader.

    ``t`` is the run's own threshold for the model (training chose it by the one rule of
    ``ensembles.decision``, the rule predict applies); for a run that recorded only the ensemble's, the
    members' come from the same rule on the run's validation predictions.
    """
    stored = run.info.get("thresholds") or {}
    computed = thresholds_from(run.splits.get("val"))
    legacy = run.info.get("threshold")
    thresholds, source, notes = {}, {}, []
    for model in models:
        rec = stored.get(model)
        if rec is None and model == ENSEMBLE and isinstance(legacy, (int, float)):
            rec = {"value": float(legacy), "method": "run.json (chosen on val by training)"}
        rec = rec or computed.get(model) or {"value": 0.5, "method": "0.5 (no validation predictions)"}
        thresholds[model] = {"0.5": 0.5, "val": float(rec["value"])}
        source[model] = rec["method"]
    if any(s.startswith("0.5 (") for s in source.values()):
        notes.append("validation predictions are missing, single-class or no better than chance for some "
                     "models: their 'val' threshold is 0.5")
    return thresholds, source, notes


@dataclass(frozen=True)
class Evaluation:
    data: SplitPredictions
    thresholds: dict[str, dict[str, float]]
    threshold_source: dict[str, str]
    point: np.ndarray               # (K, S) metric values, rows data.models, columns STATS
    boot: compare.Bootstrap         # samples (n_boot, K * S), model-major
    resampling: str                 # "groups" or "videos"
    alpha: float
    notes: tuple[str, ...]

    def _col(self, model: str, stat: str) -> int:
        return self.data.models.index(model) * len(STATS) + STATS.index(stat)

    def value(self, model: str, stat: str) -> float:
        return float(self.point[self.data.models.index(model), STATS.index(stat)])

    def ci(self, model: str, stat: str) -> tuple[float, float]:
        column = self.boot.samples[:, [self._col(model, stat)]]
        return tuple(compare.Bootstrap(column, self.boot.undefined[:1]).ci(self.alpha)[0])

    def diff_ci(self, a: str, b: str, stat: str) -> tuple[float, float]:
        """Paired bootstrap interval of stat(a) - stat(b): both come from the same resampled videos."""
        d = self.boot.samples[:, [self._col(a, stat)]] - self.boot.samples[:, [self._col(b, stat)]]
        return tuple(compare.Bootstrap(d, np.isnan(d).sum(axis=0)).ci(self.alpha)[0])

    def undefined_share(self, model: str, stat: str) -> float:
        return float(np.isnan(self.boot.samples[:, self._col(model, stat)]).mean())


def evaluate(run: RunData, split: str, n_boot: int, seed: int, alpha: float) -> Evaluation:
    data = run.splits[split]
    thresholds, source, notes = choose_thresholds(run, data.models)
    return evaluate_split(data, thresholds, source, n_boot, seed, alpha, notes)


def evaluate_split(data: SplitPredictions, thresholds: dict, source: dict, n_boot: int, seed: int, alpha: float,
                   notes=()) -> Evaluation:
    """Every metric of every model on one set of videos, with group-bootstrap samples for the intervals.
    ``thresholds`` are the run's own (chosen on its validation split), whatever set is measured."""
    y = data.labels.astype(np.float64)
    point = np.vstack([stat_vector(y, data.probs[k], thresholds[m]) for k, m in enumerate(data.models)])

    def all_models(idx: np.ndarray) -> np.ndarray:     # (K * S,) one resample
        return np.concatenate([stat_vector(y[idx], data.probs[k, idx], thresholds[m])
                               for k, m in enumerate(data.models)])

    grouped = len(np.unique(data.groups)) < len(data.groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = compare.bootstrap(all_models, data.groups, n_boot=n_boot, seed=seed)
    return Evaluation(data, thresholds, source, point, boot, "groups" if grouped else "videos", alpha,
                      tuple(notes))


def model_record(ev: Evaluation, model: str) -> dict:
    """JSON-ready metrics of one model: every stat with its CI, thresholds and confusion matrices."""
    d = ev.data
    p = d.prob(model)
    return {
        "level": "video", "split": d.split, "n_videos": int(len(p)),
        "thresholds": ev.thresholds[model], "threshold_source": ev.threshold_source[model],
        "metrics": {s: {"value": ev.value(model, s), "ci": list(ev.ci(model, s))} for s in STATS},
        "confusion": {t: confusion(d.labels, p, ev.thresholds[model][t]).tolist() for t in THRESHOLDS},
        "confusion_layout": "rows true real, fake; columns predicted real, fake",
    }
