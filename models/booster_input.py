"""Rows as a LightGBM booster reads them, built once and given to both the booster and TreeSHAP.

LightGBM converts a pandas frame itself at every ``predict``, at a fixed cost
of several milliseconds whatever the rows (a shallow copy, a per-column
category check, a dtype search): a third of the time to score one lead. The
numbers built here are the ones it builds, so its predictions are the same.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.models.encoding import EncodedRows


def trained_levels(pandas_categorical: list[list] | None) -> list[pd.Index]:
    """A booster's ``pandas_categorical`` as indexes: compared with a frame's categories in one vectorised step,
    where comparing lists reads every level of a string column one by one."""
    return [pd.Index(levels) for levels in pandas_categorical or []]


def booster_matrix(X: pd.DataFrame | EncodedRows | np.ndarray, levels: list[pd.Index]) -> np.ndarray:
    """Columns in order, numbers as floats, categories as codes of the booster's ``trained_levels`` (one per
    categorical column), missing as NaN.

    Columns are taken by position, as LightGBM takes them (it renames
    columns whose names hold spaces or special characters).
    """
    if isinstance(X, np.ndarray):
        return np.ascontiguousarray(X, dtype=np.float64)
    if isinstance(X, EncodedRows):
        return _rows_matrix(X, levels)
    categorical = [position for position, dtype in enumerate(X.dtypes) if isinstance(dtype, pd.CategoricalDtype)]
    numeric = np.setdiff1d(np.arange(X.shape[1]), categorical)
    matrix = np.empty((len(X), X.shape[1]))
    if len(numeric):  # one block read instead of a Series per column: most of the cost for a few rows
        matrix[:, numeric] = X.iloc[:, numeric].to_numpy(dtype=np.float64, na_value=np.nan)
    remaining = iter(levels)
    for position in categorical:
        values = X.iloc[:, position]
        # Codes must count the levels the booster was trained with, as LightGBM's own pandas input does.
        trained = next(remaining, None)
        if trained is not None and not values.cat.categories.equals(trained):
            values = values.cat.set_categories(trained)
        codes = values.cat.codes.to_numpy().astype(np.float64)
        codes[codes < 0] = np.nan
        matrix[:, position] = codes
    return matrix


def _rows_matrix(rows: EncodedRows, levels: list[pd.Index]) -> np.ndarray:
    """``booster_matrix`` of the encoder's arrays: the numbers first, then each text column's codes, as in its
    frame."""
    matrix = np.empty((len(rows), len(rows.numeric) + len(rows.codes)))
    matrix[:, :len(rows.numeric)] = rows.numbers
    remaining = iter(levels)
    for position, (column, codes) in enumerate(rows.codes.items(), start=len(rows.numeric)):
        trained = next(remaining, None)
        if trained is not None and not rows.dtypes[column].categories.equals(trained):
            codes = pd.Categorical.from_codes(codes, dtype=rows.dtypes[column]).set_categories(trained).codes
        matrix[:, position] = np.where(codes < 0, np.nan, codes)
    return matrix
