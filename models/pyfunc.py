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
    """``predict`` returns the probability; with ``params={"explain": True}`` also the tier, the fit and
    engagement scores and the reasons, as ``leadscore predict --explain`` writes them."""

    def load_context(self, context) -> None:
        with open(context.artifacts[MODEL_ARTIFACT], "rb") as handle:
            self.model: LeadScoringModel = pickle.load(handle)
        self._explainer = None

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if not (params or {}).get("explain"):
            return pd.DataFrame({"probability": self.model.predict_proba(model_input)}, index=model_input.index)
        from leadscore.models.explain import Explainer, explanation_columns

        if self._explainer is None:  # built once: it compiles the trees' pattern tables
            self._explainer = Explainer(self.model)
        explanations = self._explainer.explain(model_input)
        scores = pd.DataFrame({"probability": explanations.probability}, index=model_input.index)
        return pd.concat([scores, explanation_columns(explanations, model_input, self.model.registry, self.model.features)],
                         axis=1)
