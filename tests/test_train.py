"""The training stage end to end: honest splits, guards that trip, calibration, reproducibility."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from leadscore.errors import LeadscoreError
from leadscore.features.flat import ColumnRoles, flat_feature_table
from leadscore.models.rules import HandSetScoring
from leadscore.pipelines.train import TrainingConfig, crm_training_table, monthly_cutoffs, train_model


@pytest.fixture(scope="module")
def crm():
    from leadscore.crm.simulator import SimulationConfig, simulate

    return simulate(SimulationConfig(leads=6_000, seed=3, months=24))


@pytest.fixture(scope="module")
def table(crm):
    return crm_training_table(crm.history(), 90)


@pytest.fixture(scope="module")
def result(table):
    return train_model(table, TrainingConfig(), HandSetScoring.default())


def _flat(n: int = 3_000, seed: int = 0, with_time: bool = False, golden: bool = False) -> pd.DataFrame:
    """A flat lead table whose outcome depends on visits and source, not on region."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n)
    source = rng.choice(["ads", "seo", "event", "partner"], n)
    logit = -3 + 0.45 * visits + np.where(source == "partner", 1.2, 0.0)
    won = rng.random(n) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame({"id": np.arange(n), "visits": visits, "source": source,
                          "region": rng.choice(["north", "south"], n), "won": won.astype(int)})
    if with_time:
        frame["created"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="h")
    if golden:
        frame["deal_stage"] = np.where(won, "closed won", "open")
    return frame


def test_training_rows_come_from_monthly_cutoffs_with_a_complete_horizon(crm, table):
    history = crm.history()
    cutoffs = monthly_cutoffs(history, 90)
    assert cutoffs[0] == pd.Timestamp("2024-02-01")
    assert all(pd.Timestamp(c) + pd.Timedelta(days=90) <= history.as_of for c in cutoffs)
    assert set(table.frame["cutoff"].unique()) == {pd.Timestamp(c) for c in cutoffs}
    assert table.frame["horizon_complete"].all()
    assert set(table.frame["stage_at_cutoff"].astype(str)) <= {"lead", "mql", "sql", "opportunity"}
    marketing = crm_training_table(history, 90, stages=("lead", "mql"))
    assert len(marketing.frame) < len(table.frame)
    assert set(marketing.frame["stage_at_cutoff"].astype(str)) <= {"lead", "mql"}


def test_the_model_is_honest_about_time_and_leads(result, table):
    split = result.split
    times = table.frame["cutoff"]
    assert times.iloc[split.training].max() + pd.Timedelta(days=90) <= times.iloc[split.test].min()
    ids = table.frame["lead_id"]
    assert not set(ids.iloc[split.training]) & set(ids.iloc[split.test])
    assert not set(split.validation) & set(split.fit)
    # The choice and the calibration rest on out-of-fold predictions over most training rows, not one slice.
    predicted = np.concatenate(split.folds)
    assert result.model.calibrator.rows_ == len(predicted) > len(split.validation)
    # Rows of leads a fold's model learned from are left out of the fold: open leads recur month after month.
    assert len(np.unique(predicted)) > 0.25 * len(split.training)
    for fold, learn in zip(split.folds, split.fold_training):
        assert times.iloc[learn].max() + pd.Timedelta(days=90) <= times.iloc[fold].min()
        assert not set(ids.iloc[learn]) & set(ids.iloc[fold])


def test_sales_side_features_are_left_out_and_said_so(result):
    assert not any(spec.sales_side for spec in result.model.registry)
    # Notes are for marketing too: labels, not column names.
    assert any("8 sales-side features" in note and "Sales calls, last 7 days" in note and "calls_7d" not in note
               for note in result.notes)


def test_a_sales_side_feature_is_used_only_when_allowed_by_name(table):
    allowed = train_model(table, TrainingConfig(allow_leaky=("calls_ever",), candidates=("logistic",)))
    assert "calls_ever" in allowed.model.features
    assert not {"calls_7d", "meetings_ever"} & set(allowed.model.features)
    assert any("7 sales-side features" in note for note in allowed.notes)


