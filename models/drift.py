"""Has the population being scored moved away from the one the model was checked on? PSI per feature and score.

At training, ``DriftReference.fit`` fixes bins on a reference sample and
keeps how many reference rows fell in each: numbers and the calibrated
probability by the reference's deciles, categories by their frequent levels.
Every scoring run is measured against the same bins with
``DriftReference.measure``, which returns a ``DriftReport``.

The population stability index of a batch of N rows against M reference rows
is ``sum((p - q) * ln(p / q))`` over the bins. Without any drift it is not
zero: ``PSI / (1/N + 1/M)`` follows about a chi-squared law with ``bins - 1``
degrees of freedom (Yurdakul & Naranjo, arXiv 2307.11878), so 50 leads show
PSI above 0.25 by chance alone. Each test therefore has a warning and a
holding level that are the larger of a practical floor (``DriftRule``) and a
high quantile of that noise, Bonferroni-corrected over every test of the run,
so that a run of 90 features does not cry wolf every night.

Holding is for what moves scores: the score itself, and features carrying at
least ``material_share`` of the model's explanation weight. Other features
can only warn. Categorical values the training rows never held are counted
too: the encoder scores them like its rare levels, so a renamed channel
quietly scores every lead of it as "(other)".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.special import chdtri
from scipy.stats import binom

from leadscore.errors import LeadscoreError
from leadscore.features.registry import FeatureRegistry

VALUE_BINS = 10
MAX_LEVELS = 20
MIN_BIN_SHARE = 0.01
# Laplace smoothing: every bin gets one pseudo-row on each side, so an empty bin's share is
# 1 / (rows + bins) instead of zero and its log stays finite. Half a row undercuts the chi-squared
# noise model for a few hundred rows and many small bins (up to 2.8 times the promised false
# alarms, measured); one row keeps it at or under the promise at every size, and shrinks only
# PSIs that small samples cannot resolve anyway.
PSEUDO_ROWS = 1.0
SCORE = "score"
SCORE_LABEL = "the score"


@dataclass(frozen=True)
class DriftRule:
    """Warning and holding levels: each the larger of its floor and its quantile of the sampling noise.

    ``material_share``: the part of the model's explanation weight a feature
    must carry to hold a run; 2 % is about twice a typical feature's part in a
    90-feature model, and a feature below it moves scores little enough for
    the score's own PSI to catch what it does. Unseen categorical values warn
    and hold when their share exceeds the reference's own by the given excess
    (and by more than the binomial noise of the batch).
    """

    warn_floor: float = 0.10
    hold_floor: float = 0.25
    warn_confidence: float = 0.99
    hold_confidence: float = 0.999
    material_share: float = 0.02
    unseen_warn_excess: float = 0.05
    unseen_hold_excess: float = 0.20


def psi(reference_counts: np.ndarray, batch_counts: np.ndarray) -> np.ndarray:
    """PSI of batch counts against reference counts over the last axis, Laplace-smoothed.

    A bin empty on both sides holds no evidence and adds nothing (smoothed, it
    would add an artefact of the two sample sizes).
    """
    reference = np.asarray(reference_counts, dtype=float)
    batch = np.asarray(batch_counts, dtype=float)
    bins = reference.shape[-1]
    expected = (reference + PSEUDO_ROWS) / (reference.sum(axis=-1, keepdims=True) + PSEUDO_ROWS * bins)
    actual = (batch + PSEUDO_ROWS) / (batch.sum(axis=-1, keepdims=True) + PSEUDO_ROWS * bins)
    terms = (actual - expected) * np.log(actual / expected)
    return np.where(reference + batch > 0, terms, 0.0).sum(axis=-1)


def noise_level(bins: int, rows: float, reference_rows: float, confidence: float, tests: int = 1) -> float:
    """The PSI undrifted samples exceed with probability ``(1 - confidence) / tests``."""
    quantile = chdtri(max(bins - 1, 1), (1 - confidence) / tests)
    return float((1 / rows + 1 / reference_rows) * quantile)


def unseen_level(reference_share: float, rows: int, reference_rows: float, confidence: float, tests: int,
                 excess: float) -> float:
    """Share of never-seen values above which a batch counts as changed: the reference's own share plus
    ``excess``, or what a binomial batch at the reference's rate exceeds with probability ``(1 - confidence) / tests``."""
    rate = (reference_share * reference_rows + 0.5) / (reference_rows + 1)  # Jeffreys: a rate of zero is not certain
    noise = binom.isf((1 - confidence) / tests, rows, rate) / rows
    return float(max(reference_share + excess, noise))


