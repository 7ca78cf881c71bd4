"""Paired comparisons between every two models, across seeds, and the one-line verdicts the report leads with.

Each pair gets three tests on the same videos: DeLong (AUC), McNemar (decisions at each model's validation
threshold) and Wilcoxon signed-rank (per-video log losses). Holm's correction runs within each test's
family (all pairs), so "p after Holm" controls the chance of any false "beats" claim for that test.
"""
from __future__ import annotations

import itertools

import numpy as np

from ensembles import compare
from pipeline.report.load import RunData
from pipeline.report.metrics import Evaluation, per_video_log_loss

COLUMNS = ("set", "model_a", "model_b", "split", "level", "n_videos",
           "auc_a", "auc_b", "auc_diff", "auc_diff_ci_low", "auc_diff_ci_high",
           "delong_se", "delong_z", "delong_p", "delong_p_holm",
           "accuracy_a", "accuracy_b", "accuracy_diff", "accuracy_diff_ci_low", "accuracy_diff_ci_high",
           "threshold_a", "threshold_b", "mcnemar_b", "mcnemar_c", "mcnemar_method", "mcnemar_statistic",
           "mcnemar_p", "mcnemar_p_holm",
           "log_loss_a", "log_loss_b", "wilcoxon_n", "wilcoxon_statistic", "wilcoxon_median_diff",
           "wilcoxon_p", "wilcoxon_p_holm", "verdict")


