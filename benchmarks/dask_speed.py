"""Speed of the nightly job on Dask against the job on one machine, on the same million open leads.

The CRM and the model are the ones of ``benchmarks/scoring_job.py`` (1,450,000 simulated leads, about 1,000,000
open at the end of the history; a model trained on 20,000 other simulated leads). ``leadscore score`` then runs
in a fresh process each time, every run a first run (the score tables are emptied before it, so each writes every
open lead back to the CRM):

1. the local engine in one process (``--workers 1``);
2. the local engine as shipped (``--workers 0``: one explaining process per core);
3. Dask, a local cluster of one worker (``--engine dask --dask-workers 1``);
4. Dask, two workers;
5. Dask, two workers, every scored lead to Parquet (``--out``) instead of the CRM.

Each run reports leads per second, per worker, the job's own peak memory and the largest peak of the processes it
started (explaining processes, Dask workers, the ADBC reader).

    python benchmarks/dask_speed.py                        # in a temporary folder, about 20 minutes on 2 cores
    python benchmarks/dask_speed.py --keep /var/tmp/dask   # keeps the CRM and model there, and reuses them next time
    python benchmarks/dask_speed.py --leads 30000          # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scoring_job import LEADS_FOR_A_MILLION_OPEN, simulate_crm, train_model

AS_OF = "2025-12-31T23:59:59"
RUNS = {  # name: (workers doing the explaining, the job's options)
    "local, one process": (1, ["--workers", "1"]),
    "local, one explaining process per core": (None, ["--workers", "0"]),
    "dask, 1 worker": (1, ["--engine", "dask", "--dask-workers", "1"]),
    "dask, 2 workers": (2, ["--engine", "dask", "--dask-workers", "2"]),
    "dask, 2 workers, to Parquet": (2, ["--engine", "dask", "--dask-workers", "2", "--out", "{lake}"]),
}
# The job in a fresh interpreter, reporting its own peak memory and that of the largest process it started and
# waited for (ru_maxrss of RUSAGE_CHILDREN: Linux gives the largest descendant's).
JOB = (
    "import resource, runpy, sys\n"
    "sys.argv = ['leadscore'] + sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module('leadscore.cli', run_name='__main__')\n"
    "finally:\n"
    "    print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,\n"
    "          resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
)


def empty_score_tables(crm: str) -> None:
    from leadscore.crm.database import connect

    engine = connect(crm, writable=True)
    with engine.begin() as connection:
        for table in ("lead_score_history", "lead_scores", "score_rejects", "scoring_runs"):
            connection.exec_driver_sql(f"DELETE FROM {table}")
    engine.dispose()


def run_job(crm: str, store: str, options: list[str], workers: int) -> dict:
    """One `leadscore score` in its own process: wall time, throughput, peak memory, its summary and phase lines."""
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    done = subprocess.run(
        # Drift is measured and reported, but never holds a benchmark run: the simulated history simply ends.
        [sys.executable, "-c", JOB, "score", "--crm", crm, "--tracking-uri", store, "--as-of", AS_OF, "--json",
         "--allow-drift", *options],
        capture_output=True, text=True, check=False,  # a failure is told with the job's own words below
    )
    seconds = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"the job failed ({done.returncode}):\n{done.stderr[-3000:]}")
    own, children = next(map(int, line.split()[1:]) for line in done.stderr.splitlines() if line.startswith("PEAK_KB"))
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "seconds": round(seconds, 1),
        "leads_per_second": round(summary["scored"] / seconds),
        "workers": workers,
        "leads_per_second_per_worker": round(summary["scored"] / seconds / workers),
        "job_peak_gb": round(own / 1024**2, 2),
        "largest_child_peak_gb": round(children / 1024**2, 2),
        # Other programs on the machine take cores from the job: a load above the cores it has means the figures
        # are lower than the machine can do.
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "phases": [line for line in done.stderr.splitlines() if ": done in" in line],
        "summary": {key: summary[key] for key in ("status", "open_leads", "scored", "written", "rejected", "files")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=LEADS_FOR_A_MILLION_OPEN)
    parser.add_argument("--keep", type=Path, help="folder for the CRM and model, reused when they are there already")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/dask_speed.json"))
    arguments = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as scratch:
        folder = arguments.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        crm, store = str(folder / "crm.db"), f"sqlite:///{folder / 'mlflow.db'}"
        built = {}
        if not (folder / "mlflow.db").exists():
            print(f"training the model on 20,000 simulated leads ({platform.processor() or platform.machine()}, "
                  f"{cores} cores)", flush=True)
            train_model(folder)
        if not Path(crm).exists():
            print(f"simulating {arguments.leads:,} leads into {crm}", flush=True)
            built = simulate_crm(crm, arguments.leads)
        runs = {}
        for name, (workers, options) in RUNS.items():
            print(name, flush=True)
            empty_score_tables(crm)
            options = [option.format(lake=folder / "lake") for option in options]
            runs[name] = run_job(crm, store, options, workers or cores)
            print(json.dumps(runs[name], indent=2), flush=True)
    result = {"leads": arguments.leads, "cores": cores, "python": platform.python_version(), "simulated": built,
              "runs": runs}
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(result, indent=2))
    print(f"{'run':<42}{'seconds':>9}{'leads/s':>10}{'per worker':>12}{'job GB':>8}{'worker GB':>11}{'load':>11}")
    for name, run in runs.items():
        print(f"{name:<42}{run['seconds']:>9.1f}{run['leads_per_second']:>10,}{run['leads_per_second_per_worker']:>12,}"
              f"{run['job_peak_gb']:>8.2f}{run['largest_child_peak_gb']:>11.2f}"
              f"{'{:.1f}-{:.1f}'.format(*run['load_average']):>11}")


if __name__ == "__main__":
    main()
