"""MQL and SQL tiers on the calibrated probability, and the 0-100 fit and engagement sub-scores.

Thresholds are chosen at training time from the model's probabilities on the
newest, held-out leads, by one of two rules:

- precision: a lead is an MQL when its own calibrated probability is at least
  ``mql_precision``, an SQL when at least ``sql_precision``, so no lead below a
  target is tiered above it. A target separates leads only while the base rate
  (the held-out leads' average probability) is below it; once the base rate
  reaches it, that tier goes by rank instead, and the description says so. A
  target no held-out lead reaches leaves its tier empty, and the description
  says that too: no lead is that likely;
- capacity: the SDR team works ``mql_per_week`` leads a week, the AE team
  ``sql_per_week``; each threshold is the lowest one whose expected weekly
  number of leads fits.

Ranking is the capacity rule when both capacities are given, else shares: SQLs
are the ``sql_share`` of leads with the highest probabilities, MQLs the next
``mql_share``.

Neither rule reads the outcomes, so the conversion rates the training report
shows for each tier on those same leads are an honest check of the choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from leadscore.errors import LeadscoreError
from leadscore.models.reasons import format_percent

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
    sql_share: float = 0.10
    mql_share: float = 0.20

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise LeadscoreError(f"--tier-rule {self.rule!r}: choose capacity or precision.")
        if self.rule == "capacity" and not self.by_capacity:
            raise LeadscoreError(
                "--tier-rule capacity needs both team capacities: --mql-per-week (leads the SDR team works a week) "
                "and --sql-per-week (leads the AE team works a week)."
            )
        if (self.mql_per_week or self.sql_per_week) and not self.by_capacity:
            raise LeadscoreError(
                "--mql-per-week and --sql-per-week go together: the precision rule ranks by them when the base rate "
                "reaches a target. Give both, or neither to rank by --sql-share and --mql-share."
            )
        if self.by_capacity and self.sql_per_week > self.mql_per_week:
            raise LeadscoreError(
                f"--sql-per-week {self.sql_per_week:g} exceeds --mql-per-week {self.mql_per_week:g}: every SQL is also "
                "above the MQL threshold, so the AE team cannot get more leads than the SDR team."
            )
        if not 0 < self.mql_precision <= self.sql_precision < 1:
            raise LeadscoreError(
                f"--mql-precision {self.mql_precision:g} and --sql-precision {self.sql_precision:g} must satisfy "
                "0 < MQL precision <= SQL precision < 1 (as shares: 0.3 means 30 %)."
            )
        if not (self.sql_share > 0 and self.mql_share > 0 and self.sql_share + self.mql_share <= 1):
            raise LeadscoreError(
                f"--sql-share {self.sql_share:g} and --mql-share {self.mql_share:g} must each be above 0 and add up "
                "to at most 1 (as shares: 0.1 means the top 10 % of leads)."
            )

    @property
    def by_capacity(self) -> bool:
        return bool(self.mql_per_week and self.sql_per_week)


@dataclass(frozen=True)
class Tiers:
    """Thresholds on the calibrated probability, and the margins (log-odds) that reach them.

    ``ranked`` names the tiers the precision rule left to rank because the
    base rate already reached their target.
    """

    rule: str
    mql: float
    sql: float
    mql_margin: float
    sql_margin: float
    description: str
    ranked: tuple[str, ...] = ()

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


def _top_threshold(best: np.ndarray, allowed: int) -> float:
    """The lowest threshold that lets at most ``allowed`` of these leads through (ties stay together, below)."""
    ordered = np.sort(best)[::-1]
    if allowed >= len(ordered):
        return float(ordered[-1]) if len(ordered) else 0.0
    return float(np.nextafter(ordered[allowed], np.inf))


def _share_of(share: float, leads: int) -> int:
    # The tolerance keeps 0.29 * 100 leads at 29, not 28.
    return int(np.floor(share * leads + 1e-9))


def _weeks(best: np.ndarray, times: pd.Series | None, config: TierConfig) -> float:
    weeks = weeks_covered(times)
    if weeks is not None:
        return weeks
    if not config.leads_per_week:
        asked, fix = (("--tier-rule capacity", "use --tier-rule precision") if config.rule == "capacity" else
                      ("--mql-per-week and --sql-per-week", "drop them to rank by --sql-share and --mql-share"))
        raise LeadscoreError(
            f"{asked}: leads per week cannot be counted (the table has no time column, or its held-out rows share "
            f"one moment). Give --leads-per-week (how many new leads arrive a week), or {fix}."
        )
    return len(best) / config.leads_per_week


def _rank(best: np.ndarray, times: pd.Series | None, config: TierConfig, sql: float | None = None):
    """MQL and SQL thresholds by rank, and how they were set; a given ``sql`` stays and only MQLs are ranked below it."""
    if config.by_capacity:
        weeks = _weeks(best, times, config)
        span = f"(held-out leads over {weeks:.1f} weeks)"
        mql = _top_threshold(best, int(config.mql_per_week * weeks))
        if sql is not None:
            return min(mql, sql), sql, f"at most {config.mql_per_week:g} MQLs and SQLs together a week {span}"
        sql = _top_threshold(best, int(config.sql_per_week * weeks))
        return min(mql, sql), sql, f"at most {config.mql_per_week:g} MQLs and {config.sql_per_week:g} SQLs a week {span}"
    how = f"MQLs are the {format_percent(config.mql_share)} of leads ranked just below the SQL target"
    if sql is None:
        sql = _top_threshold(best, _share_of(config.sql_share, len(best)))
        how = (f"SQLs are the top {format_percent(config.sql_share)} of leads, "
               f"MQLs the next {format_percent(config.mql_share)}")
    below = best[best < sql]
    mql = _top_threshold(below, _share_of(config.mql_share, len(best))) if len(below) else sql
    return mql, sql, how


def _precision(best: np.ndarray, base_rate: float, times: pd.Series | None, config: TierConfig):
    """Thresholds, description and ranked tiers of the precision rule."""
    targets = {"mql": config.mql_precision, "sql": config.sql_precision}
    ranked = tuple(name for name, target in targets.items() if base_rate >= target)
    average = f"the average calibrated probability of the held-out leads ({format_percent(base_rate)}) already reaches"
    if not ranked:
        mql, sql = targets["mql"], targets["sql"]
        description = (f"precision: a lead is an MQL when its own calibrated probability is at least "
                       f"{format_percent(mql)}, an SQL when at least {format_percent(sql)}")
    elif ranked == ("mql",):
        mql, sql, how = _rank(best, times, config, sql=targets["sql"])
        description = (f"precision for SQLs (own calibrated probability at least {format_percent(sql)}), rank for "
                       f"MQLs: {average} the {format_percent(targets['mql'])} MQL target, so an average lead would "
                       f"qualify; {how}")
    else:
        mql, sql, how = _rank(best, times, config)
        description = (f"rank, not precision: {average} the {format_percent(targets['mql'])} MQL and "
                       f"{format_percent(targets['sql'])} SQL targets, so an average lead would qualify; {how}")
    return mql, sql, description, ranked


def _empty_tiers(best: np.ndarray, mql: float, sql: float, by_target: tuple[str, ...]) -> str:
    """What the description adds when a tier holds no held-out lead, so an empty tier never goes unexplained."""
    highest = f"(the highest probability is {format_percent(best.max())})" if len(best) else "(there are none)"
    if not (best >= sql).any():
        if "mql" in by_target and not (best >= mql).any():
            return f"; no held-out lead reaches the {format_percent(mql)} MQL target {highest}, so both tiers are empty"
        if "sql" in by_target:
            return f"; no held-out lead reaches the {format_percent(sql)} SQL target {highest}, so the SQL tier is empty"
        return "; the SQL tier is empty"
    if not ((best >= mql) & (best < sql)).any():
        if "mql" in by_target:
            return (f"; no held-out lead falls between the {format_percent(mql)} MQL and {format_percent(sql)} SQL "
                    "targets, so the MQL tier is empty")
        return "; the MQL tier is empty"
    return ""


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
    best = _per_lead_max(probability, pd.factorize(leads)[0])
    if config.rule == "capacity":
        mql, sql, how = _rank(best, times, config)
        description, ranked, by_target = f"capacity: {how}", (), ()
    else:
        base_rate = float(probability.mean()) if len(probability) else 0.0
        mql, sql, description, ranked = _precision(best, base_rate, times, config)
        by_target = tuple(name for name in ("mql", "sql") if name not in ranked)
    description += _empty_tiers(best, mql, sql, by_target)
    return Tiers(config.rule, mql, sql, margin_reaching(calibrator, mql), margin_reaching(calibrator, sql),
                 description, ranked)


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
