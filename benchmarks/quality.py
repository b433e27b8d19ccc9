"""Quality of leadscore's trained model against its baselines, on three public datasets and the simulated CRM.

    python benchmarks/quality.py                          # all four datasets, 150,000 simulated leads
    python benchmarks/quality.py --only bank-marketing    # one dataset
    python benchmarks/quality.py --leads 50000

Every dataset is trained with ``train_model`` and its default settings, after
dropping the columns its README names as leaky:

* x-education: 5-fold stratified cross-validation (it has no time column);
* bank-marketing: forward in time on the row order, newest 20 % held out;
* olist: forward in time on the first contact, newest 20 % held out;
* simulated-crm: monthly cutoffs, forward in time, with the hand-set points.

"Beats the baselines" means a higher ROC AUC than every baseline and a lower
Brier score than every baseline on the held-out rows (on the fold means for
cross-validation). Next to it, a paired bootstrap over the held-out leads
(pooled out-of-fold predictions for cross-validation) gives a 95 % interval
of the model's AUC gain and Brier reduction against each baseline. Public datasets are read from ``LEADSCORE_SHARED_DATA``
(default ``../shared/data``), never copied. A full run writes
``OUT/quality.json``; ``--only NAME`` writes ``OUT/quality_NAME.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from leadscore.crm.simulator import SimulationConfig, simulate
from leadscore.features.flat import ColumnRoles, flat_feature_table, load_flat_table, read_table_file
from leadscore.features.table import FeatureTable
from leadscore.models.rules import HandSetScoring
from leadscore.pipelines.train import TrainingConfig, TrainingResult, crm_training_table, train_model
from leadscore.settings import shared_data_dir

MODEL = "leadscore model"
LOGISTIC = "Logistic regression"
METRICS = ("roc_auc", "pr_auc", "brier", "ece", "lift_top_10")
FOLDS = 5
SEED = 42
BOOTSTRAP = 1_000

# From the datasets' READMEs: columns written after (or because of) the outcome.
X_EDUCATION_LEAKY = (
    "Tags", "Lead Quality", "Lead Profile", "Last Activity", "Last Notable Activity",
    "Asymmetrique Activity Index", "Asymmetrique Profile Index", "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
)
BANK_START = pd.Timestamp("2008-05-01")
# Measured by the author on the same protocol (first 80 % of rows train, last 20 % test).
BANK_REFERENCE = {
    "LightGBM, default settings": 0.658,
    "one-hot logistic regression": 0.748,
    "Moro et al. 2014, rolling window": 0.80,
}


@dataclass(frozen=True)
class Dataset:
    name: str
    protocol: str
    measure: Callable[[Path, argparse.Namespace], dict]


# --- one training run, or several, as plain numbers ------------------------------------


def held_out_scores(result: TrainingResult) -> pd.DataFrame:
    """The held-out label and what each scorer ranks by (hand-set points by their raw points)."""
    held = result.held_out
    scores = {name.removeprefix("score: "): held[name] for name in held.columns if name.startswith("score: ")}
    ranking = {name: scores.get(f"{name} (raw)", values) for name, values in scores.items() if not name.endswith("(raw)")}
    return pd.DataFrame({"y": held[result.table.target_column].astype(int), **{f"p:{n}": v for n, v in scores.items()
                                                                              if not n.endswith("(raw)")},
                         **{f"r:{n}": v for n, v in ranking.items()}})


def bootstrap_gains(scores: pd.DataFrame, seed: int = SEED) -> dict:
    """Paired bootstrap over held-out leads: 95 % intervals of the model's AUC gain and Brier reduction per baseline."""
    from sklearn.metrics import roc_auc_score

    y = scores["y"].to_numpy()
    rng = np.random.default_rng(seed)
    baselines = [c.removeprefix("p:") for c in scores.columns if c.startswith("p:") and c != f"p:{MODEL}"]
    draws = {name: {"auc": [], "brier": []} for name in baselines}
    for _ in range(BOOTSTRAP):
        rows = rng.integers(0, len(y), len(y))
        if y[rows].min() == y[rows].max():
            continue
        model_auc = roc_auc_score(y[rows], scores[f"r:{MODEL}"].to_numpy()[rows])
        model_brier = np.mean((scores[f"p:{MODEL}"].to_numpy()[rows] - y[rows]) ** 2)
        for name in baselines:
            draws[name]["auc"].append(model_auc - roc_auc_score(y[rows], scores[f"r:{name}"].to_numpy()[rows]))
            draws[name]["brier"].append(np.mean((scores[f"p:{name}"].to_numpy()[rows] - y[rows]) ** 2) - model_brier)
    return {
        name: {key: [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] for key, values in d.items()}
        for name, d in draws.items()
    }


