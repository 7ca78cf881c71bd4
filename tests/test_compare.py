"""Known answers for ensembles.compare: textbook examples, scipy and scikit-learn references, edge cases."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import interpolate, optimize, stats
from sklearn import metrics as skm

from ensembles import compare


def paired_decisions(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean 'correct' arrays for a 2x2 table of paired outcomes."""
    a = np.r_[np.ones(both + only_a, bool), np.zeros(only_b + neither, bool)]
    b = np.r_[np.ones(both, bool), np.zeros(only_a, bool), np.ones(only_b, bool), np.zeros(neither, bool)]
    return a, b


# ---------------------------------------------------------------- McNemar

def test_mcnemar_textbook_chi_square():
    # Agresti, An Introduction to Categorical Data Analysis (2007), Table 8.1: approval of the prime
    # minister in two surveys of the same 1600 people: 794 / 150 / 86 / 570.
    a, b = paired_decisions(794, 150, 86, 570)
    res = compare.mcnemar(a, b)
    assert (res.b, res.c) == (150, 86)
    assert res.method == "chi-square, continuity corrected"
    assert res.statistic == pytest.approx(63 ** 2 / 236)          # (|150 - 86| - 1)^2 / (150 + 86)
    assert res.pvalue == pytest.approx(stats.chi2.sf(63 ** 2 / 236, 1))
    assert res.pvalue < 1e-4


def test_mcnemar_exact_binomial_matches_hand_count_and_scipy():
    a, b = paired_decisions(30, 2, 8, 5)
    res = compare.mcnemar(a, b)
    assert res.method == "exact binomial"
    assert res.pvalue == pytest.approx(2 * (1 + 10 + 45) / 1024)  # 2 P(X <= 2), X ~ Bin(10, 1/2)
    for only_a, only_b in [(0, 6), (3, 3), (1, 12), (7, 2)]:
        a, b = paired_decisions(10, only_a, only_b, 4)
        expected = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
        assert compare.mcnemar(a, b).pvalue == pytest.approx(expected)


def test_mcnemar_is_symmetric_and_switches_method_at_threshold():
    a, b = paired_decisions(5, 9, 15, 5)                         # 24 discordant: exact
    assert compare.mcnemar(a, b).method == "exact binomial"
    assert compare.mcnemar(a, b).pvalue == pytest.approx(compare.mcnemar(b, a).pvalue)
    a, b = paired_decisions(5, 10, 15, 5)                        # 25 discordant: chi-square
    assert compare.mcnemar(a, b).method == "chi-square, continuity corrected"


def test_mcnemar_no_discordant_pairs():
    a, b = paired_decisions(20, 0, 0, 7)
    res = compare.mcnemar(a, b)
    assert res.pvalue == 1.0 and res.method == "no discordant pairs"


# ---------------------------------------------------------------- Wilcoxon

def test_wilcoxon_textbook_example():
    # Hollander & Wolfe, Nonparametric Statistical Methods (1973), p. 29: Hamilton depression scale
    # before (x) and after (y) a tranquilizer, 9 patients. T+ = 40, exact one-sided p = 10 / 512.
    x = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
    y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]
    res = compare.wilcoxon_paired(x, y)
    assert res.n == 9
    assert res.statistic == 5.0                    # min(T+, T-) = 45 - 40
    assert res.pvalue == pytest.approx(20 / 512)


def test_wilcoxon_matches_scipy_on_paired_losses():
    rng = np.random.default_rng(1)
    a = rng.exponential(0.6, 200)
    b = a + rng.normal(0.05, 0.3, 200)
    res = compare.wilcoxon_paired(a, b)
    ref = stats.wilcoxon(a, b)
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.pvalue == pytest.approx(ref.pvalue)
    assert res.median_difference == pytest.approx(np.median(a - b))


def test_wilcoxon_identical_losses_and_few_pairs():
    res = compare.wilcoxon_paired([0.3, 0.2, 0.9], [0.3, 0.2, 0.9])
    assert (res.n, res.pvalue) == (0, 1.0)
    # five seeds, every one better: the smallest p five pairs can give, which is not below 0.05
    res = compare.wilcoxon_paired([0.9, 0.91, 0.92, 0.93, 0.94], [0.8, 0.8, 0.8, 0.8, 0.8])
    assert res.min_pvalue == pytest.approx(0.0625)
    assert res.pvalue == pytest.approx(0.0625)


# ---------------------------------------------------------------- AUC, ROC, EER

def scores_with_ties(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.2 * y))), 2)   # rounding makes ties
    return y, s