def test_the_model_ranks_and_is_calibrated_on_held_out_leads(result):
    model = result.evaluation.metrics.loc["leadscore model"]
    assert model["roc_auc"] > 0.85
    assert model["ece"] < 0.02
    assert model["lift_top_10"] > 4
    assert set(result.evaluation.metrics.index) == {"leadscore model", "Logistic regression", "Hand-set points"}
    assert result.model.kind in ("lightgbm", "logistic", "blend")
    assert result.model.summary["calibration"] in ("sigmoid", "isotonic")
    assert list(result.validation.index)[0] == result.model.kind
    for name in ("reliability", "gains", "lift", "deciles"):
        assert set(getattr(result.evaluation, name)) == set(result.evaluation.metrics.index)


def test_probabilities_match_the_held_out_rows_and_ignore_unused_columns(result):
    held_out = result.held_out
    model = result.evaluated_model  # the held-out figures' model; the registered one also learned from these rows
    probability = model.predict_proba(held_out)
    np.testing.assert_allclose(probability, held_out["score: leadscore model"], rtol=1e-12)
    shuffled = held_out.assign(company=np.random.default_rng(0).permutation(held_out["company"].to_numpy())) \
        if "company" in held_out else held_out.assign(unused=np.arange(len(held_out)))
    np.testing.assert_array_equal(model.predict_proba(shuffled), probability)
    assert ((probability >= 0) & (probability <= 1)).all()


def test_same_data_and_seed_give_identical_predictions():
    table = flat_feature_table(_flat(), ColumnRoles(id="id", target="won"))
    first = train_model(table, TrainingConfig(min_positives=50))
    second = train_model(table, TrainingConfig(min_positives=50))
    np.testing.assert_array_equal(first.model.predict_proba(table.frame), second.model.predict_proba(table.frame))
    other_seed = train_model(table, TrainingConfig(min_positives=50, seed=7))
    assert not np.array_equal(other_seed.split.test, first.split.test)


def test_flat_tables_split_at_random_or_forward_in_time():
    stratified = train_model(flat_feature_table(_flat(), ColumnRoles(id="id", target="won")), TrainingConfig(min_positives=50))
    assert not stratified.split.forward
    assert any("split at random, stratified" in note for note in stratified.notes)
    timed = flat_feature_table(_flat(with_time=True), ColumnRoles(id="id", target="won", time="created"))
    forward = train_model(timed, TrainingConfig(min_positives=50))
    assert forward.split.forward and forward.split.test.min() == 2_400
    assert forward.evaluation.metrics.loc["leadscore model", "roc_auc"] > 0.7


def test_too_few_positives_refuse_to_train():
    table = flat_feature_table(_flat(n=400), ColumnRoles(id="id", target="won"))
    with pytest.raises(LeadscoreError, match=r"Only \d+ converted leads among the \d+ training rows; .*at least 100"):
        train_model(table, TrainingConfig())


def test_a_column_written_after_the_outcome_is_refused_unless_allowed():
    table = flat_feature_table(_flat(golden=True), ColumnRoles(id="id", target="won"))
    with pytest.raises(LeadscoreError, match=r"Deal stage \('deal_stage'\): AUC 1\.000"):
        train_model(table, TrainingConfig(min_positives=50))
    allowed = train_model(table, TrainingConfig(min_positives=50, allow_leaky=("deal_stage",)))
    assert "deal_stage" in allowed.model.features
    excluded = train_model(table, TrainingConfig(min_positives=50, exclude=("deal_stage",)))
    assert "deal_stage" not in excluded.model.features


def test_unknown_feature_names_and_candidates_are_refused():
    table = flat_feature_table(_flat(), ColumnRoles(id="id", target="won"))
    with pytest.raises(LeadscoreError, match="'visitz': no such feature"):
        train_model(table, TrainingConfig(exclude=("visitz",)))
    with pytest.raises(LeadscoreError, match="--candidates"):
        TrainingConfig(candidates=("xgboost",))


def test_a_short_crm_history_is_refused(crm):
    from leadscore.crm.simulator import SimulationConfig, simulate

    short = simulate(SimulationConfig(leads=500, seed=1, months=5)).history()
    with pytest.raises(LeadscoreError, match="only \\d monthly cutoffs with a complete 90-day horizon"):
        crm_training_table(short, 90)


def test_large_tables_choose_on_a_weighted_sample_of_negatives(monkeypatch):
    from leadscore.pipelines import train as stage

    monkeypatch.setattr(stage, "SUBSAMPLE_ROWS", 600)
    y = np.r_[np.ones(100, dtype=int), np.zeros(2_000, dtype=int)]
    rows, weight = stage._subsample(np.arange(2_100), y, np.random.default_rng(0))
    assert len(rows) == 600 and (y[rows] == 1).sum() == 100
    assert weight[y[rows] == 0].sum() == pytest.approx(2_000) and (weight[y[rows] == 1] == 1).all()
    assert np.all(np.diff(rows) > 0)
    table = flat_feature_table(_flat(), ColumnRoles(id="id", target="won"))
    result = train_model(table, TrainingConfig(min_positives=50))
    assert result.evaluation.metrics.loc["leadscore model", "roc_auc"] > 0.7


