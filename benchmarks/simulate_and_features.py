"""Speed of the spine at scale: simulate 1M leads into a CRM, then build their point-in-time features.

Each phase runs in a fresh process, so its peak memory (max RSS) is its own.

    python benchmarks/simulate_and_features.py                      # 1M leads into a temporary SQLite file
    python benchmarks/simulate_and_features.py --leads 200000 --crm postgresql://postgres@127.0.0.1/test

Budgets (issue 3): simulate 1M leads into SQLite in under 3 minutes; features
for 1M leads and ~20M activities in under 2 minutes with peak memory under 8 GB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def simulate_phase(crm: str, leads: int, queue) -> None:
    from leadscore.crm.database import WriteMode, connect
    from leadscore.crm.simulator import SimulationConfig
    from leadscore.pipelines.simulate import simulate_into_crm

    began = time.perf_counter()
    summary = simulate_into_crm(connect(crm, writable=True), SimulationConfig(leads=leads, seed=42), WriteMode.FORCE)
    queue.put({"seconds": time.perf_counter() - began, "rows": summary.rows, "peak_gb": _peak_gb()})


def features_phase(crm: str, out: str, queue) -> None:
    from leadscore.crm.database import connect
    from leadscore.crm.sql import load_history
    from leadscore.features import crm_feature_table

    began = time.perf_counter()
    history = load_history(connect(crm))
    loaded = time.perf_counter()
    # Every lead at the end of the history: one row per lead, all activities in play.
    end = np.datetime64(pd.Timestamp(history.as_of).normalize() + pd.Timedelta(days=1), "s")
    pairs = pd.DataFrame({"lead_id": history.leads["id"], "cutoff": np.full(len(history.leads), end)})
    table = crm_feature_table(history, pairs)
    built = time.perf_counter()
    table.to_parquet(out)
    queue.put(
        {
            "seconds": time.perf_counter() - began,
            "read_seconds": loaded - began,
            "feature_seconds": built - loaded,
            "write_seconds": time.perf_counter() - built,
            "rows": len(table.frame),
            "features": len(table.registry),
            "activities": len(history.activities),
            "peak_gb": _peak_gb(),
        }
    )


def _run(target, *arguments) -> dict:
    queue = multiprocessing.get_context("spawn").Queue()
    process = multiprocessing.get_context("spawn").Process(target=target, args=(*arguments, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1_000_000, help="leads to simulate (default 1,000,000)")
    parser.add_argument("--crm", help="CRM URL (default: an SQLite file in a temporary folder); its leadscore tables are replaced")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"), help="folder for the JSON results")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        crm = arguments.crm or f"sqlite:///{Path(scratch) / 'crm.db'}"
        simulated = _run(simulate_phase, crm, arguments.leads)
        print(f"simulate: {arguments.leads:,} leads, {simulated['rows']['activities']:,} activities in "
              f"{simulated['seconds']:.1f} s, peak {simulated['peak_gb']:.2f} GB", flush=True)
        features = _run(features_phase, crm, str(Path(scratch) / "features.parquet"))
        print(f"features: {features['rows']:,} leads x {features['features']} features from "
              f"{features['activities']:,} activities in {features['seconds']:.1f} s (read {features['read_seconds']:.1f} s, "
              f"compute {features['feature_seconds']:.1f} s, write {features['write_seconds']:.1f} s), "
              f"peak {features['peak_gb']:.2f} GB", flush=True)

    arguments.out.mkdir(parents=True, exist_ok=True)
    record = {
        "when": datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {multiprocessing.cpu_count()} cores, Python {platform.python_version()}",
        "crm": "sqlite (temporary file)" if arguments.crm is None else arguments.crm.split("://")[0],
        "leads": arguments.leads,
        "simulate": simulated,
        "features": features,
    }
    path = arguments.out / f"simulate_and_features_{arguments.leads}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
