"""Drift: the noise model behind the levels, false alarms on undrifted batches, holds on real shifts."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from leadscore.errors import LeadscoreError
from leadscore.features.build import build_features
from leadscore.features.flat import ColumnRoles, flat_feature_table
from leadscore.features.registry import FeatureRegistry, FeatureSpec
from leadscore.features.snapshots import open_leads_at
from leadscore.models.drift import DriftReference, DriftRule, FeatureBins, noise_level, psi
from leadscore.models.encoding import FrameEncoder
from leadscore.pipelines.train import TrainingConfig, crm_training_table, train_model


def _tail_allowance(promised: float, draws: int) -> float:
    """The largest false-alarm rate still consistent with ``promised``: its binomial 99.9 % quantile."""
    return binom.isf(0.001, draws, promised) / draws


# --- the noise model ----------------------------------------------------------------------------

SHAPES = {
    "deciles": np.full(10, 0.1),
    "twenty small levels": np.r_[np.full(20, 0.0125), 0.75],
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rows", [50, 500, 5_000])
def test_psi_of_undrifted_samples_exceeds_its_noise_quantiles_no_more_often_than_promised(shape, rows):
    shares, draws, reference_rows = SHAPES[shape], 40_000, 3_000
    rng = np.random.default_rng(rows)
    values = psi(rng.multinomial(reference_rows, shares, draws), rng.multinomial(rows, shares, draws))
    for confidence in (0.99, 0.999):
        level = noise_level(len(shares), rows, reference_rows, confidence)
        rate = np.mean(values > level)
        assert rate <= _tail_allowance(1 - confidence, draws), (confidence, rate)
        if rows == 5_000:  # where the law is nearly exact, the levels are not merely loose
            assert rate >= (1 - confidence) / 2, (confidence, rate)
    if rows == 5_000:
        assert np.mean(values / (1 / rows + 1 / reference_rows)) == pytest.approx(len(shares) - 1, rel=0.03)


def _population(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Twelve features as CRMs hold them: counts full of zeros, gaps, a long tail of categories."""
    tail = [f"campaign {i}" for i in range(60)]
    zipf = 1 / np.arange(1, 61) ** 1.2

    def category(levels, p=None, missing=0.0):
        codes = rng.choice(len(levels), n, p=p)
        return pd.Categorical.from_codes(np.where(rng.random(n) < missing, -1, codes), categories=levels)

    return pd.DataFrame({
        "visits": rng.poisson(2.0, n).astype(float),
        "pricing_views": np.where(rng.random(n) < 0.7, 0, rng.poisson(3, n)).astype(float),
        "age_days": rng.exponential(200, n),
        "employees": np.where(rng.random(n) < 0.15, np.nan, rng.lognormal(4, 1.5, n)),
        "score_points": rng.normal(50, 15, n).round(),
        "business_email": (rng.random(n) < 0.8).astype(float),
        "opens": rng.negative_binomial(1, 0.2, n).astype(float),
        "campaign": category(tail, zipf / zipf.sum()),
        "source": category(["ads", "seo", "event", "partner", "referral"], [0.4, 0.3, 0.15, 0.1, 0.05]),
        "country": category(["US", "UK", "DE", "FR"], missing=0.05),
        "size_band": category(["1-10", "11-50", "51-200", "201+"]),
        "seniority": category(["junior", "manager", "director", "vp", "c_level"], [0.4, 0.3, 0.15, 0.1, 0.05]),
    })


SYNTHETIC = FeatureRegistry(
    FeatureSpec(name, name.replace("_", " ").capitalize(), "fit", name,
                "categorical" if isinstance(dtype, pd.CategoricalDtype) else "numeric")
    for name, dtype in _population(np.random.default_rng(0), 1).dtypes.items()
)