def test_recency_weighting_is_kept_only_where_it_ranks_better():
    from leadscore.models.choice import choose_recency

    rng = np.random.default_rng(0)
    chunk_y = [rng.random(400) < 0.2 for _ in range(3)]
    good = [np.where(c, 1.0, 0.0) + rng.normal(0, 1, 400) for c in chunk_y]
    noise = [rng.normal(0, 1, 400) for _ in chunk_y]
    margins = {("lightgbm", False): noise, ("lightgbm", True): good, ("logistic", False): good, ("logistic", True): good}
    assert choose_recency(margins, chunk_y, {"lightgbm": None, "logistic": None}) == {"lightgbm": True, "logistic": False}


def test_the_logistic_penalty_is_chosen_on_every_fold_and_the_simpler_model_wins_ties():
    from leadscore.models.candidates import LogisticCandidate
    from leadscore.models.choice import choose_strength

    rng = np.random.default_rng(3)
    n = 3_000
    X = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(30)})
    y = (rng.random(n) < 1 / (1 + np.exp(-(X["x0"] - 2)))).astype(int)  # one driver, 29 noise columns
    folds = [(np.arange(0, end), None, np.arange(end, end + 500)) for end in (1_000, 1_500, 2_000, 2_500)]
    candidate = LogisticCandidate(tuple(X.columns), ())
    # A few hundred rows and 29 noise columns: a strong penalty ranks the later rows as well or better.
    chosen, margins = choose_strength(candidate, X, y, folds)
    assert chosen.strength <= 0.1 and [len(m) for m in margins] == [500] * 4
    # Ties go to the strongest penalty: a grid of near-equal strengths picks its smallest C.
    assert choose_strength(replace(candidate, strengths=(1.0, 1.01, 1.02)), X, y, folds)[0].strength == 1.0


def test_rare_levels_keep_their_own_code_on_small_tables():
    from leadscore.pipelines.train import category_min_count

    assert category_min_count(TrainingConfig(), 4_000) == 1  # every level: a few rows are all there is
    assert category_min_count(TrainingConfig(), 26_000) == 5
    assert category_min_count(TrainingConfig(), 2_000_000) == 10  # bounds the one-hot width on large tables
    assert category_min_count(TrainingConfig(min_category_count=3), 2_000_000) == 3


def test_with_time_a_lead_over_the_logistic_regression_must_be_steady():
    from leadscore.models.choice import newest_fold_note, validation_table

    rng = np.random.default_rng(1)
    fold_y = [(rng.random(2_000) < 0.2).astype(int) for _ in range(3)]

    def ranking(y, strength):
        return strength * y + rng.normal(0, 1, len(y))

    # The trees win big on the oldest fold and lose the two newest: the higher mean AUC is not a steady lead.
    candidates = {
        "lightgbm": [ranking(fold_y[0], 3.0), ranking(fold_y[1], 0.5), ranking(fold_y[2], 0.5)],
        "logistic": [ranking(fold_y[0], 0.8), ranking(fold_y[1], 0.8), ranking(fold_y[2], 0.8)],
    }
    weights = {"lightgbm": {"lightgbm": 1.0}, "logistic": {"logistic": 1.0}}
    recency = {"lightgbm": False, "logistic": False}
    forward, _ = validation_table(weights, candidates, fold_y, recency, 42, forward=True)
    assert forward.loc["lightgbm", "roc_auc"] > forward.loc["logistic", "roc_auc"]
    assert forward.index[0] == "logistic" and forward.loc["lightgbm", "steady_lead_over_logistic"] == "no"
    # Without time, folds are exchangeable draws: the mean decides.
    shuffled, _ = validation_table(weights, candidates, fold_y, recency, 42, forward=False)
    assert shuffled.index[0] == "lightgbm"
    assert newest_fold_note(forward) == []