def test_auc_and_roc_match_sklearn_with_ties():
    y, s = scores_with_ties()
    assert compare.auc(y, s) == pytest.approx(skm.roc_auc_score(y, s))
    fpr, tpr, thr = compare.roc_points(y, s)
    ref_fpr, ref_tpr, ref_thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_allclose(thr[1:], ref_thr[1:])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_matches_sklearn_roc_with_brentq(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    s = rng.normal(0, 1, 400) + 0.8 * y
    fpr, tpr, _ = skm.roc_curve(y, s)
    ref = optimize.brentq(lambda x: 1.0 - x - interpolate.interp1d(fpr, tpr)(x), 0.0, 1.0)
    rate, threshold = compare.eer(y, s)
    assert rate == pytest.approx(ref, abs=1e-9)
    # at the returned threshold, miss rate and false-alarm rate are close (within one video's share)
    far = np.mean(s[y == 0] >= threshold)
    frr = np.mean(s[y == 1] < threshold)
    assert abs(far - frr) < 2.5 / min(np.sum(y == 0), np.sum(y == 1)) + 1e-9


def test_eer_and_auc_edge_cases():
    y = np.array([0, 0, 1, 1])
    assert compare.eer(y, [0.1, 0.2, 0.8, 0.9])[0] == 0.0
    assert compare.eer(y, [0.5] * 4)[0] == pytest.approx(0.5)      # all predictions equal
    assert compare.auc(y, [0.5] * 4) == 0.5
    with pytest.raises(compare.StatsError, match="both classes.*all 3 videos are fake"):
        compare.auc([1, 1, 1], [0.2, 0.5, 0.9])


# ---------------------------------------------------------------- DeLong

def delong_by_definition(y, a, b):
    """DeLong et al. (1988) written out: the psi kernel over all (fake, real) pairs, O(m n)."""
    y = np.asarray(y)
    out = []
    for s in (a, b):
        s = np.asarray(s, float)
        x, z = s[y == 1][:, None], s[y == 0][None, :]
        psi = (x > z) + 0.5 * (x == z)                      # (m, n)
        out.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = out
    m, n = len(v10a), len(v01a)
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    cov = s10 / m + s01 / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    return auc_a - auc_b, var


def correlated_scores(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    shared = rng.normal(0, 1, n)
    a = shared + rng.normal(0, 0.7, n) + 1.0 * y
    b = shared + rng.normal(0, 0.7, n) + 0.7 * y
    return y, a, b


def test_delong_matches_the_definition_including_ties():
    y, a, b = correlated_scores(150, 3)
    a, b = np.round(a, 1), np.round(b, 1)                   # ties exercise the midranks
    diff, var = delong_by_definition(y, a, b)
    res = compare.delong(y, a, b)
    assert res.difference == pytest.approx(diff)
    assert res.se == pytest.approx(np.sqrt(var))
    assert res.z == pytest.approx(diff / np.sqrt(var))
    assert res.auc_a == pytest.approx(skm.roc_auc_score(y, a))


def test_delong_variance_agrees_with_bootstrap_on_a_large_sample():
    y, a, b = correlated_scores(3000, 7)
    res = compare.delong(y, a, b)
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(400):
        i = rng.integers(0, len(y), len(y))
        diffs.append(compare.auc(y[i], a[i]) - compare.auc(y[i], b[i]))
    boot_se = np.std(diffs, ddof=1)
    assert res.se == pytest.approx(boot_se, rel=0.15)      # 400 resamples: SE of an SE ~ 3.5%
    assert res.pvalue < 0.05 and res.difference > 0


def test_delong_edge_cases():
    y = np.array([0, 1, 0, 1, 1, 0])
    s = np.array([0.2, 0.7, 0.4, 0.9, 0.6, 0.1])
    same = compare.delong(y, s, s)
    assert (same.difference, same.pvalue) == (0.0, 1.0)
    flat = compare.delong(y, np.full(6, 0.5), np.full(6, 0.5))  # all predictions equal
    assert (flat.auc_a, flat.pvalue) == (0.5, 1.0)
    with pytest.raises(compare.StatsError, match="all 6 videos are real"):
        compare.delong(np.zeros(6, int), s, s[::-1])


# ---------------------------------------------------------------- Holm

def test_holm_known_answer_and_nan():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> monotone 0.06
    np.testing.assert_allclose(compare.holm(p), [0.03, 0.06, 0.06, 0.02])
    out = compare.holm([0.02, np.nan, 0.5])
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.04, 0.5])
    assert compare.holm([0.9, 0.8]).max() <= 1.0


# ---------------------------------------------------------------- bootstrap

def test_resampling_keeps_groups_whole_and_is_seeded():
    groups = np.array(["a", "a", "b", "c", "c", "c", "d"])
    first = list(compare.resample_indices(groups, 50, seed=3))
    again = list(compare.resample_indices(groups, 50, seed=3))
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    for idx in first:
        counts = {g: np.sum(groups[idx] == g) for g in set(groups[idx])}
        for g, c in counts.items():
            assert c % np.sum(groups == g) == 0                    # only whole groups


def test_bootstrap_ci_covers_and_counts_undefined():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 400)
    s = rng.normal(0, 1, 400) + y
    boot = compare.bootstrap(lambda i: [compare.auc(y[i], s[i])], groups=np.arange(400), n_boot=300)
    lo, hi = boot.ci()[0]
    assert lo < compare.auc(y, s) < hi and hi - lo < 0.2
    y_small, s_small = np.array([0, 1, 1]), np.array([0.1, 0.6, 0.9])

    def small_auc(i):
        one_class = y_small[i].min() == y_small[i].max()
        return [np.nan if one_class else compare.auc(y_small[i], s_small[i])]
    boot = compare.bootstrap(small_auc, groups=np.arange(3), n_boot=200)
    assert 0 < boot.undefined[0] < 200                           # single-class resamples are counted