def pval(p: float) -> str:
    """A p-value for a table cell: two significant digits, "<0.001" below that, "n/a" when not run."""
    if p is None or np.isnan(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def fmt_p(p: float) -> str:
    text = pval(p)
    return f"p{text}" if text.startswith("<") else f"p={text}"


def _rank_key(ev: Evaluation, model: str) -> tuple[float, float]:
    """Sort key: AUC, then accuracy at the validation threshold (NaN last)."""
    auc, acc = ev.value(model, "roc_auc"), ev.value(model, "accuracy@val")
    return (-auc if not np.isnan(auc) else np.inf, -acc if not np.isnan(acc) else np.inf)


def ranked(ev: Evaluation) -> list[str]:
    return sorted(ev.data.models, key=lambda m: _rank_key(ev, m))


def _pair(ev: Evaluation, a: str, b: str, exact_below: int) -> dict:
    d = ev.data
    y, pa, pb = d.labels, d.prob(a), d.prob(b)
    ta, tb = ev.thresholds[a]["val"], ev.thresholds[b]["val"]
    row = {"model_a": a, "model_b": b, "split": d.split, "level": "video", "n_videos": len(y),
           "auc_a": ev.value(a, "roc_auc"), "auc_b": ev.value(b, "roc_auc")}
    row["auc_diff"] = row["auc_a"] - row["auc_b"]
    row["auc_diff_ci_low"], row["auc_diff_ci_high"] = ev.diff_ci(a, b, "roc_auc")
    try:
        dl = compare.delong(y, pa, pb)
        row.update(delong_se=dl.se, delong_z=dl.z, delong_p=dl.pvalue)
    except compare.StatsError:       # one class only: AUC is undefined, the row says n/a
        row.update(delong_se=np.nan, delong_z=np.nan, delong_p=np.nan)
    row.update(accuracy_a=ev.value(a, "accuracy@val"), accuracy_b=ev.value(b, "accuracy@val"),
               threshold_a=ta, threshold_b=tb)
    row["accuracy_diff"] = row["accuracy_a"] - row["accuracy_b"]
    row["accuracy_diff_ci_low"], row["accuracy_diff_ci_high"] = ev.diff_ci(a, b, "accuracy@val")
    mc = compare.mcnemar((pa >= ta) == y, (pb >= tb) == y, exact_below=exact_below)
    row.update(mcnemar_b=mc.b, mcnemar_c=mc.c, mcnemar_method=mc.method, mcnemar_statistic=mc.statistic,
               mcnemar_p=mc.pvalue)
    la, lb = per_video_log_loss(y, pa), per_video_log_loss(y, pb)
    wx = compare.wilcoxon_paired(la, lb)
    row.update(log_loss_a=float(la.mean()), log_loss_b=float(lb.mean()), wilcoxon_n=wx.n,
               wilcoxon_statistic=wx.statistic, wilcoxon_median_diff=wx.median_difference, wilcoxon_p=wx.pvalue)
    return row


def verdict(row: dict, alpha: float) -> str:
    """One plain sentence: who beats whom on what, by how much, and how sure (all p after Holm)."""
    a, b = row["model_a"], row["model_b"]
    acc = (f"accuracy {100 * row['accuracy_diff']:+.1f} pts "
           f"[{100 * row['accuracy_diff_ci_low']:+.1f}, {100 * row['accuracy_diff_ci_high']:+.1f}], "
           f"McNemar {fmt_p(row['mcnemar_p_holm'])}")
    lower = a if row["log_loss_a"] < row["log_loss_b"] else b
    loss = (f"log loss {row['log_loss_a']:.3f} vs {row['log_loss_b']:.3f}, Wilcoxon {fmt_p(row['wilcoxon_p_holm'])}"
            + (f" (lower for {lower})" if row["wilcoxon_p_holm"] < alpha else ""))
    if np.isnan(row["delong_p"]):
        if row["mcnemar_p_holm"] < alpha and row["accuracy_diff"] > 0:
            return f"{a} beats {b} on accuracy (AUC undefined on this split): {acc}; {loss}; all p after Holm"
        return f"{a} vs {b}: no significant difference (AUC undefined on this split): {acc}; {loss}; all p after Holm"
    auc = (f"AUC {row['auc_diff']:+.3f} [{row['auc_diff_ci_low']:+.3f}, {row['auc_diff_ci_high']:+.3f}], "
           f"DeLong {fmt_p(row['delong_p_holm'])} after Holm")
    if row["delong_p_holm"] < alpha and row["auc_diff"] > 0:
        return f"{a} beats {b}: {auc}; {acc}; {loss}"
    return f"{a} vs {b}: no significant AUC difference: {auc}; {acc}; {loss}"


def compare_all(ev: Evaluation, exact_below: int = 25) -> list[dict]:
    """Every pair of models (better AUC first), with Holm-adjusted p-values and a verdict."""
    order = ranked(ev)
    rows = [_pair(ev, a, b, exact_below) for a, b in itertools.combinations(order, 2)]
    for test in ("delong", "mcnemar", "wilcoxon"):
        adjusted = compare.holm([r[f"{test}_p"] for r in rows])
        for r, p in zip(rows, adjusted):
            r[f"{test}_p_holm"] = float(p)
    for r in rows:
        r["verdict"] = verdict(r, ev.alpha)
    return rows


def headline(ev: Evaluation, rows: list[dict]) -> str:
    """The report's first sentence: the best model and whether its lead over the runner-up is real."""
    order = ranked(ev)
    best = order[0]
    split = ev.data.split
    if np.isnan(ev.value(best, "roc_auc")):
        return (f"ROC AUC is undefined on the {split} split (one class only), so no model can be ranked by "
                f"it; by video-level accuracy at the validation threshold the top model is {best} "
                f"({ev.value(best, 'accuracy@val'):.3f}).")
    lo, hi = ev.ci(best, "roc_auc")
    text = (f"Best on {split} ROC AUC (video-level): {best}, AUC {ev.value(best, 'roc_auc'):.3f} "
            f"[95% CI {lo:.3f}, {hi:.3f}].")
    if len(order) < 2:
        return text + " It is the only model in the run."
    row = next(r for r in rows if r["model_a"] == best and r["model_b"] == order[1])
    sig = row["delong_p_holm"] < ev.alpha
    return (text + f" Its lead over the runner-up {order[1]} (AUC {row['auc_b']:.3f}) is "
            f"{row['auc_diff']:+.3f} [{row['auc_diff_ci_low']:+.3f}, {row['auc_diff_ci_high']:+.3f}], "
            f"DeLong {fmt_p(row['delong_p_holm'])} after Holm: "
            + ("significant." if sig else f"not significant at {ev.alpha:g}."))


def seed_tests(run: RunData, ev: Evaluation) -> dict:
    """Heads trained with several seeds: per-seed AUCs and a Wilcoxon test between heads, paired by seed."""
    heads: dict[str, dict] = {}
    for m in run.members:
        if m.get("name") in ev.data.models:
            heads.setdefault(str(m.get("head")), {})[m.get("seed")] = m["name"]
    multi = {h: s for h, s in heads.items() if len(s) >= 2}
    if not multi:
        return {"available": False, "note": "one seed per head: no across-seed test (train several seeds per "
                                            "head to measure seed-to-seed spread)"}
    summary = {h: {"seeds": list(s), "members": list(s.values()),
                   "auc": [ev.value(n, "roc_auc") for n in s.values()]} for h, s in multi.items()}
    for h in summary.values():
        defined = [v for v in h["auc"] if not np.isnan(v)]
        h["mean"] = float(np.mean(defined)) if defined else float("nan")
        h["sd"] = float(np.std(defined, ddof=1)) if len(defined) > 1 else float("nan")
    tests, warnings = [], []
    for ha, hb in itertools.combinations(multi, 2):
        common = [s for s in multi[ha] if s in multi[hb]]
        if len(common) < 2:
            warnings.append(f"{ha} vs {hb}: fewer than 2 shared seeds, no paired test")
            continue
        auc_a = [ev.value(multi[ha][s], "roc_auc") for s in common]
        auc_b = [ev.value(multi[hb][s], "roc_auc") for s in common]
        if np.isnan(auc_a + auc_b).any():
            warnings.append(f"{ha} vs {hb}: AUC undefined on this split, no across-seed test")
            continue
        wx = compare.wilcoxon_paired(auc_a, auc_b)
        tests.append({"head_a": ha, "head_b": hb, "seeds": common, "n": wx.n, "statistic": wx.statistic,
                      "median_auc_diff": wx.median_difference, "p": wx.pvalue, "min_possible_p": wx.min_pvalue})
        if wx.min_pvalue > ev.alpha:
            warnings.append(f"{ha} vs {hb}: with {wx.n} paired seeds the smallest possible two-sided p is "
                            f"{wx.min_pvalue:.3g} > {ev.alpha:g}; this test cannot show a difference. Use the "
                            f"per-video tests above, or 10+ seeds")
    for t, p in zip(tests, compare.holm([t["p"] for t in tests])):
        t["p_holm"] = float(p)
    return {"available": True, "metric": f"{ev.data.split} ROC AUC (video-level)", "heads": summary,
            "tests": tests, "warnings": warnings}
