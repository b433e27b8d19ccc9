"""MQL and SQL tiers on the calibrated probability, and the 0-100 fit and engagement sub-scores.

Thresholds are chosen at training time from the model's probabilities on the
newest, held-out leads, by one of two rules:

- capacity: the SDR team works ``mql_per_week`` leads a week, the AE team
  ``sql_per_week``; each threshold is the lowest one whose expected weekly
  number of leads fits;
- precision: the leads at or above the MQL threshold are expected to
  convert at least ``mql_precision`` of the time, those at or above the SQL
  threshold ``sql_precision``; "expected" reads the calibrated probabilities.

Neither rule reads the outcomes, so the conversion rates the training report
shows for each tier on those same leads are an honest check of the choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from leadscore.errors import LeadscoreError

# A lead's tier is one of the CRM's codes (crm.vocabulary.TIERS) from the model to lead_scores.tier;
# people read the display names.
TIER_DISPLAY = {"none": "not qualified", "mql": "MQL", "sql": "SQL"}
RULES = ("capacity", "precision")


@dataclass(frozen=True)
class TierConfig:
    """How the MQL and SQL thresholds are chosen (see the module docstring)."""

    rule: Literal["capacity", "precision"] = "precision"
    mql_per_week: float | None = None
    sql_per_week: float | None = None
    mql_precision: float = 0.10
    sql_precision: float = 0.30
    leads_per_week: float | None = None  # for tables without a time column: new leads arriving each week

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise LeadscoreError(f"--tier-rule {self.rule!r}: choose capacity or precision.")
        if self.rule == "capacity" and (not self.mql_per_week or not self.sql_per_week):
            raise LeadscoreError(
                "--tier-rule capacity needs both team capacities: --mql-per-week (leads the SDR team works a week) "
                "and --sql-per-week (leads the AE team works a week)."
            )
        if self.rule == "capacity" and self.sql_per_week > self.mql_per_week:
            raise LeadscoreError(
                f"--sql-per-week {self.sql_per_week:g} exceeds --mql-per-week {self.mql_per_week:g}: every SQL is also "
                "above the MQL threshold, so the AE team cannot get more leads than the SDR team."
            )
        if not 0 < self.mql_precision <= self.sql_precision < 1:
            raise LeadscoreError(
                f"--mql-precision {self.mql_precision:g} and --sql-precision {self.sql_precision:g} must satisfy "
                "0 < MQL precision <= SQL precision < 1 (as shares: 0.3 means 30 %)."
            )


@dataclass(frozen=True)
class Tiers:
    """Thresholds on the calibrated probability, and the margins (log-odds) that reach them."""

    rule: str
    mql: float
    sql: float
    mql_margin: float
    sql_margin: float
    description: str

    def assign(self, probability: np.ndarray) -> np.ndarray:
        probability = np.asarray(probability, dtype=float)
        tier = np.full(len(probability), "none", dtype=object)
        tier[probability >= self.mql] = "mql"
        tier[probability >= self.sql] = "sql"
        return tier


def weeks_covered(times: pd.Series | None) -> float | None:
    """Weeks the rows' moments span, counting one step of their own rhythm (a month for monthly cutoffs) at the end."""
    if times is None:
        return None
    moments = np.unique(pd.to_datetime(times).dropna().to_numpy())
    if len(moments) < 2:
        return None
    step = np.median(np.diff(moments))
    return float((moments[-1] - moments[0] + step) / np.timedelta64(7, "D"))


