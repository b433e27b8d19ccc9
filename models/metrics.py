"""How well a score finds the leads that convert: discrimination, lift, calibration and gains.

Every function takes the held-out labels and one score per lead, either a
calibrated probability or any ranking such as hand-set points, which has many
ties. A share of leads ("the top 10 %") is the expected value over a random
order of tied leads: a tied group that straddles a cut counts pro rata. So a
constant score has lift 1 everywhere and a diagonal gains curve, and no score
looks better or worse through the arbitrary order of its ties.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from leadscore.errors import LeadscoreError

TOPS = (0.05, 0.10, 0.20)
DECILES = 10
ECE_BINS = 10
LOG_LOSS_CLIP = 1e-15


@dataclass(frozen=True)
class _Ranked:
    """Leads sorted by score, highest first, collapsed into groups of tied scores.

    Group ``g`` holds the leads ranked in ``[edges[g], edges[g + 1])``.
    """

    score: np.ndarray
    leads: np.ndarray
    conversions: np.ndarray

    @cached_property
    def edges(self) -> np.ndarray:
        return np.r_[0, np.cumsum(self.leads)]

    @cached_property
    def converted(self) -> np.ndarray:
        """Conversions among the leads ranked before each edge."""
        return np.r_[0, np.cumsum(self.conversions)]

    @property
    def rows(self) -> int:
        return int(self.edges[-1])

    @property
    def positives(self) -> int:
        return int(self.converted[-1])

    @property
    def base_rate(self) -> float:
        return self.positives / self.rows

    def window(self, totals: np.ndarray, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sum and mean of a per-group total over the leads ranked in ``[start, stop)``.

        Linear interpolation of the running total inside a group is the expected
        share of that group falling in the window under a random order of ties.
        """
        running = np.r_[0.0, np.cumsum(totals, dtype=float)]
        sums = np.interp(stop, self.edges, running) - np.interp(start, self.edges, running)
        first = np.searchsorted(self.edges, start, side="right") - 1
        last = np.searchsorted(self.edges, stop, side="left") - 1
        # A window inside one tied group takes that group's mean as is rather than
        # sum / width, which rounding would move off it: a constant score must give
        # a conversion rate equal to the base rate bit for bit, hence lift exactly 1.
        means = np.where(first == last, totals[first] / self.leads[first], sums / (stop - start))
        return sums, means

    def equal_bins(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Starts and stops of ``count`` windows of exactly rows / count leads, from the top."""
        cuts = np.linspace(0.0, self.rows, count + 1)
        return cuts[:-1], cuts[1:]


def _rank(y: np.ndarray, score: np.ndarray) -> _Ranked:
    # The order within ties is irrelevant: tied leads are merged into one group.
    order = np.argsort(-score)
    ranked = score[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    leads = np.diff(np.r_[starts, len(ranked)])
    return _Ranked(ranked[starts], leads, np.add.reduceat(y[order], starts))


def _as_floats(values, name: str) -> np.ndarray:
    if np.ndim(values) != 1:
        raise LeadscoreError(f"{name} must be one-dimensional, one value per lead; got {np.ndim(values)} dimensions.")
    try:
        # Through pandas so that nullable columns (Int64, boolean) arrive with NaN for their missing values.
        return pd.Series(values).to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as error:
        raise LeadscoreError(f"{name} must be numeric, one number per lead: {error}.") from error


def _labels_and_score(y_true, score, name: str) -> tuple[np.ndarray, np.ndarray]:
    y = _as_floats(y_true, "y_true")
    values = _as_floats(score, name)
    if len(y) != len(values):
        raise LeadscoreError(
            f"y_true has {len(y):,} rows but {name} has {len(values):,}: pass one {name} per lead, in the same order."
        )
    if len(y) == 0:
        raise LeadscoreError(f"No rows to evaluate: y_true and {name} are empty.")
    missing = int(np.isnan(y).sum())
    if missing:
        raise LeadscoreError(
            f"y_true has {missing:,} missing values among {len(y):,} rows: evaluate only leads whose outcome "
            "is known (horizon_complete)."
        )
    odd = (y != 0) & (y != 1)
    if odd.any():
        examples = ", ".join(f"{v:g}" for v in np.unique(y[odd])[:3])
        raise LeadscoreError(f"y_true must be 0/1 or True/False; {int(odd.sum()):,} values are not (e.g. {examples}).")
    for problem, count in (("missing (NaN)", np.isnan(values).sum()), ("infinite", np.isinf(values).sum())):
        if count:
            raise LeadscoreError(
                f"{name} has {int(count):,} {problem} values among {len(values):,} rows: every lead needs a finite "
                f"{name}; fill or drop them before evaluating."
            )
    return y.astype(np.int64), values


def _labels_and_probability(y_true, probability) -> tuple[np.ndarray, np.ndarray]:
    y, p = _labels_and_score(y_true, probability, "probability")
    outside = (p < 0) | (p > 1)
    if outside.any():
        raise LeadscoreError(
            f"probability must lie in [0, 1]; {int(outside.sum()):,} values do not (e.g. {p[outside][0]:g}). For "
            "scores that are not probabilities, such as points, use ranking_metrics."
        )
    return y, p


def _require_both_classes(ranked: _Ranked) -> None:
    if ranked.positives in (0, ranked.rows):
        raise LeadscoreError(
            f"y_true holds one class only ({ranked.rows:,} rows, {ranked.positives:,} positives): these metrics "
            "compare converted with unconverted leads and need both. Evaluate on a larger or longer held-out period."
        )


def _require_positives(ranked: _Ranked) -> None:
    if ranked.positives == 0:
        raise LeadscoreError(
            f"No converted leads among the {ranked.rows:,} rows: lift and capture are relative to the "
            "conversions and need at least one. Evaluate on a larger or longer held-out period."
        )


def _check_tops(tops) -> np.ndarray:
    shares = np.asarray(tops, dtype=float).ravel()
    bad = shares[~((shares > 0) & (shares <= 1))]
    if len(shares) == 0 or len(bad):
        raise LeadscoreError(f"tops must be shares of leads in (0, 1], such as 0.1 for the top 10 %; got {tops!r}.")
    return shares


def _check_count(value: int, name: str, minimum: int) -> int:
    if int(value) != value or value < minimum:
        raise LeadscoreError(f"{name} must be a whole number of at least {minimum}; got {value!r}.")
    return int(value)


def _roc_auc(ranked: _Ranked) -> float:
    # Each negative beats the positives ranked above it and half-ties with those in its group;
    # counted in integers (twice the wins) so the only rounding is the final division.
    negatives = ranked.leads - ranked.conversions
    twice_wins = np.sum(negatives * (2 * ranked.converted[:-1] + ranked.conversions))
    return float(twice_wins / (2 * ranked.positives * (ranked.rows - ranked.positives)))


def _average_precision(ranked: _Ranked) -> float:
    # Tied leads share one threshold, as in sklearn's average_precision_score.
    precision = ranked.converted[1:] / ranked.edges[1:]
    return float(np.sum(ranked.conversions * precision) / ranked.positives)


def _reliability(ranked: _Ranked, bins: int) -> pd.DataFrame:
    start, stop = ranked.equal_bins(bins)
    _, predicted = ranked.window(ranked.leads * ranked.score, start, stop)
    _, observed = ranked.window(ranked.conversions, start, stop)
    # Bins were cut from the top; a reliability curve reads from the lowest probabilities.
    return pd.DataFrame(
        {
            "bin": np.arange(1, bins + 1),
            "mean_predicted": predicted[::-1],
            "observed_rate": observed[::-1],
            "leads": stop - start,
        }
    )


def _lift(ranked: _Ranked, tops: np.ndarray) -> pd.DataFrame:
    leads = tops * ranked.rows
    conversions, rate = ranked.window(ranked.conversions, np.zeros_like(leads), leads)
    return pd.DataFrame(
        {
            "top": tops,
            "leads": leads,
            "conversions": conversions,
            "conversion_rate": rate,
            "lift": rate / ranked.base_rate,
            "capture": conversions / ranked.positives,
        }
    )


def probability_metrics(y_true, probability) -> dict[str, float]:
    """Discrimination and calibration of a predicted conversion probability.

    Parameters
    ----------
    y_true : array-like of 0/1 or bool
        Whether each lead converted.
    probability : array-like of float in [0, 1]
        The predicted probability that each lead converts.

    Returns
    -------
    dict
        ``roc_auc``, ``pr_auc`` (average precision), ``brier``, ``log_loss``
        (probabilities clipped to [1e-15, 1 - 1e-15]), ``ece`` (mean absolute gap
        between observed rate and mean prediction over 10 equal-frequency bins),
        ``base_rate``, ``rows`` and ``positives``.
    """
    y, p = _labels_and_probability(y_true, probability)
    ranked = _rank(y, p)
    _require_both_classes(ranked)
    clipped = np.clip(p, LOG_LOSS_CLIP, 1 - LOG_LOSS_CLIP)
    reliability = _reliability(ranked, ECE_BINS)
    gaps = np.abs(reliability["observed_rate"] - reliability["mean_predicted"])
    return {
        "roc_auc": _roc_auc(ranked),
        "pr_auc": _average_precision(ranked),
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(-np.mean(np.where(y == 1, np.log(clipped), np.log1p(-clipped)))),
        "ece": float(np.average(gaps, weights=reliability["leads"])),
        "base_rate": ranked.base_rate,
        "rows": float(ranked.rows),
        "positives": float(ranked.positives),
    }


def ranking_metrics(y_true, score, tops=TOPS) -> dict[str, float]:
    """How well any score, probability or points, ranks converting leads first.

    Parameters
    ----------
    y_true : array-like of 0/1 or bool
        Whether each lead converted.
    score : array-like of float
        Higher means more likely to convert; ties are allowed.
    tops : sequence of float in (0, 1]
        Shares of leads, best scores first.

    Returns
    -------
    dict
        ``roc_auc``, ``pr_auc``, and for each top share, e.g. 0.05, ``lift_top_5``
        and ``capture_top_5``.
    """
    y, values = _labels_and_score(y_true, score, "score")
    shares = _check_tops(tops)
    ranked = _rank(y, values)
    _require_both_classes(ranked)
    result = {"roc_auc": _roc_auc(ranked), "pr_auc": _average_precision(ranked)}
    for row in _lift(ranked, shares).itertuples():
        result[f"lift_top_{100 * row.top:g}"] = float(row.lift)
        result[f"capture_top_{100 * row.top:g}"] = float(row.capture)
    return result


def lift_table(y_true, score, tops=TOPS) -> pd.DataFrame:
    """Conversions among the best-scored leads, one row per top share.

    Parameters
    ----------
    y_true : array-like of 0/1 or bool
        Whether each lead converted.
    score : array-like of float
        Higher means more likely to convert; ties are allowed.
    tops : sequence of float in (0, 1]
        Shares of leads, best scores first.

    Returns
    -------
    pandas.DataFrame
        ``top``, ``leads``, ``conversions`` (expected under a random order of
        ties, so possibly fractional), ``conversion_rate``, ``lift`` (rate over
        the base rate) and ``capture`` (share of all conversions).
    """
    y, values = _labels_and_score(y_true, score, "score")
    shares = _check_tops(tops)
    ranked = _rank(y, values)
    _require_positives(ranked)
    return _lift(ranked, shares)


def decile_table(y_true, score) -> pd.DataFrame:
    """Ten groups of exactly a tenth of the leads each, decile 1 holding the highest scores.

    Parameters
    ----------
    y_true : array-like of 0/1 or bool
        Whether each lead converted.
    score : array-like of float
        Higher means more likely to convert; a tied group straddling a decile
        boundary is shared pro rata between the two deciles.

    Returns
    -------
    pandas.DataFrame
        ``decile``, ``leads``, ``conversions``, ``conversion_rate``, ``lift`` and
        ``mean_score``.
    """
    y, values = _labels_and_score(y_true, score, "score")
    ranked = _rank(y, values)
    _require_positives(ranked)
    start, stop = ranked.equal_bins(DECILES)
    conversions, rate = ranked.window(ranked.conversions, start, stop)
    _, mean_score = ranked.window(ranked.leads * ranked.score, start, stop)
    return pd.DataFrame(
        {
            "decile": np.arange(1, DECILES + 1),
            "leads": np.full(DECILES, ranked.rows / DECILES),
            "conversions": conversions,
            "conversion_rate": rate,
            "lift": rate / ranked.base_rate,
            "mean_score": mean_score,
        }
    )


def reliability_curve(y_true, probability, bins: int = ECE_BINS) -> pd.DataFrame:
    """Observed conversion rate against mean predicted probability, in equal-frequency bins.

    Parameters
    ----------
    y_true : array-like of 0/1 or bool
        Whether each lead converted.
    probability : array-like of float in [0, 1]
        The predicted probability that each lead converts.
    bins : int
        Number of bins, each holding exactly rows / bins leads (ties shared pro rata).

    Returns
    -------
    pandas.DataFrame
        ``bin`` (1 = lowest probabilities), ``mean_predicted``, ``observed_rate``
        and ``leads``.
    """
    y, p = _labels_and_probability(y_true, probability)
    return _reliability(_rank(y, p), _check_count(bins, "bins", 1))


def gains_curve(y_true, score, points: int = 101) -> pd.DataFrame:
    """Share of all conversions found when contacting leads from the best score down.

    Parameters
    ----------
    y_true : array-like of 0/1 or bool
        Whether each lead converted.
    score : array-like of float
        Higher means more likely to convert; the curve is linear across a tied group.
    points : int
        Evenly spaced shares of leads from 0 to 1.

    Returns
    -------
    pandas.DataFrame
        ``share_of_leads`` and ``share_of_conversions``, both from 0 to 1.
    """
    y, values = _labels_and_score(y_true, score, "score")
    shares = np.linspace(0.0, 1.0, _check_count(points, "points", 2))
    ranked = _rank(y, values)
    _require_positives(ranked)
    captured = np.interp(shares, ranked.edges / ranked.rows, ranked.converted / ranked.positives)
    return pd.DataFrame({"share_of_leads": shares, "share_of_conversions": captured})