def kish_rows(groups: Iterable) -> float:
    """Effective sample size of rows in groups that share values (a lead at several cutoffs): (sum n)² / sum n²."""
    sizes = pd.Series(np.asarray(groups)).value_counts().to_numpy(dtype=float)
    return float(sizes.sum() ** 2 / (sizes**2).sum())


def _numbers(values) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values.astype(float)
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=float, na_value=np.nan)
    # The model's encoder refuses text that is not a number before anything is scored; here it is just missing.
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _decile_edges(present: np.ndarray) -> np.ndarray:
    """Upper edges of the reference's deciles; where ties fill several deciles, the values left are split
    again into the bins left, each still holding at least ``MIN_BIN_SHARE``.

    Plain deduplicated deciles would leave the score three bins when nine leads in ten share the
    calibrator's lowest probability: the tenth, where tiers are decided, would be one bin.
    """
    values, counts = np.unique(present, return_counts=True)
    cumulative = np.cumsum(counts)
    edges, below = [], 0
    for bins_left in range(VALUE_BINS, 1, -1):
        target = below + max((cumulative[-1] - below) / bins_left, MIN_BIN_SHARE * cumulative[-1])
        at = int(np.searchsorted(cumulative, target - 1e-9))
        if at >= len(values) - 1:  # an edge at the maximum would leave the top bin empty
            break
        edges.append(values[at])
        below = cumulative[at]
    return np.asarray(edges, dtype=float)


