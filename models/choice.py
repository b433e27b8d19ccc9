"""Choosing among candidates on their out-of-fold predictions (see ``models.split`` for the folds).

Each fold is a deployment period, so candidates are compared by their mean AUC over folds: a pooled
AUC would mix the periods' base rates into the ranking. A blend of LightGBM and the logistic regression
is weighed the same way, and a blend or recency weighting must earn its place by a margin. With time,
a candidate beats the logistic regression only if it leads it steadily, fold after fold: trees that
win on average but lose whenever the world shifts would lose in production.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from leadscore.models import metrics as scoring
from leadscore.models.calibration import Calibrator

BLEND_WEIGHTS = np.round(np.arange(0.1, 1.0, 0.1), 1)
# Mean fold AUC a blend or recency weighting must gain over the simpler choice to be worth it.
SIMPLER_WINS_WITHIN = 0.002
# With time, a candidate must lead the logistic regression on at least this share of the folds to beat it.
STEADY_LEAD_SHARE = 2 / 3


def fold_aucs(margins: list[np.ndarray], fold_y: list[np.ndarray]) -> np.ndarray:
    """Each fold's AUC; NaN for a fold of a single outcome, which tells nothing."""
    return np.array([roc_auc_score(y, m) if 0 < y.sum() < len(y) else np.nan for m, y in zip(margins, fold_y)])


def mean_fold_auc(margins: list[np.ndarray], fold_y: list[np.ndarray]) -> float:
    values = fold_aucs(margins, fold_y)
    return float(np.nanmean(values)) if np.isfinite(values).any() else 0.5


def choose_strength(candidate, X: pd.DataFrame, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]]):
    """``candidate`` (a logistic regression) with the penalty whose margins rank the folds best on average,
    and those margins, one array per fold.

    ``folds`` holds (learning rows, their weights, scored rows). A penalty tuned on one slice of the newest
    rows follows that slice's noise: on UCI bank marketing that slice ranked below chance (AUC 0.39 to
    0.40) for every strength. Among strengths within ``SIMPLER_WINS_WITHIN`` of the best, the strongest
    penalty wins, the simpler model.
    """
    scored = {strength: [] for strength in candidate.strengths}
    fold_y = [y[scored_rows] for _, _, scored_rows in folds]
    for learn, weight, scored_rows in folds:
        # Only the penalty changes across the grid: the fold's columns are encoded once, and each fit starts
        # from the previous strength's coefficients (a third of the time on a million rows, same optimum).
        pipeline = candidate.pipeline(candidate.strengths[0], X.iloc[learn])
        columns = pipeline.named_steps["columns"].fit(X.iloc[learn])
        learning, scoring = columns.transform(X.iloc[learn]), columns.transform(X.iloc[scored_rows])
        model = clone(pipeline.named_steps["model"]).set_params(warm_start=True)
        for strength in sorted(candidate.strengths):
            model.set_params(C=strength).fit(learning, y[learn], sample_weight=weight)
            scored[strength].append(model.decision_function(scoring))
    auc = {strength: mean_fold_auc(margins, fold_y) for strength, margins in scored.items()}
    best = max(auc.values())
    strength = min(s for s, value in auc.items() if value >= best - SIMPLER_WINS_WITHIN)
    return replace(candidate, strength=strength), scored[strength]


def choose_recency(margins: dict, fold_y: list[np.ndarray], tuned: dict) -> dict[str, bool]:
    """Weight recent rows more for a candidate only where it ranks the walk-forward folds better."""
    chosen = {}
    for name in tuned:
        plain = mean_fold_auc(margins[(name, False)], fold_y)
        recent = mean_fold_auc(margins[(name, True)], fold_y) if (name, True) in margins else -1.0
        chosen[name] = recent > plain + SIMPLER_WINS_WITHIN
    return chosen


def combined(candidates: dict, members: dict[str, float]) -> list[np.ndarray]:
    """Per fold, the weighted sum of the members' margins."""
    folds = len(next(iter(candidates.values())))
    return [sum(weight * candidates[name][i] for name, weight in members.items()) for i in range(folds)]


