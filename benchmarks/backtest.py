"""What retraining more often buys: ``leadscore backtest`` on UCI bank marketing and on the simulated CRM.

    python benchmarks/backtest.py                                   # both datasets, their default cadences
    python benchmarks/backtest.py --only bank-marketing --cadence never,90,30,7
    python benchmarks/backtest.py --only simulated-crm --leads 10000

Prints one markdown table (a row per dataset and cadence) and writes ``OUT/backtest.json`` with the
per-period figures and the models trained.

* bank-marketing (Moro et al., DSS 2014, who reached an AUC of 0.80 by retraining as contacts came in):
  the file has no date, but its rows are in contact order from May 2008 to November 2010 and carry the
  month of each contact. The year is counted up whenever the month goes back (the file has no January or
  February), and each month's rows are spread evenly over its days in file order: the row order stays the
  time, as in ``benchmarks/quality.py``, but on the real calendar, so that cadences in days mean days.
  (``quality.py``'s one minute per row would squeeze 30 months into 29 days.) ``duration`` is dropped,
  as its README says. Scored from 2010-03-01: the newest 2,058 contacts (9 months, converting at 52 %), as
  Moro et al. held out their newest contacts (1,293, over the last year).
* simulated-crm: monthly cutoffs with a 90-day horizon, each row known 90 days after its cutoff, scored
  from the backtest's default start (the first day by which half of the rows are known).

Both train with ``leadscore train``'s defaults (refit on every row known at each date, as the backtest
always does). Public datasets are read from ``LEADSCORE_SHARED_DATA`` (default ``../shared/data``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.crm.simulator import SimulationConfig, simulate
from leadscore.features.flat import ColumnRoles, flat_feature_table, read_table_file
from leadscore.pipelines.backtest import BacktestConfig, BacktestResult, parse_cadences, run_backtest
from leadscore.pipelines.train import TrainingConfig, crm_training_table
from leadscore.progress import LineProgress
from leadscore.settings import shared_data_dir

SEED = 42
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
BANK_FIRST_YEAR = 2008
BANK_LAST_MONTH = pd.Period("2010-11", "M")
BANK_START = "2010-03-01"
BANK_REFERENCE = {
    "Moro et al. 2014, rolling window": 0.80,
    "leadscore train, static, newest 20 % held out (README, Quality)": 0.749,
}
DEFAULT_CADENCES = {"bank-marketing": "never,90,30", "simulated-crm": "never,90,30,7"}


def bank_contact_dates(months: pd.Series) -> pd.Series:
    """Each contact's date from its month and its row: years counted up when the month goes back."""
    number = months.str.lower().map({name: i for i, name in enumerate(MONTHS)})
    if number.isna().any():
        raise ValueError(f"unknown month names: {sorted(set(months[number.isna()]))}")
    number = number.to_numpy(dtype=int)
    year = BANK_FIRST_YEAR + np.cumsum(np.r_[0, np.diff(number) < 0])
    first = pd.to_datetime(pd.DataFrame({"year": year, "month": number + 1, "day": 1}))
    if first.iloc[-1].to_period("M") != BANK_LAST_MONTH:
        raise ValueError(f"the months counted from May {BANK_FIRST_YEAR} end in {first.iloc[-1]:%B %Y}, not "
                         f"{BANK_LAST_MONTH:%B %Y}: is the file in its original row order?")
    month = pd.Series(year * 12 + number)
    place = month.groupby(month).cumcount().to_numpy()
    rows = month.map(month.value_counts()).to_numpy()
    return first + pd.to_timedelta((place + 0.5) / rows * first.dt.days_in_month.to_numpy(), unit="D")


def bank_marketing(args: argparse.Namespace) -> tuple[BacktestResult, dict]:
    path = shared_data_dir() / "uci-bank-marketing" / "bank-additional-full.csv"
    frame = read_table_file(path)
    frame = frame.assign(row=np.arange(len(frame)), contacted=bank_contact_dates(frame["month"]))
    table = flat_feature_table(frame, ColumnRoles(id="row", target="y", time="contacted", drop=("duration",)),
                               source=path.name)
    start = pd.Timestamp(args.bank_start).to_pydatetime()
    config = BacktestConfig(parse_cadences(args.cadence or DEFAULT_CADENCES["bank-marketing"]), start,
                            args.period_days, 0.0, args.max_trainings, TrainingConfig(seed=SEED))
    return run_backtest(table, config, LineProgress()), {"reference_auc": BANK_REFERENCE}


