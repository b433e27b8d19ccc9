"""Why a lead scores as it does: SHAP contributions per business field, in log-odds and percentage points.

The model's margin (log-odds) is a weighted sum of its members' margins, so
its contributions are the same weighted sum of theirs:

- LightGBM: exact path-dependent TreeSHAP (``treeshap``), one column per
  feature, since the encoder keeps one column per feature;
- logistic regression: coefficient times the column's distance from its
  training mean (exact SHAP for a linear model), and the columns a feature
  became (its log, its missing flag, one indicator per category level) fold
  back into that feature.

Features derived from one business field (the counts of pricing-page views
over each window, the days since the last one) fold into that field too:
reasons and importances are per field, each reason naming the one or two
features that carry it.

Contributions add up to the margin. Probability points split the gap between
the lead's calibrated probability and that of a lead at the base margin in
the same proportions, so they add up too; calibration is monotone, so every
reason keeps its sign.
"""

from __future__ import annotations

import gc
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.features.registry import FeatureRegistry
from leadscore.features.sentences import describe
from leadscore.models.candidates import LightGBMCandidate, LogisticCandidate
from leadscore.models.treeshap import TreeShap
from leadscore.progress import Progress

TOP_REASONS = 3
CHUNK_ROWS = 100_000  # explained at once: bounds memory at about 100k x features x 8 bytes a buffer
CARRIED_BY_MAX = 5
FEATURES_PER_REASON = 2  # a reason about a field names its strongest features in the reason's direction
# A value training never saw is scored like the rare ones; its reason must not read as learned.
NEW_TO_THE_MODEL = ", new to the model, scored like rare values"


def folding(index: np.ndarray, width: int) -> np.ndarray:
    """0/1 matrix sending column i to column ``index[i]``: ``values @ folding(...)`` sums columns by group."""
    matrix = np.zeros((len(index), width))
    matrix[np.arange(len(index)), index] = 1.0
    return matrix


def first_of_each(index: np.ndarray) -> np.ndarray:
    """Position of the first member of each group, groups numbered in order of first appearance."""
    return np.unique(index, return_index=True)[1]


def business_fields(registry: FeatureRegistry, features: list[str]) -> tuple[list[str], np.ndarray]:
    """The business fields of ``features`` in order of first appearance, and the field index of each feature."""
    fields: list[str] = []
    index = []
    for name in features:
        field = registry[name].business_field
        if field not in fields:
            fields.append(field)
        index.append(fields.index(field))
    return fields, np.asarray(index, dtype=int)


@dataclass(frozen=True)
class Contributions:
    """Log-odds contributions of each feature (``features`` order) for a batch of rows, plus the base margin."""

    values: np.ndarray
    base: float
    features: list[str]

    @property
    def margin(self) -> np.ndarray:
        return self.base + self.values.sum(axis=1)


class _TreeMember:
    def __init__(self, booster, features: list[str]) -> None:
        self.explainer = TreeShap(booster)
        self.features = features

    def contributions(self, encoded: pd.DataFrame, out: np.ndarray) -> float:
        phi = self.explainer.contributions(encoded)
        # The booster read the encoder's columns in order (its own names may differ: no spaces).
        out[:, [self.features.index(column) for column in encoded.columns]] += phi[:, :-1]
        return float(phi[0, -1]) if len(phi) else self.explainer.expected_value


class _LinearMember:
    """Coefficient x (column - training mean), each transformed column credited to the feature it came from."""

    def __init__(self, pipeline, features: list[str]) -> None:
        self.transform = pipeline[:-1]
        model = pipeline[-1]
        columns = pipeline.named_steps["columns"]
        sources, means = [], []
        numeric_names = list(columns.transformers_[0][2])
        if numeric_names:  # a transformer given no columns is never fitted
            flags = columns.named_transformers_["numeric"][-2].flagged_  # MissingAsMedian: its flags follow the values
            for name in [*numeric_names, *np.asarray(numeric_names)[flags]]:
                sources.append(features.index(name))
                means.append(0.0)  # standardised: the scaler's training mean is zero
        indicators = columns.named_transformers_["categorical"]
        for name, levels in (indicators.levels_.items() if list(columns.transformers_[1][2]) else ()):
            frequencies = indicators.frequencies_[name]
            sources.extend([features.index(name)] * (len(levels) + 1))
            means.extend(frequencies)
        self.coefficients = model.coef_.ravel()
        self.sources = np.asarray(sources, dtype=int)
        self.means = np.asarray(means, dtype=float)
        self.base = float(model.intercept_[0] + self.coefficients @ self.means)
        self.folding = folding(self.sources, len(features))

    def contributions(self, encoded: pd.DataFrame, out: np.ndarray) -> float:
        if not len(encoded):
            return self.base  # scikit-learn's scaler refuses an empty batch
        columns = np.asarray(self.transform.transform(encoded), dtype=float)
        out += ((columns - self.means) * self.coefficients) @ self.folding
        return self.base


