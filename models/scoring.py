"""The one scoring path: a fitted model and leads in, one row per lead out, no I/O.

``leadscore predict``, the MLflow model, the nightly job and the API all
score through ``Scorer``, so they cannot disagree: whatever training learned
about reading the leads (missing markers, decimal marks, placeholders) is
applied here, from the model, never by a caller.

Each lead's row holds its id, calibrated probability and tier (the CRM's
codes: none, mql, sql); with explanations, its fit and engagement scores
(0-100), its three strongest reasons for as sentences, the fields that
carried it into its tier, all six reasons as data (JSON), each reason a
material one (``min_reason_points`` and ``min_reason_share``, see
``ReasonRule``) or one sentence saying that nothing stands out; and always the
values the model never saw at training ("industry=Crypto"), whose reasons
say so instead of reading as something the model learned.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.errors import LeadscoreError
from leadscore.models.changes import field_log_odds_json
from leadscore.models.explain import MIN_REASON_POINTS, MIN_REASON_SHARE, Explainer, ReasonRule
from leadscore.models.reasons import ReasonWriter, explanation_arrays, text_as_objects
from leadscore.models.model import LeadScoringModel
from leadscore.progress import Progress

EXPLANATION_COLUMNS = ("fit_score", "engagement_score", "reason_1", "reason_2", "reason_3", "tier_reasons", "reasons")


class Scorer:
    """Scores leads with one model; built once per model (explaining compiles the trees' tables on first use)."""

    def __init__(self, model: LeadScoringModel) -> None:
        self.model = model
        self._explainer: Explainer | None = None
        self._reasons = ReasonWriter(model.registry, model.features)

    @property
    def explainer(self) -> Explainer:
        if self._explainer is None:
            self._explainer = Explainer(self.model)
        return self._explainer

    def columns(self, explain: bool, fields: bool = False) -> list[str]:
        """The columns ``score`` returns, in order."""
        extra = (*EXPLANATION_COLUMNS, *(("field_log_odds",) if fields else ())) if explain else ()
        return [self.model.id_column, "probability", "tier", *extra, "unseen"]

    def score(self, leads: pd.DataFrame, **options) -> pd.DataFrame:
        """One row per row of ``leads`` (the model's id and feature columns, as a file or a CRM holds them):
        ``score_columns`` as a frame."""
        return pd.DataFrame(text_as_objects(self.score_columns(leads, **options)))

    def score_columns(
        self,
        leads: pd.DataFrame,
        *,
        explain: bool = True,
        fields: bool = False,
        source: str = "the leads",
        progress: Progress = Progress(),
        min_reason_points: float = MIN_REASON_POINTS,
        min_reason_share: float = MIN_REASON_SHARE,
    ) -> dict[str, np.ndarray]:
        """The columns ``score`` returns (``columns`` order), as arrays: a caller that reads a few leads'
        values (the API) skips building a frame only to take it apart again.

        ``fields`` (with ``explain``) adds ``field_log_odds``: every business field's contribution to the
        margin, as JSON, which the nightly job stores to say later why a score changed. A field is a reason
        only when it moves the lead by ``min_reason_points`` percentage points or more and carries
        ``min_reason_share`` or more of the lead's movement.
        """
        model = self.model
        rule = ReasonRule(min_reason_points, min_reason_share)
        if model.id_column not in leads.columns:
            raise LeadscoreError(
                f"{source} has no column {model.id_column!r}, the lead id the model was trained with. "
                "Score a table with the same columns as the training table."
            )
        frame = model.reading.apply(leads.reset_index(drop=True), source, model.features)
        unseen = unseen_mask(model, frame)
        scored = {model.id_column: frame[model.id_column].to_numpy()}
        if explain:
            explanations = self.explainer.explain(frame, progress, keep_fields=fields, rule=rule)
            scored["probability"] = explanations.probability
            scored["tier"] = explanations.tier
            explained = explanation_arrays(explanations, frame, model.registry, model.features, unseen, self._reasons)
            scored.update({column: explained[column] for column in EXPLANATION_COLUMNS})
            if fields:
                scored["field_log_odds"] = field_log_odds_json(explanations.field_log_odds, self.explainer.fields)
        else:
            probability = model.predict_proba(frame) if len(frame) else np.zeros(0)
            scored["probability"] = probability
            scored["tier"] = (model.tiers.assign(probability) if model.tiers is not None
                              else np.full(len(frame), "none", dtype=object))
        scored["unseen"] = unseen_text(frame, model.features, unseen)
        return scored


def score_leads(model: LeadScoringModel, leads: pd.DataFrame, **options) -> pd.DataFrame:
    """``Scorer(model).score(leads, ...)``, for a single batch."""
    return Scorer(model).score(leads, **options)


def unseen_mask(model: LeadScoringModel, frame: pd.DataFrame) -> np.ndarray:
    """(rows, features) True where a categorical value was never seen at training.

    The encoder scores such a value like the rare levels it grouped, which is
    the best it can do, but the lead's reasons must not pretend the model
    knows it. Models fitted before the encoder kept its seen levels report none.
    """
    mask = np.zeros((len(frame), len(model.features)), dtype=bool)
    if not getattr(model.encoder, "seen_", None):
        return mask
    for position, feature in enumerate(model.features):
        levels = model.encoder.seen_levels(feature)
        if levels is None:
            continue
        values = frame[feature].to_numpy(dtype=object)
        present = np.flatnonzero(~pd.isna(values))
        text = [str(value) for value in values[present]]
        known = levels.positions_of(text) >= 0
        mask[present[~known], position] = True
    return mask


def unseen_text(frame: pd.DataFrame, features: list[str], mask: np.ndarray) -> np.ndarray:
    """Per row, its never-seen values as "feature=value" joined by "; ", empty when there are none."""
    text = np.full(len(frame), "", dtype=object)
    rows, columns = np.nonzero(mask)
    for row, column in zip(rows.tolist(), columns.tolist()):
        feature = features[column]
        entry = f"{feature}={frame[feature].iat[row]}"
        text[row] = f"{text[row]}; {entry}" if text[row] else entry
    return text
