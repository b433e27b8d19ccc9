"""The fast TreeSHAP agrees with LightGBM's pred_contrib and the shap package, on every kind of split."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import shap

from leadscore.models import treeshap
from leadscore.models.treeshap import TreeShap

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def leads() -> tuple[pd.DataFrame, np.ndarray]:
    """Counts, a column that is often exactly zero, gaps in every column and categories with many levels."""
    rng = np.random.default_rng(7)
    n = 6_000
    frame = pd.DataFrame(
        {
            "pricing_views": rng.poisson(1.5, n).astype(float),
            "days_since_visit": rng.exponential(20, n),
            "score_delta": np.where(rng.random(n) < 0.4, 0.0, rng.normal(size=n)),
            "industry": pd.Categorical(rng.choice([f"industry {i}" for i in range(14)], n)),
            "size": pd.Categorical(rng.choice(["1-10", "11-50", "51-200"], n)),
        }
    )
    for column in frame.columns:
        frame.loc[rng.random(n) < 0.1, column] = np.nan
    logit = (
        0.8 * frame["pricing_views"].fillna(0)
        - 0.03 * frame["days_since_visit"].fillna(60)
        + frame["score_delta"].fillna(-1)
        + frame["industry"].cat.codes.isin([1, 4, 5, 9]) * 1.5
        - (frame["size"] == "1-10") * 0.7
    )
    y = (logit + rng.logistic(size=n) > 0.5).astype(int).to_numpy()
    return frame, y


def train(frame, y, rounds=40, **params) -> lgb.Booster:
    settings = {"objective": "binary", "num_leaves": 15, "min_data_in_leaf": 10, "verbose": -1, "seed": 1,
                "max_cat_to_onehot": 4, "min_data_per_group": 10, "cat_smooth": 1.0, **params}
    return lgb.train(settings, lgb.Dataset(frame, y), rounds)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"zero_as_missing": True},  # zeros and gaps take the default branch
        {"use_missing": False},  # gaps read as zero
        {"num_leaves": 63, "min_data_in_leaf": 3},  # deep paths, features repeated along a path
        {"objective": "regression"},
    ],
    ids=["default", "zero-as-missing", "no-missing", "deep", "regression"],
)
def test_contributions_match_pred_contrib(leads, params):
    frame, y = leads
    booster = train(frame, y, **params)
    expected = booster.predict(frame, pred_contrib=True)
    phi = TreeShap(booster).contributions(frame)
    assert phi.shape == expected.shape
    assert np.abs(phi - expected).max() < TOLERANCE
    assert np.allclose(phi.sum(axis=1), booster.predict(frame, raw_score=True), atol=TOLERANCE)


def test_categorical_splits_are_used_and_read_like_lightgbm(leads):
    frame, y = leads
    booster = train(frame, y)
    splits = booster.trees_to_dataframe()
    assert (splits["decision_type"] == "==").any(), "the fixture must grow categorical splits"
    unseen = frame.head(200).copy()
    # Levels the booster never saw, in a different order: LightGBM maps them back to its own codes.
    unseen["industry"] = unseen["industry"].cat.add_categories(["brand new"]).cat.reorder_categories(
        ["brand new", *frame["industry"].cat.categories]
    )
    unseen.loc[unseen.index[:20], "industry"] = "brand new"
    expected = booster.predict(unseen, pred_contrib=True)
    assert np.abs(TreeShap(booster).contributions(unseen) - expected).max() < TOLERANCE


@pytest.mark.filterwarnings("ignore:LightGBM binary classifier with TreeExplainer")
def test_agrees_with_the_shap_package(leads):
    frame, y = leads
    booster = train(frame, y)
    reference = shap.TreeExplainer(booster).shap_values(frame.head(500))
    reference = reference[1] if isinstance(reference, list) else reference
    phi = TreeShap(booster).contributions(frame.head(500))
    assert np.abs(phi[:, :-1] - reference).max() < TOLERANCE
    assert phi[0, -1] == pytest.approx(float(np.ravel(shap.TreeExplainer(booster).expected_value)[-1]), abs=TOLERANCE)


def test_paths_too_long_for_a_table_are_computed_per_row(leads, monkeypatch):
    frame, y = leads
    booster = train(frame, y, num_leaves=63, min_data_in_leaf=3)
    monkeypatch.setattr(treeshap, "MAX_TABLE_FEATURES", 2)
    explainer = TreeShap(booster)
    assert (explainer._trees.table_start < 0).any()
    expected = booster.predict(frame.head(1_000), pred_contrib=True)
    assert np.abs(explainer.contributions(frame.head(1_000)) - expected).max() < TOLERANCE


def test_single_leaf_trees_only_add_to_the_expected_value():
    frame = pd.DataFrame({"x": np.arange(200.0)})
    y = np.r_[np.zeros(100), np.ones(100)]
    booster = lgb.train({"objective": "binary", "min_data_in_leaf": 150, "verbose": -1}, lgb.Dataset(frame, y), 3)
    phi = TreeShap(booster).contributions(frame)
    assert np.allclose(phi, booster.predict(frame, pred_contrib=True))
    assert np.all(phi[:, 0] == 0)


def test_an_empty_frame_gives_no_rows(leads):
    frame, y = leads
    assert TreeShap(train(frame, y, rounds=3)).contributions(frame.head(0)).shape == (0, frame.shape[1] + 1)


def test_multiclass_models_are_refused(leads):
    frame, y = leads
    booster = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1}, lgb.Dataset(frame, y + (y > 0)), 2)
    with pytest.raises(ValueError, match="single-output"):
        TreeShap(booster)


def test_a_few_rows_explained_without_threads_equal_the_same_rows_explained_in_parallel(leads):
    frame, y = leads
    explainer = TreeShap(train(frame, y))
    together = explainer.contributions(frame)  # many blocks: the parallel kernel
    assert len(frame) > treeshap.ROWS_PER_BLOCK
    for row in (0, 17, len(frame) - 1):
        alone = explainer.contributions(frame.iloc[[row]])  # one block: the serial twin
        assert np.array_equal(alone[0], together[row])


def test_the_models_margin_reads_rows_as_lightgbm_reads_a_frame(leads):
    from leadscore.models.candidates import SINGLE_THREAD_ROWS, LightGBMCandidate

    frame, y = leads
    booster = train(frame, y)
    shuffled = frame.assign(industry=frame["industry"].cat.reorder_categories(frame["industry"].cat.categories[::-1]))
    for rows in (shuffled, shuffled.iloc[:SINGLE_THREAD_ROWS], shuffled.iloc[[3]]):
        assert np.array_equal(LightGBMCandidate.margin(booster, rows), booster.predict(rows, raw_score=True))
