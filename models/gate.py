"""The promotion gate: does a challenger earn champion on its held-out leads, and the figures that say why.

I/O-free: ``pipelines.registry.promote`` reads the held-out rows and the champion from MLflow, asks
``judge``, and moves the alias. A challenger is refused when it

- loses to a baseline of its own training run (the plain logistic regression, the hand-set points)
  beyond noise: its metric is lower over the whole 95 % interval of a paired bootstrap;
- is not better than the champion beyond noise: the interval of the difference does not lie above zero
  (a first champion has no champion to beat, only the baselines not to lose to);
- is worse calibrated than the champion, by more than a tolerance.

A single held-out figure cannot tell a better model from a lucky draw when the converted leads are few (a
PR AUC 0.003 higher on 31 conversions). The bootstrap resamples the leads, so the interval is as wide as
the held-out evidence is thin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.models import metrics as scoring
from leadscore.models.comparison import METRICS, RESAMPLES, Difference, paired_bootstrap

CHAMPION = "champion"
MODEL_SCORE = "score: leadscore model"
# Scores `train` stores beside the held-out rows: the artifact outlives the code that wrote it, so its
# column names are a format, fixed here. The hand-set points rank leads by their raw points, as in training.
BASELINES = {
    "Logistic regression": ("score: Logistic regression", "the plain logistic regression"),
    "Hand-set points": ("score: Hand-set points (raw)", "the hand-set points"),
}
CALIBRATION_TOLERANCE = 0.005  # ECE a challenger may lose and still count as "not worse calibrated"
METRIC_LABELS = {"pr_auc": "PR AUC", "roc_auc": "ROC AUC"}


@dataclass(frozen=True)
class Verdict:
    """Why a challenger is refused (empty: it earns champion), and the comparison in one sentence."""

    refusals: tuple[str, ...]
    differences: dict[str, Difference]  # the challenger against "champion" and each baseline found
    figures: str


def judge(
    held_out: pd.DataFrame,
    target_column: str,
    id_column: str,
    champion: np.ndarray | None,
    champion_name: str = "the champion",
    metric: str = "pr_auc",
    resamples: int = RESAMPLES,
) -> Verdict:
    """Compare the challenger's stored held-out scores with ``champion``'s scores of the same rows and with
    the baselines stored beside them; ``champion`` is None when there is none yet.

    Resampling is seeded: the same store gives the same verdict on every run.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    y = held_out[target_column].to_numpy(dtype=int)
    ours = held_out[MODEL_SCORE].to_numpy(dtype=float)
    others, names = {}, {}
    if champion is not None:
        others[CHAMPION], names[CHAMPION] = np.asarray(champion, dtype=float), champion_name
    for key, (column, name) in BASELINES.items():
        if column in held_out.columns:
            others[key], names[key] = held_out[column].to_numpy(dtype=float), name
    differences = paired_bootstrap(y, ours, others, metric, held_out[id_column], resamples) if others else {}
    refusals = [f"loses to {names[key]} beyond noise" for key in BASELINES if key in differences and differences[key].worse]
    calibration = ""
    if champion is not None:
        if not differences[CHAMPION].better:
            refusals.append(f"is not better than {champion_name} beyond noise")
        ours_error = scoring.probability_metrics(y, ours)["ece"]
        their_error = scoring.probability_metrics(y, champion)["ece"]
        if ours_error > their_error + CALIBRATION_TOLERANCE:
            refusals.append(f"is worse calibrated than {champion_name}")
        calibration = f" Calibration error {ours_error:.2%} against {their_error:.2%}."
    return Verdict(tuple(refusals), differences, _figures(differences, names, metric, y, held_out[id_column]) + calibration)


def _figures(differences: dict[str, Difference], names: dict[str, str], metric: str, y: np.ndarray, ids: pd.Series) -> str:
    if not differences:
        return "No baseline was stored with the held-out rows, so nothing was compared."
    first = next(iter(differences.values()))
    leads = ids.nunique()
    where = f"{len(y):,} held-out rows ({leads:,} leads)" if leads < len(y) else f"{len(y):,} held-out leads"
    compared = "; ".join(
        f"{names[key]} {d.model_value:.4f} against {d.other_value:.4f}, {d.mean:+.4f} ({d.low:+.4f} to {d.high:+.4f})"
        for key, d in differences.items()
    )
    return (
        f"{METRIC_LABELS[metric]} of the challenger against each, then the mean difference and its {first.level:.0%} "
        f"interval over {first.resamples:,} resamples of the leads, on the challenger's {where}, "
        f"{int(y.sum()):,} converted: {compared}."
    )