class Explainer:
    """Contributions, reasons, sub-scores and tiers for the rows a ``LeadScoringModel`` scores.

    Built once per model (it compiles each tree's pattern tables), then used
    on any number of batches.
    """

    def __init__(self, model) -> None:
        self.model = model
        self.features = list(model.features)
        self._members = []
        for member in model.members:
            if isinstance(member.candidate, LightGBMCandidate):
                explainer = _TreeMember(member.fitted, self.features)
            elif isinstance(member.candidate, LogisticCandidate):
                explainer = _LinearMember(member.fitted, self.features)
            else:
                raise TypeError(f"no explainer for {type(member.candidate).__name__}")
            self._members.append((member.weight, explainer))
        families = [model.registry[f].family for f in self.features]
        self.is_fit = np.array([family == "fit" for family in families])
        self.fields, self.field_index = business_fields(model.registry, self.features)
        self.folding = folding(self.field_index, len(self.fields))

    def contributions(self, frame: pd.DataFrame) -> Contributions:
        """Log-odds contributions of every feature for every row of ``frame`` (a feature table)."""
        return self.encoded_contributions(self.model.encode(frame))

    def encoded_contributions(self, encoded: pd.DataFrame) -> Contributions:
        total = np.zeros((len(encoded), len(self.features)))
        base = 0.0
        for weight, member in self._members:
            values = np.zeros_like(total)
            base += weight * member.contributions(encoded, values)
            total += weight * values
        return Contributions(total, base, self.features)

    def explain(
        self,
        frame: pd.DataFrame,
        progress: Progress = Progress(),
        keep_contributions: bool = False,
        keep_fields: bool = False,
    ) -> Explanations:
        """Probability, tier, sub-scores and the top reasons of every row, chunk by chunk.

        ``keep_contributions`` keeps every feature's log-odds, ``keep_fields``
        every business field's (``self.fields`` order).
        """
        parts = []
        with progress.task("Explaining the scores", total=len(frame)) as advance:
            for start in range(0, len(frame), CHUNK_ROWS):
                chunk = frame.iloc[start:start + CHUNK_ROWS]
                parts.append(self._explain_chunk(self.model.encode(chunk), keep_contributions, keep_fields))
                advance(len(chunk))
        if not parts:
            parts.append(self._explain_chunk(self.model.encode(frame), keep_contributions, keep_fields))
        return Explanations.concatenate(parts)

    def _explain_chunk(self, encoded: pd.DataFrame, keep: bool, keep_fields: bool = False) -> Explanations:
        contributions = self.encoded_contributions(encoded)
        values, base = contributions.values, contributions.base
        # The model's own margin, not the contributions' sum (equal to 1e-12): a lead's probability and
        # tier must not depend on whether it was explained.
        margin = self.model.encoded_margin(encoded) if len(encoded) else np.zeros(0)
        calibrator = self.model.calibrator
        probability = calibrator.predict(margin)
        base_probability = float(calibrator.predict(np.array([base]))[0])
        # Points: the secant of the calibration curve between the base margin and the row's margin.
        # Next to the base the secant becomes the slope there.
        gap = margin - base
        near = np.abs(gap) < 1e-6
        step = 1e-4
        slope_at_base = (calibrator.predict(np.array([base + step]))[0] - calibrator.predict(np.array([base - step]))[0]) / (2 * step)
        slope = np.where(near, slope_at_base, (probability - base_probability) / np.where(near, 1.0, gap))
        by_field = values @ self.folding
        top_for, top_against = _top(by_field, TOP_REASONS)
        for_features = _strongest_features(values, top_for, self.field_index, 1.0)
        against_features = _strongest_features(values, top_against, self.field_index, -1.0)
        fit = values[:, self.is_fit].sum(axis=1)
        engagement = values[:, ~self.is_fit].sum(axis=1)
        tiers = self.model.tiers
        tier = tiers.assign(probability) if tiers is not None else np.full(len(margin), "none", dtype=object)
        carried = _carried_by(by_field, margin, tier, tiers)
        subscores = self.model.subscores
        return Explanations(
            probability=probability,
            margin=margin,
            base=base,
            base_probability=base_probability,
            points_per_log_odds=100.0 * slope,
            fit_log_odds=fit,
            engagement_log_odds=engagement,
            fit_score=subscores.fit_score(fit) if subscores else np.full(len(fit), np.nan),
            engagement_score=subscores.engagement_score(engagement) if subscores else np.full(len(fit), np.nan),
            tier=tier,
            top_for=top_for,
            top_for_log_odds=_values_at(by_field, top_for),
            top_for_features=for_features,
            top_for_feature_log_odds=_values_at(values, for_features),
            top_against=top_against,
            top_against_log_odds=_values_at(by_field, top_against),
            top_against_features=against_features,
            top_against_feature_log_odds=_values_at(values, against_features),
            carried_by=carried,
            contributions=values if keep else None,
            field_log_odds=by_field if keep_fields else None,
        )