def run_report(result: TrainingResult) -> dict:
    """What one training run measured on its held-out rows."""
    y = result.table.target.to_numpy(dtype=int)
    return {
        "gains_95": bootstrap_gains(held_out_scores(result)),
        "rows": len(y),
        "positives": int(y.sum()),
        "held_out_rows": len(result.split.test),
        "held_out_positives": int(y[result.split.test].sum()),
        "rows_in_no_role": result.split.dropped,  # under an embargo, or of a lead already seen earlier
        "model": result.model.kind,
        "calibration": result.model.summary["calibration"],
        "min_positives": result.config.min_positives,
        "split": result.split.description,
        "validation": result.validation[["roc_auc", "chunk_auc", "pr_auc", "calibrated_brier", "recent_rows_weighted", "weights"]].to_dict(orient="index"),
        "scorers": result.evaluation.metrics[list(METRICS)].to_dict(orient="index"),
        "notes": result.notes,
    }


def cross_validated(table: FeatureTable, config: TrainingConfig) -> dict:
    """Mean and spread over stratified folds; each fold's rows are held out once, the features built once."""
    y = table.target.to_numpy(dtype=int)
    splitter = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED)
    # Each fold is read off its held-out rows: refitting on every row would only cost time.
    config = replace(config, refit=False)
    results = [train_model(table, config, test_rows=test) for _, test in splitter.split(np.zeros(len(y)), y)]
    runs = [run_report(result) for result in results]
    per_fold = pd.concat(
        {fold: pd.DataFrame.from_dict(run["scorers"], orient="index") for fold, run in enumerate(runs)},
        names=["fold", "scorer"],
    )
    by_scorer = per_fold.groupby(level="scorer", sort=False)
    return {
        "rows": runs[0]["rows"],
        "positives": runs[0]["positives"],
        # Every row is held out exactly once over the folds.
        "held_out_rows": sum(run["held_out_rows"] for run in runs),
        "held_out_positives": sum(run["held_out_positives"] for run in runs),
        "model": _tally(run["model"] for run in runs),
        "calibration": _tally(run["calibration"] for run in runs),
        "min_positives": config.min_positives,
        "split": f"{FOLDS}-fold stratified cross-validation (StratifiedKFold, shuffle, random_state={SEED})",
        "scorers": by_scorer.mean().to_dict(orient="index"),
        "std": by_scorer[["roc_auc", "brier"]].std().to_dict(orient="index"),
        # Every row is held out once: the pooled out-of-fold predictions give one paired bootstrap.
        "gains_95": bootstrap_gains(pd.concat([held_out_scores(result) for result in results], ignore_index=True)),
        "folds": runs,
        "notes": runs[0]["notes"],
    }


def _tally(values) -> str:
    return ", ".join(f"{value} x{count}" for value, count in Counter(values).most_common())


def beats_baselines(scorers: dict) -> bool:
    model = scorers[MODEL]
    baselines = [metrics for name, metrics in scorers.items() if name != MODEL]
    return all(model["roc_auc"] > b["roc_auc"] and model["brier"] < b["brier"] for b in baselines)


