"""Intervals and rank statistics shared by the analyses: the Wilson interval of a proportion, the
t-interval of a mean over a few seeds, the paired bootstrap of a difference of means, and the ROC AUC of a
score (written here: short formulas, where scipy / scikit-learn would be a dependency for one call each)."""

from __future__ import annotations

import math

import numpy as np


def wilson_interval(successes: int, count: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (0, 0 for no trials)."""
    if count == 0:
        return 0.0, 0.0
    p = successes / count
    centre = (p + z * z / (2 * count)) / (1 + z * z / count)
    half = z * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count)) / (1 + z * z / count)
    return max(0.0, centre - half), min(1.0, centre + half)


# two-sided 95% quantiles of Student's t by degrees of freedom (beyond the table: the normal's 1.96)
T_95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131)


def t_interval(values) -> tuple[float, float]:
    """95% t-interval of the mean of ``values`` (e.g. one accuracy per seed); a single value gives (v, v)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"t_interval needs a non-empty 1-D sample, got shape {values.shape}")
    mean = float(values.mean())
    if len(values) == 1:
        return mean, mean
    df = len(values) - 1
    half = (T_95[df - 1] if df <= len(T_95) else 1.96) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return mean - half, mean + half


def paired_bootstrap(a, b, samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mean(a) − mean(b), resampling the pairs (a_i, b_i) with replacement."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired_bootstrap needs two equal-length 1-D samples, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(a), size=(samples, len(a)))  # (samples, n)
    differences = (a - b)[picks].mean(axis=1)
    lower, upper = np.percentile(differences, [2.5, 97.5])
    return float(lower), float(upper)


def roc_auc(scores, positives) -> float | None:
    """Area under the ROC curve of ``scores`` for the boolean ``positives``: the probability that a random
    positive scores above a random negative, ties counting one half (the Mann–Whitney U statistic).
    None when either class is empty."""
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks (from 1) over runs of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + 1 + end) / 2
    u = ranks[positives].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))
