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


def roc(ev: Evaluation, where: str) -> Figure | None:
    """The first screen's ROC: every model on one set, sized to sit beside the cross-dataset matrix."""
    d = ev.data
    if d.labels.min() == d.labels.max():
        return None
    colour = colours(d.models)
    fig = Figure(figsize=(5.4, 4.3), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for model in d.models:
        fpr, tpr, _ = compare.roc_points(d.labels, d.prob(model))
        ax.plot(fpr, tpr, color=colour[model], **_style(model), label=f"{model} ({ev.value(model, 'roc_auc'):.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set(xlabel="false-positive rate (real called fake)", ylabel="true-positive rate (fake caught)",
           title=f"ROC, {where}, video-level (AUC)", xlim=(0, 1), ylim=(0, 1.01))
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _annotated_heatmap(ax, values: np.ndarray, text: list[list[str]], cmap: str, vmin: float, vmax: float):
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for i, row in enumerate(text):
        for j, label in enumerate(row):
            if label:
                v = values[i, j]
                dark = np.isfinite(v) and abs((v - vmin) / (vmax - vmin) - 0.5) > 0.3
                ax.text(j, i, label, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    return image


def cross_dataset(matrix: dict) -> Figure:
    """Rows: models (of each run), columns: evaluation sets; colour and text: video-level AUC [95% CI]."""
    cols, rows = matrix["columns"], matrix["rows"]
    values = np.array([[r["cells"].get(c, {}).get("value", np.nan) for c in cols] for r in rows], dtype=float)
    text = [[_auc_text(r["cells"].get(c)) for c in cols] for r in rows]
    fig = Figure(figsize=(min(2.0 + 1.45 * len(cols), 9.0), 1.2 + 0.42 * len(rows)), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    image = _annotated_heatmap(ax, values, text, "RdYlGn", 0.3, 1.0)
    many = len(cols) > 3
    ax.set_xticks(range(len(cols)), cols, fontsize=8, rotation=20 if many else 0, ha="right" if many else "center")
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=8)
    ax.set_title("Cross-dataset: video-level ROC AUC [95% CI]", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="video AUC")
    return fig


def _auc_text(cell: dict | None) -> str:
    if not cell or cell.get("value") is None or not np.isfinite(cell["value"]):
        return "n/a" if cell else ""
    lo, hi = cell["ci"]
    ci = "" if lo is None or not np.isfinite(lo) else f"\n[{lo:.2f}, {hi:.2f}]"
    return f"{cell['value']:.3f}{ci}"


def pairwise(ev: Evaluation, rows: list[dict], alpha: float) -> Figure | None:
    """Every pair on one set: cell (i, j) is AUC(row) - AUC(column), with the Holm-adjusted DeLong p."""
    if not rows:
        return None
    from pipeline.report.pairs import pval, ranked
    order = ranked(ev)
    k = len(order)
    diff, text = np.full((k, k), np.nan), [[""] * k for _ in range(k)]
    for r in rows:
        i, j = order.index(r["model_a"]), order.index(r["model_b"])
        for a, b, sign in ((i, j, 1), (j, i, -1)):
            diff[a, b] = sign * r["auc_diff"]
            star = "*" if r["delong_p_holm"] < alpha else ""
            finite = np.isfinite(r["auc_diff"])
            text[a][b] = f"{sign * r['auc_diff']:+.3f}{star}\np {pval(r['delong_p_holm'])}" if finite else "n/a"
    span = max(0.05, float(np.nanmax(np.abs(diff)))) if np.isfinite(diff).any() else 0.05
    fig = Figure(figsize=(1.6 + 1.05 * k, 1.0 + 0.8 * k), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    image = _annotated_heatmap(ax, diff, text, "RdBu", -span, span)
    ax.set_xticks(range(k), order, fontsize=8, rotation=30, ha="right")
    ax.set_yticks(range(k), order, fontsize=8)
    ax.set_title(f"AUC(row) - AUC(column), {ev.data.split}, video-level; p: DeLong after Holm "
                 f"(* < {alpha:g})", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="AUC difference")
    return fig


def robustness(points: list[dict]) -> Figure | None:
    """Video AUC against perturbation level (0 = unperturbed), one line per perturbation, one panel per model."""
    if not points:
        return None
    models = list(dict.fromkeys(q["model"] for q in points))
    curves = sorted({q["curve"] for q in points})
    fig, axes = _grid(len(models), max_cols=3, cell=(3.6, 3.0))
    for ax, model in zip(axes, models):
        for n, curve in enumerate(curves):
            pts = sorted((q for q in points if q["model"] == model and q["curve"] == curve), key=lambda q: q["level"])
            x = [q["level"] for q in pts]
            y = np.array([np.nan if q["value"] is None else q["value"] for q in pts], dtype=float)
            lo = np.array([np.nan if q["ci"][0] is None else q["ci"][0] for q in pts], dtype=float)
            hi = np.array([np.nan if q["ci"][1] is None else q["ci"][1] for q in pts], dtype=float)
            ax.plot(x, y, marker="o", ms=3.5, color=f"C{n % 10}", label=curve)
            ax.fill_between(x, lo, hi, color=f"C{n % 10}", alpha=0.12, linewidth=0)
        ax.axhline(0.5, ls=":", color="grey")
        ax.set(title=model, xlabel="level (0 = unperturbed)", ylabel="video AUC", ylim=(0, 1.02), xlim=(-0.2, 5.2))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=min(len(curves), 7),
               fontsize=8)
    fig.suptitle("Robustness: video-level ROC AUC by perturbation level (bands: 95% CI)")
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