# --- the datasets ------------------------------------------------------------------------


def x_education(data: Path, args: argparse.Namespace) -> dict:
    roles = ColumnRoles(
        id="Prospect ID",
        target="Converted",
        na_values=("Select",),
        drop=(*X_EDUCATION_LEAKY, "Lead Number"),  # Lead Number is a second identifier
    )
    return cross_validated(load_flat_table(data / "x-education-leads" / "Leads.csv", roles), TrainingConfig())


def bank_marketing(data: Path, args: argparse.Namespace) -> dict:
    path = data / "uci-bank-marketing" / "bank-additional-full.csv"
    frame = read_table_file(path)
    row = np.arange(len(frame))
    # No date column, but rows are in contact order: one minute per row makes the forward split follow that order.
    frame = frame.assign(row=row, contacted=BANK_START + pd.to_timedelta(row, unit="min"))
    roles = ColumnRoles(id="row", target="y", time="contacted", drop=("duration",))
    result = train_model(flat_feature_table(frame, roles, source=path.name), TrainingConfig())
    held_out = result.table.frame["row"].iloc[result.split.test]
    return {
        **run_report(result),
        "held_out_file_rows": [int(held_out.min()), int(held_out.max())],
        "reference_auc": BANK_REFERENCE,
    }


def olist_leads(folder: Path) -> pd.DataFrame:
    """MQLs with their honest features and whether a deal exists; no other closed-deal column is read."""
    mqls = read_table_file(folder / "olist_marketing_qualified_leads_dataset.csv")
    won = read_table_file(folder / "olist_closed_deals_dataset.csv")["mql_id"]
    contact = pd.to_datetime(mqls["first_contact_date"])
    return pd.DataFrame(
        {
            "mql_id": mqls["mql_id"],
            "first_contact_date": contact,
            "origin": mqls["origin"],
            "landing_page_id": mqls["landing_page_id"],
            # Month and weekday as names (categories): the year or an ordered date would encode the drift.
            "contact_month": contact.dt.strftime("%b"),
            "contact_weekday": contact.dt.strftime("%a"),
            "converted": mqls["mql_id"].isin(won).astype(int),
        }
    )


def olist(data: Path, args: argparse.Namespace) -> dict:
    roles = ColumnRoles(id="mql_id", target="converted", time="first_contact_date")
    table = flat_feature_table(olist_leads(data / "olist-marketing-funnel"), roles, source="Olist MQLs")
    return run_report(train_model(table, TrainingConfig()))


def simulated_crm(data: Path, args: argparse.Namespace) -> dict:
    crm = simulate(SimulationConfig(leads=args.leads, seed=SEED))
    table = crm_training_table(crm.history(), 90)
    return {**run_report(train_model(table, TrainingConfig(), HandSetScoring.default())), "leads": args.leads}


DATASETS = (
    Dataset("x-education", f"{FOLDS}-fold stratified CV", x_education),
    Dataset("bank-marketing", "forward, last 20 % of rows", bank_marketing),
    Dataset("olist", "forward on first contact, last 20 %", olist),
    Dataset("simulated-crm", "monthly cutoffs, forward, 90-day embargo", simulated_crm),
)


# --- printing ----------------------------------------------------------------------------


def _value(report: dict, scorer: str, metric: str) -> str:
    # Brier and ECE are small on rare outcomes: three decimals would hide which scorer wins.
    digits = 4 if metric in ("brier", "ece") else 3
    text = f"{report['scorers'][scorer][metric]:.{digits}f}"
    spread = report.get("std", {}).get(scorer, {}).get(metric)
    return text if spread is None else f"{text} ± {spread:.{digits}f}"


