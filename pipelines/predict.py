"""Stage: score every row of a flat file with a logged model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from leadscore.errors import LeadscoreError
from leadscore.features.flat import missing_as_nan, read_table_file
from leadscore.pipelines.tracking import load_model


def predict_file(model_uri: str, data: Path, out: Path, tracking: str | None = None) -> pd.DataFrame:
    """Write the id and the calibrated probability of every row of ``data`` to ``out`` (CSV or Parquet)."""
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise LeadscoreError(f"--out {out}: write .csv or .parquet.")
    if not out.parent.is_dir():
        raise LeadscoreError(f"--out {out}: the folder {out.parent} does not exist. Create it first.")
    model = load_model(model_uri, tracking)
    frame = missing_as_nan(read_table_file(data), model.na_values)
    if model.id_column not in frame.columns:
        raise LeadscoreError(
            f"{data.name} has no column {model.id_column!r}, the lead id the model was trained with. "
            "Score a table with the same columns as the training table."
        )
    scored = pd.DataFrame({model.id_column: frame[model.id_column], "probability": model.predict_proba(frame)})
    if out.suffix.lower() == ".csv":
        scored.to_csv(out, index=False)
    else:
        scored.to_parquet(out, index=False)
    return scored