def candidate_weights(candidates: dict, fold_y, allowed: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Each candidate as member weights; the blend weight is the one ranking the folds best."""
    weights = {name: {name: 1.0} for name in candidates if name in allowed}
    if "blend" in allowed and {"lightgbm", "logistic"} <= set(candidates):
        best = max(
            BLEND_WEIGHTS,
            key=lambda w: mean_fold_auc(combined(candidates, {"lightgbm": w, "logistic": 1 - w}), fold_y),
        )
        weights["blend"] = {"lightgbm": float(best), "logistic": float(round(1 - best, 1))}
    return weights


def steady_lead(auc: np.ndarray, logistic: np.ndarray) -> bool:
    """Whether a candidate leads the logistic regression on average and on most folds."""
    lead = (auc - logistic)[np.isfinite(auc) & np.isfinite(logistic)]
    return bool(len(lead)) and lead.mean() > 0 and (lead > 0).mean() >= STEADY_LEAD_SHARE


def validation_table(
    weights: dict, candidates: dict, fold_y, recency: dict, seed: int, forward: bool
) -> tuple[pd.DataFrame, dict[str, Calibrator]]:
    """Candidates ranked by mean fold AUC, and each candidate's calibrator, fitted on its out-of-fold predictions.

    A blend must beat its best member by a margin to win. With time, a candidate whose lead over the
    logistic regression is not steady ranks below it: on bank marketing, trees led on average over the
    folds yet lost on the newest ones, and on the held-out months (AUC 0.43 against 0.75).
    """
    rows, calibrators, per_fold = {}, {}, {}
    y = np.concatenate(fold_y)
    for name, members in weights.items():
        margins = combined(candidates, members)
        per_fold[name] = fold_aucs(margins, fold_y)
        margin = np.concatenate(margins)
        calibrator = calibrators[name] = Calibrator(seed=seed).fit(margin, y)
        shown = per_fold[name][np.isfinite(per_fold[name])]
        rows[name] = {
            "roc_auc": float(shown.mean()) if len(shown) else 0.5,
            "fold_auc": (", ".join("—" if np.isnan(v) else f"{v:.3f}" for v in per_fold[name]) if forward
                         else f"{shown.min():.3f} to {shown.max():.3f} over {len(shown)} folds" if len(shown) else "—"),
            "pr_auc": scoring.probability_metrics(y, calibrator.predict(margin))["pr_auc"],
            "calibrated_brier": min(calibrator.cv_brier_.values()) if calibrator.cv_brier_ else np.nan,
            "recent_rows_weighted": "yes" if any(recency[m] for m in members) else "no",
            "weights": ", ".join(f"{m} {w:.1f}" for m, w in members.items()),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["selection_score"] = table["roc_auc"] - np.where(table.index == "blend", SIMPLER_WINS_WITHIN, 0.0)
    if forward and "logistic" in table.index:
        unsteady = [name for name in table.index
                    if name != "logistic" and not steady_lead(per_fold[name], per_fold["logistic"])]
        table["steady_lead_over_logistic"] = ["—" if name == "logistic" else "no" if name in unsteady else "yes"
                                              for name in table.index]
        # Below the logistic regression, in their own order: a steady lead is what earns the more complex model.
        floor = table.loc["logistic", "selection_score"]
        table.loc[unsteady, "selection_score"] = np.minimum(table.loc[unsteady, "selection_score"], floor) - 1.0
        newest = {name: values[np.isfinite(values)][-1] if np.isfinite(values).any() else np.nan
                  for name, values in per_fold.items()}
        table["newest_fold_auc"] = pd.Series(newest)
    return table.sort_values("selection_score", ascending=False), calibrators


def newest_fold_note(validation: pd.DataFrame) -> list[str]:
    """A warning when the chosen model lost to the logistic regression on the newest fold."""
    chosen = validation.index[0]
    if "newest_fold_auc" not in validation or chosen == "logistic" or "logistic" not in validation.index:
        return []
    mine, theirs = validation.loc[chosen, "newest_fold_auc"], validation.loc["logistic", "newest_fold_auc"]
    if not mine < theirs:
        return []
    return [f"The chosen {chosen} lost to the logistic regression on the newest walk-forward fold (AUC {mine:.3f} "
            f"against {theirs:.3f}), though it led steadily before: watch the next periods, or train with "
            "--candidates logistic if the world has changed."]