def _per_lead_max(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Each lead's highest value over its rows (``codes``: the lead of each row, factorized).

    A lead is worked once, when it first crosses a threshold, and converted if any of its rows did.
    """
    return pd.Series(np.asarray(values)).groupby(codes).max().to_numpy()


def _capacity_threshold(best: np.ndarray, per_week: float, weeks: float) -> float:
    """The lowest threshold that sends at most ``per_week`` leads a week."""
    allowed = int(per_week * weeks)
    ordered = np.sort(best)[::-1]
    if allowed >= len(ordered):
        return float(ordered[-1]) if len(ordered) else 0.0
    return float(np.nextafter(ordered[allowed], np.inf))


def _precision_threshold(probability: np.ndarray, precision: float) -> float:
    """The lowest threshold above which the expected conversion rate is still at least ``precision``."""
    ordered = np.sort(probability)[::-1]
    expected = np.cumsum(ordered) / np.arange(1, len(ordered) + 1)
    reached = np.flatnonzero(expected >= precision)
    if not len(reached):
        return 1.0  # unreachable: no lead is expected to convert that often
    return float(ordered[reached[-1]])


def margin_reaching(calibrator, probability: float) -> float:
    """The lowest margin the calibrator maps to at least ``probability`` (bisection: calibration is monotone)."""
    low, high = -60.0, 60.0
    if calibrator.predict(np.array([high]))[0] < probability:
        return float("inf")
    if calibrator.predict(np.array([low]))[0] >= probability:
        return low
    for _ in range(80):
        middle = (low + high) / 2
        if calibrator.predict(np.array([middle]))[0] >= probability:
            high = middle
        else:
            low = middle
    return high


def choose_tiers(
    probability: np.ndarray,
    leads: pd.Series,
    times: pd.Series | None,
    config: TierConfig,
    calibrator,
) -> Tiers:
    """MQL and SQL thresholds for the held-out leads' probabilities, by the configured rule."""
    probability = np.asarray(probability, dtype=float)
    if config.rule == "capacity":
        weeks = weeks_covered(times)
        best = _per_lead_max(probability, pd.factorize(leads)[0])
        if weeks is None:
            if not config.leads_per_week:
                raise LeadscoreError(
                    "--tier-rule capacity: leads per week cannot be counted (the table has no time column, or its "
                    "held-out rows share one moment). Give --leads-per-week (how many new leads arrive a week), or "
                    "use --tier-rule precision."
                )
            weeks = len(best) / config.leads_per_week
        mql = _capacity_threshold(best, config.mql_per_week, weeks)
        sql = max(_capacity_threshold(best, config.sql_per_week, weeks), mql)
        description = (
            f"capacity: at most {config.mql_per_week:g} MQLs and {config.sql_per_week:g} SQLs a week "
            f"(held-out leads over {weeks:.1f} weeks)"
        )
    else:
        mql = _precision_threshold(probability, config.mql_precision)
        sql = max(_precision_threshold(probability, config.sql_precision), mql)
        description = (
            f"precision: MQLs expected to convert at least {config.mql_precision:.0%}, "
            f"SQLs at least {config.sql_precision:.0%}"
        )
    return Tiers(config.rule, mql, sql, margin_reaching(calibrator, mql), margin_reaching(calibrator, sql), description)


def tier_report(
    probability: np.ndarray,
    y: np.ndarray,
    leads: pd.Series,
    times: pd.Series | None,
    tiers: Tiers,
    leads_per_week: float | None = None,
    handset_points: np.ndarray | None = None,
    handset_threshold: float | None = None,
) -> pd.DataFrame:
    """Leads, leads per week and conversion rate of each tier, next to the hand-set scoring's MQLs.

    Counted per lead: a lead belongs to the highest tier any of its rows
    reached, and converted if any of its rows did.
    """
    codes = pd.factorize(leads)[0]
    best = _per_lead_max(probability, codes)
    converted = _per_lead_max(np.asarray(y, dtype=int), codes)
    weeks = weeks_covered(times)
    if weeks is None and leads_per_week:
        weeks = len(best) / leads_per_week
    groups = {
        "SQL": best >= tiers.sql,
        "MQL": (best >= tiers.mql) & (best < tiers.sql),
        "MQL or SQL": best >= tiers.mql,
        "none": best < tiers.mql,
    }
    thresholds = {"SQL": tiers.sql, "MQL": tiers.mql, "MQL or SQL": tiers.mql, "none": None}
    if handset_points is not None and handset_threshold is not None:
        points = _per_lead_max(handset_points, codes)
        groups["Hand-set MQL"] = points >= handset_threshold
        thresholds["Hand-set MQL"] = handset_threshold
    rows = []
    total_converted = max(int(converted.sum()), 1)
    for name, members in groups.items():
        count = int(members.sum())
        rows.append(
            {
                "tier": name,
                "threshold": thresholds[name],
                "leads": count,
                "leads_per_week": count / weeks if weeks else np.nan,
                "conversion_rate": converted[members].mean() if count else np.nan,
                "converted": int(converted[members].sum()),
                "share_of_conversions": converted[members].sum() / total_converted,
            }
        )
    return pd.DataFrame(rows).set_index("tier")


@dataclass(frozen=True)
class SubScores:
    """Fit and engagement as 0-100 scores: the share of reference leads whose contribution sum is lower.

    "Fit 82" reads: this lead fits the customer profile better than 82 % of
    the leads the model was checked on (ties count half).
    """

    fit_quantiles: np.ndarray
    engagement_quantiles: np.ndarray

    @classmethod
    def fit(cls, fit_log_odds: np.ndarray, engagement_log_odds: np.ndarray, points: int = 1001) -> SubScores:
        levels = np.linspace(0, 1, points)
        return cls(np.quantile(fit_log_odds, levels), np.quantile(engagement_log_odds, levels))

    @staticmethod
    def _rank(values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
        below = np.searchsorted(quantiles, values, side="left")
        at_most = np.searchsorted(quantiles, values, side="right")
        return 100.0 * (below + at_most) / (2 * len(quantiles))

    def fit_score(self, values: np.ndarray) -> np.ndarray:
        return self._rank(np.asarray(values, dtype=float), self.fit_quantiles)

    def engagement_score(self, values: np.ndarray) -> np.ndarray:
        return self._rank(np.asarray(values, dtype=float), self.engagement_quantiles)
