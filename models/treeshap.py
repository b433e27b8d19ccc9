"""Exact TreeSHAP for LightGBM models, several times faster than LightGBM's own ``pred_contrib``.

Path-dependent TreeSHAP (Lundberg et al., 2020) gives every leaf a share of
each row's contributions. That share depends on the row only through which
of the leaf's path conditions the row meets: one bit per distinct feature on
the path. So each leaf gets a table of its contributions for every pattern of
bits, computed once per model ("path patterns", as in Fast TreeSHAP v2), and
explaining a row becomes a walk down each tree that carries the pattern from
parent to child, then one table read per leaf and path feature. Per tree and
row that costs O(L·D) instead of O(L·D²).

Categorical splits are read as LightGBM reads them, and so are missing
values and zeros, so the contributions add up to LightGBM's raw margin and
agree with ``pred_contrib`` to floating-point noise.

Leaves whose paths hold more than ``MAX_TABLE_FEATURES`` distinct features
would need tables of 2^D entries; their contributions are computed per row
instead, with the same exact formula.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass

import lightgbm as lgb
import numba
import numpy as np
import pandas as pd

from leadscore.models.booster_input import booster_matrix, trained_levels

MAX_TABLE_FEATURES = 14
ROWS_PER_BLOCK = 512  # rows one thread explains between allocations

NUMERICAL, CATEGORICAL = 0, 1
MISSING_NONE, MISSING_ZERO, MISSING_NAN = 0, 1, 2
_MISSING_TYPES = {"None": MISSING_NONE, "Zero": MISSING_ZERO, "NaN": MISSING_NAN}
ZERO_THRESHOLD = 1e-35  # LightGBM's kZeroThreshold: values this close to zero count as zero


@dataclass(frozen=True)
class _Trees:
    """All trees of a booster as flat arrays: splits in preorder (parents first), then leaves, tree by tree."""

    split_start: np.ndarray  # splits of tree t: split_start[t]:split_start[t + 1]
    feature: np.ndarray
    threshold: np.ndarray
    split_kind: np.ndarray
    missing_type: np.ndarray
    default_left: np.ndarray
    category_start: np.ndarray  # categorical splits: categories going left, as a 0/1 run in `category_left`
    category_count: np.ndarray
    category_left: np.ndarray
    split_parent: np.ndarray  # index of the parent split within the tree; -1 for the root
    split_is_left: np.ndarray  # the node is its parent's left child
    split_bit: np.ndarray  # bit of the parent's split feature in the path pattern below this node
    leaf_start: np.ndarray  # leaves of tree t: leaf_start[t]:leaf_start[t + 1]
    leaf_parent: np.ndarray
    leaf_is_left: np.ndarray
    leaf_bit: np.ndarray
    leaf_value: np.ndarray
    path_start: np.ndarray  # a leaf's distinct path features: path_feature[path_start:path_start + path_length]
    path_length: np.ndarray
    path_feature: np.ndarray
    path_zero: np.ndarray  # share of training rows that meet the leaf's conditions on that feature
    path_gain: np.ndarray  # (1 - z) / z for that share z
    table_start: np.ndarray  # -1: computed per row
    table: np.ndarray
    expected_value: float
    max_splits: int
    max_path: int


class TreeShap:
    """Exact path-dependent SHAP values of a LightGBM binary or regression booster.

    ``contributions`` has LightGBM's ``pred_contrib`` layout: one column per
    feature, then the expected value; each row sums to the raw margin.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"visits": rng.poisson(2, 500).astype(float), "size": rng.normal(size=500)})
    >>> y = (X["visits"] + rng.normal(size=500) > 2).astype(int)
    >>> booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), 20)
    >>> phi = TreeShap(booster).contributions(X)
    >>> bool(np.allclose(phi.sum(axis=1), booster.predict(X, raw_score=True)))
    True
    """

    def __init__(self, booster: lgb.Booster) -> None:
        dump = booster.dump_model()
        if dump.get("num_tree_per_iteration", 1) != 1:
            raise ValueError("TreeShap explains single-output models (binary or regression), not multiclass ones.")
        self.feature_names = list(dump["feature_names"])
        self._levels = trained_levels(dump.get("pandas_categorical"))
        self._trees = _flatten([tree["tree_structure"] for tree in dump["tree_info"]])
        self.expected_value = self._trees.expected_value

    def matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return booster_matrix(X, self._levels)

    def contributions(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """SHAP values in log-odds, one column per feature plus the expected value last."""
        values = self.matrix(X)
        if values.shape[1] != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} features, got {values.shape[1]}")
        out = np.zeros((len(values), len(self.feature_names) + 1))
        trees = self._trees
        # One block of rows (a request's few leads) gains nothing from threads and pays their start and, on a
        # busy machine, the wait for every one of them: the serial twin answers in a fraction of the time.
        explain = _explain if len(values) > ROWS_PER_BLOCK else _explain_serial
        explain(
            values, out, trees.split_start, trees.feature, trees.threshold, trees.split_kind, trees.missing_type,
            trees.default_left, trees.category_start, trees.category_count, trees.category_left, trees.split_parent,
            trees.split_is_left, trees.split_bit, trees.leaf_start, trees.leaf_parent, trees.leaf_is_left,
            trees.leaf_bit, trees.leaf_value, trees.path_start, trees.path_length, trees.path_feature,
            trees.path_zero, trees.path_gain, trees.table_start, trees.table, trees.max_splits, trees.max_path,
        )
        out[:, -1] = trees.expected_value
        return out

    @property
    def table_bytes(self) -> int:
        return int(self._trees.table.nbytes)


# --- from LightGBM's dump to flat arrays -----------------------------------------------------


def _flatten(structures: list[dict]) -> _Trees:
    splits: list[dict] = []
    leaves: list[dict] = []
    split_start, leaf_start = [0], [0]
    expected = 0.0
    for root in structures:
        tree_splits, tree_leaves = _walk(root)
        splits.extend(tree_splits)
        leaves.extend(tree_leaves)
        split_start.append(len(splits))
        leaf_start.append(len(leaves))
        if not tree_splits:
            expected += tree_leaves[0]["value"]
        else:
            expected += sum(leaf["value"] * leaf["count"] for leaf in tree_leaves) / tree_splits[0]["count"]

    category_start, category_count, category_left = [], [], []
    for split in splits:
        left = split.get("categories", [])
        category_start.append(len(category_left))
        category_count.append(max(left) + 1 if left else 0)
        category_left.extend(c in left for c in range(category_count[-1]))

    path_start, path_feature, path_zero, table_start, tables = [], [], [], [], []
    table_size = 0
    for leaf in leaves:
        path_start.append(len(path_feature))
        path_feature.extend(f for f, _ in leaf["path"])
        path_zero.extend(z for _, z in leaf["path"])
        if 0 < len(leaf["path"]) <= MAX_TABLE_FEATURES:
            tables.append(_leaf_table(np.array([z for _, z in leaf["path"]]), leaf["value"]))
            table_start.append(table_size)
            table_size += len(tables[-1])
        else:
            table_start.append(-1)

    def column(records: list[dict], key: str, dtype) -> np.ndarray:
        return np.array([record[key] for record in records], dtype=dtype)

    path_length = np.array([len(leaf["path"]) for leaf in leaves], np.int32)
    return _Trees(
        split_start=np.asarray(split_start, np.int64),
        feature=column(splits, "feature", np.int32),
        threshold=np.array([split.get("threshold", 0.0) for split in splits], np.float64),
        split_kind=np.array([CATEGORICAL if "categories" in split else NUMERICAL for split in splits], np.int8),
        missing_type=np.array([_MISSING_TYPES[split["missing_type"]] for split in splits], np.int8),
        default_left=column(splits, "default_left", np.bool_),
        category_start=np.asarray(category_start, np.int64),
        category_count=np.asarray(category_count, np.int32),
        category_left=np.asarray(category_left, np.bool_),
        split_parent=column(splits, "parent", np.int64),
        split_is_left=column(splits, "is_left", np.bool_),
        split_bit=column(splits, "bit", np.int64),
        leaf_start=np.asarray(leaf_start, np.int64),
        leaf_parent=column(leaves, "parent", np.int64),
        leaf_is_left=column(leaves, "is_left", np.bool_),
        leaf_bit=column(leaves, "bit", np.int64),
        leaf_value=column(leaves, "value", np.float64),
        path_start=np.asarray(path_start, np.int64),
        path_length=path_length,
        path_feature=np.asarray(path_feature, np.int32),
        path_zero=np.asarray(path_zero, np.float64),
        path_gain=(1 - np.asarray(path_zero, np.float64)) / np.asarray(path_zero, np.float64),
        table_start=np.asarray(table_start, np.int64),
        table=np.concatenate(tables) if tables else np.zeros(0),
        expected_value=float(expected),
        max_splits=max(int(np.diff(split_start).max()), 1),
        max_path=max(int(path_length.max()), 1),
    )


def _walk(root: dict) -> tuple[list[dict], list[dict]]:
    """The tree's splits in preorder and its leaves, each pointing at its parent split.

    Each node records the bit its parent's split feature holds in the path
    pattern below it; each leaf its distinct path features with the share of
    training rows (counts, as LightGBM's TreeSHAP uses) that meet the path's
    conditions on each.
    """
    splits: list[dict] = []
    leaves: list[dict] = []

    def visit(node: dict, parent: int, is_left: bool, bit: int, path: list[tuple[int, float]]) -> None:
        place = {"parent": parent, "is_left": is_left, "bit": bit}
        if "leaf_value" in node:
            leaves.append({**place, "value": float(node["leaf_value"]), "count": _count(node), "path": path})
            return
        split = {
            **place,
            "feature": int(node["split_feature"]),
            "missing_type": node["missing_type"],
            "default_left": bool(node["default_left"]),
            "count": _count(node),
        }
        if node["decision_type"] == "==":
            split["categories"] = [int(c) for c in str(node["threshold"]).split("||")]
        else:
            split["threshold"] = float(node["threshold"])
        here = len(splits)
        splits.append(split)
        feature = split["feature"]
        positions = [f for f, _ in path]
        position = positions.index(feature) if feature in positions else len(path)
        for child, left in ((node["left_child"], True), (node["right_child"], False)):
            share = _count(child) / split["count"]
            child_path = list(path)
            if position < len(path):
                child_path[position] = (feature, path[position][1] * share)
            else:
                child_path.append((feature, share))
            visit(child, here, left, position, child_path)

    visit(root, -1, False, 0, [])
    return splits, leaves


def _count(node: dict) -> float:
    return float(node["leaf_count"] if "leaf_value" in node else node["internal_count"])


@numba.njit(cache=True)
def _leaf_table(zeros, value):
    """One number per pattern of a leaf, from which every contribution of the leaf follows.

    Bit j of a pattern is set when the row fails the leaf's conditions on
    path feature j. With O the features met, Z those failed, z_k the shares
    of training rows meeting each feature's conditions and w(s) the Shapley
    weight s!(D-s-1)!/D!, the entry is

        C(O) = v * prod(z_k, k in Z) * sum(w(s) * e_{|O|-s}(z_k, k in O), s = 0..|O|)

    (e_k: elementary symmetric polynomials). A failed feature then
    contributes -C(O); a met feature i contributes C(O - {i}) * (1 - z_i) / z_i.
    A table of 2^D numbers instead of D * 2^D keeps a tree's tables in cache.
    """
    depth = len(zeros)
    weights = np.empty(depth)
    for s in range(depth):
        weights[s] = np.exp(math.lgamma(s + 1) + math.lgamma(depth - s) - math.lgamma(depth + 1))
    table = np.zeros(1 << depth)
    symmetric = np.empty(depth + 1)
    for pattern in range(1, 1 << depth):  # all met (pattern 0) is never read
        symmetric[:] = 0.0
        symmetric[0] = 1.0
        met = 0
        failed_share = 1.0
        for k in range(depth):
            if pattern >> k & 1:
                failed_share *= zeros[k]
            else:
                met += 1
                for t in range(met, 0, -1):
                    symmetric[t] += symmetric[t - 1] * zeros[k]
        total = 0.0
        for s in range(met + 1):
            total += weights[s] * symmetric[met - s]
        table[pattern] = value * failed_share * total
    return table


# --- the compiled kernels ------------------------------------------------------------------


@numba.njit(cache=True)
def _leaf_contributions(zeros, ones, value, out):
    """One leaf's exact SHAP contributions to its path features (EXTEND then UNWIND, Lundberg's Algorithm 2).

    ``zeros[j]`` is the share of training rows meeting the conditions on
    feature j, ``ones[j]`` is 1 when this row meets them and 0 otherwise.
    """
    depth = len(zeros)
    weights = np.zeros(depth + 1)
    weights[0] = 1.0
    for length in range(1, depth + 1):  # extend the path by feature length - 1
        zero, one = zeros[length - 1], ones[length - 1]
        weights[length] = 0.0
        for i in range(length - 1, -1, -1):
            weights[i + 1] += one * weights[i] * (i + 1) / (length + 1)
            weights[i] = zero * weights[i] * (length - i) / (length + 1)
    for j in range(depth):
        zero, one = zeros[j], ones[j]
        total = 0.0
        if one != 0.0:
            carried = weights[depth]
            for i in range(depth - 1, -1, -1):
                share = carried * (depth + 1) / ((i + 1) * one)
                total += share
                carried = weights[i] - share * zero * (depth - i) / (depth + 1)
        else:
            for i in range(depth - 1, -1, -1):
                total += weights[i] / zero * (depth + 1) / (depth - i)
        out[j] = total * (one - zero) * value


@numba.njit(cache=True, inline="always")
def _goes_left(value, node, threshold, split_kind, missing_type, default_left, category_start, category_count, category_left):
    """LightGBM's own decision (tree.h: NumericalDecision, CategoricalDecision)."""
    if split_kind[node] == CATEGORICAL:
        if np.isnan(value) or value < 0:  # missing and negative codes go right
            return False
        category = int(value)
        if category >= category_count[node]:
            return False
        return category_left[category_start[node] + category]
    kind = missing_type[node]
    if np.isnan(value) and kind != MISSING_NAN:
        value = 0.0
    if (kind == MISSING_ZERO and -ZERO_THRESHOLD <= value <= ZERO_THRESHOLD) or (kind == MISSING_NAN and np.isnan(value)):
        return default_left[node]
    return value <= threshold[node]