def test_undrifted_batches_of_50_and_5000_leads_raise_no_more_alarms_than_the_noise_quantiles_promise():
    """Family-wise: at most 1 % of runs warn and 0.1 % hold by chance, with every feature able to hold.

    The floors are set to zero so that the quantiles alone are tested (the floors only raise the levels).
    Each run draws its own training rows (whose levels count as seen), reference and batches from one
    large population, so the noise of the bins themselves is part of what is measured.
    """
    rng = np.random.default_rng(11)
    population = _population(rng, 1_000_000)
    categorical = [name for name in SYNTHETIC.names if SYNTHETIC[name].kind == "categorical"]
    noise_only = DriftRule(warn_floor=0.0, hold_floor=0.0, unseen_warn_excess=0.0, unseen_hold_excess=0.0)
    runs, statuses = 200, {50: [], 5_000: []}
    every_feature = {name: 1 / len(SYNTHETIC) for name in SYNTHETIC.names}

    def draw(rows: int) -> pd.DataFrame:
        return population.iloc[rng.integers(0, len(population), rows)]

    for _ in range(runs):
        training = draw(2_000)
        seen = {name: training[name].dropna().astype(str).unique() for name in categorical}
        reference = DriftReference.fit(draw(3_000), rng.beta(1, 8, 3_000), SYNTHETIC, every_feature, seen, rule=noise_only)
        for rows in statuses:
            statuses[rows].append(reference.measure(draw(rows), rng.beta(1, 8, rows)).status)
    for rows, run_statuses in statuses.items():
        alarms = np.array(run_statuses) != "ok"
        holds = np.array(run_statuses) == "hold"
        assert alarms.mean() <= _tail_allowance(0.01, runs), (rows, alarms.mean())
        assert holds.mean() <= _tail_allowance(0.001, runs), (rows, holds.mean())


# --- bins, levels and statuses on hand-made frames ----------------------------------------------


def test_numeric_bins_are_deduplicated_deciles_with_open_ends_and_a_missing_bin():
    values = pd.Series([0.0] * 70 + [1.0] * 15 + [2.0] * 10 + [7.0] * 4 + [np.nan])
    bins = FeatureBins.numeric("visits", "Visits", values)
    np.testing.assert_array_equal(bins.edges, [0.0, 1.0, 2.0])  # 7 is the maximum: no empty bin above it
    np.testing.assert_array_equal(bins.counts, [70, 15, 10, 4, 1])
    assigned, unseen = bins.assign(pd.Series([-5.0, 0.0, 0.5, 2.0, 100.0, np.nan]))
    np.testing.assert_array_equal(assigned, [0, 0, 1, 2, 3, 4])
    assert unseen is None


def test_ties_filling_several_deciles_leave_the_other_values_split_into_the_bins_left():
    probability = np.r_[np.full(870, 7e-6), np.linspace(0.001, 0.6, 130)]  # most open leads share the lowest score
    bins = FeatureBins.numeric("score", "the score", probability)
    assert bins.bins == 10 and bins.counts[0] == 870 and bins.counts[1:10].min() >= 10 and bins.counts[10] == 0


def test_categorical_bins_keep_up_to_20_levels_of_at_least_1_percent_then_other_and_missing():
    levels = [f"l{i:02d}" for i in range(25)]
    values = pd.Series([*np.repeat(levels, 4), "rare", None, None, None], dtype=object)  # 104 rows, 4 each: 3.8 %
    bins = FeatureBins.categorical("campaign", "Campaign", values, seen=[*levels, "rare"])
    assert bins.levels == tuple(levels[:20])
    assert bins.counts[:20].tolist() == [4] * 20 and bins.counts[20] == 4 * 5 + 1 and bins.counts[21] == 3
    assigned, unseen = bins.assign(pd.Series(["l00", "rare", "brand new", None, "l24"]))
    np.testing.assert_array_equal(assigned, [0, 20, 20, 21, 20])
    np.testing.assert_array_equal(unseen, [False, False, True, False, False])


def test_the_encoder_remembers_every_level_it_saw_so_rare_is_not_new():
    frame = pd.DataFrame({"source": ["ads"] * 12 + ["fair", None]})
    encoder = FrameEncoder(categorical=["source"], min_count=10).fit(frame)
    assert encoder.levels_["source"] == ["ads", "(other)"]
    assert encoder.seen_["source"] == ["ads", "fair"]


TINY = FeatureRegistry([
    FeatureSpec("visits", "Website visits", "engagement", "Visits."),
    FeatureSpec("channel", "Lead source", "engagement", "Channel.", "categorical"),
    FeatureSpec("region", "Region", "fit", "Region.", "categorical"),
])


@pytest.fixture(scope="module")
def tiny_reference() -> DriftReference:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "visits": rng.poisson(3, 4_000).astype(float),
        "channel": rng.choice(["ads", "seo", "event"], 4_000),
        "region": rng.choice(["north", "south"], 4_000),
    })
    seen = {"channel": ["ads", "event", "seo"], "region": ["north", "south"]}
    weights = {"visits": 0.6, "channel": 0.39, "region": 0.01}
    return DriftReference.fit(frame, rng.random(4_000), TINY, weights, seen)


