"""The candidate estimators: gradient-boosted trees and a regularised logistic regression.

Each candidate is tuned once (LightGBM's number of trees by early stopping,
the logistic regression's strength by validation log loss), then refit with
those settings on whatever rows the training stage gives it. Both expose a
raw margin (log-odds): calibration turns it into a probability later.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass, field, replace

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.base import BaseEstimator, TransformerMixin

from leadscore.models.booster_input import booster_matrix, trained_levels
from leadscore.models.encoding import EncodedRows
from leadscore.models.linear_form import linear_form

MAX_TREES = 3_000
SINGLE_THREAD_ROWS = 1_000
EARLY_STOPPING_ROUNDS = 100
LOGISTIC_STRENGTHS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
NEWTON_MAX_COLUMNS = 400  # above this many encoded columns, lbfgs: Newton-Cholesky costs the cube of the columns


def lightgbm_params(rows: int, seed: int) -> dict:
    """Defaults that hold from thousands to a million rows: leaves need more support as data grows."""
    return {
        "objective": "binary",
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": int(np.clip(rows // 2_000, 20, 500)),
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "max_cat_to_onehot": 8,
        "min_data_per_group": 50,
        "cat_smooth": 10.0,
        "cat_l2": 10.0,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "verbose": -1,
    }


_booster_levels: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _levels(booster: lgb.Booster) -> list[pd.Index]:
    """The booster's trained levels as indexes, built once per booster."""
    levels = _booster_levels.get(booster)
    if levels is None:
        levels = _booster_levels[booster] = trained_levels(booster.pandas_categorical)
    return levels


@dataclass(frozen=True)
class LightGBMCandidate:
    """LightGBM on the encoder's frame: native categories, missing values kept as such."""

    params: dict
    trees: int | None = None
    name: str = "lightgbm"

    def tune(self, X: pd.DataFrame, y: np.ndarray, X_valid: pd.DataFrame, y_valid: np.ndarray, weight=None):
        booster = lgb.train(
            self.params,
            lgb.Dataset(X, y, weight=weight),
            MAX_TREES,
            valid_sets=[lgb.Dataset(X_valid, y_valid)],
            callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
        )
        return replace(self, trees=max(int(booster.best_iteration), 10))

    def fit(self, X: pd.DataFrame, y: np.ndarray, weight=None) -> lgb.Booster:
        return lgb.train(self.params, lgb.Dataset(X, y, weight=weight), self.trees)

    @staticmethod
    def inputs(fitted: lgb.Booster, X: pd.DataFrame | EncodedRows) -> np.ndarray:
        """What the booster reads of ``X``: its margin and TreeSHAP both start from it."""
        return booster_matrix(X, _levels(fitted))

    @staticmethod
    def margin_of_inputs(fitted: lgb.Booster, inputs: np.ndarray) -> np.ndarray:
        # A few rows (one request's leads) score faster on one thread than after waking them all; 0 is
        # LightGBM's default, every core, set again on each call because the setting outlives it.
        threads = 1 if len(inputs) <= SINGLE_THREAD_ROWS else 0
        return fitted.predict(inputs, raw_score=True, num_threads=threads)

    @classmethod
    def margin(cls, fitted: lgb.Booster, X: pd.DataFrame) -> np.ndarray:
        return cls.margin_of_inputs(fitted, cls.inputs(fitted, X))

    def describe(self) -> dict:
        return {"trees": self.trees, **{k: v for k, v in self.params.items() if k not in ("verbose",)}}


class SkewedLog(TransformerMixin, BaseEstimator):
    """log1p of the non-negative, right-skewed columns (counts, durations), learned at fit.

    Linear models read "3 pricing visits" and "300 page views" on very
    different scales; the log keeps one outlier from dominating a coefficient.
    """

    def __init__(self, skew: float = 1.0):
        self.skew = skew

    def fit(self, X, y=None):
        values = np.asarray(X, dtype=float)
        minimum = np.nanmin(np.where(np.isnan(values), np.inf, values), axis=0)
        skewness = pd.DataFrame(values).skew().fillna(0).to_numpy()
        self.logged_ = (minimum >= 0) & (skewness > self.skew)
        return self

    def transform(self, X):
        values = np.array(X, dtype=float, copy=True)
        values[:, self.logged_] = np.log1p(values[:, self.logged_])
        return values

    def get_feature_names_out(self, input_features=None):
        return np.asarray(input_features, dtype=object)