@numba.njit(parallel=True, cache=True)
def _explain(
    X, out, split_start, feature, threshold, split_kind, missing_type, default_left, category_start, category_count,
    category_left, split_parent, split_is_left, split_bit, leaf_start, leaf_parent, leaf_is_left, leaf_bit,
    leaf_value, path_start, path_length, path_feature, path_zero, path_gain, table_start, table, max_splits, max_path,
):
    rows = X.shape[0]
    blocks = (rows + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK
    for block in numba.prange(blocks):
        pattern = np.zeros(max_splits, np.int64)  # bits set: path conditions this row fails above the split
        left = np.zeros(max_splits, np.bool_)
        ones = np.zeros(max_path)
        scratch = np.zeros(max_path)
        # Tree by tree over a block of rows: the tree's tables stay in cache while every row of the block reads them.
        for tree in range(len(split_start) - 1):
            first_split, first_leaf = split_start[tree], leaf_start[tree]
            splits = split_start[tree + 1] - first_split
            if splits == 0:
                continue  # a single leaf: only the expected value
            for row in range(block * ROWS_PER_BLOCK, min(rows, (block + 1) * ROWS_PER_BLOCK)):
                x = X[row]
                phi = out[row]
                pattern[0] = 0
                for local in range(splits):
                    node = first_split + local
                    if local > 0:
                        up = split_parent[node]
                        pattern[local] = pattern[up] | (np.int64(left[up] != split_is_left[node]) << split_bit[node])
                    left[local] = _goes_left(
                        x[feature[node]], node, threshold, split_kind, missing_type, default_left,
                        category_start, category_count, category_left,
                    )
                for leaf in range(first_leaf, leaf_start[tree + 1]):
                    up = leaf_parent[leaf]
                    seen = pattern[up] | (np.int64(left[up] != leaf_is_left[leaf]) << leaf_bit[leaf])
                    depth = path_length[leaf]
                    start = path_start[leaf]
                    if table_start[leaf] >= 0:
                        entry = table_start[leaf]
                        failed = table[entry + seen]
                        for j in range(depth):
                            if (seen >> j) & 1:
                                phi[path_feature[start + j]] -= failed
                            else:
                                phi[path_feature[start + j]] += path_gain[start + j] * table[entry + (seen | (1 << j))]
                    else:
                        for j in range(depth):
                            ones[j] = 0.0 if (seen >> j) & 1 else 1.0
                        _leaf_contributions(path_zero[start:start + depth], ones[:depth], leaf_value[leaf], scratch[:depth])
                        for j in range(depth):
                            phi[path_feature[start + j]] += scratch[j]


def _serial_twin(parallel, name: str):
    """``parallel``'s code compiled without threads (``numba.prange`` then runs as ``range``), under its own name:
    numba names its cache files after the function, and the twin must not read the parallel one's."""
    source = parallel.py_func
    twin = types.FunctionType(source.__code__, source.__globals__, name, source.__defaults__, source.__closure__)
    twin.__qualname__ = name
    return numba.njit(cache=True)(twin)


_explain_serial = _serial_twin(_explain, "_explain_serial")
