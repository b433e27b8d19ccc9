"""The logged model as another team meets it: ``mlflow.pyfunc.load_model`` on whatever pandas read.

One model is trained and logged for the module, on a flat CRM export with a text id, whole numbers, whole
numbers with gaps, decimals with a placeholder, text with gaps, a yes/no flag and a time column.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.errors import LeadscoreError
from leadscore.features.flat import ColumnRoles, flat_feature_table, read_table_file
from leadscore.models.scoring import EXPLANATION_COLUMNS, Scorer
from leadscore.pipelines import tracking
from leadscore.pipelines.store import mlflow_at
from leadscore.pipelines.train import TrainingConfig, train_model


def _export(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n)
    emails = rng.poisson(2, n).astype(float)
    emails[rng.random(n) < 0.2] = np.nan
    minutes = np.round(rng.gamma(2, 5, n), 1)
    source = rng.choice(["ads", "seo", "event", "partner"], n).astype(object)
    source[rng.random(n) < 0.1] = None
    trial = rng.random(n) < 0.3
    logit = -3 + 0.5 * visits + np.where(source == "partner", 1.5, 0.0) + trial + 0.05 * minutes
    frame = pd.DataFrame({
        "lead": [f"L{seed}-{i}" for i in range(n)],
        "visits": visits,
        "emails": emails,
        "minutes": minutes.astype(str),
        "source": source,
        "region": rng.choice(["north", "south"], n),
        "trial": trial,
        "created": (pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 365, n), "D")).strftime("%Y-%m-%d"),
        "won": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
    })
    frame.loc[rng.random(n) < 0.03, "minutes"] = "?"
    return frame


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pyfunc")
    _export(3_000, seed=0).to_csv(folder / "export.csv", index=False)
    table = flat_feature_table(read_table_file(folder / "export.csv"),
                               ColumnRoles(id="lead", target="won", time="created", fit=("region",)))
    result = train_model(table, TrainingConfig(min_positives=50, candidates=("logistic",)))
    logged = tracking.log_training(result, "leads", f"sqlite:///{folder / 'mlflow.db'}")
    table.to_parquet(folder / "features.parquet")
    _export(400, seed=5).to_csv(folder / "new.csv", index=False)
    return {"folder": folder, "model": result.model, "logged": logged}


@pytest.fixture(scope="module")
def loaded(trained):
    return mlflow_at(trained["logged"].tracking_uri).pyfunc.load_model(trained["logged"].model_uri)


def _feature_parquet(folder: Path) -> pd.DataFrame:
    frame = pd.read_parquet(folder / "features.parquet")
    assert isinstance(frame["source"].dtype, pd.CategoricalDtype)
    assert pd.api.types.is_datetime64_any_dtype(frame["created"])
    return frame


def _csv(folder: Path) -> pd.DataFrame:
    frame = pd.read_csv(folder / "new.csv")
    assert frame["visits"].dtype == np.int64 and frame["emails"].isna().any() and frame["trial"].dtype == bool
    return frame


def _arrow_backed(folder: Path) -> pd.DataFrame:
    frame = pd.read_csv(folder / "new.csv", dtype_backend="pyarrow")
    assert str(frame["source"].dtype) == "string[pyarrow]" and str(frame["emails"].dtype) == "double[pyarrow]"
    return frame


@pytest.mark.parametrize("read", [_feature_parquet, _csv, _arrow_backed])
def test_the_logged_model_scores_what_pandas_read_as_the_scorer_does(trained, loaded, read):
    leads = read(trained["folder"])
    scorer = Scorer(trained["model"])
    plain = loaded.predict(leads)
    assert list(plain.columns) == scorer.columns(explain=False)
    assert plain["lead"].tolist() == leads["lead"].tolist()  # one row per lead, in order, extra columns ignored
    expected = scorer.score(leads, explain=False)
    np.testing.assert_allclose(plain["probability"], expected["probability"], rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(plain, expected, check_exact=False, rtol=0, atol=1e-12)

    explained = loaded.predict(leads, params={"explain": True})
    assert list(explained.columns) == scorer.columns(explain=True)
    pd.testing.assert_frame_equal(explained, scorer.score(leads, explain=True), check_exact=False, rtol=0, atol=1e-12)
    assert explained[list(EXPLANATION_COLUMNS)].notna().all().all()


def test_the_output_schema_describes_what_predict_returns(trained, loaded):
    from mlflow.models import infer_signature

    explained = loaded.predict(_csv(trained["folder"]), params={"explain": True})
    declared = {spec.name: spec.type for spec in loaded.metadata.signature.outputs.inputs}
    assert list(declared) == list(explained.columns)
    returned = {spec.name: spec.type for spec in infer_signature(explained).inputs.inputs}
    del declared["lead"], returned["lead"]  # declared Any: the id comes back in the dtype the caller gave it
    assert returned == declared


def test_a_json_request_like_mlflow_serve_receives_scores(trained):
    from mlflow.models import validate_serving_input
    from mlflow.models.utils import load_serving_example

    uri = trained["logged"].model_uri
    mlflow_at(trained["logged"].tracking_uri)
    request = load_serving_example(uri)
    scored = validate_serving_input(uri, request)
    rows = json.loads(request)["dataframe_split"]
    assert scored["lead"].tolist() == [row[rows["columns"].index("lead")] for row in rows["data"]]
    assert scored["probability"].between(0, 1).all()


def test_the_model_itself_names_a_missing_column(trained, loaded):
    leads = _csv(trained["folder"])
    with pytest.raises(LeadscoreError, match="lacks 1 column.*'emails'"):
        loaded.predict(leads.drop(columns=["emails"]))
    with pytest.raises(LeadscoreError, match="has no column 'lead'"):
        loaded.predict(leads.drop(columns=["lead"]))
