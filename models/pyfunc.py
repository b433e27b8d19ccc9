"""The MLflow face of a ``LeadScoringModel``: one pyfunc model carrying the whole fitted pipeline.

MLflow loads it from code (``pyfunc_code.py``) and reads the pickled model
from the run's artifacts, so scoring uses exactly the object training built.
Input: the model's feature columns, categories as text (MLflow signatures
refuse pandas categories; the model casts them itself).
"""

from __future__ import annotations

import pickle

import mlflow
import pandas as pd

from leadscore.models.model import LeadScoringModel

MODEL_ARTIFACT = "model"


class LeadscorePyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        with open(context.artifacts[MODEL_ARTIFACT], "rb") as handle:
            self.model: LeadScoringModel = pickle.load(handle)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return pd.DataFrame({"probability": self.model.predict_proba(model_input)}, index=model_input.index)