class MissingAsMedian(TransformerMixin, BaseEstimator):
    """Missing numbers become the column's median, plus a 0/1 column saying so for columns that had gaps.

    "Never visited the pricing page" is information: the flag keeps it after imputation.
    (Written out because scikit-learn's median imputer is fifty times slower on large frames.)
    """

    def fit(self, X, y=None):
        values = np.asarray(X, dtype=float)
        missing = np.isnan(values)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column has no median: 0 then
            self.medians_ = np.nan_to_num(np.nanmedian(values, axis=0), nan=0.0)
        self.flagged_ = missing.any(axis=0)
        return self

    def transform(self, X):
        values = np.array(X, dtype=float, copy=True)
        missing = np.isnan(values)
        rows, columns = np.nonzero(missing)
        values[rows, columns] = self.medians_[columns]
        return np.hstack([values, missing[:, self.flagged_].astype(float)])

    def get_feature_names_out(self, input_features=None):
        names = np.asarray(input_features, dtype=object)
        return np.r_[names, [f"{name} missing" for name in names[self.flagged_]]]


class LevelIndicators(TransformerMixin, BaseEstimator):
    """One 0/1 column per category level (and one for missing), straight from pandas category codes.

    The encoder has already fixed each column's levels, so there is nothing
    to learn here but their names.
    """

    def fit(self, X, y=None):
        self.levels_ = {column: list(X[column].cat.categories) for column in X.columns}
        # Training share of each indicator, missing first: explanations measure a lead against it.
        self.frequencies_ = {
            column: np.bincount(X[column].cat.codes.to_numpy() + 1, minlength=len(levels) + 1) / max(len(X), 1)
            for column, levels in self.levels_.items()
        }
        return self

    def transform(self, X):
        blocks = []
        for column, levels in self.levels_.items():
            codes = X[column].cat.codes.to_numpy()
            block = np.zeros((len(X), len(levels) + 1))
            block[np.arange(len(X)), codes + 1] = 1.0  # code -1 (missing) lands in the first column
            blocks.append(block)
        return np.hstack(blocks) if blocks else np.zeros((len(X), 0))

    def get_feature_names_out(self, input_features=None):
        return np.array(
            [f"{column}={level}" for column, levels in self.levels_.items() for level in ("(missing)", *levels)],
            dtype=object,
        )


def encoded_width(X: pd.DataFrame, numeric, categorical) -> int:
    """Columns the logistic regression sees: each number and its missing flag, one per level and missing."""
    flags = int(X[list(numeric)].isna().any().sum()) if numeric else 0
    return len(numeric) + flags + sum(len(X[column].cat.categories) + 1 for column in categorical)


@dataclass(frozen=True)
class LogisticCandidate:
    """L2-regularised logistic regression: log of skewed counts, median-imputed with missing flags, one-hot levels."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    strength: float | None = None  # sklearn's C
    seed: int = 42
    name: str = "logistic"
    strengths: tuple[float, ...] = field(default=LOGISTIC_STRENGTHS)
    log_skewed: bool = True  # False gives the plain one-hot logistic regression used as a baseline
    solver: str = "auto"  # the baseline keeps scikit-learn's default, lbfgs, as teams run it

    def pipeline(self, strength: float, X: pd.DataFrame | None = None) -> Pipeline:
        steps = [SkewedLog()] if self.log_skewed else []
        numeric = make_pipeline(*steps, MissingAsMedian(), StandardScaler())
        columns = ColumnTransformer(
            [("numeric", numeric, list(self.numeric)), ("categorical", LevelIndicators(), list(self.categorical))],
            sparse_threshold=0.0,
        )
        model = LogisticRegression(C=strength, solver=self._solver(X), max_iter=1_000, random_state=self.seed)
        return Pipeline([("columns", columns), ("model", model)])

    def _solver(self, X: pd.DataFrame | None) -> str:
        if self.solver != "auto":
            return self.solver
        # Newton-Cholesky suits many rows and a few hundred columns: twice as fast as lbfgs, and exact; on
        # 2,000 columns one fit took minutes where lbfgs takes seconds.
        return "newton-cholesky" if X is None or encoded_width(X, self.numeric, self.categorical) <= NEWTON_MAX_COLUMNS else "lbfgs"

    def fit(self, X: pd.DataFrame, y: np.ndarray, weight=None) -> Pipeline:
        return self.pipeline(self.strength, X).fit(X, y, model__sample_weight=weight)

    @staticmethod
    def inputs(fitted: Pipeline, X: pd.DataFrame | EncodedRows) -> np.ndarray:
        """The columns the regression reads (``fitted[:-1].transform(X)``): its margin and contributions both
        start from them."""
        return linear_form(fitted).columns(X)

    @staticmethod
    def margin_of_inputs(fitted: Pipeline, inputs: np.ndarray) -> np.ndarray:
        return linear_form(fitted).margin_of_columns(inputs)

    @classmethod
    def margin(cls, fitted: Pipeline, X: pd.DataFrame) -> np.ndarray:
        return cls.margin_of_inputs(fitted, cls.inputs(fitted, X))  # fitted.decision_function(X), bit for bit

    @staticmethod
    def probability(fitted: Pipeline, X: pd.DataFrame) -> np.ndarray:
        return fitted.predict_proba(X)[:, 1]

    def describe(self) -> dict:
        return {"C": self.strength}