def dataset_section(dataset: Dataset, report: dict) -> str:
    unused = report.get("rows_in_no_role", 0)
    default = report["min_positives"] == TrainingConfig().min_positives
    lines = [
        f"## {dataset.name}",
        "",
        f"- protocol: {report['split']}",
        f"- rows {report['rows']:,}, positives {report['positives']:,} ({report['positives'] / report['rows']:.1%}); "
        f"held out {report['held_out_rows']:,} rows with {report['held_out_positives']:,} positives "
        f"({report['held_out_positives'] / report['held_out_rows']:.1%})"
        + (f"; {unused:,} rows in no role (embargo, or lead seen earlier)" if unused else ""),
        f"- model: {report['model']}; calibration: {report['calibration']}; min_positives "
        f"{report['min_positives']} ({'default' if default else 'lowered: few positives'})",
    ]
    if "held_out_file_rows" in report:
        first, last = report["held_out_file_rows"]
        lines.append(f"- held out: rows {first:,} to {last:,} of the file (its times stand for the row order)")
    if "validation" in report:
        candidates = ", ".join(f"{name} {row['roc_auc']:.3f}" for name, row in report["validation"].items())
        lines.append(f"- candidates, validation AUC (best first): {candidates}")
    for name, auc in report.get("reference_auc", {}).items():
        lines.append(f"- reference AUC, {name}: {auc:.3f}")
    lines += ["", "| scorer | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for scorer in report["scorers"]:
        lines.append(f"| {scorer} | " + " | ".join(_value(report, scorer, m) for m in METRICS) + " |")
    lines += ["", f"wall time {report['seconds']:.1f} s", ""]
    return "\n".join(lines)


def _interval(report: dict, key: str) -> str:
    """The interval against the strongest baseline, i.e. the one with the smallest gain."""
    gains = report["gains_95"]
    strongest = min(gains, key=lambda name: gains[name][key][0])
    low, high = gains[strongest][key]
    digits = 4 if key == "brier" else 3
    return f"[{low:+.{digits}f}, {high:+.{digits}f}] vs {'hand-set' if 'Hand' in strongest else 'logistic'}"


def summary_table(reports: dict[str, dict]) -> str:
    lines = [
        "| dataset | protocol | held-out positives | model | model AUC | logistic AUC | model Brier | "
        "logistic Brier | AUC gain, 95 % | Brier reduction, 95 % | beats the better baseline? |",
        "|---" * 11 + "|",
    ]
    for dataset in DATASETS:
        if dataset.name not in reports:
            continue
        report = reports[dataset.name]
        cells = [
            dataset.name,
            dataset.protocol,
            f"{report['held_out_positives']:,}",
            f"{report['model']} ({report['calibration']})",
            _value(report, MODEL, "roc_auc"),
            _value(report, LOGISTIC, "roc_auc"),
            _value(report, MODEL, "brier"),
            _value(report, LOGISTIC, "brier"),
            _interval(report, "auc"),
            _interval(report, "brier"),
            "yes" if report["beats_baselines"] else "no",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"), help="folder for the JSON results")
    parser.add_argument("--only", choices=[d.name for d in DATASETS], help="run this dataset only")
    parser.add_argument("--leads", type=int, default=150_000, help="size of the simulated CRM (150,000 give about 1M rows)")
    args = parser.parse_args()
    # Convergence and dtype warnings from sklearn and pandas would bury the tables; the results say what matters.
    warnings.filterwarnings("ignore")

    data = shared_data_dir()
    reports = {}
    for dataset in DATASETS:
        if args.only and dataset.name != args.only:
            continue
        began = time.perf_counter()
        report = dataset.measure(data, args)
        report["seconds"] = time.perf_counter() - began
        report["beats_baselines"] = beats_baselines(report["scorers"])
        reports[dataset.name] = report
        print(dataset_section(dataset, report), flush=True)

    print(summary_table(reports))
    print("\nwall time: " + ", ".join(f"{name} {report['seconds']:.1f} s" for name, report in reports.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / (f"quality_{args.only}.json" if args.only else "quality.json")
    about = {
        "measured_at": datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "shared_data": str(data),
        "datasets": reports,
    }
    path.write_text(json.dumps(about, indent=2, default=float))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
