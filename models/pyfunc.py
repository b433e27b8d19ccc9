"""The MLflow face of a ``LeadScoringModel``: one pyfunc model carrying the whole fitted pipeline.

MLflow loads it from code (``pyfunc_code.py``) and reads the pickled model
from the run's artifacts, so scoring uses exactly the object training built,
through the same ``Scorer`` as every other way of scoring. Input: the lead
id and the model's feature columns as a CRM export holds them.
"""

from __future__ import annotations

import pickle

import mlflow
import pandas as pd

from leadscore.models.model import LeadScoringModel
from leadscore.models.scoring import Scorer

MODEL_ARTIFACT = "model"


class LeadscorePyfunc(mlflow.pyfunc.PythonModel):
    """``predict`` returns each lead's id, probability, tier and unseen values; with ``params={"explain": True}``
    also the fit and engagement scores and the reasons, as ``leadscore predict --explain`` writes them."""

    def load_context(self, context) -> None:
        with open(context.artifacts[MODEL_ARTIFACT], "rb") as handle:
            self.model: LeadScoringModel = pickle.load(handle)
        self.scorer = Scorer(self.model)  # once: explaining compiles the trees' pattern tables

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.scorer.score(model_input, explain=bool((params or {}).get("explain")))
