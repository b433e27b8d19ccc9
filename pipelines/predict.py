"""Stage: score every row of a flat file with a logged model, with its tier and reasons when asked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from leadscore.errors import LeadscoreError
from leadscore.files import check_folder, check_table_suffix, write_table
from leadscore.features.flat import read_table_file
from leadscore.models.explain import Explainer, explanation_columns
from leadscore.pipelines.registry import load_model
from leadscore.progress import Progress


def predict_file(
    model_uri: str,
    data: Path,
    out: Path,
    tracking: str | None = None,
    explain: bool = False,
    progress: Progress = Progress(),
) -> pd.DataFrame:
    """Write the id and the calibrated probability of every row of ``data`` to ``out`` (CSV or Parquet).

    With ``explain``, also each row's tier, fit and engagement scores (0-100),
    its three strongest reasons for as sentences (``reason_1`` to
    ``reason_3``), the fields that carried it into its tier, and all six
    reasons as data in the JSON column ``reasons``. Rows are read as the
    training table was (``LeadScoringModel.reading``).
    """
    check_table_suffix(out)
    check_folder(out)
    raw = read_table_file(data)
    if raw.empty:
        raise LeadscoreError(
            f"{data.name} has no rows, only column names: there is no lead to score. Score a file that holds "
            "at least one lead."
        )
    model = load_model(model_uri, tracking)
    if model.id_column not in raw.columns:
        raise LeadscoreError(
            f"{data.name} has no column {model.id_column!r}, the lead id the model was trained with. "
            "Score a table with the same columns as the training table."
        )
    frame = model.reading.apply(raw, data.name, model.features)
    if explain:
        explanations = Explainer(model).explain(frame, progress)
        scored = pd.concat(
            [
                pd.DataFrame({model.id_column: frame[model.id_column], "probability": explanations.probability}),
                explanation_columns(explanations, frame, model.registry, model.features),
            ],
            axis=1,
        )
    else:
        scored = pd.DataFrame({model.id_column: frame[model.id_column], "probability": model.predict_proba(frame)})
    write_table(scored, out)
    return scored
