"""The decision rule: a video is called fake when ``prob_fake >= threshold``, the threshold chosen on
validation by one rule for every model (members and the ensemble alike), used by training, the report,
predict and the service.

The rule: Youden's J (TPR - FPR) on the validation videos that have a face (a video without one is scored
0.5 by every model, which says nothing about any of them). The threshold sits halfway between the lowest
score the best ROC point calls fake and the next lower score, so validation decisions are those of that
point and new scores near it are split evenly; among equally good points the highest threshold wins (the
one that calls the fewest videos fake). Without a usable validation split (empty, one class, or no point
better than chance) the threshold is 0.5.
"""
from __future__ import annotations

import numpy as np

from ensembles.compare import StatsError, roc_points

DEFAULT = 0.5
RULE = "Youden's J on validation videos with a face"


def choose_threshold(labels, probs, no_face=None) -> tuple[float, str]:
    """(threshold, how it was chosen) from validation labels (N,), scores (N,) and no-face flags (N,)."""
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    if no_face is not None:
        keep = ~np.asarray(no_face, dtype=bool)
        labels, probs = labels[keep], probs[keep]
    try:
        fpr, tpr, thr = roc_points(labels, probs)
    except StatsError:
        return DEFAULT, f"{DEFAULT} (validation lacks one class or is empty)"
    k = int(np.argmax(tpr - fpr))                   # point 0 is "nothing is fake"; ties: the first point
    if k == 0:
        return DEFAULT, f"{DEFAULT} (no validation threshold beats chance)"
    lower = thr[k + 1] if k + 1 < len(thr) else 0.0 # the next lower score
    return float((thr[k] + lower) / 2), RULE


def verdict(prob: float, threshold: float) -> str:
    return "fake" if prob >= threshold else "real"
