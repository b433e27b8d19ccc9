"""From a margin (log-odds) to a probability a marketer can trust: 0.30 means three in ten convert."""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import isotonic_regression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import StratifiedKFold

METHODS = ("sigmoid", "isotonic")


class CentredIsotonic:
    """Isotonic regression that interpolates between the centres of its pooled blocks.

    Plain isotonic regression is a step function: every lead in a step gets the
    same probability, and when the validation signal is weak a few steps can
    swallow most leads, destroying the ranking the model learned. Joining the
    block centres keeps the fit monotone and calibrated but strictly increasing
    inside the range it was fitted on (centred isotonic regression, Oron and
    Flournoy 2017), so calibration never turns distinct leads into ties.
    """

    def fit(self, margin: np.ndarray, y: np.ndarray) -> CentredIsotonic:
        values, inverse, counts = np.unique(margin, return_inverse=True, return_counts=True)
        positives = np.bincount(inverse, weights=y)
        blocks = _pool(positives / counts, counts)
        leads = np.bincount(blocks, weights=counts)
        converted = np.bincount(blocks, weights=positives)
        margin_sum = np.bincount(blocks, weights=values * counts)
        # A block without a conversion does not mean a 0 % chance: one pseudo-lead at the overall rate
        # keeps every level honest (and log loss finite). Smoothing can reorder blocks of different
        # sizes, so they are pooled once more.
        smoothed = (converted + np.mean(y)) / (leads + 1)
        merged = _pool(smoothed, leads + 1)
        weight = np.bincount(merged, weights=leads + 1)
        self.levels_ = np.bincount(merged, weights=smoothed * (leads + 1)) / weight
        self.centres_ = np.bincount(merged, weights=margin_sum) / np.bincount(merged, weights=leads)
        return self

    def predict(self, margin: np.ndarray) -> np.ndarray:
        return np.interp(margin, self.centres_, self.levels_)


def _pool(rates: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Block number of each (ordered) entry after pooling adjacent violators of an increasing order."""
    fitted = isotonic_regression(rates, sample_weight=weights, y_min=0.0, y_max=1.0)
    return np.r_[0, np.cumsum(np.diff(fitted) != 0)]


def _fit(method: str, margin: np.ndarray, y: np.ndarray):
    if method == "sigmoid":
        return LogisticRegression(C=1e6).fit(margin.reshape(-1, 1), y)
    return CentredIsotonic().fit(margin, y)


def _predict(method: str, fitted, margin: np.ndarray) -> np.ndarray:
    if method == "sigmoid":
        return fitted.predict_proba(margin.reshape(-1, 1))[:, 1]
    return fitted.predict(margin)


class Calibrator:
    """Sigmoid (Platt) or centred isotonic, whichever has the lower Brier score in cross-validation.

    It must be fitted on margins of rows the model did not learn from: the
    training stage passes the walk-forward predictions of the validation slice.
    """

    def __init__(self, folds: int = 5, seed: int = 42):
        self.folds = folds
        self.seed = seed

    def fit(self, margin: np.ndarray, y: np.ndarray) -> Calibrator:
        margin = np.asarray(margin, dtype=float)
        y = np.asarray(y, dtype=int)
        folds = min(self.folds, int(np.bincount(y, minlength=2).min()))
        self.cv_brier_ = {}
        if folds >= 2:
            splitter = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
            for method in METHODS:
                predicted = np.empty(len(y))
                for learn, check in splitter.split(margin, y):
                    predicted[check] = _predict(method, _fit(method, margin[learn], y[learn]), margin[check])
                self.cv_brier_[method] = float(brier_score_loss(y, predicted))
            self.method_ = min(self.cv_brier_, key=self.cv_brier_.get)
        else:
            # Too few positives to compare: the two-parameter sigmoid is the safer fit.
            self.method_ = "sigmoid"
        self.fitted_ = _fit(self.method_, margin, y)
        self.rows_ = len(y)
        return self

    def predict(self, margin: np.ndarray) -> np.ndarray:
        margin = np.asarray(margin, dtype=float)
        if not margin.size:
            return np.zeros(0)  # scikit-learn refuses an empty batch; scoring an empty file is no error
        return _predict(self.method_, self.fitted_, margin)
