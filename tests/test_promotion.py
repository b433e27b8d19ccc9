"""The promotion gate: a paired bootstrap of the held-out leads, the baselines, the leak flag and promote's exit codes.

Each test works in its own MLflow store under tmp_path, copied from an empty one made once: MLflow's
table creation costs seconds, a copy nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.features.flat import ColumnRoles, flat_feature_table
from leadscore.models.comparison import paired_bootstrap
from leadscore.models.gate import MODEL_SCORE
from leadscore.pipelines import registry, tracking
from leadscore.pipelines.train import TrainingConfig, train_model

runner = CliRunner()


def _leads(n: int = 3_000, seed: int = 0) -> pd.DataFrame:
    """Visits and a partner channel drive conversion; ``signed`` is written after it (a contract date's
    presence, say): it matches the outcome on all but 0.2 % of the leads."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n)
    source = rng.choice(["ads", "seo", "event", "partner"], n)
    logit = -3 + 0.5 * visits + np.where(source == "partner", 1.5, 0.0)
    won = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    signed = np.where(rng.random(n) < 0.002, 1 - won, won)
    return pd.DataFrame({"lead": [f"L{i}" for i in range(n)], "visits": visits, "source": source,
                         "region": rng.choice(["north", "south"], n), "signed": signed, "won": won})


@pytest.fixture(scope="module")
def table():
    return flat_feature_table(_leads(), ColumnRoles(id="lead", target="won", fit=("region",)))


def _train(table, **config):
    return train_model(table, TrainingConfig(min_positives=50, candidates=("logistic",), **config))


@pytest.fixture(scope="module")
def strong(table):
    return _train(table, exclude=("signed",))


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("empty_store")
    import mlflow

    with contextlib.chdir(folder):  # MLflow's default experiment points into the working directory
        mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def store(tmp_path, monkeypatch, empty_store):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _scored(result, scores: np.ndarray):
    """``result`` as if its model had given these held-out scores: what the gate reads of a challenger."""
    return dataclasses.replace(result, held_out=result.held_out.assign(**{MODEL_SCORE: scores}))


def _champion(store: str) -> str | None:
    import mlflow

    version = registry.version_by_alias(mlflow.MlflowClient(store), "leads", registry.CHAMPION)
    return None if version is None else str(version.version)


# --- the bootstrap ---------------------------------------------------------------------------------------


def test_the_bootstrap_measures_what_sklearn_measures_ties_included():
    y = np.array([0, 1, 0, 1, 1, 0, 0, 1, 0, 0])
    model = np.array([0.1, 0.9, 0.4, 0.4, 0.7, 0.2, 0.4, 0.6, 0.1, 0.3])
    points = np.array([1, 3, 2, 2, 3, 1, 3, 1, 1, 2])  # hand-set points: many ties
    for metric, reference in (("roc_auc", roc_auc_score), ("pr_auc", average_precision_score)):
        difference = paired_bootstrap(y, model, {"points": points}, metric, resamples=300)["points"]
        assert difference.model_value == pytest.approx(reference(y, model))
        assert difference.other_value == pytest.approx(reference(y, points))
        assert difference.low <= difference.mean <= difference.high


def test_rows_of_one_lead_are_drawn_together():
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.2).astype(int)
    sharp, blunt = y + rng.normal(0, 0.8, 400), y + rng.normal(0, 1.2, 400)
    once = paired_bootstrap(y, sharp, {"blunt": blunt}, "roc_auc", resamples=200)["blunt"]
    # Every lead seen at five cutoffs with the same outcome and scores: the same evidence, the same interval.
    ids = np.repeat(np.arange(400), 5)
    repeated = paired_bootstrap(np.repeat(y, 5), np.repeat(sharp, 5), {"blunt": np.repeat(blunt, 5)}, "roc_auc",
                                leads=ids, resamples=200)["blunt"]
    assert (repeated.low, repeated.high) == pytest.approx((once.low, once.high))
    # Drawn row by row, the copies would pass for five times the evidence.
    rows = paired_bootstrap(np.repeat(y, 5), np.repeat(sharp, 5), {"blunt": np.repeat(blunt, 5)}, "roc_auc",
                            resamples=200)["blunt"]
    assert rows.high - rows.low < 0.6 * (once.high - once.low)


# --- the gate ------------------------------------------------------------------------------------------


