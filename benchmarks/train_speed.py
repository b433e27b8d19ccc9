"""Speed of training on a million rows whose features are already built.

A simulated CRM of 150,000 leads gives about 1,000,000 training rows (each lead
open at each monthly cutoff). Building that table is not timed; training is,
end to end: reading the feature table, choosing and calibrating the model,
scoring the held-out rows with the baselines, and logging everything to a
fresh MLflow store. It runs in its own process, so its peak memory is its own.

    python benchmarks/train_speed.py

Budget (issue 4): under 3 minutes end to end, peak memory under 6 GB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path


def build_table(leads: int, path: Path) -> dict:
    from leadscore.crm.simulator import SimulationConfig, simulate
    from leadscore.pipelines.train import crm_training_table

    table = crm_training_table(simulate(SimulationConfig(leads=leads, seed=42)).history(), 90)
    table.to_parquet(path)
    return {"rows": len(table.frame), "positives": int(table.target.sum())}


def train_phase(table_path: str, store: str, queue) -> None:
    warnings.filterwarnings("ignore")
    from leadscore.features.table import FeatureTable
    from leadscore.models.rules import HandSetScoring
    from leadscore.pipelines.tracking import log_training
    from leadscore.pipelines.train import TrainingConfig, train_model

    began = time.perf_counter()
    table = FeatureTable.read_parquet(table_path)
    read = time.perf_counter()
    result = train_model(table, TrainingConfig(), HandSetScoring.default())
    trained = time.perf_counter()
    log_training(result, uri=store)
    logged = time.perf_counter()
    queue.put(
        {
            "seconds": logged - began,
            "read_seconds": read - began,
            "train_seconds": trained - read,
            "log_seconds": logged - trained,
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
            "model": result.model.kind,
            "held_out": result.evaluation.metrics[["roc_auc", "brier", "lift_top_10"]].round(4).to_dict(orient="index"),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=150_000, help="simulated leads (150,000 give about 1M rows)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"), help="folder for the JSON result")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        table = build_table(arguments.leads, scratch / "table.parquet")
        print(f"training table: {table['rows']:,} rows, {table['positives']:,} converted (not timed)", flush=True)
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        process = context.Process(
            target=train_phase, args=(str(scratch / "table.parquet"), f"sqlite:///{scratch / 'mlflow.db'}", queue)
        )
        process.start()
        result = queue.get()
        process.join()
    print(
        f"train end to end: {result['seconds']:.1f} s (read {result['read_seconds']:.1f} s, train "
        f"{result['train_seconds']:.1f} s, log to MLflow {result['log_seconds']:.1f} s), peak {result['peak_gb']:.2f} GB; "
        f"model {result['model']}"
    )
    for scorer, values in result["held_out"].items():
        print(f"  {scorer}: {values}")
    arguments.out.mkdir(parents=True, exist_ok=True)
    path = arguments.out / "train_speed.json"
    path.write_text(json.dumps({"when": datetime.now().isoformat(timespec="seconds"), **table, **result}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
