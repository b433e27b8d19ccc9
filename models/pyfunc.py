"""The MLflow face of a ``LeadScoringModel``: one pyfunc model carrying the whole fitted pipeline.

MLflow loads it from code (``pyfunc_code.py``) and reads the pickled model
from the run's artifacts, so scoring uses exactly the object training built,
through the same ``Scorer`` as every other way of scoring. Input: the lead
id and the model's feature columns as a CRM export holds them, in whatever
dtypes pandas read them (text, numbers with or without missing values,
booleans, dates, categories, Arrow-backed strings); other columns are ignored.
"""

from __future__ import annotations

import pickle

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, DataType, ParamSchema, ParamSpec, Schema

from leadscore.models.explain import MIN_REASON_POINTS
from leadscore.models.model import LeadScoringModel
from leadscore.models.scoring import EXPLANATION_COLUMNS, Scorer

MODEL_ARTIFACT = "model"
OUTPUT_TYPES = {
    "probability": DataType.double,
    "tier": DataType.string,
    "fit_score": DataType.long,
    "engagement_score": DataType.long,
    "reason_1": DataType.string,
    "reason_2": DataType.string,
    "reason_3": DataType.string,
    "tier_reasons": DataType.string,
    "reasons": DataType.string,
    "unseen": DataType.string,
}


class LeadscorePyfunc(mlflow.pyfunc.PythonModel):
    """``predict`` returns each lead's id, probability, tier and unseen values; with ``params={"explain": True}``
    also the fit and engagement scores and the reasons, as ``leadscore predict --explain`` writes them
    (``params={"min_reason_points": ...}`` as ``--min-reason-points``)."""

    def load_context(self, context) -> None:
        with open(context.artifacts[MODEL_ARTIFACT], "rb") as handle:
            self.model: LeadScoringModel = pickle.load(handle)
        self.scorer = Scorer(self.model)  # once: explaining compiles the trees' pattern tables

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        params = params or {}
        return self.scorer.score(model_input, explain=bool(params.get("explain")),
                                 min_reason_points=float(params.get("min_reason_points", MIN_REASON_POINTS)))


def model_signature(model: LeadScoringModel) -> ModelSignature:
    """The columns ``predict`` returns and its ``explain`` parameter; no input schema, on purpose.

    The explanation columns are optional: they come only with ``params={"explain": True}``.

    MLflow enforces an input schema before the model sees a row, and none of
    its schemas lets a CRM export through both whole and fast. A typed column
    refuses some dtype an export holds: "double" refuses 64-bit integers
    (unless all are 0 or 1), "long" refuses missing values, "string" refuses
    pandas categories and numbers. An ``AnyType`` column takes anything, but
    MLflow checks it value by value in Python and rebuilds the column from the
    values (categories and nullable integers come out as objects): 13 to 21 s
    for 100,000 rows of a CRM model's 85 input columns, which the model scores
    in under 2 s; ``required=False`` changes only what happens when a column
    is absent. Without an input schema the frame reaches ``Scorer`` as the
    caller read it, extra columns included (it ignores them); the model reads
    every one of these dtypes and names any missing column itself. The logged
    input example shows the columns a request holds.
    """
    scored = Scorer(model).columns(explain=True)
    outputs = [ColSpec(AnyType(), model.id_column)]  # the id comes back as the caller gave it
    outputs += [ColSpec(OUTPUT_TYPES[column], column, required=column not in EXPLANATION_COLUMNS) for column in scored[1:]]
    params = ParamSchema([ParamSpec("explain", DataType.boolean, False),
                          ParamSpec("min_reason_points", DataType.double, MIN_REASON_POINTS)])
    return ModelSignature(inputs=None, outputs=Schema(outputs), params=params)
