"""Turning a feature frame into what the estimators read, with everything learned at fit time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from leadscore.arrays import Levels
from leadscore.errors import LeadscoreError
from leadscore.features.parsing import NumberFormat

RARE = "(other)"
# Levels remembered per column as seen at fit: beyond them (a column of company names), the rarer levels
# count as never seen, which is how the model scores them anyway: as "(other)".
SEEN_MAX = 10_000


class FrameEncoder(TransformerMixin, BaseEstimator):
    """Numeric columns as float (missing stays missing); text columns as categories learned at fit.

    Levels seen fewer than ``min_count`` times at fit, and levels never seen,
    become one ``(other)`` level, so a new campaign name at scoring time is
    scored like the rare ones were trained, instead of failing. Missing values
    stay missing: LightGBM learns where they go. ``seen_`` keeps every level
    seen at fit (the ``SEEN_MAX`` most frequent), sorted, so that drift checks
    can tell a rare level from a new one.

    Examples
    --------
    >>> encoder = FrameEncoder(numeric=["visits"], categorical=["source"], min_count=2)
    >>> frame = pd.DataFrame({"visits": [1, None, 3], "source": ["ads", "ads", "fair"]})
    >>> encoder.fit_transform(frame)["source"].tolist()
    ['ads', 'ads', '(other)']
    """

    def __init__(self, numeric=(), categorical=(), min_count: int = 10):
        self.numeric = numeric
        self.categorical = categorical
        self.min_count = min_count

    def fit(self, X: pd.DataFrame, y=None) -> FrameEncoder:
        self._check_columns(X)
        self.__dict__.pop("_lookups_", None)  # built from an earlier fit's levels
        self.levels_, self.seen_ = {}, {}
        for column in self.categorical:
            counts = X[column].dropna().astype(str).value_counts()
            frequent = counts[counts >= self.min_count]
            # Most frequent first, ties by name: the order is stable across runs.
            ordered = sorted(frequent.index, key=lambda level: (-frequent[level], level))
            self.levels_[column] = [*ordered, RARE]
            self.seen_[column] = sorted(counts.sort_index().sort_values(ascending=False, kind="stable").index[:SEEN_MAX])
        self.feature_names_in_ = np.array([*self.numeric, *self.categorical], dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return self.encode_rows(X).frame()

    def encode_rows(self, X: pd.DataFrame) -> EncodedRows:
        """What ``transform`` returns, as arrays: the estimators read these, and a frame built only to be taken
        apart again is most of the cost of encoding a lead scored alone."""
        check_is_fitted(self, "levels_")
        self._check_columns(X)
        lookups = self._lookups()
        codes = {column: self._codes(X[column], lookups[column][0]) for column in self.categorical}
        return EncodedRows(self._numbers(X), list(self.numeric), codes,
                           {column: lookups[column][1] for column in self.categorical}, X.index)

    def seen_levels(self, column: str) -> Levels | None:
        """The levels of ``column`` seen at fit (``seen_``), ready for lookups; None for a numeric column or an
        encoder fitted before it kept them."""
        lookup = self._lookups().get(column)
        return lookup[2] if lookup else None

    def _lookups(self) -> dict[str, tuple[Levels, pd.CategoricalDtype, Levels | None]]:
        """Per text column: its kept levels, its category type and its seen levels, built once from what fit
        learned. Building an index of text from a list is most of the cost of encoding a lead scored alone."""
        lookups = self.__dict__.get("_lookups_")
        if lookups is None:
            seen = getattr(self, "seen_", None) or {}
            lookups = self.__dict__["_lookups_"] = {
                column: (Levels(levels[:-1]), pd.CategoricalDtype(levels),
                         Levels(seen[column]) if column in seen else None)
                for column, levels in self.levels_.items()
            }
        return lookups

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_lookups_", None)  # derived from levels_ and seen_: rebuilt on first use, never stored
        return state

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.array([*self.numeric, *self.categorical], dtype=object)

    def _check_columns(self, X: pd.DataFrame) -> None:
        missing = [c for c in [*self.numeric, *self.categorical] if c not in X.columns]
        if missing:
            raise LeadscoreError(
                f"The data lacks {len(missing)} column(s) the model needs: {', '.join(map(repr, missing[:10]))}"
                f"{' ...' if len(missing) > 10 else ''}. Score a table built the same way as the training table."
            )

    def _numbers(self, X: pd.DataFrame) -> np.ndarray:
        """The numeric columns as one (rows, columns) array of floats, missing as NaN."""
        numeric = list(self.numeric)
        if not numeric:
            return np.empty((len(X), 0))
        block = X[numeric]
        if all(pd.api.types.is_bool_dtype(kind) or pd.api.types.is_numeric_dtype(kind) for kind in block.dtypes):
            return block.to_numpy(dtype=float, na_value=np.nan)
        return np.column_stack([self._numeric(X[column], column) for column in numeric])

    @staticmethod
    def _codes(values: pd.Series, kept: Levels) -> np.ndarray:
        """Codes of the levels kept at fit, -1 for missing, RARE's for anything else (never seen, or rare)."""
        text = values.to_numpy(dtype=object, copy=True)
        missing = pd.isna(text)
        text[~missing] = [str(value) for value in text[~missing]]  # a number in a text column reads as its text
        codes = kept.positions_of(text)
        codes[(codes < 0) & ~missing] = len(kept)  # RARE, the last level
        codes[missing] = -1
        return codes

    @staticmethod
    def _numeric(values: pd.Series, column: str) -> np.ndarray:
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            return values.to_numpy(dtype=float, na_value=np.nan)
        # Text reaches here when the model's reading rule names no format for the column (a model trained on
        # the CRM, scoring a CSV): it gets the same number grammar, with decimal points and no placeholders.
        numbers, bad = NumberFormat().read(values)
        if bad.any():
            raise LeadscoreError(
                f"Column {column!r} must be numeric but holds {int(bad.sum()):,} values that are not numbers "
                f"(e.g. {values[bad].iloc[0]!r}). Fix the values, or mark them missing."
            )
        return numbers.to_numpy(dtype=float)


@dataclass(frozen=True)
class EncodedRows:
    """Rows through a ``FrameEncoder``: the numbers as one block, each text column as its codes."""

    numbers: np.ndarray  # (rows, numeric columns), float, missing as NaN
    numeric: list[str]
    codes: dict[str, np.ndarray]  # per text column: code of its level, -1 where missing
    dtypes: dict[str, pd.CategoricalDtype]  # per text column: its levels (``levels_``)
    index: pd.Index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.codes]

    def frame(self) -> pd.DataFrame:
        """The numbers, then the text columns as categories: what the estimators were trained on."""
        # The numbers as one block: a frame of one 2-D array is built in a fraction of the time of one built
        # from a column per array.
        numbers = pd.DataFrame(self.numbers, columns=self.numeric, index=self.index)
        if not self.codes:
            return numbers
        categories = {column: pd.Categorical.from_codes(codes, dtype=self.dtypes[column])
                      for column, codes in self.codes.items()}
        return pd.concat([numbers, pd.DataFrame(categories, index=self.index)], axis=1)
