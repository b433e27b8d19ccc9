"""Which business fields move the scores most, for marketing: mean absolute SHAP on held-out leads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.registry import FeatureRegistry
from leadscore.models.explain import business_fields, first_of_each, folding


def importance_table(
    contributions: np.ndarray, features: list[str], registry: FeatureRegistry, points_per_log_odds: np.ndarray
) -> pd.DataFrame:
    """One row per business field, most important first: mean |contribution| in percentage points and log-odds.

    A field's contribution is the sum of its features' (the counts of
    pricing-page views over every window and the days since the last one
    make one field). Ranked by points, the unit marketing reads: a field that
    moves promising leads counts for more than one that moves hopeless leads
    by the same log-odds. ``share`` is the field's part of all the movement
    the model makes on these leads; ``rank`` starts at 1.
    """
    fields, field_index = business_fields(registry, features)
    magnitude = np.abs(contributions @ folding(field_index, len(fields)))
    scale = np.abs(points_per_log_odds)[:, None]
    first = [features[position] for position in first_of_each(field_index)]
    table = pd.DataFrame(
        {
            "field": fields,
            "label": [registry[name].business_label for name in first],
            "family": [registry[name].family for name in first],
            "features": np.bincount(field_index, minlength=len(fields)),
            "mean_abs_log_odds": magnitude.mean(axis=0) if len(magnitude) else np.zeros(len(fields)),
            "mean_abs_points": (magnitude * scale).mean(axis=0) if len(magnitude) else np.zeros(len(fields)),
        }
    )
    total = table["mean_abs_points"].sum()
    table["share"] = table["mean_abs_points"] / total if total > 0 else 0.0
    table = table.sort_values(["mean_abs_points", "field"], ascending=[False, True], kind="stable")
    table["rank"] = np.arange(1, len(table) + 1)
    return table.set_index("field")


def with_rank_change(table: pd.DataFrame, champion: pd.DataFrame | None) -> pd.DataFrame:
    """Adds the champion's rank of each field and how many places it moved up (negative: down)."""
    table = table.copy()
    if champion is None:
        table["champion_rank"] = pd.array([pd.NA] * len(table), dtype="Int64")
    else:
        table["champion_rank"] = pd.array(champion["rank"].reindex(table.index), dtype="Int64")
    table["rank_change"] = table["champion_rank"] - pd.array(table["rank"], dtype="Int64")
    return table


def family_shares(table: pd.DataFrame) -> pd.Series:
    """How much of the model's movement comes from fit and from engagement."""
    return table.groupby("family")["share"].sum()
