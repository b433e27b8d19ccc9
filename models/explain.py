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

A field is a reason only when it is material for the lead (``ReasonRule``):
it moves the lead's probability by enough points and carries a real share
of everything that moves the lead. A reason names its field's strongest
feature, and a second one only when it is another measure of the field (the
days since the last pricing-page view beside the views over 30 days, never
a second window of the same count) and carries a real part of the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.errors import LeadscoreError
from leadscore.features.registry import FeatureRegistry
from leadscore.models.candidates import LightGBMCandidate, LogisticCandidate
from leadscore.models.encoding import EncodedRows
from leadscore.models.linear_form import linear_form
from leadscore.models.treeshap import TreeShap
from leadscore.progress import Progress

TOP_REASONS = 3
CHUNK_ROWS = 100_000  # explained at once: bounds memory at about 100k x features x 8 bytes a buffer
CARRIED_BY_MAX = 5
FEATURES_PER_REASON = 2  # a reason about a field names its strongest features in the reason's direction
MIN_REASON_POINTS = 0.5
MIN_REASON_SHARE = 0.10
# Below this a reason would print as "+0.00 pts" and could not show which way it pushes.
SMALLEST_SHOWN_POINTS = 0.01


def folding(index: np.ndarray, width: int) -> np.ndarray:
    """0/1 matrix sending column i to column ``index[i]``: ``values @ folding(...)`` sums columns by group."""
    matrix = np.zeros((len(index), width))
    matrix[np.arange(len(index)), index] = 1.0
    return matrix


def first_of_each(index: np.ndarray) -> np.ndarray:
    """Position of the first member of each group, groups numbered in order of first appearance."""
    return np.unique(index, return_index=True)[1]


def _numbered(keys: list) -> tuple[list, np.ndarray]:
    """The distinct keys in order of first appearance, and the position of each key among them."""
    distinct = list(dict.fromkeys(keys))
    position = {key: number for number, key in enumerate(distinct)}
    return distinct, np.asarray([position[key] for key in keys], dtype=int)


def business_fields(registry: FeatureRegistry, features: list[str]) -> tuple[list[str], np.ndarray]:
    """The business fields of ``features`` in order of first appearance, and the field index of each feature."""
    return _numbered([registry[name].business_field for name in features])


def measures(registry: FeatureRegistry, features: list[str]) -> np.ndarray:
    """Index of each feature's measure: features of one business field whose labels differ only after their last
    comma ("Pricing-page views, last 7 days" and "..., last 30 days") are windows of one measure."""
    return _numbered([(registry[name].business_field, registry[name].label.rsplit(", ", 1)[0]) for name in features])[1]


