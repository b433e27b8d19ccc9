"""A fitted logistic candidate as plain array arithmetic.

``LinearForm`` computes what the fitted scikit-learn pipeline computes (log of
skewed counts, medians for missing numbers with their flags, standardisation,
one indicator per level, then the coefficients), with the same operations in
the same order, so the numbers are the same to the last bit. What it drops is
scikit-learn's fixed cost per call (selecting columns by name, validating,
wrapping outputs, dispatching through joblib): about 8 ms a call, which was a
third of the time to score and explain one lead through the API, and was paid
twice (the margin, then the contributions).

Nothing is learned here: every number is read from the fitted pipeline, which
stays the model's source of truth.
"""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from leadscore.models.encoding import EncodedRows

_forms: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def linear_form(pipeline: Pipeline) -> LinearForm:
    """The form of ``pipeline``, built on first use and kept as long as the pipeline lives."""
    form = _forms.get(pipeline)
    # Fitting again assigns new coefficient arrays: a form read from an earlier fit is built anew.
    if form is None or form.coefficients is not pipeline[-1].coef_:
        form = _forms[pipeline] = LinearForm(pipeline)
    return form


class LinearForm:
    """The transformed columns and the margin of a ``LogisticCandidate`` pipeline (see ``models.candidates``)."""

    def __init__(self, pipeline: Pipeline) -> None:
        columns = pipeline.named_steps["columns"]
        model = pipeline[-1]
        self.numeric = list(columns.transformers_[0][2])
        self.categorical = list(columns.transformers_[1][2])
        if self.numeric:  # a ColumnTransformer never fits, nor outputs, a transformer given no columns
            steps = columns.named_transformers_["numeric"]
            imputer, scaler = steps[-2], steps[-1]
            logged = getattr(steps[0], "logged_", None) if len(steps) == 3 else None
            self.logged = None if logged is None or not logged.any() else np.asarray(logged, dtype=bool)
            self.medians, self.flagged = imputer.medians_, imputer.flagged_
            self.mean, self.scale = scaler.mean_, scaler.scale_
        if self.categorical:
            indicators = columns.named_transformers_["categorical"]
            self.widths = [len(indicators.levels_[name]) + 1 for name in self.categorical]
        self.coefficients = model.coef_
        self.coef_t = model.coef_.T
        self.intercept = model.intercept_

    def columns(self, encoded: pd.DataFrame | EncodedRows) -> np.ndarray:
        """What ``pipeline[:-1].transform(encoded)`` returns: numbers and flags standardised, then indicators."""
        blocks = []
        if self.numeric:
            values = np.array(_numbers(encoded, self.numeric), dtype=float, copy=True)
            if self.logged is not None:
                values[:, self.logged] = np.log1p(values[:, self.logged])
            missing = np.isnan(values)
            rows, positions = np.nonzero(missing)
            values[rows, positions] = self.medians[positions]
            values = np.hstack([values, missing[:, self.flagged].astype(float)])
            values -= self.mean
            values /= self.scale
            blocks.append(values)
        for name, width in zip(self.categorical, self.widths) if self.categorical else ():
            codes = encoded.codes[name] if isinstance(encoded, EncodedRows) else encoded[name].cat.codes.to_numpy()
            block = np.zeros((len(encoded), width))
            block[np.arange(len(encoded)), codes + 1] = 1.0  # code -1 (missing) lands in the first column
            blocks.append(block)
        return np.hstack(blocks) if blocks else np.zeros((len(encoded), 0))

    def margin(self, encoded: pd.DataFrame) -> np.ndarray:
        """What ``pipeline.decision_function(encoded)`` returns."""
        return self.margin_of_columns(self.columns(encoded))

    def margin_of_columns(self, columns: np.ndarray) -> np.ndarray:
        """The margin of rows already through ``columns``."""
        return (columns @ self.coef_t + self.intercept).reshape(-1)


def _numbers(encoded: pd.DataFrame | EncodedRows, names: list[str]):
    """The columns ``names`` of ``encoded``, whose numbers the encoder's arrays hold as one block already."""
    if not isinstance(encoded, EncodedRows):
        return encoded[names]
    if encoded.numeric == names:
        return encoded.numbers
    return encoded.numbers[:, [encoded.numeric.index(name) for name in names]]
