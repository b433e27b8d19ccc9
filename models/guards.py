"""Checks that refuse to train on data that would give a dishonest model, and one that flags a trained
model whose held-out figures are too good to be honest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from leadscore.errors import LeadscoreError
from leadscore.features.registry import FeatureRegistry

if TYPE_CHECKING:
    from leadscore.models.model import LeadScoringModel

AUC_SAMPLE_ROWS = 200_000
# Held-out ROC AUC above which a model more likely reads the outcome than predicts it: lead conversion
# depends on what happens after the cutoff, so honest CRM models stay far below.
LEAK_AUC = 0.99
# A feature this predictive on its own is named as a suspect, though not refused: a card balance ranks
# defaults with AUC 0.955 honestly; a column written after the outcome sits near 1.
SUSPECT_AUC = 0.95
LEAK_FIELDS_NAMED = 3  # most important fields a leak warning names
LEAK_FEATURES_NAMED = 5  # features predicting the outcome on their own a leak warning names


def require_positives(y: np.ndarray, minimum: int, where: str) -> None:
    positives = int(np.sum(y))
    if positives < minimum:
        raise LeadscoreError(
            f"Only {positives:,} converted leads among the {len(y):,} {where}; training needs at least "
            f"{minimum:,} (--min-positives). Use a longer history, a longer --horizon-days, or lower "
            "--min-positives knowing the model will be noisy."
        )


def require_both_outcomes(y: np.ndarray, rows: np.ndarray, role: str, why: str) -> None:
    """Refuse a slice of rows that holds a single outcome: ``why`` says what the slice is for."""
    positives = int(np.sum(y[rows]))
    if 0 < positives < len(rows):
        return
    found = "no converted lead" if positives == 0 else "only converted leads"
    raise LeadscoreError(
        f"The {role} hold {found} among their {len(rows):,} rows: {why}. The table has {int(np.sum(y)):,} converted leads "
        f"among {len(y):,} rows, too few where they are needed. Add rows or history (for a CRM, a longer history or "
        "a longer --horizon-days gives more converted leads)."
    )


def feature_auc(encoded: pd.DataFrame, y: np.ndarray, seed: int = 42) -> pd.Series:
    """Each feature's own AUC on its rows, direction ignored (0.5 = useless, 1 = the label itself).

    A numeric feature ranks leads by its value (missing ranked lowest); a
    categorical one by its levels' conversion rate on these same rows.
    """
    rows = np.arange(len(y))
    if len(rows) > AUC_SAMPLE_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, AUC_SAMPLE_ROWS, replace=False))
    y = np.asarray(y)[rows]
    result = {}
    for column in encoded.columns:
        values = encoded[column].iloc[rows]
        if isinstance(values.dtype, pd.CategoricalDtype):
            rate = pd.Series(y).groupby(values.cat.codes.to_numpy()).transform("mean").to_numpy()
            score = rate
        else:
            score = values.to_numpy(dtype=float)
            missing = np.isnan(score)
            if missing.any():
                lowest = np.nanmin(score) if (~missing).any() else 0.0
                score = np.where(missing, lowest - 1.0, score)
        auc = roc_auc_score(y, score) if len(np.unique(y)) == 2 else 0.5
        result[column] = max(auc, 1 - auc)
    return pd.Series(result, name="auc")


def leaky_features(
    encoded: pd.DataFrame, y: np.ndarray, threshold: float, allowed: tuple[str, ...], registry: FeatureRegistry
) -> pd.Series:
    """Refuse features whose own AUC on the training rows exceeds ``threshold``, unless allowed; return every
    feature's own AUC."""
    auc = feature_auc(encoded, y)
    suspicious = auc[(auc > threshold) & ~auc.index.isin(allowed)].sort_values(ascending=False)
    if len(suspicious):
        listing = "; ".join(
            f"{registry[name].label} ({name!r}): AUC {value:.3f} on its own" for name, value in suspicious.items()
        )
        raise LeadscoreError(
            f"Refusing to train: {len(suspicious)} feature(s) predict the outcome almost perfectly on their own, "
            f"the mark of a column written after the outcome was known: {listing}. Drop them (--exclude or "
            "--drop), or, if they are truly known before the cutoff, allow them with --allow-leaky NAME."
        )
    return auc


def suspect_note(auc: pd.Series, threshold: float, allowed: tuple[str, ...], registry: FeatureRegistry) -> str | None:
    """A note naming the features above ``SUSPECT_AUC`` on their own that the guard let through."""
    suspects = auc[(auc > SUSPECT_AUC) & ((auc <= threshold) | auc.index.isin(allowed))].sort_values(ascending=False)
    if not len(suspects):
        return None
    listing = "; ".join(f"{registry[name].label} ({name!r}) AUC {value:.3f}" for name, value in suspects.items())
    return (f"On its own, {listing} nearly predicts the outcome on the training rows. Kept: some columns are that "
            "telling honestly, but check each is known before the outcome, and leave it out with --exclude if not.")


def require_disjoint(ids: pd.Series, training: np.ndarray, held_out: np.ndarray) -> None:
    shared = np.intersect1d(ids.iloc[training].to_numpy(), ids.iloc[held_out].to_numpy())
    if len(shared):
        raise LeadscoreError(
            f"{len(shared):,} leads are both in the training and the held-out rows (e.g. {shared[0]!r}): the "
            "evaluation would be optimistic. Each id must identify one lead."
        )


@dataclass(frozen=True)
class ProbableLeak:
    """A model that ranks its held-out leads almost perfectly, and the features that may carry the leak."""

    auc: float
    alone: pd.Series  # feature -> its own held-out AUC, above the threshold, highest first
    finding: str  # one sentence naming the AUC and the features, for a warning and a tag


def probable_leak(
    auc: float, model: LeadScoringModel, held_out: pd.DataFrame, importances: pd.DataFrame, feature_threshold: float
) -> ProbableLeak | None:
    """Flag a held-out ROC AUC above ``LEAK_AUC``, naming the suspects: the features whose own AUC on the
    held-out rows exceeds ``feature_threshold``, and the fields the model leans on most (``importances``).

    ``model`` is the one ``auc`` was measured with. Not a refusal: some tables are that separable honestly,
    so training completes and a person decides. The training guard (``leaky_features``) sees one feature at
    a time on the fitting rows; a leak spread over several features, or allowed with --allow-leaky, shows
    only here.
    """
    if not auc > LEAK_AUC:
        return None
    own = feature_auc(model.encode(held_out), held_out[model.target_column].to_numpy(dtype=int))
    alone = own[own > feature_threshold].sort_values(ascending=False)
    named = "; ".join(f"{model.registry[name].label} ({name!r}) AUC {value:.3f}"
                      for name, value in alone.head(LEAK_FEATURES_NAMED).items())
    more = f" and {len(alone) - LEAK_FEATURES_NAMED} more" if len(alone) > LEAK_FEATURES_NAMED else ""
    single = (f"on their own, these features predict the held-out outcome: {named}{more}" if len(alone) else
              f"no single feature predicts the held-out outcome above AUC {feature_threshold:.2f} on its own")
    top = importances.head(LEAK_FIELDS_NAMED)
    carried = ", ".join(f"{row.label} ({field!r}) {row.share:.0%}" for field, row in top.iterrows())
    finding = (
        f"held-out ROC AUC {auc:.4f}, above {LEAK_AUC}: the model ranks the leads it never saw almost perfectly, the "
        f"mark of a column written after the outcome was known (a naive join, a status field); {single}; the fields "
        f"that move its scores most: {carried}."
    )
    return ProbableLeak(float(auc), alone, finding)