def _top(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices of the k largest positive and k most negative values of each row, strongest first; -1 pads."""
    k = min(k, values.shape[1])
    if k == 0:
        empty = np.zeros((len(values), 0), dtype=int)
        return empty, empty

    def strongest(signed: np.ndarray) -> np.ndarray:
        candidates = np.argpartition(-signed, k - 1, axis=1)[:, :k]
        chosen = np.take_along_axis(signed, candidates, axis=1)
        order = np.argsort(-chosen, axis=1, kind="stable")
        indices = np.take_along_axis(candidates, order, axis=1)
        return np.where(np.take_along_axis(signed, indices, axis=1) > 0, indices, -1)

    return strongest(values), strongest(-values)


def _strongest_features(values: np.ndarray, top: np.ndarray, field_index: np.ndarray, direction: float) -> np.ndarray:
    """(rows, reasons, 2): for each chosen field, its features pushing hardest in ``direction``; -1 pads."""
    rows = np.arange(len(values))
    chosen = np.full((*top.shape, FEATURES_PER_REASON), -1)
    for slot in range(top.shape[1]):
        score = np.where(field_index[None, :] == top[:, slot, None], direction * values, 0.0)
        for place in range(FEATURES_PER_REASON):
            best = np.argmax(score, axis=1) if score.shape[1] else np.zeros(len(values), dtype=int)
            pushes = score[rows, best] > 0 if score.shape[1] else np.zeros(len(values), dtype=bool)
            chosen[:, slot, place] = np.where(pushes, best, -1)
            if score.shape[1]:
                score[rows, best] = 0.0
    return chosen


def _values_at(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``values`` of each row at its column ``indices`` (any trailing shape), 0 where the index is -1."""
    flat = indices.reshape(indices.shape[0], int(np.prod(indices.shape[1:])))
    picked = np.take_along_axis(values, np.maximum(flat, 0), axis=1) * (flat >= 0)
    return picked.reshape(indices.shape)


def _carried_by(values, margin, tier, tiers) -> np.ndarray:
    """For leads in a tier, the strongest positive reasons (fields) without which it would fall below its threshold."""
    carried = np.full((len(margin), CARRIED_BY_MAX), -1)
    if tiers is None:
        return carried
    for name, threshold in (("mql", tiers.mql_margin), ("sql", tiers.sql_margin)):
        rows = np.flatnonzero(tier == name)
        if not len(rows):
            continue
        positive = np.clip(values[rows], 0, None)
        order = np.argsort(-positive, axis=1, kind="stable")
        removed = np.cumsum(np.take_along_axis(positive, order, axis=1), axis=1)
        # The first k reasons whose removal takes the margin below the threshold; none when even
        # removing them all would not (the lead's other fields put it there).
        below = margin[rows, None] - removed < threshold
        needed = np.where(below.any(axis=1), np.argmax(below, axis=1) + 1, 0)
        width = min(CARRIED_BY_MAX, values.shape[1])
        keep = np.arange(width)[None, :] < needed[:, None]
        carried[rows, :width] = np.where(keep, order[:, :width], -1)
    return carried


@dataclass
class Explanations:
    """Explanations of a batch of rows, as arrays (row-aligned with the explained frame)."""

    probability: np.ndarray
    margin: np.ndarray
    base: float
    base_probability: float
    points_per_log_odds: np.ndarray  # percentage points per unit of log-odds, per row
    fit_log_odds: np.ndarray
    engagement_log_odds: np.ndarray
    fit_score: np.ndarray  # 0-100
    engagement_score: np.ndarray  # 0-100
    tier: np.ndarray  # "none", "mql", "sql": the CRM's codes ("none" too when the model has no tiers)
    top_for: np.ndarray  # (rows, 3) business-field indices, -1 when fewer reasons push the score up
    top_for_log_odds: np.ndarray
    top_for_features: np.ndarray  # (rows, 3, 2) feature indices: each reason's strongest features, -1 pads
    top_for_feature_log_odds: np.ndarray
    top_against: np.ndarray
    top_against_log_odds: np.ndarray
    top_against_features: np.ndarray
    top_against_feature_log_odds: np.ndarray
    carried_by: np.ndarray  # (rows, 5) field indices of the reasons that carried the lead over its tier's threshold
    contributions: np.ndarray | None = None
    field_log_odds: np.ndarray | None = None  # (rows, fields), in the explainer's field order

    @classmethod
    def concatenate(cls, parts: list[Explanations]) -> Explanations:
        first = parts[0]
        fields = {}
        for name in cls.__dataclass_fields__:
            value = getattr(first, name)
            if name in ("base", "base_probability"):
                fields[name] = value
            elif value is None:
                fields[name] = None
            else:
                fields[name] = np.concatenate([getattr(part, name) for part in parts])
        return cls(**fields)

    def __len__(self) -> int:
        return len(self.probability)

    def points(self, log_odds: np.ndarray) -> np.ndarray:
        return log_odds * self.points_per_log_odds[:, None]


def format_points(points: float) -> str:
    """"+12 pts", "+1.2 pts", "-0.04 pts": enough digits to tell reasons apart, no more."""
    size = abs(points)
    digits = 0 if size >= 9.95 else 1 if size >= 0.095 else 2
    return f"{points:+.{digits}f} pts"


def format_percent(probability: float) -> str:
    """"34 %", "5.3 %", "0.042 %": two significant digits below 10 %, where small probabilities differ."""
    percent = 100 * probability
    if percent >= 9.95:
        return f"{percent:.0f} %"
    if percent >= 0.995 or percent == 0:
        return f"{percent:.1f} %"
    return f"{percent:.2g} %"


def reason_records(
    explanations: Explanations,
    frame: pd.DataFrame,
    registry: FeatureRegistry,
    features: list[str],
    unseen: np.ndarray | None = None,
) -> list[dict]:
    """Per row: the reasons for and against as data, each with its sentence, and what carried it into its tier.

    A reason is a business field. Its data: ``field``, ``label`` (the
    field's), ``feature`` and ``value`` (its strongest feature, as the lead's
    record holds it: the raw category, not the model's "(other)" level),
    ``log_odds``, ``points``, ``family``, ``sentence``, and ``features``:
    the one or two features the sentence names, each with its own share.
    ``unseen`` (rows, features) marks values the model never saw at training:
    their features carry ``"unseen": true`` and their sentences say so.
    """
    with _collector_paused():
        return _reason_records(explanations, frame, registry, features, unseen)


@contextmanager
def _collector_paused():
    """Building millions of small lists and dicts (no cycles among them) sets off full garbage collections
    that walk every object alive; pausing the collector took the explanation columns of 100,000 rows
    from 15 s to 9 s."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _reason_records(explanations, frame, registry, features, unseen) -> list[dict]:
    fields, field_index = business_fields(registry, features)
    specs = [registry[f] for f in features]
    field_specs = [specs[first] for first in first_of_each(field_index)]
    columns = [frame[f].to_numpy(dtype=object) for f in features]
    sentences: dict[tuple[int, object], str] = {}
    # Numbers are prepared for all rows at once; the loop below only assembles them (a million rows a job).
    scale = explanations.points_per_log_odds
    sides = []
    for top, log_odds, members, member_log_odds in (
        (explanations.top_for, explanations.top_for_log_odds, explanations.top_for_features,
         explanations.top_for_feature_log_odds),
        (explanations.top_against, explanations.top_against_log_odds, explanations.top_against_features,
         explanations.top_against_feature_log_odds),
    ):
        points = log_odds * scale[:, None]
        member_points = member_log_odds * scale[:, None, None]
        sides.append((top.tolist(), np.round(log_odds, 6).tolist(), np.round(points, 4).tolist(), points.tolist(),
                      members.tolist(), np.round(member_log_odds, 6).tolist(), np.round(member_points, 4).tolist()))

    def reason(row: int, field: int, log_odds, points, exact_points, members, member_log_odds, member_points) -> dict:
        shown, texts = [], []
        for index, share, share_points in zip(members, member_log_odds, member_points):
            if index < 0:
                continue
            value = _plain(columns[index][row])
            if shown and _absent(value) and _absent(shown[0]["value"]):
                continue  # "Never viewed the pricing page; no pricing-page views ever" says it twice
            key = (index, value)
            if key not in sentences:
                sentences[key] = describe(specs[index], value)
            new = unseen is not None and bool(unseen[row, index])
            text = sentences[key] + (NEW_TO_THE_MODEL if new else "")
            texts.append(text if not texts else _lower_first(text))
            shown.append({"feature": specs[index].name, "label": specs[index].label, "value": value,
                          "log_odds": share, "points": share_points, **({"unseen": True} if new else {})})
        spec = field_specs[field]
        return {
            "field": fields[field],
            "feature": shown[0]["feature"] if shown else spec.name,
            "label": spec.business_label,
            "value": shown[0]["value"] if shown else None,
            "log_odds": log_odds,
            "points": points,
            "family": spec.family,
            "sentence": f"{'; '.join(texts)} ({format_points(exact_points)})",
            "features": shown,
        }

    records = []
    tiers = explanations.tier.tolist()
    carried_by = explanations.carried_by.tolist()
    for row in range(len(explanations)):
        reasons = []
        for top, log_odds, points, exact, members, member_log_odds, member_points in sides:
            reasons.append([
                reason(row, top[row][k], log_odds[row][k], points[row][k], exact[row][k], members[row][k],
                       member_log_odds[row][k], member_points[row][k])
                for k in range(len(top[row])) if top[row][k] >= 0
            ])
        records.append({"for": reasons[0], "against": reasons[1], "tier": str(tiers[row]),
                        "carried_by": [fields[i] for i in carried_by[row] if i >= 0]})
    return records



def _absent(value) -> bool:
    """No value or none of it: the lead never did the thing the feature counts."""
    return value is None or value == 0


def field_labels(registry: FeatureRegistry, features: list[str]) -> dict[str, str]:
    """Business field name to its label, for the fields of ``features``."""
    return {registry[name].business_field: registry[name].business_label for name in features}


def _lower_first(sentence: str) -> str:
    """The second part of a joined reason: "...; last viewed the pricing page 3 days ago"."""
    return sentence[:1].lower() + sentence[1:] if sentence[:2] != sentence[:2].upper() else sentence


def _plain(value):
    """A value JSON can hold: numbers as float or int, missing as None, the rest as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return str(value)


def explanation_columns(
    explanations: Explanations,
    frame: pd.DataFrame,
    registry: FeatureRegistry,
    features: list[str],
    unseen: np.ndarray | None = None,
) -> pd.DataFrame:
    """The scoring file's explanation columns: tier, fit and engagement scores, reason_1..3 and all reasons as JSON."""
    records = reason_records(explanations, frame, registry, features, unseen)
    columns = {
        "tier": explanations.tier,
        "fit_score": pd.array(np.round(explanations.fit_score), dtype="Int64"),
        "engagement_score": pd.array(np.round(explanations.engagement_score), dtype="Int64"),
    }
    for k in range(TOP_REASONS):
        columns[f"reason_{k + 1}"] = [r["for"][k]["sentence"] if len(r["for"]) > k else "" for r in records]
    labels = field_labels(registry, features)
    columns["tier_reasons"] = [", ".join(labels[name] for name in r["carried_by"]) for r in records]
    with _collector_paused():
        columns["reasons"] = [json.dumps(r, ensure_ascii=False) for r in records]
    return pd.DataFrame(columns, index=frame.index)