@dataclass(frozen=True)
class ReasonRule:
    """When a business field is worth a reason for one lead: it moves the lead's probability by ``min_points``
    or more (and by what two decimals show) AND carries ``min_share`` or more of the lead's movement, the sum of
    the absolute contributions of all its fields.

    Points alone let noise through where probability moves fast: near 50 %, a tenth of a log-odd is 2.5 pts.
    Why a tenth: on the table of ``tests/test_reasons.py`` (four drivers, four noise columns, LightGBM; seeds 7
    to 9) a noise column's share is under 8-9 % for 99 % of leads and a driver's median share is a fifth; on the
    simulated CRM's 26 fields, a lead's third-strongest field holds a tenth (median over the leads some field
    moves by 0.5 pts). So a lead moved by a few fields keeps up to three reasons each way, and a lead moved a
    little by many says that nothing stands out.
    """

    min_points: float = MIN_REASON_POINTS
    min_share: float = MIN_REASON_SHARE

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_points) and self.min_points >= 0):
            raise LeadscoreError(
                f"The minimum points of a reason must be a number of percentage points, 0 or more; got "
                f"{self.min_points!r}. Use e.g. 0.5 (the default) or 1."
            )
        if not 0 <= self.min_share <= 1:
            raise LeadscoreError(
                f"The minimum share of a reason must be between 0 and 1 (a share of the lead's movement); got "
                f"{self.min_share!r}. Use e.g. 0.1 (the default)."
            )

    @property
    def shown_points(self) -> float:
        """The points a reason needs, at least what a printed reason can show."""
        return max(float(self.min_points), SMALLEST_SHOWN_POINTS)

    def material(self, log_odds: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(rows, fields) True where the field is material for the row; ``points`` are ``log_odds`` in points."""
        movement = np.abs(log_odds).sum(axis=1, keepdims=True)
        # Points and log-odds share a sign only where calibration rises; a reason whose points said the opposite
        # of its log-odds would read "raises" beside a minus.
        return ((np.abs(points) >= self.shown_points) & (log_odds * points > 0)
                & (np.abs(log_odds) >= self.min_share * movement))


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
        self._positions: dict[tuple, list[int]] = {}

    def contributions(self, encoded: pd.DataFrame | EncodedRows, inputs: np.ndarray, out: np.ndarray) -> float:
        phi = self.explainer.contributions(inputs)
        # The booster read the encoder's columns in order (its own names may differ: no spaces).
        out[:, self._feature_positions(tuple(encoded.columns))] += phi[:, :-1]
        return float(phi[0, -1]) if len(phi) else self.explainer.expected_value

    def _feature_positions(self, columns: tuple) -> list[int]:
        """Each encoded column's position among the features, found once per column order (the encoder's)."""
        positions = self._positions.get(columns)
        if positions is None:
            positions = self._positions[columns] = [self.features.index(column) for column in columns]
        return positions


class _LinearMember:
    """Coefficient x (column - training mean), each transformed column credited to the feature it came from."""

    def __init__(self, pipeline, features: list[str]) -> None:
        self.form = linear_form(pipeline)
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

    def contributions(self, encoded: pd.DataFrame | EncodedRows, columns: np.ndarray, out: np.ndarray) -> float:
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
        self.measure_index = measures(model.registry, self.features)
        self.folding = folding(self.field_index, len(self.fields))

    def contributions(self, frame: pd.DataFrame) -> Contributions:
        """Log-odds contributions of every feature for every row of ``frame`` (a feature table)."""
        return self.encoded_contributions(self.model.encode(frame))

    def encoded_contributions(
        self, encoded: pd.DataFrame | EncodedRows, inputs: list[np.ndarray] | None = None
    ) -> Contributions:
        """Contributions of rows already through ``encode``; ``inputs`` as for ``LeadScoringModel.encoded_margin``."""
        inputs = inputs or [member.inputs(encoded) for member in self.model.members]
        total = np.zeros((len(encoded), len(self.features)))
        base = 0.0
        for (weight, member), given in zip(self._members, inputs):
            values = np.zeros_like(total)
            base += weight * member.contributions(encoded, given, values)
            total += weight * values
        return Contributions(total, base, self.features)

    def explain(
        self,
        frame: pd.DataFrame,
        progress: Progress = Progress(),
        keep_contributions: bool = False,
        keep_fields: bool = False,
        rule: ReasonRule = ReasonRule(),
    ) -> Explanations:
        """Probability, tier, sub-scores and the top material reasons of every row, chunk by chunk.

        ``keep_contributions`` keeps every feature's log-odds, ``keep_fields``
        every business field's (``self.fields`` order); ``rule`` says which
        fields are material enough to be reasons.
        """
        parts = []
        with progress.task("Explaining the scores", total=len(frame)) as advance:
            for start in range(0, len(frame), CHUNK_ROWS):
                chunk = frame.iloc[start:start + CHUNK_ROWS]
                parts.append(self._explain_chunk(self.model.encode_rows(chunk), keep_contributions, keep_fields, rule))
                advance(len(chunk))
        if not parts:
            parts.append(self._explain_chunk(self.model.encode_rows(frame), keep_contributions, keep_fields, rule))
        return Explanations.concatenate(parts)

    def _explain_chunk(self, encoded: EncodedRows, keep: bool, keep_fields: bool, rule: ReasonRule) -> Explanations:
        # What each member reads of the rows, built once for its margin and its contributions.
        inputs = [member.inputs(encoded) for member in self.model.members]
        contributions = self.encoded_contributions(encoded, inputs)
        values, base = contributions.values, contributions.base
        # The model's own margin, not the contributions' sum (equal to 1e-12): a lead's probability and
        # tier must not depend on whether it was explained.
        margin = self.model.encoded_margin(encoded, inputs) if len(encoded) else np.zeros(0)
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
        field_points = by_field * (100.0 * slope)[:, None]
        top_for, top_against = _top(np.where(rule.material(by_field, field_points), by_field, 0.0), TOP_REASONS)
        members = (values, self.field_index, self.measure_index, rule.min_share)
        for_features = _strongest_features(*members, top_for, _values_at(by_field, top_for), 1.0)
        against_features = _strongest_features(*members, top_against, _values_at(by_field, top_against), -1.0)
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
            strongest_points=np.abs(field_points).max(axis=1, initial=0.0),
            rule=rule,
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


def _strongest_features(values: np.ndarray, field_index: np.ndarray, measure_index: np.ndarray, min_share: float,
                        top: np.ndarray, top_log_odds: np.ndarray, direction: float) -> np.ndarray:
    """(rows, reasons, 2): for each chosen field, its feature pushing hardest in ``direction``, then the hardest of
    another measure carrying at least ``min_share`` of the field's log-odds; -1 pads."""
    rows = np.arange(len(values))
    chosen = np.full((*top.shape, FEATURES_PER_REASON), -1)
    if not values.shape[1]:
        return chosen
    for slot in range(top.shape[1]):
        score = np.where(field_index[None, :] == top[:, slot, None], direction * values, 0.0)
        needed = np.zeros(len(values))
        for place in range(FEATURES_PER_REASON):
            best = np.argmax(score, axis=1)
            pushes = (score[rows, best] > 0) & (score[rows, best] >= needed)
            chosen[:, slot, place] = np.where(pushes, best, -1)
            # "Once in the last 90 days; once since becoming a lead" says one thing twice.
            score[measure_index[None, :] == measure_index[best][:, None]] = 0.0
            needed = min_share * np.abs(top_log_odds[:, slot])
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
    strongest_points: np.ndarray  # (rows,) the largest move of any field, in points, material or not
    rule: ReasonRule  # which fields were material enough to be reasons
    contributions: np.ndarray | None = None
    field_log_odds: np.ndarray | None = None  # (rows, fields), in the explainer's field order

    @classmethod
    def concatenate(cls, parts: list[Explanations]) -> Explanations:
        first = parts[0]
        fields = {}
        for name in cls.__dataclass_fields__:
            value = getattr(first, name)
            if name in ("base", "base_probability", "rule"):
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
