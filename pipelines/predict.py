"""Stage: score every row of a flat file with a logged model, with its tier and reasons when asked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from leadscore.errors import LeadscoreError
from leadscore.files import check_folder, check_table_suffix, write_table
from leadscore.features.flat import numbered_rows, read_table_file
from leadscore.models.explain import MIN_REASON_POINTS
from leadscore.models.scoring import Scorer
from leadscore.pipelines.registry import load_model
from leadscore.progress import Progress


def predict_file(
    model_uri: str,
    data: Path,
    out: Path,
    tracking: str | None = None,
    explain: bool = False,
    progress: Progress = Progress(),
    min_reason_points: float = MIN_REASON_POINTS,
) -> pd.DataFrame:
    """Write the id, calibrated probability, tier and never-seen values of every row of ``data`` to ``out``.

    With ``explain``, also each row's fit and engagement scores (0-100),
    its three strongest reasons for as sentences (``reason_1`` to
    ``reason_3``), the fields that carried it into its tier, and all six
    reasons as data in the JSON column ``reasons``. Scoring is the
    ``Scorer``'s, as for every other way of scoring.
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
    raw = numbered_rows(raw, model.id_column)  # a model trained without an id names leads by their row
    scored = Scorer(model).score(raw, explain=explain, source=data.name, progress=progress,
                                 min_reason_points=min_reason_points)
    write_table(scored, out)
    return scored
