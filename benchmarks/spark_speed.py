"""Rows per second through Spark (``mlflow.pyfunc.spark_udf`` in local mode) against ``Scorer.score`` in one process.

A CRM model is trained on a 20,000-lead simulated CRM, as ``scoring_job.py`` trains it, and registered in a
temporary MLflow store. The rows are the open leads of another simulated CRM at the end of its history, with the
features the nightly job builds, written to Parquet: what a Spark job would read.

Measured on the same rows, with and without explanations:

- ``Scorer.score`` in this process, after a warm-up on 1,000 rows (the explainer compiles its tables once);
- ``leadscore.serve.spark.score_spark`` in a local Spark session on 1 core, then on 2 (``local[N]``, the rows
  cached in Spark and split in N partitions beforehand), the result written to Spark's ``noop`` sink so that every
  row is scored and nothing is written. The first job of each session, on 1,000 rows, starts Spark's Python
  workers and is reported apart (``cold_start_seconds``); every later job still loads the model once per task,
  since ``spark_udf`` in local mode keeps no model between tasks;
- Spark's own floor on the same session: the same columns sent to a pandas UDF that returns a constant, so that
  what remains above it is the model's.

The methods take turns ``--repeats`` times and each keeps its fastest run: on a machine shared with other work the
slowest runs say more about the neighbours than about the method. The load average is recorded with each figure.

    python benchmarks/spark_speed.py                 # 200,000 rows, 1 and 2 cores
    python benchmarks/spark_speed.py --rows 20000    # a quick look

Needs pyspark and Java 17 or newer (``pip install -e ".[dev]"``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import pandas as pd

PANDAS_3_NOTICE = "PySpark does not yet fully support pandas"  # pyspark 4.3 warns on every conversion; scores match
WARM_UP_ROWS = 1_000


def train(folder: Path):
    from leadscore.crm.simulator import SimulationConfig, simulate
    from leadscore.pipelines.tracking import log_training
    from leadscore.pipelines.train import (
        TrainingConfig,
        crm_training_table,
        train_model,
    )

    store = f"sqlite:///{folder / 'mlflow.db'}"
    result = train_model(crm_training_table(simulate(SimulationConfig(leads=20_000, seed=42)).history()),
                         TrainingConfig(seed=42))
    return store, log_training(result, uri=store).model_uri, result.model


def open_leads(rows: int):
    """The features of ``rows`` open leads of a simulated CRM at the end of its history (about 69 % of its leads are
    open then)."""
    from leadscore.crm.simulator import SimulationConfig, simulate
    from leadscore.features import CRM_FEATURES, open_leads_at
    from leadscore.features.build import build_features

    history = simulate(SimulationConfig(leads=int(rows / 0.66) + 1_000, seed=7)).history()
    pairs = open_leads_at(history, history.as_of)
    if len(pairs) < rows:
        raise SystemExit(f"the simulated CRM has only {len(pairs):,} open leads; ask for fewer --rows")
    return build_features(history, pairs.head(rows), CRM_FEATURES)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _fastest(rows: int, runs: dict, repeats: int) -> dict:
    """Each of ``runs`` (name: callable) ``repeats`` times, taking turns; per name its fastest run."""
    best: dict[str, dict] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            load = _load()
            began = time.perf_counter()
            run()
            seconds = time.perf_counter() - began
            if name not in best or seconds < best[name]["seconds"]:
                best[name] = {"seconds": round(seconds, 2), "rows_per_second": round(rows / seconds),
                              "load_before": load, "load_after": _load()}
    return best


def in_one_process(model, leads, repeats: int) -> dict:
    from leadscore.models.scoring import Scorer

    scorer = Scorer(model)
    scorer.score(leads.head(WARM_UP_ROWS), explain=True)
    return _fastest(len(leads), {"plain": lambda: scorer.score(leads, explain=False),
                                 "explained": lambda: scorer.score(leads, explain=True)}, repeats)


def _constant(rows: pd.DataFrame) -> pd.Series:
    """Spark's floor: what sending the rows to Python and one column back costs with no model at all."""
    return pd.Series(0.0, index=rows.index)


def through_spark(cores: int, parquet: Path, rows: int, model_uri: str, store: str, inputs: list[str],
                  repeats: int) -> dict:
    from leadscore.serve.spark import score_spark
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    # Spark starts its Python workers with $PYSPARK_PYTHON (else the first python3 on PATH) and they inherit this
    # process's environment, warning filters included.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONWARNINGS"] = f"ignore:{PANDAS_3_NOTICE}:FutureWarning"
    spark = (SparkSession.builder.master(f"local[{cores}]").appName("leadscore-spark-speed")
             .config("spark.ui.enabled", "false").config("spark.driver.memory", "2g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")

    constant = F.pandas_udf(_constant, "double")

    def written(frame):
        return lambda: frame.write.format("noop").mode("overwrite").save()

    try:
        leads = spark.read.parquet(str(parquet)).repartition(cores).cache()
        leads.count()  # read, split and cached once, outside the timings
        few = leads.limit(WARM_UP_ROWS).repartition(cores)
        cold_began = time.perf_counter()
        written(score_spark(few, model_uri, tracking_uri=store))()
        cold = time.perf_counter() - cold_began
        # Built once: downloading the model and building the UDF happen here, outside the timings.
        runs = {
            "spark_floor": written(leads.withColumn("score", constant(F.struct(*inputs)))),
            "plain": written(score_spark(leads, model_uri, explain=False, tracking_uri=store)),
            "explained": written(score_spark(leads, model_uri, explain=True, tracking_uri=store)),
        }
        return {"cold_start_seconds": round(cold, 2), **_fastest(rows, runs, repeats)}
    finally:
        spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/spark_speed.json"))
    arguments = parser.parse_args()
    warnings.filterwarnings("ignore", message=PANDAS_3_NOTICE, category=FutureWarning)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as scratch:
        folder = Path(scratch)
        print(f"training a model on 20,000 simulated leads ({platform.machine()}, {os.cpu_count()} cores)", flush=True)
        store, model_uri, model = train(folder)
        print(f"building the features of {arguments.rows:,} open leads", flush=True)
        leads = open_leads(arguments.rows)
        leads.to_parquet(folder / "leads.parquet")
        print("Scorer.score in this process", flush=True)
        result = {"rows": arguments.rows, "features": len(model.features), "model": model.kind,
                  "versions": {name: version(name) for name in ("pyspark", "mlflow", "pandas", "pyarrow")},
                  "repeats": arguments.repeats, "scorer_one_process": in_one_process(model, leads, arguments.repeats)}
        del leads
        for cores in arguments.cores:
            print(f"spark_udf on local[{cores}]", flush=True)
            inputs = [model.id_column, *model.features]
            result[f"spark_local_{cores}"] = through_spark(cores, folder / "leads.parquet", arguments.rows, model_uri,
                                                           store, inputs, arguments.repeats)
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