def simulated_crm(args: argparse.Namespace) -> tuple[BacktestResult, dict]:
    history = simulate(SimulationConfig(leads=args.leads, seed=SEED)).history()
    table = crm_training_table(history, 90)
    config = BacktestConfig(parse_cadences(args.cadence or DEFAULT_CADENCES["simulated-crm"]), None,
                            args.period_days, 90.0, args.max_trainings, TrainingConfig(seed=SEED))
    return run_backtest(table, config, LineProgress()), {"leads": args.leads, "table_rows": len(table.frame)}


DATASETS = {"bank-marketing": bank_marketing, "simulated-crm": simulated_crm}


def markdown(results: dict[str, BacktestResult], seconds: dict[str, float]) -> str:
    lines = [
        "| dataset | scored from | cadence | models | scored rows | converted | AUC, pooled | mean period AUC | "
        "Brier | ECE | mean predicted | observed |",
        "|---" * 12 + "|",
    ]
    for name, result in results.items():
        for row in result.cadences.itertuples(index=False):
            lines.append(
                f"| {name} | {result.start:%Y-%m-%d} | {row.cadence} | {row.models} | {row.rows:,} | {row.positives:,} | "
                f"{row.roc_auc:.3f} | {row.mean_period_auc:.3f} | {row.brier:.4f} | {row.ece:.4f} | "
                f"{row.mean_predicted:.1%} | {row.observed_rate:.1%} |"
            )
    lines.append("")
    for name, result in results.items():
        trainings = result.trainings
        lines.append(
            f"- {name}: {len(trainings)} models trained in {trainings['seconds'].sum():.0f} s "
            f"({trainings['seconds'].mean():.0f} s each, {trainings['rows'].min():,} to {trainings['rows'].max():,} "
            f"rows; chosen: {', '.join(f'{k} x{v}' for k, v in trainings['model'].value_counts().items())}); "
            f"wall time {seconds[name]:.0f} s; periods of {result.config.period_days} days"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=list(DATASETS), help="run this dataset only")
    parser.add_argument("--cadence", help="cadences for every dataset (default: never,90,30 on bank, "
                                          "never,90,30,7 on the simulated CRM)")
    parser.add_argument("--period-days", type=int, default=30, help="length of a reporting period")
    parser.add_argument("--bank-start", default=BANK_START, help="bank marketing: first retraining date")
    parser.add_argument("--leads", type=int, default=20_000, help="size of the simulated CRM (24 months)")
    parser.add_argument("--max-trainings", type=int, default=100, help="refuse a backtest needing more models")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"), help="folder for backtest.json")
    args = parser.parse_args()
    # Convergence and dtype warnings from sklearn and pandas would bury the table.
    warnings.filterwarnings("ignore")

    results, seconds, about = {}, {}, {}
    for name, measure in DATASETS.items():
        if args.only and name != args.only:
            continue
        began = time.perf_counter()
        results[name], about[name] = measure(args)
        seconds[name] = time.perf_counter() - began
    print()
    print(markdown(results, seconds))
    if "bank-marketing" in results:
        for reference, auc in BANK_REFERENCE.items():
            print(f"- bank-marketing reference AUC, {reference}: {auc:.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "measured_at": datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "command": vars(args) | {"out": str(args.out)},
        "datasets": {
            name: {
                **about[name],
                "start": f"{result.start:%Y-%m-%d}",
                "seconds": seconds[name],
                "cadences": result.cadences.to_dict(orient="records"),
                "periods": result.periods.assign(period_start=result.periods["period_start"].astype(str),
                                                 period_end=result.periods["period_end"].astype(str)).to_dict(orient="records"),
                "trainings": result.trainings.astype({"retrained_on": str, "known_until": str}).to_dict(orient="records"),
            }
            for name, result in results.items()
        },
    }
    path = args.out / (f"backtest_{args.only}.json" if args.only else "backtest.json")
    path.write_text(json.dumps(report, indent=2, default=float))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
