"""Paired bootstrap: is one scorer better than another on the same leads, beyond what chance moves?

Every resample draws leads with replacement and measures all the scorers on that same draw, so a
difference keeps its pairing: the leads both scorers rank well or badly move both figures together
and cancel out of the difference, which is why a paired interval is much narrower than two separate
ones. A lead that appears at several cutoffs is drawn with all its rows: it is one piece of evidence,
not several, and resampling its rows apart would make the interval too narrow.

ROC AUC and average precision depend only on the order of the scores and on how many converted and
unconverted leads sit at each place in it. Each scorer's order is computed once; a resample only
changes the weight of each lead (how many times it was drawn), so one sparse product per batch of
resamples gives every scorer's weighted counts at every place, and the metrics follow by cumulative
sums. A thousand resamples of 100,000 rows take about a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

METRICS = ("pr_auc", "roc_auc")
RESAMPLES = 1_000
BATCH_CELLS = 4_000_000  # leads × resamples drawn at once: about 16 MB of float32 counts, whatever the table's size


@dataclass(frozen=True)
class Difference:
    """A model's metric minus another scorer's on the same rows.

    ``model_value`` and ``other_value`` are measured on all the rows; ``mean``, ``low`` and ``high``
    are the mean difference over the resamples and the bounds of its central interval at ``level``.
    """

    other: str
    model_value: float
    other_value: float
    mean: float
    low: float
    high: float
    level: float
    resamples: int

    @property
    def better(self) -> bool:
        """Higher beyond noise: the whole interval lies above zero."""
        return self.low > 0

    @property
    def worse(self) -> bool:
        """Lower beyond noise: the whole interval lies below zero."""
        return self.high < 0


def paired_bootstrap(
    y,
    model,
    others: Mapping[str, np.ndarray],
    metric: str = "pr_auc",
    leads=None,
    resamples: int = RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Difference]:
    """``model``'s ``metric`` against each of ``others``, all scored on the same rows with outcomes ``y``.

    ``leads`` names the lead of each row (rows of one lead are drawn together); without it every row is
    a lead of its own. Higher scores must mean likelier to convert, for every scorer.

    Examples
    --------
    >>> y = np.array([0, 0, 1, 0, 1, 1, 0, 1])
    >>> sharp = np.array([.1, .2, .8, .3, .7, .9, .2, .6])
    >>> blunt = np.array([.4, .2, .5, .6, .3, .9, .2, .6])
    >>> d = paired_bootstrap(y, sharp, {"blunt": blunt}, "roc_auc", resamples=200)["blunt"]
    >>> round(d.model_value, 3), round(d.other_value, 3), d.low <= d.mean <= d.high
    (1.0, 0.781, True)
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    y = np.asarray(y, dtype=float)
    scores = [np.asarray(score, dtype=float) for score in (model, *others.values())]  # the model first
    if any(len(score) != len(y) for score in scores):
        raise ValueError("every score needs one value per row of y")
    codes, lead_count = _lead_codes(leads, len(y))
    places = [_places(y, score, codes, lead_count) for score in scores]
    stacked = sparse.vstack([matrix for pair in places for matrix in pair], format="csr")
    sizes = [pair[0].shape[0] for pair in places]

    whole = _metrics(stacked @ np.ones((lead_count, 1), dtype=np.float32), sizes, metric)[:, 0]
    rng = np.random.default_rng(seed)
    batch = max(1, min(resamples, BATCH_CELLS // max(lead_count, 1)))
    drawn = []
    for start in range(0, resamples, batch):
        size = min(batch, resamples - start)
        drawn.append(_metrics(stacked @ _draw_counts(rng, lead_count, size), sizes, metric))
    values = np.concatenate(drawn, axis=1)  # (scorers, resamples)
    tail = (1 - level) / 2 * 100
    result = {}
    for row, name in enumerate(others, start=1):
        differences = values[0] - values[row]
        differences = differences[np.isfinite(differences)]  # a draw without both outcomes measures nothing
        low, high = np.percentile(differences, [tail, 100 - tail]) if len(differences) else (np.nan, np.nan)
        mean = differences.mean() if len(differences) else np.nan
        result[name] = Difference(name, float(whole[0]), float(whole[row]), float(mean), float(low), float(high),
                                  level, resamples)
    return result


def _lead_codes(leads, rows: int) -> tuple[np.ndarray, int]:
    if leads is None:
        return np.arange(rows), rows
    codes, uniques = pd.factorize(np.asarray(leads), use_na_sentinel=False)
    return codes, len(uniques)


def _places(y: np.ndarray, score: np.ndarray, codes: np.ndarray, lead_count: int):
    """Two (places × leads) matrices: how many converted, and unconverted, rows of each lead sit at each place.

    Places run from the highest score down. Each group of tied scores holding a converted row is a place
    of its own; a run of tied groups holding none is merged into one place, since both metrics only need
    the counts above and at each converted row. This keeps the places to at most twice the converted rows.
    """
    order = np.argsort(-score, kind="stable")
    ranked = score[order]
    converted = y[order]
    new_group = np.r_[True, ranked[1:] != ranked[:-1]]
    group = np.cumsum(new_group) - 1
    group_converts = np.bincount(group, weights=converted) > 0
    starts_place = group_converts | np.r_[True, group_converts[:-1]]
    place = (np.cumsum(starts_place) - 1)[group]
    shape = (int(place[-1]) + 1 if len(place) else 0, lead_count)
    lead = codes[order]
    won = converted == 1
    ones = np.ones(len(y), dtype=np.float32)
    positive = sparse.csr_matrix((ones[won], (place[won], lead[won])), shape=shape)
    negative = sparse.csr_matrix((ones[~won], (place[~won], lead[~won])), shape=shape)
    return positive, negative


def _draw_counts(rng: np.random.Generator, lead_count: int, resamples: int) -> np.ndarray:
    """How many times each lead is drawn in each resample: (leads × resamples), each column summing to the leads."""
    draws = rng.integers(0, lead_count, size=(resamples, lead_count), dtype=np.intp)
    counts = np.empty((resamples, lead_count), dtype=np.float32)
    for resample, drawn in enumerate(draws):  # one resample at a time: its counts stay in the cache
        counts[resample] = np.bincount(drawn, minlength=lead_count)
    return np.ascontiguousarray(counts.T)  # rows by lead, the layout the sparse product reads fastest


def _metrics(counts: np.ndarray, sizes: list[int], metric: str) -> np.ndarray:
    """(scorers × resamples) metric values from the stacked weighted counts per place."""
    # Products of float32 counts are exact (whole numbers below 2**24); the metrics need float64.
    counts = counts.astype(float)
    values, start = [], 0
    for size in sizes:
        positive, negative = counts[start:start + size], counts[start + size:start + 2 * size]
        start += 2 * size
        values.append(_roc_auc(positive, negative) if metric == "roc_auc" else _average_precision(positive, negative))
    return np.vstack(values)


def _roc_auc(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    # Each converted row beats the unconverted ones ranked below it and half-ties with those in its place.
    below = negative.sum(axis=0) - np.cumsum(negative, axis=0)
    wins = np.sum(positive * (below + 0.5 * negative), axis=0)
    pairs = positive.sum(axis=0) * negative.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def _average_precision(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    # Tied rows share one threshold, as in sklearn's average_precision_score.
    found = np.cumsum(positive, axis=0)
    flagged = found + np.cumsum(negative, axis=0)
    precision = np.divide(found, flagged, out=np.zeros_like(found), where=flagged > 0)
    converted = positive.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(converted > 0, np.sum(positive * precision, axis=0) / converted, np.nan)
