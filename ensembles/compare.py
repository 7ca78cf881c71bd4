"""Statistics for comparing detectors evaluated on the same videos (numpy and scipy only).

Every function takes per-video arrays that are *paired*: element i of every argument is the same video.
The unit of resampling is always the video, or its group (identity) when groups are given; never a frame,
whose scores within one video are strongly correlated.

- ``mcnemar``: paired correct/incorrect decisions (exact binomial below ``exact_below`` discordant pairs).
- ``wilcoxon_paired``: Wilcoxon signed-rank on paired per-video losses (or per-seed metrics).
- ``delong``: DeLong's test for two correlated ROC AUCs, with the fast midrank algorithm of
  Sun & Xu (2014), https://doi.org/10.1109/LSP.2014.2337313 .
- ``holm``: Holm's step-down adjustment of a family of p-values.
- ``bootstrap``: percentile bootstrap resampling videos or whole groups.
- ``auc``, ``roc_points``, ``eer``: ranking metrics without scikit-learn (the bootstrap calls them
  thousands of times).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats


class StatsError(ValueError):
    """A statistic that is undefined for this input (e.g. AUC when only one class is present)."""


def _binary_labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise StatsError("labels must be a 1-d array of 0 (real) and 1 (fake)")
    return y.astype(np.int8)


def _both_classes(y: np.ndarray, what: str) -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        only = "fake" if n_pos else "real"
        raise StatsError(f"{what} needs both classes, but all {len(y)} videos are {only}")


# ---------------------------------------------------------------- McNemar

@dataclass(frozen=True)
class McNemarResult:
    b: int              # a correct, b wrong
    c: int              # a wrong, b correct
    statistic: float    # chi-square (continuity corrected) or the exact test's min(b, c)
    pvalue: float
    method: str         # "exact binomial" | "chi-square, continuity corrected" | "no discordant pairs"


def mcnemar(correct_a, correct_b, exact_below: int = 25) -> McNemarResult:
    """McNemar's test on paired decisions: does one model get right what the other gets wrong more often?

    Only the discordant pairs carry information. With ``b + c < exact_below`` the two-sided exact binomial
    test (b ~ Bin(b + c, 1/2)) is used; above it the chi-square approximation with Edwards' continuity
    correction, (|b - c| - 1)^2 / (b + c). 25 is the usual cut (e.g. Agresti, Categorical Data Analysis).
    """
    a = np.asarray(correct_a, dtype=bool)
    bb = np.asarray(correct_b, dtype=bool)
    if a.shape != bb.shape or a.ndim != 1:
        raise StatsError("mcnemar needs two 1-d arrays of the same length")
    b = int(np.sum(a & ~bb))
    c = int(np.sum(~a & bb))
    n = b + c
    if n == 0:
        return McNemarResult(b, c, 0.0, 1.0, "no discordant pairs")
    if n < exact_below:
        p = stats.binomtest(b, n, 0.5, alternative="two-sided").pvalue
        return McNemarResult(b, c, float(min(b, c)), float(min(1.0, p)), "exact binomial")
    chi2 = (abs(b - c) - 1.0) ** 2 / n
    return McNemarResult(b, c, float(chi2), float(stats.chi2.sf(chi2, 1)), "chi-square, continuity corrected")


# ---------------------------------------------------------------- Wilcoxon

@dataclass(frozen=True)
class WilcoxonResult:
    n: int                  # pairs with a non-zero difference (zeros are dropped, Wilcoxon's convention)
    statistic: float        # min(W+, W-)
    pvalue: float
    median_difference: float   # median of a - b over all pairs
    min_pvalue: float       # smallest two-sided p an exact test on n pairs can give: 2 / 2^n


def wilcoxon_paired(a, b) -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of a - b (e.g. per-video log losses of two models).

    ``min_pvalue`` tells whether a small p was even possible: with 5 pairs it is 0.0625, so five seeds can
    never give p < 0.05.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise StatsError("wilcoxon_paired needs two 1-d arrays of the same length")
    d = a - b
    n = int(np.count_nonzero(d))
    median = float(np.median(d)) if len(d) else float("nan")
    min_p = float(min(1.0, 2.0 ** (1 - n))) if n else 1.0
    if n == 0:  # identical losses: no evidence of any difference (scipy would warn and divide by zero)
        return WilcoxonResult(0, 0.0, 1.0, median, 1.0)
    res = stats.wilcoxon(d[d != 0], zero_method="wilcox", alternative="two-sided")
    return WilcoxonResult(n, float(res.statistic), float(res.pvalue), median, min_p)


# ---------------------------------------------------------------- AUC, ROC, EER

def auc(y, score) -> float:
    """ROC AUC as the Mann-Whitney statistic with midranks (ties count one half)."""
    y = _binary_labels(y)
    _both_classes(y, "ROC AUC")
    score = np.asarray(score, dtype=np.float64)
    ranks = stats.rankdata(score)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_points(y, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, from (0, 0) at threshold +inf; fake when score >= t."""
    y = _binary_labels(y)
    _both_classes(y, "a ROC curve")
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]      # last index of each run of equal scores
    tps = np.cumsum(yy)[last]
    fps = (last + 1) - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return fpr, tpr, np.r_[np.inf, s[last]]