def _batch(n: int, seed: int = 1, **changes) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "visits": rng.poisson(3, n).astype(float),
        "channel": rng.choice(["ads", "seo", "event"], n),
        "region": rng.choice(["north", "south"], n),
    })
    return frame.assign(**changes), rng.random(n)


def test_a_feature_carrying_little_of_the_model_can_warn_but_never_hold(tiny_reference):
    frame, probability = _batch(2_000, region="north")
    report = tiny_reference.measure(frame, probability)
    row = report.features.set_index("feature").loc["region"]
    assert row["psi"] > row["hold_level"] and not row["can_hold"]
    assert report.status == row["status"] == "warn"
    assert "Region (PSI" in report.message and "1.0% of the model's weight, under 2%" in report.message


def test_a_renamed_channel_holds_as_values_never_seen_in_training(tiny_reference):
    frame, probability = _batch(2_000)
    frame["channel"] = frame["channel"].replace({"seo": "SEO"})
    report = tiny_reference.measure(frame, probability)
    row = report.features.set_index("feature").loc["channel"]
    assert row["unseen_share"] == pytest.approx((frame["channel"] == "SEO").mean())
    assert row["unseen_share"] > row["unseen_hold_level"] and row["status"] == "hold" and report.status == "hold"
    assert report.unseen_share == pytest.approx(row["unseen_share"])
    assert any("of leads hold values never seen in training" in reason for reason in report.reasons)


def test_a_shifted_score_holds_on_its_own(tiny_reference):
    frame, probability = _batch(2_000)
    report = tiny_reference.measure(frame, probability**3)
    assert report.score["status"] == "hold" and report.status == "hold"
    assert report.message.startswith("Drift holds the scores: the score (PSI")
    assert (report.features["status"] == "ok").all()


def test_levels_widen_for_small_batches_and_tighten_to_the_floors_for_large_ones(tiny_reference):
    small = tiny_reference.measure(*_batch(50)).features.set_index("feature").sort_index()
    large = tiny_reference.measure(*_batch(50_000)).features.set_index("feature").sort_index()
    assert (small["warn_level"] > large["warn_level"]).all() and (small["hold_level"] > small["warn_level"]).all()
    assert (large["warn_level"] == DriftRule().warn_floor).all() and (large["hold_level"] == DriftRule().hold_floor).all()


def test_an_empty_batch_measures_nothing_and_says_so(tiny_reference):
    report = tiny_reference.measure(*_batch(0))
    assert report.status == "ok" and report.message == "No leads to measure for drift."
    assert report.features["psi"].isna().all()
    record = json.loads(json.dumps(report.as_dict(), allow_nan=False))
    assert record["score"]["psi"] is None and record["rows"] == 0


def test_missing_columns_and_misaligned_scores_are_refused(tiny_reference):
    frame, probability = _batch(100)
    with pytest.raises(LeadscoreError, match="lack 1 feature column.*'region'"):
        tiny_reference.measure(frame.drop(columns="region"), probability)
    with pytest.raises(LeadscoreError, match="100 leads but 99 scores"):
        tiny_reference.measure(frame, probability[:99])


# --- a model trained on a simulated CRM -----------------------------------------------------------


@pytest.fixture(scope="module")
def crm():
    from leadscore.crm.simulator import SimulationConfig, simulate

    return simulate(SimulationConfig(leads=6_000, seed=3, months=24)).history()


@pytest.fixture(scope="module")
def trained(crm):
    # LightGBM alone: the reference does not depend on the candidate, and the file stays under a minute.
    table = crm_training_table(crm, 90)
    return table, train_model(table, TrainingConfig(candidates=("lightgbm",)))


@pytest.fixture(scope="module")
def open_now(crm) -> pd.DataFrame:
    return build_features(crm, open_leads_at(crm, pd.Timestamp(crm.as_of).to_pydatetime()))


