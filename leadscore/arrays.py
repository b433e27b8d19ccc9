"""Array helpers shared by the simulator, the features, the models and the API."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd


def order_by_lead_and_time(lead: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The permutation that sorts rows by lead, then time, keeping ties in input order.

    Packs both into one int64 key: a stable sort of it is about 25 times faster
    than ``np.lexsort`` on event logs, which arrive almost grouped by lead.
    """
    lead = np.asarray(lead, dtype=np.int64)
    at = np.asarray(at, dtype=np.int64)
    if len(lead) == 0:
        return np.arange(0)
    lead_span = lead.max() - lead.min()
    time_span = at.max() - at.min()
    if lead_span >= 2**31 or time_span >= 2**32:
        return np.lexsort((at, lead))
    key = ((lead - lead.min()) << 32) | (at - at.min())
    return np.argsort(key, kind="stable")


def segment_starts(sorted_groups: np.ndarray) -> np.ndarray:
    """For each row of an array sorted by group, the index of its group's first row."""
    if len(sorted_groups) == 0:
        return np.arange(0)
    new_group = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    return np.maximum.accumulate(np.where(new_group, np.arange(len(sorted_groups)), 0))


def category_type(levels) -> pd.CategoricalDtype:
    """A category type of ``levels`` as they are, in their order, typed as pandas types them (text as ``str``),
    so that a table keeps its types through Parquet. Built from an index, it skips the checks that make
    ``from_codes(categories=list)`` and ``astype("category")`` cost 0.1 ms a column whatever the rows: a
    millisecond or two for a lead scored alone. A few levels (a request's leads) come from a cache: typing
    them is most of what is left, and the same few come back request after request."""
    if len(levels) <= FEW_LEVELS:
        try:
            return _few_levels_type(tuple(levels))
        except TypeError:  # an unhashable level
            pass
    return pd.CategoricalDtype(pd.Index(levels))


FEW_LEVELS = 32
# Up to this many values (a request's leads), a lookup or a grouping in Python beats pandas' fixed cost per call.
FEW_VALUES = 64


@functools.lru_cache(maxsize=4_096)
def _few_levels_type(levels: tuple) -> pd.CategoricalDtype:
    return pd.CategoricalDtype(pd.Index(list(levels)))  # immutable: shared safely between threads and frames


def object_array(values: list) -> np.ndarray:
    """``values`` as a one-dimensional array of Python objects, as they are (``np.array`` would turn a list of
    lists, or of equal-length texts, into something else)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def as_category(values) -> pd.Categorical:
    """``values`` as categories, sorted, missing as missing: ``astype("category")`` without its fixed cost."""
    values = np.asarray(values, dtype=object)
    if len(values) <= FEW_VALUES:
        few = _few_as_category(values)
        if few is not None:
            return few
    codes, levels = pd.factorize(values, sort=True)
    return pd.Categorical.from_codes(codes, dtype=category_type(levels))


def _few_as_category(values: np.ndarray) -> pd.Categorical | None:
    """``as_category`` of a few texts, in Python: ``pd.factorize`` costs a tenth of a millisecond whatever the
    rows, and a request's lead has ten such columns. None when a value is not text (factorize sorts mixed
    types its own way)."""
    missing = pd.isna(values)
    present = values[~missing].tolist()
    if not all(type(value) is str for value in present):
        return None
    levels = sorted(set(present))
    position = {level: code for code, level in enumerate(levels)}
    codes = np.full(len(values), -1, dtype=np.intp)
    codes[~missing] = [position[value] for value in present]
    return pd.Categorical.from_codes(codes, dtype=category_type(levels))


class Levels:
    """Distinct levels and their positions, looked up the fastest way for the number of values asked.

    ``pd.Index.get_indexer`` costs about 0.1 ms whatever the values: most of
    the time to look up the few values of a lead scored alone, which a
    dictionary finds in microseconds. Many values go to the index, which
    finds them in one vectorised pass. Both give the same positions.
    """

    def __init__(self, levels) -> None:
        self.index = pd.Index(levels)
        self.positions = {level: position for position, level in enumerate(self.index.tolist())}

    def __len__(self) -> int:
        return len(self.index)

    def positions_of(self, values: np.ndarray) -> np.ndarray:
        """Each value's position among the levels, -1 where it is not one of them."""
        if len(values) > FEW_VALUES:
            return self.index.get_indexer(values)
        position = self.positions.get
        return np.fromiter((position(value, -1) for value in values), np.intp, len(values))