def test_timed_tables_record_whether_recent_rows_were_weighted():
    timed = flat_feature_table(_flat(with_time=True), ColumnRoles(id="id", target="won", time="created"))
    result = train_model(timed, TrainingConfig(min_positives=50))
    assert set(result.validation["recent_rows_weighted"]) <= {"yes", "no"}
    assert all("recency_weighted" in settings for settings in result.model.summary["candidates"].values())
    assert len(result.split.folds) == 5


def test_each_candidate_can_be_the_model():
    table = flat_feature_table(_flat(), ColumnRoles(id="id", target="won"))
    for candidate in ("lightgbm", "logistic"):
        result = train_model(table, TrainingConfig(min_positives=50, candidates=(candidate,)))
        assert result.model.kind == candidate
        assert list(result.validation.index) == [candidate]


@pytest.mark.parametrize("rows", [12, 30, 60])
def test_following_the_minimum_data_advice_on_a_tiny_table_never_crashes(rows):
    """Issue 9: --min-positives 1 on a 30-row table crashed inside LightGBM on an empty chunk."""
    frame = _flat(rows, seed=2)
    frame.loc[frame.index[:max(rows // 3, 4)], "won"] = 1
    table = flat_feature_table(frame, ColumnRoles(id="id", target="won"))
    try:
        result = train_model(table, TrainingConfig(min_positives=1))
    except LeadscoreError as error:
        assert "rows" in str(error) and ("Add rows" in str(error) or "Add history" in str(error))
    else:
        assert result.evaluation.metrics.loc["leadscore model", "roc_auc"] >= 0


def test_a_slice_of_a_single_outcome_is_refused_with_counts_and_the_fix():
    frame = _flat(400, seed=1, with_time=True)
    frame["won"] = 0
    frame.loc[frame.index[290:320], "won"] = 1  # conversions only after the oldest rows: nothing to tune on
    frame.loc[frame.index[360:380], "won"] = 1
    table = flat_feature_table(frame, ColumnRoles(id="id", target="won", time="created"))
    with pytest.raises(LeadscoreError, match=r"hold (no converted lead|only converted leads) among their [\d,]+ rows.*Add rows or history"):
        train_model(table, TrainingConfig(min_positives=1))



def test_the_registered_model_learns_from_every_row_and_the_figures_say_which_model_they_come_from(result, table):
    final, evaluated = result.model, result.evaluated_model
    assert final.summary["refit"] == {"rows": len(table.frame), "evaluated_model_rows": len(result.split.training)}
    assert any("refitted on all" in note and f"{len(result.split.training):,} training rows" in note for note in result.notes)
    # Same choices (features, calibration, tiers), new fit: it scores the held-out rows differently, and better,
    # since it has seen them.
    assert final.features == evaluated.features and final.tiers is evaluated.tiers and final.calibrator is evaluated.calibrator
    held_out = result.held_out
    y = held_out[table.target_column].to_numpy(dtype=int)
    from sklearn.metrics import roc_auc_score

    refit, before = final.predict_proba(held_out), evaluated.predict_proba(held_out)
    assert not np.allclose(refit, before) and roc_auc_score(y, refit) > roc_auc_score(y, before)
    assert final.drift is not None and final.drift.rows == evaluated.drift.rows


def test_no_refit_registers_the_evaluated_model():
    table = flat_feature_table(_flat(with_time=True), ColumnRoles(id="id", target="won", time="created"))
    kept = train_model(table, TrainingConfig(min_positives=50, refit=False))
    assert kept.evaluated_model is None and "refit" not in kept.model.summary
    np.testing.assert_allclose(kept.model.predict_proba(kept.held_out), kept.held_out["score: leadscore model"], rtol=1e-12)
    # A level first seen in the held-out (newest) rows is known to the refitted model only.
    frame = _flat(with_time=True)
    frame.loc[frame.index[-300:], "source"] = "webinar"
    newest = flat_feature_table(frame, ColumnRoles(id="id", target="won", time="created"))
    refit = train_model(newest, TrainingConfig(min_positives=50))
    assert "webinar" in refit.model.encoder.seen_["source"] and "webinar" not in refit.evaluated_model.encoder.seen_["source"]


def test_no_probability_floor_holds_distinct_leads(result):
    # On the demo CRM, 81 % of open leads once shared one probability (0.0002 %), the calibration's lower end.
    held = result.held_out
    probability = result.model.predict_proba(held)
    most_common = pd.Series(probability).value_counts().index[0]
    sharing = held.loc[probability == most_common, result.model.features]
    assert len(sharing.drop_duplicates()) <= max(1, 0.01 * len(held))
