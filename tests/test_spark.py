"""A Spark DataFrame scored through ``mlflow.pyfunc.spark_udf`` gets, row for row, what the registered model's
``predict`` gives the same rows in pandas: the same probability, tier, sub-scores, reasons and unseen values.

One CRM model is trained on the shared simulated CRM and registered in a temporary store; the CRM's open leads at
the end of its history, some given a channel the model never saw and some no industry, are written to Parquet with
the features the nightly job builds, and read back by Spark and by pandas. Spark scores them in two tasks of several
Arrow batches each, so the comparison also shows that how Spark splits the rows changes nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.errors import LeadscoreError
from leadscore.models.scoring import Scorer
from leadscore.serve.spark import score_spark

# pyspark 4.3 warns that its pandas 3 support is incomplete, and passes pandas 3 a deprecated argument; what these
# tests check is that the scores come through whole regardless.
pytestmark = [pytest.mark.spark,
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

TASKS = 2  # one per core of the local session
ROWS_PER_ARROW_BATCH = 400  # Spark's default is 10,000: smaller, so that every task scores in several batches


@pytest.fixture(scope="module")
def registered(small_crm, tmp_path_factory):
    """A CRM model registered in a temporary store, and its open leads in a Parquet file."""
    from leadscore.features import CRM_FEATURES, open_leads_at
    from leadscore.features.build import build_features
    from leadscore.pipelines.tracking import log_training
    from leadscore.pipelines.train import (
        TrainingConfig,
        crm_training_table,
        train_model,
    )

    folder = tmp_path_factory.mktemp("spark")
    history = small_crm.history()
    # A cutoff every other month and two folds keep training short; the model still ranks well (held-out AUC 0.94).
    config = TrainingConfig(candidates=("lightgbm",), refit=False, folds=2, min_positives=30)
    result = train_model(crm_training_table(history, every_months=2), config)
    logged = log_training(result, "leads", f"sqlite:///{folder / 'mlflow.db'}")
    leads = build_features(history, open_leads_at(history, history.as_of), CRM_FEATURES)
    every = np.arange(len(leads))
    leads["channel"] = leads["channel"].cat.add_categories("tiktok").mask(every % 25 == 0, "tiktok")  # never seen
    leads["industry"] = leads["industry"].mask(every % 7 == 3)  # missing
    leads.to_parquet(folder / "open.parquet")
    return {"logged": logged, "model": result.model, "leads": folder / "open.parquet"}


@pytest.fixture(scope="module")
def spark_leads(spark, registered):
    """The open leads as Spark reads them from the Parquet file, in ``TASKS`` partitions."""
    setting = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(setting)
    spark.conf.set(setting, str(ROWS_PER_ARROW_BATCH))
    yield spark.read.parquet(str(registered["leads"])).repartition(TASKS)
    spark.conf.set(setting, before)


def _predicted(registered, explain: bool) -> pd.DataFrame:
    """What ``mlflow.pyfunc.load_model(uri).predict`` says of the same leads read by pandas."""
    from leadscore.pipelines.store import mlflow_at

    logged = registered["logged"]
    loaded = mlflow_at(logged.tracking_uri).pyfunc.load_model(logged.model_uri)
    return loaded.predict(pd.read_parquet(registered["leads"]), params={"explain": explain})


def _from_spark(scored, id_column: str) -> pd.DataFrame:
    return scored.select(id_column, "score.*").toPandas()


def _by_lead(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
    return frame.sort_values(id_column).reset_index(drop=True)


def test_spark_scores_and_explains_each_lead_as_the_registered_model_does(registered, spark_leads):
    model = registered["model"]
    expected = _predicted(registered, explain=True)
    # The one scoring path: the registered model says what the Scorer says.
    pd.testing.assert_frame_equal(expected, Scorer(model).score(pd.read_parquet(registered["leads"]), explain=True))
    # Leads that exercise every branch: both tiers above none, material reasons, never-seen values, missing ones.
    assert {"mql", "sql"} <= set(expected["tier"])
    assert (~expected["reason_1"].str.startswith("Nothing stands out")).sum() >= 10
    assert expected["unseen"].str.contains("channel=tiktok").sum() == len(range(0, len(expected), 25))

    scored = score_spark(spark_leads, registered["logged"].model_uri, tracking_uri=registered["logged"].tracking_uri)
    assert scored.columns == [*spark_leads.columns, "score"]  # the leads' own columns stay as they were
    assert scored.schema["score"].dataType.fieldNames() == list(expected.columns.drop(model.id_column))

    from_spark = _by_lead(_from_spark(scored, model.id_column), model.id_column)
    expected = _by_lead(expected, model.id_column)
    assert from_spark[model.id_column].tolist() == expected[model.id_column].tolist()  # each lead once, none lost
    np.testing.assert_allclose(from_spark["probability"], expected["probability"], rtol=0, atol=1e-12)
    for column in expected.columns.drop([model.id_column, "probability"]):  # text compared as text: JSON byte for byte
        assert from_spark[column].tolist() == expected[column].tolist(), column


def test_without_explain_the_score_holds_probability_tier_and_unseen_values(registered, spark_leads):
    model = registered["model"]
    expected = _by_lead(_predicted(registered, explain=False), model.id_column)
    scored = score_spark(spark_leads, registered["logged"].model_uri, explain=False,
                         tracking_uri=registered["logged"].tracking_uri)
    assert scored.schema["score"].dataType.simpleString() == "struct<probability:double,tier:string,unseen:string>"

    from_spark = _by_lead(_from_spark(scored, model.id_column), model.id_column)
    assert from_spark[model.id_column].tolist() == expected[model.id_column].tolist()
    np.testing.assert_allclose(from_spark["probability"], expected["probability"], rtol=0, atol=1e-12)
    assert from_spark["tier"].tolist() == expected["tier"].tolist()
    assert from_spark["unseen"].tolist() == expected["unseen"].tolist()


def test_a_frame_without_a_column_the_model_reads_is_refused_before_any_job(registered, spark_leads):
    logged = registered["logged"]
    with pytest.raises(LeadscoreError, match=r"lacks 1 column\(s\) the model .* needs: 'pricing_page_views_30d'\. "):
        score_spark(spark_leads.drop("pricing_page_views_30d"), logged.model_uri, tracking_uri=logged.tracking_uri)
    with pytest.raises(LeadscoreError, match="already has a column 'channel'"):
        score_spark(spark_leads, logged.model_uri, column="channel", tracking_uri=logged.tracking_uri)
