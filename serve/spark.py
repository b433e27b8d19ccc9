"""Scoring a Spark DataFrame with a registered leadscore model, through ``mlflow.pyfunc.spark_udf``.

Every Spark task hands the model's pyfunc its rows in Arrow batches, as pandas frames, and the pyfunc scores them
through ``Scorer``, the one scoring path: nothing here computes or reshapes a score. What this module adds is
what ``spark_udf`` cannot work out from our model on its own:

- **The result type.** Left to itself, ``spark_udf`` turns the model's output schema into a struct, but that schema
  declares the id as Any, Spark's variant type, at which MLflow 3.17's struct conversion stops (every task fails),
  and the explanation columns as optional, present only with ``explain``. The struct is built here from the same
  schema, without the id (each row keeps its own columns) and with the explanation fields only when asked for.
- **The input.** The signature has no input schema, on purpose (``models.pyfunc.model_signature``), so
  ``spark_udf`` cannot name the columns itself: called with bare columns it would hand the model a frame whose
  columns are named 0, 1, 2... The model's input columns, read from the input example logged with it, go in as one
  struct instead, which the pyfunc receives as a pandas frame with the columns' own names.

pyspark is not a dependency of leadscore (``pip install "leadscore[dev]"`` or any pyspark >= 4.0 brings it); it is
imported only when a frame is scored.
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING

from leadscore.errors import LeadscoreError
from leadscore.pipelines.store import mlflow_at

if TYPE_CHECKING:
    from mlflow.models import Model, ModelSignature
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

SCORE_COLUMN = "score"


def score_spark(
    leads: DataFrame,
    model_uri: str,
    *,
    explain: bool = True,
    min_reason_points: float | None = None,
    column: str = SCORE_COLUMN,
    env_manager: str = "local",
    tracking_uri: str | None = None,
) -> DataFrame:
    """``leads`` with one more column, ``column``: a struct of what the registered model says of each row.

    The struct holds ``probability``, ``tier`` and ``unseen``; with ``explain`` also ``fit_score``,
    ``engagement_score``, the three reasons as sentences (``reason_1`` to ``reason_3``), ``tier_reasons`` and all
    reasons as JSON (``reasons``): the columns, types and values ``mlflow.pyfunc.load_model(model_uri).predict``
    returns for the same rows, row for row (``tests/test_spark.py``). ``min_reason_points`` is the pyfunc's
    parameter of that name; unset, the model's default applies.

    ``leads`` needs the model's id and feature columns, as ``leadscore features`` writes them; other columns are
    left alone and not sent to Python. The model is downloaded once, here: an alias such as
    ``models:/leadscore@champion`` is read once, so a promotion while the job runs cannot mix two versions.
    ``env_manager`` is ``spark_udf``'s: ``"local"`` scores in the executors' own Python, which must have the
    model's requirements installed; ``"virtualenv"`` or ``"uv"`` rebuild them from the model's pinned
    requirements on every executor first (README: Scoring a Spark DataFrame).

    Nothing runs until an action (``write``, ``count``, ``collect``) asks for the column.
    """
    from pyspark.sql import functions as F

    if column in leads.columns:
        raise LeadscoreError(f"The frame already has a column {column!r}; pass another name as column=.")
    mlflow = mlflow_at(tracking_uri)
    params = {"explain": explain}
    if min_reason_points is not None:
        params["min_reason_points"] = float(min_reason_points)
    with tempfile.TemporaryDirectory(prefix="leadscore-spark-") as scratch:
        # spark_udf copies a local model into its own folder (and ships it to the executors), so this copy may go.
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=scratch)
        model = mlflow.models.Model.load(local)
        inputs = model_input_columns(model, local) or list(leads.columns)
        missing = [name for name in inputs if name not in leads.columns]
        if missing:
            # What the model itself would say, on the driver before any task starts rather than in an executor's log.
            raise LeadscoreError(
                f"The frame lacks {len(missing)} column(s) the model {model_uri!r} needs: "
                f"{', '.join(map(repr, missing[:10]))}{' ...' if len(missing) > 10 else ''}. "
                "Score a frame built the same way as the training table (leadscore features for a CRM model)."
            )
        score = mlflow.pyfunc.spark_udf(leads.sparkSession, local, result_type=score_struct(model.signature, explain),
                                        env_manager=env_manager, params=params)
    return leads.withColumn(column, score(F.struct(*(F.col(_quoted(name)) for name in inputs))))


def score_struct(signature: ModelSignature, explain: bool) -> StructType:
    """The Spark struct of a score: the model's declared outputs but the id, and the optional explanation
    columns only with ``explain``, in the order ``predict`` returns them."""
    from mlflow.types.schema import AnyType
    from pyspark.sql.types import StructField, StructType

    outputs = signature.outputs.inputs  # an output Schema keeps its columns in `inputs`
    # The id is the one column declared Any: it comes back in whatever type the caller gave it.
    return StructType([StructField(spec.name, spec.type.to_spark()) for spec in outputs
                       if not isinstance(spec.type, AnyType) and (explain or spec.required)])


def model_input_columns(model: Model, local_path: str) -> list[str]:
    """The lead id and the feature columns the model reads, from the input example logged with it (empty when it
    has none: the model then gets every column, and ignores those it does not read)."""
    if model.saved_input_example_info is None:
        return []
    return [str(name) for name in model.load_input_example(local_path).columns]


def _quoted(name: str) -> str:
    """A column name as Spark's parser reads it literally: a flat export's "Lead Source" or "visits.30d"."""
    return "`" + name.replace("`", "``") + "`"