def _distinct_text(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each row's code (-1: missing) and each code's text, read as the encoder reads levels (``str`` of the value)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes, uniques = values.cat.codes.to_numpy(), values.cat.categories
    else:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return np.asarray(codes), np.array([str(value) for value in uniques], dtype=object)


@dataclass(frozen=True, eq=False)
class FeatureBins:
    """One feature's fixed bins and the reference rows in each.

    Numeric: value bins closed on the right at ``edges`` (the reference's
    deciles, ties merged), the first and last open-ended so that values
    beyond the reference fall in the end bins; then a missing bin.
    Categorical: one bin per frequent level in ``levels``, then "other" (rare
    and never-seen levels), then missing. ``seen`` holds every level the
    training rows held; ``reference_unseen`` the share of reference rows
    holding another one.
    """

    name: str
    label: str
    kind: str
    edges: np.ndarray
    levels: tuple[str, ...]
    counts: np.ndarray
    weight_share: float
    seen: frozenset[str] | None = None
    reference_unseen: float = 0.0

    @classmethod
    def numeric(cls, name: str, label: str, values, weight_share: float = 0.0) -> FeatureBins:
        numbers = _numbers(values)
        present = numbers[~np.isnan(numbers)]
        edges = _decile_edges(present) if len(present) else np.zeros(0)
        empty = cls(name, label, "numeric", edges, (), np.zeros(len(edges) + 2), weight_share)
        return replace(empty, counts=empty.tally(numbers)[0])

    @classmethod
    def categorical(cls, name: str, label: str, values: pd.Series, weight_share: float = 0.0,
                    seen: Iterable[str] | None = None) -> FeatureBins:
        codes, text = _distinct_text(values)
        names, merged = np.unique(text.astype(str), return_inverse=True)  # 1 and "1" are one level to the encoder
        frequency = np.bincount(merged, np.bincount(codes[codes >= 0], minlength=len(text)), minlength=len(names))
        frequent = np.flatnonzero(frequency >= MIN_BIN_SHARE * max(len(values), 1))
        # Most frequent first, ties by name: the same reference gives the same bins.
        order = np.lexsort((names[frequent], -frequency[frequent]))
        levels = tuple(str(level) for level in names[frequent][order][:MAX_LEVELS])
        seen = frozenset(map(str, seen)) if seen is not None else None
        empty = cls(name, label, "categorical", np.zeros(0), levels, np.zeros(len(levels) + 2), weight_share, seen)
        counts, unseen = empty.tally(values)
        return replace(empty, counts=counts, reference_unseen=float(unseen.mean()) if unseen is not None and len(unseen) else 0.0)

    @property
    def bins(self) -> int:
        """Bins holding reference rows: the chi-squared law's degrees of freedom plus one."""
        return int(np.count_nonzero(self.counts))

    def tally(self, values) -> tuple[np.ndarray, np.ndarray | None]:
        bins, unseen = self.assign(values)
        return np.bincount(bins, minlength=len(self.counts)).astype(float), unseen

    def assign(self, values) -> tuple[np.ndarray, np.ndarray | None]:
        """Each row's bin, and whether each row holds a never-seen level (None: not measured)."""
        if self.kind == "numeric":
            numbers = _numbers(values)
            bins = np.searchsorted(self.edges, numbers, side="left")
            bins[np.isnan(numbers)] = len(self.edges) + 1
            return bins, None
        codes, text = _distinct_text(pd.Series(values) if isinstance(values, np.ndarray) else values)
        position = {level: i for i, level in enumerate(self.levels)}
        other, missing = len(self.levels), len(self.levels) + 1
        # Code -1 (missing) reads the appended last entry.
        bin_of = np.array([*(position.get(value, other) for value in text), missing], dtype=np.intp)
        if self.seen is None:
            return bin_of[codes], None
        unseen_of = np.array([*(value not in self.seen for value in text), False], dtype=bool)
        return bin_of[codes], unseen_of[codes]


@dataclass(frozen=True, eq=False)
class DriftReport:
    """One run's drift: per-feature table, the score's PSI and levels, never-seen values, status and why.

    ``features`` has one row per feature, worst first: feature, label, kind,
    bins, psi, warn_level, hold_level, weight_share, can_hold, unseen_share,
    unseen_warn_level, unseen_hold_level, status (the unseen columns are
    missing for numeric features). ``status`` is ``ok``, ``warn`` or
    ``hold``; ``reasons`` names every test beyond its level, holds first;
    ``message`` is one line a person reads.
    """

    status: str
    message: str
    reasons: tuple[str, ...]
    features: pd.DataFrame
    score: dict  # psi, bins, warn_level, hold_level, status
    unseen_share: float  # rows holding at least one categorical value the training rows never held
    rows: int
    reference_rows: int
    effective_reference_rows: float

    def as_dict(self) -> dict:
        """The report as JSON-ready plain values (missing numbers as None), for a table of scoring runs."""
        def number(value: float) -> float | None:
            return float(value) if np.isfinite(value) else None

        return {
            "status": self.status, "message": self.message, "reasons": list(self.reasons), "rows": self.rows,
            "reference_rows": self.reference_rows, "effective_reference_rows": number(self.effective_reference_rows),
            "unseen_share": number(self.unseen_share),
            "score": {key: number(value) if isinstance(value, float) else value for key, value in self.score.items()},
            "features": json.loads(self.features.to_json(orient="records", double_precision=15)),
        }


@dataclass(frozen=True, eq=False)
class DriftReference:
    """Fixed bins and reference counts for every feature and the score, fitted at training.

    Examples
    --------
    >>> from leadscore.features.registry import FeatureRegistry, FeatureSpec
    >>> registry = FeatureRegistry([FeatureSpec("visits", "Visits", "engagement", "Site visits.")])
    >>> rng = np.random.default_rng(0)
    >>> reference = DriftReference.fit(pd.DataFrame({"visits": rng.poisson(3, 2_000)}), rng.random(2_000),
    ...                                registry, {"visits": 1.0})
    >>> reference.measure(pd.DataFrame({"visits": rng.poisson(3, 500)}), rng.random(500)).status
    'ok'
    >>> reference.measure(pd.DataFrame({"visits": rng.poisson(6, 500)}), rng.random(500)).status
    'hold'
    """

    features: tuple[FeatureBins, ...]
    score: FeatureBins
    rows: int
    effective_rows: float
    rule: DriftRule = DriftRule()

    @classmethod
    def fit(cls, features: pd.DataFrame, probability: np.ndarray, registry: FeatureRegistry,
            weight_share: Mapping[str, float], seen: Mapping[str, Iterable[str]] | None = None,
            groups: Iterable | None = None, rule: DriftRule = DriftRule()) -> DriftReference:
        """Bins and reference counts from raw feature values (before the encoder) and calibrated probabilities.

        ``weight_share``: each feature's part of the model's explanation
        weight. ``seen``: every level the training rows held, per categorical
        feature. ``groups``: the lead of each row, when a lead appears at
        several cutoffs (its rows are not independent draws).
        """
        _require_columns(features, registry.names)
        probability = np.asarray(probability, dtype=float)
        if not len(features) or len(probability) != len(features):
            raise ValueError(f"a drift reference needs rows and one probability each: {len(features)} rows, "
                             f"{len(probability)} probabilities")
        binned = tuple(
            FeatureBins.numeric(spec.name, spec.label, features[spec.name], weight_share.get(spec.name, 0.0))
            if spec.kind == "numeric" else
            FeatureBins.categorical(spec.name, spec.label, features[spec.name], weight_share.get(spec.name, 0.0),
                                    (seen or {}).get(spec.name))
            for spec in registry
        )
        effective = kish_rows(groups) if groups is not None else float(len(features))
        return cls(binned, FeatureBins.numeric(SCORE, SCORE_LABEL, probability, 1.0), len(features), effective, rule)

    @property
    def tests(self) -> int:
        """Tests of one run, for the Bonferroni correction: each feature, the score, each never-seen count."""
        return len(self.features) + 1 + sum(bins.seen is not None for bins in self.features)

    def measure(self, features: pd.DataFrame, probability: np.ndarray, rule: DriftRule | None = None) -> DriftReport:
        """PSI of every feature and of the score, the share of never-seen values, and the status they give."""
        rule = rule or self.rule
        _require_columns(features, [bins.name for bins in self.features])
        probability = np.asarray(probability, dtype=float)
        rows = len(features)
        if len(probability) != rows:
            raise LeadscoreError(f"Drift: {rows:,} leads but {len(probability):,} scores; give one score per lead.")
        tests, reference = self.tests, self.effective_rows
        records, any_unseen = [], np.zeros(rows, dtype=bool)
        for bins in self.features:
            counts, unseen_rows = bins.tally(features[bins.name])
            record = _levels(bins, counts, rows, reference, rule, tests)
            record.update(weight_share=bins.weight_share, can_hold=bins.weight_share >= rule.material_share,
                          unseen_share=np.nan, unseen_warn_level=np.nan, unseen_hold_level=np.nan)
            if unseen_rows is not None and rows:
                any_unseen |= unseen_rows
                record["unseen_share"] = float(unseen_rows.mean())
                for kind, confidence, excess in (("warn", rule.warn_confidence, rule.unseen_warn_excess),
                                                 ("hold", rule.hold_confidence, rule.unseen_hold_excess)):
                    record[f"unseen_{kind}_level"] = unseen_level(bins.reference_unseen, rows, reference, confidence,
                                                                  tests, excess)
            records.append({**record, "status": _status(record)})
        score = _levels(self.score, self.score.tally(probability)[0], rows, reference, rule, tests)
        score["status"] = _status({**score, "can_hold": True})
        table = _worst_first(pd.DataFrame.from_records(records, columns=COLUMNS))
        reasons = _reasons(table, score, rule)
        statuses = {*table["status"], score["status"]}
        status = "hold" if "hold" in statuses else "warn" if "warn" in statuses else "ok"
        measured_unseen = rows and any(bins.seen is not None for bins in self.features)
        return DriftReport(
            status, _message(status, reasons, table, rows, self.rows), tuple(text for _, text in reasons), table,
            {key: score[key] for key in ("psi", "bins", "warn_level", "hold_level", "status")},
            float(any_unseen.mean()) if measured_unseen else np.nan, rows, self.rows, reference,
        )


COLUMNS = ["feature", "label", "kind", "bins", "psi", "warn_level", "hold_level", "weight_share", "can_hold",
           "unseen_share", "unseen_warn_level", "unseen_hold_level", "status"]


def _require_columns(frame: pd.DataFrame, names: list[str]) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise LeadscoreError(f"Drift: the leads lack {len(missing)} feature column(s) the model was trained on: "
                             f"{', '.join(map(repr, missing[:10]))}{' ...' if len(missing) > 10 else ''}.")


def _levels(bins: FeatureBins, counts: np.ndarray, rows: int, reference_rows: float, rule: DriftRule, tests: int) -> dict:
    """PSI and levels of one test; with no rows, nothing is measured and no level applies."""
    def level(floor: float, confidence: float) -> float:
        return max(floor, noise_level(bins.bins, rows, reference_rows, confidence, tests)) if rows else np.nan

    return {"feature": bins.name, "label": bins.label, "kind": bins.kind, "bins": bins.bins,
            "psi": float(psi(bins.counts, counts)) if rows else np.nan,
            "warn_level": level(rule.warn_floor, rule.warn_confidence),
            "hold_level": level(rule.hold_floor, rule.hold_confidence)}


def _status(record: dict) -> str:
    def beyond(kind: str) -> bool:
        return record["psi"] > record[f"{kind}_level"] or \
            record.get("unseen_share", np.nan) > record.get(f"unseen_{kind}_level", np.nan)

    return "hold" if record["can_hold"] and beyond("hold") else "warn" if beyond("warn") else "ok"


def _worst_first(table: pd.DataFrame) -> pd.DataFrame:
    column = {name: table[name].to_numpy(dtype=float) for name in ("psi", "warn_level", "unseen_share", "unseen_warn_level")}
    with np.errstate(invalid="ignore"):
        excess = np.fmax(column["psi"] / column["warn_level"], column["unseen_share"] / column["unseen_warn_level"])
    rank = np.searchsorted(["hold", "ok", "warn"], table["status"].to_numpy(dtype=object))
    order = np.lexsort((-np.nan_to_num(excess), np.array([0, 2, 1])[rank]))
    return table.iloc[order].reset_index(drop=True)


def _reasons(table: pd.DataFrame, score: dict, rule: DriftRule) -> list[tuple[str, str]]:
    """(severity, sentence) for every test beyond its level: holds first, the score before features, worst first."""
    found = []
    if score["status"] != "ok":
        found.append((score["status"], f"the score (PSI {score['psi']:.2f} > {score[score['status'] + '_level']:.2f})"))
    for row in table[table["status"] != "ok"].itertuples():
        if row.psi > row.warn_level:
            holds = row.can_hold and row.psi > row.hold_level
            light = f", {row.weight_share:.1%} of the model's weight, under {rule.material_share:.0%}" \
                if not row.can_hold and row.psi > row.hold_level else ""
            level = row.hold_level if holds else row.warn_level
            found.append(("hold" if holds else "warn", f"{row.label} (PSI {row.psi:.2f} > {level:.2f}{light})"))
        if row.unseen_share > row.unseen_warn_level:
            holds = row.can_hold and row.unseen_share > row.unseen_hold_level
            level = row.unseen_hold_level if holds else row.unseen_warn_level
            found.append(("hold" if holds else "warn", f"{row.label} ({row.unseen_share:.0%} of leads hold values "
                                                       f"never seen in training > {level:.0%})"))
    return sorted(found, key=lambda item: item[0] != "hold")


def _message(status: str, reasons: list[tuple[str, str]], table: pd.DataFrame, rows: int, reference_rows: int) -> str:
    def named(severity: str, limit: int = 3) -> str:
        items = [text for kind, text in reasons if kind == severity]
        return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")

    if not rows:
        return "No leads to measure for drift."
    against = f"{rows:,} leads against {reference_rows:,} reference rows"
    if status == "hold":
        warnings = f"; warnings: {named('warn')}" if any(kind == "warn" for kind, _ in reasons) else ""
        return f"Drift holds the scores: {named('hold')}{warnings}. {against}."
    if status == "warn":
        return f"Drift warning: {named('warn')}. {against}."
    worst = table.iloc[0]
    return (f"No drift beyond sampling noise: {against} (largest: {worst['label']}, PSI {worst['psi']:.2f} under "
            f"{worst['warn_level']:.2f}).")