def test_training_keeps_a_reference_of_every_lead_open_at_the_held_out_cutoffs(trained):
    table, result = trained
    reference = result.model.drift
    held_out_cutoffs = table.frame["cutoff"] >= result.held_out["cutoff"].min()
    # The held-out rows are only leads the model never learned from, so young ones: the reference is all of them.
    assert reference.rows == held_out_cutoffs.sum() > len(result.held_out)
    # A lead at two cutoffs is not two draws: the effective size is at most the number of leads.
    assert reference.effective_rows <= table.frame.loc[held_out_cutoffs, "lead_id"].nunique() < reference.rows
    shares = {bins.name: bins.weight_share for bins in reference.features}
    assert sum(shares.values()) == pytest.approx(1.0) and shares["channel"] >= DriftRule().material_share
    assert reference.score.bins == 10  # although most open leads share the calibrator's lowest probability
    channel = next(bins for bins in reference.features if bins.name == "channel")
    assert set(channel.levels) <= channel.seen and channel.reference_unseen == 0.0
    assert result.model.summary.keys() >= {"trained_at", "fingerprint"}  # the summary is unchanged: no bins in it


def test_the_open_leads_at_the_crm_s_end_are_not_held(trained, open_now):
    model = trained[1].model
    report = model.drift.measure(open_now, model.predict_proba(open_now))
    assert report.status in ("ok", "warn"), report.message
    assert report.score["status"] == "ok" and report.unseen_share == 0.0


def test_a_hard_shift_of_the_channel_mix_holds_and_names_the_lead_source(trained, open_now):
    model = trained[1].model
    relabel = np.random.default_rng(0).random(len(open_now)) < 0.6
    shifted = open_now.assign(channel=open_now["channel"].where(~relabel, "paid_social"))
    report = model.drift.measure(shifted, model.predict_proba(shifted))
    assert report.status == "hold"
    assert report.features.iloc[0][["feature", "status"]].tolist() == ["channel", "hold"]
    assert report.message.startswith("Drift holds the scores: Lead source (PSI")
    record = json.loads(json.dumps(report.as_dict(), allow_nan=False))
    assert record["status"] == "hold" and record["features"][0]["label"] == "Lead source"


def test_batches_of_50_undrifted_leads_raise_no_hold(trained, open_now):
    model = trained[1].model
    rng = np.random.default_rng(5)
    for _ in range(20):
        batch = open_now.iloc[rng.choice(len(open_now), 50, replace=False)]
        report = model.drift.measure(batch, model.predict_proba(batch))
        assert report.status != "hold", report.message


# --- a model trained on a flat table ------------------------------------------------------------


def _flat(n: int, seed: int, visits_mean: float = 3.0) -> pd.DataFrame:
    """A flat lead table whose outcome depends on visits and source, not on region (as in test_train)."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(visits_mean, n)
    source = rng.choice(["ads", "seo", "event", "partner"], n)
    won = rng.random(n) < 1 / (1 + np.exp(-(-3 + 0.45 * visits + np.where(source == "partner", 1.2, 0.0))))
    return pd.DataFrame({"id": np.arange(n), "visits": visits, "source": source,
                         "region": rng.choice(["north", "south"], n), "won": won.astype(int)})


@pytest.fixture(scope="module")
def flat_model():
    table = flat_feature_table(_flat(3_000, seed=0), ColumnRoles(id="id", target="won"))
    return train_model(table, TrainingConfig(min_positives=50)).model


def test_a_flat_table_model_holds_when_a_number_it_leans_on_shifts(flat_model):
    reference = flat_model.drift
    assert reference.rows == 600 == reference.effective_rows  # the random held-out rows, one per lead
    fresh = flat_feature_table(_flat(1_000, seed=1), ColumnRoles(id="id", target="won")).frame
    assert reference.measure(fresh, flat_model.predict_proba(fresh)).status == "ok"
    busier = flat_feature_table(_flat(1_000, seed=1, visits_mean=5.0), ColumnRoles(id="id", target="won")).frame
    report = reference.measure(busier, flat_model.predict_proba(busier))
    assert report.status == "hold" and report.features.iloc[0]["feature"] == "visits"
    assert flat_model.registry.label("visits") in report.message


def test_a_model_pickled_before_drift_still_loads_and_has_no_reference(flat_model):
    old = pickle.loads(pickle.dumps(flat_model))
    del old.__dict__["drift"]
    loaded = pickle.loads(pickle.dumps(old))
    assert "drift" not in loaded.__dict__ and loaded.drift is None  # the job skips the check and says so
    frame = _flat(20, seed=3)
    np.testing.assert_array_equal(loaded.predict_proba(frame), flat_model.predict_proba(frame))