def pr_points(y, score) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct score, from (0, 1); fake when score >= threshold."""
    y = _binary_labels(y)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]      # last index of each run of equal scores
    tps = np.cumsum(yy)[last]
    return np.r_[0.0, tps / max(tps[-1], 1)], np.r_[1.0, tps / (last + 1)]


def average_precision(y, score) -> float:
    """Step-wise area under precision-recall, sum_n (R_n - R_n-1) P_n (scikit-learn's definition)."""
    recall, precision = pr_points(y, score)
    return float(np.sum(np.diff(recall) * precision[1:]))


def eer(y, score) -> tuple[float, float]:
    """Equal error rate and its threshold: where the false-positive rate equals the miss rate (1 - TPR).

    Linear interpolation between the two ROC points that bracket FPR = FNR (the usual convention, the same
    point ``brentq`` finds on scikit-learn's interpolated ROC curve).
    """
    fpr, tpr, thr = roc_points(y, score)
    gap = (1.0 - tpr) - fpr            # decreasing from 1 to -1 along the curve
    i = int(np.flatnonzero(gap <= 0)[0])
    if gap[i] == 0 or i == 0:
        return float(fpr[i]), float(thr[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])           # fraction of the way from point i-1 to point i
    rate = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    lo_thr = thr[i - 1] if np.isfinite(thr[i - 1]) else thr[i]
    return float(rate), float(lo_thr + t * (thr[i] - lo_thr))


# ---------------------------------------------------------------- DeLong

@dataclass(frozen=True)
class DeLongResult:
    auc_a: float
    auc_b: float
    difference: float   # auc_a - auc_b
    se: float           # standard error of the difference
    z: float
    pvalue: float       # two-sided
    ci: tuple[float, float]   # 95% normal interval of the difference


def _midrank(x: np.ndarray) -> np.ndarray:
    """Midranks along the last axis (ties share the mean of their ranks), as in Sun & Xu's Algorithm 1."""
    return np.apply_along_axis(stats.rankdata, -1, x)


def delong_covariance(y, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (K,) and their DeLong covariance matrix (K, K) for scores (K, N) of K models on N videos.

    Fast algorithm (Sun & Xu 2014): with m fakes and n reals, the placement values come from three midrank
    computations, O(K N log N) instead of DeLong's O(K m n) kernel sums.
    """
    y = _binary_labels(y)
    _both_classes(y, "DeLong's test")
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))     # (K, N)
    pos, neg = scores[:, y == 1], scores[:, y == 0]                  # (K, m), (K, n)
    m, n = pos.shape[1], neg.shape[1]
    tx, ty = _midrank(pos), _midrank(neg)
    tz = _midrank(np.concatenate([pos, neg], axis=1))                # (K, m + n)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n            # (K, m): share of reals each fake outranks
    v01 = 1.0 - (tz[:, m:] - ty) / m      # (K, n): share of fakes that outrank each real
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(scores), len(scores)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(scores), len(scores)))
    return aucs, s10 / m + s01 / n


def delong(y, score_a, score_b, alpha: float = 0.05) -> DeLongResult:
    """DeLong, DeLong & Clarke-Pearson (1988) test of AUC(a) = AUC(b) on the same videos (two-sided)."""
    aucs, cov = delong_covariance(y, np.vstack([score_a, score_b]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = float(np.sqrt(max(var, 0.0)))
    if se <= 1e-12:   # identical rankings (or constant scores): no difference and no variance
        z, p = (0.0, 1.0) if abs(diff) <= 1e-12 else (float(np.sign(diff) * np.inf), 0.0)
    else:
        z = diff / se
        p = float(2 * stats.norm.sf(abs(z)))
    half = float(stats.norm.ppf(1 - alpha / 2)) * se
    return DeLongResult(float(aucs[0]), float(aucs[1]), diff, se, float(z), p, (diff - half, diff + half))


# ---------------------------------------------------------------- Holm

def holm(pvalues) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN entries (tests not run) stay NaN and are not counted."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    k = len(ok)
    if k == 0:
        return out
    order = ok[np.argsort(p[ok], kind="mergesort")]
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (k - np.arange(k))))
    out[order] = adjusted
    return out


# ---------------------------------------------------------------- bootstrap

@dataclass(frozen=True)
class Bootstrap:
    """Resampled statistics (n_boot, S) and the number of resamples where each statistic was undefined."""
    samples: np.ndarray      # (n_boot, S), NaN where undefined (e.g. a resample with one class only)
    undefined: np.ndarray    # (S,) int

    def ci(self, alpha: float = 0.05) -> np.ndarray:
        """Percentile intervals (S, 2); NaN where fewer than half the resamples gave a value."""
        out = np.full((self.samples.shape[1], 2), np.nan)
        for j, column in enumerate(self.samples.T):
            values = column[~np.isnan(column)]
            if len(values) and len(values) >= len(column) / 2:
                out[j] = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        return out


def resample_indices(groups, n_boot: int, seed: int = 0):
    """Yield n_boot index arrays: whole groups drawn with replacement (every video of a drawn group comes
    along), so videos that share an identity are never split between "in" and "out" of a resample.

    groups: (N,) labels; pass the video ids themselves for a plain video bootstrap.
    """
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    members = np.argsort(inverse, kind="mergesort")                  # video indices sorted by group
    sizes = np.bincount(inverse)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        drawn = rng.integers(0, len(sizes), size=len(sizes))
        yield np.concatenate([members[starts[g]:starts[g] + sizes[g]] for g in drawn])


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray], groups, n_boot: int = 2000,
              seed: int = 0) -> Bootstrap:
    """Evaluate ``statistic(indices) -> (S,)`` on group-bootstrap resamples; NaN marks an undefined value."""
    rows = [np.atleast_1d(np.asarray(statistic(idx), dtype=np.float64))
            for idx in resample_indices(groups, n_boot, seed)]
    samples = np.vstack(rows)
    return Bootstrap(samples, np.sum(np.isnan(samples), axis=0))
