"""What a marketer reads about each driver: how far it moves a promising lead, and how the score grows with a behaviour.

Mean absolute effects over every lead are honest but small where most leads
are hopeless: at a 2 % base rate a strong driver moves the average lead by a
fraction of a point. The leads marketing acts on are the promising ones, so
a driver's typical effect is measured on the leads ranked in the top
``PROMISING_SHARE``, where the same log-odds are worth several points.

Effect curves are drawn only for behaviours a marketer can ask for: tallies
of what the lead did (whole numbers, none negative, most leads at 0), by
the same data-shape rule the labels file uses to call a column engagement.
Lead age, recency in days, identifiers and outside indicators are not
tallies, so they never get a curve that would suggest acting on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.models.explain import Explainer, Explanations

PROMISING_SHARE = 0.10
EFFECT_CURVES = 3
MOST_STEPS = 8  # an effect curve groups a wide tally into about this many steps


@dataclass(frozen=True)
class Drivers:
    """Every business field's effect, per lead, in percentage points; ``probability`` orders the leads."""

    fields: list[str]
    points: np.ndarray  # (leads, fields)
    probability: np.ndarray
    tallies: dict[str, tuple[str, np.ndarray]]  # field -> (its strongest tally feature, that feature's values)

    def typical_points(self, share: float = PROMISING_SHARE) -> pd.Series:
        """Mean absolute effect of each field on the leads ranked in the top ``share``."""
        count = max(1, int(round(share * len(self.probability))))
        promising = np.argsort(-self.probability, kind="stable")[:count]
        return pd.Series(np.abs(self.points[promising]).mean(axis=0), index=self.fields)


def drivers(explainer: Explainer, frame: pd.DataFrame) -> Drivers:
    """Explain ``frame`` (a sample of held-out leads) field by field, and find each field's tally feature."""
    model = explainer.model
    explanations = explainer.explain(frame, keep_contributions=True, keep_fields=True)
    points = explanations.points(explanations.field_log_odds)
    return Drivers(list(explainer.fields), points, explanations.probability,
                   _tallies(model, frame, explainer, explanations))


def _tallies(model, frame: pd.DataFrame, explainer: Explainer, explanations: Explanations) -> dict:
    """Each engagement field's strongest tally feature (its count over the window that moves leads most)."""
    strength = np.abs(explanations.points(explanations.contributions)).mean(axis=0)
    found: dict[str, tuple[str, np.ndarray, float]] = {}
    for position, feature in enumerate(explainer.features):
        spec = model.registry[feature]
        if spec.family != "engagement" or spec.kind != "numeric" or not is_tally(frame[feature]):
            continue
        field = explainer.fields[explainer.field_index[position]]
        if field not in found or strength[position] > found[field][2]:
            found[field] = (feature, frame[feature].to_numpy(dtype=float, na_value=np.nan), strength[position])
    return {field: (feature, values) for field, (feature, values, _) in found.items()}


def is_tally(values: pd.Series) -> bool:
    """Counts of something a lead did: whole numbers, none negative, 0 the most common value, not one value only."""
    numbers = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if len(numbers) == 0 or (numbers < 0).any() or not np.all(numbers == np.round(numbers)):
        return False
    distinct, counts = np.unique(numbers, return_counts=True)
    return len(distinct) > 1 and distinct[np.argmax(counts)] == 0


def actionable_fields(found: Drivers, ranked_fields: list[str], count: int = EFFECT_CURVES) -> list[str]:
    """The ``count`` strongest fields (in ``ranked_fields`` order) that are tallies of a behaviour."""
    return [field for field in ranked_fields if field in found.tallies][:count]


def effect_curve(values: np.ndarray, points: np.ndarray) -> pd.DataFrame:
    """Mean effect (points) of the leads at each step of a tally; the long tail shares the last step ("8+")."""
    known = ~np.isnan(values)
    values, points = values[known], points[known]
    top = float(np.quantile(values[values > 0], 0.95)) if (values > 0).any() else 1.0
    width = max(1, int(np.ceil(top / MOST_STEPS)))
    edges = np.arange(0, top + width, width)
    step = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 1)
    rows = []
    for index, low in enumerate(edges):
        members = step == index
        if not members.any():
            continue
        last = index == len(edges) - 1 and (values > low + width - 1).any()
        label = f"{low:.0f}+" if last else (f"{low:.0f}" if width == 1 else f"{low:.0f}–{low + width - 1:.0f}")
        rows.append({"step": label, "low": low, "leads": int(members.sum()), "mean_points": float(points[members].mean())})
    return pd.DataFrame(rows, columns=["step", "low", "leads", "mean_points"])
