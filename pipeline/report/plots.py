"""Report figures (matplotlib's object API with the Agg canvas: no pyplot, no global backend switch).

Every function returns a ``Figure`` or ``None`` when the data cannot support it (e.g. a ROC curve on a split
with one class). One colour per model across all figures; the ensemble is the thick black line.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ensembles import compare
from pipeline.core.atomic import write_bytes
from pipeline.report.metrics import Evaluation, confusion

DPI = 110


def colours(models: tuple[str, ...]) -> dict[str, str]:
    palette = [f"C{i}" for i in range(10)]
    others = [m for m in models if m != "ensemble"]
    out = {m: palette[i % 10] for i, m in enumerate(others)}
    out["ensemble"] = "black"
    return out


def _style(model: str) -> dict:
    return {"lw": 2.6, "zorder": 5} if model == "ensemble" else {"lw": 1.5, "alpha": 0.9}


def _grid(n: int, max_cols: int = 4, cell=(3.3, 2.9)) -> tuple[Figure, list]:
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(cell[0] * cols, cell[1] * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def training_curves(histories: dict[str, dict[str, np.ndarray]]) -> Figure | None:
    """One row per member: loss (train, val) and AUC/accuracy (train, val) per epoch."""
    members = [m for m, h in histories.items() if "epoch" in h]
    if not members:
        return None
    fig = Figure(figsize=(10, 2.8 * len(members)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(members), 2, squeeze=False)
    for (ax_loss, ax_score), name in zip(axes, members):
        h = histories[name]
        for split, ls in (("train", "-"), ("val", "--")):
            if f"{split}_loss" in h:
                ax_loss.plot(h["epoch"], h[f"{split}_loss"], ls, marker=".", label=f"{split} loss")
            if f"{split}_auc" in h:
                ax_score.plot(h["epoch"], h[f"{split}_auc"], ls, color="C2", marker=".", label=f"{split} AUC")
            if f"{split}_acc" in h:
                ax_score.plot(h["epoch"], h[f"{split}_acc"], ls, color="C3", marker=".", label=f"{split} accuracy")
        ax_loss.set(title=f"{name}: loss", xlabel="epoch", ylabel="cross-entropy")
        ax_score.set(title=f"{name}: AUC and accuracy (video-level)", xlabel="epoch", ylim=(0, 1.02))
        for ax in (ax_loss, ax_score):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="best")
    return fig


def roc_pr(ev: Evaluation) -> Figure | None:
    """ROC and precision-recall curves of every model on one figure; None when one class only."""
    d = ev.data
    if d.labels.min() == d.labels.max():
        return None
    colour = colours(d.models)
    fig = Figure(figsize=(12, 5.2), dpi=DPI, layout="constrained")
    ax_roc, ax_pr = fig.subplots(1, 2)
    for model in d.models:
        p = d.prob(model)
        fpr, tpr, _ = compare.roc_points(d.labels, p)
        ax_roc.plot(fpr, tpr, color=colour[model], drawstyle="default", **_style(model),
                    label=f"{model} (AUC {ev.value(model, 'roc_auc'):.3f})")
        recall, precision = compare.pr_points(d.labels, p)
        ax_pr.step(recall, precision, where="post", color=colour[model], **_style(model),
                   label=f"{model} (AP {ev.value(model, 'average_precision'):.3f})")
    ax_roc.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax_roc.set(xlabel="false-positive rate (real called fake)", ylabel="true-positive rate (fake caught)",
               title=f"ROC, {d.split} split, video-level", xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    prevalence = d.labels.mean()
    ax_pr.axhline(prevalence, ls=":", color="grey", label=f"chance ({prevalence:.2f})")
    ax_pr.set(xlabel="recall (fake)", ylabel="precision (fake)", xlim=(0, 1), ylim=(0, 1.01),
              title=f"Precision-recall, {d.split} split, video-level")
    for ax in (ax_roc, ax_pr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if ax is ax_roc else "lower left")
    return fig


def confusion_matrices(ev: Evaluation) -> Figure:
    """One matrix per model at its validation threshold: counts and the share of each true class."""
    d = ev.data
    fig, axes = _grid(len(d.models), cell=(3.0, 2.9))
    for ax, model in zip(axes, d.models):
        t = ev.thresholds[model]["val"]
        cm = confusion(d.labels, d.prob(model), t)
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{cm[i, j]}\n{100 * share[i, j]:.0f}%", ha="center", va="center", fontsize=11,
                        color="white" if share[i, j] > 0.6 else "black")
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["real", "fake"], yticklabels=["real", "fake"],
               xlabel="predicted", ylabel="true", title=f"{model} (threshold {t:.2f})")
    fig.suptitle(f"Confusion matrices, {d.split} split, video-level, validation-chosen thresholds")
    return fig


def calibration(ev: Evaluation, bins: int = 10) -> Figure:
    """Reliability diagram (observed share of fakes per predicted-probability bin) and bin counts."""
    d = ev.data
    colour = colours(d.models)
    edges = np.linspace(0, 1, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    fig = Figure(figsize=(7.5, 7.5), dpi=DPI, layout="constrained")
    ax, ax_n = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    for model in d.models:
        p = d.prob(model)
        which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)      # bin of each video
        counts = np.bincount(which, minlength=bins)
        fakes = np.bincount(which, weights=d.labels, minlength=bins)
        mean_p = np.bincount(which, weights=p, minlength=bins)
        ok = counts > 0
        ax.plot(mean_p[ok] / counts[ok], fakes[ok] / counts[ok], marker="o", color=colour[model],
                **_style(model), label=f"{model} (Brier {ev.value(model, 'brier'):.3f})")
        ax_n.step(centres, counts, where="mid", color=colour[model], **_style(model))
    ax.set(ylabel="observed share of fakes", xlim=(0, 1), ylim=(-0.02, 1.02),
           title=f"Reliability, {d.split} split, video-level ({bins} equal-width bins)")
    ax_n.set(xlabel="predicted prob_fake", ylabel="videos per bin")
    for a in (ax, ax_n):
        a.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def score_histograms(ev: Evaluation) -> Figure:
    """prob_fake of real and fake videos per model, with both decision thresholds."""
    d = ev.data
    fig, axes = _grid(len(d.models))
    edges = np.linspace(0, 1, 21)
    for ax, model in zip(axes, d.models):
        p = d.prob(model)
        t = ev.thresholds[model]["val"]
        ax.hist(p[d.labels == 0], bins=edges, alpha=0.6, color="C0", label="real")
        ax.hist(p[d.labels == 1], bins=edges, alpha=0.6, color="C3", label="fake")
        ax.axvline(0.5, color="grey", ls=":", label="0.5")
        ax.axvline(t, color="black", ls="--", label="validation threshold")
        ax.set(title=f"{model} (val threshold {t:.2f})", xlabel="prob_fake", ylabel="videos", xlim=(0, 1))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize=9)
    fig.suptitle(f"Score histograms by true class, {d.split} split, video-level")
    return fig


def save(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png")
    return write_bytes(path, buf.getvalue())