def test_a_challenger_equal_to_the_champion_plus_noise_is_kept(strong, store):
    tracking.log_training(strong, "leads", store)
    assert registry.promote("leads", uri=store).promoted
    scores = strong.held_out[MODEL_SCORE].to_numpy()
    noisy = np.clip(scores + np.random.default_rng(1).normal(0, 0.01, len(scores)), 0, 1)
    tracking.log_training(_scored(strong, noisy), "leads", store)
    decision = registry.promote("leads", uri=store)
    against = decision.differences["champion"]
    assert against.model_value > against.other_value  # higher on the point figure, as in the issue: noise
    assert decision.outcome == registry.KEPT and _champion(store) == "1"
    assert against.low < 0 < against.high
    text = decision.message
    assert text.startswith("Kept version 1: the challenger, version 2, is not better than the champion (version 1) beyond noise.")
    assert f"{against.mean:+.4f} ({against.low:+.4f} to {against.high:+.4f})" in text and "--force" in text


def test_a_first_model_losing_to_the_logistic_baseline_is_refused(strong, store):
    scores = strong.held_out[MODEL_SCORE].to_numpy()
    blurred = 0.2 * scores + 0.8 * np.random.default_rng(2).random(len(scores))  # most of its ranking lost
    tracking.log_training(_scored(strong, blurred), "leads", store)
    decision = registry.promote("leads", uri=store)
    assert decision.outcome == registry.KEPT and _champion(store) is None
    assert decision.differences["Logistic regression"].worse
    assert decision.message.startswith("Promoted nothing: the challenger, version 1, loses to the plain logistic "
                                       "regression beyond noise.")
    assert "the plain logistic regression" in decision.message.split("converted: ")[1]  # its figures follow
    forced = registry.promote("leads", uri=store, force=True)
    assert forced.promoted and "forced: it loses to the plain logistic regression" in forced.message
    assert _champion(store) == "1"


def test_a_probable_leak_is_flagged_and_needs_force(table, store):
    leaky = _train(table, allow_leaky=("signed",))
    assert leaky.evaluation.metrics.loc["leadscore model", "roc_auc"] > 0.99
    logged = tracking.log_training(leaky, "leads", store)
    assert "held-out ROC AUC" in logged.probable_leak and "('signed') AUC 0.9" in logged.probable_leak
    import mlflow

    client = mlflow.MlflowClient(store)
    assert client.get_run(logged.run_id).data.tags[registry.PROBABLE_LEAK_TAG] == logged.probable_leak
    assert client.get_model_version("leads", logged.version).tags[registry.PROBABLE_LEAK_TAG] == logged.probable_leak
    refused = registry.promote("leads", uri=store)
    assert refused.outcome == registry.KEPT and _champion(store) is None
    assert "was flagged as a probable leak" in refused.message and "--force" in refused.message
    forced = registry.promote("leads", uri=store, force=True)
    assert forced.promoted and "forced: it was flagged as a probable leak" in forced.message


def test_exit_codes_say_whether_a_promotion_happened(store, tmp_path):
    _leads().to_csv(tmp_path / "leads.csv", index=False)
    common = ["--model-name", "leads", "--tracking-uri", store]
    train = ["train", "--data", str(tmp_path / "leads.csv"), "--id", "lead", "--target", "won", "--min-positives", "50",
             "--candidates", "logistic", *common]
    honest = runner.invoke(app, [*train, "--exclude", "signed"])
    assert honest.exit_code == 0 and "probable leak" not in honest.output
    first = runner.invoke(app, ["promote", *common])
    assert first.exit_code == 0 and "first champion" in first.output
    again = runner.invoke(app, ["promote", *common])
    assert again.exit_code == 0 and "already the champion" in again.output

    leaky = runner.invoke(app, [*train, "--allow-leaky", "signed"])
    assert leaky.exit_code == 0  # training completes: some tables are that separable honestly
    warning = " ".join(leaky.output.split())
    assert "Warning: probable leak. Version 2: held-out ROC AUC" in warning and "'signed'" in warning
    kept = runner.invoke(app, ["promote", *common])
    assert kept.exit_code == 3 and "Kept version 1" in kept.output and _champion(store) == "1"
    forced = runner.invoke(app, ["promote", "--force", *common])
    assert forced.exit_code == 0 and _champion(store) == "2"
    back = runner.invoke(app, ["promote", "--rollback", *common])
    assert back.exit_code == 0 and _champion(store) == "1"
    assert runner.invoke(app, ["promote", "--metric", "accuracy", *common]).exit_code == 2
